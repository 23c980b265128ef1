//! The dialect's document in the state store (`backupchan`): targets, backups (with the
//! stowage backups holding their bytes), delayed jobs, open sequential uploads and the
//! last run of each scheduled job. Read once at start; replaced in one durable
//! transaction after every change. Every field is listed in `docs/FORMAT.md`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::targets::Target;
use super::BcError;
use crate::id::BackupId;
use crate::service::documents::Document;

pub const STATE_VERSION: u32 = 1;

/// One stored stream of a backup: the whole file of a single target's backup, or one
/// file of a multi target's backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    /// The file name as uploaded; for a multi backup its relative path in the archive.
    pub name: String,
    /// The stowage backup holding the bytes.
    pub backup: BackupId,
    pub size: u64,
    /// sha256 of the bytes, hex.
    pub sha256: String,
}

/// A Backup-chan backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupRecord {
    pub id: String,
    pub target_id: String,
    /// ISO 8601 without a zone, UTC (`2025-07-11T12:57:17`).
    pub created_at: String,
    pub manual: bool,
    pub is_recycled: bool,
    /// Sum of the parts' sizes, in bytes.
    pub filesize: u64,
    /// sha256 of the file (single); of the sorted paths and file hashes (multi).
    pub hash: String,
    pub hash_mismatch: bool,
    pub parts: Vec<Part>,
}

/// The status of a delayed job, spelled as Backup-chan spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum JobStatus {
    Idle,
    Running,
    Finished,
    Error,
}

/// A delayed job (an upload being processed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DelayedJob {
    pub id: u64,
    pub name: String,
    pub status: JobStatus,
    /// Unix seconds.
    pub start_time: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The same job in the server's job system.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub core_job: Option<String>,
}

/// One file of a sequential upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeqFile {
    /// The directory, `/` or `/sub/dir`.
    pub path: String,
    pub name: String,
    /// The stored file once uploaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part: Option<Part>,
}

/// A sequential upload in progress on a target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeqSession {
    pub manual: bool,
    pub files: Vec<SeqFile>,
    /// Unix seconds of the last begin or upload.
    pub last_activity: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StateFile {
    pub version: u32,
    #[serde(default)]
    pub targets: Vec<Target>,
    #[serde(default)]
    pub backups: Vec<BackupRecord>,
    #[serde(default)]
    pub delayed_jobs: Vec<DelayedJob>,
    #[serde(default)]
    pub next_job_id: u64,
    /// Target id → its sequential upload.
    #[serde(default)]
    pub seq_uploads: BTreeMap<String, SeqSession>,
    /// Scheduled job name → Unix time of its last run.
    #[serde(default)]
    pub last_runs: BTreeMap<String, f64>,
}

/// Reads the document; none yet is an empty state.
pub fn load(records: &Document) -> Result<StateFile, BcError> {
    match records.load()? {
        Some(bytes) => {
            let state: StateFile = serde_json::from_slice(&bytes).map_err(|e| {
                BcError::Invalid(format!("the Backup-chan records are not valid: {e}"))
            })?;
            if state.version != STATE_VERSION {
                return Err(BcError::Invalid(format!(
                    "the Backup-chan records have version {}, this stowage reads {STATE_VERSION}",
                    state.version
                )));
            }
            Ok(state)
        }
        None => Ok(StateFile {
            version: STATE_VERSION,
            next_job_id: 1,
            ..StateFile::default()
        }),
    }
}

/// Replaces the document (one durable transaction).
pub fn save(records: &Document, state: &StateFile) -> Result<(), BcError> {
    let bytes = serde_json::to_vec(state).expect("state serializes");
    Ok(records.save(&bytes)?)
}
