//! Errors of the engine. Each variant carries the ids it concerns (backup, chunk, pack),
//! so a report can name exactly what is wrong.

use crate::backend::BackendError;
use crate::error::ErrorKind;
use crate::format::config::ConfigError;
use crate::format::manifest::ManifestError;
use crate::id::{ChunkId, PackId};
use crate::index::IndexError;
use crate::pipeline::keys::KeyError;

#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("backup {backup}: {source}")]
    Manifest {
        backup: String,
        #[source]
        source: ManifestError,
    },
    #[error("manifest of backup {backup} is corrupt: {reason}")]
    CorruptManifest { backup: String, reason: String },
    #[error("object {key} is corrupt: {reason}")]
    CorruptObject { key: String, reason: String },
    #[error("the index does not match the repository: {reason}; nothing was deleted (run `stowage repair index`)")]
    IndexMismatch { reason: String },
    #[error("gc stopped before deleting anything: {reason}")]
    GcStopped { reason: String },
    #[error("no repository at {location} (run `stowage init` first)")]
    NotARepository { location: String },
    #[error("a repository already exists at {location}")]
    AlreadyInitialized { location: String },
    #[error("backup {id} not found")]
    BackupNotFound { id: String },
    #[error("backup {id} already exists")]
    BackupExists { id: String },
    #[error("series {name} already exists")]
    SeriesExists { name: String },
    #[error("chunk {chunk} is not in the index{}", backup.as_ref().map(|b| format!(" (backup {b})")).unwrap_or_default())]
    ChunkMissing {
        chunk: ChunkId,
        backup: Option<String>,
    },
    #[error("chunk {chunk} in pack {pack} is corrupt: {reason}")]
    CorruptChunk {
        chunk: ChunkId,
        pack: PackId,
        reason: String,
    },
    #[error("pack {pack} is corrupt: {reason}")]
    CorruptPack { pack: PackId, reason: String },
    #[error("backup {backup}: restored stream has {algorithm} {actual}, expected {expected}")]
    ChecksumMismatch {
        backup: String,
        algorithm: &'static str,
        expected: String,
        actual: String,
    },
    #[error("backup {backup} catalog is corrupt: {reason}")]
    CorruptCatalog { backup: String, reason: String },
    #[error("byte range {start}-{end} is outside the {size}-byte stream")]
    RangeNotSatisfiable { start: u64, end: u64, size: u64 },
    #[error("invalid input: {0}")]
    InvalidInput(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("chunk {chunk} shared with a concurrent upload could not be stored")]
    SharedChunkLost { chunk: ChunkId },
    #[error("the operation was cancelled")]
    Cancelled,
    /// A request that does not fit the state it finds (an append at the wrong offset).
    #[error("{0}")]
    Conflict(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl RepoError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            RepoError::Backend(e) => e.kind(),
            RepoError::Index(e) => e.kind(),
            RepoError::Config(_) => ErrorKind::Corrupt,
            RepoError::Key(KeyError::WrongPassphrase) => ErrorKind::Unauthorized,
            RepoError::Key(_) => ErrorKind::Corrupt,
            RepoError::NotARepository { .. } | RepoError::BackupNotFound { .. } => {
                ErrorKind::NotFound
            }
            RepoError::AlreadyInitialized { .. }
            | RepoError::BackupExists { .. }
            | RepoError::SeriesExists { .. } => ErrorKind::AlreadyExists,
            RepoError::Manifest { .. }
            | RepoError::CorruptManifest { .. }
            | RepoError::CorruptObject { .. }
            | RepoError::IndexMismatch { .. }
            | RepoError::GcStopped { .. }
            | RepoError::ChunkMissing { .. }
            | RepoError::CorruptChunk { .. }
            | RepoError::CorruptPack { .. }
            | RepoError::ChecksumMismatch { .. }
            | RepoError::CorruptCatalog { .. } => ErrorKind::Corrupt,
            RepoError::RangeNotSatisfiable { .. } | RepoError::InvalidInput(_) => {
                ErrorKind::InvalidInput
            }
            RepoError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                ErrorKind::NotFound
            }
            RepoError::Io { .. } | RepoError::Internal(_) => ErrorKind::Internal,
            RepoError::SharedChunkLost { .. } => ErrorKind::Unavailable,
            RepoError::Cancelled | RepoError::Conflict(_) => ErrorKind::Conflict,
        }
    }

    /// Whether the failure is the backend's or the machine's for now (a retry may
    /// succeed), as opposed to something wrong with what is stored. Work that passes by
    /// unreadable objects must not pass by these: it would record a transient failure
    /// as a permanent absence.
    pub fn is_transient(&self) -> bool {
        self.kind() == ErrorKind::Unavailable
    }

    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> RepoError {
        RepoError::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}
