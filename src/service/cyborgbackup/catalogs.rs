//! The catalogs of CyBorgBackup's archives (`/escatalogs/`), read from the core catalog
//! of the backup a job made: an archive name is a backup job's, its entries are the
//! catalog's (paths as borg writes them: absolute, without the leading `/`).

use std::sync::{Arc, Mutex};

use regex::Regex;

use super::{CbError, CyborgService};
use crate::format::catalog::{CatalogEntry, EntryKind};
use crate::id::BackupId;
use crate::repo::RepoError;

/// The most entries one answer lists.
pub const MAX_RESULTS: usize = 10_000;

/// One catalog entry as CyBorgBackup shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CatalogItem {
    pub archive_name: String,
    pub path: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub size: u64,
    pub healthy: bool,
    pub mtime: String,
    pub owner: String,
    pub group: String,
    pub mode: String,
}

/// `ls -l`'s mode: the type letter and the nine permission letters.
pub fn mode_string(kind: EntryKind, mode: u32) -> String {
    let mut out = String::from(type_letter(kind, mode));
    for shift in [6u32, 3, 0] {
        let bits = (mode >> shift) & 7;
        out.push(if bits & 4 != 0 { 'r' } else { '-' });
        out.push(if bits & 2 != 0 { 'w' } else { '-' });
        out.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    out
}

fn type_letter(kind: EntryKind, mode: u32) -> char {
    match kind {
        EntryKind::File => '-',
        EntryKind::Dir => 'd',
        EntryKind::Symlink => 'l',
        EntryKind::Hardlink => 'h',
        EntryKind::Other => match mode & 0o170000 {
            0o060000 => 'b',
            0o020000 => 'c',
            0o010000 => 'p',
            0o140000 => 's',
            _ => '?',
        },
    }
}

fn item(archive: &str, entry: &CatalogEntry) -> CatalogItem {
    let mtime = chrono::DateTime::from_timestamp(entry.mtime, entry.mtime_nsec)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.6f")
        .to_string();
    CatalogItem {
        archive_name: archive.to_string(),
        path: entry.path.clone(),
        kind: type_letter(entry.kind, entry.mode).to_string(),
        size: entry.size,
        healthy: true,
        mtime,
        owner: entry.user.clone(),
        group: entry.group.clone(),
        mode: mode_string(entry.kind, entry.mode),
    }
}

impl CyborgService {
    /// The entries of an archive whose path matches `pattern` whole (none asked: only the
    /// count), sorted by path, at most [`MAX_RESULTS`]; an unknown or pruned archive
    /// (recycled or deleted) has none.
    pub async fn escatalog(
        &self,
        archive: &str,
        pattern: Option<Regex>,
    ) -> Result<(usize, Vec<CatalogItem>), CbError> {
        let core = self.core()?.clone();
        let backup = self
            .list_jobs()
            .into_iter()
            .filter(|row| row.archive_name().as_deref() == Some(archive))
            .find_map(|row| row.backup_id());
        let Some(backup) = backup.and_then(|b| b.parse::<BackupId>().ok()) else {
            return Ok((0, Vec::new()));
        };
        // Pruned into the recycle bin: gone from the archive's point of view.
        if !matches!(core.repo.recycled_at(&backup), Ok(None)) {
            return Ok((0, Vec::new()));
        }
        let manifest = match core.repo.backup(&backup) {
            Ok(manifest) => manifest,
            Err(RepoError::BackupNotFound { .. }) => return Ok((0, Vec::new())),
            Err(e) => return Err(CbError::Damaged(e.to_string())),
        };
        let found = Arc::new(Mutex::new((0usize, Vec::<CatalogItem>::new())));
        let collector = found.clone();
        let name = archive.to_string();
        let listing = pattern.is_some();
        core.repo
            .catalog(
                &manifest,
                Box::new(move |entry| {
                    if pattern.as_ref().is_none_or(|p| p.is_match(&entry.path)) {
                        let mut found = collector.lock().unwrap_or_else(|p| p.into_inner());
                        found.0 += 1;
                        if listing && found.1.len() < MAX_RESULTS {
                            found.1.push(item(&name, &entry));
                        }
                    }
                    Ok(())
                }),
            )
            .await
            .map_err(|e| CbError::Damaged(e.to_string()))?;
        let (count, mut items) =
            std::mem::take(&mut *found.lock().unwrap_or_else(|p| p.into_inner()));
        items.sort_by(|a, b| a.path.cmp(&b.path));
        Ok((count, items))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_read_as_ls_writes_them() {
        assert_eq!(mode_string(EntryKind::File, 0o644), "-rw-r--r--");
        assert_eq!(mode_string(EntryKind::Dir, 0o40755), "drwxr-xr-x");
        assert_eq!(mode_string(EntryKind::Symlink, 0o777), "lrwxrwxrwx");
        assert_eq!(mode_string(EntryKind::Other, 0o010600), "prw-------");
    }
}
