//! The two binary bodies of a client-chunked backup session (`/v1/sessions`, see
//! `docs/API.md`): a batch of uploaded chunks and a batch of content entries appended to
//! the stream. Both are plain concatenations of fixed-layout records, so a client writes
//! them without a serialization library and the server reads them in one pass.
//!
//! Chunk record (upload):
//!
//! ```text
//! 0   32   chunk id (keyed BLAKE3 of the plaintext)
//! 32  1    encoding: 0 = the plaintext itself, 1 = one or more zstd frames of it
//! 33  4    u32 LE plaintext length (1 ..= the repository's maximum chunk size)
//! 37  4    u32 LE payload length p
//! 41  p    payload
//! ```
//!
//! Entry record (append): chunk id (32) | u32 LE chunk length, the layout of a
//! content-list leaf's entries.
//!
//! Everything here is untrusted input: decoders check every length against the
//! caller's limits before slicing and return a typed error, never panic.

use bytes::Bytes;

use crate::format::content::ContentEntry;
use crate::id::ChunkId;

/// Bytes of a chunk record before its payload.
pub const CHUNK_HEADER_LEN: usize = 41;
/// Bytes of one appended entry.
pub const ENTRY_LEN: usize = 36;

/// How an uploaded chunk's payload holds its plaintext.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkEncoding {
    /// The plaintext as it is (the client found it incompressible).
    Raw,
    /// zstd frames that decompress to exactly the plaintext.
    Zstd,
}

impl ChunkEncoding {
    fn byte(self) -> u8 {
        match self {
            ChunkEncoding::Raw => 0,
            ChunkEncoding::Zstd => 1,
        }
    }
}

/// One chunk as a client sent it: its claimed id, and its bytes, not yet checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadedChunk {
    pub id: ChunkId,
    pub encoding: ChunkEncoding,
    pub raw_len: u32,
    pub payload: Bytes,
}

/// A batch body that does not follow the layout above or exceeds a limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("chunk record {record} is cut short at byte {offset}")]
    Truncated { record: usize, offset: usize },
    #[error("chunk record {record} has unknown encoding {encoding}")]
    UnknownEncoding { record: usize, encoding: u8 },
    #[error("chunk record {record} claims {len} bytes; chunks are 1 to {max} bytes")]
    ChunkLength { record: usize, len: u32, max: u32 },
    #[error("chunk record {record}: a raw payload of {payload} bytes for a {raw}-byte chunk")]
    RawLength {
        record: usize,
        payload: u32,
        raw: u32,
    },
    #[error("chunk record {record}: a {payload}-byte zstd payload for a {raw}-byte chunk is larger than zstd ever makes one")]
    PayloadLength {
        record: usize,
        payload: u32,
        raw: u32,
    },
    #[error("an append body of {len} bytes is not a whole number of {ENTRY_LEN}-byte entries")]
    PartialEntry { len: usize },
    #[error("entry {entry} has length {len}; chunks are 1 to {max} bytes")]
    EntryLength { entry: usize, len: u32, max: u32 },
    #[error("the batch holds more than {max} records")]
    TooManyRecords { max: usize },
    #[error("the batch's chunks hold more than {max} bytes once decompressed")]
    TooMuchPlaintext { max: u64 },
}

/// Appends one chunk record to `out`.
pub fn encode_chunk(
    out: &mut Vec<u8>,
    id: &ChunkId,
    encoding: ChunkEncoding,
    raw_len: u32,
    payload: &[u8],
) {
    out.extend_from_slice(id.as_bytes());
    out.push(encoding.byte());
    out.extend_from_slice(&raw_len.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(payload);
}

/// The largest payload a zstd frame of `raw` bytes can need (zstd's `compress_bound`,
/// spelled out so that the format needs no zstd): anything larger is not a chunk.
fn max_zstd_payload(raw: u32) -> u64 {
    let raw = u64::from(raw);
    let margin = if raw < (128 << 10) {
        ((128 << 10) - raw) >> 11
    } else {
        0
    };
    raw + (raw >> 8) + margin + 64
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let field: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
    Some(u32::from_le_bytes(field))
}

/// What an upload batch may hold.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    /// The repository's maximum chunk size.
    pub max_chunk: u32,
    pub max_records: usize,
    /// Plaintext bytes of all records together: a small body of zstd frames may claim
    /// far more, and each claimed byte costs the server a decompression to check it.
    pub max_plaintext: u64,
}

/// Splits an upload body into its chunk records, checking every length against the
/// limits. The payloads are slices of `body` (no copy).
pub fn decode_chunks(body: &Bytes, limits: BatchLimits) -> Result<Vec<UploadedChunk>, BatchError> {
    let BatchLimits {
        max_chunk,
        max_records,
        max_plaintext,
    } = limits;
    let mut chunks = Vec::new();
    let mut offset = 0usize;
    let mut plaintext = 0u64;
    while offset < body.len() {
        let record = chunks.len();
        if record >= max_records {
            return Err(BatchError::TooManyRecords { max: max_records });
        }
        let truncated = BatchError::Truncated { record, offset };
        let header = body
            .get(offset..offset + CHUNK_HEADER_LEN)
            .ok_or(truncated.clone())?;
        let id = header
            .get(..32)
            .and_then(ChunkId::from_slice)
            .ok_or(truncated.clone())?;
        let encoding = match header.get(32).copied() {
            Some(0) => ChunkEncoding::Raw,
            Some(1) => ChunkEncoding::Zstd,
            Some(other) => {
                return Err(BatchError::UnknownEncoding {
                    record,
                    encoding: other,
                })
            }
            None => return Err(truncated),
        };
        let raw_len = read_u32(header, 33).ok_or(truncated.clone())?;
        let payload_len = read_u32(header, 37).ok_or(truncated.clone())?;
        if raw_len == 0 || raw_len > max_chunk {
            return Err(BatchError::ChunkLength {
                record,
                len: raw_len,
                max: max_chunk,
            });
        }
        plaintext += u64::from(raw_len);
        if plaintext > max_plaintext {
            return Err(BatchError::TooMuchPlaintext { max: max_plaintext });
        }
        match encoding {
            ChunkEncoding::Raw if payload_len != raw_len => {
                return Err(BatchError::RawLength {
                    record,
                    payload: payload_len,
                    raw: raw_len,
                })
            }
            ChunkEncoding::Zstd if u64::from(payload_len) > max_zstd_payload(raw_len) => {
                return Err(BatchError::PayloadLength {
                    record,
                    payload: payload_len,
                    raw: raw_len,
                })
            }
            _ => {}
        }
        let start = offset + CHUNK_HEADER_LEN;
        let end = start + payload_len as usize;
        if end > body.len() {
            return Err(truncated);
        }
        chunks.push(UploadedChunk {
            id,
            encoding,
            raw_len,
            payload: body.slice(start..end),
        });
        offset = end;
    }
    Ok(chunks)
}

/// Appends one entry record to `out`.
pub fn encode_entry(out: &mut Vec<u8>, entry: &ContentEntry) {
    out.extend_from_slice(entry.id.as_bytes());
    out.extend_from_slice(&entry.len.to_le_bytes());
}

/// Reads an append body: whole entries, each 1 to `max_chunk` bytes long, at most
/// `max_entries` of them.
pub fn decode_entries(
    body: &[u8],
    max_chunk: u32,
    max_entries: usize,
) -> Result<Vec<ContentEntry>, BatchError> {
    if !body.len().is_multiple_of(ENTRY_LEN) {
        return Err(BatchError::PartialEntry { len: body.len() });
    }
    if body.len() / ENTRY_LEN > max_entries {
        return Err(BatchError::TooManyRecords { max: max_entries });
    }
    body.chunks_exact(ENTRY_LEN)
        .enumerate()
        .map(|(entry, record)| {
            let partial = BatchError::PartialEntry { len: body.len() };
            let id = record
                .get(..32)
                .and_then(ChunkId::from_slice)
                .ok_or(partial.clone())?;
            let len = read_u32(record, 32).ok_or(partial)?;
            if len == 0 || len > max_chunk {
                return Err(BatchError::EntryLength {
                    entry,
                    len,
                    max: max_chunk,
                });
            }
            Ok(ContentEntry { id, len })
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn limits(max_chunk: u32, max_records: usize) -> BatchLimits {
        BatchLimits {
            max_chunk,
            max_records,
            max_plaintext: u64::MAX,
        }
    }

    fn id(byte: u8) -> ChunkId {
        ChunkId::from_slice(&[byte; 32]).expect("32 bytes")
    }

    #[test]
    fn chunks_round_trip() {
        let mut body = Vec::new();
        encode_chunk(&mut body, &id(1), ChunkEncoding::Raw, 3, b"abc");
        encode_chunk(&mut body, &id(2), ChunkEncoding::Zstd, 100, b"zz");
        let chunks = decode_chunks(&Bytes::from(body), limits(1 << 20, 10)).expect("decodes");
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[0].id, id(1));
        assert_eq!(&chunks[0].payload[..], b"abc");
        assert_eq!(chunks[1].encoding, ChunkEncoding::Zstd);
        assert_eq!(chunks[1].raw_len, 100);
    }

    #[test]
    fn limits_are_enforced() {
        let mut body = Vec::new();
        encode_chunk(&mut body, &id(1), ChunkEncoding::Raw, 3, b"abc");
        let body = Bytes::from(body);
        assert!(matches!(
            decode_chunks(&body, limits(2, 10)),
            Err(BatchError::ChunkLength { .. })
        ));
        assert!(matches!(
            decode_chunks(&body, limits(10, 0)),
            Err(BatchError::TooManyRecords { .. })
        ));
        assert!(matches!(
            decode_chunks(&body.slice(..body.len() - 1), limits(10, 10)),
            Err(BatchError::Truncated { .. })
        ));
        let tight = BatchLimits {
            max_plaintext: 2,
            ..limits(10, 10)
        };
        assert!(matches!(
            decode_chunks(&body, tight),
            Err(BatchError::TooMuchPlaintext { .. })
        ));
        let mut lying = Vec::new();
        encode_chunk(&mut lying, &id(1), ChunkEncoding::Raw, 4, b"abc");
        assert!(matches!(
            decode_chunks(&Bytes::from(lying), limits(10, 10)),
            Err(BatchError::RawLength { .. })
        ));
        let mut entries = Vec::new();
        encode_entry(&mut entries, &ContentEntry { id: id(3), len: 7 });
        assert_eq!(decode_entries(&entries, 7, 1).expect("decodes").len(), 1);
        assert!(decode_entries(&entries, 6, 1).is_err());
        assert!(decode_entries(&entries[..35], 7, 1).is_err());
    }

    proptest! {
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode_chunks(&Bytes::from(bytes.clone()), limits(1 << 20, 100));
            let _ = decode_entries(&bytes, 1 << 20, 100);
        }
    }
}
