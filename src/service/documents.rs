//! A dialect's records as one document of the state store (`state::documents`), and the
//! move of the earlier layout's files into it: a dialect's JSON file in
//! `<data_dir>/dialects/` is taken into the store the first time the dialect starts on a
//! store that lacks its document, then renamed `<file>.migrated` (kept, never read
//! again). The signing secret of handed-out links moves the same way.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::ErrorKind;
use crate::state::{StateError, StateStore};

/// Name of the secret signing handed-out links in the state store.
pub const URL_SIGNING_SECRET: &str = "url-signing";

#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} cannot be moved into the state store: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

impl DocumentError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            DocumentError::State(e) => e.kind(),
            DocumentError::Io { .. } => ErrorKind::Internal,
            DocumentError::Invalid { .. } => ErrorKind::Corrupt,
        }
    }
}

/// One dialect's document in the state store.
#[derive(Clone)]
pub struct Document {
    store: Arc<StateStore>,
    name: &'static str,
}

impl Document {
    /// The document `name` of `store`, after moving `legacy` (the dialect's file of the
    /// earlier layout) into it when the store has none.
    pub fn open(
        store: Arc<StateStore>,
        name: &'static str,
        legacy: &Path,
    ) -> Result<Document, DocumentError> {
        let io = |source| DocumentError::Io {
            path: legacy.to_path_buf(),
            source,
        };
        match std::fs::read(legacy) {
            Ok(bytes) => {
                if store.document(name)?.is_none() {
                    serde_json::from_slice::<serde_json::Value>(&bytes).map_err(|e| {
                        DocumentError::Invalid {
                            path: legacy.to_path_buf(),
                            reason: format!("not JSON: {e}"),
                        }
                    })?;
                    store.put_document(name, &bytes)?;
                    tracing::info!(file = %legacy.display(), "moved into the state store");
                }
                retire(legacy).map_err(io)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        Ok(Document { store, name })
    }

    /// The stored document, `None` before the first save.
    pub fn load(&self) -> Result<Option<Vec<u8>>, StateError> {
        self.store.document(self.name)
    }

    /// Replaces the document (one durable transaction).
    pub fn save(&self, json: &[u8]) -> Result<(), StateError> {
        self.store.put_document(self.name, json)
    }
}

/// Where the dialects' documents are opened: the state store, and the data directory
/// whose `dialects/<name>.json` files (the earlier layout) move into it.
#[derive(Clone)]
pub struct DocumentStore {
    store: Arc<StateStore>,
    data_dir: PathBuf,
}

impl DocumentStore {
    pub fn new(store: Arc<StateStore>, data_dir: &Path) -> DocumentStore {
        DocumentStore {
            store,
            data_dir: data_dir.to_path_buf(),
        }
    }

    /// The document of dialect `name`, its earlier file moved in first.
    pub fn open(&self, name: &'static str) -> Result<Document, DocumentError> {
        let legacy = self.data_dir.join("dialects").join(format!("{name}.json"));
        Document::open(self.store.clone(), name, &legacy)
    }
}

/// Renames a file of the earlier layout to `<file>.migrated`, durably.
fn retire(path: &Path) -> std::io::Result<()> {
    let mut retired = path.as_os_str().to_owned();
    retired.push(".migrated");
    std::fs::rename(path, &retired)?;
    super::durable::sync_parent(path)
}

/// The 32-byte secret signing handed-out links: the store's, else the one in `legacy`
/// (the hex file of the earlier layout, then retired), else a new random one. It never
/// changes once stored, so links outlive restarts.
pub fn signing_secret(store: &StateStore, legacy: &Path) -> Result<[u8; 32], DocumentError> {
    let fresh = match std::fs::read_to_string(legacy) {
        Ok(text) => {
            let mut secret = [0u8; 32];
            hex::decode_to_slice(text.trim(), &mut secret).map_err(|_| DocumentError::Invalid {
                path: legacy.to_path_buf(),
                reason: "it does not hold a 32-byte hex secret".into(),
            })?;
            secret
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut secret = [0u8; 32];
            rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut secret);
            secret
        }
        Err(source) => {
            return Err(DocumentError::Io {
                path: legacy.to_path_buf(),
                source,
            })
        }
    };
    let stored = store.secret_or_insert(URL_SIGNING_SECRET, &fresh)?;
    if legacy.exists() {
        retire(legacy).map_err(|source| DocumentError::Io {
            path: legacy.to_path_buf(),
            source,
        })?;
    }
    stored.try_into().map_err(|_| {
        DocumentError::State(StateError::Corrupt {
            what: format!("secret {URL_SIGNING_SECRET}"),
            reason: "not 32 bytes".into(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_legacy_file_moves_in_once_and_is_kept_renamed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(StateStore::open(&dir.path().join("state.redb")).unwrap());
        let legacy = dir.path().join("dialects/fa.json");
        std::fs::create_dir_all(legacy.parent().unwrap()).unwrap();
        std::fs::write(&legacy, b"{\"version\":1,\"users\":{}}").unwrap();
        let document = Document::open(store.clone(), "fa", &legacy).unwrap();
        assert_eq!(
            document.load().unwrap().as_deref(),
            Some(&b"{\"version\":1,\"users\":{}}"[..])
        );
        assert!(!legacy.exists());
        assert!(dir.path().join("dialects/fa.json.migrated").exists());
        document.save(b"{\"version\":1}").unwrap();
        // A stale file found later does not overwrite the store.
        std::fs::write(&legacy, b"{\"old\":true}").unwrap();
        let document = Document::open(store, "fa", &legacy).unwrap();
        assert_eq!(
            document.load().unwrap().as_deref(),
            Some(&b"{\"version\":1}"[..])
        );
        // A file that is not JSON is refused and left where it is.
        let bad = dir.path().join("dialects/wings.json");
        std::fs::write(&bad, b"garbage").unwrap();
        let store = Arc::new(StateStore::open(&dir.path().join("other.redb")).unwrap());
        assert!(Document::open(store, "wings", &bad).is_err());
        assert!(bad.exists());
    }

    #[test]
    fn the_signing_secret_moves_in_and_stays() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(&dir.path().join("state.redb")).unwrap();
        let legacy = dir.path().join("url-signing.key");
        std::fs::write(&legacy, format!("{}\n", "ab".repeat(32))).unwrap();
        assert_eq!(signing_secret(&store, &legacy).unwrap(), [0xab; 32]);
        assert!(!legacy.exists());
        assert_eq!(signing_secret(&store, &legacy).unwrap(), [0xab; 32]);
        let other = StateStore::open(&dir.path().join("fresh.redb")).unwrap();
        let made = signing_secret(&other, &legacy).unwrap();
        assert_eq!(signing_secret(&other, &legacy).unwrap(), made);
    }
}
