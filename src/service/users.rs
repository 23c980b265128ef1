//! Users: people who sign in with an email address and a password (the dashboard, the
//! CyBorgBackup dialect). Emails are unique ignoring case; passwords are stored only as
//! argon2id PHC strings and verified in constant time by the argon2 crate. A user may
//! own API keys; deleting a user revokes them. After [`FREE_FAILURES`] failed sign-ins
//! in a row for one email, each further try must wait (1 s, doubling up to
//! [`MAX_WAIT`]) and is refused unverified until then: guessing a password takes years
//! instead of hours, while the owner is never locked out for long.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use serde::{Deserialize, Serialize};

use super::keys::KeyStore;
use crate::error::ErrorKind;
use crate::state::users::UserRecord;
use crate::state::{StateError, StateStore};

/// Longest accepted email address (RFC 5321's path limit).
pub const MAX_EMAIL_LEN: usize = 254;
/// Shortest and longest accepted password, in bytes.
pub const MIN_PASSWORD_LEN: usize = 8;
pub const MAX_PASSWORD_LEN: usize = 1024;
/// Longest first or last name.
pub const MAX_NAME_LEN: usize = 150;
/// Failed sign-ins in a row of one email before tries must wait.
pub const FREE_FAILURES: u32 = 5;
/// The longest wait between tries.
pub const MAX_WAIT: Duration = Duration::from_secs(300);
/// Emails whose failures are remembered at once (the oldest are forgotten first).
const MAX_TRACKED: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("{0}")]
    InvalidInput(String),
    #[error("a user with email {email} exists")]
    Exists { email: String },
    #[error("no user with email {email}")]
    NotFound { email: String },
    #[error("wrong email or password")]
    WrongPassword,
    #[error("too many failed sign-ins for this email: try again in {retry_after_secs} s")]
    Throttled { retry_after_secs: u64 },
    #[error(transparent)]
    State(#[from] StateError),
    #[error("stored password of {email} is not a valid hash: {reason}")]
    BadHash { email: String, reason: String },
    #[error(transparent)]
    Keys(#[from] super::keys::KeyStoreError),
}

impl UserError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            UserError::InvalidInput(_) => ErrorKind::InvalidInput,
            UserError::Exists { .. } => ErrorKind::AlreadyExists,
            UserError::NotFound { .. } => ErrorKind::NotFound,
            UserError::WrongPassword => ErrorKind::Unauthorized,
            UserError::Throttled { .. } => ErrorKind::LimitExceeded,
            UserError::State(e) => e.kind(),
            UserError::BadHash { .. } => ErrorKind::Corrupt,
            UserError::Keys(e) => e.kind(),
        }
    }
}

/// A user as shown: everything but the password hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserView {
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub superuser: bool,
    pub created_at: String,
    pub last_login: Option<String>,
}

impl From<UserRecord> for UserView {
    fn from(record: UserRecord) -> UserView {
        UserView {
            email: record.email,
            first_name: record.first_name,
            last_name: record.last_name,
            superuser: record.superuser,
            created_at: record.created_at,
            last_login: record.last_login,
        }
    }
}

/// What a new user is made of.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NewUser {
    pub email: String,
    #[serde(default)]
    pub first_name: String,
    #[serde(default)]
    pub last_name: String,
    #[serde(default)]
    pub superuser: bool,
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Checks an email address's shape: one `@` between non-empty parts, a dot in the
/// domain, no spaces or control characters, at most [`MAX_EMAIL_LEN`] bytes.
pub fn validate_email(email: &str) -> Result<(), UserError> {
    let bad = |why: &str| Err(UserError::InvalidInput(format!("email {email:?}: {why}")));
    if email.is_empty() || email.len() > MAX_EMAIL_LEN {
        return bad(&format!("must be 1 to {MAX_EMAIL_LEN} bytes"));
    }
    if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("must not contain spaces or control characters");
    }
    match email.split_once('@') {
        Some((local, domain))
            if !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.') =>
        {
            Ok(())
        }
        _ => bad("must look like name@example.org"),
    }
}

fn validate_password(password: &str) -> Result<(), UserError> {
    if password.len() < MIN_PASSWORD_LEN || password.len() > MAX_PASSWORD_LEN {
        return Err(UserError::InvalidInput(format!(
            "a password must be {MIN_PASSWORD_LEN} to {MAX_PASSWORD_LEN} bytes"
        )));
    }
    Ok(())
}

fn validate_name(what: &str, name: &str) -> Result<(), UserError> {
    if name.chars().count() > MAX_NAME_LEN || name.chars().any(char::is_control) {
        return Err(UserError::InvalidInput(format!(
            "{what} must be at most {MAX_NAME_LEN} characters, without control characters"
        )));
    }
    Ok(())
}

fn hash_password(password: &str) -> String {
    Argon2::default()
        .hash_password(password.as_bytes(), &SaltString::generate(&mut OsRng))
        .expect("argon2 with its default parameters hashes any password")
        .to_string()
}

/// Failed sign-ins in a row, by email folded to lower case: how many, and the last.
#[derive(Default)]
struct Failures {
    by_email: HashMap<String, (u32, Instant)>,
}

impl Failures {
    /// How long after the last failure the next try may come.
    fn wait(count: u32) -> Duration {
        match count.checked_sub(FREE_FAILURES) {
            None => Duration::ZERO,
            Some(extra) => Duration::from_secs(1u64 << extra.min(20)).min(MAX_WAIT),
        }
    }

    /// `Err` with the seconds left while `email` must wait.
    fn check(&self, email: &str, now: Instant) -> Result<(), UserError> {
        let Some((count, last)) = self.by_email.get(email) else {
            return Ok(());
        };
        let ready = *last + Self::wait(*count);
        if now >= ready {
            return Ok(());
        }
        Err(UserError::Throttled {
            retry_after_secs: (ready - now).as_secs_f64().ceil() as u64,
        })
    }

    fn failed(&mut self, email: &str, now: Instant) {
        if self.by_email.len() >= MAX_TRACKED && !self.by_email.contains_key(email) {
            self.by_email
                .retain(|_, (_, last)| now.saturating_duration_since(*last) < MAX_WAIT);
            if self.by_email.len() >= MAX_TRACKED {
                let oldest = self
                    .by_email
                    .iter()
                    .min_by_key(|(_, (_, last))| *last)
                    .map(|(email, _)| email.clone());
                if let Some(oldest) = oldest {
                    self.by_email.remove(&oldest);
                }
            }
        }
        let entry = self.by_email.entry(email.to_string()).or_insert((0, now));
        entry.0 = entry.0.saturating_add(1);
        entry.1 = now;
    }
}

/// The user store, over the state store. Clones share the record of failed sign-ins.
#[derive(Clone)]
pub struct UserStore {
    store: Arc<StateStore>,
    failures: Arc<Mutex<Failures>>,
}

impl UserStore {
    pub fn new(store: Arc<StateStore>) -> UserStore {
        UserStore {
            store,
            failures: Arc::default(),
        }
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, Failures> {
        self.failures.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn create(&self, user: NewUser, password: &str) -> Result<UserView, UserError> {
        let email = user.email.trim().to_string();
        validate_email(&email)?;
        validate_password(password)?;
        validate_name("first name", &user.first_name)?;
        validate_name("last name", &user.last_name)?;
        let record = UserRecord {
            email: email.clone(),
            first_name: user.first_name,
            last_name: user.last_name,
            password_phc: hash_password(password),
            superuser: user.superuser,
            created_at: now(),
            last_login: None,
        };
        if !self.store.insert_user(&record)? {
            return Err(UserError::Exists { email });
        }
        Ok(record.into())
    }

    pub fn list(&self) -> Result<Vec<UserView>, UserError> {
        Ok(self
            .store
            .users()?
            .into_iter()
            .map(UserView::from)
            .collect())
    }

    pub fn get(&self, email: &str) -> Result<UserView, UserError> {
        Ok(self.record(email)?.into())
    }

    fn record(&self, email: &str) -> Result<UserRecord, UserError> {
        self.store.user(email)?.ok_or_else(|| UserError::NotFound {
            email: email.to_string(),
        })
    }

    /// Replaces a user's password.
    pub fn set_password(&self, email: &str, password: &str) -> Result<(), UserError> {
        validate_password(password)?;
        let mut record = self.record(email)?;
        record.password_phc = hash_password(password);
        Ok(self.store.update_user(&record)?)
    }

    /// Checks a sign-in and records it; a wrong password and an unknown email are the
    /// same error, and both count as failures ([`UserError::Throttled`] while the email
    /// must wait).
    pub fn verify(&self, email: &str, password: &str) -> Result<UserView, UserError> {
        self.verify_at(email, password, Instant::now())
    }

    fn verify_at(&self, email: &str, password: &str, at: Instant) -> Result<UserView, UserError> {
        let folded = crate::state::users::email_key(email);
        self.failures().check(&folded, at)?;
        let verified = self.check_password(email, password);
        if matches!(verified, Err(UserError::WrongPassword)) {
            // Counted from the refusal, not the request: a slow hash shortens no wait.
            self.failures().failed(&folded, at.max(Instant::now()));
        }
        let mut record = verified?;
        self.failures().by_email.remove(&folded);
        record.last_login = Some(now());
        self.store.update_user(&record)?;
        Ok(record.into())
    }

    fn check_password(&self, email: &str, password: &str) -> Result<UserRecord, UserError> {
        let Some(record) = self.store.user(email)? else {
            // Spend the same work as for a known user, so timing tells nothing.
            let _ = hash_password(password);
            return Err(UserError::WrongPassword);
        };
        let parsed = PasswordHash::new(&record.password_phc).map_err(|e| UserError::BadHash {
            email: record.email.clone(),
            reason: e.to_string(),
        })?;
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .map_err(|_| UserError::WrongPassword)?;
        Ok(record)
    }

    /// Changes a user's email address; the keys they own follow. Refused when the new
    /// address is another user's.
    pub fn rename(&self, email: &str, new_email: &str) -> Result<UserView, UserError> {
        let new_email = new_email.trim();
        validate_email(new_email)?;
        let mut record = self.record(email)?;
        record.email = new_email.to_string();
        if !self.store.rename_user(email, &record)? {
            return Err(UserError::Exists {
                email: new_email.to_string(),
            });
        }
        self.failures()
            .by_email
            .remove(&crate::state::users::email_key(email));
        Ok(record.into())
    }

    /// Deletes a user and revokes every key they own.
    pub fn delete(&self, email: &str, keys: &KeyStore) -> Result<(), UserError> {
        let record = self.record(email)?;
        for key in keys.list()? {
            let owned = key
                .user
                .as_deref()
                .is_some_and(|owner| owner.eq_ignore_ascii_case(&record.email));
            if owned && key.revoked_at.is_none() {
                keys.revoke(&key.id)?;
            }
        }
        self.store.remove_user(&record.email)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stores(dir: &std::path::Path) -> (UserStore, KeyStore) {
        let state = Arc::new(StateStore::open(&dir.join("state.redb")).unwrap());
        (UserStore::new(state.clone()), KeyStore::new(state))
    }

    #[test]
    fn failed_sign_ins_make_further_tries_wait_longer_each_time() {
        let dir = tempfile::tempdir().unwrap();
        let (users, _) = stores(dir.path());
        let new = NewUser {
            email: "ada@example.org".into(),
            ..NewUser::default()
        };
        users.create(new, "correct horse").unwrap();
        // An hour on, so the times given are never earlier than the clock's.
        let start = Instant::now() + Duration::from_secs(3600);
        for _ in 0..FREE_FAILURES {
            assert!(matches!(
                users.verify_at("ada@example.org", "wrong guess", start),
                Err(UserError::WrongPassword)
            ));
        }
        // Even the right password waits its turn, and is not checked meanwhile.
        assert!(matches!(
            users.verify_at("ADA@example.org", "correct horse", start),
            Err(UserError::Throttled {
                retry_after_secs: 1
            })
        ));
        let later = start + Duration::from_secs(1);
        assert!(matches!(
            users.verify_at("ada@example.org", "wrong again", later),
            Err(UserError::WrongPassword)
        ));
        assert!(matches!(
            users.verify_at(
                "ada@example.org",
                "correct horse",
                later + Duration::from_secs(1)
            ),
            Err(UserError::Throttled {
                retry_after_secs: 1
            })
        ));
        let ready = later + Duration::from_secs(2);
        users
            .verify_at("ada@example.org", "correct horse", ready)
            .unwrap();
        // A success forgets the failures; other emails never waited.
        users
            .verify_at("ada@example.org", "correct horse", ready)
            .unwrap();
        for _ in 0..FREE_FAILURES {
            let _ = users.verify_at("nobody@example.org", "x", start);
        }
        assert!(matches!(
            users.verify_at("nobody@example.org", "x", start),
            Err(UserError::Throttled { .. })
        ));
        assert_eq!(Failures::wait(FREE_FAILURES + 30), MAX_WAIT);
    }

    #[test]
    fn create_verify_change_and_delete() {
        let dir = tempfile::tempdir().unwrap();
        let (users, keys) = stores(dir.path());
        let new = NewUser {
            email: "Ada@Example.org".into(),
            first_name: "Ada".into(),
            superuser: true,
            ..NewUser::default()
        };
        let view = users.create(new.clone(), "correct horse").unwrap();
        assert_eq!(view.email, "Ada@Example.org");
        assert!(matches!(
            users.create(
                NewUser {
                    email: "ada@example.ORG".into(),
                    ..new.clone()
                },
                "another one"
            ),
            Err(UserError::Exists { .. })
        ));
        assert!(users.get("ADA@example.org").unwrap().last_login.is_none());
        assert!(matches!(
            users.verify("ada@example.org", "wrong password"),
            Err(UserError::WrongPassword)
        ));
        assert!(matches!(
            users.verify("nobody@example.org", "correct horse"),
            Err(UserError::WrongPassword)
        ));
        let signed_in = users.verify("ada@example.org", "correct horse").unwrap();
        assert!(signed_in.last_login.is_some());
        users
            .set_password("ada@example.org", "battery staple")
            .unwrap();
        assert!(users.verify("ada@example.org", "correct horse").is_err());
        users.verify("ada@example.org", "battery staple").unwrap();

        let (record, key) = keys
            .create("ada's laptop", super::super::keys::Role::Backup)
            .unwrap();
        keys.assign(&record.id, Some("ada@example.org")).unwrap();
        users.delete("ada@example.org", &keys).unwrap();
        assert!(keys.verify(&key).is_err(), "the user's keys are revoked");
        assert!(users.list().unwrap().is_empty());
        assert!(matches!(
            users.delete("ada@example.org", &keys),
            Err(UserError::NotFound { .. })
        ));
    }

    #[test]
    fn bad_input_is_refused_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let (users, _) = stores(dir.path());
        for email in [
            "",
            "no-at-sign",
            "a@b",
            "two@@example.org",
            "sp ace@example.org",
        ] {
            let new = NewUser {
                email: email.into(),
                ..NewUser::default()
            };
            assert!(
                matches!(
                    users.create(new, "long enough"),
                    Err(UserError::InvalidInput(_))
                ),
                "{email:?}"
            );
        }
        let new = NewUser {
            email: "short@example.org".into(),
            ..NewUser::default()
        };
        assert!(matches!(
            users.create(new, "short"),
            Err(UserError::InvalidInput(_))
        ));
    }
}
