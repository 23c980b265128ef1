//! Verifying a repository: the index against the packs; every manifest, recycle mark and
//! series record stored in the backend read, authenticated and compared with the index's
//! copy; every backup's chunks against the index; and, with `read_data`, every blob of
//! every pack opened and its id recomputed, and every catalog decoded entry by entry.
//!
//! Every problem names what it concerns (backup, chunk, pack), so an operator knows
//! which backups are damaged. Check never changes anything. It runs beside uploads and
//! purges: a backup the index and the listing of manifests disagree on is looked up
//! again once every change in flight has ended, so one committed or purged between the
//! two reads is no finding.
//!
//! Memory and time follow the repository's distinct content, not its backups: a leaf
//! shared by many backups is read once, and the chunk ids the leaves list go to sorted
//! runs on disk that are walked beside the index's chunk table in one pass (as gc's
//! mark), instead of an index lookup per chunk per backup.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures::stream::{self, StreamExt};

use super::objects::{fetch_manifest, list_manifests, list_packs, parse_pack};
use super::progress::Progress;
use super::sorted_ids::{IdSorter, RUN_IDS};
use super::{pack_key, RepoError, RepoInner, Repository};
use crate::format::content::decode_leaf;
use crate::format::manifest::BackupManifest;
use crate::id::{BackupId, ChunkId, PackId};
use crate::index::ChunkLocation;

/// Packs read at once by `--read-data`.
const CONCURRENT_PACK_READS: usize = 2;
/// Manifests read at once.
const CONCURRENT_MANIFEST_READS: usize = 16;

/// One thing found wrong.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Problem {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chunk: Option<ChunkId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pack: Option<PackId>,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(backup) = &self.backup {
            write!(f, "backup {backup}: ")?;
        }
        if let Some(chunk) = &self.chunk {
            write!(f, "chunk {chunk}: ")?;
        }
        if let Some(pack) = &self.pack {
            write!(f, "pack {pack}: ")?;
        }
        f.write_str(&self.message)
    }
}

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct CheckReport {
    pub backups: u64,
    /// Manifests read from the backend and authenticated.
    pub manifests_read: u64,
    /// Catalog entries decoded (with `read_data`).
    pub catalog_entries: u64,
    pub packs: u64,
    pub chunks: u64,
    pub blobs_read: u64,
    pub problems: Vec<Problem>,
}

impl CheckReport {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    fn problem(
        &mut self,
        backup: Option<&str>,
        chunk: Option<ChunkId>,
        pack: Option<PackId>,
        message: String,
    ) {
        self.problems.push(Problem {
            backup: backup.map(str::to_string),
            chunk,
            pack,
            message,
        });
    }
}

/// Compares the totals the index keeps (what `stats` reports) with a count of its rows.
fn check_kept_totals(inner: &RepoInner, report: &mut CheckReport) -> Result<(), RepoError> {
    let kept = inner.index.totals()?;
    let counted = inner.index.scan_totals()?;
    if kept != counted {
        report.problem(
            None,
            None,
            None,
            format!(
                "the index's kept totals ({kept:?}) differ from a count of its rows ({counted:?}); `stowage repair index` rebuilds them"
            ),
        );
    }
    Ok(())
}

/// Chunks found damaged by reading packs, with the reason, to name the backups using them.
type DamagedChunks = HashMap<ChunkId, (PackId, String)>;

impl Repository {
    /// Checks the repository; see the module documentation.
    pub async fn check(
        &self,
        read_data: bool,
        progress: Arc<Progress>,
    ) -> Result<CheckReport, RepoError> {
        let inner = self.inner.clone();
        let mut report = CheckReport::default();
        let stored = list_packs(&inner).await?;
        let missing = check_index_against_packs(&inner, &stored, &mut report)?;
        check_kept_totals(&inner, &mut report)?;
        let mut damaged = DamagedChunks::new();
        for pack in missing {
            let reason = "indexed pack is missing from the backend";
            mark_pack_damaged(&inner, pack, reason, &mut damaged)?;
        }
        if read_data {
            let total: u64 = stored.values().sum();
            progress.set_total(total);
            read_all_packs(&inner, &stored, &mut report, &mut damaged, &progress).await?;
        }
        let backups = self.compare_manifests(&mut report, &progress).await?;
        self.compare_lifecycle(&mut report).await?;
        let mut verdicts = LeafVerdicts::new();
        let mut referenced = IdSorter::new(inner.state_dir.join("tmp"), RUN_IDS);
        for backup in &backups {
            progress.check()?;
            let Some(manifest) = backup.manifest(&inner)? else {
                continue;
            };
            report.backups += 1;
            check_leaves(
                &inner,
                &manifest,
                &damaged,
                &mut verdicts,
                &mut referenced,
                &mut report,
            )
            .await?;
            if read_data {
                self.check_catalog(&manifest, &mut report).await?;
            }
        }
        let bad = find_bad_chunks(&inner, referenced, &damaged, &progress)?;
        if !bad.is_empty() {
            for backup in &backups {
                if let Some(manifest) = backup.manifest(&inner)? {
                    name_bad_chunks(&inner, &manifest, &verdicts, &bad, &mut report).await?;
                }
            }
        }
        Ok(report)
    }

    /// Reads every stored manifest and compares it with the index's copy; returns the
    /// backups to check, oldest first (the stored copy when readable, else the index's).
    /// Only ids and times are held, and the rare stored copy that the index lacks or
    /// differs from, so memory does not grow with the backups' manifests.
    async fn compare_manifests(
        &self,
        report: &mut CheckReport,
        progress: &Progress,
    ) -> Result<Vec<ToCheck>, RepoError> {
        let inner = self.inner.clone();
        let mut indexed: BTreeSet<BackupId> = inner.index.backup_ids()?.into_iter().collect();
        let listed = list_manifests(&inner).await?;
        for stray in &listed.strays {
            report.problem(
                None,
                None,
                None,
                format!("object {stray} is not a backup manifest (its name is no backup id); move it out of the repository"),
            );
        }
        let mut stored = stream::iter(listed.ids)
            .map(|id| {
                let inner = inner.clone();
                async move {
                    let manifest = fetch_manifest(&inner, &id).await;
                    (id, manifest)
                }
            })
            .buffered(CONCURRENT_MANIFEST_READS);
        let mut out = Vec::new();
        while let Some((id, read)) = stored.next().await {
            progress.check()?;
            let copy = match indexed.remove(&id) {
                true => inner.index.get_backup(&id)?,
                // Perhaps committed since the index was read: asked again once every
                // change in flight has ended, it is a finding only if still missing.
                false => {
                    let _settled = inner.generations.exclusive().await;
                    inner.index.get_backup(&id)?
                }
            };
            match (read, copy) {
                (Ok(manifest), Some(copy)) => {
                    report.manifests_read += 1;
                    if manifest != copy {
                        report.problem(
                            Some(id.as_str()),
                            None,
                            None,
                            "the stored manifest differs from the index's copy (run `stowage repair index`)".into(),
                        );
                        out.push(ToCheck::stored(manifest));
                    } else {
                        out.push(ToCheck::indexed(&manifest));
                    }
                }
                (Ok(manifest), None) => {
                    report.manifests_read += 1;
                    report.problem(
                        Some(id.as_str()),
                        None,
                        None,
                        "backup is stored in the backend but missing from the index (run `stowage repair index`)".into(),
                    );
                    out.push(ToCheck::stored(manifest));
                }
                // The backend failing for now is no finding about the repository.
                (Err(error), _) if error.is_transient() => return Err(error),
                (Err(error), copy) => {
                    report.problem(
                        Some(id.as_str()),
                        None,
                        None,
                        format!("stored manifest cannot be read: {error}"),
                    );
                    out.extend(copy.as_ref().map(ToCheck::indexed));
                }
            }
        }
        for id in indexed {
            // Perhaps purged since the index was read (no finding, nothing to check) or
            // committed after the listing (its manifest is there now): asked again once
            // every change in flight has ended.
            let _settled = inner.generations.exclusive().await;
            let Some(copy) = inner.index.get_backup(&id)? else {
                continue;
            };
            match inner.backend.head(&super::manifest_key(&id)).await {
                Ok(_) => {}
                Err(crate::backend::BackendError::NotFound { .. }) => report.problem(
                    Some(id.as_str()),
                    None,
                    None,
                    "manifest object is missing from the backend".into(),
                ),
                Err(other) => return Err(other.into()),
            }
            out.push(ToCheck::indexed(&copy));
        }
        out.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// Reads every recycle mark and series record and compares them with the index.
    async fn compare_lifecycle(&self, report: &mut CheckReport) -> Result<(), RepoError> {
        let mut findings = self.lifecycle_findings().await?;
        if !findings.is_empty() {
            // A recycle, undelete or series write between the two reads differs too:
            // compared again once every change in flight has ended, and none starts.
            let _settled = self.inner.generations.exclusive().await;
            findings = self.lifecycle_findings().await?;
        }
        for finding in findings {
            report.problem(None, None, None, finding);
        }
        Ok(())
    }

    /// What differs between the stored recycle marks and series records and the
    /// index's, and what of them cannot be read.
    async fn lifecycle_findings(&self) -> Result<Vec<String>, RepoError> {
        let mut findings = Vec::new();
        let (marks, records) = self.read_lifecycle(&mut findings).await?;
        let stored: BTreeMap<String, String> = marks.into_iter().collect();
        let indexed: BTreeMap<String, String> = self.inner.index.recycled()?.into_iter().collect();
        if stored != indexed {
            findings.push(
                "the recycle marks stored differ from the index's (run `stowage repair index`)"
                    .into(),
            );
        }
        let stored: BTreeMap<String, Vec<u8>> = records.into_iter().collect();
        let indexed: BTreeMap<String, Vec<u8>> =
            self.inner.index.list_series()?.into_iter().collect();
        if stored != indexed {
            findings.push(
                "the series records stored differ from the index's (run `stowage repair index`)"
                    .into(),
            );
        }
        Ok(findings)
    }

    /// Decodes every entry of a backup's catalog and checks its index.
    async fn check_catalog(
        &self,
        manifest: &BackupManifest,
        report: &mut CheckReport,
    ) -> Result<(), RepoError> {
        if manifest.catalog.is_none() {
            return Ok(());
        }
        match self.verify_catalog(manifest).await {
            Err(error) if error.is_transient() => return Err(error),
            Err(error) => report.problem(
                Some(manifest.id.as_str()),
                None,
                None,
                format!("catalog cannot be read: {error}"),
            ),
            Ok(entries) => report.catalog_entries += entries,
        }
        Ok(())
    }
}

/// Compares the index's packs with the backend's; returns the indexed packs that are
/// missing.
fn check_index_against_packs(
    inner: &RepoInner,
    stored: &BTreeMap<PackId, u64>,
    report: &mut CheckReport,
) -> Result<Vec<PackId>, RepoError> {
    let indexed = inner.index.list_packs()?;
    report.packs = indexed.len() as u64;
    let mut missing = Vec::new();
    for (pack, record) in &indexed {
        match stored.get(pack) {
            None => {
                missing.push(*pack);
                report.problem(
                    None,
                    None,
                    Some(*pack),
                    "indexed pack is missing from the backend".into(),
                );
            }
            Some(&size) if size != record.size => report.problem(
                None,
                None,
                Some(*pack),
                format!(
                    "pack holds {size} bytes, the index recorded {}",
                    record.size
                ),
            ),
            Some(_) => {}
        }
    }
    let indexed: std::collections::HashSet<PackId> =
        indexed.into_iter().map(|(id, _)| id).collect();
    let mut problems = Vec::new();
    inner.index.for_each_chunk(|chunk, location| {
        report.chunks += 1;
        if !indexed.contains(&location.pack) {
            problems.push((chunk, location.pack));
        }
    })?;
    for (chunk, pack) in problems {
        report.problem(
            None,
            Some(chunk),
            Some(pack),
            "index points at a pack it does not know".into(),
        );
    }
    Ok(missing)
}

async fn read_all_packs(
    inner: &Arc<RepoInner>,
    stored: &BTreeMap<PackId, u64>,
    report: &mut CheckReport,
    damaged: &mut DamagedChunks,
    progress: &Progress,
) -> Result<(), RepoError> {
    // Owned inputs and an owned handle: the stream must be Send for the job runner.
    let packs: Vec<(PackId, u64)> = stored.iter().map(|(pack, size)| (*pack, *size)).collect();
    let shared = inner.clone();
    // Once the check has failed, packs not yet started are passed by and those being
    // verified are awaited: their blocking tasks hold the repository, and nothing of a
    // check may still run once it has returned.
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = stop.clone();
    let mut results = stream::iter(packs)
        .map(move |(pack, size)| {
            let (inner, stop) = (shared.clone(), stopping.clone());
            async move {
                if stop.load(Ordering::Relaxed) {
                    return (pack, size, None);
                }
                (pack, size, Some(verify_pack(inner, pack).await))
            }
        })
        .buffer_unordered(CONCURRENT_PACK_READS);
    let mut outcome = Ok(());
    while let Some((pack, size, result)) = results.next().await {
        let Some(result) = result.filter(|_| outcome.is_ok()) else {
            continue;
        };
        progress.add_done(size);
        let step = progress.check().and_then(|()| match result {
            Ok(verdict) => {
                report.blobs_read += verdict.blobs;
                for (chunk, message) in verdict.bad_blobs {
                    report.problem(None, Some(chunk), Some(pack), message.clone());
                    damaged.insert(chunk, (pack, message));
                }
                Ok(())
            }
            // The backend failing for now is no finding about the pack.
            Err(e) if e.is_transient() => Err(e),
            Err(e) => {
                report.problem(None, None, Some(pack), e.to_string());
                mark_pack_damaged(inner, pack, &e.to_string(), damaged)
            }
        });
        if step.is_err() {
            stop.store(true, Ordering::Relaxed);
            outcome = step;
        }
    }
    outcome
}

/// Every chunk the index places in an unreadable pack is damaged.
fn mark_pack_damaged(
    inner: &RepoInner,
    pack: PackId,
    reason: &str,
    damaged: &mut DamagedChunks,
) -> Result<(), RepoError> {
    inner.index.for_each_chunk(|chunk, location| {
        if location.pack == pack {
            damaged.insert(chunk, (pack, format!("pack unreadable: {reason}")));
        }
    })?;
    Ok(())
}

struct PackVerdict {
    blobs: u64,
    bad_blobs: Vec<(ChunkId, String)>,
}

/// Reads a whole pack, opens every blob and recomputes its id.
async fn verify_pack(inner: Arc<RepoInner>, pack: PackId) -> Result<PackVerdict, RepoError> {
    let bytes = inner.backend.get(&pack_key(&pack), None).await?;
    tokio::task::spawn_blocking(move || {
        let entries = parse_pack(&inner, pack, &bytes)?;
        let mut verdict = PackVerdict {
            blobs: 0,
            bad_blobs: Vec::new(),
        };
        for entry in entries {
            verdict.blobs += 1;
            let location = ChunkLocation {
                pack,
                kind: entry.kind,
                offset: entry.offset,
                stored_len: entry.stored_len,
                raw_len: entry.raw_len,
            };
            let start = entry.offset as usize;
            let envelope = &bytes[start..start + entry.stored_len as usize];
            match inner.open_chunk(entry.id, &location, envelope) {
                Ok(plain) if inner.keys.chunk_id(&plain) == entry.id => {}
                Ok(_) => verdict
                    .bad_blobs
                    .push((entry.id, "content does not hash to its chunk id".into())),
                Err(e) => verdict.bad_blobs.push((entry.id, e.to_string())),
            }
        }
        Ok(verdict)
    })
    .await
    .map_err(|e| RepoError::Internal(format!("pack check task failed: {e}")))?
}

/// A backup check will read: its manifest is the index's copy, read again when its turn
/// comes, unless the stored copy must be checked instead (it differs from the index's, or
/// the index lacks it).
struct ToCheck {
    created_at: String,
    id: BackupId,
    stored: Option<BackupManifest>,
}

impl ToCheck {
    fn indexed(manifest: &BackupManifest) -> ToCheck {
        ToCheck {
            created_at: manifest.created_at.clone(),
            id: manifest.id.clone(),
            stored: None,
        }
    }

    fn stored(manifest: BackupManifest) -> ToCheck {
        ToCheck {
            created_at: manifest.created_at.clone(),
            id: manifest.id.clone(),
            stored: Some(manifest),
        }
    }

    /// The manifest to check; `None` when the backup left the index meanwhile (purged
    /// while check ran).
    fn manifest(&self, inner: &RepoInner) -> Result<Option<BackupManifest>, RepoError> {
        match &self.stored {
            Some(manifest) => Ok(Some(manifest.clone())),
            None => Ok(inner.index.get_backup(&self.id)?),
        }
    }
}

/// What is wrong with a chunk (and in which pack), or with a leaf.
type Trouble = (Option<PackId>, String);

/// Each distinct content-list leaf seen: `None` when it was read (its entries gathered),
/// else what is wrong with it. A leaf shared by many backups is read once.
type LeafVerdicts = HashMap<ChunkId, Option<Trouble>>;

/// Reads the leaves of a backup not read before, gathering the chunk ids they list, and
/// reports the leaves that cannot be read.
async fn check_leaves(
    inner: &Arc<RepoInner>,
    manifest: &BackupManifest,
    damaged: &DamagedChunks,
    verdicts: &mut LeafVerdicts,
    referenced: &mut IdSorter,
    report: &mut CheckReport,
) -> Result<(), RepoError> {
    let spill = |error| RepoError::io(inner.state_dir.join("tmp"), error);
    for content in manifest.streams() {
        for leaf in &content.leaves {
            if let Entry::Vacant(slot) = verdicts.entry(leaf.id) {
                let verdict = match damaged.get(&leaf.id) {
                    Some((pack, reason)) => Some((
                        Some(*pack),
                        format!("content-list leaf is damaged: {reason}"),
                    )),
                    None => match load_leaf(inner, leaf.id).await? {
                        Ok(entries) => {
                            for entry in &entries {
                                referenced.push(entry.id).map_err(spill)?;
                            }
                            None
                        }
                        Err(trouble) => Some(trouble),
                    },
                };
                slot.insert(verdict);
            }
            if let Some(Some((pack, message))) = verdicts.get(&leaf.id) {
                report.problem(
                    Some(manifest.id.as_str()),
                    Some(leaf.id),
                    *pack,
                    message.clone(),
                );
            }
        }
    }
    Ok(())
}

/// Walks the chunk ids the leaves list, sorted, beside the index's chunk table (in the
/// same order): one sequential pass instead of a lookup per chunk. Returns the chunks
/// that are not indexed or lie in a damaged pack.
fn find_bad_chunks(
    inner: &RepoInner,
    referenced: IdSorter,
    damaged: &DamagedChunks,
    progress: &Progress,
) -> Result<HashMap<ChunkId, Trouble>, RepoError> {
    let spill = |error| RepoError::io(inner.state_dir.join("tmp"), error);
    let not_indexed = || (None, "chunk is not in the index".to_string());
    let mut ids = referenced.finish();
    let mut next = ids.next_id().map_err(spill)?;
    let mut bad = HashMap::new();
    let mut walked: u64 = 0;
    inner.index.try_for_each_chunk(|id, _| {
        walked += 1;
        if walked.is_multiple_of(65_536) {
            progress.check()?;
        }
        while let Some(missing) = next.filter(|referenced| *referenced < id) {
            bad.insert(missing, not_indexed());
            next = ids.next_id().map_err(spill)?;
        }
        if next == Some(id) {
            if let Some((pack, reason)) = damaged.get(&id) {
                bad.insert(id, (Some(*pack), reason.clone()));
            }
            next = ids.next_id().map_err(spill)?;
        }
        Ok::<(), RepoError>(())
    })?;
    while let Some(missing) = next {
        bad.insert(missing, not_indexed());
        next = ids.next_id().map_err(spill)?;
    }
    Ok(bad)
}

/// Names, for one backup, every bad chunk its readable leaves list (only run when some
/// chunk is bad: the leaves are read again).
async fn name_bad_chunks(
    inner: &Arc<RepoInner>,
    manifest: &BackupManifest,
    verdicts: &LeafVerdicts,
    bad: &HashMap<ChunkId, Trouble>,
    report: &mut CheckReport,
) -> Result<(), RepoError> {
    for content in manifest.streams() {
        for leaf in &content.leaves {
            if !matches!(verdicts.get(&leaf.id), Some(None)) {
                continue;
            }
            let Ok(entries) = load_leaf(inner, leaf.id).await? else {
                continue;
            };
            for entry in entries {
                if let Some((pack, message)) = bad.get(&entry.id) {
                    report.problem(
                        Some(manifest.id.as_str()),
                        Some(entry.id),
                        *pack,
                        message.clone(),
                    );
                }
            }
        }
    }
    Ok(())
}

async fn load_leaf(inner: &Arc<RepoInner>, leaf: ChunkId) -> Result<LeafRead, RepoError> {
    let location = match inner.locate(leaf) {
        Ok(location) => location,
        Err(e) if e.is_transient() => return Err(e),
        Err(e) => return Ok(Err((None, e.to_string()))),
    };
    let payload = match inner.load_blob(leaf, location).await {
        Ok(payload) => payload,
        Err(e) if e.is_transient() => return Err(e),
        Err(e) => return Ok(Err((Some(location.pack), e.to_string()))),
    };
    Ok(decode_leaf(&payload).map_err(|e| (Some(location.pack), e.to_string())))
}

/// A content-list leaf's entries, or what is wrong with it (and in which pack); the
/// backend failing for now is the outer error of [`load_leaf`].
type LeafRead = Result<Vec<crate::format::content::ContentEntry>, Trouble>;
