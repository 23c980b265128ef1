//! Content lists: the ordered chunk ids of one stream, stored as blobs themselves.
//!
//! A stream's content list is cut into leaves at content-defined points (after a chunk
//! whose id's first byte is zero, or when a leaf reaches [`MAX_LEAF_ENTRIES`]), so
//! two versions of a stream share most leaves and a leaf is deduplicated like any chunk.
//! The backup manifest holds a [`ContentRef`]: the list of leaves with their byte and chunk
//! counts, which is enough to find the leaf holding any byte offset without reading the
//! others.
//!
//! Leaf payload (the plaintext of a `List` blob):
//!
//! ```text
//! 0   4    magic "STWL"
//! 4   1    version (1)
//! 5   4    u32 LE entry count n (1 ..= MAX_LEAF_ENTRIES)
//! 9   36n  entries: chunk id (32) | u32 LE chunk length
//! ```

use serde::{Deserialize, Serialize};

use crate::id::ChunkId;

pub const LEAF_MAGIC: &[u8; 4] = b"STWL";
pub const LEAF_VERSION: u8 = 1;
pub const LEAF_HEADER_LEN: usize = 9;
pub const LEAF_ENTRY_LEN: usize = 36;
/// Hard cap on entries in one leaf (about 288 KiB of payload).
pub const MAX_LEAF_ENTRIES: usize = 8192;
/// A leaf ends after a chunk whose id's first byte is zero (about every 256 chunks),
/// unless it is shorter than this.
pub const MIN_LEAF_ENTRIES: usize = 16;

/// One chunk in a content list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentEntry {
    pub id: ChunkId,
    pub len: u32,
}

/// One leaf of a content list, as referenced from a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeafRef {
    /// Chunk id of the leaf blob.
    pub id: ChunkId,
    /// Stream bytes covered by the leaf's chunks.
    pub size: u64,
    /// Number of chunks in the leaf.
    pub chunks: u32,
}

/// A whole stream: its size, chunk count and content-list leaves in order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentRef {
    pub size: u64,
    pub chunks: u64,
    pub leaves: Vec<LeafRef>,
}

/// A leaf payload does not follow the layout.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeafFormatError {
    #[error("content-list leaf has a bad magic or version")]
    BadHeader,
    #[error("content-list leaf declares {count} entries (allowed 1..={MAX_LEAF_ENTRIES})")]
    BadCount { count: u32 },
    #[error("content-list leaf length {len} does not match its {count} entries")]
    BadLength { len: usize, count: u32 },
}

/// True when a leaf should end after `id`, given it already holds `entries` entries.
pub fn is_leaf_boundary(id: &ChunkId, entries: usize) -> bool {
    entries >= MAX_LEAF_ENTRIES || (entries >= MIN_LEAF_ENTRIES && id.0[0] == 0)
}

pub fn encode_leaf(entries: &[ContentEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(LEAF_HEADER_LEN + entries.len() * LEAF_ENTRY_LEN);
    out.extend_from_slice(LEAF_MAGIC);
    out.push(LEAF_VERSION);
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for entry in entries {
        out.extend_from_slice(entry.id.as_bytes());
        out.extend_from_slice(&entry.len.to_le_bytes());
    }
    out
}

pub fn decode_leaf(payload: &[u8]) -> Result<Vec<ContentEntry>, LeafFormatError> {
    let Some((header, body)) = payload.split_first_chunk::<LEAF_HEADER_LEN>() else {
        return Err(LeafFormatError::BadHeader);
    };
    let [m0, m1, m2, m3, version, c0, c1, c2, c3] = *header;
    if [m0, m1, m2, m3] != *LEAF_MAGIC || version != LEAF_VERSION {
        return Err(LeafFormatError::BadHeader);
    }
    let count = u32::from_le_bytes([c0, c1, c2, c3]);
    if count == 0 || count as usize > MAX_LEAF_ENTRIES {
        return Err(LeafFormatError::BadCount { count });
    }
    let (raw_entries, rest) = body.as_chunks::<LEAF_ENTRY_LEN>();
    if !rest.is_empty() || raw_entries.len() != count as usize {
        return Err(LeafFormatError::BadLength {
            len: payload.len(),
            count,
        });
    }
    Ok(raw_entries
        .iter()
        .map(|raw| {
            let [id @ .., l0, l1, l2, l3] = *raw;
            ContentEntry {
                id: ChunkId(id),
                len: u32::from_le_bytes([l0, l1, l2, l3]),
            }
        })
        .collect())
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn leaf_round_trip(specs in proptest::collection::vec((any::<[u8; 32]>(), any::<u32>()), 1..300)) {
            let entries: Vec<ContentEntry> = specs.iter().map(|(id, len)| ContentEntry { id: ChunkId(*id), len: *len }).collect();
            prop_assert_eq!(decode_leaf(&encode_leaf(&entries)).unwrap(), entries);
        }

        #[test]
        fn leaf_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_leaf(&bytes);
        }
    }

    #[test]
    fn empty_and_truncated_leaves_are_refused() {
        assert_eq!(
            decode_leaf(&encode_leaf(&[])),
            Err(LeafFormatError::BadCount { count: 0 })
        );
        let leaf = encode_leaf(&[ContentEntry {
            id: ChunkId([1; 32]),
            len: 5,
        }]);
        assert!(decode_leaf(&leaf[..leaf.len() - 1]).is_err());
        assert!(decode_leaf(b"XXXX").is_err());
    }

    #[test]
    fn boundaries_respect_min_and_max() {
        let zero = ChunkId([0; 32]);
        assert!(!is_leaf_boundary(&zero, MIN_LEAF_ENTRIES - 1));
        assert!(is_leaf_boundary(&zero, MIN_LEAF_ENTRIES));
        assert!(!is_leaf_boundary(&ChunkId([1; 32]), MAX_LEAF_ENTRIES - 1));
        assert!(is_leaf_boundary(&ChunkId([1; 32]), MAX_LEAF_ENTRIES));
    }
}
