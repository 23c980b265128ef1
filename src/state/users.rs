//! User records in the state store: who may sign in (the dashboard, the CyBorgBackup
//! dialect), keyed by their email address folded to lower case. The rules (validation,
//! password hashing) are `service::users`'s; this module only stores and reads.

use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use super::keys::KeyRecord;
use super::schema::{KEYS, USERS};
use super::{db, decode, StateError, StateStore};

/// A stored user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    /// As entered; unique ignoring case.
    pub email: String,
    #[serde(default)]
    pub first_name: String,
    #[serde(default)]
    pub last_name: String,
    /// The password as an argon2id PHC string (`$argon2id$v=19$m=...,t=...,p=...$salt$hash`).
    pub password_phc: String,
    #[serde(default)]
    pub superuser: bool,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339; `None` until the first sign-in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_login: Option<String>,
}

/// The table key of an email address.
pub fn email_key(email: &str) -> String {
    email.trim().to_lowercase()
}

impl StateStore {
    /// Every user, by folded email.
    pub fn users(&self) -> Result<Vec<UserRecord>, StateError> {
        self.list(USERS)?
            .into_iter()
            .map(|(email, bytes)| decode(&format!("user {email}"), &bytes))
            .collect()
    }

    pub fn user(&self, email: &str) -> Result<Option<UserRecord>, StateError> {
        let key = email_key(email);
        self.get(USERS, &key)?
            .map(|bytes| decode(&format!("user {key}"), &bytes))
            .transpose()
    }

    /// Stores a new user; `false` (nothing changed) when the email is taken.
    pub fn insert_user(&self, record: &UserRecord) -> Result<bool, StateError> {
        let bytes = serde_json::to_vec(record).expect("user records serialize");
        self.put(USERS, &email_key(&record.email), &bytes, true)
    }

    /// Replaces a user's record.
    pub fn update_user(&self, record: &UserRecord) -> Result<(), StateError> {
        let bytes = serde_json::to_vec(record).expect("user records serialize");
        self.put(USERS, &email_key(&record.email), &bytes, false)
            .map(|_| ())
    }

    /// Gives the user `old` the record `renamed`, under its new email, and moves the keys
    /// they own to it, in one transaction: a crash leaves the user under one email or the
    /// other, with their keys. `false` (nothing changed) when the new email is another
    /// user's or `old` is no user.
    pub fn rename_user(&self, old: &str, renamed: &UserRecord) -> Result<bool, StateError> {
        let (old_key, new_key) = (email_key(old), email_key(&renamed.email));
        let bytes = serde_json::to_vec(renamed).expect("user records serialize");
        self.guarded(|| {
            let txn = self.database().begin_write().map_err(db)?;
            let renamed_ok = {
                let mut users = txn.open_table(USERS).map_err(db)?;
                let taken =
                    new_key != old_key && users.get(new_key.as_str()).map_err(db)?.is_some();
                let exists = users.get(old_key.as_str()).map_err(db)?.is_some();
                if taken || !exists {
                    false
                } else {
                    users.remove(old_key.as_str()).map_err(db)?;
                    users
                        .insert(new_key.as_str(), bytes.as_slice())
                        .map_err(db)?;
                    let mut keys = txn.open_table(KEYS).map_err(db)?;
                    let mut owned = Vec::new();
                    for item in keys.iter().map_err(db)? {
                        let (id, value) = item.map_err(db)?;
                        let mut record: KeyRecord =
                            decode(&format!("key {}", id.value()), value.value())?;
                        if record
                            .user
                            .as_deref()
                            .is_some_and(|u| email_key(u) == old_key)
                        {
                            record.user = Some(renamed.email.clone());
                            owned.push(record);
                        }
                    }
                    for record in owned {
                        let value = serde_json::to_vec(&record).expect("key records serialize");
                        keys.insert(record.id.as_str(), value.as_slice())
                            .map_err(db)?;
                    }
                    true
                }
            };
            txn.commit().map_err(db)?;
            Ok(renamed_ok)
        })
    }

    /// Removes a user; `false` when there was none.
    pub fn remove_user(&self, email: &str) -> Result<bool, StateError> {
        self.remove(USERS, &email_key(email))
    }
}
