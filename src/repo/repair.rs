//! Reconciling the index with the backend, which is the truth: packs the backend lost
//! are forgotten with their chunk entries, packs the index lacks are read from their
//! trailers, manifests are added or dropped to match the backend, and recycle marks and
//! series records are reloaded. A rebuild is a reconciliation of an emptied index.
//!
//! `Repository::open` reconciles whenever the index's generation differs from the
//! backend's (see `generation`), so a missing, emptied, stale or foreign-host index is
//! never taken at its word. Objects that cannot be read are reported in
//! [`RepairReport::skipped`], each naming the backup or pack, and left out; the rest of
//! the repository stays usable.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use futures::stream::{self, StreamExt};

use super::objects::{fetch_manifest, fetch_trailer, list_manifests, list_packs};
use super::{generation, RepoError, RepoInner, Repository};
use crate::format::pack::PackEntry;
use crate::id::{BackupId, PackId};
use crate::index::PackRecord;

/// Packs whose trailers are read at once.
const CONCURRENT_TRAILERS: usize = 8;
/// Manifests read at once.
const CONCURRENT_MANIFESTS: usize = 16;

/// What a reconciliation changed in the index.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct RepairReport {
    /// Packs added from their trailers.
    pub packs: u64,
    /// Chunk entries those packs brought.
    pub chunks: u64,
    /// Backups added from their manifests.
    pub backups: u64,
    /// Indexed packs the backend no longer holds, forgotten with their chunk entries.
    pub packs_removed: u64,
    /// Indexed backups whose manifest the backend no longer holds.
    pub backups_removed: u64,
    /// Objects left out, each with the reason; a backup left out is named here.
    pub skipped: Vec<String>,
}

impl RepairReport {
    /// Whether the index changed at all.
    pub fn changed(&self) -> bool {
        self.packs + self.backups + self.packs_removed + self.backups_removed > 0
    }
}

impl Repository {
    /// Clears the index and rebuilds it from pack trailers and manifests. When it fails
    /// (the backend unavailable), the index is left incomplete and without a generation:
    /// this handle must be dropped, and the next open reconciles it. `stowage repair
    /// index` uses [`Repository::open_rebuilding_index`], on a handle of its own.
    pub async fn rebuild_index(&self) -> Result<RepairReport, RepoError> {
        let _no_change_meanwhile = self.inner.generations.exclusive().await;
        self.inner.generations.distrust();
        self.inner.index.clear()?;
        self.reconcile_alone().await
    }

    /// Brings the index in line with the backend (see the module documentation) and
    /// records the backend's generation in it. Changes of this process wait meanwhile:
    /// one landing between the listing and the index read would look like a difference.
    pub async fn reconcile_index(&self) -> Result<RepairReport, RepoError> {
        let _no_change_meanwhile = self.inner.generations.exclusive().await;
        self.reconcile_alone().await
    }

    /// [`Repository::reconcile_index`], the caller holding off every change.
    async fn reconcile_alone(&self) -> Result<RepairReport, RepoError> {
        let inner = &self.inner;
        inner.generations.distrust();
        // Read first: a change made while reconciling gives the backend a newer token,
        // so the next open reconciles again.
        let token = match generation::read(&inner.backend, &inner.keys).await? {
            Some(token) => token,
            // A repository from before generations: give it one.
            None => generation::write_new(&inner.backend, &inner.keys).await?,
        };
        let mut report = RepairReport::default();
        self.reconcile_packs(&mut report).await?;
        self.rebuild_lifecycle(&mut report.skipped).await?;
        self.reconcile_backups(&mut report).await?;
        inner.index.set_generation(&token)?;
        inner.generations.reconciled(token);
        for reason in &report.skipped {
            tracing::warn!(%reason, "left out of the index");
        }
        Ok(report)
    }

    async fn reconcile_packs(&self, report: &mut RepairReport) -> Result<(), RepoError> {
        let inner = self.inner.clone();
        // The index is read before the backend is listed. Ingests commit packs without
        // a generation change (a pack is stored before it is indexed), so in this order
        // a pack committed meanwhile is listed and never taken for one the backend lost;
        // at worst it is read from its trailer and recorded twice, which is harmless.
        let indexed: BTreeSet<PackId> = inner
            .index
            .list_packs()?
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        let stored = list_packs(&inner).await?;
        let gone: Vec<PackId> = indexed
            .iter()
            .filter(|p| !stored.contains_key(p))
            .copied()
            .collect();
        if !gone.is_empty() {
            tracing::warn!(
                packs = gone.len(),
                "indexed packs are gone from the backend; forgetting them"
            );
            inner.index.forget_packs_and_their_chunks(&gone)?;
            report.packs_removed = gone.len() as u64;
        }
        let missing: Vec<(PackId, u64)> = stored
            .into_iter()
            .filter(|(pack, _)| !indexed.contains(pack))
            .collect();
        let now = chrono::Utc::now().timestamp();
        let mut trailers = stream::iter(missing)
            .map(|(pack, size)| {
                let inner = inner.clone();
                async move { (pack, size, fetch_trailer(&inner, pack, size).await) }
            })
            .buffer_unordered(CONCURRENT_TRAILERS);
        // Packs are recorded a batch per transaction: one commit per pack made a
        // rebuild of 100,000 packs wait on 100,000 syncs.
        let mut batch: Vec<(PackId, PackRecord, Vec<PackEntry>)> = Vec::new();
        let mut batched_entries = 0usize;
        while let Some((pack, size, trailer)) = trailers.next().await {
            match trailer {
                Ok(entries) => {
                    let record = PackRecord {
                        size,
                        blobs: entries.len() as u32,
                        created: now,
                    };
                    batched_entries += entries.len();
                    batch.push((pack, record, entries));
                    if batch.len() >= REBUILD_BATCH_PACKS
                        || batched_entries >= REBUILD_BATCH_ENTRIES
                    {
                        commit_batch(&inner, std::mem::take(&mut batch), report).await?;
                        batched_entries = 0;
                    }
                }
                Err(e) if e.is_transient() => return Err(e),
                Err(e) => report.skipped.push(format!("pack {pack}: {e}")),
            }
        }
        commit_batch(&inner, batch, report).await
    }

    async fn reconcile_backups(&self, report: &mut RepairReport) -> Result<(), RepoError> {
        let inner = self.inner.clone();
        // Index first, then the listing, as for packs: a manifest is stored before its
        // record is indexed, so an indexed backup missing from a later listing is gone.
        let indexed: HashSet<BackupId> = inner.index.backup_ids()?.into_iter().collect();
        let listed = list_manifests(&inner).await?;
        for stray in listed.strays {
            report.skipped.push(format!(
                "{stray}: not a manifest (its name is no backup id)"
            ));
        }
        let stored: HashSet<BackupId> = listed.ids.into_iter().collect();
        for id in indexed.difference(&stored) {
            inner.index.remove_backup(id)?;
            report.backups_removed += 1;
        }
        let mut missing: Vec<BackupId> = stored.difference(&indexed).cloned().collect();
        missing.sort();
        let mut manifests = stream::iter(missing)
            .map(|id| {
                let inner = inner.clone();
                async move {
                    let manifest = fetch_manifest(&inner, &id).await;
                    (id, manifest)
                }
            })
            .buffer_unordered(CONCURRENT_MANIFESTS);
        while let Some((id, manifest)) = manifests.next().await {
            match manifest {
                Ok(manifest) => {
                    inner.index.put_backup(&manifest)?;
                    report.backups += 1;
                }
                Err(e) if e.is_transient() => return Err(e),
                Err(e) => report.skipped.push(format!("backup {id}: {e}")),
            }
        }
        Ok(())
    }
}

/// Packs recorded per index transaction during a rebuild, at most.
const REBUILD_BATCH_PACKS: usize = 4096;
/// Blob entries recorded per index transaction during a rebuild, about.
const REBUILD_BATCH_ENTRIES: usize = 1 << 20;

/// Records a batch of rebuilt packs in one index transaction.
async fn commit_batch(
    inner: &Arc<RepoInner>,
    batch: Vec<(PackId, PackRecord, Vec<PackEntry>)>,
    report: &mut RepairReport,
) -> Result<(), RepoError> {
    if batch.is_empty() {
        return Ok(());
    }
    let index = Arc::clone(inner);
    let (packs, chunks) = (
        batch.len() as u64,
        batch.iter().map(|(_, _, e)| e.len() as u64).sum::<u64>(),
    );
    tokio::task::spawn_blocking(move || {
        let borrowed: Vec<(PackId, PackRecord, &[PackEntry])> = batch
            .iter()
            .map(|(pack, record, entries)| (*pack, *record, entries.as_slice()))
            .collect();
        index.index.commit_packs(&borrowed)
    })
    .await
    .map_err(|e| RepoError::Internal(e.to_string()))??;
    report.packs += packs;
    report.chunks += chunks;
    Ok(())
}
