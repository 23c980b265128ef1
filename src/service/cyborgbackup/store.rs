//! The dialect's document in the state store (`cyborgbackup`): the integer ids CyBorgBackup
//! gives users and schedules, the settings' values, the repositories and clients it keeps
//! as its own records, and the refresh tokens already exchanged. Read once at start;
//! replaced in one durable transaction after every change. Every field is listed in
//! `docs/FORMAT.md`. It holds no rule: those are the sibling modules'.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::CbError;
use crate::service::documents::Document;

pub const STATE_VERSION: u32 = 1;

/// What CyBorgBackup knows of a core user beyond the user store: its integer id and its
/// notification choices.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserExtra {
    pub id: u64,
    #[serde(default)]
    pub notify_backup_daily: bool,
    #[serde(default)]
    pub notify_backup_weekly: bool,
    #[serde(default)]
    pub notify_backup_monthly: bool,
    #[serde(default)]
    pub notify_backup_success: bool,
    #[serde(default)]
    pub notify_backup_failed: bool,
    #[serde(default)]
    pub notify_backup_summary: bool,
}

/// A setting's stored value (only settings written at least once are stored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettingValue {
    pub value: String,
    /// DRF time (`2024-10-24T12:00:00.123456Z`).
    pub modified: String,
}

/// A CyBorgBackup schedule: its id and display name, over the core schedule `core`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleLink {
    pub core: String,
    pub name: String,
    pub uuid: String,
    pub created: String,
    pub modified: String,
}

/// A borg repository as CyBorgBackup describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Repository {
    pub id: u64,
    pub uuid: String,
    pub name: String,
    pub path: String,
    pub repository_key: String,
    pub original_size: i64,
    pub compressed_size: i64,
    pub deduplicated_size: i64,
    pub ready: bool,
    pub enabled: bool,
    pub created: String,
    pub modified: String,
}

/// A machine that is backed up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Client {
    pub id: u64,
    pub uuid: String,
    pub hostname: String,
    pub ip: String,
    pub bandwidth_limit: Option<i64>,
    pub port: i64,
    pub version: String,
    pub ready: bool,
    pub hypervisor_ready: bool,
    pub hypervisor_name: String,
    pub can_be_updated: bool,
    pub mark_as_to_update: bool,
    pub enabled: bool,
    pub behind_firewall: bool,
    pub created: String,
    pub modified: String,
    /// User ids of who created and last changed it.
    pub created_by: Option<u64>,
    pub modified_by: Option<u64>,
}

/// A CyBorgBackup policy: what it backs up, from which clients, into which repository,
/// when, and what it keeps; each is the core policy `cyborgbackup-<id>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub id: u64,
    pub uuid: String,
    pub name: String,
    /// A JSON text (`{"folders": [...], "exclude": [...]}`, `{"command": "..."}`).
    pub extra_vars: String,
    pub clients: Vec<u64>,
    pub repository: u64,
    pub schedule: u64,
    pub policy_type: String,
    pub keep_hourly: Option<i64>,
    pub keep_yearly: Option<i64>,
    pub keep_daily: Option<i64>,
    pub keep_weekly: Option<i64>,
    pub keep_monthly: Option<i64>,
    pub vmprovider: String,
    pub mode_pull: bool,
    pub enabled: bool,
    pub prehook: String,
    pub posthook: String,
    pub created: String,
    pub modified: String,
    pub created_by: Option<u64>,
    pub modified_by: Option<u64>,
}

/// A CyBorgBackup job: its integer id over a core job of a policy's run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobLink {
    /// The core job id.
    pub core: String,
    /// `job` (the backup) or `prune`.
    pub job_type: String,
    /// `manual`, `scheduled`, `relaunch` or `dependency`.
    pub launch_type: String,
    pub policy: u64,
    pub policy_name: String,
    pub policy_type: String,
    pub client: Option<u64>,
    pub hostname: String,
    pub repository: u64,
    pub schedule: Option<u64>,
    /// The backup job this one follows (a prune's).
    #[serde(default)]
    pub master_job: Option<u64>,
    pub created_by: Option<u64>,
    /// A backup's archive name, `<policy_type>-<hostname>-<created %Y-%m-%d_%H-%M>`
    /// (`_2`, `_3`... after it when the same minute already named one).
    #[serde(default)]
    pub archive_name: Option<String>,
}

/// The whole document.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StateFile {
    pub version: u32,
    /// When the document was first written (the settings' `created`).
    #[serde(default)]
    pub created: String,
    /// Email folded to lower case → its CyBorgBackup user.
    #[serde(default)]
    pub users: BTreeMap<String, UserExtra>,
    #[serde(default)]
    pub next_user_id: u64,
    /// Setting id (1–22) → its value once written.
    #[serde(default)]
    pub settings: BTreeMap<u32, SettingValue>,
    /// Schedule id → the core schedule it is.
    #[serde(default)]
    pub schedules: BTreeMap<u64, ScheduleLink>,
    #[serde(default)]
    pub next_schedule_id: u64,
    #[serde(default)]
    pub repositories: BTreeMap<u64, Repository>,
    #[serde(default)]
    pub next_repository_id: u64,
    #[serde(default)]
    pub clients: BTreeMap<u64, Client>,
    #[serde(default)]
    pub next_client_id: u64,
    #[serde(default)]
    pub policies: BTreeMap<u64, Policy>,
    #[serde(default)]
    pub next_policy_id: u64,
    /// Job id → the core job it is.
    #[serde(default)]
    pub jobs: BTreeMap<u64, JobLink>,
    #[serde(default)]
    pub next_job_id: u64,
    /// Core jobs of its policies whose CyBorgBackup job was deleted (never mapped again);
    /// dropped once the core forgets them.
    #[serde(default)]
    pub forgotten_jobs: std::collections::BTreeSet<String>,
    /// Refresh tokens already exchanged (their `jti`) → their expiry, Unix seconds; kept
    /// until they expire, so none is accepted twice.
    #[serde(default)]
    pub used_refresh: BTreeMap<String, i64>,
}

impl StateFile {
    fn empty() -> StateFile {
        StateFile {
            version: STATE_VERSION,
            created: super::drf_now(),
            next_user_id: 1,
            next_schedule_id: 1,
            next_repository_id: 1,
            next_client_id: 1,
            next_policy_id: 1,
            next_job_id: 1,
            ..StateFile::default()
        }
    }
}

/// Takes the next id of a counter.
pub fn take_id(counter: &mut u64) -> u64 {
    let id = (*counter).max(1);
    *counter = id + 1;
    id
}

/// Reads the document; none yet is an empty state.
pub fn load(records: &Document) -> Result<StateFile, CbError> {
    let Some(bytes) = records.load()? else {
        return Ok(StateFile::empty());
    };
    let state: StateFile = serde_json::from_slice(&bytes)
        .map_err(|e| CbError::Damaged(format!("the CyBorgBackup records are not valid: {e}")))?;
    if state.version != STATE_VERSION {
        return Err(CbError::Damaged(format!(
            "the CyBorgBackup records have version {}, this stowage reads {STATE_VERSION}",
            state.version
        )));
    }
    Ok(state)
}

/// Replaces the document (one durable transaction).
pub fn save(records: &Document, state: &StateFile) -> Result<(), CbError> {
    let bytes = serde_json::to_vec(state).expect("the CyBorgBackup records serialize");
    Ok(records.save(&bytes)?)
}
