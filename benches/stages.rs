//! Criterion benches, one group per stage of the ingest and restore paths, plus end to end
//! on the memory backend.
//!
//! Data: the first 64 MiB of `linux-6.12.tar` from the benchmark corpus
//! (`$STOWAGE_CORPUS` or `~/.cache/stowage-corpus`, see `../shared/bench/corpus.sh`) when
//! present, else generated text-like data of the same size.
//!
//!     cargo bench --bench stages                 # everything
//!     cargo bench --bench stages -- seal         # one group
//!     cargo bench --bench stages -- --quick      # a quick pass

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};

use stowage::backend::{DynBackend, MemoryBackend};
use stowage::format::blob::Domain;
use stowage::format::config::ChunkerParams;
use stowage::format::pack::{BlobKind, PackEntry};
use stowage::id::{BackupId, ChunkId, PackId};
use stowage::index::{Index, PackRecord};
use stowage::pipeline::chunker::cut_points;
use stowage::pipeline::keys::{KdfCost, Keys, MasterKey};
use stowage::pipeline::packer::PackLayout;
use stowage::pipeline::seal;
use stowage::repo::ingest::IngestOptions;
use stowage::repo::{InitOptions, Progress, Repository};

const DATA_LEN: usize = 64 << 20;
/// Bytes of chunks used by the per-chunk stages (hash, compress, seal, open...).
const CHUNK_SAMPLE: usize = 16 << 20;

fn corpus_file() -> PathBuf {
    let dir = std::env::var_os("STOWAGE_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/stowage-corpus")
        });
    dir.join("linux-6.12.tar")
}

fn load_data() -> (Vec<u8>, &'static str) {
    let path = corpus_file();
    if let Ok(file) = std::fs::File::open(&path) {
        let mut data = Vec::with_capacity(DATA_LEN);
        if file.take(DATA_LEN as u64).read_to_end(&mut data).is_ok() && data.len() == DATA_LEN {
            return (data, "linux-6.12.tar (first 64 MiB)");
        }
    }
    (
        stowage::cli::bench::generated(DATA_LEN),
        "generated text-like data",
    )
}

/// The data cut into chunks with the default parameters, up to about `CHUNK_SAMPLE` bytes.
fn chunks(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut start = 0;
    for len in cut_points(data, &ChunkerParams::default(), true) {
        out.push(&data[start..start + len]);
        start += len;
        if start >= CHUNK_SAMPLE {
            break;
        }
    }
    out
}

fn total(chunks: &[&[u8]]) -> u64 {
    chunks.iter().map(|c| c.len() as u64).sum()
}

fn cheap_kdf() -> KdfCost {
    KdfCost {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    }
}

fn stages(c: &mut Criterion) {
    let (data, source) = load_data();
    eprintln!("stowage benches on {source}");
    let chunks = chunks(&data);
    let chunk_bytes = total(&chunks);
    let keys = Keys::derive(&MasterKey::random());

    let mut group = c.benchmark_group("chunker");
    group.throughput(Throughput::Bytes(data.len() as u64));
    for (name, params) in [
        ("fastcdc_1MiB", ChunkerParams::default()),
        (
            "fastcdc_256KiB",
            ChunkerParams {
                min_size: 64 << 10,
                avg_size: 256 << 10,
                max_size: 2 << 20,
            },
        ),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| cut_points(black_box(&data), &params, true))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("hash");
    group.throughput(Throughput::Bytes(chunk_bytes));
    group.bench_function("blake3_keyed", |b| {
        b.iter(|| {
            for chunk in &chunks {
                black_box(keys.chunk_id(chunk));
            }
        })
    });
    group.bench_function("sha256_stream", |b| {
        use sha2::Digest;
        b.iter(|| {
            let mut sha = sha2::Sha256::new();
            for chunk in &chunks {
                sha.update(chunk);
            }
            black_box(sha.finalize())
        })
    });
    group.finish();

    let mut group = c.benchmark_group("compress");
    group.throughput(Throughput::Bytes(chunk_bytes));
    let mut compressed_by_level = Vec::new();
    for level in [1, 3, 9] {
        let mut compressor = zstd::bulk::Compressor::new(level).expect("zstd compressor");
        compressed_by_level.push(
            chunks
                .iter()
                .map(|c| compressor.compress(c).expect("compress"))
                .collect::<Vec<_>>(),
        );
        group.bench_function(format!("zstd_{level}"), |b| {
            b.iter(|| {
                for chunk in &chunks {
                    black_box(compressor.compress(chunk).expect("compress"));
                }
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("decompress");
    group.throughput(Throughput::Bytes(chunk_bytes));
    let mut decompressor = zstd::bulk::Decompressor::new().expect("zstd decompressor");
    for (level, compressed) in [1, 3, 9].iter().zip(&compressed_by_level) {
        group.bench_function(format!("zstd_{level}"), |b| {
            b.iter(|| {
                for (blob, chunk) in compressed.iter().zip(&chunks) {
                    black_box(
                        decompressor
                            .decompress(blob, chunk.len())
                            .expect("decompress"),
                    );
                }
            })
        });
    }
    group.finish();

    // Seal = compress (when it pays) + XChaCha20-Poly1305; level 0 isolates the AEAD.
    let mut group = c.benchmark_group("seal");
    group.throughput(Throughput::Bytes(chunk_bytes));
    for level in [0, 3] {
        group.bench_function(format!("level_{level}"), |b| {
            b.iter(|| {
                for chunk in &chunks {
                    black_box(seal::seal(&keys, Domain::Chunk, b"chunk-id", chunk, level));
                }
            })
        });
    }
    group.finish();

    // Open = AEAD check + decrypt (+ decompress for level 3).
    let mut group = c.benchmark_group("open");
    group.throughput(Throughput::Bytes(chunk_bytes));
    for level in [0, 3] {
        let sealed: Vec<Vec<u8>> = chunks
            .iter()
            .map(|c| seal::seal(&keys, Domain::Chunk, b"chunk-id", c, level))
            .collect();
        group.bench_function(format!("level_{level}"), |b| {
            b.iter(|| {
                for (envelope, chunk) in sealed.iter().zip(&chunks) {
                    let plain = seal::open(
                        &keys,
                        Domain::Chunk,
                        b"chunk-id",
                        envelope,
                        Some(chunk.len()),
                        16 << 20,
                    )
                    .expect("open");
                    black_box(plain);
                }
            })
        });
    }
    group.finish();

    // The packer's bookkeeping for one 32 MiB pack of 1 MiB blobs, trailer included.
    let mut group = c.benchmark_group("packer");
    let ids: Vec<ChunkId> = (0..1024u32).map(synthetic_chunk_id).collect();
    group.throughput(Throughput::Elements(ids.len() as u64));
    group.bench_function("place_1024_and_trailer", |b| {
        b.iter(|| {
            let mut layout = PackLayout::new(u32::MAX / 4);
            for id in &ids {
                layout.place(*id, BlobKind::Data, 700_000, 1 << 20);
            }
            black_box(layout.trailer_payload())
        })
    });
    group.finish();

    index_lookup(c);
    end_to_end(c, &data);
}

/// A distinct, well-spread chunk id for the n-th synthetic chunk.
fn synthetic_chunk_id(n: u32) -> ChunkId {
    ChunkId(*blake3::hash(&n.to_le_bytes()).as_bytes())
}

/// Batched lookups in an index of 100,000 chunks (about 100 GB of stream at 1 MiB
/// chunks): hits and misses.
fn index_lookup(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let index = Index::open(&dir.path().join("index.redb")).expect("index");
    let mut known = Vec::new();
    for p in 0..100u32 {
        let pack = PackId::random();
        let entries: Vec<PackEntry> = (0..1000u32)
            .map(|i| PackEntry {
                id: synthetic_chunk_id(p * 1000 + i),
                kind: BlobKind::Data,
                offset: i * 1000,
                stored_len: 1000,
                raw_len: 2000,
            })
            .collect();
        known.extend(entries.iter().map(|e| e.id).step_by(100));
        let record = PackRecord {
            size: 1_000_000,
            blobs: 1000,
            created: 0,
        };
        index.commit_pack(pack, record, &entries).expect("commit");
    }
    let hits: Vec<ChunkId> = known.iter().copied().take(512).collect();
    let misses: Vec<ChunkId> = (1_000_000..1_000_512u32).map(synthetic_chunk_id).collect();
    let mut group = c.benchmark_group("index_lookup");
    group.throughput(Throughput::Elements(512));
    group.bench_function("hit_512", |b| {
        b.iter(|| black_box(index.lookup_chunks(&hits).expect("lookup")))
    });
    group.bench_function("miss_512", |b| {
        b.iter(|| black_box(index.lookup_chunks(&misses).expect("lookup")))
    });
    group.finish();
}

fn new_repo(runtime: &tokio::runtime::Runtime) -> (Repository, tempfile::TempDir) {
    let state = tempfile::tempdir().expect("tempdir");
    let backend: DynBackend = Arc::new(MemoryBackend::new());
    let options = InitOptions {
        kdf: cheap_kdf(),
        ..InitOptions::default()
    };
    let repo = runtime
        .block_on(Repository::init(backend, state.path(), b"bench", options))
        .expect("init");
    (repo, state)
}

fn backup(runtime: &tokio::runtime::Runtime, repo: &Repository, data: &Arc<Vec<u8>>) -> BackupId {
    let source = std::io::Cursor::new(SharedBytes(data.clone()));
    let manifest = runtime
        .block_on(repo.backup_stream(
            Box::new(source),
            IngestOptions::new("bench", "bench"),
            Arc::new(Progress::new()),
        ))
        .expect("backup");
    manifest.id
}

/// Owned view of shared bytes, for a `Cursor` that is `'static`.
struct SharedBytes(Arc<Vec<u8>>);

impl AsRef<[u8]> for SharedBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// The whole engine on the memory backend: first ingest (everything new), re-ingest
/// (everything deduplicated), restore to a sink.
fn end_to_end(c: &mut Criterion, data: &[u8]) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let data = Arc::new(data.to_vec());
    let mut group = c.benchmark_group("end_to_end_memory");
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.sample_size(10);
    group.bench_function("ingest_new", |b| {
        b.iter_batched(
            || new_repo(&runtime),
            |(repo, state)| {
                backup(&runtime, &repo, &data);
                (repo, state)
            },
            BatchSize::PerIteration,
        )
    });
    let (repo, _state) = new_repo(&runtime);
    let id = backup(&runtime, &repo, &data);
    group.bench_function("ingest_unchanged", |b| {
        b.iter(|| backup(&runtime, &repo, &data))
    });
    let manifest = repo.backup(&id).expect("manifest");
    group.bench_function("restore", |b| {
        b.iter(|| {
            let written = runtime
                .block_on(repo.export(&manifest, None, Box::new(std::io::sink())))
                .expect("restore");
            assert_eq!(written, data.len() as u64);
        })
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = stages
}
criterion_main!(benches);
