//! Job records in the state store: every asynchronous operation's kind, status,
//! progress, times, error and result, so a restart remembers them (`service::jobs` holds
//! the rules: history bound, interrupted jobs).

use serde::{Deserialize, Serialize};

use super::schema::JOBS;
use super::{decode, StateError, StateStore};
use crate::error::ErrorKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    Upload,
    Check,
    Gc,
    /// An fa path backup (`dialects/fa`).
    FaBackup,
    /// An fa restore into a user's home.
    FaRestore,
    /// A Backup-chan upload being stored and recorded.
    BackupchanUpload,
    /// A run of a backup policy (`service::policies`): its backup.
    Policy,
    /// Retention applied to a series after a policy's backup (its `parent`).
    Prune,
    /// A tree backup made by a client host's agent (`service::agents`).
    AgentBackup,
    /// A restore onto a client host, made by its agent.
    AgentRestore,
    /// A tree backup (or a part of it) restored into a folder of this server.
    Restore,
    /// A policy's new backup's catalog read back and checked (its `parent` the backup).
    Catalog,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct JobProgress {
    pub bytes_done: u64,
    /// 0 when unknown.
    pub bytes_total: u64,
    /// Entries of a tree (files, directories, links) done; 0 for a stream.
    #[serde(default)]
    pub files_done: u64,
    /// 0 when unknown (a tree backup learns its entries as it walks).
    #[serde(default)]
    pub files_total: u64,
    pub rate_bytes_per_sec: u64,
}

/// A job as callers see it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobView {
    pub id: String,
    pub kind: JobKind,
    /// What the job works on, for people: the series, the dialect's own job and path.
    #[serde(default)]
    pub subject: Option<String>,
    /// The job this one follows in a chain (a prune after its policy's backup).
    #[serde(default)]
    pub parent: Option<String>,
    pub status: JobStatus,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub progress: JobProgress,
    pub error: Option<String>,
    /// The kind of the failure (`limit_exceeded` for a refused upload, ...).
    #[serde(default)]
    pub error_kind: Option<ErrorKind>,
    pub result: Option<serde_json::Value>,
}

/// A job as stored: its view and its order of creation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobRecord {
    pub sequence: u64,
    pub view: JobView,
}

impl StateStore {
    /// Every stored job.
    pub fn jobs(&self) -> Result<Vec<JobRecord>, StateError> {
        self.list(JOBS)?
            .into_iter()
            .map(|(id, bytes)| decode(&format!("job {id}"), &bytes))
            .collect()
    }

    /// Stores (or replaces) a job.
    pub fn put_job(&self, record: &JobRecord) -> Result<(), StateError> {
        let bytes = serde_json::to_vec(record).expect("job records serialize");
        self.put(JOBS, &record.view.id, &bytes, false).map(|_| ())
    }

    /// Forgets jobs (beyond the history bound).
    pub fn remove_jobs(&self, ids: &[String]) -> Result<(), StateError> {
        for id in ids {
            self.remove(JOBS, id)?;
        }
        Ok(())
    }
}
