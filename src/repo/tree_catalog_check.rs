//! The catalog of a tree backup sent by a client (`POST /v1/sessions/{id}/catalog`),
//! checked line by line before anything of a batch is kept, so that a tree assembled
//! through a session is one the server's own walk could have written:
//!
//! - every line decodes as an entry with a safe relative path;
//! - paths are strictly increasing in path order (`catalog_index::path_cmp`), which also
//!   makes the catalog indexable;
//! - nothing lies inside an entry that is not a directory (a file under a symbolic link
//!   would be written through the link on restore);
//! - a regular file's `offset` is the sum of the sizes of the files before it, other
//!   kinds have neither size nor offset, only a symbolic link has a target, and hard
//!   links (a tar archive's kind) do not occur;
//! - at the end, the files' sizes add up to the stream's size.
//!
//! The lines are kept in a [`CatalogSpool`] (disk past a few MiB), which also indexes them.

use std::cmp::Ordering;
use std::path::PathBuf;

use super::spool::{CatalogSpool, SpooledCatalog};
use super::RepoError;
use crate::format::catalog::{CatalogEntry, EntryKind};
use crate::format::catalog_index::{is_inside, path_cmp};

/// Receives a tree's catalog in batches of JSON lines.
pub struct TreeCatalogCheck {
    spool: CatalogSpool,
    /// The last entry's path and whether it is a directory.
    previous: Option<(String, bool)>,
    /// The sizes of the regular files so far: where the next file starts in the stream.
    files_bytes: u64,
}

impl TreeCatalogCheck {
    pub fn new(spool_dir: PathBuf) -> TreeCatalogCheck {
        TreeCatalogCheck {
            spool: CatalogSpool::new(spool_dir),
            previous: None,
            files_bytes: 0,
        }
    }

    /// Entries received so far: the position the next batch continues at.
    pub fn entries(&self) -> u64 {
        self.spool.entries()
    }

    /// Checks a batch of `\n`-terminated JSON lines that continues the catalog at entry
    /// `at`, and keeps it; nothing of a batch that fails is kept.
    pub fn receive(&mut self, at: u64, body: &[u8]) -> Result<(), RepoError> {
        let have = self.entries();
        if at != have {
            return Err(RepoError::Conflict(format!(
                "the catalog holds {have} entries; a batch at {at} does not continue it"
            )));
        }
        let Some(body) = body.strip_suffix(b"\n") else {
            return Err(RepoError::InvalidInput(
                "a catalog batch is lines of JSON, each ending in a newline".into(),
            ));
        };
        let mut previous = self.previous.clone();
        let mut files_bytes = self.files_bytes;
        let mut entries = Vec::new();
        for (number, line) in body.split(|&b| b == b'\n').enumerate() {
            let position = at + number as u64;
            let refused =
                |why: String| RepoError::InvalidInput(format!("catalog entry {position}: {why}"));
            let entry = CatalogEntry::decode_line(line).map_err(|e| refused(e.to_string()))?;
            check_shape(&entry, files_bytes).map_err(refused)?;
            if let Some((last, last_is_dir)) = &previous {
                if path_cmp(last, &entry.path) != Ordering::Less {
                    return Err(refused(format!(
                        "{:?} does not come after {last:?} in path order",
                        entry.path
                    )));
                }
                if !last_is_dir && is_inside(&entry.path, last) {
                    return Err(refused(format!(
                        "{:?} lies inside {last:?}, which is not a directory",
                        entry.path
                    )));
                }
            }
            files_bytes += entry.size;
            previous = Some((entry.path.clone(), entry.kind == EntryKind::Dir));
            entries.push(entry);
        }
        for entry in &entries {
            self.spool
                .write(entry)
                .map_err(|e| RepoError::io("catalog spool", e))?;
        }
        self.previous = previous;
        self.files_bytes = files_bytes;
        Ok(())
    }

    /// The catalog, once the stream is known to be `stream_size` bytes long.
    pub fn finish(self, stream_size: u64) -> Result<SpooledCatalog, RepoError> {
        if self.files_bytes != stream_size {
            return Err(RepoError::InvalidInput(format!(
                "the catalog's files add up to {} bytes but the stream holds {stream_size}; \
                 nothing was committed",
                self.files_bytes
            )));
        }
        Ok(self.spool.finish())
    }
}

/// What one entry must look like on its own, given where the next file starts.
fn check_shape(entry: &CatalogEntry, files_bytes: u64) -> Result<(), String> {
    match entry.kind {
        EntryKind::File => {
            if entry.offset != Some(files_bytes) {
                return Err(format!(
                    "file {:?} must start at offset {files_bytes}, the sum of the sizes before it",
                    entry.path
                ));
            }
            if files_bytes.checked_add(entry.size).is_none() {
                return Err(format!("file {:?} is too large", entry.path));
            }
        }
        EntryKind::Hardlink => {
            return Err(format!(
                "{:?}: a tree holds no hard links (that is a tar archive's kind)",
                entry.path
            ))
        }
        _ if entry.size != 0 || entry.offset.is_some() => {
            return Err(format!(
                "{:?} is not a regular file: it has neither size nor offset",
                entry.path
            ))
        }
        _ => {}
    }
    if entry.link.is_some() != (entry.kind == EntryKind::Symlink) {
        return Err(format!(
            "{:?}: only a symbolic link has a target, and it must have one",
            entry.path
        ));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn line(path: &str, kind: EntryKind, size: u64, offset: Option<u64>) -> Vec<u8> {
        let mut out = Vec::new();
        CatalogEntry {
            path: path.into(),
            kind,
            mode: 0o644,
            mtime: 0,
            mtime_nsec: 0,
            uid: 0,
            gid: 0,
            user: String::new(),
            group: String::new(),
            size,
            link: (kind == EntryKind::Symlink).then(|| "target".to_string()),
            offset,
        }
        .encode_line(&mut out);
        out
    }

    fn check(batches: &[Vec<Vec<u8>>], stream: u64) -> Result<u64, RepoError> {
        let dir = tempfile::tempdir().unwrap();
        let mut check = TreeCatalogCheck::new(dir.path().to_path_buf());
        for batch in batches {
            check.receive(check.entries(), &batch.concat())?;
        }
        Ok(check.finish(stream)?.entries)
    }

    #[test]
    fn a_walk_shaped_catalog_is_kept_across_batches() {
        let batches = vec![
            vec![
                line("a", EntryKind::Dir, 0, None),
                line("a/x", EntryKind::File, 5, Some(0)),
            ],
            vec![
                line("a/y", EntryKind::Symlink, 0, None),
                line("a.txt", EntryKind::File, 7, Some(5)),
                line("b", EntryKind::File, 0, Some(12)),
            ],
        ];
        assert_eq!(check(&batches, 12).unwrap(), 5);
        assert!(
            check(&batches, 13).is_err(),
            "sizes must add up to the stream"
        );
    }

    #[test]
    fn malformed_catalogs_are_refused() {
        let refused = [
            // out of path order, and repeated
            vec![
                line("b", EntryKind::Dir, 0, None),
                line("a", EntryKind::Dir, 0, None),
            ],
            vec![
                line("a", EntryKind::Dir, 0, None),
                line("a", EntryKind::Dir, 0, None),
            ],
            // inside a symbolic link, inside a file
            vec![
                line("a", EntryKind::Symlink, 0, None),
                line("a/b", EntryKind::File, 0, Some(0)),
            ],
            vec![
                line("a", EntryKind::File, 0, Some(0)),
                line("a/b", EntryKind::Dir, 0, None),
            ],
            // a file at the wrong offset, sizes on a directory, a hard link
            vec![line("a", EntryKind::File, 3, Some(1))],
            vec![line("a", EntryKind::Dir, 3, None)],
            vec![line("a", EntryKind::Hardlink, 0, None)],
            // an unsafe path, a line that is not JSON
            vec![line("../a", EntryKind::Dir, 0, None)],
            vec![b"{not json\n".to_vec()],
        ];
        for batch in refused {
            let text = String::from_utf8_lossy(&batch.concat()).into_owned();
            assert!(check(&[batch], 0).is_err(), "{text}");
        }
    }

    #[test]
    fn a_failed_batch_keeps_nothing_and_batches_must_continue() {
        let dir = tempfile::tempdir().unwrap();
        let mut check = TreeCatalogCheck::new(dir.path().to_path_buf());
        let good = line("a", EntryKind::File, 4, Some(0));
        let bad = [good.clone(), line("0", EntryKind::Dir, 0, None)].concat();
        assert!(check.receive(0, &bad).is_err());
        assert_eq!(check.entries(), 0);
        check.receive(0, &good).unwrap();
        assert!(matches!(
            check.receive(0, &good),
            Err(RepoError::Conflict(_))
        ));
        assert!(check.receive(1, b"no newline").is_err());
        assert_eq!(check.finish(4).unwrap().entries, 1);
    }
}
