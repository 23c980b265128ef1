//! Client-chunked backup sessions (`/v1/sessions`, `docs/API.md`): the server's open
//! assemblies (`repo::assembly`), each usable only by the key that opened it. A session
//! ends when it is finished or abandoned, when it has been idle past the time-out, or
//! when the server shuts down; an unfinished one commits nothing.
//!
//! Sessions live in memory: a dropped connection resumes within the session's life (the
//! client asks where the stream stands and goes on), a server restart ends them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;

use super::keys::{KeyStoreError, Principal, Role};
use crate::error::ErrorKind;
use crate::format::chunk_batch::{decode_chunks, decode_entries, BatchError, BatchLimits};
use crate::format::manifest::BackupManifest;
use crate::format::series::RetentionPolicy;
use crate::repo::assembly::{
    Assembly, AssemblyOptions, AssemblyProgress, StreamClaim, WriterParams,
};
use crate::repo::{RepoError, Repository};

/// Sessions open at once, all keys together.
pub const MAX_OPEN_SESSIONS: usize = 64;
/// Largest upload batch body: 64 MiB (a few dozen chunks at the default sizes).
pub const MAX_UPLOAD_BATCH_BYTES: usize = 64 << 20;
/// Most chunk records in one upload batch.
pub const MAX_UPLOAD_BATCH_CHUNKS: usize = 16_384;
/// Most plaintext one upload batch may claim (each byte is decompressed and hashed to
/// check it): 256 MiB.
pub const MAX_UPLOAD_BATCH_PLAINTEXT: u64 = 256 << 20;
/// Upload batches received and checked at once, all sessions together: each holds its
/// body (up to [`MAX_UPLOAD_BATCH_BYTES`]) in memory.
pub const UPLOADS_AT_ONCE: usize = 8;
/// Most entries in one append batch (2.25 MiB of body).
pub const MAX_APPEND_ENTRIES: usize = 65_536;
/// Most known ids answered by one request (2 MiB).
pub const MAX_KNOWN_PAGE: usize = 65_536;
/// Largest catalog batch body of a tree session: 16 MiB of JSON lines.
pub const MAX_CATALOG_BATCH_BYTES: usize = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Denied(#[from] KeyStoreError),
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error(transparent)]
    Batch(#[from] BatchError),
    #[error("session {0} not found (finished, abandoned, expired, or opened by another key)")]
    NotFound(String),
    #[error("{MAX_OPEN_SESSIONS} sessions are open; finish or abandon one first")]
    TooMany,
}

impl SessionError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            SessionError::Denied(e) => e.kind(),
            SessionError::Repo(e) => e.kind(),
            SessionError::Batch(_) => ErrorKind::InvalidInput,
            SessionError::NotFound(_) => ErrorKind::NotFound,
            SessionError::TooMany => ErrorKind::Unavailable,
        }
    }
}

/// A session as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct SessionView {
    pub id: String,
    pub series: String,
    /// `stream` or `tree`.
    pub kind: &'static str,
    /// Bytes and chunks appended so far: the offset the next append continues at.
    pub size: u64,
    pub chunks: u64,
    pub uploaded_chunks: u64,
    pub uploaded_bytes: u64,
    /// Ids in the known set (`GET /v1/sessions/{id}/known`).
    pub known_chunks: u64,
    /// A tree's catalog entries received so far: the position the next catalog batch
    /// continues at (absent for a stream).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub catalog_entries: Option<u64>,
    /// Idle seconds after which the session ends.
    pub idle_timeout_secs: u64,
}

struct Entry {
    key_id: String,
    assembly: Assembly,
    last_used: Mutex<Instant>,
}

impl Entry {
    fn touch(&self) {
        *self
            .last_used
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Instant::now();
    }

    fn idle(&self) -> Duration {
        self.last_used
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .elapsed()
    }
}

/// The open sessions of one server.
pub struct Sessions {
    repo: Repository,
    idle_timeout: Duration,
    open: Mutex<HashMap<String, Arc<Entry>>>,
    /// Taken before an upload batch's body is read (`UPLOADS_AT_ONCE`).
    pub upload_permits: tokio::sync::Semaphore,
}

impl Sessions {
    pub fn new(repo: Repository, idle_timeout: Duration) -> Sessions {
        Sessions {
            repo,
            idle_timeout,
            open: Mutex::new(HashMap::new()),
            upload_permits: tokio::sync::Semaphore::new(UPLOADS_AT_ONCE),
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Entry>>> {
        self.open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn view(&self, id: &str, entry: &Entry) -> SessionView {
        let AssemblyProgress {
            size,
            chunks,
            uploaded_chunks,
            uploaded_bytes,
            catalog_entries,
        } = entry.assembly.progress();
        SessionView {
            id: id.to_string(),
            series: entry.assembly.series().to_string(),
            kind: if catalog_entries.is_some() {
                "tree"
            } else {
                "stream"
            },
            size,
            chunks,
            uploaded_chunks,
            uploaded_bytes,
            known_chunks: entry.assembly.known_len(),
            catalog_entries,
            idle_timeout_secs: self.idle_timeout.as_secs(),
        }
    }

    /// How often the server looks for idle sessions: a quarter of the time-out, between
    /// one second and a minute.
    pub fn sweep_interval(&self) -> Duration {
        (self.idle_timeout / 4).clamp(Duration::from_secs(1), Duration::from_secs(60))
    }

    /// Ends the sessions idle past the time-out.
    pub async fn expire_idle(&self) {
        let expired: Vec<Arc<Entry>> = {
            let mut map = self.map();
            let ids: Vec<String> = map
                .iter()
                .filter(|(_, e)| e.idle() >= self.idle_timeout)
                .map(|(id, _)| id.clone())
                .collect();
            ids.iter().filter_map(|id| map.remove(id)).collect()
        };
        for entry in expired {
            tracing::info!(
                series = entry.assembly.series(),
                "an idle backup session expired"
            );
            entry.assembly.abandon().await;
        }
    }

    /// Ends every session (the server is stopping).
    pub async fn close_all(&self) {
        let all: Vec<Arc<Entry>> = self.map().drain().map(|(_, e)| e).collect();
        for entry in all {
            entry.assembly.abandon().await;
        }
    }

    /// Opens a session for a stream or tree backup named `source` in `series` (created
    /// when missing, with no policy, as an upload creates it).
    pub async fn open(
        &self,
        who: &Principal,
        series: &str,
        source: &str,
        options: AssemblyOptions,
    ) -> Result<(SessionView, WriterParams), SessionError> {
        who.require(Role::Backup)?;
        self.expire_idle().await;
        if self.map().len() >= MAX_OPEN_SESSIONS {
            return Err(SessionError::TooMany);
        }
        let assembly = self.repo.open_assembly(series, source, options).await?;
        match self
            .repo
            .create_series(series, RetentionPolicy::default())
            .await
        {
            Ok(_) | Err(RepoError::SeriesExists { .. }) => {}
            Err(error) => return Err(error.into()),
        }
        let id = uuid::Uuid::new_v4().to_string();
        let entry = Arc::new(Entry {
            key_id: who.key_id.clone(),
            assembly,
            last_used: Mutex::new(Instant::now()),
        });
        let view = self.view(&id, &entry);
        let full = {
            let mut map = self.map();
            let full = map.len() >= MAX_OPEN_SESSIONS;
            if !full {
                map.insert(id, entry.clone());
            }
            full
        };
        if full {
            entry.assembly.abandon().await;
            return Err(SessionError::TooMany);
        }
        Ok((view, self.repo.writer_params()))
    }

    fn entry(&self, who: &Principal, id: &str) -> Result<Arc<Entry>, SessionError> {
        who.require(Role::Backup)?;
        let entry = self
            .map()
            .get(id)
            .filter(|e| e.key_id == who.key_id && e.idle() < self.idle_timeout)
            .cloned()
            .ok_or_else(|| SessionError::NotFound(id.to_string()))?;
        entry.touch();
        Ok(entry)
    }

    pub fn get(&self, who: &Principal, id: &str) -> Result<SessionView, SessionError> {
        let entry = self.entry(who, id)?;
        Ok(self.view(id, &entry))
    }

    /// Up to `limit` (at most [`MAX_KNOWN_PAGE`]) known ids from position `start`, as
    /// their 32 bytes each, in ascending order.
    pub async fn known(
        &self,
        who: &Principal,
        id: &str,
        start: usize,
        limit: usize,
    ) -> Result<Vec<u8>, SessionError> {
        let entry = self.entry(who, id)?;
        let page = entry
            .assembly
            .known_page(start as u64, limit.min(MAX_KNOWN_PAGE))
            .await?;
        let mut body = Vec::with_capacity(page.len() * 32);
        for chunk in &page {
            body.extend_from_slice(chunk.as_bytes());
        }
        Ok(body)
    }

    pub async fn upload(
        &self,
        who: &Principal,
        id: &str,
        body: Bytes,
    ) -> Result<SessionView, SessionError> {
        let entry = self.entry(who, id)?;
        let max_chunk = self.repo.config().chunker.max_size;
        let limits = BatchLimits {
            max_chunk,
            max_records: MAX_UPLOAD_BATCH_CHUNKS,
            max_plaintext: MAX_UPLOAD_BATCH_PLAINTEXT,
        };
        let chunks = decode_chunks(&body, limits)?;
        entry.assembly.upload(chunks).await?;
        entry.touch();
        Ok(self.view(id, &entry))
    }

    pub async fn append(
        &self,
        who: &Principal,
        id: &str,
        at: u64,
        body: &[u8],
    ) -> Result<SessionView, SessionError> {
        let entry = self.entry(who, id)?;
        let max_chunk = self.repo.config().chunker.max_size;
        let entries = decode_entries(body, max_chunk, MAX_APPEND_ENTRIES)?;
        entry.assembly.append(at, entries).await?;
        entry.touch();
        Ok(self.view(id, &entry))
    }

    /// Continues a tree session's catalog at entry `at` with a batch of JSON lines.
    pub async fn catalog(
        &self,
        who: &Principal,
        id: &str,
        at: u64,
        body: Bytes,
    ) -> Result<SessionView, SessionError> {
        let entry = self.entry(who, id)?;
        entry.assembly.receive_catalog(at, body).await?;
        entry.touch();
        Ok(self.view(id, &entry))
    }

    /// Checks and commits the backup, then applies the series' policy. The session ends
    /// whatever the outcome.
    pub async fn finish(
        &self,
        who: &Principal,
        id: &str,
        claim: StreamClaim,
    ) -> Result<BackupManifest, SessionError> {
        let entry = self.entry(who, id)?;
        self.map().remove(id);
        let manifest = entry.assembly.finish(claim).await;
        entry.assembly.abandon().await;
        let manifest = manifest?;
        super::uploads::apply_policy(&self.repo, &manifest.series).await;
        Ok(manifest)
    }

    /// Ends a session without a backup.
    pub async fn abandon(&self, who: &Principal, id: &str) -> Result<(), SessionError> {
        self.entry(who, id)?;
        let entry = self.map().remove(id);
        if let Some(entry) = entry {
            entry.assembly.abandon().await;
        }
        Ok(())
    }
}
