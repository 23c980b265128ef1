//! Tree backups through `/v1/sessions`: `stowage put --server URL DIR` with its files
//! cache, end to end through the real CLI, and the server's checks of a catalog a
//! client sends, through plain HTTP.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use reqwest::StatusCode;
use serde_json::{json, Value};

use stowage::format::catalog::{CatalogEntry, EntryKind};
use stowage::format::chunk_batch::{encode_chunk, encode_entry, ChunkEncoding};
use stowage::format::content::ContentEntry;
use stowage::pipeline::keys::chunk_id_with;
use stowage::service::keys::Role;

use super::sessions::post_bytes;
use super::{assert_error, blake3_hex, random_bytes, Server};

pub(crate) fn write(path: &Path, data: &[u8], mode: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Runs the CLI against `server` with `key`, its files cache in `cache`.
async fn cli(server: &Server, key: &str, cache: &Path, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_stowage"));
    command
        .args(args)
        .args(["--server", &server.base])
        .env("STOWAGE_KEY", key)
        .env("STOWAGE_CACHE_DIR", cache)
        .env_remove("STOWAGE_REPO");
    let output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// `put --server --json DIR`: the backup, and what the summary said on stderr.
async fn put(server: &Server, key: &str, cache: &Path, dir: &Path, force: bool) -> Value {
    let dir = dir.to_str().unwrap();
    let mut args = vec!["put", "--series", "site", "--json", dir];
    if force {
        args.insert(1, "--force");
    }
    let output = cli(server, key, cache, &args).await;
    serde_json::from_slice(&output.stdout).unwrap()
}

async fn session_bytes(server: &Server) -> u64 {
    let metrics = server.metrics().await;
    let line = metrics
        .lines()
        .find(|l| l.starts_with("stowage_session_bytes_total "))
        .expect("the session bytes metric");
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

/// Every path under `root` with what it is: file bytes, link target, or a folder; and
/// the permission bits.
pub(crate) fn snapshot(root: &Path) -> Vec<(String, String, u32)> {
    let mut out = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let what = if meta.is_symlink() {
                format!("-> {}", std::fs::read_link(&path).unwrap().display())
            } else if meta.is_dir() {
                pending.push(path.clone());
                "dir".to_string()
            } else {
                blake3_hex(&std::fs::read(&path).unwrap())
            };
            let name = path.strip_prefix(root).unwrap().display().to_string();
            out.push((name, what, meta.permissions().mode() & 0o7777));
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tree_put_through_the_server_restores_exactly_and_unchanged_files_are_not_sent() {
    let work = tempfile::tempdir().unwrap();
    let site = work.path().join("site");
    let cache = work.path().join("cache");
    for i in 0..40u64 {
        let text = format!("page {i}: stowage keeps every byte once\n").repeat(50 + i as usize);
        write(
            &site.join(format!("pages/p{i:02}.html")),
            text.as_bytes(),
            0o644,
        );
    }
    write(&site.join("bin/run.sh"), b"#!/bin/sh\necho hi\n", 0o755);
    write(
        &site.join("data/big.bin"),
        &random_bytes(3 << 20, 21),
        0o600,
    );
    write(&site.join("data/empty"), b"", 0o644);
    std::os::unix::fs::symlink("../pages/p00.html", site.join("data/home")).unwrap();
    // A file is remembered only once its times are more than a second old.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;

    let server = Server::start().await;
    let (_, agent) = server.keys().create("agent", Role::Backup).unwrap();
    let before = session_bytes(&server).await;
    let first = put(&server, &agent, &cache, &site, false).await;
    assert_eq!(first["kind"], "tree", "{first}");
    let first_sent = session_bytes(&server).await - before;
    assert!(
        first_sent > 1 << 20,
        "the first backup sent {first_sent} bytes"
    );

    // Unchanged: no file is read, only entries and the catalog travel.
    let before = session_bytes(&server).await;
    let second = put(&server, &agent, &cache, &site, false).await;
    let second_sent = session_bytes(&server).await - before;
    assert_eq!(second["size"], first["size"]);
    assert_eq!(second["stored_bytes"], 0, "{second}");
    assert!(
        second_sent < 16 << 10,
        "the unchanged backup sent {second_sent} bytes"
    );

    // One page changes: only it is sent.
    let page = site.join("pages/p07.html");
    let mut text = std::fs::read(&page).unwrap();
    text.extend_from_slice(b"an edit\n");
    std::fs::write(&page, &text).unwrap();
    let before = session_bytes(&server).await;
    let third = put(&server, &agent, &cache, &site, false).await;
    let third_sent = session_bytes(&server).await - before;
    assert!(
        third_sent < (16 << 10) + text.len() as u64,
        "the edited backup sent {third_sent} bytes"
    );

    // --force reads every file again: the same backup, nothing new stored.
    let forced = put(&server, &agent, &cache, &site, true).await;
    assert_eq!(forced["size"], third["size"]);
    assert_eq!(forced["stored_bytes"], 0, "{forced}");
    assert_eq!(forced["blake3"], third["blake3"]);

    // The backup restores as the tree was when it was taken.
    let target = work.path().join("restored");
    let id = third["id"].as_str().unwrap();
    let args = ["restore", id, "--target", target.to_str().unwrap()];
    cli(&server, &server.reader, &cache, &args).await;
    assert_eq!(snapshot(&target), snapshot(&site));

    // Other bytes of the same size, the modification time put back: the change time
    // gives the file away, and it is read again.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let other = site.join("pages/p03.html");
    let mtime =
        filetime::FileTime::from_last_modification_time(&std::fs::metadata(&other).unwrap());
    let flipped: Vec<u8> = std::fs::read(&other)
        .unwrap()
        .iter()
        .map(|b| b ^ 0x20)
        .collect();
    std::fs::write(&other, &flipped).unwrap();
    filetime::set_file_mtime(&other, mtime).unwrap();
    let sneaky = put(&server, &agent, &cache, &site, false).await;
    assert_ne!(sneaky["blake3"], third["blake3"]);
    // A damaged cache costs a full read, never a wrong backup: one bit flipped in the
    // first record after the header line fails its tag.
    for file in std::fs::read_dir(cache.join("files")).unwrap() {
        let path = file.unwrap().path();
        let mut bytes = std::fs::read(&path).unwrap();
        let header = bytes.iter().position(|b| *b == b'\n').unwrap();
        bytes[header + 20] ^= 1;
        std::fs::write(&path, bytes).unwrap();
    }
    let damaged = put(&server, &agent, &cache, &site, false).await;
    assert_eq!(damaged["blake3"], sneaky["blake3"]);
    assert_eq!(damaged["stored_bytes"], 0, "{damaged}");
    let again = work.path().join("restored-again");
    let id = damaged["id"].as_str().unwrap();
    let args = ["restore", id, "--target", again.to_str().unwrap()];
    cli(&server, &server.reader, &cache, &args).await;
    assert_eq!(snapshot(&again), snapshot(&site));
    let id = third["id"].as_str().unwrap();
    let (status, catalog) = server
        .get(
            &server.reader,
            &format!("/v1/backups/{id}/catalog/entry?path=pages/p07.html"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{catalog}");
    assert_eq!(catalog["size"], text.len() as u64);

    // A backup key may write but not delete.
    let (status, body) = server
        .send_json(
            reqwest::Method::DELETE,
            &agent,
            &format!("/v1/backups/{id}"),
            &json!({}),
        )
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
}

/// A tree session opened over HTTP, with the writer's chunk-id key.
struct TreeSession {
    id: String,
    key: [u8; 32],
}

async fn open_tree(server: &Server, key: &str) -> TreeSession {
    let (status, answer) = server
        .send_json(
            reqwest::Method::POST,
            key,
            "/v1/sessions",
            &json!({ "series": "hand", "name": "/srv/hand", "kind": "tree" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    assert_eq!(answer["session"]["kind"], "tree");
    assert_eq!(answer["session"]["catalog_entries"], 0);
    TreeSession {
        id: answer["session"]["id"].as_str().unwrap().to_string(),
        key: hex::decode(answer["writer"]["chunk_id_key"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap(),
    }
}

fn line(path: &str, kind: EntryKind, size: u64, offset: Option<u64>) -> Vec<u8> {
    let mut out = Vec::new();
    CatalogEntry {
        path: path.into(),
        kind,
        mode: 0o644,
        mtime: 1_700_000_000,
        mtime_nsec: 0,
        uid: 0,
        gid: 0,
        user: String::new(),
        group: String::new(),
        size,
        link: None,
        offset,
    }
    .encode_line(&mut out);
    out
}

/// Sends `files` (name, bytes) as one chunk each, appended in order; returns the
/// encoded entries.
async fn send_files(server: &Server, key: &str, session: &TreeSession, files: &[&[u8]]) -> Vec<u8> {
    let mut chunks = Vec::new();
    let mut entries = Vec::new();
    for data in files {
        let id = chunk_id_with(&session.key, data);
        encode_chunk(
            &mut chunks,
            &id,
            ChunkEncoding::Raw,
            data.len() as u32,
            data,
        );
        encode_entry(
            &mut entries,
            &ContentEntry {
                id,
                len: data.len() as u32,
            },
        );
    }
    let base = format!("/v1/sessions/{}", session.id);
    let (status, body) = post_bytes(server, key, &format!("{base}/chunks"), chunks).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) =
        post_bytes(server, key, &format!("{base}/append?at=0"), entries.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    entries
}

async fn finish(
    server: &Server,
    key: &str,
    session: &TreeSession,
    claim: Value,
) -> (StatusCode, Value) {
    server
        .send_json(
            reqwest::Method::POST,
            key,
            &format!("/v1/sessions/{}/finish", session.id),
            &claim,
        )
        .await
}

#[tokio::test]
async fn the_server_checks_a_tree_catalog_against_its_stream() {
    let server = Server::start().await;
    let (_, key) = server.keys().create("hand", Role::Backup).unwrap();
    let (a, b): (&[u8], &[u8]) = (b"first file\n", b"second, longer file\n");
    let stream = [a, b].concat();
    let good = [
        line("d", EntryKind::Dir, 0, None),
        line("d/a", EntryKind::File, a.len() as u64, Some(0)),
        line("d/b", EntryKind::File, b.len() as u64, Some(a.len() as u64)),
    ];

    let session = open_tree(&server, &key).await;
    let entries = send_files(&server, &key, &session, &[a, b]).await;
    let catalog = format!("/v1/sessions/{}/catalog", session.id);
    // A file at the wrong offset, paths out of order, a file inside a file: refused,
    // and nothing of the batch is kept.
    for bad in [
        [line("d/a", EntryKind::File, 3, Some(5))].concat(),
        [good[1].clone(), good[0].clone()].concat(),
        [
            line("d", EntryKind::File, 0, Some(0)),
            line("d/a", EntryKind::File, 0, Some(0)),
        ]
        .concat(),
    ] {
        let (status, body) = post_bytes(&server, &key, &format!("{catalog}?at=0"), bad).await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_input");
    }
    let (status, body) =
        post_bytes(&server, &key, &format!("{catalog}?at=0"), good[0].clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["catalog_entries"], 1);
    // A batch sent twice (a lost answer) does not continue the catalog.
    let (status, body) =
        post_bytes(&server, &key, &format!("{catalog}?at=0"), good[0].clone()).await;
    assert_error(status, &body, StatusCode::CONFLICT, "conflict");
    let rest = [good[1].clone(), good[2].clone()].concat();
    let (status, body) = post_bytes(&server, &key, &format!("{catalog}?at=1"), rest).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["catalog_entries"], 3);
    // Entries that are not the ones appended: nothing is committed.
    let (status, body) = finish(
        &server,
        &key,
        &session,
        json!({ "size": stream.len(), "entries_blake3": blake3_hex(b"other") }),
    )
    .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_input");
    assert_eq!(server.ids("?series=hand").await.len(), 0);

    // The same tree again, finished with the entries' digest alone.
    let session = open_tree(&server, &key).await;
    let entries_again = send_files(&server, &key, &session, &[a, b]).await;
    assert_eq!(entries_again, entries);
    let catalog = format!("/v1/sessions/{}/catalog?at=0", session.id);
    let (status, body) = post_bytes(&server, &key, &catalog, good.concat()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, backup) = finish(
        &server,
        &key,
        &session,
        json!({ "size": stream.len(), "entries_blake3": blake3_hex(&entries) }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{backup}");
    assert_eq!(backup["kind"], "tree");
    // The server recorded the digest of the stream it assembled.
    assert_eq!(backup["blake3"], blake3_hex(&stream));
    let id = backup["id"].as_str().unwrap();
    let (status, entry) = server
        .get(&key, &format!("/v1/backups/{id}/catalog/entry?path=d/b"))
        .await;
    assert_eq!(status, StatusCode::OK, "{entry}");
    assert_eq!(entry["offset"], a.len() as u64);

    // A catalog whose files do not add up to the stream commits nothing.
    let session = open_tree(&server, &key).await;
    send_files(&server, &key, &session, &[a, b]).await;
    let catalog = format!("/v1/sessions/{}/catalog?at=0", session.id);
    let (status, body) = post_bytes(&server, &key, &catalog, good[..2].concat()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = finish(
        &server,
        &key,
        &session,
        json!({ "size": stream.len(), "blake3": blake3_hex(&stream) }),
    )
    .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_input");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("add up"),
        "{body}"
    );

    // A stream session takes no catalog, and must send the stream's digest.
    let (status, answer) = server
        .send_json(
            reqwest::Method::POST,
            &key,
            "/v1/sessions",
            &json!({ "series": "hand" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let stream_session = TreeSession {
        id: answer["session"]["id"].as_str().unwrap().to_string(),
        key: session.key,
    };
    let entries = send_files(&server, &key, &stream_session, &[a, b]).await;
    let path = format!("/v1/sessions/{}/catalog?at=0", stream_session.id);
    let (status, body) = post_bytes(&server, &key, &path, good.concat()).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_input");
    let (status, body) = finish(
        &server,
        &key,
        &stream_session,
        json!({ "size": stream.len(), "entries_blake3": blake3_hex(&entries) }),
    )
    .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_input");
    assert_eq!(server.ids("?series=hand").await.len(), 1);
}
