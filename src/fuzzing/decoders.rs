//! The targets of the byte formats, the state store's records and the cron parser.

use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use chrono::{DateTime, Duration, TimeZone, Timelike, Utc};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::format::blob::{
    associated_data, parse_header, write_header, Compression, Domain, HEADER_LEN,
};
use crate::format::catalog::{CatalogEntry, EntryKind};
use crate::format::catalog_index::{decode_marks, path_cmp, IndexBuilder};
use crate::format::config::{ChunkerParams, RepoConfig, CONFIG_FORMAT, CONFIG_VERSION};
use crate::format::content::{decode_leaf, encode_leaf, ContentEntry, ContentRef, LeafRef};
use crate::format::keyfile::KeyFile;
use crate::format::manifest::{
    BackupKind, BackupManifest, CatalogIndexRef, CatalogRef, TarEncoding, MANIFEST_FORMAT,
    MANIFEST_VERSION,
};
use crate::format::pack::{
    check_header, decode_footer, decode_trailer, encode_footer, encode_header, encode_trailer,
    BlobKind, PackEntry, FOOTER_LEN,
};
use crate::format::series::{parse_duration, RetentionAction, RetentionPolicy, SeriesRecord};
use crate::id::{ChunkId, RepositoryId};
use crate::pipeline::keys::{KdfCost, Keys, MasterKey};
use crate::pipeline::seal::{open, seal};
use crate::service::cron::Cron;

/// The most a blob opened here may hold.
const MAX_BLOB: usize = 1 << 20;

/// Fixed working keys, so that seeds sealed once open in every later run.
fn fixed_keys() -> Keys {
    Keys {
        chunk_id_key: [0x5a; 32],
        cipher: XChaCha20Poly1305::new((&[0xa5u8; 32]).into()),
    }
}

const BLOB_NAME: &[u8] = b"fuzz";

/// The blob envelope: its header parsed (and written back to the same bytes), the input
/// opened as a sealed blob, the input taken as an authentic envelope's payload (so the
/// decompression and length checks behind the AEAD are reached), and sealed then opened.
pub fn blob(data: &[u8]) {
    if let Ok(header) = parse_header(data) {
        let mut written = [0u8; HEADER_LEN];
        write_header(&mut written, header.compression, &header.nonce);
        assert_eq!(
            &written[..],
            &data[..HEADER_LEN],
            "header does not re-encode"
        );
    }
    let keys = fixed_keys();
    let _ = open(&keys, Domain::Chunk, BLOB_NAME, data, None, MAX_BLOB);
    if let Some((&first, payload)) = data.split_first() {
        let compression = if first & 1 == 0 {
            Compression::None
        } else {
            Compression::Zstd
        };
        let expected = (first & 2 != 0).then(|| usize::from(first >> 2) * 16);
        let envelope = authentic_envelope(&keys, compression, payload);
        let opened = open(
            &keys,
            Domain::Chunk,
            BLOB_NAME,
            &envelope,
            expected,
            MAX_BLOB,
        );
        if let (Compression::None, Ok(plain)) = (compression, &opened) {
            assert_eq!(plain, payload, "an uncompressed blob opens to its payload");
        }
    }
    if data.len() > MAX_BLOB {
        return;
    }
    let sealed = seal(&keys, Domain::Manifest, BLOB_NAME, data, 1);
    let opened = open(
        &keys,
        Domain::Manifest,
        BLOB_NAME,
        &sealed,
        Some(data.len()),
        MAX_BLOB,
    )
    .expect("a sealed blob opens");
    assert_eq!(opened, data, "seal then open changed the bytes");
}

/// An envelope whose tag is valid for `payload` (stored as it is, not compressed here).
fn authentic_envelope(keys: &Keys, compression: Compression, payload: &[u8]) -> Vec<u8> {
    let nonce = [3u8; 24];
    let mut header = [0u8; HEADER_LEN];
    write_header(&mut header, compression, &nonce);
    let mut body = payload.to_vec();
    let aad = associated_data(Domain::Chunk, BLOB_NAME, compression);
    let tag = keys
        .cipher
        .encrypt_in_place_detached(XNonce::from_slice(&nonce), &aad, &mut body)
        .expect("XChaCha20-Poly1305 seals any length used here");
    [&header[..], &body, tag.as_slice()].concat()
}

pub fn blob_seeds() -> Vec<Vec<u8>> {
    let keys = fixed_keys();
    let text = b"stowage fuzz seed ".repeat(20);
    vec![
        seal(&keys, Domain::Chunk, BLOB_NAME, b"hello", 0),
        seal(&keys, Domain::Chunk, BLOB_NAME, &text, 3),
        [&[0u8][..], b"plain payload"].concat(),
        [
            &[1u8][..],
            &zstd::bulk::compress(&text, 3).expect("zstd compresses"),
        ]
        .concat(),
    ]
}

/// A pack: the input is the whole object (header, blobs, trailer, footer), its trailer
/// region taken unsealed. A trailer that decodes re-encodes to the same bytes and places
/// every entry inside the blob area; the input is also decoded as a trailer alone.
pub fn pack(data: &[u8]) {
    let _ = check_header(data);
    let len = data.len() as u64;
    if let Some(footer) = data.len().checked_sub(FOOTER_LEN).map(|at| &data[at..]) {
        if let Ok(range) = decode_footer(footer, len) {
            assert!(
                16 <= range.start && range.start <= range.end && range.end + 12 == len,
                "footer gave {range:?} in a pack of {len} bytes"
            );
            let trailer = &data[range.start as usize..range.end as usize];
            if let Ok(entries) = decode_trailer(trailer, range.start) {
                assert_eq!(
                    encode_trailer(&entries),
                    trailer,
                    "trailer does not re-encode"
                );
                for entry in &entries {
                    let end = u64::from(entry.offset) + u64::from(entry.stored_len);
                    assert!(
                        entry.offset >= 16 && end <= range.start,
                        "{entry:?} escapes"
                    );
                }
            }
        }
    }
    if let Ok(entries) = decode_trailer(data, 1 << 32) {
        assert_eq!(encode_trailer(&entries), data, "trailer does not re-encode");
    }
}

pub fn pack_seeds() -> Vec<Vec<u8>> {
    let keys = fixed_keys();
    let blobs = [
        (BlobKind::Data, b"first chunk".to_vec()),
        (BlobKind::Data, b"second chunk, a little longer".to_vec()),
        (
            BlobKind::List,
            encode_leaf(&[ContentEntry {
                id: ChunkId([1; 32]),
                len: 11,
            }]),
        ),
    ];
    let mut pack = encode_header().to_vec();
    let mut entries = Vec::new();
    for (kind, plain) in &blobs {
        let sealed = seal(&keys, Domain::Chunk, b"chunk", plain, 0);
        entries.push(PackEntry {
            id: keys.chunk_id(plain),
            kind: *kind,
            offset: pack.len() as u32,
            stored_len: sealed.len() as u32,
            raw_len: plain.len() as u32,
        });
        pack.extend_from_slice(&sealed);
    }
    let trailer = encode_trailer(&entries);
    let mut whole = pack.clone();
    whole.extend_from_slice(&trailer);
    whole.extend_from_slice(&encode_footer(trailer.len() as u32));
    let mut empty = encode_header().to_vec();
    let none = encode_trailer(&[]);
    empty.extend_from_slice(&none);
    empty.extend_from_slice(&encode_footer(none.len() as u32));
    vec![whole, empty, trailer]
}

/// Decodes `T` and checks that it survives encoding and decoding again.
fn round_trip<T: PartialEq + std::fmt::Debug>(
    decoded: Option<T>,
    encode: impl Fn(&T) -> Vec<u8>,
    decode: impl Fn(&[u8]) -> Option<T>,
) {
    if let Some(value) = decoded {
        let bytes = encode(&value);
        let again = decode(&bytes);
        assert_eq!(again.as_ref(), Some(&value), "does not survive re-encoding");
        assert_eq!(
            again.map(|v| encode(&v)),
            Some(bytes),
            "encoding is unstable"
        );
    }
}

/// A backup manifest: a decoded one re-encodes to an equal manifest.
pub fn manifest(data: &[u8]) {
    let decoded = BackupManifest::decode(data).ok();
    if let Some(manifest) = &decoded {
        let _ = manifest.verified_digest();
    }
    round_trip(decoded, BackupManifest::encode, |b| {
        BackupManifest::decode(b).ok()
    });
}

fn sample_content() -> ContentRef {
    ContentRef {
        size: 300,
        chunks: 3,
        leaves: vec![
            LeafRef {
                id: ChunkId([7; 32]),
                size: 100,
                chunks: 1,
            },
            LeafRef {
                id: ChunkId([8; 32]),
                size: 200,
                chunks: 2,
            },
        ],
    }
}

pub fn manifest_seeds() -> Vec<Vec<u8>> {
    let stream = BackupManifest {
        format: MANIFEST_FORMAT.into(),
        version: MANIFEST_VERSION,
        id: "6f1c2a9e-4b7d-4c1e-9a3f-2d8b5e7c9a10"
            .parse()
            .expect("a valid backup id"),
        series: "db".into(),
        kind: BackupKind::Stream,
        created_at: "2026-01-01T00:00:00.000000Z".into(),
        source: "-".into(),
        size: 300,
        blake3: Some(blake3::hash(b"x").to_hex().to_string()),
        sha256: None,
        chunks: 3,
        new_chunks: 2,
        new_metadata_blobs: 1,
        stored_bytes: 250,
        content: sample_content(),
        catalog: None,
        tar: None,
    };
    let tree = BackupManifest {
        kind: BackupKind::Tree,
        blake3: None,
        sha256: Some("ab".repeat(32)),
        catalog: Some(CatalogRef {
            entries: 2,
            content: sample_content(),
            index: Some(CatalogIndexRef {
                marks: 1,
                content: sample_content(),
            }),
        }),
        tar: Some(TarEncoding::Gzip),
        ..stream.clone()
    };
    vec![stream.encode(), tree.encode()]
}

/// A content-list leaf: a decoded leaf re-encodes to exactly the input.
pub fn content(data: &[u8]) {
    if let Ok(entries) = decode_leaf(data) {
        assert_eq!(encode_leaf(&entries), data, "leaf does not re-encode");
    }
}

pub fn content_seeds() -> Vec<Vec<u8>> {
    let entries: Vec<ContentEntry> = (0..3u8)
        .map(|n| ContentEntry {
            id: ChunkId([n; 32]),
            len: 1000 * u32::from(n) + 1,
        })
        .collect();
    vec![encode_leaf(&entries), encode_leaf(&entries[..1])]
}

/// Catalog lines, as a catalog stream holds them: each line that decodes re-encodes as
/// one line that decodes to the same entry.
pub fn catalog(data: &[u8]) {
    for line in data.split(|&b| b == b'\n') {
        if let Ok(entry) = CatalogEntry::decode_line(line) {
            let mut out = Vec::new();
            entry.encode_line(&mut out);
            let (last, body) = out.split_last().expect("a line is written");
            assert_eq!(*last, b'\n', "a catalog line ends with a newline");
            assert!(!body.contains(&b'\n'), "a catalog line holds one line");
            let again = CatalogEntry::decode_line(body).expect("an encoded entry decodes");
            assert_eq!(again, entry, "catalog entry does not survive re-encoding");
        }
    }
}

pub fn catalog_seeds() -> Vec<Vec<u8>> {
    let file = CatalogEntry {
        path: "etc/hosts".into(),
        kind: EntryKind::File,
        mode: 0o644,
        mtime: 1_700_000_000,
        mtime_nsec: 5,
        uid: 0,
        gid: 0,
        user: "root".into(),
        group: "root".into(),
        size: 120,
        link: None,
        offset: Some(0),
    };
    let link = CatalogEntry {
        path: "etc/localtime".into(),
        kind: EntryKind::Symlink,
        size: 0,
        link: Some("../usr/share/zoneinfo/UTC".into()),
        offset: None,
        ..file.clone()
    };
    let dir = CatalogEntry {
        path: "etc".into(),
        kind: EntryKind::Dir,
        mode: 0o755,
        size: 0,
        offset: None,
        user: String::new(),
        mtime_nsec: 0,
        ..file.clone()
    };
    let mut all = Vec::new();
    for entry in [&dir, &file, &link] {
        entry.encode_line(&mut all);
    }
    let mut one = Vec::new();
    file.encode_line(&mut one);
    vec![all, one]
}

/// A catalog index: whatever decodes keeps the order a search relies on.
pub fn catalog_index(data: &[u8]) {
    let marks = data.iter().filter(|&&b| b == b'\n').count() as u64;
    if let Ok(decoded) = decode_marks(data, marks, u64::MAX, u64::MAX) {
        assert_eq!(decoded.len() as u64, marks, "every line is a mark");
        for pair in decoded.windows(2) {
            if let [before, after] = pair {
                assert!(before.offset < after.offset && before.entry < after.entry);
                assert_eq!(
                    path_cmp(&before.path, &after.path),
                    std::cmp::Ordering::Less
                );
            }
        }
    }
}

pub fn catalog_index_seeds() -> Vec<Vec<u8>> {
    let mut builder = IndexBuilder::new();
    for path in ["etc", "etc/hosts", "etc/localtime", "usr", "usr/bin"] {
        builder.push(path, 40_000);
    }
    let (text, _) = builder.finish().expect("sorted paths are indexed");
    vec![text]
}

/// The key object: a decoded one re-encodes to an equal object, its hex fields are read
/// as unwrapping reads them, and with cheap KDF parameters it is unwrapped.
pub fn keyfile(data: &[u8]) {
    let decoded = KeyFile::decode(data).ok();
    if let Some(key) = &decoded {
        let _ = KeyFile::hex_field::<16>(&key.kdf.salt, "kdf.salt");
        let _ = KeyFile::hex_field::<24>(&key.nonce, "nonce");
        let _ = KeyFile::hex_field::<48>(&key.wrapped_key, "wrapped_key");
        let k = &key.kdf;
        if k.memory_kib <= 64 && k.iterations <= 2 && k.parallelism <= 2 {
            let _ = crate::pipeline::keys::unwrap(key, b"fuzz", &RepositoryId([9; 32]));
        }
    }
    round_trip(decoded, KeyFile::encode, |b| KeyFile::decode(b).ok());
}

pub fn keyfile_seeds() -> Vec<Vec<u8>> {
    let cost = KdfCost {
        memory_kib: 16,
        iterations: 1,
        parallelism: 1,
    };
    let key =
        crate::pipeline::keys::wrap(&MasterKey::random(), b"fuzz", &RepositoryId([9; 32]), cost)
            .expect("wrapping with small parameters works");
    vec![key.encode()]
}

/// The repository config: a decoded one is valid and re-encodes to an equal config.
pub fn config(data: &[u8]) {
    let decoded = RepoConfig::decode(data).ok();
    if let Some(config) = &decoded {
        config.validate().expect("a decoded config is valid");
    }
    round_trip(decoded, RepoConfig::encode, |b| RepoConfig::decode(b).ok());
}

pub fn config_seeds() -> Vec<Vec<u8>> {
    let config = RepoConfig {
        format: CONFIG_FORMAT.into(),
        version: CONFIG_VERSION,
        id: RepositoryId([0x42; 32]),
        chunker: ChunkerParams::default(),
        compression_level: 3,
        pack_size: 32 << 20,
    };
    let small = RepoConfig {
        chunker: ChunkerParams {
            min_size: 64,
            avg_size: 256,
            max_size: 1024,
        },
        compression_level: 0,
        pack_size: 1 << 20,
        ..config.clone()
    };
    vec![config.encode(), small.encode()]
}

/// A series record (re-encodes to an equal record) and the input as a retention duration.
pub fn series(data: &[u8]) {
    round_trip(SeriesRecord::decode(data).ok(), SeriesRecord::encode, |b| {
        SeriesRecord::decode(b).ok()
    });
    if data.len() <= 64 {
        let _ = parse_duration(&String::from_utf8_lossy(data));
    }
}

pub fn series_seeds() -> Vec<Vec<u8>> {
    let policy = RetentionPolicy {
        keep_last: Some(3),
        keep_within_secs: Some(86_400),
        keep_daily: Some(7),
        keep_monthly: Some(12),
        min_keep: 1,
        action: RetentionAction::Delete,
        ..Default::default()
    };
    let record = SeriesRecord::new("db", "2026-01-01T00:00:00Z".into(), policy);
    let plain = SeriesRecord::new("logs", "2026-01-01T00:00:00Z".into(), Default::default());
    vec![record.encode(), plain.encode(), b"1y6m2w3d4h".to_vec()]
}

/// Decodes `T` as the state store decodes its records (JSON) and checks that the value
/// survives encoding and decoding again (numbers compared as JSON numbers, floats to
/// their last bit's tolerance).
fn state_round_trip<T: Serialize + DeserializeOwned>(data: &[u8]) {
    let Ok(value) = serde_json::from_slice::<T>(data) else {
        return;
    };
    let first = serde_json::to_value(&value).expect("a decoded record serializes");
    let bytes = serde_json::to_vec(&value).expect("a decoded record serializes");
    let again: T = serde_json::from_slice(&bytes).expect("an encoded record decodes");
    let second = serde_json::to_value(&again).expect("a decoded record serializes");
    assert!(
        same_json(&first, &second),
        "record does not survive re-encoding:\n{first}\n{second}"
    );
}

fn same_json(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            _ if x == y => true,
            (Some(x), Some(y)) => (x - y).abs() <= f64::EPSILON * x.abs().max(y.abs()),
            _ => false,
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

/// The state store's records, the export the server mirrors into its repository, and the
/// dialects' documents, each decoded from the input.
pub fn state(data: &[u8]) {
    use crate::state::{export, jobs, keys, schedules, users};
    state_round_trip::<keys::KeyRecord>(data);
    state_round_trip::<users::UserRecord>(data);
    state_round_trip::<jobs::JobRecord>(data);
    state_round_trip::<schedules::ScheduleRecord>(data);
    state_round_trip::<export::Export>(data);
    state_round_trip::<crate::service::backupchan::store::StateFile>(data);
    state_round_trip::<crate::service::wings::records::RecordsFile>(data);
    if data.len() <= 16 {
        let text = String::from_utf8_lossy(data);
        if let Ok(role) = text.parse::<keys::Role>() {
            assert_eq!(role.to_string(), text, "a role does not print as it parses");
        }
    }
}

pub fn state_seeds() -> Vec<Vec<u8>> {
    let key = serde_json::json!({
        "id": "k1", "name": "admin", "role": "admin",
        "created_at": "2026-01-01T00:00:00Z", "secret_sha256": "ab".repeat(32),
        "revoked_at": null, "user": "a@example.com", "dialect": "backupchan"
    });
    let user = serde_json::json!({
        "email": "a@example.com", "first_name": "A", "last_name": "B",
        "password_phc": "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA",
        "superuser": true, "created_at": "2026-01-01T00:00:00Z", "last_login": null
    });
    let job = serde_json::json!({
        "sequence": 4,
        "view": {
            "id": "j4", "kind": "backupchan_upload", "subject": "bc-1", "status": "failed",
            "created_at": "2026-01-01T00:00:00Z", "started_at": "2026-01-01T00:00:01Z",
            "finished_at": null,
            "progress": {"bytes_done": 1, "bytes_total": 2, "files_done": 0, "files_total": 0,
                         "rate_bytes_per_sec": 3},
            "error": "broken", "error_kind": "corrupt", "result": {"size": 1.5}
        }
    });
    let schedule = serde_json::json!({
        "name": "nightly", "crontab": "0 2 * * *", "enabled": true,
        "created_at": "2026-01-01T00:00:00Z"
    });
    let export = serde_json::json!({
        "keys": [key], "users": [user], "jobs": [job], "schedules": [schedule],
        "documents": {"wings": {"version": 1, "uploads": {}}},
        "secrets": {"url-signing": "00ff"}
    });
    let backupchan = serde_json::json!({
        "version": 1, "targets": [], "backups": [], "delayed_jobs": [], "next_job_id": 1,
        "seq_uploads": {}, "last_runs": {"recycle": 1_700_000_000.25}
    });
    [key, user, job, schedule, export, backupchan]
        .iter()
        .map(|v| serde_json::to_vec(v).expect("JSON serializes"))
        .collect()
}

/// A fixed moment the cron target computes from.
fn cron_start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 30, 10, 17, 42)
        .single()
        .expect("a valid time")
}

/// A cron expression: when it parses, its next run is later than the start and on the
/// minute, nothing fires between the start and it, and its occurrences over two days are
/// increasing and each the next run of the one before.
pub fn cron(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(cron) = text.parse::<Cron>() else {
        return;
    };
    let _ = cron.form();
    let start = cron_start();
    let Some(next) = cron.next_after(start) else {
        return;
    };
    assert!(
        next > start,
        "{text:?}: next run {next} is not after {start}"
    );
    assert!(
        next.second() == 0 && next.nanosecond() == 0,
        "{text:?}: {next}"
    );
    let gap = (next - start).num_minutes();
    if gap > 1 {
        let probe = start + Duration::minutes((data.len() as i64 * 7919) % gap);
        assert_eq!(cron.next_after(probe), Some(next), "{text:?}: from {probe}");
    }
    let end = start + Duration::days(2);
    if let Ok(runs) = cron.occurrences(start, end, 3000) {
        for pair in runs.windows(2) {
            assert_eq!(
                cron.next_after(pair[0]),
                Some(pair[1]),
                "{text:?}: {runs:?}"
            );
        }
        for run in &runs {
            assert!(*run >= start && *run <= end, "{text:?}: {run} out of range");
        }
        if let Some(first) = runs.first() {
            assert_eq!(
                *first, next,
                "{text:?}: first occurrence is not the next run"
            );
        }
    }
}

pub fn cron_seeds() -> Vec<Vec<u8>> {
    [
        "30 2 * * *",
        "*/15 9-17 * * MON-FRI",
        "0 0 1,15 * 0",
        "5 4 * JAN-MAR,DEC 7",
        "0 3 * * 1 *",
        "30 1 29 2 * 2028",
        "0-59/7 */5 1-31/3 * SUN,sat 2030",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}
