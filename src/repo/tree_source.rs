//! The walk of a tree backup: a directory tree (or a [`TreeSelection`] of folders) read
//! as one stream of file contents, the catalog written as the walk goes.
//!
//! The stream is the concatenation of the regular files in catalog order (depth first,
//! names sorted bytewise, a directory before its contents); each file's catalog entry
//! records where its bytes start. Symbolic links are recorded, never followed: every
//! entry is reached relative to the open directory it was listed in, without following
//! links (`dir_handles`), so a folder swapped for a link mid-walk cannot lead the walk
//! outside its tree. Names that are not UTF-8 and unreadable entries are skipped with a
//! warning.
//!
//! A selection backs up chosen folders instead of one root: each appears under its
//! absolute path without the leading `/` (`/srv/www/a.c` is `srv/www/a.c`), its parents
//! are neither listed nor read, and entries matching an exclusion pattern are left out
//! with everything beneath them.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use globset::GlobSet;

use super::dir_handles::{self, DirHandle, EntryMeta, FileAt};
use super::owners::OwnerNames;
use super::progress::Progress;
use super::spool::{CatalogSpool, SpooledCatalog};
use super::RepoError;
use crate::format::catalog::{CatalogEntry, EntryKind};

/// The walk of a tree: every entry in catalog order, directories listed as they are
/// reached. Regular files are handed out with their path and metadata and not opened, so
/// a caller that already knows a file's content (a client's files cache) need not read it.
pub struct TreeWalk {
    root: PathBuf,
    /// The root, open: a selection's folders are reached from it.
    root_dir: DirHandle,
    pending: Vec<PendingDir>,
    owners: OwnerNames,
    /// Paths skipped, with the reason.
    skipped: Vec<String>,
    /// Entries whose absolute path matches are left out, with all beneath them.
    exclude: Option<GlobSet>,
}

/// A directory of the walk whose entries are being walked.
struct PendingDir {
    /// Its path relative to the walk's root.
    relative: String,
    /// Open; `None` for a selection's top, whose names are the selected folders' paths.
    dir: Option<DirHandle>,
    /// The names not walked yet, popped from the end.
    names: Vec<String>,
}

/// One step of a [`TreeWalk`]. (Its size does not matter: one is handed out at a time
/// and moved once.)
#[allow(clippy::large_enum_variant)]
pub enum Walked {
    /// A directory, symbolic link or special file: its entry is complete.
    Entry(CatalogEntry),
    /// A regular file: its entry (size 0, no offset yet), where it is (for messages),
    /// its metadata, and the way to open it.
    File {
        entry: CatalogEntry,
        path: PathBuf,
        metadata: EntryMeta,
        file: FileAt,
    },
}

/// Reads a directory tree as one stream of file contents, writing the catalog as it goes.
pub struct TreeSource {
    walk: TreeWalk,
    current: Option<(File, CatalogEntry)>,
    offset: u64,
    catalog: CatalogSpool,
    /// Counts each entry recorded, when set.
    progress: Option<Arc<Progress>>,
}

/// Folders to back up as one tree, and what to leave out.
#[derive(Debug, Clone)]
pub struct TreeSelection {
    /// Absolute paths; one inside another is backed up once.
    pub folders: Vec<PathBuf>,
    /// Patterns matched against each entry's absolute path.
    pub exclude: Option<GlobSet>,
}

impl TreeSelection {
    /// The selected folders as catalog paths (no leading `/`), without those inside
    /// another, in walk order (component by component, bytewise).
    fn catalog_roots(&self) -> Result<Vec<String>, RepoError> {
        let mut roots: Vec<&Path> = Vec::new();
        for folder in &self.folders {
            if !folder.is_absolute()
                || folder.components().any(|c| {
                    !matches!(
                        c,
                        std::path::Component::RootDir | std::path::Component::Normal(_)
                    )
                })
            {
                return Err(RepoError::InvalidInput(format!(
                    "{} is not an absolute path without '.' or '..'",
                    folder.display()
                )));
            }
            roots.push(folder);
        }
        roots.sort_by(|a, b| a.components().cmp(b.components()));
        let mut kept: Vec<&Path> = Vec::new();
        for root in roots {
            if !kept.iter().any(|k| root.starts_with(k)) {
                kept.push(root);
            }
        }
        kept.into_iter()
            .map(|path| {
                let relative = path.strip_prefix("/").unwrap_or(path);
                match relative.to_str() {
                    Some("") => Err(RepoError::InvalidInput(
                        "the root folder / cannot be selected".into(),
                    )),
                    Some(text) => Ok(text.to_string()),
                    None => Err(RepoError::InvalidInput(format!(
                        "{} is not UTF-8",
                        path.display()
                    ))),
                }
            })
            .collect()
    }
}

impl TreeWalk {
    /// The walk of the tree at `root`, its paths relative to it.
    pub fn new(root: &Path) -> Result<TreeWalk, RepoError> {
        let metadata = std::fs::metadata(root).map_err(|e| RepoError::io(root, e))?;
        if !metadata.is_dir() {
            return Err(RepoError::InvalidInput(format!(
                "{} is not a directory",
                root.display()
            )));
        }
        let mut walk = TreeWalk::at(root, None)?;
        walk.push_dir(String::new(), walk.root_dir.clone())?;
        Ok(walk)
    }

    /// A walk of nothing yet, from the directory `root`, opened.
    fn at(root: &Path, exclude: Option<GlobSet>) -> Result<TreeWalk, RepoError> {
        Ok(TreeWalk {
            root: root.to_path_buf(),
            root_dir: dir_handles::open_root(root).map_err(|e| RepoError::io(root, e))?,
            pending: Vec::new(),
            owners: OwnerNames::default(),
            skipped: Vec::new(),
            exclude,
        })
    }

    /// The walk of the folders of `selection`, each under its absolute path without the
    /// leading `/`; nothing above them is listed. Selecting `/` walks the whole file
    /// system (what the exclusion patterns leave of it).
    pub fn selection(selection: &TreeSelection) -> Result<TreeWalk, RepoError> {
        let top = Path::new("/");
        let mut walk = TreeWalk::at(top, selection.exclude.clone())?;
        if selection.folders.iter().any(|f| f == top) {
            walk.push_dir(String::new(), walk.root_dir.clone())?;
            return Ok(walk);
        }
        let mut roots = selection.catalog_roots()?;
        if roots.is_empty() {
            return Err(RepoError::InvalidInput("no folder selected".into()));
        }
        // Popped from the end.
        roots.reverse();
        walk.pending.push(PendingDir {
            relative: String::new(),
            dir: None,
            names: roots,
        });
        Ok(walk)
    }

    /// Paths skipped so far, with the reason.
    pub fn skipped(&self) -> &[String] {
        &self.skipped
    }

    fn excluded(&self, path: &Path) -> bool {
        self.exclude.as_ref().is_some_and(|set| set.is_match(path))
    }

    fn push_dir(&mut self, relative: String, dir: DirHandle) -> Result<(), RepoError> {
        let path = self.root.join(&relative);
        let mut names = Vec::new();
        for name in dir_handles::list(&dir).map_err(|e| RepoError::io(&path, e))? {
            match name {
                Ok(name) if self.excluded(&path.join(&name)) => {}
                Ok(name) => names.push(name),
                Err(raw) => self.leave_out(format!(
                    "{}: name is not UTF-8",
                    path.join(dir_handles::shown(&raw)).display()
                )),
            }
        }
        // Popped from the end: reverse order gives a bytewise sorted walk.
        names.sort_unstable_by(|a, b| b.cmp(a));
        self.pending.push(PendingDir {
            relative,
            dir: Some(dir),
            names,
        });
        Ok(())
    }

    /// Records a path left out, with the reason, and logs it.
    pub fn leave_out(&mut self, reason: String) {
        tracing::warn!("skipped {reason}");
        self.skipped.push(reason);
    }

    /// The next entry of the walk: its path relative to the root, the open directory it
    /// lies in and its name there; `None` at the end.
    fn next_child(&mut self) -> Option<(String, io::Result<DirHandle>, String)> {
        loop {
            let pending = self.pending.last_mut()?;
            let Some(name) = pending.names.pop() else {
                self.pending.pop();
                continue;
            };
            let relative = if pending.relative.is_empty() {
                name.clone()
            } else {
                format!("{}/{name}", pending.relative)
            };
            return Some(match &pending.dir {
                Some(dir) => (relative, Ok(dir.clone()), name),
                // A selected folder: its parents are walked down from the root, each
                // through no link.
                None => {
                    let mut parts: Vec<&str> = name.split('/').collect();
                    let leaf = parts.pop().unwrap_or_default().to_string();
                    let parent = dir_handles::open_beneath(&self.root_dir, parts.into_iter());
                    (relative, parent, leaf)
                }
            });
        }
    }

    fn entry_for(&mut self, path: String, metadata: &EntryMeta) -> CatalogEntry {
        let kind = if metadata.is_file() {
            EntryKind::File
        } else if metadata.is_dir() {
            EntryKind::Dir
        } else if metadata.is_symlink() {
            EntryKind::Symlink
        } else {
            EntryKind::Other
        };
        CatalogEntry {
            path,
            kind,
            mode: metadata.mode() & 0o7777,
            mtime: metadata.mtime(),
            mtime_nsec: metadata.mtime_nsec() as u32,
            uid: metadata.uid(),
            gid: metadata.gid(),
            user: self.owners.user(metadata.uid()),
            group: self.owners.group(metadata.gid()),
            size: 0,
            link: None,
            offset: None,
        }
    }
}

impl Iterator for TreeWalk {
    type Item = Walked;

    /// The next entry of the walk, or `None` at the end. A directory's contents are
    /// listed when it is reached; an entry that cannot be read is skipped.
    fn next(&mut self) -> Option<Walked> {
        while let Some((relative, parent, name)) = self.next_child() {
            let path = self.root.join(&relative);
            let looked = parent.and_then(|dir| Ok((dir_handles::metadata_at(&dir, &name)?, dir)));
            let (metadata, parent) = match looked {
                Ok(found) => found,
                Err(e) => {
                    self.leave_out(format!("{}: {e}", path.display()));
                    continue;
                }
            };
            let mut entry = self.entry_for(relative.clone(), &metadata);
            match entry.kind {
                EntryKind::File => {
                    let file = FileAt::new(parent, name, &metadata);
                    return Some(Walked::File {
                        entry,
                        path,
                        metadata,
                        file,
                    });
                }
                EntryKind::Dir => {
                    let listed = dir_handles::open_dir(&parent, &name)
                        .map_err(|e| RepoError::io(&path, e))
                        .and_then(|dir| self.push_dir(relative, dir));
                    if let Err(e) = listed {
                        self.leave_out(e.to_string());
                    }
                }
                EntryKind::Symlink => match dir_handles::link_target(&parent, &name) {
                    Ok(Some(target)) => entry.link = Some(target),
                    _ => {
                        self.leave_out(format!("{}: unreadable or non-UTF-8 link", path.display()));
                        continue;
                    }
                },
                _ => {}
            }
            return Some(Walked::Entry(entry));
        }
        None
    }
}

impl TreeSource {
    pub fn new(root: &Path, spool_dir: PathBuf) -> Result<TreeSource, RepoError> {
        Ok(TreeSource::over(TreeWalk::new(root)?, spool_dir))
    }

    /// Reads the folders of `selection`, each under its absolute path without the
    /// leading `/`; nothing above them is listed.
    pub fn selection(
        selection: &TreeSelection,
        spool_dir: PathBuf,
    ) -> Result<TreeSource, RepoError> {
        Ok(TreeSource::over(TreeWalk::selection(selection)?, spool_dir))
    }

    fn over(walk: TreeWalk, spool_dir: PathBuf) -> TreeSource {
        TreeSource {
            walk,
            current: None,
            offset: 0,
            catalog: CatalogSpool::new(spool_dir),
            progress: None,
        }
    }

    /// Counts each catalog entry in `progress` as it is recorded.
    pub fn count_entries(&mut self, progress: Arc<Progress>) {
        self.progress = Some(progress);
    }

    fn record(&mut self, entry: &CatalogEntry) -> io::Result<()> {
        if let Some(progress) = &self.progress {
            progress.add_files_done(1);
        }
        self.catalog.write(entry)
    }

    /// Advances the walk to the next regular file, recording every entry on the way.
    fn open_next_file(&mut self) -> io::Result<bool> {
        while let Some(walked) = self.walk.next() {
            match walked {
                Walked::Entry(entry) => self.record(&entry)?,
                Walked::File {
                    mut entry,
                    path,
                    file,
                    ..
                } => match file.open() {
                    Ok(file) => {
                        entry.offset = Some(self.offset);
                        self.current = Some((file, entry));
                        return Ok(true);
                    }
                    Err(e) => self.walk.leave_out(format!("{}: {e}", path.display())),
                },
            }
        }
        Ok(false)
    }

    /// The catalog written and the paths skipped; call after the stream ended.
    pub fn into_catalog(self) -> (SpooledCatalog, Vec<String>) {
        (self.catalog.finish(), self.walk.skipped)
    }
}

impl Read for TreeSource {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some((file, entry)) = self.current.as_mut() {
                let n = file.read(out)?;
                if n > 0 {
                    entry.size += n as u64;
                    self.offset += n as u64;
                    return Ok(n);
                }
                let (_, entry) = self.current.take().expect("current file is set");
                self.record(&entry)?;
            }
            if !self.open_next_file()? {
                return Ok(0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths_after(walk: &mut TreeWalk) -> Vec<String> {
        walk.map(|w| match w {
            Walked::Entry(e) | Walked::File { entry: e, .. } => e.path,
        })
        .collect()
    }

    #[test]
    fn folders_swapped_for_links_mid_walk_do_not_lead_outside() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"never").unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("a/sub")).unwrap();
        std::fs::write(root.join("a/sub/kept"), b"kept").unwrap();
        std::fs::create_dir_all(root.join("b")).unwrap();
        std::fs::write(root.join("b/file"), b"b").unwrap();

        let mut walk = TreeWalk::new(root).unwrap();
        // `a` is reached (and listed); then `a/sub` and `b` become links to outside.
        let Some(Walked::Entry(first)) = walk.next() else {
            panic!("a folder first")
        };
        assert_eq!(first.path, "a");
        std::fs::rename(root.join("a/sub"), root.join("a-sub-moved")).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("a/sub")).unwrap();
        std::fs::rename(root.join("b"), root.join("b-moved")).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("b")).unwrap();
        let rest = paths_after(&mut walk);
        assert!(!rest.iter().any(|p| p.contains("secret")), "{rest:?}");
        assert!(rest.contains(&"a/sub".to_string()) && rest.contains(&"b".to_string()));

        // A selected folder whose parent became a link is left out, not followed.
        let selection = TreeSelection {
            folders: vec![root.join("a/sub")],
            exclude: None,
        };
        std::fs::remove_file(root.join("a/sub")).unwrap();
        std::fs::rename(root.join("a-sub-moved"), root.join("a/sub")).unwrap();
        let mut walk = TreeWalk::selection(&selection).unwrap();
        std::fs::rename(root.join("a"), root.join("a-moved")).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("a")).unwrap();
        std::fs::create_dir(outside.path().join("sub")).unwrap();
        std::fs::write(outside.path().join("sub/secret"), b"never").unwrap();
        let walked = paths_after(&mut walk);
        assert!(walked.is_empty(), "{walked:?}");
        assert_eq!(walk.skipped().len(), 1, "{:?}", walk.skipped());
    }
}
