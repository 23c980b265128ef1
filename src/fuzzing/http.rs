//! The dialect targets: requests made from the input, sent to the server's real router,
//! built once in-process over a temporary data directory (repository, state store, fa
//! root) with a tokio runtime of its own. A response must come back within the time
//! limit, its body must be readable, and its status is never 500.
//! The tapu-backups dialect answers on a listener of its own, so its requests go to its own
//! router, built over the same server.
//!
//! Input: an HTTP/1-like text. The first line is `METHOD TARGET`, the next lines up to an
//! empty line are `Name: value` headers, the rest is the body. A target that does not
//! start with `/` gets the dialect's prefix. In the request line and header values these
//! placeholders are replaced: `{admin}` (an admin key), `{fa}` (an admin key named
//! `alice`, an fa user), `{jwt}` (an fa token for `alice`), `{bc}` (a Backup-chan key),
//! `{wings}` (a backup key), `{bc-backup}` (a Backup-chan backup made at start),
//! `{sig}` (a valid signed-URL query for the request's method and path).
//! `Content-Length` is always the body's length, as a server's HTTP layer makes it;
//! with a `Transfer-Encoding` header the body's length is unknown to the handler.
//! `STOWAGE_FUZZ_TRACE=1` prints each request's answer.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderName, HeaderValue, Method, Request, StatusCode, Uri};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use tower::ServiceExt;

use crate::http::AppState;
use crate::server::ServerConfig;
use crate::service::keys::{Role, BACKUPCHAN};

const JWT_SECRET: &str = "stowage fuzz secret";

/// How long one request may take before it counts as a hang.
const REQUEST_LIMIT: Duration = Duration::from_secs(20);

struct Server {
    runtime: tokio::runtime::Runtime,
    state: AppState,
    router: axum::Router,
    /// The tapu-backups API, which answers on a listener of its own.
    tapu: axum::Router,
    /// Placeholder → its value.
    values: Vec<(&'static str, String)>,
    dir: tempfile::TempDir,
}

static SERVER: Mutex<Option<Server>> = Mutex::new(None);

pub fn fa(data: &[u8]) {
    send(data, "/fa/api/v0/", main_router);
}

pub fn backupchan(data: &[u8]) {
    send(data, "/api/", main_router);
}

pub fn wings(data: &[u8]) {
    send(data, "/api/remote/backups/", main_router);
}

pub fn tapu(data: &[u8]) {
    send(data, "/", |server| server.tapu.clone());
}

fn main_router(server: &Server) -> axum::Router {
    server.router.clone()
}

/// Stops the server and removes its directory.
pub fn release() {
    let taken = SERVER.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(server) = taken {
        server.runtime.block_on(server.state.shutdown());
        drop(server.router);
        drop(server.tapu);
        drop(server.state);
        server.runtime.shutdown_timeout(Duration::from_secs(5));
        let _ = server.dir.close();
    }
}

fn send(data: &[u8], prefix: &str, router: fn(&Server) -> axum::Router) {
    let mut slot = SERVER.lock().unwrap_or_else(|e| e.into_inner());
    let server = slot.get_or_insert_with(start);
    let Some(request) = build(data, prefix, server) else {
        return;
    };
    let shown = format!("{} {}", request.method(), request.uri());
    let (status, body) = server
        .runtime
        .block_on(async {
            tokio::time::timeout(REQUEST_LIMIT, exchange(router(server), request)).await
        })
        .unwrap_or_else(|_| panic!("{shown}: no answer within {REQUEST_LIMIT:?}"));
    if std::env::var_os("STOWAGE_FUZZ_TRACE").is_some() {
        let text = String::from_utf8_lossy(&body);
        eprintln!(
            "{shown} -> {status} {}",
            text.chars().take(300).collect::<String>()
        );
    }
    assert_ne!(
        status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{shown} answered 500: {}",
        String::from_utf8_lossy(&body)
    );
}

async fn exchange(router: axum::Router, request: Request<Body>) -> (StatusCode, Vec<u8>) {
    let response = match router.oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 64 << 20)
        .await
        .map(|b| b.to_vec())
        .unwrap_or_else(|e| panic!("answer {status}: its body fails: {e}"));
    (status, body)
}

fn expand(text: &str, values: &[(&'static str, String)]) -> String {
    let mut text = text.to_string();
    for (name, value) in values {
        if text.contains(name) {
            text = text.replace(name, value);
        }
    }
    text
}

/// The request the input describes; `None` when no HTTP server would pass it on (a
/// request line or target that does not parse).
fn build(data: &[u8], prefix: &str, server: &Server) -> Option<Request<Body>> {
    let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(at) => (&data[..at], &data[at + 2..]),
        None => (data, &[][..]),
    };
    let mut lines = head.split(|&b| b == b'\n');
    let request_line = String::from_utf8_lossy(lines.next().unwrap_or_default());
    let line = request_line.trim_end_matches('\r');
    let (method, target) = line.split_once(' ').unwrap_or(("GET", line));
    let method = Method::from_bytes(method.as_bytes()).ok()?;
    let mut target = expand(target.trim(), &server.values);
    if !target.starts_with('/') {
        target = format!("{prefix}{target}");
    }
    if target.contains("{sig}") {
        let path = target.split('?').next().unwrap_or_default().to_string();
        let expires = chrono::Utc::now().timestamp() + 600;
        let query = server.state.signer.query(method.as_str(), &path, expires);
        target = target.replace("{sig}", &query);
    }
    let uri: Uri = target.parse().ok()?;
    uri.path_and_query()?;
    let mut request = Request::builder().method(method).uri(uri);
    let mut chunked = false;
    for line in lines.take(32) {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let Ok(name) = HeaderName::from_bytes(line[..colon].trim_ascii()) else {
            continue;
        };
        let raw = line[colon + 1..].trim_ascii();
        let value = match std::str::from_utf8(raw) {
            Ok(text) => HeaderValue::from_str(&expand(text, &server.values)),
            Err(_) => HeaderValue::from_bytes(raw),
        };
        let Ok(value) = value else {
            continue;
        };
        if name == header::CONTENT_LENGTH {
            continue;
        }
        if name == header::TRANSFER_ENCODING {
            chunked = true;
            continue;
        }
        request = request.header(name, value);
    }
    let body = if chunked {
        let piece: Result<Vec<u8>, std::io::Error> = Ok(body.to_vec());
        Body::from_stream(futures::stream::iter([piece]))
    } else {
        request = request.header(header::CONTENT_LENGTH, body.len());
        Body::from(body.to_vec())
    };
    request.body(body).ok()
}

/// Starts the server: a fresh data directory, an fa root with a user's home, the keys
/// the placeholders name, and a Backup-chan target (alias `web`) with one backup.
fn start() -> Server {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime for the fuzzing server");
    let dir = tempfile::Builder::new()
        .prefix("stowage-fuzz-")
        .tempdir()
        .expect("a temporary directory for the fuzzing server");
    let data_dir = dir.path().join("data");
    let fa_root = dir.path().join("fa");
    let home = fa_root.join("users").join("alice");
    for (path, text) in [
        ("docs/notes.txt", "notes\n"),
        ("docs/sub/more.txt", "more\n"),
    ] {
        let path = home.join(path);
        let parent = path.parent().expect("a file in a directory");
        std::fs::create_dir_all(parent).expect("the fa home of the fuzzing server");
        std::fs::write(&path, text).expect("a file in the fa home");
    }
    let mut config = ServerConfig {
        data_dir: data_dir.clone(),
        ..ServerConfig::default()
    };
    config.dialects.fa.root = Some(fa_root);
    config.dialects.fa.jwt_secret = Some(JWT_SECRET.into());
    // tapu-backups on ports of the system's choosing: its requests go to its router.
    config.dialects.tapu.enabled = true;
    config.dialects.tapu.listen = ([127, 0, 0, 1], 0).into();
    config.dialects.tapu.ftp_listen = ([127, 0, 0, 1], 0).into();
    let state = runtime
        .block_on(crate::server::prepare(&config))
        .expect("the fuzzing server starts");
    let router = crate::server::router(state.clone());
    let tapu = crate::dialects::tapu::http::router(std::sync::Arc::new(
        crate::dialects::tapu::http::TapuHttp {
            app: state.clone(),
            service: state
                .dialect::<crate::service::tapu::TapuService>()
                .expect("the tapu-backups dialect is enabled"),
            require_key: false,
            data_dir: data_dir.clone(),
        },
    ));
    let mut server = Server {
        values: keys(&state, &data_dir),
        runtime,
        state,
        router,
        tapu,
        dir,
    };
    let backup = first_backupchan_backup(&server);
    server.values.push(("{bc-backup}", backup));
    let _ = call(
        &server,
        "POST /fa/api/v0/backup/new\nAuthorization: Bearer {fa}\n\n{\"id\":1,\"path\":\"docs\"}",
    );
    server
}

fn keys(state: &AppState, data_dir: &Path) -> Vec<(&'static str, String)> {
    let admin = std::fs::read_to_string(data_dir.join("admin.key"))
        .expect("the admin key written on first start");
    let (_, fa) = state
        .keys
        .create("alice", Role::Admin)
        .expect("an fa user's key");
    let (_, bc) = state
        .keys
        .create_for_dialect("fuzz", Role::Writer, BACKUPCHAN)
        .expect("a Backup-chan key");
    let (_, wings) = state
        .keys
        .create("wings", Role::Backup)
        .expect("a Wings key");
    vec![
        ("{admin}", admin.trim().to_string()),
        ("{fa}", fa),
        ("{jwt}", jwt("alice")),
        ("{bc}", bc),
        ("{wings}", wings),
    ]
}

/// An HS512 token for `user`, valid for a day.
fn jwt(user: &str) -> String {
    let head = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS512","typ":"JWT"}"#);
    let exp = chrono::Utc::now().timestamp() + 86_400;
    let claims = URL_SAFE_NO_PAD.encode(format!(r#"{{"username":"{user}","exp":{exp}}}"#));
    let mut mac = Hmac::<sha2::Sha512>::new_from_slice(JWT_SECRET.as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(format!("{head}.{claims}").as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{head}.{claims}.{signature}")
}

/// Sends one request written as a target's input; its status and body.
fn call(server: &Server, text: &str) -> Option<(StatusCode, serde_json::Value)> {
    let request = build(text.as_bytes(), "/", server)?;
    let (status, body) = server
        .runtime
        .block_on(exchange(server.router.clone(), request));
    Some((status, serde_json::from_slice(&body).unwrap_or_default()))
}

/// Creates the Backup-chan target `web`, uploads one file and waits for its backup.
fn first_backupchan_backup(server: &Server) -> String {
    let target = r#"{"name":"web","backup_type":"single","recycle_criteria":"count","recycle_value":5,"recycle_action":"recycle","location":"/srv/web","name_template":"web-$I","deduplicate":true,"alias":"web","min_backups":1,"tags":["site"]}"#;
    let _ = call(
        server,
        &format!("POST /api/target\nAuthorization: Bearer {{bc}}\nContent-Type: application/json\n\n{target}"),
    );
    let _ = call(server, &upload_request("/api/target/web/upload"));
    for _ in 0..200 {
        let view = call(
            server,
            "GET /api/target/web\nAuthorization: Bearer {bc}\n\n",
        );
        let id = view
            .as_ref()
            .and_then(|(_, v)| v["backups"][0]["id"].as_str().map(str::to_string));
        if let Some(id) = id {
            return id;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    "00000000-0000-4000-8000-000000000000".into()
}

fn upload_request(path: &str) -> String {
    format!(
        "POST {path}\nAuthorization: Bearer {{bc}}\nContent-Type: multipart/form-data; boundary=XyZ\n\n\
         --XyZ\r\nContent-Disposition: form-data; name=\"manual\"\r\n\r\ntrue\r\n\
         --XyZ\r\nContent-Disposition: form-data; name=\"backup_file\"; filename=\"site.txt\"\r\n\
         Content-Type: text/plain\r\n\r\nthe site's bytes\n\r\n--XyZ--\r\n"
    )
}

fn seeds(requests: &[&str]) -> Vec<Vec<u8>> {
    requests.iter().map(|r| r.as_bytes().to_vec()).collect()
}

pub fn fa_seeds() -> Vec<Vec<u8>> {
    seeds(&[
        "GET /health\n\n",
        "GET /fa/public/safe-upgrade\n\n",
        "GET /fa/public/full-query?start=1\n\n",
        "POST backup/new\nAuthorization: Bearer {fa}\nContent-Type: application/json\n\n{\"id\":2,\"path\":\"docs/sub\"}",
        "POST backup\nAuthorization: Bearer {jwt}\n\n{\"id\":3,\"path\":\"docs\",\"storage_id\":-1}",
        "GET backup/1\nAuthorization: Bearer {fa}\n\n",
        "GET backup/2?token={jwt}\n\n",
        "POST restore/new\nCookie: Authorization={jwt}\n\n{\"restore_id\":1,\"backup_id\":1,\"dst_path\":\"restored/one\"}",
        "GET restore/1\nAuthorization: Bearer {fa}\n\n",
        "POST restore/cancel\nAuthorization: Bearer {fa}\n\n{\"restore_id\":1}",
        "POST backup/cancel\nAuthorization: Bearer {fa}\n\n{\"id\":2}",
        "POST backup/cancel-all\nAuthorization: Bearer {fa}\n\n",
        "DELETE backup/3\nAuthorization: Bearer {jwt}\n\n",
        "GET backup/repo-destroyed\nAuthorization: Bearer {fa}\n\n",
        "POST backup/destroy-repo\nAuthorization: Bearer {fa}\n\n{}",
        "PUT /fa/public/full-ack/7\n\n",
    ])
}

pub fn backupchan_seeds() -> Vec<Vec<u8>> {
    let mut requests = vec![
        "GET target?page=1\nAuthorization: Bearer {bc}\n\n".to_string(),
        "POST target\nAuthorization: Bearer {bc}\nContent-Type: application/json\n\n{\"name\":\"db\",\"backup_type\":\"multi\",\"recycle_criteria\":\"age\",\"recycle_value\":30,\"recycle_action\":\"delete\",\"location\":\"/srv/db\",\"name_template\":\"db-$D\",\"alias\":\"db\"}".into(),
        "GET target/search?name=web&deduplicate=on&tags=site\nAuthorization: Bearer {bc}\n\n".into(),
        "GET target/web\nAuthorization: Bearer {bc}\n\n".into(),
        "PATCH target/web\nAuthorization: Bearer {bc}\n\n{\"name\":\"web\",\"recycle_criteria\":\"none\",\"recycle_value\":null,\"recycle_action\":\"recycle\",\"location\":\"/srv/web\",\"name_template\":\"web-$I\",\"alias\":\"web\",\"num_backups\":2}".into(),
        upload_request("target/web/upload"),
        "GET backup/{bc-backup}/download\nAuthorization: Bearer {bc}\n\n".into(),
        "PATCH backup/{bc-backup}\nAuthorization: Bearer {bc}\n\n{\"is_recycled\":true}".into(),
        "GET recycle_bin\nAuthorization: Bearer {bc}\n\n".into(),
        "PATCH backup/{bc-backup}\nAuthorization: Bearer {bc}\n\n{\"is_recycled\":false}".into(),
        "POST seq/db/begin\nAuthorization: Bearer {bc}\n\n{\"manual\":false,\"file_list\":[{\"path\":\"/\",\"name\":\"a.sql\"},{\"path\":\"/x\",\"name\":\"b\"}]}".into(),
        "GET seq/db\nAuthorization: Bearer {bc}\n\n".into(),
        "POST seq/db/upload\nAuthorization: Bearer {bc}\nContent-Type: multipart/form-data; boundary=B\n\n--B\r\nContent-Disposition: form-data; name=\"path\"\r\n\r\n/\r\n--B\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\na.sql\r\n--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.sql\"\r\n\r\nselect 1;\r\n--B--\r\n".into(),
        "POST seq/db/finish\nAuthorization: Bearer {bc}\n\n".into(),
        "POST seq/db/terminate\nAuthorization: Bearer {bc}\n\n".into(),
        "GET jobs\nAuthorization: Bearer {bc}\n\n".into(),
        "GET jobs/force_run/recycle\nAuthorization: Bearer {bc}\n\n".into(),
        "GET log?tail=5\nAuthorization: Bearer {bc}\n\n".into(),
        "GET stats\nAuthorization: Bearer {bc}\n\n".into(),
        "DELETE target/db/recycled\nAuthorization: Bearer {bc}\n\n{\"delete_files\":true}".into(),
        "DELETE target/db\nAuthorization: Bearer {bc}\n\n{\"delete_files\":false}".into(),
    ];
    requests
        .push("DELETE recycle_bin\nAuthorization: Bearer {bc}\n\n{\"delete_files\":true}".into());
    let refs: Vec<&str> = requests.iter().map(String::as_str).collect();
    seeds(&refs)
}

pub fn wings_seeds() -> Vec<Vec<u8>> {
    const UUID: &str = "8b1e4b5e-0f6f-4d38-9d7a-4c1f0e2d3a4b";
    let requests = [
        format!("GET {UUID}?size=10\nAuthorization: Bearer {{wings}}\nHost: panel.example\n\n"),
        format!("PUT /wings/backups/{UUID}/parts/1?{{sig}}\nContent-Type: application/x-gzip\n\n0123456789"),
        format!("POST {UUID}\nAuthorization: Bearer {{wings}}\nContent-Type: application/json\n\n{{\"successful\":true,\"checksum\":\"87acec17cd9dcd20a716cc2cf67417b71c8a7016\",\"checksum_type\":\"sha1\",\"size\":10,\"parts\":[{{\"etag\":\"\\\"53b63a6fc8605d0c0ce559317a00177d\\\"\",\"part_number\":1}}]}}"),
        format!("POST {UUID}/restore\nAuthorization: Bearer {{wings}}\n\n{{\"successful\":true}}"),
        format!("POST {UUID}\nAuthorization: Bearer {{wings}}\n\n{{\"successful\":false,\"parts\":[]}}"),
        "GET nothing/here\nAuthorization: Bearer {wings}\n\n".to_string(),
    ];
    let refs: Vec<&str> = requests.iter().map(String::as_str).collect();
    seeds(&refs)
}

pub fn tapu_seeds() -> Vec<Vec<u8>> {
    seeds(&[
        "GET /status\n\n",
        "POST /status\nContent-Type: application/json\n\n{}",
        "POST /instance/create-token\nContent-Type: application/json\n\n{\"instance\":\"equal.local\",\"no_delay\":true}",
        "GET /token?instance=other.io\n\n",
        "POST /token/release\nContent-Type: application/json\n\n{\"instance\":\"equal.local\",\"token\":\"4534098a50233b15cb05734b1bbd64c8\"}",
        "GET /instance/backups?instance=equal.local\n\n",
        "POST /release-expired-tokens\nContent-Type: application/json\n\n[]",
        "POST /remove-expired-backups\nContent-Type: application/json\n\n{}",
        "PUT /token-release\n\n",
    ])
}
