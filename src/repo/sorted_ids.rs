//! Chunk ids gathered in any order, with repeats, and read back sorted and distinct, in
//! memory bounded by one buffer whatever their number: gc's live ids, `check`'s
//! referenced ids.
//!
//! Ids are gathered in a buffer (of `GcOptions::ids_in_memory` for gc, by default
//! [`RUN_IDS`]); a full buffer is sorted, deduplicated and written to an unnamed temporary
//! file (nothing is left behind by a crash). [`IdSorter::finish`] merges the runs (and
//! what is still buffered) into one ascending stream without repeats, which the caller
//! walks beside the index's chunk table, itself in id order: one pass over each.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

use crate::id::ChunkId;

/// Ids buffered by default before a run is written: 32 MiB.
pub(crate) const RUN_IDS: usize = 1 << 20;

/// Bytes of one id in a run file.
const ID_LEN: usize = 32;

/// Gathers ids; see the module documentation.
pub(crate) struct IdSorter {
    dir: PathBuf,
    run_ids: usize,
    buffer: Vec<ChunkId>,
    runs: Vec<File>,
}

impl IdSorter {
    /// Gathers ids, spilling runs of `run_ids` into `dir` (created when needed).
    pub(crate) fn new(dir: PathBuf, run_ids: usize) -> IdSorter {
        IdSorter {
            dir,
            run_ids: run_ids.max(1),
            buffer: Vec::new(),
            runs: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, id: ChunkId) -> io::Result<()> {
        self.buffer.push(id);
        if self.buffer.len() >= self.run_ids {
            self.spill()?;
        }
        Ok(())
    }

    /// Runs written to disk so far.
    pub(crate) fn runs(&self) -> usize {
        self.runs.len()
    }

    fn spill(&mut self) -> io::Result<()> {
        self.buffer.sort_unstable();
        self.buffer.dedup();
        std::fs::create_dir_all(&self.dir)?;
        let file = tempfile::tempfile_in(&self.dir)?;
        let mut writer = BufWriter::with_capacity(1 << 20, file);
        for id in &self.buffer {
            writer.write_all(id.as_bytes())?;
        }
        let mut file = writer.into_inner().map_err(|error| error.into_error())?;
        file.seek(SeekFrom::Start(0))?;
        self.runs.push(file);
        self.buffer.clear();
        Ok(())
    }

    /// The gathered ids, ascending, each once.
    pub(crate) fn finish(mut self) -> SortedIds {
        self.buffer.sort_unstable();
        self.buffer.dedup();
        let mut sources: Vec<Source> = self
            .runs
            .into_iter()
            .map(|file| Source::Run(BufReader::with_capacity(256 << 10, file)))
            .collect();
        sources.push(Source::Memory(self.buffer.into_iter()));
        SortedIds {
            sources,
            heap: BinaryHeap::new(),
            started: false,
            last: None,
        }
    }
}

/// Ids written once and read back in order, in batches: the garbage of a run, which can
/// be every chunk of the repository after a large purge. Memory up to a limit, then an
/// unnamed temporary file.
pub(crate) struct SpilledIds {
    dir: PathBuf,
    limit: usize,
    buffer: Vec<ChunkId>,
    file: Option<BufWriter<File>>,
    len: u64,
}

impl SpilledIds {
    pub(crate) fn new(dir: PathBuf, limit: usize) -> SpilledIds {
        SpilledIds {
            dir,
            limit: limit.max(1),
            buffer: Vec::new(),
            file: None,
            len: 0,
        }
    }

    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    pub(crate) fn push(&mut self, id: ChunkId) -> io::Result<()> {
        self.len += 1;
        self.buffer.push(id);
        if self.buffer.len() >= self.limit {
            self.flush_buffer()?;
        }
        Ok(())
    }

    fn flush_buffer(&mut self) -> io::Result<()> {
        let writer = match &mut self.file {
            Some(writer) => writer,
            None => {
                std::fs::create_dir_all(&self.dir)?;
                let file = tempfile::tempfile_in(&self.dir)?;
                self.file.insert(BufWriter::with_capacity(1 << 20, file))
            }
        };
        for id in self.buffer.drain(..) {
            writer.write_all(id.as_bytes())?;
        }
        Ok(())
    }

    /// Reads everything pushed, in order, `batch` ids at a time.
    pub(crate) fn into_batches(mut self, batch: usize) -> io::Result<IdBatches> {
        let reader = match self.file.take() {
            None => None,
            Some(writer) => {
                let mut writer = writer;
                for id in self.buffer.drain(..) {
                    writer.write_all(id.as_bytes())?;
                }
                let mut file = writer.into_inner().map_err(|error| error.into_error())?;
                file.seek(SeekFrom::Start(0))?;
                Some(Source::Run(BufReader::with_capacity(256 << 10, file)))
            }
        };
        let source = reader.unwrap_or(Source::Memory(self.buffer.into_iter()));
        Ok(IdBatches {
            source,
            batch: batch.max(1),
        })
    }
}

/// The batches of a [`SpilledIds`].
pub(crate) struct IdBatches {
    source: Source,
    batch: usize,
}

impl IdBatches {
    /// The next batch, empty at the end.
    pub(crate) fn next_batch(&mut self) -> io::Result<Vec<ChunkId>> {
        let mut out = Vec::with_capacity(self.batch.min(RUN_IDS));
        while out.len() < self.batch {
            match self.source.next()? {
                Some(id) => out.push(id),
                None => break,
            }
        }
        Ok(out)
    }
}

/// One sorted input of the merge.
enum Source {
    Memory(std::vec::IntoIter<ChunkId>),
    Run(BufReader<File>),
}

impl Source {
    fn next(&mut self) -> io::Result<Option<ChunkId>> {
        match self {
            Source::Memory(ids) => Ok(ids.next()),
            Source::Run(reader) => {
                let mut id = [0u8; ID_LEN];
                match reader.read_exact(&mut id) {
                    Ok(()) => Ok(Some(ChunkId(id))),
                    Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
                    Err(error) => Err(error),
                }
            }
        }
    }
}

/// The merged ids: ascending, without repeats.
pub(crate) struct SortedIds {
    sources: Vec<Source>,
    heap: BinaryHeap<Reverse<(ChunkId, usize)>>,
    started: bool,
    last: Option<ChunkId>,
}

impl SortedIds {
    /// The next id, or `None` at the end.
    pub(crate) fn next_id(&mut self) -> io::Result<Option<ChunkId>> {
        if !self.started {
            self.started = true;
            for position in 0..self.sources.len() {
                self.refill(position)?;
            }
        }
        while let Some(Reverse((id, position))) = self.heap.pop() {
            self.refill(position)?;
            if self.last != Some(id) {
                self.last = Some(id);
                return Ok(Some(id));
            }
        }
        Ok(None)
    }

    fn refill(&mut self, position: usize) -> io::Result<()> {
        if let Some(source) = self.sources.get_mut(position) {
            if let Some(id) = source.next()? {
                self.heap.push(Reverse((id, position)));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u32) -> ChunkId {
        let mut bytes = [0u8; 32];
        bytes[..4].copy_from_slice(&n.to_be_bytes());
        bytes[31] = 7;
        ChunkId(bytes)
    }

    fn drain(mut ids: SortedIds) -> Vec<ChunkId> {
        let mut out = Vec::new();
        while let Some(id) = ids.next_id().unwrap() {
            out.push(id);
        }
        out
    }

    #[test]
    fn runs_on_disk_merge_into_one_ascending_stream_without_repeats() {
        let dir = tempfile::tempdir().unwrap();
        let mut live = IdSorter::new(dir.path().join("tmp"), 5);
        // Repeats within a run, across runs and in the unspilled remainder.
        let pushed = [9, 3, 3, 7, 1, 9, 2, 8, 3, 4, 10, 0, 7, 5, 6, 6, 11];
        for n in pushed {
            live.push(id(n)).unwrap();
        }
        assert_eq!(live.runs(), 3);
        let merged = drain(live.finish());
        assert_eq!(merged, (0..=11).map(id).collect::<Vec<_>>());
    }

    #[test]
    fn spilled_ids_come_back_in_order_in_batches() {
        let dir = tempfile::tempdir().unwrap();
        for (limit, count) in [(3, 10), (100, 10), (3, 0)] {
            let mut spilled = SpilledIds::new(dir.path().join("tmp"), limit);
            for n in 0..count {
                spilled.push(id(n)).unwrap();
            }
            assert_eq!(spilled.len(), u64::from(count));
            let mut batches = spilled.into_batches(4).unwrap();
            let mut read = Vec::new();
            loop {
                let batch = batches.next_batch().unwrap();
                if batch.is_empty() {
                    break;
                }
                assert!(batch.len() <= 4);
                read.extend(batch);
            }
            assert_eq!(read, (0..count).map(id).collect::<Vec<_>>());
        }
    }

    #[test]
    fn nothing_spilled_is_sorted_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let mut live = IdSorter::new(dir.path().join("never"), 100);
        for n in [5, 1, 5, 3] {
            live.push(id(n)).unwrap();
        }
        assert_eq!(live.runs(), 0);
        assert_eq!(drain(live.finish()), vec![id(1), id(3), id(5)]);
        assert!(!dir.path().join("never").exists());
        let empty = IdSorter::new(dir.path().join("never"), 100);
        assert!(drain(empty.finish()).is_empty());
    }
}
