//! `stowage bench`: measures, on the machine it runs on, each primitive of the ingest and
//! restore paths single-threaded (MB/s per core), then the whole pipeline on the memory
//! backend, and says which stage bounds it. Measurement only: it calls the engine's
//! public API and changes nothing.
//!
//! The model: the reader thread (FastCDC) and the observer thread (BLAKE3 of the stream)
//! are serial, one core each at most; keyed BLAKE3 and sealing (zstd + XChaCha20-Poly1305)
//! run on the rayon pool, so they scale with the cores. A stage's capacity is its per-core
//! speed, times the cores when it runs on the pool. The smallest capacity bounds the
//! pipeline; since every stage shares the same cores, the CPU bound is
//! `cores / Σ (1 / speed)` over all stages.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::commands::Outcome;
use crate::backend::{DynBackend, MemoryBackend};
use crate::format::blob::Domain;
use crate::format::config::ChunkerParams;
use crate::pipeline::chunker::cut_points;
use crate::pipeline::keys::{KdfCost, Keys, MasterKey};
use crate::pipeline::seal;
use crate::repo::digest::{DigestRequest, StreamHasher};
use crate::repo::ingest::IngestOptions;
use crate::repo::{InitOptions, Progress, Repository};

/// Each primitive is repeated until it has run this long.
const MIN_MEASURE: Duration = Duration::from_millis(400);
/// The primitives run on at most this many bytes of chunks.
const PRIMITIVE_SAMPLE: usize = 32 << 20;

/// What `stowage bench` measures.
pub struct BenchOptions<'a> {
    pub size_mib: usize,
    pub levels: &'a [i32],
    pub pipeline_level: i32,
    pub chunk_avg_kib: u32,
    pub input: Option<&'a Path>,
}

/// One measured stage: a name, its speed on one core, whether it runs on the pool.
struct Stage {
    name: String,
    per_core: f64,
    parallel: bool,
}

impl Stage {
    fn capacity(&self, cores: f64) -> f64 {
        if self.parallel {
            self.per_core * cores
        } else {
            self.per_core
        }
    }
}

pub async fn run(options: BenchOptions<'_>) -> Result<Outcome> {
    if options.size_mib == 0 {
        bail!("--size must be at least 1 MiB");
    }
    let chunker = chunker_params(options.chunk_avg_kib)?;
    let len = options.size_mib << 20;
    let (data, source) = match options.input {
        Some(path) => {
            let file =
                std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
            let mut data = Vec::with_capacity(len);
            file.take(len as u64)
                .read_to_end(&mut data)
                .with_context(|| format!("reading {}", path.display()))?;
            if data.is_empty() {
                bail!("{} is empty", path.display());
            }
            (data, path.display().to_string())
        }
        None => (generated(len), "generated text-like data".to_string()),
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "stowage bench: {} of {source}, {cores} cores, chunks {}/{}/{} KiB (min/avg/max), MB = 10^6 bytes",
        mib(data.len()),
        chunker.min_size >> 10,
        chunker.avg_size >> 10,
        chunker.max_size >> 10,
    );
    let keys = Keys::derive(&MasterKey::random());

    // Serial stages over the whole sample.
    let chunk_sample = &data[..data.len().min(4 * PRIMITIVE_SAMPLE)];
    let chunking = speed(chunk_sample.len(), || {
        std::hint::black_box(cut_points(chunk_sample, &chunker, true));
    });
    let lengths = cut_points(&data, &chunker, true);
    let chunks = split(&data, &lengths, PRIMITIVE_SAMPLE);
    let chunk_bytes: usize = chunks.iter().map(|c| c.len()).sum();
    let stream_digest = |request: DigestRequest| {
        speed(chunk_bytes, || {
            let mut hasher = StreamHasher::new(request);
            for chunk in &chunks {
                hasher.update(chunk);
            }
            std::hint::black_box(hasher.finish());
        })
    };
    let digest = stream_digest(DigestRequest::default());
    let with_sha256 = stream_digest(DigestRequest { sha256: true });
    let blake3 = speed(chunk_bytes, || {
        for chunk in &chunks {
            std::hint::black_box(keys.chunk_id(chunk));
        }
    });
    let sealed_plain: Vec<Vec<u8>> = chunks
        .iter()
        .map(|c| seal::seal(&keys, Domain::Chunk, b"id", c, 0))
        .collect();
    let encrypt = speed(chunk_bytes, || {
        for chunk in &chunks {
            std::hint::black_box(seal::seal(&keys, Domain::Chunk, b"id", chunk, 0));
        }
    });
    let decrypt = speed(chunk_bytes, || {
        for (envelope, chunk) in sealed_plain.iter().zip(&chunks) {
            let plain = seal::open(
                &keys,
                Domain::Chunk,
                b"id",
                envelope,
                Some(chunk.len()),
                16 << 20,
            );
            std::hint::black_box(plain.ok());
        }
    });

    println!();
    println!("primitives, one core (MB/s):");
    println!(
        "  chunking (FastCDC)     {:>9.0}   serial: reader thread",
        chunking
    );
    println!(
        "  stream digest (BLAKE3) {:>9.0}   serial: observer thread / restore writer",
        digest
    );
    println!(
        "  with SHA-256 (--sha256){:>9.0}   serial: observer thread, when asked for",
        with_sha256
    );
    println!("  chunk id (BLAKE3)      {:>9.0}   pool", blake3);
    println!(
        "  seal, no compression   {:>9.0}   pool (XChaCha20-Poly1305)",
        encrypt
    );
    println!("  open, no compression   {:>9.0}   pool", decrypt);
    println!();
    println!("compression, one core (per level; seal/open include the AEAD):");
    println!(
        "  {:>5}  {:>6}  {:>9}  {:>10}  {:>9}  {:>9}  {:>14}",
        "level", "ratio", "zstd MB/s", "unzstd MB/s", "seal MB/s", "open MB/s", "ingest bound"
    );
    let mut levels: Vec<i32> = options.levels.to_vec();
    if !levels.contains(&options.pipeline_level) {
        levels.push(options.pipeline_level);
    }
    let mut at_pipeline_level = None;
    for &level in &levels {
        let m = measure_level(&keys, &chunks, chunk_bytes, level)?;
        let ingest_stages = ingest_stages(chunking, digest, blake3, m.seal);
        let (bound, _) = bounds(&ingest_stages, cores as f64);
        println!(
            "  {:>5}  {:>6.2}  {:>9.0}  {:>10.0}  {:>9.0}  {:>9.0}  {:>9.0} MB/s",
            level, m.ratio, m.compress, m.decompress, m.seal, m.open, bound
        );
        if level == options.pipeline_level {
            at_pipeline_level = Some(m);
        }
    }
    let m = at_pipeline_level.expect("the pipeline level was measured");

    // The whole pipeline on the memory backend.
    let (ingest, restore, stored) = pipeline(&data, chunker, options.pipeline_level).await?;
    println!();
    println!(
        "pipeline on the memory backend, zstd level {}, {} stored as {} ({:.2}x):",
        options.pipeline_level,
        mib(data.len()),
        mib(stored as usize),
        data.len() as f64 / stored.max(1) as f64
    );
    report(
        "ingest",
        &ingest_stages(chunking, digest, blake3, m.seal),
        ingest,
        cores,
    );
    let restore_stages = vec![
        Stage {
            name: format!("open (AEAD + zstd -{})", options.pipeline_level),
            per_core: m.open,
            parallel: true,
        },
        Stage {
            name: "stream digest (BLAKE3)".into(),
            per_core: digest,
            parallel: false,
        },
    ];
    report("restore", &restore_stages, restore, cores);
    println!();
    println!("Pick the highest level whose ingest bound still exceeds what the source and the backend deliver;");
    println!("smaller chunks dedup finer but add index entries and per-chunk costs (try --chunk-avg-kib).");
    Ok(Outcome::Success)
}

fn chunker_params(avg_kib: u32) -> Result<ChunkerParams> {
    let avg = avg_kib
        .checked_mul(1024)
        .context("--chunk-avg-kib is too large")?;
    let params = ChunkerParams {
        min_size: avg / 2,
        avg_size: avg,
        max_size: avg.saturating_mul(8),
    };
    // Same checks as `init`.
    let config = crate::format::config::RepoConfig::new(params, 3, 32 << 20);
    config.validate().context("chunk size")?;
    Ok(params)
}

fn ingest_stages(chunking: f64, digest: f64, blake3: f64, seal: f64) -> Vec<Stage> {
    vec![
        Stage {
            name: "chunking (FastCDC)".into(),
            per_core: chunking,
            parallel: false,
        },
        Stage {
            name: "stream digest (BLAKE3)".into(),
            per_core: digest,
            parallel: false,
        },
        Stage {
            name: "chunk id (BLAKE3)".into(),
            per_core: blake3,
            parallel: true,
        },
        Stage {
            name: "seal (zstd + AEAD)".into(),
            per_core: seal,
            parallel: true,
        },
    ]
}

/// The slowest stage's capacity and the CPU bound, `cores / Σ 1/speed`.
fn bounds(stages: &[Stage], cores: f64) -> (f64, f64) {
    let slowest = stages
        .iter()
        .map(|s| s.capacity(cores))
        .fold(f64::INFINITY, f64::min);
    let cpu = cores / stages.iter().map(|s| 1.0 / s.per_core).sum::<f64>();
    (slowest.min(cpu), cpu)
}

fn report(what: &str, stages: &[Stage], measured: f64, cores: usize) {
    let cores_f = cores as f64;
    let slowest = stages
        .iter()
        .min_by(|a, b| a.capacity(cores_f).total_cmp(&b.capacity(cores_f)))
        .expect("stages are listed");
    let (bound, cpu) = bounds(stages, cores_f);
    println!(
        "  {what:<8} {measured:>7.0} MB/s measured; slowest stage: {} at {:.0} MB/s ({}); all stages sharing {cores} cores: {cpu:.0} MB/s",
        slowest.name,
        slowest.capacity(cores_f),
        if slowest.parallel {
            format!("{:.0} per core x {cores}", slowest.per_core)
        } else {
            "one thread".to_string()
        },
    );
    let bounded_by = if slowest.capacity(cores_f) <= cpu * 1.05 {
        slowest.name.clone()
    } else {
        "CPU shared by all stages".to_string()
    };
    println!(
        "           reaches {:.0}% of the {bound:.0} MB/s bound, set by {bounded_by}",
        100.0 * measured / bound
    );
}

struct LevelSpeeds {
    ratio: f64,
    compress: f64,
    decompress: f64,
    seal: f64,
    open: f64,
}

fn measure_level(keys: &Keys, chunks: &[&[u8]], bytes: usize, level: i32) -> Result<LevelSpeeds> {
    let mut compressor = zstd::bulk::Compressor::new(level).context("zstd level")?;
    let mut decompressor = zstd::bulk::Decompressor::new().context("zstd")?;
    let compressed = chunks
        .iter()
        .map(|c| compressor.compress(c))
        .collect::<std::io::Result<Vec<_>>>()
        .context("zstd")?;
    let packed: usize = compressed.iter().map(Vec::len).sum();
    let compress = speed(bytes, || {
        for chunk in chunks {
            std::hint::black_box(compressor.compress(chunk).ok());
        }
    });
    let decompress = speed(bytes, || {
        for (blob, chunk) in compressed.iter().zip(chunks) {
            std::hint::black_box(decompressor.decompress(blob, chunk.len()).ok());
        }
    });
    let sealed: Vec<Vec<u8>> = chunks
        .iter()
        .map(|c| seal::seal(keys, Domain::Chunk, b"id", c, level))
        .collect();
    let seal_speed = speed(bytes, || {
        for chunk in chunks {
            std::hint::black_box(seal::seal(keys, Domain::Chunk, b"id", chunk, level));
        }
    });
    let open = speed(bytes, || {
        for (envelope, chunk) in sealed.iter().zip(chunks) {
            let plain = seal::open(
                keys,
                Domain::Chunk,
                b"id",
                envelope,
                Some(chunk.len()),
                16 << 20,
            );
            std::hint::black_box(plain.ok());
        }
    });
    Ok(LevelSpeeds {
        ratio: bytes as f64 / packed.max(1) as f64,
        compress,
        decompress,
        seal: seal_speed,
        open,
    })
}

/// Ingest and restore MB/s of the whole engine on the memory backend, and bytes stored.
async fn pipeline(data: &[u8], chunker: ChunkerParams, level: i32) -> Result<(f64, f64, u64)> {
    let state = tempfile::tempdir().context("temporary state directory")?;
    let backend: DynBackend = Arc::new(MemoryBackend::new());
    let options = InitOptions {
        chunker,
        compression_level: level,
        kdf: KdfCost {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        },
        ..InitOptions::default()
    };
    let repo = Repository::init(backend, state.path(), b"bench", options).await?;
    let data: Arc<[u8]> = Arc::from(data);
    let mut options = IngestOptions::new("bench", "bench");
    options.detect_tar = false;
    let start = Instant::now();
    let manifest = repo
        .backup_stream(
            Box::new(std::io::Cursor::new(data.clone())),
            options,
            Arc::new(Progress::new()),
        )
        .await?;
    let ingest = mb_per_s(data.len(), start.elapsed());
    let start = Instant::now();
    let written = repo
        .export(&manifest, None, Box::new(std::io::sink()))
        .await?;
    let restore = mb_per_s(data.len(), start.elapsed());
    if written != data.len() as u64 {
        bail!("restore wrote {written} bytes of {}", data.len());
    }
    Ok((ingest, restore, manifest.stored_bytes))
}

/// Runs `work` (which processes `bytes` bytes) until `MIN_MEASURE` has passed; MB/s.
fn speed(bytes: usize, mut work: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut runs = 0usize;
    loop {
        work();
        runs += 1;
        let elapsed = start.elapsed();
        if elapsed >= MIN_MEASURE {
            return mb_per_s(bytes * runs, elapsed);
        }
    }
}

fn mb_per_s(bytes: usize, elapsed: Duration) -> f64 {
    bytes as f64 / 1e6 / elapsed.as_secs_f64().max(1e-9)
}

fn mib(bytes: usize) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

/// The chunks of `data` cut at `lengths`, up to about `limit` bytes.
fn split<'a>(data: &'a [u8], lengths: &[usize], limit: usize) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut start = 0;
    for &len in lengths {
        out.push(&data[start..start + len]);
        start += len;
        if start >= limit {
            break;
        }
    }
    out
}

/// Text-like data: words from a small vocabulary drawn by a fixed-seed generator, with a
/// number now and then; it compresses about as well as source code.
pub fn generated(len: usize) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "static",
        "int",
        "struct",
        "return",
        "if",
        "else",
        "for",
        "while",
        "const",
        "void",
        "unsigned",
        "long",
        "char",
        "*",
        "(",
        ")",
        "{",
        "}",
        ";",
        "=",
        "==",
        "->",
        "0",
        "1",
        "NULL",
        "err",
        "dev",
        "buf",
        "len",
        "size",
        "data",
        "ret",
        "goto",
        "out",
        "\n",
        "\t",
        "kmalloc",
        "kfree",
        "spin_lock",
        "mutex",
        "u32",
        "u64",
        "#include",
        "#define",
    ];
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut out = Vec::with_capacity(len + 32);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let word = WORDS[(state % WORDS.len() as u64) as usize];
        out.extend_from_slice(word.as_bytes());
        out.push(if state & 0x700 == 0 { b'\n' } else { b' ' });
        if state & 0xFF_0000 == 0 {
            out.extend_from_slice((state >> 40).to_string().as_bytes());
            out.push(b' ');
        }
    }
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_data_is_deterministic_and_compressible() {
        let a = generated(1 << 20);
        assert_eq!(a, generated(1 << 20));
        let packed = zstd::bulk::compress(&a, 3).unwrap();
        assert!(packed.len() * 2 < a.len());
    }

    #[test]
    fn the_bound_is_the_slowest_capacity_or_the_shared_cpu() {
        let stages = ingest_stages(1000.0, 500.0, 2000.0, 400.0);
        let (bound, cpu) = bounds(&stages, 2.0);
        assert!(cpu < 500.0);
        assert!((bound - cpu).abs() < 1e-9);
        let (bound, _) = bounds(&stages, 64.0);
        assert!((bound - 500.0).abs() < 1e-9);
    }

    #[test]
    fn chunk_sizes_are_checked() {
        assert!(chunker_params(1024).is_ok());
        assert!(chunker_params(0).is_err());
    }
}
