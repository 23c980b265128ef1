//! The tar stowage writes for downloads: ustar headers (GNU long-name and long-link
//! entries past 100 bytes, base-256 sizes past 8 GiB), content padding, the end marker,
//! and [`SafeNames`], which keeps a composed archive from escaping the folder it is
//! extracted in. Sans-IO: the caller streams each entry's content between its header and
//! its padding, and knows the archive's length before the first byte ([`entry_len`]).
//! Built field by field without indexing, like every byte format here.

use std::collections::HashSet;

const BLOCK: u64 = 512;

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

/// `bytes` left-aligned in an `N`-byte NUL-padded field (cut at `N`).
fn text_field<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut field = [0u8; N];
    for (slot, byte) in field.iter_mut().zip(bytes) {
        *slot = *byte;
    }
    field
}

/// `value` as zero-padded octal ending in NUL, or in base-256 (first byte `0x80`, the
/// value big-endian in the last eight bytes) when it does not fit, as GNU tar writes
/// files of 8 GiB and more.
fn numeric_field<const N: usize>(value: u64) -> [u8; N] {
    let digits = N.saturating_sub(1);
    let octal = format!("{value:0digits$o}");
    if octal.len() <= digits {
        return text_field(octal.as_bytes());
    }
    let mut field = [0u8; N];
    for (slot, byte) in field.iter_mut().rev().zip(value.to_be_bytes().iter().rev()) {
        *slot = *byte;
    }
    if let Some(first) = field.first_mut() {
        *first = 0x80;
    }
    field
}

/// One 512-byte ustar header block.
fn header_block(name: &[u8], size: u64, mtime: i64, kind: u8, mode: u32, link: &[u8]) -> Vec<u8> {
    let assemble = |checksum: [u8; 8]| {
        let mut block = Vec::with_capacity(BLOCK as usize);
        block.extend_from_slice(&text_field::<100>(name));
        block.extend_from_slice(&numeric_field::<8>(u64::from(mode & 0o7777)));
        block.extend_from_slice(&numeric_field::<8>(0)); // uid
        block.extend_from_slice(&numeric_field::<8>(0)); // gid
        block.extend_from_slice(&numeric_field::<12>(size));
        block.extend_from_slice(&numeric_field::<12>(mtime.max(0).unsigned_abs()));
        block.extend_from_slice(&checksum);
        block.push(kind);
        block.extend_from_slice(&text_field::<100>(link));
        block.extend_from_slice(b"ustar\0");
        block.extend_from_slice(b"00");
        block.resize(BLOCK as usize, 0); // uname, gname, devices, prefix: empty
        block
    };
    // The checksum is the sum of the header's bytes with its own field read as spaces.
    let sum: u64 = assemble([b' '; 8]).iter().map(|&b| u64::from(b)).sum();
    assemble(text_field(format!("{sum:06o}\0 ").as_bytes()))
}

fn padding(size: u64) -> u64 {
    (BLOCK - size % BLOCK) % BLOCK
}

/// A GNU `././@LongLink` entry carrying `text` for the next header (`L` name, `K` link).
fn long_name(out: &mut Vec<u8>, kind: u8, text: &str) {
    let long = format!("{text}\0");
    out.extend(header_block(
        b"././@LongLink",
        long.len() as u64,
        0,
        kind,
        0o644,
        b"",
    ));
    out.extend_from_slice(long.as_bytes());
    out.resize(out.len() + padding(long.len() as u64) as usize, 0);
}

/// The header blocks of one entry (GNU long-name and long-link entries first when needed).
pub fn entry_header(entry: &Entry) -> Vec<u8> {
    let mut out = Vec::with_capacity(3 * BLOCK as usize);
    let link = entry.link.as_deref().unwrap_or("");
    if link.len() > 100 {
        long_name(&mut out, b'K', link);
    }
    if entry.name.len() > 100 {
        long_name(&mut out, b'L', &entry.name);
    }
    out.extend(header_block(
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
    written: HashSet<String>,
    /// Every proper ancestor directory of a written entry.
    ancestors: HashSet<String>,
    symlinks: HashSet<String>,
    files: HashSet<String>,
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
    name.match_indices('/')
        .filter_map(move |(at, _)| name.get(..at))
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
#[allow(clippy::indexing_slicing)]
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
    fn sizes_past_eight_gib_are_written_in_base_256() {
        let big = 9 << 30;
        let header = entry_header(&file("big.img", big));
        assert_eq!(header.len(), 512);
        assert_eq!(header[124], 0x80);
        let mut parser = TarCatalogParser::new();
        let mut parsed = Vec::new();
        parser.feed(&header, &mut |e| parsed.push(e));
        assert_eq!(parsed.len(), 1);
        assert_eq!((parsed[0].path.as_str(), parsed[0].size), ("big.img", big));
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
