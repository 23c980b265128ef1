//! Streaming tar catalog extraction.
//!
//! When a backup stream is a tar archive, plain or gzip-compressed, its entries become the
//! backup's catalog; the stored bytes are never changed. [`TarCatalogParser`] is push-based:
//! the stream arrives in pieces of any size, each complete entry is handed to a sink as soon
//! as its header has been read, and [`TarCatalogParser::finish`] says whether the whole
//! stream was a complete, valid tar. Sans-IO, never panics on input.
//!
//! # Memory and work
//!
//! The parser holds one 512-byte header block, the data of GNU long name/link headers and
//! PAX extended headers (each capped at [`MAX_META_BYTES`]), and for gzip a 32 KiB output
//! buffer and the inflate state. Anything larger makes the stream "not a tar". Once the
//! stream is known not to be a tar, [`TarCatalogParser::feed`] returns at once: no further
//! parsing or decompression.
//!
//! # Detection
//!
//! A stream starting with `1f 8b` is gzip (concatenated members are decoded one after the
//! other; the tar is the concatenation of their contents). Anything else is read as a plain
//! tar. The (decompressed) stream is a tar when its first 512-byte block is a header whose
//! checksum is valid (unsigned sum, or signed sum as some old tars wrote it), with or
//! without the `ustar` magic (V7 archives have none). An "empty archive" (a stream starting
//! with a zero block) is accepted only when the whole stream is at least two blocks of zero
//! bytes.
//!
//! # Supported
//!
//! - V7, ustar (`prefix` + `name`, including star's shorter prefix), GNU (`L` long name,
//!   `K` long link), PAX (`x`; Solaris `X` is read the same way) with the records `path`,
//!   `linkpath`, `size`, `mtime` (with fractional part), `uid`, `gid`, `uname`, `gname`,
//!   and `GNU.sparse.name`. Other records are ignored.
//! - PAX global headers (`g`) are applied to the entries that follow them, for `mtime`,
//!   `uid`, `gid`, `uname` and `gname` only (a global `path`, `linkpath` or `size` is
//!   ignored: it cannot meaningfully apply to every entry). A per-entry record wins over a
//!   global one, and both win over the header fields. A record with an empty value removes
//!   the value set for that key at the same level.
//! - Numeric fields in octal (leading spaces, terminated by space or NUL) or in GNU/star
//!   base-256 (high bit of the first byte set; negative values only make sense for mtime).
//! - Types: `0`, NUL and `7` (contiguous) are files; `1` hard link, `2` symlink, `5`
//!   directory (as is GNU's `D` dump directory, and a regular-file entry whose name ends in
//!   `/`, the old convention); `3`, `4`, `6` and unknown types are [`EntryKind::Other`];
//!   `V` (GNU volume label) is not an entry.
//! - Data: every entry's data (its size, rounded up to 512) is skipped, except for type `5`
//!   directories, which never carry data (as GNU tar reads them).
//!
//! # Limitations
//!
//! - Sparse files (GNU `S`, including its extension blocks, and PAX `GNU.sparse.*`) are
//!   recorded as files whose `size` is the number of bytes stored in the archive, and whose
//!   `offset..offset + size` holds the stored (packed) data, not the logical file content.
//! - Non-UTF-8 names are converted lossily (invalid bytes become U+FFFD).
//! - Only gzip compression is recognised; other compressions are "not a tar".
//!
//! # Paths
//!
//! Paths are normalized the way extraction would see them: leading `/`, empty and `.`
//! components are dropped (`./a//b/` becomes `a/b`). An entry whose path becomes empty
//! (the `./` entry) is skipped silently. An entry whose path contains `..` (or a NUL), or a
//! hard link whose target does, is skipped and counted in
//! [`TarSummary::unsafe_paths_skipped`]: a catalog never carries an unsafe path. Symlink
//! targets are recorded as they are (they are link contents, not paths to write to).
//!
//! # End of archive
//!
//! The archive ends at the first zero block where a header is expected (as GNU tar reads
//! it, a lone zero block ends the archive too), or at the end of the stream right after an
//! entry's data padding (or inside a block of zeros). Whatever follows the end-of-archive
//! block is ignored without being parsed: zero padding, garbage, or another concatenated
//! archive (GNU tar without `--ignore-zeros` does not read it either). For gzip, every
//! member is still decoded and checked (CRC-32 and length), so a corrupt compressed stream
//! is never accepted; bytes after the last member that do not start another member
//! (zero padding, garbage) are ignored.

use flate2::{Crc, Decompress, FlushDecompress, Status};

use crate::format::catalog::CatalogEntry;

mod fields;
mod gzip;
mod machine;
#[cfg(test)]
mod tests;
pub mod writer;

use gzip::Gunzip;
use machine::TarMachine;

/// Cap on the data of one GNU long name/link header or one PAX extended header (local or
/// global); a larger one makes the stream "not a tar".
pub const MAX_META_BYTES: u64 = 1 << 20;

/// Cap on each zero-terminated field (file name, comment) of a gzip member header.
const MAX_GZIP_HEADER_FIELD: u64 = 1 << 20;

const BLOCK: usize = 512;
const BLOCK_U64: u64 = BLOCK as u64;
const GZIP_OUT_BUF: usize = 32 * 1024;

/// What a complete, valid tar stream held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TarSummary {
    /// The stream was gzip-compressed.
    pub compressed: bool,
    /// Entries passed to the sink.
    pub entries: u64,
    /// Entries skipped because their path (or hard link target) was not a safe relative
    /// path.
    pub unsafe_paths_skipped: u64,
    /// Length of the tar stream the offsets refer to: the whole stream for a plain tar, the
    /// decompressed length of all gzip members for a gzip stream.
    pub tar_bytes: u64,
}

/// The stream is not a complete, valid tar (plain or gzip).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a tar stream: {reason}")]
pub struct NotTar {
    pub reason: String,
}

/// Push-based tar catalog extractor; see the module documentation.
pub struct TarCatalogParser {
    tar: TarMachine,
    layer: Layer,
}

enum Layer {
    /// Nothing seen yet, or only a lone `1f` byte (which may start a gzip magic).
    Detect {
        first: Option<u8>,
    },
    Plain,
    Gzip(Box<Gunzip>),
}

impl Default for TarCatalogParser {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for TarCatalogParser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TarCatalogParser")
            .field("compressed", &matches!(self.layer, Layer::Gzip(_)))
            .field("tar_bytes", &self.tar.pos)
            .field("entries", &self.tar.entries)
            .field("failure", &self.tar.fail)
            .finish()
    }
}

impl TarCatalogParser {
    pub fn new() -> Self {
        TarCatalogParser {
            tar: TarMachine::new(),
            layer: Layer::Detect { first: None },
        }
    }

    /// True once the stream is known not to be a tar; later bytes are then ignored and
    /// [`finish`](Self::finish) will return `Err`.
    pub fn is_not_tar(&self) -> bool {
        self.tar.fail.is_some()
    }

    /// Feeds the next bytes of the stream; each complete entry is passed to `sink`.
    pub fn feed(&mut self, data: &[u8], sink: &mut dyn FnMut(CatalogEntry)) {
        if self.tar.fail.is_some() {
            return;
        }
        let Some(&d0) = data.first() else {
            return;
        };
        if let Layer::Detect { first } = self.layer {
            let b0 = first.unwrap_or(d0);
            let b1 = if first.is_some() {
                Some(d0)
            } else {
                data.get(1).copied()
            };
            if b0 == 0x1f && b1.is_none() {
                // A lone first byte that may start the gzip magic: hold it back.
                self.layer = Layer::Detect { first: Some(b0) };
                return;
            }
            self.layer = if b0 == 0x1f && b1 == Some(0x8b) {
                Layer::Gzip(Box::new(Gunzip::new()))
            } else {
                Layer::Plain
            };
            if let Some(held) = first {
                self.push(&[held], sink);
            }
        }
        self.push(data, sink);
    }

    fn push(&mut self, data: &[u8], sink: &mut dyn FnMut(CatalogEntry)) {
        match &mut self.layer {
            Layer::Plain => self.tar.push(data, sink),
            Layer::Gzip(gz) => gz.push(data, &mut self.tar, sink),
            // `feed` leaves this state before pushing.
            Layer::Detect { .. } => self.tar.set_fail("internal: undetected stream".into()),
        }
    }

    /// Ends the stream. Returns `Ok(summary)` when the stream was a complete, valid tar
    /// (plain or gzip), and `Err(NotTar)` otherwise (the caller then discards the entries
    /// it received).
    pub fn finish(mut self, sink: &mut dyn FnMut(CatalogEntry)) -> Result<TarSummary, NotTar> {
        if let Layer::Detect { first } = self.layer {
            self.layer = Layer::Plain;
            if let Some(b) = first {
                self.tar.push(&[b], sink);
            }
        }
        let compressed = matches!(self.layer, Layer::Gzip(_));
        if let Layer::Gzip(gz) = &self.layer {
            if self.tar.fail.is_none() {
                if let Err(reason) = gz.finish() {
                    self.tar.set_fail(reason);
                }
            }
        }
        let mut summary = self.tar.finish()?;
        summary.compressed = compressed;
        Ok(summary)
    }
}
