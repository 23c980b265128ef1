//! Jobs as Backup-chan has them. Delayed jobs: one per upload (`upload_job`), `IDLE` →
//! `RUNNING` → `FINISHED` or `ERROR`, kept in the dialect's document (the newest
//! [`JOB_HISTORY`](super::JOB_HISTORY) finished ones) and mirrored as jobs of the server's
//! job system. Scheduled jobs: named tasks of the core scheduler (`backupchan/<name>`),
//! run when their interval has passed since the last run, or at once after `force_run`;
//! their last runs are saved, so intervals span restarts.

use std::sync::{Arc, Weak};
use std::time::Duration;

use chrono::Utc;
use futures::FutureExt;

use super::recycling::{duplicates, to_recycle, Candidate};
use super::store::{DelayedJob, JobStatus};
use super::targets::{RecycleAction, RecycleCriteria};
use super::{now, BackupchanService, BcError, JOB_HISTORY};
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

/// The core scheduler's name of a scheduled job.
fn task_name(job: &str) -> String {
    format!("backupchan/{job}")
}

fn unix_now() -> f64 {
    Utc::now().timestamp_micros() as f64 / 1e6
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
        self.core_job_of(id)
            .and_then(|core| self.jobs.progress(&core))
            .unwrap_or_default()
    }

    /// The server job that carries delayed job `id`.
    fn core_job_of(&self, id: u64) -> Option<String> {
        self.lock()
            .delayed_jobs
            .iter()
            .find(|j| j.id == id)
            .and_then(|j| j.core_job.clone())
    }

    /// Ends a delayed job; `result` is what the server's job system shows of a success.
    /// The server's job system hears of the end first: a client that sees the delayed
    /// job end finds the core job ended too.
    pub fn end_job(&self, id: u64, outcome: Result<serde_json::Value, JobFailure>) {
        let ended = match &outcome {
            Ok(_) => (JobStatus::Finished, None),
            Err(failure) => (JobStatus::Error, Some(failure.message.clone())),
        };
        let core = self.core_job_of(id);
        if let Some(core) = core {
            self.jobs.end(&core, outcome);
        }
        let mut state = self.lock();
        if let Some(job) = state.delayed_jobs.iter_mut().find(|j| j.id == id) {
            job.end_time = Some(Utc::now().timestamp());
            (job.status, job.error) = ended;
        }
        self.save_logged(&state);
    }

    /// Ends a delayed job whose request was refused: like the real server, which checks
    /// a request before it makes a job, Backup-chan's list keeps no record of it; the
    /// server's job system keeps the failure for operators.
    pub fn refuse_job(&self, id: u64, failure: JobFailure) {
        let mut state = self.lock();
        let mut core = None;
        state.delayed_jobs.retain(|job| {
            if job.id == id {
                core = job.core_job.clone();
            }
            job.id != id
        });
        self.save_logged(&state);
        drop(state);
        if let Some(core) = core {
            self.jobs.end(&core, Err(failure));
        }
    }

    pub fn delayed_jobs(&self) -> Vec<DelayedJob> {
        self.lock().delayed_jobs.clone()
    }

    pub fn scheduled_jobs(&self) -> Vec<ScheduledView> {
        SCHEDULED_JOBS
            .iter()
            .filter_map(|(name, _)| {
                let (every, next) = self.scheduler.next_run(&task_name(name))?;
                Some(ScheduledView {
                    name: name.to_string(),
                    interval: every.as_secs(),
                    next_run: next.timestamp_micros() as f64 / 1e6,
                })
            })
            .collect()
    }

    /// Runs a scheduled job now; unknown names are ignored, as the real server does.
    /// Returns whether the name is known.
    pub fn force_run(&self, name: &str) -> bool {
        SCHEDULED_JOBS.iter().any(|(known, _)| *known == name)
            && self.scheduler.run_now(&task_name(name))
    }

    /// Adds the scheduled jobs to the core scheduler, each first due one interval after
    /// its last run (saved across restarts) or after now. The tasks hold the service
    /// weakly, so they never keep the repository open.
    pub fn schedule_jobs(self: &Arc<Self>) {
        let last_runs = self.lock().last_runs.clone();
        let now_unix = unix_now();
        for (name, default) in SCHEDULED_JOBS {
            let interval = self
                .settings
                .intervals
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, i)| *i)
                .unwrap_or(default)
                .max(1);
            let first = match last_runs.get(name) {
                Some(last) => (last + interval as f64 - now_unix).clamp(0.0, interval as f64),
                None => interval as f64,
            };
            let weak: Weak<Self> = Arc::downgrade(self);
            self.scheduler.add_first_in(
                &task_name(name),
                Duration::from_secs(interval),
                Duration::from_secs_f64(first),
                Box::new(move || {
                    let weak = weak.clone();
                    async move {
                        match weak.upgrade() {
                            Some(service) => service.run_and_record(name).await,
                            None => Ok(()),
                        }
                    }
                    .boxed()
                }),
            );
        }
    }

    /// Runs a scheduled job, logs what it did and saves when it ran.
    async fn run_and_record(&self, name: &str) -> Result<(), String> {
        let started = unix_now();
        let outcome = self.run_scheduled(name).await;
        match &outcome {
            Ok(summary) => self.log(format!("Scheduled job {name}: {summary}")),
            Err(error) => self.log(format!("Scheduled job {name} failed: {error}")),
        }
        let mut state = self.lock();
        state.last_runs.insert(name.to_string(), started);
        self.save_logged(&state);
        outcome.map(|_| ()).map_err(|e| e.to_string())
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
