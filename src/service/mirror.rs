//! The server's state survives the machine: the state store's tables (keys, users, jobs,
//! the dialects' documents, the signing secret) are mirrored into the repository
//! (`repo::server_state`, sealed under the repository's keys), a few seconds after each
//! change and once more on shutdown. A server started with an empty data directory, its repository and the
//! passphrase takes them back before anything else reads them; `stowage repair state`
//! does the same on demand.
//!
//! The passphrase and the admin key file are never mirrored: the first is what opens the
//! repository, the second is a copy of a key the store holds only as a hash.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::error::ErrorKind;
use crate::repo::{RepoError, Repository};
use crate::state::export::Export;
use crate::state::{StateError, StateStore};

/// How often the mirror looks for changes (a task of the core scheduler).
pub const MIRROR_INTERVAL: Duration = Duration::from_secs(5);
/// Files of the data directory that mirrors of version 1 carried (before these records
/// moved into the state store), by path relative to it. Restoring such a mirror writes
/// them back; the dialects then move them into the store as from any earlier layout.
pub const LEGACY_FILES: [&str; 4] = [
    "url-signing.key",
    "dialects/fa.json",
    "dialects/wings.json",
    "dialects/backupchan.json",
];
const FORMAT: &str = "stowage-server-state";
/// 2: everything in `tables`; 1 also carried [`LEGACY_FILES`].
const VERSION: u32 = 2;

#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the server state in the repository does not decode: {0}")]
    Decode(String),
}

impl MirrorError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            MirrorError::Repo(e) => e.kind(),
            MirrorError::State(e) => e.kind(),
            MirrorError::Io { .. } => ErrorKind::Internal,
            MirrorError::Decode(_) => ErrorKind::Corrupt,
        }
    }
}

/// What is mirrored.
#[derive(Debug, Serialize, Deserialize)]
struct Snapshot {
    format: String,
    version: u32,
    tables: Export,
    /// Version 1 only: path relative to the data directory → the file's bytes, base64.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    files: BTreeMap<String, String>,
}

/// Writes the server's state into its repository when it changed.
pub struct StateMirror {
    repo: Repository,
    store: Arc<StateStore>,
    /// BLAKE3 of the snapshot last written.
    written: Mutex<Option<[u8; 32]>>,
}

impl StateMirror {
    pub fn new(repo: Repository, store: Arc<StateStore>) -> StateMirror {
        StateMirror {
            repo,
            store,
            written: Mutex::new(None),
        }
    }

    fn snapshot(&self) -> Result<Vec<u8>, MirrorError> {
        let snapshot = Snapshot {
            format: FORMAT.into(),
            version: VERSION,
            tables: self.store.export()?,
            files: BTreeMap::new(),
        };
        Ok(serde_json::to_vec(&snapshot).expect("snapshots serialize"))
    }

    /// Writes the state into the repository unless it is what was written last.
    /// Returns whether it wrote.
    pub async fn write_if_changed(&self) -> Result<bool, MirrorError> {
        let bytes = self.snapshot()?;
        let hash = *blake3::hash(&bytes).as_bytes();
        if *self.written.lock().unwrap_or_else(|p| p.into_inner()) == Some(hash) {
            return Ok(false);
        }
        self.repo.put_server_state(&bytes).await?;
        *self.written.lock().unwrap_or_else(|p| p.into_inner()) = Some(hash);
        Ok(true)
    }
}

/// Takes the mirrored state back from the repository: replaces the store's tables and,
/// from a mirror of version 1, writes its files into `data_dir` (over existing ones). Returns whether the
/// repository held a mirrored state.
pub async fn restore(
    repo: &Repository,
    store: &StateStore,
    data_dir: &Path,
) -> Result<bool, MirrorError> {
    let Some(bytes) = repo.server_state().await? else {
        return Ok(false);
    };
    let snapshot: Snapshot =
        serde_json::from_slice(&bytes).map_err(|e| MirrorError::Decode(e.to_string()))?;
    if snapshot.format != FORMAT || snapshot.version > VERSION {
        return Err(MirrorError::Decode(format!(
            "format {:?} version {} (this build reads {FORMAT} up to {VERSION})",
            snapshot.format, snapshot.version
        )));
    }
    let mut files = Vec::new();
    for (name, encoded) in &snapshot.files {
        // Only the files the mirror writes: a name from the repository is not trusted.
        if !LEGACY_FILES.contains(&name.as_str()) {
            return Err(MirrorError::Decode(format!("unexpected file {name:?}")));
        }
        let bytes = STANDARD
            .decode(encoded)
            .map_err(|e| MirrorError::Decode(format!("{name}: {e}")))?;
        files.push((data_dir.join(name), bytes));
    }
    store.import(&snapshot.tables)?;
    for (path, bytes) in files {
        super::durable::replace_file(&path, &bytes).map_err(|source| MirrorError::Io {
            path: path.clone(),
            source,
        })?;
    }
    Ok(true)
}
