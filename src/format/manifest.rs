//! Backup manifests (`backups/<backup id>`): the record of one backup, sealed in a blob
//! envelope (domain Manifest, name = the backup id's text) around JSON, compressed with
//! zstd level 3 when that pays.
//!
//! A manifest is written after every pack it depends on is durable, and is the last
//! thing a backup writes to the backend; the index's copy is committed after it.

use serde::{Deserialize, Serialize};

use crate::format::content::ContentRef;
use crate::id::BackupId;

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
    /// The catalog's index (`format::catalog_index`), when its entries are in path order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<CatalogIndexRef>,
}

/// A catalog's index: its marks, JSON lines stored as a stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogIndexRef {
    pub marks: u64,
    pub content: ContentRef,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupManifest {
    pub format: String,
    pub version: u32,
    /// Backup id: a UUID in its hyphenated lowercase text form.
    pub id: BackupId,
    pub series: String,
    pub kind: BackupKind,
    /// RFC 3339 UTC timestamp of the ingest start.
    pub created_at: String,
    /// Name of the source (file name, directory name, or "-" for stdin).
    pub source: String,
    /// Logical size of the stream in bytes.
    pub size: u64,
    /// BLAKE3 (unkeyed) of the stream, hex: what a full restore verifies. Absent only in
    /// backups recorded with a SHA-256 alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blake3: Option<String>,
    /// SHA-256 of the stream, hex, when the writer asked for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    pub chunks: u64,
    /// Data chunks of the content that were not in the repository before (at most
    /// `chunks`). Manifests written before `new_metadata_blobs` existed count the
    /// content-list leaves and the catalog's blobs here too.
    pub new_chunks: u64,
    /// Content-list leaves and catalog blobs (chunks and leaves) that were not in the
    /// repository before.
    #[serde(default)]
    pub new_metadata_blobs: u64,
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
    #[error("manifest stream digest is invalid: {reason}")]
    Digest { reason: &'static str },
}

/// A digest of a whole stream, as a manifest records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestAlgorithm {
    Blake3,
    Sha256,
}

impl DigestAlgorithm {
    pub fn name(self) -> &'static str {
        match self {
            DigestAlgorithm::Blake3 => "blake3",
            DigestAlgorithm::Sha256 => "sha256",
        }
    }
}

/// Whether `text` is a 32-byte digest in lowercase hex.
pub fn is_digest_hex(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
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
        manifest.check_digests()?;
        for content in manifest.streams() {
            check_content(content)?;
        }
        Ok(manifest)
    }

    /// Every stream the backup references: its content, its catalog, the catalog's index.
    /// What gc keeps and check reads.
    pub fn streams(&self) -> Vec<&ContentRef> {
        let mut streams = vec![&self.content];
        if let Some(catalog) = &self.catalog {
            streams.push(&catalog.content);
            if let Some(index) = &catalog.index {
                streams.push(&index.content);
            }
        }
        streams
    }
}

impl BackupManifest {
    /// The digest a full restore verifies: BLAKE3 when recorded (fast on one core),
    /// else SHA-256.
    pub fn verified_digest(&self) -> (DigestAlgorithm, &str) {
        match (&self.blake3, &self.sha256) {
            (Some(blake3), _) => (DigestAlgorithm::Blake3, blake3),
            (None, Some(sha256)) => (DigestAlgorithm::Sha256, sha256),
            // `decode` refuses a manifest with neither; one built in memory always has one.
            (None, None) => (DigestAlgorithm::Blake3, ""),
        }
    }

    /// Every recorded digest is 32 bytes of lowercase hex, and there is at least one.
    pub fn check_digests(&self) -> Result<(), ManifestError> {
        if self.blake3.is_none() && self.sha256.is_none() {
            return Err(ManifestError::Digest {
                reason: "neither blake3 nor sha256 is recorded",
            });
        }
        let well_formed = [&self.blake3, &self.sha256]
            .into_iter()
            .flatten()
            .all(|d| is_digest_hex(d));
        if !well_formed {
            return Err(ManifestError::Digest {
                reason: "a digest is not 64 lowercase hex digits",
            });
        }
        Ok(())
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

#[cfg(test)]
impl BackupManifest {
    /// A valid, empty stream backup for tests: id `6f1c2a9e-…`, series `s`, size 0.
    pub(crate) fn sample() -> BackupManifest {
        BackupManifest {
            format: MANIFEST_FORMAT.into(),
            version: MANIFEST_VERSION,
            id: "6f1c2a9e-4b7d-4c1e-9a3f-2d8b5e7c9a10".parse().unwrap(),
            series: "s".into(),
            kind: BackupKind::Stream,
            created_at: "2026-01-01T00:00:00.000000Z".into(),
            source: "-".into(),
            size: 0,
            blake3: Some(blake3::hash(b"").to_hex().to_string()),
            sha256: None,
            chunks: 0,
            new_chunks: 0,
            new_metadata_blobs: 0,
            stored_bytes: 0,
            content: ContentRef::default(),
            catalog: None,
            tar: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> BackupManifest {
        BackupManifest::sample()
    }

    #[test]
    fn a_manifest_needs_a_well_formed_digest() {
        let good = manifest();
        let decoded = BackupManifest::decode(&good.encode()).expect("decodes");
        assert_eq!(decoded.verified_digest().0, DigestAlgorithm::Blake3);

        let sha_only = BackupManifest {
            blake3: None,
            sha256: Some("ab".repeat(32)),
            ..manifest()
        };
        let decoded = BackupManifest::decode(&sha_only.encode()).expect("decodes");
        assert_eq!(decoded.verified_digest().0, DigestAlgorithm::Sha256);

        for (blake3, sha256) in [
            (None, None),
            (Some("AB".repeat(32)), None),
            (Some("ab".repeat(31)), None),
            (None, Some("zz".repeat(32))),
        ] {
            let bad = BackupManifest {
                blake3,
                sha256,
                ..manifest()
            };
            assert!(
                matches!(
                    BackupManifest::decode(&bad.encode()),
                    Err(ManifestError::Digest { .. })
                ),
                "{bad:?}"
            );
        }
    }
}
