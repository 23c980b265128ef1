//! `stowage serve`: settings (defaults < TOML file < `STOWAGE_*` environment < flags),
//! the data directory with its repository, passphrase and API keys, the router with its
//! layers, and graceful shutdown on SIGTERM/SIGINT.

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use serde::Deserialize;

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
use crate::service::users::UserStore;
use crate::state::StateStore;

/// Every server setting, with its default.
#[derive(Debug, Clone, Deserialize)]
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
    /// Base of the URLs the server hands out (download links, Wings upload parts), as
    /// clients reach it, e.g. `https://backups.example.com`; default: `http://` plus the
    /// request's Host header.
    pub public_url: Option<String>,
    /// The dialects served beside the native API, one section each.
    pub dialects: crate::dialects::DialectsConfig,
}

/// `[s3]`: how to reach an `s3://` repository. Whatever is left out comes from the
/// standard AWS configuration (environment, shared files, profile); `STOWAGE_S3_*`
/// variables and `--s3-*` flags override it.
#[derive(Clone, Default, Deserialize)]
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
            public_url: None,
            dialects: Default::default(),
        }
    }
}

impl ServerConfig {
    /// Reads a TOML file; unknown keys are errors, so typos do not pass silently.
    pub fn from_file(path: &Path) -> Result<ServerConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing config {}", path.display()))
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
    let users = UserStore::new(store.clone());
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
        users,
        jobs,
        limits,
        config.max_concurrent_uploads,
        tasks.clone(),
    );
    state.signer = UrlSigner::new(secret);
    state.public_url = config.public_url.clone();
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
    let (tasks, keys, users) = (state.tasks.clone(), state.keys.clone(), state.users.clone());
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
            let (keys, users, stopping) = (keys.clone(), users.clone(), tasks.clone());
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
    state.scheduler.start(&state.tasks);
}

/// The full router: the native API, the enabled dialects and the request counter.
pub fn router(state: AppState) -> axum::Router {
    let mut router = crate::api::router(state.clone());
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

/// Serves until SIGTERM or SIGINT, then shuts down (see [`RunningServer::shutdown`]).
pub async fn serve(config: ServerConfig) -> Result<()> {
    let state = prepare(&config).await?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let running = start(state, listener)?;
    tracing::info!("stowage listening on http://{}", running.address());
    eprintln!("stowage listening on http://{}", running.address());
    shutdown_signal().await;
    tracing::info!("shutting down: finishing requests in flight, stopping background work");
    running.shutdown().await
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = interrupt => {},
        _ = terminate => {},
    }
}
