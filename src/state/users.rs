//! User records in the state store: who may sign in (the dashboard, the CyBorgBackup
//! dialect), keyed by their email address folded to lower case. The rules (validation,
//! password hashing) are `service::users`'s; this module only stores and reads.

use serde::{Deserialize, Serialize};

use super::schema::USERS;
use super::{decode, StateError, StateStore};

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

    /// Removes a user; `false` when there was none.
    pub fn remove_user(&self, email: &str) -> Result<bool, StateError> {
        self.remove(USERS, &email_key(email))
    }
}
