//! Durable changes to small files of the data directory (a restored mirror's files of the
//! earlier layout, files renamed once moved into the state store): a crash leaves either
//! the old file or the new one (temporary file in the same directory, fsync, rename,
//! fsync of the directory).

use std::io::Write;
use std::path::Path;

/// Replaces `path` with `bytes` atomically and durably; the file is private (mode 0600).
pub fn replace_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut temp = tempfile::NamedTempFile::new_in(dir)?;
    temp.write_all(bytes)?;
    temp.as_file().sync_all()?;
    temp.persist(path).map_err(|e| e.error)?;
    if let Ok(dir) = std::fs::File::open(dir) {
        dir.sync_all()?;
    }
    Ok(())
}

/// Makes a rename or removal in `path`'s directory durable (fsync of the directory).
pub fn sync_parent(path: &Path) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_file_swaps_contents() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("records.json");
        replace_file(&path, b"one").unwrap();
        replace_file(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
