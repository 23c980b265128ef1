//! The catalog index: a sparse map from paths to places in a catalog's text, so one path
//! is found, and one folder listed, by reading a block or two of the catalog instead of
//! all of it.
//!
//! It exists only for catalogs whose entries are in *path order*: paths compared
//! component by component, each component bytewise, every path strictly after the one
//! before. A tree catalog is always in that order (depth first, siblings sorted by name, a
//! folder before its contents) and so is a tar written with sorted names; a tar in any
//! other order gets no index and is read whole.
//!
//! The index is JSON lines, one [`IndexMark`] per line: the first entry of each block of
//! about [`BLOCK_BYTES`] of catalog text, with its byte offset and ordinal. Marks are
//! strictly increasing in all three; the first is entry 0 at offset 0. Every entry from one
//! mark up to the next lies between their paths, which is what a search relies on, and a
//! reader checks each mark it seeks to against the line it finds there. This module holds
//! the order, the builder and the decoder; it does no IO.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

use super::catalog::is_safe_relative_path;

/// Catalog text between two marks: a lookup reads about this much.
pub const BLOCK_BYTES: u64 = 64 * 1024;

/// Longest accepted index line when decoding (a mark holds one catalog path).
pub const MAX_MARK_BYTES: usize = 8 * 1024;

/// The first entry of one block of catalog text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexMark {
    pub path: String,
    /// Where the entry's line starts in the catalog text.
    pub offset: u64,
    /// The entry's ordinal in the catalog, from 0.
    pub entry: u64,
}

/// Path order: component by component, each bytewise (`a/b` sorts before `a-c`, because
/// `a` sorts before `a-c`).
pub fn path_cmp(a: &str, b: &str) -> Ordering {
    a.split('/').cmp(b.split('/'))
}

/// Whether `path` lies inside the folder `dir` (at any depth); everything lies inside the
/// root, `""`.
pub fn is_inside(path: &str, dir: &str) -> bool {
    dir.is_empty()
        || path
            .strip_prefix(dir)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Whether `path` sorts after `dir` and everything inside it.
pub fn is_past(path: &str, dir: &str) -> bool {
    !dir.is_empty() && path_cmp(path, dir) == Ordering::Greater && !is_inside(path, dir)
}

/// Builds the index of a catalog while its lines are written, and notices when they are
/// not in path order (then there is no index). It holds the previous path and the marks'
/// encoded text: about 100 bytes per 64 KiB of catalog.
#[derive(Debug, Default)]
pub struct IndexBuilder {
    text: Vec<u8>,
    marks: u64,
    offset: u64,
    entries: u64,
    next_mark_at: u64,
    previous: Option<String>,
    unordered: bool,
}

impl IndexBuilder {
    pub fn new() -> IndexBuilder {
        IndexBuilder::default()
    }

    /// Records the next catalog line: its entry's path and the line's length with its `\n`.
    pub fn push(&mut self, path: &str, line_len: u64) {
        if !self.unordered {
            let ordered = self
                .previous
                .as_deref()
                .is_none_or(|previous| path_cmp(previous, path) == Ordering::Less);
            if !ordered || path.len() + 64 > MAX_MARK_BYTES {
                self.unordered = true;
                self.text = Vec::new();
            } else {
                if self.offset >= self.next_mark_at {
                    let mark = IndexMark {
                        path: path.to_string(),
                        offset: self.offset,
                        entry: self.entries,
                    };
                    // A struct of a string and integers always serializes.
                    serde_json::to_writer(&mut self.text, &mark).expect("mark serializes");
                    self.text.push(b'\n');
                    self.marks += 1;
                    self.next_mark_at = self.offset + BLOCK_BYTES;
                }
                match &mut self.previous {
                    Some(previous) => {
                        previous.clear();
                        previous.push_str(path);
                    }
                    None => self.previous = Some(path.to_string()),
                }
            }
        }
        self.offset += line_len;
        self.entries += 1;
    }

    /// The index text and its number of marks; `None` when the catalog is empty or not in
    /// path order.
    pub fn finish(self) -> Option<(Vec<u8>, u64)> {
        (!self.unordered && self.marks > 0).then_some((self.text, self.marks))
    }
}

/// An index could not be decoded, or does not fit its catalog.
#[derive(Debug, thiserror::Error)]
pub enum IndexDecodeError {
    #[error("catalog index line {line} is not a valid mark: {reason}")]
    Mark { line: u64, reason: String },
    #[error("catalog index holds {found} marks, its backup records {recorded}")]
    Count { found: u64, recorded: u64 },
    #[error("catalog index is not terminated by a newline")]
    Unterminated,
}

/// Decodes an index's text, checking it fits a catalog of `catalog_bytes` bytes and
/// `entries` entries and records `marks` marks: every mark's path safe, the marks strictly
/// increasing in path order, offset and ordinal, the first at the catalog's start.
pub fn decode_marks(
    text: &[u8],
    marks: u64,
    catalog_bytes: u64,
    entries: u64,
) -> Result<Vec<IndexMark>, IndexDecodeError> {
    let Some(body) = text.strip_suffix(b"\n") else {
        return if text.is_empty() && marks == 0 {
            Ok(Vec::new())
        } else {
            Err(IndexDecodeError::Unterminated)
        };
    };
    let mut decoded: Vec<IndexMark> = Vec::new();
    for (number, line) in (1u64..).zip(body.split(|b| *b == b'\n')) {
        let bad = |reason: String| IndexDecodeError::Mark {
            line: number,
            reason,
        };
        if line.len() > MAX_MARK_BYTES {
            return Err(bad(format!(
                "{} bytes, the limit is {MAX_MARK_BYTES}",
                line.len()
            )));
        }
        let mark: IndexMark = serde_json::from_slice(line).map_err(|e| bad(e.to_string()))?;
        if !is_safe_relative_path(&mark.path) {
            return Err(bad(format!(
                "path {:?} is not a safe relative path",
                mark.path
            )));
        }
        if mark.offset >= catalog_bytes || mark.entry >= entries {
            return Err(bad(format!(
                "offset {} or entry {} lies past the catalog ({catalog_bytes} bytes, {entries} entries)",
                mark.offset, mark.entry
            )));
        }
        let in_order = match decoded.last() {
            None => mark.offset == 0 && mark.entry == 0,
            Some(before) => {
                before.offset < mark.offset
                    && before.entry < mark.entry
                    && path_cmp(&before.path, &mark.path) == Ordering::Less
            }
        };
        if !in_order {
            return Err(bad(
                "out of order (the first mark is entry 0 at offset 0)".into()
            ));
        }
        decoded.push(mark);
    }
    let found = decoded.len() as u64;
    if found != marks {
        return Err(IndexDecodeError::Count {
            found,
            recorded: marks,
        });
    }
    Ok(decoded)
}

/// The mark to start reading at to find the first entry for which `reached` is true;
/// `reached` must be false then true along path order (a lower bound).
pub fn block_for(marks: &[IndexMark], reached: impl Fn(&str) -> bool) -> Option<&IndexMark> {
    let first_reached = marks.partition_point(|m| !reached(&m.path));
    marks.get(first_reached.saturating_sub(1))
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn path_order_is_component_order() {
        let mut paths = vec!["a-c", "a/b", "a", "b", "a/b/c", "a/ba", "A", "a.", "ab"];
        paths.sort_by(|a, b| path_cmp(a, b));
        assert_eq!(
            paths,
            ["A", "a", "a/b", "a/b/c", "a/ba", "a-c", "a.", "ab", "b"]
        );
        assert!(is_inside("a/b", "a") && is_inside("a/b/c", "a") && is_inside("x", ""));
        assert!(!is_inside("a", "a") && !is_inside("ab", "a") && !is_inside("a-c/d", "a"));
        assert!(is_past("a-c", "a") && is_past("b", "a/b") && !is_past("a/b", "a"));
        assert!(!is_past("a", "a") && !is_past("A", "a") && !is_past("x", ""));
    }

    fn build(paths: &[&str], line_len: u64) -> Option<(Vec<u8>, u64)> {
        let mut builder = IndexBuilder::new();
        for path in paths {
            builder.push(path, line_len);
        }
        builder.finish()
    }

    #[test]
    fn marks_every_block_and_decode_back() {
        let paths: Vec<String> = (0..1000)
            .map(|i| format!("d{:02}/f{i:04}", i / 100))
            .collect();
        let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
        // 1,000 lines of 1,000 bytes: a mark every 66 lines.
        let (text, marks) = build(&refs, 1000).expect("sorted paths are indexed");
        let decoded = decode_marks(&text, marks, 1_000_000, 1000).expect("decodes");
        assert_eq!(decoded.len() as u64, marks);
        assert_eq!(marks, 1000u64.div_ceil(66));
        assert_eq!(
            decoded[0],
            IndexMark {
                path: "d00/f0000".into(),
                offset: 0,
                entry: 0
            }
        );
        assert_eq!(decoded[1].entry, 66);
        assert_eq!(decoded[1].offset, 66_000);
        assert_eq!(decoded[1].path, paths[66]);
        // The block holding a path, and the first entry past a folder.
        let mark = block_for(&decoded, |p| path_cmp(p, "d05/f0540") != Ordering::Less);
        assert_eq!(mark.expect("a block").entry, 528);
        let mark = block_for(&decoded, |p| is_past(p, "d05"));
        assert_eq!(mark.expect("a block").entry, 594);
        let before_all = block_for(&decoded, |p| path_cmp(p, "a") != Ordering::Less);
        assert_eq!(before_all.expect("the first block").entry, 0);
    }

    #[test]
    fn an_unordered_or_empty_catalog_has_no_index() {
        assert!(build(&["b", "a"], 10).is_none());
        assert!(build(&["a", "a"], 10).is_none(), "a repeated path");
        assert!(
            build(&["a-c", "a/b"], 10).is_none(),
            "bytewise is not path order"
        );
        assert!(build(&[], 10).is_none());
        assert!(build(&["a", "a/b", "a-c"], 10).is_some());
    }

    #[test]
    fn decoding_refuses_what_does_not_fit() {
        let (text, marks) = build(&["a", "b", "c"], 40_000).expect("indexed");
        assert_eq!(marks, 2);
        assert!(decode_marks(&text, marks, 120_000, 3).is_ok());
        let refused = |text: &[u8], marks: u64, bytes: u64, entries: u64| {
            decode_marks(text, marks, bytes, entries)
                .expect_err("refused")
                .to_string()
        };
        assert!(refused(&text, 3, 120_000, 3).contains("holds 2 marks"));
        assert!(refused(&text, 2, 80_000, 3).contains("past the catalog"));
        assert!(refused(&text, 2, 120_000, 2).contains("past the catalog"));
        assert!(refused(&text[..text.len() - 1], 2, 120_000, 3).contains("newline"));
        let swapped = b"{\"path\":\"c\",\"offset\":80000,\"entry\":2}\n{\"path\":\"a\",\"offset\":0,\"entry\":0}\n";
        assert!(refused(swapped, 2, 120_000, 3).contains("out of order"));
        let late = b"{\"path\":\"b\",\"offset\":40000,\"entry\":1}\n";
        assert!(refused(late, 1, 120_000, 3).contains("out of order"));
        let unsafe_path = b"{\"path\":\"../x\",\"offset\":0,\"entry\":0}\n";
        assert!(refused(unsafe_path, 1, 120_000, 3).contains("safe"));
        assert!(refused(b"{}\n", 1, 120_000, 3).contains("line 1"));
        assert!(decode_marks(b"", 0, 0, 0).expect("empty").is_empty());
    }
}
