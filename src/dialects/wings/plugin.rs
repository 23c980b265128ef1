//! The Wings dialect as a plug-in: its config section (`[dialects.wings]`) and how it
//! starts from the core: its upload records in the state store, and the expiry of
//! unfinished uploads as a task of the core scheduler.

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use serde::{Deserialize, Serialize};

use super::super::{Context, DialectsConfig, EnvKey, Mounted, StartError};
use crate::http::state::DialectService;
use crate::http::AppState;
use crate::service::signed_urls::MAX_LIFETIME_SECS;
use crate::service::wings::{WingsService, WingsSettings};

const NAME: &str = "wings";

/// The section's environment variables (`server::ServerConfig::load` applies them).
pub const ENV: &[EnvKey] = &[
    EnvKey {
        var: "STOWAGE_WINGS_PART_SIZE",
        key: "dialects.wings.part_size",
        text: false,
    },
    EnvKey {
        var: "STOWAGE_WINGS_UPLOAD_EXPIRY_SECS",
        key: "dialects.wings.upload_expiry_secs",
        text: false,
    },
];

/// `[dialects.wings]`: the Pterodactyl Panel's remote backup API for Wings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct WingsConfig {
    pub enabled: bool,
    /// Size of each upload part in bytes.
    pub part_size: u64,
    /// Lifetime of a part upload URL, in seconds.
    pub url_lifetime_secs: u64,
    /// Uploads not completed this many seconds after they were announced expire; their
    /// parts are purged.
    pub upload_expiry_secs: u64,
    /// Series of completed Wings backups.
    pub series: String,
    /// Series holding received parts until their upload completes.
    pub staging_series: String,
}

impl Default for WingsConfig {
    fn default() -> Self {
        WingsConfig {
            enabled: true,
            part_size: 128 << 20,
            url_lifetime_secs: 3600,
            upload_expiry_secs: 6 * 3600,
            series: "wings".into(),
            staging_series: "wings-parts".into(),
        }
    }
}

/// Starts the dialect when enabled.
pub fn start(context: &Context, config: &DialectsConfig) -> Result<Option<Mounted>, StartError> {
    let wings = &config.wings;
    if !wings.enabled {
        return Ok(None);
    }
    let part_size = wings.part_size;
    if part_size < 1 << 20 {
        return Err(StartError::new(
            NAME,
            format!("the part size must be at least 1 MiB (got {part_size} bytes)"),
        ));
    }
    let app = context.app;
    let settings = WingsSettings {
        part_size,
        url_lifetime_secs: wings.url_lifetime_secs.clamp(60, MAX_LIFETIME_SECS),
        upload_expiry_secs: wings.upload_expiry_secs.max(1),
        max_size: app.limits.max_upload_bytes,
        series: wings.series.clone(),
        staging_series: wings.staging_series.clone(),
    };
    let records = context
        .documents
        .open(NAME)
        .map_err(|e| StartError::new(NAME, e))?;
    let service = WingsService::open(app.repo.clone(), settings, records)
        .map_err(|e| StartError::new(NAME, e))?;
    let service = Arc::new(service);
    schedule_expiry(context, &service);
    Ok(Some(Mounted {
        name: NAME,
        service,
        routes,
    }))
}

/// The dialect's routes over its service.
fn routes(app: AppState, service: DialectService) -> Option<axum::Router> {
    let service = service.downcast::<WingsService>().ok()?;
    Some(super::router(app, service))
}

/// Expires unfinished uploads a few times per expiry period, as a task of the core
/// scheduler that holds the service weakly (so it never keeps the repository open).
fn schedule_expiry(context: &Context, service: &Arc<WingsService>) {
    let period = (service.settings().upload_expiry_secs / 4).clamp(1, 60);
    let service = Arc::downgrade(service);
    context.app.scheduler.add(
        "wings-upload-expiry",
        Duration::from_secs(period),
        Box::new(move || {
            let service = service.clone();
            async move {
                if let Some(service) = service.upgrade() {
                    service.expire(chrono::Utc::now().timestamp()).await;
                }
                Ok(())
            }
            .boxed()
        }),
    );
}
