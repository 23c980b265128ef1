//! Catalog entries: the file entries inside a backup (a directory tree, or a tar archive
//! uploaded as a stream), and their persisted encoding.
//!
//! A catalog is persisted as JSON lines (one [`CatalogEntry`] per line, UTF-8, `\n`
//! terminated), and that text is stored like any stream: chunked, deduplicated, sealed.
//! This module holds the type and the line codec; it does no IO.

use serde::{Deserialize, Serialize};

/// Longest accepted catalog line when decoding (a path is at most 4096 bytes on Linux; the
/// rest of an entry is small).
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// The type of a catalog entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    /// A hard link inside a tar archive (its target is in `link`).
    Hardlink,
    /// Devices, fifos, sockets: recorded, never restored as data.
    Other,
}

/// One entry of a catalog.
///
/// `offset` locates a regular file's bytes inside the backup's stored stream: for a tree
/// backup, the concatenation of its regular files in catalog order; for a plain tar
/// stream, the stream itself; for a gzip tar stream, the decompressed tar (the stored
/// stream stays the compressed bytes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogEntry {
    /// Relative path with `/` separators, never starting with `/`, never containing `..`.
    pub path: String,
    pub kind: EntryKind,
    /// Permission bits and set-id/sticky bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// Modification time, seconds since the Unix epoch.
    pub mtime: i64,
    /// Nanoseconds part of the modification time.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub mtime_nsec: u32,
    pub uid: u32,
    pub gid: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub group: String,
    /// Size in bytes of a regular file's content; 0 for other kinds.
    pub size: u64,
    /// Symlink or hard link target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// Where the file's bytes start in the backup's stream (see the type's doc).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
}

fn is_zero(value: &u32) -> bool {
    *value == 0
}

/// A catalog line could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum CatalogDecodeError {
    #[error("catalog line of {len} bytes exceeds the limit of {MAX_LINE_BYTES}")]
    LineTooLong { len: usize },
    #[error("catalog line is not a valid entry: {0}")]
    Json(#[from] serde_json::Error),
    #[error("catalog path {path:?} is not a safe relative path")]
    UnsafePath { path: String },
}

impl CatalogEntry {
    /// Appends this entry as one JSON line to `out`.
    pub fn encode_line(&self, out: &mut Vec<u8>) {
        // Serializing a struct of strings and integers into a Vec cannot fail.
        serde_json::to_writer(&mut *out, self).expect("catalog entry serializes");
        out.push(b'\n');
    }

    /// Decodes one line (without its `\n`), checking the path is safe to join under a
    /// restore target.
    pub fn decode_line(line: &[u8]) -> Result<CatalogEntry, CatalogDecodeError> {
        if line.len() > MAX_LINE_BYTES {
            return Err(CatalogDecodeError::LineTooLong { len: line.len() });
        }
        let entry: CatalogEntry = serde_json::from_slice(line)?;
        if !is_safe_relative_path(&entry.path) {
            return Err(CatalogDecodeError::UnsafePath { path: entry.path });
        }
        Ok(entry)
    }
}

/// True when `path` is relative, non-empty, and has no `..`, `.` or empty components.
pub fn is_safe_relative_path(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && !path.contains('\0')
        && path
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn line_round_trip() {
        let entry = CatalogEntry {
            path: "a/b.txt".into(),
            kind: EntryKind::File,
            mode: 0o644,
            mtime: 1_700_000_000,
            mtime_nsec: 5,
            uid: 1000,
            gid: 1000,
            user: "me".into(),
            group: String::new(),
            size: 12,
            link: None,
            offset: Some(0),
        };
        let mut line = Vec::new();
        entry.encode_line(&mut line);
        assert_eq!(line.last(), Some(&b'\n'));
        let decoded = CatalogEntry::decode_line(&line[..line.len() - 1]).unwrap();
        assert_eq!(decoded, entry);
    }

    #[test]
    fn unsafe_paths_are_refused() {
        for path in ["", "/etc/passwd", "a/../b", "..", "a//b", "./a"] {
            assert!(!is_safe_relative_path(path), "{path}");
        }
        assert!(is_safe_relative_path("a/b/c"));
    }
}
