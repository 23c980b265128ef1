//! `stowage serve`: settings (defaults < TOML file < `STOWAGE_*` environment < flags),
//! the data directory with its repository, passphrase and API keys, the router with its
//! layers, and graceful shutdown on SIGTERM/SIGINT.

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use figment::providers::{Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::dialects::EnvKey;

use crate::backend::s3::StaticCredentials;
use crate::backend::{BackendError, DynBackend, Location, S3Backend, S3Settings};
use crate::http::state::Limits;
use crate::http::{AppState, ServerState};
use crate::repo::{InitOptions, Repository};
use crate::service::documents::DocumentStore;
use crate::service::jobs::JobRegistry;
use crate::service::keys::{KeyStore, Role};
use crate::service::mirror::StateMirror;
use crate::service::signed_urls::UrlSigner;
use crate::service::tasks::TaskSet;
use crate::state::StateStore;

/// Every server setting, with its default.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Directory holding the repository, the index, keys and the generated passphrase.
    pub data_dir: PathBuf,
    /// Repository: a directory or `s3://bucket/prefix` (default: `<data_dir>/repo`).
    pub repo: Option<PathBuf>,
    /// How to reach an S3 repository (`[s3]`).
    pub s3: S3Config,
    /// Largest upload body in bytes.
    pub max_upload_bytes: u64,
    /// Largest JSON request body in bytes.
    pub max_json_bytes: usize,
    /// Uploads ingesting at once; more wait their turn.
    pub max_concurrent_uploads: usize,
    /// Finished jobs remembered.
    pub job_history: usize,
    /// Seconds a client-chunked backup session (`/v1/sessions`) may stay idle before it
    /// ends and commits nothing.
    pub session_idle_secs: u64,
    /// Seconds an assignment to a client host's agent waits to be taken before it fails.
    pub agent_claim_timeout_secs: u64,
    /// Base of the URLs the server hands out (download links, Wings upload parts), as
    /// clients reach it, e.g. `https://backups.example.com`; default: `http://` plus the
    /// request's Host header.
    pub public_url: Option<String>,
    /// What backup policies may read and run (`[policies]`).
    pub policies: crate::service::policies::PolicyConfig,
    /// The dialects served beside the native API, one section each.
    pub dialects: crate::dialects::DialectsConfig,
    /// The web dashboard (`[ui]`).
    pub ui: UiConfig,
}

/// `[ui]`: the web dashboard at `/ui/`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct UiConfig {
    /// Serve the dashboard (on by default).
    pub enabled: bool,
}

impl Default for UiConfig {
    fn default() -> Self {
        UiConfig { enabled: true }
    }
}

/// `[s3]`: how to reach an `s3://` repository. Whatever is left out comes from the
/// standard AWS configuration (environment, shared files, profile); `STOWAGE_S3_*`
/// variables and `--s3-*` flags override it.
#[derive(Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3Config {
    /// Endpoint URL of an S3-compatible service.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`).
    pub path_style: bool,
    /// Profile of the shared AWS config files.
    pub profile: Option<String>,
    /// Access keys, both or neither (else the AWS provider chain finds them).
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// Multipart part size in bytes (default 8 MiB, at least 5 MiB).
    pub part_size: Option<usize>,
    /// Parts of one upload in flight at once (default 4).
    pub concurrent_parts: Option<usize>,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("path_style", &self.path_style)
            .field("profile", &self.profile)
            .field("access_key_id", &self.access_key_id)
            .field("part_size", &self.part_size)
            .field("concurrent_parts", &self.concurrent_parts)
            .finish_non_exhaustive()
    }
}

impl S3Config {
    /// The backend's settings, checked.
    pub fn settings(&self) -> Result<S3Settings> {
        let defaults = S3Settings::default();
        let credentials = match (&self.access_key_id, &self.secret_access_key) {
            (Some(id), Some(secret)) => Some(StaticCredentials {
                access_key_id: id.clone(),
                secret_access_key: secret.clone(),
                session_token: None,
            }),
            (None, None) => None,
            _ => anyhow::bail!("[s3] needs both access_key_id and secret_access_key, or neither"),
        };
        let settings = S3Settings {
            endpoint: self.endpoint.clone(),
            region: self.region.clone(),
            path_style: self.path_style,
            profile: self.profile.clone(),
            credentials,
            part_size: self.part_size.unwrap_or(defaults.part_size),
            concurrent_parts: self.concurrent_parts.unwrap_or(defaults.concurrent_parts),
            ..defaults
        };
        settings.validate()?;
        Ok(settings)
    }
}

/// The `STOWAGE_*` variables of the core settings; the dialects list theirs
/// (`dialects::env_keys`).
pub const ENV_KEYS: &[EnvKey] = &[
    env_key("STOWAGE_LISTEN", "listen", true),
    env_key("STOWAGE_DATA_DIR", "data_dir", true),
    env_key("STOWAGE_REPO", "repo", true),
    env_key("STOWAGE_MAX_UPLOAD_BYTES", "max_upload_bytes", false),
    env_key("STOWAGE_MAX_JSON_BYTES", "max_json_bytes", false),
    env_key(
        "STOWAGE_MAX_CONCURRENT_UPLOADS",
        "max_concurrent_uploads",
        false,
    ),
    env_key("STOWAGE_JOB_HISTORY", "job_history", false),
    env_key("STOWAGE_SESSION_IDLE_SECS", "session_idle_secs", false),
    env_key(
        "STOWAGE_AGENT_CLAIM_TIMEOUT_SECS",
        "agent_claim_timeout_secs",
        false,
    ),
    env_key("STOWAGE_UI_ENABLED", "ui.enabled", false),
    env_key("STOWAGE_PUBLIC_URL", "public_url", true),
    env_key("STOWAGE_S3_ENDPOINT", "s3.endpoint", true),
    env_key("STOWAGE_S3_REGION", "s3.region", true),
    env_key("STOWAGE_S3_PATH_STYLE", "s3.path_style", false),
    env_key("STOWAGE_S3_PROFILE", "s3.profile", true),
    env_key("STOWAGE_S3_PART_SIZE", "s3.part_size", false),
    env_key("STOWAGE_S3_CONCURRENT_PARTS", "s3.concurrent_parts", false),
];

const fn env_key(var: &'static str, key: &'static str, text: bool) -> EnvKey {
    EnvKey { var, key, text }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./stowage-data"),
            repo: None,
            s3: S3Config::default(),
            max_upload_bytes: 1 << 40,
            max_json_bytes: 1 << 20,
            max_concurrent_uploads: 16,
            job_history: 1000,
            session_idle_secs: 3600,
            agent_claim_timeout_secs: 3600,
            public_url: None,
            policies: Default::default(),
            dialects: Default::default(),
            ui: UiConfig::default(),
        }
    }
}

impl ServerConfig {
    /// The defaults, then the TOML file `path`; unknown keys are errors, so typos do not
    /// pass silently.
    pub fn from_file(path: &Path) -> Result<ServerConfig> {
        Self::layered(Some(path), &[])
    }

    /// The settings in their one layering: defaults, then the TOML file (when given),
    /// then the `STOWAGE_*` variables of [`ENV_KEYS`] and of the dialects (set and not
    /// empty). Flags, above them all, are the CLI's to apply.
    pub fn load(path: Option<&Path>) -> Result<ServerConfig> {
        let mut env = Vec::new();
        for entry in ENV_KEYS.iter().chain(crate::dialects::env_keys()) {
            match std::env::var(entry.var) {
                Ok(value) if !value.is_empty() => env.push((*entry, value)),
                Ok(_) | Err(std::env::VarError::NotPresent) => {}
                Err(std::env::VarError::NotUnicode(_)) => {
                    anyhow::bail!("{} is not valid UTF-8", entry.var)
                }
            }
        }
        Self::layered(path, &env)
    }

    fn layered(path: Option<&Path>, env: &[(EnvKey, String)]) -> Result<ServerConfig> {
        let mut figment = Figment::from(Serialized::defaults(ServerConfig::default()));
        if let Some(path) = path {
            if !path.is_file() {
                anyhow::bail!("config file {} not found", path.display());
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        for (entry, value) in env {
            let value: figment::value::Value = if entry.text {
                value.clone().into()
            } else {
                value.parse().expect("parsing a value never fails")
            };
            figment = figment.merge(Serialized::default(entry.key, value));
        }
        figment.extract().map_err(|error| {
            let from = match error.metadata.as_ref().map(|m| m.name.as_ref()) {
                Some(source) => format!(" ({source})"),
                None => String::new(),
            };
            anyhow::anyhow!("invalid configuration{from}: {error}")
        })
    }

    /// Where the repository is: `repo`, else `<data_dir>/repo`.
    pub fn location(&self) -> Result<Location> {
        match &self.repo {
            Some(repo) => Ok(Location::parse(repo)?),
            None => Ok(Location::Local(self.data_dir.join("repo"))),
        }
    }

    /// The index of a local repository lives where the CLI looks for it
    /// (`<repo>/state`), so `stowage ls --repo` and friends work on the server's
    /// repository while the server is stopped; an S3 repository's in `<data_dir>/state`.
    pub fn state_dir(&self) -> Result<PathBuf> {
        Ok(match self.location()? {
            Location::Local(dir) => dir.join("state"),
            Location::S3(_) => self.data_dir.join("state"),
        })
    }

    /// Where the earlier layout kept API keys (moved into the state store on start).
    pub fn keys_file(&self) -> PathBuf {
        self.data_dir.join("keys.json")
    }

    pub fn state_file(&self) -> PathBuf {
        self.data_dir.join(crate::state::STATE_FILE)
    }
}

/// Writes `contents` to a new file readable only by its owner.
fn write_private(path: &Path, contents: &str) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    Ok(())
}

/// The repository passphrase: `STOWAGE_PASSWORD`, else the stored one, else a new one.
fn passphrase(config: &ServerConfig) -> Result<Vec<u8>> {
    if let Some(value) = std::env::var_os("STOWAGE_PASSWORD").filter(|v| !v.is_empty()) {
        return Ok(value.into_encoded_bytes());
    }
    let path = config.data_dir.join("passphrase");
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(text.trim_end().as_bytes().to_vec()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut bytes = [0u8; 32];
            rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut bytes);
            let generated = hex::encode(bytes);
            write_private(&path, &format!("{generated}\n"))?;
            tracing::warn!(
                "generated a repository passphrase in {}: BACK IT UP. Without it the repository cannot be read.",
                path.display()
            );
            Ok(generated.into_bytes())
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Opens the repository, creating it (and an S3 bucket) on first start: when the
/// backend has no config object.
async fn open_repository(config: &ServerConfig, passphrase: &[u8]) -> Result<Repository> {
    let location = config.location()?;
    let backend: DynBackend = match &location {
        Location::Local(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            location.connect(&S3Settings::default()).await?
        }
        Location::S3(s3) => {
            let backend = S3Backend::connect(s3.clone(), config.s3.settings()?).await?;
            if backend.ensure_bucket().await? {
                tracing::info!("created bucket {}", s3.bucket());
            }
            Arc::new(backend)
        }
    };
    let state = config.state_dir()?;
    match backend.head(crate::repo::CONFIG_KEY).await {
        Ok(_) => Ok(Repository::open(backend, &state, passphrase).await?),
        Err(BackendError::NotFound { .. }) => {
            tracing::info!("creating a new repository in {location}");
            Ok(Repository::init(backend, &state, passphrase, InitOptions::default()).await?)
        }
        Err(error) => Err(error).with_context(|| format!("opening the repository {location}")),
    }
}

/// Makes sure an admin can get in: `STOWAGE_ADMIN_KEY`, or a key created on first start.
fn ensure_admin_key(config: &ServerConfig, keys: &KeyStore) -> Result<()> {
    if let Some(key) = std::env::var("STOWAGE_ADMIN_KEY")
        .ok()
        .filter(|k| !k.is_empty())
    {
        keys.import("admin", Role::Admin, &key)
            .context("STOWAGE_ADMIN_KEY")?;
        return Ok(());
    }
    if keys.has_active_keys()? {
        return Ok(());
    }
    let (record, key) = keys.create("admin", Role::Admin)?;
    let path = config.data_dir.join("admin.key");
    let _ = std::fs::remove_file(&path);
    write_private(&path, &format!("{key}\n"))?;
    println!(
        "created admin API key {} (also written to {}):\n{key}",
        record.id,
        path.display()
    );
    Ok(())
}

/// Prepares everything `serve` needs: data directory, repository, keys, state.
pub async fn prepare(config: &ServerConfig) -> Result<AppState> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating {}", config.data_dir.display()))?;
    // Settings are checked before anything is opened or locked.
    if let Location::S3(_) = config.location()? {
        config.s3.settings()?;
    }
    // The state store next: a second server on the same data directory stops here.
    let store = Arc::new(StateStore::open(&config.state_file())?);
    let keys = KeyStore::new(store.clone());
    keys.migrate_file(&config.keys_file())
        .context("moving keys.json into the state store")?;
    let passphrase = passphrase(config)?;
    let repo = open_repository(config, &passphrase).await?;
    // An empty data directory beside a repository that has a server state: a server
    // rebuilt from its backend. Take the state back before anything reads it.
    if store.is_empty()?
        && crate::service::mirror::restore(&repo, &store, &config.data_dir)
            .await
            .context("restoring the server state from the repository")?
    {
        tracing::warn!(
            "restored the server state (keys, users, jobs, dialect records) from the repository"
        );
    }
    ensure_admin_key(config, &keys)?;
    let limits = Limits {
        max_upload_bytes: config.max_upload_bytes,
        max_json_bytes: config.max_json_bytes,
    };
    let tasks = TaskSet::new();
    let jobs = Arc::new(JobRegistry::open(
        config.job_history,
        tasks.clone(),
        keys.state_store(),
    )?);
    if let Some(url) = &config.public_url {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            anyhow::bail!("public_url {url:?} must start with http:// or https://");
        }
    }
    let signing_key = config.data_dir.join("url-signing.key");
    let secret = crate::service::documents::signing_secret(&store, &signing_key)
        .context("reading the URL signing secret")?;
    let mut state = ServerState::new(
        repo,
        keys,
        store.clone(),
        jobs,
        limits,
        config.max_concurrent_uploads,
        tasks.clone(),
    );
    state.signer = UrlSigner::new(secret);
    state.ui_enabled = config.ui.enabled;
    if config.session_idle_secs == 0 {
        anyhow::bail!("session_idle_secs must be at least 1");
    }
    state.sessions = Arc::new(crate::service::sessions::Sessions::new(
        state.repo.clone(),
        std::time::Duration::from_secs(config.session_idle_secs),
    ));
    state.public_url = config.public_url.clone();
    let rules = crate::service::policies::Rules::new(&config.policies)
        .map_err(|e| anyhow::anyhow!("[policies]: {e}"))?;
    if config.agent_claim_timeout_secs == 0 {
        anyhow::bail!("agent_claim_timeout_secs must be at least 1");
    }
    state.agents = Arc::new(crate::service::agents::Agents::new(
        state.jobs.clone(),
        state.repo.clone(),
        std::time::Duration::from_secs(config.agent_claim_timeout_secs),
    ));
    state.policies = Arc::new(crate::service::policy_runs::PolicyRunner::new(
        crate::service::policies::Policies::new(store.clone(), Some(Arc::new(rules))),
        state.repo.clone(),
        state.jobs.clone(),
        state.agents.clone(),
    ));
    let mirror = Arc::new(StateMirror::new(state.repo.clone(), store.clone()));
    state.mirror = Some(mirror.clone());
    let state = Arc::new(state);
    let documents = DocumentStore::new(store, &config.data_dir);
    let context = crate::dialects::Context {
        app: &state,
        data_dir: &config.data_dir,
        documents: &documents,
    };
    let mounted = crate::dialects::start_all(&context, &config.dialects)?;
    if state.dialects.set(mounted).is_err() {
        anyhow::bail!("the dialects were mounted twice");
    }
    start_scheduler(&state, &mirror);
    spawn_control_socket(config, &state)?;
    Ok(state)
}

/// Answers `stowage key ...` on `<data_dir>/control.sock` (mode 0600) while the server
/// holds the state store, as a task of its set; the socket file is removed on shutdown.
fn spawn_control_socket(config: &ServerConfig, state: &AppState) -> Result<()> {
    use crate::service::control::{handle_line, Stores, CONTROL_SOCKET, MAX_LINE_BYTES};
    use std::os::unix::fs::PermissionsExt;
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    let path = config.data_dir.join(CONTROL_SOCKET);
    // This process holds the state store's lock, so a socket file left here is stale.
    let _ = std::fs::remove_file(&path);
    let listener = match tokio::net::UnixListener::bind(&path) {
        Ok(listener) => listener,
        Err(error) => {
            // A data directory path too long for a socket name, a file system without
            // sockets: the server runs, `stowage key` then needs it stopped.
            tracing::warn!(socket = %path.display(), %error, "no control socket");
            return Ok(());
        }
    };
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("making {} private", path.display()))?;
    let (tasks, keys, users, schedules, runner) = (
        state.tasks.clone(),
        state.keys.clone(),
        state.users.clone(),
        state.schedules.clone(),
        state.policies.clone(),
    );
    state.tasks.spawn(async move {
        loop {
            let stream = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(error) => {
                        tracing::warn!(%error, "control socket accept failed");
                        continue;
                    }
                },
                _ = tasks.cancelled() => break,
            };
            let (keys, users, schedules, runner, stopping) = (
                keys.clone(),
                users.clone(),
                schedules.clone(),
                runner.clone(),
                tasks.clone(),
            );
            tasks.spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut line = Vec::new();
                let mut reader = tokio::io::BufReader::new(read.take(MAX_LINE_BYTES as u64 + 1));
                let read = tokio::select! {
                    read = tokio::time::timeout(
                        std::time::Duration::from_secs(30),
                        reader.read_until(b'\n', &mut line),
                    ) => read,
                    _ = stopping.cancelled() => return,
                };
                if !matches!(read, Ok(Ok(_))) || line.len() > MAX_LINE_BYTES {
                    return;
                }
                let stores = Stores {
                    keys: &keys,
                    users: &users,
                    schedules: &schedules,
                    policies: runner.policies(),
                    runner: Some(&runner),
                };
                let reply = handle_line(&stores, &line);
                let mut bytes = serde_json::to_vec(&reply).expect("replies serialize");
                bytes.push(b'\n');
                let _ = write.write_all(&bytes).await;
            });
        }
        let _ = std::fs::remove_file(&path);
    });
    Ok(())
}

/// Registers the core's periodic tasks (the state mirror; the dialects registered theirs
/// when they started) and starts the scheduler.
fn start_scheduler(state: &AppState, mirror: &Arc<StateMirror>) {
    use futures::FutureExt;
    let mirror = mirror.clone();
    state.scheduler.add(
        "state-mirror",
        crate::service::mirror::MIRROR_INTERVAL,
        Box::new(move || {
            let mirror = mirror.clone();
            async move {
                mirror
                    .write_if_changed()
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
            .boxed()
        }),
    );
    let sessions = state.sessions.clone();
    state.scheduler.add(
        "session-expiry",
        sessions.sweep_interval(),
        Box::new(move || {
            let sessions = sessions.clone();
            async move {
                sessions.expire_idle().await;
                Ok(())
            }
            .boxed()
        }),
    );
    let history = state.stats_history.clone();
    // A first sample soon after the start, so a new server's chart is not empty.
    state.scheduler.add_first_in(
        "stats-history",
        crate::service::stats_history::SAMPLE_EVERY,
        std::time::Duration::from_secs(1),
        Box::new(move || {
            let history = history.clone();
            async move { history.sample() }.boxed()
        }),
    );
    let agents = state.agents.clone();
    state.scheduler.add(
        "agent-claims",
        crate::service::agents::EXPIRY_CHECK_EVERY,
        Box::new(move || {
            let agents = agents.clone();
            async move {
                agents.expire_unclaimed();
                Ok(())
            }
            .boxed()
        }),
    );
    let policies = state.policies.clone();
    state.scheduler.add(
        "policies",
        crate::service::policy_runs::CHECK_EVERY,
        Box::new(move || {
            let policies = policies.clone();
            async move { policies.run_due(chrono::Utc::now()) }.boxed()
        }),
    );
    state.scheduler.start(&state.tasks);
}

/// The full router: the native API, the enabled dialects and the request counter.
pub fn router(state: AppState) -> axum::Router {
    let mut router = crate::api::router(state.clone());
    if state.ui_enabled {
        router = router.merge(crate::ui::router(state.clone()));
    }
    for dialect in state.dialect_routers() {
        router = router.merge(dialect);
    }
    router.layer(axum::middleware::from_fn_with_state(
        state,
        crate::http::metrics::count_requests,
    ))
}

/// A server answering on a listener, until [`RunningServer::shutdown`].
pub struct RunningServer {
    address: std::net::SocketAddr,
    state: AppState,
    serving: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Starts answering on `listener` with the full router. Connections are served until
/// shutdown begins (the task set's token), then each finishes its request in flight.
pub fn start(state: AppState, listener: tokio::net::TcpListener) -> Result<RunningServer> {
    let address = listener.local_addr()?;
    let stopping = state.tasks.clone();
    let app = router(state.clone());
    let serving = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { stopping.cancelled().await })
            .await
    });
    Ok(RunningServer {
        address,
        state,
        serving,
    })
}

impl RunningServer {
    pub fn address(&self) -> std::net::SocketAddr {
        self.address
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Stops accepting, lets requests in flight end, stops and awaits every background
    /// task, and closes the repository: when this returns, nothing of the server runs
    /// and its index can be opened again.
    pub async fn shutdown(self) -> Result<()> {
        let RunningServer { state, serving, .. } = self;
        state.begin_shutdown();
        let served = serving
            .await
            .map_err(|e| anyhow::anyhow!("the HTTP server task failed: {e}"));
        state.shutdown().await;
        drop(state);
        served??;
        Ok(())
    }
}

/// File in the index's state directory telling a CLI on this host that a server holds
/// the repository, and how to reach it.
pub const SERVING_FILE: &str = "serving.json";

/// The content of [`SERVING_FILE`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Serving {
    /// Where a client on this host reaches the server (`http://127.0.0.1:8080`).
    pub url: String,
    /// The server's data directory, absolute (its `admin.key` is there).
    pub data_dir: PathBuf,
    pub pid: u32,
}

impl Serving {
    /// The record in `state_dir`, when one is there and its process still runs.
    pub fn find(state_dir: &Path) -> Option<Serving> {
        let bytes = std::fs::read(state_dir.join(SERVING_FILE)).ok()?;
        let serving: Serving = serde_json::from_slice(&bytes).ok()?;
        Path::new("/proc")
            .join(serving.pid.to_string())
            .exists()
            .then_some(serving)
    }

    /// Writes the record for this process, serving at `address`; returns its path.
    fn write(config: &ServerConfig, address: SocketAddr) -> Result<PathBuf> {
        let mut local = address;
        if local.ip().is_unspecified() {
            local.set_ip(if local.is_ipv4() {
                std::net::Ipv4Addr::LOCALHOST.into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            });
        }
        let serving = Serving {
            url: format!("http://{local}"),
            data_dir: std::path::absolute(&config.data_dir)?,
            pid: std::process::id(),
        };
        let path = config.state_dir()?.join(SERVING_FILE);
        let bytes = serde_json::to_vec_pretty(&serving).expect("records serialize");
        crate::service::durable::replace_file(&path, &bytes)
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }
}

/// Serves until SIGTERM or SIGINT, then shuts down (see [`RunningServer::shutdown`]).
pub async fn serve(config: ServerConfig) -> Result<()> {
    let stop = shutdown_signal()?;
    tokio::pin!(stop);
    // A signal during a long start (a first reconciliation) stops it; every step of the
    // start is safe to stop anywhere.
    let state = tokio::select! {
        state = prepare(&config) => state?,
        _ = &mut stop => {
            tracing::info!("stopped before serving");
            return Ok(());
        }
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let running = start(state, listener)?;
    tracing::info!("stowage listening on http://{}", running.address());
    eprintln!("stowage listening on http://{}", running.address());
    // A CLI on this host finds the server through it (`stowage ls` beside the server).
    let serving = Serving::write(&config, running.address())
        .map_err(|error| tracing::warn!(%error, "the CLI will not find this server"))
        .ok();
    stop.await;
    tracing::info!("shutting down: finishing requests in flight, stopping background work");
    let stopped = running.shutdown().await;
    if let Some(path) = serving {
        let _ = std::fs::remove_file(path);
    }
    stopped
}

/// SIGTERM and SIGINT, caught from the moment this returns: a signal that arrives
/// before the server waits for it still shuts it down gracefully instead of killing it.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).context("catching SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("catching SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => {},
            _ = interrupt.recv() => {},
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(var: &'static str, value: &str) -> (EnvKey, String) {
        let entry = ENV_KEYS
            .iter()
            .chain(crate::dialects::env_keys())
            .find(|e| e.var == var)
            .copied()
            .expect("a known variable");
        (entry, value.to_string())
    }

    #[test]
    fn settings_layer_defaults_then_the_file_then_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("stowage.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:9000\"\njob_history = 5\n[dialects.wings]\npart_size = 2097152\nseries = \"from-file\"\n",
        )
        .unwrap();
        let config = ServerConfig::layered(
            Some(&file),
            &[
                env("STOWAGE_WINGS_PART_SIZE", "4194304"),
                env("STOWAGE_FA_JWT_SECRET", "12345"),
                env("STOWAGE_DATA_DIR", "/srv/stowage"),
                env("STOWAGE_S3_PATH_STYLE", "true"),
            ],
        )
        .unwrap();
        assert_eq!(config.listen, "127.0.0.1:9000".parse().unwrap(), "file");
        assert_eq!(config.job_history, 5, "file");
        assert_eq!(config.max_json_bytes, 1 << 20, "default");
        assert_eq!(
            config.dialects.wings.part_size,
            4 << 20,
            "environment over file"
        );
        assert_eq!(config.dialects.wings.series, "from-file");
        assert_eq!(
            config.dialects.wings.staging_series, "wings-parts",
            "default"
        );
        assert_eq!(
            config.dialects.fa.jwt_secret.as_deref(),
            Some("12345"),
            "a secret is text even when it looks like a number"
        );
        assert_eq!(config.data_dir, PathBuf::from("/srv/stowage"));
        assert!(config.s3.path_style);
    }

    #[test]
    fn bad_settings_say_where_they_came_from() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("stowage.toml");
        std::fs::write(&file, "lisen = \"127.0.0.1:9000\"\n").unwrap();
        let error = ServerConfig::layered(Some(&file), &[])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("lisen") && error.contains("stowage.toml"),
            "{error}"
        );
        let error = ServerConfig::layered(None, &[env("STOWAGE_JOB_HISTORY", "many")])
            .unwrap_err()
            .to_string();
        assert!(error.contains("job_history"), "{error}");
        let missing = dir.path().join("absent.toml");
        let error = ServerConfig::layered(Some(&missing), &[])
            .unwrap_err()
            .to_string();
        assert!(error.contains("not found"), "{error}");
    }
}
