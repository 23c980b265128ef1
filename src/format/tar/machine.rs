//! The tar state machine: headers, long names, PAX records, sparse extensions, entry
//! data skipped, the end of the archive; each complete entry handed to the sink.

use super::fields::*;
use super::*;
use crate::format::catalog::EntryKind;

pub(super) enum TarState {
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
pub(super) enum MetaKind {
    LongName,
    LongLink,
    Pax,
    GlobalPax,
}

/// Values from PAX records (local or global).
#[derive(Default, Debug)]
pub(super) struct Pax {
    pub(super) path: Option<Vec<u8>>,
    pub(super) linkpath: Option<Vec<u8>>,
    pub(super) sparse_name: Option<Vec<u8>>,
    pub(super) size: Option<u64>,
    pub(super) mtime: Option<(i64, u32)>,
    pub(super) uid: Option<u32>,
    pub(super) gid: Option<u32>,
    pub(super) uname: Option<Vec<u8>>,
    pub(super) gname: Option<Vec<u8>>,
}

impl Pax {
    pub(super) fn is_empty(&self) -> bool {
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
pub(super) struct Pending {
    pub(super) entry: Option<CatalogEntry>,
    pub(super) unsafe_path: bool,
    /// Data bytes (unpadded) that follow the header (and any sparse extension blocks).
    pub(super) data_len: u64,
}

pub(super) struct TarMachine {
    pub(super) state: TarState,
    pub(super) block: Box<[u8; BLOCK]>,
    pub(super) fill: usize,
    /// Bytes of the tar stream consumed so far.
    pub(super) pos: u64,
    /// Headers read (entries and metadata headers).
    pub(super) headers: u64,
    pub(super) long_name: Option<Vec<u8>>,
    pub(super) long_link: Option<Vec<u8>>,
    pub(super) pax: Pax,
    pub(super) global: Pax,
    pub(super) entries: u64,
    pub(super) unsafe_skipped: u64,
    pub(super) fail: Option<String>,
}

impl TarMachine {
    pub(super) fn new() -> Self {
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

    pub(super) fn set_fail(&mut self, reason: String) {
        if self.fail.is_none() {
            self.fail = Some(reason);
        }
    }

    pub(super) fn has_local_meta(&self) -> bool {
        self.long_name.is_some() || self.long_link.is_some() || !self.pax.is_empty()
    }

    pub(super) fn push(&mut self, mut data: &[u8], sink: &mut dyn FnMut(CatalogEntry)) {
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
    pub(super) fn on_header(&mut self, sink: &mut dyn FnMut(CatalogEntry)) -> Result<(), String> {
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

    pub(super) fn on_sparse_ext(&mut self, sink: &mut dyn FnMut(CatalogEntry)) {
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
    pub(super) fn emit(
        &mut self,
        pending: Pending,
        sink: &mut dyn FnMut(CatalogEntry),
    ) -> Result<(), String> {
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
    pub(super) fn on_meta(&mut self) -> Result<(), String> {
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
    pub(super) fn read_entry(
        &mut self,
        header_at: u64,
        header_size: u64,
    ) -> Result<Pending, String> {
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

    pub(super) fn finish(self) -> Result<TarSummary, NotTar> {
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
