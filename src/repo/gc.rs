//! Garbage collection: mark and sweep in two phases, a plan and then its execution.
//!
//! **Plan.** Every chunk referenced by a backup (live or recycled: recycled backups still
//! hold their chunks) is live, as is every chunk referenced by an ingest running in this
//! process (see `coordinator`). Every other indexed chunk is garbage. Per pack, the plan
//! weighs live bytes against the pack's size: packs with nothing live are deleted, packs
//! whose live share is under the threshold are repacked.
//!
//! **Execute**, in an order where a kill at any instant leaves a repository that passes
//! `check --read-data` with every live backup restorable:
//! 1. under the coordinator's gate, add the references of sessions that ran meanwhile and
//!    remove the garbage chunks' index entries (one transaction);
//! 2. repack: copy the live blobs (still sealed, unchanged) of the chosen packs into new
//!    packs; once a new pack is durable, point the index at it and forget the old packs
//!    (one transaction); then delete the old pack objects;
//! 3. forget, then delete, packs with no index entry left;
//! 4. delete orphan packs: in the backend, not in the index, not being written. A kill
//!    between any two steps leaves only unreferenced packs, which the next run deletes.
//! 5. abort stale uploads: what uploads older than `stale_uploads_after` left in the
//!    backend (S3 multipart uploads, local temporaries), invisible to the index.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::objects::{list_packs, parse_pack};
use super::progress::Progress;
use super::{pack_key, RepoError, RepoInner, Repository};
use crate::backend::ObjectWriter;
use crate::format::blob::Domain;
use crate::format::content::{decode_leaf, ContentRef};
use crate::format::pack::{encode_footer, encode_header, PackEntry};
use crate::id::Id;
use crate::index::PackRecord;
use crate::pipeline::packer::PackLayout;
use crate::pipeline::seal;

#[derive(Debug, Clone, Copy)]
pub struct GcOptions {
    /// Plan only: report what would be reclaimed, change nothing.
    pub dry_run: bool,
    /// Packs whose live share (live bytes / pack bytes) is below this are repacked.
    pub repack_below: f64,
    /// Unfinished uploads at least this old are leftovers of crashes and are aborted.
    /// Uploads of running ingests must stay younger, so keep it generous.
    pub stale_uploads_after: std::time::Duration,
}

/// Default age past which an unfinished upload counts as abandoned.
pub const DEFAULT_STALE_UPLOADS_AFTER: std::time::Duration =
    std::time::Duration::from_secs(24 * 3600);

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions {
            dry_run: false,
            repack_below: 0.8,
            stale_uploads_after: DEFAULT_STALE_UPLOADS_AFTER,
        }
    }
}

/// What a run did (or, dry, would do).
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct GcReport {
    pub dry_run: bool,
    pub live_chunks: u64,
    pub garbage_chunks: u64,
    pub packs_deleted: u64,
    pub packs_repacked: u64,
    pub packs_written: u64,
    pub orphan_packs_deleted: u64,
    /// Abandoned uploads aborted (S3 multipart uploads, local temporaries).
    pub stale_uploads_aborted: u64,
    /// Pack bytes given back to the backend, net of the bytes rewritten.
    pub bytes_reclaimed: u64,
    /// Live bytes copied into new packs.
    pub bytes_rewritten: u64,
}

/// Per-pack weights from the index.
#[derive(Default, Clone, Copy)]
struct PackWeight {
    size: u64,
    live_bytes: u64,
    live_blobs: u64,
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
        inner.coordinator.begin_gc();
        let result = run(&inner, self, options, &progress).await;
        inner.coordinator.end_gc();
        result
    }
}

async fn run(
    inner: &Arc<RepoInner>,
    repo: &Repository,
    options: GcOptions,
    progress: &Progress,
) -> Result<GcReport, RepoError> {
    let mut report = GcReport {
        dry_run: options.dry_run,
        ..GcReport::default()
    };
    let mut live = mark(inner, repo, progress).await?;
    live.extend(inner.coordinator.referenced());
    let (garbage, weights) = weigh(inner, &live)?;
    report.live_chunks = live.len() as u64;
    report.garbage_chunks = garbage.len() as u64;
    let (to_delete, to_repack) = choose(&weights, options.repack_below);
    report.packs_deleted = to_delete.len() as u64;
    report.packs_repacked = to_repack.len() as u64;
    report.bytes_reclaimed = to_delete.iter().map(|p| weights[p].size).sum::<u64>()
        + to_repack
            .iter()
            .map(|p| weights[p].size - weights[p].live_bytes)
            .sum::<u64>();
    if options.dry_run {
        return Ok(report);
    }
    sweep_index(inner, garbage)?;
    let written = repack(inner, &to_repack, progress).await?;
    report.packs_written = written.packs;
    report.bytes_rewritten = written.bytes;
    delete_empty_packs(inner).await?;
    report.orphan_packs_deleted = delete_orphans(inner).await?;
    report.stale_uploads_aborted = inner
        .backend
        .abort_stale_uploads(options.stale_uploads_after)
        .await?;
    Ok(report)
}

/// Every chunk id referenced by a backup: content-list leaves and the chunks they list.
async fn mark(
    inner: &Arc<RepoInner>,
    repo: &Repository,
    progress: &Progress,
) -> Result<HashSet<Id>, RepoError> {
    let mut live = HashSet::new();
    for manifest in repo.backups()? {
        progress.check()?;
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
                let location = inner.locate(leaf.id).map_err(|_| RepoError::ChunkMissing {
                    chunk: leaf.id,
                    backup: Some(manifest.id.clone()),
                })?;
                let payload = inner.load_blob(leaf.id, location).await?;
                let entries = decode_leaf(&payload).map_err(|e| RepoError::CorruptChunk {
                    chunk: leaf.id,
                    pack: location.pack,
                    reason: e.to_string(),
                })?;
                live.extend(entries.iter().map(|e| e.id));
            }
        }
    }
    Ok(live)
}

/// Splits indexed chunks into garbage and per-pack live weights.
fn weigh(
    inner: &RepoInner,
    live: &HashSet<Id>,
) -> Result<(Vec<Id>, HashMap<Id, PackWeight>), RepoError> {
    let mut weights: HashMap<Id, PackWeight> = inner
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
    let mut garbage = Vec::new();
    inner.index.for_each_chunk(|id, location| {
        if live.contains(&id) {
            let weight = weights.entry(location.pack).or_default();
            weight.live_bytes += u64::from(location.stored_len);
            weight.live_blobs += 1;
        } else {
            garbage.push(id);
        }
    })?;
    Ok((garbage, weights))
}

/// Packs to delete (nothing live) and to repack (live share under the threshold).
fn choose(weights: &HashMap<Id, PackWeight>, repack_below: f64) -> (Vec<Id>, Vec<Id>) {
    let mut to_delete = Vec::new();
    let mut to_repack = Vec::new();
    for (pack, weight) in weights {
        if weight.live_blobs == 0 {
            to_delete.push(*pack);
        } else if (weight.live_bytes as f64) < repack_below * weight.size as f64 {
            to_repack.push(*pack);
        }
    }
    to_delete.sort();
    to_repack.sort();
    (to_delete, to_repack)
}

/// Removes the index entries of garbage chunks, keeping any that a session referenced
/// since the plan.
fn sweep_index(inner: &RepoInner, mut garbage: Vec<Id>) -> Result<(), RepoError> {
    let _gate = inner
        .coordinator
        .gate
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let referenced = inner.coordinator.referenced();
    garbage.retain(|id| !referenced.contains(id));
    inner.index.remove_chunks(&garbage)?;
    Ok(())
}

#[derive(Default)]
struct Written {
    packs: u64,
    bytes: u64,
}

/// A new pack being filled with blobs copied from old ones.
struct RepackTarget {
    id: Id,
    writer: Box<dyn ObjectWriter>,
    layout: PackLayout,
    pending: BytesMut,
    /// Old packs whose live blobs all sit in this or earlier new packs.
    retired: Vec<Id>,
}

async fn repack(
    inner: &Arc<RepoInner>,
    packs: &[Id],
    progress: &Progress,
) -> Result<Written, RepoError> {
    let mut written = Written::default();
    let mut target: Option<RepackTarget> = None;
    for &old in packs {
        progress.check()?;
        let bytes = inner.backend.get(&pack_key(&old), None).await?;
        let entries = parse_pack(inner, old, &bytes)?;
        let ids: Vec<Id> = entries.iter().map(|e| e.id).collect();
        let current = inner.index.lookup_chunks(&ids)?;
        for (entry, location) in entries.iter().zip(current) {
            // Copy only blobs the index still places at this very spot.
            let here = location.is_some_and(|l| l.pack == old && l.offset == entry.offset);
            if !here {
                continue;
            }
            if target
                .as_ref()
                .is_some_and(|t| t.layout.is_full(entry.stored_len))
            {
                let full = target.take().expect("target checked above");
                written.bytes += close_target(inner, full).await?;
                written.packs += 1;
            }
            if target.is_none() {
                target = Some(open_target(inner).await?);
            }
            let t = target.as_mut().expect("target opened above");
            let start = entry.offset as usize;
            t.layout
                .place(entry.id, entry.kind, entry.stored_len, entry.raw_len);
            t.pending
                .extend_from_slice(&bytes[start..start + entry.stored_len as usize]);
            if t.pending.len() >= 4 << 20 {
                t.writer.write(t.pending.split().freeze()).await?;
            }
        }
        match target.as_mut() {
            Some(t) => t.retired.push(old),
            None => retire(inner, &[old]).await?,
        }
    }
    if let Some(last) = target.take() {
        written.bytes += close_target(inner, last).await?;
        written.packs += 1;
    }
    Ok(written)
}

async fn open_target(inner: &RepoInner) -> Result<RepackTarget, RepoError> {
    let id = Id::random();
    inner.coordinator.pack_started(id);
    let writer = inner.backend.create(&pack_key(&id)).await?;
    let mut pending = BytesMut::with_capacity(5 << 20);
    pending.extend_from_slice(&encode_header());
    Ok(RepackTarget {
        id,
        writer,
        layout: PackLayout::new(inner.config.pack_size),
        pending,
        retired: Vec::new(),
    })
}

/// Finishes a new pack, points the index at it, then deletes the packs it replaced.
async fn close_target(inner: &RepoInner, mut target: RepackTarget) -> Result<u64, RepoError> {
    let trailer = seal::seal(
        &inner.keys,
        Domain::PackTrailer,
        target.id.as_bytes(),
        &target.layout.trailer_payload(),
        0,
    );
    target.pending.extend_from_slice(&trailer);
    target
        .pending
        .extend_from_slice(&encode_footer(trailer.len() as u32));
    let size = target.layout.len() + trailer.len() as u64 + 12;
    let tail: Bytes = target.pending.split().freeze();
    let id = target.id;
    let result = async {
        target.writer.write(tail).await?;
        target.writer.finish().await?;
        let record = PackRecord {
            size,
            blobs: target.layout.entries().len() as u32,
            created: chrono::Utc::now().timestamp(),
        };
        let entries: Vec<PackEntry> = target.layout.into_entries();
        inner
            .index
            .relocate(id, record, &entries, &target.retired)?;
        Ok::<(), RepoError>(())
    }
    .await;
    inner.coordinator.pack_ended(&id);
    result?;
    for old in &target.retired {
        inner.backend.delete(&pack_key(old)).await?;
    }
    Ok(size)
}

/// Forgets then deletes packs (their chunks are gone from the index).
async fn retire(inner: &RepoInner, packs: &[Id]) -> Result<(), RepoError> {
    inner.index.remove_packs(packs)?;
    for pack in packs {
        inner.backend.delete(&pack_key(pack)).await?;
    }
    Ok(())
}

async fn delete_empty_packs(inner: &RepoInner) -> Result<(), RepoError> {
    // Order matters: packs are listed before their chunks are read. An ingest commits a
    // pack and its chunk entries together, so a pack listed here has its entries in the
    // scan that follows; read the other way round, a pack committed between the two reads
    // was listed without its entries, taken for empty and deleted under live chunks.
    let listed: Vec<Id> = inner
        .index
        .list_packs()?
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let mut used: HashSet<Id> = HashSet::new();
    inner.index.for_each_chunk(|_, location| {
        used.insert(location.pack);
    })?;
    let empty: Vec<Id> = listed.into_iter().filter(|id| !used.contains(id)).collect();
    retire(inner, &empty).await
}

/// Deletes packs the backend holds that the index does not know and nobody is writing.
async fn delete_orphans(inner: &RepoInner) -> Result<u64, RepoError> {
    // Order matters: a pack listed here was finished before the listing; it is either
    // still registered as active (it stays so until its index commit) or, read after
    // that, already in the index.
    let stored: BTreeMap<Id, u64> = list_packs(inner).await?;
    let active = inner.coordinator.active_packs();
    let indexed: HashSet<Id> = inner
        .index
        .list_packs()?
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let mut deleted = 0;
    for pack in stored
        .keys()
        .filter(|p| !indexed.contains(p) && !active.contains(p))
    {
        inner.backend.delete(&pack_key(pack)).await?;
        deleted += 1;
    }
    Ok(deleted)
}
