//! Progress and cancellation of one long operation, shared between the engine (which
//! updates it) and whoever watches it (a progress bar, a job record).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::RepoError;

#[derive(Debug, Default)]
pub struct Progress {
    bytes_done: AtomicU64,
    bytes_total: AtomicU64,
    /// Entries of a tree (files, directories, links) done and expected.
    files_done: AtomicU64,
    files_total: AtomicU64,
    cancelled: AtomicBool,
}

impl Progress {
    pub fn new() -> Progress {
        Progress::default()
    }

    pub fn add_done(&self, bytes: u64) {
        self.bytes_done.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn set_total(&self, bytes: u64) {
        self.bytes_total.store(bytes, Ordering::Relaxed);
    }

    pub fn done(&self) -> u64 {
        self.bytes_done.load(Ordering::Relaxed)
    }

    /// Total bytes expected, 0 when unknown.
    pub fn total(&self) -> u64 {
        self.bytes_total.load(Ordering::Relaxed)
    }

    pub fn add_files_done(&self, files: u64) {
        self.files_done.fetch_add(files, Ordering::Relaxed);
    }

    pub fn set_files_total(&self, files: u64) {
        self.files_total.store(files, Ordering::Relaxed);
    }

    /// Entries of a tree done (0 for a stream).
    pub fn files_done(&self) -> u64 {
        self.files_done.load(Ordering::Relaxed)
    }

    /// Entries of a tree expected, 0 when unknown (a backup learns them as it walks).
    pub fn files_total(&self) -> u64 {
        self.files_total.load(Ordering::Relaxed)
    }

    /// Asks the operation to stop at its next check.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }

    /// `Err(Cancelled)` once cancellation was asked for.
    pub fn check(&self) -> Result<(), RepoError> {
        if self.is_cancelled() {
            Err(RepoError::Cancelled)
        } else {
            Ok(())
        }
    }
}
