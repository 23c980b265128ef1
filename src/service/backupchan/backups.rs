//! Backups of targets: ingesting uploaded files into the target's series (each file one
//! stowage backup, ingested while the request body streams in), recording a backup once
//! every file of an upload is durable, the recycle bin, deletion and statistics.
//! Downloads are in `download`.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use super::store::{BackupRecord, Part};
use super::targets::{iso, TargetType};
use super::{now, series_of, BackupchanService, BcError};
use crate::repo::ingest::IngestOptions;
use crate::repo::Progress;
use crate::service::jobs::JobFailure;

pub type BackupView = BackupRecord;

/// A file being ingested in the background.
pub struct PendingPart(tokio::task::JoinHandle<Result<Part, BcError>>);

impl PendingPart {
    async fn wait(self) -> Result<Part, BcError> {
        self.0
            .await
            .unwrap_or_else(|e| Err(BcError::Invalid(format!("ingest task failed: {e}"))))
    }
}

/// `GET /api/stats`: sizes of live and recycled backups; `total_backups` counts both, as
/// the real server's does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats {
    pub total_target_size: u64,
    pub total_recycle_bin_size: u64,
    pub total_targets: u64,
    pub total_backups: u64,
    pub total_recycled_backups: u64,
}

/// The hash of a backup: the file's sha256 (single), or the tree hash of its files as
/// extracted (multi, see `tree_hash`).
async fn backup_hash(
    service: &BackupchanService,
    target_type: TargetType,
    parts: &[Part],
) -> Result<String, BcError> {
    match (target_type, parts) {
        (TargetType::Single, [part]) => Ok(part.sha256.clone()),
        _ => service.tree_hash(parts).await,
    }
}

/// Newest first; of backups made in the same second, the one recorded last first.
fn newest_first(backups: &mut [BackupRecord]) {
    backups.reverse();
    backups.sort_by(|a, b| b.created_at.cmp(&a.created_at));
}

impl BackupchanService {
    /// Starts ingesting one uploaded file of `target_id` from `reader`, counting into
    /// the progress of its delayed job.
    pub fn start_part(
        self: &Arc<Self>,
        job: u64,
        target_id: &str,
        name: String,
        reader: Box<dyn Read + Send>,
    ) -> PendingPart {
        let progress = self.job_progress(job);
        let service = self.clone();
        let series = series_of(target_id);
        PendingPart(
            self.tasks
                .spawn(async move { service.ingest(&series, name, reader, progress).await }),
        )
    }

    /// Ingests one file into a series.
    pub(super) async fn ingest(
        &self,
        series: &str,
        name: String,
        reader: Box<dyn Read + Send>,
        progress: Arc<Progress>,
    ) -> Result<Part, BcError> {
        let source = Path::new(&name)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "-".into());
        // The protocol reports each file's SHA-256.
        let options = IngestOptions::new(series, source).with_sha256(true);
        let manifest = self.repo.backup_stream(reader, options, progress).await?;
        Ok(Part {
            name,
            backup: manifest.id,
            size: manifest.size,
            // Requested above, so always recorded.
            sha256: manifest.sha256.unwrap_or_default(),
        })
    }

    /// Finishes an upload in the background as delayed job `job`: once every file is
    /// stored, records the backup; if any failed, removes the others.
    pub fn complete_upload(
        self: &Arc<Self>,
        job: u64,
        target_id: String,
        manual: bool,
        pending: Vec<PendingPart>,
    ) {
        let service = self.clone();
        self.tasks.spawn(async move {
            let outcome = service.gather(pending).await;
            let outcome = match outcome {
                Ok(parts) => service.record_backup(&target_id, manual, parts).await,
                Err(error) => Err(error),
            };
            match &outcome {
                Ok(id) => service.log(format!("Uploaded backup {id} to target {target_id}")),
                Err(error) => service.log(format!("Upload to target {target_id} failed: {error}")),
            }
            service.end_job(
                job,
                outcome
                    .map(|id| serde_json::json!({ "backup": id, "target": target_id }))
                    .map_err(|e| JobFailure::new(e.kind(), e.to_string())),
            );
        });
    }

    /// Drops the files of an upload refused after they were read: waits for their ingests
    /// to end (their bodies are complete or failed), then purges what they stored.
    pub async fn discard(&self, pending: Vec<PendingPart>) {
        let mut stored = Vec::new();
        for part in pending {
            if let Ok(part) = part.wait().await {
                stored.push(part);
            }
        }
        self.purge_parts(&stored).await;
    }

    /// Waits for every file; on any failure purges the stored ones.
    async fn gather(&self, pending: Vec<PendingPart>) -> Result<Vec<Part>, BcError> {
        let mut parts = Vec::new();
        let mut failure = None;
        for part in pending {
            match part.wait().await {
                Ok(part) => parts.push(part),
                Err(error) => failure = failure.or(Some(error)),
            }
        }
        match failure {
            None => Ok(parts),
            Some(error) => {
                self.purge_parts(&parts).await;
                Err(error)
            }
        }
    }

    /// Records a backup of stored files; purges them if the target is gone.
    pub(super) async fn record_backup(
        &self,
        target_id: &str,
        manual: bool,
        parts: Vec<Part>,
    ) -> Result<String, BcError> {
        let target_type = self
            .lock()
            .targets
            .iter()
            .find(|t| t.id == target_id)
            .map(|t| t.target_type);
        let hash = match target_type {
            Some(target_type) => backup_hash(self, target_type, &parts).await,
            None => Err(BcError::target(target_id)),
        };
        let hash = match hash {
            Ok(hash) => hash,
            Err(error) => {
                self.purge_parts(&parts).await;
                return Err(error);
            }
        };
        let recorded = {
            let mut state = self.lock();
            match state.targets.iter().find(|t| t.id == target_id) {
                None => {
                    // A finished sequential upload left the state in memory only.
                    self.save_logged(&state);
                    Err(BcError::target(target_id))
                }
                Some(_) => {
                    let id = uuid::Uuid::new_v4().to_string();
                    let record = BackupRecord {
                        id: id.clone(),
                        target_id: target_id.to_string(),
                        created_at: iso(now()),
                        manual,
                        is_recycled: false,
                        filesize: parts.iter().map(|p| p.size).sum(),
                        hash,
                        hash_mismatch: false,
                        parts: parts.clone(),
                    };
                    state.backups.push(record);
                    match self.save(&state) {
                        Ok(()) => Ok(id),
                        Err(error) => {
                            state.backups.retain(|b| b.id != id);
                            Err(error)
                        }
                    }
                }
            }
        };
        if recorded.is_err() {
            self.purge_parts(&parts).await;
        }
        recorded
    }

    /// A target and its backups, newest first.
    pub fn target_backups(
        &self,
        reference: &str,
    ) -> Result<(super::targets::Target, Vec<BackupView>), BcError> {
        let state = self.lock();
        let target = Self::find_target(&state, reference)?.clone();
        let mut backups: Vec<BackupView> = state
            .backups
            .iter()
            .filter(|b| b.target_id == target.id)
            .cloned()
            .collect();
        newest_first(&mut backups);
        Ok((target, backups))
    }

    pub(super) fn backup_record(&self, id: &str) -> Result<BackupRecord, BcError> {
        self.lock()
            .backups
            .iter()
            .find(|b| b.id == id)
            .cloned()
            .ok_or_else(|| BcError::backup(id))
    }

    /// Moves a backup to the recycle bin (stowage recycles its files) or back.
    pub async fn set_recycled(&self, id: &str, recycled: bool) -> Result<(), BcError> {
        let record = self.backup_record(id)?;
        for part in &record.parts {
            if recycled {
                self.repo.recycle(&part.backup).await?;
            } else {
                self.repo.undelete(&part.backup).await?;
            }
        }
        let mut state = self.lock();
        if let Some(b) = state.backups.iter_mut().find(|b| b.id == id) {
            b.is_recycled = recycled;
        }
        self.save(&state)?;
        drop(state);
        let verb = if recycled { "Recycled" } else { "Restored" };
        self.log(format!("{verb} backup {id}"));
        Ok(())
    }

    /// Removes the backups `select` picks; with `delete_files` purges their files.
    async fn remove_backups(
        &self,
        delete_files: bool,
        select: impl Fn(&BackupRecord) -> bool,
    ) -> Result<usize, BcError> {
        let removed: Vec<BackupRecord> = {
            let mut state = self.lock();
            let (gone, kept): (Vec<_>, Vec<_>) = state.backups.drain(..).partition(|b| select(b));
            state.backups = kept;
            if let Err(error) = self.save(&state) {
                state.backups.extend(gone);
                return Err(error);
            }
            gone
        };
        if delete_files {
            let parts: Vec<Part> = removed.iter().flat_map(|b| b.parts.clone()).collect();
            self.purge_parts(&parts).await;
        }
        for backup in &removed {
            self.log(format!("Deleted backup {}", backup.id));
        }
        Ok(removed.len())
    }

    pub async fn delete_backup(&self, id: &str, delete_files: bool) -> Result<(), BcError> {
        self.backup_record(id)?;
        self.remove_backups(delete_files, |b| b.id == id).await?;
        Ok(())
    }

    /// Deletes every backup of a target, or only its recycled ones.
    pub async fn delete_target_backups(
        &self,
        reference: &str,
        only_recycled: bool,
        delete_files: bool,
    ) -> Result<usize, BcError> {
        let id = self.target(reference)?.id;
        self.remove_backups(delete_files, |b| {
            b.target_id == id && (b.is_recycled || !only_recycled)
        })
        .await
    }

    /// Every recycled backup, newest first.
    pub fn recycle_bin(&self) -> Vec<BackupView> {
        let mut backups: Vec<BackupView> = self
            .lock()
            .backups
            .iter()
            .filter(|b| b.is_recycled)
            .cloned()
            .collect();
        newest_first(&mut backups);
        backups
    }

    pub async fn clear_recycle_bin(&self, delete_files: bool) -> Result<usize, BcError> {
        self.remove_backups(delete_files, |b| b.is_recycled).await
    }

    pub fn stats(&self) -> Stats {
        let state = self.lock();
        let (recycled, live): (Vec<&BackupRecord>, Vec<&BackupRecord>) =
            state.backups.iter().partition(|b| b.is_recycled);
        Stats {
            total_target_size: live.iter().map(|b| b.filesize).sum(),
            total_recycle_bin_size: recycled.iter().map(|b| b.filesize).sum(),
            total_targets: state.targets.len() as u64,
            total_backups: state.backups.len() as u64,
            total_recycled_backups: recycled.len() as u64,
        }
    }
}
