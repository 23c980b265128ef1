//! Reusable segment buffers for the ingest reader.
//!
//! Every segment the reader fills is cut into chunks that travel, as `Bytes` slices, to the
//! hashing stage, the stream observer and the sealing tasks, and die at different times.
//! A fresh buffer per segment cost a re-ingest a tenth of its CPU on the serial reader
//! stage: the zero fill before `read`, then page faults and unmapping as the allocator
//! handed the pages back and forth. A [`SegmentBuffers`] pool instead gets each buffer
//! back when the last slice of its segment is dropped and lends it again as it is: its
//! bytes are already initialised, so a reader can `read` into it without zeroing it and
//! without unsafe code. The pool allocates only when every buffer it made is still in
//! use, so it never holds more buffers than were ever in use at once, and it drops the
//! ones it gets back beyond [`KEEP`].

use std::sync::{Arc, Mutex};

use bytes::Bytes;

/// Free buffers kept for reuse; more than the pipeline's stages hold at once, fewer than
/// would matter for memory if a burst left many behind.
const KEEP: usize = 8;

/// A pool of equally sized buffers shared by one reader and the slices it hands out.
pub(crate) struct SegmentBuffers {
    shared: Arc<Shared>,
}

struct Shared {
    size: usize,
    free: Mutex<Vec<Vec<u8>>>,
}

impl SegmentBuffers {
    pub(crate) fn new(size: usize) -> Self {
        SegmentBuffers {
            shared: Arc::new(Shared {
                size,
                free: Mutex::new(Vec::new()),
            }),
        }
    }

    /// A buffer of the pool's size, reused when one is free, else newly zeroed.
    pub(crate) fn take(&self) -> SegmentBuffer {
        let reused = self
            .shared
            .free
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop();
        let bytes = reused.unwrap_or_else(|| vec![0; self.shared.size]);
        SegmentBuffer {
            bytes,
            pool: self.shared.clone(),
        }
    }
}

/// One buffer lent by the pool: its full length is writable; [`SegmentBuffer::freeze`]
/// turns its first bytes into a `Bytes` that gives the buffer back when the last slice
/// of it is dropped.
pub(crate) struct SegmentBuffer {
    bytes: Vec<u8>,
    pool: Arc<Shared>,
}

impl SegmentBuffer {
    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.bytes
    }

    /// The first `len` bytes as shared, sliceable bytes.
    pub(crate) fn freeze(self, len: usize) -> Bytes {
        Bytes::from_owner(Filled { buffer: self, len })
    }
}

impl Drop for SegmentBuffer {
    fn drop(&mut self) {
        let bytes = std::mem::take(&mut self.bytes);
        let mut free = self
            .pool
            .free
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if free.len() < KEEP {
            free.push(bytes);
        }
    }
}

/// The owner behind a frozen segment: only its first `len` bytes are shown.
struct Filled {
    buffer: SegmentBuffer,
    len: usize,
}

impl AsRef<[u8]> for Filled {
    fn as_ref(&self) -> &[u8] {
        &self.buffer.bytes[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_comes_back_when_its_last_slice_is_dropped() {
        let pool = SegmentBuffers::new(16);
        let mut buffer = pool.take();
        buffer.as_mut_slice()[..4].copy_from_slice(b"abcd");
        let whole = buffer.freeze(4);
        let tail = whole.slice(2..);
        assert_eq!(&whole[..], b"abcd");
        drop(whole);
        // A slice still holds the buffer: the pool has nothing to lend, so it zeroes a
        // new one.
        assert_eq!(pool.take().as_mut_slice(), &[0; 16]);
        assert_eq!(&tail[..], b"cd");
        drop(tail);
        // Now the first buffer is back, its bytes as they were left.
        let mut again = pool.take();
        assert_eq!(&again.as_mut_slice()[..4], b"abcd");
        assert_eq!(again.as_mut_slice().len(), 16);
    }

    #[test]
    fn the_pool_keeps_at_most_keep_free_buffers() {
        let pool = SegmentBuffers::new(8);
        let lent: Vec<SegmentBuffer> = (0..KEEP + 3).map(|_| pool.take()).collect();
        drop(lent);
        assert_eq!(pool.shared.free.lock().unwrap().len(), KEEP);
    }
}
