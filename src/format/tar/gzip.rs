//! The gzip layer: member headers, inflate into a bounded buffer, CRC-32 and length
//! trailers, concatenated members; the decompressed bytes are pushed into the tar
//! machine.

use super::fields::*;
use super::machine::TarMachine;
use super::*;

pub(super) enum GzState {
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
pub(super) enum HdrStage {
    Fixed,
    ExtraLen,
    Extra,
    Name,
    Comment,
    HeaderCrc,
}

pub(super) struct GzHeader {
    pub(super) stage: HdrStage,
    pub(super) crc: Crc,
    pub(super) flags: u8,
    /// Bytes read in the current stage (fixed part, 2-byte words) or bytes left (extra).
    pub(super) n: u64,
    pub(super) word: [u8; 2],
}

pub(super) const FHCRC: u8 = 0x02;
pub(super) const FEXTRA: u8 = 0x04;
pub(super) const FNAME: u8 = 0x08;
pub(super) const FCOMMENT: u8 = 0x10;

impl GzHeader {
    pub(super) fn new() -> Self {
        GzHeader {
            stage: HdrStage::Fixed,
            crc: Crc::new(),
            flags: 0,
            n: 0,
            word: [0; 2],
        }
    }

    /// The stage after `after`, or `None` when the header is complete.
    pub(super) fn next_stage(&self, after: HdrStage) -> Option<HdrStage> {
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
    pub(super) fn advance(&mut self, stage: HdrStage) -> bool {
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
    pub(super) fn byte(&mut self, b: u8) -> Result<bool, String> {
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

pub(super) struct Gunzip {
    pub(super) state: GzState,
    pub(super) inflate: Decompress,
    pub(super) crc: Crc,
    pub(super) out: Vec<u8>,
}

impl Gunzip {
    pub(super) fn new() -> Self {
        Gunzip {
            state: GzState::Header(GzHeader::new()),
            inflate: Decompress::new(false),
            crc: Crc::new(),
            out: vec![0; GZIP_OUT_BUF],
        }
    }

    pub(super) fn push(
        &mut self,
        mut data: &[u8],
        tar: &mut TarMachine,
        sink: &mut dyn FnMut(CatalogEntry),
    ) {
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
    pub(super) fn inflate(
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
    pub(super) fn finish(&self) -> Result<(), String> {
        match self.state {
            GzState::Between | GzState::Ignore => Ok(()),
            _ => Err("truncated gzip stream".into()),
        }
    }
}
