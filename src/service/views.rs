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
    pub stored_bytes: u64,
    pub chunks: u64,
    pub new_chunks: u64,
    /// BLAKE3 of the stream (hex); null only for a backup recorded with a SHA-256 alone.
    pub blake3: Option<String>,
    /// SHA-256 of the stream (hex) when the upload asked for it, else null.
    pub sha256: Option<String>,
    pub catalog_entries: Option<u64>,
    pub tar: Option<TarEncoding>,
    pub recycled_at: Option<String>,
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
            new_chunks: m.new_chunks,
            blake3: m.blake3.clone(),
            sha256: m.sha256.clone(),
            catalog_entries: m.catalog.as_ref().map(|c| c.entries),
            tar: m.tar,
            recycled_at,
        }
    }
}
