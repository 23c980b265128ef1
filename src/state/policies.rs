//! Backup policies in the state store (table `policies`): what to back up (server
//! folders or a command's output), into which series, on which schedule, with which
//! retention, and the last run (`service::policies` holds the rules).

use serde::{Deserialize, Serialize};

use super::schema::POLICIES;
use super::{decode, StateError, StateStore};
use crate::format::series::RetentionPolicy;

/// What a policy backs up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum PolicySource {
    /// Folders on the server (absolute paths inside the configured roots), backed up as
    /// one tree; entries matching an `exclude` pattern are left out.
    Folders {
        paths: Vec<String>,
        #[serde(default)]
        exclude: Vec<String>,
    },
    /// The standard output of a program run on the server (no shell), as one stream.
    Command { argv: Vec<String> },
    /// Folders on the client host `host` (`/` for all of it), backed up as one tree by
    /// that host's agent (`stowage agent`); entries matching an `exclude` pattern are
    /// left out.
    Agent {
        host: String,
        paths: Vec<String>,
        #[serde(default)]
        exclude: Vec<String>,
    },
}

fn yes() -> bool {
    true
}

/// One policy as stored (FORMAT.md, the state store's tables).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRecord {
    pub name: String,
    pub source: PolicySource,
    pub series: String,
    /// The schedule it runs by; `None`: only on demand.
    #[serde(default)]
    pub schedule: Option<String>,
    /// Applied to the series after each successful run; `None`: the series' own.
    #[serde(default)]
    pub retention: Option<RetentionPolicy>,
    pub enabled: bool,
    /// After a backup with a catalog, read the catalog back and check it (a `catalog`
    /// job between the backup and the prune).
    #[serde(default = "yes")]
    pub catalog_check: bool,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// The job of the latest run, and when it began.
    #[serde(default)]
    pub last_job: Option<String>,
    #[serde(default)]
    pub last_run_at: Option<String>,
}

impl StateStore {
    /// Every policy, in name order.
    pub fn policies(&self) -> Result<Vec<PolicyRecord>, StateError> {
        self.list(POLICIES)?
            .into_iter()
            .map(|(name, bytes)| decode(&format!("policy {name}"), &bytes))
            .collect()
    }

    pub fn policy(&self, name: &str) -> Result<Option<PolicyRecord>, StateError> {
        self.get(POLICIES, name)?
            .map(|bytes| decode(&format!("policy {name}"), &bytes))
            .transpose()
    }

    /// Stores a new policy; `false` (and nothing changed) when the name is taken.
    pub fn insert_policy(&self, record: &PolicyRecord) -> Result<bool, StateError> {
        self.put(POLICIES, &record.name, &encode(record), true)
    }

    /// Stores a policy, replacing one of the same name.
    pub fn put_policy(&self, record: &PolicyRecord) -> Result<(), StateError> {
        self.put(POLICIES, &record.name, &encode(record), false)
            .map(|_| ())
    }

    /// Removes a policy; `false` when there was none.
    pub fn remove_policy(&self, name: &str) -> Result<bool, StateError> {
        self.remove(POLICIES, name)
    }
}

fn encode(record: &PolicyRecord) -> Vec<u8> {
    serde_json::to_vec(record).expect("policy records serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_are_stored_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(&dir.path().join("state.redb")).unwrap();
        let record = PolicyRecord {
            name: "www".into(),
            source: PolicySource::Folders {
                paths: vec!["/srv/www".into()],
                exclude: vec!["*.tmp".into()],
            },
            series: "www".into(),
            schedule: Some("nightly".into()),
            retention: Some(RetentionPolicy {
                keep_daily: Some(7),
                ..RetentionPolicy::default()
            }),
            enabled: true,
            catalog_check: true,
            created_at: "2026-11-30T00:00:00Z".into(),
            last_job: None,
            last_run_at: None,
        };
        assert!(store.insert_policy(&record).unwrap());
        assert!(!store.insert_policy(&record).unwrap());
        let mut changed = record.clone();
        changed.source = PolicySource::Command {
            argv: vec!["pg_dumpall".into()],
        };
        store.put_policy(&changed).unwrap();
        assert_eq!(store.policy("www").unwrap(), Some(changed.clone()));
        assert_eq!(store.policies().unwrap(), vec![changed]);
        assert!(store.remove_policy("www").unwrap());
        assert!(!store.remove_policy("www").unwrap());
        assert_eq!(store.policy("www").unwrap(), None);
    }
}
