//! Jobs as Backup-chan has them. Delayed jobs: one per upload (`upload_job`), `IDLE` →
//! `RUNNING` → `FINISHED` or `ERROR`, kept in the state file (the newest
//! [`JOB_HISTORY`](super::JOB_HISTORY) finished ones). Scheduled jobs: named jobs run by a
//! one-second scheduler tick when their interval has passed since the last run, or on
//! the next tick after `force_run`; their last runs are saved, so intervals span
//! restarts.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};

use chrono::Utc;

use super::recycling::{duplicates, to_recycle, Candidate};
use super::store::{DelayedJob, JobStatus};
use super::targets::{RecycleAction, RecycleCriteria};
use super::{now, BackupchanService, BcError, Settings, JOB_HISTORY};
use crate::repo::Progress;
use crate::service::jobs::{JobFailure, JobKind};

/// The scheduled jobs with their default intervals in seconds, as the real server names
/// them.
pub const SCHEDULED_JOBS: [(&str, u64); 6] = [
    ("recycle_job", 3600),
    ("backup_filesize_job", 7200),
    ("deduplicate_job", 18000),
    ("stale_seq_upload_job", 3600),
    ("tmp_purge_job", 43200),
    ("integrity_check_job", 57600),
];

/// A scheduled job as listed.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduledView {
    pub name: String,
    pub interval: u64,
    /// Unix time, seconds.
    pub next_run: f64,
}

pub(super) struct Schedule {
    jobs: Vec<ScheduledView>,
}

fn unix_now() -> f64 {
    Utc::now().timestamp_micros() as f64 / 1e6
}

impl Schedule {
    pub(super) fn new(settings: &Settings, last_runs: &BTreeMap<String, f64>) -> Schedule {
        let start = unix_now();
        let jobs = SCHEDULED_JOBS
            .iter()
            .map(|(name, default)| {
                let interval = settings
                    .intervals
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, i)| *i)
                    .unwrap_or(*default)
                    .max(1);
                let next_run = match last_runs.get(*name) {
                    Some(last) => last + interval as f64,
                    None => start + interval as f64,
                };
                ScheduledView {
                    name: name.to_string(),
                    interval,
                    next_run,
                }
            })
            .collect();
        Schedule { jobs }
    }
}

impl BackupchanService {
    /// Registers an upload's delayed job, `IDLE` (queued in the server's job system)
    /// until [`start_job`](Self::start_job).
    pub fn begin_job(&self, name: &str, target_id: &str) -> Result<u64, BcError> {
        let mut state = self.lock();
        let id = state.next_job_id.max(1);
        state.next_job_id = id + 1;
        let core_job = self.jobs.queue(
            JobKind::BackupchanUpload,
            Some(format!("Backup-chan {name} {id} to target {target_id}")),
            Arc::new(Progress::new()),
        );
        state.delayed_jobs.push(DelayedJob {
            id,
            name: name.to_string(),
            status: JobStatus::Idle,
            start_time: Utc::now().timestamp(),
            end_time: None,
            error: None,
            core_job: Some(core_job),
        });
        let finished = state
            .delayed_jobs
            .iter()
            .filter(|j| matches!(j.status, JobStatus::Finished | JobStatus::Error))
            .count();
        if finished > JOB_HISTORY {
            let mut excess = finished - JOB_HISTORY;
            state.delayed_jobs.retain(|j| {
                let drop = excess > 0 && matches!(j.status, JobStatus::Finished | JobStatus::Error);
                if drop {
                    excess -= 1;
                }
                !drop
            });
        }
        self.save(&state)?;
        Ok(id)
    }

    /// A delayed job starts running (its start time is now).
    pub fn start_job(&self, id: u64) {
        let mut state = self.lock();
        let mut core = None;
        if let Some(job) = state.delayed_jobs.iter_mut().find(|j| j.id == id) {
            job.status = JobStatus::Running;
            job.start_time = Utc::now().timestamp();
            core = job.core_job.clone();
        }
        self.save_logged(&state);
        drop(state);
        if let Some(core) = core {
            self.jobs.start(&core);
        }
    }

    /// The progress of a delayed job (what its files' ingests count into).
    pub fn job_progress(&self, id: u64) -> Arc<Progress> {
        let core = self
            .lock()
            .delayed_jobs
            .iter()
            .find(|j| j.id == id)
            .and_then(|j| j.core_job.clone());
        core.and_then(|core| self.jobs.progress(&core))
            .unwrap_or_default()
    }

    /// Ends a delayed job; `result` is what the server's job system shows of a success.
    pub fn end_job(&self, id: u64, outcome: Result<serde_json::Value, JobFailure>) {
        let mut state = self.lock();
        let mut core = None;
        if let Some(job) = state.delayed_jobs.iter_mut().find(|j| j.id == id) {
            job.end_time = Some(Utc::now().timestamp());
            match &outcome {
                Ok(_) => job.status = JobStatus::Finished,
                Err(failure) => {
                    job.status = JobStatus::Error;
                    job.error = Some(failure.message.clone());
                }
            }
            core = job.core_job.clone();
        }
        self.save_logged(&state);
        drop(state);
        if let Some(core) = core {
            self.jobs.end(&core, outcome);
        }
    }

    pub fn delayed_jobs(&self) -> Vec<DelayedJob> {
        self.lock().delayed_jobs.clone()
    }

    pub fn scheduled_jobs(&self) -> Vec<ScheduledView> {
        self.schedule
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .jobs
            .clone()
    }

    /// Runs a scheduled job on the next tick; unknown names are ignored, as the real
    /// server does. Returns whether the name is known.
    pub fn force_run(&self, name: &str) -> bool {
        let known = {
            let mut schedule = self.schedule.lock().unwrap_or_else(|p| p.into_inner());
            match schedule.jobs.iter_mut().find(|j| j.name == name) {
                Some(job) => {
                    job.next_run = unix_now();
                    true
                }
                None => false,
            }
        };
        if known {
            self.wake.notify_one();
        }
        known
    }

    /// Starts the scheduler: a task of the server's set that ticks every second and runs
    /// due jobs one at a time. It ends on shutdown, or when the service is dropped.
    pub fn start_scheduler(self: &Arc<Self>) {
        let weak: Weak<Self> = Arc::downgrade(self);
        let tasks = self.tasks.clone();
        self.tasks.spawn(async move {
            loop {
                let Some(service) = weak.upgrade() else {
                    return;
                };
                service.run_due().await;
                // Only a weak reference is held while waiting, so dropping the server
                // state closes the repository at once.
                let wake = service.wake.clone();
                drop(service);
                let wake = async move { wake.notified().await };
                tokio::select! {
                    _ = wake => {},
                    _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {},
                    _ = tasks.cancelled() => return,
                }
            }
        });
    }

    async fn run_due(&self) {
        let now_unix = unix_now();
        let due: Vec<String> = self
            .scheduled_jobs()
            .into_iter()
            .filter(|j| j.next_run <= now_unix)
            .map(|j| j.name)
            .collect();
        for name in due {
            let started = unix_now();
            {
                let mut schedule = self.schedule.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(job) = schedule.jobs.iter_mut().find(|j| j.name == name) {
                    job.next_run = started + job.interval as f64;
                }
            }
            match self.run_scheduled(&name).await {
                Ok(summary) => self.log(format!("Scheduled job {name}: {summary}")),
                Err(error) => self.log(format!("Scheduled job {name} failed: {error}")),
            }
            let mut state = self.lock();
            state.last_runs.insert(name, started);
            self.save_logged(&state);
        }
    }

    /// Runs one scheduled job now; returns what it did.
    pub async fn run_scheduled(&self, name: &str) -> Result<String, BcError> {
        match name {
            "recycle_job" => self.recycle_all().await,
            "deduplicate_job" => self.deduplicate_all().await,
            "integrity_check_job" => self.check_integrity().await,
            "backup_filesize_job" => self.refresh_sizes(),
            "stale_seq_upload_job" => self.expire_seq_uploads().await,
            "tmp_purge_job" => Ok(self.trim_job_history()),
            other => Err(BcError::Invalid(format!("no scheduled job {other}"))),
        }
    }

    fn candidates(&self, target_id: &str, recycled: Option<bool>) -> Vec<Candidate> {
        self.lock()
            .backups
            .iter()
            .filter(|b| b.target_id == target_id && recycled.is_none_or(|r| b.is_recycled == r))
            .filter_map(|b| {
                let created_at =
                    chrono::NaiveDateTime::parse_from_str(&b.created_at, "%Y-%m-%dT%H:%M:%S")
                        .ok()?;
                Some(Candidate {
                    id: b.id.clone(),
                    created_at,
                    hash: b.hash.clone(),
                })
            })
            .collect()
    }

    /// Applies every target's recycle criteria.
    async fn recycle_all(&self) -> Result<String, BcError> {
        let targets = self.lock().targets.clone();
        let mut acted = 0;
        for target in targets {
            if target.recycle_criteria == RecycleCriteria::None {
                continue;
            }
            let chosen = to_recycle(&target, &self.candidates(&target.id, Some(false)), now());
            for id in chosen {
                match target.recycle_action {
                    RecycleAction::Recycle => self.set_recycled(&id, true).await?,
                    RecycleAction::Delete => self.delete_backup(&id, true).await?,
                }
                acted += 1;
            }
        }
        Ok(format!("{acted} backups recycled or deleted"))
    }

    /// Deletes newer copies of identical backups in targets with deduplication on.
    async fn deduplicate_all(&self) -> Result<String, BcError> {
        let targets = self.lock().targets.clone();
        let mut deleted = 0;
        for target in targets.iter().filter(|t| t.deduplicate) {
            for id in duplicates(&self.candidates(&target.id, None)) {
                self.delete_backup(&id, true).await?;
                deleted += 1;
            }
        }
        Ok(format!("{deleted} duplicate backups deleted"))
    }

    /// Reads every backup's files back, checking each chunk and the whole file's digest,
    /// and compares the recorded SHA-256 with the target's; sets `hash_mismatch`
    /// accordingly.
    async fn check_integrity(&self) -> Result<String, BcError> {
        let backups = self.lock().backups.clone();
        let mut mismatched = 0;
        for backup in backups {
            let mut ok = true;
            for part in &backup.parts {
                let verified = match self.repo.backup(&part.backup) {
                    Ok(manifest) => {
                        manifest.sha256.as_ref() == Some(&part.sha256)
                            && self
                                .repo
                                .export(&manifest, None, Box::new(std::io::sink()))
                                .await
                                .is_ok()
                    }
                    Err(_) => false,
                };
                ok &= verified;
            }
            if !ok {
                mismatched += 1;
            }
            let mut state = self.lock();
            if let Some(b) = state.backups.iter_mut().find(|b| b.id == backup.id) {
                b.hash_mismatch = !ok;
            }
        }
        let state = self.lock();
        self.save(&state)?;
        Ok(format!("{mismatched} backups with a hash mismatch"))
    }

    /// Recomputes each backup's size from its stored files.
    fn refresh_sizes(&self) -> Result<String, BcError> {
        let mut state = self.lock();
        let mut changed = 0;
        for backup in state.backups.iter_mut() {
            let mut total = 0;
            for part in backup.parts.iter_mut() {
                if let Ok(manifest) = self.repo.backup(&part.backup) {
                    part.size = manifest.size;
                }
                total += part.size;
            }
            if backup.filesize != total {
                backup.filesize = total;
                changed += 1;
            }
        }
        self.save(&state)?;
        Ok(format!("{changed} backup sizes corrected"))
    }

    /// Forgets finished delayed jobs that ended more than a day ago.
    fn trim_job_history(&self) -> String {
        let mut state = self.lock();
        let cutoff = Utc::now().timestamp() - 86_400;
        let before = state.delayed_jobs.len();
        state
            .delayed_jobs
            .retain(|j| j.end_time.is_none_or(|end| end >= cutoff));
        let removed = before - state.delayed_jobs.len();
        self.save_logged(&state);
        format!("{removed} old job records removed")
    }
}
