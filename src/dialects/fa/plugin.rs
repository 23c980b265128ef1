//! The fa dialect as a plug-in: its config section (`[dialects.fa]`) and how it starts
//! from the core: its job records in the state store, its users' homes under its root,
//! its backups and restores as jobs of the core's job system.

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::super::{Context, DialectsConfig, EnvKey, Mounted, StartError};
use crate::http::state::DialectService;
use crate::http::AppState;
use crate::service::fa::FaService;

const NAME: &str = "fa";

/// The section's environment variables (`server::ServerConfig::load` applies them).
pub const ENV: &[EnvKey] = &[
    EnvKey {
        var: "STOWAGE_FA_ROOT",
        key: "dialects.fa.root",
        text: true,
    },
    EnvKey {
        var: "STOWAGE_FA_JWT_SECRET",
        key: "dialects.fa.jwt_secret",
        text: true,
    },
];

/// `[dialects.fa]`: server-side path backups under `/fa/api/v0`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaConfig {
    pub enabled: bool,
    /// Root of the users' homes, `<root>/users/<username>` (default `<data_dir>/fa`).
    pub root: Option<PathBuf>,
    /// HS512 secret of fa users' tokens. Without one, only stowage API keys are
    /// accepted.
    pub jwt_secret: Option<String>,
}

impl Default for FaConfig {
    fn default() -> Self {
        FaConfig {
            enabled: true,
            root: None,
            jwt_secret: None,
        }
    }
}

/// Starts the dialect when enabled.
pub fn start(context: &Context, config: &DialectsConfig) -> Result<Option<Mounted>, StartError> {
    let fa = &config.fa;
    if !fa.enabled {
        return Ok(None);
    }
    let root = fa
        .root
        .clone()
        .unwrap_or_else(|| context.data_dir.join("fa"));
    let secret = fa.jwt_secret.clone().map(String::into_bytes);
    let records = context
        .documents
        .open(NAME)
        .map_err(|e| StartError::new(NAME, e))?;
    let app = context.app;
    let service = FaService::open(app.repo.clone(), &root, records, secret, app.jobs.clone())
        .map_err(|e| StartError::new(NAME, format!("root {}: {e}", root.display())))?;
    let service = Arc::new(service);
    Ok(Some(Mounted {
        name: NAME,
        service,
        routes,
    }))
}

/// The dialect's routes over its service.
fn routes(app: AppState, service: DialectService) -> Option<axum::Router> {
    let service = service.downcast::<FaService>().ok()?;
    Some(super::router(app, service))
}
