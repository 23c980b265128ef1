//! Shared helpers: temporary repositories, deterministic data, restore helpers and a
//! runner for the real `stowage` binary.

#![allow(dead_code)]

use std::io::{self, Cursor, Read, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::TryStreamExt;
use sha2::{Digest, Sha256};
use stowage::backend::{DynBackend, LocalBackend, MemoryBackend};
use stowage::format::config::ChunkerParams;
use stowage::format::manifest::BackupManifest;
pub use stowage::id::BackupId;
use stowage::pipeline::keys::KdfCost;
use stowage::repo::ingest::IngestOptions;
use stowage::repo::{InitOptions, Progress, RepoError, Repository};
use tempfile::TempDir;

pub const PASSPHRASE: &str = "correct horse battery staple";

pub const KIB: usize = 1024;
pub const MIB: usize = 1024 * 1024;

/// The cheapest argon2 setting, so tests do not spend their time deriving keys.
pub fn cheap_kdf() -> KdfCost {
    KdfCost {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    }
}

/// Default chunker and pack settings with a cheap KDF.
pub fn default_options() -> InitOptions {
    InitOptions {
        kdf: cheap_kdf(),
        ..InitOptions::default()
    }
}

/// Small chunks (16 / 64 / 256 KiB) and 1 MiB packs: many chunks and packs from
/// little data.
pub const SMALL_CHUNKER: ChunkerParams = ChunkerParams {
    min_size: 16 * 1024,
    avg_size: 64 * 1024,
    max_size: 256 * 1024,
};

pub fn small_options() -> InitOptions {
    InitOptions {
        chunker: SMALL_CHUNKER,
        pack_size: 1 << 20,
        compression_level: 3,
        kdf: cheap_kdf(),
    }
}

pub fn progress() -> Arc<Progress> {
    Arc::new(Progress::new())
}

pub fn stream_options(series: &str) -> IngestOptions {
    IngestOptions::new(series, "test-stream")
}

/// A repository on a [`LocalBackend`] in a temporary directory:
/// `<tmp>/repo` holds the objects, `<tmp>/state` the index.
pub struct LocalRepo {
    pub dir: TempDir,
}

impl LocalRepo {
    pub fn new() -> LocalRepo {
        LocalRepo {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// A copy of this repository (objects and index) in a new temporary directory; the
    /// repository must not be open.
    pub fn copy(&self) -> LocalRepo {
        let copy = LocalRepo::new();
        copy_dir(self.dir.path(), copy.dir.path());
        copy
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn index_file(&self) -> PathBuf {
        self.state().join(stowage::repo::INDEX_FILE)
    }

    pub fn backend(&self) -> Arc<LocalBackend> {
        Arc::new(LocalBackend::new(self.root()))
    }

    pub async fn init(&self, options: InitOptions) -> Repository {
        let backend = self.backend();
        backend.create_root().await.expect("create repository root");
        Repository::init(backend, &self.state(), PASSPHRASE.as_bytes(), options)
            .await
            .expect("init repository")
    }

    /// Opens the repository again; the previous handle must be dropped first (the
    /// index file is locked while open).
    pub async fn open(&self) -> Repository {
        self.open_with(self.backend()).await
    }

    pub async fn open_with(&self, backend: DynBackend) -> Repository {
        // A read that failed part-way ends its last fetch a moment after the error is
        // returned (a unit being decrypted on a blocking thread finishes), holding the
        // index until then: wait for it, a bounded while.
        for _ in 0..100 {
            match Repository::open(backend.clone(), &self.state(), PASSPHRASE.as_bytes()).await {
                Err(RepoError::Index(stowage::index::IndexError::Locked { .. })) => {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                opened => return opened.expect("open repository"),
            }
        }
        panic!("the repository's index stayed locked for 2 s after its handle was dropped")
    }

    /// Every pack file, sorted by path.
    pub fn pack_files(&self) -> Vec<PathBuf> {
        let mut packs = Vec::new();
        let root = self.root().join("packs");
        for dir in std::fs::read_dir(&root).expect("packs dir") {
            let dir = dir.expect("entry").path();
            for file in std::fs::read_dir(&dir).expect("pack subdir") {
                packs.push(file.expect("entry").path());
            }
        }
        packs.sort();
        packs
    }
}

/// A repository on a [`MemoryBackend`]; `state` holds the index.
pub async fn memory_repo(options: InitOptions) -> (Repository, TempDir) {
    let state = tempfile::tempdir().expect("tempdir");
    let backend = Arc::new(MemoryBackend::new());
    let repo = Repository::init(backend, state.path(), PASSPHRASE.as_bytes(), options)
        .await
        .expect("init repository");
    (repo, state)
}

// ---------------------------------------------------------------------------------
// Data generators
// ---------------------------------------------------------------------------------

/// xorshift64: deterministic, seeded, fast.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> XorShift {
        XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub fn fill(&mut self, out: &mut [u8]) {
        let mut chunks = out.chunks_exact_mut(8);
        for chunk in &mut chunks {
            chunk.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        let last = self.next_u64().to_le_bytes();
        rest.copy_from_slice(&last[..rest.len()]);
    }
}

/// `len` incompressible pseudo-random bytes.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut out = vec![0u8; len];
    XorShift::new(seed).fill(&mut out);
    out
}

/// `len` bytes of text-like data that compresses well (words from a small vocabulary).
pub fn compressible_bytes(len: usize, seed: u64) -> Vec<u8> {
    const WORDS: [&str; 16] = [
        "backup", "stowage", "chunk", "pack", "index", "restore", "the", "a", "of", "data",
        "stream", "tree", "catalog", "manifest", "blob", "seal",
    ];
    let mut rng = XorShift::new(seed);
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        out.extend_from_slice(WORDS[rng.below(16) as usize].as_bytes());
        out.push(if rng.below(12) == 0 { b'\n' } else { b' ' });
    }
    out.truncate(len);
    out
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// The BLAKE3 every backup records of its stream, in hex.
pub fn blake3_hex(data: &[u8]) -> String {
    blake3::hash(data).to_hex().to_string()
}

/// A reader producing `len` bytes on the fly, never holding more than one block: each
/// 64 KiB block is drawn at random from a small pool of compressible blocks, so the
/// stream is large, deduplicates and compresses well, and costs little disk. The BLAKE3
/// of everything read is available once the reader has been read to its end.
pub struct PoolStream {
    pool: Arc<Vec<Vec<u8>>>,
    rng: XorShift,
    remaining: u64,
    block: usize,
    position: usize,
    hasher: blake3::Hasher,
    digest: Arc<Mutex<Option<String>>>,
}

pub const POOL_BLOCK: usize = 64 * 1024;

impl PoolStream {
    pub fn new(
        len: u64,
        pool_blocks: usize,
        seed: u64,
    ) -> (PoolStream, Arc<Mutex<Option<String>>>) {
        let pool: Vec<Vec<u8>> = (0..pool_blocks)
            .map(|i| compressible_bytes(POOL_BLOCK, seed ^ ((i as u64 + 1) * 7919)))
            .collect();
        let digest = Arc::new(Mutex::new(None));
        let mut rng = XorShift::new(seed);
        let block = rng.below(pool_blocks as u64) as usize;
        let stream = PoolStream {
            pool: Arc::new(pool),
            rng,
            remaining: len,
            block,
            position: 0,
            hasher: blake3::Hasher::new(),
            digest: digest.clone(),
        };
        (stream, digest)
    }
}

impl Read for PoolStream {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            let mut digest = self.digest.lock().unwrap();
            if digest.is_none() {
                *digest = Some(self.hasher.finalize().to_hex().to_string());
            }
            return Ok(0);
        }
        if self.position == POOL_BLOCK {
            self.block = self.rng.below(self.pool.len() as u64) as usize;
            self.position = 0;
        }
        let n = out
            .len()
            .min(POOL_BLOCK - self.position)
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        out[..n].copy_from_slice(&self.pool[self.block][self.position..self.position + n]);
        self.hasher.update(&out[..n]);
        self.position += n;
        self.remaining -= n as u64;
        Ok(n)
    }
}

// ---------------------------------------------------------------------------------
// Engine helpers
// ---------------------------------------------------------------------------------

/// Stores `data` as a stream backup.
pub async fn backup_bytes(
    repo: &Repository,
    data: impl Into<Bytes>,
    series: &str,
) -> BackupManifest {
    try_backup_bytes(repo, data, series)
        .await
        .expect("backup_stream")
}

pub async fn try_backup_bytes(
    repo: &Repository,
    data: impl Into<Bytes>,
    series: &str,
) -> Result<BackupManifest, RepoError> {
    let source = Cursor::new(data.into());
    repo.backup_stream(Box::new(source), stream_options(series), progress())
        .await
}

/// Reads a backup (or a range of it) through `read_backup` into memory.
pub async fn read_all(
    repo: &Repository,
    manifest: &BackupManifest,
    range: Option<Range<u64>>,
) -> Result<Vec<u8>, RepoError> {
    let stream = repo.read_backup(manifest, range)?;
    let pieces: Vec<Bytes> = stream.try_collect().await?;
    Ok(pieces.concat())
}

pub async fn restore_bytes(repo: &Repository, manifest: &BackupManifest) -> Vec<u8> {
    read_all(repo, manifest, None).await.expect("read_backup")
}

/// A `Write` into a shared buffer, so a test can see what `export` wrote even when it
/// fails.
#[derive(Clone, Default)]
pub struct SharedBuf(pub Arc<Mutex<Vec<u8>>>);

impl SharedBuf {
    pub fn bytes(&self) -> Vec<u8> {
        self.0.lock().unwrap().clone()
    }
}

impl Write for SharedBuf {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Runs `export` into memory: the result and every byte the output received.
pub async fn export_to_vec(
    repo: &Repository,
    manifest: &BackupManifest,
    range: Option<Range<u64>>,
) -> (Result<u64, RepoError>, Vec<u8>) {
    let out = SharedBuf::default();
    let result = repo.export(manifest, range, Box::new(out.clone())).await;
    (result, out.bytes())
}

/// Copies a directory tree (files and directories only).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create copy target");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        let kind = entry.file_type().expect("file type");
        if kind.is_dir() {
            copy_dir(&entry.path(), &target);
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target).expect("copy file");
        }
    }
}

/// Flips every bit of the byte at `offset` of `path`.
pub fn flip_byte(path: &Path, offset: u64) {
    let mut data = std::fs::read(path).expect("read file to corrupt");
    data[offset as usize] ^= 0xff;
    std::fs::write(path, data).expect("write corrupted file");
}

// ---------------------------------------------------------------------------------
// CLI
// ---------------------------------------------------------------------------------

pub const BIN: &str = env!("CARGO_BIN_EXE_stowage");

/// A `stowage` command against `repo`, with STOWAGE_PASSWORD set and every other
/// STOWAGE_* variable cleared.
pub fn cli(repo: &Path) -> Command {
    let mut command = Command::new(BIN);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("STOWAGE_") {
            command.env_remove(key);
        }
    }
    command
        .env("STOWAGE_PASSWORD", PASSPHRASE)
        .env("STOWAGE_REPO", repo)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    command
}

/// Runs a command to its end, feeding `stdin` when given.
pub fn run(command: &mut Command, stdin: Option<&[u8]>) -> Output {
    if stdin.is_some() {
        command.stdin(Stdio::piped());
    }
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().expect("spawn stowage");
    let feeder = stdin.map(|data| {
        let data = data.to_vec();
        let mut pipe = child.stdin.take().expect("stdin pipe");
        std::thread::spawn(move || {
            let _ = pipe.write_all(&data);
        })
    });
    let output = child.wait_with_output().expect("wait for stowage");
    if let Some(feeder) = feeder {
        feeder.join().expect("stdin feeder");
    }
    output
}

/// Runs a command that must succeed; returns its stdout.
pub fn run_ok(command: &mut Command, stdin: Option<&[u8]>) -> Output {
    let description = format!("{command:?}");
    let output = run(command, stdin);
    assert!(
        output.status.success(),
        "{description} failed with {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

pub fn stdout_text(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("stdout is UTF-8")
}

pub fn stderr_text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The last non-empty line of stdout.
pub fn last_line(output: &Output) -> String {
    stdout_text(output)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Creates a repository at `repo` for CLI tests through the library, with a cheap KDF
/// and the CLI's default state directory (`<repo>/state`).
pub fn init_for_cli(repo: &Path, options: InitOptions) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let backend = Arc::new(LocalBackend::new(repo));
        backend.create_root().await.expect("create root");
        let repository =
            Repository::init(backend, &repo.join("state"), PASSPHRASE.as_bytes(), options)
                .await
                .expect("init");
        drop(repository);
    });
}

// ---------------------------------------------------------------------------------
// Server helpers
// ---------------------------------------------------------------------------------

/// Serves a prepared server on a random loopback port; returns the base URL and the
/// running server (`shutdown().await` it before starting another on the same data).
pub async fn serve_on_loopback(
    state: stowage::http::AppState,
) -> (String, stowage::server::RunningServer) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let running = stowage::server::start(state, listener).expect("serve");
    (format!("http://{}", running.address()), running)
}

/// The admin key a first start wrote into the data directory.
pub fn admin_key(data_dir: &std::path::Path) -> String {
    std::fs::read_to_string(data_dir.join("admin.key"))
        .expect("admin.key written on first start")
        .trim()
        .to_string()
}

/// `GET url` with a bearer key, its JSON answer.
pub async fn get_json(client: &reqwest::Client, url: &str, key: &str) -> serde_json::Value {
    client
        .get(url)
        .bearer_auth(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("{url}: not JSON: {e}"))
}

/// A backup id from its text (a test's constant or a CLI's output).
pub fn bid(text: &str) -> BackupId {
    text.parse().expect("a backup id")
}

/// A plain tar of `files` (path, bytes), written with GNU tar when it is there.
pub fn plain_tar(dir: &std::path::Path, files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let root = dir.join("tar-src");
    for (path, data) in files {
        let full = root.join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, data).unwrap();
    }
    let output = std::process::Command::new("tar")
        .arg("-cf")
        .arg("-")
        .arg("-C")
        .arg(&root)
        .arg(".")
        .output()
        .expect("tar (GNU tar is installed by .ci/run)");
    assert!(output.status.success());
    output.stdout
}

/// A Python virtual environment under `target/<name>` with `packages` (pinned) installed
/// from PyPI, made once (a lock file keeps concurrent test processes from building it
/// twice; a changed package list rebuilds it).
pub fn python_venv(name: &str, packages: &[&str]) -> PathBuf {
    use std::os::fd::AsRawFd;
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    let venv = target.join(name);
    std::fs::create_dir_all(&target).unwrap();
    let lock = std::fs::File::create(target.join(format!("{name}.lock"))).unwrap();
    assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
    let done = venv.join("installed");
    let wanted = packages.join(" ");
    if std::fs::read_to_string(&done).ok().as_deref() != Some(wanted.as_str()) {
        let _ = std::fs::remove_dir_all(&venv);
        let status = std::process::Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .expect("python3 with venv is needed (.ci/run installs it)");
        assert!(status.success(), "python3 -m venv failed");
        let output = std::process::Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .args(packages)
            .output()
            .expect("pip");
        assert!(
            output.status.success(),
            "pip install {wanted}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        std::fs::write(&done, &wanted).unwrap();
    }
    venv
}

/// Opens `local` through a FaultyBackend, then applies `plan` (its mutations and call
/// numbers counted from the first call after opening, which writes nothing).
pub async fn open_faulty(
    local: &LocalRepo,
    plan: stowage::backend::FaultPlan,
) -> (
    stowage::repo::Repository,
    Arc<stowage::backend::FaultyBackend>,
) {
    let faulty = Arc::new(stowage::backend::FaultyBackend::new(
        local.backend(),
        stowage::backend::FaultPlan::Never,
    ));
    let repo = local.open_with(faulty.clone()).await;
    assert_eq!(faulty.mutation_count(), 0, "opening writes nothing");
    let plan = match plan {
        // Call numbers count from the end of opening.
        stowage::backend::FaultPlan::FailNth { operation, n } => {
            stowage::backend::FaultPlan::FailNth {
                operation,
                n: n + faulty.operation_count(operation),
            }
        }
        other => other,
    };
    faulty.set_plan(plan);
    (repo, faulty)
}
