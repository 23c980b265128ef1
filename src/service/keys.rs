//! API keys: `<id>.<secret>`, 16 and 64 lowercase hex digits. The id is public (listing,
//! logs, revocation); only the SHA-256 of the secret is stored, and it is compared in
//! constant time. The shape is that of a Pterodactyl node token, so one key serves Wings.
//!
//! Key records live in the state store (`state::keys`); a server holds the store, and
//! `stowage key ...` reaches it through the server's control socket while one runs
//! (`service::control`), so a change is seen at once. Keys of the earlier layout (a
//! `keys.json` file in the data directory) are moved into the store by
//! [`KeyStore::migrate_file`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ErrorKind;
pub use crate::state::keys::{KeyRecord, Role};
use crate::state::StateStore;

/// Who is calling, once a key was verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub key_id: String,
    pub name: String,
    pub role: Role,
}

impl Principal {
    /// `Err(Forbidden)` unless this principal has at least `role`.
    pub fn require(&self, role: Role) -> Result<(), KeyStoreError> {
        if self.role >= role {
            Ok(())
        } else {
            Err(KeyStoreError::Forbidden {
                key: self.key_id.clone(),
                needed: role,
            })
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    #[error("key file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("key file {path} is not valid: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("malformed API key: expected <16 hex digits>.<64 hex digits>")]
    Malformed,
    #[error("unknown or revoked API key")]
    Unknown,
    #[error("API key {key} lacks the {needed} role")]
    Forbidden { key: String, needed: Role },
    #[error("no API key with id {id}")]
    NotFound { id: String },
    #[error("{0}")]
    InvalidInput(String),
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    #[error(transparent)]
    Role(#[from] crate::state::keys::UnknownRole),
}

impl KeyStoreError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            KeyStoreError::Io { .. } | KeyStoreError::Json { .. } => ErrorKind::Internal,
            KeyStoreError::State(error) => error.kind(),
            KeyStoreError::Role(_) => ErrorKind::InvalidInput,
            KeyStoreError::Malformed | KeyStoreError::Unknown => ErrorKind::Unauthorized,
            KeyStoreError::Forbidden { .. } => ErrorKind::Forbidden,
            KeyStoreError::NotFound { .. } => ErrorKind::NotFound,
            KeyStoreError::InvalidInput(_) => ErrorKind::InvalidInput,
        }
    }
}

pub const KEY_ID_HEX: usize = 16;
/// The dialect name of Backup-chan keys, `bakch-` + 64 lowercase hex digits.
pub const BACKUPCHAN: &str = "backupchan";
const BACKUPCHAN_PREFIX: &str = "bakch-";
pub const KEY_SECRET_HEX: usize = 64;

/// The API keys, over the state store.
#[derive(Clone)]
pub struct KeyStore {
    store: Arc<StateStore>,
}

fn random_hex(len: usize) -> String {
    let mut bytes = vec![0u8; len / 2];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Splits `<id>.<secret>`, checking the shape.
pub fn split_key(key: &str) -> Result<(&str, &str), KeyStoreError> {
    let (id, secret) = key.split_once('.').ok_or(KeyStoreError::Malformed)?;
    let hex = |s: &str, len| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    if hex(id, KEY_ID_HEX) && hex(secret, KEY_SECRET_HEX) {
        Ok((id, secret))
    } else {
        Err(KeyStoreError::Malformed)
    }
}

impl KeyStore {
    pub fn new(store: Arc<StateStore>) -> KeyStore {
        KeyStore { store }
    }

    /// The state store the keys live in (shared with the other core stores).
    pub fn state_store(&self) -> Arc<StateStore> {
        self.store.clone()
    }

    /// Every key.
    pub fn list(&self) -> Result<Vec<KeyRecord>, KeyStoreError> {
        Ok(self.store.keys()?)
    }

    /// Moves the keys of a `keys.json` file (the earlier layout) into the store, then
    /// renames the file to `keys.json.migrated` (kept, never read again). Keys already in
    /// the store are left as they are. Returns how many were added.
    pub fn migrate_file(&self, path: &Path) -> Result<usize, KeyStoreError> {
        let io = |source: std::io::Error| KeyStoreError::Io {
            path: path.to_path_buf(),
            source,
        };
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(io(e)),
        };
        let records: Vec<KeyRecord> =
            serde_json::from_slice(&bytes).map_err(|source| KeyStoreError::Json {
                path: path.to_path_buf(),
                source,
            })?;
        let mut added = 0;
        for record in &records {
            split_key(&format!("{}.{}", record.id, "0".repeat(KEY_SECRET_HEX)))?;
            if self.store.insert_key(record)? {
                added += 1;
            }
        }
        let mut migrated = path.as_os_str().to_owned();
        migrated.push(".migrated");
        std::fs::rename(path, PathBuf::from(migrated)).map_err(io)?;
        crate::service::durable::sync_parent(path).map_err(io)?;
        tracing::info!(keys = added, file = %path.display(), "moved API keys into the state store");
        Ok(added)
    }

    /// Creates a key; returns its record and the full key, which is never shown again.
    pub fn create(&self, name: &str, role: Role) -> Result<(KeyRecord, String), KeyStoreError> {
        let secret = random_hex(KEY_SECRET_HEX);
        self.insert(name, role, &random_hex(KEY_ID_HEX), &secret, None)
    }

    /// Creates a key in a dialect's own shape; only `backupchan` (`bakch-<64 hex>`, the
    /// shape Backup-chan clients insist on) exists. The id is for listing and revoking.
    pub fn create_for_dialect(
        &self,
        name: &str,
        role: Role,
        dialect: &str,
    ) -> Result<(KeyRecord, String), KeyStoreError> {
        if dialect != BACKUPCHAN {
            return Err(KeyStoreError::InvalidInput(format!(
                "dialect {dialect:?} has no keys of its own (known: {BACKUPCHAN})"
            )));
        }
        let secret = random_hex(KEY_SECRET_HEX);
        let id = random_hex(KEY_ID_HEX);
        let (record, _) = self.insert(name, role, &id, &secret, Some(dialect))?;
        Ok((record, format!("{BACKUPCHAN_PREFIX}{secret}")))
    }

    /// Verifies a Backup-chan key (`bakch-<64 lowercase hex>`) against the active keys
    /// made for that dialect, comparing each hash in constant time.
    pub fn verify_backupchan(&self, key: &str) -> Result<Principal, KeyStoreError> {
        let secret = key
            .strip_prefix(BACKUPCHAN_PREFIX)
            .filter(|s| {
                s.len() == KEY_SECRET_HEX
                    && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            })
            .ok_or(KeyStoreError::Malformed)?;
        let presented = Sha256::digest(secret.as_bytes());
        let mut found = None;
        for record in self.list()? {
            if record.revoked_at.is_some() || record.dialect.as_deref() != Some(BACKUPCHAN) {
                continue;
            }
            let mut stored = [0u8; 32];
            if hex::decode_to_slice(&record.secret_sha256, &mut stored).is_err() {
                continue;
            }
            if bool::from(presented.as_slice().ct_eq(&stored)) {
                found = Some(record);
            }
        }
        let record = found.ok_or(KeyStoreError::Unknown)?;
        Ok(Principal {
            key_id: record.id,
            name: record.name,
            role: record.role,
        })
    }

    /// Stores a key whose text the caller chose (automation: `STOWAGE_ADMIN_KEY`).
    pub fn import(&self, name: &str, role: Role, key: &str) -> Result<KeyRecord, KeyStoreError> {
        let (id, secret) = split_key(key)?;
        let (id, secret) = (id.to_ascii_lowercase(), secret.to_string());
        if let Some(existing) = self.store.key(&id)? {
            return Ok(existing);
        }
        Ok(self.insert(name, role, &id, &secret, None)?.0)
    }

    fn insert(
        &self,
        name: &str,
        role: Role,
        id: &str,
        secret: &str,
        dialect: Option<&str>,
    ) -> Result<(KeyRecord, String), KeyStoreError> {
        let name = name.trim();
        if name.is_empty() || name.len() > 128 {
            return Err(KeyStoreError::InvalidInput(
                "key name must be 1 to 128 characters".into(),
            ));
        }
        let record = KeyRecord {
            id: id.to_string(),
            name: name.to_string(),
            role,
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            secret_sha256: sha256_hex(secret.as_bytes()),
            revoked_at: None,
            dialect: dialect.map(str::to_string),
            user: None,
        };
        if !self.store.insert_key(&record)? {
            return Err(KeyStoreError::InvalidInput(format!("key id {id} exists")));
        }
        Ok((record, format!("{id}.{secret}")))
    }

    /// Makes a key belong to a user (by email, which must exist), or to nobody.
    pub fn assign(&self, id: &str, user: Option<&str>) -> Result<KeyRecord, KeyStoreError> {
        let mut record = self
            .store
            .key(&id.to_ascii_lowercase())?
            .ok_or_else(|| KeyStoreError::NotFound { id: id.to_string() })?;
        record.user = match user {
            Some(email) => Some(
                self.store
                    .user(email)?
                    .ok_or_else(|| {
                        KeyStoreError::InvalidInput(format!("no user with email {email}"))
                    })?
                    .email,
            ),
            None => None,
        };
        self.store.update_key(&record)?;
        Ok(record)
    }

    /// Revokes a key by id.
    pub fn revoke(&self, id: &str) -> Result<(), KeyStoreError> {
        let mut record = self
            .store
            .key(&id.to_ascii_lowercase())?
            .ok_or_else(|| KeyStoreError::NotFound { id: id.to_string() })?;
        record.revoked_at =
            Some(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        Ok(self.store.update_key(&record)?)
    }

    /// True when at least one key is active.
    pub fn has_active_keys(&self) -> Result<bool, KeyStoreError> {
        Ok(self.list()?.iter().any(|r| r.revoked_at.is_none()))
    }

    /// Verifies a presented key.
    pub fn verify(&self, key: &str) -> Result<Principal, KeyStoreError> {
        let (id, secret) = split_key(key)?;
        let presented = Sha256::digest(secret.as_bytes());
        let record = self
            .store
            .key(&id.to_ascii_lowercase())?
            .filter(|r| r.revoked_at.is_none() && r.dialect.is_none())
            .ok_or(KeyStoreError::Unknown)?;
        let mut stored = [0u8; 32];
        hex::decode_to_slice(&record.secret_sha256, &mut stored)
            .map_err(|_| KeyStoreError::Unknown)?;
        if bool::from(presented.as_slice().ct_eq(&stored)) {
            Ok(Principal {
                key_id: record.id.clone(),
                name: record.name.clone(),
                role: record.role,
            })
        } else {
            Err(KeyStoreError::Unknown)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_in(dir: &Path) -> KeyStore {
        let path = dir.join(crate::state::STATE_FILE);
        KeyStore::new(Arc::new(StateStore::open(&path).unwrap()))
    }

    #[test]
    fn create_verify_revoke() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(dir.path());
        let (record, key) = store.create("ci", Role::Writer).unwrap();
        let principal = store.verify(&key).unwrap();
        assert_eq!(principal.role, Role::Writer);
        assert!(principal.require(Role::Reader).is_ok());
        assert!(principal.require(Role::Backup).is_ok());
        assert!(matches!(
            principal.require(Role::Admin),
            Err(KeyStoreError::Forbidden { .. })
        ));
        let wrong = format!("{}.{}", record.id, "0".repeat(64));
        assert!(matches!(store.verify(&wrong), Err(KeyStoreError::Unknown)));
        assert!(matches!(
            store.verify("nonsense"),
            Err(KeyStoreError::Malformed)
        ));
        store.revoke(&record.id.to_uppercase()).unwrap();
        assert!(store.verify(&key).is_err());
        assert_eq!("backup".parse::<Role>().unwrap(), Role::Backup);
        assert!("owner".parse::<Role>().is_err());
    }

    #[test]
    fn a_keys_file_of_the_earlier_layout_is_moved_into_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let secret = "ab".repeat(32);
        let records = serde_json::json!([{
            "id": "0123456789abcdef",
            "name": "old",
            "role": "writer",
            "created_at": "2026-01-01T00:00:00Z",
            "secret_sha256": sha256_hex(secret.as_bytes()),
        }]);
        let file = dir.path().join("keys.json");
        std::fs::write(&file, records.to_string()).unwrap();
        let store = store_in(dir.path());
        assert_eq!(store.migrate_file(&file).unwrap(), 1);
        assert!(!file.exists());
        assert!(dir.path().join("keys.json.migrated").exists());
        let principal = store.verify(&format!("0123456789abcdef.{secret}")).unwrap();
        assert_eq!(
            (principal.name.as_str(), principal.role),
            ("old", Role::Writer)
        );
        // Nothing left to move: a second start changes nothing.
        assert_eq!(store.migrate_file(&file).unwrap(), 0);
    }

    #[test]
    fn backupchan_keys() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(dir.path());
        let (record, key) = store
            .create_for_dialect("bc", Role::Writer, BACKUPCHAN)
            .unwrap();
        assert!(key.starts_with("bakch-") && key.len() == 70);
        assert_eq!(store.verify_backupchan(&key).unwrap().key_id, record.id);
        let wrong = format!("bakch-{}", "0".repeat(64));
        assert!(matches!(
            store.verify_backupchan(&wrong),
            Err(KeyStoreError::Unknown)
        ));
        assert!(matches!(
            store.verify_backupchan(&key.to_uppercase()),
            Err(KeyStoreError::Malformed)
        ));
        // A dialect key is not a stowage key, and the other way round.
        assert!(store
            .verify(&format!("{}.{}", record.id, &key[6..]))
            .is_err());
        let (_, native) = store.create("n", Role::Writer).unwrap();
        let secret = native.split_once('.').unwrap().1;
        assert!(store.verify_backupchan(&format!("bakch-{secret}")).is_err());
        assert!(store.create_for_dialect("x", Role::Writer, "fa").is_err());
        store.revoke(&record.id).unwrap();
        assert!(store.verify_backupchan(&key).is_err());
    }
}
