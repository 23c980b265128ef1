//! Who may sign in to the FTP server: the user `<instance>` with the password of that
//! instance's live token (so credentials die with the token), compared in constant time
//! by the service. Failed sign-ins from one address are slowed, never locked out: after
//! [`FREE_FAILURES`] failures in a row each further answer waits one second more, doubling
//! up to [`MAX_DELAY`], and a success clears the address. The table of addresses is
//! bounded; the oldest entries go first.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use unftp_core::auth::{
    AuthenticationError, Authenticator, Credentials, Principal, UserDetail, UserDetailError,
    UserDetailProvider,
};

use crate::service::tapu::TapuService;

/// Failures from one address answered at once.
pub const FREE_FAILURES: u32 = 3;
/// Longest wait before a sign-in from a failing address is answered.
pub const MAX_DELAY: Duration = Duration::from_secs(16);
/// Addresses remembered at most.
const MAX_ADDRESSES: usize = 10_000;
/// A failing address is forgotten this long after its last failure.
const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);

/// A signed-in FTP user: one instance, who sees only its own files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceUser {
    pub instance: String,
}

impl std::fmt::Display for InstanceUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.instance)
    }
}

impl UserDetail for InstanceUser {}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

/// Checks passwords against the live tokens.
#[derive(Debug)]
pub struct TokenAuthenticator {
    service: Weak<TapuService>,
    failures: Mutex<HashMap<IpAddr, Failures>>,
}

/// The wait before answering an address that failed `count` times in a row.
pub fn delay_after(count: u32) -> Duration {
    if count < FREE_FAILURES {
        return Duration::ZERO;
    }
    let doublings = (count - FREE_FAILURES).min(8);
    Duration::from_secs(1 << doublings).min(MAX_DELAY)
}

impl TokenAuthenticator {
    pub fn new(service: &Arc<TapuService>) -> TokenAuthenticator {
        TokenAuthenticator {
            service: Arc::downgrade(service),
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Failures>> {
        self.failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn failed_before(&self, address: IpAddr) -> u32 {
        let now = Instant::now();
        let mut table = self.table();
        table.retain(|_, f| now.duration_since(f.last) < FORGET_AFTER);
        table.get(&address).map_or(0, |f| f.count)
    }

    fn record(&self, address: IpAddr, success: bool) {
        let mut table = self.table();
        if success {
            table.remove(&address);
            return;
        }
        if table.len() >= MAX_ADDRESSES && !table.contains_key(&address) {
            if let Some(oldest) = table.iter().min_by_key(|(_, f)| f.last).map(|(a, _)| *a) {
                table.remove(&oldest);
            }
        }
        let entry = table.entry(address).or_insert(Failures {
            count: 0,
            last: Instant::now(),
        });
        entry.count = entry.count.saturating_add(1);
        entry.last = Instant::now();
    }
}

#[async_trait]
impl Authenticator for TokenAuthenticator {
    async fn authenticate(
        &self,
        username: &str,
        credentials: &Credentials,
    ) -> Result<Principal, AuthenticationError> {
        let address = credentials.source_ip;
        let wait = delay_after(self.failed_before(address));
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        let password = credentials.password.as_deref().unwrap_or("");
        let valid = self
            .service
            .upgrade()
            .is_some_and(|service| service.authenticate(username, password));
        self.record(address, valid);
        if valid {
            Ok(Principal {
                username: username.to_string(),
            })
        } else {
            tracing::info!(%address, user = %username.chars().take(64).collect::<String>(), "tapu-backups FTP sign-in refused");
            // Unknown users answer as wrong passwords do: nothing tells which instances
            // hold tokens.
            Err(AuthenticationError::BadPassword)
        }
    }
}

/// The signed-in user of a principal.
#[derive(Debug)]
pub struct InstanceUsers;

#[async_trait]
impl UserDetailProvider for InstanceUsers {
    type User = InstanceUser;

    async fn provide_user_detail(
        &self,
        principal: &Principal,
    ) -> Result<InstanceUser, UserDetailError> {
        Ok(InstanceUser {
            instance: principal.username.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_slow_down_then_cap() {
        assert_eq!(delay_after(0), Duration::ZERO);
        assert_eq!(delay_after(2), Duration::ZERO);
        assert_eq!(delay_after(3), Duration::from_secs(1));
        assert_eq!(delay_after(4), Duration::from_secs(2));
        assert_eq!(delay_after(100), MAX_DELAY);
    }
}
