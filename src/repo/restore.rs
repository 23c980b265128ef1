//! Restore: reads any byte range of a stored stream, in order, verifying every blob.
//!
//! Only the content-list leaves that cover the range are read. Chunks that lie next to
//! each other in one pack are fetched with one ranged read (a fetch unit); as many units
//! as the backend asks for (`Backend::reads_in_flight`: 4 on a local disk, 16 on S3)
//! are fetched and opened concurrently while the output is consumed in order, so
//! restores overlap backend latency with decryption and decompression on the blocking
//! pool.

use std::io::{self, Read, Write};
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use tokio_util::task::AbortOnDropHandle;

use super::digest::BackgroundVerifier;
use super::{pack_key, RepoError, RepoInner, Repository};
use crate::backend::BackendError;
use crate::format::content::{decode_leaf, ContentRef, LeafRef};
use crate::format::manifest::BackupManifest;
use crate::id::{ChunkId, PackId};
use crate::index::ChunkLocation;

/// Opened pieces waiting for the consumer of a [`StreamReader`].
const READER_QUEUE: usize = 4;
/// Content-list leaves planned ahead of the fetches.
const READ_AHEAD_LEAVES: usize = 2;
/// Largest span of a pack read in one request.
const MAX_UNIT_STORED: u64 = 4 << 20;
/// Largest plaintext one fetch unit may expand to.
const MAX_UNIT_RAW: u64 = 8 << 20;
/// Unneeded bytes between two blobs that one read may still span.
const MAX_UNIT_GAP: u64 = 64 << 10;

/// A piece of one chunk to deliver: `skip` bytes dropped, then `take` bytes kept.
struct Piece {
    id: ChunkId,
    location: ChunkLocation,
    skip: usize,
    take: usize,
}

/// One ranged read of a pack and the chunks it holds.
struct FetchUnit {
    pack: PackId,
    start: u64,
    end: u64,
    raw: u64,
    pieces: Vec<Piece>,
}

/// Fetch units read ahead of a backup's data: as many as its backend keeps in flight.
pub(crate) fn data_read_ahead(inner: &RepoInner) -> usize {
    inner.backend.reads_in_flight()
}

/// Fetch units read ahead when a catalog is read beside its data: catalogs are small
/// and read alongside the data stream, which has the memory budget.
pub(crate) const CATALOG_READ_AHEAD_UNITS: usize = 1;

/// An ordered stream of the bytes of `range` within the stream `content`, with up to
/// `read_ahead` fetch units in flight.
pub(crate) fn read_content(
    inner: Arc<RepoInner>,
    content: &ContentRef,
    range: Range<u64>,
    read_ahead: usize,
) -> BoxStream<'static, Result<Bytes, RepoError>> {
    let mut leaves = Vec::new();
    let mut leaf_start = 0u64;
    for leaf in &content.leaves {
        let leaf_end = leaf_start + leaf.size;
        if leaf_end > range.start && leaf_start < range.end {
            leaves.push((leaf.clone(), leaf_start));
        }
        leaf_start = leaf_end;
    }
    let planner = inner.clone();
    let fetcher = inner;
    stream::iter(leaves)
        .map(move |(leaf, start)| plan_leaf(planner.clone(), leaf, start, range.clone()))
        .buffered(READ_AHEAD_LEAVES)
        .map_ok(|units| stream::iter(units.into_iter().map(Ok)))
        .try_flatten()
        .map(move |unit: Result<FetchUnit, RepoError>| {
            // Each unit runs as its own task, so fetches and decoding progress while the
            // consumer is busy and this stream is not being polled. A task is aborted when
            // the stream is dropped (a failed or abandoned read): no read-ahead outlives
            // its reader, holding the repository.
            let task = unit.map(|unit| {
                AbortOnDropHandle::new(tokio::spawn(fetch_unit(fetcher.clone(), unit)))
            });
            async move {
                task?
                    .await
                    .map_err(|e| RepoError::Internal(format!("restore task failed: {e}")))?
            }
        })
        .buffered(read_ahead.max(1))
        .map_ok(|pieces| stream::iter(pieces.into_iter().map(Ok)))
        .try_flatten()
        .boxed()
}

/// Loads one content-list leaf and turns the part of it inside `range` into fetch units.
async fn plan_leaf(
    inner: Arc<RepoInner>,
    leaf: LeafRef,
    leaf_start: u64,
    range: Range<u64>,
) -> Result<Vec<FetchUnit>, RepoError> {
    let location = inner.locate(leaf.id)?;
    let payload = inner.load_blob(leaf.id, location).await?;
    let corrupt = |reason: String| RepoError::CorruptChunk {
        chunk: leaf.id,
        pack: location.pack,
        reason,
    };
    let entries = decode_leaf(&payload).map_err(|e| corrupt(e.to_string()))?;
    let size: u64 = entries.iter().map(|e| u64::from(e.len)).sum();
    if size != leaf.size || entries.len() != leaf.chunks as usize {
        return Err(corrupt(
            "content-list leaf disagrees with its manifest".into(),
        ));
    }
    let mut wanted = Vec::new();
    let mut chunk_start = leaf_start;
    for entry in entries {
        let chunk_end = chunk_start + u64::from(entry.len);
        if chunk_end > range.start && chunk_start < range.end {
            let skip = range.start.saturating_sub(chunk_start) as usize;
            let take = (chunk_end.min(range.end) - chunk_start) as usize - skip;
            wanted.push((entry.id, skip, take));
        }
        chunk_start = chunk_end;
    }
    let ids: Vec<ChunkId> = wanted.iter().map(|w| w.0).collect();
    let locations = inner.index.lookup_chunks(&ids)?;
    let mut units: Vec<FetchUnit> = Vec::new();
    for ((id, skip, take), location) in wanted.into_iter().zip(locations) {
        let location = location.ok_or(RepoError::ChunkMissing {
            chunk: id,
            backup: None,
        })?;
        let piece = Piece {
            id,
            location,
            skip,
            take,
        };
        match units.last_mut() {
            Some(unit) if extends(unit, &location) => add_piece(unit, piece),
            _ => units.push(new_unit(piece)),
        }
    }
    Ok(units)
}

/// Reads and opens stored chunks, given where the index places them, in the order given:
/// chunks close together in one pack are read with one request, and up to the
/// backend's `reads_in_flight` requests run at once.
pub(crate) async fn fetch_chunks(
    inner: Arc<RepoInner>,
    chunks: Vec<(ChunkId, ChunkLocation)>,
) -> Result<Vec<Bytes>, RepoError> {
    let mut units: Vec<FetchUnit> = Vec::new();
    for (id, location) in chunks {
        let piece = Piece {
            id,
            location,
            skip: 0,
            take: location.raw_len as usize,
        };
        match units.last_mut() {
            Some(unit) if extends(unit, &location) => add_piece(unit, piece),
            _ => units.push(new_unit(piece)),
        }
    }
    let fetched: Vec<Vec<Bytes>> = stream::iter(units)
        .map(|unit| {
            let task = AbortOnDropHandle::new(tokio::spawn(fetch_unit(inner.clone(), unit)));
            async move {
                task.await
                    .map_err(|e| RepoError::Internal(format!("a chunk read failed: {e}")))?
            }
        })
        .buffered(data_read_ahead(&inner))
        .try_collect()
        .await?;
    Ok(fetched.into_iter().flatten().collect())
}

fn extends(unit: &FetchUnit, location: &ChunkLocation) -> bool {
    let start = u64::from(location.offset);
    let end = start + u64::from(location.stored_len);
    unit.pack == location.pack
        && start >= unit.end
        && start - unit.end <= MAX_UNIT_GAP
        && end - unit.start <= MAX_UNIT_STORED
        && unit.raw + u64::from(location.raw_len) <= MAX_UNIT_RAW
}

fn new_unit(piece: Piece) -> FetchUnit {
    let start = u64::from(piece.location.offset);
    FetchUnit {
        pack: piece.location.pack,
        start,
        end: start + u64::from(piece.location.stored_len),
        raw: u64::from(piece.location.raw_len),
        pieces: vec![piece],
    }
}

fn add_piece(unit: &mut FetchUnit, piece: Piece) {
    unit.end = u64::from(piece.location.offset) + u64::from(piece.location.stored_len);
    unit.raw += u64::from(piece.location.raw_len);
    unit.pieces.push(piece);
}

/// Reads one unit's span of its pack and opens every chunk in it.
async fn fetch_unit(inner: Arc<RepoInner>, unit: FetchUnit) -> Result<Vec<Bytes>, RepoError> {
    let data = match inner
        .backend
        .get(&pack_key(&unit.pack), Some(unit.start..unit.end))
        .await
    {
        Ok(data) => data,
        // Garbage collection may have repacked these chunks since they were located.
        Err(BackendError::NotFound { .. }) => return fetch_relocated(&inner, unit).await,
        Err(e) => {
            return Err(super::pack_read_error(
                unit.pack,
                &(unit.start..unit.end),
                e,
            ))
        }
    };
    tokio::task::spawn_blocking(move || {
        unit.pieces
            .iter()
            .map(|piece| {
                let from = (u64::from(piece.location.offset) - unit.start) as usize;
                let envelope = &data[from..from + piece.location.stored_len as usize];
                let plain = Bytes::from(inner.open_chunk(piece.id, &piece.location, envelope)?);
                Ok(plain.slice(piece.skip..piece.skip + piece.take))
            })
            .collect()
    })
    .await
    .map_err(|e| RepoError::Internal(format!("restore task failed: {e}")))?
}

/// Reads a unit's chunks one by one from wherever the index places them now.
async fn fetch_relocated(inner: &Arc<RepoInner>, unit: FetchUnit) -> Result<Vec<Bytes>, RepoError> {
    let mut out = Vec::with_capacity(unit.pieces.len());
    for piece in unit.pieces {
        let location = inner.locate(piece.id)?;
        if location.pack == unit.pack {
            return Err(RepoError::CorruptPack {
                pack: unit.pack,
                reason: "indexed pack is missing from the backend".into(),
            });
        }
        let plain = Bytes::from(inner.load_blob(piece.id, location).await?);
        out.push(plain.slice(piece.skip..piece.skip + piece.take));
    }
    Ok(out)
}

/// A blocking [`Read`] over an async byte stream, fed by a task on the runtime through a
/// bounded channel. Errors arrive as `io::Error`s wrapping the [`RepoError`].
pub struct StreamReader {
    receiver: tokio::sync::mpsc::Receiver<Result<Bytes, RepoError>>,
    current: Bytes,
    /// The task feeding the channel, aborted when the reader is dropped.
    _pump: AbortOnDropHandle<()>,
}

impl StreamReader {
    pub fn new(
        handle: &tokio::runtime::Handle,
        mut stream: BoxStream<'static, Result<Bytes, RepoError>>,
    ) -> StreamReader {
        let (sender, receiver) = tokio::sync::mpsc::channel(READER_QUEUE);
        let pump = handle.spawn(async move {
            while let Some(item) = stream.next().await {
                let failed = item.is_err();
                if sender.send(item).await.is_err() || failed {
                    break;
                }
            }
        });
        StreamReader {
            receiver,
            current: Bytes::new(),
            _pump: AbortOnDropHandle::new(pump),
        }
    }
}

impl StreamReader {
    /// The next piece of the stream as it arrived, without copying; `None` at the end.
    pub fn next_piece(&mut self) -> Result<Option<Bytes>, RepoError> {
        if !self.current.is_empty() {
            return Ok(Some(std::mem::take(&mut self.current)));
        }
        self.receiver.blocking_recv().transpose()
    }
}

impl Read for StreamReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.receiver.blocking_recv() {
                Some(Ok(bytes)) => self.current = bytes,
                Some(Err(error)) => return Err(io::Error::other(error)),
                None => return Ok(0),
            }
        }
        Ok(copy_from_piece(&mut self.current, out))
    }
}

/// Copies the front of `piece` into `out`, drops it from `piece`, and says how much.
pub(crate) fn copy_from_piece(piece: &mut Bytes, out: &mut [u8]) -> usize {
    let n = out.len().min(piece.len());
    out[..n].copy_from_slice(&piece[..n]);
    *piece = piece.slice(n..);
    n
}

/// Recovers the engine error carried inside an `io::Error`, or wraps a plain one.
pub(crate) fn unwrap_io(error: io::Error, what: &str) -> RepoError {
    if error.get_ref().is_some_and(|e| e.is::<RepoError>()) {
        if let Some(inner) = error.into_inner() {
            if let Ok(repo) = inner.downcast::<RepoError>() {
                return *repo;
            }
        }
        return RepoError::Internal("error lost in transit".into());
    }
    RepoError::io(what, error)
}

impl Repository {
    /// The bytes of `range` (the whole stream when `None`) of a backup, in order.
    pub fn read_backup(
        &self,
        manifest: &BackupManifest,
        range: Option<Range<u64>>,
    ) -> Result<BoxStream<'static, Result<Bytes, RepoError>>, RepoError> {
        let range = range.unwrap_or(0..manifest.size);
        if range.start > range.end || range.end > manifest.size {
            return Err(RepoError::RangeNotSatisfiable {
                start: range.start,
                end: range.end,
                size: manifest.size,
            });
        }
        Ok(read_content(
            self.inner.clone(),
            &manifest.content,
            range,
            data_read_ahead(&self.inner),
        ))
    }

    /// Writes a backup's bytes (or a range of them) to `out`. A full restore also checks
    /// the stream's digest against the one recorded at ingest.
    pub async fn export(
        &self,
        manifest: &BackupManifest,
        range: Option<Range<u64>>,
        out: Box<dyn Write + Send>,
    ) -> Result<u64, RepoError> {
        let full = range.is_none();
        let stream = self.read_backup(manifest, range)?;
        let handle = tokio::runtime::Handle::current();
        let manifest = manifest.clone();
        tokio::task::spawn_blocking(move || {
            // Whole pieces go straight from the restore stream to the output: no copy
            // through an intermediate buffer.
            let mut reader = StreamReader::new(&handle, stream);
            let mut out = out;
            let mut verifier = full.then(|| BackgroundVerifier::start(&manifest));
            let mut written = 0u64;
            while let Some(piece) = reader.next_piece()? {
                out.write_all(&piece)
                    .map_err(|e| RepoError::io("output", e))?;
                written += piece.len() as u64;
                if let Some(verifier) = verifier.as_mut() {
                    verifier.update(piece);
                }
            }
            out.flush().map_err(|e| RepoError::io("output", e))?;
            if let Some(verifier) = verifier {
                verifier.verify(&manifest)?;
            }
            Ok(written)
        })
        .await
        .map_err(|e| RepoError::Internal(format!("export task failed: {e}")))?
    }
}
