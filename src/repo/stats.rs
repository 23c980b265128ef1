//! Repository totals for `stats`: logical bytes of all backups against what the
//! repository stores, and the dedup and compression ratios between them.

use super::{RepoError, Repository};

#[derive(Debug, Clone, serde::Serialize)]
pub struct RepoStats {
    pub backups: u64,
    /// Sum of the sizes of every backup.
    pub logical_bytes: u64,
    /// Plaintext bytes of the distinct chunks (data and content lists).
    pub unique_bytes: u64,
    /// Bytes of every pack in the repository.
    pub stored_bytes: u64,
    /// logical / unique.
    pub dedup_ratio: f64,
    /// unique / sealed size of the distinct chunks.
    pub compression_ratio: f64,
    pub chunks: u64,
    pub packs: u64,
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        1.0
    } else {
        a as f64 / b as f64
    }
}

impl Repository {
    pub fn stats(&self) -> Result<RepoStats, RepoError> {
        let totals = self.inner.index.totals()?;
        let backups = self.inner.index.list_backups()?;
        let logical_bytes = backups.iter().map(|b| b.size).sum();
        Ok(RepoStats {
            backups: backups.len() as u64,
            logical_bytes,
            unique_bytes: totals.chunk_raw_bytes,
            stored_bytes: totals.pack_bytes,
            dedup_ratio: ratio(logical_bytes, totals.chunk_raw_bytes),
            compression_ratio: ratio(totals.chunk_raw_bytes, totals.chunk_stored_bytes),
            chunks: totals.chunks,
            packs: totals.packs,
        })
    }
}
