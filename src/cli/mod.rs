//! The command line: clap definitions, opening the repository a command names, and
//! printing results for people (tables, progress bars on a terminal) or scripts
//! (`--json`, the backup id as the last line of stdout). `anyhow` is used only here.

mod agent;
pub mod bench;
mod bench_scale;
mod beside;
mod commands;
mod control;
mod files_cache;
mod output;
mod policy;
mod remote;
mod remote_restore;
mod segment_reader;
mod session_put;
mod session_tree;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// Exit status when a command ran but found problems (check).
const EXIT_PROBLEMS: u8 = 3;

#[derive(Parser, Debug)]
#[command(
    name = "stowage",
    version,
    about = "A deduplicating backup storage engine and server"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the repository is and how to unlock it.
#[derive(Args, Debug, Clone)]
pub struct RepoArgs {
    /// Repository location: a local directory, or s3://bucket/prefix.
    #[arg(long, env = "STOWAGE_REPO", required_unless_present = "server")]
    repo: Option<PathBuf>,
    /// Talk to a running server instead (put, get, restore, ls); the key comes from STOWAGE_KEY.
    #[arg(long, env = "STOWAGE_SERVER", conflicts_with = "repo")]
    server: Option<String>,
    /// File holding the passphrase (else STOWAGE_PASSWORD).
    #[arg(long, env = "STOWAGE_PASSWORD_FILE")]
    password_file: Option<PathBuf>,
    /// Local state directory holding the index (default: <repo>/state; for S3,
    /// $XDG_STATE_HOME/stowage/s3/<bucket>+<prefix>, else under ~/.local/state).
    #[arg(long, env = "STOWAGE_STATE_DIR")]
    state_dir: Option<PathBuf>,
    #[command(flatten)]
    s3: S3Args,
    /// The API key for `--server`, when found beside a running server (else
    /// `STOWAGE_KEY`).
    #[arg(skip)]
    key: Option<String>,
}

/// How to reach an `s3://` repository, beyond the standard AWS configuration
/// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT_URL`,
/// `AWS_PROFILE`, the shared config files), which fills in whatever is not given here.
#[derive(Args, Debug, Clone, Default)]
pub struct S3Args {
    /// S3 endpoint URL, for S3-compatible services (MinIO, Ceph, Garage...).
    #[arg(long, env = "STOWAGE_S3_ENDPOINT")]
    s3_endpoint: Option<String>,
    /// S3 region [default: the AWS configuration's, else us-east-1].
    #[arg(long, env = "STOWAGE_S3_REGION")]
    s3_region: Option<String>,
    /// Path-style addressing (endpoint/bucket/key), which most S3-compatible services need.
    #[arg(
        long,
        env = "STOWAGE_S3_PATH_STYLE",
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    s3_path_style: Option<bool>,
    /// Profile of the shared AWS config and credentials files.
    #[arg(long, env = "STOWAGE_S3_PROFILE")]
    s3_profile: Option<String>,
    /// Size of each part of a pack's multipart upload, in bytes: 5 MiB to 5 GiB
    /// [default: 8388608].
    #[arg(long, env = "STOWAGE_S3_PART_SIZE")]
    s3_part_size: Option<usize>,
    /// Parts of one pack's upload in flight at once, 1 to 64 [default: 4].
    #[arg(long, env = "STOWAGE_S3_CONCURRENT_PARTS")]
    s3_concurrent_parts: Option<usize>,
}

impl S3Args {
    /// Lays these values over `base` (the server's TOML `[s3]` section, or defaults).
    pub fn apply(&self, base: &mut crate::server::S3Config) {
        if let Some(v) = &self.s3_endpoint {
            base.endpoint = Some(v.clone());
        }
        if let Some(v) = &self.s3_region {
            base.region = Some(v.clone());
        }
        if let Some(v) = self.s3_path_style {
            base.path_style = v;
        }
        if let Some(v) = &self.s3_profile {
            base.profile = Some(v.clone());
        }
        if let Some(v) = self.s3_part_size {
            base.part_size = Some(v);
        }
        if let Some(v) = self.s3_concurrent_parts {
            base.concurrent_parts = Some(v);
        }
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server. With no flags: 127.0.0.1:8080, everything in ./stowage-data.
    ///
    /// Settings come from defaults, then the TOML file of --config, then STOWAGE_*
    /// environment variables, then flags. The repository passphrase is STOWAGE_PASSWORD,
    /// or the one stored in the data directory, or a new one generated (and stored, mode
    /// 0600) on first start. An admin API key is created on first start unless
    /// STOWAGE_ADMIN_KEY provides one.
    Serve(ServeArgs),
    /// Manage API keys (works whether or not the server runs).
    Key {
        #[command(subcommand)]
        action: KeyCommand,
    },
    /// Manage users who sign in with email and password (works whether or not the
    /// server runs).
    User {
        #[command(subcommand)]
        action: UserCommand,
    },
    /// Manage schedules: named cron expressions policies run by (works whether or not
    /// the server runs).
    Schedule {
        #[command(subcommand)]
        action: ScheduleCommand,
    },
    /// Manage backup policies: what to back up, into which series, on which schedule,
    /// with which retention (works whether or not the server runs; `run` needs it).
    Policy {
        #[command(subcommand)]
        action: policy::PolicyCommand,
    },
    /// Create a new repository.
    Init {
        #[command(flatten)]
        repo: RepoArgs,
        /// Minimum chunk size in bytes.
        #[arg(long, default_value_t = 512 * 1024)]
        chunk_min: u32,
        /// Average chunk size in bytes.
        #[arg(long, default_value_t = 1024 * 1024)]
        chunk_avg: u32,
        /// Maximum chunk size in bytes.
        #[arg(long, default_value_t = 8 * 1024 * 1024)]
        chunk_max: u32,
        /// zstd level (0 stores blobs uncompressed).
        #[arg(long, default_value_t = 3)]
        compression_level: i32,
        /// Target pack size in bytes.
        #[arg(long, default_value_t = 32 * 1024 * 1024)]
        pack_size: u32,
    },
    /// Back up a file, stdin (`-`) or a directory tree.
    Put {
        #[command(flatten)]
        repo: RepoArgs,
        /// Series the backup belongs to.
        #[arg(long, default_value = "default")]
        series: String,
        /// Print one JSON object instead of a summary.
        #[arg(long)]
        json: bool,
        /// Do not record a tar stream's entries as its catalog.
        #[arg(long)]
        no_tar_catalog: bool,
        /// Also record the stream's SHA-256 (every backup records its BLAKE3).
        #[arg(long)]
        sha256: bool,
        /// With --server: send every byte in one plain upload, to be chunked by the
        /// server, instead of chunking here and sending only what the server lacks.
        #[arg(long)]
        whole: bool,
        /// With --server and a directory: read every file, even those the files cache
        /// says are unchanged since the previous backup.
        #[arg(long)]
        force: bool,
        /// A file, a directory, or `-` for stdin.
        path: PathBuf,
    },
    /// Run as this host's agent of a server (`--server URL`, key in STOWAGE_KEY): take
    /// the backups and restores the server assigns to this host, until stopped.
    Agent {
        #[command(flatten)]
        repo: RepoArgs,
        /// The host name to take work for (default: this machine's).
        #[arg(long)]
        host: Option<String>,
        /// Seconds one request for work waits on the server (at most 60).
        #[arg(long, default_value_t = 30)]
        wait: u64,
        /// A folder the agent may back up or restore into (repeat for more); the server's
        /// requests for anything outside them fail. Without it, any folder this user can
        /// reach.
        #[arg(long = "allow", value_name = "DIR")]
        allow: Vec<PathBuf>,
    },
    /// Write a backup's bytes to a file or stdout.
    Get {
        #[command(flatten)]
        repo: RepoArgs,
        /// Backup id.
        id: String,
        /// Output file (stdout when absent).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Inclusive byte range `START-END` (or `START-` to the end).
        #[arg(long)]
        range: Option<String>,
    },
    /// Recreate a directory-tree backup under a target directory.
    Restore {
        #[command(flatten)]
        repo: RepoArgs,
        /// Backup id.
        id: String,
        /// Directory to restore into (must be missing or empty).
        #[arg(long)]
        target: PathBuf,
    },
    /// Print a link that downloads a backup without a key until it expires (asks a
    /// running server; the key comes from STOWAGE_KEY). Wings restores from such links.
    Url {
        /// The server, e.g. http://127.0.0.1:8080.
        #[arg(long, env = "STOWAGE_SERVER")]
        server: String,
        /// Lifetime of the link, in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
        #[arg(long)]
        json: bool,
        id: String,
    },
    /// List backups (live ones; `--recycled` lists the recycle bin).
    Ls {
        #[command(flatten)]
        repo: RepoArgs,
        /// Only this series.
        #[arg(long)]
        series: Option<String>,
        /// List recycled backups instead of live ones.
        #[arg(long)]
        recycled: bool,
        #[arg(long)]
        json: bool,
    },
    /// Recycle backups (restorable with `undelete`), or purge them with `--purge`.
    Delete {
        #[command(flatten)]
        repo: RepoArgs,
        /// Remove for good: record and catalog gone, space reclaimable by `gc`.
        #[arg(long)]
        purge: bool,
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Restore recycled backups from the recycle bin.
    Undelete {
        #[command(flatten)]
        repo: RepoArgs,
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Apply a retention policy to a series (the series' stored policy when no rule is given).
    Forget {
        #[command(flatten)]
        repo: RepoArgs,
        #[arg(long)]
        series: String,
        #[command(flatten)]
        policy: PolicyArgs,
        /// Print the decisions without changing anything.
        #[arg(long)]
        dry_run: bool,
        /// Store the given policy on the series (the server applies it on its own).
        #[arg(long)]
        save: bool,
        #[arg(long)]
        json: bool,
    },
    /// Reclaim space: delete packs nothing references, repack mostly-dead ones.
    Gc {
        #[command(flatten)]
        repo: RepoArgs,
        /// Plan only: report what would be reclaimed.
        #[arg(long)]
        dry_run: bool,
        /// Repack packs whose live share is below this fraction.
        #[arg(long, default_value_t = 0.8)]
        repack_below: f64,
        /// Abort unfinished uploads (S3 multipart uploads, local temporaries) older
        /// than this (e.g. 24h, 7d); keep it longer than any running backup.
        #[arg(long, default_value = "24h")]
        stale_uploads_after: String,
        /// Delete packs no index knows (left by interrupted backups) only once older
        /// than this (e.g. 24h, 0s); keep it longer than any backup still running
        /// elsewhere against this repository.
        #[arg(long, default_value = "24h")]
        orphan_grace: String,
        #[arg(long)]
        json: bool,
    },
    /// List the entries of a backup's catalog.
    Catalog {
        #[command(flatten)]
        repo: RepoArgs,
        /// Backup id.
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Show repository totals: logical and stored bytes, dedup and compression ratios.
    Stats {
        #[command(flatten)]
        repo: RepoArgs,
        #[arg(long)]
        json: bool,
    },
    /// Verify the index, the packs and every backup.
    Check {
        #[command(flatten)]
        repo: RepoArgs,
        /// Also read and authenticate every blob of every pack.
        #[arg(long)]
        read_data: bool,
        #[arg(long)]
        json: bool,
    },
    /// Change the repository passphrase (rewrites only the key object).
    Passwd {
        #[command(flatten)]
        repo: RepoArgs,
        /// File holding the new passphrase (else STOWAGE_NEW_PASSWORD).
        #[arg(long, env = "STOWAGE_NEW_PASSWORD_FILE")]
        new_password_file: Option<PathBuf>,
    },
    /// Repair local state.
    Repair {
        #[command(subcommand)]
        what: RepairCommand,
    },
    /// Measure this machine: each stage per core, the whole pipeline, what bounds it.
    #[command(args_conflicts_with_subcommands = true)]
    Bench {
        /// Instead of measuring the primitives: grow a repository (`bench scale`).
        #[command(subcommand)]
        what: Option<BenchCommand>,
        /// MiB of data to measure on.
        #[arg(long, default_value_t = 256)]
        size: usize,
        /// zstd levels to compare (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "1,3,9")]
        levels: Vec<i32>,
        /// zstd level of the whole-pipeline run.
        #[arg(long, default_value_t = 3)]
        pipeline_level: i32,
        /// Average chunk size in KiB (min half, max eight times that).
        #[arg(long, default_value_t = 1024)]
        chunk_avg_kib: u32,
        /// Read the data from this file (its first --size MiB) instead of generating it.
        #[arg(long)]
        input: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum BenchCommand {
    /// Grow a repository quickly, to measure scale: backups of small generated chunks
    /// written through the engine's writer (real packs, leaves and manifests), spread
    /// over several series, each repeating a quarter of its series' previous backup.
    Scale {
        #[command(flatten)]
        repo: RepoArgs,
        /// New chunks to add, over all the backups.
        #[arg(long)]
        chunks: u64,
        /// Backups to add.
        #[arg(long)]
        backups: u64,
        /// Series to spread the backups over.
        #[arg(long, default_value_t = 100)]
        series: u64,
        /// Bytes of each new chunk.
        #[arg(long, default_value_t = 64)]
        chunk_size: usize,
        /// Backups written at once.
        #[arg(long, default_value_t = 2)]
        jobs: usize,
    },
}

/// Retention rules (restic/borg semantics; periods in UTC).
#[derive(Args, Debug, Clone, Default)]
pub struct PolicyArgs {
    /// Keep the newest N backups.
    #[arg(long)]
    keep_last: Option<u32>,
    /// Keep backups younger than a duration (e.g. 30d, 2w, 12h, 1y6m).
    #[arg(long)]
    keep_within: Option<String>,
    /// Keep the newest backup of each of the last N hours with backups.
    #[arg(long)]
    keep_hourly: Option<u32>,
    #[arg(long)]
    keep_daily: Option<u32>,
    #[arg(long)]
    keep_weekly: Option<u32>,
    #[arg(long)]
    keep_monthly: Option<u32>,
    #[arg(long)]
    keep_yearly: Option<u32>,
    /// Always keep at least this many backups.
    #[arg(long, default_value_t = 0)]
    min_keep: u32,
    /// What happens to backups not kept: recycle or delete.
    #[arg(long, default_value = "recycle")]
    action: String,
}

/// `stowage serve` settings; each overrides the config file.
#[derive(Args, Debug, Clone, Default)]
pub struct ServeArgs {
    /// TOML configuration file (keys as below, snake_case).
    #[arg(long, env = "STOWAGE_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// Data directory: repository, index, keys, generated passphrase [default: ./stowage-data].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Repository: a directory or s3://bucket/prefix [default: <data-dir>/repo].
    #[arg(long)]
    repo: Option<PathBuf>,
    /// Largest upload body in bytes [default: 1 TiB].
    #[arg(long)]
    max_upload_bytes: Option<u64>,
    /// Largest JSON request body in bytes [default: 1 MiB].
    #[arg(long)]
    max_json_bytes: Option<usize>,
    /// Uploads ingesting at once; more wait [default: 16].
    #[arg(long)]
    max_concurrent_uploads: Option<usize>,
    /// Finished jobs remembered [default: 1000].
    #[arg(long)]
    job_history: Option<usize>,
    /// Base of the URLs the server hands out, as clients reach it
    /// [default: http:// + the request's Host header].
    #[arg(long)]
    public_url: Option<String>,
    #[command(flatten)]
    s3: S3Args,
}

impl ServeArgs {
    /// Defaults, then the config file, then `STOWAGE_*` variables
    /// (`ServerConfig::load`), then these flags.
    pub fn resolve(&self) -> anyhow::Result<crate::server::ServerConfig> {
        let mut config = crate::server::ServerConfig::load(self.config.as_deref())?;
        if let Some(v) = self.listen {
            config.listen = v;
        }
        if let Some(v) = &self.data_dir {
            config.data_dir = v.clone();
        }
        if let Some(v) = &self.repo {
            config.repo = Some(v.clone());
        }
        if let Some(v) = self.max_upload_bytes {
            config.max_upload_bytes = v;
        }
        if let Some(v) = self.max_json_bytes {
            config.max_json_bytes = v;
        }
        if let Some(v) = self.max_concurrent_uploads {
            config.max_concurrent_uploads = v;
        }
        if let Some(v) = self.job_history {
            config.job_history = v;
        }
        if let Some(v) = &self.public_url {
            config.public_url = Some(v.clone());
        }
        self.s3.apply(&mut config.s3);
        Ok(config)
    }
}

/// Where the server keeps its data (for `key` commands).
#[derive(Args, Debug, Clone)]
pub struct DataDirArgs {
    /// The server's data directory.
    #[arg(long, env = "STOWAGE_DATA_DIR", default_value = "./stowage-data")]
    data_dir: PathBuf,
}

#[derive(Subcommand, Debug)]
enum UserCommand {
    /// Create a user. The password comes from STOWAGE_USER_PASSWORD, else the first
    /// line of stdin (asked twice, unechoed, on a terminal).
    Create {
        #[command(flatten)]
        data: DataDirArgs,
        /// Email address; unique, ignoring case.
        email: String,
        /// May do everything.
        #[arg(long)]
        superuser: bool,
        #[arg(long, default_value = "")]
        first_name: String,
        #[arg(long, default_value = "")]
        last_name: String,
    },
    /// List users (never passwords).
    List {
        #[command(flatten)]
        data: DataDirArgs,
        #[arg(long)]
        json: bool,
    },
    /// Set a user's password (read like `user create`'s).
    Passwd {
        #[command(flatten)]
        data: DataDirArgs,
        email: String,
    },
    /// Delete a user and revoke the keys they own.
    Delete {
        #[command(flatten)]
        data: DataDirArgs,
        email: String,
    },
}

#[derive(Subcommand, Debug)]
enum ScheduleCommand {
    /// Create a schedule. CRONTAB has five fields (minute hour day-of-month month
    /// day-of-week) or six (the same and a year, CyBorgBackup's form); quote it.
    Create {
        #[command(flatten)]
        data: DataDirArgs,
        name: String,
        crontab: String,
        /// Create it disabled.
        #[arg(long)]
        disabled: bool,
    },
    /// List schedules with their next runs.
    List {
        #[command(flatten)]
        data: DataDirArgs,
        #[arg(long)]
        json: bool,
    },
    /// Change a schedule's crontab, or enable or disable it.
    Set {
        #[command(flatten)]
        data: DataDirArgs,
        name: String,
        #[arg(long)]
        crontab: Option<String>,
        #[arg(long, conflicts_with = "disable")]
        enable: bool,
        #[arg(long)]
        disable: bool,
    },
    /// Delete a schedule.
    Delete {
        #[command(flatten)]
        data: DataDirArgs,
        name: String,
    },
    /// When a schedule fires between --from and --to (RFC 3339; default now and 31 days
    /// on).
    Calendar {
        #[command(flatten)]
        data: DataDirArgs,
        name: String,
        #[arg(long)]
        from: Option<chrono::DateTime<chrono::Utc>>,
        #[arg(long)]
        to: Option<chrono::DateTime<chrono::Utc>>,
    },
}

#[derive(Subcommand, Debug)]
enum KeyCommand {
    /// Create a key and print it once.
    Create {
        #[command(flatten)]
        data: DataDirArgs,
        /// A name saying who uses the key.
        #[arg(long)]
        name: String,
        /// reader, backup (create and read backups, never delete, recycle or purge:
        /// the key for an agent), writer or admin.
        #[arg(long, default_value = "writer")]
        role: String,
        /// Issue the key in a dialect's own shape: `backupchan` gives `bakch-<64 hex>`,
        /// the only shape Backup-chan's clients accept.
        #[arg(long)]
        dialect: Option<String>,
        /// The email of the user the key belongs to (deleting the user revokes it).
        #[arg(long)]
        user: Option<String>,
    },
    /// List keys (ids, names, roles; never secrets).
    List {
        #[command(flatten)]
        data: DataDirArgs,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by id.
    Revoke {
        #[command(flatten)]
        data: DataDirArgs,
        id: String,
    },
}

#[derive(Subcommand, Debug)]
enum RepairCommand {
    /// Set the index file aside (without opening it) and rebuild the index from the
    /// pack trailers and manifests in the repository.
    Index {
        #[command(flatten)]
        repo: RepoArgs,
    },
    /// Bring back the server's state (API keys, users, jobs history, dialect records,
    /// the link-signing secret) from the copy mirrored into the repository, replacing
    /// what the data directory holds. Stop the server first.
    State {
        #[command(flatten)]
        repo: RepoArgs,
        #[command(flatten)]
        data: DataDirArgs,
    },
}

/// Runs the command line and returns the process exit status.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli.command)) {
        Ok(commands::Outcome::Success) => ExitCode::SUCCESS,
        Ok(commands::Outcome::Problems) => ExitCode::from(EXIT_PROBLEMS),
        // A reader that stopped early (`| head`) is not a failure of the command.
        Err(error) if is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("STOWAGE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve_config(args: &[&str]) -> crate::server::ServerConfig {
        let cli = Cli::try_parse_from(args).expect("parse");
        let Command::Serve(serve) = cli.command else {
            panic!("not serve");
        };
        serve.resolve().expect("resolve")
    }

    #[test]
    fn serve_takes_an_s3_repository_and_its_settings() {
        let config = serve_config(&[
            "stowage",
            "serve",
            "--repo",
            "s3://bucket/prefix",
            "--s3-endpoint",
            "http://127.0.0.1:9000",
            "--s3-region",
            "eu-west-3",
            "--s3-path-style",
            "--s3-profile",
            "backup",
            "--s3-part-size",
            "16777216",
            "--s3-concurrent-parts",
            "8",
        ]);
        assert!(matches!(
            config.location().expect("location"),
            crate::backend::Location::S3(ref l) if l.bucket() == "bucket" && l.prefix() == "prefix"
        ));
        assert_eq!(config.state_dir().unwrap(), config.data_dir.join("state"));
        let settings = config.s3.settings().expect("settings");
        assert_eq!(settings.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(settings.region.as_deref(), Some("eu-west-3"));
        assert_eq!(settings.profile.as_deref(), Some("backup"));
        assert!(settings.path_style);
        assert_eq!(
            (settings.part_size, settings.concurrent_parts),
            (16 << 20, 8)
        );

        let off = serve_config(&["stowage", "serve", "--s3-path-style=false"]);
        assert!(!off.s3.path_style);
        let bad = serve_config(&["stowage", "serve", "--s3-endpoint", "localhost:9000"]);
        let error = bad.s3.settings().expect_err("not a URL").to_string();
        assert!(error.contains("endpoint"), "{error}");
        let small = serve_config(&["stowage", "serve", "--s3-part-size", "1048576"]);
        let error = small.s3.settings().expect_err("below 5 MiB").to_string();
        assert!(error.contains("part_size"), "{error}");
    }

    #[test]
    fn every_command_has_its_own_description() {
        use clap::CommandFactory;
        let cli = Cli::command();
        let mut seen = std::collections::HashMap::new();
        for command in cli.get_subcommands() {
            let about = command
                .get_about()
                .unwrap_or_else(|| panic!("`{}` has no description", command.get_name()))
                .to_string();
            if let Some(other) = seen.insert(about.clone(), command.get_name().to_string()) {
                panic!("`{other}` and `{}` share \"{about}\"", command.get_name());
            }
        }
        let about = |name: &str| {
            cli.find_subcommand(name)
                .and_then(|c| c.get_about())
                .map(|a| a.to_string())
                .unwrap_or_default()
        };
        assert!(about("ls").starts_with("List backups"), "{}", about("ls"));
        assert!(about("url").starts_with("Print a link"), "{}", about("url"));
    }
}
