//! Writing restored regular files on a few threads.
//!
//! A tree restore reads its stream in order on one thread, but most of the time of
//! restoring many small files goes to the kernel: creating each inode, copying its pages,
//! setting owner, mode and times. [`FileWriters`] takes whole small files (their bytes
//! already read from the stream) and writes them on [`WRITER_THREADS`] threads, so that
//! work runs on every core while the reading thread goes on; larger files are written
//! by the reading thread itself, streamed, so memory stays bounded. Owner, mode and times
//! are set through the open file, without resolving the path again.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use filetime::FileTime;

use super::{Progress, RepoError};
use crate::format::catalog::CatalogEntry;

/// Threads writing small files.
pub const WRITER_THREADS: usize = 2;
/// Largest file handed to the writer threads; larger ones are streamed by the caller.
pub const MAX_HANDED_OFF: u64 = 256 << 10;
/// Files waiting for a writer: with [`MAX_HANDED_OFF`], at most 4 MiB of file bytes.
const QUEUE: usize = 16;

/// One small file to write: its path, its catalog entry and all its bytes.
struct Job {
    path: PathBuf,
    entry: CatalogEntry,
    bytes: Vec<u8>,
}

/// The writer threads of one tree restore.
pub struct FileWriters {
    jobs: Option<SyncSender<Job>>,
    threads: Vec<JoinHandle<()>>,
    /// The first error a writer met; later jobs are skipped once one is set.
    failure: Arc<Mutex<Option<RepoError>>>,
}

impl FileWriters {
    pub fn start(progress: Arc<Progress>) -> FileWriters {
        let (jobs, received) = sync_channel::<Job>(QUEUE);
        let received = Arc::new(Mutex::new(received));
        let failure = Arc::new(Mutex::new(None));
        let threads = (0..WRITER_THREADS)
            .map(|n| {
                let (received, failure, progress) =
                    (received.clone(), failure.clone(), progress.clone());
                std::thread::Builder::new()
                    .name(format!("stowage-write-{n}"))
                    .spawn(move || loop {
                        let job = match received.lock().unwrap_or_else(|p| p.into_inner()).recv() {
                            Ok(job) => job,
                            Err(_) => return,
                        };
                        let mut failed = failure.lock().unwrap_or_else(|p| p.into_inner());
                        if failed.is_some() {
                            continue;
                        }
                        drop(failed);
                        let len = job.bytes.len() as u64;
                        let result = progress
                            .check()
                            .and_then(|()| write_file(&job.path, &job.entry, &job.bytes));
                        match result {
                            Ok(()) => progress.add_done(len),
                            Err(error) => {
                                failed = failure.lock().unwrap_or_else(|p| p.into_inner());
                                failed.get_or_insert(error);
                            }
                        }
                    })
                    .expect("spawning a file writer thread")
            })
            .collect();
        FileWriters {
            jobs: Some(jobs),
            threads,
            failure,
        }
    }

    /// Queues a small file (at most [`MAX_HANDED_OFF`] bytes); fails early with the error
    /// a writer met before.
    pub fn write(
        &mut self,
        path: PathBuf,
        entry: CatalogEntry,
        bytes: Vec<u8>,
    ) -> Result<(), RepoError> {
        self.take_failure()?;
        let sent = self
            .jobs
            .as_ref()
            .is_some_and(|jobs| jobs.send(Job { path, entry, bytes }).is_ok());
        if sent {
            Ok(())
        } else {
            self.finish()?;
            Err(RepoError::Internal("the file writers stopped".into()))
        }
    }

    /// Waits for every queued file to be written; the first error any writer met.
    pub fn finish(&mut self) -> Result<(), RepoError> {
        self.jobs = None;
        for thread in self.threads.drain(..) {
            if thread.join().is_err() {
                return Err(RepoError::Internal("a file writer thread panicked".into()));
            }
        }
        self.take_failure()
    }

    fn take_failure(&self) -> Result<(), RepoError> {
        match self
            .failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

impl Drop for FileWriters {
    fn drop(&mut self) {
        // An abandoned restore leaves no thread writing behind it.
        self.jobs = None;
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Creates `path` (its parent first, when missing) for writing, with the entry's mode
/// (the umask may narrow it; [`finish_file`] sets it exactly).
pub fn create_file(path: &Path, entry: &CatalogEntry) -> Result<File, RepoError> {
    let open = || {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(entry.mode & 0o777)
            .open(path)
    };
    match open() {
        Ok(file) => Ok(file),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // Only when the catalog did not list the parent (it was skipped at backup).
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent).map_err(|e| RepoError::io(parent, e))?;
            }
            open().map_err(|e| RepoError::io(path, e))
        }
        Err(e) => Err(RepoError::io(path, e)),
    }
}

/// Sets owner (when running as root), mode and times of a written file, through its
/// handle: owner first, since changing it clears set-id bits; times last, since writing
/// changes them.
pub fn finish_file(file: &File, path: &Path, entry: &CatalogEntry) -> Result<(), RepoError> {
    if super::tree::is_root() {
        std::os::unix::fs::fchown(file, Some(entry.uid), Some(entry.gid))
            .map_err(|e| RepoError::io(path, e))?;
    }
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(fs::Permissions::from_mode(entry.mode))
        .map_err(|e| RepoError::io(path, e))?;
    let mtime = FileTime::from_unix_time(entry.mtime, entry.mtime_nsec);
    filetime::set_file_handle_times(file, Some(mtime), Some(mtime))
        .map_err(|e| RepoError::io(path, e))
}

fn write_file(path: &Path, entry: &CatalogEntry, bytes: &[u8]) -> Result<(), RepoError> {
    let mut file = create_file(path, entry)?;
    file.write_all(bytes).map_err(|e| RepoError::io(path, e))?;
    finish_file(&file, path, entry)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    use super::*;
    use crate::format::catalog::EntryKind;

    #[allow(unsafe_code)]
    fn entry(path: &str, mode: u32, mtime: i64) -> CatalogEntry {
        CatalogEntry {
            path: path.into(),
            kind: EntryKind::File,
            mode,
            mtime,
            mtime_nsec: 0,
            // SAFETY: geteuid and getegid have no preconditions and cannot fail.
            uid: unsafe { libc::geteuid() },
            gid: unsafe { libc::getegid() },
            user: String::new(),
            group: String::new(),
            size: 0,
            link: None,
            offset: None,
        }
    }

    #[test]
    fn files_get_their_bytes_mode_and_time_and_missing_parents() {
        let dir = tempfile::tempdir().unwrap();
        let mut writers = FileWriters::start(Arc::new(Progress::new()));
        for i in 0..50u32 {
            let name = format!("d{}/f{i}", i % 3);
            let bytes = vec![i as u8; i as usize * 100];
            let path = dir.path().join(&name);
            writers
                .write(
                    path,
                    entry(&name, 0o640 | (i % 2), 1_000_000 + i64::from(i)),
                    bytes,
                )
                .unwrap();
        }
        writers.finish().unwrap();
        for i in 0..50u32 {
            let path = dir.path().join(format!("d{}/f{i}", i % 3));
            assert_eq!(fs::read(&path).unwrap(), vec![i as u8; i as usize * 100]);
            let meta = fs::metadata(&path).unwrap();
            assert_eq!(meta.permissions().mode() & 0o7777, 0o640 | (i % 2));
            assert_eq!(meta.mtime(), 1_000_000 + i64::from(i));
        }
    }

    #[test]
    fn a_writer_error_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("plain"), b"x").unwrap();
        let mut writers = FileWriters::start(Arc::new(Progress::new()));
        // A file cannot be created under a regular file.
        let bad = dir.path().join("plain/child");
        let first = writers.write(bad, entry("plain/child", 0o644, 0), b"y".to_vec());
        let outcome = first.and_then(|()| writers.finish());
        assert!(matches!(outcome, Err(RepoError::Io { .. })), "{outcome:?}");
    }
}
