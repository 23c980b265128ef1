//! The Backup-chan dialect as a plug-in: its config section (`[dialects.backupchan]`)
//! and how it starts from the core: its records in the state store, its uploads as jobs
//! of the core's job system, its scheduled jobs as tasks of the core scheduler.

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::super::{Context, DialectsConfig, EnvKey, Mounted, StartError};
use crate::http::state::DialectService;
use crate::http::AppState;
use crate::service::backupchan::{BackupchanService, Settings, SCHEDULED_JOBS};

const NAME: &str = "backupchan";

/// The section's environment variables: none; it is configured in its TOML section.
pub const ENV: &[EnvKey] = &[];

/// `[dialects.backupchan]`: Backup-chan's `/api` for its Python client and CLI.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackupchanConfig {
    pub enabled: bool,
    /// Targets per page of `GET /api/target`.
    pub page_size: usize,
    /// Directories target locations must lie in; empty: any location (it is recorded).
    pub location_roots: Vec<PathBuf>,
    /// Seconds after which an idle sequential upload is terminated.
    pub seq_timeout_secs: u64,
    /// Files in one upload, and in one sequential upload's file list.
    pub max_files: usize,
    /// Scheduled job name → interval in seconds, overriding the defaults.
    pub job_intervals: std::collections::BTreeMap<String, u64>,
}

impl Default for BackupchanConfig {
    fn default() -> Self {
        let defaults = Settings::default();
        BackupchanConfig {
            enabled: true,
            page_size: defaults.page_size,
            location_roots: Vec::new(),
            seq_timeout_secs: defaults.seq_timeout_secs,
            max_files: defaults.max_files,
            job_intervals: Default::default(),
        }
    }
}

/// Starts the dialect when enabled.
pub fn start(context: &Context, config: &DialectsConfig) -> Result<Option<Mounted>, StartError> {
    let bc = &config.backupchan;
    if !bc.enabled {
        return Ok(None);
    }
    for name in bc.job_intervals.keys() {
        if !SCHEDULED_JOBS.iter().any(|(known, _)| known == name) {
            return Err(StartError::new(
                NAME,
                format!("[dialects.backupchan] job_intervals: no scheduled job {name:?}"),
            ));
        }
    }
    let settings = Settings {
        page_size: bc.page_size.max(1),
        location_roots: bc.location_roots.clone(),
        seq_timeout_secs: bc.seq_timeout_secs,
        max_files: bc.max_files.max(1),
        intervals: bc.job_intervals.clone().into_iter().collect(),
    };
    let records = context
        .documents
        .open(NAME)
        .map_err(|e| StartError::new(NAME, e))?;
    let app = context.app;
    let service = BackupchanService::open(
        app.repo.clone(),
        records,
        settings,
        app.jobs.clone(),
        app.scheduler.clone(),
    )
    .map_err(|e| StartError::new(NAME, e))?;
    let service = Arc::new(service);
    service.schedule_jobs();
    Ok(Some(Mounted {
        name: NAME,
        service,
        routes,
    }))
}

/// The dialect's routes over its service.
fn routes(app: AppState, service: DialectService) -> Option<axum::Router> {
    let service = service.downcast::<BackupchanService>().ok()?;
    Some(super::router(app, service))
}
