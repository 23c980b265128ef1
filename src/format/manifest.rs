//! Backup manifests (`backups/<backup id>`): the record of one backup, sealed in a blob
//! envelope (domain Manifest, name = the backup id's text) around JSON, compressed with
//! zstd level 3 when that pays.
//!
//! A manifest is written after every pack it depends on is durable, and is the last
//! thing a backup writes to the backend; the index's copy is committed after it.

use serde::{Deserialize, Serialize};

use crate::format::content::ContentRef;

pub const MANIFEST_FORMAT: &str = "stowage-backup";
pub const MANIFEST_VERSION: u32 = 1;
/// Largest manifest accepted when reading (a 1 PiB stream needs a few MiB of leaves).
pub const MAX_MANIFEST_BYTES: usize = 64 << 20;

/// What a backup holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackupKind {
    /// One stream (a file or stdin); `content` is its bytes.
    Stream,
    /// A directory tree; `content` is its regular files concatenated in catalog order.
    Tree,
}

/// The encoding of a stream backup whose bytes were recognised as a tar archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TarEncoding {
    Plain,
    Gzip,
}

/// The catalog of a backup: JSON lines (see `format::catalog`) stored as a stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogRef {
    pub entries: u64,
    pub content: ContentRef,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupManifest {
    pub format: String,
    pub version: u32,
    /// Backup id: a UUID in its hyphenated lowercase text form.
    pub id: String,
    pub series: String,
    pub kind: BackupKind,
    /// RFC 3339 UTC timestamp of the ingest start.
    pub created_at: String,
    /// Name of the source (file name, directory name, or "-" for stdin).
    pub source: String,
    /// Logical size of the stream in bytes.
    pub size: u64,
    /// sha256 of the stream, hex.
    pub sha256: String,
    pub chunks: u64,
    /// Chunks (data and content-list leaves) this backup stored that were not in the
    /// repository before.
    pub new_chunks: u64,
    /// Bytes of sealed blobs this backup added to the repository.
    pub stored_bytes: u64,
    pub content: ContentRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog: Option<CatalogRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tar: Option<TarEncoding>,
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("object is not a stowage backup manifest (format {format:?}, version {version})")]
    NotAManifest { format: String, version: u32 },
    #[error("manifest of {len} bytes exceeds the {MAX_MANIFEST_BYTES}-byte limit")]
    TooLarge { len: usize },
    #[error("manifest content list is inconsistent: {reason}")]
    Inconsistent { reason: &'static str },
}

impl BackupManifest {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("manifest serializes")
    }

    pub fn decode(bytes: &[u8]) -> Result<BackupManifest, ManifestError> {
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(ManifestError::TooLarge { len: bytes.len() });
        }
        let manifest: BackupManifest = serde_json::from_slice(bytes)?;
        if manifest.format != MANIFEST_FORMAT || manifest.version != MANIFEST_VERSION {
            return Err(ManifestError::NotAManifest {
                format: manifest.format.chars().take(64).collect(),
                version: manifest.version,
            });
        }
        check_content(&manifest.content)?;
        if let Some(catalog) = &manifest.catalog {
            check_content(&catalog.content)?;
        }
        Ok(manifest)
    }
}

/// Checks that a content reference's totals match its leaves.
pub fn check_content(content: &ContentRef) -> Result<(), ManifestError> {
    let mut size = 0u64;
    let mut chunks = 0u64;
    for leaf in &content.leaves {
        size = size
            .checked_add(leaf.size)
            .ok_or(ManifestError::Inconsistent {
                reason: "leaf sizes overflow",
            })?;
        chunks += u64::from(leaf.chunks);
    }
    if size != content.size || chunks != content.chunks {
        return Err(ManifestError::Inconsistent {
            reason: "leaf totals differ from the stream totals",
        });
    }
    Ok(())
}
