//! One function per command: open the repository, call the engine, print the result.

use std::fs::File;
use std::io::{self, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};

use super::output::{self, ProgressBar};
use super::remote;
use super::{
    BenchCommand, Command, KeyCommand, PolicyArgs, RepairCommand, RepoArgs, ScheduleCommand,
    UserCommand,
};
use crate::backend::{DynBackend, Location, S3Backend, S3Settings};
use crate::format::config::ChunkerParams;
use crate::format::series::{parse_duration, RetentionAction, RetentionPolicy};
use crate::repo::gc::GcOptions;
use crate::repo::ingest::IngestOptions;
use crate::repo::listing::ListScope;
use crate::repo::{lookup_id, InitOptions, Progress, Repository};

/// How a command that ran to its end went.
pub enum Outcome {
    Success,
    /// The command worked but found problems (a failed check).
    Problems,
}

pub async fn run(command: Command) -> Result<Outcome> {
    match command {
        Command::Serve(args) => {
            crate::server::serve(args.resolve()?).await?;
            Ok(Outcome::Success)
        }
        Command::Key { action } => key(action).await,
        Command::User { action } => user(action).await,
        Command::Schedule { action } => schedule(action).await,
        Command::Policy { action } => super::policy::policy(action).await,
        Command::Init {
            repo,
            chunk_min,
            chunk_avg,
            chunk_max,
            compression_level,
            pack_size,
        } => {
            let options = InitOptions {
                chunker: ChunkerParams {
                    min_size: chunk_min,
                    avg_size: chunk_avg,
                    max_size: chunk_max,
                },
                compression_level,
                pack_size,
                ..InitOptions::default()
            };
            init(&repo, options).await
        }
        Command::Put {
            repo,
            series,
            json,
            no_tar_catalog,
            sha256,
            whole,
            force,
            path,
        } if repo.server.is_some() => {
            let options = super::session_put::PutOptions {
                series: &series,
                json,
                sha256,
                tar_catalog: !no_tar_catalog,
                force,
            };
            put_to_server(&repo, options, whole, &path).await
        }
        Command::Get {
            repo,
            id,
            output,
            range,
        } if repo.server.is_some() => {
            remote::get(&repo, &id, output.as_deref(), range.as_deref()).await
        }
        Command::Url {
            server,
            ttl,
            json,
            id,
        } => remote::url(&server, &id, ttl, json).await,
        Command::Agent {
            repo,
            host,
            wait,
            allow,
        } => super::agent::run(&repo, host, wait, &allow).await,
        Command::Ls {
            repo,
            series,
            recycled,
            json,
        } if repo.server.is_some() => remote::ls(&repo, series.as_deref(), recycled, json).await,
        Command::Put {
            repo,
            series,
            json,
            no_tar_catalog,
            sha256,
            whole,
            force,
            path,
        } => {
            let options = IngestOptions {
                detect_tar: !no_tar_catalog,
                ..IngestOptions::new(series.clone(), "").with_sha256(sha256)
            };
            match put(&repo, options, json, &path).await {
                Err(e) if super::beside::is_locked(&e) => {
                    let via = super::beside::through_server(&repo, e)?;
                    let options = super::session_put::PutOptions {
                        series: &series,
                        json,
                        sha256,
                        tar_catalog: !no_tar_catalog,
                        force,
                    };
                    put_to_server(&via, options, whole, &path).await
                }
                other => other,
            }
        }
        Command::Get {
            repo,
            id,
            output,
            range,
        } => match get(&repo, &id, output.as_deref(), range.as_deref()).await {
            Err(e) if super::beside::is_locked(&e) => {
                let via = super::beside::through_server(&repo, e)?;
                remote::get(&via, &id, output.as_deref(), range.as_deref()).await
            }
            other => other,
        },
        Command::Restore { repo, id, target } if repo.server.is_some() => {
            super::remote_restore::restore(&repo, &id, &target).await
        }
        Command::Restore { repo, id, target } => restore(&repo, &id, &target).await,
        Command::Ls {
            repo,
            series,
            recycled,
            json,
        } => match ls(&repo, series.as_deref(), recycled, json).await {
            Err(e) if super::beside::is_locked(&e) => {
                let via = super::beside::through_server(&repo, e)?;
                remote::ls(&via, series.as_deref(), recycled, json).await
            }
            other => other,
        },
        Command::Delete { repo, purge, ids } => delete(&repo, purge, &ids).await,
        Command::Undelete { repo, ids } => undelete(&repo, &ids).await,
        Command::Forget {
            repo,
            series,
            policy,
            dry_run,
            save,
            json,
        } => forget(&repo, &series, &policy, dry_run, save, json).await,
        Command::Gc {
            repo,
            dry_run,
            repack_below,
            stale_uploads_after,
            orphan_grace,
            json,
        } => {
            let Some(seconds) = parse_duration(&stale_uploads_after) else {
                bail!("--stale-uploads-after {stale_uploads_after:?} is not a duration (e.g. 24h, 7d)");
            };
            let Some(grace) = parse_duration(&orphan_grace) else {
                bail!("--orphan-grace {orphan_grace:?} is not a duration (e.g. 24h, 0s)");
            };
            let options = GcOptions {
                dry_run,
                repack_below,
                stale_uploads_after: std::time::Duration::from_secs(seconds),
                orphan_grace: std::time::Duration::from_secs(grace),
                ..GcOptions::default()
            };
            gc(&repo, options, json).await
        }
        Command::Catalog { repo, id, json } => catalog(&repo, &id, json).await,
        Command::Stats { repo, json } => stats(&repo, json).await,
        Command::Check {
            repo,
            read_data,
            json,
        } => check(&repo, read_data, json).await,
        Command::Passwd {
            repo,
            new_password_file,
        } => passwd(&repo, new_password_file.as_deref()).await,
        Command::Repair {
            what: RepairCommand::Index { repo },
        } => repair_index(&repo).await,
        Command::Repair {
            what: RepairCommand::State { repo, data },
        } => repair_state(&repo, &data.data_dir).await,
        Command::Bench {
            what:
                Some(BenchCommand::Scale {
                    repo,
                    chunks,
                    backups,
                    series,
                    chunk_size,
                    jobs,
                }),
            ..
        } => {
            let options = super::bench_scale::ScaleOptions {
                chunks,
                backups,
                series,
                chunk_size,
                jobs,
            };
            super::bench_scale::run(open(&repo).await?, options).await
        }
        Command::Bench {
            what: None,
            size,
            levels,
            pipeline_level,
            chunk_avg_kib,
            input,
        } => {
            super::bench::run(super::bench::BenchOptions {
                size_mib: size,
                levels: &levels,
                pipeline_level,
                chunk_avg_kib,
                input: input.as_deref(),
            })
            .await
        }
    }
}

fn read_passphrase(args: &RepoArgs) -> Result<Vec<u8>> {
    passphrase_from(
        args.password_file.as_deref(),
        "STOWAGE_PASSWORD",
        "--password-file",
    )
}

/// A passphrase from a file (trailing newlines dropped) or an environment variable.
fn passphrase_from(file: Option<&Path>, variable: &str, flag: &str) -> Result<Vec<u8>> {
    let passphrase = match file {
        Some(path) => {
            let text = std::fs::read(path)
                .with_context(|| format!("reading password file {}", path.display()))?;
            // A trailing newline is an artefact of `echo` and editors, not part of the passphrase.
            let end = text
                .iter()
                .rposition(|&b| b != b'\n' && b != b'\r')
                .map_or(0, |p| p + 1);
            text[..end].to_vec()
        }
        None => match std::env::var_os(variable) {
            Some(value) => value.into_encoded_bytes(),
            None => bail!("no passphrase: set {variable} or pass {flag} FILE"),
        },
    };
    if passphrase.is_empty() {
        bail!("the passphrase is empty");
    }
    Ok(passphrase)
}

/// The repository a command names, parsed.
pub(super) fn location(args: &RepoArgs) -> Result<Location> {
    match (&args.repo, &args.server) {
        (Some(repo), _) => Ok(Location::parse(repo)?),
        (None, Some(_)) => {
            bail!("this command works on a repository (--repo), not through a server")
        }
        (None, None) => {
            bail!("no repository: pass --repo DIR|s3://BUCKET/PREFIX or set STOWAGE_REPO")
        }
    }
}

/// The S3 settings of the flags and `STOWAGE_S3_*` variables.
fn s3_settings(args: &RepoArgs) -> Result<S3Settings> {
    let mut config = crate::server::S3Config::default();
    args.s3.apply(&mut config);
    config.settings()
}

/// The state directory: `--state-dir`, else `<repo>/state` for a directory, else a
/// directory per bucket and prefix under the user's state home.
pub(super) fn state_dir(args: &RepoArgs, location: &Location) -> Result<PathBuf> {
    if let Some(dir) = &args.state_dir {
        return Ok(dir.clone());
    }
    match location {
        Location::Local(dir) => Ok(dir.join("state")),
        Location::S3(s3) => {
            let env = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
            let home = env("XDG_STATE_HOME")
                .map(PathBuf::from)
                .or_else(|| env("HOME").map(|home| PathBuf::from(home).join(".local/state")))
                .context("no state directory for an S3 repository: pass --state-dir or set STOWAGE_STATE_DIR (neither XDG_STATE_HOME nor HOME is set)")?;
            Ok(home.join("stowage").join("s3").join(s3.file_name()))
        }
    }
}

async fn backend_and_state(args: &RepoArgs) -> Result<(DynBackend, PathBuf)> {
    let location = location(args)?;
    let backend = location.connect(&s3_settings(args)?).await?;
    let state = state_dir(args, &location)?;
    Ok((backend, state))
}

async fn open(args: &RepoArgs) -> Result<Repository> {
    let (backend, state) = backend_and_state(args).await?;
    // Held by a running server: say so before asking for a passphrase it does not need.
    let index = state.join(crate::repo::INDEX_FILE);
    if crate::index::held_elsewhere(&index) {
        let locked = crate::index::IndexError::Locked { path: index };
        return Err(super::beside::advise(args, locked.into()));
    }
    let passphrase = read_passphrase(args)?;
    let repo = Repository::open(backend, &state, &passphrase)
        .await
        .map_err(|e| super::beside::advise(args, e.into()))?;
    if let Some(report) = repo.reconciled_on_open() {
        output::print_reconciliation(report);
    }
    Ok(repo)
}

async fn init(args: &RepoArgs, options: InitOptions) -> Result<Outcome> {
    let location = location(args)?;
    let passphrase = read_passphrase(args)?;
    let backend: DynBackend = match &location {
        Location::Local(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            location.connect(&S3Settings::default()).await?
        }
        Location::S3(s3) => {
            let backend = S3Backend::connect(s3.clone(), s3_settings(args)?).await?;
            if backend.ensure_bucket().await? {
                eprintln!("created bucket {}", s3.bucket());
            }
            Arc::new(backend)
        }
    };
    let state = state_dir(args, &location)?;
    let repo = Repository::init(backend, &state, &passphrase, options).await?;
    eprintln!("created repository {} at {location}", repo.config().id);
    eprintln!("index in {}", state.display());
    eprintln!("keep the passphrase safe: without it the repository cannot be read");
    Ok(Outcome::Success)
}

/// Backs up `path`; `options` gives everything but the source name.
/// `put` against a server: chunked here (only what the server lacks is sent), or with
/// `--whole` as one plain upload.
async fn put_to_server(
    args: &RepoArgs,
    options: super::session_put::PutOptions<'_>,
    whole: bool,
    path: &Path,
) -> Result<Outcome> {
    if whole {
        if path.is_dir() {
            bail!("--whole sends one stream: send a tar of the directory, or leave --whole out");
        }
        return remote::put(args, options.series, options.json, options.sha256, path).await;
    }
    super::session_put::put(args, options, path).await
}

async fn put(
    args: &RepoArgs,
    mut options: IngestOptions,
    json: bool,
    path: &Path,
) -> Result<Outcome> {
    let repo = open(args).await?;
    let progress = Arc::new(Progress::new());
    let is_stdin = path == Path::new("-");
    options.source = if is_stdin {
        "-".to_string()
    } else {
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string())
    };
    let is_dir = !is_stdin
        && std::fs::metadata(path)
            .with_context(|| format!("reading {}", path.display()))?
            .is_dir();
    let bar = ProgressBar::start(progress.clone(), "backing up");
    let result = if is_dir {
        repo.backup_tree(path, options, progress.clone()).await
    } else {
        let source: Box<dyn Read + Send> = if is_stdin {
            Box::new(io::stdin())
        } else {
            let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
            progress.set_total(file.metadata().map(|m| m.len()).unwrap_or(0));
            Box::new(file)
        };
        repo.backup_stream(source, options, progress.clone())
            .await
            .map(|m| (m, Vec::new()))
    };
    bar.finish();
    let (manifest, skipped) = result?;
    for reason in &skipped {
        eprintln!("warning: skipped {reason}");
    }
    output::print_backup(&manifest, json)?;
    Ok(Outcome::Success)
}

/// Parses an inclusive `START-END` or `START-` range into a half-open one.
pub(super) fn parse_range(text: &str, size: u64) -> Result<std::ops::Range<u64>> {
    let (start, end) = text
        .split_once('-')
        .with_context(|| format!("range {text:?} is not START-END"))?;
    let start: u64 = start
        .trim()
        .parse()
        .with_context(|| format!("range start {start:?} is not a number"))?;
    let end: u64 = if end.trim().is_empty() {
        size
    } else {
        let last: u64 = end
            .trim()
            .parse()
            .with_context(|| format!("range end {end:?} is not a number"))?;
        last.checked_add(1).context("range end is too large")?
    };
    if start > end || end > size {
        bail!("range {text} is outside the backup of {size} bytes");
    }
    Ok(start..end)
}

async fn get(
    args: &RepoArgs,
    id: &str,
    output: Option<&Path>,
    range: Option<&str>,
) -> Result<Outcome> {
    let repo = open(args).await?;
    let manifest = repo.backup(&lookup_id(id)?)?;
    let range = range.map(|r| parse_range(r, manifest.size)).transpose()?;
    let out: Box<dyn Write + Send> = match output {
        Some(path) => Box::new(io::BufWriter::with_capacity(
            1 << 20,
            File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => Box::new(io::BufWriter::with_capacity(1 << 20, io::stdout())),
    };
    let progress = Arc::new(Progress::new());
    progress.set_total(range.as_ref().map_or(manifest.size, |r| r.end - r.start));
    let bar = ProgressBar::start(progress.clone(), "restoring");
    let result = repo
        .export(
            &manifest,
            range,
            Box::new(CountingWriter {
                inner: out,
                progress: progress.clone(),
            }),
        )
        .await;
    bar.finish();
    if let (Err(_), Some(path)) = (&result, output) {
        // Never leave a partial or unverified output file that looks like a restore.
        let _ = std::fs::remove_file(path);
    }
    result?;
    Ok(Outcome::Success)
}

struct CountingWriter {
    inner: Box<dyn Write + Send>,
    progress: Arc<Progress>,
}

impl Write for CountingWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(data)?;
        self.progress.add_done(n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

async fn restore(args: &RepoArgs, id: &str, target: &Path) -> Result<Outcome> {
    let repo = open(args).await?;
    let manifest = repo.backup(&lookup_id(id)?)?;
    let progress = Arc::new(Progress::new());
    let bar = ProgressBar::start(progress.clone(), "restoring");
    let result = repo.restore_tree(&manifest, target, progress).await;
    bar.finish();
    let bytes = result?;
    eprintln!(
        "restored {} entries, {} into {}",
        manifest.catalog.as_ref().map_or(0, |c| c.entries),
        output::bytes(bytes),
        target.display()
    );
    Ok(Outcome::Success)
}

async fn ls(args: &RepoArgs, series: Option<&str>, recycled: bool, json: bool) -> Result<Outcome> {
    let repo = open(args).await?;
    let scope = series.map_or(ListScope::All, ListScope::Series);
    let backups = repo.backups_of(scope, Some(recycled))?;
    output::print_backups(&backups, json)?;
    Ok(Outcome::Success)
}

async fn delete(args: &RepoArgs, purge: bool, ids: &[String]) -> Result<Outcome> {
    let repo = open(args).await?;
    for id in ids {
        if purge {
            repo.purge(&lookup_id(id)?).await?;
            eprintln!("purged {id}");
        } else {
            repo.recycle(&lookup_id(id)?).await?;
            eprintln!("recycled {id}");
        }
    }
    Ok(Outcome::Success)
}

async fn undelete(args: &RepoArgs, ids: &[String]) -> Result<Outcome> {
    let repo = open(args).await?;
    for id in ids {
        repo.undelete(&lookup_id(id)?).await?;
        eprintln!("restored {id} from the recycle bin");
    }
    Ok(Outcome::Success)
}

pub(super) fn policy_from_args(args: &PolicyArgs) -> Result<RetentionPolicy> {
    let keep_within_secs = args
        .keep_within
        .as_deref()
        .map(|text| {
            parse_duration(text).with_context(|| {
                format!("--keep-within {text:?} is not a duration like 30d, 12h or 1y6m")
            })
        })
        .transpose()?;
    let action = match args.action.as_str() {
        "recycle" => RetentionAction::Recycle,
        "delete" => RetentionAction::Delete,
        other => bail!("--action {other:?} must be recycle or delete"),
    };
    Ok(RetentionPolicy {
        keep_last: args.keep_last,
        keep_within_secs,
        keep_hourly: args.keep_hourly,
        keep_daily: args.keep_daily,
        keep_weekly: args.keep_weekly,
        keep_monthly: args.keep_monthly,
        keep_yearly: args.keep_yearly,
        min_keep: args.min_keep,
        action,
    })
}

async fn forget(
    args: &RepoArgs,
    series: &str,
    policy_args: &PolicyArgs,
    dry_run: bool,
    save: bool,
    json: bool,
) -> Result<Outcome> {
    let repo = open(args).await?;
    let mut policy = policy_from_args(policy_args)?;
    if policy.is_empty() {
        match repo.series(series)? {
            Some(record) if !record.policy.is_empty() => policy = record.policy,
            _ => bail!("no retention rule given and series {series} has no stored policy"),
        }
    } else if save {
        repo.put_series(series, policy.clone()).await?;
    }
    let decisions =
        crate::service::forget::forget(&repo, series, &policy, chrono::Utc::now(), dry_run).await?;
    output::print_decisions(&decisions, policy.action, dry_run, json)?;
    Ok(Outcome::Success)
}

async fn gc(args: &RepoArgs, options: GcOptions, json: bool) -> Result<Outcome> {
    let repack_below = options.repack_below;
    if !(0.0..=1.0).contains(&repack_below) {
        bail!("--repack-below {repack_below} must be between 0 and 1");
    }
    let repo = open(args).await?;
    let progress = Arc::new(Progress::new());
    let report = repo.gc(options, progress).await?;
    output::print_gc(&report, json)?;
    Ok(Outcome::Success)
}

async fn catalog(args: &RepoArgs, id: &str, json: bool) -> Result<Outcome> {
    let repo = open(args).await?;
    let manifest = repo.backup(&lookup_id(id)?)?;
    if manifest.catalog.is_none() {
        bail!("backup {id} has no catalog (it is neither a tree nor a tar stream)");
    }
    let (sender, receiver) = std::sync::mpsc::sync_channel(1024);
    let printer = std::thread::spawn(move || output::print_catalog(receiver, json));
    let result = repo
        .catalog(
            &manifest,
            Box::new(move |entry| {
                sender
                    .send(entry)
                    .map_err(|_| crate::repo::RepoError::Cancelled)
            }),
        )
        .await;
    let printed = printer
        .join()
        .map_err(|_| anyhow::anyhow!("catalog printer panicked"))?;
    match result {
        Err(crate::repo::RepoError::Cancelled) => printed?,
        other => {
            other?;
            printed?;
        }
    }
    Ok(Outcome::Success)
}

async fn stats(args: &RepoArgs, json: bool) -> Result<Outcome> {
    let repo = open(args).await?;
    let stats = repo.stats()?;
    output::print_stats(&stats, json)?;
    Ok(Outcome::Success)
}

async fn check(args: &RepoArgs, read_data: bool, json: bool) -> Result<Outcome> {
    let repo = open(args).await?;
    let progress = Arc::new(Progress::new());
    let bar = ProgressBar::start(progress.clone(), "checking");
    let report = repo.check(read_data, progress).await;
    bar.finish();
    let report = report?;
    output::print_check(&report, json)?;
    Ok(if report.is_ok() {
        Outcome::Success
    } else {
        Outcome::Problems
    })
}

async fn repair_index(args: &RepoArgs) -> Result<Outcome> {
    let (backend, state) = backend_and_state(args).await?;
    let passphrase = read_passphrase(args)?;
    let (repo, report, aside) =
        Repository::open_rebuilding_index(backend, &state, &passphrase).await?;
    drop(repo);
    // A rebuild's transactions leave the file about half free space: give it back.
    eprintln!("compacting the index");
    match tokio::task::spawn_blocking({
        let state = state.clone();
        move || Repository::compact_index(&state)
    })
    .await?
    {
        Ok((before, after)) => eprintln!(
            "index compacted: {} MB -> {} MB",
            before / 1_000_000,
            after / 1_000_000
        ),
        Err(error) => eprintln!("warning: the index was rebuilt but not compacted: {error}"),
    }
    if let Some(aside) = aside {
        eprintln!(
            "the previous index file was moved to {} (delete it once the repository checks clean)",
            aside.display()
        );
    }
    for reason in &report.skipped {
        eprintln!("error: left out {reason}");
    }
    eprintln!(
        "index rebuilt: {} packs, {} chunks, {} backups",
        report.packs, report.chunks, report.backups
    );
    Ok(if report.skipped.is_empty() {
        Outcome::Success
    } else {
        eprintln!(
            "{} objects could not be read and are not in the index (listed above); run `stowage check` to see what they affect",
            report.skipped.len()
        );
        Outcome::Problems
    })
}

async fn repair_state(args: &RepoArgs, data_dir: &Path) -> Result<Outcome> {
    let store = crate::state::StateStore::open(&data_dir.join(crate::state::STATE_FILE))
        .context("the server must be stopped to replace its state")?;
    let repo = open(args).await?;
    if !crate::service::mirror::restore(&repo, &store, data_dir).await? {
        bail!("the repository holds no server state (no server ever ran on it, or it predates mirroring)");
    }
    let export = store.export()?;
    eprintln!(
        "server state restored into {}: {} keys, {} users, {} jobs, dialect records",
        data_dir.display(),
        export.keys.len(),
        export.users.len(),
        export.jobs.len()
    );
    Ok(Outcome::Success)
}

/// True when progress bars should be drawn.
pub fn stderr_is_terminal() -> bool {
    io::stderr().is_terminal()
}

async fn key(action: KeyCommand) -> Result<Outcome> {
    use crate::service::control::{ControlReply, ControlRequest};
    use crate::service::keys::Role;
    let (data, request) = match action {
        KeyCommand::Create {
            data,
            name,
            role,
            dialect,
            user,
        } => {
            let role: Role = role.parse()?;
            let request = ControlRequest::KeyCreate {
                name,
                role,
                dialect,
                user,
            };
            (data, request)
        }
        KeyCommand::List { data, json } => {
            let reply = super::control::run(&data.data_dir, ControlRequest::KeyList).await?;
            let ControlReply::Keys { records } = reply else {
                return reply_error(reply);
            };
            output::print_keys(&records, json);
            return Ok(Outcome::Success);
        }
        KeyCommand::Revoke { data, id } => {
            let reply =
                super::control::run(&data.data_dir, ControlRequest::KeyRevoke { id: id.clone() })
                    .await?;
            let ControlReply::Done = reply else {
                return reply_error(reply);
            };
            eprintln!("revoked key {id}");
            return Ok(Outcome::Success);
        }
    };
    match super::control::run(&data.data_dir, request).await? {
        ControlReply::KeyCreated { record, key } => {
            eprintln!(
                "created {} key {} ({}); it is shown only once:",
                record.role, record.id, record.name
            );
            println!("{key}");
        }
        other => return reply_error(other),
    }
    Ok(Outcome::Success)
}

async fn user(action: UserCommand) -> Result<Outcome> {
    use crate::service::control::{ControlReply, ControlRequest};
    use crate::service::users::NewUser;
    let (data, request) = match action {
        UserCommand::Create {
            data,
            email,
            superuser,
            first_name,
            last_name,
        } => {
            let password = super::control::read_new_password()?;
            let user = NewUser {
                email,
                first_name,
                last_name,
                superuser,
            };
            (data, ControlRequest::UserCreate { user, password })
        }
        UserCommand::List { data, json } => {
            let reply = super::control::run(&data.data_dir, ControlRequest::UserList).await?;
            let ControlReply::Users { users } = reply else {
                return reply_error(reply);
            };
            output::print_users(&users, json)?;
            return Ok(Outcome::Success);
        }
        UserCommand::Passwd { data, email } => {
            let password = super::control::read_new_password()?;
            (data, ControlRequest::UserPasswd { email, password })
        }
        UserCommand::Delete { data, email } => (data, ControlRequest::UserDelete { email }),
    };
    match super::control::run(&data.data_dir, request).await? {
        ControlReply::User { user } => eprintln!(
            "created {}user {}",
            if user.superuser { "super" } else { "" },
            user.email
        ),
        ControlReply::Done => eprintln!("done"),
        other => return reply_error(other),
    }
    Ok(Outcome::Success)
}

async fn schedule(action: ScheduleCommand) -> Result<Outcome> {
    use crate::service::control::{ControlReply, ControlRequest};
    let (data, request, json) = match action {
        ScheduleCommand::Create {
            data,
            name,
            crontab,
            disabled,
        } => (
            data,
            ControlRequest::ScheduleCreate {
                name,
                crontab,
                enabled: !disabled,
            },
            false,
        ),
        ScheduleCommand::List { data, json } => (data, ControlRequest::ScheduleList, json),
        ScheduleCommand::Set {
            data,
            name,
            crontab,
            enable,
            disable,
        } => {
            let enabled = match (enable, disable) {
                (true, _) => Some(true),
                (_, true) => Some(false),
                _ => None,
            };
            if crontab.is_none() && enabled.is_none() {
                bail!("nothing to change: give --crontab, --enable or --disable");
            }
            (
                data,
                ControlRequest::ScheduleSet {
                    name,
                    crontab,
                    enabled,
                },
                false,
            )
        }
        ScheduleCommand::Delete { data, name } => {
            (data, ControlRequest::ScheduleDelete { name }, false)
        }
        ScheduleCommand::Calendar {
            data,
            name,
            from,
            to,
        } => {
            let from = from.unwrap_or_else(chrono::Utc::now);
            let to = to.unwrap_or(from + chrono::Duration::days(31));
            (
                data,
                ControlRequest::ScheduleCalendar { name, from, to },
                false,
            )
        }
    };
    match super::control::run(&data.data_dir, request).await? {
        ControlReply::Schedule { schedule } => output::print_schedules(&[schedule], false)?,
        ControlReply::Schedules { schedules } => output::print_schedules(&schedules, json)?,
        ControlReply::Calendar { occurrences } => {
            for time in occurrences {
                println!("{time}");
            }
        }
        ControlReply::Done => eprintln!("done"),
        other => return reply_error(other),
    }
    Ok(Outcome::Success)
}

fn reply_error(reply: crate::service::control::ControlReply) -> Result<Outcome> {
    match reply {
        crate::service::control::ControlReply::Error { message } => bail!("{message}"),
        other => bail!("unexpected answer from the state store: {other:?}"),
    }
}

async fn passwd(args: &RepoArgs, new_file: Option<&Path>) -> Result<Outcome> {
    let repo = open(args).await?;
    let new = passphrase_from(new_file, "STOWAGE_NEW_PASSWORD", "--new-password-file")?;
    repo.change_passphrase(&new, crate::pipeline::keys::KdfCost::default())
        .await?;
    eprintln!("passphrase changed; the old one no longer opens the repository");
    Ok(Outcome::Success)
}
