//! Jobs: asynchronous operations (uploads answered with 202, check, gc) with a status,
//! progress, an error with its kind or a result, and cancellation. Every job is written
//! to the state store when it starts and when it ends, and the most recent
//! [`JobRegistry::history`] finished jobs are kept; a job that was running when the
//! process stopped comes back as failed, "interrupted", never as running.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::error::ErrorKind;
use crate::repo::{Progress, RepoError};
use crate::state::jobs::JobRecord;
use crate::state::{StateError, StateStore};

/// The error of a job that came back after the process stopped while it ran.
pub const INTERRUPTED: &str = "interrupted: the server stopped while the job was running";

/// How a job failed.
#[derive(Debug, Clone)]
pub struct JobFailure {
    pub kind: ErrorKind,
    pub message: String,
    /// Stopped on request (cancel, shutdown): the job is `cancelled`, not `failed`.
    pub cancelled: bool,
}

impl JobFailure {
    /// A failure of `kind` (not a cancellation).
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> JobFailure {
        JobFailure {
            kind,
            message: message.into(),
            cancelled: false,
        }
    }
}

impl JobFailure {
    /// A job stopped on request.
    pub fn cancelled(message: impl Into<String>) -> JobFailure {
        JobFailure {
            kind: ErrorKind::Conflict,
            message: message.into(),
            cancelled: true,
        }
    }
}

impl From<RepoError> for JobFailure {
    fn from(error: RepoError) -> JobFailure {
        JobFailure {
            kind: error.kind(),
            cancelled: matches!(error, RepoError::Cancelled),
            message: error.to_string(),
        }
    }
}

pub use crate::state::jobs::{JobKind, JobProgress, JobStatus, JobView};

/// Every job status as listings spell it.
pub const STATUS_WORDS: &str = "queued, running, succeeded, failed, cancelled";
/// Every job kind as listings spell it.
pub const KIND_WORDS: &str =
    "upload, check, gc, fa_backup, fa_restore, backupchan_upload, policy, prune, agent_backup, agent_restore, restore, catalog";

/// Which jobs a listing shows; an empty filter keeps every job.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFilter {
    pub status: Option<JobStatus>,
    pub kind: Option<JobKind>,
    /// Kept when the job's id, subject or error contains it, ignoring case.
    pub text: Option<String>,
}

impl JobFilter {
    /// The longest `text` accepted, in bytes.
    pub const MAX_TEXT: usize = 200;

    /// A filter from a listing's query words: `status` and `kind` as the jobs spell them
    /// (`failed`, `gc`, ...), `text` searched in ids, subjects and errors. Errors say
    /// which word is wrong and what it may be.
    pub fn parse(
        status: Option<&str>,
        kind: Option<&str>,
        text: Option<&str>,
    ) -> Result<JobFilter, String> {
        fn word<T: serde::de::DeserializeOwned>(
            what: &str,
            value: Option<&str>,
            allowed: &str,
        ) -> Result<Option<T>, String> {
            match value.filter(|v| !v.is_empty()) {
                None => Ok(None),
                Some(v) => serde_json::from_value(serde_json::Value::String(v.to_string()))
                    .map(Some)
                    .map_err(|_| format!("{what} {v:?} is not one of {allowed}")),
            }
        }
        let text = text.map(str::trim).filter(|t| !t.is_empty());
        if text.is_some_and(|t| t.len() > Self::MAX_TEXT) {
            return Err(format!(
                "the search text is longer than {} bytes",
                Self::MAX_TEXT
            ));
        }
        Ok(JobFilter {
            status: word("status", status, STATUS_WORDS)?,
            kind: word("kind", kind, KIND_WORDS)?,
            text: text.map(str::to_string),
        })
    }

    pub fn keeps(&self, job: &JobView) -> bool {
        if self.status.is_some_and(|s| s != job.status) || self.kind.is_some_and(|k| k != job.kind)
        {
            return false;
        }
        let Some(text) = self.text.as_deref().filter(|t| !t.is_empty()) else {
            return true;
        };
        let text = text.to_lowercase();
        [Some(&job.id), job.subject.as_ref(), job.error.as_ref()]
            .into_iter()
            .flatten()
            .any(|field| field.to_lowercase().contains(&text))
    }
}

/// One page of a filtered job listing.
#[derive(Debug, Clone)]
pub struct JobPage {
    /// Newest first.
    pub jobs: Vec<JobView>,
    /// The position to pass as `before` for the next page; `None` on the last page.
    pub next: Option<u64>,
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
    store: Arc<StateStore>,
    /// Orders writes to the store, so a job's end is never overwritten by its start.
    writes: Mutex<()>,
    /// Woken whenever a job ends, for those waiting on one ([`Self::finished`]).
    ended: tokio::sync::Notify,
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl JobRegistry {
    /// Opens the registry on the jobs of `store`; jobs that were running are recorded
    /// as failed ([`INTERRUPTED`]). Jobs run as tasks of `tasks`.
    pub fn open(
        history: usize,
        tasks: super::tasks::TaskSet,
        store: Arc<StateStore>,
    ) -> Result<JobRegistry, StateError> {
        let mut jobs = BTreeMap::new();
        let mut last = 0;
        for mut record in store.jobs()? {
            if !record.view.status.is_finished() {
                record.view.status = JobStatus::Failed;
                record.view.error = Some(INTERRUPTED.into());
                record.view.error_kind = Some(ErrorKind::Unavailable);
                record.view.finished_at = Some(now());
                store.put_job(&record)?;
            }
            last = last.max(record.sequence);
            jobs.insert(
                record.view.id.clone(),
                JobEntry {
                    view: record.view,
                    // Finished: nothing reads a finished job's progress.
                    progress: Arc::new(Progress::new()),
                    started: Instant::now(),
                    sequence: record.sequence,
                },
            );
        }
        let registry = JobRegistry {
            jobs: Mutex::new(jobs),
            next_sequence: Mutex::new(last),
            history: history.max(1),
            tasks,
            store,
            writes: Mutex::new(()),
            ended: tokio::sync::Notify::new(),
        };
        let forgotten = prune(&mut registry.lock(), registry.history);
        registry.store.remove_jobs(&forgotten)?;
        Ok(registry)
    }

    /// Writes a job's record; a failure to write is logged, never fails the job.
    fn persist(&self, record: JobRecord, forgotten: &[String]) {
        let _ordered = self.writes.lock().unwrap_or_else(|p| p.into_inner());
        let written = self
            .store
            .put_job(&record)
            .and_then(|()| self.store.remove_jobs(forgotten));
        if let Err(error) = written {
            tracing::error!(job = %record.view.id, %error, "cannot record the job in the state store");
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

    /// Registers a running job and returns its id.
    pub fn begin(&self, kind: JobKind, subject: Option<String>, progress: Arc<Progress>) -> String {
        self.register(kind, subject, None, progress, JobStatus::Running)
    }

    /// Registers a running job that follows `parent` in a chain.
    pub fn begin_after(
        &self,
        parent: &str,
        kind: JobKind,
        subject: Option<String>,
        progress: Arc<Progress>,
    ) -> String {
        self.register(
            kind,
            subject,
            Some(parent.to_string()),
            progress,
            JobStatus::Running,
        )
    }

    /// Registers a job waiting for its turn (`queued` until [`Self::start`]).
    pub fn queue(&self, kind: JobKind, subject: Option<String>, progress: Arc<Progress>) -> String {
        self.register(kind, subject, None, progress, JobStatus::Queued)
    }

    /// A queued job begins running.
    pub fn start(&self, id: &str) {
        let record = {
            let mut jobs = self.lock();
            let Some(entry) = jobs.get_mut(id) else {
                return;
            };
            if entry.view.status != JobStatus::Queued {
                return;
            }
            entry.started = Instant::now();
            entry.view.status = JobStatus::Running;
            entry.view.started_at = Some(now());
            JobRecord {
                sequence: entry.sequence,
                view: entry.view.clone(),
            }
        };
        self.persist(record, &[]);
    }

    fn register(
        &self,
        kind: JobKind,
        subject: Option<String>,
        parent: Option<String>,
        progress: Arc<Progress>,
        status: JobStatus,
    ) -> String {
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
            subject,
            parent,
            status,
            started_at: (status == JobStatus::Running).then(|| created.clone()),
            created_at: created,
            finished_at: None,
            progress: JobProgress {
                bytes_done: 0,
                bytes_total: 0,
                files_done: 0,
                files_total: 0,
                rate_bytes_per_sec: 0,
            },
            error: None,
            error_kind: None,
            result: None,
        };
        self.lock().insert(
            id.clone(),
            JobEntry {
                view: view.clone(),
                progress,
                started: Instant::now(),
                sequence,
            },
        );
        self.persist(JobRecord { sequence, view }, &[]);
        id
    }

    /// Records how a job ended.
    pub fn end(&self, id: &str, outcome: Result<serde_json::Value, JobFailure>) {
        let (record, forgotten) = {
            let mut jobs = self.lock();
            let record = jobs.get_mut(id).map(|entry| {
                let sequence = entry.sequence;
                let view = refresh(entry);
                view.finished_at = Some(now());
                match outcome {
                    Ok(result) => {
                        view.status = JobStatus::Succeeded;
                        view.result = Some(result);
                    }
                    Err(failure) => {
                        view.status = if failure.cancelled {
                            JobStatus::Cancelled
                        } else {
                            JobStatus::Failed
                        };
                        view.error = Some(failure.message);
                        view.error_kind = Some(failure.kind);
                    }
                }
                JobRecord {
                    sequence,
                    view: view.clone(),
                }
            });
            (record, prune(&mut jobs, self.history))
        };
        if let Some(record) = record {
            self.persist(record, &forgotten);
        }
        self.ended.notify_waiters();
    }

    /// Waits until the job `id` has ended; its view then, or `None` when it is not
    /// remembered (never was, or dropped from the history).
    pub async fn finished(&self, id: &str) -> Option<JobView> {
        loop {
            // Registered before looking, so an end in between still wakes us.
            let woken = self.ended.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let view = self.get(id).ok()?;
            if view.status.is_finished() {
                return Some(view);
            }
            woken.await;
        }
    }

    /// The progress handle of a job still remembered (cancelling it stops the job).
    pub fn progress(&self, id: &str) -> Option<Arc<Progress>> {
        self.lock().get(id).map(|entry| entry.progress.clone())
    }

    /// Runs `work` as a job on the runtime; returns the job's id at once.
    pub fn spawn<F, Fut>(self: &Arc<Self>, kind: JobKind, work: F) -> String
    where
        F: FnOnce(Arc<Progress>) -> Fut,
        Fut: Future<Output = Result<serde_json::Value, RepoError>> + Send + 'static,
    {
        let progress = Arc::new(Progress::new());
        let id = self.begin(kind, None, progress.clone());
        let future = work(progress.clone());
        let (registry, job) = (self.clone(), id.clone());
        self.tasks.spawn_job(progress, async move {
            let outcome = future.await;
            registry.end(&job, outcome.map_err(JobFailure::from));
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

    /// A page of the remembered jobs that `filter` keeps, newest first: at most `limit`
    /// jobs created before the job at position `before` (a page's `next`), and the position
    /// to ask for the next page when more match.
    pub fn page(&self, filter: &JobFilter, before: Option<u64>, limit: usize) -> JobPage {
        let mut jobs = self.lock();
        let mut entries: Vec<&mut JobEntry> = jobs
            .values_mut()
            .filter(|e| before.is_none_or(|b| e.sequence < b))
            .filter(|e| filter.keeps(&e.view))
            .collect();
        entries.sort_by_key(|e| std::cmp::Reverse(e.sequence));
        let next = match limit.checked_sub(1) {
            Some(last) if entries.len() > limit => entries.get(last).map(|e| e.sequence),
            _ => None,
        };
        let jobs = entries
            .into_iter()
            .take(limit)
            .map(|e| refresh(e).clone())
            .collect();
        JobPage { jobs, next }
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
            files_done: entry.progress.files_done(),
            files_total: entry.progress.files_total(),
            rate_bytes_per_sec: if elapsed > 0.0 {
                (done as f64 / elapsed) as u64
            } else {
                0
            },
        };
    }
    &mut entry.view
}

/// Forgets the oldest finished jobs beyond `history`; returns their ids.
fn prune(jobs: &mut BTreeMap<String, JobEntry>, history: usize) -> Vec<String> {
    let mut finished: Vec<(u64, String)> = jobs
        .iter()
        .filter(|(_, e)| e.view.status.is_finished())
        .map(|(id, e)| (e.sequence, id.clone()))
        .collect();
    if finished.len() <= history {
        return Vec::new();
    }
    finished.sort();
    let excess = finished.len() - history;
    finished
        .into_iter()
        .take(excess)
        .map(|(_, id)| {
            jobs.remove(&id);
            id
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(
        kind: JobKind,
        status: JobStatus,
        subject: Option<&str>,
        error: Option<&str>,
    ) -> JobView {
        JobView {
            id: "0123abcd".into(),
            kind,
            subject: subject.map(str::to_string),
            parent: None,
            status,
            created_at: String::new(),
            started_at: None,
            finished_at: None,
            progress: JobProgress::default(),
            error: error.map(str::to_string),
            error_kind: None,
            result: None,
        }
    }

    #[test]
    fn filters_parse_words_and_keep_matching_jobs() {
        let gc = job(
            JobKind::Gc,
            JobStatus::Failed,
            None,
            Some("Backend Unreachable"),
        );
        let upload = job(
            JobKind::Upload,
            JobStatus::Running,
            Some("upload to series web"),
            None,
        );
        let all = JobFilter::parse(Some(""), None, Some("  ")).expect("empty words");
        assert_eq!(all, JobFilter::default());
        assert!(all.keeps(&gc) && all.keeps(&upload));
        let failed = JobFilter::parse(Some("failed"), None, None).expect("status");
        assert!(failed.keeps(&gc) && !failed.keeps(&upload));
        let uploads = JobFilter::parse(None, Some("upload"), None).expect("kind");
        assert!(!uploads.keeps(&gc) && uploads.keeps(&upload));
        let text = JobFilter::parse(None, None, Some("unreachable")).expect("text");
        assert!(
            text.keeps(&gc) && !text.keeps(&upload),
            "the error is searched, ignoring case"
        );
        let text = JobFilter::parse(None, None, Some("WEB")).expect("text");
        assert!(
            !text.keeps(&gc) && text.keeps(&upload),
            "the subject is searched"
        );
        let by_id = JobFilter::parse(None, None, Some("23AB")).expect("text");
        assert!(
            by_id.keeps(&gc) && by_id.keeps(&upload),
            "the id is searched"
        );
        let wrong = JobFilter::parse(Some("done"), None, None).expect_err("a wrong status");
        assert!(
            wrong.contains("\"done\"") && wrong.contains(STATUS_WORDS),
            "{wrong}"
        );
        let wrong = JobFilter::parse(None, Some("Gc"), None).expect_err("a wrong kind");
        assert!(wrong.contains(KIND_WORDS), "{wrong}");
        let long = "x".repeat(JobFilter::MAX_TEXT + 1);
        assert!(JobFilter::parse(None, None, Some(&long)).is_err());
        for word in KIND_WORDS.split(", ") {
            JobFilter::parse(None, Some(word), None).expect("every listed kind parses");
        }
        for word in STATUS_WORDS.split(", ") {
            JobFilter::parse(Some(word), None, None).expect("every listed status parses");
        }
    }
}
