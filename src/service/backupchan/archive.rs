//! The archive a multi target's backup downloads as: a tar stream (ustar headers, GNU
//! long names past 100 bytes) of its files at their relative paths, built while the files
//! are read from the repository, with its length known before the first byte. A file that
//! stowage recognised as a tar archive (plain or gzip) contributes its entries instead of
//! itself, as the real server extracts uploaded archives: headers are written anew from
//! the backup's catalog (whose paths are checked safe), contents are copied from the
//! (decompressed) stream.

const BLOCK: u64 = 512;

fn octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    if text.len() <= digits {
        field[..digits].copy_from_slice(text.as_bytes());
        field[digits] = 0;
    } else {
        // Base-256 for values that do not fit (files of 8 GiB and more).
        field.fill(0);
        field[0] = 0x80;
        let bytes = value.to_be_bytes();
        let n = field.len();
        field[n - 8..].copy_from_slice(&bytes);
    }
}

/// Typeflags of the entries written.
pub const FILE: u8 = b'0';
pub const HARDLINK: u8 = b'1';
pub const SYMLINK: u8 = b'2';
pub const DIR: u8 = b'5';

/// What one header describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub size: u64,
    pub mode: u32,
    pub mtime: i64,
    pub kind: u8,
    pub link: Option<String>,
}

fn header(name: &[u8], size: u64, mtime: i64, kind: u8) -> [u8; 512] {
    header_with(name, size, mtime, kind, 0o644, b"")
}

fn header_with(name: &[u8], size: u64, mtime: i64, kind: u8, mode: u32, link: &[u8]) -> [u8; 512] {
    let mut b = [0u8; 512];
    let n = name.len().min(100);
    b[..n].copy_from_slice(&name[..n]);
    let l = link.len().min(100);
    b[157..157 + l].copy_from_slice(&link[..l]);
    octal(&mut b[100..108], (mode & 0o7777) as u64);
    octal(&mut b[108..116], 0);
    octal(&mut b[116..124], 0);
    octal(&mut b[124..136], size);
    octal(&mut b[136..148], mtime.max(0) as u64);
    b[156] = kind;
    b[257..263].copy_from_slice(b"ustar\0");
    b[263..265].copy_from_slice(b"00");
    b[148..156].fill(b' ');
    let sum: u64 = b.iter().map(|&x| x as u64).sum();
    let text = format!("{sum:06o}\0 ");
    b[148..156].copy_from_slice(text.as_bytes());
    b
}

fn padding(size: u64) -> u64 {
    (BLOCK - size % BLOCK) % BLOCK
}

fn long_name(out: &mut Vec<u8>, kind: u8, text: &str) {
    let long = format!("{text}\0");
    out.extend_from_slice(&header(b"././@LongLink", long.len() as u64, 0, kind));
    out.extend_from_slice(long.as_bytes());
    out.resize(out.len() + padding(long.len() as u64) as usize, 0);
}

/// The header blocks of one entry (GNU long-name and long-link entries first when needed).
pub fn entry_header(entry: &Entry) -> Vec<u8> {
    let mut out = Vec::with_capacity(1536);
    let link = entry.link.as_deref().unwrap_or("");
    if link.len() > 100 {
        long_name(&mut out, b'K', link);
    }
    if entry.name.len() > 100 {
        long_name(&mut out, b'L', &entry.name);
    }
    out.extend_from_slice(&header_with(
        entry.name.as_bytes(),
        entry.size,
        entry.mtime,
        entry.kind,
        entry.mode,
        link.as_bytes(),
    ));
    out
}

/// The header blocks of a plain file member.
pub fn member_header(name: &str, size: u64, mtime: i64) -> Vec<u8> {
    entry_header(&Entry {
        name: name.to_string(),
        size,
        mode: 0o644,
        mtime,
        kind: FILE,
        link: None,
    })
}

/// Bytes an entry takes in the archive: headers, content, padding.
pub fn entry_len(entry: &Entry) -> u64 {
    entry_header(entry).len() as u64 + entry.size + padding(entry.size)
}

/// Zero bytes after `size` bytes of content, up to the next block.
pub fn pad(size: u64) -> Vec<u8> {
    vec![0u8; padding(size) as usize]
}

/// The end-of-archive marker.
pub fn end_marker() -> Vec<u8> {
    vec![0u8; 2 * BLOCK as usize]
}

/// Keeps a download from escaping the folder it is extracted in. Entries are offered in
/// archive order; one is refused when its name is absolute, has an empty, `.` or `..`
/// component, lies at or beneath a symbolic link written before (an extractor would
/// write through the link), is a link that would replace or sit above an entry written
/// before, or is a hard link to anything but a file written before.
#[derive(Debug, Default)]
pub struct SafeNames {
    written: std::collections::HashSet<String>,
    /// Every proper ancestor directory of a written entry.
    ancestors: std::collections::HashSet<String>,
    symlinks: std::collections::HashSet<String>,
    files: std::collections::HashSet<String>,
}

/// A relative name without `.`/`..`/empty components, trailing slash removed.
fn clean_name(name: &str) -> Option<&str> {
    let name = name.strip_suffix('/').unwrap_or(name);
    let plain = !name.is_empty()
        && !name.starts_with('/')
        && name
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
        && !name.contains('\0');
    plain.then_some(name)
}

/// `a`, `a/b` for `a/b/c`.
fn proper_ancestors(name: &str) -> impl Iterator<Item = &str> {
    name.match_indices('/').map(move |(at, _)| &name[..at])
}

impl SafeNames {
    pub fn new() -> SafeNames {
        SafeNames::default()
    }

    /// Admits `entry` (and remembers it), or says why it must be left out.
    pub fn admit(&mut self, entry: &Entry) -> Result<(), String> {
        let name = clean_name(&entry.name)
            .ok_or_else(|| format!("{:?} is not a plain relative name", entry.name))?;
        if let Some(link) = proper_ancestors(name).find(|a| self.symlinks.contains(*a)) {
            return Err(format!("{name} lies beneath the symbolic link {link}"));
        }
        if self.symlinks.contains(name) {
            return Err(format!("{name} would replace a symbolic link"));
        }
        if entry.kind == SYMLINK && (self.written.contains(name) || self.ancestors.contains(name)) {
            return Err(format!(
                "the symbolic link {name} would replace an entry before it"
            ));
        }
        if entry.kind == HARDLINK {
            let target = entry.link.as_deref().and_then(clean_name);
            if !target.is_some_and(|t| self.files.contains(t)) {
                return Err(format!(
                    "the hard link {name} does not point at a file before it ({:?})",
                    entry.link.as_deref().unwrap_or("")
                ));
            }
        }
        for ancestor in proper_ancestors(name) {
            self.ancestors.insert(ancestor.to_string());
        }
        self.written.insert(name.to_string());
        match entry.kind {
            SYMLINK => {
                self.symlinks.insert(name.to_string());
            }
            FILE | HARDLINK => {
                self.files.insert(name.to_string());
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_escapes_the_extraction_folder() {
        let link = |name: &str, kind: u8, target: &str| Entry {
            kind,
            link: Some(target.into()),
            ..file(name, 0)
        };
        let mut names = SafeNames::new();
        let offered = [
            (file("ok.txt", 1), true),
            (link("out", SYMLINK, "/outside"), true),
            (file("out/planted.txt", 1), false),
            (file("out", 1), false),
            (link("out/deeper", SYMLINK, "/"), false),
            (file("/etc/passwd", 1), false),
            (file("a/../../x", 1), false),
            (file("a//x", 1), false),
            (
                Entry {
                    kind: DIR,
                    ..file("d/", 0)
                },
                true,
            ),
            (file("d/f", 1), true),
            (link("d", SYMLINK, "/tmp"), false),
            (link("ok.txt", SYMLINK, "/tmp"), false),
            (link("hard", HARDLINK, "ok.txt"), true),
            (link("hard2", HARDLINK, "out"), false),
            (link("hard3", HARDLINK, "later.txt"), false),
            (link("hard4", HARDLINK, "../ok.txt"), false),
            (file("later.txt", 1), true),
        ];
        for (entry, admitted) in offered {
            assert_eq!(names.admit(&entry).is_ok(), admitted, "{}", entry.name);
        }
    }

    use crate::format::catalog::EntryKind;
    use crate::format::tar::TarCatalogParser;

    fn file(name: &str, size: u64) -> Entry {
        Entry {
            name: name.into(),
            size,
            mode: 0o640,
            mtime: 1_700_000_000,
            kind: FILE,
            link: None,
        }
    }

    #[test]
    fn archives_parse_back() {
        let long = format!("{}/file.bin", "d".repeat(120));
        let link_target = "t".repeat(150);
        let entries = vec![
            Entry {
                kind: DIR,
                ..file("dir/", 0)
            },
            file("dir/a.txt", 5),
            file(&long, 1000),
            Entry {
                kind: SYMLINK,
                link: Some(link_target.clone()),
                ..file("dir/link", 0)
            },
            file("empty", 0),
        ];
        let mut bytes = Vec::new();
        let mut expected = 0;
        for entry in &entries {
            bytes.extend(entry_header(entry));
            bytes.extend(vec![7u8; entry.size as usize]);
            bytes.extend(pad(entry.size));
            expected += entry_len(entry);
        }
        bytes.extend(end_marker());
        assert_eq!(bytes.len() as u64, expected + 1024);
        let mut parser = TarCatalogParser::new();
        let mut parsed = Vec::new();
        parser.feed(&bytes, &mut |e| parsed.push(e));
        parser.finish(&mut |e| parsed.push(e)).unwrap();
        let names: Vec<_> = parsed.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            names,
            ["dir", "dir/a.txt", long.as_str(), "dir/link", "empty"]
        );
        assert_eq!(parsed[0].kind, EntryKind::Dir);
        assert_eq!((parsed[1].size, parsed[1].mode), (5, 0o640));
        assert_eq!(parsed[2].size, 1000);
        assert_eq!(parsed[3].link.as_deref(), Some(link_target.as_str()));
        assert_eq!(parsed[4].mtime, 1_700_000_000);
    }
}
