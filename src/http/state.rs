//! The state every handler shares: the core services only. The dialects are plug-ins
//! (`dialects/`): each builds its own service and router from this core at start, and
//! the server records them here ([`Mounted`]) without knowing their types.

use std::any::Any;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

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

/// A dialect's service, as the shared layer holds it without knowing its type.
pub type DialectService = Arc<dyn Any + Send + Sync>;

/// One mounted dialect: its name, its service, and how to build its routes over the
/// server state (built when the router is, so no route holds the state from inside it).
pub struct Mounted {
    pub name: &'static str,
    pub service: DialectService,
    pub routes: fn(AppState, DialectService) -> Option<axum::Router>,
}

pub struct ServerState {
    pub repo: Repository,
    /// Series and backup verbs with their role checks, for every API.
    pub backups: crate::service::backups::Backups,
    pub keys: KeyStore,
    /// People who sign in with email and password.
    pub users: UserStore,
    /// Named cron schedules that policies run by.
    pub schedules: crate::service::schedules::Schedules,
    /// Backup policies and their runs.
    pub policies: Arc<crate::service::policy_runs::PolicyRunner>,
    pub jobs: Arc<JobRegistry>,
    pub metrics: Metrics,
    pub limits: Limits,
    /// Uploads ingesting at once; more wait their turn.
    pub upload_slots: Semaphore,
    /// Open client-chunked backup sessions (`/v1/sessions`).
    pub sessions: Arc<crate::service::sessions::Sessions>,
    /// Agents on client hosts and the work assigned to them (`/v1/agents`).
    pub agents: Arc<crate::service::agents::Agents>,
    /// Sign-in sessions of the web dashboard (`/ui/`).
    pub web_sessions: crate::service::web_sessions::WebSessions,
    /// Whether the web dashboard is served.
    pub ui_enabled: bool,
    /// The repository's figures day by day, for the dashboard's chart.
    pub stats_history: crate::service::stats_history::StatsHistory,
    /// Signs and verifies capability URLs (downloads, Wings upload parts).
    pub signer: UrlSigner,
    /// Base of the URLs the server hands out (`https://backups.example.com`); `None`:
    /// taken from each request's `Host` header.
    pub public_url: Option<String>,
    /// The enabled dialects, mounted once at start.
    pub dialects: OnceLock<Vec<Mounted>>,
    /// Every background task of the server (jobs, schedulers, downloads).
    pub tasks: TaskSet,
    /// Named periodic tasks (the state mirror, the dialects' own).
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
        store: Arc<crate::state::StateStore>,
        jobs: Arc<JobRegistry>,
        limits: Limits,
        max_uploads: usize,
        tasks: TaskSet,
    ) -> ServerState {
        let sessions = Arc::new(crate::service::sessions::Sessions::new(
            repo.clone(),
            std::time::Duration::from_secs(3600),
        ));
        let agents = Arc::new(crate::service::agents::Agents::new(
            jobs.clone(),
            repo.clone(),
            crate::service::agents::CLAIM_TIMEOUT,
        ));
        ServerState {
            backups: crate::service::backups::Backups::new(repo.clone()),
            repo: repo.clone(),
            keys,
            users: UserStore::new(store.clone()),
            stats_history: crate::service::stats_history::StatsHistory::new(
                repo.clone(),
                store.clone(),
            ),
            schedules: crate::service::schedules::Schedules::new(store.clone()),
            // No folder or command may run until the server sets its rules.
            policies: Arc::new(crate::service::policy_runs::PolicyRunner::new(
                crate::service::policies::Policies::new(store, None),
                repo,
                jobs.clone(),
                agents.clone(),
            )),
            agents,
            jobs,
            metrics: Metrics::default(),
            limits,
            upload_slots: Semaphore::new(max_uploads.max(1)),
            sessions,
            web_sessions: Default::default(),
            ui_enabled: true,
            signer: UrlSigner::new(rand::random()),
            public_url: None,
            dialects: OnceLock::new(),
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
        self.sessions.close_all().await;
        // Last: every task that could change the state has ended.
        if let Some(mirror) = &self.mirror {
            if let Err(error) = mirror.write_if_changed().await {
                tracing::error!(%error, "cannot mirror the server state into the repository on shutdown");
            }
        }
    }

    /// The service of a mounted dialect, by type (`None` when it is not enabled).
    pub fn dialect<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        self.dialects
            .get()?
            .iter()
            .find_map(|mounted| mounted.service.clone().downcast::<T>().ok())
    }

    /// The names of the mounted dialects.
    pub fn dialect_names(&self) -> Vec<&'static str> {
        self.dialects
            .get()
            .map(|mounted| mounted.iter().map(|m| m.name).collect())
            .unwrap_or_default()
    }

    /// The routes of every mounted dialect.
    pub fn dialect_routers(self: &Arc<Self>) -> Vec<axum::Router> {
        self.dialects
            .get()
            .map(|mounted| {
                mounted
                    .iter()
                    .filter_map(|m| (m.routes)(self.clone(), m.service.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Relaxed)
    }
}
