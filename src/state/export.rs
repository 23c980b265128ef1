//! The whole state store as one value: what the server mirrors into its repository and
//! what a rebuilt server takes back (`service::mirror`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::jobs::JobRecord;
use super::keys::KeyRecord;
use super::policies::PolicyRecord;
use super::schedules::ScheduleRecord;
use super::schema::{DOCUMENTS, JOBS, KEYS, POLICIES, SCHEDULES, SECRETS, USERS};
use super::users::{email_key, UserRecord};
use super::{db, decode, StateError, StateStore};

/// Every record of every table.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Export {
    pub keys: Vec<KeyRecord>,
    pub users: Vec<UserRecord>,
    pub jobs: Vec<JobRecord>,
    /// Dialect name → its document (absent from exports made before documents existed).
    #[serde(default)]
    pub documents: BTreeMap<String, serde_json::Value>,
    /// Secret name → its bytes, hex.
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    /// Absent from exports made before schedules existed.
    #[serde(default)]
    pub schedules: Vec<ScheduleRecord>,
    /// Absent from exports made before policies existed.
    #[serde(default)]
    pub policies: Vec<PolicyRecord>,
}

impl StateStore {
    pub fn export(&self) -> Result<Export, StateError> {
        let mut jobs = self.jobs()?;
        jobs.sort_by_key(|j| j.sequence);
        let mut documents = BTreeMap::new();
        for (name, bytes) in self.documents()? {
            documents.insert(name.clone(), decode(&format!("document {name}"), &bytes)?);
        }
        Ok(Export {
            keys: self.keys()?,
            users: self.users()?,
            jobs,
            documents,
            secrets: self
                .secrets()?
                .into_iter()
                .map(|(name, bytes)| (name, hex::encode(bytes)))
                .collect(),
            schedules: self.schedules()?,
            policies: self.policies()?,
        })
    }

    /// True when no table holds a record (a store just created).
    pub fn is_empty(&self) -> Result<bool, StateError> {
        let export = self.export()?;
        Ok(export.keys.is_empty()
            && export.users.is_empty()
            && export.jobs.is_empty()
            && export.documents.is_empty()
            && export.secrets.is_empty()
            && export.schedules.is_empty()
            && export.policies.is_empty())
    }

    /// Replaces every table's records with `export`'s, in one transaction.
    pub fn import(&self, export: &Export) -> Result<(), StateError> {
        let mut secrets = Vec::new();
        for (name, text) in &export.secrets {
            let bytes = hex::decode(text).map_err(|e| StateError::Corrupt {
                what: format!("secret {name}"),
                reason: e.to_string(),
            })?;
            secrets.push((name.as_str(), bytes));
        }
        self.guarded(|| {
            let txn = self.database().begin_write().map_err(db)?;
            for table in [KEYS, USERS, JOBS, DOCUMENTS, SECRETS, SCHEDULES, POLICIES] {
                txn.delete_table(table).map_err(db)?;
            }
            {
                let mut keys = txn.open_table(KEYS).map_err(db)?;
                for key in &export.keys {
                    keys.insert(key.id.as_str(), json(key).as_slice())
                        .map_err(db)?;
                }
                let mut users = txn.open_table(USERS).map_err(db)?;
                for user in &export.users {
                    users
                        .insert(email_key(&user.email).as_str(), json(user).as_slice())
                        .map_err(db)?;
                }
                let mut jobs = txn.open_table(JOBS).map_err(db)?;
                for job in &export.jobs {
                    jobs.insert(job.view.id.as_str(), json(job).as_slice())
                        .map_err(db)?;
                }
                let mut documents = txn.open_table(DOCUMENTS).map_err(db)?;
                for (name, document) in &export.documents {
                    documents
                        .insert(name.as_str(), json(document).as_slice())
                        .map_err(db)?;
                }
                let mut table = txn.open_table(SECRETS).map_err(db)?;
                for (name, bytes) in &secrets {
                    table.insert(*name, bytes.as_slice()).map_err(db)?;
                }
                let mut schedules = txn.open_table(SCHEDULES).map_err(db)?;
                for schedule in &export.schedules {
                    schedules
                        .insert(schedule.name.as_str(), json(schedule).as_slice())
                        .map_err(db)?;
                }
                let mut policies = txn.open_table(POLICIES).map_err(db)?;
                for policy in &export.policies {
                    policies
                        .insert(policy.name.as_str(), json(policy).as_slice())
                        .map_err(db)?;
                }
            }
            txn.commit().map_err(db)
        })
    }
}

fn json(record: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(record).expect("state records serialize")
}
