//! The Backup-chan dialect's domain: targets (one stowage series `bc-<target id>` each),
//! backups whose bytes are stowage backups in that series (recycling a Backup-chan backup
//! recycles them, deleting with files purges them), the recycle bin, delayed and
//! scheduled jobs, sequential uploads, statistics and an event log. Metadata lives in the
//! state file (`store`); no HTTP types in or out.

mod backups;
mod download;
mod jobs;
pub mod recycling;
mod seq;
pub mod store;
pub mod targets;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{NaiveDateTime, Utc};

use crate::error::ErrorKind;
use crate::repo::{RepoError, Repository};
pub use backups::{BackupView, Stats};
pub use download::Download;
pub use jobs::{ScheduledView, SCHEDULED_JOBS};
use store::StateFile;
pub use store::{DelayedJob, JobStatus, Part, SeqFile};
use targets::{SearchQuery, Target, TargetSpec, TargetType};

/// Lines of the event log kept in memory for `GET /api/log`.
pub const LOG_LINES: usize = 1000;
/// Finished delayed jobs remembered.
pub const JOB_HISTORY: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum BcError {
    #[error("Parameter '{0}' required")]
    MissingParameter(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{what} {id} not found")]
    NotFound { what: &'static str, id: String },
    #[error("{0}")]
    Conflict(String),
    #[error("Target busy")]
    Busy,
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read or save the Backup-chan records: {0}")]
    Records(#[from] crate::state::StateError),
}

impl BcError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            BcError::MissingParameter(_) | BcError::Invalid(_) | BcError::Busy => {
                ErrorKind::InvalidInput
            }
            BcError::NotFound { .. } => ErrorKind::NotFound,
            BcError::Conflict(_) => ErrorKind::Conflict,
            BcError::Repo(e) => e.kind(),
            BcError::Io { .. } => ErrorKind::Internal,
            BcError::Records(e) => e.kind(),
        }
    }

    fn target(id: &str) -> BcError {
        BcError::NotFound {
            what: "target",
            id: id.to_string(),
        }
    }

    fn backup(id: &str) -> BcError {
        BcError::NotFound {
            what: "backup",
            id: id.to_string(),
        }
    }
}

/// Settings from `[dialects.backupchan]`.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Targets per page of `GET /api/target`.
    pub page_size: usize,
    /// Where locations may point; empty: anywhere (the location is only recorded).
    pub location_roots: Vec<PathBuf>,
    /// A sequential upload idle this long (seconds) is terminated.
    pub seq_timeout_secs: u64,
    /// Files in one upload, and in one sequential upload.
    pub max_files: usize,
    /// Scheduled job name → interval in seconds (defaults for the others).
    pub intervals: Vec<(String, u64)>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            page_size: 10,
            location_roots: Vec::new(),
            seq_timeout_secs: 3600,
            max_files: 10_000,
            intervals: Vec::new(),
        }
    }
}

pub struct BackupchanService {
    repo: Repository,
    settings: Settings,
    records: crate::service::documents::Document,
    state: Mutex<StateFile>,
    log: Mutex<VecDeque<String>>,
    /// Scheduled jobs are tasks of the core scheduler.
    scheduler: Arc<super::scheduler::Scheduler>,
    /// Uploads, downloads and the scheduler run as tasks of the server's set.
    tasks: super::tasks::TaskSet,
    /// Uploads are jobs of the server's job system too.
    jobs: Arc<super::jobs::JobRegistry>,
}

/// The series holding a target's bytes.
pub fn series_of(target_id: &str) -> String {
    format!("bc-{target_id}")
}

pub fn now() -> NaiveDateTime {
    Utc::now().naive_utc()
}

fn sort_by_name(targets: &mut [Target]) {
    targets.sort_by_cached_key(|t| (t.name.to_lowercase(), t.name.clone(), t.id.clone()));
}

impl BackupchanService {
    /// Reads the state file; jobs left running by a previous process are marked failed.
    pub fn open(
        repo: Repository,
        records: crate::service::documents::Document,
        settings: Settings,
        jobs: Arc<super::jobs::JobRegistry>,
        scheduler: Arc<super::scheduler::Scheduler>,
    ) -> Result<BackupchanService, BcError> {
        let mut state = store::load(&records)?;
        let mut changed = false;
        for job in state.delayed_jobs.iter_mut() {
            if matches!(job.status, JobStatus::Idle | JobStatus::Running) {
                job.status = JobStatus::Error;
                job.end_time = Some(Utc::now().timestamp());
                job.error = Some("server restarted while the job was running".into());
                changed = true;
            }
        }
        let service = BackupchanService {
            repo,
            settings,
            records,
            state: Mutex::new(state),
            log: Mutex::new(VecDeque::new()),
            scheduler,
            tasks: jobs.tasks().clone(),
            jobs,
        };
        if changed {
            service.save(&service.lock())?;
        }
        Ok(service)
    }

    /// Files in one upload or sequential upload.
    pub fn max_files(&self) -> usize {
        self.settings.max_files
    }

    fn lock(&self) -> MutexGuard<'_, StateFile> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn save(&self, state: &StateFile) -> Result<(), BcError> {
        store::save(&self.records, state)
    }

    /// Saves, logging a failure: for changes already made in the engine.
    fn save_logged(&self, state: &StateFile) {
        if let Err(error) = self.save(state) {
            tracing::error!(%error, "cannot save the Backup-chan state file");
        }
    }

    /// Adds a line to the event log (and to the server's log).
    pub fn log(&self, message: impl AsRef<str>) {
        let message = message.as_ref();
        tracing::info!(dialect = "backupchan", "{message}");
        let line = format!("[{}] INFO: {message}", now().format("%Y-%m-%d %H:%M:%S"));
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        if log.len() == LOG_LINES {
            log.pop_front();
        }
        log.push_back(line);
    }

    /// The last `tail` lines of the event log (all of them for 0).
    pub fn log_tail(&self, tail: usize) -> String {
        let log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        let skip = if tail == 0 {
            0
        } else {
            log.len().saturating_sub(tail)
        };
        log.iter()
            .skip(skip)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn find_target<'a>(state: &'a StateFile, reference: &str) -> Result<&'a Target, BcError> {
        state
            .targets
            .iter()
            .find(|t| t.is(reference))
            .ok_or_else(|| BcError::target(reference))
    }

    /// A target by id or alias.
    pub fn target(&self, reference: &str) -> Result<Target, BcError> {
        Ok(Self::find_target(&self.lock(), reference)?.clone())
    }

    /// One page (from 1) of targets ordered by name, ignoring case (as the real server's
    /// database collates).
    pub fn list_targets(&self, page: usize) -> Vec<Target> {
        let mut targets = self.lock().targets.clone();
        sort_by_name(&mut targets);
        let size = self.settings.page_size.max(1);
        targets
            .into_iter()
            .skip(page.saturating_sub(1).saturating_mul(size))
            .take(size)
            .collect()
    }

    pub fn search_targets(&self, query: &SearchQuery) -> Vec<Target> {
        let mut found: Vec<Target> = self
            .lock()
            .targets
            .iter()
            .filter(|t| query.matches(t))
            .cloned()
            .collect();
        sort_by_name(&mut found);
        found
    }

    /// The server's task set this service runs in.
    pub fn tasks(&self) -> &super::tasks::TaskSet {
        &self.tasks
    }

    pub fn create_target(
        &self,
        target_type: TargetType,
        spec: TargetSpec,
    ) -> Result<String, BcError> {
        let mut state = self.lock();
        targets::validate(&spec, &state.targets, &self.settings.location_roots)?;
        let id = uuid::Uuid::new_v4().to_string();
        let name = spec.name.clone();
        state
            .targets
            .push(Target::new(id.clone(), target_type, spec));
        self.save(&state)?;
        drop(state);
        self.log(format!("Created target {name} ({id})"));
        Ok(id)
    }

    /// Replaces every field but the id and the type.
    pub fn edit_target(&self, reference: &str, spec: TargetSpec) -> Result<(), BcError> {
        let mut state = self.lock();
        let id = Self::find_target(&state, reference)?.id.clone();
        let others: Vec<Target> = state
            .targets
            .iter()
            .filter(|t| t.id != id)
            .cloned()
            .collect();
        targets::validate(&spec, &others, &self.settings.location_roots)?;
        let mut previous = None;
        if let Some(target) = state.targets.iter_mut().find(|t| t.id == id) {
            previous = Some(target.clone());
            target.apply(spec);
        }
        if let Err(error) = self.save(&state) {
            if let (Some(old), Some(target)) =
                (previous, state.targets.iter_mut().find(|t| t.id == id))
            {
                *target = old;
            }
            return Err(error);
        }
        drop(state);
        self.log(format!("Edited target {id}"));
        Ok(())
    }

    /// Deletes a target and its backup records; with `delete_files` their bytes too
    /// (otherwise they stay in the target's series). Like the real server, an unknown
    /// target is no error.
    pub async fn delete_target(&self, reference: &str, delete_files: bool) -> Result<(), BcError> {
        let removed = {
            let mut state = self.lock();
            let Some(id) = state
                .targets
                .iter()
                .find(|t| t.is(reference))
                .map(|t| t.id.clone())
            else {
                return Ok(());
            };
            state.targets.retain(|t| t.id != id);
            let (gone, kept): (Vec<_>, Vec<_>) =
                state.backups.drain(..).partition(|b| b.target_id == id);
            state.backups = kept;
            let session = state.seq_uploads.remove(&id);
            self.save(&state)?;
            let mut parts: Vec<Part> = gone.into_iter().flat_map(|b| b.parts).collect();
            parts.extend(
                session
                    .into_iter()
                    .flat_map(|s| s.files)
                    .filter_map(|f| f.part),
            );
            self.log(format!("Deleted target {id}"));
            parts
        };
        if delete_files {
            self.purge_parts(&removed).await;
        }
        Ok(())
    }

    /// Purges stowage backups; failures are logged (the records are already gone).
    async fn purge_parts(&self, parts: &[Part]) {
        for part in parts {
            match self.repo.purge(&part.backup).await {
                Ok(()) | Err(RepoError::BackupNotFound { .. }) => {}
                Err(error) => {
                    tracing::warn!(backup = %part.backup, %error, "cannot purge a Backup-chan file")
                }
            }
        }
    }
}
