//! Applying a retention policy to a series: evaluate it over the series' live backups,
//! then recycle or purge those it does not keep.

use chrono::{DateTime, Utc};

use super::retention::{evaluate, Candidate, Decision};
use crate::format::series::{RetentionAction, RetentionPolicy};
use crate::repo::{lookup_id, RepoError, Repository};

/// Evaluates `policy` over the live backups of `series` and, unless `dry_run`, applies
/// its action to those not kept. Returns every decision, newest first.
pub async fn forget(
    repo: &Repository,
    series: &str,
    policy: &RetentionPolicy,
    now: DateTime<Utc>,
    dry_run: bool,
) -> Result<Vec<Decision>, RepoError> {
    let mut candidates = Vec::new();
    for entry in repo.backup_entries()? {
        if entry.manifest.series != series || entry.recycled_at.is_some() {
            continue;
        }
        let created_at = DateTime::parse_from_rfc3339(&entry.manifest.created_at)
            .map_err(|e| {
                RepoError::Internal(format!(
                    "backup {} has an unreadable time: {e}",
                    entry.manifest.id
                ))
            })?
            .with_timezone(&Utc);
        candidates.push(Candidate {
            id: entry.manifest.id.to_string(),
            created_at,
        });
    }
    let decisions = evaluate(policy, &candidates, now);
    if !dry_run {
        for decision in decisions.iter().filter(|d| !d.keep) {
            match policy.action {
                RetentionAction::Recycle => repo.recycle(&lookup_id(&decision.id)?).await?,
                RetentionAction::Delete => repo.purge(&lookup_id(&decision.id)?).await?,
            }
        }
    }
    Ok(decisions)
}
