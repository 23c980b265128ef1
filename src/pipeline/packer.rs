//! The packer's bookkeeping: assigns each blob its offset in the pack being filled, knows
//! when the pack is full, and produces the trailer payload. It holds no blob bytes; the
//! engine streams those to the backend as they come (`repo::pack_writer`).

use crate::format::pack::{encode_trailer, BlobKind, PackEntry, HEADER_LEN};
use crate::id::ChunkId;

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
    /// u32 offset can address, or the target size is reached.
    pub fn is_full(&self, next_len: u32) -> bool {
        self.next_offset >= self.target_size
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
}
