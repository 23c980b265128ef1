//! The engine: the only module that combines the pipeline, the index and a backend, and
//! the only owner of threads, tasks and blocking work.
//!
//! A [`Repository`] is a cheap, cloneable handle; every ingest, restore, check and
//! repair of one repository in a process goes through one, so concurrent ingests share
//! the in-flight registry that lets them deduplicate against each other safely.

pub mod assembly;
pub mod catalog_lookup;
pub mod check;
pub mod chunk_runs;
pub mod compose;
mod coordinator;
pub mod digest;
pub mod dir_handles;
mod error;
mod file_writers;
pub mod folder_tar;
pub mod gc;
pub mod generation;
mod id_bloom;
pub mod inflight;
pub mod ingest;
mod keys_object;
pub mod lifecycle;
pub mod listing;
mod objects;
mod owners;
mod pack_writer;
pub mod progress;
mod reference_filter;
mod referencing;
pub mod repair;
mod repeat;
pub mod restore;
mod segment_buffers;
pub mod server_state;
mod sorted_ids;
mod spool;
pub mod stats;
pub mod tree;
pub mod tree_catalog_check;
pub mod tree_source;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

pub use error::RepoError;
pub use progress::Progress;

use crate::backend::{BackendError, DynBackend};
use crate::format::blob::Domain;
use crate::format::config::{ChunkerParams, RepoConfig};
use crate::format::manifest::BackupManifest;
use crate::id::{BackupId, ChunkId, PackId};
use crate::index::{ChunkLocation, Index};
use crate::pipeline::keys::{KdfCost, Keys, MasterKey};
use crate::pipeline::seal;
use inflight::InFlight;

/// Object key of the repository config.
pub const CONFIG_KEY: &str = "config";
/// Object key of the default key object.
pub const DEFAULT_KEY_KEY: &str = "keys/default";
pub const PACKS_PREFIX: &str = "packs/";
pub const BACKUPS_PREFIX: &str = "backups/";
pub const RECYCLED_PREFIX: &str = "recycled/";
pub const SERIES_PREFIX: &str = "series/";
/// Name of the index file inside the state directory.
pub const INDEX_FILE: &str = "index.redb";
/// Where `repair index` moves the index file it replaces, inside the state directory.
pub const INDEX_SET_ASIDE_FILE: &str = "index.redb.before-repair";

/// Object key of a pack: `packs/<first two hex digits>/<64 hex digits>`.
pub fn pack_key(pack: &PackId) -> String {
    let hex = pack.to_hex();
    format!("{PACKS_PREFIX}{}/{hex}", &hex[..2])
}

/// Object key of a backup manifest.
pub fn manifest_key(backup: &BackupId) -> String {
    format!("{BACKUPS_PREFIX}{backup}")
}

/// The backup named by `text`, for a lookup: text that cannot be a backup id names no
/// backup, so it is [`RepoError::BackupNotFound`], as an unknown id is.
pub fn lookup_id(text: &str) -> Result<BackupId, RepoError> {
    text.parse().map_err(|_| RepoError::BackupNotFound {
        id: text.chars().take(80).collect(),
    })
}

/// A failed read of indexed pack bytes: a missing or short pack is corruption naming
/// the pack; anything else (an unreachable backend) stays what it is.
pub(crate) fn pack_read_error(
    pack: PackId,
    range: &std::ops::Range<u64>,
    error: BackendError,
) -> RepoError {
    match error {
        BackendError::NotFound { .. } | BackendError::RangeNotSatisfiable { .. } => {
            RepoError::CorruptPack {
                pack,
                reason: format!("cannot read bytes {}..{}: {error}", range.start, range.end),
            }
        }
        other => RepoError::Backend(other),
    }
}

/// Settings chosen once, at `init`.
#[derive(Debug, Clone, Copy)]
pub struct InitOptions {
    pub chunker: ChunkerParams,
    pub compression_level: i32,
    pub pack_size: u32,
    pub kdf: KdfCost,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            chunker: ChunkerParams::default(),
            compression_level: 3,
            pack_size: 32 << 20,
            kdf: KdfCost::default(),
        }
    }
}

/// A handle on one open repository.
#[derive(Clone)]
pub struct Repository {
    inner: Arc<RepoInner>,
}

pub(crate) struct RepoInner {
    pub backend: DynBackend,
    pub index: Index,
    pub keys: Keys,
    master: MasterKey,
    pub config: RepoConfig,
    pub inflight: Arc<InFlight>,
    pub coordinator: coordinator::GcCoordinator,
    pub state_dir: PathBuf,
    pub(crate) generations: generation::Generations,
    /// Makes a series record's check-then-write atomic (`create_series`).
    series_writes: tokio::sync::Mutex<()>,
    /// What opening changed in an index that did not match the backend.
    reconciled_on_open: std::sync::OnceLock<repair::RepairReport>,
}

impl Repository {
    /// Creates a new repository on `backend`, with its local state in `state_dir`.
    pub async fn init(
        backend: DynBackend,
        state_dir: &Path,
        passphrase: &[u8],
        options: InitOptions,
    ) -> Result<Repository, RepoError> {
        match backend.head(CONFIG_KEY).await {
            Ok(_) => {
                return Err(RepoError::AlreadyInitialized {
                    location: backend.describe(),
                })
            }
            Err(BackendError::NotFound { .. }) => {}
            Err(other) => return Err(other.into()),
        }
        let config = RepoConfig::new(
            options.chunker,
            options.compression_level,
            options.pack_size,
        );
        config.validate()?;
        let master = MasterKey::random();
        let keys = Keys::derive(&master);
        keys_object::write(
            &backend,
            DEFAULT_KEY_KEY,
            &master,
            passphrase,
            &config.id,
            options.kdf,
        )
        .await?;
        let token = generation::write_new(&backend, &keys).await?;
        // The config goes last: its presence is what marks a repository as complete.
        backend
            .put(CONFIG_KEY, Bytes::from(config.encode()))
            .await?;
        let repo = Self::assemble(backend, state_dir, config, &master)?;
        repo.inner.index.set_generation(&token)?;
        Ok(repo)
    }

    /// Opens an existing repository; a wrong passphrase is an `Unauthorized` error.
    ///
    /// The index is a cache of the backend: when its generation differs from the
    /// backend's (a new, emptied, stale or interrupted index) it is reconciled with the
    /// backend before anything reads it ([`Repository::reconciled_on_open`] says what
    /// changed). A damaged index file is an error naming `stowage repair index`.
    pub async fn open(
        backend: DynBackend,
        state_dir: &Path,
        passphrase: &[u8],
    ) -> Result<Repository, RepoError> {
        let (config, master) = Self::unlock(&backend, passphrase).await?;
        let repo = Self::assemble(backend, state_dir, config, &master)?;
        repo.ensure_index_current().await?;
        Ok(repo)
    }

    /// `repair index`: unlocks the repository, moves the index file aside without
    /// opening it (it may be damaged in ways that make redb misbehave), and rebuilds a
    /// new one from the backend. Returns where the old file went, if there was one.
    pub async fn open_rebuilding_index(
        backend: DynBackend,
        state_dir: &Path,
        passphrase: &[u8],
    ) -> Result<(Repository, repair::RepairReport, Option<PathBuf>), RepoError> {
        let (config, master) = Self::unlock(&backend, passphrase).await?;
        let aside = state_dir.join(INDEX_SET_ASIDE_FILE);
        let moved = Index::set_aside(&state_dir.join(INDEX_FILE), &aside)?;
        let repo = Self::assemble(backend, state_dir, config, &master)?;
        let report = repo.reconcile_index().await?;
        Ok((repo, report, moved.then_some(aside)))
    }

    /// Compacts the index in `state_dir` ([`Index::compact`]), as `repair index` does
    /// after a rebuild; the repository must not be open. Returns the file's size before
    /// and after.
    pub fn compact_index(state_dir: &Path) -> Result<(u64, u64), RepoError> {
        let mut index = Index::open(&state_dir.join(INDEX_FILE))?;
        Ok(index.compact()?)
    }

    /// What opening changed in an index that did not match the backend; `None` when it
    /// matched.
    pub fn reconciled_on_open(&self) -> Option<&repair::RepairReport> {
        self.inner.reconciled_on_open.get()
    }

    /// Reconciles the index with the backend unless it is known to be current: it
    /// recorded the backend's generation, or this process's own changes in flight are
    /// why it has not yet (see `generation`). A running process calls this too (`gc`).
    async fn ensure_index_current(&self) -> Result<(), RepoError> {
        let inner = &self.inner;
        let backend = generation::read(&inner.backend, &inner.keys).await?;
        if let Some(token) = backend {
            if inner.index.generation()?.as_deref() == Some(token.as_slice())
                || inner.generations.explains(&token)
            {
                return Ok(());
            }
        }
        tracing::info!(
            index = %inner.index.path().display(),
            "the index does not match the repository's generation; reconciling it with the backend"
        );
        let report = self.reconcile_index().await?;
        let _ = inner.reconciled_on_open.set(report);
        Ok(())
    }

    /// Reads the config and unwraps the master key.
    async fn unlock(
        backend: &DynBackend,
        passphrase: &[u8],
    ) -> Result<(RepoConfig, MasterKey), RepoError> {
        let config_bytes = match backend.get(CONFIG_KEY, None).await {
            Ok(bytes) => bytes,
            Err(BackendError::NotFound { .. }) => {
                return Err(RepoError::NotARepository {
                    location: backend.describe(),
                })
            }
            Err(other) => return Err(other.into()),
        };
        let config = RepoConfig::decode(&config_bytes)?;
        let master = keys_object::read(backend, DEFAULT_KEY_KEY, passphrase, &config.id).await?;
        Ok((config, master))
    }

    fn assemble(
        backend: DynBackend,
        state_dir: &Path,
        config: RepoConfig,
        master: &MasterKey,
    ) -> Result<Repository, RepoError> {
        std::fs::create_dir_all(state_dir).map_err(|e| RepoError::io(state_dir, e))?;
        let index = Index::open(&state_dir.join(INDEX_FILE))?;
        index.bind_repository(&config.id)?;
        Ok(Repository {
            inner: Arc::new(RepoInner {
                backend,
                index,
                keys: Keys::derive(master),
                master: master.clone(),
                config,
                inflight: Arc::new(InFlight::default()),
                coordinator: coordinator::GcCoordinator::default(),
                state_dir: state_dir.to_path_buf(),
                generations: generation::Generations::default(),
                series_writes: tokio::sync::Mutex::new(()),
                reconciled_on_open: std::sync::OnceLock::new(),
            }),
        })
    }

    pub fn config(&self) -> &RepoConfig {
        &self.inner.config
    }

    pub fn backend(&self) -> &DynBackend {
        &self.inner.backend
    }

    pub fn index(&self) -> &Index {
        &self.inner.index
    }

    /// Changes the passphrase: rewrites the key object only.
    pub async fn change_passphrase(&self, new: &[u8], cost: KdfCost) -> Result<(), RepoError> {
        keys_object::write(
            &self.inner.backend,
            DEFAULT_KEY_KEY,
            &self.inner.master,
            new,
            &self.inner.config.id,
            cost,
        )
        .await
    }

    /// The record of one backup.
    pub fn backup(&self, id: &BackupId) -> Result<BackupManifest, RepoError> {
        self.inner
            .index
            .get_backup(id)?
            .ok_or_else(|| RepoError::BackupNotFound { id: id.to_string() })
    }

    /// The plaintext of stored chunks, in the order asked, each checked against its id
    /// (read a few at a time).
    pub async fn read_chunks(&self, ids: &[ChunkId]) -> Result<Vec<Bytes>, RepoError> {
        use futures::{StreamExt, TryStreamExt};
        let locations = self.inner.index.lookup_chunks(ids)?;
        let wanted: Vec<(ChunkId, Option<ChunkLocation>)> =
            ids.iter().copied().zip(locations).collect();
        let inner = self.inner.clone();
        futures::stream::iter(wanted)
            .map(move |(id, location)| {
                let inner = inner.clone();
                async move {
                    let location = location.ok_or(RepoError::ChunkMissing {
                        chunk: id,
                        backup: None,
                    })?;
                    inner.load_blob(id, location).await.map(Bytes::from)
                }
            })
            .buffered(16)
            .try_collect()
            .await
    }

    /// Every backup, oldest first.
    pub fn backups(&self) -> Result<Vec<BackupManifest>, RepoError> {
        let mut all = self.inner.index.list_backups()?;
        all.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        Ok(all)
    }
}

impl RepoInner {
    /// Reads and opens one blob at a known location, checking it is the chunk asked for.
    pub async fn load_blob(
        &self,
        id: ChunkId,
        location: ChunkLocation,
    ) -> Result<Vec<u8>, RepoError> {
        let start = u64::from(location.offset);
        let range = start..start + u64::from(location.stored_len);
        let envelope = self
            .backend
            .get(&pack_key(&location.pack), Some(range.clone()))
            .await
            .map_err(|e| pack_read_error(location.pack, &range, e))?;
        self.open_chunk(id, &location, &envelope)
    }

    /// Opens a chunk envelope read from its pack.
    pub fn open_chunk(
        &self,
        id: ChunkId,
        location: &ChunkLocation,
        envelope: &[u8],
    ) -> Result<Vec<u8>, RepoError> {
        // Data chunks are at most the chunker's maximum; content-list leaves are smaller
        // than 1 MiB.
        let max = self.config.chunker.max_size.max(1 << 20);
        seal::open(
            &self.keys,
            Domain::Chunk,
            id.as_bytes(),
            envelope,
            Some(location.raw_len as usize),
            max as usize,
        )
        .map_err(|e| RepoError::CorruptChunk {
            chunk: id,
            pack: location.pack,
            reason: e.to_string(),
        })
    }

    /// Looks a chunk up in the index, failing when it is missing.
    pub fn locate(&self, id: ChunkId) -> Result<ChunkLocation, RepoError> {
        self.index.lookup_chunks(&[id])?[0].ok_or(RepoError::ChunkMissing {
            chunk: id,
            backup: None,
        })
    }
}
