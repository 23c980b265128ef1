//! `stowage serve` over real HTTP: the server runs in-process on a random loopback port
//! (`server::prepare` + `server::router` on our own listener) and a reqwest client speaks
//! the `/v1` API to it: uploads (raw, multipart, as a job), downloads with Range, keys and
//! roles, errors, series with retention, recycle/restore/purge/gc, catalogs, concurrent
//! deduplicating uploads, clients that go away mid-upload, and flat memory on a large
//! streamed upload.

use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use reqwest::header::{HeaderMap, CONTENT_TYPE};
use reqwest::{Body, Client, Response, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::sync::RwLock;

use stowage::server::{self, ServerConfig};
use stowage::service::keys::{KeyStore, Role};

use crate::support::{admin_key, plain_tar, serve_on_loopback};

/// Server tests share it; the memory measurement takes it alone, so no other server in
/// this process moves the peak RSS while it measures.
pub(crate) static MEMORY: RwLock<()> = RwLock::const_new(());

const MIB: usize = 1 << 20;

struct Server {
    base: String,
    client: Client,
    admin: String,
    writer: String,
    reader: String,
    reader_id: String,
    data_dir: PathBuf,
    server: Option<stowage::server::RunningServer>,
    _dir: tempfile::TempDir,
    _guard: Box<dyn Send + Sync>,
}

impl Drop for Server {
    fn drop(&mut self) {
        // Stops in the background; `stop` waits for it.
        if let Some(server) = &self.server {
            server.state().begin_shutdown();
        }
    }
}

impl Server {
    /// The running server's API keys (its state store is held open by the server).
    fn keys(&self) -> &KeyStore {
        &self.server.as_ref().expect("running").state().keys
    }

    async fn start() -> Server {
        Server::start_with(|_| {}).await
    }

    async fn start_with(tweak: impl FnOnce(&mut ServerConfig)) -> Server {
        let guard = MEMORY.read().await;
        Server::launch(tweak, Box::new(guard)).await
    }

    /// Starts a server while no other server test runs.
    async fn start_alone() -> Server {
        let guard = MEMORY.write().await;
        Server::launch(|_| {}, Box::new(guard)).await
    }

    async fn launch(tweak: impl FnOnce(&mut ServerConfig), guard: Box<dyn Send + Sync>) -> Server {
        assert!(
            std::env::var_os("STOWAGE_ADMIN_KEY").is_none()
                && std::env::var_os("STOWAGE_PASSWORD").is_none(),
            "these tests expect STOWAGE_ADMIN_KEY and STOWAGE_PASSWORD to be unset"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let data_dir = dir.path().join("data");
        let mut config = ServerConfig {
            data_dir: data_dir.clone(),
            ..ServerConfig::default()
        };
        tweak(&mut config);
        let state = server::prepare(&config).await.expect("prepare");
        let admin = admin_key(&data_dir);
        let keys = state.keys.clone();
        let (_, writer) = keys.create("writer", Role::Writer).expect("writer key");
        let (reader_record, reader) = keys.create("reader", Role::Reader).expect("reader key");
        let (base, server) = serve_on_loopback(state).await;
        Server {
            base,
            client: Client::builder().no_proxy().build().expect("client"),
            admin,
            writer,
            reader,
            reader_id: reader_record.id,
            data_dir,
            server: Some(server),
            _dir: dir,
            _guard: guard,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn request(&self, method: reqwest::Method, key: &str, path: &str) -> Response {
        self.client
            .request(method, self.url(path))
            .bearer_auth(key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    async fn get(&self, key: &str, path: &str) -> (StatusCode, Value) {
        json_of(self.request(reqwest::Method::GET, key, path).await).await
    }

    async fn post(&self, key: &str, path: &str) -> (StatusCode, Value) {
        json_of(self.request(reqwest::Method::POST, key, path).await).await
    }

    async fn send_json(
        &self,
        method: reqwest::Method,
        key: &str,
        path: &str,
        body: &Value,
    ) -> (StatusCode, Value) {
        let response = self
            .client
            .request(method, self.url(path))
            .bearer_auth(key)
            .json(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        json_of(response).await
    }

    /// Uploads `body` to `series`; `query` is appended as is (`""` or `"?name=..."`).
    async fn upload_raw(&self, series: &str, query: &str, body: impl Into<Body>) -> Response {
        self.client
            .post(self.url(&format!("/v1/series/{series}/backups{query}")))
            .bearer_auth(&self.writer)
            .body(body)
            .send()
            .await
            .expect("upload request")
    }

    /// Uploads `data`, expecting 201; returns the backup.
    async fn upload(&self, series: &str, data: &[u8]) -> Value {
        let (status, backup) = json_of(self.upload_raw(series, "", data.to_vec()).await).await;
        assert_eq!(status, StatusCode::CREATED, "upload: {backup}");
        backup
    }

    async fn download(&self, id: &str) -> Vec<u8> {
        let response = self
            .request(
                reqwest::Method::GET,
                &self.reader,
                &format!("/v1/backups/{id}/content"),
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK, "download {id}");
        response.bytes().await.expect("download body").to_vec()
    }

    /// `total` of `GET /v1/backups{query}`.
    async fn total(&self, query: &str) -> u64 {
        let (status, body) = self.get(&self.reader, &format!("/v1/backups{query}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["total"].as_u64().expect("total")
    }

    async fn ids(&self, query: &str) -> Vec<String> {
        let (status, body) = self.get(&self.reader, &format!("/v1/backups{query}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["backups"]
            .as_array()
            .expect("backups")
            .iter()
            .map(|b| b["id"].as_str().unwrap().to_string())
            .collect()
    }

    /// The Prometheus text of `GET /metrics`.
    async fn metrics(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    async fn stats(&self) -> Value {
        let (status, stats) = self.get(&self.reader, "/v1/repository/stats").await;
        assert_eq!(status, StatusCode::OK, "{stats}");
        stats
    }

    /// Polls a job until it ends; returns its last view.
    async fn wait_job(&self, id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let (status, job) = self.get(&self.reader, &format!("/v1/jobs/{id}")).await;
            assert_eq!(status, StatusCode::OK, "job {id}: {job}");
            match job["status"].as_str() {
                Some("queued") | Some("running") => {}
                _ => return job,
            }
            assert!(Instant::now() < deadline, "job {id} never ended: {job}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Status and JSON body of a response (panics, showing the text, when it is not JSON).
async fn json_of(response: Response) -> (StatusCode, Value) {
    let (status, _, body) = parts(response).await;
    (status, body)
}

async fn parts(response: Response) -> (StatusCode, HeaderMap, Value) {
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.expect("response body");
    if status == StatusCode::NO_CONTENT {
        return (status, headers, Value::Null);
    }
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{status}: body is not JSON ({e}): {text:?}"));
    (status, headers, body)
}

/// Checks the one error shape: the status, `{"error":{"code","message"}}`.
#[track_caller]
fn assert_error(status: StatusCode, body: &Value, want: StatusCode, code: &str) {
    assert_eq!(status, want, "body: {body}");
    assert_eq!(body["error"]["code"], code, "body: {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "error without a message: {body}"
    );
}

fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn blake3_hex(data: &[u8]) -> String {
    blake3::hash(data).to_hex().to_string()
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .unwrap_or_else(|| panic!("missing header {name}: {headers:?}"))
        .to_str()
        .unwrap()
}

/// A chunked request body: `data` in pieces of `piece` bytes.
fn chunked(data: Vec<u8>, piece: usize) -> Body {
    let data = Bytes::from(data);
    let pieces: Vec<io::Result<Bytes>> = (0..data.len())
        .step_by(piece)
        .map(|at| Ok(data.slice(at..(at + piece).min(data.len()))))
        .collect();
    Body::wrap_stream(futures::stream::iter(pieces))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_raw_upload_download_and_ranges() {
    let server = Server::start().await;
    let data = random_bytes(3 * MIB + 12_345, 1);
    let size = data.len() as u64;
    let before = chrono::Utc::now().timestamp();
    let response = server
        .upload_raw("db", "?name=db.sql&sha256=true", data.clone())
        .await;
    let (status, backup) = json_of(response).await;
    assert_eq!(status, StatusCode::CREATED, "{backup}");
    let id = backup["id"].as_str().expect("id").to_string();
    assert!(!id.is_empty());
    assert_eq!(backup["series"], "db");
    assert_eq!(backup["source"], "db.sql");
    assert_eq!(backup["kind"], "stream");
    assert_eq!(backup["size"], size);
    assert_eq!(backup["blake3"], blake3_hex(&data));
    assert_eq!(
        backup["sha256"],
        sha256_hex(&data),
        "asked for with ?sha256=true"
    );
    assert!(backup["stored_bytes"].as_u64().expect("stored_bytes") > 0);
    assert!(backup["chunks"].as_u64().expect("chunks") > 0);
    assert!(backup["recycled_at"].is_null(), "{backup}");
    let created = backup["created_at"].as_str().expect("created_at");
    let created = chrono::DateTime::parse_from_rfc3339(created).expect("created_at is RFC 3339");
    assert!(created.timestamp() >= before - 5, "{created} vs {before}");

    let (status, meta) = server
        .get(&server.reader, &format!("/v1/backups/{id}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{meta}");
    assert_eq!(meta, backup, "metadata differs from the upload's answer");

    let content = format!("/v1/backups/{id}/content");
    let response = server
        .request(reqwest::Method::GET, &server.reader, &content)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers().clone();
    assert_eq!(header(&headers, "content-length"), size.to_string());
    assert_eq!(
        header(&headers, "etag"),
        format!("\"{}\"", blake3_hex(&data))
    );
    assert_eq!(header(&headers, "accept-ranges"), "bytes");
    assert_eq!(
        header(&headers, "content-disposition"),
        "attachment; filename=\"db.sql\""
    );
    let body = response.bytes().await.expect("content");
    assert!(body[..] == data[..], "downloaded bytes differ");

    for (range, start, end) in [
        ("bytes=0-9", 0u64, 9u64),
        ("bytes=100-", 100, size - 1),
        ("bytes=-5", size - 5, size - 1),
        ("bytes=1048570-1048585", 1_048_570, 1_048_585),
    ] {
        let response = server
            .client
            .get(server.url(&content))
            .bearer_auth(&server.reader)
            .header("range", range)
            .send()
            .await
            .expect("range request");
        assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        let headers = response.headers().clone();
        assert_eq!(
            header(&headers, "content-range"),
            format!("bytes {start}-{end}/{size}"),
            "{range}"
        );
        assert_eq!(
            header(&headers, "content-length"),
            (end - start + 1).to_string(),
            "{range}"
        );
        let body = response.bytes().await.expect("range body");
        assert!(
            body[..] == data[start as usize..=end as usize],
            "{range}: wrong bytes"
        );
    }

    for range in [
        format!("bytes={size}-"),
        format!("bytes={}-{}", size + 10, size + 20),
    ] {
        let response = server
            .client
            .get(server.url(&content))
            .bearer_auth(&server.reader)
            .header("range", &range)
            .send()
            .await
            .expect("range request");
        let (status, headers, body) = parts(response).await;
        assert_error(
            status,
            &body,
            StatusCode::RANGE_NOT_SATISFIABLE,
            "range_not_satisfiable",
        );
        assert_eq!(
            header(&headers, "content-range"),
            format!("bytes */{size}"),
            "{range}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_multipart_upload() {
    let server = Server::start().await;
    let data = random_bytes(2 * MIB + 777, 2);
    let boundary = "stowage-test-boundary-7d3f9a";
    let mut body = Vec::new();
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nnot the file\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"dump.bin\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(&data);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let response = server
        .client
        .post(server.url("/v1/series/forms/backups?name=dump.bin"))
        .bearer_auth(&server.writer)
        .header(
            CONTENT_TYPE,
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
        .await
        .expect("multipart upload");
    let (status, backup) = json_of(response).await;
    assert_eq!(status, StatusCode::CREATED, "{backup}");
    assert_eq!(backup["size"], data.len() as u64, "{backup}");
    assert_eq!(backup["blake3"], blake3_hex(&data));
    assert!(backup["sha256"].is_null(), "not asked for: {backup}");
    let id = backup["id"].as_str().unwrap();
    assert!(
        server.download(id).await == data,
        "multipart upload does not round trip"
    );

    // A form without a file field stores nothing.
    let before = server.total("").await;
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello\r\n--{boundary}--\r\n"
    );
    let response = server
        .client
        .post(server.url("/v1/series/forms/backups"))
        .bearer_auth(&server.writer)
        .header(
            CONTENT_TYPE,
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
        .await
        .expect("multipart upload");
    let (status, body) = json_of(response).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_input");
    assert_eq!(server.total("").await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_upload_as_job() {
    let server = Server::start().await;
    let data = random_bytes(6 * MIB + 1, 3);
    let response = server
        .upload_raw("jobs", "?wait=false&name=later.bin", data.clone())
        .await;
    let (status, body) = json_of(response).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let job = &body["job"];
    assert_eq!(job["kind"], "upload", "{body}");
    let job_id = job["id"].as_str().expect("job id").to_string();

    let finished = server.wait_job(&job_id).await;
    assert_eq!(finished["status"], "succeeded", "{finished}");
    assert!(finished["finished_at"].is_string(), "{finished}");
    let result = &finished["result"];
    assert_eq!(result["size"], data.len() as u64, "{finished}");
    assert_eq!(result["blake3"], blake3_hex(&data));
    assert_eq!(result["source"], "later.bin");
    let id = result["id"].as_str().expect("backup id in the job result");

    let (status, meta) = server
        .get(&server.reader, &format!("/v1/backups/{id}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{meta}");
    assert!(server.download(id).await == data, "job upload differs");

    let (status, jobs) = server.get(&server.reader, "/v1/jobs").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        jobs["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|j| j["id"] == job_id.as_str()),
        "{jobs}"
    );
    // An ended job cannot be cancelled; an unknown one is not found.
    let (status, body) = server
        .post(&server.writer, &format!("/v1/jobs/{job_id}/cancel"))
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "conflict");
    let (status, body) = server.get(&server.reader, "/v1/jobs/no-such-job").await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_auth_and_roles() {
    let server = Server::start().await;
    let backup = server.upload("auth", &random_bytes(100_000, 4)).await;
    let id = backup["id"].as_str().unwrap().to_string();

    // No header, malformed headers, a wrong secret.
    let response = server
        .client
        .get(server.url("/v1/backups"))
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(response).await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    let wrong_secret = format!("{}.{}", server.reader_id, "0".repeat(64));
    for authorization in [
        "Bearer".to_string(),
        "Bearer not-a-key".to_string(),
        format!("Basic {}", server.reader),
        format!("Bearer {}", &server.reader[..40]),
        format!("Bearer {wrong_secret}"),
        format!("Bearer {}.{}", "f".repeat(16), "a".repeat(64)),
    ] {
        let response = server
            .client
            .get(server.url("/v1/backups"))
            .header("authorization", &authorization)
            .send()
            .await
            .unwrap();
        let (status, body) = json_of(response).await;
        assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    }

    // A reader reads but does not write.
    let response = server
        .client
        .post(server.url("/v1/series/auth/backups"))
        .bearer_auth(&server.reader)
        .body(vec![1u8; 1000])
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(response).await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let (status, body) = server
        .post(&server.reader, &format!("/v1/backups/{id}/recycle"))
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let (status, body) = server.post(&server.writer, "/v1/repository/gc").await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
    assert_eq!(server.total("").await, 1);
    assert_eq!(server.ids("").await, vec![id.clone()]);
    let (status, _) = server.get(&server.reader, "/v1/series").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(server.download(&id).await, random_bytes(100_000, 4));

    // A revoked key is refused at once.
    server.keys().revoke(&server.reader_id).expect("revoke");
    let (status, body) = server.get(&server.reader, "/v1/backups").await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    let (status, _) = server.get(&server.admin, "/v1/backups").await;
    assert_eq!(status, StatusCode::OK);

    // Operational endpoints need no key.
    for (path, text) in [("/healthz", "ok"), ("/readyz", "ready")] {
        let response = server.client.get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(response.text().await.unwrap().trim(), text, "{path}");
    }
    let response = server
        .client
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let metrics = response.text().await.unwrap();
    assert!(
        metrics.contains("stowage_http_requests_total")
            && metrics.contains("stowage_backups_committed_total 1"),
        "{metrics}"
    );
    let response = server
        .client
        .get(server.url("/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    let (status, document) = json_of(response).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        document["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "{document}"
    );
    let paths = document["paths"].as_object().expect("paths");
    for path in [
        "/v1/backups",
        "/v1/backups/{id}/content",
        "/v1/series/{name}",
        "/v1/repository/gc",
    ] {
        assert!(paths.contains_key(path), "openapi lacks {path}");
    }
    // The upload route (API.md names its parameter `{series}`, the router `{name}`).
    assert!(
        paths.contains_key("/v1/series/{series}/backups")
            || paths.contains_key("/v1/series/{name}/backups"),
        "openapi lacks the upload route: {:?}",
        paths.keys().collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_and_limits() {
    let server = Server::start_with(|config| config.max_upload_bytes = MIB as u64).await;
    let small = random_bytes(200_000, 5);
    server.upload("limits", &small).await;
    assert_eq!(server.total("").await, 1);

    let unknown = "0".repeat(64);
    let (status, body) = server
        .get(&server.reader, &format!("/v1/backups/{unknown}"))
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    let (status, body) = server
        .get(&server.reader, &format!("/v1/backups/{unknown}/content"))
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    let (status, body) = server.get(&server.reader, "/v1/series/nope").await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    let (status, body) = server.get(&server.reader, "/v1/no/such/route").await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    let response = server
        .client
        .get(server.url("/nothing"))
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(response).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");

    // Bad JSON names the field; bad queries and series names are 400.
    let (status, body) = server
        .send_json(
            reqwest::Method::POST,
            &server.writer,
            "/v1/series",
            &json!({"policy": {"keep_last": 1}}),
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_input");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("name"),
        "message does not name the field: {message}"
    );
    let response = server
        .client
        .post(server.url("/v1/series"))
        .bearer_auth(&server.writer)
        .header(CONTENT_TYPE, "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(response).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_input");
    let (status, body) = server.get(&server.reader, "/v1/backups?limit=0").await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_input");
    let response = server.upload_raw("bad%20name%21", "", small.clone()).await;
    let (status, body) = json_of(response).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_input");

    // Over the limit, declared by Content-Length, or found out while streaming a chunked
    // body. The server answers 413 without reading the rest of the body and closes the
    // connection, so a client still sending may see the reset before the answer: either
    // is a refusal (HTTP/1.1 has no other way to stop a sender without Expect).
    let big = random_bytes(2 * MIB, 6);
    for body in [Body::from(big.clone()), chunked(big.clone(), 64 << 10)] {
        let sent = server
            .client
            .post(server.url("/v1/series/limits/backups"))
            .bearer_auth(&server.writer)
            .body(body)
            .send()
            .await;
        if let Ok(response) = sent {
            let (status, body) = json_of(response).await;
            assert_error(
                status,
                &body,
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
            );
        }
    }
    // Exactly at the limit is fine.
    let at_limit = random_bytes(MIB, 7);
    let response = server
        .upload_raw("limits", "", chunked(at_limit.clone(), 100_000))
        .await;
    let (status, body) = json_of(response).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    assert_eq!(
        server.total("").await,
        2,
        "an upload refused with 413 left a backup"
    );
    assert_eq!(server.total("?recycled=true").await, 0);
}

fn policy_keep_last(n: u32) -> Value {
    json!({"keep_last": n, "action": "delete"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_series_and_retention() {
    let server = Server::start().await;
    let (status, series) = server
        .send_json(
            reqwest::Method::POST,
            &server.writer,
            "/v1/series",
            &json!({"name": "db", "policy": policy_keep_last(2)}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{series}");
    assert_eq!(series["name"], "db");
    assert_eq!(series["policy"]["keep_last"], 2, "{series}");
    assert_eq!(series["policy"]["action"], "delete", "{series}");
    assert!(series["created_at"].is_string(), "{series}");

    let (status, body) = server
        .send_json(
            reqwest::Method::POST,
            &server.writer,
            "/v1/series",
            &json!({"name": "db"}),
        )
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "conflict");
    let (status, body) = server
        .send_json(
            reqwest::Method::POST,
            &server.writer,
            "/v1/series",
            &json!({"name": "bad name!"}),
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_input");

    let (status, list) = server.get(&server.reader, "/v1/series").await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = list["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["db"], "{list}");
    let (status, got) = server.get(&server.reader, "/v1/series/db").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got, series);

    let mut ids = Vec::new();
    for i in 0..4u64 {
        let backup = server.upload("db", &random_bytes(300_000, 100 + i)).await;
        ids.push(backup["id"].as_str().unwrap().to_string());
        assert_eq!(
            server.total("?series=db").await,
            (i + 1).min(2),
            "after upload {i} the policy keeps the newest two"
        );
    }
    assert_eq!(server.ids("?series=db").await, ids[2..].to_vec());
    assert_eq!(server.total("?series=db&recycled=true").await, 0);
    for old in &ids[..2] {
        let (status, body) = server
            .get(&server.reader, &format!("/v1/backups/{old}"))
            .await;
        assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    }
    for (i, id) in ids[2..].iter().enumerate() {
        assert_eq!(
            server.download(id).await,
            random_bytes(300_000, 102 + i as u64)
        );
    }

    let (status, updated) = server
        .send_json(
            reqwest::Method::PUT,
            &server.writer,
            "/v1/series/db",
            &json!({"policy": {"keep_last": 3, "action": "recycle"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["policy"]["keep_last"], 3);
    assert_eq!(updated["policy"]["action"], "recycle");
    let (_, got) = server.get(&server.reader, "/v1/series/db").await;
    assert_eq!(got["policy"], updated["policy"]);
    let (status, created) = server
        .send_json(
            reqwest::Method::PUT,
            &server.writer,
            "/v1/series/other",
            &json!({"policy": {"keep_daily": 7}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    assert_eq!(created["name"], "other");

    let (status, body) = json_of(
        server
            .request(reqwest::Method::DELETE, &server.writer, "/v1/series/db")
            .await,
    )
    .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let response = server
        .request(reqwest::Method::DELETE, &server.admin, "/v1/series/db")
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let (status, body) = server.get(&server.reader, "/v1/series/db").await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    assert_eq!(
        server.total("?series=db").await,
        2,
        "deleting a series keeps its backups"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_recycle_restore_purge_gc() {
    let server = Server::start().await;
    let a = random_bytes(4 * MIB, 10);
    let b = random_bytes(4 * MIB, 11);
    let id_a = server.upload("life", &a).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let id_b = server.upload("life", &b).await["id"]
        .as_str()
        .unwrap()
        .to_string();

    let (status, recycled) = server
        .post(&server.writer, &format!("/v1/backups/{id_a}/recycle"))
        .await;
    assert_eq!(status, StatusCode::OK, "{recycled}");
    assert!(recycled["recycled_at"].is_string(), "{recycled}");
    assert_eq!(server.ids("").await, vec![id_b.clone()]);
    assert_eq!(server.ids("?recycled=true").await, vec![id_a.clone()]);
    assert!(server.download(&id_a).await == a, "recycled backup differs");

    let (status, restored) = server
        .post(&server.writer, &format!("/v1/backups/{id_a}/restore"))
        .await;
    assert_eq!(status, StatusCode::OK, "{restored}");
    assert!(restored["recycled_at"].is_null(), "{restored}");
    assert_eq!(server.total("").await, 2);
    assert_eq!(server.total("?recycled=true").await, 0);

    let before = server.stats().await;
    assert_eq!(before["backups"], 2, "{before}");
    let (status, body) = json_of(
        server
            .request(
                reqwest::Method::DELETE,
                &server.writer,
                &format!("/v1/backups/{id_a}"),
            )
            .await,
    )
    .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let response = server
        .request(
            reqwest::Method::DELETE,
            &server.admin,
            &format!("/v1/backups/{id_a}"),
        )
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    for path in [
        format!("/v1/backups/{id_a}"),
        format!("/v1/backups/{id_a}/content"),
    ] {
        let (status, body) = server.get(&server.reader, &path).await;
        assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    }

    let (status, body) = server.post(&server.admin, "/v1/repository/gc").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["job"]["kind"], "gc");
    let job = server
        .wait_job(body["job"]["id"].as_str().expect("gc job id"))
        .await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert!(job["result"].is_object(), "{job}");

    let after = server.stats().await;
    assert_eq!(after["backups"], 1, "{after}");
    let (stored_before, stored_after) = (
        before["stored_bytes"].as_u64().unwrap(),
        after["stored_bytes"].as_u64().unwrap(),
    );
    assert!(
        stored_after + 3 * MIB as u64 <= stored_before,
        "gc reclaimed too little: stored {stored_before} -> {stored_after}"
    );
    assert!(
        server.download(&id_b).await == b,
        "the survivor differs after gc"
    );

    let (status, body) = server
        .post(&server.admin, "/v1/repository/check?read_data=true")
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let job = server.wait_job(body["job"]["id"].as_str().unwrap()).await;
    assert_eq!(job["status"], "succeeded", "{job}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_tar_catalog() {
    let server = Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::write(root.join("a.txt"), b"alpha\n").unwrap();
    std::fs::write(root.join("sub/b.bin"), random_bytes(300_000, 20)).unwrap();
    std::fs::write(root.join("sub/c.txt"), b"gamma\n").unwrap();
    let archive = dir.path().join("out.tar");
    let tar = std::process::Command::new("/usr/bin/tar")
        .arg("-cf")
        .arg(&archive)
        .arg("-C")
        .arg(&root)
        .args(["a.txt", "sub"])
        .status()
        .expect("run tar");
    assert!(tar.success());
    let data = std::fs::read(&archive).unwrap();

    let response = server
        .upload_raw("tars", "?name=site.tar", data.clone())
        .await;
    let (status, backup) = json_of(response).await;
    assert_eq!(status, StatusCode::CREATED, "{backup}");
    let entries = backup["catalog_entries"].as_u64().expect("catalog_entries");
    assert_eq!(entries, 4, "{backup}");
    assert!(!backup["tar"].is_null(), "{backup}");
    let id = backup["id"].as_str().unwrap();
    assert!(server.download(id).await == data);

    let (status, all) = server
        .get(&server.reader, &format!("/v1/backups/{id}/catalog"))
        .await;
    assert_eq!(status, StatusCode::OK, "{all}");
    assert_eq!(all["total"], entries, "{all}");
    let paths: Vec<&str> = all["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().expect("path"))
        .collect();
    for expected in ["a.txt", "sub/b.bin", "sub/c.txt"] {
        assert!(paths.contains(&expected), "{expected} missing: {paths:?}");
    }
    assert!(
        paths.iter().any(|p| p.trim_end_matches('/') == "sub"),
        "{paths:?}"
    );
    let b = all["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == "sub/b.bin")
        .unwrap();
    assert_eq!(b["size"], 300_000, "{b}");

    let (status, sub) = server
        .get(
            &server.reader,
            &format!("/v1/backups/{id}/catalog?prefix=sub/"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{sub}");
    assert_eq!(sub["total"], 2, "{sub}");
    let sub_paths: Vec<&str> = sub["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(sub_paths, vec!["sub/b.bin", "sub/c.txt"]);

    let (status, page) = server
        .get(
            &server.reader,
            &format!("/v1/backups/{id}/catalog?limit=1&offset=1"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["total"], entries, "{page}");
    assert_eq!(page["limit"], 1);
    assert_eq!(page["offset"], 1);
    let page_entries = page["entries"].as_array().unwrap();
    assert_eq!(page_entries.len(), 1, "{page}");
    assert_eq!(page_entries[0], all["entries"][1]);
    let (status, body) = server
        .get(&server.reader, &format!("/v1/backups/{id}/catalog?limit=0"))
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_input");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_concurrent_overlapping_uploads() {
    let server = Server::start().await;
    let shared = random_bytes(4 * MIB, 30);
    let inputs: Vec<Vec<u8>> = (0..16u64)
        .map(|i| {
            let mut data = shared.clone();
            data.extend_from_slice(&random_bytes(MIB, 1000 + i));
            data
        })
        .collect();
    let sum: u64 = inputs.iter().map(|d| d.len() as u64).sum();
    let uploads = inputs.iter().enumerate().map(|(i, data)| {
        let server = &server;
        async move {
            let response = server
                .upload_raw("many", &format!("?name=part{i}"), data.clone())
                .await;
            json_of(response).await
        }
    });
    let answers = futures::future::join_all(uploads).await;
    let mut ids = Vec::new();
    for (i, (status, backup)) in answers.iter().enumerate() {
        assert_eq!(*status, StatusCode::CREATED, "upload {i}: {backup}");
        assert_eq!(backup["blake3"], blake3_hex(&inputs[i]), "upload {i}");
        ids.push(backup["id"].as_str().unwrap().to_string());
    }
    assert_eq!(server.total("?series=many").await, 16);

    let stats = server.stats().await;
    let stored = stats["stored_bytes"].as_u64().unwrap();
    assert_eq!(stats["logical_bytes"], sum, "{stats}");
    assert!(
        stored < sum / 2,
        "no dedup across concurrent uploads: stored {stored} of {sum} bytes ({stats})"
    );
    for (i, id) in ids.iter().enumerate() {
        assert!(server.download(id).await == inputs[i], "upload {i} differs");
    }
}

/// The number of backups must stay `expected` for a while: an upload whose client went
/// away must not turn into a (truncated) backup later, when the ingest notices the end.
async fn assert_total_stays(server: &Server, expected: u64, what: &str) {
    for _ in 0..20 {
        let total = server.total("").await;
        let recycled = server.total("?recycled=true").await;
        assert_eq!(
            (total, recycled),
            (expected, 0),
            "{what}: a backup was recorded ({:?})",
            server.get(&server.reader, "/v1/backups").await.1
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_client_gone_mid_upload() {
    let server = Server::start().await;
    server.upload("gone", &random_bytes(100_000, 40)).await;

    // The body stream fails after 3 MiB: the client aborts the chunked request.
    let prefix = Bytes::from(random_bytes(3 * MIB, 41));
    let pieces: Vec<io::Result<Bytes>> = (0..prefix.len())
        .step_by(256 << 10)
        .map(|at| Ok(prefix.slice(at..at + (256 << 10))))
        .chain(std::iter::once(Err(io::Error::other("client gave up"))))
        .collect();
    let outcome = server
        .client
        .post(server.url("/v1/series/gone/backups"))
        .bearer_auth(&server.writer)
        .body(Body::wrap_stream(futures::stream::iter(pieces)))
        .send()
        .await;
    assert!(
        outcome.is_err() || outcome.as_ref().unwrap().status() != StatusCode::CREATED,
        "an aborted upload was answered 201"
    );
    assert_total_stays(&server, 1, "chunked body aborted by an error").await;

    // The client drops the connection after 3 MiB of a declared 16 MiB (Content-Length).
    let url = server.url("/v1/series/gone/backups");
    let (client, key) = (server.client.clone(), server.writer.clone());
    let sent = prefix.clone();
    let request = tokio::spawn(async move {
        let stream =
            futures::stream::iter(vec![Ok::<_, io::Error>(sent)]).chain(futures::stream::pending());
        client
            .post(url)
            .bearer_auth(key)
            .header("content-length", (16 * MIB).to_string())
            .body(Body::wrap_stream(stream))
            .send()
            .await
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    request.abort();
    let _ = request.await;
    assert_total_stays(&server, 1, "connection dropped mid-body (Content-Length)").await;

    // The same with a chunked body.
    let url = server.url("/v1/series/gone/backups");
    let (client, key) = (server.client.clone(), server.writer.clone());
    let sent = prefix.clone();
    let request = tokio::spawn(async move {
        let stream =
            futures::stream::iter(vec![Ok::<_, io::Error>(sent)]).chain(futures::stream::pending());
        client
            .post(url)
            .bearer_auth(key)
            .body(Body::wrap_stream(stream))
            .send()
            .await
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    request.abort();
    let _ = request.await;
    assert_total_stays(&server, 1, "connection dropped mid-body (chunked)").await;

    // The server still works.
    let response = server
        .client
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let data = random_bytes(2 * MIB, 42);
    let backup = server.upload("gone", &data).await;
    assert!(server.download(backup["id"].as_str().unwrap()).await == data);
    assert_eq!(server.total("").await, 2);
    let metrics = server.metrics().await;
    assert!(
        metrics.contains("stowage_uploads_in_flight 0"),
        "uploads still counted in flight: {metrics}"
    );
}

/// Peak and current resident set of this process, in bytes.
fn memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .unwrap_or_else(|| panic!("no {name} in /proc/self/status"))
            * 1024
    };
    (field("VmHWM:"), field("VmRSS:"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_large_streamed_upload_memory_is_flat() {
    let total: u64 = std::env::var("STOWAGE_TEST_BIG_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1 << 30);
    let server = Server::start_alone().await;
    // 1 MiB blocks drawn from a pool of 24, in a scrambled order: repetitive enough to
    // dedup, random enough to exercise every stage. Generated as sent, never held whole.
    let pool: Arc<Vec<Bytes>> = Arc::new(
        (0..24u64)
            .map(|i| Bytes::from(random_bytes(MIB, 500 + i)))
            .collect(),
    );
    let hasher = Arc::new(Mutex::new(blake3::Hasher::new()));
    let generated = {
        let (pool, hasher) = (pool.clone(), hasher.clone());
        futures::stream::unfold(0u64, move |sent| {
            let (pool, hasher) = (pool.clone(), hasher.clone());
            async move {
                if sent >= total {
                    return None;
                }
                let n = sent / MIB as u64;
                let pick = (n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) as usize % pool.len();
                let len = (total - sent).min(MIB as u64) as usize;
                let block = pool[pick].slice(..len);
                hasher.lock().unwrap().update(&block);
                Some((Ok::<_, io::Error>(block), sent + len as u64))
            }
        })
    };

    // Start the peak afresh (clear_refs 5 resets VmHWM); else keep the old peak as base.
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let (peak_before, rss_before) = memory();
    let base = if reset { rss_before } else { peak_before };
    let started = Instant::now();
    let response = server
        .upload_raw("big", "?name=big.bin", Body::wrap_stream(generated))
        .await;
    let (status, backup) = json_of(response).await;
    let upload_time = started.elapsed();
    assert_eq!(status, StatusCode::CREATED, "{backup}");
    let expected = hasher.lock().unwrap().finalize().to_hex().to_string();
    assert_eq!(backup["size"], total, "{backup}");
    assert_eq!(backup["blake3"], expected.as_str(), "{backup}");
    let (peak_upload, _) = memory();

    let started = Instant::now();
    let id = backup["id"].as_str().unwrap();
    let response = server
        .request(
            reqwest::Method::GET,
            &server.reader,
            &format!("/v1/backups/{id}/content"),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut stream = response.bytes_stream();
    let mut download_hasher = blake3::Hasher::new();
    let mut received = 0u64;
    while let Some(piece) = stream.next().await {
        let piece = piece.expect("download stream");
        received += piece.len() as u64;
        download_hasher.update(&piece);
    }
    let download_time = started.elapsed();
    assert_eq!(received, total);
    assert_eq!(download_hasher.finalize().to_hex().to_string(), expected);
    let (peak_end, _) = memory();

    let mib = |b: u64| b as f64 / MIB as f64;
    eprintln!(
        "large upload: {:.0} MiB up in {:.1?} ({:.0} MiB/s), down in {:.1?} ({:.0} MiB/s); \
         rss base {:.0} MiB, peak after upload {:.0} MiB, after download {:.0} MiB \
         (peak reset: {reset}); stored {:.0} MiB",
        mib(total),
        upload_time,
        mib(total) / upload_time.as_secs_f64(),
        download_time,
        mib(total) / download_time.as_secs_f64(),
        mib(base),
        mib(peak_upload),
        mib(peak_end),
        mib(backup["stored_bytes"].as_u64().unwrap_or(0)),
    );
    let growth = peak_end.saturating_sub(base);
    assert!(
        growth < 500 * MIB as u64,
        "memory grew by {:.0} MiB over a {:.0} MiB streamed upload and download",
        mib(growth),
        mib(total)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_key_creates_and_reads_backups_but_never_destroys_them() {
    let server = Server::start().await;
    let keys = server.keys();
    let (_, agent) = keys.create("agent", Role::Backup).expect("backup key");
    let data = vec![5u8; 300_000];
    let response = server
        .client
        .post(server.url("/v1/series/agent/backups"))
        .bearer_auth(&agent)
        .body(data.clone())
        .send()
        .await
        .unwrap();
    let (status, backup) = json_of(response).await;
    assert_eq!(status, StatusCode::CREATED, "{backup}");
    let id = backup["id"].as_str().unwrap().to_string();
    let content = server
        .request(
            reqwest::Method::GET,
            &agent,
            &format!("/v1/backups/{id}/content"),
        )
        .await;
    assert_eq!(content.status(), StatusCode::OK);
    assert!(content.bytes().await.unwrap() == data);

    for (method, path) in [
        (reqwest::Method::POST, format!("/v1/backups/{id}/recycle")),
        (reqwest::Method::DELETE, format!("/v1/backups/{id}")),
        (reqwest::Method::DELETE, "/v1/series/agent".to_string()),
        (reqwest::Method::POST, "/v1/repository/gc".to_string()),
    ] {
        let (status, body) = json_of(server.request(method.clone(), &agent, &path).await).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {body}");
        assert_eq!(body["error"]["code"], "forbidden");
    }
    let (status, _) = server
        .send_json(
            reqwest::Method::PUT,
            &agent,
            "/v1/series/agent",
            &json!({"keep_last": 1, "action": "delete"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a policy that would delete");
    let (status, _) = server
        .get(&server.reader, &format!("/v1/backups/{id}"))
        .await;
    assert_eq!(status, StatusCode::OK, "the backup is still there");
    // A writer recycles it; the agent may take it back out of the recycle bin.
    let (status, _) = server
        .post(&server.writer, &format!("/v1/backups/{id}/recycle"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = server
        .post(&agent, &format!("/v1/backups/{id}/restore"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stowage_key_beside_a_running_server_goes_through_its_control_socket() {
    let server = Server::start().await;
    let data_dir = server.data_dir.clone();
    let cli = move |args: Vec<String>| {
        let data_dir = data_dir.clone();
        tokio::task::spawn_blocking(move || {
            let mut command = crate::support::cli(&data_dir.join("repo"));
            command.args(&args).arg("--data-dir").arg(&data_dir);
            crate::support::run_ok(&mut command, None)
        })
    };
    let created = cli(vec![
        "key".into(),
        "create".into(),
        "--name".into(),
        "from-cli".into(),
        "--role".into(),
        "reader".into(),
    ])
    .await
    .unwrap();
    let key = crate::support::last_line(&created);
    let (status, _) = server.get(&key, "/v1/backups").await;
    assert_eq!(status, StatusCode::OK, "the server knows the key at once");

    let listed = cli(vec!["key".into(), "list".into(), "--json".into()])
        .await
        .unwrap();
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    let id = key.split_once('.').unwrap().0;
    assert!(
        listed.as_array().unwrap().iter().any(|k| k["id"] == id),
        "{listed}"
    );
    cli(vec!["key".into(), "revoke".into(), id.into()])
        .await
        .unwrap();
    let (status, _) = server.get(&key, "/v1/backups").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "revoked at once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_directory_of_the_earlier_layout_is_migrated_on_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig {
        data_dir: dir.path().join("data"),
        ..ServerConfig::default()
    };
    config.dialects.fa.enabled = true;
    config.dialects.wings.enabled = true;
    config.dialects.backupchan.enabled = true;
    let first = server::prepare(&config).await.expect("first start");
    first.shutdown().await;
    drop(first);
    // The earlier layout: keys in keys.json, no state store.
    let admin = admin_key(&config.data_dir);
    let (id, secret) = admin.split_once('.').unwrap();
    let old = json!([{
        "id": id,
        "name": "admin",
        "role": "admin",
        "created_at": "2026-01-01T00:00:00Z",
        "secret_sha256": hex::encode(Sha256::digest(secret.as_bytes())),
    }]);
    std::fs::remove_file(config.state_file()).unwrap();
    std::fs::write(config.keys_file(), old.to_string()).unwrap();
    // The signing secret and each dialect's records as files.
    std::fs::write(
        config.data_dir.join("url-signing.key"),
        format!("{}\n", "5a".repeat(32)),
    )
    .unwrap();
    let dialects = config.data_dir.join("dialects");
    std::fs::create_dir_all(&dialects).unwrap();
    let target = "0b6f1d2e-3c4a-4b5c-8d6e-7f8091a2b3c4";
    let backupchan = json!({"version": 1, "next_job_id": 1, "targets": [{
        "id": target, "name": "kept target", "target_type": "single",
        "recycle_criteria": "none", "recycle_value": null, "recycle_action": "recycle",
        "location": "/srv", "name_template": "$I", "deduplicate": false, "alias": null,
        "min_backups": 0, "tags": []
    }]});
    let uuid = "11111111-2222-4333-8444-555555555555";
    let wings = json!({"version": 1, "uploads": {uuid: {
        "size": 10, "part_size": 1048576, "created_at": 4000000000i64, "attempt": 7,
        "status": "failed", "error": "kept"
    }}});
    let fa = json!({"version": 1, "next_run": 1, "users": {"hank": {"backups": {"5": {
        "path": "/x", "status": "failed", "stat": {"total_size": 3, "pack_size": 0},
        "extra": "kept", "run": 1
    }}}}});
    for (name, document) in [("backupchan", backupchan), ("wings", wings), ("fa", fa)] {
        std::fs::write(dialects.join(format!("{name}.json")), document.to_string()).unwrap();
    }

    let state = server::prepare(&config)
        .await
        .expect("start on the earlier layout");
    assert!(!config.keys_file().exists());
    assert!(config.data_dir.join("keys.json.migrated").exists());
    for name in [
        "url-signing.key",
        "dialects/fa.json",
        "dialects/wings.json",
        "dialects/backupchan.json",
    ] {
        assert!(!config.data_dir.join(name).exists(), "{name} moved");
        assert!(
            config.data_dir.join(format!("{name}.migrated")).exists(),
            "{name} kept"
        );
    }
    assert_eq!(
        state.signer.query("GET", "/x", 1),
        stowage::service::signed_urls::UrlSigner::new([0x5a; 32]).query("GET", "/x", 1),
        "links signed before the move still verify"
    );
    let targets = state
        .dialect::<stowage::service::backupchan::BackupchanService>()
        .unwrap()
        .list_targets(1);
    assert!(targets.iter().any(|t| t.id == target), "{targets:?}");
    let upload = state
        .dialect::<stowage::service::wings::WingsService>()
        .unwrap()
        .upload(uuid)
        .expect("wings record");
    assert_eq!(upload.record.error.as_deref(), Some("kept"));
    let record = state
        .dialect::<stowage::service::fa::FaService>()
        .unwrap()
        .backup("hank", 5)
        .unwrap();
    assert_eq!(record.expect("fa record").extra, "kept");
    let principal = state
        .keys
        .verify(&admin)
        .expect("the old admin key still works");
    assert_eq!(principal.role, Role::Admin);
    assert_eq!(
        state.keys.list().unwrap().len(),
        1,
        "no second admin key made"
    );
    state.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stowage_user_manages_users_with_or_without_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let user = |args: &[&str], stdin: Option<&'static [u8]>, env: Option<&str>| {
        let data_dir = data_dir.clone();
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let env = env.map(str::to_string);
        tokio::task::spawn_blocking(move || {
            let mut command = crate::support::cli(&data_dir.join("repo"));
            command
                .arg("user")
                .args(&args)
                .arg("--data-dir")
                .arg(&data_dir);
            if let Some(password) = env {
                command.env("STOWAGE_USER_PASSWORD", password);
            }
            crate::support::run(&mut command, stdin)
        })
    };
    // No server: the CLI opens the state store itself.
    let created = user(
        &[
            "create",
            "Ada@Example.org",
            "--superuser",
            "--first-name",
            "Ada",
        ],
        Some(b"first password\n"),
        None,
    )
    .await
    .unwrap();
    assert!(
        created.status.success(),
        "{}",
        crate::support::stderr_text(&created)
    );
    let again = user(
        &["create", "ada@example.ORG"],
        Some(b"another password\n"),
        None,
    )
    .await
    .unwrap();
    assert!(!again.status.success(), "emails are unique ignoring case");
    let short = user(&["create", "bob@example.org"], Some(b"short\n"), None)
        .await
        .unwrap();
    assert!(crate::support::stderr_text(&short).contains("8 to 1024"));

    // With a server holding the store: the same commands go through its socket.
    let config = ServerConfig {
        data_dir: data_dir.clone(),
        ..ServerConfig::default()
    };
    let state = server::prepare(&config).await.expect("start");
    state
        .users
        .verify("ada@example.org", "first password")
        .unwrap();
    let changed = user(
        &["passwd", "ADA@example.org"],
        None,
        Some("second password"),
    )
    .await
    .unwrap();
    assert!(
        changed.status.success(),
        "{}",
        crate::support::stderr_text(&changed)
    );
    assert!(state
        .users
        .verify("ada@example.org", "first password")
        .is_err());
    state
        .users
        .verify("ada@example.org", "second password")
        .unwrap();
    let listed = user(&["list", "--json"], None, None).await.unwrap();
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed[0]["email"], "Ada@Example.org");
    assert_eq!(listed[0]["superuser"], true);
    assert!(listed[0]["last_login"].is_string());
    assert!(!listed.to_string().contains("argon2"), "no hash is shown");
    let deleted = user(&["delete", "ada@example.org"], None, None)
        .await
        .unwrap();
    assert!(deleted.status.success());
    assert!(state.users.list().unwrap().is_empty());
    state.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_survive_a_restart_keep_their_error_kind_and_come_back_interrupted() {
    use stowage::service::jobs::{JobKind, JobProgress, JobStatus, JobView, INTERRUPTED};
    use stowage::state::jobs::JobRecord;
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig {
        data_dir: dir.path().join("data"),
        max_upload_bytes: MIB as u64,
        ..ServerConfig::default()
    };
    let state = server::prepare(&config).await.expect("start");
    let admin = admin_key(&config.data_dir);
    let (base, running) = serve_on_loopback(state).await;
    let client = Client::builder().no_proxy().build().unwrap();
    // An upload over the limit, answered 202: its job fails with the limit's kind.
    // Streamed without a length, so the limit is met while the job reads the body.
    let chunks = futures::stream::iter(
        (0..32).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![1u8; 64 << 10]))),
    );
    let response = client
        .post(format!("{base}/v1/series/big/backups?wait=false"))
        .bearer_auth(&admin)
        .body(Body::wrap_stream(chunks))
        .send()
        .await;
    let job_id = match response {
        Ok(response) => {
            let (_, body) = json_of(response).await;
            body["job"]["id"].as_str().map(str::to_string)
        }
        Err(_) => None,
    };
    let mut failed = Value::Null;
    for _ in 0..600 {
        let jobs: Value = client
            .get(format!("{base}/v1/jobs"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        failed = jobs["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["kind"] == "upload")
            .cloned()
            .expect("the upload's job is listed");
        if failed["status"] != "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if let Some(id) = job_id {
        assert_eq!(failed["id"], id.as_str());
    }
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["error_kind"], "limit_exceeded", "{failed}");
    running.shutdown().await.unwrap();

    // A job that was running when the process died, as the store would hold it.
    let store = stowage::state::StateStore::open(&config.state_file()).unwrap();
    let view = JobView {
        id: "11111111-2222-4333-8444-555555555555".into(),
        kind: JobKind::Gc,
        subject: None,
        status: JobStatus::Running,
        created_at: "2026-01-01T00:00:00.000Z".into(),
        started_at: Some("2026-01-01T00:00:00.000Z".into()),
        finished_at: None,
        progress: JobProgress {
            bytes_done: 0,
            bytes_total: 0,
            files_done: 0,
            files_total: 0,
            rate_bytes_per_sec: 0,
        },
        error: None,
        error_kind: None,
        result: None,
    };
    store
        .put_job(&JobRecord {
            sequence: 1000,
            view: view.clone(),
        })
        .unwrap();
    drop(store);

    let state = server::prepare(&config).await.expect("restart");
    let remembered = state.jobs.get(failed["id"].as_str().unwrap()).unwrap();
    assert_eq!(remembered.status, JobStatus::Failed);
    assert_eq!(
        remembered.error_kind,
        Some(stowage::error::ErrorKind::LimitExceeded)
    );
    let interrupted = state.jobs.get(&view.id).unwrap();
    assert_eq!(interrupted.status, JobStatus::Failed);
    assert_eq!(interrupted.error.as_deref(), Some(INTERRUPTED));
    assert!(interrupted.finished_at.is_some());
    state.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_state_brings_the_server_state_back_from_the_repository() {
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig {
        data_dir: dir.path().join("data"),
        ..ServerConfig::default()
    };
    let state = server::prepare(&config).await.expect("start");
    let (_, key) = state.keys.create("kept", Role::Reader).unwrap();
    state.shutdown().await;
    drop(state);
    let secrets = stowage::state::StateStore::open(&config.state_file())
        .unwrap()
        .secrets()
        .unwrap();
    std::fs::remove_file(config.state_file()).unwrap();

    let passphrase = std::fs::read_to_string(config.data_dir.join("passphrase")).unwrap();
    let data_dir = config.data_dir.clone();
    let repaired = tokio::task::spawn_blocking(move || {
        let mut command = crate::support::cli(&data_dir.join("repo"));
        command
            .env("STOWAGE_PASSWORD", passphrase.trim())
            .args(["repair", "state", "--data-dir"])
            .arg(&data_dir);
        crate::support::run_ok(&mut command, None)
    })
    .await
    .unwrap();
    assert!(
        crate::support::stderr_text(&repaired).contains("server state restored"),
        "{}",
        crate::support::stderr_text(&repaired)
    );
    assert_eq!(
        stowage::state::StateStore::open(&config.state_file())
            .unwrap()
            .secrets()
            .unwrap(),
        secrets,
        "the signing secret is back: links handed out before still verify"
    );
    let state = server::prepare(&config).await.expect("restart");
    assert_eq!(state.keys.verify(&key).unwrap().name, "kept");
    state.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_during_a_large_upload_stops_it_and_records_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig {
        data_dir: dir.path().join("data"),
        ..ServerConfig::default()
    };
    let state = server::prepare(&config).await.expect("start");
    let admin = admin_key(&config.data_dir);
    let (base, running) = serve_on_loopback(state).await;
    // 1 GiB, made as it is sent: far more than the server ingests before it stops.
    let chunks = futures::stream::iter((0..1024u64).map(|i| {
        Ok::<_, std::io::Error>(Bytes::from(crate::support::random_bytes(MIB, 9000 + i)))
    }));
    let client = Client::builder().no_proxy().build().unwrap();
    let upload = tokio::spawn(
        client
            .post(format!("{base}/v1/series/big/backups?name=huge.img"))
            .bearer_auth(&admin)
            .body(Body::wrap_stream(chunks))
            .send(),
    );
    let in_flight = running.state().clone();
    let deadline = Instant::now() + Duration::from_secs(60);
    while in_flight
        .metrics
        .uploads_in_flight
        .load(std::sync::atomic::Ordering::Relaxed)
        == 0
    {
        assert!(Instant::now() < deadline, "the upload never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(in_flight);
    // Liveness, not speed: shutdown must not wait for the rest of the gigabyte.
    tokio::time::timeout(Duration::from_secs(120), running.shutdown())
        .await
        .expect("shutdown ends while the upload is in flight")
        .expect("shutdown");
    if let Ok(Ok(response)) = upload.await {
        assert!(!response.status().is_success(), "{}", response.status());
    }
    let state = server::prepare(&config).await.expect("restart");
    assert!(
        state
            .repo
            .backups()
            .unwrap()
            .iter()
            .all(|b| b.series != "big"),
        "nothing half-visible"
    );
    let report = state
        .repo
        .check(true, crate::support::progress())
        .await
        .unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    state.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_of_one_series_make_it_once() {
    let server = Server::start().await;
    let body = json!({"name": "raced", "policy": {"keep_last": 3}});
    let attempts = (0..8)
        .map(|_| server.send_json(reqwest::Method::POST, &server.writer, "/v1/series", &body));
    let answers = futures::future::join_all(attempts).await;
    let created = answers
        .iter()
        .filter(|(status, _)| *status == StatusCode::CREATED)
        .count();
    assert_eq!(created, 1, "{answers:?}");
    for (status, body) in &answers {
        if *status != StatusCode::CREATED {
            assert_eq!(*status, StatusCode::CONFLICT, "{body}");
            assert_eq!(body["error"]["code"], "conflict");
        }
    }
}

/// A backup uploaded into a series nobody created makes the series exist: it is listed
/// and can be read, never a backup in a series that does not exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_into_a_new_series_creates_the_series() {
    let server = Server::start().await;
    let uploaded = server.upload("native", b"twelve bytes").await;
    assert_eq!(uploaded["series"], "native", "{uploaded}");
    let (status, listed) = server.get(&server.reader, "/v1/series").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        listed["series"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "native"),
        "{listed}"
    );
    let (status, series) = server.get(&server.reader, "/v1/series/native").await;
    assert_eq!(status, StatusCode::OK, "{series}");
    // A second upload into it keeps the record (and any policy) as it is.
    server.upload("native", b"more bytes").await;
    assert_eq!(server.total("?series=native").await, 2);
}

/// What an upload answers and what `stats` reports add up: a 12-byte upload is one
/// chunk, new once; every blob is new to exactly one backup; unique bytes never exceed
/// logical ones; the packs are the sealed blobs plus their headers and trailers; the
/// series sum to the repository.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_answers_and_stats_add_up() {
    let server = Server::start().await;
    let first = server.upload("native", b"twelve bytes").await;
    assert_eq!(
        (
            &first["chunks"],
            &first["new_chunks"],
            &first["new_metadata_blobs"]
        ),
        (&json!(1), &json!(1), &json!(1)),
        "{first}"
    );
    let again = server.upload("native", b"twelve bytes").await;
    assert_eq!(
        (
            &again["new_chunks"],
            &again["new_metadata_blobs"],
            &again["stored_bytes"]
        ),
        (&json!(0), &json!(0), &json!(0)),
        "{again}"
    );
    let dir = tempfile::tempdir().unwrap();
    let mut files: Vec<(String, Vec<u8>)> = (0..40)
        .map(|i| (format!("tiny/{i}.txt"), format!("{i}").into_bytes()))
        .collect();
    files.push(("big.bin".into(), random_bytes(3 << 20, 21)));
    let borrowed: Vec<(&str, Vec<u8>)> =
        files.iter().map(|(p, d)| (p.as_str(), d.clone())).collect();
    let tar = plain_tar(dir.path(), &borrowed);
    let archive = server.upload("archives", &tar).await;
    assert!(
        archive["catalog_entries"].as_u64().unwrap() > 40,
        "{archive}"
    );
    let data = random_bytes(5 << 20, 22);
    server.upload("other", &data).await;
    let grown = [data.clone(), random_bytes(1 << 20, 23)].concat();
    let appended = server.upload("other", &grown).await;
    assert!(
        appended["new_chunks"].as_u64().unwrap() < appended["chunks"].as_u64().unwrap(),
        "{appended}"
    );

    let (status, listed) = server.get(&server.reader, "/v1/backups?limit=100").await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    let backups = listed["backups"].as_array().unwrap();
    assert_eq!(backups.len(), 5, "{listed}");
    let field = |b: &Value, name: &str| b[name].as_u64().unwrap_or_else(|| panic!("{name}: {b}"));
    for b in backups {
        assert!(field(b, "new_chunks") <= field(b, "chunks"), "{b}");
    }
    let (status, stats) = server.get(&server.reader, "/v1/repository/stats").await;
    assert_eq!(status, StatusCode::OK, "{stats}");
    let total = |name: &str| {
        stats[name]
            .as_u64()
            .unwrap_or_else(|| panic!("{name}: {stats}"))
    };
    // Uploads one after another, nothing purged: each blob was new to exactly one backup.
    let new_blobs: u64 = backups
        .iter()
        .map(|b| field(b, "new_chunks") + field(b, "new_metadata_blobs"))
        .sum();
    assert_eq!(
        new_blobs,
        total("chunks") + total("metadata_blobs"),
        "{stats}"
    );
    let added: u64 = backups.iter().map(|b| field(b, "stored_bytes")).sum();
    assert_eq!(added, total("sealed_bytes"), "{stats}");
    assert!(total("unique_bytes") <= total("logical_bytes"), "{stats}");
    assert!(total("sealed_bytes") <= total("stored_bytes"), "{stats}");
    let overhead = total("stored_bytes") - total("sealed_bytes");
    let blobs = total("chunks") + total("metadata_blobs");
    assert!(
        overhead <= total("packs") * 256 + blobs * 96,
        "pack overhead {overhead}: {stats}"
    );
    // Random data barely compresses: the sealed blobs are the unique bytes plus envelopes.
    assert!(
        total("sealed_bytes") >= total("unique_bytes") / 2,
        "{stats}"
    );
    let series = stats["series"].as_object().unwrap();
    assert_eq!(series.len(), 3, "{stats}");
    let sum = |name: &str| -> u64 { series.values().map(|s| s[name].as_u64().unwrap()).sum() };
    assert_eq!(sum("backups"), total("backups"));
    assert_eq!(sum("logical_bytes"), total("logical_bytes"));
    let streams: u64 = backups.iter().map(|b| field(b, "size")).sum();
    assert!(
        total("logical_bytes") > streams,
        "the archive's catalog counts: {stats}"
    );
}

/// Errors raised outside the handlers — a wrong method, a body over the JSON limit, a
/// query value of the wrong type, a path that is not UTF-8, an over-long URL or header
/// section — answer in the one error shape, never as `text/plain` or an empty body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_escaping_handlers_keep_the_error_shape() {
    let server = Server::start().await;
    let send = |request: reqwest::RequestBuilder| async move {
        let response = request.send().await.expect("request");
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_string());
        let (status, headers, body) = parts(response).await;
        assert_eq!(
            content_type.as_deref(),
            Some("application/json"),
            "{status} {body}"
        );
        (status, headers, body)
    };
    let client = &server.client;
    let admin = &server.admin;

    let (status, headers, body) =
        send(client.patch(server.url("/v1/series")).bearer_auth(admin)).await;
    assert_error(
        status,
        &body,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
    assert!(headers.get("allow").is_some(), "405 keeps its Allow header");

    let huge = format!("{{\"name\": \"{}\"}}", "a".repeat(10 << 20));
    let (status, _, body) = send(
        client
            .post(server.url("/v1/series"))
            .bearer_auth(admin)
            .header(CONTENT_TYPE, "application/json")
            .body(huge),
    )
    .await;
    assert_error(
        status,
        &body,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    );

    for path in [
        "/v1/backups?limit=-1",
        "/v1/backups?offset=many",
        "/v1/series/native/backups?wait=maybe",
        "/v1/backups/%ff",
    ] {
        let method = if path.contains("wait") {
            reqwest::Method::POST
        } else {
            reqwest::Method::GET
        };
        let (status, _, body) =
            send(client.request(method, server.url(path)).bearer_auth(admin)).await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_input");
        assert!(
            body["error"]["message"].as_str().unwrap().len() < 1100,
            "{body}"
        );
    }
    let (status, _, body) = send(
        client
            .post(server.url("/v1/backups/00000000-0000-4000-8000-000000000000/url?ttl=-5"))
            .bearer_auth(admin),
    )
    .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_input");

    let long = format!("/v1/backups?prefix={}", "a".repeat(10_000));
    let (status, _, body) = send(client.get(server.url(&long)).bearer_auth(admin)).await;
    assert_error(status, &body, StatusCode::URI_TOO_LONG, "uri_too_long");
    let (status, _, body) = send(
        client
            .get(server.url("/v1/backups"))
            .bearer_auth(admin)
            .header("x-padding", "a".repeat(70_000)),
    )
    .await;
    assert_error(
        status,
        &body,
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "headers_too_large",
    );
    // The answers are still right for requests that are fine.
    let (status, _) = server.get(&server.reader, "/v1/backups?limit=1").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_shows_its_tasks_in_v1_and_the_metrics() {
    let server = Server::start().await;
    let (status, body) = server.get(&server.reader, "/v1/scheduler").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let names: Vec<&str> = body["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    for name in [
        "wings-upload-expiry",
        "state-mirror",
        "backupchan/recycle_job",
        "backupchan/integrity_check_job",
    ] {
        assert!(names.contains(&name), "{name}: {body}");
    }
    assert!(body["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["next_run"].is_string() && t["running"].is_boolean()));
    let metrics = server.metrics().await;
    assert!(
        metrics.contains("stowage_scheduled_runs_total{task=\"state-mirror\"}"),
        "{metrics}"
    );
}

/// One request of the contract test: what is sent and which documented operation it is.
struct Call {
    method: reqwest::Method,
    template: &'static str,
    path: String,
    key: Option<String>,
    headers: Vec<(&'static str, String)>,
    body: Option<Vec<u8>>,
}

impl Call {
    fn new(
        method: reqwest::Method,
        template: &'static str,
        path: impl Into<String>,
        key: &str,
    ) -> Call {
        Call {
            method,
            template,
            path: path.into(),
            key: Some(key.to_string()),
            headers: Vec::new(),
            body: None,
        }
    }

    fn anonymous(mut self) -> Call {
        self.key = None;
        self
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Call {
        self.headers.push((name, value.into()));
        self
    }

    fn json(mut self, body: Value) -> Call {
        self.headers
            .push(("content-type", "application/json".into()));
        self.body = Some(body.to_string().into_bytes());
        self
    }

    fn bytes(mut self, body: Vec<u8>) -> Call {
        self.body = Some(body);
        self
    }
}

/// Sends `call` and checks its answer against the document: the status is documented
/// for the operation, the media type is the documented one, and a JSON body validates
/// against the documented schema. Returns the status and the JSON body (or null).
async fn check_against_document(server: &Server, doc: &Value, call: Call) -> (StatusCode, Value) {
    let operation = &doc["paths"][call.template][call.method.as_str().to_lowercase()];
    assert!(
        operation.is_object(),
        "{} {} is not documented",
        call.method,
        call.template
    );
    let mut request = server
        .client
        .request(call.method.clone(), server.url(&call.path));
    if let Some(key) = &call.key {
        request = request.bearer_auth(key);
    }
    for (name, value) in &call.headers {
        request = request.header(*name, value);
    }
    if let Some(body) = call.body {
        request = request.body(body);
    }
    let response = request.send().await.expect("request");
    let status = response.status();
    let content_type = response.headers().get(CONTENT_TYPE).map(|v| {
        v.to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .trim()
            .to_string()
    });
    let bytes = response.bytes().await.expect("body");
    let context = format!("{} {} → {status}", call.method, call.path);
    let documented = &operation["responses"][status.as_str()];
    assert!(
        documented.is_object(),
        "{context}: status not documented: {}",
        String::from_utf8_lossy(&bytes)
    );
    let Some(content) = documented["content"].as_object() else {
        assert!(
            bytes.is_empty(),
            "{context}: documented without a body, got {bytes:?}"
        );
        return (status, Value::Null);
    };
    let media = content_type.unwrap_or_else(|| panic!("{context}: no Content-Type"));
    assert!(
        content.contains_key(&media),
        "{context}: {media} is not documented ({content:?})"
    );
    if media != "application/json" {
        return (status, Value::Null);
    }
    let body: Value = serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{context}: {e}"));
    let schema = json!({
        "$ref": content[&media]["schema"]["$ref"],
        "components": doc["components"],
    });
    let validator =
        jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("{context}: schema: {e}"));
    let errors: Vec<String> = validator
        .iter_errors(&body)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    assert!(
        errors.is_empty(),
        "{context}: {body}\n{}",
        errors.join("\n")
    );
    (status, body)
}

/// Real answers of every route, successes and errors, validate against the OpenAPI
/// document the server serves, and every documented operation is exercised: the
/// document cannot drift from the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_as_the_openapi_document_says() {
    use reqwest::Method;
    let server = Server::start().await;
    let (status, doc) = server.get(&server.reader, "/v1/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    let (admin, writer, reader) = (
        server.admin.clone(),
        server.writer.clone(),
        server.reader.clone(),
    );
    let mut seen = std::collections::BTreeSet::new();
    macro_rules! check {
        ($call:expr) => {{
            let call: Call = $call;
            seen.insert((call.method.as_str().to_lowercase(), call.template));
            check_against_document(&server, &doc, call).await
        }};
    }
    for path in ["/healthz", "/readyz", "/metrics"] {
        let template: &'static str = match path {
            "/healthz" => "/healthz",
            "/readyz" => "/readyz",
            _ => "/metrics",
        };
        assert_eq!(
            check!(Call::new(Method::GET, template, path, "").anonymous()).0,
            StatusCode::OK
        );
    }
    check!(Call::new(Method::GET, "/v1/openapi.json", "/v1/openapi.json", "").anonymous());

    // Series.
    let policy = json!({"keep_last": 3, "action": "recycle"});
    let (status, _) = check!(Call::new(Method::POST, "/v1/series", "/v1/series", &writer)
        .json(json!({"name": "docs", "policy": policy})));
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) =
        check!(Call::new(Method::POST, "/v1/series", "/v1/series", &writer)
            .json(json!({"name": "docs"})));
    assert_eq!(status, StatusCode::CONFLICT);
    check!(Call::new(Method::GET, "/v1/series", "/v1/series", &reader));
    check!(Call::new(
        Method::GET,
        "/v1/series/{name}",
        "/v1/series/docs",
        &reader
    ));
    check!(
        Call::new(Method::PUT, "/v1/series/{name}", "/v1/series/docs", &writer)
            .json(json!({"policy": {"keep_daily": 7}}))
    );
    let (status, _) = check!(Call::new(
        Method::GET,
        "/v1/series/{name}",
        "/v1/series/nothing",
        &reader
    ));
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Uploads: waited for, and answered at once.
    let data = random_bytes(300_000, 51);
    let (status, stream) = check!(Call::new(
        Method::POST,
        "/v1/series/{name}/backups",
        "/v1/series/docs/backups?name=data.bin&sha256=true",
        &writer,
    )
    .bytes(data.clone()));
    assert_eq!(status, StatusCode::CREATED);
    let id = stream["id"].as_str().unwrap().to_string();
    // The validation is real: a field too many, or one missing, fails it.
    let backup_schema =
        json!({"$ref": "#/components/schemas/Backup", "components": doc["components"]});
    let validator = jsonschema::validator_for(&backup_schema).unwrap();
    assert!(validator.is_valid(&stream));
    let mut extra = stream.clone();
    extra["surprise"] = json!(1);
    assert!(!validator.is_valid(&extra));
    let mut short = stream.clone();
    short.as_object_mut().unwrap().remove("new_chunks");
    assert!(!validator.is_valid(&short));
    let dir = tempfile::tempdir().unwrap();
    let tar = plain_tar(
        dir.path(),
        &[("a/b.txt", b"bee".to_vec()), ("c.txt", b"sea".to_vec())],
    );
    let (status, archive) = check!(Call::new(
        Method::POST,
        "/v1/series/{name}/backups",
        "/v1/series/docs/backups?wait=false",
        &writer,
    )
    .bytes(tar));
    assert_eq!(status, StatusCode::ACCEPTED);
    let upload_job = archive["job"]["id"].as_str().unwrap().to_string();
    let finished = server.wait_job(&upload_job).await;
    let archive_id = finished["result"]["id"].as_str().unwrap().to_string();
    let (status, _) = check!(Call::new(
        Method::POST,
        "/v1/series/{name}/backups",
        "/v1/series/docs/backups?wait=maybe",
        &writer,
    )
    .bytes(b"x".to_vec()));
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Backups.
    check!(Call::new(
        Method::GET,
        "/v1/backups",
        "/v1/backups?series=docs&limit=10&offset=0",
        &reader
    ));
    check!(Call::new(
        Method::GET,
        "/v1/backups/{id}",
        format!("/v1/backups/{id}"),
        &reader
    ));
    let (status, _) = check!(Call::new(
        Method::GET,
        "/v1/backups",
        "/v1/backups?limit=-1",
        &reader
    ));
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let content = format!("/v1/backups/{id}/content");
    assert_eq!(
        check!(Call::new(
            Method::GET,
            "/v1/backups/{id}/content",
            content.clone(),
            &reader
        ))
        .0,
        StatusCode::OK
    );
    let (status, _) = check!(Call::new(
        Method::GET,
        "/v1/backups/{id}/content",
        content.clone(),
        &reader
    )
    .header("range", "bytes=10-99"));
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    let (status, _) = check!(Call::new(
        Method::GET,
        "/v1/backups/{id}/content",
        content.clone(),
        &reader
    )
    .header("range", "bytes=999999999-"));
    assert_eq!(status, StatusCode::RANGE_NOT_SATISFIABLE);
    let (_, signed) = check!(Call::new(
        Method::POST,
        "/v1/backups/{id}/url",
        format!("/v1/backups/{id}/url?ttl=600"),
        &reader
    ));
    let link = signed["url"].as_str().unwrap();
    let link_path = &link[link.find("/v1/download/").unwrap()..];
    assert_eq!(
        check!(Call::new(Method::GET, "/v1/download/{id}", link_path, "").anonymous()).0,
        StatusCode::OK
    );
    let (status, _) = check!(Call::new(Method::GET, "/v1/download/{id}", link_path, "")
        .anonymous()
        .header("range", "bytes=-100"));
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    let forged = link_path.replace("signature=", "signature=0");
    let (status, _) = check!(Call::new(Method::GET, "/v1/download/{id}", forged, "").anonymous());
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, page) = check!(Call::new(
        Method::GET,
        "/v1/backups/{id}/catalog",
        format!("/v1/backups/{archive_id}/catalog?prefix=a&limit=5"),
        &reader,
    ));
    assert!(!page["entries"].as_array().unwrap().is_empty(), "{page}");
    let (status, _) = check!(Call::new(
        Method::POST,
        "/v1/backups/{id}/recycle",
        format!("/v1/backups/{id}/recycle"),
        &reader
    ));
    assert_eq!(status, StatusCode::FORBIDDEN);
    check!(Call::new(
        Method::POST,
        "/v1/backups/{id}/recycle",
        format!("/v1/backups/{id}/recycle"),
        &writer
    ));
    check!(Call::new(
        Method::POST,
        "/v1/backups/{id}/restore",
        format!("/v1/backups/{id}/restore"),
        &writer
    ));

    // Schedules.
    let (status, _) = check!(
        Call::new(Method::POST, "/v1/schedules", "/v1/schedules", &writer)
            .json(json!({"name": "nightly", "crontab": "0 2 * * *"}))
    );
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = check!(
        Call::new(Method::POST, "/v1/schedules", "/v1/schedules", &writer)
            .json(json!({"name": "bad", "crontab": "61 * * * *"}))
    );
    assert_eq!(status, StatusCode::BAD_REQUEST);
    check!(Call::new(
        Method::GET,
        "/v1/schedules",
        "/v1/schedules",
        &reader
    ));
    check!(Call::new(
        Method::GET,
        "/v1/schedules/{name}",
        "/v1/schedules/nightly",
        &reader
    ));
    check!(Call::new(
        Method::PATCH,
        "/v1/schedules/{name}",
        "/v1/schedules/nightly",
        &writer
    )
    .json(json!({"enabled": false})));
    check!(Call::new(
        Method::GET,
        "/v1/schedules/{name}/calendar",
        "/v1/schedules/nightly/calendar?from=2026-12-01T00:00:00Z&to=2026-12-03T00:00:00Z",
        &reader,
    ));
    let (status, _) = check!(Call::new(
        Method::DELETE,
        "/v1/schedules/{name}",
        "/v1/schedules/nightly",
        &admin
    ));
    assert_eq!(status, StatusCode::NO_CONTENT);

    // Jobs and the repository.
    check!(Call::new(Method::GET, "/v1/jobs", "/v1/jobs", &reader));
    check!(Call::new(
        Method::GET,
        "/v1/scheduler",
        "/v1/scheduler",
        &reader
    ));
    check!(Call::new(
        Method::GET,
        "/v1/jobs/{id}",
        format!("/v1/jobs/{upload_job}"),
        &reader
    ));
    let (status, _) = check!(Call::new(
        Method::POST,
        "/v1/jobs/{id}/cancel",
        format!("/v1/jobs/{upload_job}/cancel"),
        &writer
    ));
    assert_eq!(status, StatusCode::CONFLICT, "the job has ended");
    check!(Call::new(
        Method::GET,
        "/v1/repository/stats",
        "/v1/repository/stats",
        &reader
    ));
    let (_, check) = check!(Call::new(
        Method::POST,
        "/v1/repository/check",
        "/v1/repository/check?read_data=true",
        &admin
    ));
    let (_, gc) = check!(Call::new(
        Method::POST,
        "/v1/repository/gc",
        "/v1/repository/gc?dry_run=true",
        &admin
    ));
    for job in [&check, &gc] {
        let id = job["job"]["id"].as_str().unwrap();
        server.wait_job(id).await;
        check!(Call::new(
            Method::GET,
            "/v1/jobs/{id}",
            format!("/v1/jobs/{id}"),
            &reader
        ));
    }
    let (status, _) = check!(Call::new(
        Method::POST,
        "/v1/repository/gc",
        "/v1/repository/gc",
        &writer
    ));
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = check!(Call::new(Method::GET, "/v1/jobs", "/v1/jobs", &reader).anonymous());
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = check!(Call::new(Method::GET, "/v1/jobs", "/v1/jobs", &reader)
        .header("x-padding", "a".repeat(70_000)));
    assert_eq!(status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);

    // Deletions last.
    assert_eq!(
        check!(Call::new(
            Method::DELETE,
            "/v1/backups/{id}",
            format!("/v1/backups/{id}"),
            &admin
        ))
        .0,
        StatusCode::NO_CONTENT
    );
    let (status, _) = check!(Call::new(
        Method::GET,
        "/v1/backups/{id}",
        format!("/v1/backups/{id}"),
        &reader
    ));
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        check!(Call::new(
            Method::DELETE,
            "/v1/series/{name}",
            "/v1/series/docs",
            &admin
        ))
        .0,
        StatusCode::NO_CONTENT
    );

    let documented: std::collections::BTreeSet<(String, &str)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, methods)| {
            methods
                .as_object()
                .unwrap()
                .keys()
                .map(move |m| (m.clone(), path.as_str()))
        })
        .collect();
    let missing: Vec<_> = documented.iter().filter(|op| !seen.contains(*op)).collect();
    assert!(
        missing.is_empty(),
        "documented but not exercised: {missing:?}"
    );
}

/// Schedules in /v1: a crontab is checked when stored (the refusal names the field), the
/// next run follows the expression (five fields or six with a year), a past year is kept
/// with no next run and an empty calendar, names are unique, disabling clears the next
/// run, and deleting takes the admin role.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_are_checked_stored_and_expanded() {
    let server = Server::start().await;
    let create = |name: &str, crontab: &str| json!({"name": name, "crontab": crontab});
    let (status, weekly) = server
        .send_json(
            reqwest::Method::POST,
            &server.writer,
            "/v1/schedules",
            &create("weekly", "0 5 * * MON *"),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{weekly}");
    assert_eq!(weekly["enabled"], true);
    let next = chrono::DateTime::parse_from_rfc3339(weekly["next_run"].as_str().unwrap()).unwrap();
    assert_eq!(
        chrono::Datelike::weekday(&next),
        chrono::Weekday::Mon,
        "{weekly}"
    );
    let (status, body) = server
        .send_json(
            reqwest::Method::POST,
            &server.writer,
            "/v1/schedules",
            &create("weekly", "* * * * *"),
        )
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "conflict");
    for (crontab, words) in [
        ("0 5 * * 0 *", "day-of-week"),
        ("0 25 * * *", "hour"),
        ("* * *", "3 fields"),
    ] {
        let (status, body) = server
            .send_json(
                reqwest::Method::POST,
                &server.writer,
                "/v1/schedules",
                &create("bad", crontab),
            )
            .await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_input");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(words),
            "{crontab}: {body}"
        );
    }
    let (status, past) = server
        .send_json(
            reqwest::Method::POST,
            &server.writer,
            "/v1/schedules",
            &create("past", "0 0 1 1 * 2020"),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{past}");
    assert_eq!(past["next_run"], Value::Null);
    let (_, calendar) = server
        .get(
            &server.reader,
            "/v1/schedules/past/calendar?from=2026-01-01T00:00:00Z&to=2030-01-01T00:00:00Z",
        )
        .await;
    assert_eq!(calendar["occurrences"], json!([]));
    let (_, calendar) = server
        .get(
            &server.reader,
            "/v1/schedules/weekly/calendar?from=2026-11-01T00:00:00Z&to=2026-11-30T23:59:50Z",
        )
        .await;
    assert_eq!(
        calendar["occurrences"],
        json!([
            "2026-11-02T05:00:00Z",
            "2026-11-09T05:00:00Z",
            "2026-11-16T05:00:00Z",
            "2026-11-23T05:00:00Z",
            "2026-11-30T05:00:00Z"
        ])
    );
    let (status, body) = server
        .get(
            &server.reader,
            "/v1/schedules/weekly/calendar?from=2026-12-01T00:00:00Z&to=2026-11-01T00:00:00Z",
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_input");
    let (status, off) = server
        .send_json(
            reqwest::Method::PATCH,
            &server.writer,
            "/v1/schedules/weekly",
            &json!({"enabled": false}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{off}");
    assert_eq!(
        (&off["enabled"], &off["next_run"]),
        (&json!(false), &Value::Null)
    );
    let (status, body) = server
        .send_json(
            reqwest::Method::PATCH,
            &server.writer,
            "/v1/schedules/weekly",
            &json!({"crontab": "nonsense"}),
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_input");
    // Deleting takes the admin role.
    let (status, body) = json_of(
        server
            .request(
                reqwest::Method::DELETE,
                &server.writer,
                "/v1/schedules/past",
            )
            .await,
    )
    .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let (status, listed) = server.get(&server.reader, "/v1/schedules").await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = listed["schedules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["past", "weekly"]);
    let (status, _) = server.get(&server.reader, "/v1/schedules/none").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// Sixteen overlapping uploads while gc runs in a loop and the older backups they share
/// chunks with are purged: every upload is committed whole, `check --read-data` finds
/// nothing, and every backup downloads byte-exact (the gc/ingest handshake under load).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_uploads_beside_gc_and_purges_lose_nothing() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let server = Server::start().await;
    let shared = random_bytes(3 * MIB, 60);
    let mut old = Vec::new();
    for i in 0..4u64 {
        let mut data = shared.clone();
        data.extend_from_slice(&random_bytes(MIB / 2, 600 + i));
        old.push(
            server.upload("old", &data).await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let inputs: Vec<Vec<u8>> = (0..16u64)
        .map(|i| {
            let mut data = random_bytes(MIB / 2, 700 + i);
            data.extend_from_slice(&shared);
            data.extend_from_slice(&random_bytes(MIB / 2, 800 + i));
            data
        })
        .collect();
    let uploading = AtomicBool::new(true);
    let gc_loop = async {
        let mut runs = 0;
        while uploading.load(Ordering::Relaxed) {
            let (status, accepted) = server.post(&server.admin, "/v1/repository/gc").await;
            assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
            let job = server
                .wait_job(accepted["job"]["id"].as_str().unwrap())
                .await;
            assert_eq!(job["status"], "succeeded", "gc beside uploads: {job}");
            runs += 1;
        }
        runs
    };
    let purges = async {
        for id in &old {
            tokio::time::sleep(Duration::from_millis(30)).await;
            let response = server
                .request(
                    reqwest::Method::DELETE,
                    &server.admin,
                    &format!("/v1/backups/{id}"),
                )
                .await;
            assert_eq!(response.status(), StatusCode::NO_CONTENT);
        }
    };
    let uploads = async {
        let answers = futures::future::join_all(inputs.iter().enumerate().map(|(i, data)| {
            let server = &server;
            async move {
                json_of(
                    server
                        .upload_raw("new", &format!("?name=part{i}"), data.clone())
                        .await,
                )
                .await
            }
        }))
        .await;
        uploading.store(false, Ordering::Relaxed);
        answers
    };
    let (runs, (), answers) = tokio::join!(gc_loop, purges, uploads);
    assert!(runs >= 1);
    let mut ids = Vec::new();
    for (i, (status, backup)) in answers.iter().enumerate() {
        assert_eq!(*status, StatusCode::CREATED, "upload {i}: {backup}");
        ids.push(backup["id"].as_str().unwrap().to_string());
    }
    // Once more with nothing running: the purged backups' own chunks go, nothing else.
    let (_, accepted) = server.post(&server.admin, "/v1/repository/gc").await;
    let gc = server
        .wait_job(accepted["job"]["id"].as_str().unwrap())
        .await;
    assert_eq!(gc["status"], "succeeded", "{gc}");
    let (_, accepted) = server
        .post(&server.admin, "/v1/repository/check?read_data=true")
        .await;
    let check = server
        .wait_job(accepted["job"]["id"].as_str().unwrap())
        .await;
    assert_eq!(check["status"], "succeeded", "{check}");
    assert_eq!(check["result"]["problems"], json!([]), "{check}");
    assert_eq!(server.total("").await, 16);
    for (i, id) in ids.iter().enumerate() {
        assert!(server.download(id).await == inputs[i], "upload {i} differs");
    }
}
