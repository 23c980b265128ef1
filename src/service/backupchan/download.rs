//! Downloads: a single target's file as stored, named by the target's template; a multi
//! target's files as one tar whose length is known before the first byte, written by a
//! task into a bounded channel while the files are read. A file that stowage recognised
//! as a tar archive (plain or gzip) contributes its entries instead of itself, as the
//! real server extracts uploaded archives; gzip is decompressed a step at a time.

use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use sha2::{Digest, Sha256};

use super::store::Part;
use super::targets::{expand_template, TargetType};
use super::{BackupchanService, BcError};
use crate::format::catalog::{CatalogEntry, EntryKind};
use crate::format::manifest::{BackupManifest, TarEncoding};
use crate::format::tar::writer::{self, Entry};

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
            Member::File { entry, .. } => writer::entry_len(entry),
            Member::Archive { entries, .. } => {
                entries.iter().map(|(e, _)| writer::entry_len(e)).sum()
            }
        }
    }
}

/// The archive entry of a catalog entry; devices and fifos are left out.
fn catalog_entry(e: CatalogEntry) -> Option<(Entry, u64)> {
    let (kind, name, size) = match e.kind {
        EntryKind::File => (writer::FILE, e.path, e.size),
        EntryKind::Dir => (writer::DIR, format!("{}/", e.path.trim_end_matches('/')), 0),
        EntryKind::Symlink => (writer::SYMLINK, e.path, 0),
        EntryKind::Hardlink => (writer::HARDLINK, e.path, 0),
        EntryKind::Other => return None,
    };
    let offset = match kind {
        writer::FILE => e.offset?,
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
    /// Bytes of the tar stream taken so far.
    position: u64,
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
            position: 0,
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

    /// Passes the `len` bytes at `offset` of the tar stream on to `sink`, skipping what
    /// lies before; offsets only move forward (a catalog lists its entries in order).
    async fn take_at(&mut self, offset: u64, len: u64, sink: Sink<'_>) -> Result<(), BcError> {
        let skip = offset.checked_sub(self.position).ok_or_else(|| {
            BcError::Invalid(format!("backup {} has a catalog out of order", self.backup))
        })?;
        self.take(skip, Sink::Skip).await?;
        self.take(len, sink).await
    }

    /// Passes exactly the next `len` bytes on to `sink`.
    async fn take(&mut self, mut len: u64, mut sink: Sink<'_>) -> Result<(), BcError> {
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
            self.position += piece.len() as u64;
            match &mut sink {
                Sink::Skip => {}
                Sink::Send(out) => out.send(piece).await?,
                Sink::Hash(hash) => hash.update(&piece),
            }
        }
        Ok(())
    }
}

/// Where [`TarStream::take`] puts the bytes it takes.
enum Sink<'a> {
    Skip,
    Send(&'a Out),
    Hash(&'a mut Sha256),
}

async fn write_members(
    repo: &crate::repo::Repository,
    members: Vec<Member>,
    out: &Out,
) -> Result<(), BcError> {
    for member in members {
        match member {
            Member::File { manifest, entry } => {
                out.send(writer::entry_header(&entry)).await?;
                let mut stream = repo.read_backup(&manifest, None)?;
                while let Some(piece) = stream.next().await {
                    out.send(piece?).await?;
                }
                out.send(writer::pad(entry.size)).await?;
            }
            Member::Archive {
                manifest,
                gzip,
                entries,
            } => {
                let source = repo.read_backup(&manifest, None)?;
                let mut tar = TarStream::new(manifest.id.as_str(), source, gzip);
                for (entry, offset) in entries {
                    out.send(writer::entry_header(&entry)).await?;
                    if entry.kind != writer::FILE {
                        continue;
                    }
                    tar.take_at(offset, entry.size, Sink::Send(out)).await?;
                    out.send(writer::pad(entry.size)).await?;
                }
            }
        }
    }
    out.send(writer::end_marker()).await
}

/// A member's path as it lies in the extracted folder: without leading `./` or `/`.
fn relative(name: &str) -> String {
    let mut rest = name;
    loop {
        let trimmed = rest.trim_start_matches('/');
        match trimmed.strip_prefix("./") {
            Some(next) => rest = next,
            None => return trimmed.to_string(),
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

impl BackupchanService {
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
                let members = self.safe_members(&record.id, members);
                let size = members.iter().map(Member::len).sum::<u64>()
                    + writer::end_marker().len() as u64;
                Ok(Download {
                    filename: header_safe(&format!("{}_{}.tar", target.name, record.id)),
                    size,
                    stream: self.stream_members(members),
                })
            }
        }
    }

    /// Leaves out every entry that could make an extractor write outside the folder it
    /// extracts in (see [`writer::SafeNames`]), logging each.
    fn safe_members(&self, backup: &str, members: Vec<Member>) -> Vec<Member> {
        let mut names = writer::SafeNames::new();
        let mut admitted = |entry: &Entry| match names.admit(entry) {
            Ok(()) => true,
            Err(reason) => {
                self.log(format!(
                    "Download of backup {backup}: left out {:?}: {reason}",
                    entry.name
                ));
                false
            }
        };
        members
            .into_iter()
            .filter_map(|member| match member {
                Member::File { manifest, entry } => {
                    admitted(&entry).then_some(Member::File { manifest, entry })
                }
                Member::Archive {
                    manifest,
                    gzip,
                    mut entries,
                } => {
                    entries.retain(|(entry, _)| admitted(entry));
                    Some(Member::Archive {
                        manifest,
                        gzip,
                        entries,
                    })
                }
            })
            .collect()
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
                kind: writer::FILE,
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

    /// The hash of a multi backup as the real server computes it over the folder it
    /// extracted: SHA-256 over every file's relative path and SHA-256, in path order.
    /// Files stowage recognised as tar archives contribute their files (read back and
    /// hashed), others themselves, so two uploads of the same folder hash alike however
    /// their archives differ (times in a gzip header, member order).
    pub(super) async fn tree_hash(&self, parts: &[Part]) -> Result<String, BcError> {
        let mut files: Vec<(String, String)> = Vec::new();
        for part in parts {
            let manifest = self.repo.backup(&part.backup)?;
            match self.member(part, manifest, 0).await? {
                Member::File { .. } => files.push((part.name.clone(), part.sha256.clone())),
                Member::Archive {
                    manifest,
                    gzip,
                    entries,
                } => {
                    let source = self.repo.read_backup(&manifest, None)?;
                    let mut tar = TarStream::new(manifest.id.as_str(), source, gzip);
                    for (entry, offset) in entries {
                        if entry.kind != writer::FILE {
                            continue;
                        }
                        let mut hash = Sha256::new();
                        tar.take_at(offset, entry.size, Sink::Hash(&mut hash))
                            .await?;
                        files.push((relative(&entry.name), hex::encode(hash.finalize())));
                    }
                }
            }
        }
        files.sort();
        let mut hash = Sha256::new();
        for (path, digest) in files {
            hash.update(path.as_bytes());
            hash.update([0]);
            hash.update(digest.as_bytes());
            hash.update([b'\n']);
        }
        Ok(hex::encode(hash.finalize()))
    }

    /// Streams the archive, written by a task into a bounded channel.
    fn stream_members(&self, members: Vec<Member>) -> BoxStream<'static, Result<Bytes, BcError>> {
        let (sender, receiver) = tokio::sync::mpsc::channel(16);
        let repo = self.repo.clone();
        let tasks = self.tasks.clone();
        self.tasks.spawn(async move {
            let out = Out(sender);
            // On shutdown the download stops; its client sees the body end early.
            tokio::select! {
                written = write_members(&repo, members, &out) => {
                    if let Err(error) = written {
                        let _ = out.0.send(Err(error)).await;
                    }
                }
                _ = tasks.cancelled() => {}
            }
        });
        futures::stream::unfold(receiver, |mut receiver| async move {
            receiver.recv().await.map(|item| (item, receiver))
        })
        .boxed()
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
