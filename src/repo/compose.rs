//! Joining stream backups end to end into one new backup without reading or moving a
//! byte: a manifest's content list is a list of leaves, so the joined backup lists the
//! parts' leaves in order. Uploads that arrive in pieces (one part per request, each
//! ingested as its own backup as it arrives) become one backup this way in time
//! proportional to the number of leaves, not to the size of the data.
//!
//! Safe beside garbage collection: the joined manifest and its index record are
//! committed while the parts still exist, and they reference exactly the parts' leaves,
//! so every chunk is referenced by some backup at every instant. The caller removes the
//! parts afterwards.

use super::digest::StreamDigests;
use super::ingest::{now_rfc3339, validate_series};
use super::{manifest_key, objects, RepoError, Repository};
use crate::format::content::ContentRef;
use crate::format::manifest::{
    check_content, BackupKind, BackupManifest, MANIFEST_FORMAT, MANIFEST_VERSION,
};
use crate::id::BackupId;

/// What to record about a joined backup.
#[derive(Debug, Clone)]
pub struct ComposeSpec {
    /// The new backup's id: a lowercase hyphenated UUID not used by another backup.
    pub id: BackupId,
    pub series: String,
    /// Name of the source, as an ingest records it.
    pub source: String,
    /// Digests of the joined stream, at least one. The caller computed them over the
    /// bytes as they arrived; a full restore verifies the BLAKE3 (else the SHA-256).
    pub digests: StreamDigests,
}

impl Repository {
    /// Records a new stream backup whose bytes are those of `parts` (stream backups,
    /// recycled or not) in order. The parts are left as they are.
    pub async fn compose(
        &self,
        parts: &[BackupId],
        spec: ComposeSpec,
    ) -> Result<BackupManifest, RepoError> {
        validate_series(&spec.series)?;
        if self.inner.index.get_backup(&spec.id)?.is_some() {
            return Err(RepoError::BackupExists {
                id: spec.id.to_string(),
            });
        }
        let mut content = ContentRef {
            size: 0,
            chunks: 0,
            leaves: Vec::new(),
        };
        let (mut new_chunks, mut new_metadata_blobs, mut stored_bytes) = (0u64, 0u64, 0u64);
        for part in parts {
            let manifest = self.backup(part)?;
            if manifest.kind != BackupKind::Stream {
                return Err(RepoError::InvalidInput(format!(
                    "backup {part} is a tree; only stream backups can be joined"
                )));
            }
            content.size = content
                .size
                .checked_add(manifest.content.size)
                .ok_or_else(|| RepoError::InvalidInput("joined size overflows".into()))?;
            content.chunks += manifest.content.chunks;
            content.leaves.extend(manifest.content.leaves);
            new_chunks += manifest.new_chunks;
            new_metadata_blobs += manifest.new_metadata_blobs;
            stored_bytes += manifest.stored_bytes;
        }
        check_content(&content).map_err(|source| RepoError::Manifest {
            backup: spec.id.to_string(),
            source,
        })?;
        let manifest = BackupManifest {
            format: MANIFEST_FORMAT.into(),
            version: MANIFEST_VERSION,
            id: spec.id,
            series: spec.series,
            kind: BackupKind::Stream,
            created_at: now_rfc3339(),
            source: spec.source,
            size: content.size,
            blake3: spec.digests.blake3.map(|d| d.to_ascii_lowercase()),
            sha256: spec.digests.sha256.map(|d| d.to_ascii_lowercase()),
            chunks: content.chunks,
            new_chunks,
            new_metadata_blobs,
            stored_bytes,
            content,
            catalog: None,
            tar: None,
        };
        manifest
            .check_digests()
            .map_err(|e| RepoError::InvalidInput(format!("joined stream: {e}")))?;
        let sealed = objects::seal_manifest(&self.inner, &manifest);
        let change = self.inner.generations.begin(&self.inner).await?;
        self.inner
            .backend
            .put(&manifest_key(&manifest.id), sealed)
            .await?;
        self.inner.index.put_backup(&manifest)?;
        change.finish()?;
        Ok(manifest)
    }
}
