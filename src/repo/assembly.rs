//! A stream backup assembled from chunks a client cut, hashed and compressed itself
//! (the `/v1/sessions` protocol, `docs/API.md`): the server stores only the chunks the
//! client sends and checks everything it is told.
//!
//! - **Known set.** Opening reads the newest backup of the series and offers its chunk
//!   ids: the client sends no chunk the server already holds for this series. Those ids
//!   are referenced by the session at once (under the GC gate), so gc keeps them for the
//!   session's life even if that backup is purged meanwhile.
//! - **Uploads.** Every uploaded chunk is decompressed (bounded by the length it claims)
//!   and hashed with the repository's chunk-id key before anything of its batch is
//!   stored: bytes under a wrong id are refused, or one writer could poison every backup
//!   that shares the chunk. A chunk already stored is deduplicated without saying so.
//! - **Proof of possession.** An appended entry may name only a chunk uploaded in this
//!   session or one of the known set, with its true length. Any other id is refused with
//!   the same answer whether the repository holds it or not: the protocol is no oracle
//!   for chunks of other series.
//! - **The stream, checked in order.** Each append hands its chunks' plaintext, in stream
//!   order, to the same observer an upload's stream goes through (the digests, a tar
//!   archive's catalog): a chunk uploaded recently is taken from memory (its bytes were
//!   just checked against its id), a stored one is read and opened from its pack. When a
//!   chunk is neither (uploaded long ago and not yet durable), the rest of the stream is
//!   read back at finish instead.
//! - **Trees.** A tree session also receives the tree's catalog, checked line by line
//!   (`tree_catalog_check`): the stream is then the tree's files, concatenated.
//! - **Finish.** After every chunk is durable, the client's size and its digests must
//!   match: the whole-stream BLAKE3 against what the observer saw, the entries' BLAKE3
//!   against the (id, length) list appended. A stream session must send the first; a
//!   tree session at least one, since a client that skipped unchanged files (its files
//!   cache) never read their bytes. Since every uploaded chunk was checked against its
//!   id, a matching list pins the bytes as surely. Either way the server records the
//!   BLAKE3 of the stream it assembled, so restores are checked end to end as for every
//!   backup. Only then is the manifest written and the backup committed.
//! - **Repeats.** Appends that repeat the series' newest backup entry for entry are not
//!   observed: the same list is the same bytes, so such a stream inherits that backup's
//!   digests, and the tar catalog read from them when the session looks for a tar
//!   (`repeat`). At the first departure the bytes repeated so far are observed
//!   from that backup's content, and the stream goes on as any other.
//!
//! An assembly dropped unfinished commits nothing; the chunks it stored are unreferenced
//! and gc reclaims them.
//!
//! **Memory.** A session's known set and the ids it uploaded live in sorted runs on disk
//! with a sparse sample in memory (`chunk_runs`), and the known set is gathered through
//! sorted runs too: a session of ten million chunks holds megabytes, not the 32 bytes
//! and more per chunk that in-memory sets would.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;
use rayon::prelude::*;
use tokio::runtime::Handle;

use super::chunk_runs::{KnownIds, KnownIdsBuilder, SpilledLengths, IN_MEMORY, KNOWN_IN_MEMORY};
use super::digest::DigestRequest;
use super::ingest::{
    now_rfc3339, validate_series, BlobBytes, ContentListBuilder, ManifestDraft, Presence, Session,
    StreamObserver,
};
use super::repeat::{Inherited, Repeat};
use super::restore::{data_read_ahead, fetch_chunks, read_content};
use super::sorted_ids::{IdSorter, RUN_IDS};
use super::tree_catalog_check::TreeCatalogCheck;
use super::{Progress, RepoError, RepoInner, Repository};
use crate::format::chunk_batch::{encode_entry, ChunkEncoding, UploadedChunk, ENTRY_LEN};
use crate::format::config::ChunkerParams;
use crate::format::content::{decode_leaf, ContentEntry, ContentRef};
use crate::format::manifest::{BackupKind, BackupManifest};
use crate::format::pack::BlobKind;
use crate::id::ChunkId;
use crate::pipeline::seal;

/// What a client needs to cut and name chunks exactly as this repository does.
#[derive(Debug, Clone)]
pub struct WriterParams {
    pub chunker: ChunkerParams,
    /// The key of the keyed BLAKE3 that names chunks. A writer needs it to name what it
    /// sends; it grants no reading (that takes the blob key, which never leaves).
    pub chunk_id_key: [u8; 32],
    pub compression_level: i32,
}

/// What to record about an assembled stream besides its bytes.
#[derive(Debug, Clone)]
pub struct AssemblyOptions {
    /// Digests to record besides BLAKE3.
    pub digests: DigestRequest,
    /// Recognise a tar (plain or gzip) stream and record its entries as the catalog.
    pub detect_tar: bool,
    /// Plaintext of uploaded chunks kept for their appends, in bytes (see
    /// [`RECENT_BYTES`]); what is not kept is read from its pack, or back at finish.
    pub recent_bytes: usize,
    /// A tree backup: the client sends the catalog; no tar is looked for.
    pub tree: bool,
    /// Uploaded chunk ids held in memory before they go to a sorted run on disk.
    pub uploaded_in_memory: usize,
    /// Known chunk ids held in memory; a larger known set is kept on disk.
    pub known_in_memory: usize,
}

impl Default for AssemblyOptions {
    fn default() -> AssemblyOptions {
        AssemblyOptions {
            digests: DigestRequest::default(),
            detect_tar: true,
            recent_bytes: RECENT_BYTES,
            tree: false,
            uploaded_in_memory: IN_MEMORY,
            known_in_memory: KNOWN_IN_MEMORY,
        }
    }
}

/// Plaintext of chunks uploaded in the session, kept for their appends so that a
/// stream's new chunks need not be read back (the least recently used go first): a few
/// batches' worth, since a client appends each batch soon after uploading it.
pub const RECENT_BYTES: usize = 64 << 20;

/// What keeping one recent chunk costs besides its bytes, at worst: its hash-table slot
/// (73 bytes; an LRU's churn leaves tombstones, so the table may hold up to 4.6 slots per
/// live entry before it rehashes in place), its node share in the use order (about
/// 60 bytes), and the plaintext's allocation and shared-buffer header (about 60 bytes).
/// Counted against [`RECENT_BYTES`], so that tiny chunks (64 bytes in `bench scale`)
/// cannot make the maps hold millions of entries, each costing several times its bytes:
/// counted at 192 bytes, a session of 3 million such chunks grew these maps to 114 MB.
const RECENT_ENTRY_COST: usize = 512;

/// Recent chunks kept at most, whatever their size: half of what a hash table of 2^17
/// slots holds (7/8 of them). An LRU's removals leave tombstones, and the table rehashes
/// in place rather than doubling only while it is at most half full: one entry more
/// would double it to 19 MB of slots. Still three and a half of the largest upload
/// batches ([`crate::service::sessions`] takes 16,384 chunks), since a client appends
/// each batch soon after uploading it.
const RECENT_ENTRIES: usize = (1 << 17) / 8 * 7 / 2;

/// Plaintext read at once to observe appended chunks in order: 32 MiB.
const OBSERVE_WINDOW: usize = 32 << 20;

#[derive(Default)]
struct RecentPlaintexts {
    limit: usize,
    by_id: HashMap<ChunkId, (Bytes, u64)>,
    by_use: BTreeMap<u64, ChunkId>,
    clock: u64,
    /// The kept chunks' bytes plus [`RECENT_ENTRY_COST`] for each.
    bytes: usize,
}

impl RecentPlaintexts {
    fn insert(&mut self, id: ChunkId, plaintext: Bytes) {
        let cost = plaintext.len() + RECENT_ENTRY_COST;
        if cost > self.limit || self.by_id.contains_key(&id) {
            return;
        }
        while self.bytes + cost > self.limit || self.by_id.len() >= RECENT_ENTRIES {
            let Some((_, oldest)) = self.by_use.pop_first() else {
                break;
            };
            if let Some((evicted, _)) = self.by_id.remove(&oldest) {
                self.bytes -= evicted.len() + RECENT_ENTRY_COST;
            }
        }
        self.clock += 1;
        self.bytes += cost;
        self.by_use.insert(self.clock, id);
        self.by_id.insert(id, (plaintext, self.clock));
    }

    fn get(&mut self, id: &ChunkId) -> Option<Bytes> {
        let (plaintext, used) = self.by_id.get_mut(id)?;
        self.by_use.remove(used);
        self.clock += 1;
        *used = self.clock;
        self.by_use.insert(self.clock, *id);
        Some(plaintext.clone())
    }
}

/// Where an assembly stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AssemblyProgress {
    /// Bytes and chunks appended to the stream so far.
    pub size: u64,
    pub chunks: u64,
    /// Distinct chunks uploaded in this session, and their plaintext bytes.
    pub uploaded_chunks: u64,
    pub uploaded_bytes: u64,
    /// A tree's catalog entries received so far (`None` for a stream).
    pub catalog_entries: Option<u64>,
}

/// What a client says of the stream it sent, checked at finish.
#[derive(Debug, Clone, Default)]
pub struct StreamClaim {
    pub size: u64,
    /// The whole stream's BLAKE3 (hex).
    pub blake3: Option<String>,
    /// The BLAKE3 (hex) of every appended entry, in order, as the append bodies encode
    /// them (`chunk_batch::encode_entry`).
    pub entries_blake3: Option<String>,
}

/// A backup being assembled; cheap to clone (one shared state).
#[derive(Clone)]
pub struct Assembly {
    inner: Arc<RepoInner>,
    series: String,
    /// The known set, sorted and distinct (lengths not recorded); never changes after
    /// opening.
    known: Arc<KnownIds>,
    state: Arc<Mutex<State>>,
}

struct State {
    /// `None` once finished, abandoned or failed beyond repair.
    session: Option<Session>,
    source: String,
    created_at: String,
    /// Chunks uploaded in this session and their plaintext lengths.
    uploaded: SpilledLengths,
    uploaded_bytes: u64,
    list: ContentListBuilder,
    recent: RecentPlaintexts,
    /// Sees the stream in order as it is appended; `observed` bytes of it so far.
    observer: StreamObserver,
    observed: u64,
    /// Set once a chunk could not be had in order: the rest is read back at finish.
    deferred: bool,
    /// The newest backup's stream while the appends repeat it: nothing is observed
    /// until they depart from it (`repeat`).
    repeat: Option<Repeat>,
    /// Hashes the entries as appended, for [`StreamClaim::entries_blake3`].
    entries_hasher: blake3::Hasher,
    /// A tree's catalog as received; `None` for a stream.
    catalog: Option<TreeCatalogCheck>,
}

impl Drop for State {
    fn drop(&mut self) {
        // Dropping a session waits for its packer; never block a runtime worker for it
        // without telling the runtime.
        if let Some(session) = self.session.take() {
            match Handle::try_current().map(|h| h.runtime_flavor()) {
                Ok(tokio::runtime::RuntimeFlavor::MultiThread) => {
                    tokio::task::block_in_place(move || drop(session))
                }
                _ => drop(session),
            }
        }
    }
}

fn gone() -> RepoError {
    RepoError::Conflict("the session has already finished or failed; open a new one".into())
}

impl Repository {
    /// What a client needs to chunk a stream for this repository.
    pub fn writer_params(&self) -> WriterParams {
        WriterParams {
            chunker: self.inner.config.chunker,
            chunk_id_key: self.inner.keys.chunk_id_key,
            compression_level: self.inner.config.compression_level,
        }
    }

    /// Opens an assembly of a stream backup named `source` in `series`, with the chunks
    /// of the series' newest backup as its known set.
    pub async fn open_assembly(
        &self,
        series: &str,
        source: &str,
        options: AssemblyOptions,
    ) -> Result<Assembly, RepoError> {
        validate_series(series)?;
        let spool_dir = self.inner.state_dir.join("tmp");
        let newest = self.newest_backup(series)?.map(|entry| entry.manifest);
        let inner = self.inner.clone();
        let handle = Handle::current();
        let series_name = series.to_string();
        let source = source.to_string();
        // Off the async workers: the previous backup's leaves are decoded and their ids
        // sorted through runs on disk, which may write tens of MiB at a time.
        tokio::task::spawn_blocking(move || {
            let mut gathered = IdSorter::new(spool_dir.clone(), RUN_IDS);
            for leaf in newest.iter().flat_map(|previous| &previous.content.leaves) {
                for entry in load_leaf(&inner, &handle, leaf.id)? {
                    gathered
                        .push(entry.id)
                        .map_err(|e| RepoError::io(&spool_dir, e))?;
                }
            }
            let observes_tar = options.detect_tar && !options.tree;
            let repeat = newest
                .as_ref()
                .and_then(|previous| Repeat::new(previous, options.digests, observes_tar));
            // The previous leaves are read as the stream repeats them, and a whole repeat
            // takes the previous catalog's leaves and chunks: all kept from gc for the
            // session's life, as the known set is. One the index lost, or a catalog leaf
            // that cannot be read, ends the repeat, not the session.
            let repeat = repeat.and_then(|repeat| {
                let mut kept: Vec<ChunkId> = repeat.leaves().collect();
                for leaf in repeat.catalog_leaves() {
                    kept.push(leaf);
                    match load_leaf(&inner, &handle, leaf) {
                        Ok(entries) => kept.extend(entries.iter().map(|e| e.id)),
                        Err(error) => {
                            tracing::warn!(%error, "not following the previous stream: its catalog cannot be read");
                            return None;
                        }
                    }
                }
                Some((repeat, kept))
            });
            let mut session = Session::new(inner.clone(), handle, Arc::new(Progress::new()));
            let known = KnownIdsBuilder::new(spool_dir.clone(), options.known_in_memory);
            let known = referenced_known_set(&mut session, gathered, known)
                .map_err(|e| e.at(&spool_dir))?;
            let repeat = match repeat {
                Some((repeat, kept)) => {
                    let presence = session.reference(&kept)?;
                    let all_kept = presence.iter().all(|p| !matches!(p, Presence::Absent));
                    all_kept.then_some(repeat)
                }
                None => None,
            };
            Ok(Assembly {
                inner,
                series: series_name,
                known: Arc::new(known),
                state: Arc::new(Mutex::new(State {
                    session: Some(session),
                    source,
                    created_at: now_rfc3339(),
                    uploaded: SpilledLengths::new(spool_dir.clone(), options.uploaded_in_memory),
                    uploaded_bytes: 0,
                    list: ContentListBuilder::default(),
                    recent: RecentPlaintexts {
                        limit: options.recent_bytes,
                        ..RecentPlaintexts::default()
                    },
                    observer: StreamObserver::new(options.digests, observes_tar, spool_dir.clone()),
                    observed: 0,
                    repeat,
                    deferred: false,
                    entries_hasher: blake3::Hasher::new(),
                    catalog: options.tree.then(|| TreeCatalogCheck::new(spool_dir)),
                })),
            })
        })
        .await
        .map_err(|e| RepoError::Internal(format!("opening an assembly failed: {e}")))?
    }
}

impl Assembly {
    pub fn series(&self) -> &str {
        &self.series
    }

    /// How many chunk ids the known set holds.
    pub fn known_len(&self) -> u64 {
        self.known.len()
    }

    /// The known set (chunk ids the client may append without uploading, ascending)
    /// from position `start`, at most `limit` ids; read from disk off the async workers.
    pub async fn known_page(&self, start: u64, limit: usize) -> Result<Vec<ChunkId>, RepoError> {
        self.blocking(move |this| {
            this.known
                .page(start, limit)
                .map_err(|e| RepoError::io(this.spool_dir(), e))
        })
        .await
    }

    fn spool_dir(&self) -> PathBuf {
        self.inner.state_dir.join("tmp")
    }

    pub fn progress(&self) -> AssemblyProgress {
        let state = self.lock();
        AssemblyProgress {
            size: state.list.content.size,
            chunks: state.list.content.chunks,
            uploaded_chunks: state.uploaded.len(),
            uploaded_bytes: state.uploaded_bytes,
            catalog_entries: state.catalog.as_ref().map(|c| c.entries()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Assembly) -> Result<T, RepoError> + Send + 'static,
    ) -> Result<T, RepoError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || work(&this))
            .await
            .map_err(|e| RepoError::Internal(format!("a session task failed: {e}")))?
    }

    /// Checks every chunk of a batch against its id, then stores those not stored yet.
    /// Nothing of a batch is stored when one chunk fails its check.
    pub async fn upload(&self, chunks: Vec<UploadedChunk>) -> Result<AssemblyProgress, RepoError> {
        self.blocking(move |this| this.upload_blocking(chunks))
            .await
    }

    fn upload_blocking(&self, chunks: Vec<UploadedChunk>) -> Result<AssemblyProgress, RepoError> {
        let keys = &self.inner.keys;
        let plaintexts = chunks
            .par_iter()
            .enumerate()
            .map(|(record, chunk)| verify_chunk(keys, record, chunk))
            .collect::<Result<Vec<Bytes>, RepoError>>()?;
        let mut state = self.lock();
        let State {
            session,
            uploaded,
            uploaded_bytes,
            recent,
            ..
        } = &mut *state;
        let session = session.as_mut().ok_or_else(gone)?;
        let mut ids = Vec::with_capacity(chunks.len());
        let mut blobs = Vec::with_capacity(chunks.len());
        for (chunk, plaintext) in chunks.into_iter().zip(plaintexts) {
            // Already uploaded, in an earlier batch or earlier in this one.
            let new = uploaded
                .insert(chunk.id, chunk.raw_len)
                .map_err(|e| RepoError::io(self.spool_dir(), e))?;
            if !new {
                continue;
            }
            recent.insert(chunk.id, plaintext);
            *uploaded_bytes += u64::from(chunk.raw_len);
            ids.push(chunk.id);
            blobs.push(match chunk.encoding {
                ChunkEncoding::Raw => BlobBytes::Plain(chunk.payload),
                ChunkEncoding::Zstd => BlobBytes::Compressed {
                    payload: chunk.payload,
                    raw_len: chunk.raw_len,
                },
            });
        }
        if let Err(error) = session.store_blobs(&ids, blobs, BlobKind::Data) {
            // What this batch was to store may be lost: the session cannot go on.
            state.session = None;
            return Err(error);
        }
        drop(state);
        Ok(self.progress())
    }

    /// Appends entries to the stream at byte offset `at`, which must be its current size
    /// (a client resuming after a lost answer asks for the size and goes on from there).
    pub async fn append(
        &self,
        at: u64,
        entries: Vec<ContentEntry>,
    ) -> Result<AssemblyProgress, RepoError> {
        self.blocking(move |this| this.append_blocking(at, entries))
            .await
    }

    fn append_blocking(
        &self,
        at: u64,
        entries: Vec<ContentEntry>,
    ) -> Result<AssemblyProgress, RepoError> {
        let mut state = self.lock();
        let size = state.list.content.size;
        if at != size {
            return Err(RepoError::Conflict(format!(
                "the stream holds {size} bytes; an append at {at} does not continue it"
            )));
        }
        let spool_failed = |e| RepoError::io(self.spool_dir(), e);
        for entry in &entries {
            let uploaded = state.uploaded.get(&entry.id).map_err(spool_failed)?;
            if uploaded.is_none() && !self.known.contains(&entry.id).map_err(spool_failed)? {
                return Err(RepoError::InvalidInput(format!(
                    "chunk {} was neither uploaded in this session nor is it in the newest \
                     backup of series {}: upload it first",
                    entry.id, self.series
                )));
            }
            if uploaded.is_some_and(|len| len != entry.len) {
                return Err(wrong_length(entry, uploaded.unwrap_or_default()));
            }
        }
        let ids: Vec<ChunkId> = entries.iter().map(|e| e.id).collect();
        let session = state.session.as_mut().ok_or_else(gone)?;
        let presence = session.reference(&ids)?;
        for (entry, presence) in entries.iter().zip(&presence) {
            match presence {
                Presence::Indexed(location) if location.raw_len != entry.len => {
                    return Err(wrong_length(entry, location.raw_len));
                }
                Presence::Absent => {
                    return Err(RepoError::ChunkMissing {
                        chunk: entry.id,
                        backup: None,
                    })
                }
                _ => {}
            }
        }
        let mut encoded = Vec::with_capacity(entries.len() * ENTRY_LEN);
        for entry in &entries {
            encode_entry(&mut encoded, entry);
        }
        state.entries_hasher.update(&encoded);
        let State { session, list, .. } = &mut *state;
        let session = session.as_mut().ok_or_else(gone)?;
        for entry in &entries {
            if let Some(leaf) = list.push(*entry) {
                if let Err(error) = session.store_leaf(leaf, list) {
                    state.session = None;
                    return Err(error);
                }
            }
        }
        if let Err(error) = self.observe_appended(&mut state, &entries, &presence) {
            state.session = None;
            return Err(error);
        }
        drop(state);
        Ok(self.progress())
    }

    /// Observes a batch just appended, unless it repeats the previous backup's stream.
    fn observe_appended(
        &self,
        state: &mut State,
        entries: &[ContentEntry],
        presence: &[Presence],
    ) -> Result<(), RepoError> {
        if let Some(repeat) = state.repeat.as_mut() {
            let handle = Handle::current();
            if repeat.follow(entries, |leaf| load_leaf(&self.inner, &handle, leaf))? {
                return Ok(());
            }
            self.observe_repeated(state)?;
        }
        if state.deferred {
            return Ok(());
        }
        self.observe_in_order(state, entries, presence)
    }

    /// Ends following the previous stream: the bytes repeated of it are observed from
    /// that backup's own content, which is stored and kept for the session.
    fn observe_repeated(&self, state: &mut State) -> Result<(), RepoError> {
        let Some(repeat) = state.repeat.take() else {
            return Ok(());
        };
        let range = state.observed..repeat.repeated();
        observe_stored(&self.inner, &mut state.observer, repeat.content(), range)?;
        state.observed = repeat.repeated();
        Ok(())
    }

    /// Hands the plaintext of appended entries to the observer in order: recent uploads
    /// from memory, stored chunks read from their packs (in parallel). At the first chunk
    /// that is neither, observing stops and finish reads the rest back.
    fn observe_in_order(
        &self,
        state: &mut State,
        entries: &[ContentEntry],
        presence: &[Presence],
    ) -> Result<(), RepoError> {
        enum Source {
            Memory(Bytes),
            Pack(crate::index::ChunkLocation),
        }
        let mut sources = Vec::with_capacity(entries.len());
        for (entry, presence) in entries.iter().zip(presence) {
            let source = match (state.recent.get(&entry.id), presence) {
                (Some(plaintext), _) => Source::Memory(plaintext),
                (None, Presence::Indexed(location)) => Source::Pack(*location),
                (None, _) => {
                    state.deferred = true;
                    break;
                }
            };
            sources.push((entry.id, source));
        }
        let handle = Handle::current();
        let inner = &self.inner;
        // A window of chunks at a time, so that memory stays bounded whatever the batch
        // (a tree's batch may name tens of thousands of small stored chunks).
        let mut sources = sources.into_iter().peekable();
        while sources.peek().is_some() {
            let mut window = Vec::new();
            let mut window_bytes = 0usize;
            while let Some((id, source)) = sources.next_if(|_| window_bytes < OBSERVE_WINDOW) {
                window_bytes += match &source {
                    Source::Memory(plaintext) => plaintext.len(),
                    Source::Pack(location) => location.raw_len as usize,
                };
                window.push((id, source));
            }
            // Stored chunks are read together, neighbours in a pack with one request.
            let mut plaintexts = Vec::with_capacity(window.len());
            let mut stored = Vec::new();
            for (position, (id, source)) in window.into_iter().enumerate() {
                match source {
                    Source::Memory(plaintext) => plaintexts.push(plaintext),
                    Source::Pack(location) => {
                        plaintexts.push(Bytes::new());
                        stored.push((position, (id, location)));
                    }
                }
            }
            let (positions, wanted): (Vec<usize>, Vec<_>) = stored.into_iter().unzip();
            let fetched = handle.block_on(fetch_chunks(inner.clone(), wanted))?;
            for (position, plaintext) in positions.into_iter().zip(fetched) {
                plaintexts[position] = plaintext;
            }
            for plaintext in plaintexts {
                state.observer.observe(&plaintext);
                state.observed += plaintext.len() as u64;
            }
        }
        Ok(())
    }

    /// Receives a batch of a tree's catalog, continuing it at entry `at`.
    pub async fn receive_catalog(
        &self,
        at: u64,
        body: Bytes,
    ) -> Result<AssemblyProgress, RepoError> {
        self.blocking(move |this| {
            let mut state = this.lock();
            state
                .catalog
                .as_mut()
                .ok_or_else(|| {
                    RepoError::InvalidInput(
                        "this session backs up a stream: only a tree session takes a catalog"
                            .into(),
                    )
                })?
                .receive(at, &body)?;
            drop(state);
            Ok(this.progress())
        })
        .await
    }

    /// Ends the stream: checks the client's claim against the stream read back from
    /// what was stored, then commits the backup. The session is over afterwards,
    /// whatever the outcome.
    pub async fn finish(&self, claim: StreamClaim) -> Result<BackupManifest, RepoError> {
        self.blocking(move |this| this.finish_blocking(claim)).await
    }

    fn finish_blocking(&self, claim: StreamClaim) -> Result<BackupManifest, RepoError> {
        let size = claim.size;
        let mut state = self.lock();
        if claim.blake3.is_none() && (state.catalog.is_none() || claim.entries_blake3.is_none()) {
            return Err(RepoError::InvalidInput(
                "finish needs the stream's blake3 (a tree session may send entries_blake3 \
                 instead)"
                    .into(),
            ));
        }
        let mut session = state.session.take().ok_or_else(gone)?;
        let have = state.list.content.size;
        if have != size {
            return Err(RepoError::InvalidInput(format!(
                "the client sent {size} bytes but {have} were appended; nothing was committed"
            )));
        }
        if let Some(claimed) = &claim.entries_blake3 {
            let appended = state.entries_hasher.finalize().to_hex();
            if !appended.as_str().eq_ignore_ascii_case(claimed) {
                return Err(RepoError::InvalidInput(format!(
                    "the appended entries have BLAKE3 {appended}, the client sent {claimed}: \
                     nothing was committed"
                )));
            }
        }
        let tree_catalog = state.catalog.take().map(|c| c.finish(size)).transpose()?;
        if let Some(leaf) = state.list.take_open_leaf() {
            session.store_leaf(leaf, &mut state.list)?;
        }
        session.settle()?;
        let content = state.list.content.clone();
        // A stream that repeats the previous one whole has its digests (and its tar
        // catalog); any other is observed to its end, what the observer has not seen yet
        // read back from what was stored.
        let inherited = state.repeat.as_ref().and_then(Repeat::inherited_if_whole);
        if inherited.is_none() {
            self.observe_repeated(&mut state)?;
            let from = state.observed;
            observe_stored(&self.inner, &mut state.observer, &content, from..size)?;
        }
        let observer = std::mem::replace(&mut state.observer, StreamObserver::none());
        let (observed, tar) = observer.finish();
        let (digests, inherited_tar) = match inherited {
            Some(Inherited { digests, tar }) => (digests, tar),
            None => (observed, None),
        };
        let assembled = digests.blake3.clone().unwrap_or_default();
        if let Some(blake3) = &claim.blake3 {
            if !assembled.eq_ignore_ascii_case(blake3) {
                return Err(RepoError::InvalidInput(format!(
                    "the stream assembled from the appended chunks has BLAKE3 {assembled}, \
                     the client sent {blake3}: nothing was committed"
                )));
            }
        }
        if tar.is_some() || tree_catalog.is_some() {
            session.restart_packer();
        }
        let (catalog, tar_encoding, kind) = match tree_catalog {
            Some(catalog) => (
                Some(session.store_catalog(catalog)?),
                None,
                BackupKind::Tree,
            ),
            None => {
                let (catalog, encoding) = match inherited_tar {
                    Some((catalog, encoding)) => (Some(catalog), Some(encoding)),
                    None => session.store_tar_catalog(tar)?,
                };
                (catalog, encoding, BackupKind::Stream)
            }
        };
        let draft = ManifestDraft {
            series: self.series.clone(),
            kind,
            created_at: state.created_at.clone(),
            source: state.source.clone(),
            digests,
            content,
            catalog,
            tar: tar_encoding,
        };
        session.commit(draft)
    }

    /// Ends the session without a backup; what it stored is left to gc.
    pub async fn abandon(&self) {
        let this = self.clone();
        let _ = tokio::task::spawn_blocking(move || drop(this.lock().session.take())).await;
    }
}

/// Reads and decodes one content-list leaf.
fn load_leaf(
    inner: &Arc<RepoInner>,
    handle: &Handle,
    leaf: ChunkId,
) -> Result<Vec<ContentEntry>, RepoError> {
    let location = inner.locate(leaf)?;
    let payload = handle.block_on(inner.load_blob(leaf, location))?;
    decode_leaf(&payload).map_err(|e| RepoError::CorruptChunk {
        chunk: leaf,
        pack: location.pack,
        reason: e.to_string(),
    })
}

/// Hands `range` of a stored stream to `observer`, read back with read-ahead.
fn observe_stored(
    inner: &Arc<RepoInner>,
    observer: &mut StreamObserver,
    content: &ContentRef,
    range: std::ops::Range<u64>,
) -> Result<(), RepoError> {
    if range.is_empty() {
        return Ok(());
    }
    Handle::current().block_on(async {
        let read_ahead = data_read_ahead(inner);
        let mut stream = read_content(inner.clone(), content, range, read_ahead);
        while let Some(piece) = stream.next().await {
            observer.observe(&piece?);
        }
        Ok(())
    })
}

fn wrong_length(entry: &ContentEntry, actual: u32) -> RepoError {
    RepoError::InvalidInput(format!(
        "chunk {} is {actual} bytes long, not {} as appended",
        entry.id, entry.len
    ))
}

/// Checks that an uploaded chunk's bytes hash to its id.
fn verify_chunk(
    keys: &crate::pipeline::keys::Keys,
    record: usize,
    chunk: &UploadedChunk,
) -> Result<Bytes, RepoError> {
    let refused = |reason: String| {
        RepoError::InvalidInput(format!(
            "chunk record {record} ({}): {reason}; nothing of this batch was stored",
            chunk.id
        ))
    };
    let plaintext = match chunk.encoding {
        ChunkEncoding::Raw => chunk.payload.clone(),
        ChunkEncoding::Zstd => seal::decompress_exact(&chunk.payload, chunk.raw_len as usize)
            .map_err(|e| refused(e.to_string()))?
            .into(),
    };
    let id = keys.chunk_id(&plaintext);
    if id == chunk.id {
        Ok(plaintext)
    } else {
        Err(refused(format!("its bytes are chunk {id}")))
    }
}

/// Chunk ids referenced by a session at once.
const REFERENCE_BATCH: usize = 1 << 16;

/// The known set, sorted and distinct, each id referenced by `session` before it is
/// kept, so gc keeps them from here on. Those the index has lost are left out: the
/// client uploads them again.
fn referenced_known_set(
    session: &mut Session,
    gathered: IdSorter,
    mut known: KnownIdsBuilder,
) -> Result<KnownIds, SpoolOr> {
    let mut ids = gathered.finish();
    let mut batch: Vec<ChunkId> = Vec::with_capacity(REFERENCE_BATCH);
    loop {
        batch.clear();
        while batch.len() < REFERENCE_BATCH {
            match ids.next_id()? {
                Some(id) => batch.push(id),
                None => break,
            }
        }
        if batch.is_empty() {
            return Ok(known.finish()?);
        }
        let presence = session.reference(&batch).map_err(SpoolOr::Repo)?;
        for (id, presence) in batch.iter().zip(presence) {
            if !matches!(presence, Presence::Absent) {
                known.push(*id)?;
            }
        }
    }
}

/// A failure of the spool files, or of the repository.
enum SpoolOr {
    Spool(std::io::Error),
    Repo(RepoError),
}

impl From<std::io::Error> for SpoolOr {
    fn from(error: std::io::Error) -> SpoolOr {
        SpoolOr::Spool(error)
    }
}

impl SpoolOr {
    fn at(self, spool_dir: &std::path::Path) -> RepoError {
        match self {
            SpoolOr::Spool(error) => RepoError::io(spool_dir, error),
            SpoolOr::Repo(error) => error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_plaintexts_count_each_entrys_cost_not_only_its_bytes() {
        let mut recent = RecentPlaintexts {
            limit: 100 * (64 + RECENT_ENTRY_COST),
            ..RecentPlaintexts::default()
        };
        for n in 0..1000u32 {
            let mut id = [0u8; 32];
            id[..4].copy_from_slice(&n.to_le_bytes());
            recent.insert(ChunkId(id), Bytes::from(vec![0u8; 64]));
        }
        assert_eq!(
            recent.by_id.len(),
            100,
            "64-byte chunks cost 576 bytes each"
        );
        assert_eq!(recent.by_use.len(), 100);
        assert_eq!(recent.bytes, recent.limit);
        let mut newest = [0u8; 32];
        newest[..4].copy_from_slice(&999u32.to_le_bytes());
        assert!(recent.get(&ChunkId(newest)).is_some(), "the newest is kept");
        assert!(
            recent.get(&ChunkId([0; 32])).is_none(),
            "the oldest went first"
        );
    }

    #[test]
    fn recent_plaintexts_keep_a_bounded_count_of_entries_and_their_table_stays_small() {
        let mut recent = RecentPlaintexts {
            limit: usize::MAX,
            ..RecentPlaintexts::default()
        };
        for n in 0..(3 * RECENT_ENTRIES) as u32 {
            let mut id = [0u8; 32];
            id[..4].copy_from_slice(&n.to_le_bytes());
            recent.insert(ChunkId(id), Bytes::from_static(b"tiny"));
        }
        assert_eq!(recent.by_id.len(), RECENT_ENTRIES);
        assert_eq!(recent.by_use.len(), RECENT_ENTRIES);
        assert!(
            recent.by_id.capacity() < 1 << 17,
            "the churn doubled the table: it holds {} entries",
            recent.by_id.capacity()
        );
    }
}
