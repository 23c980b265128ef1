//! Finding one path, and listing one folder, in a backup's catalog without reading all of
//! it. With the catalog's index (`format::catalog_index`) a lookup reads the one block
//! that can hold the path, and a folder listing reads its direct entries and jumps over
//! each subfolder's contents to the mark past them; a million-entry catalog answers in a
//! few block reads. Without an index (a backup written before indexes, a tar archive not in
//! path order) both read the catalog from its start, stopping as soon as they can.
//!
//! Every mark a reader seeks to is checked against the line found there: a damaged index
//! is reported as a corrupt catalog, never followed to a wrong answer.

use std::io::{BufReader, Read};
use std::sync::Arc;

use tokio::runtime::Handle;

use super::restore::{read_content, StreamReader, CATALOG_READ_AHEAD_UNITS};
use super::tree::{decode_entry, read_line};
use super::{RepoError, RepoInner, Repository};
use crate::format::catalog::{is_safe_relative_path, CatalogEntry};
use crate::format::catalog_index::{
    block_for, decode_marks, is_inside, is_past, path_cmp, IndexMark, BLOCK_BYTES, MAX_MARK_BYTES,
};
use crate::format::manifest::{BackupManifest, CatalogRef};

/// The direct entries of one folder, in catalog order, a page at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderPage {
    pub entries: Vec<CatalogEntry>,
    /// More entries follow the last one (ask again with its name as `after`).
    pub more: bool,
    /// The catalog's index was used (false: the catalog was read from its start).
    pub indexed: bool,
    /// Times reading started or jumped ahead in the catalog.
    pub reads: u32,
}

impl Repository {
    /// The catalog entry at `path`, if the backup has a catalog and the path is in it.
    pub async fn catalog_entry(
        &self,
        manifest: &BackupManifest,
        path: &str,
    ) -> Result<Option<CatalogEntry>, RepoError> {
        if !is_safe_relative_path(path) {
            return Err(RepoError::InvalidInput(format!(
                "{path:?} is not a relative path inside a backup"
            )));
        }
        let path = path.to_string();
        self.with_cursor(manifest, move |cursor| cursor.find(&path))
            .await
            .map(Option::flatten)
    }

    /// Up to `limit` direct entries of the folder `dir` (`""`: the top), those after the
    /// entry named `after` when given.
    pub async fn catalog_folder(
        &self,
        manifest: &BackupManifest,
        dir: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<FolderPage, RepoError> {
        if !dir.is_empty() && !is_safe_relative_path(dir) {
            return Err(RepoError::InvalidInput(format!(
                "{dir:?} is not a folder path inside a backup"
            )));
        }
        if let Some(name) = after {
            if name.contains('/') || !is_safe_relative_path(name) {
                return Err(RepoError::InvalidInput(format!(
                    "{name:?} is not the name of an entry in a folder"
                )));
            }
        }
        if limit == 0 {
            return Err(RepoError::InvalidInput(
                "a page holds at least one entry".into(),
            ));
        }
        let (dir, after) = (dir.to_string(), after.map(str::to_string));
        let page = self
            .with_cursor(manifest, move |cursor| {
                cursor.folder(&dir, after.as_deref(), limit)
            })
            .await?;
        Ok(page.unwrap_or(FolderPage {
            entries: Vec::new(),
            more: false,
            indexed: false,
            reads: 0,
        }))
    }

    /// Reads a backup's catalog through, checking every line, the entry count its
    /// manifest records, and its index when it has one: each mark at its entry, path and
    /// offset, and the entries in path order. Returns the entries read.
    pub async fn verify_catalog(&self, manifest: &BackupManifest) -> Result<u64, RepoError> {
        Ok(self
            .with_cursor(manifest, |cursor| cursor.verify())
            .await?
            .unwrap_or(0))
    }

    /// Runs `work` on a cursor over the backup's catalog, on a blocking thread; `None`
    /// when the backup has no catalog.
    async fn with_cursor<T: Send + 'static>(
        &self,
        manifest: &BackupManifest,
        work: impl FnOnce(&mut CatalogCursor) -> Result<T, RepoError> + Send + 'static,
    ) -> Result<Option<T>, RepoError> {
        if manifest.catalog.is_none() {
            return Ok(None);
        }
        let (inner, handle, manifest) = (self.inner.clone(), Handle::current(), manifest.clone());
        tokio::task::spawn_blocking(
            move || match CatalogCursor::open(inner, handle, &manifest)? {
                Some(mut cursor) => work(&mut cursor).map(Some),
                None => Ok(None),
            },
        )
        .await
        .map_err(|e| RepoError::Internal(format!("catalog task failed: {e}")))?
    }
}

/// Reads and checks a catalog's index; `None` when it has none.
fn load_marks(
    inner: &Arc<RepoInner>,
    handle: &Handle,
    catalog: &CatalogRef,
    backup: &str,
) -> Result<Option<Vec<IndexMark>>, RepoError> {
    let Some(index) = &catalog.index else {
        return Ok(None);
    };
    let corrupt = |reason: String| RepoError::CorruptCatalog {
        backup: backup.to_string(),
        reason,
    };
    let size = index.content.size;
    if size > index.marks.saturating_mul(MAX_MARK_BYTES as u64 + 1) {
        return Err(corrupt(format!(
            "its index of {} marks takes {size} bytes",
            index.marks
        )));
    }
    let mut text = Vec::new();
    // Read to its end, so the reader's task has ended when this returns (a reader dropped
    // early ends its task a moment later, holding the repository until then).
    StreamReader::new(
        handle,
        read_content(
            inner.clone(),
            &index.content,
            0..size,
            CATALOG_READ_AHEAD_UNITS,
        ),
    )
    .read_to_end(&mut text)
    .map_err(|e| super::restore::unwrap_io(e, "catalog index"))?;
    decode_marks(&text, index.marks, catalog.content.size, catalog.entries)
        .map(Some)
        .map_err(|e| corrupt(e.to_string()))
}

/// A reader of catalog lines that can restart at an index mark.
pub(super) struct CatalogCursor {
    inner: Arc<RepoInner>,
    handle: Handle,
    catalog: CatalogRef,
    backup: String,
    marks: Option<Vec<IndexMark>>,
    reader: Option<BufReader<StreamReader>>,
    /// Where the next line starts in the catalog text.
    offset: u64,
    /// The path the next line must hold (the mark just sought).
    expect: Option<String>,
    line: Vec<u8>,
    /// Times reading started (a seek).
    reads: u32,
}

impl CatalogCursor {
    /// A cursor over `manifest`'s catalog, its index read and checked (blocking); `None`
    /// when the backup has no catalog.
    pub(super) fn open(
        inner: Arc<RepoInner>,
        handle: Handle,
        manifest: &BackupManifest,
    ) -> Result<Option<CatalogCursor>, RepoError> {
        let Some(catalog) = manifest.catalog.clone() else {
            return Ok(None);
        };
        let backup = manifest.id.to_string();
        let marks = load_marks(&inner, &handle, &catalog, &backup)?;
        Ok(Some(CatalogCursor {
            inner,
            handle,
            catalog,
            backup,
            marks,
            reader: None,
            offset: 0,
            expect: None,
            line: Vec::new(),
            reads: 0,
        }))
    }

    /// Whether the catalog has an index (and so is in path order).
    pub(super) fn is_indexed(&self) -> bool {
        self.marks.is_some()
    }

    /// Reads on from `offset`; the line there must be `expect`'s when given.
    fn seek(&mut self, offset: u64, expect: Option<String>) {
        let content = &self.catalog.content;
        let stream = read_content(
            self.inner.clone(),
            content,
            offset..content.size,
            CATALOG_READ_AHEAD_UNITS,
        );
        let reader = StreamReader::new(&self.handle, stream);
        self.reader = Some(BufReader::with_capacity(64 * 1024, reader));
        self.offset = offset;
        self.expect = expect;
        self.reads += 1;
    }

    fn seek_mark(&mut self, mark: &IndexMark) {
        self.seek(mark.offset, Some(mark.path.clone()));
    }

    pub(super) fn next(&mut self) -> Result<Option<CatalogEntry>, RepoError> {
        if !self.next_line()? {
            return Ok(None);
        }
        self.decode_line().map(Some)
    }

    /// Reads the next line into `self.line`; false at the end.
    fn next_line(&mut self) -> Result<bool, RepoError> {
        if self.reader.is_none() {
            self.seek(0, None);
        }
        let Some(reader) = self.reader.as_mut() else {
            return Ok(false);
        };
        let Some(taken) = read_line(reader, &mut self.line, &self.backup)? else {
            return Ok(false);
        };
        self.offset += taken;
        Ok(true)
    }

    /// Decodes the line just read, checking it holds the mark just sought.
    fn decode_line(&mut self) -> Result<CatalogEntry, RepoError> {
        let entry = decode_entry(&self.line, &self.backup)?;
        if let Some(expected) = self.expect.take() {
            if entry.path != expected {
                return Err(RepoError::CorruptCatalog {
                    backup: self.backup.clone(),
                    reason: format!(
                        "its index places {expected:?} where the catalog holds {:?}",
                        entry.path
                    ),
                });
            }
        }
        Ok(entry)
    }

    /// Whether the line just read starts with `prefix` (and need not be checked against a
    /// mark): how a folder listing passes over a subfolder's lines without decoding them.
    fn line_starts_with(&self, prefix: &[u8]) -> bool {
        self.expect.is_none() && self.line.starts_with(prefix)
    }

    /// Bytes ahead past which a jump to a mark beats reading on: a new read fetches and
    /// opens at least one chunk, so it pays when it passes over two or more (and a block).
    fn worth_a_jump(&self) -> u64 {
        let content = &self.catalog.content;
        let chunk = content.size / content.chunks.max(1);
        chunk.saturating_mul(2).max(BLOCK_BYTES)
    }

    /// Starts reading where the first entry for which `reached` is true can be: at the
    /// index's mark before it, or at the catalog's start.
    pub(super) fn seek_to(&mut self, reached: impl Fn(&str) -> bool) {
        match self.marks.as_deref().and_then(|m| block_for(m, reached)) {
            Some(mark) => {
                let mark = mark.clone();
                self.seek_mark(&mark);
            }
            None => self.seek(0, None),
        }
    }

    fn find(&mut self, path: &str) -> Result<Option<CatalogEntry>, RepoError> {
        let ordered = self.marks.is_some();
        self.seek_to(|p: &str| path_cmp(p, path).is_ge());
        while let Some(entry) = self.next()? {
            if entry.path == path {
                return Ok(Some(entry));
            }
            // In path order, the first entry past `path` means it is not there.
            if ordered && path_cmp(&entry.path, path).is_gt() {
                break;
            }
        }
        Ok(None)
    }

    fn verify(&mut self) -> Result<u64, RepoError> {
        let marks = self.marks.take();
        let mut marks = marks.iter().flatten().peekable();
        let ordered = marks.peek().is_some();
        let mut previous: Option<String> = None;
        let mut count = 0u64;
        let corrupt = |backup: &str, reason: String| RepoError::CorruptCatalog {
            backup: backup.to_string(),
            reason,
        };
        self.seek(0, None);
        loop {
            let offset = self.offset;
            let Some(entry) = self.next()? else { break };
            if let Some(mark) = marks.next_if(|mark| mark.entry == count) {
                if mark.offset != offset || mark.path != entry.path {
                    return Err(corrupt(
                        &self.backup,
                        format!(
                            "its index places {:?} at entry {count}, offset {}; the catalog holds {:?} at offset {offset}",
                            mark.path, mark.offset, entry.path
                        ),
                    ));
                }
            }
            if ordered {
                if let Some(previous) = &previous {
                    if path_cmp(previous, &entry.path).is_ge() {
                        return Err(corrupt(
                            &self.backup,
                            format!(
                                "it is indexed but {:?} follows {previous:?}, out of path order",
                                entry.path
                            ),
                        ));
                    }
                }
                previous = Some(entry.path);
            }
            count += 1;
        }
        if let Some(mark) = marks.next() {
            return Err(corrupt(
                &self.backup,
                format!("its index marks entry {}, past its end", mark.entry),
            ));
        }
        if count != self.catalog.entries {
            return Err(corrupt(
                &self.backup,
                format!(
                    "it holds {count} entries where the backup records {}",
                    self.catalog.entries
                ),
            ));
        }
        Ok(count)
    }

    fn folder(
        &mut self,
        dir: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<FolderPage, RepoError> {
        let indexed = self.marks.is_some();
        let child_path = |name: &str| match dir {
            "" => name.to_string(),
            _ => format!("{dir}/{name}"),
        };
        let after_path = after.map(child_path);
        let started = |path: &str| match &after_path {
            Some(after) => is_past(path, after),
            None => dir.is_empty() || path_cmp(path, dir).is_gt(),
        };
        // Without an index, entries are read from the start in whatever order they were
        // written; the page starts after the entry named `after`.
        let mut waiting_for_after = !indexed && after_path.is_some();
        if indexed {
            self.seek_to(started);
        }
        let mut entries = Vec::new();
        let mut skipping: Option<String> = None;
        // The start of the lines inside the subfolder being passed over, as the catalog
        // encodes them (`path` first), so they are passed over without being decoded.
        let mut skipped_lines: Vec<u8> = Vec::new();
        let mut reached = !indexed;
        while self.next_line()? {
            if skipping.is_some() && self.line_starts_with(&skipped_lines) {
                continue;
            }
            let entry = self.decode_line()?;
            if !reached {
                if !started(&entry.path) {
                    continue;
                }
                reached = true;
            }
            if indexed && !is_inside(&entry.path, dir) {
                break;
            }
            if skipping
                .as_deref()
                .is_some_and(|sub| is_inside(&entry.path, sub))
            {
                continue;
            }
            skipping = None;
            let Some(rest) = relative_to(&entry.path, dir) else {
                continue;
            };
            match rest.split_once('/') {
                None if waiting_for_after => {
                    waiting_for_after = Some(rest) != after;
                }
                None => {
                    if entries.len() == limit {
                        return Ok(FolderPage {
                            entries,
                            more: true,
                            indexed,
                            reads: self.reads,
                        });
                    }
                    entries.push(entry);
                }
                Some(_) if !indexed => {}
                Some((name, _)) => {
                    // Inside a subfolder: jump past its contents when they run on for
                    // longer than reading through them costs; else read on.
                    let sub = child_path(name);
                    let jump_beyond = self.offset.saturating_add(self.worth_a_jump());
                    let past = self.marks.as_deref().and_then(|m| {
                        block_for(m, |p| is_past(p, &sub)).filter(|mark| mark.offset > jump_beyond)
                    });
                    if let Some(mark) = past.cloned() {
                        self.seek_mark(&mark);
                    }
                    skipped_lines = line_prefix(&sub);
                    skipping = Some(sub);
                }
            }
        }
        Ok(FolderPage {
            entries,
            more: false,
            indexed,
            reads: self.reads,
        })
    }
}

/// How a catalog line of an entry inside the folder `dir` starts: `{"path":"` and the
/// folder's path with its `/`, escaped as JSON escapes it, character by character.
fn line_prefix(dir: &str) -> Vec<u8> {
    let quoted = serde_json::to_string(&format!("{dir}/")).unwrap_or_default();
    let open = quoted.strip_suffix('"').unwrap_or(&quoted);
    format!("{{\"path\":{open}").into_bytes()
}

/// `path` below `dir`, or `None` when it is not inside it.
fn relative_to<'a>(path: &'a str, dir: &str) -> Option<&'a str> {
    if dir.is_empty() {
        return Some(path);
    }
    path.strip_prefix(dir)?.strip_prefix('/')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::catalog::EntryKind;

    #[test]
    fn line_prefixes_match_encoded_lines_inside_the_folder_only() {
        let line = |path: &str| {
            let entry = CatalogEntry {
                path: path.into(),
                kind: EntryKind::File,
                mode: 0o644,
                mtime: 0,
                mtime_nsec: 0,
                uid: 0,
                gid: 0,
                user: String::new(),
                group: String::new(),
                size: 1,
                link: None,
                offset: Some(0),
            };
            let mut out = Vec::new();
            entry.encode_line(&mut out);
            out
        };
        for dir in ["a", "with \"quotes\" and \\", "tab\there", "ünï/cödé"] {
            let prefix = line_prefix(dir);
            assert!(line(&format!("{dir}/x")).starts_with(&prefix), "{dir}");
            assert!(line(&format!("{dir}/x/y")).starts_with(&prefix), "{dir}");
            assert!(!line(dir).starts_with(&prefix), "{dir}: the folder itself");
            assert!(
                !line(&format!("{dir}-x/y")).starts_with(&prefix),
                "{dir}: a sibling"
            );
        }
    }
}
