//! Agents: `stowage agent` processes on client hosts that take work the server assigns
//! (back these folders up into this series, restore this backup there) and do it through
//! the client API (`/v1/sessions`, the backup's catalog and content). Pull mode: the
//! agent asks for work (a long poll), so it needs no open port and works behind NAT.
//!
//! Every assignment is a job in the one job system: queued until the host's agent takes
//! it, running while the agent reports progress, ended by the agent's result. A job
//! cancelled while queued is never handed out; one cancelled while running is told so in
//! the answer to the agent's next progress report, and the agent stops. Assignments live
//! in memory: at a restart, the job registry records unfinished jobs as interrupted, and
//! the queue starts empty. A job no agent takes within its claim time-out
//! (`agent_claim_timeout_secs`, default [`CLAIM_TIMEOUT`]) fails, saying so. Both are
//! noticed whenever work is assigned or asked for, by any host, and by the core
//! scheduler's `agent-claims` task every [`EXPIRY_CHECK_EVERY`].

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::jobs::{JobFailure, JobKind, JobRegistry};
use super::keys::{KeyStoreError, Principal, Role};
use crate::error::ErrorKind;
use crate::repo::{Progress, Repository};

/// How long an assignment waits for its host's agent before it fails.
pub const CLAIM_TIMEOUT: Duration = Duration::from_secs(3600);
/// How often the core scheduler ends unclaimed and cancelled assignments.
pub const EXPIRY_CHECK_EVERY: Duration = Duration::from_secs(10);
/// The longest an agent's poll waits for work.
pub const MAX_WAIT: Duration = Duration::from_secs(60);
/// Assignments waiting at once, all hosts together.
pub const MAX_QUEUED: usize = 1024;
/// Hosts remembered as having agents; an agent of one more is refused.
pub const MAX_HOSTS: usize = 4096;

/// What an agent is asked to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum AgentAction {
    /// Back up these absolute folders of the host (`/` for all of it) as one tree into
    /// `series`, leaving out entries whose absolute path matches an `exclude` pattern
    /// (globs, `*` crossing `/`) and everything beneath them.
    Backup {
        series: String,
        paths: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        exclude: Vec<String>,
    },
    /// Restore the tree backup `backup` into the host's empty or missing folder `target`:
    /// all of it, or only the entry `item` (a catalog path) and what lies beneath it.
    /// With `dry_run`, nothing is written: the answer says what would be.
    Restore {
        backup: String,
        target: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        item: Option<String>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        dry_run: bool,
    },
}

/// An assignment as the agent receives it.
#[derive(Debug, Clone, Serialize)]
pub struct AgentTask {
    pub job: String,
    pub host: String,
    #[serde(flatten)]
    pub action: AgentAction,
}

/// An agent the server has heard from.
#[derive(Debug, Clone, Serialize)]
pub struct AgentView {
    pub host: String,
    pub key_id: String,
    pub last_seen: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Denied(#[from] KeyStoreError),
    #[error("{0}")]
    Invalid(String),
    #[error("job {0} is not an agent's running job, or another key took it")]
    NotFound(String),
    #[error("{MAX_QUEUED} assignments are waiting for their agents; try again later")]
    Full,
    #[error("agents of {MAX_HOSTS} hosts are known; no more are taken")]
    TooManyHosts,
}

impl AgentError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            AgentError::Denied(e) => e.kind(),
            AgentError::Invalid(_) => ErrorKind::InvalidInput,
            AgentError::NotFound(_) => ErrorKind::NotFound,
            AgentError::Full => ErrorKind::Unavailable,
            AgentError::TooManyHosts => ErrorKind::Unavailable,
        }
    }
}

struct Queued {
    task: AgentTask,
    since: Instant,
}

struct Running {
    key_id: String,
    progress: Arc<Progress>,
    action: AgentAction,
}

#[derive(Default)]
struct Board {
    seen: BTreeMap<String, AgentView>,
    queued: VecDeque<Queued>,
    running: BTreeMap<String, Running>,
}

/// The server's agents and their assignments.
pub struct Agents {
    jobs: Arc<JobRegistry>,
    /// Where an agent's reported backup is looked up before its job succeeds.
    repo: Repository,
    /// How long an assignment waits for its host's agent before it fails.
    claim_timeout: Duration,
    board: Mutex<Board>,
    wake: tokio::sync::Notify,
}

/// What an agent reports of its running job.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentProgress {
    #[serde(default)]
    pub bytes_done: u64,
    #[serde(default)]
    pub bytes_total: u64,
    #[serde(default)]
    pub files_done: u64,
}

/// A host name as agents register: letters, digits, `-`, `.`, `_`; at most 253 bytes.
pub fn valid_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Agents {
    pub fn new(jobs: Arc<JobRegistry>, repo: Repository, claim_timeout: Duration) -> Agents {
        Agents {
            jobs,
            repo,
            claim_timeout,
            board: Mutex::new(Board::default()),
            wake: tokio::sync::Notify::new(),
        }
    }

    fn board(&self) -> std::sync::MutexGuard<'_, Board> {
        self.board.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `action` for the agent of `host`; returns the job's id.
    pub fn assign(
        &self,
        who: &Principal,
        host: &str,
        action: AgentAction,
    ) -> Result<String, AgentError> {
        let (kind, subject) = match &action {
            AgentAction::Backup { series, paths, .. } => (
                JobKind::AgentBackup,
                format!("{host}: {} → {series}", paths.join(", ")),
            ),
            AgentAction::Restore { backup, target, .. } => (
                JobKind::AgentRestore,
                format!("{host}: {backup} → {target}"),
            ),
        };
        self.assign_as(who, host, action, kind, subject)
    }

    /// Queues `action` for the agent of `host` as a job of `kind` about `subject` (a
    /// policy's run is a `policy` job); returns the job's id.
    pub fn assign_as(
        &self,
        who: &Principal,
        host: &str,
        action: AgentAction,
        kind: JobKind,
        subject: String,
    ) -> Result<String, AgentError> {
        who.require(Role::Writer)?;
        check_host(host).map_err(AgentError::Invalid)?;
        match &action {
            AgentAction::Backup {
                series,
                paths,
                exclude,
            } => {
                crate::repo::ingest::validate_series(series)
                    .map_err(|e| AgentError::Invalid(e.to_string()))?;
                check_backup(paths, exclude).map_err(AgentError::Invalid)?;
            }
            AgentAction::Restore {
                backup,
                target,
                item,
                ..
            } => {
                if uuid::Uuid::parse_str(backup).is_err() {
                    return Err(AgentError::Invalid(format!(
                        "{backup:?} is not a backup id"
                    )));
                }
                if !absolute_clean(target) {
                    return Err(AgentError::Invalid(format!(
                        "{target:?} is not an absolute path without '.' or '..'"
                    )));
                }
                if let Some(item) = item {
                    if !crate::format::catalog::is_safe_relative_path(item) {
                        return Err(AgentError::Invalid(format!(
                            "item {item:?} is not a path of the backup's catalog (relative, without '.' or '..')"
                        )));
                    }
                }
            }
        }
        self.expire_unclaimed();
        let mut board = self.board();
        if board.queued.len() >= MAX_QUEUED {
            return Err(AgentError::Full);
        }
        let job = self
            .jobs
            .queue(kind, Some(subject), Arc::new(Progress::new()));
        board.queued.push_back(Queued {
            task: AgentTask {
                job: job.clone(),
                host: host.to_string(),
                action,
            },
            since: Instant::now(),
        });
        drop(board);
        self.wake.notify_waiters();
        Ok(job)
    }

    /// The agents heard from, by host.
    pub fn list(&self, who: &Principal) -> Result<Vec<AgentView>, AgentError> {
        who.require(Role::Reader)?;
        Ok(self.board().seen.values().cloned().collect())
    }

    /// Whether an agent of `host` has asked for work since the server started: for the
    /// dialects' readiness flags, which answer their own callers' rights.
    pub fn heard_from(&self, host: &str) -> bool {
        self.board().seen.contains_key(host)
    }

    /// The next assignment for `host`, waiting up to `wait` for one; `None` when none
    /// came. The job is running from here on, held by the caller's key.
    pub async fn next(
        &self,
        who: &Principal,
        host: &str,
        wait: Duration,
    ) -> Result<Option<AgentTask>, AgentError> {
        who.require(Role::Backup)?;
        if !valid_host(host) {
            return Err(AgentError::Invalid(format!("{host:?} is not a host name")));
        }
        let deadline = tokio::time::Instant::now() + wait.min(MAX_WAIT);
        loop {
            // Registered before looking, so an assignment made in between still wakes us.
            let woken = self.wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            self.expire_unclaimed();
            if let Some(task) = self.take(who, host)? {
                return Ok(Some(task));
            }
            if tokio::time::timeout_at(deadline, woken).await.is_err() {
                return Ok(None);
            }
        }
    }

    fn take(&self, who: &Principal, host: &str) -> Result<Option<AgentTask>, AgentError> {
        let mut board = self.board();
        if board.seen.len() >= MAX_HOSTS && !board.seen.contains_key(host) {
            return Err(AgentError::TooManyHosts);
        }
        board.seen.insert(
            host.to_string(),
            AgentView {
                host: host.to_string(),
                key_id: who.key_id.clone(),
                last_seen: now(),
            },
        );
        loop {
            let Some(position) = board.queued.iter().position(|q| q.task.host == host) else {
                return Ok(None);
            };
            let Some(queued) = board.queued.remove(position) else {
                return Ok(None);
            };
            let job = &queued.task.job;
            // Cancelled ones were ended by `expire_unclaimed` just before.
            let Some(progress) = self.jobs.progress(job) else {
                continue;
            };
            self.jobs.start(job);
            board.running.insert(
                job.clone(),
                Running {
                    key_id: who.key_id.clone(),
                    progress,
                    action: queued.task.action.clone(),
                },
            );
            return Ok(Some(queued.task));
        }
    }

    /// Ends the assignments cancelled before an agent took them, and fails those no
    /// agent took in time (also run by the core scheduler, so an assignment to a host
    /// whose agent never comes fails even when no other agent asks for work).
    pub fn expire_unclaimed(&self) {
        let mut board = self.board();
        let jobs = &self.jobs;
        board.queued.retain(|queued| {
            let job = &queued.task.job;
            let cancelled = jobs.progress(job).is_none_or(|p| p.is_cancelled());
            if cancelled {
                jobs.end(
                    job,
                    Err(JobFailure::cancelled("cancelled before an agent took it")),
                );
            }
            !cancelled
        });
        while board
            .queued
            .front()
            .is_some_and(|q| q.since.elapsed() >= self.claim_timeout)
        {
            if let Some(expired) = board.queued.pop_front() {
                self.jobs.end(
                    &expired.task.job,
                    Err(JobFailure::new(
                        ErrorKind::Unavailable,
                        format!(
                            "no agent of host {} asked for work within {}: is `stowage agent --host {}` running there?",
                            expired.task.host,
                            wait_text(self.claim_timeout),
                            expired.task.host,
                        ),
                    )),
                );
            }
        }
    }

    /// Records a running job's progress; answers whether it was cancelled.
    pub fn report(
        &self,
        who: &Principal,
        job: &str,
        report: AgentProgress,
    ) -> Result<bool, AgentError> {
        who.require(Role::Backup)?;
        let board = self.board();
        let running = board
            .running
            .get(job)
            .filter(|r| r.key_id == who.key_id)
            .ok_or_else(|| AgentError::NotFound(job.to_string()))?;
        let progress = &running.progress;
        progress.set_total(report.bytes_total);
        progress.add_done(report.bytes_done.saturating_sub(progress.done()));
        progress.add_files_done(report.files_done.saturating_sub(progress.files_done()));
        Ok(progress.is_cancelled())
    }

    /// Ends a running job with the agent's result, or its error.
    pub fn finish(
        &self,
        who: &Principal,
        job: &str,
        outcome: Result<serde_json::Value, String>,
    ) -> Result<(), AgentError> {
        who.require(Role::Backup)?;
        let mut board = self.board();
        if board
            .running
            .get(job)
            .is_none_or(|r| r.key_id != who.key_id)
        {
            return Err(AgentError::NotFound(job.to_string()));
        }
        let Some(running) = board.running.remove(job) else {
            return Err(AgentError::NotFound(job.to_string()));
        };
        drop(board);
        let cancelled = running.progress.is_cancelled();
        let outcome = match outcome {
            Ok(result) => self.checked_result(&running.action, result),
            Err(message) if cancelled => Err(JobFailure::cancelled(message)),
            Err(message) => Err(JobFailure::new(
                ErrorKind::Internal,
                format!("the agent failed: {message}"),
            )),
        };
        self.jobs.end(job, outcome);
        Ok(())
    }

    /// An agent's result as the job keeps it. A backup's is checked against the
    /// repository, since the agent is not trusted to say which backup it made: the id it
    /// names must be a committed backup of the assigned series, and the figures recorded
    /// are the repository's (`{"backup": id, "series", "size", "stored_bytes",
    /// "catalog_entries", "files", "unchanged_files", "skipped"}`).
    fn checked_result(
        &self,
        action: &AgentAction,
        result: serde_json::Value,
    ) -> Result<serde_json::Value, JobFailure> {
        let AgentAction::Backup { series, .. } = action else {
            return Ok(result);
        };
        let named = result.get("backup").and_then(|b| match b {
            serde_json::Value::String(id) => Some(id.as_str()),
            other => other.get("id")?.as_str(),
        });
        let manifest = named
            .and_then(|id| crate::repo::lookup_id(id).ok())
            .and_then(|id| self.repo.backup(&id).ok())
            .filter(|m| &m.series == series)
            .ok_or_else(|| {
                JobFailure::new(
                    ErrorKind::InvalidInput,
                    format!(
                        "the agent reported backup {}, which is not a committed backup of series {series}",
                        named.unwrap_or("(none)")
                    ),
                )
            })?;
        let count = |name: &str| result.get(name).and_then(serde_json::Value::as_u64);
        let skipped: Vec<String> = result
            .get("skipped")
            .and_then(serde_json::Value::as_array)
            .map(|list| {
                list.iter()
                    .filter_map(|v| v.as_str())
                    .take(1000)
                    .map(|s| s.chars().take(4096).collect())
                    .collect()
            })
            .unwrap_or_default();
        Ok(serde_json::json!({
            "backup": manifest.id.to_string(),
            "series": manifest.series,
            "size": manifest.size,
            "stored_bytes": manifest.stored_bytes,
            "catalog_entries": manifest.catalog.as_ref().map(|c| c.entries),
            "files": count("files"),
            "unchanged_files": count("unchanged_files"),
            "skipped": skipped,
        }))
    }
}

/// `90 minutes`, `45 seconds`.
fn wait_text(wait: Duration) -> String {
    let secs = wait.as_secs();
    if secs >= 120 && secs.is_multiple_of(60) {
        format!("{} minutes", secs / 60)
    } else {
        format!("{secs} seconds")
    }
}

/// Checks a host name as agents register it.
pub fn check_host(host: &str) -> Result<(), String> {
    if valid_host(host) {
        Ok(())
    } else {
        Err(format!(
            "{host:?} is not a host name (letters, digits, '-', '.', '_'; at most 253 bytes)"
        ))
    }
}

/// Checks the folders and exclusion patterns of an agent's backup: 1 to 256 absolute
/// paths without `.` or `..` (`/` is the whole host), patterns that compile.
pub fn check_backup(paths: &[String], exclude: &[String]) -> Result<(), String> {
    if paths.is_empty() || paths.len() > 256 {
        return Err("paths must name 1 to 256 folders".into());
    }
    if let Some(bad) = paths.iter().find(|p| *p != "/" && !absolute_clean(p)) {
        return Err(format!(
            "{bad:?} is not an absolute path without '.' or '..'"
        ));
    }
    super::policies::exclusion_set(exclude).map_err(|e| e.to_string())?;
    Ok(())
}

/// An absolute path without `.`, `..` or empty components (a trailing `/` aside).
fn absolute_clean(path: &str) -> bool {
    path.len() <= 4096
        && !path.contains('\0')
        && path.strip_prefix('/').is_some_and(|rest| {
            rest.trim_end_matches('/')
                .split('/')
                .all(|part| !part.is_empty() && part != "." && part != "..")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_and_paths_are_checked() {
        assert!(valid_host("web-1.example.org"));
        assert!(!valid_host(""));
        assert!(!valid_host("a b"));
        assert!(!valid_host("../x"));
        assert!(absolute_clean("/srv/www"));
        assert!(absolute_clean("/srv/www/"));
        for bad in ["srv", "/", "/srv/../etc", "/srv//www", "/./srv"] {
            assert!(!absolute_clean(bad), "{bad}");
        }
    }
}
