//! The FTP server of the tapu-backups dialect, built on libunftp with our own
//! authenticator (`auth`: the instance's live token password) and storage back end
//! (`storage`: the engine, no file system in between). Passive (PASV/EPSV) and active
//! (PORT) data connections, as b2's PHP client uses active mode; optional explicit FTPS.
//! It runs as a task of the server and stops with it.

pub mod auth;
pub mod storage;

use std::net::{Ipv4Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use libunftp::options::{ActivePassiveMode, FtpsRequired, PassiveHost, Shutdown, SiteMd5};
use libunftp::ServerBuilder;

use self::auth::{InstanceUser, InstanceUsers, TokenAuthenticator};
use self::storage::InstanceFiles;
use crate::service::tapu::TapuService;
use crate::service::tasks::TaskSet;

/// How the FTP server listens.
#[derive(Debug, Clone)]
pub struct FtpSettings {
    pub listen: SocketAddr,
    pub passive_ports: RangeInclusive<u16>,
    /// The address given in PASV answers (behind NAT); else the one the client reached.
    pub public_ip: Option<Ipv4Addr>,
    /// Certificate chain and private key (PEM) for explicit FTPS (`AUTH TLS`).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Refuse plain sign-ins and transfers when FTPS is configured.
    pub tls_required: bool,
    /// Whether clients may ask for active data connections (PORT).
    pub active_mode: bool,
}

/// Seconds a control connection may stay idle.
const IDLE_SESSION_SECS: u64 = 600;
/// Time transfers get to finish once the server stops.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Parses a passive port range, `"40000-40100"`.
pub fn port_range(text: &str) -> Result<RangeInclusive<u16>, String> {
    let parsed = text
        .split_once('-')
        .and_then(|(a, b)| Some((a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?)));
    match parsed {
        Some((first, last)) if first > 0 && first <= last => Ok(first..=last),
        _ => Err(format!(
            "the passive port range {text:?} must read FIRST-LAST, 1 <= FIRST <= LAST <= 65535"
        )),
    }
}

/// Starts the FTP server as a task of `tasks`; fails at once when its address is taken.
pub fn spawn(
    service: &Arc<TapuService>,
    settings: &FtpSettings,
    tasks: &TaskSet,
) -> Result<SocketAddr, String> {
    // libunftp binds its own listener; bind once here so a taken address stops the
    // server's start with a message instead of failing later in a task.
    drop(
        std::net::TcpListener::bind(settings.listen)
            .map_err(|e| format!("cannot listen for FTP on {}: {e}", settings.listen))?,
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let files = service.clone();
    let mut builder = ServerBuilder::<InstanceFiles, InstanceUser>::with_user_detail_provider(
        Box::new(move || InstanceFiles {
            service: files.clone(),
        }),
        Arc::new(InstanceUsers),
    )
    .authenticator(Arc::new(TokenAuthenticator::new(service)))
    .greeting("stowage tapu-backups FTP server")
    .passive_ports(settings.passive_ports.clone())
    .idle_session_timeout(IDLE_SESSION_SECS)
    .sitemd5(SiteMd5::None)
    .active_passive_mode(if settings.active_mode {
        ActivePassiveMode::ActiveAndPassive
    } else {
        ActivePassiveMode::PassiveOnly
    })
    .shutdown_indicator(async move {
        let _ = stopped.await;
        Shutdown::new().grace_period(SHUTDOWN_GRACE)
    });
    if let Some(ip) = settings.public_ip {
        builder = builder.passive_host(PassiveHost::Ip(ip));
    }
    if let Some((certificate, key)) = &settings.tls {
        // Checked here, so a missing or unreadable file stops the start with its name.
        for file in [certificate, key] {
            std::fs::metadata(file)
                .map_err(|e| format!("cannot read the FTPS file {}: {e}", file.display()))?;
        }
        builder = builder.ftps(certificate.clone(), key.clone());
        if settings.tls_required {
            builder = builder.ftps_required(FtpsRequired::All, FtpsRequired::All);
        }
    }
    let server = builder
        .build()
        .map_err(|e| format!("cannot build the FTP server: {e}"))?;
    let address = settings.listen;
    let stopping = tasks.clone();
    tasks.spawn(async move {
        stopping.cancelled().await;
        let _ = stop.send(());
    });
    tasks.spawn(async move {
        tracing::info!(%address, "tapu-backups FTP server listening");
        if let Err(error) = server.listen(address.to_string()).await {
            tracing::error!(%error, %address, "the tapu-backups FTP server stopped");
        }
    });
    Ok(address)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passive_port_ranges_are_parsed() {
        assert_eq!(port_range("40000-40100").unwrap(), 40000..=40100);
        assert_eq!(port_range(" 5 - 5 ").unwrap(), 5..=5);
        for bad in ["", "40000", "40100-40000", "0-10", "1-70000", "a-b"] {
            assert!(port_range(bad).is_err(), "{bad}");
        }
    }
}
