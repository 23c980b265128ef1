//! `stowage put --server URL PATH`: the stream is chunked and hashed here, with the
//! repository's chunker settings and chunk-id key the server hands to a writer, and only
//! the chunks the server lacks are sent (`/v1/sessions`, `docs/API.md`).
//!
//! A reader thread cuts the stream into segments, names every chunk, hashes the whole
//! stream, and compresses the chunks that are neither in the session's known set (the
//! series' newest backup) nor sent earlier in this stream; the async side sends each
//! segment's chunks, then its entries. The two overlap through a small bounded queue, so
//! memory stays a few segments whatever the stream's size. Up to [`UPLOADS_IN_FLIGHT`]
//! chunk uploads run at once (HTTP/1.1 connections from reqwest's pool); each batch's
//! entries are appended, in order, once its chunks are stored. A request that fails for the
//! network is retried: chunk uploads are idempotent and an append names the offset it
//! continues, so after a lost answer the client asks where the stream stands.

use std::collections::{HashSet, VecDeque};
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
use super::RepoArgs;
use crate::format::chunk_batch::{encode_chunk, encode_entry, ChunkEncoding};
use crate::format::config::ChunkerParams;
use crate::format::content::ContentEntry;
use crate::id::ChunkId;
use crate::pipeline::chunker::cut_points;
use crate::pipeline::keys::chunk_id_with;
use crate::pipeline::seal::compress_chunk;
use crate::repo::digest::update_blake3;
use crate::repo::ingest::{fill, segment_size};
use crate::repo::Progress;

/// Tries of one request before the upload gives up.
const ATTEMPTS: u32 = 5;
/// Segments prepared ahead of the network.
const BATCHES_AHEAD: usize = 2;
/// Chunk uploads in flight at once (each a segment's new chunks, a few MiB).
const UPLOADS_IN_FLIGHT: usize = 3;

/// One segment's work for the network: the chunks to send and the entries to append.
struct Batch {
    chunks: bytes::Bytes,
    entries: bytes::Bytes,
    bytes: u64,
}

/// What the reader thread sends: batches, then the stream's size and digest.
enum Prepared {
    Batch(Batch),
    End { size: u64, blake3: String },
}

/// What a writer needs, from the session's opening answer.
struct Writer {
    chunker: ChunkerParams,
    chunk_id_key: [u8; 32],
    compression_level: i32,
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
}

pub async fn put(args: &RepoArgs, options: PutOptions<'_>, path: &Path) -> Result<Outcome> {
    let remote = Remote::new(args)?;
    let progress = Arc::new(Progress::new());
    let (name, source): (String, Box<dyn Read + Send>) = if path == Path::new("-") {
        ("-".into(), Box::new(std::io::stdin()))
    } else {
        let file =
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let meta = file.metadata()?;
        if meta.is_dir() {
            bail!("the server takes streams: back a directory up with --repo, or send a tar of it");
        }
        progress.set_total(meta.len());
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        (name, Box::new(file))
    };
    let answer: Value = send_json(
        &remote,
        "/v1/sessions",
        &json!({
            "series": options.series,
            "name": name,
            "sha256": options.sha256,
            "tar_catalog": options.tar_catalog,
        }),
    )
    .await?;
    let session = answer["session"]["id"]
        .as_str()
        .context("the server sent no session id")?
        .to_string();
    let writer = Writer::from_answer(&answer)?;
    let known = fetch_known(
        &remote,
        &session,
        answer["session"]["known_chunks"].as_u64().unwrap_or(0),
    )
    .await?;
    let bar = ProgressBar::start(progress.clone(), "backing up");
    let result = send_stream(&remote, &session, writer, known, source, progress).await;
    bar.finish();
    let backup = match result {
        Ok(backup) => backup,
        Err(error) => {
            // Best effort: the server would end the session once idle anyway.
            let _ = remote
                .request(reqwest::Method::DELETE, &format!("/v1/sessions/{session}"))
                .send()
                .await;
            return Err(error);
        }
    };
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

async fn send_json(remote: &Remote, path: &str, body: &Value) -> Result<Value> {
    let response = remote
        .request(reqwest::Method::POST, path)
        .json(body)
        .send()
        .await
        .with_context(|| format!("sending {path}"))?;
    Ok(checked(response).await?.json().await?)
}

/// The session's known set, page by page.
async fn fetch_known(remote: &Remote, session: &str, count: u64) -> Result<HashSet<ChunkId>> {
    let mut known = HashSet::with_capacity(count as usize);
    while (known.len() as u64) < count {
        let path = format!("/v1/sessions/{session}/known?start={}", known.len());
        let response = remote.request(reqwest::Method::GET, &path).send().await?;
        let page = checked(response).await?.bytes().await?;
        if page.is_empty() || !page.len().is_multiple_of(32) {
            bail!("the server sent a known-set page of {} bytes", page.len());
        }
        known.extend(page.chunks_exact(32).filter_map(ChunkId::from_slice));
    }
    Ok(known)
}

async fn send_stream(
    remote: &Remote,
    session: &str,
    writer: Writer,
    known: HashSet<ChunkId>,
    source: Box<dyn Read + Send>,
    progress: Arc<Progress>,
) -> Result<Value> {
    let (tx, mut rx) = tokio::sync::mpsc::channel(BATCHES_AHEAD);
    let reader = tokio::task::spawn_blocking(move || prepare(source, writer, known, progress, tx));
    // Chunk uploads of the next batches are in flight while a batch's entries are
    // appended; an append waits for its own batch's chunks, and appends go in order.
    let mut in_flight: VecDeque<(AbortOnDropHandle<Result<()>>, Batch)> = VecDeque::new();
    let mut offset = 0u64;
    let mut end = None;
    while let Some(prepared) = rx.recv().await {
        match prepared {
            Prepared::Batch(batch) => {
                let sender = remote.clone();
                let path = format!("/v1/sessions/{session}/chunks");
                let chunks = batch.chunks.clone();
                let upload = tokio::spawn(async move {
                    if chunks.is_empty() {
                        return Ok(());
                    }
                    retrying(|| post_bytes(&sender, &path, chunks.clone())).await
                });
                in_flight.push_back((AbortOnDropHandle::new(upload), batch));
                while in_flight.len() > UPLOADS_IN_FLIGHT {
                    offset = settle_front(remote, session, offset, &mut in_flight).await?;
                }
            }
            Prepared::End { size, blake3 } => end = Some((size, blake3)),
        }
    }
    while !in_flight.is_empty() {
        offset = settle_front(remote, session, offset, &mut in_flight).await?;
    }
    reader.await.context("the reader thread failed")??;
    let (size, blake3) = end.context("the stream ended early")?;
    if size != offset {
        bail!("read {size} bytes but appended {offset}");
    }
    send_json(
        remote,
        &format!("/v1/sessions/{session}/finish"),
        &json!({ "size": size, "blake3": blake3 }),
    )
    .await
}

/// Waits for the oldest batch's chunks, then appends its entries.
async fn settle_front(
    remote: &Remote,
    session: &str,
    offset: u64,
    in_flight: &mut VecDeque<(AbortOnDropHandle<Result<()>>, Batch)>,
) -> Result<u64> {
    let Some((upload, batch)) = in_flight.pop_front() else {
        return Ok(offset);
    };
    upload.await.context("a chunk upload task failed")??;
    append(remote, session, offset, &batch).await
}

/// Appends one batch's entries at `offset`; returns the offset after them. When an
/// answer is lost, the session's size says whether the append took effect.
async fn append(remote: &Remote, session: &str, offset: u64, batch: &Batch) -> Result<u64> {
    let target = offset + batch.bytes;
    let path = format!("/v1/sessions/{session}/append?at={offset}");
    let mut attempt = 0;
    loop {
        attempt += 1;
        let sent = remote
            .request(reqwest::Method::POST, &path)
            .body(batch.entries.clone())
            .send()
            .await;
        match sent {
            Ok(response) => {
                checked(response).await?;
                return Ok(target);
            }
            Err(error) if attempt < ATTEMPTS => {
                tracing::warn!(%error, "an append failed; asking the server where the stream stands");
                pause(attempt).await;
                let state: Value = match remote
                    .request(reqwest::Method::GET, &format!("/v1/sessions/{session}"))
                    .send()
                    .await
                {
                    Ok(response) => checked(response).await?.json().await?,
                    Err(_) => continue,
                };
                match state["size"].as_u64() {
                    Some(size) if size == target => return Ok(target),
                    Some(size) if size == offset => continue,
                    other => {
                        bail!("the session holds {other:?} bytes, expected {offset} or {target}")
                    }
                }
            }
            Err(error) => return Err(error).context("appending to the session"),
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
    known: HashSet<ChunkId>,
    progress: Arc<Progress>,
    out: tokio::sync::mpsc::Sender<Prepared>,
) -> Result<()> {
    let params = writer.chunker;
    let mut sent: HashSet<ChunkId> = HashSet::new();
    let mut hasher = blake3::Hasher::new();
    let mut buffer = vec![0u8; segment_size(&params)];
    let mut filled = 0usize;
    let mut size = 0u64;
    loop {
        let before = filled;
        let (now_filled, at_end) =
            fill(&mut *source, &mut buffer, filled).context("reading the stream")?;
        filled = now_filled;
        progress.add_done((filled - before) as u64);
        let cuts = cut_points(&buffer[..filled], &params, at_end);
        let consumed: usize = cuts.iter().sum();
        update_blake3(&mut hasher, &buffer[..consumed]);
        let mut starts = Vec::with_capacity(cuts.len());
        let mut start = 0;
        for len in &cuts {
            starts.push(start);
            start += len;
        }
        let data = &buffer[..consumed];
        let ids: Vec<ChunkId> = starts
            .par_iter()
            .zip(&cuts)
            .map(|(&s, &len)| chunk_id_with(&writer.chunk_id_key, &data[s..s + len]))
            .collect();
        let mut entries = Vec::with_capacity(ids.len() * 36);
        let mut new = Vec::new();
        for (position, (id, &len)) in ids.iter().zip(&cuts).enumerate() {
            encode_entry(
                &mut entries,
                &ContentEntry {
                    id: *id,
                    len: len as u32,
                },
            );
            if !known.contains(id) && sent.insert(*id) {
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
        size += consumed as u64;
        let batch = Batch {
            chunks: records.concat().into(),
            entries: entries.into(),
            bytes: consumed as u64,
        };
        if !cuts.is_empty() && out.blocking_send(Prepared::Batch(batch)).is_err() {
            return Ok(());
        }
        buffer.copy_within(consumed..filled, 0);
        filled -= consumed;
        if at_end {
            let blake3 = hasher.finalize().to_hex().to_string();
            let _ = out.blocking_send(Prepared::End { size, blake3 });
            return Ok(());
        }
    }
}
