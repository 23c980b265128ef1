//! `stowage serve` over real HTTP: the server runs in-process on a random loopback port
//! (`server::prepare` + `server::router` on our own listener) and a reqwest client speaks
//! the `/v1` API to it. This module is the harness ([`Server`] and helpers); the tests are
//! in `uploads` (uploads and downloads), `api` (keys, roles, errors, series, lifecycle,
//! schedules), `control` (the server's state beside it) and `openapi` (the document's
//! contract).

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

    /// Stops the server and starts it again on the same data directory and port, as a
    /// restarted process would: keys, jobs and repository kept, every connection cut.
    async fn restart(&mut self) {
        let running = self.server.take().expect("running");
        let address = running.address();
        running.shutdown().await.expect("shutdown");
        let config = ServerConfig {
            data_dir: self.data_dir.clone(),
            ..ServerConfig::default()
        };
        let state = server::prepare(&config).await.expect("restart");
        // The port was this server's a moment ago; another test may take it meanwhile,
        // which the loop waits out for a while rather than failing at once.
        let deadline = Instant::now() + Duration::from_secs(30);
        let listener = loop {
            match tokio::net::TcpListener::bind(address).await {
                Ok(listener) => break listener,
                Err(error) => {
                    assert!(Instant::now() < deadline, "bind {address} again: {error}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        self.server = Some(server::start(state, listener).expect("serve"));
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

pub(crate) mod agents;
mod api;
mod control;
mod openapi;
mod policies;
mod restore_remote;
mod sessions;
pub(crate) mod tree_sessions;
mod ui;
mod uploads;
