//! Round trips of streams through the engine: sizes around every boundary the ingest
//! has (chunk minimum and maximum, segments), byte ranges, and a large stream with
//! flat memory.

use std::ops::Range;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use stowage::backend::{Backend, BackendError, MemoryBackend, ObjectMeta, ObjectWriter};
use stowage::error::ErrorKind;
use stowage::format::config::ChunkerParams;
use stowage::pipeline::chunker::cut_points;
use stowage::repo::ingest::segment_size;
use stowage::repo::{InitOptions, RepoError, Repository};

use crate::support::*;

/// Ingests `len` random bytes, reads them back with `read_backup` and `export`, and
/// checks the manifest's accounting.
async fn assert_round_trip(
    repo: &stowage::repo::Repository,
    params: &ChunkerParams,
    (len, fill): (usize, Fill),
) {
    let data = fill.make(len, len as u64 + 17);
    let manifest = backup_bytes(repo, data.clone(), "sizes").await;
    assert_eq!(manifest.size, len as u64, "size of {len}-byte stream");
    assert_eq!(
        manifest.blake3,
        Some(blake3_hex(&data)),
        "blake3 of {len}-byte stream"
    );
    assert_eq!(manifest.sha256, None, "sha256 only when asked for");
    let (min, max) = (params.min_size as u64, params.max_size as u64);
    let len64 = len as u64;
    if len == 0 {
        assert_eq!(manifest.chunks, 0, "empty stream has no chunks");
    } else {
        assert!(
            manifest.chunks >= len64.div_ceil(max) && manifest.chunks <= len64 / min + 1,
            "{len} bytes cut into {} chunks (min {min}, max {max})",
            manifest.chunks
        );
    }
    if len64 <= min && len > 0 {
        assert_eq!(manifest.chunks, 1, "{len} bytes <= min is one chunk");
    }
    let restored = restore_bytes(repo, &manifest).await;
    assert!(restored == data, "read_backup of {len}-byte stream differs");
    let (written, exported) = export_to_vec(repo, &manifest, None).await;
    assert_eq!(written.expect("export"), len64);
    assert!(exported == data, "export of {len}-byte stream differs");
    assert_eq!(repo.backup(&manifest.id).expect("backup record"), manifest);
}

/// What a test stream is made of. Sealing runs at debug speed in test builds (the
/// cipher is generic, so it is compiled into the unoptimised crate), so the sizes of
/// several segments use text, which compresses and so seals fast.
#[derive(Debug, Clone, Copy)]
enum Fill {
    Random,
    Text,
}

impl Fill {
    fn make(self, len: usize, seed: u64) -> Vec<u8> {
        match self {
            Fill::Random => random_bytes(len, seed),
            Fill::Text => compressible_bytes(len, seed),
        }
    }
}

/// Sizes at and around the chunk bounds and the segment size of `params`.
fn boundary_sizes(params: &ChunkerParams) -> Vec<(usize, Fill)> {
    use Fill::*;
    let min = params.min_size as usize;
    let avg = params.avg_size as usize;
    let max = params.max_size as usize;
    let seg = segment_size(params);
    vec![
        (0, Random),
        (1, Random),
        (min - 1, Random),
        (min, Random),
        (min + 1, Random),
        (avg, Random),
        (max - 1, Random),
        (max, Random),
        (max + 1, Random),
        (2 * max, Random),
        (2 * max + 1, Random),
        (seg - 1, Text),
        (seg, Text),
        (seg + 1, Random),
        (2 * seg + 12_345, Text),
        (3 * seg, Text),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_of_boundary_sizes_round_trip_with_small_chunks() {
    let (repo, _state) = memory_repo(small_options()).await;
    assert_eq!(segment_size(&SMALL_CHUNKER), 8 * MIB);
    for size in boundary_sizes(&SMALL_CHUNKER) {
        assert_round_trip(&repo, &SMALL_CHUNKER, size).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_of_boundary_sizes_round_trip_with_default_chunks() {
    let options = default_options();
    let params = options.chunker;
    let (repo, _state) = memory_repo(options).await;
    let min = params.min_size as usize;
    let max = params.max_size as usize;
    let seg = segment_size(&params);
    // Every segment but the last must hold one whole chunk and something after it.
    assert!(
        seg > max,
        "segment {seg} must exceed the largest chunk {max}"
    );
    let sizes = [
        (0, Fill::Random),
        (1, Fill::Random),
        (min - 1, Fill::Random),
        (min, Fill::Random),
        (min + 1, Fill::Random),
        (max, Fill::Text),
        (max + 1, Fill::Text),
        (seg - 1, Fill::Text),
        (seg + 1, Fill::Text),
    ];
    for size in sizes {
        assert_round_trip(&repo, &params, size).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressible_data_round_trips_and_is_stored_compressed() {
    let (repo, _state) = memory_repo(small_options()).await;
    for len in [100, 70 * KIB, 3 * MIB + 7] {
        let data = compressible_bytes(len, 5);
        let manifest = backup_bytes(&repo, data.clone(), "text").await;
        assert!(restore_bytes(&repo, &manifest).await == data, "{len} bytes");
        if len >= 64 * KIB {
            assert!(
                manifest.stored_bytes * 2 < manifest.size,
                "{len} bytes of text stored in {} bytes",
                manifest.stored_bytes
            );
        }
    }
    let stats = repo.stats().expect("stats");
    assert!(stats.compression_ratio > 2.0, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncompressed_repository_round_trips() {
    let options = InitOptions {
        compression_level: 0,
        ..small_options()
    };
    let (repo, _state) = memory_repo(options).await;
    let data = compressible_bytes(MIB, 9);
    let manifest = backup_bytes(&repo, data.clone(), "plain").await;
    assert!(restore_bytes(&repo, &manifest).await == data);
    assert!(
        manifest.stored_bytes >= manifest.size,
        "level 0 stores blobs as they are"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_empty_stream_is_a_backup_with_no_chunks() {
    let (repo, _state) = memory_repo(small_options()).await;
    let manifest = repo
        .backup_stream(
            Box::new(std::io::empty()),
            stream_options("empty").with_sha256(true),
            progress(),
        )
        .await
        .expect("ingest");
    assert_eq!(manifest.size, 0);
    assert_eq!(manifest.chunks, 0);
    assert_eq!(manifest.blake3, Some(blake3_hex(b"")));
    assert_eq!(manifest.sha256, Some(sha256_hex(b"")));
    assert!(restore_bytes(&repo, &manifest).await.is_empty());
    let empty = read_all(&repo, &manifest, Some(0..0)).await.expect("0..0");
    assert!(empty.is_empty());
    let err = read_all(&repo, &manifest, Some(0..1)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert_eq!(repo.backups().expect("backups").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byte_ranges_return_exactly_the_requested_bytes() {
    let (repo, _state) = memory_repo(small_options()).await;
    // Longer than one segment, so ranges also cross a segment boundary.
    let len = 9 * MIB + 333;
    let mut data = compressible_bytes(len, 99);
    // Random bytes at the start, so some chunks are stored uncompressed.
    data[..MIB].copy_from_slice(&random_bytes(MIB, 98));
    let manifest = backup_bytes(&repo, data.clone(), "ranges").await;
    let len = len as u64;

    // Chunk boundaries as the ingest cuts them (cuts do not depend on buffer sizes).
    let mut bounds = vec![0u64];
    for cut in cut_points(&data, &SMALL_CHUNKER, true) {
        bounds.push(bounds.last().unwrap() + cut as u64);
    }
    assert_eq!(*bounds.last().unwrap(), len);
    assert_eq!(bounds.len() as u64 - 1, manifest.chunks);
    let b = |i: usize| bounds[i];

    let seg = segment_size(&SMALL_CHUNKER) as u64;
    let ranges: Vec<(&str, Range<u64>)> = vec![
        ("whole", 0..len),
        ("empty at start", 0..0),
        ("empty in the middle", len / 2..len / 2),
        ("empty at end", len..len),
        ("first byte", 0..1),
        ("start", 0..1000),
        ("middle", len / 3..len / 3 + 100_000),
        ("last byte", len - 1..len),
        ("end", len - 5000..len),
        ("one whole chunk", b(3)..b(4)),
        ("across one chunk boundary", b(5) - 1..b(5) + 1),
        ("from a chunk boundary", b(6)..b(6) + 10),
        ("up to a chunk boundary", b(7) - 10..b(7)),
        ("across many chunks", b(2) + 7..b(40) - 7),
        ("across the segment boundary", seg - 100_000..seg + 100_000),
        ("empty on a chunk boundary", b(8)..b(8)),
    ];
    for (name, range) in ranges {
        let expected = &data[range.start as usize..range.end as usize];
        let got = read_all(&repo, &manifest, Some(range.clone()))
            .await
            .unwrap_or_else(|e| panic!("{name} {range:?}: {e}"));
        assert!(got == expected, "{name} {range:?}: wrong bytes");
        let (written, exported) = export_to_vec(&repo, &manifest, Some(range.clone())).await;
        assert_eq!(
            written.expect("export range"),
            range.end - range.start,
            "{name}"
        );
        assert!(exported == expected, "{name} {range:?}: export wrong bytes");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_outside_the_stream_are_invalid_input() {
    let (repo, _state) = memory_repo(small_options()).await;
    let data = random_bytes(300 * KIB, 3);
    let manifest = backup_bytes(&repo, data, "ranges").await;
    let len = manifest.size;
    #[allow(clippy::reversed_empty_ranges)]
    let bad: [Range<u64>; 5] = [
        len..len + 1,
        0..len + 1,
        len + 10..len + 20,
        10..5,
        u64::MAX - 1..u64::MAX,
    ];
    for range in bad {
        let err = read_all(&repo, &manifest, Some(range.clone()))
            .await
            .expect_err("range outside the stream");
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{range:?}: {err}");
        assert!(
            matches!(err, RepoError::RangeNotSatisfiable { start, end, size }
                if start == range.start && end == range.end && size == len),
            "{range:?}: {err:?}"
        );
        let (result, out) = export_to_vec(&repo, &manifest, Some(range.clone())).await;
        assert_eq!(result.unwrap_err().kind(), ErrorKind::InvalidInput);
        assert!(out.is_empty());
    }
}

const BIG_BYTES_ENV: &str = "STOWAGE_TEST_BIG_BYTES";
const BIG_CHILD_ENV: &str = "STOWAGE_IT_BIG_CHILD";
const BIG_CHILD_TEST: &str = "roundtrip::big_stream_child_process_entry";
/// Peak resident memory allowed to the process ingesting and restoring the big stream.
const BIG_PEAK_RSS_LIMIT: u64 = 400 * 1024 * 1024;

/// A large stream (1 GiB unless STOWAGE_TEST_BIG_BYTES says otherwise) generated on the
/// fly is ingested into a local repository and restored streaming, byte-exact, with a
/// peak RSS that does not grow with the stream. The work runs in a child process (this
/// test binary, running only [`big_stream_child_process_entry`]), so the peak RSS
/// measured is not that of the other tests running in parallel.
#[test]
fn big_stream_round_trips_with_flat_memory() {
    let exe = std::env::current_exe().expect("current exe");
    let output = Command::new(exe)
        .args([BIG_CHILD_TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env(BIG_CHILD_ENV, "1")
        .output()
        .expect("run child test process");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "child failed: {}\n{stdout}\n{stderr}",
        output.status
    );
    assert!(
        stdout.contains("big stream: ok"),
        "the child did not run the test:\n{stdout}\n{stderr}"
    );
}

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} not in /proc/self/status"))
}

fn dir_size(path: &std::path::Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(path).expect("read_dir") {
        let entry = entry.expect("entry");
        let meta = entry.metadata().expect("metadata");
        total += if meta.is_dir() {
            dir_size(&entry.path())
        } else {
            meta.len()
        };
    }
    total
}

/// Entry point of the child process of [`big_stream_round_trips_with_flat_memory`];
/// does nothing when run as an ordinary test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_stream_child_process_entry() {
    if std::env::var_os(BIG_CHILD_ENV).is_none() {
        return;
    }
    let len: u64 = std::env::var(BIG_BYTES_ENV)
        .ok()
        .map(|v| v.parse().expect("STOWAGE_TEST_BIG_BYTES is a byte count"))
        .unwrap_or(1 << 30);
    let local = LocalRepo::new();
    let repo = local.init(small_options()).await;
    let baseline = status_kib("VmRSS:") * 1024;

    let started = Instant::now();
    let (source, digest) = PoolStream::new(len, 32, 2024);
    let manifest = repo
        .backup_stream(Box::new(source), stream_options("big"), progress())
        .await
        .expect("ingest big stream");
    let ingest_time = started.elapsed();
    let expected = digest.lock().unwrap().clone().expect("generator finished");
    assert_eq!(manifest.size, len);
    assert_eq!(manifest.blake3, Some(expected.clone()));

    let started = Instant::now();
    let mut stream = repo.read_backup(&manifest, None).expect("read_backup");
    let mut hasher = blake3::Hasher::new();
    let mut read = 0u64;
    while let Some(piece) = stream.next().await {
        let piece = piece.expect("restore piece");
        read += piece.len() as u64;
        hasher.update(&piece);
    }
    let restore_time = started.elapsed();
    assert_eq!(read, len);
    assert_eq!(
        hasher.finalize().to_hex().to_string(),
        expected,
        "restored blake3"
    );

    let peak = status_kib("VmHWM:") * 1024;
    let stored = dir_size(&local.root());
    println!(
        "big stream: {len} bytes, {} chunks, {} stored on disk; ingest {:.1?}, restore {:.1?}; \
         RSS before {} MiB, peak {} MiB",
        manifest.chunks,
        stored,
        ingest_time,
        restore_time,
        baseline >> 20,
        peak >> 20
    );
    assert!(
        peak < BIG_PEAK_RSS_LIMIT,
        "peak RSS {} MiB for a {} MiB stream (limit {} MiB)",
        peak >> 20,
        len >> 20,
        BIG_PEAK_RSS_LIMIT >> 20
    );
    println!("big stream: ok");
}

/// A memory backend whose ranged pack reads each wait a little, as over a network,
/// counting how many run at once, and asking restores for `depth` reads in flight.
struct SlowReads {
    inner: MemoryBackend,
    depth: usize,
    running: AtomicUsize,
    most: AtomicUsize,
}

#[async_trait::async_trait]
impl Backend for SlowReads {
    async fn put(&self, key: &str, data: Bytes) -> Result<(), BackendError> {
        self.inner.put(key, data).await
    }

    async fn create(&self, key: &str) -> Result<Box<dyn ObjectWriter>, BackendError> {
        self.inner.create(key).await
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Bytes, BackendError> {
        if range.is_none() || !key.starts_with("packs/") {
            return self.inner.get(key, range).await;
        }
        let now = self.running.fetch_add(1, SeqCst) + 1;
        self.most.fetch_max(now, SeqCst);
        tokio::time::sleep(Duration::from_millis(20)).await;
        let result = self.inner.get(key, range).await;
        self.running.fetch_sub(1, SeqCst);
        result
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta, BackendError> {
        self.inner.head(key).await
    }

    async fn delete(&self, key: &str) -> Result<(), BackendError> {
        self.inner.delete(key).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, BackendError> {
        self.inner.list(prefix).await
    }

    fn reads_in_flight(&self) -> usize {
        self.depth
    }

    fn describe(&self) -> String {
        "slow-reads".to_string()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_keeps_as_many_reads_in_flight_as_its_backend_asks_for() {
    // Packs of 1 MiB of random data: every pack is at least one ranged read.
    let data = random_bytes(16 << 20, 41);
    for depth in [1, 8] {
        let state = tempfile::tempdir().expect("tempdir");
        let backend = Arc::new(SlowReads {
            inner: MemoryBackend::new(),
            depth,
            running: Default::default(),
            most: Default::default(),
        });
        let repo = Repository::init(
            backend.clone(),
            state.path(),
            PASSPHRASE.as_bytes(),
            small_options(),
        )
        .await
        .expect("init");
        let manifest = backup_bytes(&repo, data.clone(), "depth").await;
        backend.most.store(0, SeqCst);
        let restored = restore_bytes(&repo, &manifest).await;
        assert!(
            restored == data,
            "restore with {depth} reads in flight differs"
        );
        // The content-list leaves are read from packs too, up to two ahead of the data.
        let most = backend.most.load(SeqCst);
        assert!(
            (depth..=depth + 2).contains(&most),
            "{most} pack reads at once, asked for {depth}"
        );
    }
}
