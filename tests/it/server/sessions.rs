//! Client-chunked backups over `/v1/sessions`: the test plays the client, cutting and
//! naming chunks with the library's chunker and the key the server hands out, and
//! checks what the server accepts, refuses, stores and reclaims.

use reqwest::StatusCode;
use serde_json::{json, Value};

use stowage::format::chunk_batch::{encode_chunk, encode_entry, ChunkEncoding};
use stowage::format::config::ChunkerParams;
use stowage::format::content::ContentEntry;
use stowage::id::ChunkId;
use stowage::pipeline::chunker::cut_points;
use stowage::pipeline::keys::chunk_id_with;
use stowage::pipeline::seal::compress_chunk;
use stowage::service::keys::Role;

use super::{assert_error, blake3_hex, json_of, random_bytes, Server};

const MIB: usize = 1 << 20;

/// An open session as the client sees it.
struct Open {
    id: String,
    key: [u8; 32],
    chunker: ChunkerParams,
    known: Vec<ChunkId>,
}

/// One chunk of the client's stream.
struct Piece<'a> {
    id: ChunkId,
    bytes: &'a [u8],
}

impl Piece<'_> {
    fn entry(&self) -> ContentEntry {
        ContentEntry {
            id: self.id,
            len: self.bytes.len() as u32,
        }
    }
}

async fn open(server: &Server, key: &str, series: &str) -> Open {
    let (status, answer) = server
        .send_json(
            reqwest::Method::POST,
            key,
            "/v1/sessions",
            &json!({ "series": series, "name": "disk.img" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let id = answer["session"]["id"].as_str().unwrap().to_string();
    let known = server
        .request(
            reqwest::Method::GET,
            key,
            &format!("/v1/sessions/{id}/known"),
        )
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(
        known.len() as u64,
        32 * answer["session"]["known_chunks"].as_u64().unwrap()
    );
    Open {
        id,
        key: hex::decode(answer["writer"]["chunk_id_key"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap(),
        chunker: serde_json::from_value(answer["writer"]["chunker"].clone()).unwrap(),
        known: known
            .chunks_exact(32)
            .map(|c| ChunkId::from_slice(c).unwrap())
            .collect(),
    }
}

fn cut<'a>(session: &Open, data: &'a [u8]) -> Vec<Piece<'a>> {
    let mut start = 0;
    cut_points(data, &session.chunker, true)
        .into_iter()
        .map(|len| {
            let bytes = &data[start..start + len];
            start += len;
            Piece {
                id: chunk_id_with(&session.key, bytes),
                bytes,
            }
        })
        .collect()
}

fn chunk_body(pieces: &[&Piece<'_>]) -> Vec<u8> {
    let mut body = Vec::new();
    for piece in pieces {
        match compress_chunk(piece.bytes, 3) {
            Some(frame) => encode_chunk(
                &mut body,
                &piece.id,
                ChunkEncoding::Zstd,
                piece.bytes.len() as u32,
                &frame,
            ),
            None => encode_chunk(
                &mut body,
                &piece.id,
                ChunkEncoding::Raw,
                piece.bytes.len() as u32,
                piece.bytes,
            ),
        }
    }
    body
}

pub(super) async fn post_bytes(
    server: &Server,
    key: &str,
    path: &str,
    body: Vec<u8>,
) -> (StatusCode, Value) {
    let response = server
        .client
        .post(server.url(path))
        .bearer_auth(key)
        .body(body)
        .send()
        .await
        .unwrap();
    json_of(response).await
}

async fn upload(server: &Server, key: &str, session: &str, body: Vec<u8>) -> (StatusCode, Value) {
    post_bytes(server, key, &format!("/v1/sessions/{session}/chunks"), body).await
}

async fn append(
    server: &Server,
    key: &str,
    session: &str,
    at: u64,
    entries: &[ContentEntry],
) -> (StatusCode, Value) {
    let mut body = Vec::new();
    for entry in entries {
        encode_entry(&mut body, entry);
    }
    let path = format!("/v1/sessions/{session}/append?at={at}");
    post_bytes(server, key, &path, body).await
}

async fn finish(
    server: &Server,
    key: &str,
    session: &str,
    size: u64,
    blake3: &str,
) -> (StatusCode, Value) {
    server
        .send_json(
            reqwest::Method::POST,
            key,
            &format!("/v1/sessions/{session}/finish"),
            &json!({ "size": size, "blake3": blake3 }),
        )
        .await
}

/// Backs `data` up as a client would: uploads what the known set lacks, appends in two
/// batches, finishes. Returns the backup and the number of chunks uploaded.
async fn chunked_backup(server: &Server, key: &str, series: &str, data: &[u8]) -> (Value, usize) {
    let session = open(server, key, series).await;
    let pieces = cut(&session, data);
    let mut new: Vec<&Piece<'_>> = Vec::new();
    for piece in &pieces {
        if !session.known.contains(&piece.id) && !new.iter().any(|p| p.id == piece.id) {
            new.push(piece);
        }
    }
    if !new.is_empty() {
        let (status, body) = upload(server, key, &session.id, chunk_body(&new)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let entries: Vec<ContentEntry> = pieces.iter().map(Piece::entry).collect();
    let half = entries.len() / 2;
    let (status, body) = append(server, key, &session.id, 0, &entries[..half]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let at = body["size"].as_u64().unwrap();
    let (status, body) = append(server, key, &session.id, at, &entries[half..]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["size"].as_u64().unwrap(), data.len() as u64);
    let (status, backup) = finish(
        server,
        key,
        &session.id,
        data.len() as u64,
        &blake3_hex(data),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{backup}");
    (backup, new.len())
}

/// Half compressible text, half noise: both encodings travel.
fn disk_image(len: usize, seed: u64) -> Vec<u8> {
    let mut data = random_bytes(len / 2, seed);
    let text = b"stowage keeps every byte once; ".repeat(len / 62 + 1);
    data.extend_from_slice(&text[..len - len / 2]);
    data
}

#[tokio::test]
async fn a_chunked_backup_restores_byte_exact_and_the_next_one_sends_only_what_changed() {
    let server = Server::start().await;
    let (_, backup_key) = server.keys().create("agent", Role::Backup).unwrap();
    let first = disk_image(9 * MIB, 1);
    let (backup, sent) = chunked_backup(&server, &backup_key, "vm", &first).await;
    assert!(sent >= 3, "a first backup sends every chunk ({sent})");
    assert_eq!(backup["size"].as_u64().unwrap(), first.len() as u64);
    assert_eq!(backup["blake3"], blake3_hex(&first).as_str());
    let id = backup["id"].as_str().unwrap();
    assert_eq!(server.download(id).await, first);

    // The second version changes its last megabyte and grows: the known set covers the
    // rest, so only the chunks around the change travel.
    let mut second = first.clone();
    second.truncate(8 * MIB);
    second.extend_from_slice(&random_bytes(2 * MIB, 2));
    let session = open(&server, &backup_key, "vm").await;
    assert!(!session.known.is_empty());
    let total = cut(&session, &second).len();
    server
        .request(
            reqwest::Method::DELETE,
            &backup_key,
            &format!("/v1/sessions/{}", session.id),
        )
        .await;
    let (backup, sent) = chunked_backup(&server, &backup_key, "vm", &second).await;
    assert!(sent < total, "sent {sent} of {total} chunks");
    assert_eq!(
        server.download(backup["id"].as_str().unwrap()).await,
        second
    );
    // The server's own check of what it stored finds everything in order.
    let (status, job) = server.post(&server.admin, "/v1/repository/check").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    let job = server.wait_job(job["job"]["id"].as_str().unwrap()).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["result"]["problems"], json!([]), "{job}");
    // A backup key backs up but never deletes.
    let (status, body) = server
        .send_json(
            reqwest::Method::DELETE,
            &backup_key,
            &format!("/v1/backups/{id}"),
            &json!({}),
        )
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
}

#[tokio::test]
async fn bytes_under_a_wrong_id_are_refused_and_nothing_of_the_batch_is_stored() {
    let server = Server::start().await;
    let before = server.stats().await;
    let data = disk_image(3 * MIB, 3);
    let session = open(&server, &server.writer, "poison").await;
    let pieces = cut(&session, &data);
    let good = &pieces[0];
    let forged = Piece {
        id: good.id,
        bytes: &data[1..=good.bytes.len()],
    };
    let mut body = chunk_body(&[good]);
    body.extend(chunk_body(&[&forged]));
    let (status, answer) = upload(&server, &server.writer, &session.id, body).await;
    assert_error(status, &answer, StatusCode::BAD_REQUEST, "invalid_input");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("nothing of this batch was stored"),
        "{message}"
    );
    // Neither the good chunk nor the forged one was stored: appending it is refused.
    let (status, answer) = append(&server, &server.writer, &session.id, 0, &[good.entry()]).await;
    assert_error(status, &answer, StatusCode::BAD_REQUEST, "invalid_input");
    // A zstd frame that expands past the length it claims is refused too.
    let mut bomb = Vec::new();
    let frame = compress_chunk(&vec![0u8; 4 * MIB], 3).unwrap();
    encode_chunk(&mut bomb, &good.id, ChunkEncoding::Zstd, 1000, &frame);
    let (status, answer) = upload(&server, &server.writer, &session.id, bomb).await;
    assert_error(status, &answer, StatusCode::BAD_REQUEST, "invalid_input");
    // A body that is not a batch at all.
    let (status, answer) = upload(&server, &server.writer, &session.id, vec![1; 40]).await;
    assert_error(status, &answer, StatusCode::BAD_REQUEST, "invalid_input");
    let after = server.stats().await;
    assert_eq!(after["chunks"], before["chunks"]);
    assert_eq!(after["unique_bytes"], before["unique_bytes"]);
}

#[tokio::test]
async fn a_chunk_of_another_series_cannot_be_referenced_and_the_answer_reveals_nothing() {
    let server = Server::start().await;
    let secret = disk_image(2 * MIB, 4);
    server.upload("payroll", &secret).await;
    let session = open(&server, &server.writer, "mine").await;
    assert!(session.known.is_empty(), "a new series has no known set");
    let stored = cut(&session, &secret)[0].entry();
    let never = ContentEntry {
        id: chunk_id_with(&session.key, b"never stored anywhere"),
        len: 21,
    };
    let (status, held) = append(&server, &server.writer, &session.id, 0, &[stored]).await;
    assert_error(status, &held, StatusCode::BAD_REQUEST, "invalid_input");
    let (status, absent) = append(&server, &server.writer, &session.id, 0, &[never]).await;
    assert_error(status, &absent, StatusCode::BAD_REQUEST, "invalid_input");
    let held = held["error"]["message"].as_str().unwrap();
    let absent = absent["error"]["message"].as_str().unwrap();
    assert_eq!(
        held.replace(&stored.id.to_hex(), "X"),
        absent.replace(&never.id.to_hex(), "X"),
        "the answers differ only in the id"
    );
    // Another key cannot even see the session.
    let (status, body) = server
        .get(&server.admin, &format!("/v1/sessions/{}", session.id))
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn an_append_names_its_offset_so_a_client_resumes_after_a_lost_answer() {
    let server = Server::start().await;
    let data = disk_image(6 * MIB, 5);
    let session = open(&server, &server.writer, "resume").await;
    let pieces = cut(&session, &data);
    let all: Vec<&Piece<'_>> = pieces.iter().collect();
    let (status, body) = upload(&server, &server.writer, &session.id, chunk_body(&all)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Uploading again is harmless: chunks are stored once.
    let (status, body) = upload(&server, &server.writer, &session.id, chunk_body(&all)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["uploaded_chunks"].as_u64().unwrap(),
        pieces.len() as u64
    );
    let entries: Vec<ContentEntry> = pieces.iter().map(Piece::entry).collect();
    let (status, _) = append(&server, &server.writer, &session.id, 0, &entries[..1]).await;
    assert_eq!(status, StatusCode::OK);
    // The answer was "lost" and the client sends the same append again: refused as out
    // of place, and the session says where the stream stands.
    let (status, body) = append(&server, &server.writer, &session.id, 0, &entries[..1]).await;
    assert_error(status, &body, StatusCode::CONFLICT, "conflict");
    let (status, state) = server
        .get(&server.writer, &format!("/v1/sessions/{}", session.id))
        .await;
    assert_eq!(status, StatusCode::OK, "{state}");
    let at = state["size"].as_u64().unwrap();
    assert_eq!(at, u64::from(entries[0].len));
    // A length that is not the chunk's own is refused.
    let mut wrong = entries[1];
    wrong.len -= 1;
    let (status, body) = append(&server, &server.writer, &session.id, at, &[wrong]).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_input");
    let (status, body) = append(&server, &server.writer, &session.id, at, &entries[1..]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // A digest that is not the stream's commits nothing and ends the session.
    let (status, body) = finish(
        &server,
        &server.writer,
        &session.id,
        data.len() as u64,
        &blake3_hex(b"something else"),
    )
    .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_input");
    assert_eq!(server.total("?series=resume").await, 0);
    let (status, body) = finish(
        &server,
        &server.writer,
        &session.id,
        data.len() as u64,
        &blake3_hex(&data),
    )
    .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn an_abandoned_or_idle_session_commits_nothing_and_gc_reclaims_its_chunks() {
    let server = Server::start_with(|config| config.session_idle_secs = 1).await;
    let before = server.stats().await;
    for (n, abandon) in [(6, true), (7, false)] {
        let data = disk_image(4 * MIB, n);
        let session = open(&server, &server.writer, "gone").await;
        let pieces = cut(&session, &data);
        let all: Vec<&Piece<'_>> = pieces.iter().collect();
        let (status, body) = upload(&server, &server.writer, &session.id, chunk_body(&all)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let path = format!("/v1/sessions/{}", session.id);
        if abandon {
            let response = server
                .request(reqwest::Method::DELETE, &server.writer, &path)
                .await;
            assert_eq!(response.status(), StatusCode::NO_CONTENT);
        } else {
            // Past the time-out; the server's sweep (every second here) ends it.
            tokio::time::sleep(std::time::Duration::from_millis(3000)).await;
        }
        let (status, body) = server.get(&server.writer, &path).await;
        assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    }
    assert_eq!(server.total("?series=gone").await, 0);
    assert!(server.stats().await["chunks"].as_u64() > before["chunks"].as_u64());
    let (status, job) = server.post(&server.admin, "/v1/repository/gc").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    let job = server.wait_job(job["job"]["id"].as_str().unwrap()).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let after = server.stats().await;
    assert_eq!(after["chunks"], before["chunks"], "{after}");
    assert_eq!(after["unique_bytes"], before["unique_bytes"], "{after}");
}
