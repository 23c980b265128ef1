//! Backups of targets: ingesting uploaded files into the target's series (each file one
//! stowage backup, ingested while the request body streams in), recording a backup once
//! every file of an upload is durable, the recycle bin, deletion, downloads (a single
//! target's file as stored; a multi target's files as one tar, uploaded tar archives
//! extracted, written by a task while the files are read) and statistics.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use sha2::{Digest, Sha256};

use super::archive::Entry;
use super::store::{BackupRecord, Part};
use super::targets::{expand_template, iso, TargetType};
use super::{archive, now, series_of, BackupchanService, BcError};
use crate::format::catalog::{CatalogEntry, EntryKind};
use crate::format::manifest::{BackupManifest, TarEncoding};
use crate::repo::ingest::IngestOptions;
use crate::repo::Progress;

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

/// A backup's bytes as served.
pub struct Download {
    pub filename: String,
    pub size: u64,
    pub stream: BoxStream<'static, Result<Bytes, BcError>>,
}

/// Catalog entries beyond which an uploaded archive is served as uploaded, not extracted
/// (its entries are held in memory while the download runs).
pub const MAX_EXTRACTED_ENTRIES: u64 = 100_000;

/// One file of a multi backup in its download.
enum Member {
    File {
        manifest: BackupManifest,
        entry: Entry,
    },
    /// A tar archive's entries, each with its content's offset in the tar stream.
    Archive {
        manifest: BackupManifest,
        gzip: bool,
        entries: Vec<(Entry, u64)>,
    },
}

impl Member {
    fn len(&self) -> u64 {
        match self {
            Member::File { entry, .. } => archive::entry_len(entry),
            Member::Archive { entries, .. } => {
                entries.iter().map(|(e, _)| archive::entry_len(e)).sum()
            }
        }
    }
}

/// The archive entry of a catalog entry; devices and fifos are left out.
fn catalog_entry(e: CatalogEntry) -> Option<(Entry, u64)> {
    let (kind, name, size) = match e.kind {
        EntryKind::File => (archive::FILE, e.path, e.size),
        EntryKind::Dir => (
            archive::DIR,
            format!("{}/", e.path.trim_end_matches('/')),
            0,
        ),
        EntryKind::Symlink => (archive::SYMLINK, e.path, 0),
        EntryKind::Hardlink => (archive::HARDLINK, e.path, 0),
        EntryKind::Other => return None,
    };
    let offset = match kind {
        archive::FILE => e.offset?,
        _ => 0,
    };
    let entry = Entry {
        name,
        size,
        mode: e.mode,
        mtime: e.mtime,
        kind,
        link: e.link,
    };
    Some((entry, offset))
}

/// The sending side of a download; fails once the client is gone.
struct Out(tokio::sync::mpsc::Sender<Result<Bytes, BcError>>);

impl Out {
    async fn send(&self, bytes: impl Into<Bytes>) -> Result<(), BcError> {
        self.0
            .send(Ok(bytes.into()))
            .await
            .map_err(|_| BcError::Invalid("the download was abandoned".into()))
    }
}

/// Compressed input fed to the gzip decoder per step, which bounds the output of a step
/// (deflate expands at most about a thousandfold).
const GZIP_STEP: usize = 4096;

/// The tar stream of an archive backup, decompressed step by step when gzip.
struct TarStream {
    backup: String,
    source: BoxStream<'static, Result<Bytes, crate::repo::RepoError>>,
    gzip: Option<flate2::write::MultiGzDecoder<Vec<u8>>>,
    input: Bytes,
    finished: bool,
    current: Bytes,
}

impl TarStream {
    fn new(
        backup: &str,
        source: BoxStream<'static, Result<Bytes, crate::repo::RepoError>>,
        gzip: bool,
    ) -> TarStream {
        TarStream {
            backup: backup.to_string(),
            source,
            gzip: gzip.then(|| flate2::write::MultiGzDecoder::new(Vec::new())),
            input: Bytes::new(),
            finished: false,
            current: Bytes::new(),
        }
    }

    fn corrupt(&self, error: std::io::Error) -> BcError {
        BcError::Io {
            path: format!("backup {}", self.backup),
            source: error,
        }
    }

    /// The next piece of the tar stream; `None` at its end.
    async fn next_piece(&mut self) -> Result<Option<Bytes>, BcError> {
        use std::io::Write;
        let Some(mut decoder) = self.gzip.take() else {
            return Ok(self.source.next().await.transpose()?);
        };
        let outcome = loop {
            if !self.input.is_empty() {
                let step = self.input.split_to(self.input.len().min(GZIP_STEP));
                if let Err(e) = decoder.write_all(&step) {
                    break Err(self.corrupt(e));
                }
            } else {
                match self.source.next().await {
                    Some(Ok(chunk)) => self.input = chunk,
                    Some(Err(e)) => break Err(e.into()),
                    None if self.finished => break Ok(None),
                    None => {
                        self.finished = true;
                        if let Err(e) = decoder.try_finish() {
                            break Err(self.corrupt(e));
                        }
                    }
                }
            }
            if !decoder.get_ref().is_empty() {
                break Ok(Some(Bytes::from(std::mem::take(decoder.get_mut()))));
            }
        };
        self.gzip = Some(decoder);
        outcome
    }

    /// Passes exactly `len` bytes on to `out`, or skips them when `out` is `None`.
    async fn take(&mut self, mut len: u64, out: Option<&Out>) -> Result<(), BcError> {
        while len > 0 {
            if self.current.is_empty() {
                self.current = self.next_piece().await?.ok_or_else(|| {
                    BcError::Invalid(format!(
                        "backup {} ends before its catalog says",
                        self.backup
                    ))
                })?;
            }
            let piece = self
                .current
                .split_to(self.current.len().min(len.min(usize::MAX as u64) as usize));
            len -= piece.len() as u64;
            if let Some(out) = out {
                out.send(piece).await?;
            }
        }
        Ok(())
    }
}

async fn write_members(
    repo: &crate::repo::Repository,
    members: Vec<Member>,
    out: &Out,
) -> Result<(), BcError> {
    for member in members {
        match member {
            Member::File { manifest, entry } => {
                out.send(archive::entry_header(&entry)).await?;
                let mut stream = repo.read_backup(&manifest, None)?;
                while let Some(piece) = stream.next().await {
                    out.send(piece?).await?;
                }
                out.send(archive::pad(entry.size)).await?;
            }
            Member::Archive {
                manifest,
                gzip,
                entries,
            } => {
                let source = repo.read_backup(&manifest, None)?;
                let mut tar = TarStream::new(&manifest.id, source, gzip);
                let mut position = 0u64;
                for (entry, offset) in entries {
                    out.send(archive::entry_header(&entry)).await?;
                    if entry.kind != archive::FILE {
                        continue;
                    }
                    let skip = offset.checked_sub(position).ok_or_else(|| {
                        BcError::Invalid(format!(
                            "backup {} has a catalog out of order",
                            manifest.id
                        ))
                    })?;
                    tar.take(skip, None).await?;
                    tar.take(entry.size, Some(out)).await?;
                    position = offset + entry.size;
                    out.send(archive::pad(entry.size)).await?;
                }
            }
        }
    }
    out.send(archive::end_marker()).await
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

/// The hash of a backup: the file's sha256 (single), or the sha256 of each file's
/// relative path and sha256 in path order (multi).
fn backup_hash(target_type: TargetType, parts: &[Part]) -> String {
    match (target_type, parts) {
        (TargetType::Single, [part]) => part.sha256.clone(),
        _ => {
            let mut sorted: Vec<&Part> = parts.iter().collect();
            sorted.sort_by(|a, b| a.name.cmp(&b.name));
            let mut hash = Sha256::new();
            for part in sorted {
                hash.update(part.name.as_bytes());
                hash.update([0]);
                hash.update(part.sha256.as_bytes());
                hash.update([b'\n']);
            }
            hex::encode(hash.finalize())
        }
    }
}

/// `Path.suffix` of a file name: its last extension with the dot, or nothing.
fn suffix(name: &str) -> &str {
    let base = name.rsplit('/').next().unwrap_or(name);
    match base.rfind('.') {
        Some(0) | None => "",
        Some(i) if i + 1 == base.len() => "",
        Some(i) => &base[i..],
    }
}

/// A file name safe in `Content-Disposition`.
fn header_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_control() || matches!(c, '"' | '\\' | '/' | ';') {
                '_'
            } else {
                c
            }
        })
        .collect()
}

/// Newest first; of backups made in the same second, the one recorded last first.
fn newest_first(backups: &mut [BackupRecord]) {
    backups.reverse();
    backups.sort_by(|a, b| b.created_at.cmp(&a.created_at));
}

impl BackupchanService {
    /// Starts ingesting one uploaded file of `target_id` from `reader`.
    pub fn start_part(
        self: &Arc<Self>,
        target_id: &str,
        name: String,
        reader: Box<dyn Read + Send>,
    ) -> PendingPart {
        let service = self.clone();
        let series = series_of(target_id);
        PendingPart(tokio::spawn(async move {
            service.ingest(&series, name, reader).await
        }))
    }

    /// Ingests one file into a series.
    pub(super) async fn ingest(
        &self,
        series: &str,
        name: String,
        reader: Box<dyn Read + Send>,
    ) -> Result<Part, BcError> {
        let source = Path::new(&name)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "-".into());
        let options = IngestOptions::new(series, source);
        let manifest = self
            .repo
            .backup_stream(reader, options, Arc::new(Progress::new()))
            .await?;
        Ok(Part {
            name,
            backup: manifest.id,
            size: manifest.size,
            sha256: manifest.sha256,
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
        tokio::spawn(async move {
            let outcome = service.gather(pending).await;
            let outcome = match outcome {
                Ok(parts) => service.record_backup(&target_id, manual, parts).await,
                Err(error) => Err(error),
            };
            match &outcome {
                Ok(id) => service.log(format!("Uploaded backup {id} to target {target_id}")),
                Err(error) => service.log(format!("Upload to target {target_id} failed: {error}")),
            }
            service.end_job(job, outcome.map(|_| ()).map_err(|e| e.to_string()));
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
        let recorded = {
            let mut state = self.lock();
            match state.targets.iter().find(|t| t.id == target_id) {
                None => {
                    // A finished sequential upload left the state in memory only.
                    self.save_logged(&state);
                    Err(BcError::target(target_id))
                }
                Some(target) => {
                    let id = uuid::Uuid::new_v4().to_string();
                    let record = BackupRecord {
                        id: id.clone(),
                        target_id: target_id.to_string(),
                        created_at: iso(now()),
                        manual,
                        is_recycled: false,
                        filesize: parts.iter().map(|p| p.size).sum(),
                        hash: backup_hash(target.target_type, &parts),
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

    fn backup_record(&self, id: &str) -> Result<BackupRecord, BcError> {
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

    /// A backup's bytes: a single target's file named by the template plus the uploaded
    /// file's suffix, or a multi target's files (archives extracted) as
    /// `<target name>_<backup id>.tar`.
    pub async fn download(&self, id: &str) -> Result<Download, BcError> {
        let record = self.backup_record(id)?;
        let target = self.target(&record.target_id)?;
        let mut manifests = Vec::new();
        for part in &record.parts {
            manifests.push(self.repo.backup(&part.backup)?);
        }
        match (target.target_type, manifests.as_slice()) {
            (TargetType::Single, [manifest]) => {
                let name = expand_template(
                    &target.name_template,
                    &record.id,
                    &record.created_at,
                    record.manual,
                );
                let stream = self.repo.read_backup(manifest, None)?;
                Ok(Download {
                    filename: header_safe(&format!("{name}{}", suffix(&record.parts[0].name))),
                    size: manifest.size,
                    stream: stream.map(|r| r.map_err(BcError::from)).boxed(),
                })
            }
            _ => {
                let mtime =
                    chrono::NaiveDateTime::parse_from_str(&record.created_at, "%Y-%m-%dT%H:%M:%S")
                        .map(|t| t.and_utc().timestamp())
                        .unwrap_or(0);
                let mut members = Vec::new();
                for (part, manifest) in record.parts.iter().zip(manifests) {
                    members.push(self.member(part, manifest, mtime).await?);
                }
                let size = members.iter().map(Member::len).sum::<u64>()
                    + archive::end_marker().len() as u64;
                Ok(Download {
                    filename: header_safe(&format!("{}_{}.tar", target.name, record.id)),
                    size,
                    stream: self.stream_members(members),
                })
            }
        }
    }

    /// How a file of a multi backup enters the download: its entries when stowage
    /// recognised it as a tar archive (and its catalog is not too long), else itself.
    async fn member(
        &self,
        part: &Part,
        manifest: BackupManifest,
        mtime: i64,
    ) -> Result<Member, BcError> {
        let catalog_entries = manifest.catalog.as_ref().map(|c| c.entries);
        let extract =
            manifest.tar.is_some() && catalog_entries.is_some_and(|n| n <= MAX_EXTRACTED_ENTRIES);
        if !extract {
            let entry = Entry {
                name: part.name.clone(),
                size: manifest.size,
                mode: 0o644,
                mtime,
                kind: archive::FILE,
                link: None,
            };
            return Ok(Member::File { manifest, entry });
        }
        let collected = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = collected.clone();
        self.repo
            .catalog(
                &manifest,
                Box::new(move |e| {
                    if let Some(entry) = catalog_entry(e) {
                        sink.lock().unwrap_or_else(|p| p.into_inner()).push(entry);
                    }
                    Ok(())
                }),
            )
            .await?;
        let entries = std::mem::take(&mut *collected.lock().unwrap_or_else(|p| p.into_inner()));
        let gzip = manifest.tar == Some(TarEncoding::Gzip);
        Ok(Member::Archive {
            manifest,
            gzip,
            entries,
        })
    }

    /// Streams the archive, written by a task into a bounded channel.
    fn stream_members(&self, members: Vec<Member>) -> BoxStream<'static, Result<Bytes, BcError>> {
        let (sender, receiver) = tokio::sync::mpsc::channel(16);
        let repo = self.repo.clone();
        tokio::spawn(async move {
            let out = Out(sender);
            if let Err(error) = write_members(&repo, members, &out).await {
                let _ = out.0.send(Err(error)).await;
            }
        });
        futures::stream::unfold(receiver, |mut receiver| async move {
            receiver.recv().await.map(|item| (item, receiver))
        })
        .boxed()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_like_pathlib() {
        assert_eq!(suffix("x.tar.gz"), ".gz");
        assert_eq!(suffix("dump.sql"), ".sql");
        assert_eq!(suffix(".bashrc"), "");
        assert_eq!(suffix("README"), "");
        assert_eq!(suffix("a."), "");
    }
}
