//! The tapu-backups dialect played the way b2 hosts play it, over real HTTP and a real FTP
//! client (Python's ftplib): create a token, upload a ~200 MiB tar over FTP in active mode
//! as b2's PHP client does, release the token; a second export of a slightly changed tar
//! stores only the change; an import downloads it byte-exact (and resumes from an offset).
//! Then on a second server every HTTP error code, the token cap and expiry, and what the
//! FTP server refuses: wrong passwords, another instance's files, path tricks, bad names,
//! folders, renames, cut-short uploads (reset or closed early: nothing listed), and the
//! TTL removal that keeps each instance's newest backup.

use std::path::{Path, PathBuf};

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use stowage::format::tar::writer;
use stowage::server::{self, RunningServer, ServerConfig};

use crate::support::{random_bytes, serve_on_loopback};

/// How long a token of the HTTP test's server is valid: long enough that the checks made
/// right after the tokens are made run well inside it on a loaded machine.
const TOKEN_VALIDITY_SECS: u64 = 4;

struct Tapu {
    http: String,
    ftp_port: u16,
    client: Client,
    server: Option<RunningServer>,
    _guard: tokio::sync::RwLockReadGuard<'static, ()>,
}

impl Drop for Tapu {
    fn drop(&mut self) {
        if let Some(server) = &self.server {
            server.state().begin_shutdown();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Tapu {
    async fn start(dir: &Path, configure: impl FnOnce(&mut ServerConfig)) -> Tapu {
        let guard = super::server::MEMORY.read().await;
        let mut config = ServerConfig {
            data_dir: dir.join("data"),
            ..ServerConfig::default()
        };
        let ftp_port = free_port();
        let tapu = &mut config.dialects.tapu;
        tapu.enabled = true;
        tapu.listen = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        tapu.ftp_listen = format!("127.0.0.1:{ftp_port}").parse().unwrap();
        let passive = 20000 + (ftp_port % 400) * 100;
        tapu.ftp_passive_ports = format!("{passive}-{}", passive + 99);
        configure(&mut config);
        let http = format!("http://{}", config.dialects.tapu.listen);
        let state = server::prepare(&config).await.expect("prepare");
        let (_, server) = serve_on_loopback(state).await;
        Tapu {
            http,
            ftp_port,
            client: Client::new(),
            server: Some(server),
            _guard: guard,
        }
    }

    fn state(&self) -> &stowage::http::AppState {
        self.server.as_ref().expect("running").state()
    }

    async fn stop(mut self) {
        let server = self.server.take().expect("running");
        server.shutdown().await.expect("shutdown");
    }

    /// `POST path` with a JSON body, as b2 sends it: the status and the raw body.
    async fn post(&self, path: &str, body: Value) -> (StatusCode, String) {
        let response = self
            .client
            .post(format!("{}{path}", self.http))
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        (response.status(), response.text().await.unwrap())
    }

    async fn get(&self, path_and_query: &str) -> (StatusCode, String) {
        let response = self
            .client
            .get(format!("{}{path_and_query}", self.http))
            .send()
            .await
            .unwrap();
        (response.status(), response.text().await.unwrap())
    }

    /// A token and the FTP password for `instance`.
    async fn token(&self, instance: &str) -> (String, String) {
        let (status, body) = self
            .post("/instance/create-token", json!({ "instance": instance }))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["credentials"]["username"], instance);
        (
            body["token"].as_str().unwrap().to_string(),
            body["credentials"]["password"]
                .as_str()
                .unwrap()
                .to_string(),
        )
    }

    /// Runs FTP operations as `user` in one session; one `(ok, reply)` per operation (a
    /// failed sign-in gives one result).
    async fn ftp(&self, user: &str, password: &str, ops: Value) -> Vec<(bool, String)> {
        self.ftp_over(false, user, password, ops).await
    }

    /// As [`Self::ftp`], over explicit FTPS when `tls`.
    async fn ftp_over(
        &self,
        tls: bool,
        user: &str,
        password: &str,
        ops: Value,
    ) -> Vec<(bool, String)> {
        let args = json!({
            "tls": tls,
            "host": "127.0.0.1",
            "port": self.ftp_port,
            "user": user,
            "password": password,
            "ops": ops,
        });
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/tapu_ftp.py");
        let output = tokio::process::Command::new("python3")
            .arg(script)
            .arg(args.to_string())
            .output()
            .await
            .expect("python3");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let results: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
        results
            .into_iter()
            .map(|r| {
                (
                    r["ok"].as_bool().unwrap(),
                    r["reply"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    fn stored_bytes(&self) -> u64 {
        self.state().repo.stats().unwrap().stored_bytes
    }
}

/// A tar archive of `files` (name, content), as `tar -cf` writes it.
fn tar(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, content) in files {
        out.extend(writer::member_header(
            name,
            content.len() as u64,
            1_700_000_000,
        ));
        out.extend_from_slice(content);
        out.extend(writer::pad(content.len() as u64));
    }
    out.extend(writer::end_marker());
    out
}

/// An instance's export: its files as `file-<n>.bin`.
fn instance_tar(files: &[Vec<u8>]) -> Vec<u8> {
    let names: Vec<String> = (0..files.len()).map(|n| format!("file-{n}.bin")).collect();
    let members: Vec<(&str, &[u8])> = names
        .iter()
        .zip(files)
        .map(|(name, content)| (name.as_str(), content.as_slice()))
        .collect();
    tar(&members)
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn sha(bytes: &[u8]) -> String {
    crate::support::sha256_hex(bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tapu_export_and_import_flows_of_b2() {
    let dir = tempfile::tempdir().unwrap();
    let tapu = Tapu::start(dir.path(), |_| {}).await;
    let instance = "equal.local";

    // Export 1: ~200 MiB over FTP in active mode (PORT), as b2's PHP client does.
    let mut files: Vec<Vec<u8>> = (0..4).map(|i| random_bytes(50 << 20, 40 + i)).collect();
    let first = instance_tar(&files);
    let first_path = write(dir.path(), "first.tar", &first);
    let name1 = "equal.local_2026113000000_7.tar";
    let (token, password) = tapu.token(instance).await;
    let before = tapu.stored_bytes();
    let results = tapu
        .ftp(
            instance,
            &password,
            json!([{"op": "put", "name": name1, "path": first_path, "active": true}]),
        )
        .await;
    assert!(
        results[0].0 && results[0].1.starts_with("226"),
        "{results:?}"
    );
    let (status, body) = tapu
        .post(
            "/instance/release-token",
            json!({"instance": instance, "token": token}),
        )
        .await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "token_released"));
    let first_growth = tapu.stored_bytes() - before;
    assert!(first_growth > 150 << 20, "{first_growth}");
    // Credentials die with the token.
    let refused = tapu.ftp(instance, &password, json!([])).await;
    assert!(
        !refused[0].0 && refused[0].1.starts_with("530"),
        "{refused:?}"
    );

    // Export 2: one file changed in a few places; passive mode this time.
    for at in [1 << 20, 17 << 20, 33 << 20] {
        files[1][at..at + 4096].copy_from_slice(&random_bytes(4096, at as u64));
    }
    let second = instance_tar(&files);
    let second_path = write(dir.path(), "second.tar", &second);
    let name2 = "equal.local_2026113086399_28.tar";
    let (token, password) = tapu.token(instance).await;
    let before = tapu.stored_bytes();
    let results = tapu
        .ftp(
            instance,
            &password,
            json!([{"op": "put", "name": name2, "path": second_path}]),
        )
        .await;
    assert!(results[0].0, "{results:?}");
    let second_growth = tapu.stored_bytes() - before;
    assert!(
        second_growth * 10 < first_growth,
        "the second export grew the repository by {second_growth} bytes, the first by {first_growth}"
    );
    tapu.post(
        "/token/release",
        json!({"instance": instance, "token": token}),
    )
    .await;

    let (status, body) = tapu.get("/instance/backups?instance=equal.local").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!([name1, name2])
    );

    // Import: byte-exact, in passive and active mode, and resumed from an offset.
    let (status, body) = tapu
        .post("/token", json!({"instance": instance, "no_delay": true}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let body: Value = serde_json::from_str(&body).unwrap();
    let password = body["credentials"]["password"].as_str().unwrap();
    let got1 = dir.path().join("got1.tar");
    let got2 = dir.path().join("got2.tar");
    let tail = dir.path().join("tail.tar");
    let results = tapu
        .ftp(
            instance,
            password,
            json!([
                {"op": "get", "name": name1, "path": got1, "active": true},
                {"op": "get", "name": name2, "path": got2},
                {"op": "get", "name": name2, "path": tail, "rest": 100_000_000},
                {"op": "size", "name": name2},
                {"op": "mdtm", "line": format!("MDTM {name2}")},
                {"op": "nlst"},
                {"op": "list"},
            ]),
        )
        .await;
    assert!(results.iter().all(|r| r.0), "{results:?}");
    let lines: Vec<String> = serde_json::from_str(&results[6].1).unwrap();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[1].contains(&second.len().to_string()) && lines[1].ends_with(name2),
        "{lines:?}"
    );
    assert_eq!(sha(&std::fs::read(&got1).unwrap()), sha(&first));
    assert_eq!(sha(&std::fs::read(&got2).unwrap()), sha(&second));
    assert_eq!(std::fs::read(&tail).unwrap(), &second[100_000_000..]);
    assert_eq!(results[3].1, second.len().to_string());
    assert!(results[4].1.starts_with("213 "), "{:?}", results[4]);
    let listed: Vec<String> = serde_json::from_str(&results[5].1).unwrap();
    assert_eq!(listed, [name1, name2]);
    tapu.stop().await;
}

/// A server for the error cases: a cap of 3 tokens, tokens valid [`TOKEN_VALIDITY_SECS`],
/// no sweep of its own.
async fn edge_server(dir: &Path) -> Tapu {
    Tapu::start(dir, |config| {
        config.dialects.tapu.token_validity_secs = TOKEN_VALIDITY_SECS;
        config.dialects.tapu.sweep_interval_secs = 3600;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tapu_http_errors_and_tokens_as_the_original() {
    let dir = tempfile::tempdir().unwrap();
    let tapu = edge_server(dir.path()).await;
    let error = |code: &str| json!({ "error": code }).to_string();

    // Routes and methods.
    let (status, body) = tapu.get("/nowhere").await;
    assert_eq!(
        (status, body),
        (StatusCode::NOT_FOUND, error("unknown_route"))
    );
    let response = tapu
        .client
        .delete(format!("{}/status", tapu.http))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.text().await.unwrap(), error("method_not_allowed"));
    // A POST must say JSON, and send JSON.
    let response = tapu
        .client
        .post(format!("{}/token/create", tapu.http))
        .body(r#"{"instance":"a.io"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(response.text().await.unwrap(), error("invalid_body"));
    let response = tapu
        .client
        .post(format!("{}/token/create", tapu.http))
        .header("Content-Type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(response.text().await.unwrap(), error("invalid_json"));

    // Fields.
    for path in ["/token", "/token/create", "/instance/create-token"] {
        let (status, body) = tapu.post(path, json!({})).await;
        assert_eq!(
            (status, body),
            (StatusCode::BAD_REQUEST, error("missing_instance"))
        );
    }
    for bad in [
        json!("../x.io"),
        json!("nodot"),
        json!(12),
        json!("a".repeat(40) + ".io"),
    ] {
        let (status, body) = tapu.post("/token", json!({ "instance": bad })).await;
        assert_eq!(
            (status, body),
            (StatusCode::BAD_REQUEST, error("invalid_instance"))
        );
    }
    let (status, body) = tapu
        .post("/token", json!({"instance": "a.io", "no_delay": "soon"}))
        .await;
    assert_eq!(
        (status, body),
        (StatusCode::BAD_REQUEST, error("invalid_no_delay"))
    );
    for path in [
        "/token-release",
        "/token/release",
        "/instance/release-token",
    ] {
        let (status, body) = tapu.post(path, json!({"instance": "a.io"})).await;
        assert_eq!(
            (status, body),
            (StatusCode::BAD_REQUEST, error("missing_token"))
        );
        let (status, body) = tapu
            .post(path, json!({"instance": "a.io", "token": "0".repeat(32)}))
            .await;
        assert_eq!(
            (status, body),
            (StatusCode::BAD_REQUEST, error("invalid_token"))
        );
    }
    let (status, body) = tapu.get("/instance/backups?instance=never.io").await;
    assert_eq!(
        (status, body),
        (StatusCode::NOT_FOUND, error("backups_not_found"))
    );
    let (status, body) = tapu.get("/instance/backups").await;
    assert_eq!(
        (status, body),
        (StatusCode::BAD_REQUEST, error("missing_instance"))
    );

    // One token per instance, three in all; a token for an instance makes it known.
    let (first_token, first_password) = tapu.token("a.io").await;
    let (second_token, second_password) = tapu.token("a.io").await;
    assert_ne!(first_token, second_token);
    assert_eq!(first_token.len(), 32);
    let (_, body) = tapu.get("/instance/backups?instance=a.io").await;
    assert_eq!(body, "[]");
    let old = tapu.ftp("a.io", &first_password, json!([])).await;
    assert!(old[0].1.starts_with("530"), "{old:?}");
    let fresh = tapu
        .ftp("a.io", &second_password, json!([{"op": "nlst"}]))
        .await;
    assert!(fresh[0].0, "{fresh:?}");
    let (status, _) = tapu.post("/token", json!({"instance": "b.io"})).await;
    assert_eq!(status, StatusCode::CREATED);
    // GET with the query works as the POST body does.
    let (status, _) = tapu.get("/token?instance=c.io").await;
    assert_eq!(status, StatusCode::CREATED);
    // Every token so far was made before this instant; none has expired yet (checked at
    // once, far inside their validity, so a loaded machine cannot outrun it).
    let all_made = std::time::Instant::now();
    let (status, body) = tapu.post("/release-expired-tokens", json!({})).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "no_tokens_to_release")
    );
    let (status, body) = tapu.post("/token", json!({"instance": "d.io"})).await;
    assert_eq!(
        (status, body),
        (StatusCode::BAD_REQUEST, error("max_token_reached"))
    );
    let (status, body) = tapu
        .post(
            "/token/release",
            json!({"instance": "b.io", "token": second_token}),
        )
        .await;
    assert_eq!(
        (status, body),
        (StatusCode::BAD_REQUEST, error("invalid_token"))
    );

    // The status in the original's shape, with this host's figures.
    let (status, body) = tapu.post("/status", json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let status_body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status_body["type"], "tapu_backups");
    assert_eq!(status_body["instant"]["backup_tokens_qty"], "3");
    for (group, key) in [
        ("stats", "backups_disk"),
        ("stats", "uptime"),
        ("instant", "ram_use"),
        ("instant", "disk_use"),
        ("config", "mem"),
        ("config", "cpu_qty"),
    ] {
        assert!(status_body[group][key].is_string(), "{group}.{key}: {body}");
    }

    // Past the validity a token still works until it is released.
    let expired = all_made + std::time::Duration::from_millis(TOKEN_VALIDITY_SECS * 1000 + 100);
    tokio::time::sleep_until(expired.into()).await;
    let late = tapu
        .ftp("a.io", &second_password, json!([{"op": "nlst"}]))
        .await;
    assert!(late[0].0, "{late:?}");
    let (status, body) = tapu.get("/release-expired-tokens").await;
    assert_eq!(
        (status, body),
        (
            StatusCode::OK,
            json!({"result": "expired_tokens_released"}).to_string()
        )
    );
    let gone = tapu.ftp("a.io", &second_password, json!([])).await;
    assert!(gone[0].1.starts_with("530"), "{gone:?}");
    let (status, _) = tapu.post("/token", json!({"instance": "d.io"})).await;
    assert_eq!(status, StatusCode::CREATED);
    tapu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tapu_ftp_refuses_what_it_must() {
    let dir = tempfile::tempdir().unwrap();
    let tapu = edge_server(dir.path()).await;
    let small = tar(&[("x.bin", &random_bytes(3 << 20, 7))]);
    let small_path = write(dir.path(), "small.tar", &small);
    let (_, a_password) = tapu.token("a.io").await;
    let (_, b_password) = tapu.token("b.io").await;
    let b_file = "b.io_2026113000000_7.tar";
    let stored = tapu
        .ftp(
            "b.io",
            &b_password,
            json!([{"op": "put", "name": b_file, "path": small_path}]),
        )
        .await;
    assert!(stored[0].0, "{stored:?}");

    // Wrong passwords: 530, whoever the user.
    for (user, password) in [
        ("a.io", "wrong"),
        ("a.io", b_password.as_str()),
        ("z.io", "x"),
    ] {
        let refused = tapu.ftp(user, password, json!([])).await;
        assert!(refused[0].1.starts_with("530"), "{user}: {refused:?}");
    }

    let got = dir.path().join("got.tar");
    let results = tapu
        .ftp(
            "a.io",
            &a_password,
            json!([
                // b.io's file is neither listed nor readable from a.io.
                {"op": "nlst"},
                {"op": "get", "name": b_file, "path": got},
                {"op": "get", "name": format!("../b.io/{b_file}"), "path": got},
                {"op": "size", "name": format!("/../b.io/{b_file}")},
                // Names outside the rule, paths and folders.
                {"op": "put", "name": "a.io_2026113000000_7.zip", "path": small_path},
                {"op": "put", "name": "b.io_2026113000000_7.tar", "path": small_path},
                {"op": "put", "name": "../a.io_2026113000000_7.tar", "path": small_path},
                {"op": "put", "name": "sub/a.io_2026113000000_7.tar", "path": small_path},
                {"op": "mkd", "line": "MKD sub"},
                {"op": "site", "line": "SITE CHMOD 777 x"},
                // A cut-short upload, reset or closed early, leaves nothing.
                {"op": "cut", "name": "a.io_2026113000001_7.tar", "path": small_path, "bytes": 1 << 20, "how": "fin"},
                {"op": "cut", "name": "a.io_2026113000002_7.tar", "path": small_path, "bytes": 1 << 20, "how": "fin"},
                {"op": "nlst"},
                // Stored, then renamed (refused) and deleted (recycled).
                {"op": "put", "name": "a.io_2026113000003_7.tar", "path": small_path},
                {"op": "rename", "from": "a.io_2026113000003_7.tar", "to": "a.io_2026113000004_7.tar"},
                {"op": "dele", "line": "DELE a.io_2026113000003_7.tar"},
                {"op": "nlst"},
            ]),
        )
        .await;
    let reply = |i: usize| &results[i];
    assert_eq!(reply(0), &(true, "[]".to_string()), "{results:?}");
    for i in 1..=3 {
        assert!(
            !reply(i).0 && reply(i).1.starts_with('5'),
            "{i}: {results:?}"
        );
    }
    for i in 4..=9 {
        assert!(
            !reply(i).0 && reply(i).1.starts_with('5'),
            "{i}: {results:?}"
        );
    }
    for i in 10..=11 {
        assert!(
            !reply(i).0 && reply(i).1.starts_with("426"),
            "{i}: {results:?}"
        );
    }
    assert_eq!(reply(12).1, "[]");
    assert!(reply(13).0, "{results:?}");
    assert!(!reply(14).0 && reply(14).1.starts_with('5'), "{results:?}");
    assert!(reply(15).0 && reply(15).1.starts_with("250"), "{results:?}");
    assert_eq!(reply(16).1, "[]");
    // The recycled backup is in the repository's recycle bin, not lost.
    let recycled = tapu
        .state()
        .repo
        .backup_entries()
        .unwrap()
        .into_iter()
        .filter(|e| e.manifest.source == "a.io_2026113000003_7.tar" && e.recycled_at.is_some())
        .count();
    assert_eq!(recycled, 1);

    // TTL removal: both of a.io's files are long past their 7 days; the newest stays.
    let results = tapu
        .ftp(
            "a.io",
            &a_password,
            json!([
                {"op": "put", "name": "a.io_2020010100000_7.tar", "path": small_path},
                {"op": "put", "name": "a.io_2020010200000_7.tar.gpg", "path": write(dir.path(), "m.gpg", &[0xa3, 0x01, 0x02])},
            ]),
        )
        .await;
    assert!(results.iter().all(|r| r.0), "{results:?}");
    let (status, body) = tapu.post("/remove-expired-backups", json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"result": "expired_backups_removed"}).to_string()
    );
    let (_, body) = tapu.get("/instance/backups?instance=a.io").await;
    assert_eq!(body, json!(["a.io_2020010200000_7.tar.gpg"]).to_string());
    let (_, body) = tapu.get("/instance/backups?instance=b.io").await;
    assert_eq!(body, json!([b_file]).to_string());
    tapu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tapu_ftps_carries_concurrent_transfers_of_several_instances() {
    let dir = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let certificate = write(dir.path(), "cert.pem", certified.cert.pem().as_bytes());
    let key = write(
        dir.path(),
        "key.pem",
        certified.key_pair.serialize_pem().as_bytes(),
    );
    let tapu = Tapu::start(dir.path(), |config| {
        let tapu = &mut config.dialects.tapu;
        tapu.ftp_tls_certificate = Some(certificate);
        tapu.ftp_tls_key = Some(key);
        tapu.ftp_tls_required = true;
    })
    .await;
    let (_, a_password) = tapu.token("a.io").await;
    let (_, b_password) = tapu.token("b.io").await;
    // Plain FTP is refused when FTPS is required.
    let plain = tapu.ftp("a.io", &a_password, json!([])).await;
    assert!(!plain[0].0 && plain[0].1.starts_with('5'), "{plain:?}");

    let a_tar = tar(&[("a.bin", &random_bytes(24 << 20, 1))]);
    let b_tar = tar(&[("b.bin", &random_bytes(24 << 20, 2))]);
    let a_path = write(dir.path(), "a.tar", &a_tar);
    let b_path = write(dir.path(), "b.tar", &b_tar);
    let (a, b) = tokio::join!(
        tapu.ftp_over(
            true,
            "a.io",
            &a_password,
            json!([{"op": "put", "name": "a.io_2026113000000_7.tar", "path": a_path}]),
        ),
        tapu.ftp_over(
            true,
            "b.io",
            &b_password,
            json!([{"op": "put", "name": "b.io_2026113000000_7.tar", "path": b_path, "active": true}]),
        ),
    );
    assert!(a[0].0 && b[0].0, "{a:?} {b:?}");
    let got = dir.path().join("got.tar");
    let read = tapu
        .ftp_over(
            true,
            "b.io",
            &b_password,
            json!([
                {"op": "get", "name": "b.io_2026113000000_7.tar", "path": got},
                {"op": "mlsd"},
            ]),
        )
        .await;
    assert!(read.iter().all(|r| r.0), "{read:?}");
    assert_eq!(sha(&std::fs::read(&got).unwrap()), sha(&b_tar));
    assert_eq!(read[1].1, json!(["b.io_2026113000000_7.tar"]).to_string());
    tapu.stop().await;
}
