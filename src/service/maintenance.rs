//! Check and gc as jobs, as every door starts them (`/v1/repository/{check,gc}`, the
//! dashboard's maintenance page): an admin's act, run in the one job system with its
//! report kept as the job's result.

use std::sync::Arc;

use super::jobs::{JobKind, JobRegistry};
use super::keys::{KeyStoreError, Principal, Role};
use crate::repo::gc::GcOptions;
use crate::repo::Repository;

/// Starts a check (reading every stored blob too with `read_data`); returns the job id.
pub fn start_check(
    who: &Principal,
    jobs: &Arc<JobRegistry>,
    repo: &Repository,
    read_data: bool,
) -> Result<String, KeyStoreError> {
    who.require(Role::Admin)?;
    let repo = repo.clone();
    Ok(jobs.spawn(JobKind::Check, move |progress| async move {
        let report = repo.check(read_data, progress).await?;
        Ok(serde_json::to_value(report).unwrap_or_default())
    }))
}

/// Starts a gc (deleting nothing with `dry_run`); returns the job id.
pub fn start_gc(
    who: &Principal,
    jobs: &Arc<JobRegistry>,
    repo: &Repository,
    dry_run: bool,
) -> Result<String, KeyStoreError> {
    who.require(Role::Admin)?;
    let repo = repo.clone();
    let options = GcOptions {
        dry_run,
        ..GcOptions::default()
    };
    Ok(jobs.spawn(JobKind::Gc, move |progress| async move {
        let report = repo.gc(options, progress).await?;
        Ok(serde_json::to_value(report).unwrap_or_default())
    }))
}

/// How the repository's storage answers now.
#[derive(Debug, Clone)]
pub struct BackendHealth {
    /// Where the objects are (`local:/srv/repo`, `s3:…`).
    pub location: String,
    /// How long reading the repository's config object took, or why it failed.
    pub reachable: Result<std::time::Duration, String>,
    /// Bytes free where the objects go, when the storage reports it.
    pub free_bytes: Option<u64>,
}

/// Longest wait for the storage to answer a health probe.
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Asks the storage for the repository's config object (small, always there) and for
/// its free space, each within [`PROBE_TIMEOUT`].
pub async fn backend_health(repo: &Repository) -> BackendHealth {
    let backend = repo.backend();
    let started = std::time::Instant::now();
    let reachable =
        match tokio::time::timeout(PROBE_TIMEOUT, backend.head(crate::repo::CONFIG_KEY)).await {
            Ok(Ok(_)) => Ok(started.elapsed()),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err(format!("no answer within {} s", PROBE_TIMEOUT.as_secs())),
        };
    let free_bytes = match tokio::time::timeout(PROBE_TIMEOUT, backend.free_space()).await {
        Ok(Ok(free)) => free,
        _ => None,
    };
    BackendHealth {
        location: backend.describe(),
        reachable,
        free_bytes,
    }
}
