//! Content-defined chunking with FastCDC 2020, run directly on the caller's read buffers.
//!
//! [`cut_points`] finds the chunk boundaries inside one buffer. Every chunk that ends
//! before the end of the buffer is final: FastCDC decides a cut from the bytes between the
//! chunk start and the cut only, so the same data always gives the same chunks, whatever
//! the buffer sizes. The bytes after the last final cut are carried into the next buffer
//! by the caller (see `repo::ingest`), unless the stream ended.

use fastcdc::v2020::FastCDC;

use crate::format::config::ChunkerParams;

/// The cuts found in a buffer: the lengths of the final chunks, in order. Their sum is
/// the number of bytes consumed; the rest of the buffer is an incomplete chunk, unless
/// `at_end` was set, in which case everything was consumed.
pub fn cut_points(buffer: &[u8], params: &ChunkerParams, at_end: bool) -> Vec<usize> {
    if buffer.is_empty() {
        return Vec::new();
    }
    let chunker = FastCDC::new(buffer, params.min_size, params.avg_size, params.max_size);
    let mut lengths: Vec<usize> = chunker.map(|chunk| chunk.length).collect();
    if !at_end {
        // The last piece ends where the buffer ends, not where the content decides.
        lengths.pop();
    }
    lengths
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Small chunks, so a test's few KiB make many.
    pub(crate) fn small_params() -> ChunkerParams {
        ChunkerParams {
            min_size: 256,
            avg_size: 1024,
            max_size: 4096,
        }
    }

    /// `len` bytes of xorshift output, the same for the same seed.
    pub(crate) fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
        let mut state = seed | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    }

    /// Chunks `data` the way the ingest loop does: buffers of `buffer_len`, carrying the
    /// incomplete tail over.
    fn chunk_in_buffers(data: &[u8], params: &ChunkerParams, buffer_len: usize) -> Vec<Vec<u8>> {
        let mut chunks = Vec::new();
        let mut pending: Vec<u8> = Vec::new();
        let mut position = 0;
        loop {
            let take = (buffer_len.saturating_sub(pending.len())).min(data.len() - position);
            pending.extend_from_slice(&data[position..position + take]);
            position += take;
            let at_end = position == data.len();
            let mut start = 0;
            for len in cut_points(&pending, params, at_end) {
                chunks.push(pending[start..start + len].to_vec());
                start += len;
            }
            pending.drain(..start);
            if at_end {
                assert!(pending.is_empty());
                return chunks;
            }
        }
    }

    proptest! {
        #[test]
        fn chunks_reassemble_and_do_not_depend_on_buffer_size(
            len in 0usize..40_000, seed: u64, buffer_len in 4096usize..20_000
        ) {
            let params = small_params();
            let data = pseudo_random(len, seed);
            let whole = chunk_in_buffers(&data, &params, data.len().max(1));
            let split = chunk_in_buffers(&data, &params, buffer_len);
            prop_assert_eq!(whole.concat(), data.clone());
            prop_assert_eq!(&split, &whole);
            for chunk in &whole[..whole.len().saturating_sub(1)] {
                prop_assert!(chunk.len() >= params.min_size as usize);
                prop_assert!(chunk.len() <= params.max_size as usize);
            }
        }

        #[test]
        fn boundaries_resynchronise_after_an_insertion(
            seed: u64, at in 0usize..2_000, insert in proptest::collection::vec(any::<u8>(), 1..64)
        ) {
            let params = small_params();
            let data = pseudo_random(200_000, seed);
            let mut edited = data[..at].to_vec();
            edited.extend_from_slice(&insert);
            edited.extend_from_slice(&data[at..]);
            let before: std::collections::HashSet<Vec<u8>> =
                chunk_in_buffers(&data, &params, 8192).into_iter().collect();
            let after = chunk_in_buffers(&edited, &params, 8192);
            let shared: usize = after.iter().filter(|c| before.contains(*c)).map(|c| c.len()).sum();
            // Only the chunks around the edit change: boundaries resynchronise within a
            // few chunks (bounded here by eight maximum-size chunks).
            let lost = data.len() - shared;
            prop_assert!(lost <= 8 * params.max_size as usize, "lost {} of {}", lost, data.len());
        }
    }
}
