//! One folder of a backup, with everything inside it, as a tar archive streamed while it
//! is read: the folder's catalog entries become headers (names start at the folder's own
//! name) and its files' bytes are read from the backup's stream in one pass, since a
//! catalog's file offsets only grow along it (a tree's files are its stream in catalog
//! order; a tar's are in archive order).
//!
//! Nothing the archive holds can escape the folder it is extracted in. A tree's catalog in
//! path order (one with an index) is checked to stay in order as it is read; then an entry
//! beneath a symbolic link would follow that link at once, so remembering the last link is
//! enough and memory stays flat. A tar archive's catalog (its names and links came from
//! whoever made the archive) and an older unindexed catalog go through `SafeNames`, which
//! remembers every name written.

use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use tokio::runtime::Handle;
use tokio::sync::mpsc::Sender;

use super::catalog_lookup::CatalogCursor;
use super::restore::{data_read_ahead, read_content, StreamReader};
use super::{RepoError, RepoInner, Repository};
use crate::format::catalog::{is_safe_relative_path, CatalogEntry, EntryKind};
use crate::format::catalog_index::{is_inside, path_cmp};
use crate::format::manifest::{BackupKind, BackupManifest, TarEncoding};
use crate::format::tar::writer::{self, end_marker, entry_header, pad, SafeNames};

/// Pieces of the archive in flight to the reader.
const PIECES_IN_FLIGHT: usize = 8;

/// A gap between two files' bytes longer than this starts a new read at the next file
/// instead of reading through it.
const JUMP_GAP: u64 = 8 << 20;

impl Repository {
    /// The folder `dir` of a backup (`""`: the whole tree) and everything inside it, as a
    /// tar stream. Refused for a backup without a catalog, for a gzip tar archive (its
    /// files are not read one by one), and for a folder the catalog does not hold.
    pub async fn folder_tar(
        &self,
        manifest: &BackupManifest,
        dir: &str,
    ) -> Result<BoxStream<'static, Result<Bytes, RepoError>>, RepoError> {
        if manifest.catalog.is_none() {
            return Err(RepoError::InvalidInput(format!(
                "backup {} has no catalog (neither a tree nor a tar stream)",
                manifest.id
            )));
        }
        if manifest.tar == Some(TarEncoding::Gzip) {
            return Err(RepoError::InvalidInput(
                "the files of a gzip tar archive are not read one by one; download the whole backup"
                    .into(),
            ));
        }
        if !dir.is_empty() {
            let folder = self.catalog_entry(manifest, dir).await?;
            if !folder.is_some_and(|entry| entry.kind == EntryKind::Dir) {
                return Err(RepoError::InvalidInput(format!(
                    "backup {} holds no folder {dir:?}",
                    manifest.id
                )));
            }
        }
        let (sender, receiver) = tokio::sync::mpsc::channel(PIECES_IN_FLIGHT);
        let (inner, handle) = (self.inner.clone(), Handle::current());
        let (manifest, dir) = (manifest.clone(), dir.to_string());
        // Ends at its next piece once the stream is dropped: each of its readers stops
        // fetching when dropped.
        tokio::task::spawn_blocking(move || {
            let out = sender.clone();
            if let Err(error) = write_folder(inner, handle, &manifest, &dir, &out) {
                let _ = sender.blocking_send(Err(error));
            }
        });
        Ok(
            futures::stream::unfold(receiver, |mut receiver| async move {
                receiver.recv().await.map(|item| (item, receiver))
            })
            .boxed(),
        )
    }
}

/// The reader went away: stop quietly.
struct Gone;

fn send(out: &Sender<Result<Bytes, RepoError>>, bytes: impl Into<Bytes>) -> Result<(), Gone> {
    out.blocking_send(Ok(bytes.into())).map_err(|_| Gone)
}

fn write_folder(
    inner: Arc<RepoInner>,
    handle: Handle,
    manifest: &BackupManifest,
    dir: &str,
    out: &Sender<Result<Bytes, RepoError>>,
) -> Result<(), RepoError> {
    let Some(mut cursor) = CatalogCursor::open(inner.clone(), handle.clone(), manifest)? else {
        return Ok(());
    };
    let corrupt = |reason: String| RepoError::CorruptCatalog {
        backup: manifest.id.to_string(),
        reason,
    };
    let ordered = cursor.is_indexed();
    let guarded_by_order = ordered && manifest.kind == BackupKind::Tree;
    // Names in the archive start at the folder's own name.
    let strip = dir
        .rsplit_once('/')
        .map_or(0, |(parent, _)| parent.len() + 1);
    let mut guard = NameGuard::new(guarded_by_order);
    let mut data = DataReader {
        inner,
        handle,
        manifest,
        reader: None,
        position: 0,
        pending: Bytes::new(),
    };
    cursor.seek_to(|p| path_cmp(p, dir).is_ge() || dir.is_empty());
    while let Some(entry) = cursor.next()? {
        let inside = entry.path == dir || is_inside(&entry.path, dir);
        if !inside {
            if ordered && path_cmp(&entry.path, dir).is_gt() {
                break;
            }
            continue;
        }
        let Some(name) = entry.path.get(strip..).filter(|n| is_safe_relative_path(n)) else {
            continue;
        };
        let Some(header) = tar_entry(&entry, name, dir) else {
            continue;
        };
        if let Err(reason) = guard.admit(&entry.path, &header) {
            tracing::warn!(backup = %manifest.id, %reason, "left out of a folder download");
            continue;
        }
        if send(out, entry_header(&header)).is_err() {
            return Ok(());
        }
        if header.kind == writer::FILE && header.size > 0 {
            let offset = entry
                .offset
                .ok_or_else(|| corrupt(format!("file {:?} has no offset", entry.path)))?;
            match data.copy(offset, header.size, out) {
                Ok(true) => {}
                Ok(false) => return Ok(()),
                Err(error) => return Err(error),
            }
            if send(out, pad(header.size)).is_err() {
                return Ok(());
            }
        }
    }
    let _ = send(out, end_marker());
    Ok(())
}

/// The tar header of a catalog entry of the folder `dir`, named `name`; `None` for what a
/// tar does not carry as data (devices, fifos, sockets).
fn tar_entry(entry: &CatalogEntry, name: &str, dir: &str) -> Option<writer::Entry> {
    let strip = entry.path.len() - name.len();
    let (kind, size, link) = match entry.kind {
        EntryKind::File => (writer::FILE, entry.size, None),
        EntryKind::Dir => (writer::DIR, 0, None),
        EntryKind::Symlink => (writer::SYMLINK, 0, entry.link.clone()),
        // A hard link's target is a path of the backup: renamed like the entries when it
        // lies in the folder, else none (and `SafeNames` leaves the link out).
        EntryKind::Hardlink => (
            writer::HARDLINK,
            0,
            entry
                .link
                .as_deref()
                .filter(|target| is_inside(target, dir))
                .and_then(|target| target.get(strip..))
                .map(str::to_string),
        ),
        EntryKind::Other => return None,
    };
    let name = match kind {
        writer::DIR => format!("{name}/"),
        _ => name.to_string(),
    };
    Some(writer::Entry {
        name,
        size,
        mode: entry.mode,
        mtime: entry.mtime,
        kind,
        link,
    })
}

/// Keeps the archive inside its folder: in a tree's catalog in path order, checked as it
/// goes, with the last symbolic link alone; otherwise with `SafeNames`.
enum NameGuard {
    Ordered {
        previous: Option<String>,
        last_link: Option<String>,
    },
    Any(Box<SafeNames>),
}

impl NameGuard {
    fn new(ordered: bool) -> NameGuard {
        if ordered {
            NameGuard::Ordered {
                previous: None,
                last_link: None,
            }
        } else {
            NameGuard::Any(Box::default())
        }
    }

    fn admit(&mut self, path: &str, header: &writer::Entry) -> Result<(), String> {
        match self {
            NameGuard::Any(names) => names.admit(header),
            NameGuard::Ordered {
                previous,
                last_link,
            } => {
                if previous
                    .as_deref()
                    .is_some_and(|p| path_cmp(p, path).is_ge())
                {
                    return Err(format!("{path:?} is out of the catalog's path order"));
                }
                *previous = Some(path.to_string());
                if let Some(link) = last_link.as_deref().filter(|l| is_inside(path, l)) {
                    return Err(format!("{path} lies beneath the symbolic link {link}"));
                }
                if header.kind == writer::HARDLINK {
                    return Err(format!("{path}: a hard link in a tree catalog"));
                }
                if header.kind == writer::SYMLINK {
                    *last_link = Some(path.to_string());
                }
                Ok(())
            }
        }
    }
}

/// The backup's stream read forward only, from the first file wanted.
struct DataReader<'a> {
    inner: Arc<RepoInner>,
    handle: Handle,
    manifest: &'a BackupManifest,
    reader: Option<StreamReader>,
    /// The stream offset of `pending`'s first byte.
    position: u64,
    pending: Bytes,
}

impl DataReader<'_> {
    /// Sends `len` bytes of the stream from `offset`; false when the reader went away.
    fn copy(
        &mut self,
        offset: u64,
        len: u64,
        out: &Sender<Result<Bytes, RepoError>>,
    ) -> Result<bool, RepoError> {
        let size = self.manifest.size;
        let end = offset.checked_add(len).filter(|end| *end <= size);
        let corrupt = |reason: String| RepoError::CorruptCatalog {
            backup: self.manifest.id.to_string(),
            reason,
        };
        let Some(end) = end else {
            return Err(corrupt(format!(
                "it places a file at {offset}..+{len}, past the stream's {size} bytes"
            )));
        };
        // A long gap (other folders' files in a tar archive) is jumped, not read through.
        let far_ahead = offset > self.position.saturating_add(JUMP_GAP);
        if self.reader.is_none() || far_ahead {
            self.pending = Bytes::new();
            let stream = read_content(
                self.inner.clone(),
                &self.manifest.content,
                offset..size,
                data_read_ahead(&self.inner),
            );
            self.reader = Some(StreamReader::new(&self.handle, stream));
            self.position = offset;
        }
        if offset < self.position {
            return Err(corrupt(format!(
                "its file offsets go back, to {offset} after {}",
                self.position
            )));
        }
        let mut at = offset;
        while at < end {
            if self.pending.is_empty() {
                let reader = self.reader.as_mut().ok_or_else(|| {
                    RepoError::Internal("the backup's stream reader is gone".into())
                })?;
                self.pending = reader.next_piece()?.ok_or_else(|| {
                    corrupt(format!("the stream ends before {end}, where a file ends"))
                })?;
            }
            let piece_end = self.position + self.pending.len() as u64;
            if piece_end <= at {
                // Before the file (a gap between files of a tar): passed over.
                self.position = piece_end;
                self.pending = Bytes::new();
                continue;
            }
            let skip = (at - self.position) as usize;
            let take = ((end - at) as usize).min(self.pending.len() - skip);
            let piece = self.pending.slice(skip..skip + take);
            let consumed = skip + take;
            self.pending = self.pending.slice(consumed..);
            self.position += consumed as u64;
            at += take as u64;
            if send(out, piece).is_err() {
                return Ok(false);
            }
        }
        Ok(true)
    }
}
