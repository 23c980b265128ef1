//! Server-side path backups and restores for the fa dialect: jobs with caller-chosen
//! numeric ids that back up a directory of the server's own file system, or restore one,
//! confined to the caller's home `<root>/users/<username>`.
//!
//! Each user's job records (and whether their repository was destroyed) live in the
//! dialect's document of the state store (`fa`), replaced in one durable transaction on
//! every change of status; progress is kept in memory only. Records still pending or running when the server starts are
//! marked failed. Backups go to the series `fa-<username>`, with the path relative to the
//! home as their source. No HTTP types in or out.

use std::collections::{BTreeMap, HashMap};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use super::jobs::{JobFailure, JobKind as CoreJobKind, JobRegistry};
use crate::error::ErrorKind;
use crate::id::BackupId;
use crate::repo::ingest::IngestOptions;
use crate::repo::{Progress, RepoError, Repository};

/// Longest accepted username: `fa-<username>` must stay a valid series name.
pub const MAX_USERNAME_LEN: usize = 64;

/// The extra text of a job the server found running when it started.
pub const RESTARTED: &str = "server restarted while the job was running";
/// The extra text of a cancelled job.
pub const CANCELLED: &str = "cancelled";

const STATE_VERSION: u32 = 1;

/// The status of a backup or restore, spelled as fa spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FaStatus {
    Pending,
    Running,
    Success,
    Failed,
    Cancel,
}

impl FaStatus {
    pub fn is_active(self) -> bool {
        matches!(self, FaStatus::Pending | FaStatus::Running)
    }
}

/// Sizes of a job: for a backup, logical bytes (read so far while running) and bytes it
/// added to storage; for a restore, bytes restored and 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaStat {
    pub total_size: u64,
    pub pack_size: u64,
}

/// A backup job as the dialect shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupJobView {
    pub id: i64,
    /// The absolute path backed up.
    pub path: String,
    pub status: FaStatus,
    pub stat: FaStat,
    pub extra: String,
}

/// A restore job as the dialect shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreJobView {
    pub restore_id: i64,
    pub backup_id: i64,
    /// The absolute destination.
    pub dst_path: String,
    pub status: FaStatus,
    pub stat: FaStat,
    pub extra: String,
}

#[derive(Debug, thiserror::Error)]
pub enum FaError {
    #[error("invalid username {0:?}: it must be 1 to {MAX_USERNAME_LEN} letters, digits, '-', '_' or '.', not starting with '.'")]
    InvalidUsername(String),
    #[error("invalid path, must not operate on other user's directory or file: {0}")]
    Confinement(String),
    #[error("{0}")]
    InvalidInput(String),
    #[error("err {action} [ ID={id} ]: no such record")]
    NoSuchRecord { action: &'static str, id: i64 },
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read or save the fa job records: {0}")]
    Records(#[from] crate::state::StateError),
}

impl FaError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            FaError::InvalidUsername(_) => ErrorKind::Unauthorized,
            FaError::Confinement(_) | FaError::InvalidInput(_) => ErrorKind::InvalidInput,
            FaError::NoSuchRecord { .. } => ErrorKind::NotFound,
            FaError::Repo(e) => e.kind(),
            FaError::Io { .. } => ErrorKind::Internal,
            FaError::Records(e) => e.kind(),
        }
    }

    fn io(path: &Path, source: std::io::Error) -> FaError {
        FaError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct BackupRecord {
    path: String,
    status: FaStatus,
    stat: FaStat,
    extra: String,
    /// The stowage backup holding the last successful run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    backup: Option<BackupId>,
    /// Which run of this id the record describes; a task only updates its own run.
    #[serde(default)]
    run: u64,
    /// The run's job in the server's job system.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    job: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct RestoreRecord {
    backup_id: i64,
    dst_path: String,
    status: FaStatus,
    stat: FaStat,
    extra: String,
    #[serde(default)]
    run: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    job: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct UserState {
    #[serde(default)]
    destroyed: bool,
    #[serde(default)]
    backups: BTreeMap<i64, BackupRecord>,
    #[serde(default)]
    restores: BTreeMap<i64, RestoreRecord>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct StateFile {
    version: u32,
    #[serde(default)]
    users: BTreeMap<String, UserState>,
    /// Next run number, shared by every job.
    #[serde(default)]
    next_run: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum JobKind {
    Backup,
    Restore,
}

type JobKey = (String, JobKind, i64);

/// A job being worked on.
struct Running {
    run: u64,
    progress: Arc<Progress>,
}

struct Inner {
    state: StateFile,
    running: HashMap<JobKey, Running>,
}

pub struct FaService {
    repo: Repository,
    /// Canonical root; homes are `<root>/users/<username>`.
    root: PathBuf,
    /// The root as configured (made absolute), also accepted in absolute paths.
    configured_root: PathBuf,
    records: crate::service::documents::Document,
    /// The secret signing fa users' tokens (HS512); the dialect verifies them.
    jwt_secret: Option<Vec<u8>>,
    inner: Mutex<Inner>,
    /// Backups and restores are jobs of the server's job system, run as tasks of its set.
    jobs: Arc<JobRegistry>,
}

/// Checks that `name` can name a home directory and a series.
pub fn validate_username(name: &str) -> Result<(), FaError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_USERNAME_LEN
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(FaError::InvalidUsername(
            name.chars().take(MAX_USERNAME_LEN + 1).collect(),
        ))
    }
}

/// The series holding a user's backups.
pub fn series_of(user: &str) -> String {
    format!("fa-{user}")
}

impl FaService {
    /// Opens the service, reading the job records; jobs that were running are marked
    /// failed.
    pub fn open(
        repo: Repository,
        root: &Path,
        records: crate::service::documents::Document,
        jwt_secret: Option<Vec<u8>>,
        jobs: Arc<JobRegistry>,
    ) -> Result<FaService, FaError> {
        std::fs::create_dir_all(root.join("users"))
            .map_err(|e| FaError::io(&root.join("users"), e))?;
        let configured_root = std::path::absolute(root).map_err(|e| FaError::io(root, e))?;
        let root = std::fs::canonicalize(root).map_err(|e| FaError::io(root, e))?;
        let mut state = match records.load()? {
            Some(bytes) => serde_json::from_slice::<StateFile>(&bytes).map_err(|e| {
                FaError::InvalidInput(format!("the fa job records are not valid: {e}"))
            })?,
            None => StateFile {
                version: STATE_VERSION,
                ..StateFile::default()
            },
        };
        if state.version != STATE_VERSION {
            return Err(FaError::InvalidInput(format!(
                "the fa job records have version {}, this stowage reads {STATE_VERSION}",
                state.version
            )));
        }
        let mut changed = false;
        for user in state.users.values_mut() {
            for record in user.backups.values_mut() {
                if record.status.is_active() {
                    record.status = FaStatus::Failed;
                    record.extra = RESTARTED.into();
                    changed = true;
                }
            }
            for record in user.restores.values_mut() {
                if record.status.is_active() {
                    record.status = FaStatus::Failed;
                    record.extra = RESTARTED.into();
                    changed = true;
                }
            }
        }
        let service = FaService {
            repo,
            root,
            configured_root,
            records,
            jwt_secret,
            inner: Mutex::new(Inner {
                state,
                running: HashMap::new(),
            }),
            jobs,
        };
        if changed {
            service.persist(&service.lock())?;
        }
        Ok(service)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The secret signing fa users' tokens, when one is configured.
    pub fn jwt_secret(&self) -> Option<&[u8]> {
        self.jwt_secret.as_deref()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes the records (one durable transaction of the state store).
    fn persist(&self, inner: &Inner) -> Result<(), FaError> {
        let bytes = serde_json::to_vec(&inner.state).expect("job records serialize");
        Ok(self.records.save(&bytes)?)
    }

    /// Persists, logging failures: used where the change already happened in memory.
    fn persist_logged(&self, inner: &Inner) {
        if let Err(error) = self.persist(inner) {
            tracing::error!(%error, "cannot save the fa job records");
        }
    }

    /// The user's home, created when missing, in canonical form.
    fn home(&self, user: &str) -> Result<PathBuf, FaError> {
        validate_username(user)?;
        let home = self.root.join("users").join(user);
        std::fs::create_dir_all(&home).map_err(|e| FaError::io(&home, e))?;
        let canonical = std::fs::canonicalize(&home).map_err(|e| FaError::io(&home, e))?;
        if !canonical.starts_with(&self.root) {
            return Err(FaError::Confinement(format!(
                "the home of {user} leads outside the fa root"
            )));
        }
        Ok(canonical)
    }

    /// Maps a caller's path into `home`: relative paths are taken from the home, absolute
    /// ones must lie in it; `..` is refused, and so is any path whose existing part
    /// resolves (through symlinks) outside the home. Returns the path (not resolved) and
    /// its part relative to the home.
    fn confine(&self, user: &str, home: &Path, raw: &str) -> Result<(PathBuf, String), FaError> {
        if raw.contains('\0') {
            return Err(FaError::InvalidInput("path contains a NUL byte".into()));
        }
        let given = Path::new(raw);
        let relative = if given.is_absolute() {
            let configured = self.configured_root.join("users").join(user);
            given
                .strip_prefix(home)
                .or_else(|_| given.strip_prefix(&configured))
                .map_err(|_| {
                    FaError::Confinement(format!("{raw} is outside your home {}", home.display()))
                })?
        } else {
            given
        };
        let mut clean = PathBuf::new();
        for component in relative.components() {
            match component {
                Component::Normal(part) => clean.push(part),
                Component::CurDir => {}
                Component::ParentDir => {
                    return Err(FaError::Confinement(format!("{raw} contains '..'")))
                }
                Component::RootDir | Component::Prefix(_) => {
                    return Err(FaError::Confinement(format!("{raw} is not a plain path")))
                }
            }
        }
        let path = home.join(&clean);
        // The deepest existing ancestor (the path itself when it exists), resolved.
        let mut probe = path.clone();
        loop {
            match std::fs::canonicalize(&probe) {
                Ok(resolved) => {
                    if !resolved.starts_with(home) {
                        return Err(FaError::Confinement(format!(
                            "{raw} leads outside your home through a symbolic link"
                        )));
                    }
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    // A dangling symlink must not be created through either.
                    if std::fs::symlink_metadata(&probe).is_ok() {
                        return Err(FaError::Confinement(format!(
                            "{raw} goes through a dangling symbolic link"
                        )));
                    }
                    if !probe.pop() {
                        break;
                    }
                }
                Err(e) => return Err(FaError::io(&probe, e)),
            }
        }
        let relative = clean.to_string_lossy().into_owned();
        Ok((path, relative))
    }

    fn user_mut<'a>(inner: &'a mut Inner, user: &str) -> &'a mut UserState {
        inner.state.users.entry(user.to_string()).or_default()
    }

    fn next_run(inner: &mut Inner) -> u64 {
        inner.state.next_run += 1;
        inner.state.next_run
    }

    /// Starts backing up `path` as backup `id`. An id whose job is running is left
    /// alone; an existing finished id runs again.
    pub fn start_backup(self: &Arc<Self>, user: &str, id: i64, path: &str) -> Result<(), FaError> {
        let home = self.home(user)?;
        let (absolute, relative) = self.confine(user, &home, path)?;
        let metadata = std::fs::metadata(&absolute)
            .map_err(|e| FaError::InvalidInput(format!("cannot back up {path}: {e}")))?;
        if !metadata.is_dir() {
            return Err(FaError::InvalidInput(format!(
                "cannot back up {path}: not a directory (the fa dialect backs up directories)"
            )));
        }
        let key: JobKey = (user.to_string(), JobKind::Backup, id);
        let progress = Arc::new(Progress::new());
        let (run, job) = {
            let mut inner = self.lock();
            if inner.running.contains_key(&key) {
                tracing::info!(user, id, "backup already running: request ignored");
                return Ok(());
            }
            let run = Self::next_run(&mut inner);
            let job = self.jobs.begin(
                CoreJobKind::FaBackup,
                Some(format!("fa backup {id} of {user}: {}", absolute.display())),
                progress.clone(),
            );
            let state = Self::user_mut(&mut inner, user);
            state.destroyed = false;
            let previous = state.backups.get(&id).and_then(|r| r.backup.clone());
            state.backups.insert(
                id,
                BackupRecord {
                    path: absolute.display().to_string(),
                    status: FaStatus::Running,
                    stat: FaStat::default(),
                    extra: String::new(),
                    backup: previous,
                    run,
                    job: Some(job.clone()),
                },
            );
            inner.running.insert(
                key.clone(),
                Running {
                    run,
                    progress: progress.clone(),
                },
            );
            if let Err(error) = self.persist(&inner) {
                inner.running.remove(&key);
                drop(inner);
                self.jobs.end(&job, Err(failure(&error)));
                return Err(error);
            }
            (run, job)
        };
        let service = self.clone();
        let options = IngestOptions {
            detect_tar: false,
            ..IngestOptions::new(
                series_of(user),
                if relative.is_empty() {
                    ".".into()
                } else {
                    relative
                },
            )
        };
        self.jobs.tasks().spawn_job(progress.clone(), async move {
            let outcome = service
                .repo
                .backup_tree(&absolute, options, progress.clone())
                .await
                .map(|(manifest, _skipped)| manifest);
            service
                .finish_backup(key, run, &job, &progress, outcome)
                .await;
        });
        Ok(())
    }

    async fn finish_backup(
        &self,
        key: JobKey,
        run: u64,
        job: &str,
        progress: &Progress,
        outcome: Result<crate::format::manifest::BackupManifest, RepoError>,
    ) {
        let (user, _, id) = key.clone();
        // A run cancelled after its last check still committed: undo it, so a cancelled
        // job leaves nothing behind.
        let outcome = match outcome {
            Ok(manifest) if progress.is_cancelled() => {
                self.purge_quietly(&manifest.id).await;
                Err(RepoError::Cancelled)
            }
            other => other,
        };
        let job_outcome = match &outcome {
            Ok(manifest) => Ok(serde_json::json!({
                "backup": manifest.id,
                "size": manifest.size,
                "stored_bytes": manifest.stored_bytes,
            })),
            Err(error) => Err(JobFailure {
                kind: error.kind(),
                message: error.to_string(),
                cancelled: matches!(error, RepoError::Cancelled),
            }),
        };
        // The new backup is recorded (durably) before the one it replaces is purged, and
        // the run reads as a success only after that purge: a client that sees the
        // success sees exactly one backup. Killed in between, the record names the new
        // backup and the old one stays as an unreferenced backup of the series.
        let mut orphan = None;
        let mut obsolete = None;
        if let Ok(manifest) = &outcome {
            let mut inner = self.lock();
            let record = Self::backup_of_run(&mut inner, &user, id, run);
            match record {
                Some(record) => {
                    obsolete = record
                        .backup
                        .replace(manifest.id.clone())
                        .filter(|old| *old != manifest.id);
                    self.persist_logged(&inner);
                }
                // The record was deleted (or the repository destroyed) meanwhile.
                None => orphan = Some(manifest.id.clone()),
            }
        }
        if let Some(old) = obsolete {
            self.purge_quietly(&old).await;
        }
        if let Some(id) = orphan {
            self.purge_quietly(&id).await;
        }
        // The server's job system hears of the end before fa's record shows it: a client
        // that sees the fa status end finds the job ended too.
        self.jobs.end(job, job_outcome);
        {
            let mut inner = self.lock();
            if inner.running.get(&key).map(|r| r.run) == Some(run) {
                inner.running.remove(&key);
            }
            let record = Self::backup_of_run(&mut inner, &user, id, run);
            match (record, outcome) {
                (Some(record), Ok(manifest)) => {
                    record.status = FaStatus::Success;
                    record.stat = FaStat {
                        total_size: manifest.size,
                        pack_size: manifest.stored_bytes,
                    };
                    record.extra = String::new();
                }
                (Some(record), Err(RepoError::Cancelled)) => {
                    record.status = FaStatus::Cancel;
                    record.stat.total_size = progress.done();
                    record.extra = CANCELLED.into();
                }
                (Some(record), Err(error)) => {
                    record.status = FaStatus::Failed;
                    record.stat.total_size = progress.done();
                    record.extra = error.to_string();
                }
                // Deleted between the two steps: the deletion purged what the record named.
                (None, _) => {}
            }
            self.persist_logged(&inner);
        }
    }

    /// The record of backup `id` while it still belongs to run `run`.
    fn backup_of_run<'a>(
        inner: &'a mut Inner,
        user: &str,
        id: i64,
        run: u64,
    ) -> Option<&'a mut BackupRecord> {
        inner
            .state
            .users
            .get_mut(user)
            .and_then(|u| u.backups.get_mut(&id))
            .filter(|r| r.run == run)
    }

    async fn purge_quietly(&self, backup: &BackupId) {
        match self.repo.purge(backup).await {
            Ok(()) | Err(RepoError::BackupNotFound { .. }) => {}
            Err(error) => tracing::warn!(%backup, %error, "cannot purge an fa backup"),
        }
    }

    fn live_stat(&self, inner: &Inner, key: &JobKey, stat: FaStat, run: u64) -> FaStat {
        match inner.running.get(key) {
            Some(running) if running.run == run => FaStat {
                total_size: running.progress.done(),
                pack_size: 0,
            },
            _ => stat,
        }
    }

    /// A backup job, `None` when there is no such record.
    pub fn backup(&self, user: &str, id: i64) -> Result<Option<BackupJobView>, FaError> {
        validate_username(user)?;
        let inner = self.lock();
        let Some(record) = inner.state.users.get(user).and_then(|u| u.backups.get(&id)) else {
            return Ok(None);
        };
        let key = (user.to_string(), JobKind::Backup, id);
        Ok(Some(BackupJobView {
            id,
            path: record.path.clone(),
            status: record.status,
            stat: self.live_stat(&inner, &key, record.stat, record.run),
            extra: record.extra.clone(),
        }))
    }

    /// A restore job, `None` when there is no such record.
    pub fn restore(&self, user: &str, id: i64) -> Result<Option<RestoreJobView>, FaError> {
        validate_username(user)?;
        let inner = self.lock();
        let Some(record) = inner
            .state
            .users
            .get(user)
            .and_then(|u| u.restores.get(&id))
        else {
            return Ok(None);
        };
        let key = (user.to_string(), JobKind::Restore, id);
        Ok(Some(RestoreJobView {
            restore_id: id,
            backup_id: record.backup_id,
            dst_path: record.dst_path.clone(),
            status: record.status,
            stat: self.live_stat(&inner, &key, record.stat, record.run),
            extra: record.extra.clone(),
        }))
    }

    /// Asks a job to stop; it ends as `cancel`. Known ids that are not running are left
    /// as they are.
    fn cancel(&self, user: &str, kind: JobKind, id: i64) -> Result<(), FaError> {
        validate_username(user)?;
        let inner = self.lock();
        let known = inner.state.users.get(user).is_some_and(|u| match kind {
            JobKind::Backup => u.backups.contains_key(&id),
            JobKind::Restore => u.restores.contains_key(&id),
        });
        if !known {
            return Err(FaError::NoSuchRecord {
                action: match kind {
                    JobKind::Backup => "cancel backup",
                    JobKind::Restore => "cancel restore",
                },
                id,
            });
        }
        if let Some(running) = inner.running.get(&(user.to_string(), kind, id)) {
            running.progress.cancel();
        }
        Ok(())
    }

    fn cancel_all(&self, user: &str, kind: Option<JobKind>) -> usize {
        let inner = self.lock();
        let mut n = 0;
        for ((owner, job_kind, _), running) in &inner.running {
            if owner == user && kind.is_none_or(|k| k == *job_kind) {
                running.progress.cancel();
                n += 1;
            }
        }
        n
    }

    pub fn cancel_backup(&self, user: &str, id: i64) -> Result<(), FaError> {
        self.cancel(user, JobKind::Backup, id)
    }

    pub fn cancel_restore(&self, user: &str, id: i64) -> Result<(), FaError> {
        self.cancel(user, JobKind::Restore, id)
    }

    /// Backups and restores of every user now pending or running.
    pub fn jobs_in_flight(&self) -> usize {
        self.lock().running.len()
    }

    /// Cancels every running backup of `user`; returns how many.
    pub fn cancel_all_backups(&self, user: &str) -> Result<usize, FaError> {
        validate_username(user)?;
        Ok(self.cancel_all(user, Some(JobKind::Backup)))
    }

    /// Cancels every running restore of `user`; returns how many.
    pub fn cancel_all_restores(&self, user: &str) -> Result<usize, FaError> {
        validate_username(user)?;
        Ok(self.cancel_all(user, Some(JobKind::Restore)))
    }

    /// Cancels the backup if it runs, cancels restores from it, removes the record and
    /// purges its stowage backup (its space is reclaimable by GC).
    pub async fn delete_backup(&self, user: &str, id: i64) -> Result<(), FaError> {
        validate_username(user)?;
        let stored = {
            let mut inner = self.lock();
            let record = inner
                .state
                .users
                .get_mut(user)
                .and_then(|u| u.backups.remove(&id))
                .ok_or(FaError::NoSuchRecord {
                    action: "delete backup",
                    id,
                })?;
            // The cancelled run winds down on its own (and purges what it may still
            // commit); the id is free for a new run at once.
            if let Some(running) = inner
                .running
                .remove(&(user.to_string(), JobKind::Backup, id))
            {
                running.progress.cancel();
            }
            let restoring: Vec<i64> = inner
                .state
                .users
                .get(user)
                .map(|u| {
                    u.restores
                        .iter()
                        .filter(|(_, r)| r.backup_id == id)
                        .map(|(rid, _)| *rid)
                        .collect()
                })
                .unwrap_or_default();
            for rid in restoring {
                if let Some(running) = inner
                    .running
                    .get(&(user.to_string(), JobKind::Restore, rid))
                {
                    running.progress.cancel();
                }
            }
            self.persist(&inner)?;
            record.backup
        };
        if let Some(backup) = stored {
            self.purge_quietly(&backup).await;
        }
        Ok(())
    }

    /// Cancels every job of `user` and removes every backup made through this dialect
    /// for them; the next backup starts a fresh repository.
    pub async fn destroy_repo(&self, user: &str) -> Result<(), FaError> {
        validate_username(user)?;
        {
            let mut inner = self.lock();
            self.cancel_all_locked(&inner, user);
            inner
                .running
                .retain(|(owner, kind, _), _| owner != user || *kind != JobKind::Backup);
            let state = Self::user_mut(&mut inner, user);
            state.backups.clear();
            state.destroyed = true;
            self.persist(&inner)?;
        }
        let series = series_of(user);
        for entry in self
            .repo
            .backups_of(crate::repo::listing::ListScope::Series(&series), None)?
        {
            self.repo.purge(&entry.manifest.id).await?;
        }
        Ok(())
    }

    fn cancel_all_locked(&self, inner: &Inner, user: &str) {
        for ((owner, _, _), running) in &inner.running {
            if owner == user {
                running.progress.cancel();
            }
        }
    }

    /// Whether `user`'s repository was destroyed and no backup started since.
    pub fn repo_destroyed(&self, user: &str) -> Result<bool, FaError> {
        validate_username(user)?;
        Ok(self
            .lock()
            .state
            .users
            .get(user)
            .is_some_and(|u| u.destroyed))
    }

    /// Starts restoring backup `backup_id` to `dst` as restore `restore_id`. `dst` must be
    /// missing or an empty directory; the tree is written to a hidden sibling and renamed
    /// into place when complete. A missing or unfinished backup gives a failed record.
    pub fn start_restore(
        self: &Arc<Self>,
        user: &str,
        restore_id: i64,
        backup_id: i64,
        dst: &str,
    ) -> Result<(), FaError> {
        let home = self.home(user)?;
        let (target, _) = self.confine(user, &home, dst)?;
        if target == home {
            return Err(FaError::InvalidInput(
                "cannot restore onto your home itself: name a directory inside it".into(),
            ));
        }
        check_target(&target, dst)?;
        let key: JobKey = (user.to_string(), JobKind::Restore, restore_id);
        let progress = Arc::new(Progress::new());
        let (run, source, job) = {
            let mut inner = self.lock();
            if inner.running.contains_key(&key) {
                tracing::info!(user, restore_id, "restore already running: request ignored");
                return Ok(());
            }
            let run = Self::next_run(&mut inner);
            let state = Self::user_mut(&mut inner, user);
            let source = match state.backups.get(&backup_id) {
                None => {
                    Err("err load backup when try create a new restore: no such record".to_string())
                }
                Some(record) => match (&record.status, &record.backup) {
                    (FaStatus::Success, Some(stowage)) => Ok(stowage.clone()),
                    (status, _) => Err(format!(
                        "backup {backup_id} has no successful run to restore (status {})",
                        serde_json::to_value(status)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_string))
                            .unwrap_or_default()
                    )),
                },
            };
            let (status, extra) = match &source {
                Ok(_) => (FaStatus::Running, String::new()),
                Err(reason) => (FaStatus::Failed, reason.clone()),
            };
            let job = source.is_ok().then(|| {
                self.jobs.begin(
                    CoreJobKind::FaRestore,
                    Some(format!(
                        "fa restore {restore_id} of {user}: backup {backup_id} to {}",
                        target.display()
                    )),
                    progress.clone(),
                )
            });
            state.restores.insert(
                restore_id,
                RestoreRecord {
                    backup_id,
                    dst_path: target.display().to_string(),
                    status,
                    stat: FaStat::default(),
                    extra,
                    run,
                    job: job.clone(),
                },
            );
            if source.is_ok() {
                inner.running.insert(
                    key.clone(),
                    Running {
                        run,
                        progress: progress.clone(),
                    },
                );
            }
            if let Err(error) = self.persist(&inner) {
                inner.running.remove(&key);
                drop(inner);
                if let Some(job) = &job {
                    self.jobs.end(job, Err(failure(&error)));
                }
                return Err(error);
            }
            (run, source, job)
        };
        let (Ok(stowage), Some(job)) = (source, job) else {
            return Ok(());
        };
        let service = self.clone();
        let dst = dst.to_string();
        self.jobs.tasks().spawn_job(progress.clone(), async move {
            let outcome = service
                .run_restore(&stowage, &target, &dst, &progress)
                .await;
            let job_outcome = match &outcome {
                Ok(bytes) => Ok(serde_json::json!({ "bytes": bytes })),
                Err(error) => Err(failure(error)),
            };
            // The job system first, as for a backup.
            service.jobs.end(&job, job_outcome);
            service.finish_restore(key, run, &progress, outcome);
        });
        Ok(())
    }

    async fn run_restore(
        &self,
        backup: &BackupId,
        target: &Path,
        dst: &str,
        progress: &Arc<Progress>,
    ) -> Result<u64, FaError> {
        let manifest = self.repo.backup(backup)?;
        let parent = target
            .parent()
            .ok_or_else(|| FaError::InvalidInput(format!("{dst} has no parent")))?;
        std::fs::create_dir_all(parent).map_err(|e| FaError::io(parent, e))?;
        let name = target
            .file_name()
            .ok_or_else(|| FaError::InvalidInput(format!("{dst} has no name")))?;
        let temp = parent.join(format!(
            ".{}.stowage-restore-{}",
            name.to_string_lossy(),
            uuid::Uuid::new_v4().simple()
        ));
        let result: Result<u64, FaError> = async {
            let bytes = self
                .repo
                .restore_tree(&manifest, &temp, progress.clone())
                .await?;
            progress.check()?;
            check_target(target, dst)?;
            if target.exists() {
                std::fs::remove_dir(target).map_err(|e| FaError::io(target, e))?;
            }
            std::fs::rename(&temp, target).map_err(|e| FaError::io(target, e))?;
            if let Ok(dir) = std::fs::File::open(parent) {
                let _ = dir.sync_all();
            }
            Ok(bytes)
        }
        .await;
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&temp);
        }
        result
    }

    fn finish_restore(
        &self,
        key: JobKey,
        run: u64,
        progress: &Progress,
        outcome: Result<u64, FaError>,
    ) {
        let (user, _, id) = key.clone();
        let mut inner = self.lock();
        if inner.running.get(&key).map(|r| r.run) == Some(run) {
            inner.running.remove(&key);
        }
        let Some(record) = inner
            .state
            .users
            .get_mut(&user)
            .and_then(|u| u.restores.get_mut(&id))
            .filter(|r| r.run == run)
        else {
            return;
        };
        match outcome {
            Ok(bytes) => {
                record.status = FaStatus::Success;
                record.stat = FaStat {
                    total_size: bytes,
                    pack_size: 0,
                };
                record.extra = String::new();
            }
            Err(FaError::Repo(RepoError::Cancelled)) => {
                record.status = FaStatus::Cancel;
                record.stat.total_size = progress.done();
                record.extra = CANCELLED.into();
            }
            Err(error) => {
                record.status = FaStatus::Failed;
                record.stat.total_size = progress.done();
                record.extra = error.to_string();
            }
        }
        self.persist_logged(&inner);
    }
}

/// How an fa job failed, for the server's job system.
fn failure(error: &FaError) -> JobFailure {
    JobFailure {
        kind: error.kind(),
        message: error.to_string(),
        cancelled: matches!(error, FaError::Repo(RepoError::Cancelled)),
    }
}

/// A restore target must be missing or an empty directory (not a link).
fn check_target(target: &Path, dst: &str) -> Result<(), FaError> {
    match std::fs::symlink_metadata(target) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(FaError::io(target, e)),
        Ok(m) if !m.is_dir() => Err(FaError::InvalidInput(format!(
            "cannot restore to {dst}: it exists and is not a directory"
        ))),
        Ok(_) => {
            let mut entries = std::fs::read_dir(target).map_err(|e| FaError::io(target, e))?;
            if entries.next().is_some() {
                Err(FaError::InvalidInput(format!(
                    "cannot restore to {dst}: the directory is not empty"
                )))
            } else {
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        for good in ["admin", "a.b-c_d", "X1"] {
            assert!(validate_username(good).is_ok(), "{good}");
        }
        for bad in ["", ".", "..", ".hidden", "a/b", "a b", &"x".repeat(65)] {
            assert!(validate_username(bad).is_err(), "{bad}");
        }
    }
}
