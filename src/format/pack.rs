//! Pack layout: many blob envelopes in one object, with an encrypted trailer that lists
//! them, so the index can be rebuilt from the packs alone.
//!
//! ```text
//! 0       8     magic "STOWPACK"
//! 8       1     pack version (1)
//! 9       7     reserved, zero
//! 16      ...   blob envelopes, back to back
//! t       m     trailer envelope (domain PackTrailer, name = pack id), its payload:
//!                 u32 LE entry count, then per entry (45 bytes):
//!                 chunk id (32) | kind u8 | offset u32 LE | stored length u32 LE |
//!                 raw length u32 LE ... (offset from the start of the pack)
//! t+m     4     u32 LE trailer envelope length m
//! t+m+4   8     magic "STOWPEND"
//! ```
//!
//! This module encodes and decodes the header, the trailer payload and the footer; sealing
//! the trailer is the caller's job.

use crate::id::ChunkId;

pub const PACK_MAGIC: &[u8; 8] = b"STOWPACK";
pub const FOOTER_MAGIC: &[u8; 8] = b"STOWPEND";
pub const PACK_VERSION: u8 = 1;
pub const HEADER_LEN: usize = 16;
pub const FOOTER_LEN: usize = 12;
/// Bytes per trailer entry.
pub const ENTRY_LEN: usize = 32 + 1 + 4 + 4 + 4;
/// Most entries a trailer may hold (packs stay below 2 GiB; a pack of minimum-size
/// blobs stays far below this).
pub const MAX_TRAILER_ENTRIES: u32 = 1 << 22;

/// What a blob holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum BlobKind {
    /// A chunk of a stream (file data or catalog text).
    Data = 0,
    /// A content-list leaf.
    List = 1,
}

impl BlobKind {
    pub fn from_byte(byte: u8) -> Option<BlobKind> {
        match byte {
            0 => Some(BlobKind::Data),
            1 => Some(BlobKind::List),
            _ => None,
        }
    }
}

/// One blob in a pack, as listed by its trailer and recorded in the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackEntry {
    pub id: ChunkId,
    pub kind: BlobKind,
    /// Offset of the envelope from the start of the pack.
    pub offset: u32,
    /// Length of the envelope.
    pub stored_len: u32,
    /// Length of the plaintext after opening and decompressing.
    pub raw_len: u32,
}

/// A pack's bytes do not follow the layout.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PackFormatError {
    #[error("pack is {len} bytes, too short to hold a header and footer")]
    TooShort { len: u64 },
    #[error("pack header magic or version is wrong")]
    BadHeader,
    #[error("pack footer magic is wrong")]
    BadFooter,
    #[error("pack trailer length {len} does not fit the pack of {pack_len} bytes")]
    BadTrailerLength { len: u32, pack_len: u64 },
    #[error("pack trailer payload is malformed: {reason}")]
    BadTrailer { reason: &'static str },
    #[error("pack entry {index} ({offset}+{len}) lies outside the blob area of {limit} bytes")]
    EntryOutOfBounds {
        index: usize,
        offset: u32,
        len: u32,
        limit: u64,
    },
}

/// The 16 header bytes every pack starts with.
pub fn encode_header() -> [u8; HEADER_LEN] {
    let mut header = [0u8; HEADER_LEN];
    header[..8].copy_from_slice(PACK_MAGIC);
    header[8] = PACK_VERSION;
    header
}

pub fn check_header(bytes: &[u8]) -> Result<(), PackFormatError> {
    let Some(&[m0, m1, m2, m3, m4, m5, m6, m7, version, ..]) = bytes.first_chunk::<HEADER_LEN>()
    else {
        return Err(PackFormatError::BadHeader);
    };
    if [m0, m1, m2, m3, m4, m5, m6, m7] != *PACK_MAGIC || version != PACK_VERSION {
        return Err(PackFormatError::BadHeader);
    }
    Ok(())
}

/// The footer that follows a trailer envelope of `trailer_len` bytes.
pub fn encode_footer(trailer_len: u32) -> [u8; FOOTER_LEN] {
    let mut footer = [0u8; FOOTER_LEN];
    footer[..4].copy_from_slice(&trailer_len.to_le_bytes());
    footer[4..].copy_from_slice(FOOTER_MAGIC);
    footer
}

/// Reads the footer (the last [`FOOTER_LEN`] bytes of a pack of `pack_len` bytes) and
/// returns the byte range of the trailer envelope.
pub fn decode_footer(
    footer: &[u8],
    pack_len: u64,
) -> Result<std::ops::Range<u64>, PackFormatError> {
    let footer: &[u8; FOOTER_LEN] = match footer.try_into() {
        Ok(footer) if pack_len >= (HEADER_LEN + FOOTER_LEN) as u64 => footer,
        _ => return Err(PackFormatError::TooShort { len: pack_len }),
    };
    let [l0, l1, l2, l3, magic @ ..] = *footer;
    if magic != *FOOTER_MAGIC {
        return Err(PackFormatError::BadFooter);
    }
    let len = u32::from_le_bytes([l0, l1, l2, l3]);
    let end = pack_len - FOOTER_LEN as u64;
    if u64::from(len) > end - HEADER_LEN as u64 {
        return Err(PackFormatError::BadTrailerLength { len, pack_len });
    }
    Ok(end - u64::from(len)..end)
}

/// Encodes the trailer payload listing `entries`.
pub fn encode_trailer(entries: &[PackEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + entries.len() * ENTRY_LEN);
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for entry in entries {
        out.extend_from_slice(entry.id.as_bytes());
        out.push(entry.kind as u8);
        out.extend_from_slice(&entry.offset.to_le_bytes());
        out.extend_from_slice(&entry.stored_len.to_le_bytes());
        out.extend_from_slice(&entry.raw_len.to_le_bytes());
    }
    out
}

/// Decodes a trailer payload, checking that every entry lies inside the blob area, which
/// ends at `blob_area_end` (the trailer's offset).
pub fn decode_trailer(
    payload: &[u8],
    blob_area_end: u64,
) -> Result<Vec<PackEntry>, PackFormatError> {
    let bad = |reason| PackFormatError::BadTrailer { reason };
    let (count_bytes, body) = payload
        .split_first_chunk::<4>()
        .ok_or(bad("missing entry count"))?;
    let count = u32::from_le_bytes(*count_bytes);
    if count > MAX_TRAILER_ENTRIES {
        return Err(bad("too many entries"));
    }
    let (raw_entries, rest) = body.as_chunks::<ENTRY_LEN>();
    if !rest.is_empty() || raw_entries.len() != count as usize {
        return Err(bad("length does not match the entry count"));
    }
    raw_entries
        .iter()
        .enumerate()
        .map(|(index, raw)| decode_entry(index, raw, blob_area_end))
        .collect()
}

fn decode_entry(
    index: usize,
    raw: &[u8; ENTRY_LEN],
    limit: u64,
) -> Result<PackEntry, PackFormatError> {
    let [id @ .., kind, o0, o1, o2, o3, s0, s1, s2, s3, r0, r1, r2, r3] = *raw;
    let kind = BlobKind::from_byte(kind).ok_or(PackFormatError::BadTrailer {
        reason: "unknown blob kind",
    })?;
    let entry = PackEntry {
        id: ChunkId(id),
        kind,
        offset: u32::from_le_bytes([o0, o1, o2, o3]),
        stored_len: u32::from_le_bytes([s0, s1, s2, s3]),
        raw_len: u32::from_le_bytes([r0, r1, r2, r3]),
    };
    let end = u64::from(entry.offset) + u64::from(entry.stored_len);
    if u64::from(entry.offset) < HEADER_LEN as u64 || end > limit {
        return Err(PackFormatError::EntryOutOfBounds {
            index,
            offset: entry.offset,
            len: entry.stored_len,
            limit,
        });
    }
    Ok(entry)
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(n: u8, offset: u32, len: u32) -> PackEntry {
        PackEntry {
            id: ChunkId([n; 32]),
            kind: if n.is_multiple_of(2) {
                BlobKind::Data
            } else {
                BlobKind::List
            },
            offset,
            stored_len: len,
            raw_len: len * 2,
        }
    }

    #[test]
    fn footer_round_trip_and_bounds() {
        let footer = encode_footer(100);
        assert_eq!(decode_footer(&footer, 1000).unwrap(), 888..988);
        assert!(decode_footer(&footer, 20).is_err());
        assert!(matches!(
            decode_footer(&encode_footer(5000), 1000),
            Err(PackFormatError::BadTrailerLength { .. })
        ));
        let mut broken = footer;
        broken[11] ^= 1;
        assert_eq!(
            decode_footer(&broken, 1000),
            Err(PackFormatError::BadFooter)
        );
    }

    #[test]
    fn header_is_checked() {
        assert!(check_header(&encode_header()).is_ok());
        assert!(check_header(b"STOWPACX\x01").is_err());
    }

    #[test]
    fn out_of_bounds_entries_are_refused() {
        let payload = encode_trailer(&[entry(1, 16, 100)]);
        assert!(decode_trailer(&payload, 116).is_ok());
        assert!(decode_trailer(&payload, 115).is_err());
        let payload = encode_trailer(&[entry(1, 3, 10)]);
        assert!(decode_trailer(&payload, 1000).is_err());
        assert!(decode_trailer(&payload[..10], 1000).is_err());
        assert!(decode_trailer(&[], 1000).is_err());
    }

    proptest! {
        #[test]
        fn trailer_round_trip(specs in proptest::collection::vec((any::<u8>(), 16u32..1_000_000, 0u32..100_000), 0..50)) {
            let entries: Vec<PackEntry> = specs.iter().map(|&(n, o, l)| entry(n, o, l)).collect();
            let decoded = decode_trailer(&encode_trailer(&entries), 2_000_000).unwrap();
            prop_assert_eq!(decoded, entries);
        }

        #[test]
        fn trailer_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = decode_trailer(&bytes, 10_000);
            let _ = decode_footer(&bytes[..bytes.len().min(FOOTER_LEN)], bytes.len() as u64);
        }
    }
}
