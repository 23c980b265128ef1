//! API key records in the state store: who may call, with which role, stored as the
//! SHA-256 of the secret only. The rules (creation, verification, revocation) are
//! `service::keys`'s; this module only stores and reads the records.

use serde::{Deserialize, Serialize};

use super::schema::KEYS;
use super::{decode, StateError, StateStore};

/// What a key may do. Each role includes the ones before it.
///
/// * `reader`: list, read and download backups, see jobs and stats.
/// * `backup`: also create backups (uploads in every dialect, sequential uploads, fa
///   backups, Wings uploads), take a backup out of the recycle bin and cancel jobs; never
///   recycle, delete or purge, nor change what a retention policy keeps. The key for an
///   agent: ransomware on its host cannot use it to destroy the history.
/// * `writer`: also recycle and delete backups, create and edit series, targets and
///   their retention rules, restore into fa homes.
/// * `admin`: everything (purge, series deletion, check, gc, keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Reader,
    Backup,
    Writer,
    Admin,
}

/// A role name that is none of the four.
#[derive(Debug, thiserror::Error)]
#[error("role {0:?} must be reader, backup, writer or admin")]
pub struct UnknownRole(pub String);

impl std::str::FromStr for Role {
    type Err = UnknownRole;
    fn from_str(text: &str) -> Result<Role, UnknownRole> {
        match text {
            "reader" => Ok(Role::Reader),
            "backup" => Ok(Role::Backup),
            "writer" => Ok(Role::Writer),
            "admin" => Ok(Role::Admin),
            other => Err(UnknownRole(other.to_string())),
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            Role::Reader => "reader",
            Role::Backup => "backup",
            Role::Writer => "writer",
            Role::Admin => "admin",
        })
    }
}

/// A stored key: everything but the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub created_at: String,
    /// SHA-256 of the secret, hex.
    pub secret_sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
    /// The user this key belongs to (email as stored), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The dialect whose key shape this key has (`backupchan`: `bakch-<secret>`); `None`
    /// for stowage's own `<id>.<secret>` keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dialect: Option<String>,
}

impl StateStore {
    /// Every key record, by id.
    pub fn keys(&self) -> Result<Vec<KeyRecord>, StateError> {
        self.list(KEYS)?
            .into_iter()
            .map(|(id, bytes)| decode(&format!("key {id}"), &bytes))
            .collect()
    }

    /// One key record.
    pub fn key(&self, id: &str) -> Result<Option<KeyRecord>, StateError> {
        self.get(KEYS, id)?
            .map(|bytes| decode(&format!("key {id}"), &bytes))
            .transpose()
    }

    /// Stores a new key record; `false` (and nothing changed) when its id exists.
    pub fn insert_key(&self, record: &KeyRecord) -> Result<bool, StateError> {
        let bytes = serde_json::to_vec(record).expect("key records serialize");
        self.put(KEYS, &record.id, &bytes, true)
    }

    /// Replaces a key record (revocation).
    pub fn update_key(&self, record: &KeyRecord) -> Result<(), StateError> {
        let bytes = serde_json::to_vec(record).expect("key records serialize");
        self.put(KEYS, &record.id, &bytes, false).map(|_| ())
    }
}
