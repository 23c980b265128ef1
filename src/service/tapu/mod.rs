//! The tapu-backups dialect's service: instance tokens with their temporary FTP users
//! (`tokens`), and each instance's backup files as stowage backups in the series
//! `<series_prefix><instance>`, named by their file name (`names`). A stored file is a
//! committed backup or nothing: an upload is listed only once its bytes are all in and
//! the stream ends where its format says (`format::archive_end`), so a transfer cut short
//! leaves no file, and its chunks are reclaimed by gc. Storing a name again replaces the
//! file (the older backup goes to the recycle bin, as FTP's `STOR` overwrites); `DELE`
//! recycles; the TTL in the names purges (`remove_expired`), never an instance's newest.
//! The host figures of `/status` are `status`.

pub mod names;
pub mod status;
pub mod tokens;

use std::io::Read;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};

use self::names::{is_instance, parse_backup_name, NameError};
use self::tokens::{IssuedToken, TokenError, TokenTable};
use crate::error::ErrorKind;
use crate::format::archive_end::{Expected, StreamEnd};
use crate::format::manifest::BackupManifest;
use crate::format::series::RetentionPolicy;
use crate::repo::digest::StreamVerifier;
use crate::repo::ingest::{validate_series, IngestOptions};
use crate::repo::listing::ListScope;
use crate::repo::{Progress, RepoError, Repository};
use crate::service::documents::Document;
use crate::service::tasks::TaskSet;

/// What the service is configured with (`[dialects.tapu]`).
#[derive(Debug, Clone)]
pub struct TapuSettings {
    pub max_tokens: usize,
    pub token_validity_secs: u64,
    pub series_prefix: String,
    /// Largest file accepted, in bytes.
    pub max_file_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum TapuError {
    #[error("invalid instance")]
    InvalidInstance,
    #[error(transparent)]
    Name(#[from] NameError),
    #[error("no backups for instance {0}")]
    UnknownInstance(String),
    #[error("no file {0:?}")]
    NoFile(String),
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("the transfer did not complete: {0}")]
    Incomplete(String),
    #[error("the file is larger than the {0}-byte limit")]
    TooLarge(u64),
    #[error(transparent)]
    Repo(#[from] RepoError),
}

impl TapuError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            TapuError::InvalidInstance | TapuError::Name(_) | TapuError::Incomplete(_) => {
                ErrorKind::InvalidInput
            }
            TapuError::UnknownInstance(_) | TapuError::NoFile(_) => ErrorKind::NotFound,
            TapuError::TooLarge(_) => ErrorKind::LimitExceeded,
            TapuError::Token(TokenError::MaxTokens { .. }) => ErrorKind::LimitExceeded,
            TapuError::Token(TokenError::InvalidToken) => ErrorKind::InvalidInput,
            TapuError::Token(_) => ErrorKind::Internal,
            TapuError::Repo(e) => e.kind(),
        }
    }
}

/// A stored backup file as an instance sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFile {
    pub name: String,
    pub size: u64,
    /// When it was stored (unix seconds).
    pub modified: i64,
}

impl StoredFile {
    fn of(manifest: &BackupManifest) -> StoredFile {
        StoredFile {
            name: manifest.source.clone(),
            size: manifest.size,
            modified: chrono::DateTime::parse_from_rfc3339(&manifest.created_at)
                .map(|t| t.timestamp())
                .unwrap_or(0),
        }
    }
}

pub struct TapuService {
    repo: Repository,
    settings: TapuSettings,
    tokens: Mutex<TokenTable>,
    /// Held while a stored file replaces its older copies, so two uploads of one name
    /// that finish together leave exactly one.
    replacing: tokio::sync::Mutex<()>,
    /// Host figures between two `/status` calls (CPU use is a difference).
    pub host: status::HostSampler,
    tasks: TaskSet,
}

impl TapuService {
    pub fn open(
        repo: Repository,
        settings: TapuSettings,
        document: Document,
        tasks: TaskSet,
    ) -> Result<TapuService, TapuError> {
        // The longest instance must still give a valid series name.
        validate_series(&format!(
            "{}{}",
            settings.series_prefix,
            "a".repeat(names::MAX_INSTANCE_LEN)
        ))?;
        Ok(TapuService {
            repo,
            settings,
            tokens: Mutex::new(TokenTable::open(document)?),
            replacing: tokio::sync::Mutex::new(()),
            host: status::HostSampler::new(),
            tasks,
        })
    }

    pub fn settings(&self) -> &TapuSettings {
        &self.settings
    }

    fn tokens(&self) -> std::sync::MutexGuard<'_, TokenTable> {
        // A panic while holding the table cannot leave it half changed: every change is
        // saved first and applied after.
        self.tokens
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn series(&self, instance: &str) -> Result<String, TapuError> {
        if !is_instance(instance) {
            return Err(TapuError::InvalidInstance);
        }
        Ok(format!("{}{instance}", self.settings.series_prefix))
    }

    /// A token and FTP password for `instance` (replacing its earlier one). The instance
    /// becomes known: its backup list answers `[]` from now on.
    pub async fn create_token(&self, instance: &str, now: i64) -> Result<IssuedToken, TapuError> {
        let series = self.series(instance)?;
        let issued = self
            .tokens()
            .create(instance, self.settings.max_tokens, now)?;
        match self
            .repo
            .create_series(&series, RetentionPolicy::default())
            .await
        {
            Ok(_) | Err(RepoError::SeriesExists { .. }) => Ok(issued),
            Err(error) => {
                // No token whose instance the repository could not record.
                if let Err(undo) = self.tokens().release(instance, &issued.token) {
                    tracing::warn!(%undo, %instance, "cannot withdraw the token just issued");
                }
                Err(error.into())
            }
        }
    }

    pub fn release_token(&self, instance: &str, token: &str) -> Result<(), TapuError> {
        self.series(instance)?;
        Ok(self.tokens().release(instance, token)?)
    }

    /// Releases the tokens past their validity; how many.
    pub fn release_expired(&self, now: i64) -> Result<usize, TapuError> {
        Ok(self
            .tokens()
            .release_expired(self.settings.token_validity_secs, now)?)
    }

    pub fn live_tokens(&self) -> usize {
        self.tokens().len()
    }

    /// The repository's figures for `/status`.
    pub async fn usage(&self) -> Result<status::Usage, TapuError> {
        let repo = self.repo.clone();
        let stats = tokio::task::spawn_blocking(move || repo.stats())
            .await
            .map_err(|e| RepoError::Internal(format!("statistics task failed: {e}")))??;
        let prefix = self.settings.series_prefix.as_str();
        Ok(status::Usage {
            stored_bytes: stats.stored_bytes,
            logical_bytes: stats.logical_bytes,
            instances: stats
                .series
                .keys()
                .filter(|s| s.starts_with(prefix))
                .count(),
        })
    }

    /// Whether `password` is the FTP password of `instance`'s live token.
    pub fn authenticate(&self, instance: &str, password: &str) -> bool {
        is_instance(instance) && self.tokens().check_password(instance, password)
    }

    /// The instance's live files, by name; `UnknownInstance` for one never given a token.
    pub fn files(&self, instance: &str) -> Result<Vec<StoredFile>, TapuError> {
        let series = self.series(instance)?;
        if self.repo.series(&series)?.is_none() {
            return Err(TapuError::UnknownInstance(instance.to_string()));
        }
        let mut files: Vec<StoredFile> = self.live(&series)?.iter().map(StoredFile::of).collect();
        files.sort_by(|a, b| a.name.cmp(&b.name));
        files.dedup_by(|later, earlier| later.name == earlier.name);
        Ok(files)
    }

    /// The live backups of a series.
    fn live(&self, series: &str) -> Result<Vec<BackupManifest>, TapuError> {
        Ok(self
            .repo
            .backups_of(ListScope::Series(series), Some(false))?
            .into_iter()
            .map(|e| e.manifest)
            .collect())
    }

    /// The live backup holding file `name` of `instance` (the newest if several).
    fn find(&self, instance: &str, name: &str) -> Result<BackupManifest, TapuError> {
        let series = self.series(instance)?;
        self.live(&series)?
            .into_iter()
            .filter(|m| m.source == name)
            .max_by(|a, b| (&a.created_at, &a.id).cmp(&(&b.created_at, &b.id)))
            .ok_or_else(|| TapuError::NoFile(name.to_string()))
    }

    pub fn file(&self, instance: &str, name: &str) -> Result<StoredFile, TapuError> {
        Ok(StoredFile::of(&self.find(instance, name)?))
    }

    /// Stores `source` as file `name` of `instance`. Committed only when the stream ends
    /// where its format ends; then older copies of the name go to the recycle bin.
    pub async fn store(
        &self,
        instance: &str,
        name: &str,
        source: Box<dyn Read + Send>,
    ) -> Result<StoredFile, TapuError> {
        let series = self.series(instance)?;
        let parsed = parse_backup_name(instance, name)?;
        let expected = if parsed.encrypted {
            Expected::OpenPgp
        } else {
            Expected::Tar
        };
        let verdict = Arc::new(Mutex::new(None));
        let checked = CheckedSource {
            inner: source,
            end: StreamEnd::new(expected),
            limit: self.settings.max_file_bytes,
            read: 0,
            verdict: verdict.clone(),
        };
        let mut options = IngestOptions::new(series.clone(), name);
        options.detect_tar = !parsed.encrypted;
        // An upload still running at shutdown is stopped (and commits nothing).
        let progress = Arc::new(Progress::new());
        let upload =
            super::uploads::upload(&self.repo, options, Box::new(checked), progress.clone());
        tokio::pin!(upload);
        let result = tokio::select! {
            result = &mut upload => result,
            _ = self.tasks.cancelled() => {
                progress.cancel();
                upload.await
            }
        };
        let taken = verdict
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        let manifest = match (result, taken) {
            (Ok(manifest), _) => manifest,
            (Err(_), Some(refusal)) => return Err(refusal),
            (Err(error), None) => return Err(error.into()),
        };
        // Of the copies of this name, the newest stays; whichever upload gets here last
        // sees them all.
        let _replacing = self.replacing.lock().await;
        let mut copies: Vec<BackupManifest> = self
            .live(&series)?
            .into_iter()
            .filter(|m| m.source == name)
            .collect();
        copies.sort_by(|a, b| (&a.created_at, &a.id).cmp(&(&b.created_at, &b.id)));
        copies.pop();
        for older in copies {
            self.repo.recycle(&older.id).await?;
        }
        Ok(StoredFile::of(&manifest))
    }

    /// The bytes of file `name` from `offset` on, and the file's size.
    pub fn read(
        &self,
        instance: &str,
        name: &str,
        offset: u64,
    ) -> Result<(u64, BoxStream<'static, Result<Bytes, RepoError>>), TapuError> {
        let manifest = self.find(instance, name)?;
        let start = offset.min(manifest.size);
        let stream = self
            .repo
            .read_backup(&manifest, Some(start..manifest.size))?;
        if start > 0 {
            return Ok((manifest.size, stream));
        }
        Ok((manifest.size, verified(stream, manifest)))
    }

    /// Moves file `name` of `instance` to the recycle bin.
    pub async fn delete(&self, instance: &str, name: &str) -> Result<(), TapuError> {
        let manifest = self.find(instance, name)?;
        self.repo.recycle(&manifest.id).await?;
        Ok(())
    }

    /// Purges every file whose TTL (in its name) has passed at `now` (local time of the
    /// names), except each instance's newest file; how many.
    pub async fn remove_expired(&self, now: chrono::NaiveDateTime) -> Result<usize, TapuError> {
        let prefix = &self.settings.series_prefix;
        let mut by_series: std::collections::BTreeMap<String, Vec<BackupManifest>> =
            Default::default();
        for entry in self
            .repo
            .backups_of(ListScope::SeriesPrefix(prefix), Some(false))?
        {
            if entry.manifest.series.starts_with(prefix.as_str()) {
                by_series
                    .entry(entry.manifest.series.clone())
                    .or_default()
                    .push(entry.manifest);
            }
        }
        let mut removed = 0;
        for (series, backups) in by_series {
            let instance = series.get(prefix.len()..).unwrap_or_default();
            let mut dated: Vec<(names::BackupName, BackupManifest)> = backups
                .into_iter()
                .filter_map(|m| Some((parse_backup_name(instance, &m.source).ok()?, m)))
                .collect();
            // The newest by the date in its name stays whatever its TTL.
            dated.sort_by_key(|(name, _)| name.made_at);
            dated.pop();
            for (name, manifest) in dated {
                if name.expired(now) {
                    self.repo.purge(&manifest.id).await?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }
}

/// A whole file's bytes, checked against the digest recorded when it was stored: a
/// mismatch ends the stream with an error instead of its end, so the client's transfer
/// fails rather than completes.
fn verified(
    stream: BoxStream<'static, Result<Bytes, RepoError>>,
    manifest: BackupManifest,
) -> BoxStream<'static, Result<Bytes, RepoError>> {
    let verifier = StreamVerifier::for_manifest(&manifest);
    futures::stream::unfold(Some((stream, verifier, manifest)), |state| async move {
        let (mut stream, mut verifier, manifest) = state?;
        match stream.next().await {
            Some(Ok(piece)) => {
                verifier.update(&piece);
                Some((Ok(piece), Some((stream, verifier, manifest))))
            }
            Some(Err(error)) => Some((Err(error), None)),
            None => verifier
                .verify(&manifest)
                .err()
                .map(|error| (Err(error), None)),
        }
    })
    .boxed()
}

/// The upload's bytes on their way into the engine: counted against the size limit and
/// fed to the end check; at the end of the stream, a stream cut short becomes an error
/// (so the ingest commits nothing) and the reason is left in `verdict`.
struct CheckedSource {
    inner: Box<dyn Read + Send>,
    end: StreamEnd,
    limit: u64,
    read: u64,
    verdict: Arc<Mutex<Option<TapuError>>>,
}

impl CheckedSource {
    fn refuse(&self, error: TapuError) -> std::io::Error {
        let message = error.to_string();
        *self
            .verdict
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(error);
        std::io::Error::new(std::io::ErrorKind::InvalidData, message)
    }
}

impl Read for CheckedSource {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let n = match self.inner.read(out) {
            Ok(n) => n,
            Err(error) => {
                return Err(self.refuse(TapuError::Incomplete(format!(
                    "the data connection failed after {} bytes: {error}",
                    self.read
                ))))
            }
        };
        if n == 0 {
            return match self.end.finish() {
                Ok(()) => Ok(0),
                Err(reason) => Err(self.refuse(TapuError::Incomplete(reason))),
            };
        }
        self.read += n as u64;
        if self.read > self.limit {
            return Err(self.refuse(TapuError::TooLarge(self.limit)));
        }
        let data = out.get(..n).unwrap_or_default();
        self.end.feed(data);
        Ok(n)
    }
}
