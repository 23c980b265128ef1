//! The files cache of `stowage put --server URL DIR`: for each regular file of the
//! previous backup of that directory into that series, what its metadata was (size,
//! modification and change times, inode, device) and the chunks its bytes were cut into.
//! A file whose metadata is unchanged, and whose chunks are all in the session's known
//! set (the series' newest backup on the server), is neither read nor sent: its entries
//! are appended as they were.
//!
//! One cache file per server, series and directory, under `$STOWAGE_CACHE_DIR`,
//! `$XDG_CACHE_HOME/stowage` or `~/.cache/stowage`, in `files/` (docs/FORMAT.md §11b): a
//! JSON header line naming what it is for, then one binary record per file in the walk's
//! order (the catalog's path order), each with a BLAKE3 tag of its bytes. It is replaced
//! (written aside, then renamed) only after a backup is committed; a missing, foreign or
//! damaged cache costs a full read, never a wrong backup of a changed file.
//!
//! Records, not JSON lines: an unchanged tree is mostly this cache read and written
//! again, and parsing JSON and hex took two fifths of the client's time on one.
//!
//! Neither cache is held in memory: the walk visits files in path order, so the previous
//! cache is read in step with it (records of files gone since are passed over), and the
//! new one is written aside record by record. A tree of a million files costs the cache
//! a record at a time, not a map of every path.
//!
//! A file changed within a second before the backup started is not remembered: a change
//! in the same timestamp tick after it was read would not show in its metadata.

use std::cmp::Ordering;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::format::catalog_index::path_cmp;
use crate::format::content::ContentEntry;
use crate::id::ChunkId;
use crate::repo::chunk_runs::KnownIds;
use crate::repo::dir_handles::EntryMeta;

const FORMAT: u32 = 2;
/// The header line is at most this long.
const MAX_HEADER_BYTES: u64 = 64 << 10;
/// A record's body is at most this long (a file of 1.8 M chunks); a file with more
/// chunks is not remembered, and a longer record ends the use of the cache.
const MAX_RECORD_BYTES: usize = 64 << 20;
/// A record's body before its path and chunks: the path's length, then seven figures.
const RECORD_FIXED_BYTES: usize = 4 + 7 * 8;
/// Each chunk: its id and its length as u32 LE.
const CHUNK_RECORD_BYTES: usize = 36;
/// The BLAKE3 tag after each body: its first 8 bytes.
const TAG_BYTES: usize = 8;

#[derive(Serialize, Deserialize, PartialEq, Eq)]
struct Header {
    stowage_files_cache: u32,
    server: String,
    series: String,
    root: String,
}

/// What identifies an unchanged file: nanosecond times, inode and device.
#[derive(PartialEq, Eq, Clone, Copy, Debug)]
struct Stat {
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    ino: u64,
    dev: u64,
}

impl Stat {
    fn of(metadata: &EntryMeta) -> Stat {
        Stat {
            size: metadata.size(),
            mtime: (metadata.mtime(), metadata.mtime_nsec()),
            ctime: (metadata.ctime(), metadata.ctime_nsec()),
            ino: metadata.ino(),
            dev: metadata.dev(),
        }
    }

    fn figures(&self) -> [u64; 7] {
        [
            self.size,
            self.mtime.0 as u64,
            self.mtime.1 as u64,
            self.ctime.0 as u64,
            self.ctime.1 as u64,
            self.ino,
            self.dev,
        ]
    }

    fn from_figures(f: [u64; 7]) -> Stat {
        Stat {
            size: f[0],
            mtime: (f[1] as i64, f[2] as i64),
            ctime: (f[3] as i64, f[4] as i64),
            ino: f[5],
            dev: f[6],
        }
    }
}

/// One file's record: its catalog path, its metadata, and its chunks as stored (36
/// bytes each), decoded only when the file turns out unchanged.
struct Record {
    path: String,
    stat: Stat,
    chunks: Vec<u8>,
}

/// Encodes a record's body into `out` (cleared first).
fn encode_record(out: &mut Vec<u8>, path: &str, stat: &Stat, entries: &[ContentEntry]) {
    out.clear();
    out.extend_from_slice(&(path.len() as u32).to_le_bytes());
    out.extend_from_slice(path.as_bytes());
    for figure in stat.figures() {
        out.extend_from_slice(&figure.to_le_bytes());
    }
    for entry in entries {
        out.extend_from_slice(entry.id.as_bytes());
        out.extend_from_slice(&entry.len.to_le_bytes());
    }
}

/// Decodes a record's body; `None` when it is not one.
fn decode_record(body: &[u8]) -> Option<Record> {
    let (len, rest) = body.split_first_chunk::<4>()?;
    let len = u32::from_le_bytes(*len) as usize;
    let (path, rest) = rest.split_at_checked(len)?;
    let path = std::str::from_utf8(path).ok()?.to_string();
    let mut figures = [0u64; 7];
    let mut rest = rest;
    for figure in &mut figures {
        let (bytes, tail) = rest.split_first_chunk::<8>()?;
        *figure = u64::from_le_bytes(*bytes);
        rest = tail;
    }
    if !rest.len().is_multiple_of(CHUNK_RECORD_BYTES) {
        return None;
    }
    Some(Record {
        path,
        stat: Stat::from_figures(figures),
        chunks: rest.to_vec(),
    })
}

fn tag(body: &[u8]) -> [u8; TAG_BYTES] {
    let hash = blake3::hash(body);
    let mut tag = [0u8; TAG_BYTES];
    tag.copy_from_slice(&hash.as_bytes()[..TAG_BYTES]);
    tag
}

/// The cache of one directory's backups into one series on one server.
pub struct FilesCache {
    file: PathBuf,
    /// The previous backup's records, read in step with the walk.
    old: Option<OldRecords>,
    /// This backup's records, written aside as the walk goes; `Err` once that failed.
    new: std::result::Result<BufWriter<tempfile::NamedTempFile>, anyhow::Error>,
    /// The record being written (kept to reuse its allocation).
    body: Vec<u8>,
    /// Files changed at or after this second are not remembered.
    cutoff_secs: i64,
    pub hits: u64,
}

impl FilesCache {
    /// The cache for `root` backed up into `series` on `server`; empty when `force`, or
    /// when there is none yet or it cannot be read.
    pub fn open(server: &str, series: &str, root: &Path, force: bool) -> FilesCache {
        let root = fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
        let header = Header {
            stowage_files_cache: FORMAT,
            server: server.trim_end_matches('/').to_string(),
            series: series.to_string(),
            root: root.display().to_string(),
        };
        let name = blake3::hash(
            format!("{}\0{}\0{}", header.server, header.series, header.root).as_bytes(),
        );
        let name = &name.to_hex()[..32];
        let dir = cache_dir().join("files");
        let file = dir.join(format!("{name}.files"));
        let old = match force {
            true => None,
            false => OldRecords::open(&file, &header),
        };
        // The JSON-lines cache of earlier versions, replaced by this one.
        let _ = fs::remove_file(dir.join(format!("{name}.jsonl")));
        let new = start_aside(&file, &header);
        let started = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        FilesCache {
            file,
            old,
            new,
            body: Vec::new(),
            cutoff_secs: started - 1,
            hits: 0,
        }
    }

    /// The chunks of the file at `path` (its catalog path) when its metadata is unchanged
    /// and every chunk is in `known`. Files are looked up in the walk's order.
    pub fn lookup(
        &mut self,
        path: &str,
        metadata: &EntryMeta,
        known: &KnownIds,
    ) -> Option<Vec<ContentEntry>> {
        let Record { stat, chunks, .. } = self.old.as_mut()?.take(path)?;
        if stat != Stat::of(metadata) {
            return None;
        }
        let entries = decode_chunks(&chunks)?;
        let total: u64 = entries.iter().map(|e| u64::from(e.len)).sum();
        // A known set that cannot be read back makes a miss: the file is read again.
        if total != stat.size
            || !entries
                .iter()
                .all(|e| known.contains(&e.id).unwrap_or(false))
        {
            return None;
        }
        self.hits += 1;
        Some(entries)
    }

    /// Remembers a file backed up as `entries`, unless it changed too recently.
    pub fn remember(&mut self, path: &str, metadata: &EntryMeta, entries: &[ContentEntry]) {
        let stat = Stat::of(metadata);
        let total: u64 = entries.iter().map(|e| u64::from(e.len)).sum();
        if stat.mtime.0 >= self.cutoff_secs
            || stat.ctime.0 >= self.cutoff_secs
            || total != stat.size
            || RECORD_FIXED_BYTES + path.len() + entries.len() * CHUNK_RECORD_BYTES
                > MAX_RECORD_BYTES
        {
            return;
        }
        let Ok(out) = self.new.as_mut() else {
            return;
        };
        encode_record(&mut self.body, path, &stat, entries);
        let written = out
            .write_all(&(self.body.len() as u32).to_le_bytes())
            .and_then(|()| out.write_all(&self.body))
            .and_then(|()| out.write_all(&tag(&self.body)));
        if let Err(error) = written {
            self.new = Err(anyhow::Error::new(error).context("writing the new files cache"));
        }
    }

    /// Replaces the cache with the files remembered in this backup.
    pub fn save(self) -> Result<()> {
        let aside = self.new?.into_inner().map_err(|e| e.into_error())?;
        aside
            .persist(&self.file)
            .with_context(|| format!("writing the files cache {}", self.file.display()))?;
        Ok(())
    }
}

/// Starts the new cache beside the old one, its header written.
fn start_aside(file: &Path, header: &Header) -> Result<BufWriter<tempfile::NamedTempFile>> {
    let dir = file.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let aside = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a file in {}", dir.display()))?;
    let mut out = BufWriter::with_capacity(1 << 16, aside);
    serde_json::to_writer(&mut out, header)?;
    out.write_all(b"\n")?;
    Ok(out)
}

/// The previous backup's cache records, read one at a time as the walk asks for them.
struct OldRecords {
    input: BufReader<File>,
    /// The body being read (kept to reuse its allocation).
    body: Vec<u8>,
    /// The next record, not yet asked for; `None` at the end, or from a record that
    /// cannot be read, fails its tag or is out of order on (the rest of the cache is
    /// not used).
    next: Option<Record>,
}

impl OldRecords {
    /// The cache's records, when its header is this cache's.
    fn open(file: &Path, header: &Header) -> Option<OldRecords> {
        let mut input = BufReader::with_capacity(1 << 16, File::open(file).ok()?);
        let mut first = Vec::new();
        (&mut input)
            .take(MAX_HEADER_BYTES)
            .read_until(b'\n', &mut first)
            .ok()?;
        let first: Header = serde_json::from_slice(first.strip_suffix(b"\n")?).ok()?;
        if first != *header {
            return None;
        }
        let mut old = OldRecords {
            input,
            body: Vec::new(),
            next: None,
        };
        old.read_next(None);
        Some(old)
    }

    /// Reads the record after the one for `after`, which must come later in path order.
    fn read_next(&mut self, after: Option<&str>) {
        self.next = self
            .read_record()
            .filter(|record| after.is_none_or(|after| path_cmp(after, &record.path).is_lt()));
    }

    fn read_record(&mut self) -> Option<Record> {
        let mut len = [0u8; 4];
        self.input.read_exact(&mut len).ok()?;
        let len = u32::from_le_bytes(len) as usize;
        if !(RECORD_FIXED_BYTES..=MAX_RECORD_BYTES).contains(&len) {
            return None;
        }
        self.body.resize(len, 0);
        self.input.read_exact(&mut self.body).ok()?;
        let mut stored = [0u8; TAG_BYTES];
        self.input.read_exact(&mut stored).ok()?;
        if stored != tag(&self.body) {
            return None;
        }
        decode_record(&self.body)
    }

    /// The record for `path`, if the cache has one; the records before it (files since
    /// deleted) are passed over. Asked in path order.
    fn take(&mut self, path: &str) -> Option<Record> {
        loop {
            match path_cmp(&self.next.as_ref()?.path, path) {
                Ordering::Less => {
                    let passed = self.next.take()?;
                    self.read_next(Some(&passed.path));
                }
                Ordering::Equal => {
                    let found = self.next.take()?;
                    self.read_next(Some(&found.path));
                    return Some(found);
                }
                Ordering::Greater => return None,
            }
        }
    }
}

fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("STOWAGE_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("stowage");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| ".".into());
    PathBuf::from(home).join(".cache").join("stowage")
}

fn decode_chunks(bytes: &[u8]) -> Option<Vec<ContentEntry>> {
    bytes
        .chunks_exact(CHUNK_RECORD_BYTES)
        .map(|record| {
            let (id, len) = record.split_first_chunk::<32>()?;
            Some(ContentEntry {
                id: ChunkId::from_slice(id)?,
                len: u32::from_le_bytes(len.try_into().ok()?),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            stowage_files_cache: FORMAT,
            server: "http://server".into(),
            series: "s".into(),
            root: "/data".into(),
        }
    }

    /// Figures 5 to 11.
    fn stat() -> Stat {
        Stat {
            size: 5,
            mtime: (6, 7),
            ctime: (8, 9),
            ino: 10,
            dev: 11,
        }
    }

    /// A file's record with its length and tag, as the cache holds it.
    fn record(path: &str, entries: &[ContentEntry]) -> Vec<u8> {
        let mut body = Vec::new();
        encode_record(&mut body, path, &stat(), entries);
        let mut out = (body.len() as u32).to_le_bytes().to_vec();
        out.extend_from_slice(&body);
        out.extend_from_slice(&tag(&body));
        out
    }

    fn cache_file(dir: &Path, paths: &[&str]) -> PathBuf {
        let file = dir.join("cache.files");
        let mut bytes = serde_json::to_vec(&header()).expect("serializes");
        bytes.push(b'\n');
        for path in paths {
            bytes.extend_from_slice(&record(path, &[]));
        }
        fs::write(&file, bytes).expect("write");
        file
    }

    #[test]
    fn a_record_is_written_as_the_cache_format_says() {
        let entry = ContentEntry {
            id: ChunkId::from_slice(&[0xab; 32]).expect("32 bytes"),
            len: 5,
        };
        let bytes = record("a/b", &[entry]);
        let mut body = vec![3, 0, 0, 0];
        body.extend_from_slice(b"a/b");
        for figure in 5u64..=11 {
            body.extend_from_slice(&figure.to_le_bytes());
        }
        body.extend_from_slice(&[0xab; 32]);
        body.extend_from_slice(&[5, 0, 0, 0]);
        let mut expected = (body.len() as u32).to_le_bytes().to_vec();
        expected.extend_from_slice(&body);
        expected.extend_from_slice(&blake3::hash(&body).as_bytes()[..8]);
        assert_eq!(bytes, expected);
        let decoded = decode_record(&body).expect("decodes");
        assert_eq!((decoded.path.as_str(), decoded.stat), ("a/b", stat()));
        let chunks = decode_chunks(&decoded.chunks).expect("chunks");
        assert_eq!(
            (chunks.len(), chunks[0].id, chunks[0].len),
            (1, entry.id, 5)
        );
    }

    #[test]
    fn records_are_found_in_path_order_passing_over_files_gone_since() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Path order: "b" and what is inside it come before "b.txt".
        let file = cache_file(dir.path(), &["a", "b/c", "b/d/e", "b.txt", "z"]);
        let mut old = OldRecords::open(&file, &header()).expect("opens");
        assert!(old.take("0").is_none(), "before every record");
        assert_eq!(old.take("b/c").expect("found").path, "b/c");
        assert!(
            old.take("b/d/a").is_none(),
            "a new file between two records"
        );
        assert_eq!(old.take("b.txt").expect("found").path, "b.txt");
        assert!(old.take("y").is_none());
        assert_eq!(old.take("z").expect("found").path, "z");
        assert!(old.take("zz").is_none(), "past the end");
    }

    #[test]
    fn a_record_out_of_order_or_damaged_ends_the_use_of_the_cache() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = cache_file(dir.path(), &["a", "c", "b", "d"]);
        let mut old = OldRecords::open(&file, &header()).expect("opens");
        assert!(old.take("a").is_some());
        assert!(old.take("c").is_some());
        assert!(
            old.take("d").is_none(),
            "nothing is trusted after a record out of order"
        );

        // One flipped bit in the second record's figures: its tag no longer matches.
        let file = cache_file(dir.path(), &["a", "c", "d"]);
        let mut bytes = fs::read(&file).expect("read");
        let header_len = bytes.iter().position(|b| *b == b'\n').expect("header") + 1;
        let second = header_len + record("a", &[]).len();
        bytes[second + 4 + 4 + 1 + 3] ^= 1;
        fs::write(&file, &bytes).expect("write");
        let mut old = OldRecords::open(&file, &header()).expect("opens");
        assert!(old.take("a").is_some());
        assert!(old.take("c").is_none(), "a record failing its tag");
        assert!(old.take("d").is_none(), "and everything after it");

        // Cut short in the middle of a record.
        fs::write(&file, &bytes[..second + 10]).expect("write");
        let mut old = OldRecords::open(&file, &header()).expect("opens");
        assert!(old.take("a").is_some());
        assert!(old.take("c").is_none());

        let other = Header {
            series: "t".into(),
            ..header()
        };
        assert!(
            OldRecords::open(&file, &other).is_none(),
            "another series' cache"
        );
        let earlier = Header {
            stowage_files_cache: 1,
            ..header()
        };
        let mut bytes = serde_json::to_vec(&earlier).expect("serializes");
        bytes.extend_from_slice(b"\n{\"path\":\"a\"}\n");
        fs::write(&file, bytes).expect("write");
        assert!(
            OldRecords::open(&file, &header()).is_none(),
            "a cache of the earlier JSON-lines format"
        );
    }
}
