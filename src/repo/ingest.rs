//! Ingest: turns a stream (or a directory tree, see `tree`) into a committed backup.
//!
//! One ingest runs four stages joined by bounded channels, so memory does not depend on
//! the size of the input and every stage overlaps the others:
//!
//! 1. the reader thread fills segments of [`segment_size`] bytes from the source and cuts
//!    them into chunks with FastCDC, carrying an unfinished chunk into the next segment;
//! 2. the observer thread computes the stream's digests (`digest`) and, when asked,
//!    recognises a tar archive and spools its catalog;
//! 3. the calling thread hashes each segment's chunks on the rayon pool, decides which are
//!    new (index, then the in-flight registry), and hands the new ones to a sealing task
//!    on the rayon pool (compress and encrypt); it also builds the content list. It goes
//!    on with the next segment while a segment seals, so the pool always holds the next
//!    segment's work when the last, largest chunks of one are still compressing;
//! 4. the packer thread streams sealed blobs into packs (`pack_writer`).
//!
//! After the last pack is durable and indexed, and every chunk shared with a concurrent
//! ingest is durable too, the manifest is written to the backend, then the backup record
//! is committed to the index: nothing is visible before everything it references is.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use bytes::Bytes;
use rayon::prelude::*;
use tokio::runtime::Handle;

use super::digest::{DigestRequest, StreamDigests, StreamHasher};
use super::inflight::{Registration, Ticket, TicketState};
use super::pack_writer::{PackTotals, PackWriter, SealedBlob};
use super::progress::Progress;
use super::referencing::{locate, Located};
use super::segment_buffers::SegmentBuffers;
use super::spool::{CatalogSpool, SpooledCatalog};
use super::{manifest_key, RepoError, RepoInner, Repository};
use crate::format::blob::Domain;
use crate::format::catalog::CatalogEntry;
use crate::format::config::ChunkerParams;
use crate::format::content::{encode_leaf, is_leaf_boundary, ContentEntry, ContentRef, LeafRef};
use crate::format::manifest::{
    BackupKind, BackupManifest, CatalogIndexRef, CatalogRef, TarEncoding, MANIFEST_FORMAT,
    MANIFEST_VERSION,
};
use crate::format::pack::BlobKind;
use crate::format::tar::TarCatalogParser;
use crate::id::{BackupId, ChunkId};
use crate::pipeline::chunker::cut_points;
use crate::pipeline::seal;

/// Segments waiting between the reader and the hashing stage.
const SEGMENT_QUEUE: usize = 1;
/// Sealed batches waiting for the packer.
const PACKER_QUEUE: usize = 1;
/// Sealing tasks left running while the next segment is hashed and handed over: one,
/// so two segments seal at once at most (one segment's tail overlaps the next one's
/// start) and memory stays bounded.
const SEALING_BEHIND: usize = 1;
/// Dependencies tracked before durable ones are pruned.
const MAX_TRACKED_DEPENDENCIES: usize = 4096;

/// What to record about a backup besides its bytes.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    pub series: String,
    /// Name of the source: a file name, a directory name, or "-" for stdin.
    pub source: String,
    /// Recognise a tar (plain or gzip) stream and record its entries as the catalog.
    pub detect_tar: bool,
    /// Digests to record besides BLAKE3.
    pub digests: DigestRequest,
}

impl IngestOptions {
    pub fn new(series: impl Into<String>, source: impl Into<String>) -> IngestOptions {
        IngestOptions {
            series: series.into(),
            source: source.into(),
            detect_tar: true,
            digests: DigestRequest::default(),
        }
    }

    /// Also records the stream's SHA-256.
    pub fn with_sha256(mut self, sha256: bool) -> IngestOptions {
        self.digests.sha256 = sha256;
        self
    }
}

/// Longest accepted series name.
pub const MAX_SERIES_LEN: usize = 128;

/// Checks a series name: 1 to 128 characters, letters, digits, `-`, `_`, `.`.
pub fn validate_series(series: &str) -> Result<(), RepoError> {
    let ok = !series.is_empty()
        && series.len() <= MAX_SERIES_LEN
        && series
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(RepoError::InvalidInput(format!(
            "series name {:?} must be 1 to {MAX_SERIES_LEN} letters, digits, '-', '_' or '.'",
            series.chars().take(MAX_SERIES_LEN + 1).collect::<String>()
        )))
    }
}

/// Bytes read from the source per segment: more than the largest chunk, so every segment
/// but the last yields at least one final chunk (a cut comes at `max_size` at the latest
/// and something follows it), and not much more, since a few segments are alive at once.
pub fn segment_size(params: &ChunkerParams) -> usize {
    (params.max_size as usize + (4 << 20)).max(8 << 20)
}

impl Repository {
    /// Stores one stream (a file, stdin, a request body) as a backup.
    pub async fn backup_stream(
        &self,
        source: Box<dyn Read + Send>,
        options: IngestOptions,
        progress: Arc<Progress>,
    ) -> Result<BackupManifest, RepoError> {
        validate_series(&options.series)?;
        let inner = self.inner.clone();
        let handle = Handle::current();
        tokio::task::spawn_blocking(move || {
            let mut source = source;
            ingest_stream_backup(inner, handle, &mut source, options, progress)
        })
        .await
        .map_err(|e| RepoError::Internal(format!("ingest task failed: {e}")))?
    }
}

fn ingest_stream_backup(
    inner: Arc<RepoInner>,
    handle: Handle,
    source: &mut (dyn Read + Send),
    options: IngestOptions,
    progress: Arc<Progress>,
) -> Result<BackupManifest, RepoError> {
    let created_at = now_rfc3339();
    let mut session = Session::new(inner.clone(), handle, progress);
    let observer = StreamObserver::new(
        options.digests,
        options.detect_tar,
        inner.state_dir.join("tmp"),
    );
    let (content, observer) = session.ingest(source, observer)?;
    let (digests, tar) = observer.finish();
    let (catalog, tar_encoding) = session.store_tar_catalog(tar)?;
    let draft = ManifestDraft {
        series: options.series,
        kind: BackupKind::Stream,
        created_at,
        source: options.source,
        digests,
        content,
        catalog,
        tar: tar_encoding,
    };
    session.commit(draft)
}

/// Everything a manifest needs besides the session's counters.
pub(crate) struct ManifestDraft {
    pub series: String,
    pub kind: BackupKind,
    pub created_at: String,
    pub source: String,
    pub digests: StreamDigests,
    pub content: ContentRef,
    pub catalog: Option<CatalogRef>,
    pub tar: Option<TarEncoding>,
}

pub(crate) fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// Sees every byte of a stream once, in order, on its own thread.
pub(crate) struct StreamObserver {
    hasher: Option<StreamHasher>,
    tar: Option<TarObserver>,
}

struct TarObserver {
    parser: TarCatalogParser,
    catalog: CatalogSpool,
    spool_failed: bool,
}

impl TarObserver {
    fn sink<'a>(
        catalog: &'a mut CatalogSpool,
        failed: &'a mut bool,
    ) -> impl FnMut(CatalogEntry) + 'a {
        move |entry: CatalogEntry| {
            *failed |= catalog.write(&entry).is_err();
        }
    }
}

impl StreamObserver {
    pub(crate) fn new(
        digests: DigestRequest,
        detect_tar: bool,
        spool_dir: std::path::PathBuf,
    ) -> StreamObserver {
        StreamObserver {
            hasher: Some(StreamHasher::new(digests)),
            tar: detect_tar.then(|| TarObserver {
                parser: TarCatalogParser::new(),
                catalog: CatalogSpool::new(spool_dir),
                spool_failed: false,
            }),
        }
    }

    /// An observer that computes nothing (catalog streams need no digest).
    pub(crate) fn none() -> StreamObserver {
        StreamObserver {
            hasher: None,
            tar: None,
        }
    }

    /// An observer computing only the digests.
    pub(crate) fn digests_only(digests: DigestRequest) -> StreamObserver {
        StreamObserver {
            hasher: Some(StreamHasher::new(digests)),
            tar: None,
        }
    }

    pub(crate) fn observe(&mut self, data: &[u8]) {
        if let Some(hasher) = self.hasher.as_mut() {
            hasher.update(data);
        }
        if let Some(tar) = self.tar.as_mut() {
            let TarObserver {
                parser,
                catalog,
                spool_failed,
            } = tar;
            parser.feed(data, &mut TarObserver::sink(catalog, spool_failed));
        }
    }

    /// The stream's digests, and its catalog when it was a complete tar archive.
    pub(crate) fn finish(self) -> (StreamDigests, Option<(TarEncoding, SpooledCatalog)>) {
        let digests = self.hasher.map(StreamHasher::finish).unwrap_or_default();
        let tar = self.tar.and_then(|tar| {
            let TarObserver {
                parser,
                mut catalog,
                mut spool_failed,
            } = tar;
            let summary = parser
                .finish(&mut TarObserver::sink(&mut catalog, &mut spool_failed))
                .ok()?;
            let encoding = if summary.compressed {
                TarEncoding::Gzip
            } else {
                TarEncoding::Plain
            };
            (!spool_failed && catalog.entries() > 0).then(|| (encoding, catalog.finish()))
        });
        (digests, tar)
    }
}

/// Where a referenced chunk is, as `Session::reference` found it.
pub(crate) enum Presence {
    Indexed(crate::index::ChunkLocation),
    InFlight,
    Absent,
}

/// The bytes of a blob to store: its plaintext, sealed (and compressed when that pays)
/// here, or zstd frames a client made of it, already checked to decompress to the
/// plaintext that hashes to the blob's id (`repo::assembly`) and sealed as they are.
pub(crate) enum BlobBytes {
    Plain(Bytes),
    Compressed { payload: Bytes, raw_len: u32 },
}

impl BlobBytes {
    fn raw_len(&self) -> u32 {
        match self {
            BlobBytes::Plain(plaintext) => plaintext.len() as u32,
            BlobBytes::Compressed { raw_len, .. } => *raw_len,
        }
    }

    fn seal(&self, keys: &crate::pipeline::keys::Keys, id: &ChunkId, level: i32) -> Vec<u8> {
        match self {
            BlobBytes::Plain(plaintext) => {
                seal::seal(keys, Domain::Chunk, id.as_bytes(), plaintext, level)
            }
            BlobBytes::Compressed { payload, .. } => seal::seal_payload(
                keys,
                Domain::Chunk,
                id.as_bytes(),
                crate::format::blob::Compression::Zstd,
                payload,
            ),
        }
    }
}

/// One segment of a stream, cut into chunks.
struct Segment {
    data: Bytes,
    cuts: Vec<usize>,
}

/// The state of one backup being written: its packer, its counters, and the chunks it
/// shares with concurrent ingests.
pub(crate) struct Session {
    inner: Arc<RepoInner>,
    handle: Handle,
    progress: Arc<Progress>,
    packer_tx: Option<SyncSender<Vec<SealedBlob>>>,
    packer: Option<JoinHandle<Result<PackTotals, RepoError>>>,
    dependencies: HashMap<ChunkId, Arc<Ticket>>,
    /// Sealing tasks on the pool, oldest first; their batches go to the packer in order.
    sealing: VecDeque<Receiver<Vec<SealedBlob>>>,
    /// This session's number and chunk references, known to garbage collection.
    session_number: u64,
    refs: super::coordinator::SessionRefs,
    committed: bool,
    chunks: u64,
    /// Blobs this session decided to store (no other session or earlier backup holds
    /// them): data chunks of the backup's content, and everything else (content-list
    /// leaves, the catalog's chunks and leaves). Counted when decided, each id once.
    new_content_chunks: u64,
    new_metadata_blobs: u64,
    /// Set once the backup's content is stored: what follows is its catalog.
    storing_catalog: bool,
    stored_bytes: u64,
}

impl Session {
    pub(crate) fn new(inner: Arc<RepoInner>, handle: Handle, progress: Arc<Progress>) -> Session {
        let (packer_tx, packer_rx) = sync_channel::<Vec<SealedBlob>>(PACKER_QUEUE);
        let writer = PackWriter::new(inner.clone(), handle.clone());
        let packer = std::thread::Builder::new()
            .name("stowage-packer".into())
            .spawn(move || run_packer(writer, packer_rx))
            .expect("spawning the packer thread");
        let (session_number, refs) = inner.coordinator.register_session();
        Session {
            inner,
            handle,
            progress,
            packer_tx: Some(packer_tx),
            packer: Some(packer),
            dependencies: HashMap::new(),
            sealing: VecDeque::new(),
            session_number,
            refs,
            committed: false,
            chunks: 0,
            new_content_chunks: 0,
            new_metadata_blobs: 0,
            storing_catalog: false,
            stored_bytes: 0,
        }
    }

    /// Stores the catalog a stream observer found in a tar archive (its spooled lines),
    /// if it found one.
    pub(crate) fn store_tar_catalog(
        &mut self,
        tar: Option<(TarEncoding, SpooledCatalog)>,
    ) -> Result<(Option<CatalogRef>, Option<TarEncoding>), RepoError> {
        let Some((encoding, catalog)) = tar else {
            return Ok((None, None));
        };
        Ok((Some(self.store_catalog(catalog)?), Some(encoding)))
    }

    /// Stores the backup's catalog and its index, after its content: their blobs count as
    /// metadata.
    pub(crate) fn store_catalog(
        &mut self,
        catalog: SpooledCatalog,
    ) -> Result<CatalogRef, RepoError> {
        self.storing_catalog = true;
        let mut text = catalog
            .text
            .into_reader()
            .map_err(|e| RepoError::io("catalog spool", e))?;
        let content = self.ingest(&mut text, StreamObserver::none())?.0;
        let index = match catalog.index {
            Some((marks_text, marks)) => {
                let mut marks_text = std::io::Cursor::new(marks_text);
                let content = self.ingest(&mut marks_text, StreamObserver::none())?.0;
                Some(CatalogIndexRef { marks, content })
            }
            None => None,
        };
        Ok(CatalogRef {
            entries: catalog.entries,
            content,
            index,
        })
    }

    /// Stores one stream, returning its content list and the observer that saw it.
    pub(crate) fn ingest(
        &mut self,
        source: &mut (dyn Read + Send),
        observer: StreamObserver,
    ) -> Result<(ContentRef, StreamObserver), RepoError> {
        let params = self.inner.config.chunker;
        let progress = self.progress.clone();
        std::thread::scope(|scope| {
            let (segment_tx, segment_rx) = sync_channel(SEGMENT_QUEUE);
            let (observe_tx, observe_rx) = sync_channel::<Bytes>(SEGMENT_QUEUE);
            scope.spawn(move || read_segments(source, params, segment_tx, observe_tx, &progress));
            let observer_thread = scope.spawn(move || {
                let mut observer = observer;
                for data in observe_rx {
                    observer.observe(&data);
                }
                observer
            });
            let content = self.consume_segments(segment_rx);
            let observer = observer_thread
                .join()
                .map_err(|_| RepoError::Internal("stream observer panicked".into()))?;
            Ok((content?, observer))
        })
    }

    fn consume_segments(
        &mut self,
        segments: Receiver<io::Result<Segment>>,
    ) -> Result<ContentRef, RepoError> {
        let mut list = ContentListBuilder::default();
        for segment in segments {
            self.progress.check()?;
            let segment = segment.map_err(|e| RepoError::io("backup source", e))?;
            self.store_segment(segment, &mut list)?;
        }
        self.progress.check()?;
        if let Some(entries) = list.take_open_leaf() {
            self.store_leaf(entries, &mut list)?;
        }
        Ok(list.content)
    }

    fn store_segment(
        &mut self,
        segment: Segment,
        list: &mut ContentListBuilder,
    ) -> Result<(), RepoError> {
        let mut start = 0;
        let chunks: Vec<Bytes> = segment
            .cuts
            .iter()
            .map(|&len| {
                start += len;
                segment.data.slice(start - len..start)
            })
            .collect();
        let keys = &self.inner.keys;
        let ids: Vec<ChunkId> = chunks.par_iter().map(|c| keys.chunk_id(c)).collect();
        let chunks = chunks.into_iter().map(BlobBytes::Plain).collect();
        self.store_blobs(&ids, chunks, BlobKind::Data)?;
        for (id, &len) in ids.iter().zip(&segment.cuts) {
            let entry = ContentEntry {
                id: *id,
                len: len as u32,
            };
            if let Some(leaf) = list.push(entry) {
                self.store_leaf(leaf, list)?;
            }
        }
        self.chunks += ids.len() as u64;
        Ok(())
    }

    pub(crate) fn store_leaf(
        &mut self,
        entries: Vec<ContentEntry>,
        list: &mut ContentListBuilder,
    ) -> Result<(), RepoError> {
        let payload = Bytes::from(encode_leaf(&entries));
        let id = self.inner.keys.chunk_id(&payload);
        self.store_blobs(&[id], vec![BlobBytes::Plain(payload)], BlobKind::List)?;
        list.content.leaves.push(LeafRef {
            id,
            size: entries.iter().map(|e| u64::from(e.len)).sum(),
            chunks: entries.len() as u32,
        });
        Ok(())
    }

    /// Decides which of `ids` are new and starts sealing those on the pool (their batch
    /// reaches the packer in order); records the ones another ingest is storing as
    /// dependencies.
    pub(crate) fn store_blobs(
        &mut self,
        ids: &[ChunkId],
        plaintexts: Vec<BlobBytes>,
        kind: BlobKind,
    ) -> Result<(), RepoError> {
        let inner = self.inner.clone();
        let gate = self.gate_references(&inner, ids);
        // Look in the index first, then in the in-flight registry: a chunk committed in
        // between is then at worst stored twice, never missed.
        let indexed = self.inner.index.lookup_chunks(ids)?;
        let mut new = Vec::new();
        for (position, (id, location)) in ids.iter().zip(&indexed).enumerate() {
            if let Some(ticket) = self.inner.inflight.get(id) {
                self.depend_on(*id, ticket);
            } else if location.is_none() {
                match self.inner.inflight.register(*id, self.session_number) {
                    Registration::New(owner) => new.push((position, owner)),
                    Registration::Pending(ticket) => self.depend_on(*id, ticket),
                }
            }
        }
        drop(gate);
        if kind == BlobKind::Data && !self.storing_catalog {
            self.new_content_chunks += new.len() as u64;
        } else {
            self.new_metadata_blobs += new.len() as u64;
        }
        self.prune_dependencies()?;
        if new.is_empty() {
            return Ok(());
        }
        let (done_tx, done_rx) = sync_channel(1);
        let inner = self.inner.clone();
        rayon::spawn(move || {
            // `inner` is dropped before the batch is sent: once the session has its
            // last batch, no task holds the repository any more.
            let sealed: Vec<SealedBlob> = {
                let inner = inner;
                let level = inner.config.compression_level;
                new.into_par_iter()
                    .map(|(position, owner)| {
                        let bytes = &plaintexts[position];
                        SealedBlob {
                            id: owner.id(),
                            kind,
                            envelope: bytes.seal(&inner.keys, &owner.id(), level),
                            raw_len: bytes.raw_len(),
                            owner,
                        }
                    })
                    .collect()
            };
            // The session may have given up meanwhile; the owners then fail their
            // tickets as they are dropped.
            let _ = done_tx.send(sealed);
        });
        self.sealing.push_back(done_rx);
        self.forward_sealed(SEALING_BEHIND)
    }

    /// Takes the read side of the GC gate and records `ids` as this session's references
    /// before handing it back: whatever is decided about them while it is held, a
    /// concurrent GC either sees the references or has already swept the chunks.
    fn gate_references<'g>(
        &self,
        inner: &'g RepoInner,
        ids: &[ChunkId],
    ) -> std::sync::RwLockReadGuard<'g, ()> {
        let gate = inner
            .coordinator
            .gate
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        self.refs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .extend(ids);
        gate
    }

    /// Records `ids` as referenced by this session (under the GC gate, as a dedup decision
    /// is) and says where each one is: indexed, being stored by an ingest (this one or
    /// another, which the commit then waits for), or nowhere (`referencing`). Used by a backup assembled
    /// from a client's chunk list, which references chunks it does not store itself.
    pub(crate) fn reference(&mut self, ids: &[ChunkId]) -> Result<Vec<Presence>, RepoError> {
        let inner = self.inner.clone();
        let gate = self.gate_references(&inner, ids);
        let located = locate(
            ids,
            |ids| inner.index.lookup_chunks(ids),
            |id| inner.inflight.get(id),
        )?;
        let mut presence = Vec::with_capacity(ids.len());
        for (id, located) in ids.iter().zip(located) {
            presence.push(match located {
                Located::InFlight(ticket) => {
                    self.depend_on(*id, ticket);
                    Presence::InFlight
                }
                Located::Indexed(location) => Presence::Indexed(location),
                Located::Absent => Presence::Absent,
            });
        }
        drop(gate);
        self.prune_dependencies()?;
        Ok(presence)
    }

    /// Waits until everything this session stored is durable and indexed and every chunk
    /// it shares with another ingest is durable: afterwards its content can be read back.
    pub(crate) fn settle(&mut self) -> Result<(), RepoError> {
        self.forward_sealed(0)?;
        self.join_packer()?;
        for (chunk, ticket) in self.dependencies.drain() {
            if !ticket.wait() {
                return Err(RepoError::SharedChunkLost { chunk });
            }
        }
        Ok(())
    }

    /// Starts a new packer after `settle` joined the last one, so the session can store
    /// more (the catalog an assembly finds while reading its stream back).
    pub(crate) fn restart_packer(&mut self) {
        if self.packer.is_some() {
            return;
        }
        let (packer_tx, packer_rx) = sync_channel::<Vec<SealedBlob>>(PACKER_QUEUE);
        let writer = PackWriter::new(self.inner.clone(), self.handle.clone());
        self.packer = Some(
            std::thread::Builder::new()
                .name("stowage-packer".into())
                .spawn(move || run_packer(writer, packer_rx))
                .expect("spawning the packer thread"),
        );
        self.packer_tx = Some(packer_tx);
    }

    /// Hands sealed batches to the packer, oldest first, until at most `keep` sealing
    /// tasks remain.
    fn forward_sealed(&mut self, keep: usize) -> Result<(), RepoError> {
        while self.sealing.len() > keep {
            let task = self.sealing.pop_front().expect("more than `keep` tasks");
            let sealed = task
                .recv()
                .map_err(|_| RepoError::Internal("a sealing task panicked".into()))?;
            self.stored_bytes += sealed.iter().map(|b| b.envelope.len() as u64).sum::<u64>();
            let sent = self
                .packer_tx
                .as_ref()
                .is_some_and(|sender| sender.send(sealed).is_ok());
            if !sent {
                // The packer stopped: its error is reported when it is joined.
                return Err(self
                    .join_packer()
                    .err()
                    .unwrap_or_else(|| RepoError::Internal("packer stopped early".into())));
            }
        }
        Ok(())
    }

    /// Records that the backup needs `id`, being stored under `ticket`, to become
    /// durable before it commits. A chunk this session stores itself is not recorded:
    /// `settle` joins the session's pack writer, which fails if any of its packs did.
    /// With tiny chunks a hundred thousand of the session's own chunks can be in flight
    /// at once, and tracking them cost memory and a prune of the map at every batch
    /// (7.5% of a 3 M-chunk session's CPU).
    fn depend_on(&mut self, id: ChunkId, ticket: Arc<Ticket>) {
        if ticket.session() != self.session_number {
            self.dependencies.entry(id).or_insert(ticket);
        }
    }

    /// Forgets dependencies already durable once there are many, so a long stream that
    /// repeats itself keeps a bounded map; fails early if a shared chunk was lost.
    fn prune_dependencies(&mut self) -> Result<(), RepoError> {
        if self.dependencies.len() < MAX_TRACKED_DEPENDENCIES {
            return Ok(());
        }
        if let Some((chunk, _)) = self
            .dependencies
            .iter()
            .find(|(_, t)| t.state() == TicketState::Failed)
        {
            return Err(RepoError::SharedChunkLost { chunk: *chunk });
        }
        self.dependencies
            .retain(|_, ticket| ticket.state() == TicketState::Pending);
        Ok(())
    }

    fn join_packer(&mut self) -> Result<PackTotals, RepoError> {
        self.packer_tx = None;
        match self.packer.take() {
            Some(thread) => thread
                .join()
                .map_err(|_| RepoError::Internal("packer thread panicked".into()))?,
            None => Ok(PackTotals::default()),
        }
    }

    /// Waits for every pack and shared chunk to be durable, then writes the manifest and
    /// commits the backup record.
    pub(crate) fn commit(mut self, draft: ManifestDraft) -> Result<BackupManifest, RepoError> {
        self.settle()?;
        self.progress.check()?;
        let manifest = BackupManifest {
            format: MANIFEST_FORMAT.into(),
            version: MANIFEST_VERSION,
            id: BackupId::random(),
            series: draft.series,
            kind: draft.kind,
            created_at: draft.created_at,
            source: draft.source,
            size: draft.content.size,
            blake3: draft.digests.blake3,
            sha256: draft.digests.sha256,
            chunks: draft.content.chunks,
            new_chunks: self.new_content_chunks,
            new_metadata_blobs: self.new_metadata_blobs,
            stored_bytes: self.stored_bytes,
            content: draft.content,
            catalog: draft.catalog,
            tar: draft.tar,
        };
        let sealed = super::objects::seal_manifest(&self.inner, &manifest);
        let key = manifest_key(&manifest.id);
        let inner = &self.inner;
        let change = self.handle.block_on(inner.generations.begin(inner))?;
        self.handle.block_on(inner.backend.put(&key, sealed))?;
        inner.index.put_backup(&manifest)?;
        change.finish()?;
        self.committed = true;
        Ok(manifest)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // An abandoned session still lets its packer close and index what it already
        // sealed: those chunks may be shared with concurrent ingests; unreferenced, they
        // are reclaimed by garbage collection. Sealing tasks still running hold the
        // repository, so they are waited for: nothing of a session outlives it.
        if self.forward_sealed(0).is_err() {
            for task in self.sealing.drain(..) {
                let _ = task.recv();
            }
        }
        let _ = self.join_packer();
        self.inner
            .coordinator
            .end_session(self.session_number, self.committed);
    }
}

fn run_packer(
    mut writer: PackWriter,
    blobs: Receiver<Vec<SealedBlob>>,
) -> Result<PackTotals, RepoError> {
    for batch in blobs {
        for blob in batch {
            writer.add(blob)?;
        }
    }
    writer.finish()
}

/// The reader stage: fills segments, cuts chunks, and feeds the observer.
fn read_segments(
    source: &mut (dyn Read + Send),
    params: ChunkerParams,
    segments: SyncSender<io::Result<Segment>>,
    observer: SyncSender<Bytes>,
    progress: &Progress,
) {
    let buffers = SegmentBuffers::new(segment_size(&params));
    // The incomplete chunk at the end of the last segment, carried into the next one;
    // always shorter than a segment, since a segment holds more than a maximum chunk.
    let mut carry = Bytes::new();
    loop {
        let mut buffer = buffers.take();
        let space = buffer.as_mut_slice();
        let carried = std::mem::take(&mut carry);
        space[..carried.len()].copy_from_slice(&carried);
        let (filled, at_end) = match fill(source, space, carried.len()) {
            Ok(filled) => filled,
            Err(error) => {
                let _ = segments.send(Err(error));
                return;
            }
        };
        progress.add_done((filled - carried.len()) as u64);
        drop(carried);
        let cuts = cut_points(&space[..filled], &params, at_end);
        let consumed: usize = cuts.iter().sum();
        let mut data = buffer.freeze(filled);
        carry = data.split_off(consumed);
        if !data.is_empty() && observer.send(data.clone()).is_err() {
            return;
        }
        if segments.send(Ok(Segment { data, cuts })).is_err() || at_end {
            return;
        }
    }
}

/// Reads into `space` after its first `filled` bytes until it is full or the source
/// ends. Returns how many bytes it then holds and whether the source ended.
pub fn fill(
    source: &mut (dyn Read + Send),
    space: &mut [u8],
    mut filled: usize,
) -> io::Result<(usize, bool)> {
    while filled < space.len() {
        match source.read(&mut space[filled..]) {
            Ok(0) => return Ok((filled, true)),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok((filled, false))
}

/// Builds a content list in stream order, cutting leaves at content-defined points.
#[derive(Default)]
pub(crate) struct ContentListBuilder {
    pub(crate) content: ContentRef,
    open_leaf: Vec<ContentEntry>,
}

impl ContentListBuilder {
    /// Appends one chunk; returns a complete leaf when this chunk ends one.
    pub(crate) fn push(&mut self, entry: ContentEntry) -> Option<Vec<ContentEntry>> {
        self.content.size += u64::from(entry.len);
        self.content.chunks += 1;
        self.open_leaf.push(entry);
        is_leaf_boundary(&entry.id, self.open_leaf.len())
            .then(|| std::mem::take(&mut self.open_leaf))
    }

    pub(crate) fn take_open_leaf(&mut self) -> Option<Vec<ContentEntry>> {
        (!self.open_leaf.is_empty()).then(|| std::mem::take(&mut self.open_leaf))
    }
}
