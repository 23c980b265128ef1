//! The tapu-backups dialect as a plug-in: its config section (`[dialects.tapu]`), off by
//! default (like the original, its HTTP API carries no credential of its own unless
//! `require_key`), and how it starts: its tokens in the state store, its HTTP listener and
//! FTP server as tasks of the server, and two periodic tasks of the core scheduler (the
//! release of expired tokens, and the daily removal of backups past their TTL).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use serde::{Deserialize, Serialize};

use super::super::{Context, DialectsConfig, EnvKey, Mounted, StartError};
use super::ftp::{self, FtpSettings};
use super::http::{router, TapuHttp};
use crate::http::state::DialectService;
use crate::http::AppState;
use crate::service::tapu::{TapuService, TapuSettings};

const NAME: &str = "tapu";

/// The section's environment variables (`server::ServerConfig::load` applies them).
pub const ENV: &[EnvKey] = &[
    EnvKey {
        var: "STOWAGE_TAPU_ENABLED",
        key: "dialects.tapu.enabled",
        text: false,
    },
    EnvKey {
        var: "STOWAGE_TAPU_LISTEN",
        key: "dialects.tapu.listen",
        text: true,
    },
    EnvKey {
        var: "STOWAGE_TAPU_FTP_LISTEN",
        key: "dialects.tapu.ftp_listen",
        text: true,
    },
    EnvKey {
        var: "STOWAGE_TAPU_FTP_PASSIVE_PORTS",
        key: "dialects.tapu.ftp_passive_ports",
        text: true,
    },
    EnvKey {
        var: "STOWAGE_TAPU_MAX_TOKENS",
        key: "dialects.tapu.max_tokens",
        text: false,
    },
    EnvKey {
        var: "STOWAGE_TAPU_TOKEN_VALIDITY_SECS",
        key: "dialects.tapu.token_validity_secs",
        text: false,
    },
    EnvKey {
        var: "STOWAGE_TAPU_SWEEP_INTERVAL_SECS",
        key: "dialects.tapu.sweep_interval_secs",
        text: false,
    },
];

/// `[dialects.tapu]`: the tapu-backups host API and its FTP server.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TapuConfig {
    pub enabled: bool,
    /// The HTTP API's own listener (b2 hosts call `http://HOST:8000`).
    pub listen: SocketAddr,
    /// Demand `Authorization: Bearer <stowage key>` on the HTTP API.
    pub require_key: bool,
    pub ftp_listen: SocketAddr,
    /// Passive data ports, `"FIRST-LAST"`.
    pub ftp_passive_ports: String,
    /// The address announced in PASV answers, for a server behind NAT.
    pub ftp_public_ip: Option<Ipv4Addr>,
    /// Allow active data connections (PORT), which b2's PHP client uses.
    pub ftp_active_mode: bool,
    /// PEM certificate chain and key for explicit FTPS; both or neither.
    pub ftp_tls_certificate: Option<PathBuf>,
    pub ftp_tls_key: Option<PathBuf>,
    /// With FTPS configured, refuse sign-ins and transfers that do not use it (b2's PHP
    /// client speaks plain FTP, so off by default).
    pub ftp_tls_required: bool,
    /// Live tokens at most, all instances together.
    pub max_tokens: usize,
    pub token_validity_secs: u64,
    /// How often the server releases expired tokens by itself.
    pub sweep_interval_secs: u64,
    /// Series of an instance's backups: this prefix and the instance name.
    pub series_prefix: String,
}

impl Default for TapuConfig {
    fn default() -> Self {
        TapuConfig {
            enabled: false,
            listen: SocketAddr::from(([127, 0, 0, 1], 8000)),
            require_key: false,
            ftp_listen: SocketAddr::from(([127, 0, 0, 1], 2121)),
            ftp_passive_ports: "40000-40100".into(),
            ftp_public_ip: None,
            ftp_active_mode: true,
            ftp_tls_certificate: None,
            ftp_tls_key: None,
            ftp_tls_required: false,
            max_tokens: 3,
            token_validity_secs: 3600,
            sweep_interval_secs: 300,
            series_prefix: "tapu-".into(),
        }
    }
}

/// How often backups past their TTL are removed.
const REMOVAL_PERIOD: Duration = Duration::from_secs(24 * 3600);

/// Starts the dialect when enabled.
pub fn start(context: &Context, config: &DialectsConfig) -> Result<Option<Mounted>, StartError> {
    let tapu = &config.tapu;
    if !tapu.enabled {
        return Ok(None);
    }
    let error = |message: String| StartError::new(NAME, message);
    let tls = match (&tapu.ftp_tls_certificate, &tapu.ftp_tls_key) {
        (Some(certificate), Some(key)) => Some((certificate.clone(), key.clone())),
        (None, None) if tapu.ftp_tls_required => {
            return Err(error(
                "ftp_tls_required needs ftp_tls_certificate and ftp_tls_key".into(),
            ))
        }
        (None, None) => None,
        _ => {
            return Err(error(
                "FTPS needs both ftp_tls_certificate and ftp_tls_key".into(),
            ))
        }
    };
    let ftp_settings = FtpSettings {
        listen: tapu.ftp_listen,
        passive_ports: ftp::port_range(&tapu.ftp_passive_ports).map_err(error)?,
        public_ip: tapu.ftp_public_ip,
        tls,
        tls_required: tapu.ftp_tls_required,
        active_mode: tapu.ftp_active_mode,
    };
    let app = context.app;
    let settings = TapuSettings {
        max_tokens: tapu.max_tokens,
        token_validity_secs: tapu.token_validity_secs,
        series_prefix: tapu.series_prefix.clone(),
        max_file_bytes: app.limits.max_upload_bytes,
    };
    let document = context
        .documents
        .open(NAME)
        .map_err(|e| error(e.to_string()))?;
    let service = TapuService::open(app.repo.clone(), settings, document, app.tasks.clone())
        .map_err(|e| error(e.to_string()))?;
    let service = Arc::new(service);
    let http = std::net::TcpListener::bind(tapu.listen)
        .and_then(|listener| {
            listener.set_nonblocking(true)?;
            tokio::net::TcpListener::from_std(listener)
        })
        .map_err(|e| error(format!("cannot listen on {}: {e}", tapu.listen)))?;
    ftp::spawn(&service, &ftp_settings, &app.tasks).map_err(error)?;
    serve_http(context, &service, http, tapu.require_key);
    schedule(context, &service, tapu.sweep_interval_secs);
    Ok(Some(Mounted {
        name: NAME,
        service,
        routes,
    }))
}

/// The dialect answers on its own listener, not on the server's router.
fn routes(_app: AppState, _service: DialectService) -> Option<axum::Router> {
    None
}

/// Serves the HTTP API until the server stops.
fn serve_http(
    context: &Context,
    service: &Arc<TapuService>,
    listener: tokio::net::TcpListener,
    require_key: bool,
) {
    let http = Arc::new(TapuHttp {
        app: context.app.clone(),
        service: service.clone(),
        require_key,
        data_dir: context.data_dir.to_path_buf(),
    });
    let tasks = context.app.tasks.clone();
    let address = listener.local_addr().ok();
    context.app.tasks.spawn(async move {
        tracing::info!(?address, "tapu-backups HTTP API listening");
        let served = axum::serve(listener, router(http))
            .with_graceful_shutdown(async move { tasks.cancelled().await })
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "the tapu-backups HTTP API stopped");
        }
    });
}

/// The periodic tasks, holding the service weakly (so they never keep the repository
/// open): tokens past their validity every `sweep_interval_secs` (the first sweep one
/// interval after start), backups past their TTL once a day.
fn schedule(context: &Context, service: &Arc<TapuService>, sweep_interval_secs: u64) {
    let weak = Arc::downgrade(service);
    context.app.scheduler.add(
        "tapu-release-expired-tokens",
        Duration::from_secs(sweep_interval_secs.max(1)),
        Box::new(move || {
            let service = weak.clone();
            async move {
                if let Some(service) = service.upgrade() {
                    let released = service
                        .release_expired(chrono::Utc::now().timestamp())
                        .map_err(|e| e.to_string())?;
                    if released > 0 {
                        tracing::info!(released, "tapu-backups: expired tokens released");
                    }
                }
                Ok(())
            }
            .boxed()
        }),
    );
    let weak = Arc::downgrade(service);
    context.app.scheduler.add(
        "tapu-remove-expired-backups",
        REMOVAL_PERIOD,
        Box::new(move || {
            let service = weak.clone();
            async move {
                if let Some(service) = service.upgrade() {
                    let removed = service
                        .remove_expired(chrono::Local::now().naive_local())
                        .await
                        .map_err(|e| e.to_string())?;
                    if removed > 0 {
                        tracing::info!(removed, "tapu-backups: backups past their TTL removed");
                    }
                }
                Ok(())
            }
            .boxed()
        }),
    );
}
