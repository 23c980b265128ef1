//! Descriptor-relative file system access for the tree walk: every entry is looked at,
//! listed and opened relative to the open directory it was listed in, with
//! `O_NOFOLLOW`, never by its path. A folder swapped for a symbolic link while the walk
//! runs therefore cannot lead it outside the tree it was given: the link is met as a
//! link (recorded, not followed), or the open fails and the entry is left out.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;

use rustix::fs::{openat, statx, AtFlags, Dir, FileType, Mode, OFlags, StatxFlags};

/// An open directory, shared by the entries listed in it.
pub type DirHandle = Arc<OwnedFd>;

/// Opens the directory `path` (following links: the caller named it).
pub fn open_root(path: &Path) -> io::Result<DirHandle> {
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    Ok(Arc::new(fd))
}

/// The directory `name` of `dir`, opened for listing; a symbolic link there fails.
pub fn open_dir(dir: &DirHandle, name: &str) -> io::Result<DirHandle> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    Ok(Arc::new(openat(&**dir, name, flags, Mode::empty())?))
}

/// Walks down `components` from `dir`, each a directory reached through no link.
pub fn open_beneath<'a>(
    dir: &DirHandle,
    components: impl Iterator<Item = &'a str>,
) -> io::Result<DirHandle> {
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut current = dir.clone();
    for name in components {
        current = Arc::new(openat(&*current, name, flags, Mode::empty())?);
    }
    Ok(current)
}

/// What the walk records of an entry, read with one `statx` relative to its directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryMeta {
    file_type: FileType,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    dev: u64,
    ino: u64,
}

impl EntryMeta {
    pub fn is_file(&self) -> bool {
        self.file_type == FileType::RegularFile
    }

    pub fn is_dir(&self) -> bool {
        self.file_type == FileType::Directory
    }

    pub fn is_symlink(&self) -> bool {
        self.file_type == FileType::Symlink
    }

    /// The permission bits and file type, as `st_mode`.
    pub fn mode(&self) -> u32 {
        self.mode
    }

    pub fn uid(&self) -> u32 {
        self.uid
    }

    pub fn gid(&self) -> u32 {
        self.gid
    }

    /// The size in bytes, as `st_size`.
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn mtime(&self) -> i64 {
        self.mtime.0
    }

    pub fn mtime_nsec(&self) -> i64 {
        self.mtime.1
    }

    pub fn ctime(&self) -> i64 {
        self.ctime.0
    }

    pub fn ctime_nsec(&self) -> i64 {
        self.ctime.1
    }

    /// The device, as `st_dev` (and `std::fs::Metadata::dev`) give it.
    pub fn dev(&self) -> u64 {
        self.dev
    }

    pub fn ino(&self) -> u64 {
        self.ino
    }
}

/// The metadata of the entry `name` of `dir` itself (a link's own, not its target's):
/// one system call, where opening the entry to `fstat` it took three.
pub fn metadata_at(dir: &DirHandle, name: &str) -> io::Result<EntryMeta> {
    let found = statx(
        &**dir,
        name,
        AtFlags::SYMLINK_NOFOLLOW,
        StatxFlags::TYPE
            | StatxFlags::MODE
            | StatxFlags::UID
            | StatxFlags::GID
            | StatxFlags::SIZE
            | StatxFlags::MTIME
            | StatxFlags::CTIME
            | StatxFlags::INO,
    )?;
    let mode = u32::from(found.stx_mode);
    Ok(EntryMeta {
        file_type: FileType::from_raw_mode(mode),
        mode,
        uid: found.stx_uid,
        gid: found.stx_gid,
        size: found.stx_size,
        mtime: (found.stx_mtime.tv_sec, i64::from(found.stx_mtime.tv_nsec)),
        ctime: (found.stx_ctime.tv_sec, i64::from(found.stx_ctime.tv_nsec)),
        dev: rustix::fs::makedev(found.stx_dev_major, found.stx_dev_minor),
        ino: found.stx_ino,
    })
}

/// The names in `dir`, `.` and `..` left out; each as UTF-8, or the raw name when it is
/// not.
pub fn list(dir: &DirHandle) -> io::Result<Vec<Result<String, Vec<u8>>>> {
    let mut names = Vec::new();
    for entry in Dir::read_from(&**dir)? {
        let entry = entry?;
        let bytes = entry.file_name().to_bytes();
        if bytes == b"." || bytes == b".." {
            continue;
        }
        names.push(
            std::str::from_utf8(bytes)
                .map(str::to_string)
                .map_err(|_| bytes.to_vec()),
        );
    }
    Ok(names)
}

/// The target of the symbolic link `name` of `dir`, when it is UTF-8.
pub fn link_target(dir: &DirHandle, name: &str) -> io::Result<Option<String>> {
    let target = rustix::fs::readlinkat(&**dir, name, Vec::new())?;
    Ok(target.into_string().ok())
}

/// A non-UTF-8 name, for messages.
pub fn shown(name: &[u8]) -> &Path {
    Path::new(OsStr::from_bytes(name))
}

/// A regular file met by the walk, opened only when asked: relative to the directory it
/// was listed in, through no link, and only while it is still the file the walk saw.
pub struct FileAt {
    dir: DirHandle,
    name: String,
    /// Device and inode when it was seen.
    seen: (u64, u64),
}

impl FileAt {
    pub fn new(dir: DirHandle, name: String, metadata: &EntryMeta) -> FileAt {
        FileAt {
            dir,
            name,
            seen: (metadata.dev(), metadata.ino()),
        }
    }

    /// Opens the file for reading. Refused when it became a link, or anything but the
    /// regular file seen (a pipe put in its place would block the read forever: the open
    /// does not wait, and the check follows it).
    pub fn open(&self) -> io::Result<File> {
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let file = File::from(openat(
            &*self.dir,
            self.name.as_str(),
            flags,
            Mode::empty(),
        )?);
        let metadata = file.metadata()?;
        if !metadata.is_file() || (metadata.dev(), metadata.ino()) != self.seen {
            return Err(io::Error::other(
                "it was replaced while the backup ran; left out",
            ));
        }
        Ok(file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entrys_metadata_is_what_lstat_gives() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("file"), b"twelve bytes").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::os::unix::fs::symlink("file", dir.path().join("link")).unwrap();
        let root = open_root(dir.path()).unwrap();
        for name in ["file", "sub", "link"] {
            let ours = metadata_at(&root, name).unwrap();
            let std = std::fs::symlink_metadata(dir.path().join(name)).unwrap();
            let kinds = (ours.is_file(), ours.is_dir(), ours.is_symlink());
            let file_type = std.file_type();
            assert_eq!(
                kinds,
                (
                    file_type.is_file(),
                    file_type.is_dir(),
                    file_type.is_symlink()
                ),
                "{name}"
            );
            assert_eq!(
                (ours.mode(), ours.uid(), ours.gid(), ours.size()),
                (std.mode(), std.uid(), std.gid(), std.size()),
                "{name}"
            );
            assert_eq!(
                (
                    ours.mtime(),
                    ours.mtime_nsec(),
                    ours.ctime(),
                    ours.ctime_nsec()
                ),
                (std.mtime(), std.mtime_nsec(), std.ctime(), std.ctime_nsec()),
                "{name}"
            );
            assert_eq!((ours.dev(), ours.ino()), (std.dev(), std.ino()), "{name}");
        }
        assert!(metadata_at(&root, "missing").is_err());
    }

    #[test]
    fn nothing_is_reached_through_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"never").unwrap();
        std::fs::create_dir(dir.path().join("real")).unwrap();
        std::fs::write(dir.path().join("real/file"), b"data").unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("away")).unwrap();
        let root = open_root(dir.path()).unwrap();

        assert!(open_dir(&root, "away").is_err());
        assert!(open_beneath(&root, ["away"].into_iter()).is_err());
        assert!(metadata_at(&root, "away").unwrap().is_symlink());
        assert_eq!(
            link_target(&root, "away").unwrap().unwrap(),
            outside.path().to_str().unwrap()
        );
        let real = open_dir(&root, "real").unwrap();
        assert_eq!(list(&real).unwrap(), vec![Ok("file".to_string())]);
        let seen = metadata_at(&real, "file").unwrap();
        let file = FileAt::new(real.clone(), "file".into(), &seen);
        assert_eq!(
            std::io::read_to_string(file.open().unwrap()).unwrap(),
            "data"
        );

        // Replaced after it was seen: by another file, or by a link to one outside.
        // (Moved aside, not deleted, so the new file cannot reuse its inode number.)
        std::fs::rename(dir.path().join("real/file"), dir.path().join("real/old")).unwrap();
        std::fs::write(dir.path().join("real/file"), b"other").unwrap();
        assert!(file.open().is_err());
        std::fs::remove_file(dir.path().join("real/file")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), dir.path().join("real/file"))
            .unwrap();
        assert!(file.open().is_err());
    }
}
