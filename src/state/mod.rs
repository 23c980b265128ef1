//! The server's state store: one redb database, `<data_dir>/state.redb` (mode 0600),
//! beside the repository's index and separate from it. The index is a cache of the
//! backend; this store holds what only the server knows: API keys (hashes only), and, as
//! the server core grows, users, series settings, jobs and every dialect's records.
//!
//! Typed tables with a schema version (`schema`), the only module that touches them;
//! every call into redb is contained (`crate::unwind`), so a damaged file is an error
//! naming the file, never a panic. redb locks the file for the process that holds it:
//! while a server runs, the CLI reaches the store through the server's control socket
//! (`service::control`).

pub mod documents;
pub mod export;
pub mod jobs;
pub mod keys;
pub mod policies;
pub mod schedules;
mod schema;
pub mod stats_history;
pub mod users;

use std::path::{Path, PathBuf};

use redb::{Database, ReadableTable};

use crate::error::ErrorKind;
use crate::unwind::DropContained;
use schema::{META, SCHEMA_VERSION, SCHEMA_VERSION_KEY};

/// File name of the state store inside the data directory.
pub const STATE_FILE: &str = "state.redb";
/// redb's page cache for the state store (its default is 1 GiB; see the index's).
const STATE_CACHE_BYTES: usize = 32 << 20;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state store {path} is in use by another stowage process (a running server: the CLI reaches it through its control socket)")]
    Locked { path: PathBuf },
    #[error(
        "state store {path} is damaged ({reason}); restore it from a backup of the data directory"
    )]
    Damaged { path: PathBuf, reason: String },
    #[error(
        "state store {path} has schema version {found}; this build knows up to {SCHEMA_VERSION}"
    )]
    SchemaVersion { path: PathBuf, found: u64 },
    #[error("state store {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("state store record {what} is malformed: {reason}")]
    Corrupt { what: String, reason: String },
    #[error("state store error: {0}")]
    Redb(#[from] Box<redb::Error>),
}

impl StateError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            StateError::Locked { .. } => ErrorKind::Unavailable,
            StateError::Damaged { .. } | StateError::Corrupt { .. } => ErrorKind::Corrupt,
            StateError::SchemaVersion { .. } => ErrorKind::Conflict,
            StateError::Io { .. } | StateError::Redb(_) => ErrorKind::Internal,
        }
    }
}

/// Converts any redb error into [`StateError::Redb`].
fn db<E: Into<redb::Error>>(error: E) -> StateError {
    StateError::Redb(Box::new(error.into()))
}

/// The open state store.
pub struct StateStore {
    db: DropContained<Database>,
    path: PathBuf,
}

impl StateStore {
    /// Opens the store at `path`, creating it (mode 0600) when missing.
    pub fn open(path: &Path) -> Result<StateStore, StateError> {
        create_private(path).map_err(|source| StateError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let damaged = |reason: String| StateError::Damaged {
            path: path.to_path_buf(),
            reason,
        };
        let opened = crate::unwind::contain(|| {
            Database::builder()
                .set_cache_size(STATE_CACHE_BYTES)
                .create(path)
        })
        .map_err(&damaged)?;
        let database = opened.map_err(|error| match error {
            redb::DatabaseError::DatabaseAlreadyOpen => StateError::Locked {
                path: path.to_path_buf(),
            },
            other => damaged(other.to_string()),
        })?;
        let store = StateStore {
            db: DropContained::new(database, path.display().to_string()),
            path: path.to_path_buf(),
        };
        store.guarded(|| store.ensure_schema())?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn database(&self) -> &Database {
        self.db.get()
    }

    /// Runs one operation, turning a panic inside redb into [`StateError::Damaged`].
    fn guarded<T>(&self, work: impl FnOnce() -> Result<T, StateError>) -> Result<T, StateError> {
        crate::unwind::contain(work).map_err(|reason| StateError::Damaged {
            path: self.path.clone(),
            reason,
        })?
    }

    fn ensure_schema(&self) -> Result<(), StateError> {
        let txn = self.database().begin_write().map_err(db)?;
        {
            let mut meta = txn.open_table(META).map_err(db)?;
            let found = meta.get(SCHEMA_VERSION_KEY).map_err(db)?.map(|v| v.value());
            match found {
                None => {
                    meta.insert(SCHEMA_VERSION_KEY, SCHEMA_VERSION)
                        .map_err(db)?;
                }
                Some(found) if found <= SCHEMA_VERSION => {}
                Some(found) => {
                    return Err(StateError::SchemaVersion {
                        path: self.path.clone(),
                        found,
                    })
                }
            }
            schema::open_all(&txn)?;
        }
        txn.commit().map_err(db)
    }

    /// Every record of `table`, in key order, as JSON bytes.
    fn list(
        &self,
        table: redb::TableDefinition<&str, &[u8]>,
    ) -> Result<Vec<(String, Vec<u8>)>, StateError> {
        self.guarded(|| {
            let txn = self.database().begin_read().map_err(db)?;
            let table = txn.open_table(table).map_err(db)?;
            let mut out = Vec::new();
            for item in table.iter().map_err(db)? {
                let (key, value) = item.map_err(db)?;
                out.push((key.value().to_string(), value.value().to_vec()));
            }
            Ok(out)
        })
    }

    fn get(
        &self,
        table: redb::TableDefinition<&str, &[u8]>,
        key: &str,
    ) -> Result<Option<Vec<u8>>, StateError> {
        self.guarded(|| {
            let txn = self.database().begin_read().map_err(db)?;
            let table = txn.open_table(table).map_err(db)?;
            let value = table.get(key).map_err(db)?;
            Ok(value.map(|v| v.value().to_vec()))
        })
    }

    /// Stores `value` under `key`; with `only_new`, an existing key is left alone and
    /// `false` returned. One durable transaction.
    fn put(
        &self,
        table: redb::TableDefinition<&str, &[u8]>,
        key: &str,
        value: &[u8],
        only_new: bool,
    ) -> Result<bool, StateError> {
        self.guarded(|| {
            let txn = self.database().begin_write().map_err(db)?;
            let stored = {
                let mut table = txn.open_table(table).map_err(db)?;
                if only_new && table.get(key).map_err(db)?.is_some() {
                    false
                } else {
                    table.insert(key, value).map_err(db)?;
                    true
                }
            };
            txn.commit().map_err(db)?;
            Ok(stored)
        })
    }
}

impl StateStore {
    /// Removes `key` from `table`; `false` when it was not there.
    fn remove(
        &self,
        table: redb::TableDefinition<&str, &[u8]>,
        key: &str,
    ) -> Result<bool, StateError> {
        self.guarded(|| {
            let txn = self.database().begin_write().map_err(db)?;
            let removed = txn
                .open_table(table)
                .map_err(db)?
                .remove(key)
                .map_err(db)?
                .is_some();
            txn.commit().map_err(db)?;
            Ok(removed)
        })
    }
}

/// Creates the store's file (mode 0600) when missing, whole: an empty redb database is
/// made under a temporary name beside it, synced, then linked into place, so a process
/// killed during a first start never leaves a half-written store. Linking never
/// replaces a file another process made meanwhile.
fn create_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if path.exists() {
        return Ok(());
    }
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(format!(".new-{}", std::process::id()));
    let temporary = std::path::PathBuf::from(temporary);
    let _ = std::fs::remove_file(&temporary);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temporary)?;
    let made = crate::unwind::contain(|| Database::builder().create(&temporary))
        .map_err(std::io::Error::other)
        .and_then(|created| created.map(drop).map_err(std::io::Error::other))
        .and_then(|()| std::fs::File::open(&temporary)?.sync_all())
        .and_then(|()| match std::fs::hard_link(&temporary, path) {
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            other => other,
        });
    let _ = std::fs::remove_file(&temporary);
    made?;
    match path.parent() {
        Some(dir) => std::fs::File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}

fn decode<T: serde::de::DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, StateError> {
    serde_json::from_slice(bytes).map_err(|e| StateError::Corrupt {
        what: what.to_string(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_private_reopened_and_locked_while_open() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STATE_FILE);
        let store = StateStore::open(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(matches!(
            StateStore::open(&path),
            Err(StateError::Locked { .. })
        ));
        drop(store);
        StateStore::open(&path).unwrap();
    }

    #[test]
    fn a_half_written_temporary_of_a_killed_creator_is_passed_by() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STATE_FILE);
        let temporary = dir
            .path()
            .join(format!("{STATE_FILE}.new-{}", std::process::id()));
        std::fs::write(&temporary, b"half a redb header").unwrap();
        let store = StateStore::open(&path).unwrap();
        assert!(!temporary.exists());
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(names.len(), 1, "only the store itself");
        drop(store);
    }

    #[test]
    fn a_damaged_file_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STATE_FILE);
        drop(StateStore::open(&path).unwrap());
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let error = StateStore::open(&path).err().expect("refused");
        assert_eq!(error.kind(), ErrorKind::Corrupt, "{error}");
    }
}
