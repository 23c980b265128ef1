//! Restores into a folder of this server: a tree backup, or one entry of it and what
//! lies beneath, recreated at its catalog path under the target, as a `restore` job.
//! Dialects use it when the client to restore onto is the server itself (CyBorgBackup's
//! restore to its local client); other hosts restore through their agent.
//!
//! The target is confined as policies' folders are: inside `policies.roots`, reached
//! through no symbolic link, and missing or empty. A dry run writes nothing and its
//! result says what would be restored.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::json;

use super::jobs::{JobFailure, JobKind, JobRegistry, JobView};
use super::keys::{Principal, Role};
use super::policies::{validate_folder, PolicyError, Rules};
use crate::format::catalog::{is_safe_relative_path, EntryKind};
use crate::format::catalog_index::is_inside;
use crate::repo::{lookup_id, Progress, RepoError, Repository};

/// What to restore, and where.
#[derive(Debug, Clone)]
pub struct RestoreRequest {
    /// The tree backup's id.
    pub backup: String,
    /// An absolute folder of this server.
    pub target: String,
    /// Only this catalog path and what lies beneath it.
    pub item: Option<String>,
    /// Count what would be restored; write nothing.
    pub dry_run: bool,
    /// What the job is about, for people.
    pub subject: String,
}

/// Checks `request` and starts its job; the job's view.
pub fn restore_here(
    who: &Principal,
    rules: Option<&Rules>,
    repo: &Repository,
    jobs: &Arc<JobRegistry>,
    request: RestoreRequest,
) -> Result<JobView, PolicyError> {
    who.require(Role::Writer)?;
    let rules = rules.ok_or_else(|| {
        PolicyError::Forbidden("restores into this server run only in the server".into())
    })?;
    let target: PathBuf = validate_folder(&request.target)?;
    rules.check_folder(&target)?;
    if let Some(item) = &request.item {
        if !is_safe_relative_path(item) {
            return Err(PolicyError::Invalid(format!(
                "item {item:?} is not a path of a catalog (relative, without '.' or '..')"
            )));
        }
    }
    let id = lookup_id(&request.backup).map_err(|e| PolicyError::Invalid(e.to_string()))?;
    let manifest = repo
        .backup(&id)
        .map_err(|e| PolicyError::Invalid(e.to_string()))?;
    let progress = Arc::new(Progress::new());
    let job = jobs.begin(
        JobKind::Restore,
        Some(request.subject.clone()),
        progress.clone(),
    );
    let (repo, registry, job_id) = (repo.clone(), jobs.clone(), job.clone());
    jobs.tasks().spawn_job(progress.clone(), async move {
        let outcome = if request.dry_run {
            count(&repo, &manifest, request.item.as_deref()).await
        } else {
            repo.restore_tree_part(&manifest, &target, request.item.clone(), progress)
                .await
                .map(|bytes| (None, bytes))
        };
        registry.end(
            &job_id,
            outcome.map_err(JobFailure::from).map(|(entries, bytes)| {
                json!({
                    "backup": request.backup,
                    "target": request.target,
                    "item": request.item,
                    "dry_run": request.dry_run,
                    "entries": entries,
                    "bytes": bytes,
                })
            }),
        );
    });
    jobs.get(&job)
        .map_err(|e| PolicyError::Invalid(e.to_string()))
}

/// The entries and file bytes a restore of `item` (or all) would write.
async fn count(
    repo: &Repository,
    manifest: &crate::format::manifest::BackupManifest,
    item: Option<&str>,
) -> Result<(Option<u64>, u64), RepoError> {
    let tally = Arc::new(Mutex::new((0u64, 0u64)));
    let (seen, wanted_item) = (tally.clone(), item.map(str::to_string));
    repo.catalog(
        manifest,
        Box::new(move |entry| {
            let wanted = wanted_item
                .as_deref()
                .is_none_or(|item| entry.path == item || is_inside(&entry.path, item));
            if wanted && !matches!(entry.kind, EntryKind::Hardlink | EntryKind::Other) {
                let mut tally = seen.lock().unwrap_or_else(PoisonError::into_inner);
                tally.0 += 1;
                if entry.kind == EntryKind::File {
                    tally.1 += entry.size;
                }
            }
            Ok(())
        }),
    )
    .await?;
    let (entries, bytes) = *tally.lock().unwrap_or_else(PoisonError::into_inner);
    if let (Some(item), 0) = (item, entries) {
        return Err(RepoError::InvalidInput(format!(
            "backup {} has no entry {item:?}",
            manifest.id
        )));
    }
    Ok((Some(entries), bytes))
}
