//! The packer's bookkeeping: assigns each blob its offset in the pack being filled, knows
//! when the pack is full, and produces the trailer payload. It holds no blob bytes; the
//! engine streams those to the backend as they come (`repo::pack_writer`).

use crate::format::pack::{encode_trailer, BlobKind, PackEntry, HEADER_LEN, MAX_TRAILER_ENTRIES};
use crate::id::ChunkId;

/// The most blobs a writer puts in one pack, whatever its byte target. An open pack
/// keeps a trailer entry and an in-flight ticket per blob until it is durable, and its
/// index entries are committed in one transaction: with tiny chunks a 32 MiB pack would
/// hold hundreds of thousands of blobs, and a 1 GiB one more than a reader accepts
/// ([`MAX_TRAILER_ENTRIES`]). At the default 1 MiB chunks a pack holds a few dozen, at
/// 1 KiB chunks a 32 MiB pack reaches this limit and its byte target together.
pub const MAX_PACK_BLOBS: usize = 1 << 15;

const _: () = assert!(MAX_PACK_BLOBS as u64 <= MAX_TRAILER_ENTRIES as u64);

/// The layout of one pack being filled.
#[derive(Debug)]
pub struct PackLayout {
    target_size: u64,
    next_offset: u64,
    entries: Vec<PackEntry>,
}

impl PackLayout {
    /// An empty pack that counts as full once it reaches `target_size` bytes.
    pub fn new(target_size: u32) -> PackLayout {
        PackLayout {
            target_size: u64::from(target_size),
            next_offset: HEADER_LEN as u64,
            entries: Vec::new(),
        }
    }

    /// Places a blob of `stored_len` envelope bytes at the end of the pack.
    pub fn place(
        &mut self,
        id: ChunkId,
        kind: BlobKind,
        stored_len: u32,
        raw_len: u32,
    ) -> PackEntry {
        let entry = PackEntry {
            id,
            kind,
            offset: self.next_offset as u32,
            stored_len,
            raw_len,
        };
        self.next_offset += u64::from(stored_len);
        self.entries.push(entry);
        entry
    }

    /// True when another blob of up to `next_len` bytes could push the pack past what a
    /// u32 offset can address, or the target size or [`MAX_PACK_BLOBS`] is reached.
    pub fn is_full(&self, next_len: u32) -> bool {
        self.next_offset >= self.target_size
            || self.entries.len() >= MAX_PACK_BLOBS
            || self.next_offset + u64::from(next_len) > u64::from(u32::MAX) / 2
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes placed so far, header included.
    pub fn len(&self) -> u64 {
        self.next_offset
    }

    pub fn entries(&self) -> &[PackEntry] {
        &self.entries
    }

    /// The trailer payload listing every placed blob.
    pub fn trailer_payload(&self) -> Vec<u8> {
        encode_trailer(&self.entries)
    }

    pub fn into_entries(self) -> Vec<PackEntry> {
        self.entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_follow_each_other_and_fullness() {
        let mut layout = PackLayout::new(1000);
        assert!(layout.is_empty());
        let a = layout.place(ChunkId([1; 32]), BlobKind::Data, 500, 900);
        let b = layout.place(ChunkId([2; 32]), BlobKind::List, 300, 300);
        assert_eq!(a.offset as usize, HEADER_LEN);
        assert_eq!(b.offset, a.offset + 500);
        assert!(!layout.is_full(10));
        layout.place(ChunkId([3; 32]), BlobKind::Data, 200, 200);
        assert!(layout.is_full(10));
        assert_eq!(layout.entries().len(), 3);
    }

    #[test]
    fn a_pack_of_tiny_blobs_is_full_at_the_blob_limit() {
        let mut layout = PackLayout::new(1 << 30);
        for n in 0..MAX_PACK_BLOBS {
            assert!(!layout.is_full(60), "full after only {n} blobs");
            layout.place(ChunkId([0; 32]), BlobKind::Data, 60, 16);
        }
        assert!(layout.is_full(60));
        assert!(layout.len() < 1 << 30);
        let payload = layout.trailer_payload();
        let count = u32::from_le_bytes(payload[..4].try_into().unwrap());
        assert_eq!(count as usize, MAX_PACK_BLOBS);
    }
}
