//! The files cache of `stowage put --server URL DIR`: for each regular file of the
//! previous backup of that directory into that series, what its metadata was (size,
//! modification and change times, inode, device) and the chunks its bytes were cut into.
//! A file whose metadata is unchanged, and whose chunks are all in the session's known
//! set (the series' newest backup on the server), is neither read nor sent: its entries
//! are appended as they were.
//!
//! One cache file per server, series and directory, under `$STOWAGE_CACHE_DIR`,
//! `$XDG_CACHE_HOME/stowage` or `~/.cache/stowage`, in `files/`. It is JSON lines: a
//! header naming what it is for, then one line per file, in the walk's order (the
//! catalog's path order). It is replaced (written aside, then renamed) only after a
//! backup is committed; a missing, foreign or damaged cache costs a full read, never a
//! wrong backup of a changed file.
//!
//! Neither cache is held in memory: the walk visits files in path order, so the previous
//! cache is read in step with it (lines of files gone since are passed over), and the
//! new one is written aside line by line. A tree of a million files costs the cache a
//! line at a time, not a map of every path.
//!
//! A file changed within a second before the backup started is not remembered: a change
//! in the same timestamp tick after it was read would not show in its metadata.

use std::cmp::Ordering;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, BufWriter, Lines, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::format::catalog_index::path_cmp;
use crate::format::content::ContentEntry;
use crate::id::ChunkId;
use crate::repo::chunk_runs::KnownIds;
use crate::repo::dir_handles::EntryMeta;

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
    fn of(metadata: &EntryMeta) -> Stat {
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
    /// The previous backup's lines, read in step with the walk.
    old: Option<OldLines>,
    /// This backup's lines, written aside as the walk goes; `Err` once that failed.
    new: std::result::Result<BufWriter<tempfile::NamedTempFile>, anyhow::Error>,
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
        let old = match force {
            true => None,
            false => OldLines::open(&file, &header),
        };
        let new = start_aside(&file, &header);
        let started = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        FilesCache {
            file,
            old,
            new,
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
        let Line { stat, chunks, .. } = self.old.as_mut()?.take(path)?;
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
        {
            return;
        }
        let Ok(out) = self.new.as_mut() else {
            return;
        };
        let mut chunks = String::with_capacity(entries.len() * 72);
        for entry in entries {
            chunks.push_str(&hex::encode(entry.id.as_bytes()));
            chunks.push_str(&hex::encode(entry.len.to_le_bytes()));
        }
        let line = Line {
            path: path.to_string(),
            stat,
            chunks,
        };
        let written = serde_json::to_writer(&mut *out, &line)
            .map_err(std::io::Error::from)
            .and_then(|()| out.write_all(b"\n"));
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
    let mut out = BufWriter::new(aside);
    serde_json::to_writer(&mut out, header)?;
    out.write_all(b"\n")?;
    Ok(out)
}

/// The previous backup's cache lines, read one at a time as the walk asks for them.
struct OldLines {
    lines: Lines<BufReader<File>>,
    /// The next line, not yet asked for; `None` at the end, or from a line that cannot
    /// be parsed or is out of order on (the rest of the cache is not used).
    next: Option<Line>,
}

impl OldLines {
    /// The cache's lines, when its header is this cache's.
    fn open(file: &Path, header: &Header) -> Option<OldLines> {
        let mut lines = BufReader::new(File::open(file).ok()?).lines();
        let first: Header = serde_json::from_str(&lines.next()?.ok()?).ok()?;
        if first != *header {
            return None;
        }
        let mut old = OldLines { lines, next: None };
        old.read_next(None);
        Some(old)
    }

    /// Reads the line after the one for `after`, which must come later in path order.
    fn read_next(&mut self, after: Option<&str>) {
        self.next = self
            .lines
            .next()
            .and_then(|line| serde_json::from_str::<Line>(&line.ok()?).ok())
            .filter(|line| after.is_none_or(|after| path_cmp(after, &line.path).is_lt()));
    }

    /// The line for `path`, if the cache has one; the lines before it (files since
    /// deleted) are passed over. Asked in path order.
    fn take(&mut self, path: &str) -> Option<Line> {
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

    /// A file's line, its figures 1 to 7.
    fn line(path: &str, chunks: &str) -> String {
        let stat = Stat {
            size: 5,
            mtime: (1, 2),
            ctime: (3, 4),
            ino: 6,
            dev: 7,
        };
        let line = Line {
            path: path.into(),
            stat,
            chunks: chunks.into(),
        };
        serde_json::to_string(&line).expect("serializes")
    }

    fn cache_file(dir: &Path, paths: &[&str]) -> PathBuf {
        let file = dir.join("cache.jsonl");
        let mut text = serde_json::to_string(&header()).expect("serializes");
        for path in paths {
            text.push('\n');
            text.push_str(&line(path, ""));
        }
        fs::write(&file, text).expect("write");
        file
    }

    #[test]
    fn a_line_is_written_as_the_cache_format_says() {
        assert_eq!(
            line("a/b", "00"),
            r#"{"path":"a/b","size":5,"mtime":[1,2],"ctime":[3,4],"ino":6,"dev":7,"chunks":"00"}"#
        );
    }

    #[test]
    fn lines_are_found_in_path_order_passing_over_files_gone_since() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Path order: "b" and what is inside it come before "b.txt".
        let file = cache_file(dir.path(), &["a", "b/c", "b/d/e", "b.txt", "z"]);
        let mut old = OldLines::open(&file, &header()).expect("opens");
        assert!(old.take("0").is_none(), "before every line");
        assert_eq!(old.take("b/c").expect("found").path, "b/c");
        assert!(old.take("b/d/a").is_none(), "a new file between two lines");
        assert_eq!(old.take("b.txt").expect("found").path, "b.txt");
        assert!(old.take("y").is_none());
        assert_eq!(old.take("z").expect("found").path, "z");
        assert!(old.take("zz").is_none(), "past the end");
    }

    #[test]
    fn a_line_out_of_order_or_damaged_ends_the_use_of_the_cache() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = cache_file(dir.path(), &["a", "c", "b", "d"]);
        let mut old = OldLines::open(&file, &header()).expect("opens");
        assert!(old.take("a").is_some());
        assert!(old.take("c").is_some());
        assert!(
            old.take("d").is_none(),
            "nothing is trusted after a line out of order"
        );
        let mut text = fs::read_to_string(&file).expect("read");
        text = text.replace("\"c\"", "\"c");
        fs::write(&file, text).expect("write");
        let mut old = OldLines::open(&file, &header()).expect("opens");
        assert!(old.take("a").is_some());
        assert!(old.take("d").is_none());
        let other = Header {
            series: "t".into(),
            ..header()
        };
        assert!(
            OldLines::open(&file, &other).is_none(),
            "another series' cache"
        );
    }
}
