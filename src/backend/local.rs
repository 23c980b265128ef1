//! Local-directory backend: each object is one file under the root, at its key's path.
//!
//! Writes go to a uniquely named temporary in `<root>/tmp/`, are fsynced, renamed into
//! place and made durable by an fsync of the directory, so an object is either absent or
//! complete after a crash. All file IO runs on tokio's blocking pool. This module does
//! not lock the directory against other processes, and it cannot store both `a` and
//! `a/b` (a file cannot also be a directory); the repository layout never needs that.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;

use super::{
    check_range, validate_key, Backend, BackendError, ObjectMeta, ObjectWriter, RESERVED_COMPONENT,
};

/// Ending of every temporary's name, so stray files in `tmp/` are recognisable.
const TEMP_SUFFIX: &str = ".tmp";

/// A backend storing objects as files under a root directory.
#[derive(Debug, Clone)]
pub struct LocalBackend {
    root: PathBuf,
}

impl LocalBackend {
    /// A backend over `root`. Does no IO: a missing root shows up as errors on writes
    /// and as an empty listing.
    pub fn new(root: impl Into<PathBuf>) -> LocalBackend {
        LocalBackend { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Creates the root and its temporaries directory, durably; existing ones are fine.
    pub async fn create_root(&self) -> Result<(), BackendError> {
        let root = self.root.clone();
        blocking(RESERVED_COMPONENT, move || {
            // Syncing the root's parent too keeps a just-created root after a crash.
            let parent = root
                .parent()
                .filter(|parent| !parent.as_os_str().is_empty());
            fs::create_dir_all(root.join(RESERVED_COMPONENT))
                .and_then(|()| parent.map_or(Ok(()), sync_dir))
                .and_then(|()| sync_dir(&root))
                .map_err(io_error(RESERVED_COMPONENT))
        })
        .await
    }

    /// Deletes temporaries at least `older_than` old, left by crashes or failed
    /// removals, and returns how many went. An upload idle for longer than
    /// `older_than` loses its temporary and fails at `finish`, so pick a generous age.
    pub async fn clean_temporaries(&self, older_than: Duration) -> Result<usize, BackendError> {
        let dir = self.temp_dir();
        blocking(RESERVED_COMPONENT, move || {
            remove_old_temporaries(&dir, older_than).map_err(io_error(RESERVED_COMPONENT))
        })
        .await
    }

    fn temp_dir(&self) -> PathBuf {
        self.root.join(RESERVED_COMPONENT)
    }

    /// The file of a validated key; its `/` separators are path separators.
    fn object_path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }
}

#[async_trait]
impl Backend for LocalBackend {
    async fn put(&self, key: &str, data: Bytes) -> Result<(), BackendError> {
        validate_key(key)?;
        let (root, target, owned_key) = (self.root.clone(), self.object_path(key), key.to_string());
        blocking(key, move || {
            put_file(&root, &target, &data).map_err(io_error(&owned_key))
        })
        .await
    }

    async fn create(&self, key: &str) -> Result<Box<dyn ObjectWriter>, BackendError> {
        validate_key(key)?;
        let (root, owned_key) = (self.root.clone(), key.to_string());
        let (temp, file) = blocking(key, move || {
            create_temp(&root).map_err(io_error(&owned_key))
        })
        .await?;
        Ok(Box::new(LocalWriter {
            key: key.to_string(),
            root: self.root.clone(),
            target: self.object_path(key),
            temp,
            file: Some(file),
            settled: false,
        }))
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Bytes, BackendError> {
        validate_key(key)?;
        let (path, owned_key) = (self.object_path(key), key.to_string());
        blocking(key, move || read_object(&path, &owned_key, range)).await
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta, BackendError> {
        validate_key(key)?;
        let (path, owned_key) = (self.object_path(key), key.to_string());
        blocking(key, move || {
            let metadata = fs::metadata(&path).map_err(read_error(&owned_key))?;
            let size = object_size(&metadata, &owned_key)?;
            Ok(ObjectMeta {
                key: owned_key,
                size,
                modified: metadata.modified().ok(),
            })
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<(), BackendError> {
        validate_key(key)?;
        let (root, path, owned_key) = (self.root.clone(), self.object_path(key), key.to_string());
        blocking(key, move || {
            delete_file(&root, &path).map_err(io_error(&owned_key))
        })
        .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, BackendError> {
        let (root, owned_prefix) = (self.root.clone(), prefix.to_string());
        blocking(prefix, move || {
            list_files(&root, &owned_prefix).map_err(io_error(&owned_prefix))
        })
        .await
    }

    async fn abort_stale_uploads(&self, older_than: Duration) -> Result<u64, BackendError> {
        Ok(self.clean_temporaries(older_than).await? as u64)
    }

    async fn free_space(&self) -> Result<Option<u64>, BackendError> {
        let root = self.root.clone();
        let stat = tokio::task::spawn_blocking(move || rustix::fs::statvfs(&root))
            .await
            .map_err(|e| BackendError::io("", std::io::Error::other(e)))?
            .map_err(|e| BackendError::io("", e.into()))?;
        // What an unprivileged writer may still use, as `df` shows it.
        Ok(Some(stat.f_bavail.saturating_mul(stat.f_frsize)))
    }

    fn describe(&self) -> String {
        format!("local:{}", self.root.display())
    }
}

/// A streaming upload into a temporary that `finish` renames to the key's path.
struct LocalWriter {
    key: String,
    root: PathBuf,
    target: PathBuf,
    temp: PathBuf,
    /// `None` once a write failed: the temporary's content is then unknown, so the
    /// upload can only be dropped or aborted.
    file: Option<File>,
    /// Set once `finish` or `abort` took charge of the temporary; until then `Drop`
    /// removes it.
    settled: bool,
}

impl LocalWriter {
    fn broken(&self) -> BackendError {
        BackendError::io(
            &self.key,
            io::Error::other("an earlier write to this upload failed"),
        )
    }
}

#[async_trait]
impl ObjectWriter for LocalWriter {
    async fn write(&mut self, data: Bytes) -> Result<(), BackendError> {
        let Some(mut file) = self.file.take() else {
            return Err(self.broken());
        };
        let key = self.key.clone();
        let file = blocking(&self.key, move || {
            file.write_all(&data).map_err(io_error(&key))?;
            Ok(file)
        })
        .await?;
        self.file = Some(file);
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<(), BackendError> {
        let Some(file) = self.file.take() else {
            return Err(self.broken());
        };
        // From here the blocking task publishes or removes the temporary, even if this
        // future is dropped, so Drop must leave it alone.
        self.settled = true;
        let (root, temp, target) = (self.root.clone(), self.temp.clone(), self.target.clone());
        let key = self.key.clone();
        blocking(&self.key, move || {
            publish_temp(&root, file, &temp, &target).map_err(io_error(&key))
        })
        .await
    }

    async fn abort(mut self: Box<Self>) -> Result<(), BackendError> {
        self.settled = true;
        let (file, temp, key) = (self.file.take(), self.temp.clone(), self.key.clone());
        blocking(&self.key, move || {
            drop(file);
            remove_if_present(&temp).map_err(io_error(&key))
        })
        .await
    }
}

impl Drop for LocalWriter {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        drop(self.file.take());
        let temp = std::mem::take(&mut self.temp);
        // Off the async runtime when there is one; a failure only leaves work for
        // `clean_temporaries`.
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => drop(handle.spawn_blocking(move || remove_quietly(&temp))),
            Err(_) => remove_quietly(&temp),
        }
    }
}

/// Runs blocking file IO on tokio's blocking pool.
async fn blocking<T, F>(key: &str, work: F) -> Result<T, BackendError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, BackendError> + Send + 'static,
{
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(join) => Err(BackendError::io(key, io::Error::other(join))),
    }
}

fn io_error(key: &str) -> impl FnOnce(io::Error) -> BackendError + '_ {
    move |source| BackendError::io(key, source)
}

/// Like [`io_error`], but a missing file (or a missing directory on its path) is the
/// object being absent.
fn read_error(key: &str) -> impl FnOnce(io::Error) -> BackendError + '_ {
    move |source| {
        if is_missing(&source) {
            BackendError::NotFound {
                key: key.to_string(),
            }
        } else {
            BackendError::io(key, source)
        }
    }
}

/// NotFound, or ENOTDIR: a component of the path is a file, so the object cannot exist.
fn is_missing(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::NotFound || error.raw_os_error() == Some(libc::ENOTDIR)
}

/// The size of an object, or NotFound when the path is a directory of other keys.
fn object_size(metadata: &fs::Metadata, key: &str) -> Result<u64, BackendError> {
    if metadata.is_file() {
        Ok(metadata.len())
    } else {
        Err(BackendError::NotFound {
            key: key.to_string(),
        })
    }
}

fn read_object(path: &Path, key: &str, range: Option<Range<u64>>) -> Result<Bytes, BackendError> {
    // Objects are replaced by rename, so the open file stays one consistent version.
    let mut file = File::open(path).map_err(read_error(key))?;
    let metadata = file.metadata().map_err(io_error(key))?;
    let size = object_size(&metadata, key)?;
    let Some(range) = range else {
        let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        file.read_to_end(&mut data).map_err(io_error(key))?;
        return Ok(Bytes::from(data));
    };
    check_range(key, &range, size)?;
    let len = usize::try_from(range.end - range.start)
        .map_err(|overflow| BackendError::io(key, io::Error::other(overflow)))?;
    let mut data = vec![0; len];
    file.read_exact_at(&mut data, range.start)
        .map_err(io_error(key))?;
    Ok(Bytes::from(data))
}

fn put_file(root: &Path, target: &Path, data: &[u8]) -> io::Result<()> {
    let (temp, mut file) = create_temp(root)?;
    if let Err(error) = file.write_all(data) {
        drop(file);
        remove_quietly(&temp);
        return Err(error);
    }
    publish_temp(root, file, &temp, target)
}

/// Creates a fresh temporary, making `<root>/tmp` on first use (but never the root:
/// a missing root more likely means an unmounted disk than a new repository).
fn create_temp(root: &Path) -> io::Result<(PathBuf, File)> {
    let dir = root.join(RESERVED_COMPONENT);
    match open_new_temp(&dir) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            create_dirs_durably(root, &dir)?;
            open_new_temp(&dir)
        }
        opened => opened,
    }
}

fn open_new_temp(dir: &Path) -> io::Result<(PathBuf, File)> {
    let name = format!("{}{TEMP_SUFFIX}", hex::encode(rand::random::<[u8; 16]>()));
    let path = dir.join(name);
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)?;
    Ok((path, file))
}

/// Syncs a fully written temporary and renames it to `target` durably; on failure the
/// temporary is removed.
fn publish_temp(root: &Path, file: File, temp: &Path, target: &Path) -> io::Result<()> {
    let synced = file.sync_all();
    drop(file);
    let parent = target.parent().unwrap_or(root);
    let result = synced
        .and_then(|()| create_dirs_durably(root, parent))
        .and_then(|()| fs::rename(temp, target))
        .and_then(|()| sync_dir(parent));
    if result.is_err() {
        remove_quietly(temp);
    }
    result
}

/// Creates `dir` and its missing ancestors below `root`, fsyncing the parent of each
/// one created so the directory entries survive a crash along with the object.
fn create_dirs_durably(root: &Path, dir: &Path) -> io::Result<()> {
    if dir == root || dir.is_dir() {
        return Ok(());
    }
    let parent = dir.parent().unwrap_or(root);
    create_dirs_durably(root, parent)?;
    match fs::create_dir(dir) {
        Ok(()) => sync_dir(parent),
        // A concurrent writer made it; sync anyway, as it may not have done so yet.
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => {
            sync_dir(parent)
        }
        Err(error) => Err(error),
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

/// Best-effort removal of a temporary; what remains is reclaimed by `clean_temporaries`.
fn remove_quietly(path: &Path) {
    let _ = fs::remove_file(path);
}

fn delete_file(root: &Path, path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        // Sync so that a delete acknowledged to GC stays done after a crash.
        Ok(()) => sync_dir(path.parent().unwrap_or(root)),
        Err(error) if is_missing(&error) => Ok(()),
        // A directory holding other keys is not an object, so there was nothing to delete.
        Err(_) if path.is_dir() => Ok(()),
        Err(error) => Err(error),
    }
}

fn list_files(root: &Path, prefix: &str) -> io::Result<Vec<ObjectMeta>> {
    let mut found = Vec::new();
    walk(root, "", prefix, &mut found)?;
    found.sort_unstable_by(|a, b| a.key.cmp(&b.key));
    Ok(found)
}

/// Collects the objects under `dir`, whose keys all start with `dir_key` ("" for the
/// root, else ending in `/`).
fn walk(dir: &Path, dir_key: &str, prefix: &str, found: &mut Vec<ObjectMeta>) -> io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        // A missing root is an empty repository; a missing subdirectory was just removed.
        Err(error) if is_missing(&error) => return Ok(()),
        Err(error) => return Err(error),
    };
    for entry in entries {
        let entry = entry?;
        // A name that is not UTF-8 is no key.
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        visit(&entry, format!("{dir_key}{name}"), prefix, found)?;
    }
    Ok(())
}

fn visit(
    entry: &fs::DirEntry,
    key: String,
    prefix: &str,
    found: &mut Vec<ObjectMeta>,
) -> io::Result<()> {
    // Invalid names hold no object. This also skips `tmp/` (a reserved component), and
    // bounds the depth of the walk, as keys are at most MAX_KEY_LEN bytes.
    if validate_key(&key).is_err() {
        return Ok(());
    }
    let path = entry.path();
    let file_type = entry.file_type()?;
    let is_dir = if file_type.is_symlink() {
        path.is_dir()
    } else {
        file_type.is_dir()
    };
    if is_dir {
        let dir_key = format!("{key}/");
        // Only descend where some key could start with the prefix.
        if dir_key.starts_with(prefix) || prefix.starts_with(&dir_key) {
            walk(&path, &dir_key, prefix, found)?;
        }
        return Ok(());
    }
    if !key.starts_with(prefix) {
        return Ok(());
    }
    match fs::metadata(&path) {
        Ok(metadata) if metadata.is_file() => {
            found.push(ObjectMeta {
                key,
                size: metadata.len(),
                modified: metadata.modified().ok(),
            });
            Ok(())
        }
        Ok(_) => Ok(()),
        Err(error) if is_missing(&error) => Ok(()),
        Err(error) => Err(error),
    }
}

fn remove_old_temporaries(dir: &Path, older_than: Duration) -> io::Result<usize> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(error) => return Err(error),
    };
    let now = SystemTime::now();
    let mut removed = 0;
    for entry in entries {
        let path = entry?.path();
        if is_old_temporary(&path, now, older_than)? {
            remove_if_present(&path)?;
            removed += 1;
        }
    }
    Ok(removed)
}

fn is_old_temporary(path: &Path, now: SystemTime, older_than: Duration) -> io::Result<bool> {
    let named_like_one = path
        .file_name()
        .and_then(|name| name.to_str())
        .is_some_and(|name| name.ends_with(TEMP_SUFFIX));
    if !named_like_one {
        return Ok(false);
    }
    let metadata = match fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(error) => return Err(error),
    };
    // A modification time in the future (clock skew) counts as age zero.
    let age = now
        .duration_since(metadata.modified()?)
        .unwrap_or(Duration::ZERO);
    Ok(metadata.is_file() && age >= older_than)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::backend::conformance;

    fn temporaries(root: &Path) -> Vec<PathBuf> {
        match fs::read_dir(root.join(RESERVED_COMPONENT)) {
            Ok(entries) => entries.map(|entry| entry.expect("entry").path()).collect(),
            Err(_) => Vec::new(),
        }
    }

    fn set_age(path: &Path, age: Duration) {
        let file = File::options().write(true).open(path).expect("open");
        file.set_modified(SystemTime::now() - age)
            .expect("set mtime");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn conformance() {
        let dir = tempfile::tempdir().expect("tempdir");
        let backend = LocalBackend::new(dir.path());
        backend.create_root().await.expect("create root");
        conformance::run_all(Arc::new(backend)).await;
        assert_eq!(temporaries(dir.path()), Vec::<PathBuf>::new());
    }

    #[tokio::test]
    async fn conformance_without_create_root() {
        // `tmp/` is made on first use when the root exists.
        let dir = tempfile::tempdir().expect("tempdir");
        conformance::run_all(Arc::new(LocalBackend::new(dir.path()))).await;
    }

    #[tokio::test]
    async fn layout_and_describe() {
        let dir = tempfile::tempdir().expect("tempdir");
        let backend = LocalBackend::new(dir.path());
        assert_eq!(backend.root(), dir.path());
        assert_eq!(
            backend.describe(),
            format!("local:{}", dir.path().display())
        );
        backend
            .put("packs/ab/cd", Bytes::from_static(b"x"))
            .await
            .expect("put");
        let stored = fs::read(dir.path().join("packs/ab/cd")).expect("read file");
        assert_eq!(stored, b"x");
    }

    #[tokio::test]
    async fn no_temporaries_left() {
        let dir = tempfile::tempdir().expect("tempdir");
        let backend = LocalBackend::new(dir.path());
        backend
            .put("a", Bytes::from_static(b"a"))
            .await
            .expect("put");
        assert!(temporaries(dir.path()).is_empty());

        let mut writer = backend.create("b").await.expect("create");
        writer.write(Bytes::from_static(b"b")).await.expect("write");
        assert_eq!(temporaries(dir.path()).len(), 1);
        writer.finish().await.expect("finish");
        assert!(temporaries(dir.path()).is_empty());

        let mut writer = backend.create("c").await.expect("create");
        writer.write(Bytes::from_static(b"c")).await.expect("write");
        writer.abort().await.expect("abort");
        assert!(temporaries(dir.path()).is_empty());
    }

    #[tokio::test]
    async fn dropped_writer_removes_its_temporary() {
        let dir = tempfile::tempdir().expect("tempdir");
        let backend = LocalBackend::new(dir.path());
        let mut writer = backend.create("d").await.expect("create");
        writer.write(Bytes::from_static(b"d")).await.expect("write");
        drop(writer);
        // The removal runs in the background on the blocking pool.
        for _ in 0..200 {
            if temporaries(dir.path()).is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("temporary still there: {:?}", temporaries(dir.path()));
    }

    #[tokio::test]
    async fn clean_temporaries_removes_old_ones_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let backend = LocalBackend::new(dir.path());
        backend.create_root().await.expect("create root");
        assert_eq!(
            backend
                .clean_temporaries(Duration::ZERO)
                .await
                .expect("clean"),
            0
        );
        let tmp = dir.path().join(RESERVED_COMPONENT);
        let (old, fresh, other) = (tmp.join("old.tmp"), tmp.join("fresh.tmp"), tmp.join("keep"));
        for path in [&old, &fresh, &other] {
            fs::write(path, b"partial").expect("write");
        }
        set_age(&old, Duration::from_secs(7200));
        set_age(&other, Duration::from_secs(7200));
        let removed = backend
            .clean_temporaries(Duration::from_secs(3600))
            .await
            .expect("clean");
        assert_eq!(removed, 1);
        assert!(!old.exists());
        assert!(fresh.exists());
        assert!(
            other.exists(),
            "only files named like temporaries are removed"
        );
    }

    #[tokio::test]
    async fn clean_temporaries_on_missing_root() {
        let dir = tempfile::tempdir().expect("tempdir");
        let backend = LocalBackend::new(dir.path().join("absent"));
        assert_eq!(
            backend
                .clean_temporaries(Duration::ZERO)
                .await
                .expect("clean"),
            0
        );
    }

    #[tokio::test]
    async fn list_skips_temporaries_and_stray_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let backend = LocalBackend::new(dir.path());
        backend
            .put("index/a", Bytes::from_static(b"a"))
            .await
            .expect("put");
        let _writer = backend.create("index/b").await.expect("create");
        fs::write(dir.path().join("index/README.TXT"), b"not a key").expect("write");
        fs::write(dir.path().join(RESERVED_COMPONENT).join("x.tmp"), b"t").expect("write");
        let keys: Vec<String> = backend
            .list("")
            .await
            .expect("list")
            .into_iter()
            .map(|meta| meta.key)
            .collect();
        assert_eq!(keys, vec!["index/a".to_string()]);
    }

    #[tokio::test]
    async fn missing_root() {
        let dir = tempfile::tempdir().expect("tempdir");
        let backend = LocalBackend::new(dir.path().join("absent"));
        assert!(backend.list("").await.expect("list").is_empty());
        assert!(matches!(
            backend.get("a", None).await,
            Err(BackendError::NotFound { .. })
        ));
        // Writes do not create the root itself.
        assert!(backend.put("a", Bytes::new()).await.is_err());
        assert!(!dir.path().join("absent").exists());
        backend.create_root().await.expect("create root");
        backend.put("a", Bytes::new()).await.expect("put");
    }

    #[tokio::test]
    async fn directories_are_not_objects() {
        let dir = tempfile::tempdir().expect("tempdir");
        let backend = LocalBackend::new(dir.path());
        backend
            .put("d/x", Bytes::from_static(b"x"))
            .await
            .expect("put");
        assert!(matches!(
            backend.head("d").await,
            Err(BackendError::NotFound { .. })
        ));
        assert!(matches!(
            backend.get("d", None).await,
            Err(BackendError::NotFound { .. })
        ));
        // A path through a file is simply missing.
        assert!(matches!(
            backend.get("d/x/y", None).await,
            Err(BackendError::NotFound { .. })
        ));
        backend
            .delete("d")
            .await
            .expect("delete a directory is a no-op");
        backend
            .delete("d/x/y")
            .await
            .expect("delete through a file");
        assert_eq!(backend.get("d/x", None).await.expect("get"), "x");
    }

    #[tokio::test]
    async fn stale_upload_fails_after_cleaning() {
        let dir = tempfile::tempdir().expect("tempdir");
        let backend = LocalBackend::new(dir.path());
        let mut writer = backend.create("s").await.expect("create");
        writer.write(Bytes::from_static(b"s")).await.expect("write");
        assert_eq!(
            backend
                .clean_temporaries(Duration::ZERO)
                .await
                .expect("clean"),
            1
        );
        assert!(writer.finish().await.is_err());
        assert!(matches!(
            backend.head("s").await,
            Err(BackendError::NotFound { .. })
        ));
    }
}
