//! The archive a multi target's backup downloads as: a tar stream (ustar headers, GNU
//! long names past 100 bytes) of its files at their relative paths, built while the files
//! are read from the repository, with its length known before the first byte.

use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};

use super::store::Part;

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

fn header(name: &[u8], size: u64, mtime: i64, kind: u8) -> [u8; 512] {
    let mut b = [0u8; 512];
    let n = name.len().min(100);
    b[..n].copy_from_slice(&name[..n]);
    octal(&mut b[100..108], 0o644);
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

/// The header blocks of one member (a long-name entry first when the name needs one).
pub fn member_header(name: &str, size: u64, mtime: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(1536);
    if name.len() > 100 {
        let long = format!("{name}\0");
        out.extend_from_slice(&header(b"././@LongLink", long.len() as u64, 0, b'L'));
        out.extend_from_slice(long.as_bytes());
        out.resize(out.len() + padding(long.len() as u64) as usize, 0);
    }
    out.extend_from_slice(&header(name.as_bytes(), size, mtime, b'0'));
    out
}

/// The archive's total length.
pub fn archive_len(parts: &[Part]) -> u64 {
    parts
        .iter()
        .map(|p| member_header(&p.name, p.size, 0).len() as u64 + p.size + padding(p.size))
        .sum::<u64>()
        + 2 * BLOCK
}

/// Streams the archive; `read(part)` opens the stream of one part's bytes.
pub fn archive<E, F>(parts: Vec<Part>, mtime: i64, read: F) -> BoxStream<'static, Result<Bytes, E>>
where
    E: Send + 'static,
    F: Fn(&Part) -> Result<BoxStream<'static, Result<Bytes, E>>, E> + Send + 'static,
{
    let members = stream::iter(parts).flat_map(move |part| {
        let head = stream::once(futures::future::ready(Ok(Bytes::from(member_header(
            &part.name, part.size, mtime,
        )))));
        let body = match read(&part) {
            Ok(body) => body,
            Err(error) => stream::once(futures::future::ready(Err(error))).boxed(),
        };
        let pad = Bytes::from(vec![0u8; padding(part.size) as usize]);
        head.chain(body)
            .chain(stream::once(futures::future::ready(Ok(pad))))
            .boxed()
    });
    let end = stream::once(futures::future::ready(Ok(Bytes::from(vec![
        0u8;
        2 * BLOCK
            as usize
    ]))));
    members.chain(end).boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::tar::TarCatalogParser;

    #[tokio::test]
    async fn archives_parse_back() {
        let long = format!("{}/file.bin", "d".repeat(120));
        let contents: Vec<(String, Vec<u8>)> = vec![
            ("a.txt".into(), b"hello".to_vec()),
            (long.clone(), vec![7u8; 1000]),
            ("empty".into(), Vec::new()),
        ];
        let parts: Vec<Part> = contents
            .iter()
            .map(|(name, data)| Part {
                name: name.clone(),
                backup: name.clone(),
                size: data.len() as u64,
                sha256: String::new(),
            })
            .collect();
        let expected_len = archive_len(&parts);
        let map = contents.clone();
        let stream = archive::<std::io::Error, _>(parts, 1_700_000_000, move |p| {
            let data = map.iter().find(|(n, _)| *n == p.backup).unwrap().1.clone();
            Ok(stream::iter(vec![Ok(Bytes::from(data))]).boxed())
        });
        let chunks: Vec<Bytes> = stream.map(|r| r.unwrap()).collect().await;
        let bytes: Vec<u8> = chunks.concat();
        assert_eq!(bytes.len() as u64, expected_len);
        let mut parser = TarCatalogParser::new();
        let mut entries = Vec::new();
        parser.feed(&bytes, &mut |e| entries.push(e));
        parser.finish(&mut |e| entries.push(e)).unwrap();
        let names: Vec<_> = entries.iter().map(|e| e.path.clone()).collect();
        assert_eq!(names, ["a.txt", long.as_str(), "empty"]);
        assert_eq!(entries[1].size, 1000);
    }
}
