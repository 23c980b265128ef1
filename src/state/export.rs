//! The whole state store as one value: what the server mirrors into its repository and
//! what a rebuilt server takes back (`service::mirror`).

use serde::{Deserialize, Serialize};

use super::jobs::JobRecord;
use super::keys::KeyRecord;
use super::schema::{JOBS, KEYS, USERS};
use super::users::{email_key, UserRecord};
use super::{db, StateError, StateStore};

/// Every record of every table.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Export {
    pub keys: Vec<KeyRecord>,
    pub users: Vec<UserRecord>,
    pub jobs: Vec<JobRecord>,
}

impl StateStore {
    pub fn export(&self) -> Result<Export, StateError> {
        let mut jobs = self.jobs()?;
        jobs.sort_by_key(|j| j.sequence);
        Ok(Export {
            keys: self.keys()?,
            users: self.users()?,
            jobs,
        })
    }

    /// True when no table holds a record (a store just created).
    pub fn is_empty(&self) -> Result<bool, StateError> {
        let export = self.export()?;
        Ok(export.keys.is_empty() && export.users.is_empty() && export.jobs.is_empty())
    }

    /// Replaces every table's records with `export`'s, in one transaction.
    pub fn import(&self, export: &Export) -> Result<(), StateError> {
        self.guarded(|| {
            let txn = self.database().begin_write().map_err(db)?;
            for table in [KEYS, USERS, JOBS] {
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
            }
            txn.commit().map_err(db)
        })
    }
}

fn json(record: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(record).expect("state records serialize")
}
