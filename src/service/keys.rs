//! API keys: `<id>.<secret>`, 16 and 64 lowercase hex digits. The id is public (listing,
//! logs, revocation); only the SHA-256 of the secret is stored, and it is compared in
//! constant time. The shape is that of a Pterodactyl node token, so one key serves Wings.
//!
//! Keys live in one JSON file (mode 0600) in the data directory, replaced atomically on
//! every change and re-read when it changes, so `stowage key ...` works whether or not a
//! server is running.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ErrorKind;

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

impl std::str::FromStr for Role {
    type Err = KeyStoreError;
    fn from_str(text: &str) -> Result<Role, KeyStoreError> {
        match text {
            "reader" => Ok(Role::Reader),
            "backup" => Ok(Role::Backup),
            "writer" => Ok(Role::Writer),
            "admin" => Ok(Role::Admin),
            other => Err(KeyStoreError::InvalidInput(format!(
                "role {other:?} must be reader, backup, writer or admin"
            ))),
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
    /// The dialect whose key shape this key has (`backupchan`: `bakch-<secret>`); `None`
    /// for stowage's own `<id>.<secret>` keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dialect: Option<String>,
}

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
}

impl KeyStoreError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            KeyStoreError::Io { .. } | KeyStoreError::Json { .. } => ErrorKind::Internal,
            KeyStoreError::Malformed | KeyStoreError::Unknown => ErrorKind::Unauthorized,
            KeyStoreError::Forbidden { .. } => ErrorKind::Forbidden,
            KeyStoreError::NotFound { .. } => ErrorKind::NotFound,
            KeyStoreError::InvalidInput(_) => ErrorKind::InvalidInput,
        }
    }
}

/// What tells one version of the key file from the next: mtime, inode, length.
type FileIdentity = (SystemTime, u64, u64);

pub const KEY_ID_HEX: usize = 16;
/// The dialect name of Backup-chan keys, `bakch-` + 64 lowercase hex digits.
pub const BACKUPCHAN: &str = "backupchan";
const BACKUPCHAN_PREFIX: &str = "bakch-";
pub const KEY_SECRET_HEX: usize = 64;

/// The key file and a cache of its contents, refreshed when the file changes.
pub struct KeyStore {
    path: PathBuf,
    /// The file's identity when last read (mtime, inode, length) and its records.
    cache: Mutex<(Option<FileIdentity>, Vec<KeyRecord>)>,
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
    pub fn new(path: impl Into<PathBuf>) -> KeyStore {
        KeyStore {
            path: path.into(),
            cache: Mutex::new((None, Vec::new())),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, source: std::io::Error) -> KeyStoreError {
        KeyStoreError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// Every key, re-reading the file when it changed since the last read.
    pub fn list(&self) -> Result<Vec<KeyRecord>, KeyStoreError> {
        // Every save is a rename of a new file, so the inode changes even where mtimes
        // are coarse.
        let modified = match std::fs::metadata(&self.path) {
            Ok(meta) => Some((
                meta.modified().map_err(|e| self.io(e))?,
                std::os::unix::fs::MetadataExt::ino(&meta),
                meta.len(),
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(self.io(e)),
        };
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.0 != modified || modified.is_none() {
            let records = match modified {
                None => Vec::new(),
                Some(_) => {
                    let bytes = std::fs::read(&self.path).map_err(|e| self.io(e))?;
                    serde_json::from_slice(&bytes).map_err(|source| KeyStoreError::Json {
                        path: self.path.clone(),
                        source,
                    })?
                }
            };
            *cache = (modified, records);
        }
        Ok(cache.1.clone())
    }

    fn save(&self, records: &[KeyRecord]) -> Result<(), KeyStoreError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| self.io(e))?;
        let temp = dir.join(format!(".keys-{}.tmp", random_hex(16)));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
            .map_err(|e| self.io(e))?;
        let json = serde_json::to_vec_pretty(records).expect("key records serialize");
        file.write_all(&json)
            .and_then(|_| file.sync_all())
            .map_err(|e| self.io(e))?;
        std::fs::rename(&temp, &self.path).map_err(|e| self.io(e))?;
        Ok(())
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
        if let Some(existing) = self.list()?.into_iter().find(|r| r.id == id) {
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
        let mut records = self.list()?;
        let record = KeyRecord {
            id: id.to_string(),
            name: name.to_string(),
            role,
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            secret_sha256: sha256_hex(secret.as_bytes()),
            revoked_at: None,
            dialect: dialect.map(str::to_string),
        };
        records.push(record.clone());
        self.save(&records)?;
        Ok((record, format!("{id}.{secret}")))
    }

    /// Revokes a key by id.
    pub fn revoke(&self, id: &str) -> Result<(), KeyStoreError> {
        let mut records = self.list()?;
        let record = records
            .iter_mut()
            .find(|r| r.id == id)
            .ok_or_else(|| KeyStoreError::NotFound { id: id.to_string() })?;
        record.revoked_at =
            Some(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        self.save(&records)
    }

    /// True when at least one key is active.
    pub fn has_active_keys(&self) -> Result<bool, KeyStoreError> {
        Ok(self.list()?.iter().any(|r| r.revoked_at.is_none()))
    }

    /// Verifies a presented key.
    pub fn verify(&self, key: &str) -> Result<Principal, KeyStoreError> {
        let (id, secret) = split_key(key)?;
        let presented = Sha256::digest(secret.as_bytes());
        let records = self.list()?;
        let record = records
            .iter()
            .find(|r| {
                r.id.eq_ignore_ascii_case(id) && r.revoked_at.is_none() && r.dialect.is_none()
            })
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

    #[test]
    fn create_verify_revoke() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::new(dir.path().join("keys.json"));
        let (record, key) = store.create("ci", Role::Writer).unwrap();
        let principal = store.verify(&key).unwrap();
        assert_eq!(principal.role, Role::Writer);
        assert!(principal.require(Role::Reader).is_ok());
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
        // Another store on the same file sees the change (a CLI beside a running server).
        let other = KeyStore::new(dir.path().join("keys.json"));
        other.revoke(&record.id).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(store.verify(&key).is_err());
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(store.path()).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn backupchan_keys() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::new(dir.path().join("keys.json"));
        let (record, key) = store
            .create_for_dialect("bc", Role::Writer, BACKUPCHAN)
            .unwrap();
        assert!(key.starts_with("bakch-") && key.len() == 70);
        assert!(!std::fs::read_to_string(store.path())
            .unwrap()
            .contains(&key[6..]));
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
