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

use crate::format::catalog::{is_safe_relative_path, CatalogEntry, EntryKind};

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

// ---------------------------------------------------------------------------------------
// Tar state machine
// ---------------------------------------------------------------------------------------

enum TarState {
    /// Filling `block` with the next header.
    Header,
    /// Filling `block` with old GNU sparse extension blocks that follow the entry's header.
    SparseExt(Box<Pending>),
    /// Skipping this many bytes of entry data and padding (never 0).
    Skip(u64),
    /// Collecting the data of a long name/link or PAX header, then skipping `pad` bytes.
    Meta {
        kind: MetaKind,
        buf: Vec<u8>,
        need: usize,
        pad: u64,
    },
    /// The stream started with a zero block: every further byte must be zero.
    ZeroScan,
    /// After the end-of-archive block: the rest is ignored.
    End,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum MetaKind {
    LongName,
    LongLink,
    Pax,
    GlobalPax,
}

/// Values from PAX records (local or global).
#[derive(Default, Debug)]
struct Pax {
    path: Option<Vec<u8>>,
    linkpath: Option<Vec<u8>>,
    sparse_name: Option<Vec<u8>>,
    size: Option<u64>,
    mtime: Option<(i64, u32)>,
    uid: Option<u32>,
    gid: Option<u32>,
    uname: Option<Vec<u8>>,
    gname: Option<Vec<u8>>,
}

impl Pax {
    fn is_empty(&self) -> bool {
        self.path.is_none()
            && self.linkpath.is_none()
            && self.sparse_name.is_none()
            && self.size.is_none()
            && self.mtime.is_none()
            && self.uid.is_none()
            && self.gid.is_none()
            && self.uname.is_none()
            && self.gname.is_none()
    }
}

/// An entry whose header has been read, waiting to be emitted.
struct Pending {
    entry: Option<CatalogEntry>,
    unsafe_path: bool,
    /// Data bytes (unpadded) that follow the header (and any sparse extension blocks).
    data_len: u64,
}

struct TarMachine {
    state: TarState,
    block: Box<[u8; BLOCK]>,
    fill: usize,
    /// Bytes of the tar stream consumed so far.
    pos: u64,
    /// Headers read (entries and metadata headers).
    headers: u64,
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    pax: Pax,
    global: Pax,
    entries: u64,
    unsafe_skipped: u64,
    fail: Option<String>,
}

impl TarMachine {
    fn new() -> Self {
        TarMachine {
            state: TarState::Header,
            block: Box::new([0; BLOCK]),
            fill: 0,
            pos: 0,
            headers: 0,
            long_name: None,
            long_link: None,
            pax: Pax::default(),
            global: Pax::default(),
            entries: 0,
            unsafe_skipped: 0,
            fail: None,
        }
    }

    fn set_fail(&mut self, reason: String) {
        if self.fail.is_none() {
            self.fail = Some(reason);
        }
    }

    fn has_local_meta(&self) -> bool {
        self.long_name.is_some() || self.long_link.is_some() || !self.pax.is_empty()
    }

    fn push(&mut self, mut data: &[u8], sink: &mut dyn FnMut(CatalogEntry)) {
        while !data.is_empty() && self.fail.is_none() {
            let taken = match &mut self.state {
                TarState::End => data.len(),
                TarState::Skip(remaining) => {
                    let n = usize::try_from(*remaining).map_or(data.len(), |r| r.min(data.len()));
                    *remaining -= n as u64;
                    if *remaining == 0 {
                        self.state = TarState::Header;
                    }
                    n
                }
                TarState::ZeroScan => match data.iter().position(|&b| b != 0) {
                    Some(i) => {
                        let at = self.pos + i as u64;
                        self.set_fail(format!(
                            "non-zero byte at offset {at} after an initial zero block"
                        ));
                        i
                    }
                    None => data.len(),
                },
                TarState::Meta { buf, need, .. } => {
                    let part = data.get(..need.saturating_sub(buf.len())).unwrap_or(data);
                    buf.extend_from_slice(part);
                    part.len()
                }
                TarState::Header | TarState::SparseExt(_) => {
                    let free = self.block.get_mut(self.fill..).unwrap_or_default();
                    let n = copy_prefix(free, data);
                    self.fill += n;
                    n
                }
            };
            self.pos += taken as u64;
            // Every arm takes at most `data.len()` bytes.
            data = data.get(taken..).unwrap_or_default();
            let result = match &self.state {
                TarState::Header if self.fill == BLOCK => {
                    self.fill = 0;
                    self.on_header(sink)
                }
                TarState::SparseExt(_) if self.fill == BLOCK => {
                    self.fill = 0;
                    self.on_sparse_ext(sink);
                    Ok(())
                }
                TarState::Meta { buf, need, .. } if buf.len() == *need => self.on_meta(),
                _ => Ok(()),
            };
            if let Err(reason) = result {
                self.set_fail(reason);
            }
        }
    }

    /// A full header block is in `block`, which ended at `pos`.
    fn on_header(&mut self, sink: &mut dyn FnMut(CatalogEntry)) -> Result<(), String> {
        let header_at = self.pos - BLOCK_U64;
        let b: &[u8; BLOCK] = &self.block;
        if b.iter().all(|&x| x == 0) {
            if self.headers == 0 {
                self.state = TarState::ZeroScan;
            } else if self.has_local_meta() {
                return Err(format!(
                    "end of archive at offset {header_at} right after a metadata header"
                ));
            } else {
                self.state = TarState::End;
            }
            return Ok(());
        }
        if !checksum_ok(b) {
            return Err(format!("bad header checksum at offset {header_at}"));
        }
        self.headers += 1;
        let typeflag = b[156];
        let header_size = parse_numeric(&b[124..136])
            .and_then(|v| u64::try_from(v).ok())
            .ok_or_else(|| format!("bad size field in header at offset {header_at}"))?;
        let meta = match typeflag {
            b'L' => Some(MetaKind::LongName),
            b'K' => Some(MetaKind::LongLink),
            b'x' | b'X' => Some(MetaKind::Pax),
            b'g' => Some(MetaKind::GlobalPax),
            _ => None,
        };
        if let Some(kind) = meta {
            if header_size > MAX_META_BYTES {
                return Err(format!(
                    "metadata header at offset {header_at} holds {header_size} bytes, over the cap of {MAX_META_BYTES}"
                ));
            }
            let need = header_size as usize;
            let pad = padding(header_size);
            self.state = TarState::Meta {
                kind,
                buf: Vec::with_capacity(need),
                need,
                pad,
            };
            // A zero-length metadata header completes at once.
            if need == 0 {
                return self.on_meta();
            }
            return Ok(());
        }
        let sparse_extended = typeflag == b'S' && b[482] != 0;
        let pending = self.read_entry(header_at, header_size)?;
        // Old GNU sparse: extension blocks follow when `isextended` is set.
        if sparse_extended {
            self.state = TarState::SparseExt(Box::new(pending));
        } else {
            self.emit(pending, sink)?;
        }
        Ok(())
    }

    fn on_sparse_ext(&mut self, sink: &mut dyn FnMut(CatalogEntry)) {
        let b: &[u8; BLOCK] = &self.block;
        if b[504] != 0 {
            return; // another extension block follows
        }
        let state = std::mem::replace(&mut self.state, TarState::Header);
        if let TarState::SparseExt(pending) = state {
            if let Err(reason) = self.emit(*pending, sink) {
                self.set_fail(reason);
            }
        }
    }

    /// Emits (or counts as skipped) an entry whose data starts at `pos`, and moves on to
    /// skipping that data.
    fn emit(&mut self, pending: Pending, sink: &mut dyn FnMut(CatalogEntry)) -> Result<(), String> {
        let skip = padded(pending.data_len)
            .ok_or_else(|| format!("entry size {} is too large", pending.data_len))?;
        self.state = if skip == 0 {
            TarState::Header
        } else {
            TarState::Skip(skip)
        };
        if pending.unsafe_path {
            self.unsafe_skipped += 1;
        } else if let Some(mut entry) = pending.entry {
            if entry.kind == EntryKind::File {
                entry.offset = Some(self.pos);
            }
            self.entries += 1;
            sink(entry);
        }
        Ok(())
    }

    /// The data of a metadata header is complete.
    fn on_meta(&mut self) -> Result<(), String> {
        let state = std::mem::replace(&mut self.state, TarState::Header);
        let TarState::Meta { kind, buf, pad, .. } = state else {
            return Ok(());
        };
        if pad > 0 {
            self.state = TarState::Skip(pad);
        }
        match kind {
            MetaKind::LongName => self.long_name = Some(until_nul(&buf).to_vec()),
            MetaKind::LongLink => self.long_link = Some(until_nul(&buf).to_vec()),
            MetaKind::Pax => parse_pax(&buf, &mut self.pax, false)?,
            MetaKind::GlobalPax => parse_pax(&buf, &mut self.global, true)?,
        }
        Ok(())
    }

    /// Decodes the entry header in `block`, consuming the pending long names and PAX
    /// records.
    fn read_entry(&mut self, header_at: u64, header_size: u64) -> Result<Pending, String> {
        let b: &[u8; BLOCK] = &self.block;
        let bad = |field: &str| format!("bad {field} field in header at offset {header_at}");
        let typeflag = b[156];
        let magic = &b[257..263];
        let posix = magic == b"ustar\0";
        let ustar_like = posix || magic == b"ustar ";

        let long_name = self.long_name.take();
        let long_link = self.long_link.take();
        let pax = std::mem::take(&mut self.pax);
        let global = &self.global;

        let raw_path: Vec<u8> = if let Some(p) = pax.sparse_name.or(pax.path) {
            p
        } else if let Some(p) = long_name {
            p
        } else {
            let name = until_nul(&b[0..100]);
            // star puts "tar\0" at 508 and has a shorter prefix.
            let prefix = if !posix {
                &[][..]
            } else if &b[508..512] == b"tar\0" {
                until_nul(&b[345..476])
            } else {
                until_nul(&b[345..500])
            };
            if prefix.is_empty() {
                name.to_vec()
            } else {
                let mut p = prefix.to_vec();
                p.push(b'/');
                p.extend_from_slice(name);
                p
            }
        };
        let raw_link: Vec<u8> = match pax.linkpath.or(long_link) {
            Some(l) => l,
            None => until_nul(&b[157..257]).to_vec(),
        };

        let mode = parse_numeric(&b[100..108])
            .filter(|m| *m >= 0)
            .ok_or_else(|| bad("mode"))?;
        let mode = (mode & 0o7777) as u32;
        let uid = match pax.uid.or(global.uid) {
            Some(u) => u,
            None => parse_numeric(&b[108..116])
                .and_then(|v| u32::try_from(v).ok())
                .ok_or_else(|| bad("uid"))?,
        };
        let gid = match pax.gid.or(global.gid) {
            Some(g) => g,
            None => parse_numeric(&b[116..124])
                .and_then(|v| u32::try_from(v).ok())
                .ok_or_else(|| bad("gid"))?,
        };
        let (mtime, mtime_nsec) = match pax.mtime.or(global.mtime) {
            Some(t) => t,
            None => (
                parse_numeric(&b[136..148])
                    .and_then(|v| i64::try_from(v).ok())
                    .ok_or_else(|| bad("mtime"))?,
                0,
            ),
        };
        let user = match pax.uname.as_deref().or(global.uname.as_deref()) {
            Some(u) => lossy(u),
            None if ustar_like => lossy(until_nul(&b[265..297])),
            None => String::new(),
        };
        let group = match pax.gname.as_deref().or(global.gname.as_deref()) {
            Some(g) => lossy(g),
            None if ustar_like => lossy(until_nul(&b[297..329])),
            None => String::new(),
        };
        let size = pax.size.unwrap_or(header_size);

        let trailing_slash = raw_path.last() == Some(&b'/');
        let kind = match typeflag {
            b'0' | 0 | b'7' if trailing_slash => Some(EntryKind::Dir),
            b'0' | 0 | b'7' | b'S' => Some(EntryKind::File),
            b'1' => Some(EntryKind::Hardlink),
            b'2' => Some(EntryKind::Symlink),
            b'5' | b'D' => Some(EntryKind::Dir),
            b'V' => None,
            _ => Some(EntryKind::Other),
        };
        // GNU tar skips the data of every entry except directories.
        let data_len = if typeflag == b'5' { 0 } else { size };

        let Some(kind) = kind else {
            return Ok(Pending {
                entry: None,
                unsafe_path: false,
                data_len,
            });
        };
        let path = match normalize_path(&lossy(&raw_path)) {
            Normalized::Empty => {
                return Ok(Pending {
                    entry: None,
                    unsafe_path: false,
                    data_len,
                })
            }
            Normalized::Unsafe => {
                return Ok(Pending {
                    entry: None,
                    unsafe_path: true,
                    data_len,
                })
            }
            Normalized::Path(p) => p,
        };
        let link = match kind {
            EntryKind::Symlink => Some(lossy(&raw_link)),
            EntryKind::Hardlink => match normalize_path(&lossy(&raw_link)) {
                Normalized::Path(p) => Some(p),
                Normalized::Empty | Normalized::Unsafe => {
                    return Ok(Pending {
                        entry: None,
                        unsafe_path: true,
                        data_len,
                    })
                }
            },
            _ => None,
        };
        Ok(Pending {
            entry: Some(CatalogEntry {
                path,
                kind,
                mode,
                mtime,
                mtime_nsec,
                uid,
                gid,
                user,
                group,
                size: if kind == EntryKind::File { size } else { 0 },
                link,
                offset: None, // set when emitted
            }),
            unsafe_path: false,
            data_len,
        })
    }

    fn finish(self) -> Result<TarSummary, NotTar> {
        let not_tar = |reason: String| Err(NotTar { reason });
        if let Some(reason) = self.fail {
            return not_tar(reason);
        }
        match self.state {
            TarState::Header if self.pos == 0 => return not_tar("empty stream".into()),
            TarState::Header if self.fill == 0 => {
                if self.has_local_meta() {
                    return not_tar("stream ends right after a metadata header".into());
                }
            }
            TarState::Header => {
                // A partial block at the end is accepted only as zero padding after entries.
                let partial = self.block.get(..self.fill);
                if self.headers == 0 || partial.is_none_or(|p| p.iter().any(|&b| b != 0)) {
                    return not_tar(format!("truncated header at offset {}", self.pos));
                }
            }
            TarState::ZeroScan => {
                if self.pos < 2 * BLOCK_U64 {
                    return not_tar("stream is a lone zero block".into());
                }
            }
            TarState::End => {}
            TarState::Skip(_) | TarState::Meta { .. } | TarState::SparseExt(_) => {
                return not_tar(format!("truncated entry at offset {}", self.pos));
            }
        }
        Ok(TarSummary {
            compressed: false,
            entries: self.entries,
            unsafe_paths_skipped: self.unsafe_skipped,
            tar_bytes: self.pos,
        })
    }
}

// ---------------------------------------------------------------------------------------
// Header field helpers
// ---------------------------------------------------------------------------------------

fn until_nul(field: &[u8]) -> &[u8] {
    field.split(|&b| b == 0).next().unwrap_or(field)
}

/// Copies as many bytes as fit from the start of `src` to the start of `dst`; returns how
/// many.
fn copy_prefix(dst: &mut [u8], src: &[u8]) -> usize {
    let mut n = 0;
    for (d, s) in dst.iter_mut().zip(src) {
        *d = *s;
        n += 1;
    }
    n
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Padding after `len` bytes of data to the next block boundary.
fn padding(len: u64) -> u64 {
    (BLOCK_U64 - len % BLOCK_U64) % BLOCK_U64
}

/// `len` rounded up to a whole number of blocks, or `None` on overflow.
fn padded(len: u64) -> Option<u64> {
    len.checked_add(padding(len))
}

/// The header checksum: the sum of the block's bytes with the checksum field taken as
/// spaces, unsigned (POSIX) or signed (some old tars).
fn checksum_ok(b: &[u8; BLOCK]) -> bool {
    let Some(stored) = parse_octal(&b[148..156]) else {
        return false;
    };
    let mut unsigned: u64 = 0;
    let mut signed: i64 = 0;
    for (i, &x) in b.iter().enumerate() {
        let x = if (148..156).contains(&i) { b' ' } else { x };
        unsigned += u64::from(x);
        signed += i64::from(x as i8);
    }
    stored == unsigned || i64::try_from(stored).is_ok_and(|s| s == signed)
}

/// An octal field: optional leading spaces, octal digits, then the end of the field or a
/// space or NUL (what follows that terminator is ignored, as GNU tar does).
fn parse_octal(field: &[u8]) -> Option<u64> {
    let mut rest = field;
    while let [b' ', tail @ ..] = rest {
        rest = tail;
    }
    let mut value: u64 = 0;
    for &c in rest {
        match c {
            b'0'..=b'7' => {
                value = value.checked_mul(8)?.checked_add(u64::from(c - b'0'))?;
            }
            b' ' | 0 => return Some(value),
            _ => return None,
        }
    }
    Some(value)
}

/// A numeric field: octal, or base-256 when the first byte has its high bit set (GNU and
/// star: big-endian two's complement, bit 6 of the first byte being the sign).
fn parse_numeric(field: &[u8]) -> Option<i128> {
    let (&first, rest) = field.split_first()?;
    if first & 0x80 == 0 {
        return parse_octal(field).map(i128::from);
    }
    if rest.len() > 14 {
        return None; // cannot happen for header fields (at most 12 bytes)
    }
    let low7 = first & 0x7f;
    let mut value: i128 = if low7 & 0x40 != 0 {
        i128::from((low7 | 0x80) as i8)
    } else {
        i128::from(low7)
    };
    for &byte in rest {
        value = value.checked_mul(256)?.checked_add(i128::from(byte))?;
    }
    Some(value)
}

enum Normalized {
    Empty,
    Unsafe,
    Path(String),
}

/// Drops leading `/`, empty and `.` components; refuses `..` and NUL.
fn normalize_path(raw: &str) -> Normalized {
    let mut parts = Vec::new();
    for part in raw.split('/') {
        match part {
            "" | "." => {}
            ".." => return Normalized::Unsafe,
            _ => parts.push(part),
        }
    }
    let path = parts.join("/");
    if path.is_empty() {
        Normalized::Empty
    } else if is_safe_relative_path(&path) {
        Normalized::Path(path)
    } else {
        Normalized::Unsafe
    }
}

// ---------------------------------------------------------------------------------------
// PAX records
// ---------------------------------------------------------------------------------------

/// Parses `"%d %s=%s\n"` records into `into`. `global` headers only keep the keys that can
/// apply to every entry.
fn parse_pax(data: &[u8], into: &mut Pax, global: bool) -> Result<(), String> {
    let mut rest = data;
    while !rest.is_empty() {
        // Some writers pad the record area with NULs.
        if rest.iter().all(|&b| b == 0) {
            break;
        }
        let space = rest
            .iter()
            .take(21)
            .position(|&b| b == b' ')
            .ok_or("PAX record without a length")?;
        let bad_len = || String::from("bad PAX record length");
        let (digits, _) = rest.split_at_checked(space).ok_or_else(bad_len)?;
        let len = parse_decimal_u64(digits).ok_or_else(bad_len)?;
        let len = usize::try_from(len).map_err(|_| bad_len())?;
        if len <= space + 1 {
            return Err(bad_len());
        }
        let (record, tail) = rest.split_at_checked(len).ok_or_else(bad_len)?;
        let record = record.get(space + 1..).ok_or_else(bad_len)?;
        rest = tail;
        let Some((b'\n', record)) = record.split_last() else {
            return Err("PAX record not terminated by a newline".into());
        };
        let mut key_value = record.splitn(2, |&b| b == b'=');
        let (Some(key), Some(value)) = (key_value.next(), key_value.next()) else {
            return Err("PAX record without '='".into());
        };
        let bad = || format!("bad PAX {} value", String::from_utf8_lossy(key));
        let empty = value.is_empty();
        match key {
            b"path" if !global => into.path = (!empty).then(|| value.to_vec()),
            b"linkpath" if !global => into.linkpath = (!empty).then(|| value.to_vec()),
            b"GNU.sparse.name" if !global => {
                into.sparse_name = (!empty).then(|| value.to_vec());
            }
            b"size" if !global => {
                into.size = if empty {
                    None
                } else {
                    Some(parse_decimal_u64(value).ok_or_else(bad)?)
                };
            }
            b"uname" => into.uname = (!empty).then(|| value.to_vec()),
            b"gname" => into.gname = (!empty).then(|| value.to_vec()),
            b"uid" | b"gid" => {
                let id = if empty {
                    None
                } else {
                    let v = parse_decimal_u64(value).ok_or_else(bad)?;
                    Some(u32::try_from(v).map_err(|_| bad())?)
                };
                if key == b"uid" {
                    into.uid = id;
                } else {
                    into.gid = id;
                }
            }
            b"mtime" => {
                into.mtime = if empty {
                    None
                } else {
                    Some(parse_pax_time(value).ok_or_else(bad)?)
                };
            }
            _ => {}
        }
    }
    Ok(())
}

fn parse_decimal_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    let mut value: u64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    Some(value)
}

/// A PAX time, `[-]seconds[.fraction]`, as whole seconds (floor) and nanoseconds.
fn parse_pax_time(value: &[u8]) -> Option<(i64, u32)> {
    let (negative, value) = match value.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, value),
    };
    let mut parts = value.splitn(2, |&b| b == b'.');
    let int_part = parts.next().unwrap_or_default();
    let frac_part = parts.next().unwrap_or_default();
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    let secs = if int_part.is_empty() {
        0
    } else {
        i64::try_from(parse_decimal_u64(int_part)?).ok()?
    };
    let mut nsec: u32 = 0;
    for (i, &c) in frac_part.iter().enumerate() {
        if !c.is_ascii_digit() {
            return None;
        }
        if i < 9 {
            nsec = nsec * 10 + u32::from(c - b'0');
        }
    }
    for _ in frac_part.len()..9 {
        nsec *= 10;
    }
    if !negative {
        Some((secs, nsec))
    } else if nsec == 0 {
        Some((secs.checked_neg()?, 0))
    } else {
        Some((secs.checked_neg()?.checked_sub(1)?, 1_000_000_000 - nsec))
    }
}

// ---------------------------------------------------------------------------------------
// Gzip layer
// ---------------------------------------------------------------------------------------

enum GzState {
    Header(GzHeader),
    Deflate,
    Trailer {
        buf: [u8; 8],
        n: usize,
    },
    /// A member ended; the next byte starts another member or trailing bytes.
    Between,
    /// Trailing bytes after the last member: ignored.
    Ignore,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum HdrStage {
    Fixed,
    ExtraLen,
    Extra,
    Name,
    Comment,
    HeaderCrc,
}

struct GzHeader {
    stage: HdrStage,
    crc: Crc,
    flags: u8,
    /// Bytes read in the current stage (fixed part, 2-byte words) or bytes left (extra).
    n: u64,
    word: [u8; 2],
}

const FHCRC: u8 = 0x02;
const FEXTRA: u8 = 0x04;
const FNAME: u8 = 0x08;
const FCOMMENT: u8 = 0x10;

impl GzHeader {
    fn new() -> Self {
        GzHeader {
            stage: HdrStage::Fixed,
            crc: Crc::new(),
            flags: 0,
            n: 0,
            word: [0; 2],
        }
    }

    /// The stage after `after`, or `None` when the header is complete.
    fn next_stage(&self, after: HdrStage) -> Option<HdrStage> {
        let order = [
            (HdrStage::ExtraLen, FEXTRA),
            (HdrStage::Name, FNAME),
            (HdrStage::Comment, FCOMMENT),
            (HdrStage::HeaderCrc, FHCRC),
        ];
        let rank = |s: HdrStage| match s {
            HdrStage::Fixed => 0,
            HdrStage::ExtraLen | HdrStage::Extra => 1,
            HdrStage::Name => 2,
            HdrStage::Comment => 3,
            HdrStage::HeaderCrc => 4,
        };
        order
            .iter()
            .filter(|(stage, flag)| rank(*stage) > rank(after) && self.flags & flag != 0)
            .map(|(stage, _)| *stage)
            .next()
    }

    /// Moves past `stage`; returns true when the header is complete.
    fn advance(&mut self, stage: HdrStage) -> bool {
        self.n = 0;
        match self.next_stage(stage) {
            Some(next) => {
                self.stage = next;
                false
            }
            None => true,
        }
    }

    /// Consumes one header byte; returns true when the header is complete.
    fn byte(&mut self, b: u8) -> Result<bool, String> {
        if self.stage != HdrStage::HeaderCrc {
            self.crc.update(&[b]);
        }
        match self.stage {
            HdrStage::Fixed => {
                let ok = match self.n {
                    0 => b == 0x1f,
                    1 => b == 0x8b,
                    2 => b == 8,
                    3 => {
                        self.flags = b;
                        b & 0xe0 == 0
                    }
                    _ => true,
                };
                if !ok {
                    return Err("bad gzip member header".into());
                }
                self.n += 1;
                Ok(self.n == 10 && self.advance(HdrStage::Fixed))
            }
            HdrStage::ExtraLen => {
                self.word = [self.word[1], b];
                self.n += 1;
                if self.n < 2 {
                    return Ok(false);
                }
                let xlen = u16::from_le_bytes(self.word);
                if xlen == 0 {
                    return Ok(self.advance(HdrStage::Extra));
                }
                self.stage = HdrStage::Extra;
                self.n = u64::from(xlen);
                Ok(false)
            }
            HdrStage::Extra => {
                self.n = self.n.saturating_sub(1);
                Ok(self.n == 0 && self.advance(HdrStage::Extra))
            }
            HdrStage::Name | HdrStage::Comment => {
                if b == 0 {
                    return Ok(self.advance(self.stage));
                }
                self.n += 1;
                if self.n > MAX_GZIP_HEADER_FIELD {
                    return Err("gzip header field too long".into());
                }
                Ok(false)
            }
            HdrStage::HeaderCrc => {
                self.word = [self.word[1], b];
                self.n += 1;
                if self.n < 2 {
                    return Ok(false);
                }
                if u16::from_le_bytes(self.word) != (self.crc.sum() & 0xffff) as u16 {
                    return Err("gzip header checksum mismatch".into());
                }
                Ok(true)
            }
        }
    }
}

struct Gunzip {
    state: GzState,
    inflate: Decompress,
    crc: Crc,
    out: Vec<u8>,
}

impl Gunzip {
    fn new() -> Self {
        Gunzip {
            state: GzState::Header(GzHeader::new()),
            inflate: Decompress::new(false),
            crc: Crc::new(),
            out: vec![0; GZIP_OUT_BUF],
        }
    }

    fn push(&mut self, mut data: &[u8], tar: &mut TarMachine, sink: &mut dyn FnMut(CatalogEntry)) {
        while !data.is_empty() && tar.fail.is_none() {
            match &mut self.state {
                GzState::Header(header) => {
                    let mut done = false;
                    let mut used = 0;
                    for &b in data {
                        used += 1;
                        match header.byte(b) {
                            Ok(true) => {
                                done = true;
                                break;
                            }
                            Ok(false) => {}
                            Err(reason) => {
                                tar.set_fail(reason);
                                return;
                            }
                        }
                    }
                    data = data.get(used..).unwrap_or_default();
                    if done {
                        self.inflate.reset(false);
                        self.crc.reset();
                        self.state = GzState::Deflate;
                    }
                }
                GzState::Deflate => self.inflate(&mut data, tar, sink),
                GzState::Trailer { buf, n } => {
                    let take = copy_prefix(buf.get_mut(*n..).unwrap_or_default(), data);
                    *n += take;
                    data = data.get(take..).unwrap_or_default();
                    if *n == 8 {
                        let [c0, c1, c2, c3, l0, l1, l2, l3] = *buf;
                        let crc = u32::from_le_bytes([c0, c1, c2, c3]);
                        let isize = u32::from_le_bytes([l0, l1, l2, l3]);
                        if crc != self.crc.sum() || isize != self.crc.amount() {
                            tar.set_fail("gzip member CRC or length mismatch".into());
                            return;
                        }
                        self.state = GzState::Between;
                    }
                }
                GzState::Between => {
                    self.state = if data.first() == Some(&0x1f) {
                        GzState::Header(GzHeader::new())
                    } else {
                        GzState::Ignore
                    };
                }
                GzState::Ignore => return,
            }
        }
    }

    /// Inflates from `data` (advancing it) into the tar machine until the input is used up,
    /// the member ends, or the tar machine fails.
    fn inflate(
        &mut self,
        data: &mut &[u8],
        tar: &mut TarMachine,
        sink: &mut dyn FnMut(CatalogEntry),
    ) {
        loop {
            let (in_before, out_before) = (self.inflate.total_in(), self.inflate.total_out());
            let status = self
                .inflate
                .decompress(data, &mut self.out, FlushDecompress::None);
            let consumed = usize::try_from(self.inflate.total_in() - in_before)
                .map_or(data.len(), |c| c.min(data.len()));
            let produced = usize::try_from(self.inflate.total_out() - out_before)
                .map_or(self.out.len(), |p| p.min(self.out.len()));
            // Both are clamped to the buffers' lengths above.
            *data = data.get(consumed..).unwrap_or_default();
            let out = self.out.get(..produced).unwrap_or_default();
            self.crc.update(out);
            tar.push(out, sink);
            match status {
                Err(e) => {
                    tar.set_fail(format!("gzip: {e}"));
                    return;
                }
                Ok(Status::StreamEnd) => {
                    self.state = GzState::Trailer { buf: [0; 8], n: 0 };
                    return;
                }
                Ok(_) => {}
            }
            if tar.fail.is_some() {
                return;
            }
            if consumed == 0 && produced == 0 {
                if !data.is_empty() {
                    // Never spin: input left but no progress.
                    tar.set_fail("gzip: inflate made no progress".into());
                }
                return;
            }
        }
    }

    /// The stream ended: it must end between members.
    fn finish(&self) -> Result<(), String> {
        match self.state {
            GzState::Between | GzState::Ignore => Ok(()),
            _ => Err("truncated gzip stream".into()),
        }
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::{Read, Write};

    // ---- helpers -------------------------------------------------------------------------

    fn parse_pieces(pieces: &[&[u8]]) -> (Vec<CatalogEntry>, Result<TarSummary, NotTar>) {
        let mut entries = Vec::new();
        let mut parser = TarCatalogParser::new();
        for piece in pieces {
            parser.feed(piece, &mut |e| entries.push(e));
        }
        let result = parser.finish(&mut |e| entries.push(e));
        (entries, result)
    }

    fn parse(stream: &[u8]) -> (Vec<CatalogEntry>, Result<TarSummary, NotTar>) {
        parse_pieces(&[stream])
    }

    /// Feeds `stream` cut at the given (sorted, deduplicated) positions.
    fn parse_split(
        stream: &[u8],
        cuts: &[usize],
    ) -> (Vec<CatalogEntry>, Result<TarSummary, NotTar>) {
        let mut cuts: Vec<usize> = cuts.iter().map(|&c| c.min(stream.len())).collect();
        cuts.sort_unstable();
        let mut pieces = Vec::new();
        let mut start = 0;
        for cut in cuts {
            pieces.push(&stream[start..cut]);
            start = cut;
        }
        pieces.push(&stream[start..]);
        parse_pieces(&pieces)
    }

    fn ok(stream: &[u8]) -> (Vec<CatalogEntry>, TarSummary) {
        let (entries, result) = parse(stream);
        match result {
            Ok(summary) => (entries, summary),
            Err(e) => panic!("expected a tar: {e}"),
        }
    }

    fn not_tar(stream: &[u8]) -> String {
        match parse(stream).1 {
            Ok(summary) => panic!("expected not a tar, got {summary:?}"),
            Err(e) => e.reason,
        }
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    fn gunzip(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(data)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    /// Deterministic pseudo-random bytes.
    fn noise(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    #[derive(Clone, Copy, PartialEq)]
    enum Fmt {
        Ustar,
        Gnu,
        V7,
    }

    #[derive(Clone)]
    struct Hdr {
        name: Vec<u8>,
        prefix: Vec<u8>,
        typeflag: u8,
        size: u64,
        mode: u64,
        uid: u64,
        gid: u64,
        mtime: u64,
        link: Vec<u8>,
        uname: &'static str,
        gname: &'static str,
        fmt: Fmt,
    }

    impl Hdr {
        fn new(name: &str, typeflag: u8, size: u64) -> Hdr {
            Hdr {
                name: name.as_bytes().to_vec(),
                prefix: Vec::new(),
                typeflag,
                size,
                mode: 0o644,
                uid: 1000,
                gid: 100,
                mtime: 1_700_000_000,
                link: Vec::new(),
                uname: "alice",
                gname: "users",
                fmt: Fmt::Ustar,
            }
        }

        fn block(&self) -> [u8; BLOCK] {
            let mut b = [0u8; BLOCK];
            b[..self.name.len()].copy_from_slice(&self.name);
            octal(&mut b[100..108], self.mode);
            octal(&mut b[108..116], self.uid);
            octal(&mut b[116..124], self.gid);
            octal(&mut b[124..136], self.size);
            octal(&mut b[136..148], self.mtime);
            b[156] = self.typeflag;
            b[157..157 + self.link.len()].copy_from_slice(&self.link);
            match self.fmt {
                Fmt::Ustar => b[257..265].copy_from_slice(b"ustar\x0000"),
                Fmt::Gnu => b[257..265].copy_from_slice(b"ustar  \0"),
                Fmt::V7 => {}
            }
            if self.fmt != Fmt::V7 {
                b[265..265 + self.uname.len()].copy_from_slice(self.uname.as_bytes());
                b[297..297 + self.gname.len()].copy_from_slice(self.gname.as_bytes());
            }
            b[345..345 + self.prefix.len()].copy_from_slice(&self.prefix);
            set_checksum(&mut b);
            b
        }
    }

    fn octal(field: &mut [u8], value: u64) {
        let text = format!("{:0width$o}\0", value, width = field.len() - 1);
        field.copy_from_slice(text.as_bytes());
    }

    fn set_checksum(b: &mut [u8; BLOCK]) {
        b[148..156].fill(b' ');
        let sum: u64 = b.iter().map(|&x| u64::from(x)).sum();
        b[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    }

    fn pax_record(key: &str, value: &str) -> String {
        let body = format!(" {key}={value}\n");
        let mut len = body.len() + 1;
        while format!("{len}{body}").len() != len {
            len += 1;
        }
        format!("{len}{body}")
    }

    #[derive(Default)]
    struct Tar(Vec<u8>);

    impl Tar {
        fn raw(&mut self, h: &Hdr, data: &[u8]) -> &mut Self {
            self.0.extend_from_slice(&h.block());
            self.0.extend_from_slice(data);
            let pad = padding(data.len() as u64) as usize;
            self.0.extend(std::iter::repeat_n(0, pad));
            self
        }
        fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
            self.raw(&Hdr::new(name, b'0', data.len() as u64), data)
        }
        fn entry(&mut self, name: &str, typeflag: u8, link: &str) -> &mut Self {
            let mut h = Hdr::new(name, typeflag, 0);
            h.link = link.as_bytes().to_vec();
            self.raw(&h, &[])
        }
        fn pax(&mut self, typeflag: u8, records: &[(&str, &str)]) -> &mut Self {
            let data: String = records.iter().map(|(k, v)| pax_record(k, v)).collect();
            let h = Hdr::new("PaxHeaders/x", typeflag, data.len() as u64);
            self.raw(&h, data.as_bytes())
        }
        fn gnu_long(&mut self, typeflag: u8, name: &str) -> &mut Self {
            let mut data = name.as_bytes().to_vec();
            data.push(0);
            let mut h = Hdr::new("././@LongLink", typeflag, data.len() as u64);
            h.fmt = Fmt::Gnu;
            self.raw(&h, &data)
        }
        fn end(&mut self) -> Vec<u8> {
            let mut out = std::mem::take(&mut self.0);
            out.extend_from_slice(&[0; 2 * BLOCK]);
            out
        }
    }

    fn entry(path: &str, kind: EntryKind) -> CatalogEntry {
        CatalogEntry {
            path: path.into(),
            kind,
            mode: 0o644,
            mtime: 1_700_000_000,
            mtime_nsec: 0,
            uid: 1000,
            gid: 100,
            user: "alice".into(),
            group: "users".into(),
            size: 0,
            link: None,
            offset: None,
        }
    }

    /// A tar exercising most header features, with file contents.
    fn sample_tar() -> Vec<u8> {
        let long = format!("deep/{}/{}.txt", "x".repeat(80), "y".repeat(60));
        let mut prefixed = Hdr::new("name.txt", b'0', 3);
        prefixed.prefix = b"some/prefix".to_vec();
        Tar::default()
            .entry("./", b'5', "")
            .file("./a.txt", b"hello\n")
            .entry("./d/", b'5', "")
            .file("d/big.bin", &noise(1, 5000))
            .entry("d/link", b'2', "../a.txt")
            .entry("d/hard", b'1', "./a.txt")
            .raw(&prefixed, b"pre")
            .gnu_long(b'L', &long)
            .file("truncated-name", b"long")
            .pax(
                b'x',
                &[("path", "pax/ünïcode name"), ("mtime", "1700000001.25")],
            )
            .file("ignored", b"pax")
            .file("empty", b"")
            .end()
    }

    // ---- hand-built archives -------------------------------------------------------------

    #[test]
    fn ustar_entries_fields_and_offsets() {
        let tar = sample_tar();
        let (entries, summary) = ok(&tar);
        let long = format!("deep/{}/{}.txt", "x".repeat(80), "y".repeat(60));
        let paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "a.txt",
                "d",
                "d/big.bin",
                "d/link",
                "d/hard",
                "some/prefix/name.txt",
                long.as_str(),
                "pax/ünïcode name",
                "empty"
            ]
        );
        assert_eq!(
            summary,
            TarSummary {
                compressed: false,
                entries: 9,
                unsafe_paths_skipped: 0,
                tar_bytes: tar.len() as u64
            }
        );
        let contents: [(&str, Vec<u8>); 6] = [
            ("a.txt", b"hello\n".to_vec()),
            ("d/big.bin", noise(1, 5000)),
            ("some/prefix/name.txt", b"pre".to_vec()),
            (long.as_str(), b"long".to_vec()),
            ("pax/ünïcode name", b"pax".to_vec()),
            ("empty", Vec::new()),
        ];
        for (path, content) in contents {
            let e = entries.iter().find(|e| e.path == path).unwrap();
            assert_eq!(e.kind, EntryKind::File, "{path}");
            assert_eq!(e.size, content.len() as u64, "{path}");
            let at = e.offset.unwrap() as usize;
            assert_eq!(at % BLOCK, 0);
            assert_eq!(&tar[at..at + content.len()], &content[..], "{path}");
        }
        let mut expected = entry("a.txt", EntryKind::File);
        expected.size = 6;
        expected.offset = Some(1024);
        assert_eq!(entries[0], expected);
        assert_eq!(entries[1], entry("d", EntryKind::Dir));
        let mut link = entry("d/link", EntryKind::Symlink);
        link.link = Some("../a.txt".into());
        assert_eq!(entries[3], link);
        let mut hard = entry("d/hard", EntryKind::Hardlink);
        hard.link = Some("a.txt".into());
        assert_eq!(entries[4], hard);
        let pax = &entries[7];
        assert_eq!((pax.mtime, pax.mtime_nsec), (1_700_000_001, 250_000_000));
    }

    #[test]
    fn pax_records_override_header() {
        // The header says size 0 (as for files over 8 GiB); the PAX size is authoritative.
        let data = noise(2, 700);
        let mut h = Hdr::new("short", b'0', 0);
        h.uid = 5;
        let mut t = Tar::default();
        t.pax(
            b'x',
            &[
                ("path", "./over/ride"),
                ("size", "700"),
                ("uid", "4000000000"),
                ("gid", "7"),
                ("uname", "bob"),
                ("gname", "staff"),
                ("mtime", "-1.5"),
                ("atime", "whatever"),
                ("linkpath", "ignored-for-files"),
            ],
        );
        t.raw(&h, &data);
        t.file("next", b"n");
        let tar = t.end();
        let (entries, _) = ok(&tar);
        assert_eq!(entries.len(), 2);
        let e = &entries[0];
        assert_eq!(e.path, "over/ride");
        assert_eq!(e.size, 700);
        assert_eq!((e.uid, e.gid), (4_000_000_000, 7));
        assert_eq!((e.user.as_str(), e.group.as_str()), ("bob", "staff"));
        assert_eq!((e.mtime, e.mtime_nsec), (-2, 500_000_000));
        assert_eq!(e.link, None);
        let at = e.offset.unwrap() as usize;
        assert_eq!(&tar[at..at + 700], &data[..]);
        // The PAX records applied to one entry only.
        assert_eq!(entries[1].path, "next");
        assert_eq!(entries[1].uid, 1000);
        assert_eq!(entries[1].user, "alice");
        assert_eq!(&tar[entries[1].offset.unwrap() as usize], &b'n');
    }

    #[test]
    fn pax_linkpath_and_gnu_long_link() {
        let target = "t/".repeat(80);
        let tar = Tar::default()
            .pax(b'x', &[("linkpath", &target)])
            .entry("s1", b'2', "short")
            .gnu_long(b'K', &target)
            .gnu_long(b'L', &"n".repeat(150))
            .entry("s2", b'2', "short")
            .gnu_long(b'K', "/abs/../../x")
            .entry("s3", b'2', "x")
            .end();
        let (entries, summary) = ok(&tar);
        assert_eq!(summary.entries, 3);
        assert_eq!(entries[0].link.as_deref(), Some(target.as_str()));
        assert_eq!(entries[1].path, "n".repeat(150));
        assert_eq!(entries[1].link.as_deref(), Some(target.as_str()));
        // Symlink targets are recorded verbatim.
        assert_eq!(entries[2].link.as_deref(), Some("/abs/../../x"));
    }

    #[test]
    fn global_pax_applies_to_following_entries() {
        let tar = Tar::default()
            .file("before", b"")
            .pax(
                b'g',
                &[
                    ("mtime", "1600000000.5"),
                    ("uname", "global"),
                    ("path", "not-applied"),
                    ("comment", "git archive style"),
                ],
            )
            .file("one", b"1")
            .pax(b'x', &[("uname", "local")])
            .file("two", b"2")
            .pax(b'g', &[("uname", "")])
            .file("three", b"3")
            .end();
        let (entries, _) = ok(&tar);
        let got: Vec<(&str, i64, u32, &str)> = entries
            .iter()
            .map(|e| (e.path.as_str(), e.mtime, e.mtime_nsec, e.user.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("before", 1_700_000_000, 0, "alice"),
                ("one", 1_600_000_000, 500_000_000, "global"),
                ("two", 1_600_000_000, 500_000_000, "local"),
                ("three", 1_600_000_000, 500_000_000, "alice"),
            ]
        );
    }

    #[test]
    fn numeric_field_encodings() {
        // Base-256 size, uid and negative mtime; octal with leading spaces and a space end.
        let data = noise(3, 1234);
        let mut b = Hdr::new("b256", b'0', 0).block();
        b[124..136].fill(0);
        b[124] = 0x80;
        b[134..136].copy_from_slice(&1234u16.to_be_bytes());
        b[108..116].copy_from_slice(&[0x80, 0, 0, 0, 0x01, 0, 0, 0]);
        b[136..148].fill(0xff); // -1
        b[100..108].copy_from_slice(b"  755 \0\0");
        set_checksum(&mut b);
        let mut tar = b.to_vec();
        tar.extend_from_slice(&data);
        tar.resize(tar.len() + padding(1234) as usize, 0);
        tar.extend_from_slice(&Tar::default().file("after", b"x").end());
        let (entries, _) = ok(&tar);
        assert_eq!(entries.len(), 2);
        let e = &entries[0];
        assert_eq!((e.size, e.uid, e.mtime, e.mode), (1234, 1 << 24, -1, 0o755));
        let at = e.offset.unwrap() as usize;
        assert_eq!(&tar[at..at + 1234], &data[..]);
        assert_eq!(entries[1].path, "after");
    }

    #[test]
    fn numeric_parsers() {
        assert_eq!(parse_octal(b"0000644\0"), Some(0o644));
        assert_eq!(parse_octal(b"   644  "), Some(0o644));
        assert_eq!(parse_octal(b"\0\0\0\0"), Some(0));
        assert_eq!(parse_octal(b"64x4"), None);
        assert_eq!(parse_octal(b"9"), None);
        assert_eq!(parse_numeric(&[0xff; 12]), Some(-1));
        assert_eq!(parse_numeric(&[0x80, 0, 0, 1, 0]), Some(256));
        assert_eq!(parse_pax_time(b"12"), Some((12, 0)));
        assert_eq!(parse_pax_time(b"12.000000001999"), Some((12, 1)));
        assert_eq!(parse_pax_time(b"-0.25"), Some((-1, 750_000_000)));
        assert_eq!(parse_pax_time(b"1e9"), None);
        assert_eq!(parse_pax_time(b""), None);
        assert_eq!(parse_pax_time(b"-"), None);
    }

    #[test]
    fn signed_checksum_v7_and_old_conventions() {
        // V7 header (no magic), a directory written as a regular file with a trailing
        // slash, a non-UTF-8 name, and a checksum computed with signed bytes.
        let mut dir = Hdr::new("olddir/", 0, 0);
        dir.fmt = Fmt::V7;
        let mut weird = Hdr::new("", b'0', 2);
        weird.name = b"caf\xe9".to_vec();
        weird.fmt = Fmt::V7;
        let mut b = weird.block();
        b[148..156].fill(b' ');
        let signed: i64 = b.iter().map(|&x| i64::from(x as i8)).sum();
        b[148..156].copy_from_slice(format!("{signed:06o}\0 ").as_bytes());
        let mut tar = Tar::default().raw(&dir, &[]).end();
        tar.truncate(BLOCK);
        tar.extend_from_slice(&b);
        tar.extend_from_slice(b"ok");
        tar.resize(3 * BLOCK, 0);
        let (entries, _) = ok(&tar);
        assert_eq!(entries.len(), 2);
        assert_eq!(
            (entries[0].path.as_str(), entries[0].kind),
            ("olddir", EntryKind::Dir)
        );
        assert_eq!(entries[0].user, "");
        assert_eq!(entries[1].path, "caf\u{fffd}");
        assert_eq!(entries[1].offset, Some(2 * BLOCK as u64));
    }

    #[test]
    fn other_kinds_and_labels() {
        let tar = Tar::default()
            .entry("vol", b'V', "")
            .entry("chr", b'3', "")
            .entry("blk", b'4', "")
            .entry("fifo", b'6', "")
            .file("contig", b"c")
            .end();
        let mut contig = tar.clone();
        contig[4 * BLOCK + 156] = b'7';
        let mut b: [u8; BLOCK] = contig[4 * BLOCK..5 * BLOCK].try_into().unwrap();
        set_checksum(&mut b);
        contig[4 * BLOCK..5 * BLOCK].copy_from_slice(&b);
        let (entries, _) = ok(&contig);
        let kinds: Vec<(&str, EntryKind)> =
            entries.iter().map(|e| (e.path.as_str(), e.kind)).collect();
        assert_eq!(
            kinds,
            [
                ("chr", EntryKind::Other),
                ("blk", EntryKind::Other),
                ("fifo", EntryKind::Other),
                ("contig", EntryKind::File)
            ]
        );
        assert!(entries[..3]
            .iter()
            .all(|e| e.offset.is_none() && e.size == 0));
    }

    #[test]
    fn directory_size_is_not_data() {
        // GNU tar never skips data after a type-5 directory header.
        let mut dir = Hdr::new("d/", b'5', 4096);
        dir.mode = 0o755;
        let tar = Tar::default().raw(&dir, &[]).file("d/f", b"x").end();
        let (entries, _) = ok(&tar);
        assert_eq!(entries.len(), 2);
        assert_eq!((entries[0].size, entries[0].mode), (0, 0o755));
        assert_eq!(entries[1].path, "d/f");
    }

    #[test]
    fn old_gnu_sparse_with_extension_block() {
        let mut h = Hdr::new("sparse", b'S', 1024);
        h.fmt = Fmt::Gnu;
        let mut b = h.block();
        b[482] = 1; // isextended
        set_checksum(&mut b);
        let mut tar = b.to_vec();
        let mut ext = [0u8; BLOCK];
        ext[504] = 1; // another extension block follows
        tar.extend_from_slice(&ext);
        tar.extend_from_slice(&[0u8; BLOCK]); // last extension block
        tar.extend_from_slice(&noise(4, 1024));
        tar.extend_from_slice(&Tar::default().file("after", b"a").end());
        let (entries, _) = ok(&tar);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].kind, EntryKind::File);
        assert_eq!(entries[0].size, 1024);
        assert_eq!(entries[0].offset, Some(3 * BLOCK as u64));
        assert_eq!(entries[1].path, "after");
        assert_eq!(entries[1].offset, Some(6 * BLOCK as u64));
    }

    #[test]
    fn unsafe_and_odd_paths() {
        let tar = Tar::default()
            .entry(".", b'5', "")
            .file("../evil", b"e")
            .file("a/../../b", b"e")
            .file("/abs/path", b"a")
            .file("./x//y/./z/", b"z")
            .entry("h", b'1', "../outside")
            .entry("h2", b'1', "")
            .pax(b'x', &[("path", "ok/../../no")])
            .file("fine", b"f")
            .end();
        let (entries, summary) = ok(&tar);
        let paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["abs/path", "x/y/z"]);
        assert_eq!(summary.unsafe_paths_skipped, 5);
        assert!(entries.iter().all(|e| is_safe_relative_path(&e.path)));
    }

    #[test]
    fn end_of_archive_variants() {
        let body = {
            let mut t = Tar::default();
            t.file("a", b"1").file("b", b"22");
            t.0.clone()
        };
        let expect = |stream: &[u8]| {
            let (entries, summary) = ok(stream);
            assert_eq!(entries.len(), 2);
            assert_eq!(summary.tar_bytes, stream.len() as u64);
        };
        expect(&body); // EOF right after the last entry's padding
        let mut one_zero = body.clone();
        one_zero.extend_from_slice(&[0; BLOCK]);
        expect(&one_zero);
        let mut record = body.clone();
        record.resize(10240, 0);
        expect(&record);
        let mut partial_zero = body.clone();
        partial_zero.extend_from_slice(&[0; 100]);
        expect(&partial_zero);
        // Garbage, or even another archive, after the end-of-archive block is ignored.
        let mut garbage = one_zero.clone();
        garbage.extend_from_slice(&noise(5, 3000));
        expect(&garbage);
        let mut concatenated = one_zero.clone();
        concatenated.extend_from_slice(&Tar::default().file("c", b"3").end());
        expect(&concatenated);
        // An empty archive: zero blocks only.
        let (entries, summary) = ok(&[0; 10240]);
        assert!(entries.is_empty());
        assert_eq!(summary.entries, 0);
    }

    // ---- not a tar -----------------------------------------------------------------------

    #[test]
    fn non_tar_streams_are_refused() {
        assert_eq!(not_tar(b""), "empty stream");
        not_tar(b"\x1f");
        not_tar(b"\x1f\x8b");
        not_tar(b"hello world, this is not a tar archive\n");
        not_tar(&noise(6, 100_000));
        not_tar(&[0; BLOCK]);
        let mut zeros_then_data = vec![0; 4096];
        zeros_then_data.push(1);
        not_tar(&zeros_then_data);
        not_tar(&gzip(b""));
        not_tar(&gzip(&noise(7, 50_000)));
        not_tar(&gzip(&[0; 512]));
        // A gzip stream whose content is not a tar stops decompressing at once.
        let mut parser = TarCatalogParser::new();
        let compressed = gzip(&noise(8, 1 << 20));
        parser.feed(&compressed[..compressed.len() / 2], &mut |_| {
            panic!("no entry")
        });
        assert!(parser.is_not_tar());
        assert!(parser.finish(&mut |_| {}).is_err());
    }

    #[test]
    fn truncated_and_corrupt_tars_are_refused() {
        let tar = sample_tar();
        // Cut inside the first header, inside file data, inside a long name header.
        for cut in [1, 100, 511, 1024 + 3, 3 * BLOCK + 10] {
            not_tar(&tar[..cut]);
        }
        // Every cut gives an answer without panicking; cuts inside data are refused.
        for cut in 0..tar.len() {
            let (_, result) = parse(&tar[..cut]);
            if cut % BLOCK != 0 && tar[cut - cut % BLOCK..cut].iter().any(|&b| b != 0) {
                assert!(result.is_err(), "cut at {cut}");
            }
        }
        // Cut at a block boundary inside a file's data, and inside its padding.
        let big = ok(&tar)
            .0
            .into_iter()
            .find(|e| e.path == "d/big.bin")
            .unwrap();
        let at = big.offset.unwrap() as usize;
        assert!(not_tar(&tar[..at + 2 * BLOCK]).contains("truncated entry"));
        not_tar(&tar[..at + 5000 + 1]);
        let mut bad_sum = tar.clone();
        bad_sum[BLOCK + 10] ^= 1;
        assert!(not_tar(&bad_sum).contains("checksum"));
        let mut bad_size = tar.clone();
        bad_size[BLOCK + 124] = b'9';
        let mut b: [u8; BLOCK] = bad_size[BLOCK..2 * BLOCK].try_into().unwrap();
        set_checksum(&mut b);
        bad_size[BLOCK..2 * BLOCK].copy_from_slice(&b);
        not_tar(&bad_size);
        // Metadata header followed directly by the end of the archive.
        not_tar(&Tar::default().gnu_long(b'L', "name").end());
        // Malformed PAX records.
        for records in ["5 a=b\n", "x path=y\n", "12 path=y\n\n", "8 path\n"] {
            let h = Hdr::new("p", b'x', records.len() as u64);
            let tar = Tar::default()
                .raw(&h, records.as_bytes())
                .file("f", b"")
                .end();
            not_tar(&tar);
        }
        let mut huge = Hdr::new("huge", b'0', 0).block();
        huge[124..136].fill(0xff);
        huge[124] = 0x80;
        set_checksum(&mut huge);
        not_tar(&[&huge[..], &[0; BLOCK]].concat());
    }

    #[test]
    fn metadata_caps() {
        let h = Hdr::new("././@LongLink", b'L', MAX_META_BYTES + 1);
        let mut parser = TarCatalogParser::new();
        parser.feed(&h.block(), &mut |_| {});
        assert!(parser.is_not_tar(), "refused as soon as the header is read");
        let at_cap = Tar::default()
            .gnu_long(b'L', &"n/".repeat((MAX_META_BYTES as usize - 2) / 2))
            .file("x", b"")
            .end();
        assert_eq!(ok(&at_cap).0.len(), 1);
        let h = Hdr::new("pax", b'x', MAX_META_BYTES + 1);
        not_tar(&h.block());
        let h = Hdr::new("pax", b'g', 0o77_777_777_777);
        not_tar(&h.block());
    }

    // ---- gzip ----------------------------------------------------------------------------

    #[test]
    fn gzip_tar_matches_plain() {
        let tar = sample_tar();
        let (plain_entries, plain) = ok(&tar);
        let (entries, summary) = ok(&gzip(&tar));
        assert_eq!(entries, plain_entries);
        assert_eq!(
            summary,
            TarSummary {
                compressed: true,
                ..plain
            }
        );
        // Two members, then zero padding (as written to a blocked device).
        let mut multi = gzip(&tar[..3000]);
        multi.extend_from_slice(&gzip(&tar[3000..]));
        multi.extend_from_slice(&[0; 700]);
        let (entries, summary) = ok(&multi);
        assert_eq!(entries, plain_entries);
        assert_eq!(summary.tar_bytes, tar.len() as u64);
        // Trailing garbage after the last member is ignored.
        let mut garbage = gzip(&tar);
        garbage.extend_from_slice(b"garbage");
        assert_eq!(ok(&garbage).0, plain_entries);
    }

    /// A gzip member with every optional header field, built by hand.
    fn gzip_with_header_fields(data: &[u8]) -> Vec<u8> {
        let mut header = vec![
            0x1f,
            0x8b,
            8,
            FHCRC | FEXTRA | FNAME | FCOMMENT,
            0,
            0,
            0,
            0,
            0,
            3,
        ];
        header.extend_from_slice(&[4, 0, b'a', b'b', 2, 0]);
        header.extend_from_slice(b"name.tar\0comment\0");
        let mut crc = Crc::new();
        crc.update(&header);
        header.extend_from_slice(&((crc.sum() & 0xffff) as u16).to_le_bytes());
        let mut enc = flate2::write::DeflateEncoder::new(header, flate2::Compression::fast());
        enc.write_all(data).unwrap();
        let mut out = enc.finish().unwrap();
        let mut crc = Crc::new();
        crc.update(data);
        out.extend_from_slice(&crc.sum().to_le_bytes());
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out
    }

    #[test]
    fn gzip_header_fields_and_corruption() {
        let tar = sample_tar();
        let gz = gzip_with_header_fields(&tar);
        assert_eq!(gunzip(&gz), tar);
        assert_eq!(ok(&gz).0, ok(&tar).0);
        // Header CRC, data CRC, length, truncation.
        let mut bad_hcrc = gz.clone();
        bad_hcrc[12] ^= 1;
        assert!(not_tar(&bad_hcrc).contains("header checksum"));
        let n = gz.len();
        let mut bad_crc = gz.clone();
        bad_crc[n - 8] ^= 1;
        not_tar(&bad_crc);
        let mut bad_len = gz.clone();
        bad_len[n - 1] ^= 1;
        not_tar(&bad_len);
        for cut in [3, 12, 40, n / 2, n - 4, n - 1] {
            not_tar(&gz[..cut]);
        }
        let mut bad_flags = gz.clone();
        bad_flags[3] |= 0x80;
        not_tar(&bad_flags);
        let mut bad_deflate = gzip(&tar);
        let mid = bad_deflate.len() / 2;
        bad_deflate[mid..mid + 16].fill(0xff);
        not_tar(&bad_deflate);
    }

    // ---- the system tar ------------------------------------------------------------------

    struct Expected {
        kind: EntryKind,
        content: Vec<u8>,
        link: Option<String>,
    }

    fn system_tar_available() -> bool {
        std::path::Path::new("/usr/bin/tar").exists()
            && std::process::Command::new("/usr/bin/tar")
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success() && o.stdout.starts_with(b"tar (GNU tar)"))
    }

    #[test]
    fn archives_made_by_gnu_tar() {
        use std::os::unix::fs::MetadataExt;
        if !system_tar_available() {
            eprintln!("GNU tar not found: skipped");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let long_dir = format!("sub/{}", "x".repeat(70));
        let long_file = format!("{long_dir}/{}.txt", "y".repeat(60));
        let long_target = "z".repeat(150);
        std::fs::create_dir_all(root.join(&long_dir)).unwrap();
        std::fs::create_dir_all(root.join("emptydir")).unwrap();
        std::fs::write(root.join("a.txt"), b"hello\n").unwrap();
        std::fs::write(root.join("empty"), b"").unwrap();
        std::fs::write(root.join("sub/b.bin"), noise(9, 70_000)).unwrap();
        std::fs::write(root.join(&long_file), b"long path content").unwrap();
        std::os::unix::fs::symlink("a.txt", root.join("link")).unwrap();
        std::os::unix::fs::symlink(&long_target, root.join("longlink")).unwrap();
        std::fs::hard_link(root.join("a.txt"), root.join("hard")).unwrap();

        let mut expected = std::collections::BTreeMap::new();
        let file = |c: &[u8]| Expected {
            kind: EntryKind::File,
            content: c.to_vec(),
            link: None,
        };
        let other = |kind, link: Option<&str>| Expected {
            kind,
            content: Vec::new(),
            link: link.map(str::to_string),
        };
        expected.insert("a.txt".to_string(), file(b"hello\n"));
        expected.insert("empty".into(), file(b""));
        expected.insert("sub/b.bin".into(), file(&noise(9, 70_000)));
        expected.insert(long_file.clone(), file(b"long path content"));
        expected.insert("link".into(), other(EntryKind::Symlink, Some("a.txt")));
        expected.insert(
            "longlink".into(),
            other(EntryKind::Symlink, Some(&long_target)),
        );
        expected.insert("hard".into(), file(b"hello\n"));
        for dir in ["sub", "emptydir", long_dir.as_str()] {
            expected.insert(dir.into(), other(EntryKind::Dir, None));
        }

        for (name, args) in [
            ("gnu.tar", &["--format=gnu", "-cf"][..]),
            ("pax.tar", &["--format=pax", "-cf"]),
            ("gnu.tar.gz", &["--format=gnu", "-czf"]),
            ("pax.tar.gz", &["--format=posix", "-czf"]),
        ] {
            let archive = tmp.path().join(name);
            let status = std::process::Command::new("/usr/bin/tar")
                .args(args)
                .arg(&archive)
                .arg("-C")
                .arg(&root)
                .arg(".")
                .status()
                .unwrap();
            assert!(status.success(), "{name}");
            let stream = std::fs::read(&archive).unwrap();
            let gz = name.ends_with(".gz");
            let tar = if gz { gunzip(&stream) } else { stream.clone() };
            // Feed it in pieces of a few sizes.
            let pieces: Vec<&[u8]> = stream.chunks(7919).collect();
            let (entries, result) = parse_pieces(&pieces);
            let summary = result.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(summary.compressed, gz, "{name}");
            assert_eq!(summary.tar_bytes, tar.len() as u64, "{name}");
            assert_eq!(summary.entries as usize, expected.len(), "{name}");
            assert_eq!(summary.unsafe_paths_skipped, 0);
            let mut seen = std::collections::BTreeSet::new();
            let mut hard_link_pair = Vec::new();
            for e in &entries {
                let want = expected
                    .get(&e.path)
                    .unwrap_or_else(|| panic!("{name}: unexpected {e:?}"));
                assert!(seen.insert(e.path.clone()), "{name}: duplicate {}", e.path);
                let meta = std::fs::symlink_metadata(root.join(&e.path)).unwrap();
                assert_eq!(e.uid, meta.uid(), "{name} {}", e.path);
                assert_eq!(e.gid, meta.gid());
                if e.path == "a.txt" || e.path == "hard" {
                    // Two names of one file: whichever tar meets first holds the data,
                    // the other is a hard link to it.
                    let other = if e.path == "a.txt" { "hard" } else { "a.txt" };
                    hard_link_pair.push((e.kind, e.link.clone()));
                    if e.kind == EntryKind::Hardlink {
                        assert_eq!(e.link.as_deref(), Some(other), "{name}");
                        continue;
                    }
                } else {
                    assert_eq!(e.kind, want.kind, "{name} {}", e.path);
                    assert_eq!(e.link, want.link, "{name} {}", e.path);
                }
                assert_eq!(e.mtime, meta.mtime(), "{name} {}", e.path);
                if name.starts_with("pax") {
                    assert_eq!(i64::from(e.mtime_nsec), meta.mtime_nsec(), "{name}");
                }
                if e.kind != EntryKind::Symlink {
                    assert_eq!(e.mode, meta.mode() & 0o7777, "{name} {}", e.path);
                }
                if e.kind == EntryKind::File {
                    assert_eq!(e.size, want.content.len() as u64);
                    let at = e.offset.unwrap() as usize;
                    assert_eq!(&tar[at..at + want.content.len()], &want.content[..]);
                } else {
                    assert_eq!((e.size, e.offset), (0, None));
                }
            }
            hard_link_pair.sort_by_key(|(kind, _)| *kind == EntryKind::Hardlink);
            assert_eq!(hard_link_pair.len(), 2, "{name}");
            assert_eq!(hard_link_pair[0], (EntryKind::File, None), "{name}");
            assert_eq!(hard_link_pair[1].0, EntryKind::Hardlink, "{name}");
        }
    }

    // ---- properties ----------------------------------------------------------------------

    fn reference_streams() -> Vec<Vec<u8>> {
        let tar = sample_tar();
        let gz = gzip(&tar);
        let gz_fields = gzip_with_header_fields(&tar);
        vec![tar, gz, gz_fields]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn any_split_gives_the_same_catalog(
            which in 0usize..3,
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..40),
        ) {
            let stream = &reference_streams()[which];
            let cuts: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
            let whole = parse(stream);
            let split = parse_split(stream, &cuts);
            prop_assert!(whole.1.is_ok());
            prop_assert_eq!(whole, split);
        }

        #[test]
        fn byte_at_a_time_prefix_is_consistent(which in 0usize..3, len in 0usize..4000) {
            let stream = &reference_streams()[which];
            let prefix = &stream[..len.min(stream.len())];
            let pieces: Vec<&[u8]> = prefix.chunks(1).collect();
            prop_assert_eq!(parse(prefix), parse_pieces(&pieces));
        }

        #[test]
        fn arbitrary_bytes_never_panic(
            start in prop_oneof![
                Just(Vec::new()),
                Just(vec![0x1f, 0x8b]),
                Just(vec![0x1f, 0x8b, 8, 0x1e]),
                Just(Hdr::new("f", b'0', 3).block().to_vec()),
                Just(Hdr::new("x", b'x', 40).block().to_vec()),
            ],
            data in proptest::collection::vec(any::<u8>(), 0..3000),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
        ) {
            let stream = [start, data].concat();
            let cuts: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
            let (entries, result) = parse_split(&stream, &cuts);
            if result.is_ok() {
                prop_assert!(entries.iter().all(|e| is_safe_relative_path(&e.path)));
            }
        }

        #[test]
        fn mutated_archives_never_panic(
            which in 0usize..3,
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
        ) {
            let mut stream = reference_streams()[which].clone();
            for (at, byte) in &flips {
                let i = at.index(stream.len());
                stream[i] = *byte;
            }
            let cuts: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
            let whole = parse(&stream);
            let split = parse_split(&stream, &cuts);
            if let Ok(summary) = &whole.1 {
                prop_assert_eq!(summary.entries as usize, whole.0.len());
                prop_assert!(whole.0.iter().all(|e| is_safe_relative_path(&e.path)));
            }
            prop_assert_eq!(whole, split);
        }
    }
}
