//! The tar target: the streaming catalog parser fed the input in pieces whose sizes come
//! from the input's first bytes, compared with the same stream fed whole, and, when asked,
//! with the stream gzip-compressed (in one member or two).
//!
//! Input: byte 0 holds flags (bit 0: also parse the stream gzip-compressed; bit 1: in two
//! members), bytes 1 and 2 seed the piece sizes, the rest is the stream.
//!
//! Beside it, the `archive_end` target: the end check of uploads, likewise split.

use std::io::Write;

use crate::format::catalog::{is_safe_relative_path, CatalogEntry};
use crate::format::tar::{writer, NotTar, TarCatalogParser, TarSummary};

type Outcome = (Vec<CatalogEntry>, Result<TarSummary, NotTar>);

/// Parses `stream` fed in pieces of the sizes `sizes` yields (the rest in one piece).
fn parse(stream: &[u8], mut sizes: impl FnMut() -> usize) -> Outcome {
    let mut parser = TarCatalogParser::new();
    let mut entries = Vec::new();
    let mut rest = stream;
    while !rest.is_empty() {
        let take = sizes().min(rest.len());
        let (piece, after) = rest.split_at(take);
        parser.feed(piece, &mut |entry| entries.push(entry));
        rest = after;
    }
    let result = parser.finish(&mut |entry| entries.push(entry));
    (entries, result)
}

/// Piece sizes drawn from `seed`: its low two bits pick tiny, block-sized, mixed or
/// large pieces; zero-length pieces come too.
fn piece_sizes(seed: u16) -> impl FnMut() -> usize {
    let mut state = u64::from(seed) | 1 << 40;
    move || {
        let r = super::next_random(&mut state) as usize;
        match seed & 3 {
            0 => r % 9,
            1 => r % 1100,
            2 => [0, 1, 511, 512, 513, 10, 4096][r % 7],
            _ => r % 70_000,
        }
    }
}

fn gzip(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for part in parts {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(part).expect("writing to memory");
        out.extend(encoder.finish().expect("writing to memory"));
    }
    out
}

pub fn run(data: &[u8]) {
    let (flags, seed, stream) = match data {
        [flags, a, b, stream @ ..] => (*flags, u16::from_le_bytes([*a, *b]), stream),
        _ => (0, 0, data),
    };
    let whole = parse(stream, || usize::MAX);
    let split = parse(stream, piece_sizes(seed));
    assert_eq!(
        whole, split,
        "the catalog depends on where the stream is split"
    );
    let (entries, result) = &whole;
    for entry in entries {
        assert!(
            is_safe_relative_path(&entry.path),
            "unsafe path in {entry:?}"
        );
        let mut line = Vec::new();
        entry.encode_line(&mut line);
        let decoded = CatalogEntry::decode_line(&line[..line.len() - 1]);
        assert_eq!(
            decoded.ok().as_ref(),
            Some(entry),
            "catalog line of {entry:?}"
        );
    }
    if let Ok(summary) = result {
        assert_eq!(summary.entries, entries.len() as u64, "{summary:?}");
        for entry in entries {
            if let Some(offset) = entry.offset {
                let end = offset.checked_add(entry.size);
                assert!(
                    end.is_some_and(|end| end <= summary.tar_bytes),
                    "{entry:?} lies past the end of a {}-byte tar",
                    summary.tar_bytes
                );
            }
        }
    }
    // A plain stream starting with the gzip magic is itself read as gzip: no comparison.
    if flags & 1 == 0 || stream.first() == Some(&0x1f) {
        return;
    }
    let compressed = if flags & 2 == 0 {
        gzip(&[stream])
    } else {
        let (a, b) = stream.split_at(stream.len() / 2);
        gzip(&[a, b])
    };
    let (zipped_entries, zipped) = parse(&compressed, piece_sizes(seed.rotate_left(3)));
    assert_eq!(&zipped_entries, entries, "gzip changed the catalog");
    match (result, zipped) {
        (Ok(plain), Ok(zipped)) => {
            assert!(zipped.compressed && !plain.compressed);
            assert_eq!(
                TarSummary {
                    compressed: false,
                    ..zipped
                },
                *plain,
                "gzip changed the summary"
            );
        }
        (Err(_), Err(_)) => {}
        (plain, zipped) => panic!("plain {plain:?} but gzip {zipped:?}"),
    }
}

/// A 512-byte tar header; `ustar` writes the magic, else it is a V7 header.
fn header(name: &[u8], typeflag: u8, size: u64, link: &[u8], ustar: bool) -> [u8; 512] {
    let mut b = [0u8; 512];
    let put = |b: &mut [u8; 512], at: usize, bytes: &[u8]| {
        b[at..at + bytes.len()].copy_from_slice(bytes);
    };
    put(&mut b, 0, &name[..name.len().min(100)]);
    put(&mut b, 100, b"0000644\0");
    put(&mut b, 108, b"0001750\0");
    put(&mut b, 116, b"0001750\0");
    put(&mut b, 124, format!("{size:011o}\0").as_bytes());
    put(&mut b, 136, b"14603636600\0");
    b[156] = typeflag;
    put(&mut b, 157, &link[..link.len().min(100)]);
    if ustar {
        put(&mut b, 257, b"ustar\x0000");
        put(&mut b, 265, b"me");
        put(&mut b, 297, b"staff");
    }
    put(&mut b, 148, b"        ");
    let sum: u32 = b.iter().map(|&x| u32::from(x)).sum();
    put(&mut b, 148, format!("{sum:06o}\0 ").as_bytes());
    b
}

/// Appends an entry: its header and its data padded to whole blocks.
fn push(tar: &mut Vec<u8>, header: [u8; 512], data: &[u8]) {
    tar.extend_from_slice(&header);
    tar.extend_from_slice(data);
    tar.resize(tar.len().div_ceil(512) * 512, 0);
}

/// One PAX record, `"<len> key=value\n"`, its length counting itself.
fn pax_record(key: &str, value: &str) -> String {
    let body = format!(" {key}={value}\n");
    let mut len = body.len() + 1;
    while format!("{len}").len() + body.len() != len {
        len += 1;
    }
    format!("{len}{body}")
}

fn end(tar: &mut Vec<u8>) {
    tar.extend_from_slice(&[0u8; 1024]);
}

/// The tar archives the seeds hold: ustar with every entry type, a GNU long name, PAX
/// local and global records, a V7 archive, base-256 numbers and an unsafe path.
fn archives() -> Vec<Vec<u8>> {
    let mut ustar = Vec::new();
    push(&mut ustar, header(b"docs/", b'5', 0, b"", true), &[]);
    push(
        &mut ustar,
        header(b"docs/a.txt", b'0', 12, b"", true),
        b"hello, tar!\n",
    );
    push(
        &mut ustar,
        header(b"latest", b'2', 0, b"docs/a.txt", true),
        &[],
    );
    push(
        &mut ustar,
        header(b"b.txt", b'1', 0, b"docs/a.txt", true),
        &[],
    );
    push(&mut ustar, header(b"fifo", b'6', 0, b"", true), &[]);
    end(&mut ustar);

    let long = format!("{}/file.bin", "deep/".repeat(30));
    let mut gnu = Vec::new();
    let mut name = long.clone().into_bytes();
    name.push(0);
    push(
        &mut gnu,
        header(b"././@LongLink", b'L', name.len() as u64, b"", true),
        &name,
    );
    push(
        &mut gnu,
        header(&long.as_bytes()[..100], b'0', 3, b"", true),
        b"abc",
    );
    end(&mut gnu);

    let mut pax = Vec::new();
    let global = pax_record("uid", "4242") + &pax_record("uname", "fuzzer");
    push(
        &mut pax,
        header(b"pax_global_header", b'g', global.len() as u64, b"", true),
        global.as_bytes(),
    );
    let local = pax_record("path", "pax/é long name.txt")
        + &pax_record("mtime", "1700000000.25")
        + &pax_record("size", "5");
    push(
        &mut pax,
        header(b"PaxHeaders/x", b'x', local.len() as u64, b"", true),
        local.as_bytes(),
    );
    push(&mut pax, header(b"short", b'0', 0, b"", true), b"12345");
    end(&mut pax);

    let mut v7 = Vec::new();
    push(&mut v7, header(b"old/", b'0', 0, b"", false), &[]);
    push(&mut v7, header(b"old/file", 0, 4, b"", false), b"v7!\n");
    end(&mut v7);

    let mut big = Vec::new();
    let mut h = header(b"big", b'0', 0, b"", true);
    h[124..136].copy_from_slice(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    h[136..148].copy_from_slice(&[0xff; 12]);
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&x| u32::from(x)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    push(&mut big, h, b"ok");
    push(&mut big, header(b"../evil", b'0', 0, b"", true), &[]);
    end(&mut big);

    vec![ustar, gnu, pax, v7, big]
}

pub fn seeds() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    for (n, tar) in archives().into_iter().enumerate() {
        let seed = (n as u16) * 0x101 + 1;
        let [a, b] = seed.to_le_bytes();
        let flags = if n == 0 { 3 } else { 1 };
        seeds.push([&[flags, a, b][..], &tar].concat());
        if n == 0 {
            seeds.push([&[0, 7, 0][..], &gzip(&[&tar])].concat());
        }
    }
    seeds
}

/// The end check of uploads (`format::archive_end`): the first byte picks tar or OpenPGP,
/// the second where the rest is split; the verdict must not depend on the split.
pub fn archive_end(data: &[u8]) {
    use crate::format::archive_end::{Expected, StreamEnd};
    let (Some(&kind), Some(&cut)) = (data.first(), data.get(1)) else {
        return;
    };
    let expected = if kind & 1 == 0 {
        Expected::Tar
    } else {
        Expected::OpenPgp
    };
    let body = data.get(2..).unwrap_or_default();
    let mut whole = StreamEnd::new(expected);
    whole.feed(body);
    let at = usize::from(cut) * body.len() / 256;
    let (front, back) = body.split_at(at);
    let mut split = StreamEnd::new(expected);
    split.feed(front);
    split.feed(back);
    let mut bytewise = StreamEnd::new(expected);
    for byte in body.iter().take(4096) {
        bytewise.feed(std::slice::from_ref(byte));
    }
    assert_eq!(whole.finish(), split.finish(), "split at {at}");
    if body.len() <= 4096 {
        assert_eq!(whole.finish(), bytewise.finish(), "fed a byte at a time");
    }
}

pub fn archive_end_seeds() -> Vec<Vec<u8>> {
    let mut tar = vec![0, 100];
    tar.extend(writer::member_header("a.txt", 3, 0));
    tar.extend(b"abc");
    tar.extend(writer::pad(3));
    tar.extend(writer::end_marker());
    // A public-key session key packet, then encrypted data in a partial body and a last
    // two-octet length.
    let mut pgp = vec![1, 40, 0x85, 0x00, 0x03, 1, 2, 3, 0xd2, 0xe9];
    pgp.extend([7u8; 512]);
    pgp.extend([0xc0, 0x10]);
    pgp.extend([8u8; 208]);
    let armored = [
        &[3u8, 9][..],
        b"-----BEGIN PGP MESSAGE-----\n\nhQ==\n-----END PGP MESSAGE-----\n",
    ]
    .concat();
    vec![tar, pgp, armored]
}
