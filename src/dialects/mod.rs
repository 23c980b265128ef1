//! Dialects: the HTTP APIs of other backup systems, served beside the native `/v1` API so
//! their clients work unchanged. Each one maps its wire format and error shape onto the
//! services; none holds storage logic. See `docs/dialects/`.
//!
//! Each dialect is a plug-in: from the core ([`Context`]) and its own config section it
//! builds its service, registers its periodic tasks with the core scheduler and returns
//! the service with the function that builds its routes ([`Mounted`]). The server mounts the enabled ones from [`DIALECTS`]; adding
//! a dialect touches its folder, its section of [`DialectsConfig`] and that list.

pub mod backupchan;
pub mod cyborgbackup;
pub mod fa;
pub mod tapu;
pub mod wings;

use std::path::Path;

use serde::{Deserialize, Serialize};

pub use crate::http::state::Mounted;
use crate::http::AppState;
use crate::service::documents::DocumentStore;

/// `[dialects.*]`: one section per dialect.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DialectsConfig {
    pub fa: fa::FaConfig,
    pub wings: wings::WingsConfig,
    pub backupchan: backupchan::BackupchanConfig,
    pub cyborgbackup: cyborgbackup::CyborgbackupConfig,
    pub tapu: tapu::TapuConfig,
}

/// A `STOWAGE_*` environment variable and the setting it overrides (a dotted path in
/// the configuration). `text`: taken as written (a secret or a path that may look like a
/// number); otherwise parsed (numbers, booleans).
#[derive(Debug, Clone, Copy)]
pub struct EnvKey {
    pub var: &'static str,
    pub key: &'static str,
    pub text: bool,
}

/// Every dialect's environment variables.
pub fn env_keys() -> impl Iterator<Item = &'static EnvKey> {
    [
        fa::plugin::ENV,
        wings::plugin::ENV,
        backupchan::plugin::ENV,
        cyborgbackup::plugin::ENV,
        tapu::plugin::ENV,
    ]
    .into_iter()
    .flatten()
}

/// What a dialect builds itself from.
pub struct Context<'a> {
    /// The core services (repository, keys, users, jobs, scheduler, tasks, limits).
    pub app: &'a AppState,
    /// The server's data directory (defaults that live beside it).
    pub data_dir: &'a Path,
    /// The state store's documents, one per dialect.
    pub documents: &'a DocumentStore,
}

/// A dialect that could not start: which one, and why.
#[derive(Debug, thiserror::Error)]
#[error("starting the {dialect} dialect: {message}")]
pub struct StartError {
    pub dialect: &'static str,
    pub message: String,
}

impl StartError {
    pub fn new(dialect: &'static str, message: impl std::fmt::Display) -> StartError {
        StartError {
            dialect,
            message: message.to_string(),
        }
    }
}

/// Builds a dialect when its section enables it.
pub type Start = fn(&Context, &DialectsConfig) -> Result<Option<Mounted>, StartError>;

/// Every dialect the server knows, in the order their routes are mounted.
pub const DIALECTS: [Start; 5] = [
    fa::plugin::start,
    wings::plugin::start,
    backupchan::plugin::start,
    cyborgbackup::plugin::start,
    tapu::plugin::start,
];

/// Starts every enabled dialect.
pub fn start_all(context: &Context, config: &DialectsConfig) -> Result<Vec<Mounted>, StartError> {
    let mut mounted = Vec::new();
    for start in DIALECTS {
        if let Some(dialect) = start(context, config)? {
            mounted.push(dialect);
        }
    }
    Ok(mounted)
}
