//! Pterodactyl Wings backups (spec `pterodactyl-remote-backups-api.md`): stowage plays
//! the Panel and the S3 bucket at once. Wings announces an archive and its size, gets
//! one upload URL per part, PUTs the parts in order, then reports completion with the
//! SHA-1 of the whole archive.
//!
//! Every part streams through the engine as it arrives and is kept as its own stowage
//! backup (recycled, so hidden from listings) in a staging series; the SHA-1 and SHA-256
//! of the archive are carried from part to part (`hashing`). Completion checks the
//! reported parts, size and SHA-1, then joins the parts into one backup whose id is the
//! upload's uuid (`Repository::compose`, which moves no byte) and purges the parts: it
//! takes the same short time whatever the archive's size. Records live in a JSON file
//! (`records`); unfinished uploads expire and their parts are purged, so their space is
//! reclaimed by the next garbage collection.

pub mod hashing;
pub mod records;

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Mutex, MutexGuard};

use futures::StreamExt;

use self::hashing::{HashChain, HashState, HashingReader};
use self::records::{
    part_count, PartRecord, RecordsFile, RestoreReport, UploadRecord, UploadStatus, RECORDS_VERSION,
};
use crate::id::BackupId;
use crate::repo::compose::ComposeSpec;
use crate::repo::digest::StreamDigests;
use crate::repo::ingest::IngestOptions;
use crate::repo::lookup_id;
use crate::repo::{Progress, RepoError, Repository};

/// S3's limit on the parts of one multipart upload, which Wings' callers also observe.
pub const MAX_PARTS: u32 = 10_000;

/// How long the record of a failed upload is kept, at least.
const FAILED_KEPT_SECS: i64 = 7 * 24 * 3600;

/// Settings of the dialect.
#[derive(Debug, Clone)]
pub struct WingsSettings {
    /// Size of every part but the last, in bytes.
    pub part_size: u64,
    /// Lifetime of a part upload URL, in seconds.
    pub url_lifetime_secs: u64,
    /// An upload not completed this many seconds after it was announced expires.
    pub upload_expiry_secs: u64,
    /// Largest archive accepted, in bytes.
    pub max_size: u64,
    /// Series of completed backups.
    pub series: String,
    /// Series holding received parts until their upload completes.
    pub staging_series: String,
}

/// Failures, each to be answered in the Panel's error shape.
#[derive(Debug, thiserror::Error)]
pub enum WingsError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error("cannot read or save the Wings upload records: {0}")]
    Records(#[from] crate::state::StateError),
    #[error("the Wings upload records are not valid: {0}")]
    InvalidRecords(String),
}

/// What Wings is told after announcing an upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadPlan {
    pub parts: u32,
    pub part_size: u64,
}

/// Wings' completion report (`POST /api/remote/backups/<uuid>`).
#[derive(Debug, Clone)]
pub struct CompletionReport {
    pub successful: bool,
    pub checksum: Option<String>,
    pub checksum_type: Option<String>,
    pub size: Option<u64>,
    /// `(etag, part_number)`; `None` when Wings sent `null`.
    pub parts: Option<Vec<(String, u64)>>,
}

/// What a client may learn about one upload.
#[derive(Debug, Clone)]
pub struct UploadView {
    pub uuid: String,
    pub record: UploadRecord,
}

struct Inner {
    file: RecordsFile,
    /// Hash states after each received part, per upload (not persisted: after a restart
    /// completion reads the parts back).
    chains: HashMap<String, HashChain>,
}

pub struct WingsService {
    repo: Repository,
    /// Whether the staging backups no record names (left by a crash) are all gone. Only
    /// a crash makes them, so once none is left no sweep of this process looks again:
    /// looking reads every backup record, too much for every sweep and announcement.
    strays_swept: std::sync::atomic::AtomicBool,
    settings: WingsSettings,
    records: crate::service::documents::Document,
    inner: Mutex<Inner>,
}

fn not_found() -> WingsError {
    WingsError::NotFound("The requested resource could not be found on the server.".into())
}

/// Reads a backup uuid in the canonical lowercase form the Panel creates. Any other text
/// (an upper-case spelling too) names no backup the Panel knows: 404, as its route
/// binding answers.
fn validate_uuid(uuid: &str) -> Result<BackupId, WingsError> {
    uuid.parse().map_err(|_| not_found())
}

/// The ETag of a part: the first half of its SHA-256, quoted as S3 quotes ETags.
fn etag_of(digest: &str) -> String {
    format!("\"{}\"", &digest[..32.min(digest.len())])
}

impl WingsService {
    /// Opens the service on its records (none yet is fine).
    pub fn open(
        repo: Repository,
        settings: WingsSettings,
        records: crate::service::documents::Document,
    ) -> Result<WingsService, WingsError> {
        if settings.part_size == 0 {
            return Err(WingsError::BadRequest("the part size must not be 0".into()));
        }
        let file = match records.load()? {
            Some(bytes) => serde_json::from_slice::<RecordsFile>(&bytes)
                .map_err(|e| WingsError::InvalidRecords(e.to_string()))?,
            None => RecordsFile {
                version: RECORDS_VERSION,
                ..RecordsFile::default()
            },
        };
        if file.version != RECORDS_VERSION {
            return Err(WingsError::InvalidRecords(format!(
                "unknown records version {}",
                file.version
            )));
        }
        Ok(WingsService {
            repo,
            strays_swept: std::sync::atomic::AtomicBool::new(false),
            settings,
            records,
            inner: Mutex::new(Inner {
                file,
                chains: HashMap::new(),
            }),
        })
    }

    pub fn settings(&self) -> &WingsSettings {
        &self.settings
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn persist(&self, inner: &Inner) -> Result<(), WingsError> {
        let bytes = serde_json::to_vec(&inner.file).expect("records serialize");
        Ok(self.records.save(&bytes)?)
    }

    /// Purges backups that no longer hold anything needed; failures are logged (the
    /// expiry sweep finds leftovers in the staging series again).
    async fn purge_quietly(&self, backups: impl IntoIterator<Item = BackupId>) {
        for backup in backups {
            match self.repo.purge(&backup).await {
                Ok(()) | Err(RepoError::BackupNotFound { .. }) => {}
                Err(error) => tracing::warn!(%backup, %error, "cannot purge a Wings part"),
            }
        }
    }

    /// One upload's record.
    pub fn upload(&self, uuid: &str) -> Option<UploadView> {
        let inner = self.lock();
        inner.file.uploads.get(uuid).map(|record| UploadView {
            uuid: uuid.to_string(),
            record: record.clone(),
        })
    }

    /// `GET /api/remote/backups/<uuid>?size=N`: announces (or resumes) an upload.
    pub async fn begin(
        &self,
        uuid: &str,
        size: Option<u64>,
        now: i64,
    ) -> Result<UploadPlan, WingsError> {
        validate_uuid(uuid)?;
        let size = size.filter(|s| *s > 0).ok_or_else(|| {
            WingsError::BadRequest("A non-empty \"size\" query parameter must be provided.".into())
        })?;
        if size > self.settings.max_size {
            return Err(WingsError::BadRequest(format!(
                "a backup of {size} bytes exceeds the limit of {} bytes",
                self.settings.max_size
            )));
        }
        let part_size = self.settings.part_size;
        let parts = part_count(size, part_size);
        if parts > MAX_PARTS {
            return Err(WingsError::BadRequest(format!(
                "a backup of {size} bytes needs {parts} parts of {part_size} bytes, more than \
                 the {MAX_PARTS} allowed; raise the part size"
            )));
        }
        self.expire(now).await;
        let discarded = {
            let mut inner = self.lock();
            let existing = inner.file.uploads.get(uuid);
            match existing.map(|r| r.status) {
                Some(UploadStatus::Completed) => {
                    return Err(WingsError::Conflict(
                        "This backup is already in a completed state.".into(),
                    ))
                }
                // The same upload asked for again: its parts so far still count.
                Some(UploadStatus::Pending)
                    if existing.is_some_and(|r| r.size == size && r.part_size == part_size) =>
                {
                    return Ok(UploadPlan { parts, part_size });
                }
                _ => {}
            }
            if lookup_id(uuid).and_then(|id| self.repo.backup(&id)).is_ok() {
                return Err(WingsError::Conflict(
                    "This backup is already in a completed state.".into(),
                ));
            }
            let record = UploadRecord {
                size,
                part_size,
                created_at: now,
                attempt: rand::random(),
                status: UploadStatus::Pending,
                error: None,
                parts: Default::default(),
                checksum: None,
                completed_at: None,
                last_restore: None,
            };
            let old = inner.file.uploads.insert(uuid.to_string(), record);
            inner.chains.remove(uuid);
            self.persist(&inner)?;
            old.map(|r| r.parts.into_values().map(|p| p.backup).collect::<Vec<_>>())
                .unwrap_or_default()
        };
        self.purge_quietly(discarded).await;
        Ok(UploadPlan { parts, part_size })
    }

    /// Checks that part `number` of `uuid` may be uploaded now and returns its exact size.
    pub fn part_len(&self, uuid: &str, number: u32) -> Result<u64, WingsError> {
        let inner = self.lock();
        let record = inner.file.uploads.get(uuid).ok_or_else(not_found)?;
        if record.status != UploadStatus::Pending {
            return Err(WingsError::Conflict(format!(
                "backup {uuid} accepts no more parts (it is {})",
                status_word(record.status)
            )));
        }
        if number == 0 || number > record.part_count() {
            return Err(WingsError::BadRequest(format!(
                "part {number} is outside 1..={} for backup {uuid}",
                record.part_count()
            )));
        }
        Ok(record.part_len(number))
    }

    /// Stores part `number` of `uuid` from `body`, which must hold exactly the part's
    /// bytes; answers the part's ETag. A part stored again replaces the earlier one.
    pub async fn put_part(
        &self,
        uuid: &str,
        number: u32,
        body: Box<dyn Read + Send>,
    ) -> Result<String, WingsError> {
        let expected = self.part_len(uuid, number)?;
        let progress = Arc::new(Progress::new());
        progress.set_total(expected);
        let (attempt, start) = {
            let inner = self.lock();
            let record = inner.file.uploads.get(uuid).ok_or_else(not_found)?;
            let start = inner.chains.get(uuid).and_then(|c| c.start_of(number));
            (record.attempt, start)
        };
        // One byte more than the part may hold, so an oversized body is noticed.
        let limited = body.take(expected + 1);
        let (source, hashed): (Box<dyn Read + Send>, _) = match start {
            Some(state) => {
                let (reader, state) = HashingReader::new(limited, state);
                (Box::new(reader), Some(state))
            }
            None => (Box::new(limited), None),
        };
        let options = IngestOptions {
            detect_tar: false,
            ..IngestOptions::new(
                &self.settings.staging_series,
                format!("{uuid}.part{number}"),
            )
        };
        let manifest = self.repo.backup_stream(source, options, progress).await?;
        if manifest.size != expected {
            self.purge_quietly([manifest.id]).await;
            return Err(WingsError::BadRequest(format!(
                "part {number} of backup {uuid} must be {expected} bytes; {} were sent",
                if manifest.size > expected {
                    "more".to_string()
                } else {
                    manifest.size.to_string()
                }
            )));
        }
        self.repo.recycle(&manifest.id).await?;
        let etag = etag_of(manifest.verified_digest().1);
        let recorded = {
            let mut inner = self.lock();
            let current = inner
                .file
                .uploads
                .get_mut(uuid)
                .filter(|r| r.attempt == attempt && r.status == UploadStatus::Pending);
            match current {
                None => None,
                Some(record) => {
                    let replaced = record.parts.insert(
                        number,
                        PartRecord {
                            backup: manifest.id.clone(),
                            size: manifest.size,
                            etag: etag.clone(),
                        },
                    );
                    let state = hashed.map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).clone());
                    inner
                        .chains
                        .entry(uuid.to_string())
                        .or_default()
                        .record(number, state);
                    self.persist(&inner)?;
                    Some(replaced)
                }
            }
        };
        let Some(replaced) = recorded else {
            self.purge_quietly([manifest.id]).await;
            return Err(WingsError::Conflict(format!(
                "backup {uuid} was reset or finished while part {number} was uploading"
            )));
        };
        if let Some(old) = replaced.filter(|old| old.backup != manifest.id) {
            self.purge_quietly([old.backup]).await;
        }
        Ok(etag)
    }

    /// Marks an upload failed and purges its parts.
    async fn fail(&self, uuid: &str, reason: String) -> Result<(), WingsError> {
        let parts = {
            let mut inner = self.lock();
            let Some(record) = inner.file.uploads.get_mut(uuid) else {
                return Ok(());
            };
            record.status = UploadStatus::Failed;
            record.error = Some(reason);
            let parts: Vec<BackupId> = std::mem::take(&mut record.parts)
                .into_values()
                .map(|p| p.backup)
                .collect();
            inner.chains.remove(uuid);
            self.persist(&inner)?;
            parts
        };
        self.purge_quietly(parts).await;
        Ok(())
    }

    /// `POST /api/remote/backups/<uuid>`: Wings reports how the upload ended.
    pub async fn complete(
        &self,
        uuid: &str,
        report: CompletionReport,
        now: i64,
    ) -> Result<(), WingsError> {
        validate_uuid(uuid)?;
        let record = {
            let inner = self.lock();
            inner
                .file
                .uploads
                .get(uuid)
                .cloned()
                .ok_or_else(not_found)?
        };
        if record.status == UploadStatus::Completed {
            return Err(WingsError::BadRequest(
                "Cannot update the status of a backup that is already marked as completed.".into(),
            ));
        }
        if !report.successful {
            return self
                .fail(uuid, "Wings reported the backup as failed".into())
                .await;
        }
        if record.status != UploadStatus::Pending {
            return Err(WingsError::BadRequest(format!(
                "backup {uuid} already failed ({}); announce it again to retry",
                record.error.as_deref().unwrap_or("no reason recorded")
            )));
        }
        let checksum = self.check_report(uuid, &record, &report)?;
        let parts: Vec<PartRecord> = record.parts.values().cloned().collect();
        let (sha1, blake3) = self.archive_hashes(uuid, &parts).await?;
        if sha1 != checksum {
            let reason = format!(
                "checksum mismatch: Wings reported sha1 {checksum}, the {} bytes received hash \
                 to {sha1}",
                record.size
            );
            self.fail(uuid, reason.clone()).await?;
            return Err(WingsError::BadRequest(reason));
        }
        let part_ids: Vec<BackupId> = parts.iter().map(|p| p.backup.clone()).collect();
        let spec = ComposeSpec {
            id: lookup_id(uuid)?,
            series: self.settings.series.clone(),
            source: format!("{uuid}.tar.gz"),
            digests: StreamDigests {
                blake3: Some(blake3.clone()),
                sha256: None,
            },
        };
        match self.repo.compose(&part_ids, spec).await {
            Ok(_) => {}
            // Joined before a crash kept the records from saying so.
            Err(RepoError::BackupExists { .. })
                if lookup_id(uuid)
                    .and_then(|id| self.repo.backup(&id))
                    .is_ok_and(|m| m.blake3.as_ref() == Some(&blake3)) => {}
            Err(RepoError::BackupExists { .. }) => {
                return Err(WingsError::Conflict(format!(
                    "a different backup with id {uuid} already exists"
                )))
            }
            Err(error) => return Err(error.into()),
        }
        {
            let mut inner = self.lock();
            if let Some(record) = inner.file.uploads.get_mut(uuid) {
                record.status = UploadStatus::Completed;
                record.error = None;
                record.checksum = Some(format!("sha1:{sha1}"));
                record.completed_at = Some(now);
                record.parts.clear();
            }
            inner.chains.remove(uuid);
            self.persist(&inner)?;
        }
        self.purge_quietly(part_ids).await;
        Ok(())
    }

    /// Checks a successful report against what was received; returns the SHA-1 to
    /// verify, lowercase.
    fn check_report(
        &self,
        uuid: &str,
        record: &UploadRecord,
        report: &CompletionReport,
    ) -> Result<String, WingsError> {
        let bad = |m: String| Err(WingsError::BadRequest(m));
        match report.checksum_type.as_deref() {
            Some("sha1") => {}
            Some(other) => return bad(format!("checksum type {other:?} is not supported (sha1)")),
            None => {
                return bad("The checksum type field is required when successful is true.".into())
            }
        }
        let checksum = match report.checksum.as_deref() {
            Some(c) if c.len() == 40 && c.bytes().all(|b| b.is_ascii_hexdigit()) => {
                c.to_ascii_lowercase()
            }
            Some(c) => return bad(format!("checksum {c:?} is not a SHA-1 in hex")),
            None => return bad("The checksum field is required when successful is true.".into()),
        };
        let Some(size) = report.size else {
            return bad("The size field is required when successful is true.".into());
        };
        let received: u64 = record.parts.values().map(|p| p.size).sum();
        let missing: Vec<u32> = (1..=record.part_count())
            .filter(|n| !record.parts.contains_key(n))
            .collect();
        if !missing.is_empty() {
            return bad(format!(
                "backup {uuid} is missing parts {missing:?} of {}",
                record.part_count()
            ));
        }
        if size != record.size || received != record.size {
            return bad(format!(
                "size mismatch: Wings reported {size} bytes, {} were announced and {received} \
                 received",
                record.size
            ));
        }
        if let Some(parts) = &report.parts {
            let mut numbers: Vec<u64> = parts.iter().map(|(_, n)| *n).collect();
            numbers.sort_unstable();
            let expected: Vec<u64> = (1..=u64::from(record.part_count())).collect();
            if numbers != expected {
                return bad(format!(
                    "the reported parts {numbers:?} are not parts 1 to {} once each",
                    record.part_count()
                ));
            }
            for (etag, number) in parts {
                let stored = &record.parts[&(*number as u32)];
                if &stored.etag != etag {
                    return bad(format!(
                        "part {number}: reported ETag {etag} does not match {} of the part \
                         received",
                        stored.etag
                    ));
                }
            }
        }
        Ok(checksum)
    }

    /// SHA-1 and SHA-256 of the archive: from the states carried while parts arrived,
    /// reading back from the repository only the parts after the last known state.
    async fn archive_hashes(
        &self,
        uuid: &str,
        parts: &[PartRecord],
    ) -> Result<(String, String), WingsError> {
        let chain = self.lock().chains.get(uuid).cloned().unwrap_or_default();
        let count = parts.len() as u32;
        let known = (1..=count).rev().find(|n| chain.after(*n).is_some());
        let (mut state, first_missing) = match known {
            Some(n) => (chain.after(n).unwrap_or_default(), n + 1),
            None => (HashState::default(), 1),
        };
        for part in &parts[(first_missing as usize - 1)..] {
            let manifest = self.repo.backup(&part.backup)?;
            let mut stream = self.repo.read_backup(&manifest, None)?;
            while let Some(piece) = stream.next().await {
                state.update(&piece?);
            }
        }
        Ok(state.finish())
    }

    /// `POST /api/remote/backups/<uuid>/restore`: Wings reports a restore's outcome.
    pub fn restored(&self, uuid: &str, successful: bool, now: i64) -> Result<(), WingsError> {
        let mut inner = self.lock();
        let completed = inner
            .file
            .uploads
            .get(uuid)
            .is_some_and(|r| r.status == UploadStatus::Completed);
        if !completed
            || lookup_id(uuid)
                .and_then(|id| self.repo.backup(&id))
                .is_err()
        {
            return Err(not_found());
        }
        if let Some(record) = inner.file.uploads.get_mut(uuid) {
            record.last_restore = Some(RestoreReport {
                successful,
                at: now,
            });
        }
        self.persist(&inner)
    }

    /// Expires uploads not completed in time (their parts are purged), forgets records
    /// whose backup was deleted, and, until none is left, purges staging backups no
    /// record names (left by a crash between storing a part and recording it) once
    /// they are as old as the expiry.
    pub async fn expire(&self, now: i64) {
        let expiry = i64::try_from(self.settings.upload_expiry_secs).unwrap_or(i64::MAX);
        let (expired, named) = {
            let mut inner = self.lock();
            let mut expired = Vec::new();
            let repo = &self.repo;
            inner
                .file
                .uploads
                .retain(|uuid, record| match record.status {
                    // Deleted through another API: the uuid is free again.
                    UploadStatus::Completed => !matches!(
                        lookup_id(uuid).and_then(|id| repo.backup(&id)),
                        Err(RepoError::BackupNotFound { .. })
                    ),
                    // Kept a while so Wings learns why, then forgotten (they hold nothing).
                    UploadStatus::Failed => {
                        now.saturating_sub(record.created_at) < expiry.max(FAILED_KEPT_SECS)
                    }
                    UploadStatus::Pending => true,
                });
            for record in inner.file.uploads.values_mut() {
                if record.status == UploadStatus::Pending
                    && now.saturating_sub(record.created_at) >= expiry
                {
                    record.status = UploadStatus::Failed;
                    record.error = Some(format!(
                        "expired: not completed within {} seconds",
                        self.settings.upload_expiry_secs
                    ));
                    expired.extend(
                        std::mem::take(&mut record.parts)
                            .into_values()
                            .map(|p| p.backup),
                    );
                }
            }
            let Inner { file, chains } = &mut *inner;
            let uploads = &file.uploads;
            chains.retain(|uuid, _| {
                uploads
                    .get(uuid)
                    .is_some_and(|r| r.status == UploadStatus::Pending)
            });
            let named: std::collections::HashSet<BackupId> = inner
                .file
                .uploads
                .values()
                .flat_map(|r| r.parts.values().map(|p| p.backup.clone()))
                .collect();
            if let Err(error) = self.persist(&inner) {
                tracing::warn!(%error, "cannot save the Wings upload records");
            }
            (expired, named)
        };
        self.purge_quietly(expired).await;
        if self.strays_swept.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        let staging = crate::repo::listing::ListScope::Series(&self.settings.staging_series);
        let entries = match self.repo.backups_of(staging, None) {
            Ok(entries) => entries,
            Err(error) => {
                tracing::warn!(%error, "cannot list backups to find stray Wings parts");
                return;
            }
        };
        let (strays, young): (Vec<_>, Vec<_>) = entries
            .into_iter()
            .filter(|e| !named.contains(&e.manifest.id))
            .partition(|e| {
                chrono::DateTime::parse_from_rfc3339(&e.manifest.created_at)
                    .is_ok_and(|t| now.saturating_sub(t.timestamp()) >= expiry)
            });
        // Until the leftovers of a crash are old enough and gone, look again next time.
        if young.is_empty() {
            self.strays_swept
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let strays: Vec<BackupId> = strays.into_iter().map(|e| e.manifest.id).collect();
        self.purge_quietly(strays).await;
    }
}

fn status_word(status: UploadStatus) -> &'static str {
    match status {
        UploadStatus::Pending => "pending",
        UploadStatus::Failed => "failed",
        UploadStatus::Completed => "completed",
    }
}
