//! The FTP server's storage back end: each signed-in instance sees its own backup files as
//! one flat folder, straight from the engine (no file system in between). `STOR` streams
//! into the service as the file arrives; `RETR` streams a restore (from a `REST` offset);
//! `SIZE`, `MDTM` and the listings read the stored files; `DELE` recycles. Folders,
//! renames, appends and anything outside the instance's folder are refused with a 5xx
//! reply.

use std::fmt;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use tokio::io::AsyncRead;
use tokio::sync::mpsc;
use unftp_core::storage::{
    Error, ErrorKind, Fileinfo, Metadata, Result, StorageBackend, FEATURE_RESTART,
};

use super::auth::InstanceUser;
use crate::error::ErrorKind as Kind;
use crate::service::tapu::{StoredFile, TapuError, TapuService};

/// Pieces of a download in flight between the engine and the data connection.
const DOWNLOAD_QUEUE: usize = 4;

/// One control connection's view of the instances' files.
pub struct InstanceFiles {
    pub service: Arc<TapuService>,
}

impl fmt::Debug for InstanceFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("InstanceFiles")
    }
}

/// A file or the instance's folder.
#[derive(Debug, Clone)]
pub struct Entry {
    len: u64,
    folder: bool,
    modified: SystemTime,
}

impl Entry {
    fn folder() -> Entry {
        Entry {
            len: 0,
            folder: true,
            modified: SystemTime::UNIX_EPOCH,
        }
    }

    fn file(file: &StoredFile) -> Entry {
        Entry {
            len: file.size,
            folder: false,
            modified: SystemTime::UNIX_EPOCH
                + Duration::from_secs(u64::try_from(file.modified).unwrap_or(0)),
        }
    }
}

impl Metadata for Entry {
    fn len(&self) -> u64 {
        self.len
    }
    fn is_dir(&self) -> bool {
        self.folder
    }
    fn is_file(&self) -> bool {
        !self.folder
    }
    fn is_symlink(&self) -> bool {
        false
    }
    fn modified(&self) -> Result<SystemTime> {
        Ok(self.modified)
    }
    fn gid(&self) -> u32 {
        0
    }
    fn uid(&self) -> u32 {
        0
    }
}

/// What a path names inside the instance's folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Folder,
    File(String),
}

/// Reads a client path: the folder itself, or one file name in it. `..`, sub-folders
/// and names that are not UTF-8 are refused.
pub fn target(path: &Path) -> Result<Target> {
    let mut name = None;
    for component in path.components() {
        match component {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(part) if name.is_none() => {
                let part = part
                    .to_str()
                    .ok_or(Error::from(ErrorKind::FileNameNotAllowedError))?;
                name = Some(part.to_string());
            }
            _ => return Err(ErrorKind::FileNameNotAllowedError.into()),
        }
    }
    Ok(name.map_or(Target::Folder, Target::File))
}

fn file_name(path: &Path) -> Result<String> {
    match target(path)? {
        Target::File(name) => Ok(name),
        Target::Folder => Err(ErrorKind::PermanentFileNotAvailable.into()),
    }
}

/// The FTP reply for a service failure.
fn reply(error: TapuError) -> Error {
    let kind = match &error {
        TapuError::Name(_) | TapuError::InvalidInstance => ErrorKind::FileNameNotAllowedError,
        TapuError::NoFile(_) | TapuError::UnknownInstance(_) => {
            ErrorKind::PermanentFileNotAvailable
        }
        TapuError::Incomplete(_) => ErrorKind::ConnectionClosed,
        TapuError::TooLarge(_) => ErrorKind::ExceededStorageAllocationError,
        other => match other.kind() {
            Kind::LimitExceeded => ErrorKind::InsufficientStorageSpaceError,
            Kind::Unavailable => ErrorKind::TransientFileNotAvailable,
            _ => ErrorKind::LocalError,
        },
    };
    if kind == ErrorKind::LocalError {
        tracing::error!(%error, "tapu-backups FTP request failed");
    } else {
        tracing::info!(%error, "tapu-backups FTP request refused");
    }
    Error::new(kind, error)
}

/// A download's pieces as a stream the data connection reads (`Sync`, as the FTP server
/// requires of its readers).
struct Pieces(mpsc::Receiver<io::Result<Bytes>>);

impl futures::Stream for Pieces {
    type Item = io::Result<Bytes>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

#[async_trait]
impl StorageBackend<InstanceUser> for InstanceFiles {
    type Metadata = Entry;

    fn name(&self) -> &str {
        "stowage"
    }

    fn supported_features(&self) -> u32 {
        FEATURE_RESTART
    }

    async fn metadata<P: AsRef<Path> + Send + fmt::Debug>(
        &self,
        user: &InstanceUser,
        path: P,
    ) -> Result<Entry> {
        match target(path.as_ref())? {
            Target::Folder => Ok(Entry::folder()),
            Target::File(name) => self
                .service
                .file(&user.instance, &name)
                .map(|file| Entry::file(&file))
                .map_err(reply),
        }
    }

    async fn list<P: AsRef<Path> + Send + fmt::Debug>(
        &self,
        user: &InstanceUser,
        path: P,
    ) -> Result<Vec<Fileinfo<PathBuf, Entry>>>
    where
        <Self as StorageBackend<InstanceUser>>::Metadata: Metadata,
    {
        let files = match target(path.as_ref())? {
            Target::Folder => match self.service.files(&user.instance) {
                Ok(files) => files,
                Err(TapuError::UnknownInstance(_)) => Vec::new(),
                Err(error) => return Err(reply(error)),
            },
            Target::File(name) => {
                vec![self.service.file(&user.instance, &name).map_err(reply)?]
            }
        };
        Ok(files
            .iter()
            .map(|file| Fileinfo {
                path: PathBuf::from(&file.name),
                metadata: Entry::file(file),
            })
            .collect())
    }

    async fn get<P: AsRef<Path> + Send + fmt::Debug>(
        &self,
        user: &InstanceUser,
        path: P,
        start_pos: u64,
    ) -> Result<Box<dyn AsyncRead + Send + Sync + Unpin>> {
        let name = file_name(path.as_ref())?;
        let (_, mut stream) = self
            .service
            .read(&user.instance, &name, start_pos)
            .map_err(reply)?;
        let (sender, receiver) = mpsc::channel(DOWNLOAD_QUEUE);
        tokio::spawn(async move {
            while let Some(piece) = stream.next().await {
                let failed = piece.is_err();
                let piece = piece.map_err(|error| {
                    tracing::error!(%error, "tapu-backups FTP download failed");
                    io::Error::other(error)
                });
                // A closed receiver: the client went away.
                if sender.send(piece).await.is_err() || failed {
                    break;
                }
            }
        });
        Ok(Box::new(tokio_util::io::StreamReader::new(Pieces(
            receiver,
        ))))
    }

    async fn put<
        P: AsRef<Path> + Send + fmt::Debug,
        R: AsyncRead + Send + Sync + Unpin + 'static,
    >(
        &self,
        user: &InstanceUser,
        input: R,
        path: P,
        start_pos: u64,
    ) -> Result<u64> {
        if start_pos != 0 {
            // A stored backup is whole or absent: no appends, no resumed uploads.
            return Err(ErrorKind::PermissionDenied.into());
        }
        let name = file_name(path.as_ref())?;
        let source = Box::new(tokio_util::io::SyncIoBridge::new(input));
        let stored = self.service.store(&user.instance, &name, source).await;
        let file = stored.map_err(reply)?;
        tracing::info!(instance = %user.instance, file = %file.name, size = file.size, "tapu-backups FTP upload stored");
        Ok(file.size)
    }

    async fn del<P: AsRef<Path> + Send + fmt::Debug>(
        &self,
        user: &InstanceUser,
        path: P,
    ) -> Result<()> {
        let name = file_name(path.as_ref())?;
        self.service
            .delete(&user.instance, &name)
            .await
            .map_err(reply)
    }

    async fn mkd<P: AsRef<Path> + Send + fmt::Debug>(
        &self,
        _user: &InstanceUser,
        _path: P,
    ) -> Result<()> {
        Err(ErrorKind::PermissionDenied.into())
    }

    async fn rename<P: AsRef<Path> + Send + fmt::Debug>(
        &self,
        _user: &InstanceUser,
        _from: P,
        _to: P,
    ) -> Result<()> {
        Err(ErrorKind::PermissionDenied.into())
    }

    async fn rmd<P: AsRef<Path> + Send + fmt::Debug>(
        &self,
        _user: &InstanceUser,
        _path: P,
    ) -> Result<()> {
        Err(ErrorKind::PermissionDenied.into())
    }

    async fn cwd<P: AsRef<Path> + Send + fmt::Debug>(
        &self,
        _user: &InstanceUser,
        path: P,
    ) -> Result<()> {
        match target(path.as_ref())? {
            Target::Folder => Ok(()),
            Target::File(_) => Err(ErrorKind::PermanentDirectoryNotAvailable.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_the_folder_or_one_file_in_it() {
        assert_eq!(target(Path::new("/")).unwrap(), Target::Folder);
        assert_eq!(target(Path::new("")).unwrap(), Target::Folder);
        assert_eq!(target(Path::new("/./")).unwrap(), Target::Folder);
        assert_eq!(
            target(Path::new("/a.tar")).unwrap(),
            Target::File("a.tar".into())
        );
        assert_eq!(
            target(Path::new("a.tar")).unwrap(),
            Target::File("a.tar".into())
        );
        for bad in ["/../a.tar", "/x/a.tar", "..", "/a/..", "x/../a.tar"] {
            assert!(target(Path::new(bad)).is_err(), "{bad}");
        }
    }
}
