//! The checksums of a stream that arrives in parts: SHA-1 (what Wings reports) and
//! BLAKE3 (what every stowage backup records) of the whole archive, computed as the
//! parts stream in, so completing an upload of any size takes no re-reading.
//!
//! The state after each part is kept; a part's bytes are hashed starting from the state
//! after the part before it, so a retried part replaces its bytes in the chain, and a
//! part that arrives before its predecessor leaves a gap that completion fills by
//! reading the stored parts back.

use std::io::{self, Read};
use std::sync::{Arc, Mutex};

use sha1::{Digest, Sha1};

/// Both hash states at one point of the stream.
#[derive(Clone, Default)]
pub struct HashState {
    sha1: Sha1,
    blake3: blake3::Hasher,
}

impl HashState {
    pub fn update(&mut self, bytes: &[u8]) {
        self.sha1.update(bytes);
        self.blake3.update(bytes);
    }

    /// `(sha1, blake3)` in lowercase hex.
    pub fn finish(self) -> (String, String) {
        (
            hex::encode(self.sha1.finalize()),
            self.blake3.finalize().to_hex().to_string(),
        )
    }
}

/// States after parts 1, 2, ... of one upload; `None` where unknown.
#[derive(Clone, Default)]
pub struct HashChain {
    after: Vec<Option<HashState>>,
}

impl HashChain {
    /// The state a part starts from: empty for part 1, else the state after the part
    /// before it, when known.
    pub fn start_of(&self, part: u32) -> Option<HashState> {
        match part {
            0 => None,
            1 => Some(HashState::default()),
            n => self.after.get(n as usize - 2).cloned().flatten(),
        }
    }

    /// Records the state after `part`; the states after later parts no longer follow
    /// from it and are forgotten.
    pub fn record(&mut self, part: u32, state: Option<HashState>) {
        let index = part as usize - 1;
        if self.after.len() <= index {
            self.after.resize(index + 1, None);
        }
        self.after[index] = state;
        self.after.truncate(index + 1);
    }

    /// The state after `part`, when known.
    pub fn after(&self, part: u32) -> Option<HashState> {
        self.after
            .get((part as usize).checked_sub(1)?)
            .cloned()
            .flatten()
    }
}

/// A reader that hashes what passes through it into a shared state.
pub struct HashingReader<R> {
    inner: R,
    state: Arc<Mutex<HashState>>,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R, start: HashState) -> (HashingReader<R>, Arc<Mutex<HashState>>) {
        let state = Arc::new(Mutex::new(start));
        (
            HashingReader {
                inner,
                state: state.clone(),
            },
            state,
        )
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .update(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hashes(bytes: &[u8]) -> (String, String) {
        let mut state = HashState::default();
        state.update(bytes);
        state.finish()
    }

    #[test]
    fn a_chain_of_parts_hashes_like_the_whole_stream_even_with_a_retry() {
        let parts: [&[u8]; 3] = [b"first part ", b"second ", b"third"];
        let mut chain = HashChain::default();
        for (i, part) in parts.iter().enumerate() {
            let number = i as u32 + 1;
            let mut state = chain.start_of(number).expect("in order");
            state.update(part);
            chain.record(number, Some(state));
        }
        // Part 2 retried with other bytes: the state after part 3 is forgotten.
        let mut state = chain.start_of(2).unwrap();
        state.update(b"SECOND ");
        chain.record(2, Some(state));
        assert!(chain.after(3).is_none());
        let mut state = chain.start_of(3).unwrap();
        state.update(b"third");
        chain.record(3, Some(state));
        assert_eq!(
            chain.after(3).unwrap().finish(),
            hashes(b"first part SECOND third")
        );
    }

    #[test]
    fn a_part_before_its_predecessor_has_no_start() {
        let chain = HashChain::default();
        assert!(chain.start_of(2).is_none());
        assert!(chain.start_of(0).is_none());
        assert!(chain.after(0).is_none());
    }

    #[test]
    fn the_reader_hashes_what_it_reads() {
        let (mut reader, state) = HashingReader::new(&b"some bytes"[..], HashState::default());
        let mut out = Vec::new();
        reader.read_to_end(&mut out).unwrap();
        let state = state.lock().unwrap().clone();
        assert_eq!(state.finish(), hashes(b"some bytes"));
    }
}
