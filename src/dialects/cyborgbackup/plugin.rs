//! The CyBorgBackup dialect as a plug-in: its config section (`[dialects.cyborgbackup]`)
//! and how it starts from the core: the core's users, keys and schedules, its own
//! document in the state store, and its token secret created there once.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::super::{Context, DialectsConfig, EnvKey, Mounted, StartError};
use crate::http::state::DialectService;
use crate::http::AppState;
use crate::service::cyborgbackup::{Core, CyborgService, TokenLifetimes};

const NAME: &str = "cyborgbackup";

/// The section's environment variables.
pub const ENV: &[EnvKey] = &[EnvKey {
    var: "STOWAGE_CYBORG_LOCAL_HOSTNAME",
    key: "dialects.cyborgbackup.local_hostname",
    text: true,
}];

/// `[dialects.cyborgbackup]`: CyBorgBackup's `/api/v1` for its web UI and scripts.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CyborgbackupConfig {
    pub enabled: bool,
    /// Lifetime of an access token, in seconds.
    pub access_token_secs: u64,
    /// Lifetime of a refresh token, in seconds.
    pub refresh_token_secs: u64,
    /// The largest `page_size` a list answers with.
    pub max_page_size: usize,
    /// The host name of clients that are this server, whose folders it reads itself
    /// (`localhost` always is); default: this machine's host name. Other clients are
    /// backed up by their agent.
    pub local_hostname: Option<String>,
    /// Seconds between two cleanups of the jobs whose archive was pruned (the
    /// original's hourly `prune_catalog`).
    pub cleanup_interval_secs: u64,
}

impl Default for CyborgbackupConfig {
    fn default() -> Self {
        CyborgbackupConfig {
            enabled: true,
            access_token_secs: 3600,
            refresh_token_secs: 14 * 24 * 3600,
            max_page_size: 100_000,
            local_hostname: None,
            cleanup_interval_secs: 3600,
        }
    }
}

/// What the routes need beside the service.
pub struct Mount {
    pub service: CyborgService,
    pub max_page_size: usize,
}

/// Starts the dialect when enabled.
pub fn start(context: &Context, config: &DialectsConfig) -> Result<Option<Mounted>, StartError> {
    let cb = &config.cyborgbackup;
    if !cb.enabled {
        return Ok(None);
    }
    let document = context
        .documents
        .open(NAME)
        .map_err(|e| StartError::new(NAME, e))?;
    let keys = context.app.keys.clone();
    let lifetimes = TokenLifetimes {
        access_secs: cb.access_token_secs,
        refresh_secs: cb.refresh_token_secs,
    };
    let mut service = CyborgService::open(keys.state_store(), keys, document, lifetimes)
        .map_err(|e| StartError::new(NAME, e))?;
    service.attach(Core {
        runner: context.app.policies.clone(),
        jobs: context.app.jobs.clone(),
        repo: context.app.repo.clone(),
        agents: context.app.agents.clone(),
        local_hostname: cb.local_hostname.clone().unwrap_or_else(|| {
            rustix::system::uname()
                .nodename()
                .to_string_lossy()
                .into_owned()
        }),
    });
    let mount = Arc::new(Mount {
        service,
        max_page_size: cb.max_page_size.max(1),
    });
    schedule_cleanup(context, &mount, cb.cleanup_interval_secs.max(1));
    add_metrics(context, &mount);
    Ok(Some(Mounted {
        name: NAME,
        service: mount,
        routes,
    }))
}

/// The dialect's routes over its service.
fn routes(app: AppState, service: DialectService) -> Option<axum::Router> {
    let mount = service.downcast::<Mount>().ok()?;
    Some(super::router(app, mount))
}

/// Forgets the jobs of pruned archives now and then, as a task of the core scheduler
/// that holds the service weakly (so it never keeps the repository open).
fn schedule_cleanup(context: &Context, mount: &Arc<Mount>, every_secs: u64) {
    use futures::FutureExt;
    let mount = Arc::downgrade(mount);
    context.app.scheduler.add(
        "cyborgbackup-job-cleanup",
        std::time::Duration::from_secs(every_secs),
        Box::new(move || {
            let mount = mount.clone();
            async move {
                if let Some(mount) = mount.upgrade() {
                    // Reads the index and the dialect's document: off the async workers.
                    let forgotten =
                        tokio::task::spawn_blocking(move || mount.service.forget_pruned_jobs())
                            .await
                            .map_err(|e| e.to_string())?;
                    if forgotten > 0 {
                        tracing::info!(forgotten, "forgot the jobs of pruned archives");
                    }
                }
                Ok(())
            }
            .boxed()
        }),
    );
}

/// CyBorgBackup's gauges in the server's `/metrics`, for the requests its `metrics_*`
/// settings let see them (the core's own series are everyone's, as before).
fn add_metrics(context: &Context, mount: &Arc<Mount>) {
    let mount = Arc::downgrade(mount);
    context.app.metrics.extend(Arc::new(move |headers| {
        let mount = mount.upgrade()?;
        let basic = super::auth::basic_credentials(headers);
        mount
            .service
            .metrics_for(basic.as_ref().map(|(u, p)| (u.as_str(), p.as_str())))
    }));
}
