//! Chunk id → length maps too large to hold in memory, for an assembly session of
//! millions of chunks: its known set and the chunks it uploaded (`repo::assembly`).
//!
//! A [`SortedRun`] is records of (id, length) in ascending id order, in an unnamed
//! temporary file (nothing is left behind by a crash), with every
//! [`SAMPLE_EVERY`]-th id kept in memory: a lookup finds its block in the sample and reads
//! that one block, a page by position is one read. A [`SpilledLengths`] takes insertions
//! in any order: a bounded map in memory, spilled as a sorted run when full, the runs
//! merged into one when there are too many, so a lookup reads at most a few blocks; a
//! Bloom filter beside each of its runs answers most lookups of an id the run does not
//! hold without reading it. Memory: the in-memory map, 1/[`SAMPLE_EVERY`] of the ids and
//! a byte per spilled id, whatever the count.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::id_bloom::IdBloom;
use crate::id::ChunkId;

/// Bytes of one record: the id, then the length as 4 little-endian bytes.
const RECORD: usize = 36;
/// One id in this many stays in memory; a lookup reads one block of this many records
/// (4.5 KiB).
pub const SAMPLE_EVERY: u64 = 128;
/// Entries a [`SpilledLengths`] holds in memory before it writes a run: all that a hash
/// table of 2^18 slots (9.7 MiB) holds, 7/8 of them. One more would double it to 2^19
/// slots, so a round 2^18 cost 19 MiB for its last eighth of entries.
pub const IN_MEMORY: usize = (1 << 18) / 8 * 7;
/// Known ids held in memory before they go to a run (32 MiB): lookups in memory cost
/// nothing, and a set this large is a backup of a million chunks.
pub const KNOWN_IN_MEMORY: usize = 1 << 20;
/// Runs a [`SpilledLengths`] keeps before it merges them into one.
const MAX_RUNS: usize = 4;
/// Bits of a run's filter per id it holds, and the bits an id sets: about 2.4% of the
/// ids a run does not hold still read its block.
const FILTER_BITS_PER_ID: usize = 8;
const FILTER_PROBES: u64 = 4;

fn record_at(bytes: &[u8], index: usize) -> (ChunkId, u32) {
    let record = &bytes[index * RECORD..(index + 1) * RECORD];
    let mut id = [0u8; 32];
    id.copy_from_slice(&record[..32]);
    let mut len = [0u8; 4];
    len.copy_from_slice(&record[32..]);
    (ChunkId(id), u32::from_le_bytes(len))
}

/// Records in ascending id order, each id once; see the module documentation.
pub struct SortedRun {
    file: File,
    len: u64,
    sample: Vec<ChunkId>,
}

impl SortedRun {
    /// Writes `records`, which must come in strictly ascending id order, into a new
    /// temporary file in `dir` (created when needed).
    pub fn write(
        dir: &Path,
        records: impl IntoIterator<Item = io::Result<(ChunkId, u32)>>,
    ) -> io::Result<SortedRun> {
        let mut writer = RunWriter::new(dir)?;
        for record in records {
            let (id, length) = record?;
            writer.push(id, length)?;
        }
        writer.finish()
    }

    /// Records in the run.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The records from position `start`, at most `limit` of them.
    pub fn page(&self, start: u64, limit: usize) -> io::Result<Vec<(ChunkId, u32)>> {
        let count = self.len.saturating_sub(start).min(limit as u64) as usize;
        let mut bytes = vec![0u8; count * RECORD];
        self.file.read_exact_at(&mut bytes, start * RECORD as u64)?;
        Ok((0..count).map(|i| record_at(&bytes, i)).collect())
    }

    /// The length recorded for `id`, if the run holds it: one block read, searched
    /// where it was read (no record decoded but the one found).
    pub fn get(&self, id: &ChunkId) -> io::Result<Option<u32>> {
        // The last sampled block starting at or before `id`.
        let block = match self.sample.partition_point(|sampled| sampled <= id) {
            0 => return Ok(None),
            after => (after - 1) as u64,
        };
        let start = block * SAMPLE_EVERY;
        let count = self.len.saturating_sub(start).min(SAMPLE_EVERY) as usize;
        let mut buffer = [0u8; SAMPLE_EVERY as usize * RECORD];
        let bytes = &mut buffer[..count * RECORD];
        self.file.read_exact_at(bytes, start * RECORD as u64)?;
        let (records, _) = bytes.as_chunks::<RECORD>();
        Ok(records
            .binary_search_by(|record| record[..32].cmp(id.as_bytes()))
            .ok()
            .map(|at| record_at(bytes, at).1))
    }

    /// Every record in order, read from the start through a buffer.
    fn records(&self) -> io::Result<impl Iterator<Item = io::Result<(ChunkId, u32)>>> {
        let mut file = self.file.try_clone()?;
        file.seek(SeekFrom::Start(0))?;
        let mut reader = BufReader::with_capacity(256 << 10, file);
        let mut left = self.len;
        Ok(std::iter::from_fn(move || {
            if left == 0 {
                return None;
            }
            left -= 1;
            let mut record = [0u8; RECORD];
            Some(
                reader
                    .read_exact(&mut record)
                    .map(|()| record_at(&record, 0)),
            )
        }))
    }
}

/// A [`SortedRun`] being written, a record at a time.
pub struct RunWriter {
    writer: BufWriter<File>,
    sample: Vec<ChunkId>,
    len: u64,
    last: Option<ChunkId>,
}

impl RunWriter {
    /// A new run in a temporary file in `dir` (created when needed).
    pub fn new(dir: &Path) -> io::Result<RunWriter> {
        std::fs::create_dir_all(dir)?;
        Ok(RunWriter {
            writer: BufWriter::with_capacity(1 << 20, tempfile::tempfile_in(dir)?),
            sample: Vec::new(),
            len: 0,
            last: None,
        })
    }

    /// Appends a record; its id must be greater than every id before it.
    pub fn push(&mut self, id: ChunkId, length: u32) -> io::Result<()> {
        if self.last.is_some_and(|last| last >= id) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a sorted run's ids must ascend",
            ));
        }
        if self.len.is_multiple_of(SAMPLE_EVERY) {
            self.sample.push(id);
        }
        self.writer.write_all(id.as_bytes())?;
        self.writer.write_all(&length.to_le_bytes())?;
        self.last = Some(id);
        self.len += 1;
        Ok(())
    }

    pub fn finish(self) -> io::Result<SortedRun> {
        let file = self
            .writer
            .into_inner()
            .map_err(|error| error.into_error())?;
        Ok(SortedRun {
            file,
            len: self.len,
            sample: self.sample,
        })
    }
}

/// Chunk ids in ascending order, each once, for membership and pages by position: in
/// memory while they are few, else a [`SortedRun`] on disk.
pub enum KnownIds {
    Memory(DirectedIds),
    Run(SortedRun),
}

/// Ids in ascending order with a directory by their leading bits. A lookup searches only
/// the ids that share its prefix (about one: ids are keyed hashes, spread evenly)
/// instead of binary-searching the whole set, which misses the cache at nearly every
/// step once the set outgrows it. The directory costs 4 bytes per id at most.
pub struct DirectedIds {
    ids: Vec<ChunkId>,
    /// `starts[p]..starts[p + 1]` are the ids whose leading `bits` bits are `p`.
    starts: Vec<u32>,
    bits: u32,
}

/// Leading bits of the directory: about one slot per id, at most 2^20 slots.
const MAX_DIRECTORY_BITS: u32 = 20;

impl DirectedIds {
    /// `ids` must ascend, and number fewer than 2^32.
    fn new(ids: Vec<ChunkId>) -> DirectedIds {
        let bits = (usize::BITS - ids.len().leading_zeros()).min(MAX_DIRECTORY_BITS);
        let mut starts = vec![0u32; (1 << bits) + 1];
        for id in &ids {
            starts[Self::slot(id, bits) + 1] += 1;
        }
        for slot in 1..starts.len() {
            starts[slot] += starts[slot - 1];
        }
        DirectedIds { ids, starts, bits }
    }

    fn slot(id: &ChunkId, bits: u32) -> usize {
        let head =
            id.0.first_chunk::<8>()
                .map_or(0, |h| u64::from_be_bytes(*h));
        head.checked_shr(64 - bits).unwrap_or(0) as usize
    }

    fn contains(&self, id: &ChunkId) -> bool {
        let slot = Self::slot(id, self.bits);
        let (from, to) = (self.starts[slot] as usize, self.starts[slot + 1] as usize);
        self.ids[from..to].binary_search(id).is_ok()
    }
}

impl KnownIds {
    pub fn len(&self) -> u64 {
        match self {
            KnownIds::Memory(memory) => memory.ids.len() as u64,
            KnownIds::Run(run) => run.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn contains(&self, id: &ChunkId) -> io::Result<bool> {
        match self {
            KnownIds::Memory(memory) => Ok(memory.contains(id)),
            KnownIds::Run(run) => Ok(run.get(id)?.is_some()),
        }
    }

    /// The ids from position `start`, at most `limit` of them.
    pub fn page(&self, start: u64, limit: usize) -> io::Result<Vec<ChunkId>> {
        match self {
            KnownIds::Memory(DirectedIds { ids, .. }) => Ok(ids
                .iter()
                .skip(start.min(ids.len() as u64) as usize)
                .take(limit)
                .copied()
                .collect()),
            KnownIds::Run(run) => Ok(run
                .page(start, limit)?
                .into_iter()
                .map(|(id, _)| id)
                .collect()),
        }
    }
}

/// Gathers [`KnownIds`] in ascending order: in memory up to a bound, then on disk.
pub struct KnownIdsBuilder {
    dir: PathBuf,
    in_memory: usize,
    memory: Vec<ChunkId>,
    run: Option<RunWriter>,
}

impl KnownIdsBuilder {
    /// Holds up to `in_memory` ids in memory, then writes them all to a run in `dir`.
    pub fn new(dir: PathBuf, in_memory: usize) -> KnownIdsBuilder {
        KnownIdsBuilder {
            dir,
            in_memory,
            memory: Vec::new(),
            run: None,
        }
    }

    /// Appends an id, which must be greater than every id before it.
    pub fn push(&mut self, id: ChunkId) -> io::Result<()> {
        if let Some(run) = &mut self.run {
            return run.push(id, 0);
        }
        if self.memory.last().is_some_and(|last| *last >= id) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "known ids must ascend",
            ));
        }
        self.memory.push(id);
        if self.memory.len() > self.in_memory {
            let mut run = RunWriter::new(&self.dir)?;
            for id in self.memory.drain(..) {
                run.push(id, 0)?;
            }
            self.memory = Vec::new();
            self.run = Some(run);
        }
        Ok(())
    }

    pub fn finish(self) -> io::Result<KnownIds> {
        match self.run {
            Some(run) => Ok(KnownIds::Run(run.finish()?)),
            None => Ok(KnownIds::Memory(DirectedIds::new(self.memory))),
        }
    }
}

/// Chunk id → length, inserted in any order; see the module documentation.
pub struct SpilledLengths {
    dir: PathBuf,
    in_memory: usize,
    memory: HashMap<ChunkId, u32>,
    runs: Vec<SortedRun>,
    /// `filters[i]` holds the ids of `runs[i]`.
    filters: Vec<IdBloom>,
}

impl SpilledLengths {
    /// An empty map that spills into `dir` once it holds `in_memory` entries.
    pub fn new(dir: PathBuf, in_memory: usize) -> SpilledLengths {
        SpilledLengths {
            dir,
            in_memory: in_memory.max(1),
            memory: HashMap::new(),
            runs: Vec::new(),
            filters: Vec::new(),
        }
    }

    /// Distinct ids held.
    pub fn len(&self) -> u64 {
        self.memory.len() as u64 + self.runs.iter().map(SortedRun::len).sum::<u64>()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, id: &ChunkId) -> io::Result<Option<u32>> {
        if let Some(length) = self.memory.get(id) {
            return Ok(Some(*length));
        }
        for (run, filter) in self.runs.iter().zip(&self.filters) {
            if !filter.might_contain(id) {
                continue;
            }
            if let Some(length) = run.get(id)? {
                return Ok(Some(length));
            }
        }
        Ok(None)
    }

    /// Records `id` with `length` unless it is held already; whether it was new.
    pub fn insert(&mut self, id: ChunkId, length: u32) -> io::Result<bool> {
        if self.get(&id)?.is_some() {
            return Ok(false);
        }
        self.memory.insert(id, length);
        if self.memory.len() >= self.in_memory {
            self.spill()?;
        }
        Ok(true)
    }

    fn spill(&mut self) -> io::Result<()> {
        let mut records: Vec<(ChunkId, u32)> = self.memory.drain().collect();
        records.sort_unstable_by_key(|(id, _)| *id);
        self.memory.shrink_to(self.in_memory);
        let mut filter = IdBloom::new(records.len(), FILTER_BITS_PER_ID, FILTER_PROBES);
        for (id, _) in &records {
            filter.insert(id);
        }
        self.runs
            .push(SortedRun::write(&self.dir, records.into_iter().map(Ok))?);
        self.filters.push(filter);
        if self.runs.len() > MAX_RUNS {
            let runs = std::mem::take(&mut self.runs);
            // The runs' filters go before the merged one is built: never both at once.
            self.filters.clear();
            let ids = runs.iter().map(SortedRun::len).sum::<u64>();
            let ids = usize::try_from(ids).unwrap_or(usize::MAX);
            let mut filter = IdBloom::new(ids, FILTER_BITS_PER_ID, FILTER_PROBES);
            let merged = merge(&runs)?.inspect(|record| {
                if let Ok((id, _)) = record {
                    filter.insert(id);
                }
            });
            self.runs.push(SortedRun::write(&self.dir, merged)?);
            self.filters.push(filter);
        }
        Ok(())
    }
}

/// The records of disjoint sorted runs, in one ascending sequence, read as it is walked.
fn merge(runs: &[SortedRun]) -> io::Result<impl Iterator<Item = io::Result<(ChunkId, u32)>>> {
    let mut sources = runs
        .iter()
        .map(|run| run.records().map(Iterator::peekable))
        .collect::<io::Result<Vec<_>>>()?;
    // A few runs at most: the smallest head is found by looking at each.
    Ok(std::iter::from_fn(move || {
        let mut smallest: Option<(usize, ChunkId)> = None;
        for (at, source) in sources.iter_mut().enumerate() {
            match source.peek() {
                Some(Ok((id, _))) if smallest.is_none_or(|(_, best)| *id < best) => {
                    smallest = Some((at, *id));
                }
                Some(Err(_)) => return source.next(),
                _ => {}
            }
        }
        smallest.and_then(|(at, _)| sources.get_mut(at).and_then(Iterator::next))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> ChunkId {
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(&n.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes());
        bytes[8..16].copy_from_slice(&n.to_be_bytes());
        ChunkId(bytes)
    }

    #[test]
    fn a_run_finds_every_id_it_holds_and_no_other_and_pages_by_position() {
        let dir = tempfile::tempdir().unwrap();
        let mut records: Vec<(ChunkId, u32)> = (1..1001).map(|n| (id(n), n as u32 + 7)).collect();
        records.sort_unstable();
        let run = SortedRun::write(dir.path(), records.iter().copied().map(Ok)).unwrap();
        assert_eq!(run.len(), 1000);
        for (id, length) in &records {
            assert_eq!(run.get(id).unwrap(), Some(*length));
        }
        for n in 1001..1200 {
            assert_eq!(run.get(&id(n)).unwrap(), None);
        }
        assert_eq!(run.get(&ChunkId([0; 32])).unwrap(), None);
        assert_eq!(run.get(&ChunkId([0xff; 32])).unwrap(), None);
        assert_eq!(run.page(990, 50).unwrap(), records[990..].to_vec());
        assert_eq!(run.page(2000, 5).unwrap(), vec![]);
        let descending = [(id(1), 1), (id(1), 1)];
        assert!(SortedRun::write(dir.path(), descending.into_iter().map(Ok)).is_err());
    }

    #[test]
    fn known_ids_answer_alike_in_memory_and_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let mut ids: Vec<ChunkId> = (1..400).map(id).collect();
        ids.sort_unstable();
        for in_memory in [1000, 10] {
            let mut builder = KnownIdsBuilder::new(dir.path().to_path_buf(), in_memory);
            for id in &ids {
                builder.push(*id).unwrap();
            }
            let known = builder.finish().unwrap();
            assert_eq!(matches!(known, KnownIds::Run(_)), in_memory == 10);
            assert_eq!(known.len(), 399);
            assert!(ids.iter().all(|id| known.contains(id).unwrap()));
            assert!(!known.contains(&id(400)).unwrap());
            assert_eq!(known.page(390, 20).unwrap(), ids[390..].to_vec());
            assert_eq!(known.page(500, 20).unwrap(), vec![]);
        }
        let mut builder = KnownIdsBuilder::new(dir.path().to_path_buf(), 10);
        builder.push(id(5)).unwrap();
        assert!(builder.push(id(5)).is_err(), "a repeat is refused");
    }

    #[test]
    fn the_directory_finds_every_id_and_no_other_at_any_size_and_spread() {
        let edge = |byte: u8| ChunkId([byte; 32]);
        for count in [0usize, 1, 2, 3, 100, 5000] {
            let mut ids: Vec<ChunkId> = (0..count as u64).map(id).collect();
            // Ids crowded under one prefix, and at both ends of the space.
            let mut crowded = [7u8; 32];
            for n in 0..count.min(50) {
                crowded[31] = n as u8;
                ids.push(ChunkId(crowded));
            }
            if count > 0 {
                ids.extend([edge(0), edge(0xff)]);
            }
            ids.sort_unstable();
            ids.dedup();
            let directed = DirectedIds::new(ids.clone());
            assert_eq!(*directed.starts.last().unwrap() as usize, ids.len());
            assert!(ids.iter().all(|id| directed.contains(id)), "{count}");
            for n in count as u64..count as u64 + 200 {
                assert!(!directed.contains(&id(n)), "{count}: {n}");
            }
            let mut absent = [7u8; 32];
            absent[30] = 1;
            assert!(!directed.contains(&ChunkId(absent)));
            assert_eq!(directed.contains(&edge(0)), count > 0);
        }
    }

    #[test]
    fn spilled_lengths_hold_every_id_once_through_spills_and_merges() {
        let dir = tempfile::tempdir().unwrap();
        let mut map = SpilledLengths::new(dir.path().to_path_buf(), 10);
        for n in 0..200u64 {
            assert!(map.insert(id(n), n as u32).unwrap(), "{n} is new");
        }
        for n in (0..200u64).step_by(3) {
            assert!(!map.insert(id(n), 0).unwrap(), "{n} is held already");
        }
        assert_eq!(map.len(), 200);
        assert!(map.runs.len() <= MAX_RUNS + 1, "runs are merged");
        for n in 0..200u64 {
            assert_eq!(map.get(&id(n)).unwrap(), Some(n as u32));
        }
        assert_eq!(map.get(&id(200)).unwrap(), None);
    }

    #[test]
    fn every_spilled_run_has_the_filter_of_its_ids() {
        let dir = tempfile::tempdir().unwrap();
        let mut map = SpilledLengths::new(dir.path().to_path_buf(), 100);
        for n in 0..1_000u64 {
            map.insert(id(n), 1).unwrap();
        }
        assert_eq!(map.runs.len(), map.filters.len());
        assert!(map.runs.len() > 1, "spilled and merged");
        for (run, filter) in map.runs.iter().zip(&map.filters) {
            for record in run.records().unwrap() {
                let (id, _) = record.unwrap();
                assert!(filter.might_contain(&id));
            }
        }
    }

    #[test]
    fn the_in_memory_part_spills_before_its_table_doubles() {
        let dir = tempfile::tempdir().unwrap();
        let mut map = SpilledLengths::new(dir.path().to_path_buf(), IN_MEMORY);
        let mut most = 0;
        for n in 0..(IN_MEMORY + 1000) as u64 {
            map.insert(id(n), 1).unwrap();
            most = most.max(map.memory.capacity());
        }
        assert_eq!(map.runs.len(), 1);
        assert!(most <= IN_MEMORY, "the table grew to hold {most} entries");
    }
}
