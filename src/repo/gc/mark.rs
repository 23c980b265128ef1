//! The mark phase of garbage collection, driven by the backend: every manifest stored
//! in it is read and authenticated, and every chunk its content lists (and its
//! catalog's) name is live. The live ids go to sorted runs on disk ([`IdSorter`]); the
//! plan then walks them beside the index, where every live chunk must be placed in a pack
//! the backend lists; anything else means the index does not describe the backend, and
//! the run stops before it deletes anything.

use std::collections::HashSet;
use std::sync::Arc;

use futures::stream::{self, StreamExt};

use crate::backend::BackendError;
use crate::format::content::decode_leaf;
use crate::format::manifest::BackupManifest;
use crate::id::ChunkId;
use crate::repo::objects::{fetch_manifest, list_manifests};
use crate::repo::progress::Progress;
use crate::repo::sorted_ids::IdSorter;
use crate::repo::{RepoError, RepoInner};

/// Manifests read at once.
const CONCURRENT_MANIFESTS: usize = 16;

/// What the mark found.
pub(super) struct Marked {
    pub backups: u64,
    pub chunks: IdSorter,
}

/// Marks every chunk referenced by a manifest stored in the backend.
pub(super) async fn mark_stored_manifests(
    inner: &Arc<RepoInner>,
    ids_in_memory: usize,
    progress: &Progress,
) -> Result<Marked, RepoError> {
    let listed = list_manifests(inner).await?;
    if !listed.strays.is_empty() {
        tracing::warn!(strays = ?listed.strays, "objects under backups/ that are no manifest; passed by");
    }
    let mut manifests = stream::iter(listed.ids)
        .map(|id| {
            let inner = inner.clone();
            async move {
                let manifest = fetch_manifest(&inner, &id).await;
                (id, manifest)
            }
        })
        .buffered(CONCURRENT_MANIFESTS);
    let mut marked = Marked {
        backups: 0,
        chunks: IdSorter::new(inner.state_dir.join("tmp"), ids_in_memory),
    };
    // Leaves already marked: a leaf lists the same chunks in every backup that shares it
    // (the unchanged stretches of a series), so it is read once. Leaves are a few hundred
    // times fewer than chunks.
    let mut marked_leaves: HashSet<ChunkId> = HashSet::new();
    while let Some((id, manifest)) = manifests.next().await {
        progress.check()?;
        let manifest = match manifest {
            Ok(manifest) => manifest,
            // Purged since the listing: its chunks are garbage now.
            Err(RepoError::Backend(BackendError::NotFound { .. })) => continue,
            // A failure of the backend for now, not of the manifest: gc fails as it.
            Err(error) if error.is_transient() => return Err(error),
            Err(error) => {
                return Err(RepoError::GcStopped {
                    reason: format!(
                        "the manifest of backup {id} cannot be read ({error}); it may reference any chunk, so nothing can be collected until it is restored or the backup purged"
                    ),
                })
            }
        };
        mark_backup(inner, &manifest, &mut marked.chunks, &mut marked_leaves).await?;
        marked.backups += 1;
    }
    tracing::debug!(
        backups = marked.backups,
        leaves = marked_leaves.len(),
        runs_on_disk = marked.chunks.runs(),
        "gc mark done"
    );
    Ok(marked)
}

async fn mark_backup(
    inner: &RepoInner,
    manifest: &BackupManifest,
    live: &mut IdSorter,
    marked_leaves: &mut HashSet<ChunkId>,
) -> Result<(), RepoError> {
    let spill = |error| RepoError::io(inner.state_dir.join("tmp"), error);
    for content in manifest.streams() {
        for leaf in &content.leaves {
            if !marked_leaves.insert(leaf.id) {
                continue;
            }
            live.push(leaf.id).map_err(spill)?;
            let location = inner.index.lookup_chunks(&[leaf.id])?[0].ok_or_else(|| {
                RepoError::IndexMismatch {
                    reason: format!(
                        "content-list leaf {} of backup {} is not in the index",
                        leaf.id, manifest.id
                    ),
                }
            })?;
            let payload =
                inner
                    .load_blob(leaf.id, location)
                    .await
                    .map_err(|error| match error {
                        error if error.is_transient() => error,
                        error => RepoError::GcStopped {
                            reason: format!(
                                "content-list leaf {} of backup {} cannot be read ({error})",
                                leaf.id, manifest.id
                            ),
                        },
                    })?;
            let entries = decode_leaf(&payload).map_err(|e| RepoError::GcStopped {
                reason: format!(
                    "content-list leaf {} of backup {} does not decode ({e})",
                    leaf.id, manifest.id
                ),
            })?;
            for entry in entries {
                live.push(entry.id).map_err(spill)?;
            }
        }
    }
    Ok(())
}
