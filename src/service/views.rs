//! The public shape of a backup, shared by the CLI's `--json` and the native API.

use serde::Serialize;

use crate::format::manifest::{BackupKind, BackupManifest, TarEncoding};

#[derive(Debug, Clone, Serialize)]
pub struct BackupView {
    pub id: String,
    pub series: String,
    pub kind: BackupKind,
    pub source: String,
    pub created_at: String,
    pub size: u64,
    /// Sealed bytes this backup added to the repository (its new blobs, all kinds).
    pub stored_bytes: u64,
    /// Data chunks of the stream.
    pub chunks: u64,
    /// Of those, the ones the repository did not hold before (at most `chunks`).
    pub new_chunks: u64,
    /// Content-list leaves and catalog blobs the repository did not hold before.
    pub new_metadata_blobs: u64,
    /// BLAKE3 of the stream (hex); null only for a backup recorded with a SHA-256 alone.
    pub blake3: Option<String>,
    /// SHA-256 of the stream (hex) when the upload asked for it, else null.
    pub sha256: Option<String>,
    pub catalog_entries: Option<u64>,
    pub tar: Option<TarEncoding>,
    pub recycled_at: Option<String>,
}

/// A byte count for people: `1.5 MiB` (binary units, one decimal).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

impl BackupView {
    pub fn new(m: &BackupManifest, recycled_at: Option<String>) -> BackupView {
        BackupView {
            id: m.id.to_string(),
            series: m.series.clone(),
            kind: m.kind,
            source: m.source.clone(),
            created_at: m.created_at.clone(),
            size: m.size,
            stored_bytes: m.stored_bytes,
            chunks: m.chunks,
            // Manifests from before the split count leaves and catalog blobs as new
            // chunks; what exceeds the stream's chunks is shown where it belongs.
            new_chunks: m.new_chunks.min(m.chunks),
            new_metadata_blobs: m.new_metadata_blobs + m.new_chunks.saturating_sub(m.chunks),
            blake3: m.blake3.clone(),
            sha256: m.sha256.clone(),
            catalog_entries: m.catalog.as_ref().map(|c| c.entries),
            tar: m.tar,
            recycled_at,
        }
    }
}
