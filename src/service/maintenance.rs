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
