//! Reading a stream as segments cut at chunk boundaries, for a client that chunks.
//!
//! Reading and cutting (FastCDC) are serial: each boundary depends on the bytes before
//! it. Naming the chunks and hashing the stream are not, and run on the worker pool.
//! [`read_segments`] alternates the two on the caller's thread, which suits the many
//! small reads of a tree's files. [`read_segments_ahead`] reads and cuts the next segment
//! on a thread of its own while the caller names and hashes the last, so for one large
//! stream the serial stage overlaps the parallel one instead of waiting for it. Three
//! segment buffers go round: one being filled, one waiting, one with the caller.

use std::io::{self, Read};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use anyhow::{Context, Result};

use crate::format::config::ChunkerParams;
use crate::pipeline::chunker::cut_points;
use crate::repo::ingest::fill;

/// Segment buffers of [`read_segments_ahead`]: filled, waiting, and with the caller.
const BUFFERS: usize = 3;

/// Reads `source` to its end through `buffer`, handing each segment's bytes and its
/// chunks' lengths to `segment` (never an empty segment). Chunk boundaries depend only
/// on content, as the server's own ingest cuts them.
pub(super) fn read_segments(
    source: &mut (dyn Read + Send),
    buffer: &mut [u8],
    params: &ChunkerParams,
    mut segment: impl FnMut(&[u8], &[usize]) -> Result<()>,
) -> Result<u64> {
    let mut filled = 0usize;
    let mut total = 0u64;
    loop {
        let (now_filled, at_end) = fill(source, buffer, filled)?;
        filled = now_filled;
        let cuts = cut_points(&buffer[..filled], params, at_end);
        let consumed: usize = cuts.iter().sum();
        if !cuts.is_empty() {
            segment(&buffer[..consumed], &cuts)?;
        }
        total += consumed as u64;
        buffer.copy_within(consumed..filled, 0);
        filled -= consumed;
        if at_end {
            return Ok(total);
        }
    }
}

/// One segment read and cut ahead: its buffer, the bytes of it the cuts cover, the cuts.
struct CutSegment {
    buffer: Vec<u8>,
    len: usize,
    cuts: Vec<usize>,
}

/// As [`read_segments`], with segments of `segment_size` bytes read and cut on another
/// thread while `segment` works on the previous one.
pub(super) fn read_segments_ahead(
    source: &mut (dyn Read + Send),
    segment_size: usize,
    params: ChunkerParams,
    mut segment: impl FnMut(&[u8], &[usize]) -> Result<()>,
) -> Result<u64> {
    let (full, cut) = sync_channel::<Result<CutSegment>>(1);
    let (empty, reused) = sync_channel::<Vec<u8>>(BUFFERS);
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("stowage-cut".into())
            .spawn_scoped(scope, move || {
                let reader = Reader {
                    segment_size,
                    params,
                    made: 0,
                    reused,
                    full,
                };
                reader.run(source);
            })
            .context("starting the reading thread")?;
        // Both ends move in here, so that leaving early (an error) drops them before the
        // scope waits for the reader: its next send or receive fails and it stops.
        let (cut, empty) = (cut, empty);
        let mut total = 0u64;
        for next in cut.iter() {
            let next = next?;
            segment(&next.buffer[..next.len], &next.cuts)?;
            total += next.len as u64;
            // Never blocks: no more than BUFFERS are ever made.
            let _ = empty.send(next.buffer);
        }
        Ok(total)
    })
}

/// The reading thread of [`read_segments_ahead`].
struct Reader {
    segment_size: usize,
    params: ChunkerParams,
    made: usize,
    reused: Receiver<Vec<u8>>,
    full: SyncSender<Result<CutSegment>>,
}

impl Reader {
    /// A buffer to fill: a new one while fewer than [`BUFFERS`] exist, then one the
    /// caller handed back; `None` once the caller is gone.
    fn buffer(&mut self) -> Option<Vec<u8>> {
        if self.made < BUFFERS {
            self.made += 1;
            return Some(vec![0u8; self.segment_size]);
        }
        self.reused.recv().ok()
    }

    fn run(mut self, source: &mut (dyn Read + Send)) {
        let Some(mut buffer) = self.buffer() else {
            return;
        };
        let mut filled = 0usize;
        loop {
            let (now_filled, at_end) = match fill(source, &mut buffer, filled) {
                Ok(read) => read,
                Err(error) => {
                    let _ = self.full.send(Err(error.into()));
                    return;
                }
            };
            filled = now_filled;
            let cuts = cut_points(&buffer[..filled], &self.params, at_end);
            let len: usize = cuts.iter().sum();
            if at_end {
                if !cuts.is_empty() {
                    let _ = self.full.send(Ok(CutSegment { buffer, len, cuts }));
                }
                return;
            }
            if cuts.is_empty() {
                // A full segment is longer than the longest chunk: not reachable.
                let error = io::Error::other("no chunk boundary in a full segment");
                let _ = self.full.send(Err(error.into()));
                return;
            }
            let Some(mut next) = self.buffer() else {
                return;
            };
            // The bytes after the last cut begin the next segment.
            let tail = filled - len;
            next[..tail].copy_from_slice(&buffer[len..filled]);
            filled = tail;
            if self
                .full
                .send(Ok(CutSegment { buffer, len, cuts }))
                .is_err()
            {
                return;
            }
            buffer = next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::chunker::tests::{pseudo_random, small_params as params};
    use anyhow::bail;

    /// Segments and cuts as the one-thread reader makes them.
    fn one_thread(data: &[u8], segment_size: usize) -> (Vec<u8>, Vec<usize>) {
        let mut buffer = vec![0u8; segment_size];
        let (mut bytes, mut all) = (Vec::new(), Vec::new());
        read_segments(&mut &data[..], &mut buffer, &params(), |d, c| {
            bytes.extend_from_slice(d);
            all.extend_from_slice(c);
            Ok(())
        })
        .expect("read");
        (bytes, all)
    }

    #[test]
    fn reading_ahead_gives_the_bytes_and_cuts_of_reading_in_turn() {
        for len in [0, 1, 4095, 4096, 20_000, 300_000] {
            let data = pseudo_random(len, 7 + len as u64);
            let (mut bytes, mut all) = (Vec::new(), Vec::new());
            let total = read_segments_ahead(&mut &data[..], 8192, params(), |d, c| {
                assert!(!c.is_empty());
                assert_eq!(c.iter().sum::<usize>(), d.len());
                bytes.extend_from_slice(d);
                all.extend_from_slice(c);
                Ok(())
            })
            .expect("read");
            assert_eq!(total, len as u64);
            assert_eq!(bytes, data, "{len}");
            assert_eq!((bytes, all), one_thread(&data, 8192), "{len}");
        }
    }

    /// A source that fails after some bytes.
    struct Failing(usize);

    impl Read for Failing {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            if self.0 == 0 {
                return Err(io::Error::other("the disk went away"));
            }
            let n = out.len().min(self.0);
            out[..n].fill(1);
            self.0 -= n;
            Ok(n)
        }
    }

    #[test]
    fn a_read_error_or_a_failing_caller_ends_the_reader() {
        let error = read_segments_ahead(&mut Failing(50_000), 8192, params(), |_, _| Ok(()))
            .expect_err("the read fails");
        assert!(error.to_string().contains("the disk went away"), "{error}");
        // The caller fails at its first segment while the reader has more to give: the
        // reader stops instead of waiting for buffers that never come back. A reader
        // that waited would keep the call from returning: the test fails on a time
        // limit rather than hanging.
        let (done, outcome) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let data = pseudo_random(1 << 20, 3);
            let mut calls = 0;
            let result = read_segments_ahead(&mut &data[..], 8192, params(), |_, _| {
                calls += 1;
                bail!("stop here")
            });
            let _ = done.send((calls, result.map_err(|e| e.to_string())));
        });
        let (calls, result) = outcome
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("the reader stopped when its caller failed");
        assert_eq!(calls, 1);
        let error = result.expect_err("the caller fails");
        assert!(error.contains("stop here"), "{error}");
    }
}
