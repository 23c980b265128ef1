//! A fixed-size Bloom filter of chunk ids: it may answer "maybe" for an id it never saw,
//! never "no" for one it did. Two users size it apart: a session's references
//! (`reference_filter`, blocks of 16 bits an id, a false "maybe" keeps garbage until the
//! next gc) and the runs of a session's uploaded ids (`chunk_runs`, 8 bits an id, a false
//! "maybe" costs one block read).
//!
//! Chunk ids are keyed BLAKE3 hashes, uniformly distributed, so the filter takes its bit
//! positions from the id's own bytes (double hashing over its first two 8-byte words)
//! instead of hashing again. A writer grinding ids to collide only slows the lookups of
//! its own session.

use crate::id::ChunkId;

/// A Bloom filter sized once; see the module documentation.
#[derive(Clone)]
pub struct IdBloom {
    words: Vec<u64>,
    probes: u64,
}

impl IdBloom {
    /// A filter for `ids` ids at `bits_per_id` bits each (at least one word), setting
    /// `probes` bits per id.
    pub fn new(ids: usize, bits_per_id: usize, probes: u64) -> IdBloom {
        IdBloom {
            words: vec![0; ids.saturating_mul(bits_per_id).div_ceil(64).max(1)],
            probes,
        }
    }

    /// The probed bit positions of `id`.
    fn positions(&self, id: &ChunkId) -> impl Iterator<Item = usize> {
        let bits = self.words.len() as u64 * 64;
        let bytes = id.as_bytes();
        let word = |at: usize| {
            let mut eight = [0u8; 8];
            if let Some(slice) = bytes.get(at..at + 8) {
                eight.copy_from_slice(slice);
            }
            u64::from_le_bytes(eight)
        };
        let (first, step) = (word(0), word(8) | 1);
        (0..self.probes)
            .map(move |probe| (first.wrapping_add(probe.wrapping_mul(step)) % bits) as usize)
    }

    pub fn insert(&mut self, id: &ChunkId) {
        for bit in self.positions(id) {
            if let Some(word) = self.words.get_mut(bit / 64) {
                *word |= 1 << (bit % 64);
            }
        }
    }

    /// False only for an id never inserted.
    pub fn might_contain(&self, id: &ChunkId) -> bool {
        self.positions(id).all(|bit| {
            self.words
                .get(bit / 64)
                .is_some_and(|word| word & (1 << (bit % 64)) != 0)
        })
    }

    /// Takes in every id of `other`, a filter of the same size and probes: the union of
    /// two such filters is their bitwise or.
    pub fn union_with(&mut self, other: &IdBloom) {
        debug_assert_eq!(
            (self.words.len(), self.probes),
            (other.words.len(), other.probes)
        );
        for (word, theirs) in self.words.iter_mut().zip(&other.words) {
            *word |= theirs;
        }
    }

    /// Bytes of memory the filter holds.
    #[cfg(test)]
    pub fn memory_bytes(&self) -> usize {
        self.words.len() * 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> ChunkId {
        ChunkId(*blake3::hash(&n.to_le_bytes()).as_bytes())
    }

    #[test]
    fn every_inserted_id_is_found_and_few_others_are_at_either_size() {
        // (bits an id, probes, false positives of 100,000 allowed): 8 and 4 expect
        // about 2.4%, 16 and 11 about 0.05%.
        for (bits_per_id, probes, allowed) in [(8, 4, 3_500), (16, 11, 150)] {
            let mut filter = IdBloom::new(10_000, bits_per_id, probes);
            assert!(!filter.might_contain(&id(0)));
            for n in 0..10_000u64 {
                filter.insert(&id(n));
            }
            assert!((0..10_000u64).all(|n| filter.might_contain(&id(n))));
            let others = (10_000..110_000u64)
                .filter(|n| filter.might_contain(&id(*n)))
                .count();
            assert!(
                others < allowed,
                "{bits_per_id} bits: {others} of 100,000 pass"
            );
        }
        assert_eq!(IdBloom::new(0, 8, 4).memory_bytes(), 8);
    }
}
