//! Jobs: asynchronous operations (uploads answered with 202, check, gc) with a status,
//! progress, an error or a result, and cancellation. Kept in memory; the most recent
//! [`JobRegistry::history`] finished jobs are remembered.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;

use crate::error::ErrorKind;
use crate::repo::{Progress, RepoError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    Upload,
    Check,
    Gc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobStatus {
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            JobStatus::Succeeded | JobStatus::Failed | JobStatus::Cancelled
        )
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct JobProgress {
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub rate_bytes_per_sec: u64,
}

/// A job as callers see it.
#[derive(Debug, Clone, Serialize)]
pub struct JobView {
    pub id: String,
    pub kind: JobKind,
    pub status: JobStatus,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub progress: JobProgress,
    pub error: Option<String>,
    pub result: Option<serde_json::Value>,
}

struct JobEntry {
    view: JobView,
    progress: Arc<Progress>,
    started: Instant,
    sequence: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("job {id} not found")]
    NotFound { id: String },
    #[error("job {id} already ended ({status:?})")]
    Finished { id: String, status: JobStatus },
}

impl JobError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            JobError::NotFound { .. } => ErrorKind::NotFound,
            JobError::Finished { .. } => ErrorKind::Conflict,
        }
    }
}

pub struct JobRegistry {
    jobs: Mutex<BTreeMap<String, JobEntry>>,
    next_sequence: Mutex<u64>,
    history: usize,
    tasks: super::tasks::TaskSet,
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl JobRegistry {
    /// A registry whose jobs run as tasks of `tasks`.
    pub fn new(history: usize, tasks: super::tasks::TaskSet) -> JobRegistry {
        JobRegistry {
            tasks,
            jobs: Mutex::new(BTreeMap::new()),
            next_sequence: Mutex::new(0),
            history: history.max(1),
        }
    }

    pub fn history(&self) -> usize {
        self.history
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, JobEntry>> {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The task set jobs run in (for work that records its job itself).
    pub fn tasks(&self) -> &super::tasks::TaskSet {
        &self.tasks
    }

    /// Registers a running job and returns its id and progress handle.
    pub fn begin(&self, kind: JobKind, progress: Arc<Progress>) -> String {
        let id = uuid::Uuid::new_v4().to_string();
        let sequence = {
            let mut next = self.next_sequence.lock().unwrap_or_else(|p| p.into_inner());
            *next += 1;
            *next
        };
        let created = now();
        let view = JobView {
            id: id.clone(),
            kind,
            status: JobStatus::Running,
            created_at: created.clone(),
            started_at: Some(created),
            finished_at: None,
            progress: JobProgress {
                bytes_done: 0,
                bytes_total: 0,
                rate_bytes_per_sec: 0,
            },
            error: None,
            result: None,
        };
        self.lock().insert(
            id.clone(),
            JobEntry {
                view,
                progress,
                started: Instant::now(),
                sequence,
            },
        );
        id
    }

    /// Records how a job ended.
    pub fn end(&self, id: &str, outcome: Result<serde_json::Value, RepoError>) {
        let mut jobs = self.lock();
        if let Some(entry) = jobs.get_mut(id) {
            let view = refresh(entry);
            view.finished_at = Some(now());
            match outcome {
                Ok(result) => {
                    view.status = JobStatus::Succeeded;
                    view.result = Some(result);
                }
                Err(RepoError::Cancelled) => view.status = JobStatus::Cancelled,
                Err(error) => {
                    view.status = JobStatus::Failed;
                    view.error = Some(error.to_string());
                }
            }
        }
        prune(&mut jobs, self.history);
    }

    /// Runs `work` as a job on the runtime; returns the job's id at once.
    pub fn spawn<F, Fut>(self: &Arc<Self>, kind: JobKind, work: F) -> String
    where
        F: FnOnce(Arc<Progress>) -> Fut,
        Fut: Future<Output = Result<serde_json::Value, RepoError>> + Send + 'static,
    {
        let progress = Arc::new(Progress::new());
        let id = self.begin(kind, progress.clone());
        let future = work(progress.clone());
        let (registry, job) = (self.clone(), id.clone());
        self.tasks.spawn_job(progress, async move {
            let outcome = future.await;
            registry.end(&job, outcome);
        });
        id
    }

    pub fn get(&self, id: &str) -> Result<JobView, JobError> {
        let mut jobs = self.lock();
        let entry = jobs
            .get_mut(id)
            .ok_or_else(|| JobError::NotFound { id: id.to_string() })?;
        Ok(refresh(entry).clone())
    }

    /// Every remembered job, newest first.
    pub fn list(&self) -> Vec<JobView> {
        let mut jobs = self.lock();
        let mut entries: Vec<&mut JobEntry> = jobs.values_mut().collect();
        entries.sort_by_key(|e| std::cmp::Reverse(e.sequence));
        entries.into_iter().map(|e| refresh(e).clone()).collect()
    }

    /// Asks a running job to stop.
    pub fn cancel(&self, id: &str) -> Result<JobView, JobError> {
        let mut jobs = self.lock();
        let entry = jobs
            .get_mut(id)
            .ok_or_else(|| JobError::NotFound { id: id.to_string() })?;
        if entry.view.status.is_finished() {
            return Err(JobError::Finished {
                id: id.to_string(),
                status: entry.view.status,
            });
        }
        entry.progress.cancel();
        Ok(refresh(entry).clone())
    }

    /// Counts of remembered jobs by status, for metrics.
    pub fn counts(&self) -> BTreeMap<&'static str, u64> {
        let mut counts = BTreeMap::new();
        for entry in self.lock().values() {
            let name = match entry.view.status {
                JobStatus::Queued => "queued",
                JobStatus::Running => "running",
                JobStatus::Succeeded => "succeeded",
                JobStatus::Failed => "failed",
                JobStatus::Cancelled => "cancelled",
            };
            *counts.entry(name).or_insert(0) += 1;
        }
        counts
    }
}

/// Brings a job's progress figures up to date and returns its view.
fn refresh(entry: &mut JobEntry) -> &mut JobView {
    if !entry.view.status.is_finished() {
        let done = entry.progress.done();
        let elapsed = entry.started.elapsed().as_secs_f64();
        entry.view.progress = JobProgress {
            bytes_done: done,
            bytes_total: entry.progress.total(),
            rate_bytes_per_sec: if elapsed > 0.0 {
                (done as f64 / elapsed) as u64
            } else {
                0
            },
        };
    }
    &mut entry.view
}

/// Forgets the oldest finished jobs beyond `history`.
fn prune(jobs: &mut BTreeMap<String, JobEntry>, history: usize) {
    let mut finished: Vec<(u64, String)> = jobs
        .iter()
        .filter(|(_, e)| e.view.status.is_finished())
        .map(|(id, e)| (e.sequence, id.clone()))
        .collect();
    if finished.len() <= history {
        return;
    }
    finished.sort();
    for (_, id) in finished.iter().take(finished.len() - history) {
        jobs.remove(id);
    }
}
