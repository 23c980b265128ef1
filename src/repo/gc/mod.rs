//! Garbage collection: mark and sweep in two phases, a plan and then its execution.
//!
//! **The backend is the truth.** The index is a cache, so nothing is deleted from the
//! backend on its word alone: before planning, the index is reconciled with the backend
//! when their generations differ; the mark reads every manifest from the backend (one
//! that cannot be read stops the run: it might reference anything); every chunk a
//! manifest references must be in the index, in a pack the backend lists, or the run
//! stops with [`RepoError::IndexMismatch`] before deleting anything.
//!
//! **Plan.** Every chunk referenced by a stored manifest (live or recycled: recycled
//! backups still hold their chunks) is live, as is every chunk referenced by an ingest
//! running in this process (see `coordinator`). Every other indexed chunk is garbage. Per
//! pack, the plan weighs live bytes against the pack's size: packs with nothing live are
//! deleted, packs whose live share is under the threshold are repacked. Packs in the
//! backend that the index does not know and nobody here is writing are orphans, deleted
//! once older than [`GcOptions::orphan_grace`] (an ingest elsewhere may still be writing
//! them). A dry run reports exactly the packs a real run would delete.
//!
//! **Execute**, in an order where a kill at any instant leaves a repository that passes
//! `check --read-data` with every live backup restorable:
//! 0. announce the change (a new generation in the backend), so any other index of this
//!    repository is reconciled before it is trusted again;
//! 1. under the coordinator's gate, add the references of sessions that ran meanwhile and
//!    remove the garbage chunks' index entries (one transaction);
//! 2. repack (`repack`): copy live blobs into new packs; once a new pack is durable,
//!    point the index at it and forget the old packs (one transaction); then delete them;
//! 3. forget, then delete, planned packs with no index entry left;
//! 4. delete the planned orphans. A kill between any two steps leaves only unreferenced
//!    packs, which a later run deletes.
//! 5. abort stale uploads: what uploads older than `stale_uploads_after` left in the
//!    backend (S3 multipart uploads, local temporaries), invisible to the index.

mod mark;
mod repack;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::progress::Progress;
use super::sorted_ids::{IdSorter, SpilledIds, RUN_IDS};
use super::{pack_key, RepoError, RepoInner, Repository, PACKS_PREFIX};
use crate::id::{ChunkId, PackId};

#[derive(Debug, Clone, Copy)]
pub struct GcOptions {
    /// Plan only: report what would be reclaimed, change nothing.
    pub dry_run: bool,
    /// Packs whose live share (live bytes / pack bytes) is below this are repacked.
    pub repack_below: f64,
    /// Unfinished uploads at least this old are leftovers of crashes and are aborted.
    /// Uploads of running ingests must stay younger, so keep it generous.
    pub stale_uploads_after: Duration,
    /// Packs the index does not know are deleted only once at least this old: an
    /// ingest in another process may still be writing its packs, and it names them in a
    /// manifest only when it finishes. Packs of unknown age are kept unless it is zero.
    pub orphan_grace: Duration,
    /// Chunk ids (32 bytes each) the plan holds in memory before it sorts them into a
    /// file on disk: live ids while marking, garbage ids until the sweep. Bounds gc's
    /// memory whatever the repository's size.
    pub ids_in_memory: usize,
}

/// Default age past which an unfinished upload counts as abandoned.
pub const DEFAULT_STALE_UPLOADS_AFTER: Duration = Duration::from_secs(24 * 3600);
/// Default age past which a pack no index knows counts as an orphan.
pub const DEFAULT_ORPHAN_GRACE: Duration = Duration::from_secs(24 * 3600);

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions {
            dry_run: false,
            repack_below: 0.8,
            stale_uploads_after: DEFAULT_STALE_UPLOADS_AFTER,
            orphan_grace: DEFAULT_ORPHAN_GRACE,
            ids_in_memory: RUN_IDS,
        }
    }
}

/// What a run did (or, dry, would do).
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct GcReport {
    pub dry_run: bool,
    /// Backups whose manifests were read from the backend and marked.
    pub backups_marked: u64,
    /// Index entries kept: referenced by a stored manifest, or maybe by an ingest
    /// running here (a filter: a garbage chunk may be kept one run longer).
    pub live_chunks: u64,
    /// Index entries the plan found garbage (the sweep still keeps any an ingest
    /// references meanwhile).
    pub garbage_chunks: u64,
    pub packs_deleted: u64,
    pub packs_repacked: u64,
    pub packs_written: u64,
    pub orphan_packs_deleted: u64,
    /// Packs the index does not know that are younger than the grace period: kept.
    pub orphan_packs_kept: u64,
    /// Abandoned uploads aborted (S3 multipart uploads, local temporaries).
    pub stale_uploads_aborted: u64,
    /// Pack bytes given back to the backend, net of the bytes rewritten.
    pub bytes_reclaimed: u64,
    /// Live bytes copied into new packs.
    pub bytes_rewritten: u64,
    /// Every pack object the run deleted (dry: would delete), sorted: packs with nothing
    /// live, repacked packs and orphans.
    pub deleted_packs: Vec<PackId>,
}

/// Per-pack weights from the index.
#[derive(Default, Clone, Copy)]
struct PackWeight {
    size: u64,
    /// What the live blobs take in the pack: their envelopes and their trailer entries.
    live_bytes: u64,
    live_blobs: u64,
}

/// Bytes of a pack that are neither a blob nor a trailer entry: header, footer, the
/// trailer's length and envelope. A pack whose blobs are all live is this much larger
/// than their `live_bytes`, and a repack writes it again.
const PACK_FIXED_BYTES: u64 = (crate::format::pack::HEADER_LEN
    + crate::format::pack::FOOTER_LEN
    + 4
    + crate::format::blob::MIN_ENVELOPE_LEN) as u64;

impl PackWeight {
    /// What repacking would free: everything but the live blobs and a pack's fixed part.
    fn reclaimable(&self) -> u64 {
        self.size
            .saturating_sub(self.live_bytes)
            .saturating_sub(PACK_FIXED_BYTES)
    }
}

/// Garbage ids removed from the index per transaction of the sweep.
const SWEEP_BATCH: usize = 1 << 16;

/// What the run will do.
struct Plan {
    garbage: SpilledIds,
    to_delete: Vec<PackId>,
    to_repack: Vec<PackId>,
    orphans: Vec<PackId>,
}

impl Repository {
    /// Runs garbage collection; see the module documentation.
    pub async fn gc(
        &self,
        options: GcOptions,
        progress: Arc<Progress>,
    ) -> Result<GcReport, RepoError> {
        let inner = self.inner.clone();
        let _one_at_a_time = inner.coordinator.gc_running.lock().await;
        self.ensure_index_current().await?;
        inner.coordinator.begin_gc();
        let result = run(&inner, options, &progress).await;
        inner.coordinator.end_gc();
        result
    }
}

async fn run(
    inner: &Arc<RepoInner>,
    options: GcOptions,
    progress: &Progress,
) -> Result<GcReport, RepoError> {
    let mut report = GcReport {
        dry_run: options.dry_run,
        ..GcReport::default()
    };
    // Listed before anything else: see `find_orphans` for why the order matters.
    let stored = inner.backend.list(PACKS_PREFIX).await?;
    let active = inner.coordinator.active_packs();
    let marked = mark::mark_stored_manifests(inner, options.ids_in_memory, progress).await?;
    report.backups_marked = marked.backups;
    let stored_packs: HashMap<PackId, &crate::backend::ObjectMeta> = stored
        .iter()
        .filter_map(|object| Some((pack_id_of(&object.key)?, object)))
        .collect();
    let Weighed {
        garbage,
        weights,
        live_chunks,
    } = weigh(
        inner,
        marked.chunks,
        &stored_packs,
        options.ids_in_memory,
        progress,
    )?;
    let (to_delete, to_repack) = choose(&weights, options.repack_below);
    let (orphans, kept) = find_orphans(&stored_packs, &active, &weights, options.orphan_grace);
    report.live_chunks = live_chunks;
    report.garbage_chunks = garbage.len();
    report.packs_repacked = to_repack.len() as u64;
    report.orphan_packs_kept = kept;
    report.bytes_reclaimed = to_delete.iter().map(|p| weights[p].size).sum::<u64>()
        + to_repack
            .iter()
            .map(|p| weights[p].reclaimable())
            .sum::<u64>()
        + orphans.iter().map(|p| stored_packs[p].size).sum::<u64>();
    let plan = Plan {
        garbage,
        to_delete,
        to_repack,
        orphans,
    };
    if options.dry_run {
        report.packs_deleted = plan.to_delete.len() as u64;
        report.orphan_packs_deleted = plan.orphans.len() as u64;
        report.deleted_packs = [&plan.to_delete[..], &plan.to_repack, &plan.orphans].concat();
        report.deleted_packs.sort();
        return Ok(report);
    }
    execute(inner, plan, options, progress, &mut report).await?;
    Ok(report)
}

async fn execute(
    inner: &Arc<RepoInner>,
    plan: Plan,
    options: GcOptions,
    progress: &Progress,
    report: &mut GcReport,
) -> Result<(), RepoError> {
    let change = inner.generations.begin(inner).await?;
    sweep_index(inner, plan.garbage, progress)?;
    let written = repack::repack(inner, &plan.to_repack, progress).await?;
    report.packs_written = written.packs;
    report.bytes_rewritten = written.bytes;
    report.deleted_packs.extend(written.retired);
    let emptied = delete_empty_packs(inner, &plan.to_delete).await?;
    report.packs_deleted = emptied.len() as u64;
    report.deleted_packs.extend(emptied);
    for pack in &plan.orphans {
        inner.backend.delete(&pack_key(pack)).await?;
        report.deleted_packs.push(*pack);
    }
    report.orphan_packs_deleted = plan.orphans.len() as u64;
    report.deleted_packs.sort();
    report.stale_uploads_aborted = inner
        .backend
        .abort_stale_uploads(options.stale_uploads_after)
        .await?;
    change.finish()
}

/// The pack id in a key under `packs/`, if it names one.
fn pack_id_of(key: &str) -> Option<PackId> {
    key.rsplit('/').next()?.parse::<PackId>().ok()
}

/// The index's chunks split into live and garbage.
struct Weighed {
    garbage: SpilledIds,
    weights: HashMap<PackId, PackWeight>,
    /// Index entries kept: marked, or referenced by an ingest running here.
    live_chunks: u64,
}

/// Walks the marked ids beside the index's chunk entries, both ascending: checks that the
/// index places every marked chunk in a pack the backend holds, weighs the live bytes of
/// each pack, and spills every other entry as garbage.
fn weigh(
    inner: &RepoInner,
    marked: IdSorter,
    stored: &HashMap<PackId, &crate::backend::ObjectMeta>,
    ids_in_memory: usize,
    progress: &Progress,
) -> Result<Weighed, RepoError> {
    let tmp = inner.state_dir.join("tmp");
    let spill = |error| RepoError::io(&tmp, error);
    let not_indexed = |id: ChunkId| RepoError::IndexMismatch {
        reason: format!("chunk {id}, referenced by a stored backup, is not in the index"),
    };
    let mut weights: HashMap<PackId, PackWeight> = inner
        .index
        .list_packs()?
        .into_iter()
        .map(|(id, record)| {
            (
                id,
                PackWeight {
                    size: record.size,
                    ..PackWeight::default()
                },
            )
        })
        .collect();
    // Read after the mark: a session that started since is in it, one that committed
    // since handed its ids over; both keep their chunks.
    let referenced = inner.coordinator.referenced();
    let mut marked = marked.finish();
    let mut next_marked = marked.next_id().map_err(spill)?;
    let mut garbage = SpilledIds::new(tmp.clone(), ids_in_memory);
    let mut live_chunks = 0;
    let mut walked: u64 = 0;
    inner.index.try_for_each_chunk(|id, location| {
        walked += 1;
        if walked.is_multiple_of(65_536) {
            progress.check()?;
        }
        if let Some(missing) = next_marked.filter(|marked| *marked < id) {
            return Err(not_indexed(missing));
        }
        let is_marked = next_marked == Some(id);
        if is_marked {
            if !stored.contains_key(&location.pack) {
                return Err(RepoError::IndexMismatch {
                    reason: format!(
                        "the index places chunk {id} in pack {}, which the backend does not hold",
                        location.pack
                    ),
                });
            }
            next_marked = marked.next_id().map_err(spill)?;
        }
        if is_marked || referenced.might_contain(&id) {
            live_chunks += 1;
            let weight = weights.entry(location.pack).or_default();
            // The trailer entry counts too: with small blobs it is a large share of a
            // pack, and a pack of live blobs must never look worth repacking.
            weight.live_bytes +=
                u64::from(location.stored_len) + crate::format::pack::ENTRY_LEN as u64;
            weight.live_blobs += 1;
        } else {
            garbage.push(id).map_err(spill)?;
        }
        Ok(())
    })?;
    if let Some(missing) = next_marked {
        return Err(not_indexed(missing));
    }
    Ok(Weighed {
        garbage,
        weights,
        live_chunks,
    })
}

/// Packs to delete (nothing live) and to repack (live share under the threshold).
fn choose(weights: &HashMap<PackId, PackWeight>, repack_below: f64) -> (Vec<PackId>, Vec<PackId>) {
    let mut to_delete = Vec::new();
    let mut to_repack = Vec::new();
    for (pack, weight) in weights {
        if weight.live_blobs == 0 {
            to_delete.push(*pack);
        } else if weight.reclaimable() as f64 > (1.0 - repack_below) * weight.size as f64 {
            to_repack.push(*pack);
        }
    }
    to_delete.sort();
    to_repack.sort();
    (to_delete, to_repack)
}

/// Packs the backend holds that the index does not know and nobody here is writing,
/// split into those past the grace period (returned) and the number kept.
///
/// Order matters: the backend was listed first, then the active set read, then the index
/// (in `weigh`). A pack listed was finished before the listing; it is either still
/// registered as active (it stays so until its index commit) or, read after that,
/// already in the index.
fn find_orphans(
    stored: &HashMap<PackId, &crate::backend::ObjectMeta>,
    active: &HashSet<PackId>,
    indexed: &HashMap<PackId, PackWeight>,
    grace: Duration,
) -> (Vec<PackId>, u64) {
    let now = SystemTime::now();
    let mut orphans = Vec::new();
    let mut kept = 0;
    for (pack, object) in stored {
        if indexed.contains_key(pack) || active.contains(pack) {
            continue;
        }
        if object.is_older_than(grace, now) {
            orphans.push(*pack);
        } else {
            kept += 1;
        }
    }
    orphans.sort();
    (orphans, kept)
}

/// Removes the index entries of garbage chunks, keeping any that a session referenced
/// since the plan. A batch at a time, each under the gate: a session that deduplicates
/// against a chunk before its batch is swept is seen referencing it (and the chunk
/// stays); one that looks after misses it and stores it again. A kill between batches
/// leaves only garbage entries behind, which the next run sweeps.
fn sweep_index(
    inner: &RepoInner,
    garbage: SpilledIds,
    progress: &Progress,
) -> Result<(), RepoError> {
    let tmp = inner.state_dir.join("tmp");
    let spill = |error| RepoError::io(&tmp, error);
    let mut batches = garbage.into_batches(SWEEP_BATCH).map_err(spill)?;
    loop {
        let mut batch = batches.next_batch().map_err(spill)?;
        if batch.is_empty() {
            return Ok(());
        }
        progress.check()?;
        let _gate = inner
            .coordinator
            .gate
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        inner.coordinator.retain_unreferenced(&mut batch);
        inner.index.remove_chunks(&batch)?;
    }
}

/// Forgets then deletes packs (their chunks are gone from the index).
async fn retire(inner: &RepoInner, packs: &[PackId]) -> Result<(), RepoError> {
    inner.index.remove_packs(packs)?;
    for pack in packs {
        inner.backend.delete(&pack_key(pack)).await?;
    }
    Ok(())
}

/// Deletes the planned packs that have no index entry left; returns them.
async fn delete_empty_packs(
    inner: &RepoInner,
    planned: &[PackId],
) -> Result<Vec<PackId>, RepoError> {
    // A planned pack can still hold an entry here: a chunk a session deduplicated
    // against after the plan was kept by the sweep. Such a pack stays.
    let planned: HashSet<PackId> = planned.iter().copied().collect();
    let mut used: HashSet<PackId> = HashSet::new();
    inner.index.for_each_chunk(|_, location| {
        if planned.contains(&location.pack) {
            used.insert(location.pack);
        }
    })?;
    let mut empty: Vec<PackId> = planned
        .into_iter()
        .filter(|id| !used.contains(id))
        .collect();
    empty.sort();
    retire(inner, &empty).await?;
    Ok(empty)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::pack::ENTRY_LEN;

    /// A pack of `live` and `dead` blobs of `blob` stored bytes each, as written.
    fn pack(blob: u64, live: u64, dead: u64) -> PackWeight {
        let per_blob = blob + ENTRY_LEN as u64;
        PackWeight {
            size: PACK_FIXED_BYTES + (live + dead) * per_blob,
            live_bytes: live * per_blob,
            live_blobs: live,
        }
    }

    #[test]
    fn packs_of_live_small_blobs_are_never_repacked_and_dead_space_is_weighed() {
        let weights: HashMap<PackId, PackWeight> = [
            // Live 64-byte chunks: trailer entries are 40% of the pack, all of it live.
            (PackId([1; 32]), pack(105, 1000, 0)),
            (PackId([2; 32]), pack(105, 1, 0)),
            (PackId([3; 32]), pack(1 << 20, 3, 0)),
            // Half dead, and all dead.
            (PackId([4; 32]), pack(105, 500, 500)),
            (PackId([5; 32]), pack(1 << 20, 0, 4)),
            // 10% dead stays under the default threshold.
            (PackId([6; 32]), pack(1 << 20, 9, 1)),
        ]
        .into_iter()
        .collect();
        let (delete, repack) = choose(&weights, 0.8);
        assert_eq!(delete, [PackId([5; 32])]);
        assert_eq!(repack, [PackId([4; 32])]);
        assert_eq!(weights[&PackId([1; 32])].reclaimable(), 0);
        assert_eq!(
            weights[&PackId([4; 32])].reclaimable(),
            500 * (105 + ENTRY_LEN as u64)
        );
    }
}
