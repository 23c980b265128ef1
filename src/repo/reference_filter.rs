//! The chunk ids an ingest session references, in a filter that may answer "maybe" for
//! an id it never saw but never "no" for one it did.
//!
//! Garbage collection keeps every chunk a running session references (see
//! `coordinator`). An exact set of ids grows with the upload: 10 million chunks are
//! several hundred MiB of `HashSet`. A false "maybe" only keeps a garbage chunk until the
//! next gc, so a Bloom filter is exact where it matters at about 2 bytes an id.
//!
//! It grows by blocks of [`IdBloom`], each with a false-positive rate near 0.05% when
//! full: the first for [`FIRST_BLOCK_IDS`] ids (8 KiB, so a small upload costs little), each next one twice
//! the last up to [`BLOCK_IDS`] (2 MiB). Memory stays proportional to the ids seen, and a
//! session of 10 million chunks (17 blocks) keeps a combined rate under 1%.

use super::id_bloom::IdBloom;
use crate::id::ChunkId;

/// Ids the first block is sized for.
pub const FIRST_BLOCK_IDS: usize = 1 << 12;
/// Ids the largest block is sized for.
pub const BLOCK_IDS: usize = 1 << 20;
/// Bits per id: 16.
const BITS_PER_ID: usize = 16;
/// Bit positions set per id (optimal for 16 bits an id: 16 · ln 2 ≈ 11).
const PROBES: u64 = 11;

/// One block: a fixed-size filter and the ids it holds.
#[derive(Clone)]
struct Block {
    filter: IdBloom,
    /// Ids it is sized for (a power of two).
    capacity: usize,
    ids: usize,
}

impl Block {
    fn new(capacity: usize) -> Block {
        Block {
            filter: IdBloom::new(capacity, BITS_PER_ID, PROBES),
            capacity,
            ids: 0,
        }
    }

    fn insert(&mut self, id: &ChunkId) {
        self.filter.insert(id);
        self.ids += 1;
    }
}

/// A growing Bloom filter of chunk ids; see the module documentation.
#[derive(Clone, Default)]
pub struct ReferenceFilter {
    blocks: Vec<Block>,
}

impl ReferenceFilter {
    pub fn insert(&mut self, id: &ChunkId) {
        let next = match self.blocks.last() {
            None => Some(FIRST_BLOCK_IDS),
            Some(block) if block.ids >= block.capacity => Some((block.capacity * 2).min(BLOCK_IDS)),
            Some(_) => None,
        };
        if let Some(capacity) = next {
            self.blocks.push(Block::new(capacity));
        }
        if let Some(block) = self.blocks.last_mut() {
            block.insert(id);
        }
    }

    pub fn extend<'a>(&mut self, ids: impl IntoIterator<Item = &'a ChunkId>) {
        for id in ids {
            self.insert(id);
        }
    }

    /// False only for an id never inserted.
    pub fn might_contain(&self, id: &ChunkId) -> bool {
        self.blocks
            .iter()
            .any(|block| block.filter.might_contain(id))
    }

    /// Takes in every id of `other`. A block of `other` is merged into one of the same
    /// size here while their ids fit its capacity (the union of two Bloom filters of one
    /// size is their bitwise or), else kept beside: the filters of many small sessions
    /// fold into a few blocks, and a lookup stays a few probes.
    pub fn absorb(&mut self, other: &ReferenceFilter) {
        // Any block with room can take more ids, so `insert` may go on filling the last
        // block whichever filter it came from.
        for theirs in &other.blocks {
            let room = self.blocks.iter_mut().find(|ours| {
                ours.capacity == theirs.capacity && ours.ids + theirs.ids <= ours.capacity
            });
            match room {
                Some(ours) => {
                    ours.filter.union_with(&theirs.filter);
                    ours.ids += theirs.ids;
                }
                None => self.blocks.push(theirs.clone()),
            }
        }
    }

    /// Bytes of memory the filter holds.
    #[cfg(test)]
    pub fn memory_bytes(&self) -> usize {
        self.blocks
            .iter()
            .map(|block| block.filter.memory_bytes())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> ChunkId {
        ChunkId(*blake3::hash(&n.to_le_bytes()).as_bytes())
    }

    #[test]
    fn every_inserted_id_is_found_and_few_others_are() {
        let mut filter = ReferenceFilter::default();
        assert!(!filter.might_contain(&id(0)));
        let inserted = BLOCK_IDS as u64 + 1000;
        for n in 0..inserted {
            filter.insert(&id(n));
        }
        // Blocks for 4 Ki, 8 Ki, ... 1 Mi ids, at 2 bytes an id.
        let capacities = FIRST_BLOCK_IDS * ((BLOCK_IDS / FIRST_BLOCK_IDS) * 2 - 1);
        assert_eq!(filter.memory_bytes(), capacities * 2);
        assert!((0..inserted).all(|n| filter.might_contain(&id(n))));
        let false_positives = (inserted..inserted + 100_000)
            .filter(|&n| filter.might_contain(&id(n)))
            .count();
        // Eight full blocks at about 0.046% each: about 370 of 100,000 expected.
        assert!(false_positives < 600, "{false_positives} false positives");
    }

    #[test]
    fn an_absorbed_filter_answers_for_its_ids() {
        let mut first = ReferenceFilter::default();
        let mut second = ReferenceFilter::default();
        first.extend(&[id(1), id(2)]);
        second.extend(&[id(3)]);
        first.absorb(&second);
        first.insert(&id(4));
        assert!([1, 2, 3, 4].iter().all(|&n| first.might_contain(&id(n))));
        let mut empty = ReferenceFilter::default();
        empty.absorb(&first);
        assert!([1, 2, 3, 4].iter().all(|&n| empty.might_contain(&id(n))));
        // A thousand small sessions fold into one small block.
        let mut committed = ReferenceFilter::default();
        for session in 0..1000u64 {
            let mut refs = ReferenceFilter::default();
            refs.extend(&[id(10_000 + session)]);
            committed.absorb(&refs);
        }
        assert_eq!(committed.memory_bytes(), FIRST_BLOCK_IDS * 2);
        assert!((0..1000).all(|n| committed.might_contain(&id(10_000 + n))));
    }
}
