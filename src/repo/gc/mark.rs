//! The mark phase of garbage collection, driven by the backend: every manifest stored
//! in it is read and authenticated, and every chunk its content lists (and its
//! catalog's) name is live. Then every live chunk must be placed by the index in a pack
//! the backend lists; anything else means the index does not describe the backend, and
//! the run stops before it deletes anything.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::stream::{self, StreamExt};

use crate::backend::{BackendError, ObjectMeta};
use crate::format::content::{decode_leaf, ContentRef};
use crate::format::manifest::BackupManifest;
use crate::id::{ChunkId, PackId};
use crate::repo::objects::{fetch_manifest, list_manifests};
use crate::repo::progress::Progress;
use crate::repo::{RepoError, RepoInner};

/// Manifests read at once.
const CONCURRENT_MANIFESTS: usize = 16;
/// Live chunk ids looked up per index transaction.
const LOOKUP_BATCH: usize = 8192;

/// What the mark found.
pub(super) struct Marked {
    pub backups: u64,
    pub chunks: HashSet<ChunkId>,
}

/// Marks every chunk referenced by a manifest stored in the backend.
pub(super) async fn mark_stored_manifests(
    inner: &Arc<RepoInner>,
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
        chunks: HashSet::new(),
    };
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
        mark_backup(inner, &manifest, &mut marked.chunks).await?;
        marked.backups += 1;
    }
    Ok(marked)
}

async fn mark_backup(
    inner: &RepoInner,
    manifest: &BackupManifest,
    live: &mut HashSet<ChunkId>,
) -> Result<(), RepoError> {
    let mut streams: Vec<&ContentRef> = vec![&manifest.content];
    if let Some(catalog) = &manifest.catalog {
        streams.push(&catalog.content);
    }
    for content in streams {
        for leaf in &content.leaves {
            if !live.insert(leaf.id) {
                // A leaf already marked lists chunks already marked.
                continue;
            }
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
            live.extend(entries.iter().map(|e| e.id));
        }
    }
    Ok(())
}

/// Checks that the index places every marked chunk in a pack the backend holds.
pub(super) fn verify_indexed(
    inner: &RepoInner,
    marked: &HashSet<ChunkId>,
    stored: &HashMap<PackId, &ObjectMeta>,
) -> Result<(), RepoError> {
    let ids: Vec<ChunkId> = marked.iter().copied().collect();
    for batch in ids.chunks(LOOKUP_BATCH) {
        for (id, location) in batch.iter().zip(inner.index.lookup_chunks(batch)?) {
            let Some(location) = location else {
                return Err(RepoError::IndexMismatch {
                    reason: format!(
                        "chunk {id}, referenced by a stored backup, is not in the index"
                    ),
                });
            };
            if !stored.contains_key(&location.pack) {
                return Err(RepoError::IndexMismatch {
                    reason: format!(
                        "the index places chunk {id} in pack {}, which the backend does not hold",
                        location.pack
                    ),
                });
            }
        }
    }
    Ok(())
}
