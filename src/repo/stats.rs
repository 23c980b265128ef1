//! Repository totals for `stats`: what the backups hold against what the repository
//! stores, the dedup and compression ratios between them, and the same per series.
//!
//! The figures add up: `unique_bytes` ≤ `logical_bytes` once gc has run (until then the
//! chunks of purged backups still count as unique), `stored_bytes` is the sealed blobs
//! (`sealed_bytes`) plus each pack's header and trailer, and the series' figures sum to
//! the repository's.

use std::collections::BTreeMap;

use super::{RepoError, Repository};

#[derive(Debug, Clone, serde::Serialize)]
pub struct RepoStats {
    pub backups: u64,
    /// What the backups hold: their streams and, for trees and tar archives, their
    /// catalogs (recycled backups included).
    pub logical_bytes: u64,
    /// Plaintext bytes of the distinct data chunks.
    pub unique_bytes: u64,
    /// Plaintext bytes of the distinct content-list leaves (which chunks make a stream).
    pub metadata_bytes: u64,
    /// Sealed (compressed, encrypted, enveloped) bytes of every distinct blob.
    pub sealed_bytes: u64,
    /// Bytes of every pack in the repository: the sealed blobs plus pack headers and
    /// trailers.
    pub stored_bytes: u64,
    /// logical / unique.
    pub dedup_ratio: f64,
    /// (unique + metadata) / sealed.
    pub compression_ratio: f64,
    /// Distinct data chunks.
    pub chunks: u64,
    /// Distinct content-list leaves.
    pub metadata_blobs: u64,
    pub packs: u64,
    /// The backups and their logical bytes per series; they sum to the totals above.
    pub series: BTreeMap<String, SeriesStats>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SeriesStats {
    pub backups: u64,
    pub logical_bytes: u64,
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        1.0
    } else {
        a as f64 / b as f64
    }
}

impl Repository {
    /// The figures, from the totals the index keeps (no scan of chunks or backups).
    pub fn stats(&self) -> Result<RepoStats, RepoError> {
        let kept = self.inner.index.totals()?;
        let totals = kept.index;
        let series: BTreeMap<String, SeriesStats> = kept
            .series
            .into_iter()
            .map(|(name, figures)| {
                let stats = SeriesStats {
                    backups: figures.backups,
                    logical_bytes: figures.logical_bytes,
                };
                (name, stats)
            })
            .collect();
        let logical_bytes = kept.backups.logical_bytes;
        let sealed_bytes = totals.chunk_stored_bytes + totals.list_stored_bytes;
        Ok(RepoStats {
            backups: kept.backups.backups,
            logical_bytes,
            unique_bytes: totals.chunk_raw_bytes,
            metadata_bytes: totals.list_raw_bytes,
            sealed_bytes,
            stored_bytes: totals.pack_bytes,
            dedup_ratio: ratio(logical_bytes, totals.chunk_raw_bytes),
            compression_ratio: ratio(totals.chunk_raw_bytes + totals.list_raw_bytes, sealed_bytes),
            chunks: totals.chunks,
            metadata_blobs: totals.lists,
            packs: totals.packs,
            series,
        })
    }
}
