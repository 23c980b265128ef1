//! `stowage put --server URL PATH`: the stream is chunked and hashed here, with the
//! repository's chunker settings and chunk-id key the server hands to a writer, and only
//! the chunks the server lacks are sent (`/v1/sessions`, `docs/API.md`). A directory is
//! sent as a tree session (`session_tree`: its files chunked one by one, its catalog
//! made here, unchanged files taken from the files cache).
//!
//! A reader thread reads and cuts the stream into segments (`segment_reader`, the next
//! one ahead on a thread of its own), names every chunk, hashes the whole
//! stream, and compresses the chunks that are neither in the session's known set (the
//! series' newest backup) nor sent earlier in this stream; the async side sends each
//! segment's chunks, then its entries. The two overlap through a small bounded queue, so
//! memory stays a few segments whatever the stream's size. Up to [`UPLOADS_IN_FLIGHT`]
//! chunk uploads run at once (HTTP/1.1 connections from reqwest's pool); each batch's
//! entries are appended, in order, once its chunks are stored. A request that fails for the
//! network is retried: chunk uploads are idempotent and an append names the offset it
//! continues, so after a lost answer the client asks where the stream stands.

use std::collections::VecDeque;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use serde_json::{json, Value};
use tokio_util::task::AbortOnDropHandle;

use super::commands::Outcome;
use super::output::ProgressBar;
use super::remote::{checked, Remote};
use super::segment_reader::read_segments_ahead;
use super::RepoArgs;
use crate::format::chunk_batch::{encode_chunk, encode_entry, ChunkEncoding};
use crate::format::config::ChunkerParams;
use crate::format::content::ContentEntry;
use crate::id::ChunkId;
use crate::pipeline::keys::chunk_id_with;
use crate::pipeline::seal::compress_chunk;
use crate::repo::chunk_runs::{
    KnownIds, KnownIdsBuilder, SpilledLengths, IN_MEMORY, KNOWN_IN_MEMORY,
};
use crate::repo::digest::update_blake3;
use crate::repo::ingest::segment_size;
use crate::repo::Progress;

/// Tries of one request before the upload gives up.
const ATTEMPTS: u32 = 5;
/// Segments prepared ahead of the network.
const BATCHES_AHEAD: usize = 2;
/// Chunk uploads in flight at once (each a segment's new chunks, a few MiB).
const UPLOADS_IN_FLIGHT: usize = 3;

/// One segment's work for the network: the chunks to send and the entries to append.
pub(super) struct Batch {
    pub chunks: bytes::Bytes,
    pub entries: bytes::Bytes,
    /// Stream bytes the entries cover.
    pub bytes: u64,
}

/// What the reader thread sends: batches (and a tree's catalog lines), then what the
/// client claims of the stream.
pub(super) enum Prepared {
    Batch(Batch),
    Catalog {
        lines: bytes::Bytes,
        entries: u64,
    },
    End {
        size: u64,
        /// `None` when not every byte was read here (a tree's files cache).
        blake3: Option<String>,
        entries_blake3: String,
    },
}

/// What a writer needs, from the session's opening answer.
pub(super) struct Writer {
    pub chunker: ChunkerParams,
    pub chunk_id_key: [u8; 32],
    pub compression_level: i32,
}

impl Writer {
    fn from_answer(answer: &Value) -> Result<Writer> {
        let writer = &answer["writer"];
        let chunker: ChunkerParams = serde_json::from_value(writer["chunker"].clone())
            .context("the server sent no chunker settings")?;
        let key = hex::decode(writer["chunk_id_key"].as_str().unwrap_or_default())
            .ok()
            .and_then(|k| <[u8; 32]>::try_from(k).ok())
            .context("the server sent no chunk-id key")?;
        Ok(Writer {
            chunker,
            chunk_id_key: key,
            compression_level: writer["compression_level"].as_i64().unwrap_or(3) as i32,
        })
    }
}

pub struct PutOptions<'a> {
    pub series: &'a str,
    pub json: bool,
    pub sha256: bool,
    pub tar_catalog: bool,
    /// A directory: read every file, whatever the files cache says.
    pub force: bool,
}

pub async fn put(args: &RepoArgs, options: PutOptions<'_>, path: &Path) -> Result<Outcome> {
    let remote = Remote::new(args)?;
    let progress = Arc::new(Progress::new());
    if path != Path::new("-") && path.is_dir() {
        return super::session_tree::put_tree(&remote, options, path, progress).await;
    }
    let (name, source): (String, Box<dyn Read + Send>) = if path == Path::new("-") {
        ("-".into(), Box::new(std::io::stdin()))
    } else {
        let file =
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        progress.set_total(file.metadata()?.len());
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        (name, Box::new(file))
    };
    let body = json!({
        "series": options.series,
        "name": name,
        "sha256": options.sha256,
        "tar_catalog": options.tar_catalog,
    });
    let (session, writer, known) = open_session(&remote, &body).await?;
    let bar = ProgressBar::start(progress.clone(), "backing up");
    let sending = progress.clone();
    let result = send_stream(&remote, &session, move |out| {
        prepare(source, writer, known, sending, out)
    })
    .await;
    bar.finish();
    let (backup, ()) = abandon_on_error(&remote, &session, result).await?;
    if options.json {
        println!("{backup}");
    } else {
        eprintln!(
            "backup of {name}: {} bytes, {} added to the repository",
            backup["size"], backup["stored_bytes"]
        );
        println!("{}", backup["id"].as_str().unwrap_or_default());
    }
    Ok(Outcome::Success)
}

/// Opens a session (`body` is the opening request) and fetches its known set.
pub(super) async fn open_session(
    remote: &Remote,
    body: &Value,
) -> Result<(String, Writer, KnownIds)> {
    let answer: Value = send_json(remote, "/v1/sessions", body).await?;
    let session = answer["session"]["id"]
        .as_str()
        .context("the server sent no session id")?
        .to_string();
    let writer = Writer::from_answer(&answer)?;
    let known = fetch_known(
        remote,
        &session,
        answer["session"]["known_chunks"].as_u64().unwrap_or(0),
    )
    .await?;
    Ok((session, writer, known))
}

/// Abandons a session whose backup was dropped before it ended (an agent's cancelled
/// job), so the server frees it now rather than at its idle time-out. Best effort: the
/// request runs as a task of the runtime, which a process that is exiting may not finish.
pub(super) struct SessionGuard {
    remote: Remote,
    session: String,
    armed: bool,
}

impl SessionGuard {
    pub(super) fn new(remote: &Remote, session: &str) -> SessionGuard {
        SessionGuard {
            remote: remote.clone(),
            session: session.to_string(),
            armed: true,
        }
    }

    /// The backup ended (committed, or failed and abandoned): nothing to do on drop.
    pub(super) fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if !self.armed {
            return;
        }
        let request = self.remote.request(
            reqwest::Method::DELETE,
            &format!("/v1/sessions/{}", self.session),
        );
        runtime.spawn(async move {
            let _ = request.send().await;
        });
    }
}

/// Ends the session when the backup failed (best effort: the server would end it once
/// idle anyway).
pub(super) async fn abandon_on_error<T>(
    remote: &Remote,
    session: &str,
    result: Result<T>,
) -> Result<T> {
    if result.is_err() {
        let _ = remote
            .request(reqwest::Method::DELETE, &format!("/v1/sessions/{session}"))
            .send()
            .await;
    }
    result
}

async fn send_json(remote: &Remote, path: &str, body: &Value) -> Result<Value> {
    let response = remote
        .request(reqwest::Method::POST, path)
        .json(body)
        .send()
        .await
        .with_context(|| format!("sending {path}"))?;
    Ok(checked(response).await?.json().await?)
}

/// The session's known set, page by page: in memory up to a million ids, beyond that
/// in a sorted run in the temporary directory, so memory stays flat whatever the size
/// of the series' newest backup.
async fn fetch_known(remote: &Remote, session: &str, count: u64) -> Result<KnownIds> {
    let mut known = KnownIdsBuilder::new(spool_dir(), KNOWN_IN_MEMORY);
    let mut fetched = 0u64;
    while fetched < count {
        let path = format!("/v1/sessions/{session}/known?start={fetched}");
        let response = remote.request(reqwest::Method::GET, &path).send().await?;
        let page = checked(response).await?.bytes().await?;
        if page.is_empty() || !page.len().is_multiple_of(32) {
            bail!("the server sent a known-set page of {} bytes", page.len());
        }
        for id in page.chunks_exact(32).filter_map(ChunkId::from_slice) {
            known
                .push(id)
                .with_context(|| format!("keeping the known set in {}", spool_dir().display()))?;
            fetched += 1;
        }
    }
    Ok(known.finish()?)
}

/// Where a client keeps the sets of a session too large for memory (unnamed files).
pub(super) fn spool_dir() -> std::path::PathBuf {
    std::env::temp_dir()
}

/// The chunks sent in this session: in memory up to a bound, then in sorted runs.
pub(super) fn sent_set() -> SpilledLengths {
    SpilledLengths::new(spool_dir(), IN_MEMORY)
}

/// Sends what `prepare` (run on a blocking thread) makes of the source, then finishes
/// the session: the committed backup, and what `prepare` returned.
pub(super) async fn send_stream<T: Send + 'static>(
    remote: &Remote,
    session: &str,
    prepare: impl FnOnce(tokio::sync::mpsc::Sender<Prepared>) -> Result<T> + Send + 'static,
) -> Result<(Value, T)> {
    let (tx, mut rx) = tokio::sync::mpsc::channel(BATCHES_AHEAD);
    let reader = tokio::task::spawn_blocking(move || prepare(tx));
    // Chunk uploads of the next batches are in flight while a batch's entries are
    // appended; an append waits for its own batch's chunks, and appends go in order.
    let mut in_flight: VecDeque<(Option<Upload>, Batch)> = VecDeque::new();
    let mut offset = 0u64;
    let mut catalog_entries = 0u64;
    let mut end = None;
    while let Some(prepared) = rx.recv().await {
        match prepared {
            Prepared::Batch(batch) => {
                let sender = remote.clone();
                let path = format!("/v1/sessions/{session}/chunks");
                let chunks = batch.chunks.clone();
                let upload = (!chunks.is_empty()).then(|| {
                    AbortOnDropHandle::new(tokio::spawn(async move {
                        retrying(|| post_bytes(&sender, &path, chunks.clone())).await
                    }))
                });
                in_flight.push_back((upload, batch));
                // Appends follow as soon as their chunks are stored (at once for a batch
                // with nothing to upload: a tree's unchanged files), so the server checks
                // them while the next batches are read; at most UPLOADS_IN_FLIGHT wait.
                while in_flight.len() > UPLOADS_IN_FLIGHT
                    || in_flight
                        .front()
                        .is_some_and(|(upload, _)| upload.as_ref().is_none_or(|u| u.is_finished()))
                {
                    offset = settle_front(remote, session, offset, &mut in_flight).await?;
                }
            }
            Prepared::Catalog { lines, entries } => {
                let next = Continuation {
                    route: "catalog",
                    at: catalog_entries,
                    target: catalog_entries + entries,
                    field: "catalog_entries",
                };
                catalog_entries = post_continuing(remote, session, &next, lines).await?;
            }
            Prepared::End {
                size,
                blake3,
                entries_blake3,
            } => end = Some((size, blake3, entries_blake3)),
        }
    }
    while !in_flight.is_empty() {
        offset = settle_front(remote, session, offset, &mut in_flight).await?;
    }
    let prepared = reader.await.context("the reader thread failed")??;
    let (size, blake3, entries_blake3) = end.context("the stream ended early")?;
    if size != offset {
        bail!("read {size} bytes but appended {offset}");
    }
    let backup = send_json(
        remote,
        &format!("/v1/sessions/{session}/finish"),
        &json!({ "size": size, "blake3": blake3, "entries_blake3": entries_blake3 }),
    )
    .await?;
    Ok((backup, prepared))
}

/// A batch's chunk upload, running.
type Upload = AbortOnDropHandle<Result<()>>;

/// Waits for the oldest batch's chunks (if it has any), then appends its entries.
async fn settle_front(
    remote: &Remote,
    session: &str,
    offset: u64,
    in_flight: &mut VecDeque<(Option<Upload>, Batch)>,
) -> Result<u64> {
    let Some((upload, batch)) = in_flight.pop_front() else {
        return Ok(offset);
    };
    if let Some(upload) = upload {
        upload.await.context("a chunk upload task failed")??;
    }
    let next = Continuation {
        route: "append",
        at: offset,
        target: offset + batch.bytes,
        field: "size",
    };
    post_continuing(remote, session, &next, batch.entries).await
}

/// A request that continues the session's stream (`append`) or catalog (`catalog`) at
/// position `at` and brings it to `target`; `field` is where the session's state says
/// how far it has come.
#[derive(Clone, Copy)]
struct Continuation {
    route: &'static str,
    at: u64,
    target: u64,
    field: &'static str,
}

/// Sends `body` as `next`; returns the position after it. When an answer is lost, the
/// session's state says whether the request took effect.
async fn post_continuing(
    remote: &Remote,
    session: &str,
    next: &Continuation,
    body: bytes::Bytes,
) -> Result<u64> {
    let Continuation {
        route,
        at: offset,
        target,
        field,
    } = *next;
    let path = format!("/v1/sessions/{session}/{route}?at={offset}");
    let mut attempt = 0;
    loop {
        attempt += 1;
        let sent = remote
            .request(reqwest::Method::POST, &path)
            .body(body.clone())
            .send()
            .await;
        match sent {
            Ok(response) => {
                checked(response).await?;
                return Ok(target);
            }
            Err(error) if attempt < ATTEMPTS => {
                tracing::warn!(%error, route, "a request failed; asking the server where the session stands");
                pause(attempt).await;
                let state: Value = match remote
                    .request(reqwest::Method::GET, &format!("/v1/sessions/{session}"))
                    .send()
                    .await
                {
                    Ok(response) => checked(response).await?.json().await?,
                    Err(_) => continue,
                };
                match state[field].as_u64() {
                    Some(size) if size == target => return Ok(target),
                    Some(size) if size == offset => continue,
                    other => {
                        bail!("the session's {field} is {other:?}, expected {offset} or {target}")
                    }
                }
            }
            Err(error) => return Err(error).with_context(|| format!("sending {route}")),
        }
    }
}

async fn post_bytes(
    remote: &Remote,
    path: &str,
    body: bytes::Bytes,
) -> Result<reqwest::Response, reqwest::Error> {
    remote
        .request(reqwest::Method::POST, path)
        .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
        .body(body)
        .send()
        .await
}

/// Sends a request again when the network failed (not when the server answered).
async fn retrying<F, Fut>(mut send: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<reqwest::Response, reqwest::Error>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        match send().await {
            Ok(response) => {
                checked(response).await?;
                return Ok(());
            }
            Err(error) if attempt < ATTEMPTS => {
                tracing::warn!(%error, "a request failed; sending it again");
                pause(attempt).await;
            }
            Err(error) => return Err(error).context("sending chunks"),
        }
    }
}

async fn pause(attempt: u32) {
    tokio::time::sleep(Duration::from_millis(200 << attempt.min(5))).await;
}

/// The reader thread: segments, chunk ids, the stream's digest, compressed new chunks.
fn prepare(
    mut source: Box<dyn Read + Send>,
    writer: Writer,
    known: KnownIds,
    progress: Arc<Progress>,
    out: tokio::sync::mpsc::Sender<Prepared>,
) -> Result<()> {
    let mut sent = sent_set();
    let mut hasher = blake3::Hasher::new();
    let mut entries_hasher = blake3::Hasher::new();
    let mut size = 0u64;
    let segments = segment_size(&writer.chunker);
    read_segments_ahead(&mut *source, segments, writer.chunker, |data, cuts| {
        progress.add_done(data.len() as u64);
        update_blake3(&mut hasher, data);
        let segment = chunk_segment(&writer, &known, &mut sent, data, cuts)?;
        entries_hasher.update(&segment.entries);
        size += data.len() as u64;
        let batch = Batch {
            chunks: segment.records.into(),
            entries: segment.entries.into(),
            bytes: data.len() as u64,
        };
        out.blocking_send(Prepared::Batch(batch))
            .map_err(|_| anyhow::anyhow!("the upload stopped"))
    })
    .context("reading the stream")?;
    let _ = out.blocking_send(Prepared::End {
        size,
        blake3: Some(hasher.finalize().to_hex().to_string()),
        entries_blake3: entries_hasher.finalize().to_hex().to_string(),
    });
    Ok(())
}

/// One segment's chunks: every entry, encoded for an append, and the records of the
/// chunks to upload (compressed when that helps).
pub(super) struct Segment {
    pub list: Vec<ContentEntry>,
    pub entries: Vec<u8>,
    pub records: Vec<u8>,
    /// How many chunks `records` holds, and their plaintext bytes.
    pub new_chunks: usize,
    pub new_bytes: u64,
}

/// Names the chunks `cuts` makes of `data` and prepares those neither `known` nor
/// already `sent` (which gains them).
pub(super) fn chunk_segment(
    writer: &Writer,
    known: &KnownIds,
    sent: &mut SpilledLengths,
    data: &[u8],
    cuts: &[usize],
) -> Result<Segment> {
    let mut starts = Vec::with_capacity(cuts.len());
    let mut start = 0;
    for len in cuts {
        starts.push(start);
        start += len;
    }
    let ids: Vec<ChunkId> = starts
        .par_iter()
        .zip(cuts)
        .map(|(&s, &len)| chunk_id_with(&writer.chunk_id_key, &data[s..s + len]))
        .collect();
    let mut list = Vec::with_capacity(ids.len());
    let mut entries = Vec::with_capacity(ids.len() * 36);
    let mut new = Vec::new();
    for (position, (id, &len)) in ids.iter().zip(cuts).enumerate() {
        let entry = ContentEntry {
            id: *id,
            len: len as u32,
        };
        encode_entry(&mut entries, &entry);
        list.push(entry);
        let spool = || {
            format!(
                "keeping the session's chunk sets in {}",
                spool_dir().display()
            )
        };
        if !known.contains(id).with_context(spool)?
            && sent.insert(*id, len as u32).with_context(spool)?
        {
            new.push(position);
        }
    }
    let level = writer.compression_level;
    let records: Vec<Vec<u8>> = new
        .par_iter()
        .map(|&position| {
            let plaintext = &data[starts[position]..starts[position] + cuts[position]];
            let mut record = Vec::new();
            match compress_chunk(plaintext, level) {
                Some(frame) => encode_chunk(
                    &mut record,
                    &ids[position],
                    ChunkEncoding::Zstd,
                    plaintext.len() as u32,
                    &frame,
                ),
                None => encode_chunk(
                    &mut record,
                    &ids[position],
                    ChunkEncoding::Raw,
                    plaintext.len() as u32,
                    plaintext,
                ),
            }
            record
        })
        .collect();
    Ok(Segment {
        list,
        entries,
        records: records.concat(),
        new_chunks: new.len(),
        new_bytes: new.iter().map(|&p| cuts[p] as u64).sum(),
    })
}
