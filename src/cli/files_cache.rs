//! The files cache of `stowage put --server URL DIR`: for each regular file of the
//! previous backup of that directory into that series, what its metadata was (size,
//! modification and change times, inode, device) and the chunks its bytes were cut into.
//! A file whose metadata is unchanged, and whose chunks are all in the session's known
//! set (the series' newest backup on the server), is neither read nor sent: its entries
//! are appended as they were.
//!
//! One cache file per server, series and directory, under `$STOWAGE_CACHE_DIR`,
//! `$XDG_CACHE_HOME/stowage` or `~/.cache/stowage`, in `files/`. It is JSON lines: a
//! header naming what it is for, then one line per file. It is replaced (written aside,
//! then renamed) only after a backup is committed; a missing, foreign or damaged cache
//! costs a full read, never a wrong backup of a changed file.
//!
//! A file changed within a second before the backup started is not remembered: a change
//! in the same timestamp tick after it was read would not show in its metadata.

use std::collections::HashMap;
use std::fs::{self, File, Metadata};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::format::content::ContentEntry;
use crate::id::ChunkId;
use crate::repo::chunk_runs::KnownIds;

const FORMAT: u32 = 1;

#[derive(Serialize, Deserialize, PartialEq, Eq)]
struct Header {
    stowage_files_cache: u32,
    server: String,
    series: String,
    root: String,
}

/// What identifies an unchanged file: nanosecond times, inode and device.
#[derive(Serialize, Deserialize, PartialEq, Eq, Clone, Copy)]
struct Stat {
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    ino: u64,
    dev: u64,
}

impl Stat {
    fn of(metadata: &Metadata) -> Stat {
        Stat {
            size: metadata.size(),
            mtime: (metadata.mtime(), metadata.mtime_nsec()),
            ctime: (metadata.ctime(), metadata.ctime_nsec()),
            ino: metadata.ino(),
            dev: metadata.dev(),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Line {
    path: String,
    #[serde(flatten)]
    stat: Stat,
    /// The file's chunks: per chunk its id and length as little-endian u32, in hex.
    chunks: String,
}

/// The cache of one directory's backups into one series on one server.
pub struct FilesCache {
    file: PathBuf,
    header: Header,
    old: HashMap<String, (Stat, String)>,
    new: Vec<Line>,
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
        let file = cache_dir()
            .join("files")
            .join(format!("{}.jsonl", &name.to_hex()[..32]));
        let old = if force {
            HashMap::new()
        } else {
            load(&file, &header).unwrap_or_default()
        };
        let started = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        FilesCache {
            file,
            header,
            old,
            new: Vec::new(),
            cutoff_secs: started - 1,
            hits: 0,
        }
    }

    /// The chunks of the file at `path` (its catalog path) when its metadata is unchanged
    /// and every chunk is in `known`.
    pub fn lookup(
        &mut self,
        path: &str,
        metadata: &Metadata,
        known: &KnownIds,
    ) -> Option<Vec<ContentEntry>> {
        let (stat, chunks) = self.old.get(path)?;
        if *stat != Stat::of(metadata) {
            return None;
        }
        let entries = decode_chunks(chunks)?;
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
    pub fn remember(&mut self, path: &str, metadata: &Metadata, entries: &[ContentEntry]) {
        let stat = Stat::of(metadata);
        let total: u64 = entries.iter().map(|e| u64::from(e.len)).sum();
        if stat.mtime.0 >= self.cutoff_secs
            || stat.ctime.0 >= self.cutoff_secs
            || total != stat.size
        {
            return;
        }
        let mut chunks = String::with_capacity(entries.len() * 72);
        for entry in entries {
            chunks.push_str(&hex::encode(entry.id.as_bytes()));
            chunks.push_str(&hex::encode(entry.len.to_le_bytes()));
        }
        self.new.push(Line {
            path: path.to_string(),
            stat,
            chunks,
        });
    }

    /// Replaces the cache with the files remembered in this backup.
    pub fn save(self) -> Result<()> {
        let dir = self.file.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut aside = tempfile::NamedTempFile::new_in(dir)?;
        {
            let mut out = BufWriter::new(aside.as_file_mut());
            serde_json::to_writer(&mut out, &self.header)?;
            out.write_all(b"\n")?;
            for line in &self.new {
                serde_json::to_writer(&mut out, line)?;
                out.write_all(b"\n")?;
            }
            out.flush()?;
        }
        aside
            .persist(&self.file)
            .with_context(|| format!("writing the files cache {}", self.file.display()))?;
        Ok(())
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

/// The cache's lines, when its header is this cache's; `None` when it cannot be used.
fn load(file: &Path, header: &Header) -> Option<HashMap<String, (Stat, String)>> {
    let mut lines = BufReader::new(File::open(file).ok()?).lines();
    let first: Header = serde_json::from_str(&lines.next()?.ok()?).ok()?;
    if first != *header {
        return None;
    }
    let mut files = HashMap::new();
    for line in lines {
        let line: Line = serde_json::from_str(&line.ok()?).ok()?;
        files.insert(line.path, (line.stat, line.chunks));
    }
    Some(files)
}

fn decode_chunks(text: &str) -> Option<Vec<ContentEntry>> {
    let bytes = hex::decode(text).ok()?;
    if !bytes.len().is_multiple_of(36) {
        return None;
    }
    bytes
        .chunks_exact(36)
        .map(|record| {
            let (id, len) = record.split_at(32);
            Some(ContentEntry {
                id: ChunkId::from_slice(id)?,
                len: u32::from_le_bytes(len.try_into().ok()?),
            })
        })
        .collect()
}
