//! Object storage for a repository: one small async trait over whole, immutable objects.
//!
//! # Contract (every implementation, checked by `conformance`)
//!
//! * Keys are relative paths: lowercase ASCII letters, digits, `-`, `_`, `.`, separated
//!   by single `/`; no empty, `.` or `..` component; the first component is not
//!   [`RESERVED_COMPONENT`] (`tmp`, where the local backend keeps its temporaries); at
//!   most [`MAX_KEY_LEN`] bytes, and at most [`MAX_COMPONENT_LEN`] per component (the
//!   common file-name limit). Any other key is refused with [`BackendError::InvalidKey`].
//! * `put` is atomic: a reader sees the old object (or none) until `put` returns `Ok`,
//!   then exactly the new bytes. When `put` returns `Ok` the object is durable (local:
//!   temp file, fsync, rename, fsync of the directory). Replacing an object is allowed.
//! * `create` starts a streaming upload of one object: nothing is visible under the key
//!   until [`ObjectWriter::finish`] returns `Ok`; `abort`, or dropping the writer
//!   unfinished, leaves nothing visible (an implementation may leave a temporary it
//!   reclaims later, never a partial object under the key).
//! * `get` with a range returns exactly the bytes `range.start..range.end`; a range
//!   that is empty-inverted or reaches past the end is
//!   [`BackendError::RangeNotSatisfiable`]. A missing object is [`BackendError::NotFound`].
//! * `head` returns the size of an existing object, `NotFound` otherwise.
//! * `delete` is idempotent: deleting a missing object is `Ok`.
//! * `list(prefix)` returns every object whose key starts with `prefix` (a plain string
//!   prefix), sorted by key, never temporaries or unfinished uploads; each with its size
//!   and, where the backend records it, when it was written (`gc` deletes an unindexed
//!   pack only once it is older than a grace period).
//! * `abort_stale_uploads(older_than)` removes what unfinished uploads at least that old
//!   left behind (local: temporaries; S3: multipart uploads under the prefix) and says
//!   how many; a backend without the notion does nothing.
//!
//! Retries, metrics and fault injection are wrappers around a backend, not code inside
//! each implementation.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::ErrorKind;

/// Test-only: injects failures into another backend. Built for unit tests and with the
/// `fault-injection` feature (which the integration tests turn on), never into a release.
#[cfg(any(test, feature = "fault-injection"))]
pub mod fault;
pub mod local;
pub mod memory;
pub mod s3;

#[cfg(test)]
pub mod conformance;

#[cfg(any(test, feature = "fault-injection"))]
pub use fault::{FaultPlan, FaultyBackend, Operation};
pub use local::LocalBackend;
pub use memory::MemoryBackend;
pub use s3::{S3Backend, S3Location, S3Settings};

/// Longest accepted object key, in bytes.
pub const MAX_KEY_LEN: usize = 512;

/// Longest accepted key component, in bytes: most file systems refuse longer names.
pub const MAX_COMPONENT_LEN: usize = 255;

/// First key component no object may use: the local backend keeps its temporaries in
/// `<root>/tmp/`, so an object there would collide with them and be hidden from `list`.
pub const RESERVED_COMPONENT: &str = "tmp";

/// A shared handle to any backend.
pub type DynBackend = Arc<dyn Backend>;

/// Key, size and age of one stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub key: String,
    pub size: u64,
    /// When the object was last written, where the backend knows it (local: the file's
    /// mtime; S3: `LastModified`); `None` for the memory backend.
    pub modified: Option<std::time::SystemTime>,
}

impl ObjectMeta {
    /// Whether the object is known to be at least `age` old at `now`; an object of
    /// unknown age is not.
    pub fn is_older_than(&self, age: Duration, now: std::time::SystemTime) -> bool {
        match self.modified {
            Some(modified) => now
                .duration_since(modified)
                .is_ok_and(|elapsed| elapsed >= age),
            None => age.is_zero(),
        }
    }
}

/// Failures of a backend operation. Each names the key it concerns.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("object {key} not found")]
    NotFound { key: String },
    #[error("invalid object key {key:?}")]
    InvalidKey { key: String },
    #[error("range {start}..{end} is outside object {key} of {size} bytes")]
    RangeNotSatisfiable {
        key: String,
        start: u64,
        end: u64,
        size: u64,
    },
    #[error("I/O error on object {key}: {source}")]
    Io {
        key: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the storage service refused the credentials (object {key}): {message}")]
    CredentialsRefused { key: String, message: String },
    #[error("backend unavailable for object {key}: {message}")]
    Unavailable { key: String, message: String },
    #[cfg(any(test, feature = "fault-injection"))]
    #[error("injected fault on {operation:?} of object {key}")]
    Injected { key: String, operation: Operation },
}

impl BackendError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            BackendError::NotFound { .. } => ErrorKind::NotFound,
            BackendError::InvalidKey { .. } | BackendError::RangeNotSatisfiable { .. } => {
                ErrorKind::InvalidInput
            }
            BackendError::Io { .. } => ErrorKind::Internal,
            // Refused credentials are the server's configuration problem, not the
            // caller's: the storage is unavailable to it.
            BackendError::Unavailable { .. } | BackendError::CredentialsRefused { .. } => {
                ErrorKind::Unavailable
            }
            #[cfg(any(test, feature = "fault-injection"))]
            BackendError::Injected { .. } => ErrorKind::Unavailable,
        }
    }

    pub fn io(key: &str, source: std::io::Error) -> BackendError {
        BackendError::Io {
            key: key.to_string(),
            source,
        }
    }
}

/// Object storage holding one repository. See the module documentation for the contract.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Stores `data` under `key`, atomically and durably.
    async fn put(&self, key: &str, data: Bytes) -> Result<(), BackendError>;

    /// Starts a streaming upload of one object under `key`.
    async fn create(&self, key: &str) -> Result<Box<dyn ObjectWriter>, BackendError>;

    /// Reads the whole object, or the bytes of `range` within it.
    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Bytes, BackendError>;

    /// Size of an existing object.
    async fn head(&self, key: &str) -> Result<ObjectMeta, BackendError>;

    /// Removes an object; a missing object is not an error.
    async fn delete(&self, key: &str) -> Result<(), BackendError>;

    /// Every object whose key starts with `prefix`, sorted by key.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, BackendError>;

    /// Removes the leftovers of unfinished uploads started at least `older_than` ago
    /// and returns how many went. Pick a generous age: an upload still running that
    /// long loses what it wrote and fails at `finish`.
    async fn abort_stale_uploads(&self, older_than: Duration) -> Result<u64, BackendError> {
        let _ = older_than;
        Ok(0)
    }

    /// Bytes still free where the objects go, when the storage has such a limit (a
    /// local file system); `None` for storage that reports none (S3, memory).
    async fn free_space(&self) -> Result<Option<u64>, BackendError> {
        Ok(None)
    }

    /// Ranged reads a restore keeps in flight to hide this storage's latency; each
    /// holds up to 12 MiB (a fetch unit's stored and opened bytes) until it is consumed.
    fn reads_in_flight(&self) -> usize {
        DEFAULT_READS_IN_FLIGHT
    }

    /// A short human description (`local:/srv/repo`, `memory`), for logs and errors.
    fn describe(&self) -> String;
}

/// Reads in flight for storage close at hand (a local disk, memory): enough to overlap
/// the reads with opening the blobs.
pub const DEFAULT_READS_IN_FLIGHT: usize = 4;

/// Where a repository is: a local directory or an S3 bucket and prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Local(PathBuf),
    S3(S3Location),
}

impl Location {
    /// An `s3://bucket/prefix` URL is an S3 location; anything else is a directory.
    pub fn parse(text: &Path) -> Result<Location, s3::LocationError> {
        match text.to_str() {
            Some(url) if url.starts_with(s3::config::SCHEME) => {
                Ok(Location::S3(S3Location::parse(url)?))
            }
            _ => Ok(Location::Local(text.to_path_buf())),
        }
    }

    /// The backend of this location (S3: with `settings`; makes no request).
    pub async fn connect(&self, settings: &S3Settings) -> Result<DynBackend, s3::SettingsError> {
        Ok(match self {
            Location::Local(dir) => Arc::new(LocalBackend::new(dir)),
            Location::S3(location) => {
                Arc::new(S3Backend::connect(location.clone(), settings.clone()).await?)
            }
        })
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Local(dir) => write!(f, "{}", dir.display()),
            Location::S3(location) => write!(f, "{location}"),
        }
    }
}

/// One streaming upload started by [`Backend::create`].
#[async_trait]
pub trait ObjectWriter: Send {
    /// Appends bytes to the object being written.
    async fn write(&mut self, data: Bytes) -> Result<(), BackendError>;

    /// Makes the object durable and visible under its key.
    async fn finish(self: Box<Self>) -> Result<(), BackendError>;

    /// Gives the upload up; nothing becomes visible.
    async fn abort(self: Box<Self>) -> Result<(), BackendError>;
}

/// Checks `key` against the contract's key grammar.
pub fn validate_key(key: &str) -> Result<(), BackendError> {
    let valid_char =
        |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_' || c == '.';
    let valid = !key.is_empty()
        && key.len() <= MAX_KEY_LEN
        && key.split('/').next() != Some(RESERVED_COMPONENT)
        && key.split('/').all(|part| {
            !part.is_empty()
                && part.len() <= MAX_COMPONENT_LEN
                && part != "."
                && part != ".."
                && part.chars().all(valid_char)
        });
    if valid {
        Ok(())
    } else {
        Err(BackendError::InvalidKey {
            key: key.chars().take(MAX_KEY_LEN).collect(),
        })
    }
}

/// Checks a requested range against an object's size.
pub fn check_range(key: &str, range: &Range<u64>, size: u64) -> Result<(), BackendError> {
    if range.start > range.end || range.end > size {
        return Err(BackendError::RangeNotSatisfiable {
            key: key.to_string(),
            start: range.start,
            end: range.end,
            size,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_grammar() {
        for good in [
            "config",
            "packs/ab/abcdef",
            "keys/default",
            "a.b-c_d",
            "tmpx",
            "a/tmp",
        ] {
            assert!(validate_key(good).is_ok(), "{good}");
        }
        for bad in [
            "", "/abs", "a//b", "a/../b", "..", "UPPER", "a b", "a/", "é", "tmp", "tmp/x",
        ] {
            assert!(validate_key(bad).is_err(), "{bad}");
        }
        assert!(validate_key(&"c".repeat(MAX_COMPONENT_LEN)).is_ok());
        assert!(validate_key(&"c".repeat(MAX_COMPONENT_LEN + 1)).is_err());
        let parts = ["d".repeat(200), "d".repeat(200), "d".repeat(111)];
        assert!(validate_key(&parts.join("/")).is_err(), "513 bytes");
        assert!(validate_key(&parts.join("/")[1..]).is_ok(), "512 bytes");
    }

    #[test]
    fn locations() {
        let local = Location::parse(Path::new("/srv/repo")).expect("directory");
        assert_eq!(local, Location::Local(PathBuf::from("/srv/repo")));
        let relative = Location::parse(Path::new("s3-backups/x")).expect("directory");
        assert_eq!(relative, Location::Local(PathBuf::from("s3-backups/x")));
        let s3 = Location::parse(Path::new("s3://bucket/a/b/")).expect("s3");
        assert_eq!(s3.to_string(), "s3://bucket/a/b");
        assert!(matches!(s3, Location::S3(ref l) if l.prefix() == "a/b"));
        assert!(Location::parse(Path::new("s3://B/x")).is_err());
    }
}
