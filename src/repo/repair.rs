//! Rebuilding the index from the backend alone: every pack's trailer gives its chunks,
//! every manifest gives a backup. Packs or manifests that cannot be read are reported
//! and left out; the rest of the repository stays usable.

use std::sync::Arc;

use futures::stream::{self, StreamExt};

use super::objects::{fetch_manifest, fetch_trailer, list_manifests, list_packs};
use super::{RepoError, Repository};
use crate::index::PackRecord;

/// Packs whose trailers are read at once.
const CONCURRENT_TRAILERS: usize = 8;

/// What a rebuild found.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct RepairReport {
    pub packs: u64,
    pub chunks: u64,
    pub backups: u64,
    /// Objects left out, each with the reason.
    pub skipped: Vec<String>,
}

impl Repository {
    /// Clears the index and rebuilds it from pack trailers and manifests.
    pub async fn rebuild_index(&self) -> Result<RepairReport, RepoError> {
        let inner = self.inner.clone();
        inner.index.clear()?;
        let packs = list_packs(&inner).await?;
        let mut report = RepairReport::default();
        let now = chrono::Utc::now().timestamp();
        let mut trailers = stream::iter(packs)
            .map(|(pack, size)| {
                let inner = inner.clone();
                async move { (pack, size, fetch_trailer(&inner, pack, size).await) }
            })
            .buffer_unordered(CONCURRENT_TRAILERS);
        while let Some((pack, size, trailer)) = trailers.next().await {
            match trailer {
                Ok(entries) => {
                    let record = PackRecord {
                        size,
                        blobs: entries.len() as u32,
                        created: now,
                    };
                    let index = Arc::clone(&inner);
                    let count = entries.len() as u64;
                    tokio::task::spawn_blocking(move || {
                        index.index.commit_pack(pack, record, &entries)
                    })
                    .await
                    .map_err(|e| RepoError::Internal(e.to_string()))??;
                    report.packs += 1;
                    report.chunks += count;
                }
                Err(e) => report.skipped.push(format!("pack {pack}: {e}")),
            }
        }
        self.rebuild_lifecycle(&mut report.skipped).await?;
        for id in list_manifests(&inner).await? {
            match fetch_manifest(&inner, &id).await {
                Ok(manifest) => {
                    inner.index.put_backup(&manifest)?;
                    report.backups += 1;
                }
                Err(e) => report.skipped.push(e.to_string()),
            }
        }
        Ok(report)
    }
}
