//! The state every handler shares.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::Semaphore;

use super::metrics::Metrics;
use crate::repo::Repository;
use crate::service::jobs::JobRegistry;
use crate::service::keys::KeyStore;
use crate::service::signed_urls::UrlSigner;

/// Limits and settings handlers need at request time.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest accepted upload body, in bytes.
    pub max_upload_bytes: u64,
    /// Largest JSON request body, in bytes.
    pub max_json_bytes: usize,
}

pub struct ServerState {
    pub repo: Repository,
    pub keys: KeyStore,
    pub jobs: Arc<JobRegistry>,
    pub metrics: Metrics,
    pub limits: Limits,
    /// Uploads ingesting at once; more wait their turn.
    pub upload_slots: Semaphore,
    /// The fa dialect's jobs, when the dialect is enabled.
    pub fa: Option<Arc<crate::service::fa::FaService>>,
    /// The Wings dialect's uploads, when the dialect is enabled.
    pub wings: Option<Arc<crate::service::wings::WingsService>>,
    /// Signs and verifies capability URLs (downloads, Wings upload parts).
    pub signer: UrlSigner,
    /// Base of the URLs the server hands out (`https://backups.example.com`); `None`:
    /// taken from each request's `Host` header.
    pub public_url: Option<String>,
    /// The Backup-chan dialect's service, when the dialect is enabled.
    pub backupchan: Option<Arc<crate::service::backupchan::BackupchanService>>,
    shutting_down: AtomicBool,
}

pub type AppState = Arc<ServerState>;

impl ServerState {
    pub fn new(
        repo: Repository,
        keys: KeyStore,
        jobs: Arc<JobRegistry>,
        limits: Limits,
        max_uploads: usize,
    ) -> ServerState {
        ServerState {
            repo,
            keys,
            jobs,
            metrics: Metrics::default(),
            limits,
            upload_slots: Semaphore::new(max_uploads.max(1)),
            fa: None,
            wings: None,
            signer: UrlSigner::new(rand::random()),
            public_url: None,
            backupchan: None,
            shutting_down: AtomicBool::new(false),
        }
    }

    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Relaxed);
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Relaxed)
    }
}
