//! Storing an uploaded stream in a series: make sure the series exists, ingest, then
//! apply the series' retention policy when it has one (how the server applies policies
//! on its own).

use std::io::Read;
use std::sync::Arc;

use crate::format::manifest::BackupManifest;
use crate::format::series::RetentionPolicy;
use crate::repo::ingest::IngestOptions;
use crate::repo::{Progress, RepoError, Repository};

/// Ingests `source` into `options.series`, then applies the series policy.
pub async fn upload(
    repo: &Repository,
    options: IngestOptions,
    source: Box<dyn Read + Send>,
    progress: Arc<Progress>,
) -> Result<BackupManifest, RepoError> {
    let series = options.series.clone();
    // Never a backup in a series that does not exist: an upload into a new series
    // creates its record first (no policy), as `POST /v1/series` would.
    match repo
        .create_series(&series, RetentionPolicy::default())
        .await
    {
        Ok(_) | Err(RepoError::SeriesExists { .. }) => {}
        Err(error) => return Err(error),
    }
    let manifest = repo.backup_stream(source, options, progress).await?;
    apply_policy(repo, &series).await;
    Ok(manifest)
}

/// Applies a series' stored policy; failures are logged, never fatal to the upload.
pub async fn apply_policy(repo: &Repository, series: &str) {
    let policy = match repo.series(series) {
        Ok(Some(record)) if !record.policy.is_empty() => record.policy,
        Ok(_) => return,
        Err(error) => {
            tracing::warn!(%series, %error, "cannot read the series policy");
            return;
        }
    };
    if let Err(error) =
        super::forget::forget(repo, series, &policy, chrono::Utc::now(), false).await
    {
        tracing::warn!(%series, %error, "applying the retention policy failed");
    }
}
