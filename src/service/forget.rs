//! Applying a retention policy to a series: evaluate it over the series' live backups,
//! then recycle or purge those it does not keep.

use chrono::{DateTime, Utc};

use super::retention::{evaluate, Candidate, Decision};
use crate::format::series::{RetentionAction, RetentionPolicy};
use crate::repo::listing::ListScope;
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
    // The times come from the index's timeline keys: no backup record is read.
    let mut candidates = Vec::new();
    for row in repo.backup_times(ListScope::Series(series))? {
        if row.recycled_at.is_some() {
            continue;
        }
        let created_at = DateTime::from_timestamp_micros(row.cursor.micros)
            .filter(|_| row.cursor.micros != i64::MIN)
            .ok_or_else(|| {
                RepoError::Internal(format!("backup {} has an unreadable time", row.cursor.id))
            })?;
        candidates.push(Candidate {
            id: row.cursor.id.to_string(),
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
