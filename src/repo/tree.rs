//! Directory trees: backing one up as a stream plus a catalog, and restoring it.
//!
//! A tree backup's stream is the concatenation of its regular files in catalog order
//! (depth first, names sorted bytewise, a directory before its contents); each file's
//! catalog entry records where its bytes start. Chunking the concatenation keeps small
//! files together in shared chunks and lets one sequential pass read the whole tree.
//! The walk itself, and the selection of several folders, is `tree_source`.

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use filetime::FileTime;
use tokio::runtime::Handle;

use super::digest::BackgroundVerifier;
use super::file_writers::{create_file, finish_file, FileWriters, MAX_HANDED_OFF};
use super::ingest::{
    now_rfc3339, validate_series, IngestOptions, ManifestDraft, Session, StreamObserver,
};
use super::progress::Progress;
use super::restore::{
    copy_from_piece, data_read_ahead, read_content, unwrap_io, StreamReader,
    CATALOG_READ_AHEAD_UNITS,
};
use super::tree_source::{TreeSelection, TreeSource};
use super::{RepoError, RepoInner, Repository};
use crate::format::catalog::{is_safe_relative_path, CatalogEntry, EntryKind, MAX_LINE_BYTES};
use crate::format::catalog_index::is_inside;
use crate::format::manifest::{BackupKind, BackupManifest, CatalogRef};

impl Repository {
    /// Backs up the directory tree at `root`.
    pub async fn backup_tree(
        &self,
        root: &Path,
        options: IngestOptions,
        progress: Arc<Progress>,
    ) -> Result<(BackupManifest, Vec<String>), RepoError> {
        let root = root.to_path_buf();
        self.backup_source(
            root.display().to_string(),
            options,
            progress,
            move |spool| TreeSource::new(&root, spool),
        )
        .await
    }

    /// Backs up the folders of `selection` as one tree.
    pub async fn backup_selection(
        &self,
        selection: TreeSelection,
        options: IngestOptions,
        progress: Arc<Progress>,
    ) -> Result<(BackupManifest, Vec<String>), RepoError> {
        let name = selection
            .folders
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        self.backup_source(name, options, progress, move |spool| {
            TreeSource::selection(&selection, spool)
        })
        .await
    }

    async fn backup_source(
        &self,
        name: String,
        options: IngestOptions,
        progress: Arc<Progress>,
        source: impl FnOnce(PathBuf) -> Result<TreeSource, RepoError> + Send + 'static,
    ) -> Result<(BackupManifest, Vec<String>), RepoError> {
        validate_series(&options.series)?;
        let inner = self.inner.clone();
        let handle = Handle::current();
        tokio::task::spawn_blocking(move || {
            let source = source(inner.state_dir.join("tmp"))?;
            backup_tree_blocking(inner, handle, source, &name, options, progress)
        })
        .await
        .map_err(|e| RepoError::Internal(format!("tree backup task failed: {e}")))?
    }

    /// Reads a backup's catalog, calling `visit` for each entry in order.
    pub async fn catalog(
        &self,
        manifest: &BackupManifest,
        visit: Box<dyn FnMut(CatalogEntry) -> Result<(), RepoError> + Send>,
    ) -> Result<(), RepoError> {
        let Some(catalog) = manifest.catalog.clone() else {
            return Ok(());
        };
        let inner = self.inner.clone();
        let handle = Handle::current();
        let backup = manifest.id.to_string();
        tokio::task::spawn_blocking(move || {
            for_each_entry(catalog_reader(inner, &handle, &catalog), &backup, visit)
        })
        .await
        .map_err(|e| RepoError::Internal(format!("catalog task failed: {e}")))?
    }

    /// Recreates a tree backup under `target`, which must be missing or empty.
    pub async fn restore_tree(
        &self,
        manifest: &BackupManifest,
        target: &Path,
        progress: Arc<Progress>,
    ) -> Result<u64, RepoError> {
        self.restore_tree_part(manifest, target, None, progress)
            .await
    }

    /// Recreates the entry `item` of a tree backup (a catalog path) and everything
    /// beneath it under `target`, at the same path; all of the backup without `item`.
    /// The whole stream is still read, so its digest is checked end to end.
    pub async fn restore_tree_part(
        &self,
        manifest: &BackupManifest,
        target: &Path,
        item: Option<String>,
        progress: Arc<Progress>,
    ) -> Result<u64, RepoError> {
        if let Some(item) = item.as_deref().filter(|i| !is_safe_relative_path(i)) {
            return Err(RepoError::InvalidInput(format!(
                "{item:?} is not a path of a catalog (relative, without '.' or '..')"
            )));
        }
        if manifest.kind != BackupKind::Tree {
            return Err(RepoError::InvalidInput(format!(
                "backup {} is a stream, not a tree: use get to restore its bytes",
                manifest.id
            )));
        }
        prepare_target(target)?;
        let handle = Handle::current();
        let inner = self.inner.clone();
        let manifest = manifest.clone();
        let target = target.to_path_buf();
        tokio::task::spawn_blocking(move || {
            restore_tree_blocking(inner, handle, &manifest, &target, item, &progress)
        })
        .await
        .map_err(|e| RepoError::Internal(format!("tree restore task failed: {e}")))?
    }
}

fn backup_tree_blocking(
    inner: Arc<RepoInner>,
    handle: Handle,
    mut source: TreeSource,
    name: &str,
    options: IngestOptions,
    progress: Arc<Progress>,
) -> Result<(BackupManifest, Vec<String>), RepoError> {
    let created_at = now_rfc3339();
    source.count_entries(progress.clone());
    let mut session = Session::new(inner, handle, progress);
    let (content, observer) = session
        .ingest(&mut source, StreamObserver::digests_only(options.digests))
        .map_err(|e| match e {
            RepoError::Io { source, .. } => unwrap_io(source, name),
            other => other,
        })?;
    let (digests, _) = observer.finish();
    let (catalog, skipped) = source.into_catalog();
    let catalog = session.store_catalog(catalog)?;
    let draft = ManifestDraft {
        series: options.series,
        kind: BackupKind::Tree,
        created_at,
        source: options.source,
        digests,
        content,
        catalog: Some(catalog),
        tar: None,
    };
    Ok((session.commit(draft)?, skipped))
}

/// A blocking reader over a backup's catalog text (small, so little read-ahead).
fn catalog_reader(inner: Arc<RepoInner>, handle: &Handle, catalog: &CatalogRef) -> StreamReader {
    let content = &catalog.content;
    StreamReader::new(
        handle,
        read_content(inner, content, 0..content.size, CATALOG_READ_AHEAD_UNITS),
    )
}

/// Reads catalog lines from `reader`, decoding and checking each.
pub(super) fn for_each_entry(
    reader: impl Read,
    backup: &str,
    mut visit: impl FnMut(CatalogEntry) -> Result<(), RepoError>,
) -> Result<(), RepoError> {
    let mut reader = BufReader::with_capacity(1 << 20, reader);
    let mut line = Vec::new();
    while let Some((entry, _)) = read_entry(&mut reader, &mut line, backup)? {
        visit(entry)?;
    }
    Ok(())
}

/// Reads and checks the next catalog line, with the bytes it took; `None` at the end.
pub(super) fn read_entry(
    reader: &mut impl BufRead,
    line: &mut Vec<u8>,
    backup: &str,
) -> Result<Option<(CatalogEntry, u64)>, RepoError> {
    let Some(taken) = read_line(reader, line, backup)? else {
        return Ok(None);
    };
    Ok(Some((decode_entry(line, backup)?, taken)))
}

/// Reads the next catalog line into `line` without its `\n`, refusing an unterminated or
/// overlong one; the bytes it took, or `None` at the end.
pub(super) fn read_line(
    reader: &mut impl BufRead,
    line: &mut Vec<u8>,
    backup: &str,
) -> Result<Option<u64>, RepoError> {
    line.clear();
    let n = reader
        .take(MAX_LINE_BYTES as u64 + 1)
        .read_until(b'\n', line)
        .map_err(|e| unwrap_io(e, "catalog"))?;
    if n == 0 {
        return Ok(None);
    }
    if line.last() != Some(&b'\n') {
        return Err(RepoError::CorruptCatalog {
            backup: backup.to_string(),
            reason: "unterminated or overlong line".into(),
        });
    }
    line.pop();
    Ok(Some(n as u64))
}

/// Decodes and checks one catalog line.
pub(super) fn decode_entry(line: &[u8], backup: &str) -> Result<CatalogEntry, RepoError> {
    CatalogEntry::decode_line(line).map_err(|e| RepoError::CorruptCatalog {
        backup: backup.to_string(),
        reason: e.to_string(),
    })
}

fn prepare_target(target: &Path) -> Result<(), RepoError> {
    match fs::read_dir(target) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(RepoError::InvalidInput(format!(
                    "restore target {} is not empty",
                    target.display()
                )));
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(target).map_err(|e| RepoError::io(target, e))
        }
        Err(e) => Err(RepoError::io(target, e)),
    }
}

/// Metadata applied after all content is written: directories (whose mtimes change as
/// files are created in them) and symlinks (created last, so no file is ever written
/// through a link the backup itself planted).
struct Deferred {
    dirs: Vec<CatalogEntry>,
    links: Vec<CatalogEntry>,
}

fn restore_tree_blocking(
    inner: Arc<RepoInner>,
    handle: Handle,
    manifest: &BackupManifest,
    target: &Path,
    item: Option<String>,
    progress: &Arc<Progress>,
) -> Result<u64, RepoError> {
    let catalog = manifest
        .catalog
        .clone()
        .ok_or_else(|| RepoError::CorruptCatalog {
            backup: manifest.id.to_string(),
            reason: "tree backup has no catalog".into(),
        })?;
    progress.set_total(manifest.size);
    progress.set_files_total(catalog.entries);
    let data_stream = read_content(
        inner.clone(),
        &manifest.content,
        0..manifest.size,
        data_read_ahead(&inner),
    );
    let mut data = VerifyingReader {
        inner: StreamReader::new(&handle, data_stream),
        verifier: BackgroundVerifier::start(manifest),
        current: Bytes::new(),
        read: 0,
    };
    let catalog_lines = catalog_reader(inner, &handle, &catalog);
    let mut deferred = Deferred {
        dirs: Vec::new(),
        links: Vec::new(),
    };
    let mut writers = FileWriters::start(progress.clone());
    // The folders above the item are not restored; its place under the target is made.
    if let Some(parent) = item.as_deref().and_then(|i| Path::new(i).parent()) {
        let above = target.join(parent);
        fs::create_dir_all(&above).map_err(|e| RepoError::io(&above, e))?;
    }
    let mut chosen = 0u64;
    for_each_entry(catalog_lines, manifest.id.as_str(), |entry| {
        progress.check()?;
        let wanted = item
            .as_deref()
            .is_none_or(|item| entry.path == item || is_inside(&entry.path, item));
        if !wanted {
            // Read all the same: the stream's digest covers every byte.
            if entry.kind == EntryKind::File {
                let passed = io::copy(&mut data.by_ref().take(entry.size), &mut io::sink())
                    .map_err(|e| unwrap_io(e, "backup data"))?;
                if passed != entry.size {
                    return Err(RepoError::CorruptCatalog {
                        backup: manifest.id.to_string(),
                        reason: format!(
                            "{} should hold {} bytes, the stream ended after {passed}",
                            entry.path, entry.size
                        ),
                    });
                }
                progress.add_done(entry.size);
            }
            return Ok(());
        }
        chosen += 1;
        restore_entry(
            target,
            manifest.id.as_str(),
            entry,
            &mut data,
            &mut deferred,
            &mut writers,
            progress,
        )?;
        // Counted once handed on: a small file's writer may still be busy with it.
        progress.add_files_done(1);
        Ok(())
    })?;
    writers.finish()?;
    let mut rest = [0u8; 1];
    if data
        .read(&mut rest)
        .map_err(|e| unwrap_io(e, "backup data"))?
        != 0
    {
        return Err(RepoError::CorruptCatalog {
            backup: manifest.id.to_string(),
            reason: "the catalog accounts for fewer bytes than the backup holds".into(),
        });
    }
    let read = data.read;
    data.verifier.verify(manifest)?;
    if let (Some(item), 0) = (&item, chosen) {
        return Err(RepoError::InvalidInput(format!(
            "backup {} has no entry {item:?}",
            manifest.id
        )));
    }
    apply_deferred(target, deferred)?;
    Ok(read)
}

/// The restored stream as a [`Read`], each piece handed whole to the digest check on its
/// own thread as it arrives.
struct VerifyingReader {
    inner: StreamReader,
    verifier: BackgroundVerifier,
    current: Bytes,
    read: u64,
}

impl Read for VerifyingReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        // A loop, not a test: an empty piece is not the end of the stream.
        while self.current.is_empty() {
            match self.inner.next_piece().map_err(io::Error::other)? {
                Some(piece) => {
                    self.verifier.update(piece.clone());
                    self.current = piece;
                }
                None => return Ok(0),
            }
        }
        let n = copy_from_piece(&mut self.current, out);
        self.read += n as u64;
        Ok(n)
    }
}

fn restore_entry(
    root: &Path,
    backup: &str,
    entry: CatalogEntry,
    data: &mut impl Read,
    deferred: &mut Deferred,
    writers: &mut FileWriters,
    progress: &Progress,
) -> Result<(), RepoError> {
    let path = root.join(&entry.path);
    let short = |copied: u64, entry: &CatalogEntry| RepoError::CorruptCatalog {
        backup: backup.to_string(),
        reason: format!(
            "{} should hold {} bytes, the stream ended after {copied}",
            entry.path, entry.size
        ),
    };
    match entry.kind {
        EntryKind::Dir => {
            fs::create_dir_all(&path).map_err(|e| RepoError::io(&path, e))?;
            deferred.dirs.push(entry);
        }
        EntryKind::File if entry.size <= MAX_HANDED_OFF => {
            // Small files are read whole and written by the writer threads.
            let mut bytes = Vec::with_capacity(entry.size as usize);
            data.by_ref()
                .take(entry.size)
                .read_to_end(&mut bytes)
                .map_err(|e| unwrap_io(e, "backup data"))?;
            if bytes.len() as u64 != entry.size {
                return Err(short(bytes.len() as u64, &entry));
            }
            writers.write(path, entry, bytes)?;
        }
        EntryKind::File => {
            let mut file = create_file(&path, &entry)?;
            let copied = copy_cancellable(
                &mut data.by_ref().take(entry.size),
                &mut file,
                &path,
                progress,
            )?;
            if copied != entry.size {
                return Err(short(copied, &entry));
            }
            finish_file(&file, &path, &entry)?;
        }
        EntryKind::Symlink => deferred.links.push(entry),
        EntryKind::Hardlink | EntryKind::Other => {
            tracing::warn!("not restoring special file {}", entry.path);
        }
    }
    Ok(())
}

/// Copies one file's bytes, counting progress and checking for cancellation per read,
/// so cancelling a restore does not wait for a large file to end.
fn copy_cancellable(
    reader: &mut impl Read,
    file: &mut File,
    path: &Path,
    progress: &Progress,
) -> Result<u64, RepoError> {
    let mut buffer = vec![0u8; 64 << 10];
    let mut copied = 0u64;
    loop {
        progress.check()?;
        let n = match reader.read(&mut buffer) {
            Ok(0) => return Ok(copied),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(unwrap_io(e, &path.display().to_string())),
        };
        file.write_all(&buffer[..n])
            .map_err(|e| RepoError::io(path, e))?;
        copied += n as u64;
        progress.add_done(n as u64);
    }
}

fn apply_metadata(path: &Path, entry: &CatalogEntry) -> Result<(), RepoError> {
    if is_root() {
        std::os::unix::fs::lchown(path, Some(entry.uid), Some(entry.gid))
            .map_err(|e| RepoError::io(path, e))?;
    }
    if entry.kind != EntryKind::Symlink {
        fs::set_permissions(path, fs::Permissions::from_mode(entry.mode))
            .map_err(|e| RepoError::io(path, e))?;
    }
    let mtime = FileTime::from_unix_time(entry.mtime, entry.mtime_nsec);
    filetime::set_symlink_file_times(path, mtime, mtime).map_err(|e| RepoError::io(path, e))
}

// One of the documented places with unsafe code.
#[allow(unsafe_code)]
pub(super) fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Refuses to create `relative` under `root` when one of its existing ancestors is a
/// symlink (a link created earlier in the restore): following it could write outside
/// the restore target.
fn refuse_symlink_ancestors(root: &Path, relative: &str) -> Result<(), RepoError> {
    let mut path = root.to_path_buf();
    let components: Vec<&str> = relative.split('/').collect();
    for part in &components[..components.len().saturating_sub(1)] {
        path.push(part);
        match fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(RepoError::InvalidInput(format!(
                    "refusing to restore {relative}: its parent {} is a symlink",
                    path.display()
                )))
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(RepoError::io(&path, e)),
        }
    }
    Ok(())
}

fn apply_deferred(root: &Path, deferred: Deferred) -> Result<(), RepoError> {
    for link in &deferred.links {
        let path = root.join(&link.path);
        let target = link.link.as_deref().unwrap_or_default();
        refuse_symlink_ancestors(root, &link.path)?;
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|e| RepoError::io(parent, e))?;
        }
        std::os::unix::fs::symlink(target, &path).map_err(|e| RepoError::io(&path, e))?;
        apply_metadata(&path, link)?;
    }
    // Deepest first, so setting a directory's mtime is not undone by its children.
    for dir in deferred.dirs.iter().rev() {
        apply_metadata(&root.join(&dir.path), dir)?;
    }
    Ok(())
}
