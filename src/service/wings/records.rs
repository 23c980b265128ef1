//! What the Wings dialect remembers between requests and across restarts, kept as its
//! document in the state store (`wings`), replaced in one transaction on every change:
//! each upload Wings announced, the stowage backups holding the parts received so far,
//! and how it ended. Every field is described in `docs/FORMAT.md`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::id::BackupId;

/// Version of the file's layout.
pub const RECORDS_VERSION: u32 = 1;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RecordsFile {
    pub version: u32,
    /// Uploads by backup uuid.
    #[serde(default)]
    pub uploads: BTreeMap<String, UploadRecord>,
}

/// Where an upload stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UploadStatus {
    /// Part URLs handed out; parts may arrive.
    Pending,
    /// Reported failed, refused at completion, or expired; holds no parts.
    Failed,
    /// Recorded as the stowage backup with the upload's uuid.
    Completed,
}

/// One part received: the stowage backup (recycled, so hidden from listings) that holds
/// its bytes until the upload completes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartRecord {
    pub backup: BackupId,
    pub size: u64,
    /// The ETag answered for the part, quotes included.
    pub etag: String,
}

/// The outcome of the last restore Wings reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreReport {
    pub successful: bool,
    /// Unix seconds.
    pub at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UploadRecord {
    /// Size announced with `?size=`, in bytes.
    pub size: u64,
    /// Size of every part but the last.
    pub part_size: u64,
    /// When the part URLs were first handed out (unix seconds); the expiry counts from it.
    pub created_at: i64,
    /// Random; changes when the upload starts over, so a part that finishes after the
    /// reset is not mixed into the new attempt.
    pub attempt: u64,
    pub status: UploadStatus,
    /// Why the upload failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Parts received, by part number (from 1).
    #[serde(default)]
    pub parts: BTreeMap<u32, PartRecord>,
    /// `sha1:<hex>` as reported and verified at completion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_restore: Option<RestoreReport>,
}

impl UploadRecord {
    /// Number of parts: ceil(size / part_size).
    pub fn part_count(&self) -> u32 {
        part_count(self.size, self.part_size)
    }

    /// Exact size of part `number` (from 1).
    pub fn part_len(&self, number: u32) -> u64 {
        let start = u64::from(number - 1) * self.part_size;
        self.part_size.min(self.size.saturating_sub(start))
    }
}

/// ceil(size / part_size), saturating at `u32::MAX`.
pub fn part_count(size: u64, part_size: u64) -> u32 {
    u32::try_from(size.div_ceil(part_size.max(1))).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cover_the_size_exactly() {
        let record = UploadRecord {
            size: 10,
            part_size: 4,
            created_at: 0,
            attempt: 1,
            status: UploadStatus::Pending,
            error: None,
            parts: BTreeMap::new(),
            checksum: None,
            completed_at: None,
            last_restore: None,
        };
        assert_eq!(record.part_count(), 3);
        assert_eq!(
            (1..=3).map(|n| record.part_len(n)).collect::<Vec<_>>(),
            [4, 4, 2]
        );
        assert_eq!(part_count(8, 4), 2);
        assert_eq!(part_count(1, 4), 1);
    }
}
