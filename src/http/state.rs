//! The state every handler shares.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::Semaphore;

use super::metrics::Metrics;
use crate::repo::Repository;
use crate::service::jobs::JobRegistry;
use crate::service::keys::KeyStore;
use crate::service::signed_urls::UrlSigner;
use crate::service::tasks::TaskSet;
use crate::service::users::UserStore;

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
    /// People who sign in with email and password.
    pub users: UserStore,
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
    /// Every background task of the server (jobs, schedulers, downloads).
    pub tasks: TaskSet,
    /// Named periodic tasks (Wings expiry, the state mirror).
    pub scheduler: Arc<crate::service::scheduler::Scheduler>,
    /// Mirrors the server's state into the repository.
    pub mirror: Option<Arc<crate::service::mirror::StateMirror>>,
    shutting_down: AtomicBool,
}

pub type AppState = Arc<ServerState>;

impl ServerState {
    pub fn new(
        repo: Repository,
        keys: KeyStore,
        users: UserStore,
        jobs: Arc<JobRegistry>,
        limits: Limits,
        max_uploads: usize,
        tasks: TaskSet,
    ) -> ServerState {
        ServerState {
            repo,
            keys,
            users,
            jobs,
            metrics: Metrics::default(),
            limits,
            upload_slots: Semaphore::new(max_uploads.max(1)),
            fa: None,
            wings: None,
            signer: UrlSigner::new(rand::random()),
            public_url: None,
            backupchan: None,
            tasks,
            scheduler: Arc::default(),
            mirror: None,
            shutting_down: AtomicBool::new(false),
        }
    }

    /// Marks the server as stopping (`/readyz` answers 503) and cancels the task set's
    /// token: schedulers stop, running jobs are asked to stop.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Relaxed);
        self.tasks.cancel();
    }

    /// Stops every background task and waits for them: afterwards nothing of the server
    /// runs, and once the last handle on this state is dropped the repository is closed.
    pub async fn shutdown(&self) {
        self.begin_shutdown();
        self.tasks.shutdown().await;
        // Last: every task that could change the state has ended.
        if let Some(mirror) = &self.mirror {
            if let Err(error) = mirror.write_if_changed().await {
                tracing::error!(%error, "cannot mirror the server state into the repository on shutdown");
            }
        }
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Relaxed)
    }
}
