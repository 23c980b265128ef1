//! The fa dialect over real HTTP (`/fa/api/v0`), in-process like `server.rs`: a backup of
//! a tree of a few thousand files polled to success and restored to a new directory
//! (identical, modes and mtimes included), a cancel in the middle of a large backup,
//! cancel-all, re-posting ids, path traversal and symlink escapes, unknown ids, malformed
//! JSON, JWTs (expired, wrong signature, wrong algorithm) and API keys, delete,
//! destroy-repo, and job records surviving a restart.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::{RngCore, SeedableRng};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use sha2::Sha512;

use stowage::server::{self, ServerConfig};
use stowage::service::keys::{KeyStore, Role};

use crate::support::{admin_key, serve_on_loopback};

const SECRET: &str = "fa-test-secret";
const API: &str = "/fa/api/v0";

struct Fa {
    base: String,
    client: Client,
    admin: String,
    /// Homes are `<root>/users/<username>`.
    root: PathBuf,
    server: Option<stowage::server::RunningServer>,
    _guard: tokio::sync::RwLockReadGuard<'static, ()>,
}

impl Drop for Fa {
    fn drop(&mut self) {
        // Stops in the background; `stop` waits for it.
        if let Some(server) = &self.server {
            server.state().begin_shutdown();
        }
    }
}

impl Fa {
    /// The running server's API keys (its state store is held open by the server).
    fn keys(&self) -> &KeyStore {
        &self.server.as_ref().expect("running").state().keys
    }

    /// Shuts the server down and waits until it has released everything, so another
    /// can start on the same data at once.
    async fn stop(mut self) {
        let server = self.server.take().expect("running");
        server.shutdown().await.expect("shutdown");
    }

    /// Starts a server whose data and fa root live under `dir`.
    async fn start(dir: &Path) -> Fa {
        for name in [
            "STOWAGE_ADMIN_KEY",
            "STOWAGE_PASSWORD",
            "STOWAGE_FA_ROOT",
            "STOWAGE_FA_JWT_SECRET",
        ] {
            assert!(std::env::var_os(name).is_none(), "{name} must be unset");
        }
        let guard = super::server::MEMORY.read().await;
        let data_dir = dir.join("data");
        let root = dir.join("fa-root");
        let mut config = ServerConfig {
            data_dir: data_dir.clone(),
            ..ServerConfig::default()
        };
        config.dialects.fa.root = Some(root.clone());
        config.dialects.fa.jwt_secret = Some(SECRET.into());
        let state = server::prepare(&config).await.expect("prepare");
        let admin = admin_key(&data_dir);
        let (base, server) = serve_on_loopback(state).await;
        Fa {
            base,
            client: Client::builder().no_proxy().build().expect("client"),
            admin,
            root,
            server: Some(server),
            _guard: guard,
        }
    }

    fn home(&self, user: &str) -> PathBuf {
        self.root.join("users").join(user)
    }

    async fn send(
        &self,
        method: reqwest::Method,
        token: Option<&str>,
        path: &str,
        body: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        let status = response.status();
        let text = response.text().await.expect("body");
        let value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{path}: {status} not JSON ({e}): {text}"));
        (status, value)
    }

    async fn post(&self, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(
            reqwest::Method::POST,
            Some(token),
            &format!("{API}{path}"),
            Some(&body.to_string()),
        )
        .await
    }

    async fn get(&self, token: &str, path: &str) -> (StatusCode, Value) {
        self.send(
            reqwest::Method::GET,
            Some(token),
            &format!("{API}{path}"),
            None,
        )
        .await
    }

    /// Posts and expects fa's success envelope.
    async fn ok(&self, token: &str, path: &str, body: Value) {
        let (status, reply) = self.post(token, path, body).await;
        assert_eq!(status, StatusCode::OK, "{path}: {reply}");
        assert_eq!(reply["code"], 2001, "{path}: {reply}");
        assert_eq!(reply["message"], "success");
    }

    /// Polls `what` (`backup` or `restore`) `id` until its status is not running.
    async fn wait(&self, token: &str, what: &str, id: i64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let (status, reply) = self.get(token, &format!("/{what}/{id}")).await;
            assert_eq!(status, StatusCode::OK, "{reply}");
            assert_eq!(reply["code"], 2001, "{reply}");
            let data = reply["data"].clone();
            if !matches!(data["status"].as_str(), Some("running" | "pending")) {
                return data;
            }
            assert!(Instant::now() < deadline, "{what} {id} still running");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The server's job system (`GET /v1/jobs`), newest first.
    async fn core_jobs(&self) -> Vec<Value> {
        let url = format!("{}/v1/jobs", self.base);
        let body = crate::support::get_json(&self.client, &url, &self.admin).await;
        body["jobs"].as_array().expect("jobs").clone()
    }

    /// Backups of `series` in the native API.
    async fn native_backups(&self, series: &str) -> u64 {
        let response = self
            .client
            .get(format!("{}/v1/backups?series={series}", self.base))
            .bearer_auth(&self.admin)
            .send()
            .await
            .expect("list");
        let body: Value = response.json().await.expect("json");
        body["total"].as_u64().expect("total")
    }
}

fn sign(header: &Value, claims: &Value, secret: &[u8]) -> String {
    let head = URL_SAFE_NO_PAD.encode(header.to_string());
    let body = URL_SAFE_NO_PAD.encode(claims.to_string());
    let mut mac = Hmac::<Sha512>::new_from_slice(secret).unwrap();
    mac.update(format!("{head}.{body}").as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{head}.{body}.{signature}")
}

/// A valid token for `user`, as fa's front end issues them.
fn jwt(user: &str) -> String {
    let exp = chrono::Utc::now().timestamp() + 3600;
    sign(
        &json!({"alg": "HS512", "typ": "JWT"}),
        &json!({"username": user, "exp": exp, "userId": 1}),
        SECRET.as_bytes(),
    )
}

/// Writes a tree of `dirs` × `files` small files with varied sizes, modes and mtimes,
/// nested and empty directories and symlinks; returns the bytes of file content.
fn make_tree(root: &Path, dirs: usize, files: usize) -> u64 {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let modes = [0o644, 0o600, 0o755, 0o640, 0o444];
    let mut total = 0;
    for d in 0..dirs {
        let dir = root.join(format!("dir{d:02}")).join("sub");
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..files {
            let path = dir.join(format!("file{f:03}.dat"));
            let mut bytes = vec![0u8; (rng.next_u32() % 3000) as usize];
            rng.fill_bytes(&mut bytes);
            if f % 3 == 0 {
                // Some compressible, repeated content too.
                bytes.iter_mut().for_each(|b| *b %= 4);
            }
            std::fs::write(&path, &bytes).unwrap();
            total += bytes.len() as u64;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(modes[f % 5])).unwrap();
            let mtime = filetime::FileTime::from_unix_time(
                1_500_000_000 + (d * 1000 + f) as i64,
                (f * 1000) as u32,
            );
            filetime::set_file_mtime(&path, mtime).unwrap();
        }
        std::os::unix::fs::symlink("sub/file000.dat", root.join(format!("dir{d:02}/link")))
            .unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o750)).unwrap();
        filetime::set_file_mtime(&dir, filetime::FileTime::from_unix_time(1_400_000_000, 5))
            .unwrap();
    }
    std::fs::create_dir_all(root.join("empty")).unwrap();
    std::fs::set_permissions(root.join("empty"), std::fs::Permissions::from_mode(0o700)).unwrap();
    for d in 0..dirs {
        let dir = root.join(format!("dir{d:02}"));
        filetime::set_file_mtime(
            &dir,
            filetime::FileTime::from_unix_time(1_300_000_000 + d as i64, 0),
        )
        .unwrap();
    }
    filetime::set_file_mtime(
        root.join("empty"),
        filetime::FileTime::from_unix_time(1_234_567_890, 0),
    )
    .unwrap();
    total
}

/// Every entry under `root`: kind, mode, mtime, and content or link target.
fn snapshot(root: &Path) -> BTreeMap<String, (String, u32, i64, i64, Vec<u8>)> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, (String, u32, i64, i64, Vec<u8>)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let relative = path.strip_prefix(root).unwrap().display().to_string();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let (kind, content) = if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).unwrap();
                ("link", target.into_os_string().into_encoded_bytes())
            } else if meta.is_dir() {
                walk(root, &path, out);
                ("dir", Vec::new())
            } else {
                ("file", std::fs::read(&path).unwrap())
            };
            let (mode, mtime, nsec) = if kind == "link" {
                (0, 0, 0)
            } else {
                (meta.mode() & 0o7777, meta.mtime(), meta.mtime_nsec())
            };
            out.insert(relative, (kind.into(), mode, mtime, nsec, content));
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// Writes `size` bytes of incompressible data.
fn make_large_file(path: &Path, size: usize) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut buffer = vec![0u8; 1 << 20];
    for _ in 0..size / buffer.len() {
        rng.fill_bytes(&mut buffer);
        file.write_all(&buffer).unwrap();
    }
    file.flush().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fa_backup_poll_restore_identical_tree() {
    let dir = tempfile::tempdir().unwrap();
    let fa = Fa::start(dir.path()).await;
    let token = jwt("alice");
    let data = fa.home("alice").join("datasets/ansys-out");
    let total = make_tree(&data, 30, 100);

    // The document's path.
    fa.ok(
        &token,
        "/backup",
        json!({"id": 1, "path": "datasets/ansys-out"}),
    )
    .await;
    let backup = fa.wait(&token, "backup", 1).await;
    assert_eq!(backup["status"], "success", "{backup}");
    assert_eq!(backup["id"], 1);
    assert_eq!(backup["extra"], "");
    assert_eq!(backup["stat"]["total_size"], total);
    assert!(
        backup["stat"]["pack_size"].as_u64().unwrap() > 0,
        "{backup}"
    );
    let path = backup["path"].as_str().unwrap();
    assert!(
        Path::new(path).is_absolute() && path.ends_with("users/alice/datasets/ansys-out"),
        "{path}"
    );
    assert_eq!(fa.native_backups("fa-alice").await, 1);

    // The real server's path; the destination (and its parents) are created.
    fa.ok(
        &token,
        "/restore/new",
        json!({"restore_id": 1, "backup_id": 1, "dst_path": "restored/out"}),
    )
    .await;
    let restore = fa.wait(&token, "restore", 1).await;
    assert_eq!(restore["status"], "success", "{restore}");
    assert_eq!(restore["backup_id"], 1);
    assert_eq!(restore["stat"]["total_size"], total);
    assert_eq!(restore["extra"], "");
    let target = fa.home("alice").join("restored/out");
    assert_eq!(
        restore["dst_path"],
        json!(std::fs::canonicalize(&target).unwrap())
    );
    let (before, after) = (snapshot(&data), snapshot(&target));
    assert!(before.len() > 3000, "{} entries", before.len());
    assert_eq!(before.len(), after.len());
    for (name, entry) in &before {
        assert_eq!(Some(entry), after.get(name), "{name} differs");
    }
    // Both runs are jobs of the server's one job system, with their files counted.
    let jobs = fa.core_jobs().await;
    let (restored, backed_up) = (&jobs[0], &jobs[1]);
    assert_eq!(backed_up["kind"], "fa_backup", "{backed_up}");
    assert_eq!(backed_up["status"], "succeeded");
    assert!(
        backed_up["subject"]
            .as_str()
            .unwrap()
            .starts_with("fa backup 1 of alice: "),
        "{backed_up}"
    );
    // The bytes read (and then the catalog's).
    assert!(backed_up["progress"]["bytes_done"].as_u64().unwrap() >= total);
    assert_eq!(backed_up["result"]["size"], total);
    assert!(
        backed_up["progress"]["files_done"].as_u64().unwrap() >= before.len() as u64,
        "{backed_up}"
    );
    assert!(backed_up["result"]["backup"].is_string(), "{backed_up}");
    assert_eq!(restored["kind"], "fa_restore", "{restored}");
    assert_eq!(restored["status"], "succeeded");
    assert_eq!(restored["result"]["bytes"], total);
    assert_eq!(
        restored["progress"]["files_done"],
        restored["progress"]["files_total"]
    );
    assert!(restored["progress"]["files_total"].as_u64().unwrap() >= before.len() as u64);
    // Nothing but the restored tree next to it: the temporary directory is gone.
    let siblings: Vec<_> = std::fs::read_dir(fa.home("alice").join("restored"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(siblings, vec![std::ffi::OsString::from("out")]);

    // The documented path, onto an existing empty directory.
    std::fs::create_dir_all(fa.home("alice").join("again")).unwrap();
    fa.ok(
        &token,
        "/restore",
        json!({"restore_id": 2, "backup_id": 1, "dst_path": "again"}),
    )
    .await;
    assert_eq!(fa.wait(&token, "restore", 2).await["status"], "success");
    assert_eq!(
        snapshot(&fa.home("alice").join("again")).len(),
        before.len()
    );
    // A non-empty destination is refused before anything is written.
    let (status, reply) = fa
        .post(
            &token,
            "/restore",
            json!({"restore_id": 3, "backup_id": 1, "dst_path": "again"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    assert!(
        reply["message"].as_str().unwrap().contains("not empty"),
        "{reply}"
    );

    // Posting an existing finished id runs it again; its previous backup is replaced.
    std::fs::write(data.join("new-file"), b"added later").unwrap();
    fa.ok(
        &token,
        "/backup/new",
        json!({"id": 1, "path": "datasets/ansys-out"}),
    )
    .await;
    let again = fa.wait(&token, "backup", 1).await;
    assert_eq!(again["status"], "success", "{again}");
    assert_eq!(again["stat"]["total_size"], total + 11);
    assert_eq!(fa.native_backups("fa-alice").await, 1);

    // A restore of a missing backup is recorded as failed.
    fa.ok(
        &token,
        "/restore/new",
        json!({"restore_id": 9, "backup_id": 404, "dst_path": "nowhere"}),
    )
    .await;
    let failed = fa.wait(&token, "restore", 9).await;
    assert_eq!(failed["status"], "failed");
    assert_eq!(
        failed["extra"],
        "err load backup when try create a new restore: no such record"
    );
    assert!(!fa.home("alice").join("nowhere").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fa_cancel_in_the_middle_of_a_large_backup() {
    let dir = tempfile::tempdir().unwrap();
    let fa = Fa::start(dir.path()).await;
    let token = jwt("bob");
    let big = fa.home("bob").join("big");
    std::fs::create_dir_all(&big).unwrap();
    make_large_file(&big.join("blob.bin"), 1 << 30);
    std::fs::create_dir_all(fa.home("bob").join("other")).unwrap();

    fa.ok(&token, "/backup/new", json!({"id": 7, "path": "big"}))
        .await;
    // Wait until it has read something, so the cancel lands in the middle.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, reply) = fa.get(&token, "/backup/7").await;
        let data = &reply["data"];
        assert_eq!(
            data["status"], "running",
            "finished before the cancel: {data}"
        );
        if data["stat"]["total_size"].as_u64().unwrap() > 0 {
            break;
        }
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Posting an id whose job is running is ignored.
    fa.ok(&token, "/backup/new", json!({"id": 7, "path": "other"}))
        .await;
    let (_, reply) = fa.get(&token, "/backup/7").await;
    assert!(
        reply["data"]["path"].as_str().unwrap().ends_with("/big"),
        "{reply}"
    );

    // While it runs, an upgrade is not safe (fa's public check).
    let (_, safe) = fa
        .send(reqwest::Method::GET, None, "/fa/public/safe-upgrade", None)
        .await;
    assert_eq!(safe, json!({"safe_upgrade": false}));

    fa.ok(&token, "/backup/cancel", json!({"id": 7})).await;
    let cancelled = fa.wait(&token, "backup", 7).await;
    assert_eq!(cancelled["status"], "cancel", "{cancelled}");
    assert!(cancelled["stat"]["total_size"].as_u64().unwrap() < 1 << 30);
    assert_eq!(
        fa.native_backups("fa-bob").await,
        0,
        "a cancelled backup left a backup"
    );

    // cancel-all stops every running backup (its body is ignored).
    fa.ok(&token, "/backup/new", json!({"id": 8, "path": "big"}))
        .await;
    fa.ok(&token, "/backup/cancel-all", json!({"id": 1})).await;
    assert_eq!(fa.wait(&token, "backup", 8).await["status"], "cancel");
    let jobs = fa.core_jobs().await;
    assert_eq!(
        (&jobs[0]["kind"], &jobs[0]["status"]),
        (&json!("fa_backup"), &json!("cancelled")),
        "{jobs:?}"
    );

    // Cancelling the run's job in the server's job system cancels the fa job.
    fa.ok(&token, "/backup/new", json!({"id": 9, "path": "big"}))
        .await;
    let job = fa.core_jobs().await[0]["id"].as_str().unwrap().to_string();
    let cancelled = fa
        .client
        .post(format!("{}/v1/jobs/{job}/cancel", fa.base))
        .bearer_auth(&fa.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(cancelled.status(), StatusCode::ACCEPTED);
    assert_eq!(fa.wait(&token, "backup", 9).await["status"], "cancel");
    assert_eq!(fa.native_backups("fa-bob").await, 0);

    // A cancelled restore leaves nothing at its destination.
    std::fs::remove_file(big.join("blob.bin")).unwrap();
    make_large_file(&big.join("blob.bin"), 256 << 20);
    fa.ok(&token, "/backup/new", json!({"id": 9, "path": "big"}))
        .await;
    assert_eq!(fa.wait(&token, "backup", 9).await["status"], "success");
    fa.ok(
        &token,
        "/restore/new",
        json!({"restore_id": 1, "backup_id": 9, "dst_path": "back"}),
    )
    .await;
    fa.ok(&token, "/restore/cancel", json!({"id": 1})).await;
    let restore = fa.wait(&token, "restore", 1).await;
    // The server's job system had the end before fa's record showed it.
    let jobs = fa.core_jobs().await;
    assert_eq!(jobs[0]["kind"], "fa_restore", "{jobs:?}");
    assert_ne!(jobs[0]["status"], "running", "{jobs:?}");
    if restore["status"] == "cancel" {
        assert!(!fa.home("bob").join("back").exists());
    } else {
        assert_eq!(restore["status"], "success", "{restore}");
    }
    let leftovers: Vec<_> = std::fs::read_dir(fa.home("bob"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("stowage-restore"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test]
async fn fa_refuses_paths_outside_the_home() {
    let dir = tempfile::tempdir().unwrap();
    let fa = Fa::start(dir.path()).await;
    let token = jwt("carol");
    let home = fa.home("carol");
    std::fs::create_dir_all(home.join("data")).unwrap();
    std::fs::write(home.join("data/file"), b"x").unwrap();
    std::fs::create_dir_all(fa.home("dave").join("secret")).unwrap();
    std::os::unix::fs::symlink("/etc", home.join("etc-link")).unwrap();
    std::os::unix::fs::symlink("../dave", home.join("dave-link")).unwrap();
    std::os::unix::fs::symlink("/nonexistent-target", home.join("dangling")).unwrap();

    for path in [
        "../x",
        "../dave/secret",
        "data/../../dave",
        "/etc",
        "/",
        "etc-link",
        "etc-link/ssl",
        "dave-link/secret",
    ] {
        let (status, reply) = fa
            .post(&token, "/backup/new", json!({"id": 1, "path": path}))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {reply}");
        assert_eq!(reply["code"], 400, "{path}: {reply}");
        assert!(reply.get("data").is_none(), "{reply}");
        let message = reply["message"].as_str().unwrap();
        assert!(message.starts_with("invalid path"), "{path}: {message}");
    }
    for dst in [
        "../dave/x",
        "/tmp/x",
        "etc-link/x",
        "dave-link/new",
        "dangling",
        "dangling/x",
    ] {
        let (status, reply) = fa
            .post(
                &token,
                "/restore/new",
                json!({"restore_id": 1, "backup_id": 1, "dst_path": dst}),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{dst}: {reply}");
        assert!(
            reply["message"]
                .as_str()
                .unwrap()
                .starts_with("invalid path"),
            "{dst}: {reply}"
        );
    }
    let (_, reply) = fa.get(&token, "/backup/1").await;
    assert_eq!(
        reply["code"], 4001,
        "a refused backup left a record: {reply}"
    );

    // An absolute path inside the home is fine, as fa's own responses spell them.
    let absolute = home.join("data").display().to_string();
    fa.ok(&token, "/backup/new", json!({"id": 2, "path": absolute}))
        .await;
    assert_eq!(fa.wait(&token, "backup", 2).await["status"], "success");
    // A file is not a directory.
    let (status, reply) = fa
        .post(&token, "/backup/new", json!({"id": 3, "path": "data/file"}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    assert!(
        reply["message"]
            .as_str()
            .unwrap()
            .contains("not a directory"),
        "{reply}"
    );
}

#[tokio::test]
async fn fa_unknown_ids_malformed_json_and_auth() {
    let dir = tempfile::tempdir().unwrap();
    let fa = Fa::start(dir.path()).await;
    let token = jwt("erin");

    let (status, reply) = fa.get(&token, "/backup/33").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        reply,
        json!({"code": 4001, "message": "err when load backup [ 33 ]: no such record", "data": null})
    );
    let (status, reply) = fa.get(&token, "/restore/11").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        reply,
        json!({"code": 4001, "message": "err when load restore [ 11 ]: no such record", "data": null})
    );
    let (status, reply) = fa.get(&token, "/backup/abc").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    assert_eq!(reply["code"], 400);

    for body in [
        "{not json",
        "{\"id\": \"one\", \"path\": \"x\"}",
        "{\"path\": \"x\"}",
        "",
    ] {
        let (status, reply) = fa
            .send(
                reqwest::Method::POST,
                Some(&token),
                &format!("{API}/backup/new"),
                Some(body),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {reply}");
        assert_eq!(reply["code"], 400, "{reply}");
        assert!(
            reply["message"].as_str().unwrap().contains("JSON"),
            "{reply}"
        );
        assert!(reply.get("data").is_none());
    }
    let (status, reply) = fa.post(&token, "/backup/cancel", json!({"id": 1})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        reply,
        json!({"code": 400, "message": "err cancel backup [ ID=1 ]: no such record"})
    );
    let (status, reply) = fa
        .send(
            reqwest::Method::DELETE,
            Some(&token),
            &format!("{API}/backup/1"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(reply["code"], 400);
    let (status, _) = fa.post(&token, "/restore/cancel", json!({"id": 5})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Authentication.
    let (status, reply) = fa
        .send(reqwest::Method::GET, None, &format!("{API}/backup/1"), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        reply,
        json!({"code": 401, "message": "auth header is empty"})
    );
    let now = chrono::Utc::now().timestamp();
    let header = json!({"alg": "HS512", "typ": "JWT"});
    let cases = [
        (
            sign(
                &header,
                &json!({"username": "erin", "exp": now - 10}),
                SECRET.as_bytes(),
            ),
            "token is expired",
        ),
        (
            sign(
                &header,
                &json!({"username": "erin", "exp": now + 600}),
                b"wrong secret",
            ),
            "signature is invalid",
        ),
        (
            sign(
                &json!({"alg": "HS256"}),
                &json!({"username": "erin", "exp": now + 600}),
                SECRET.as_bytes(),
            ),
            "invalid signing algorithm",
        ),
        (
            sign(&header, &json!({"username": "erin"}), SECRET.as_bytes()),
            "missing exp field",
        ),
        (
            sign(
                &header,
                &json!({"username": "../root", "exp": now + 600}),
                SECRET.as_bytes(),
            ),
            "invalid username",
        ),
        ("not-a-key".to_string(), ""),
    ];
    for (bad, message) in cases {
        let (status, reply) = fa.get(&bad, "/backup/1").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{message}: {reply}");
        assert_eq!(reply["code"], 401);
        assert!(
            reply["message"].as_str().unwrap().contains(message),
            "{reply}"
        );
    }

    // A stowage API key works too; its name is the username, its role applies.
    let keys = fa.keys();
    let (_, writer) = keys.create("frank", Role::Writer).unwrap();
    let (_, reader) = keys.create("frank", Role::Reader).unwrap();
    std::fs::create_dir_all(fa.home("frank").join("docs")).unwrap();
    std::fs::write(fa.home("frank").join("docs/a"), b"hello").unwrap();
    fa.ok(&writer, "/backup", json!({"id": 1, "path": "docs"}))
        .await;
    let done = fa.wait(&reader, "backup", 1).await;
    assert_eq!(done["status"], "success");
    assert_eq!(done["stat"]["total_size"], 5);
    let (status, reply) = fa
        .post(&reader, "/backup", json!({"id": 2, "path": "docs"}))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{reply}");
    // Users do not see each other's jobs.
    let (_, reply) = fa.get(&token, "/backup/1").await;
    assert_eq!(reply["code"], 4001);
}

#[tokio::test]
async fn fa_delete_and_destroy_repo() {
    let dir = tempfile::tempdir().unwrap();
    let fa = Fa::start(dir.path()).await;
    let token = jwt("gina");
    std::fs::create_dir_all(fa.home("gina").join("work")).unwrap();
    std::fs::write(fa.home("gina").join("work/a"), b"some bytes").unwrap();

    let (_, reply) = fa.get(&token, "/backup/repo-destroyed").await;
    assert_eq!(reply["data"], json!({"destroyed": false}));
    for id in [1, 2, 3] {
        fa.ok(&token, "/backup/new", json!({"id": id, "path": "work"}))
            .await;
        assert_eq!(fa.wait(&token, "backup", id).await["status"], "success");
    }
    assert_eq!(fa.native_backups("fa-gina").await, 3);

    let (status, reply) = fa
        .send(
            reqwest::Method::DELETE,
            Some(&token),
            &format!("{API}/backup/3"),
            None,
        )
        .await;
    assert_eq!(
        (status, reply["code"].clone()),
        (StatusCode::OK, json!(2001))
    );
    assert_eq!(fa.get(&token, "/backup/3").await.1["code"], 4001);
    assert_eq!(fa.native_backups("fa-gina").await, 2);

    fa.ok(&token, "/backup/destroy-repo", json!({})).await;
    let (_, reply) = fa.get(&token, "/backup/repo-destroyed").await;
    assert_eq!(reply["data"], json!({"destroyed": true}));
    assert_eq!(fa.get(&token, "/backup/1").await.1["code"], 4001);
    assert_eq!(fa.native_backups("fa-gina").await, 0);

    // The next backup starts a fresh repository.
    fa.ok(&token, "/backup/new", json!({"id": 1, "path": "work"}))
        .await;
    assert_eq!(fa.wait(&token, "backup", 1).await["status"], "success");
    let (_, reply) = fa.get(&token, "/backup/repo-destroyed").await;
    assert_eq!(reply["data"], json!({"destroyed": false}));
    assert_eq!(fa.native_backups("fa-gina").await, 1);
}

#[tokio::test]
async fn fa_job_status_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let token = jwt("hank");
    let stat = {
        let fa = Fa::start(dir.path()).await;
        std::fs::create_dir_all(fa.home("hank").join("src")).unwrap();
        std::fs::write(fa.home("hank").join("src/a"), vec![7u8; 100_000]).unwrap();
        fa.ok(&token, "/backup/new", json!({"id": 5, "path": "src"}))
            .await;
        let done = fa.wait(&token, "backup", 5).await;
        assert_eq!(done["status"], "success");
        fa.ok(
            &token,
            "/restore/new",
            json!({"restore_id": 6, "backup_id": 5, "dst_path": "copy"}),
        )
        .await;
        assert_eq!(fa.wait(&token, "restore", 6).await["status"], "success");
        fa.stop().await;
        done["stat"].clone()
    };
    // A job that was running when the server stopped.
    {
        let store = stowage::state::StateStore::open(&dir.path().join("data/state.redb")).unwrap();
        let mut records: Value =
            serde_json::from_slice(&store.document("fa").unwrap().unwrap()).unwrap();
        let mut running = records["users"]["hank"]["backups"]["5"].clone();
        running["status"] = json!("running");
        running.as_object_mut().unwrap().remove("backup");
        records["users"]["hank"]["backups"]["6"] = running;
        store
            .put_document("fa", &serde_json::to_vec(&records).unwrap())
            .unwrap();
    }

    let fa = Fa::start(dir.path()).await;
    let after = fa.wait(&token, "backup", 5).await;
    assert_eq!(after["status"], "success");
    assert_eq!(after["stat"], stat);
    assert_eq!(fa.wait(&token, "restore", 6).await["status"], "success");
    let interrupted = fa.wait(&token, "backup", 6).await;
    assert_eq!(interrupted["status"], "failed");
    assert!(
        interrupted["extra"].as_str().unwrap().contains("restarted"),
        "{interrupted}"
    );
    // The surviving backup still restores.
    fa.ok(
        &token,
        "/restore/new",
        json!({"restore_id": 7, "backup_id": 5, "dst_path": "copy2"}),
    )
    .await;
    assert_eq!(fa.wait(&token, "restore", 7).await["status"], "success");
    assert_eq!(
        std::fs::read(fa.home("hank").join("copy2/a")).unwrap(),
        vec![7u8; 100_000]
    );
}

#[tokio::test]
async fn fa_a_backup_key_backs_up_but_never_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let fa = Fa::start(dir.path()).await;
    let keys = fa.keys();
    let (_, agent) = keys.create("ivan", Role::Backup).unwrap();
    std::fs::create_dir_all(fa.home("ivan").join("work")).unwrap();
    std::fs::write(fa.home("ivan").join("work/a"), b"agent bytes").unwrap();
    fa.ok(&agent, "/backup/new", json!({"id": 1, "path": "work"}))
        .await;
    assert_eq!(fa.wait(&agent, "backup", 1).await["status"], "success");

    let (status, reply) = fa
        .send(
            reqwest::Method::DELETE,
            Some(&agent),
            &format!("{API}/backup/1"),
            None,
        )
        .await;
    // fa answers a refused role as it answers any refused credential.
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{reply}");
    let (status, reply) = fa.post(&agent, "/backup/destroy-repo", json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{reply}");
    assert_eq!(fa.native_backups("fa-ivan").await, 1);
    assert_eq!(fa.wait(&agent, "backup", 1).await["status"], "success");
}

/// A wrong method on an fa route and any unknown path under `/fa/` answer in fa's
/// envelope `{"code","message"}` with the status as the code, never the native one.
#[tokio::test]
async fn fa_wrong_methods_and_unknown_paths_answer_in_fas_envelope() {
    let dir = tempfile::tempdir().unwrap();
    let fa = Fa::start(dir.path()).await;
    let token = jwt("alice");
    let (status, reply) = fa
        .send(
            reqwest::Method::PATCH,
            Some(&token),
            &format!("{API}/backup/new"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{reply}");
    assert_eq!(reply["code"], 405, "{reply}");
    assert!(
        reply["message"].is_string() && reply.get("error").is_none(),
        "{reply}"
    );
    for path in [
        "/fa/nothing",
        "/fa/api/v0/nothing/here",
        "/fa/api/v1/backup/1",
    ] {
        let (status, reply) = fa
            .send(reqwest::Method::GET, Some(&token), path, None)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {reply}");
        assert_eq!(reply["code"], 404, "{path}: {reply}");
        assert_eq!(reply["message"], "404 page not found", "{path}: {reply}");
    }
    let long = format!("{API}/backup/1?x={}", "a".repeat(10_000));
    let (status, reply) = fa
        .send(reqwest::Method::GET, Some(&token), &long, None)
        .await;
    assert_eq!(status, StatusCode::URI_TOO_LONG, "{reply}");
    assert_eq!(reply["code"], 414, "{reply}");
}

/// The token is also taken from `?token=` and from the `Authorization` cookie, as fa's
/// middleware takes it (`TokenLookup: header, query, cookie`).
#[tokio::test]
async fn fa_tokens_are_also_read_from_the_query_and_the_cookie() {
    let dir = tempfile::tempdir().unwrap();
    let fa = Fa::start(dir.path()).await;
    let token = jwt("alice");
    let (status, reply) = fa
        .send(
            reqwest::Method::GET,
            None,
            &format!("{API}/backup/1?token={token}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(
        reply["code"], 4001,
        "authenticated, and no such record: {reply}"
    );
    let response = fa
        .client
        .get(format!("{}{API}/backup/1", fa.base))
        .header("cookie", format!("theme=dark; Authorization={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let reply: Value = response.json().await.unwrap();
    assert_eq!(reply["code"], 4001, "{reply}");
    // A bad token in the query is refused like a bad header.
    let (status, reply) = fa
        .send(
            reqwest::Method::GET,
            None,
            &format!("{API}/backup/1?token=a.b.c"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{reply}");
    let (status, reply) = fa
        .send(reqwest::Method::GET, None, &format!("{API}/backup/1"), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{reply}");
    assert_eq!(reply["message"], "auth header is empty", "{reply}");
}

/// The real server's public routes: `/health` says `UP`; `safe-upgrade` says whether a
/// job is in flight; the "full mode" routes answer as fa does with that mode off. None
/// needs a token.
#[tokio::test]
async fn fa_public_routes_and_health_answer_as_fa_does() {
    let dir = tempfile::tempdir().unwrap();
    let fa = Fa::start(dir.path()).await;
    let response = fa
        .client
        .get(format!("{}/health", fa.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), "UP");
    let (status, reply) = fa
        .send(reqwest::Method::GET, None, "/fa/public/safe-upgrade", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply, json!({"safe_upgrade": true}));
    for (method, path) in [
        (
            reqwest::Method::GET,
            "/fa/public/full-restore?dst=/mnt/restore",
        ),
        (reqwest::Method::GET, "/fa/public/full-query?start=0"),
        (reqwest::Method::PUT, "/fa/public/full-ack/3"),
    ] {
        let (status, reply) = fa.send(method, None, path, None).await;
        assert_eq!(status, StatusCode::OK, "{path}: {reply}");
        assert_eq!(reply["code"], 4001, "{path}: {reply}");
        assert_eq!(
            reply["message"], "only support when FULLMODE activated",
            "{path}: {reply}"
        );
    }
}
