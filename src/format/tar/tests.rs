//! The tar catalog parser's tests: every supported form, the limits, and proptests
//! that it never panics and agrees with itself however the stream is cut.
#![allow(clippy::indexing_slicing)]

use super::fields::*;
use super::gzip::*;
use super::*;
use crate::format::catalog::{is_safe_relative_path, EntryKind};
use proptest::prelude::*;
use std::io::{Read, Write};

// ---- helpers -------------------------------------------------------------------------

fn parse_pieces(pieces: &[&[u8]]) -> (Vec<CatalogEntry>, Result<TarSummary, NotTar>) {
    let mut entries = Vec::new();
    let mut parser = TarCatalogParser::new();
    for piece in pieces {
        parser.feed(piece, &mut |e| entries.push(e));
    }
    let result = parser.finish(&mut |e| entries.push(e));
    (entries, result)
}

fn parse(stream: &[u8]) -> (Vec<CatalogEntry>, Result<TarSummary, NotTar>) {
    parse_pieces(&[stream])
}

/// Feeds `stream` cut at the given (sorted, deduplicated) positions.
fn parse_split(stream: &[u8], cuts: &[usize]) -> (Vec<CatalogEntry>, Result<TarSummary, NotTar>) {
    let mut cuts: Vec<usize> = cuts.iter().map(|&c| c.min(stream.len())).collect();
    cuts.sort_unstable();
    let mut pieces = Vec::new();
    let mut start = 0;
    for cut in cuts {
        pieces.push(&stream[start..cut]);
        start = cut;
    }
    pieces.push(&stream[start..]);
    parse_pieces(&pieces)
}

fn ok(stream: &[u8]) -> (Vec<CatalogEntry>, TarSummary) {
    let (entries, result) = parse(stream);
    match result {
        Ok(summary) => (entries, summary),
        Err(e) => panic!("expected a tar: {e}"),
    }
}

fn not_tar(stream: &[u8]) -> String {
    match parse(stream).1 {
        Ok(summary) => panic!("expected not a tar, got {summary:?}"),
        Err(e) => e.reason,
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(data)
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// Deterministic pseudo-random bytes.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[derive(Clone, Copy, PartialEq)]
enum Fmt {
    Ustar,
    Gnu,
    V7,
}

#[derive(Clone)]
struct Hdr {
    name: Vec<u8>,
    prefix: Vec<u8>,
    typeflag: u8,
    size: u64,
    mode: u64,
    uid: u64,
    gid: u64,
    mtime: u64,
    link: Vec<u8>,
    uname: &'static str,
    gname: &'static str,
    fmt: Fmt,
}

impl Hdr {
    fn new(name: &str, typeflag: u8, size: u64) -> Hdr {
        Hdr {
            name: name.as_bytes().to_vec(),
            prefix: Vec::new(),
            typeflag,
            size,
            mode: 0o644,
            uid: 1000,
            gid: 100,
            mtime: 1_700_000_000,
            link: Vec::new(),
            uname: "alice",
            gname: "users",
            fmt: Fmt::Ustar,
        }
    }

    fn block(&self) -> [u8; BLOCK] {
        let mut b = [0u8; BLOCK];
        b[..self.name.len()].copy_from_slice(&self.name);
        octal(&mut b[100..108], self.mode);
        octal(&mut b[108..116], self.uid);
        octal(&mut b[116..124], self.gid);
        octal(&mut b[124..136], self.size);
        octal(&mut b[136..148], self.mtime);
        b[156] = self.typeflag;
        b[157..157 + self.link.len()].copy_from_slice(&self.link);
        match self.fmt {
            Fmt::Ustar => b[257..265].copy_from_slice(b"ustar\x0000"),
            Fmt::Gnu => b[257..265].copy_from_slice(b"ustar  \0"),
            Fmt::V7 => {}
        }
        if self.fmt != Fmt::V7 {
            b[265..265 + self.uname.len()].copy_from_slice(self.uname.as_bytes());
            b[297..297 + self.gname.len()].copy_from_slice(self.gname.as_bytes());
        }
        b[345..345 + self.prefix.len()].copy_from_slice(&self.prefix);
        set_checksum(&mut b);
        b
    }
}

fn octal(field: &mut [u8], value: u64) {
    let text = format!("{:0width$o}\0", value, width = field.len() - 1);
    field.copy_from_slice(text.as_bytes());
}

fn set_checksum(b: &mut [u8; BLOCK]) {
    b[148..156].fill(b' ');
    let sum: u64 = b.iter().map(|&x| u64::from(x)).sum();
    b[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
}

fn pax_record(key: &str, value: &str) -> String {
    let body = format!(" {key}={value}\n");
    let mut len = body.len() + 1;
    while format!("{len}{body}").len() != len {
        len += 1;
    }
    format!("{len}{body}")
}

#[derive(Default)]
struct Tar(Vec<u8>);

impl Tar {
    fn raw(&mut self, h: &Hdr, data: &[u8]) -> &mut Self {
        self.0.extend_from_slice(&h.block());
        self.0.extend_from_slice(data);
        let pad = padding(data.len() as u64) as usize;
        self.0.extend(std::iter::repeat_n(0, pad));
        self
    }
    fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.raw(&Hdr::new(name, b'0', data.len() as u64), data)
    }
    fn entry(&mut self, name: &str, typeflag: u8, link: &str) -> &mut Self {
        let mut h = Hdr::new(name, typeflag, 0);
        h.link = link.as_bytes().to_vec();
        self.raw(&h, &[])
    }
    fn pax(&mut self, typeflag: u8, records: &[(&str, &str)]) -> &mut Self {
        let data: String = records.iter().map(|(k, v)| pax_record(k, v)).collect();
        let h = Hdr::new("PaxHeaders/x", typeflag, data.len() as u64);
        self.raw(&h, data.as_bytes())
    }
    fn gnu_long(&mut self, typeflag: u8, name: &str) -> &mut Self {
        let mut data = name.as_bytes().to_vec();
        data.push(0);
        let mut h = Hdr::new("././@LongLink", typeflag, data.len() as u64);
        h.fmt = Fmt::Gnu;
        self.raw(&h, &data)
    }
    fn end(&mut self) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.0);
        out.extend_from_slice(&[0; 2 * BLOCK]);
        out
    }
}

fn entry(path: &str, kind: EntryKind) -> CatalogEntry {
    CatalogEntry {
        path: path.into(),
        kind,
        mode: 0o644,
        mtime: 1_700_000_000,
        mtime_nsec: 0,
        uid: 1000,
        gid: 100,
        user: "alice".into(),
        group: "users".into(),
        size: 0,
        link: None,
        offset: None,
    }
}

/// A tar exercising most header features, with file contents.
fn sample_tar() -> Vec<u8> {
    let long = format!("deep/{}/{}.txt", "x".repeat(80), "y".repeat(60));
    let mut prefixed = Hdr::new("name.txt", b'0', 3);
    prefixed.prefix = b"some/prefix".to_vec();
    Tar::default()
        .entry("./", b'5', "")
        .file("./a.txt", b"hello\n")
        .entry("./d/", b'5', "")
        .file("d/big.bin", &noise(1, 5000))
        .entry("d/link", b'2', "../a.txt")
        .entry("d/hard", b'1', "./a.txt")
        .raw(&prefixed, b"pre")
        .gnu_long(b'L', &long)
        .file("truncated-name", b"long")
        .pax(
            b'x',
            &[("path", "pax/ünïcode name"), ("mtime", "1700000001.25")],
        )
        .file("ignored", b"pax")
        .file("empty", b"")
        .end()
}

// ---- hand-built archives -------------------------------------------------------------

#[test]
fn ustar_entries_fields_and_offsets() {
    let tar = sample_tar();
    let (entries, summary) = ok(&tar);
    let long = format!("deep/{}/{}.txt", "x".repeat(80), "y".repeat(60));
    let paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "a.txt",
            "d",
            "d/big.bin",
            "d/link",
            "d/hard",
            "some/prefix/name.txt",
            long.as_str(),
            "pax/ünïcode name",
            "empty"
        ]
    );
    assert_eq!(
        summary,
        TarSummary {
            compressed: false,
            entries: 9,
            unsafe_paths_skipped: 0,
            tar_bytes: tar.len() as u64
        }
    );
    let contents: [(&str, Vec<u8>); 6] = [
        ("a.txt", b"hello\n".to_vec()),
        ("d/big.bin", noise(1, 5000)),
        ("some/prefix/name.txt", b"pre".to_vec()),
        (long.as_str(), b"long".to_vec()),
        ("pax/ünïcode name", b"pax".to_vec()),
        ("empty", Vec::new()),
    ];
    for (path, content) in contents {
        let e = entries.iter().find(|e| e.path == path).unwrap();
        assert_eq!(e.kind, EntryKind::File, "{path}");
        assert_eq!(e.size, content.len() as u64, "{path}");
        let at = e.offset.unwrap() as usize;
        assert_eq!(at % BLOCK, 0);
        assert_eq!(&tar[at..at + content.len()], &content[..], "{path}");
    }
    let mut expected = entry("a.txt", EntryKind::File);
    expected.size = 6;
    expected.offset = Some(1024);
    assert_eq!(entries[0], expected);
    assert_eq!(entries[1], entry("d", EntryKind::Dir));
    let mut link = entry("d/link", EntryKind::Symlink);
    link.link = Some("../a.txt".into());
    assert_eq!(entries[3], link);
    let mut hard = entry("d/hard", EntryKind::Hardlink);
    hard.link = Some("a.txt".into());
    assert_eq!(entries[4], hard);
    let pax = &entries[7];
    assert_eq!((pax.mtime, pax.mtime_nsec), (1_700_000_001, 250_000_000));
}

#[test]
fn pax_records_override_header() {
    // The header says size 0 (as for files over 8 GiB); the PAX size is authoritative.
    let data = noise(2, 700);
    let mut h = Hdr::new("short", b'0', 0);
    h.uid = 5;
    let mut t = Tar::default();
    t.pax(
        b'x',
        &[
            ("path", "./over/ride"),
            ("size", "700"),
            ("uid", "4000000000"),
            ("gid", "7"),
            ("uname", "bob"),
            ("gname", "staff"),
            ("mtime", "-1.5"),
            ("atime", "whatever"),
            ("linkpath", "ignored-for-files"),
        ],
    );
    t.raw(&h, &data);
    t.file("next", b"n");
    let tar = t.end();
    let (entries, _) = ok(&tar);
    assert_eq!(entries.len(), 2);
    let e = &entries[0];
    assert_eq!(e.path, "over/ride");
    assert_eq!(e.size, 700);
    assert_eq!((e.uid, e.gid), (4_000_000_000, 7));
    assert_eq!((e.user.as_str(), e.group.as_str()), ("bob", "staff"));
    assert_eq!((e.mtime, e.mtime_nsec), (-2, 500_000_000));
    assert_eq!(e.link, None);
    let at = e.offset.unwrap() as usize;
    assert_eq!(&tar[at..at + 700], &data[..]);
    // The PAX records applied to one entry only.
    assert_eq!(entries[1].path, "next");
    assert_eq!(entries[1].uid, 1000);
    assert_eq!(entries[1].user, "alice");
    assert_eq!(&tar[entries[1].offset.unwrap() as usize], &b'n');
}

#[test]
fn pax_linkpath_and_gnu_long_link() {
    let target = "t/".repeat(80);
    let tar = Tar::default()
        .pax(b'x', &[("linkpath", &target)])
        .entry("s1", b'2', "short")
        .gnu_long(b'K', &target)
        .gnu_long(b'L', &"n".repeat(150))
        .entry("s2", b'2', "short")
        .gnu_long(b'K', "/abs/../../x")
        .entry("s3", b'2', "x")
        .end();
    let (entries, summary) = ok(&tar);
    assert_eq!(summary.entries, 3);
    assert_eq!(entries[0].link.as_deref(), Some(target.as_str()));
    assert_eq!(entries[1].path, "n".repeat(150));
    assert_eq!(entries[1].link.as_deref(), Some(target.as_str()));
    // Symlink targets are recorded verbatim.
    assert_eq!(entries[2].link.as_deref(), Some("/abs/../../x"));
}

#[test]
fn global_pax_applies_to_following_entries() {
    let tar = Tar::default()
        .file("before", b"")
        .pax(
            b'g',
            &[
                ("mtime", "1600000000.5"),
                ("uname", "global"),
                ("path", "not-applied"),
                ("comment", "git archive style"),
            ],
        )
        .file("one", b"1")
        .pax(b'x', &[("uname", "local")])
        .file("two", b"2")
        .pax(b'g', &[("uname", "")])
        .file("three", b"3")
        .end();
    let (entries, _) = ok(&tar);
    let got: Vec<(&str, i64, u32, &str)> = entries
        .iter()
        .map(|e| (e.path.as_str(), e.mtime, e.mtime_nsec, e.user.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("before", 1_700_000_000, 0, "alice"),
            ("one", 1_600_000_000, 500_000_000, "global"),
            ("two", 1_600_000_000, 500_000_000, "local"),
            ("three", 1_600_000_000, 500_000_000, "alice"),
        ]
    );
}

#[test]
fn numeric_field_encodings() {
    // Base-256 size, uid and negative mtime; octal with leading spaces and a space end.
    let data = noise(3, 1234);
    let mut b = Hdr::new("b256", b'0', 0).block();
    b[124..136].fill(0);
    b[124] = 0x80;
    b[134..136].copy_from_slice(&1234u16.to_be_bytes());
    b[108..116].copy_from_slice(&[0x80, 0, 0, 0, 0x01, 0, 0, 0]);
    b[136..148].fill(0xff); // -1
    b[100..108].copy_from_slice(b"  755 \0\0");
    set_checksum(&mut b);
    let mut tar = b.to_vec();
    tar.extend_from_slice(&data);
    tar.resize(tar.len() + padding(1234) as usize, 0);
    tar.extend_from_slice(&Tar::default().file("after", b"x").end());
    let (entries, _) = ok(&tar);
    assert_eq!(entries.len(), 2);
    let e = &entries[0];
    assert_eq!((e.size, e.uid, e.mtime, e.mode), (1234, 1 << 24, -1, 0o755));
    let at = e.offset.unwrap() as usize;
    assert_eq!(&tar[at..at + 1234], &data[..]);
    assert_eq!(entries[1].path, "after");
}

#[test]
fn numeric_parsers() {
    assert_eq!(parse_octal(b"0000644\0"), Some(0o644));
    assert_eq!(parse_octal(b"   644  "), Some(0o644));
    assert_eq!(parse_octal(b"\0\0\0\0"), Some(0));
    assert_eq!(parse_octal(b"64x4"), None);
    assert_eq!(parse_octal(b"9"), None);
    assert_eq!(parse_numeric(&[0xff; 12]), Some(-1));
    assert_eq!(parse_numeric(&[0x80, 0, 0, 1, 0]), Some(256));
    assert_eq!(parse_pax_time(b"12"), Some((12, 0)));
    assert_eq!(parse_pax_time(b"12.000000001999"), Some((12, 1)));
    assert_eq!(parse_pax_time(b"-0.25"), Some((-1, 750_000_000)));
    assert_eq!(parse_pax_time(b"1e9"), None);
    assert_eq!(parse_pax_time(b""), None);
    assert_eq!(parse_pax_time(b"-"), None);
}

#[test]
fn signed_checksum_v7_and_old_conventions() {
    // V7 header (no magic), a directory written as a regular file with a trailing
    // slash, a non-UTF-8 name, and a checksum computed with signed bytes.
    let mut dir = Hdr::new("olddir/", 0, 0);
    dir.fmt = Fmt::V7;
    let mut weird = Hdr::new("", b'0', 2);
    weird.name = b"caf\xe9".to_vec();
    weird.fmt = Fmt::V7;
    let mut b = weird.block();
    b[148..156].fill(b' ');
    let signed: i64 = b.iter().map(|&x| i64::from(x as i8)).sum();
    b[148..156].copy_from_slice(format!("{signed:06o}\0 ").as_bytes());
    let mut tar = Tar::default().raw(&dir, &[]).end();
    tar.truncate(BLOCK);
    tar.extend_from_slice(&b);
    tar.extend_from_slice(b"ok");
    tar.resize(3 * BLOCK, 0);
    let (entries, _) = ok(&tar);
    assert_eq!(entries.len(), 2);
    assert_eq!(
        (entries[0].path.as_str(), entries[0].kind),
        ("olddir", EntryKind::Dir)
    );
    assert_eq!(entries[0].user, "");
    assert_eq!(entries[1].path, "caf\u{fffd}");
    assert_eq!(entries[1].offset, Some(2 * BLOCK as u64));
}

#[test]
fn other_kinds_and_labels() {
    let tar = Tar::default()
        .entry("vol", b'V', "")
        .entry("chr", b'3', "")
        .entry("blk", b'4', "")
        .entry("fifo", b'6', "")
        .file("contig", b"c")
        .end();
    let mut contig = tar.clone();
    contig[4 * BLOCK + 156] = b'7';
    let mut b: [u8; BLOCK] = contig[4 * BLOCK..5 * BLOCK].try_into().unwrap();
    set_checksum(&mut b);
    contig[4 * BLOCK..5 * BLOCK].copy_from_slice(&b);
    let (entries, _) = ok(&contig);
    let kinds: Vec<(&str, EntryKind)> = entries.iter().map(|e| (e.path.as_str(), e.kind)).collect();
    assert_eq!(
        kinds,
        [
            ("chr", EntryKind::Other),
            ("blk", EntryKind::Other),
            ("fifo", EntryKind::Other),
            ("contig", EntryKind::File)
        ]
    );
    assert!(entries[..3]
        .iter()
        .all(|e| e.offset.is_none() && e.size == 0));
}

#[test]
fn directory_size_is_not_data() {
    // GNU tar never skips data after a type-5 directory header.
    let mut dir = Hdr::new("d/", b'5', 4096);
    dir.mode = 0o755;
    let tar = Tar::default().raw(&dir, &[]).file("d/f", b"x").end();
    let (entries, _) = ok(&tar);
    assert_eq!(entries.len(), 2);
    assert_eq!((entries[0].size, entries[0].mode), (0, 0o755));
    assert_eq!(entries[1].path, "d/f");
}

#[test]
fn old_gnu_sparse_with_extension_block() {
    let mut h = Hdr::new("sparse", b'S', 1024);
    h.fmt = Fmt::Gnu;
    let mut b = h.block();
    b[482] = 1; // isextended
    set_checksum(&mut b);
    let mut tar = b.to_vec();
    let mut ext = [0u8; BLOCK];
    ext[504] = 1; // another extension block follows
    tar.extend_from_slice(&ext);
    tar.extend_from_slice(&[0u8; BLOCK]); // last extension block
    tar.extend_from_slice(&noise(4, 1024));
    tar.extend_from_slice(&Tar::default().file("after", b"a").end());
    let (entries, _) = ok(&tar);
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].kind, EntryKind::File);
    assert_eq!(entries[0].size, 1024);
    assert_eq!(entries[0].offset, Some(3 * BLOCK as u64));
    assert_eq!(entries[1].path, "after");
    assert_eq!(entries[1].offset, Some(6 * BLOCK as u64));
}

#[test]
fn unsafe_and_odd_paths() {
    let tar = Tar::default()
        .entry(".", b'5', "")
        .file("../evil", b"e")
        .file("a/../../b", b"e")
        .file("/abs/path", b"a")
        .file("./x//y/./z/", b"z")
        .entry("h", b'1', "../outside")
        .entry("h2", b'1', "")
        .pax(b'x', &[("path", "ok/../../no")])
        .file("fine", b"f")
        .end();
    let (entries, summary) = ok(&tar);
    let paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["abs/path", "x/y/z"]);
    assert_eq!(summary.unsafe_paths_skipped, 5);
    assert!(entries.iter().all(|e| is_safe_relative_path(&e.path)));
}

#[test]
fn end_of_archive_variants() {
    let body = {
        let mut t = Tar::default();
        t.file("a", b"1").file("b", b"22");
        t.0.clone()
    };
    let expect = |stream: &[u8]| {
        let (entries, summary) = ok(stream);
        assert_eq!(entries.len(), 2);
        assert_eq!(summary.tar_bytes, stream.len() as u64);
    };
    expect(&body); // EOF right after the last entry's padding
    let mut one_zero = body.clone();
    one_zero.extend_from_slice(&[0; BLOCK]);
    expect(&one_zero);
    let mut record = body.clone();
    record.resize(10240, 0);
    expect(&record);
    let mut partial_zero = body.clone();
    partial_zero.extend_from_slice(&[0; 100]);
    expect(&partial_zero);
    // Garbage, or even another archive, after the end-of-archive block is ignored.
    let mut garbage = one_zero.clone();
    garbage.extend_from_slice(&noise(5, 3000));
    expect(&garbage);
    let mut concatenated = one_zero.clone();
    concatenated.extend_from_slice(&Tar::default().file("c", b"3").end());
    expect(&concatenated);
    // An empty archive: zero blocks only.
    let (entries, summary) = ok(&[0; 10240]);
    assert!(entries.is_empty());
    assert_eq!(summary.entries, 0);
}

// ---- not a tar -----------------------------------------------------------------------

#[test]
fn non_tar_streams_are_refused() {
    assert_eq!(not_tar(b""), "empty stream");
    not_tar(b"\x1f");
    not_tar(b"\x1f\x8b");
    not_tar(b"hello world, this is not a tar archive\n");
    not_tar(&noise(6, 100_000));
    not_tar(&[0; BLOCK]);
    let mut zeros_then_data = vec![0; 4096];
    zeros_then_data.push(1);
    not_tar(&zeros_then_data);
    not_tar(&gzip(b""));
    not_tar(&gzip(&noise(7, 50_000)));
    not_tar(&gzip(&[0; 512]));
    // A gzip stream whose content is not a tar stops decompressing at once.
    let mut parser = TarCatalogParser::new();
    let compressed = gzip(&noise(8, 1 << 20));
    parser.feed(&compressed[..compressed.len() / 2], &mut |_| {
        panic!("no entry")
    });
    assert!(parser.is_not_tar());
    assert!(parser.finish(&mut |_| {}).is_err());
}

#[test]
fn truncated_and_corrupt_tars_are_refused() {
    let tar = sample_tar();
    // Cut inside the first header, inside file data, inside a long name header.
    for cut in [1, 100, 511, 1024 + 3, 3 * BLOCK + 10] {
        not_tar(&tar[..cut]);
    }
    // Every cut gives an answer without panicking; cuts inside data are refused.
    for cut in 0..tar.len() {
        let (_, result) = parse(&tar[..cut]);
        if cut % BLOCK != 0 && tar[cut - cut % BLOCK..cut].iter().any(|&b| b != 0) {
            assert!(result.is_err(), "cut at {cut}");
        }
    }
    // Cut at a block boundary inside a file's data, and inside its padding.
    let big = ok(&tar)
        .0
        .into_iter()
        .find(|e| e.path == "d/big.bin")
        .unwrap();
    let at = big.offset.unwrap() as usize;
    assert!(not_tar(&tar[..at + 2 * BLOCK]).contains("truncated entry"));
    not_tar(&tar[..at + 5000 + 1]);
    let mut bad_sum = tar.clone();
    bad_sum[BLOCK + 10] ^= 1;
    assert!(not_tar(&bad_sum).contains("checksum"));
    let mut bad_size = tar.clone();
    bad_size[BLOCK + 124] = b'9';
    let mut b: [u8; BLOCK] = bad_size[BLOCK..2 * BLOCK].try_into().unwrap();
    set_checksum(&mut b);
    bad_size[BLOCK..2 * BLOCK].copy_from_slice(&b);
    not_tar(&bad_size);
    // Metadata header followed directly by the end of the archive.
    not_tar(&Tar::default().gnu_long(b'L', "name").end());
    // Malformed PAX records.
    for records in ["5 a=b\n", "x path=y\n", "12 path=y\n\n", "8 path\n"] {
        let h = Hdr::new("p", b'x', records.len() as u64);
        let tar = Tar::default()
            .raw(&h, records.as_bytes())
            .file("f", b"")
            .end();
        not_tar(&tar);
    }
    let mut huge = Hdr::new("huge", b'0', 0).block();
    huge[124..136].fill(0xff);
    huge[124] = 0x80;
    set_checksum(&mut huge);
    not_tar(&[&huge[..], &[0; BLOCK]].concat());
}

#[test]
fn metadata_caps() {
    let h = Hdr::new("././@LongLink", b'L', MAX_META_BYTES + 1);
    let mut parser = TarCatalogParser::new();
    parser.feed(&h.block(), &mut |_| {});
    assert!(parser.is_not_tar(), "refused as soon as the header is read");
    let at_cap = Tar::default()
        .gnu_long(b'L', &"n/".repeat((MAX_META_BYTES as usize - 2) / 2))
        .file("x", b"")
        .end();
    assert_eq!(ok(&at_cap).0.len(), 1);
    let h = Hdr::new("pax", b'x', MAX_META_BYTES + 1);
    not_tar(&h.block());
    let h = Hdr::new("pax", b'g', 0o77_777_777_777);
    not_tar(&h.block());
}

// ---- gzip ----------------------------------------------------------------------------

#[test]
fn gzip_tar_matches_plain() {
    let tar = sample_tar();
    let (plain_entries, plain) = ok(&tar);
    let (entries, summary) = ok(&gzip(&tar));
    assert_eq!(entries, plain_entries);
    assert_eq!(
        summary,
        TarSummary {
            compressed: true,
            ..plain
        }
    );
    // Two members, then zero padding (as written to a blocked device).
    let mut multi = gzip(&tar[..3000]);
    multi.extend_from_slice(&gzip(&tar[3000..]));
    multi.extend_from_slice(&[0; 700]);
    let (entries, summary) = ok(&multi);
    assert_eq!(entries, plain_entries);
    assert_eq!(summary.tar_bytes, tar.len() as u64);
    // Trailing garbage after the last member is ignored.
    let mut garbage = gzip(&tar);
    garbage.extend_from_slice(b"garbage");
    assert_eq!(ok(&garbage).0, plain_entries);
}

/// A gzip member with every optional header field, built by hand.
fn gzip_with_header_fields(data: &[u8]) -> Vec<u8> {
    let mut header = vec![
        0x1f,
        0x8b,
        8,
        FHCRC | FEXTRA | FNAME | FCOMMENT,
        0,
        0,
        0,
        0,
        0,
        3,
    ];
    header.extend_from_slice(&[4, 0, b'a', b'b', 2, 0]);
    header.extend_from_slice(b"name.tar\0comment\0");
    let mut crc = Crc::new();
    crc.update(&header);
    header.extend_from_slice(&((crc.sum() & 0xffff) as u16).to_le_bytes());
    let mut enc = flate2::write::DeflateEncoder::new(header, flate2::Compression::fast());
    enc.write_all(data).unwrap();
    let mut out = enc.finish().unwrap();
    let mut crc = Crc::new();
    crc.update(data);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

#[test]
fn gzip_header_fields_and_corruption() {
    let tar = sample_tar();
    let gz = gzip_with_header_fields(&tar);
    assert_eq!(gunzip(&gz), tar);
    assert_eq!(ok(&gz).0, ok(&tar).0);
    // Header CRC, data CRC, length, truncation.
    let mut bad_hcrc = gz.clone();
    bad_hcrc[12] ^= 1;
    assert!(not_tar(&bad_hcrc).contains("header checksum"));
    let n = gz.len();
    let mut bad_crc = gz.clone();
    bad_crc[n - 8] ^= 1;
    not_tar(&bad_crc);
    let mut bad_len = gz.clone();
    bad_len[n - 1] ^= 1;
    not_tar(&bad_len);
    for cut in [3, 12, 40, n / 2, n - 4, n - 1] {
        not_tar(&gz[..cut]);
    }
    let mut bad_flags = gz.clone();
    bad_flags[3] |= 0x80;
    not_tar(&bad_flags);
    let mut bad_deflate = gzip(&tar);
    let mid = bad_deflate.len() / 2;
    bad_deflate[mid..mid + 16].fill(0xff);
    not_tar(&bad_deflate);
}

// ---- the system tar ------------------------------------------------------------------

struct Expected {
    kind: EntryKind,
    content: Vec<u8>,
    link: Option<String>,
}

fn system_tar_available() -> bool {
    std::path::Path::new("/usr/bin/tar").exists()
        && std::process::Command::new("/usr/bin/tar")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success() && o.stdout.starts_with(b"tar (GNU tar)"))
}

#[test]
fn archives_made_by_gnu_tar() {
    use std::os::unix::fs::MetadataExt;
    if !system_tar_available() {
        eprintln!("GNU tar not found: skipped");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let long_dir = format!("sub/{}", "x".repeat(70));
    let long_file = format!("{long_dir}/{}.txt", "y".repeat(60));
    let long_target = "z".repeat(150);
    std::fs::create_dir_all(root.join(&long_dir)).unwrap();
    std::fs::create_dir_all(root.join("emptydir")).unwrap();
    std::fs::write(root.join("a.txt"), b"hello\n").unwrap();
    std::fs::write(root.join("empty"), b"").unwrap();
    std::fs::write(root.join("sub/b.bin"), noise(9, 70_000)).unwrap();
    std::fs::write(root.join(&long_file), b"long path content").unwrap();
    std::os::unix::fs::symlink("a.txt", root.join("link")).unwrap();
    std::os::unix::fs::symlink(&long_target, root.join("longlink")).unwrap();
    std::fs::hard_link(root.join("a.txt"), root.join("hard")).unwrap();

    let mut expected = std::collections::BTreeMap::new();
    let file = |c: &[u8]| Expected {
        kind: EntryKind::File,
        content: c.to_vec(),
        link: None,
    };
    let other = |kind, link: Option<&str>| Expected {
        kind,
        content: Vec::new(),
        link: link.map(str::to_string),
    };
    expected.insert("a.txt".to_string(), file(b"hello\n"));
    expected.insert("empty".into(), file(b""));
    expected.insert("sub/b.bin".into(), file(&noise(9, 70_000)));
    expected.insert(long_file.clone(), file(b"long path content"));
    expected.insert("link".into(), other(EntryKind::Symlink, Some("a.txt")));
    expected.insert(
        "longlink".into(),
        other(EntryKind::Symlink, Some(&long_target)),
    );
    expected.insert("hard".into(), file(b"hello\n"));
    for dir in ["sub", "emptydir", long_dir.as_str()] {
        expected.insert(dir.into(), other(EntryKind::Dir, None));
    }

    for (name, args) in [
        ("gnu.tar", &["--format=gnu", "-cf"][..]),
        ("pax.tar", &["--format=pax", "-cf"]),
        ("gnu.tar.gz", &["--format=gnu", "-czf"]),
        ("pax.tar.gz", &["--format=posix", "-czf"]),
    ] {
        let archive = tmp.path().join(name);
        let status = std::process::Command::new("/usr/bin/tar")
            .args(args)
            .arg(&archive)
            .arg("-C")
            .arg(&root)
            .arg(".")
            .status()
            .unwrap();
        assert!(status.success(), "{name}");
        let stream = std::fs::read(&archive).unwrap();
        let gz = name.ends_with(".gz");
        let tar = if gz { gunzip(&stream) } else { stream.clone() };
        // Feed it in pieces of a few sizes.
        let pieces: Vec<&[u8]> = stream.chunks(7919).collect();
        let (entries, result) = parse_pieces(&pieces);
        let summary = result.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(summary.compressed, gz, "{name}");
        assert_eq!(summary.tar_bytes, tar.len() as u64, "{name}");
        assert_eq!(summary.entries as usize, expected.len(), "{name}");
        assert_eq!(summary.unsafe_paths_skipped, 0);
        let mut seen = std::collections::BTreeSet::new();
        let mut hard_link_pair = Vec::new();
        for e in &entries {
            let want = expected
                .get(&e.path)
                .unwrap_or_else(|| panic!("{name}: unexpected {e:?}"));
            assert!(seen.insert(e.path.clone()), "{name}: duplicate {}", e.path);
            let meta = std::fs::symlink_metadata(root.join(&e.path)).unwrap();
            assert_eq!(e.uid, meta.uid(), "{name} {}", e.path);
            assert_eq!(e.gid, meta.gid());
            if e.path == "a.txt" || e.path == "hard" {
                // Two names of one file: whichever tar meets first holds the data,
                // the other is a hard link to it.
                let other = if e.path == "a.txt" { "hard" } else { "a.txt" };
                hard_link_pair.push((e.kind, e.link.clone()));
                if e.kind == EntryKind::Hardlink {
                    assert_eq!(e.link.as_deref(), Some(other), "{name}");
                    continue;
                }
            } else {
                assert_eq!(e.kind, want.kind, "{name} {}", e.path);
                assert_eq!(e.link, want.link, "{name} {}", e.path);
            }
            assert_eq!(e.mtime, meta.mtime(), "{name} {}", e.path);
            if name.starts_with("pax") {
                assert_eq!(i64::from(e.mtime_nsec), meta.mtime_nsec(), "{name}");
            }
            if e.kind != EntryKind::Symlink {
                assert_eq!(e.mode, meta.mode() & 0o7777, "{name} {}", e.path);
            }
            if e.kind == EntryKind::File {
                assert_eq!(e.size, want.content.len() as u64);
                let at = e.offset.unwrap() as usize;
                assert_eq!(&tar[at..at + want.content.len()], &want.content[..]);
            } else {
                assert_eq!((e.size, e.offset), (0, None));
            }
        }
        hard_link_pair.sort_by_key(|(kind, _)| *kind == EntryKind::Hardlink);
        assert_eq!(hard_link_pair.len(), 2, "{name}");
        assert_eq!(hard_link_pair[0], (EntryKind::File, None), "{name}");
        assert_eq!(hard_link_pair[1].0, EntryKind::Hardlink, "{name}");
    }
}

// ---- properties ----------------------------------------------------------------------

fn reference_streams() -> Vec<Vec<u8>> {
    let tar = sample_tar();
    let gz = gzip(&tar);
    let gz_fields = gzip_with_header_fields(&tar);
    vec![tar, gz, gz_fields]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_split_gives_the_same_catalog(
        which in 0usize..3,
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..40),
    ) {
        let stream = &reference_streams()[which];
        let cuts: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
        let whole = parse(stream);
        let split = parse_split(stream, &cuts);
        prop_assert!(whole.1.is_ok());
        prop_assert_eq!(whole, split);
    }

    #[test]
    fn byte_at_a_time_prefix_is_consistent(which in 0usize..3, len in 0usize..4000) {
        let stream = &reference_streams()[which];
        let prefix = &stream[..len.min(stream.len())];
        let pieces: Vec<&[u8]> = prefix.chunks(1).collect();
        prop_assert_eq!(parse(prefix), parse_pieces(&pieces));
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        start in prop_oneof![
            Just(Vec::new()),
            Just(vec![0x1f, 0x8b]),
            Just(vec![0x1f, 0x8b, 8, 0x1e]),
            Just(Hdr::new("f", b'0', 3).block().to_vec()),
            Just(Hdr::new("x", b'x', 40).block().to_vec()),
        ],
        data in proptest::collection::vec(any::<u8>(), 0..3000),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let stream = [start, data].concat();
        let cuts: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
        let (entries, result) = parse_split(&stream, &cuts);
        if result.is_ok() {
            prop_assert!(entries.iter().all(|e| is_safe_relative_path(&e.path)));
        }
    }

    #[test]
    fn mutated_archives_never_panic(
        which in 0usize..3,
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let mut stream = reference_streams()[which].clone();
        for (at, byte) in &flips {
            let i = at.index(stream.len());
            stream[i] = *byte;
        }
        let cuts: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
        let whole = parse(&stream);
        let split = parse_split(&stream, &cuts);
        if let Ok(summary) = &whole.1 {
            prop_assert_eq!(summary.entries as usize, whole.0.len());
            prop_assert!(whole.0.iter().all(|e| is_safe_relative_path(&e.path)));
        }
        prop_assert_eq!(whole, split);
    }
}
