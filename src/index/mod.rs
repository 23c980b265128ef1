//! The redb index: which pack holds each chunk, which packs exist, and the record of
//! every backup. It is a cache of what the backend holds (`repo::repair` rebuilds it
//! from pack trailers and manifests) plus local state.
//!
//! Batch-oriented typed methods; no redb type escapes this module. Table definitions and
//! the schema version live in [`schema`].

mod schema;
mod timeline;
mod totals;

use std::path::{Path, PathBuf};

use redb::{Database, ReadableTable, ReadableTableMetadata};

use crate::error::ErrorKind;
use crate::format::manifest::BackupManifest;
use crate::format::pack::{BlobKind, PackEntry};
use crate::id::{BackupId, ChunkId, PackId, RepositoryId};
use schema::{
    BACKUPS, CHUNKS, GENERATION_KEY, META, PACKS, RECYCLED, REPOSITORY, SCHEMA_VERSION,
    SCHEMA_VERSION_KEY, SERIES, SYNC,
};
pub use timeline::{Cursor as TimelineCursor, Scope as TimelineScope, TimelineRow, Visit};
use totals::Delta;
pub use totals::{BackupTotals, KeptTotals};

/// Where a chunk is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkLocation {
    pub pack: PackId,
    pub kind: BlobKind,
    pub offset: u32,
    pub stored_len: u32,
    pub raw_len: u32,
}

/// What the index knows of a pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackRecord {
    pub size: u64,
    pub blobs: u32,
    /// Unix seconds when the pack was committed.
    pub created: i64,
}

/// Totals over the chunks and packs tables.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IndexTotals {
    /// Data blobs (stream and catalog chunks): count, plaintext and sealed bytes.
    pub chunks: u64,
    pub chunk_raw_bytes: u64,
    pub chunk_stored_bytes: u64,
    /// Content-list leaves: count, plaintext and sealed bytes.
    pub lists: u64,
    pub list_raw_bytes: u64,
    pub list_stored_bytes: u64,
    pub packs: u64,
    pub pack_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("index {path} is in use by another stowage process")]
    Locked { path: PathBuf },
    #[error("index {path} has schema version {found}; this build uses {SCHEMA_VERSION} (run `stowage repair index`)")]
    SchemaVersion { path: PathBuf, found: u64 },
    #[error("index {path} belongs to repository {found}, not {expected}: use another state directory, or move the file away and run `stowage repair index`")]
    WrongRepository {
        path: PathBuf,
        expected: RepositoryId,
        found: RepositoryId,
    },
    #[error("index entry for {what} is malformed")]
    Corrupt { what: String },
    #[error("index {path} is damaged ({reason}); run `stowage repair index`, which sets it aside and rebuilds it from the repository")]
    Damaged { path: PathBuf, reason: String },
    #[error("index {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("index storage error: {0}")]
    Redb(#[from] Box<redb::Error>),
    #[error("backup record for {id} does not decode: {source}")]
    Manifest {
        id: String,
        #[source]
        source: crate::format::manifest::ManifestError,
    },
}

impl IndexError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            IndexError::Locked { .. } => ErrorKind::Unavailable,
            IndexError::SchemaVersion { .. } | IndexError::WrongRepository { .. } => {
                ErrorKind::Conflict
            }
            IndexError::Corrupt { .. }
            | IndexError::Damaged { .. }
            | IndexError::Manifest { .. } => ErrorKind::Corrupt,
            IndexError::Io { .. } => ErrorKind::Internal,
            IndexError::Redb(error) => match **error {
                redb::Error::Corrupted(_) => ErrorKind::Corrupt,
                _ => ErrorKind::Internal,
            },
        }
    }
}

/// Converts any redb error into [`IndexError::Redb`].
fn db<E: Into<redb::Error>>(error: E) -> IndexError {
    // Boxed: redb's error is large and would bloat every Result on the hot path.
    IndexError::Redb(Box::new(error.into()))
}

/// The open index database.
pub struct Index {
    db: crate::unwind::DropContained<Database>,
    path: PathBuf,
}

/// redb's page cache for the index, by default. Its own default (1 GiB) is a ceiling the
/// process fills and keeps: every page a dedup lookup or a gc walk touches stays
/// resident, so memory grew with the repository. The interior pages of a
/// 10-million-chunk table (a few MiB) fit many times over; leaf pages are read through
/// the operating system's page cache, which the kernel gives back under pressure. Each
/// cached page is an allocation of its own, churned as the cache turns over, and cost
/// about twice its bytes in resident memory: 32 MiB rather than 64 took 63 MiB off one
/// session of 10 M chunks at the same speed (docs/PERFORMANCE.md, "Scale").
pub const INDEX_CACHE_BYTES: usize = 32 << 20;

/// Overrides [`INDEX_CACHE_BYTES`], in MiB: more trades memory for fewer reads of index
/// pages when the index outgrows the cache (millions of small chunks).
pub const INDEX_CACHE_ENV: &str = "STOWAGE_INDEX_CACHE_MIB";

fn index_cache_bytes() -> usize {
    std::env::var(INDEX_CACHE_ENV)
        .ok()
        .and_then(|mib| mib.trim().parse::<usize>().ok())
        .filter(|mib| *mib > 0)
        .map_or(INDEX_CACHE_BYTES, |mib| mib.saturating_mul(1 << 20))
}

impl Index {
    /// Opens (creating when missing or empty) the index at `path` and checks its
    /// integrity. A file that is not a sound redb database is [`IndexError::Damaged`]:
    /// nothing in it is trusted, and `stowage repair index` sets it aside.
    pub fn open(path: &Path) -> Result<Index, IndexError> {
        let damaged = |reason: String| IndexError::Damaged {
            path: path.to_path_buf(),
            reason,
        };
        if !path.exists() {
            create_whole(path)?;
        }
        // The check reads every page once, so a cache only costs it: each page read
        // through a full cache is an allocation that evicts (and frees) another. It runs
        // on a database opened with a token cache, closed before the index is opened
        // for use with its own.
        let mut checking = open_database(path, INTEGRITY_CHECK_CACHE_BYTES)?;
        // redb checks only what a crash can leave; a file damaged any other way is
        // found by walking every page and checking its checksum.
        let checked = crate::unwind::contain(|| checking.check_integrity());
        // redb's drop reads the file again: contain it too.
        let closed = crate::unwind::contain(move || drop(checking));
        match checked {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => return Err(damaged(error.to_string())),
            Err(reason) => return Err(damaged(reason)),
        }
        closed.map_err(&damaged)?;
        let database = open_database(path, index_cache_bytes())?;
        let index = Index {
            db: crate::unwind::DropContained::new(database, path.display().to_string()),
            path: path.to_path_buf(),
        };
        index.guarded(|| index.ensure_schema())?;
        Ok(index)
    }

    fn database(&self) -> &Database {
        self.db.get()
    }

    /// Rewrites the file without the free space its transactions left behind (redb's
    /// compaction: pages moved down and the file truncated in durable commits; a crash
    /// midway leaves a file redb repairs when it next opens it, nothing lost). A rebuild
    /// from the backend leaves about as much free space as data. Returns the file's size
    /// before and after.
    pub fn compact(&mut self) -> Result<(u64, u64), IndexError> {
        let size = |path: &Path| {
            std::fs::metadata(path)
                .map(|m| m.len())
                .map_err(|source| IndexError::Io {
                    path: path.to_path_buf(),
                    source,
                })
        };
        let before = size(&self.path)?;
        let database = self.db.get_mut();
        crate::unwind::contain(|| database.compact())
            .map_err(|reason| IndexError::Damaged {
                path: self.path.clone(),
                reason,
            })?
            .map_err(db)?;
        Ok((before, size(&self.path)?))
    }

    /// Runs one operation on the database, turning a panic inside redb (which asserts
    /// on what it reads from the file) into [`IndexError::Damaged`].
    fn guarded<T>(&self, work: impl FnOnce() -> Result<T, IndexError>) -> Result<T, IndexError> {
        crate::unwind::contain(work).map_err(|reason| IndexError::Damaged {
            path: self.path.clone(),
            reason,
        })?
    }

    /// Moves the index file at `path` to `aside` without opening it as a database, so a
    /// damaged file cannot misbehave; returns whether there was a file to move. A file
    /// a running process holds (redb keeps an exclusive `flock` on it) is refused.
    pub fn set_aside(path: &Path, aside: &Path) -> Result<bool, IndexError> {
        let io = |source: std::io::Error| IndexError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = match std::fs::File::open(path) {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(error) => return Err(io(error)),
        };
        if is_locked(&file) {
            return Err(IndexError::Locked {
                path: path.to_path_buf(),
            });
        }
        drop(file);
        std::fs::rename(path, aside).map_err(io)?;
        Ok(true)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn ensure_schema(&self) -> Result<(), IndexError> {
        let txn = self.database().begin_write().map_err(db)?;
        {
            let mut meta = txn.open_table(META).map_err(db)?;
            let found = meta.get(SCHEMA_VERSION_KEY).map_err(db)?.map(|v| v.value());
            match found {
                // A new index, or one without kept totals: count them once.
                None | Some(1) => {
                    meta.insert(SCHEMA_VERSION_KEY, SCHEMA_VERSION)
                        .map_err(db)?;
                    drop(meta);
                    totals::recompute(&txn)?;
                    timeline::rebuild(&txn)?;
                }
                // One without the backup timeline: order its backups once.
                Some(2) => {
                    meta.insert(SCHEMA_VERSION_KEY, SCHEMA_VERSION)
                        .map_err(db)?;
                    drop(meta);
                    totals::recompute(&txn)?;
                    timeline::rebuild(&txn)?;
                }
                // One whose totals lack the backups' stream and stored bytes.
                Some(3) => {
                    meta.insert(SCHEMA_VERSION_KEY, SCHEMA_VERSION)
                        .map_err(db)?;
                    drop(meta);
                    totals::recompute(&txn)?;
                }
                Some(SCHEMA_VERSION) => {}
                Some(found) => {
                    return Err(IndexError::SchemaVersion {
                        path: self.path.clone(),
                        found,
                    })
                }
            }
            txn.open_table(CHUNKS).map_err(db)?;
            txn.open_table(PACKS).map_err(db)?;
            txn.open_table(BACKUPS).map_err(db)?;
            txn.open_table(RECYCLED).map_err(db)?;
            txn.open_table(SERIES).map_err(db)?;
            txn.open_table(SYNC).map_err(db)?;
            timeline::create(&txn)?;
        }
        txn.commit().map_err(db)
    }

    /// Ties this index to a repository on first use, and refuses an index that describes
    /// another one: dedup against a foreign index would reference chunks that are not
    /// there.
    pub fn bind_repository(&self, repository: &RepositoryId) -> Result<(), IndexError> {
        self.guarded(|| {
            let txn = self.database().begin_write().map_err(db)?;
            {
                let mut table = txn.open_table(REPOSITORY).map_err(db)?;
                let found = table
                    .get("id")
                    .map_err(db)?
                    .map(|v| RepositoryId(v.value()));
                match found {
                    None => {
                        table.insert("id", repository.0).map_err(db)?;
                    }
                    Some(found) if found == *repository => {}
                    Some(found) => {
                        return Err(IndexError::WrongRepository {
                            path: self.path.clone(),
                            expected: *repository,
                            found,
                        })
                    }
                }
            }
            txn.commit().map_err(db)
        })
    }

    /// Looks up every id of `ids`, in one read transaction.
    pub fn lookup_chunks(&self, ids: &[ChunkId]) -> Result<Vec<Option<ChunkLocation>>, IndexError> {
        self.guarded(|| {
            let txn = self.database().begin_read().map_err(db)?;
            let table = txn.open_table(CHUNKS).map_err(db)?;
            ids.iter()
                .map(|id| match table.get(id.0).map_err(db)? {
                    Some(value) => schema::decode_location(id, value.value()).map(Some),
                    None => Ok(None),
                })
                .collect()
        })
    }

    /// Records a durable pack and every blob in it, in one write transaction. An id
    /// already indexed keeps its first location (both copies are valid).
    pub fn commit_pack(
        &self,
        pack: PackId,
        record: PackRecord,
        entries: &[PackEntry],
    ) -> Result<(), IndexError> {
        self.commit_packs(&[(pack, record, entries)])
    }

    /// Records several durable packs and their blobs in one write transaction: one
    /// commit (one sync to disk) for all of them, as a rebuild wants. The blobs go into
    /// the chunk table in id order: consecutive inserts land on neighbouring pages
    /// instead of one random page each, which is what a large table's cache wants.
    pub fn commit_packs(
        &self,
        batch: &[(PackId, PackRecord, &[PackEntry])],
    ) -> Result<(), IndexError> {
        self.guarded(|| {
            let txn = self.database().begin_write().map_err(db)?;
            let mut delta = Delta::default();
            {
                let mut chunks = txn.open_table(CHUNKS).map_err(db)?;
                let mut packs = txn.open_table(PACKS).map_err(db)?;
                let mut blobs: Vec<(&PackId, &PackEntry)> = batch
                    .iter()
                    .flat_map(|(pack, _, entries)| entries.iter().map(move |e| (pack, e)))
                    .collect();
                // Stable: of an id repeated in the batch, the first pack's copy wins.
                blobs.sort_by_key(|(_, entry)| entry.id);
                for (pack, entry) in blobs {
                    if chunks.get(entry.id.0).map_err(db)?.is_none() {
                        let value = schema::encode_location(pack, entry);
                        chunks.insert(entry.id.0, value.as_slice()).map_err(db)?;
                        delta.chunk(&schema::decode_location(&entry.id, &value)?, 1);
                    }
                }
                for (pack, record, _) in batch {
                    let replaced = packs
                        .insert(pack.0, schema::encode_pack(record).as_slice())
                        .map_err(db)?;
                    if let Some(old) = replaced {
                        delta.pack(&schema::decode_pack(pack, old.value())?, -1);
                    }
                    delta.pack(record, 1);
                }
            }
            delta.apply(&txn)?;
            txn.commit().map_err(db)
        })
    }

    /// Records a backup (replacing a record with the same id).
    pub fn put_backup(&self, manifest: &BackupManifest) -> Result<(), IndexError> {
        self.guarded(|| {
            let txn = self.database().begin_write().map_err(db)?;
            let mut delta = Delta::default();
            {
                let mut backups = txn.open_table(BACKUPS).map_err(db)?;
                let replaced = backups
                    .insert(manifest.id.as_str(), manifest.encode().as_slice())
                    .map_err(db)?;
                if let Some(old) = replaced {
                    let old = decode_manifest(manifest.id.as_str(), old.value())?;
                    delta.backup(&old, -1);
                    timeline::record(&txn, &old, false)?;
                }
                delta.backup(manifest, 1);
                timeline::record(&txn, manifest, true)?;
            }
            delta.apply(&txn)?;
            txn.commit().map_err(db)
        })
    }

    pub fn get_backup(&self, id: &BackupId) -> Result<Option<BackupManifest>, IndexError> {
        self.guarded(|| {
            let txn = self.database().begin_read().map_err(db)?;
            let table = txn.open_table(BACKUPS).map_err(db)?;
            let value = table.get(id.as_str()).map_err(db)?;
            value
                .map(|v| decode_manifest(id.as_str(), v.value()))
                .transpose()
        })
    }

    /// Every backup record, ordered by id.
    pub fn list_backups(&self) -> Result<Vec<BackupManifest>, IndexError> {
        self.guarded(|| {
            let txn = self.database().begin_read().map_err(db)?;
            let table = txn.open_table(BACKUPS).map_err(db)?;
            let mut out = Vec::new();
            for item in table.iter().map_err(db)? {
                let (key, value) = item.map_err(db)?;
                out.push(decode_manifest(key.value(), value.value())?);
            }
            Ok(out)
        })
    }

    /// Walks the backups of `scope` in time order, after `after`, asking `visit` what to
    /// do with each row (keys and recycle marks only: a skipped backup's record is not
    /// read); returns the records of the rows it took. One read transaction.
    pub fn walk_backups(
        &self,
        scope: TimelineScope<'_>,
        newest_first: bool,
        after: Option<&TimelineCursor>,
        visit: impl FnMut(&TimelineRow) -> Visit,
    ) -> Result<Vec<(TimelineRow, BackupManifest)>, IndexError> {
        self.guarded(|| {
            let txn = self.database().begin_read().map_err(db)?;
            timeline::walk(&txn, scope, newest_first, after, visit)
        })
    }

    /// Every pack the index knows, ordered by id.
    pub fn list_packs(&self) -> Result<Vec<(PackId, PackRecord)>, IndexError> {
        self.guarded(|| {
            let txn = self.database().begin_read().map_err(db)?;
            let table = txn.open_table(PACKS).map_err(db)?;
            let mut out = Vec::new();
            for item in table.iter().map_err(db)? {
                let (key, value) = item.map_err(db)?;
                let id = PackId(key.value());
                out.push((id, schema::decode_pack(&id, value.value())?));
            }
            Ok(out)
        })
    }

    /// Calls `visit` with every chunk entry, in id order.
    pub fn for_each_chunk(
        &self,
        mut visit: impl FnMut(ChunkId, ChunkLocation),
    ) -> Result<(), IndexError> {
        self.try_for_each_chunk(|id, location| {
            visit(id, location);
            Ok::<(), IndexError>(())
        })
    }

    /// Calls `visit` with every chunk entry, in id order (ascending bytes), until it
    /// fails; one read transaction, so the walk sees one state of the index.
    pub fn try_for_each_chunk<E: From<IndexError>>(
        &self,
        mut visit: impl FnMut(ChunkId, ChunkLocation) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut failure = None;
        self.guarded(|| {
            let txn = self.database().begin_read().map_err(db)?;
            let table = txn.open_table(CHUNKS).map_err(db)?;
            for item in table.iter().map_err(db)? {
                let (key, value) = item.map_err(db)?;
                let id = ChunkId(key.value());
                if let Err(error) = visit(id, schema::decode_location(&id, value.value())?) {
                    failure = Some(error);
                    break;
                }
            }
            Ok(())
        })?;
        failure.map_or(Ok(()), Err)
    }

    /// Totals over chunks, packs and backups, as kept beside them (no scan).
    pub fn totals(&self) -> Result<KeptTotals, IndexError> {
        self.guarded(|| {
            let txn = self.database().begin_read().map_err(db)?;
            totals::read(&txn)
        })
    }

    /// The totals of the live (not recycled) backups of every series whose name starts
    /// with `prefix`, from the kept totals and the recycle bin: no backup is read but
    /// those in the bin.
    pub fn live_totals(&self, prefix: &str) -> Result<BackupTotals, IndexError> {
        self.guarded(|| {
            let txn = self.database().begin_read().map_err(db)?;
            totals::live_with_prefix(&txn, prefix)
        })
    }

    /// The same totals computed from every row (a scan: linear in the number of chunks
    /// and backups), to check the kept ones.
    pub fn scan_totals(&self) -> Result<KeptTotals, IndexError> {
        self.guarded(|| {
            let txn = self.database().begin_read().map_err(db)?;
            let chunks = txn.open_table(CHUNKS).map_err(db)?;
            let packs = txn.open_table(PACKS).map_err(db)?;
            let backups = txn.open_table(BACKUPS).map_err(db)?;
            totals::scan(&chunks, &packs, &backups)
        })
    }

    /// Number of chunk entries (cheap: no scan).
    pub fn chunk_count(&self) -> Result<u64, IndexError> {
        self.guarded(|| {
            let txn = self.database().begin_read().map_err(db)?;
            let table = txn.open_table(CHUNKS).map_err(db)?;
            table.len().map_err(db)
        })
    }

    /// Removes every chunk, pack and backup entry (before a rebuild).
    pub fn clear(&self) -> Result<(), IndexError> {
        self.guarded(|| {
            let txn = self.database().begin_write().map_err(db)?;
            txn.delete_table(CHUNKS).map_err(db)?;
            txn.delete_table(PACKS).map_err(db)?;
            txn.delete_table(BACKUPS).map_err(db)?;
            txn.delete_table(RECYCLED).map_err(db)?;
            txn.delete_table(SERIES).map_err(db)?;
            txn.delete_table(SYNC).map_err(db)?;
            txn.delete_table(totals::TOTALS).map_err(db)?;
            txn.delete_table(totals::SERIES_TOTALS).map_err(db)?;
            txn.open_table(totals::TOTALS).map_err(db)?;
            txn.open_table(totals::SERIES_TOTALS).map_err(db)?;
            txn.open_table(CHUNKS).map_err(db)?;
            txn.open_table(PACKS).map_err(db)?;
            txn.open_table(BACKUPS).map_err(db)?;
            txn.open_table(RECYCLED).map_err(db)?;
            txn.open_table(SERIES).map_err(db)?;
            txn.open_table(SYNC).map_err(db)?;
            timeline::clear(&txn)?;
            txn.commit().map_err(db)
        })
    }

    /// Removes a backup record and its recycled mark.
    pub fn remove_backup(&self, id: &BackupId) -> Result<(), IndexError> {
        self.guarded(|| {
            let txn = self.database().begin_write().map_err(db)?;
            let mut delta = Delta::default();
            {
                let mut backups = txn.open_table(BACKUPS).map_err(db)?;
                if let Some(removed) = backups.remove(id.as_str()).map_err(db)? {
                    let removed = decode_manifest(id.as_str(), removed.value())?;
                    delta.backup(&removed, -1);
                    timeline::record(&txn, &removed, false)?;
                }
                drop(backups);
                txn.open_table(RECYCLED)
                    .map_err(db)?
                    .remove(id.as_str())
                    .map_err(db)?;
            }
            delta.apply(&txn)?;
            txn.commit().map_err(db)
        })
    }

    /// Marks a backup recycled at `when`, or live again with `None`.
    pub fn set_recycled(&self, id: &BackupId, when: Option<&str>) -> Result<(), IndexError> {
        self.guarded(|| {
            let txn = self.database().begin_write().map_err(db)?;
            {
                let mut table = txn.open_table(RECYCLED).map_err(db)?;
                match when {
                    Some(when) => table.insert(id.as_str(), when).map(|_| ()).map_err(db)?,
                    None => table.remove(id.as_str()).map(|_| ()).map_err(db)?,
                }
            }
            txn.commit().map_err(db)
        })
    }

    /// How many backups are in the recycle bin, of one series or of all (a series' count
    /// reads the record of every recycled backup: the bin, not the repository).
    pub fn count_recycled(&self, series: Option<&str>) -> Result<u64, IndexError> {
        self.guarded(|| {
            let txn = self.database().begin_read().map_err(db)?;
            let table = txn.open_table(RECYCLED).map_err(db)?;
            let Some(series) = series else {
                return table.len().map_err(db);
            };
            let backups = txn.open_table(BACKUPS).map_err(db)?;
            let mut count = 0;
            for item in table.iter().map_err(db)? {
                let id = item.map_err(db)?.0;
                if let Some(record) = backups.get(id.value()).map_err(db)? {
                    if decode_manifest(id.value(), record.value())?.series == series {
                        count += 1;
                    }
                }
            }
            Ok(count)
        })
    }

    /// Every recycled backup id with the time it was recycled.
    pub fn recycled(&self) -> Result<std::collections::HashMap<String, String>, IndexError> {
        self.guarded(|| {
            let txn = self.database().begin_read().map_err(db)?;
            let table = txn.open_table(RECYCLED).map_err(db)?;
            let mut out = std::collections::HashMap::new();
            for item in table.iter().map_err(db)? {
                let (key, value) = item.map_err(db)?;
                out.insert(key.value().to_string(), value.value().to_string());
            }
            Ok(out)
        })
    }

    /// Stores a series record (JSON bytes) under its name.
    pub fn put_series(&self, name: &str, record: &[u8]) -> Result<(), IndexError> {
        self.guarded(|| {
            let txn = self.database().begin_write().map_err(db)?;
            txn.open_table(SERIES)
                .map_err(db)?
                .insert(name, record)
                .map_err(db)?;
            txn.commit().map_err(db)
        })
    }

    pub fn remove_series(&self, name: &str) -> Result<(), IndexError> {
        self.guarded(|| {
            let txn = self.database().begin_write().map_err(db)?;
            txn.open_table(SERIES)
                .map_err(db)?
                .remove(name)
                .map_err(db)?;
            txn.commit().map_err(db)
        })
    }

    /// Every series record, by name.
    pub fn list_series(&self) -> Result<Vec<(String, Vec<u8>)>, IndexError> {
        self.guarded(|| {
            let txn = self.database().begin_read().map_err(db)?;
            let table = txn.open_table(SERIES).map_err(db)?;
            let mut out = Vec::new();
            for item in table.iter().map_err(db)? {
                let (key, value) = item.map_err(db)?;
                out.push((key.value().to_string(), value.value().to_vec()));
            }
            Ok(out)
        })
    }

    /// Removes chunk entries (garbage collection's sweep of the index).
    pub fn remove_chunks(&self, ids: &[ChunkId]) -> Result<(), IndexError> {
        self.guarded(|| {
            let txn = self.database().begin_write().map_err(db)?;
            let mut delta = Delta::default();
            {
                let mut chunks = txn.open_table(CHUNKS).map_err(db)?;
                for id in ids {
                    if let Some(old) = chunks.remove(id.0).map_err(db)? {
                        delta.chunk(&schema::decode_location(id, old.value())?, -1);
                    }
                }
            }
            delta.apply(&txn)?;
            txn.commit().map_err(db)
        })
    }

    /// Points `entries` at the new pack `pack` and forgets the packs in `retired`, in one
    /// transaction (a repack). Entries no longer indexed are not re-added.
    pub fn relocate(
        &self,
        pack: PackId,
        record: PackRecord,
        entries: &[PackEntry],
        retired: &[PackId],
    ) -> Result<(), IndexError> {
        self.guarded(|| {
            let txn = self.database().begin_write().map_err(db)?;
            let mut delta = Delta::default();
            {
                let mut chunks = txn.open_table(CHUNKS).map_err(db)?;
                for entry in entries {
                    let value = schema::encode_location(&pack, entry);
                    let replaced = match chunks.get(entry.id.0).map_err(db)? {
                        Some(old) => Some(schema::decode_location(&entry.id, old.value())?),
                        None => None,
                    };
                    if let Some(old) = replaced {
                        chunks.insert(entry.id.0, value.as_slice()).map_err(db)?;
                        delta.chunk(&old, -1);
                        delta.chunk(&schema::decode_location(&entry.id, &value)?, 1);
                    }
                }
                let mut packs = txn.open_table(PACKS).map_err(db)?;
                if !entries.is_empty() {
                    let replaced = packs
                        .insert(pack.0, schema::encode_pack(&record).as_slice())
                        .map_err(db)?;
                    if let Some(old) = replaced {
                        delta.pack(&schema::decode_pack(&pack, old.value())?, -1);
                    }
                    delta.pack(&record, 1);
                }
                for old in retired {
                    if let Some(removed) = packs.remove(old.0).map_err(db)? {
                        delta.pack(&schema::decode_pack(old, removed.value())?, -1);
                    }
                }
            }
            delta.apply(&txn)?;
            txn.commit().map_err(db)
        })
    }

    /// Forgets pack records (after their chunks were removed or moved).
    pub fn remove_packs(&self, packs: &[PackId]) -> Result<(), IndexError> {
        self.guarded(|| {
            let txn = self.database().begin_write().map_err(db)?;
            let mut delta = Delta::default();
            {
                let mut table = txn.open_table(PACKS).map_err(db)?;
                for pack in packs {
                    if let Some(removed) = table.remove(pack.0).map_err(db)? {
                        delta.pack(&schema::decode_pack(pack, removed.value())?, -1);
                    }
                }
            }
            delta.apply(&txn)?;
            txn.commit().map_err(db)
        })
    }

    /// When a backup was recycled; `None` while it is live (or unknown).
    pub fn recycled_at(&self, id: &BackupId) -> Result<Option<String>, IndexError> {
        self.guarded(|| {
            let txn = self.database().begin_read().map_err(db)?;
            let table = txn.open_table(RECYCLED).map_err(db)?;
            let value = table.get(id.as_str()).map_err(db)?;
            Ok(value.map(|v| v.value().to_string()))
        })
    }

    /// One series record's JSON bytes, if stored.
    pub fn get_series(&self, name: &str) -> Result<Option<Vec<u8>>, IndexError> {
        self.guarded(|| {
            let txn = self.database().begin_read().map_err(db)?;
            let table = txn.open_table(SERIES).map_err(db)?;
            let value = table.get(name).map_err(db)?;
            Ok(value.map(|v| v.value().to_vec()))
        })
    }
}

impl Index {
    /// The repository generation this index was last reconciled with (see
    /// `repo::generation`); `None` for an index never reconciled.
    pub fn generation(&self) -> Result<Option<Vec<u8>>, IndexError> {
        self.guarded(|| {
            let txn = self.database().begin_read().map_err(db)?;
            let table = txn.open_table(SYNC).map_err(db)?;
            let value = table.get(GENERATION_KEY).map_err(db)?;
            Ok(value.map(|v| v.value().to_vec()))
        })
    }

    /// Records the repository generation this index now matches.
    pub fn set_generation(&self, generation: &[u8]) -> Result<(), IndexError> {
        self.guarded(|| {
            let txn = self.database().begin_write().map_err(db)?;
            txn.open_table(SYNC)
                .map_err(db)?
                .insert(GENERATION_KEY, generation)
                .map_err(db)?;
            txn.commit().map_err(db)
        })
    }

    /// Every backup id recorded, in id order (keys only: no manifest is decoded).
    pub fn backup_ids(&self) -> Result<Vec<BackupId>, IndexError> {
        self.guarded(|| {
            let txn = self.database().begin_read().map_err(db)?;
            let table = txn.open_table(BACKUPS).map_err(db)?;
            let mut out = Vec::new();
            for item in table.iter().map_err(db)? {
                let key = item.map_err(db)?.0;
                let id = key
                    .value()
                    .parse()
                    .map_err(|e: crate::id::ParseBackupIdError| IndexError::Corrupt {
                        what: format!("backups table: {e}"),
                    })?;
                out.push(id);
            }
            Ok(out)
        })
    }

    /// Forgets packs and every chunk entry that points into them, in one transaction
    /// (the packs are gone from the backend). Returns the number of chunk entries
    /// removed. A scan of the chunks table.
    pub fn forget_packs_and_their_chunks(&self, packs: &[PackId]) -> Result<u64, IndexError> {
        if packs.is_empty() {
            return Ok(0);
        }
        let gone: std::collections::HashSet<PackId> = packs.iter().copied().collect();
        self.guarded(|| {
            let txn = self.database().begin_write().map_err(db)?;
            let mut removed = 0;
            let mut delta = Delta::default();
            {
                let mut chunks = txn.open_table(CHUNKS).map_err(db)?;
                let mut doomed = Vec::new();
                for item in chunks.iter().map_err(db)? {
                    let (key, value) = item.map_err(db)?;
                    let id = ChunkId(key.value());
                    let location = schema::decode_location(&id, value.value())?;
                    if gone.contains(&location.pack) {
                        doomed.push(id);
                        delta.chunk(&location, -1);
                    }
                }
                for id in doomed {
                    chunks.remove(id.0).map_err(db)?;
                    removed += 1;
                }
                let mut table = txn.open_table(PACKS).map_err(db)?;
                for pack in packs {
                    if let Some(old) = table.remove(pack.0).map_err(db)? {
                        delta.pack(&schema::decode_pack(pack, old.value())?, -1);
                    }
                }
            }
            delta.apply(&txn)?;
            txn.commit().map_err(db)?;
            Ok(removed)
        })
    }

    /// Replaces every recycle mark with `marks` (backup id → when), in one transaction.
    pub fn replace_recycled(&self, marks: &[(String, String)]) -> Result<(), IndexError> {
        self.guarded(|| {
            let txn = self.database().begin_write().map_err(db)?;
            txn.delete_table(RECYCLED).map_err(db)?;
            {
                let mut table = txn.open_table(RECYCLED).map_err(db)?;
                for (id, when) in marks {
                    table.insert(id.as_str(), when.as_str()).map_err(db)?;
                }
            }
            txn.commit().map_err(db)
        })
    }

    /// Replaces every series record with `records` (name → JSON), in one transaction.
    pub fn replace_series(&self, records: &[(String, Vec<u8>)]) -> Result<(), IndexError> {
        self.guarded(|| {
            let txn = self.database().begin_write().map_err(db)?;
            txn.delete_table(SERIES).map_err(db)?;
            {
                let mut table = txn.open_table(SERIES).map_err(db)?;
                for (name, record) in records {
                    table.insert(name.as_str(), record.as_slice()).map_err(db)?;
                }
            }
            txn.commit().map_err(db)
        })
    }
}

/// Whether another process holds the index at `path` open (a missing or unreadable
/// file is not held).
pub fn held_elsewhere(path: &Path) -> bool {
    std::fs::File::open(path).is_ok_and(|file| is_locked(&file))
}

/// redb's page cache while [`Index::open`] checks the file's integrity: just enough for
/// the write buffer of a repair commit.
const INTEGRITY_CHECK_CACHE_BYTES: usize = 1 << 20;

/// Opens the redb file at `path` with a page cache of `cache_bytes`, telling a file in
/// use by another process, an I/O failure and a file that is not a sound database apart.
fn open_database(path: &Path, cache_bytes: usize) -> Result<Database, IndexError> {
    let damaged = |reason: String| IndexError::Damaged {
        path: path.to_path_buf(),
        reason,
    };
    let opened =
        crate::unwind::contain(|| Database::builder().set_cache_size(cache_bytes).create(path))
            .map_err(&damaged)?;
    opened.map_err(|error| match error {
        redb::DatabaseError::DatabaseAlreadyOpen => IndexError::Locked {
            path: path.to_path_buf(),
        },
        // redb reports a file that is not one of its databases as invalid data.
        redb::DatabaseError::Storage(redb::StorageError::Io(io))
            if !matches!(
                io.kind(),
                std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
            ) =>
        {
            IndexError::Io {
                path: path.to_path_buf(),
                source: io,
            }
        }
        other => damaged(other.to_string()),
    })
}

/// Creates a new, empty index database at `path` such that a process killed while
/// creating it never leaves a half-written file there (redb cannot open one, and the
/// index would look damaged): the database is made under a temporary name beside it,
/// synced, then linked into place. Linking never replaces a file: when another process
/// created the index meanwhile, its file is kept and ours removed.
fn create_whole(path: &Path) -> Result<(), IndexError> {
    let io = |source: std::io::Error| IndexError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(format!(".new-{}", std::process::id()));
    let temporary = PathBuf::from(temporary);
    let _ = std::fs::remove_file(&temporary);
    let created = crate::unwind::contain(|| Database::builder().create(&temporary))
        .map_err(|reason| IndexError::Damaged {
            path: temporary.clone(),
            reason,
        })?
        .map_err(db)?;
    drop(created);
    let linked = std::fs::File::open(&temporary)
        .and_then(|file| file.sync_all())
        .and_then(|()| match std::fs::hard_link(&temporary, path) {
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            other => other,
        });
    let _ = std::fs::remove_file(&temporary);
    linked.map_err(io)?;
    if let Some(parent) = path.parent() {
        std::fs::File::open(parent)
            .and_then(|dir| dir.sync_all())
            .map_err(io)?;
    }
    Ok(())
}

/// Whether another open file description holds redb's exclusive lock on `file` (redb
/// takes it with `flock`, as `File::try_lock` does).
fn is_locked(file: &std::fs::File) -> bool {
    match file.try_lock() {
        Ok(()) => {
            let _ = file.unlock();
            false
        }
        Err(std::fs::TryLockError::WouldBlock) => true,
        Err(std::fs::TryLockError::Error(_)) => false,
    }
}

fn decode_manifest(id: &str, bytes: &[u8]) -> Result<BackupManifest, IndexError> {
    BackupManifest::decode(bytes).map_err(|source| IndexError::Manifest {
        id: id.to_string(),
        source,
    })
}

#[cfg(test)]
mod tests;
