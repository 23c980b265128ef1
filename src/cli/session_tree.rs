//! `stowage put --server URL DIR`: a directory backed up through a tree session. The
//! walk, the catalog and the chunking happen here; the server checks and stores.
//!
//! - **Files chunked one by one.** Each regular file is cut on its own, so its chunks
//!   are its own and the files cache can name them next time. Small files are read into
//!   one group buffer and cut, named and compressed together across the cores; a large
//!   file goes through in segments, as a stream does.
//! - **The files cache** (`files_cache`): a file whose metadata is unchanged since the
//!   previous backup, and whose chunks the session knows, is neither read nor sent.
//!   Then the client cannot hash the whole stream, and finish carries only the BLAKE3
//!   of the appended entries (the server still hashes the stream it assembled).
//! - **The catalog** is written as the walk goes, in walk order (which is path order)
//!   and sent in batches beside the stream's; the server checks every line.

use std::fs::File;
use std::io::{Cursor, Read};
use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use serde_json::{json, Value};
use tokio::sync::mpsc::Sender;

use super::commands::Outcome;
use super::files_cache::FilesCache;
use super::output::ProgressBar;
use super::remote::Remote;
use super::segment_reader::read_segments;
use super::session_put::{
    abandon_on_error, chunk_segment, open_session, send_stream, sent_set, Batch, Prepared,
    PutOptions, Segment, SessionGuard, Writer,
};
use crate::format::catalog::CatalogEntry;
use crate::format::chunk_batch::encode_entry;
use crate::format::content::ContentEntry;
use crate::pipeline::chunker::cut_points;
use crate::repo::chunk_runs::{KnownIds, SpilledLengths};
use crate::repo::digest::update_blake3;
use crate::repo::dir_handles::EntryMeta;
use crate::repo::ingest::segment_size;
use crate::repo::tree_source::{TreeWalk, Walked};
use crate::repo::Progress;

/// Files up to this size are read whole into the group buffer.
const SMALL_FILE: usize = 1 << 20;
/// A stream batch is sent once it holds this many entries (an append takes 65,536)...
const BATCH_ENTRIES: usize = 32_768;
/// ...or this many chunks to upload (a chunk batch takes 16,384)...
const BATCH_CHUNKS: usize = 8_192;
/// ...or this many bytes of them (a chunk batch takes 64 MiB)...
const BATCH_RECORD_BYTES: usize = 16 << 20;
/// ...or this much plaintext in them (a chunk batch may claim 256 MiB; the server holds
/// a batch's plaintext while it checks it).
const BATCH_PLAINTEXT: u64 = 32 << 20;
/// A catalog batch is sent once it holds this many bytes of lines (the server takes 16 MiB).
const CATALOG_BATCH_BYTES: usize = 1 << 20;

/// What a tree backup did here, for the summary.
#[derive(Default)]
pub(super) struct Report {
    pub files: u64,
    pub unchanged: u64,
    pub skipped: Vec<String>,
}

pub(super) async fn put_tree(
    remote: &Remote,
    options: PutOptions<'_>,
    path: &Path,
    progress: Arc<Progress>,
) -> Result<Outcome> {
    let walk = TreeWalk::new(path)?;
    let name = path.display().to_string();
    let bar = ProgressBar::start(progress.clone(), "backing up");
    let result = backup_tree(remote, &options, walk, &name, progress).await;
    bar.finish();
    let (backup, report) = result?;
    for reason in &report.skipped {
        eprintln!("skipped {reason}");
    }
    if options.json {
        println!("{backup}");
    } else {
        eprintln!(
            "backup of {name}: {} files ({} unchanged, not read), {} bytes, {} added to the repository",
            report.files, report.unchanged, backup["size"], backup["stored_bytes"]
        );
        println!("{}", backup["id"].as_str().unwrap_or_default());
    }
    Ok(Outcome::Success)
}

/// Backs up what `walk` walks as a tree named `name` (also what the files cache is
/// kept for): the committed backup and what was done here.
pub(super) async fn backup_tree(
    remote: &Remote,
    options: &PutOptions<'_>,
    walk: TreeWalk,
    name: &str,
    progress: Arc<Progress>,
) -> Result<(Value, Report)> {
    let body = json!({
        "series": options.series,
        "name": name,
        "sha256": options.sha256,
        "kind": "tree",
    });
    let (session, writer, known) = open_session(remote, &body).await?;
    let cache = FilesCache::open(
        remote.base(),
        options.series,
        Path::new(name),
        options.force,
    );
    let guard = SessionGuard::new(remote, &session);
    let result = send_stream(remote, &session, move |out| {
        TreeSender::new(writer, known, cache, progress, out).run(walk)
    })
    .await;
    let result = abandon_on_error(remote, &session, result).await;
    guard.disarm();
    let (backup, (cache, report)) = result?;
    if let Err(error) = cache.save() {
        eprintln!(
            "warning: the files cache was not saved ({error:#}); the next backup reads every file"
        );
    }
    Ok((backup, report))
}

/// A file read into the group buffer, waiting to be chunked with the others.
struct GroupFile {
    path: String,
    metadata: EntryMeta,
    len: usize,
}

/// The walk's work on the blocking thread: reads, chunks and batches the tree.
struct TreeSender {
    writer: Writer,
    known: KnownIds,
    sent: SpilledLengths,
    cache: FilesCache,
    progress: Arc<Progress>,
    out: Sender<Prepared>,
    /// Small files read and not chunked yet, and their bytes.
    group: Vec<GroupFile>,
    group_bytes: Vec<u8>,
    /// The large-file buffer.
    buffer: Vec<u8>,
    /// The stream batch being filled.
    entries: Vec<u8>,
    entry_count: usize,
    records: Vec<u8>,
    record_count: usize,
    record_plaintext: u64,
    batch_bytes: u64,
    /// The catalog batch being filled.
    catalog: Vec<u8>,
    catalog_count: u64,
    /// The whole stream, while every byte of it has been read here.
    hasher: Option<blake3::Hasher>,
    entries_hasher: blake3::Hasher,
    size: u64,
    report: Report,
}

impl TreeSender {
    fn new(
        writer: Writer,
        known: KnownIds,
        cache: FilesCache,
        progress: Arc<Progress>,
        out: Sender<Prepared>,
    ) -> TreeSender {
        let segment = segment_size(&writer.chunker);
        TreeSender {
            writer,
            known,
            sent: sent_set(),
            cache,
            progress,
            out,
            group: Vec::new(),
            group_bytes: Vec::with_capacity(segment),
            buffer: vec![0; segment],
            entries: Vec::new(),
            entry_count: 0,
            records: Vec::new(),
            record_count: 0,
            record_plaintext: 0,
            batch_bytes: 0,
            catalog: Vec::new(),
            catalog_count: 0,
            hasher: Some(blake3::Hasher::new()),
            entries_hasher: blake3::Hasher::new(),
            size: 0,
            report: Report::default(),
        }
    }

    fn run(mut self, mut walk: TreeWalk) -> Result<(FilesCache, Report)> {
        while let Some(walked) = walk.next() {
            match walked {
                Walked::Entry(entry) => self.catalog_line(&entry)?,
                Walked::File {
                    mut entry,
                    path,
                    metadata,
                    file,
                } => {
                    entry.offset = Some(self.size);
                    let cached = self.cache.lookup(&entry.path, &metadata, &self.known);
                    let size = match cached {
                        Some(list) => self.add_unchanged(&entry.path, &metadata, list)?,
                        None => match file.open() {
                            Ok(file) => self.add_read(&entry.path, metadata, file)?,
                            Err(e) => {
                                walk.leave_out(format!("{}: {e}", path.display()));
                                continue;
                            }
                        },
                    };
                    self.report.files += 1;
                    entry.size = size;
                    self.size += size;
                    self.catalog_line(&entry)?;
                }
            }
        }
        self.chunk_group()?;
        self.send_batch()?;
        self.send_catalog()?;
        let end = Prepared::End {
            size: self.size,
            blake3: self.hasher.map(|h| h.finalize().to_hex().to_string()),
            entries_blake3: self.entries_hasher.finalize().to_hex().to_string(),
        };
        send(&self.out, end)?;
        self.report.skipped = walk.skipped().to_vec();
        self.report.unchanged = self.cache.hits;
        Ok((self.cache, self.report))
    }

    /// A file the cache names: its entries, unread.
    fn add_unchanged(
        &mut self,
        path: &str,
        metadata: &EntryMeta,
        list: Vec<ContentEntry>,
    ) -> Result<u64> {
        self.chunk_group()?;
        self.hasher = None;
        let size: u64 = list.iter().map(|e| u64::from(e.len)).sum();
        let mut entries = Vec::with_capacity(list.len() * 36);
        for entry in &list {
            encode_entry(&mut entries, entry);
        }
        self.cache.remember(path, metadata, &list);
        self.progress.add_done(size);
        self.add_segment(Segment {
            list,
            entries,
            records: Vec::new(),
            new_chunks: 0,
            new_bytes: 0,
        })?;
        Ok(size)
    }

    /// A file read here: small ones join the group, large ones go through in segments.
    fn add_read(&mut self, path: &str, metadata: EntryMeta, mut file: File) -> Result<u64> {
        let read_error = |e: std::io::Error| anyhow!(e).context(format!("reading {path}"));
        if metadata.size() <= SMALL_FILE as u64 {
            if self.group_bytes.len() + SMALL_FILE + 1 > self.group_bytes.capacity() {
                self.chunk_group()?;
            }
            let start = self.group_bytes.len();
            (&mut file)
                .take(SMALL_FILE as u64 + 1)
                .read_to_end(&mut self.group_bytes)
                .map_err(read_error)?;
            let len = self.group_bytes.len() - start;
            if len <= SMALL_FILE {
                self.group.push(GroupFile {
                    path: path.to_string(),
                    metadata,
                    len,
                });
                return Ok(len as u64);
            }
            // It grew past the small size while being read: the rest follows as a
            // large file's does, after the bytes already read.
            let head = self.group_bytes.split_off(start);
            self.chunk_group()?;
            return self.add_large(path, &metadata, Box::new(Cursor::new(head).chain(file)));
        }
        self.chunk_group()?;
        self.add_large(path, &metadata, Box::new(file))
    }

    fn add_large(
        &mut self,
        path: &str,
        metadata: &EntryMeta,
        mut source: Box<dyn Read + Send>,
    ) -> Result<u64> {
        let mut buffer = std::mem::take(&mut self.buffer);
        let mut list = Vec::new();
        let params = self.writer.chunker;
        let read = read_segments(&mut *source, &mut buffer, &params, |data, cuts| {
            self.progress.add_done(data.len() as u64);
            if let Some(hasher) = self.hasher.as_mut() {
                update_blake3(hasher, data);
            }
            let segment = chunk_segment(&self.writer, &self.known, &mut self.sent, data, cuts)?;
            list.extend_from_slice(&segment.list);
            self.add_segment(segment)
        })
        .with_context(|| format!("reading {path}"));
        self.buffer = buffer;
        let read = read?;
        self.cache.remember(path, metadata, &list);
        Ok(read)
    }

    /// Cuts, names and compresses the group's files together, then empties the group.
    fn chunk_group(&mut self) -> Result<()> {
        if self.group.is_empty() {
            return Ok(());
        }
        let data = std::mem::take(&mut self.group_bytes);
        let params = self.writer.chunker;
        let mut cuts = Vec::new();
        let mut counts = Vec::with_capacity(self.group.len());
        let mut start = 0;
        for file in &self.group {
            let file_cuts = cut_points(&data[start..start + file.len], &params, true);
            counts.push(file_cuts.len());
            cuts.extend(file_cuts);
            start += file.len;
        }
        self.progress.add_done(data.len() as u64);
        if let Some(hasher) = self.hasher.as_mut() {
            update_blake3(hasher, &data);
        }
        let segment = chunk_segment(&self.writer, &self.known, &mut self.sent, &data, &cuts)?;
        let mut from = 0;
        for (file, count) in std::mem::take(&mut self.group).into_iter().zip(counts) {
            let list = &segment.list[from..from + count];
            self.cache.remember(&file.path, &file.metadata, list);
            from += count;
        }
        self.add_segment(segment)?;
        self.group_bytes = data;
        self.group_bytes.clear();
        Ok(())
    }

    /// Adds chunks to the stream batch, sending it first when they would overfill it.
    fn add_segment(&mut self, segment: Segment) -> Result<()> {
        let chunks = segment.new_chunks;
        if self.entry_count + segment.list.len() > BATCH_ENTRIES
            || self.record_count + chunks > BATCH_CHUNKS
            || self.records.len() + segment.records.len() > BATCH_RECORD_BYTES
            || self.record_plaintext + segment.new_bytes > BATCH_PLAINTEXT
        {
            self.send_batch()?;
        }
        self.entries_hasher.update(&segment.entries);
        self.entries.extend_from_slice(&segment.entries);
        self.entry_count += segment.list.len();
        self.records.extend_from_slice(&segment.records);
        self.record_count += chunks;
        self.record_plaintext += segment.new_bytes;
        self.batch_bytes += segment.list.iter().map(|e| u64::from(e.len)).sum::<u64>();
        Ok(())
    }

    fn send_batch(&mut self) -> Result<()> {
        if self.entry_count == 0 {
            return Ok(());
        }
        let batch = Batch {
            chunks: std::mem::take(&mut self.records).into(),
            entries: std::mem::take(&mut self.entries).into(),
            bytes: std::mem::take(&mut self.batch_bytes),
        };
        self.entry_count = 0;
        self.record_count = 0;
        self.record_plaintext = 0;
        send(&self.out, Prepared::Batch(batch))
    }

    fn catalog_line(&mut self, entry: &CatalogEntry) -> Result<()> {
        self.progress.add_files_done(1);
        entry.encode_line(&mut self.catalog);
        self.catalog_count += 1;
        if self.catalog.len() >= CATALOG_BATCH_BYTES {
            self.send_catalog()?;
        }
        Ok(())
    }

    fn send_catalog(&mut self) -> Result<()> {
        if self.catalog_count == 0 {
            return Ok(());
        }
        let lines = std::mem::take(&mut self.catalog).into();
        let entries = std::mem::take(&mut self.catalog_count);
        send(&self.out, Prepared::Catalog { lines, entries })
    }
}

fn send(out: &Sender<Prepared>, prepared: Prepared) -> Result<()> {
    out.blocking_send(prepared)
        .map_err(|_| anyhow!("the upload stopped"))
}
