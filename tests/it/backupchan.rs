//! The Backup-chan dialect over real HTTP (`/api`), in-process like `server.rs`. First
//! with reqwest: the 401/403 bodies, missing parameters, validation messages, 404s,
//! pagination, aliases, uploads refused for bad forms, sequential-upload conflicts, state
//! surviving a restart, the bytes living in the target's series (recycled, restored, kept
//! or purged with the backup), and the integrity job flagging a damaged backup. Then with Backup-chan's own clients from PyPI
//! (`backupchan-client-lib` and `backupchan-cli`, pinned, in a virtual environment under
//! `target/`), driven by `backupchan_clients.py`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};

use stowage::server::{self, ServerConfig};
use stowage::service::keys::{KeyStore, Role, BACKUPCHAN};

use crate::support::{plain_tar, serve_on_loopback};

/// The client versions the tests install.
const CLIENT_PACKAGES: [&str; 3] = [
    "backupchan-client-lib==1.5.1",
    "backupchan-cli==0.14.2",
    "keyrings.alt",
];

struct Bc {
    base: String,
    port: u16,
    client: Client,
    key: String,
    data_dir: PathBuf,
    server: Option<stowage::server::RunningServer>,
    _guard: tokio::sync::RwLockReadGuard<'static, ()>,
}

impl Drop for Bc {
    fn drop(&mut self) {
        // Stops in the background; `stop` waits for it.
        if let Some(server) = &self.server {
            server.state().begin_shutdown();
        }
    }
}

impl Bc {
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

    async fn start(dir: &Path) -> Bc {
        Bc::start_with(dir, |_| {}).await
    }

    async fn start_with(dir: &Path, adjust: impl FnOnce(&mut ServerConfig)) -> Bc {
        assert!(std::env::var_os("STOWAGE_ADMIN_KEY").is_none());
        assert!(std::env::var_os("STOWAGE_PASSWORD").is_none());
        let guard = super::server::MEMORY.read().await;
        let data_dir = dir.join("data");
        let mut config = ServerConfig {
            data_dir: data_dir.clone(),
            ..ServerConfig::default()
        };
        adjust(&mut config);
        let state = server::prepare(&config).await.expect("prepare");
        let keys = state.keys.clone();
        let key = match std::fs::read_to_string(dir.join("bc.key")) {
            Ok(key) => key,
            Err(_) => {
                let (_, key) = keys
                    .create_for_dialect("bc", Role::Writer, BACKUPCHAN)
                    .expect("key");
                std::fs::write(dir.join("bc.key"), &key).expect("save key");
                key
            }
        };
        let (base, server) = serve_on_loopback(state).await;
        let port = base.rsplit(':').next().unwrap().parse().unwrap();
        Bc {
            base,
            port,
            client: Client::builder().no_proxy().build().expect("client"),
            key,
            data_dir,
            server: Some(server),
            _guard: guard,
        }
    }

    async fn call(
        &self,
        method: Method,
        auth: Option<&str>,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        let status = response.status();
        let text = response.text().await.expect("body");
        let value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{path}: {status} is not JSON ({e}): {text}"));
        (status, value)
    }

    /// The server's job system (`GET /v1/jobs`), newest first.
    async fn core_jobs(&self) -> Vec<Value> {
        let admin = crate::support::admin_key(&self.data_dir);
        let url = format!("{}/v1/jobs", self.base);
        let body = crate::support::get_json(&self.client, &url, &admin).await;
        body["jobs"].as_array().expect("jobs").clone()
    }

    async fn send(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let auth = format!("Bearer {}", self.key);
        self.call(method, Some(&auth), path, body).await
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(Method::GET, path, None).await
    }

    async fn form(&self, path: &str, form: Form) -> (StatusCode, Value) {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .header(
                "content-type",
                format!("multipart/form-data; boundary={BOUNDARY}"),
            )
            .body(form.finish())
            .send()
            .await
            .expect("upload");
        let status = response.status();
        let text = response.text().await.expect("body");
        let value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{path}: {status} is not JSON ({e}): {text}"));
        (status, value)
    }

    /// Creates a target; returns its id.
    async fn target(&self, name: &str, kind: &str, template: &str, alias: Option<&str>) -> String {
        let (status, reply) = self
            .send(
                Method::POST,
                "/api/target",
                Some(target_body(name, kind, template, alias)),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{reply}");
        reply["id"].as_str().expect("id").to_string()
    }

    /// A backup's download: its Content-Disposition and its bytes, whose count is the
    /// Content-Length declared before the first byte.
    async fn download(&self, backup: &str) -> (String, Vec<u8>) {
        let response = self
            .client
            .get(format!("{}/api/backup/{backup}/download", self.base))
            .bearer_auth(&self.key)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let header = |name: &str| response.headers()[name].to_str().unwrap().to_string();
        let (disposition, declared) = (header("content-disposition"), header("content-length"));
        let bytes = response.bytes().await.unwrap().to_vec();
        assert_eq!(
            bytes.len().to_string(),
            declared,
            "the declared length is exact"
        );
        (disposition, bytes)
    }

    /// Polls the delayed job until it ends; returns its status.
    async fn wait_job(&self, id: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (_, reply) = self.get("/api/jobs").await;
            let job = reply["delayed"]
                .as_array()
                .and_then(|jobs| jobs.iter().find(|j| j["id"] == id))
                .cloned()
                .unwrap_or_else(|| panic!("job {id} missing: {reply}"));
            let status = job["status"].as_str().unwrap_or_default().to_string();
            if status == "FINISHED" || status == "ERROR" {
                return status;
            }
            assert!(Instant::now() < deadline, "job {id} still {status}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn target_body(name: &str, kind: &str, template: &str, alias: Option<&str>) -> Value {
    json!({
        "name": name,
        "backup_type": kind,
        "recycle_criteria": "none",
        "recycle_value": null,
        "recycle_action": "recycle",
        "location": format!("/var/backups/{name}"),
        "name_template": template,
        "deduplicate": false,
        "alias": alias,
        "min_backups": 0,
        "tags": ["cool", "beans"],
    })
}

/// A multipart form, written out by hand (text fields and files, in order).
#[derive(Default)]
struct Form {
    body: Vec<u8>,
}

const BOUNDARY: &str = "backupchan-test-boundary-51c0";

struct FilePart {
    name: String,
    data: Vec<u8>,
}

fn file_part(name: &str, data: &[u8]) -> FilePart {
    FilePart {
        name: name.to_string(),
        data: data.to_vec(),
    }
}

impl Form {
    fn new() -> Form {
        Form::default()
    }

    fn text(mut self, field: &str, value: impl Into<String>) -> Form {
        let value = value.into();
        self.body.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{field}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
        self
    }

    fn part(mut self, field: &str, file: FilePart) -> Form {
        self.body.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{}\"\r\n\
                 Content-Type: application/octet-stream\r\n\r\n",
                file.name
            )
            .as_bytes(),
        );
        self.body.extend_from_slice(&file.data);
        self.body.extend_from_slice(b"\r\n");
        self
    }

    fn finish(mut self) -> Vec<u8> {
        self.body
            .extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
        self.body
    }
}

fn failure(reply: &Value) -> &str {
    assert_eq!(reply["success"], false, "{reply}");
    reply["message"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_answers_401_and_403_in_json() {
    let dir = tempfile::tempdir().unwrap();
    let bc = Bc::start(dir.path()).await;
    let unauthorized = json!({"success": false, "message": "Unauthorized"});
    let invalid = json!({"success": false, "message": "Invalid API key"});
    for auth in [None, Some("Basic abc"), Some("Bearer")] {
        let (status, reply) = bc.call(Method::GET, auth, "/api/target", None).await;
        assert_eq!(
            (status, &reply),
            (StatusCode::UNAUTHORIZED, &unauthorized),
            "{auth:?}"
        );
    }
    let admin = crate::support::admin_key(&bc.data_dir);
    let wrong = format!("Bearer bakch-{}", "0".repeat(64));
    let upper = format!("Bearer {}", bc.key.to_uppercase());
    let native = format!("Bearer {admin}");
    for auth in [
        wrong.as_str(),
        upper.as_str(),
        native.as_str(),
        "Bearer bakch-xyz",
    ] {
        let (status, reply) = bc.call(Method::GET, Some(auth), "/api/stats", None).await;
        assert_eq!(
            (status, &reply),
            (StatusCode::FORBIDDEN, &invalid),
            "{auth}"
        );
    }
    // Uploads are refused before their body is looked at.
    let (status, _) = bc
        .call(Method::POST, Some(&wrong), "/api/target/x/upload", None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // A reader key reads but does not write.
    let keys = bc.keys();
    let (_, reader) = keys
        .create_for_dialect("r", Role::Reader, BACKUPCHAN)
        .unwrap();
    let reader = format!("Bearer {reader}");
    let (status, _) = bc
        .call(Method::GET, Some(&reader), "/api/target", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let body = target_body("t", "single", "$I", None);
    let (status, reply) = bc
        .call(Method::POST, Some(&reader), "/api/target", Some(body))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(failure(&reply).contains("writer"), "{reply}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_missing_parameters_validation_pages_and_404s() {
    let dir = tempfile::tempdir().unwrap();
    let bc = Bc::start(dir.path()).await;
    let (status, reply) = bc.send(Method::POST, "/api/target", Some(json!({}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(failure(&reply), "Parameter 'name' required");
    let (status, reply) = bc
        .send(Method::POST, "/api/target", Some(json!({"name": "x"})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(failure(&reply), "Parameter 'backup_type' required");
    let (status, reply) = bc
        .client
        .post(format!("{}/api/target", bc.base))
        .bearer_auth(&bc.key)
        .body("{not json")
        .send()
        .await
        .map(|r| (r.status(), r))
        .unwrap();
    let reply: Value = reply.json().await.unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(failure(&reply).starts_with("Invalid JSON body"), "{reply}");

    let web = bc.target("web", "single", "web-$I", Some("web")).await;
    let cases = [
        (json!({"name": "  "}), "Target name must not be empty"),
        (
            json!({"name_template": "plain"}),
            "Filename template must contain either creation date or ID of backup",
        ),
        (
            json!({"name_template": "web-$I"}),
            "Name template is not unique to this target",
        ),
        (
            json!({"alias": "web"}),
            "Alias is not unique to this target",
        ),
        (
            json!({"alias": "00000000-0000-0000-0000-000000000000"}),
            "Alias must not look like a target ID",
        ),
        (
            json!({"tags": ["has space"]}),
            "Invalid tag 'has space': tags are 1 to 50 characters without spaces or commas",
        ),
        (
            json!({"backup_type": "both"}),
            "Invalid backup type 'both' (single or multi)",
        ),
        (
            json!({"recycle_criteria": "count", "recycle_value": null}),
            "Recycle value must be a non-negative integer for criteria count and age",
        ),
    ];
    for (change, message) in cases {
        let mut body = target_body("other", "multi", "other-$D", None);
        for (key, value) in change.as_object().unwrap() {
            body[key] = value.clone();
        }
        let (status, reply) = bc.send(Method::POST, "/api/target", Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{change}");
        assert_eq!(failure(&reply), message, "{change}");
    }

    // Eleven more targets: pages of ten ordered by name, from page 1.
    for i in 0..11 {
        bc.target(&format!("t{i:02}"), "multi", &format!("t{i}-$D"), None)
            .await;
    }
    let (_, page1) = bc.get("/api/target").await;
    let names: Vec<&str> = page1["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 10);
    assert_eq!(names[0], "t00");
    let (_, page2) = bc.get("/api/target?page=2").await;
    let names: Vec<&str> = page2["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["t10", "web"]);
    let (_, page3) = bc.get("/api/target?page=3").await;
    assert_eq!(page3["targets"], json!([]));
    let (status, reply) = bc.get("/api/target?page=zero").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        failure(&reply),
        "Parameter 'page' must be a positive integer"
    );

    // The alias works wherever an id does; the view has the target's fields.
    let (status, view) = bc.get("/api/target/web").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(view["target"]["id"], web.as_str());
    assert_eq!(view["target"]["target_type"], "single");
    assert_eq!(view["target"]["tags"], json!(["cool", "beans"]));
    assert_eq!(view["backups"], json!([]));
    // PATCH is a full replace without the type; num_backups is min_backups.
    let mut edit = target_body("web2", "single", "web-$D", Some("web"));
    edit.as_object_mut().unwrap().remove("min_backups");
    edit["num_backups"] = json!(4);
    let (status, _) = bc
        .send(Method::PATCH, "/api/target/web", Some(edit.clone()))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, view) = bc.get(&format!("/api/target/{web}")).await;
    assert_eq!(view["target"]["name"], "web2");
    assert_eq!(view["target"]["min_backups"], 4);
    assert_eq!(view["target"]["name_template"], "web-$D");
    let mut partial = edit.clone();
    partial.as_object_mut().unwrap().remove("location");
    let (status, reply) = bc
        .send(Method::PATCH, "/api/target/web", Some(partial))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(failure(&reply), "Parameter 'location' required");

    // Unknown ids: 404 in the envelope.
    for (method, path, body) in [
        (Method::GET, "/api/target/nope", None),
        (Method::PATCH, "/api/target/nope", Some(edit.clone())),
        (
            Method::DELETE,
            "/api/target/nope/all",
            Some(json!({"delete_files": true})),
        ),
        (
            Method::DELETE,
            "/api/backup/nope",
            Some(json!({"delete_files": true})),
        ),
        (
            Method::PATCH,
            "/api/backup/nope",
            Some(json!({"is_recycled": true})),
        ),
        (Method::GET, "/api/backup/nope/download", None),
        (Method::GET, "/api/seq/nope", None),
    ] {
        let (status, reply) = bc.send(method, path, body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {reply}");
        assert_eq!(reply["success"], false);
    }
    let (status, reply) = bc
        .send(Method::DELETE, "/api/target/web", Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(failure(&reply), "Parameter 'delete_files' required");

    // Search: no parameters is 400; empty ones count as absent.
    let (status, _) = bc.get("/api/target/search").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (_, found) = bc.get("/api/target/search?name=WEB&tags=").await;
    assert_eq!(found["targets"].as_array().unwrap().len(), 1);
    let (_, found) = bc
        .get("/api/target/search?type=multi&tags=cool%20beans")
        .await;
    assert_eq!(found["targets"].as_array().unwrap().len(), 11);
    for (method, path) in [
        (Method::PUT, "/api/target"),
        (Method::POST, "/api/stats"),
        (Method::GET, "/api/target/web/unknown"),
        (Method::GET, "/api/jobs/unknown/route"),
    ] {
        let (status, reply) = bc.send(method, path, None).await;
        assert!(
            status == StatusCode::METHOD_NOT_ALLOWED || status == StatusCode::NOT_FOUND,
            "{path}"
        );
        assert_eq!(reply["success"], false, "{path}");
    }
    let (status, reply) = bc.get("/api/log?tail=many").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(failure(&reply).starts_with("Parameter 'tail'"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_refused_for_bad_forms_and_sequential_conflicts() {
    let dir = tempfile::tempdir().unwrap();
    let bc = Bc::start(dir.path()).await;
    let single = bc.target("one", "single", "one-$I", Some("one")).await;
    let multi = bc.target("many", "multi", "many-$D", Some("many")).await;
    let path = format!("/api/target/{single}/upload");
    let (status, reply) = bc
        .form(&path, Form::new().part("backup_file", file_part("a", b"a")))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(failure(&reply), "Parameter 'manual' required");
    let (status, reply) = bc.form(&path, Form::new().text("manual", "1")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(failure(&reply), "No files specified");
    let two = Form::new()
        .text("manual", "true")
        .part("backup_file", file_part("a", b"a"))
        .part("backup_file", file_part("b", b"b"));
    let (status, reply) = bc.form(&path, two).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        failure(&reply),
        "A single-file target takes one file per backup"
    );
    let bad_manual = Form::new()
        .text("manual", "maybe")
        .part("backup_file", file_part("a", b"a"));
    let (status, _) = bc.form(&path, bad_manual).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = bc
        .form("/api/target/nope/upload", Form::new().text("manual", "0"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Nothing was recorded by the refused uploads, and, as on the real server, which
    // checks a request before it makes a job, no job records them either; the server's
    // own job list keeps the failures.
    let (_, view) = bc.get(&format!("/api/target/{single}")).await;
    assert_eq!(view["backups"], json!([]));
    let (_, jobs) = bc.get("/api/jobs").await;
    assert_eq!(jobs["delayed"], json!([]), "{jobs}");
    let core = bc.core_jobs().await;
    assert!(
        core.iter()
            .all(|j| j["kind"] == "backupchan_upload" && j["status"] == "failed"),
        "{core:?}"
    );
    assert!(!core.is_empty());
    // A good upload answers with its job at once; the backup appears when it ends.
    let good = Form::new()
        .text("manual", "0")
        .part("backup_file", file_part("d.sql", b"dump"));
    let (status, reply) = bc.form(&path, good).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(
        bc.wait_job(reply["job_id"].as_u64().unwrap()).await,
        "FINISHED"
    );
    let (_, view) = bc.get("/api/target/one").await;
    let backup = &view["backups"][0];
    assert_eq!(backup["manual"], false);
    assert_eq!(backup["filesize"], 4);
    assert_eq!(backup["is_recycled"], false);
    assert_eq!(backup["hash"], crate::support::sha256_hex(b"dump"));
    // Each upload is a job of the server's one job system too, with its error's kind.
    let admin = crate::support::admin_key(&bc.data_dir);
    let url = format!("{}/v1/jobs", bc.base);
    let core = crate::support::get_json(&bc.client, &url, &admin).await;
    let uploads: Vec<&Value> = core["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["kind"] == "backupchan_upload")
        .collect();
    let good = uploads[0];
    assert_eq!(good["status"], "succeeded", "{good}");
    assert_eq!(good["result"]["backup"], backup["id"], "{good}");
    assert_eq!(good["progress"]["bytes_done"], 4);
    assert!(uploads[1..]
        .iter()
        .all(|j| j["status"] == "failed" && j["error_kind"] == "invalid_input"));

    // Sequential uploads.
    let files = json!([{"path": "/", "name": "a"}, {"path": "/sub", "name": "b"}]);
    let begin = json!({"manual": 1, "file_list": files});
    let (status, reply) = bc
        .send(Method::POST, "/api/seq/one/begin", Some(begin.clone()))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        failure(&reply),
        "Cannot begin sequential upload on single-file target"
    );
    let escape = json!({"manual": 1, "file_list": [{"path": "/..", "name": "x"}]});
    let (status, _) = bc
        .send(Method::POST, "/api/seq/many/begin", Some(escape))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = bc
        .send(Method::POST, "/api/seq/many/begin", Some(begin.clone()))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, reply) = bc
        .send(Method::POST, "/api/seq/many/begin", Some(begin))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(failure(&reply), "Target busy");
    let seq_file = |path: &str, name: &str, data: &'static [u8]| {
        Form::new()
            .text("name", name.to_string())
            .text("path", path.to_string())
            .part("file", file_part(name, data))
    };
    let (status, _) = bc
        .form("/api/seq/many/upload", seq_file("/", "a", b"first"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, reply) = bc
        .form("/api/seq/many/upload", seq_file("/", "a", b"again"))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{reply}");
    let (status, reply) = bc
        .send(Method::POST, "/api/seq/many/finish", Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{reply}");
    let (status, reply) = bc
        .form("/api/seq/many/upload", seq_file("/", "zzz", b"x"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    let (_, check) = bc.get(&format!("/api/seq/{multi}")).await;
    assert_eq!(
        check["file_list"],
        json!([{"path": "/", "name": "a", "uploaded": true}, {"path": "/sub", "name": "b", "uploaded": false}])
    );
    let (status, _) = bc
        .send(Method::POST, "/api/seq/many/terminate", Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, reply) = bc.get("/api/seq/many").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        failure(&reply),
        "No sequential upload in progress on target many"
    );
    let (status, _) = bc
        .send(Method::POST, "/api/seq/many/finish", Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (_, view) = bc.get("/api/target/many").await;
    assert_eq!(view["backups"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (target, backup) = {
        let bc = Bc::start(dir.path()).await;
        let target = bc.target("keep", "single", "keep-$I", Some("keep")).await;
        let form = Form::new()
            .text("manual", "1")
            .part("backup_file", file_part("k.bin", b"kept bytes"));
        let (_, reply) = bc.form("/api/target/keep/upload", form).await;
        assert_eq!(
            bc.wait_job(reply["job_id"].as_u64().unwrap()).await,
            "FINISHED"
        );
        let (_, view) = bc.get("/api/target/keep").await;
        let backup = view["backups"][0]["id"].as_str().unwrap().to_string();
        let (status, _) = bc
            .send(
                Method::PATCH,
                &format!("/api/backup/{backup}"),
                Some(json!({"is_recycled": true})),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        bc.stop().await;
        (target, backup)
    };
    let bc = Bc::start(dir.path()).await;
    let (_, bin) = bc.get("/api/recycle_bin").await;
    assert_eq!(bin["backups"][0]["id"], backup.as_str());
    assert_eq!(bin["backups"][0]["target_id"], target.as_str());
    let (_, jobs) = bc.get("/api/jobs").await;
    assert_eq!(jobs["delayed"][0]["status"], "FINISHED");
    let response = bc
        .client
        .get(format!("{}/api/backup/{backup}/download", bc.base))
        .bearer_auth(&bc.key)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["content-disposition"],
        format!("attachment; filename=\"keep-{backup}.bin\"").as_str()
    );
    assert_eq!(response.bytes().await.unwrap().as_ref(), b"kept bytes");
}

#[test]
fn key_create_issues_bakch_keys() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let output = crate::support::run_ok(
        crate::support::cli(&dir.path().join("repo"))
            .args(["key", "create", "--data-dir"])
            .arg(&data)
            .args(["--name", "laptop", "--dialect", "backupchan"]),
        None,
    );
    let key = crate::support::last_line(&output);
    assert!(key.starts_with("bakch-") && key.len() == 70, "{key}");
    assert!(key[6..]
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    let stored = std::fs::read(data.join(stowage::state::STATE_FILE)).unwrap();
    assert!(
        !stored.windows(64).any(|w| w == &key.as_bytes()[6..]),
        "the secret itself is stored"
    );
    let store = stowage::state::StateStore::open(&data.join(stowage::state::STATE_FILE)).unwrap();
    assert!(KeyStore::new(std::sync::Arc::new(store))
        .verify_backupchan(&key)
        .is_ok());
    let listed = crate::support::run_ok(
        crate::support::cli(&dir.path().join("repo"))
            .args(["key", "list", "--json", "--data-dir"])
            .arg(&data),
        None,
    );
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed[0]["dialect"], "backupchan");
    let refused = crate::support::run(
        crate::support::cli(&dir.path().join("repo"))
            .args(["key", "create", "--data-dir"])
            .arg(&data)
            .args(["--name", "x", "--dialect", "fa"]),
        None,
    );
    assert!(!refused.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_over_the_limit_are_refused_and_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let bc = Bc::start_with(dir.path(), |c| c.max_upload_bytes = 64 * 1024).await;
    let id = bc.target("small", "multi", "small-$I", Some("small")).await;
    // Announced too large: refused before reading.
    let big = crate::support::random_bytes(100 * 1024, 3);
    let form = Form::new()
        .text("manual", "1")
        .part("backup_file", file_part("big", &big));
    // A refused body is left unread, so the server closes the connection: each refused
    // request gets a client of its own, keeping the shared one's pooled connections.
    let one_shot = || Client::builder().no_proxy().build().expect("client");
    let response = one_shot()
        .post(format!("{}/api/target/small/upload", bc.base))
        .bearer_auth(&bc.key)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(form.finish())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let reply: Value = response.json().await.unwrap();
    assert!(failure(&reply).contains("65536 bytes"), "{reply}");
    // Sent without a length (chunked), a small file and then one over the limit: the
    // upload is refused while streaming, and the small file already stored is dropped.
    let form = Form::new()
        .text("manual", "1")
        .part("backup_file", file_part("ok", b"fine"))
        .part("backup_file", file_part("big", &big));
    let pieces: Vec<Result<Vec<u8>, std::io::Error>> =
        form.finish().chunks(8192).map(|c| Ok(c.to_vec())).collect();
    let response = one_shot()
        .post(format!("{}/api/target/small/upload", bc.base))
        .bearer_auth(&bc.key)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(reqwest::Body::wrap_stream(futures::stream::iter(pieces)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let reply: Value = response.json().await.unwrap();
    assert!(failure(&reply).contains("65536 bytes"), "{reply}");
    assert_eq!(native_backups(&bc, &format!("bc-{id}")).await, (0, 0));
    let (_, view) = bc.get("/api/target/small").await;
    assert_eq!(view["backups"], json!([]));
    let (_, jobs) = bc.get("/api/jobs").await;
    assert_eq!(
        jobs["delayed"],
        json!([]),
        "a refused upload leaves no job: {jobs}"
    );
    // Files under the limit are taken.
    let form = Form::new()
        .text("manual", "1")
        .part("backup_file", file_part("ok", b"fine"))
        .part("backup_file", file_part("big", &big[..60 * 1024]));
    let (status, reply) = bc.form("/api/target/small/upload", form).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(
        bc.wait_job(reply["job_id"].as_u64().unwrap()).await,
        "FINISHED"
    );
    assert_eq!(native_backups(&bc, &format!("bc-{id}")).await, (2, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_downloads_are_one_tar_with_archives_extracted() {
    let dir = tempfile::tempdir().unwrap();
    let bc = Bc::start(dir.path()).await;
    bc.target("mix", "multi", "mix-$I", Some("mix")).await;
    let inner = [
        ("etc/app.conf", b"key = value\n".to_vec()),
        ("data/blob.bin", crate::support::random_bytes(300_000, 9)),
    ];
    let tar = plain_tar(dir.path(), &inner);
    let notes = crate::support::random_bytes(5_000, 10);
    let form = Form::new()
        .text("manual", "false")
        .part("backup_file", file_part("notes.txt", &notes))
        .part("backup_file", file_part("bundle.tar", &tar));
    let (_, reply) = bc.form("/api/target/mix/upload", form).await;
    assert_eq!(
        bc.wait_job(reply["job_id"].as_u64().unwrap()).await,
        "FINISHED"
    );
    let (_, view) = bc.get("/api/target/mix").await;
    let backup = view["backups"][0]["id"].as_str().unwrap().to_string();
    let (disposition, bytes) = bc.download(&backup).await;
    assert_eq!(
        disposition,
        format!("attachment; filename=\"mix_{backup}.tar\"")
    );
    let mut parser = stowage::format::tar::TarCatalogParser::new();
    let mut entries = Vec::new();
    parser.feed(&bytes, &mut |e| entries.push(e));
    parser.finish(&mut |e| entries.push(e)).unwrap();
    let mut files = std::collections::BTreeMap::new();
    for entry in entries
        .iter()
        .filter(|e| e.kind == stowage::format::catalog::EntryKind::File)
    {
        let start = entry.offset.unwrap() as usize;
        files.insert(
            entry.path.clone(),
            bytes[start..start + entry.size as usize].to_vec(),
        );
    }
    let mut expected: std::collections::BTreeMap<String, Vec<u8>> = inner
        .iter()
        .map(|(p, d)| (p.to_string(), d.clone()))
        .collect();
    expected.insert("notes.txt".into(), notes);
    assert_eq!(files, expected);
    assert!(entries
        .iter()
        .any(|e| e.path == "etc" && e.kind == stowage::format::catalog::EntryKind::Dir));
}

/// A multi download must not escape the folder it is extracted in: an uploaded archive
/// with a symlink and a file beneath it (`link -> ../outside`, `link/planted.txt`), and a
/// hard link to that file, come back without the file and the hard link, so even an
/// extractor that follows links (Python's tarfile before 3.14) writes only inside.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlink_and_a_file_beneath_it_never_escape_a_multi_download() {
    use stowage::format::tar::writer::{
        end_marker, entry_header, pad, Entry, DIR, FILE, HARDLINK, SYMLINK,
    };
    let dir = tempfile::tempdir().unwrap();
    let bc = Bc::start(dir.path()).await;
    bc.target("evil", "multi", "evil-$I", Some("evil")).await;
    let entry = |name: &str, kind: u8, size: u64, link: Option<&str>| Entry {
        name: name.into(),
        size,
        mode: 0o644,
        mtime: 1_700_000_000,
        kind,
        link: link.map(str::to_string),
    };
    let mut tar = Vec::new();
    for (e, data) in [
        (entry("d/", DIR, 0, None), &b""[..]),
        (entry("d/ok.txt", FILE, 4, None), b"fine"),
        (entry("link", SYMLINK, 0, Some("../outside")), b""),
        (entry("link/planted.txt", FILE, 5, None), b"pwned"),
        (entry("hl", HARDLINK, 0, Some("link/planted.txt")), b""),
        (entry("hl2", HARDLINK, 0, Some("d/ok.txt")), b""),
    ] {
        tar.extend(entry_header(&e));
        tar.extend_from_slice(data);
        tar.extend(pad(e.size));
    }
    tar.extend(end_marker());
    let form = Form::new()
        .text("manual", "false")
        .part("backup_file", file_part("evil.tar", &tar));
    let (_, reply) = bc.form("/api/target/evil/upload", form).await;
    assert_eq!(
        bc.wait_job(reply["job_id"].as_u64().unwrap()).await,
        "FINISHED"
    );
    let (_, view) = bc.get("/api/target/evil").await;
    let backup = view["backups"][0]["id"].as_str().unwrap().to_string();
    let (_, bytes) = bc.download(&backup).await;
    let mut parser = stowage::format::tar::TarCatalogParser::new();
    let mut names = Vec::new();
    parser.feed(&bytes, &mut |e| names.push(e.path));
    parser.finish(&mut |e| names.push(e.path)).unwrap();
    assert_eq!(names, ["d", "d/ok.txt", "link", "hl2"]);

    // Extracted by an extractor that follows links, nothing lands outside.
    let work = dir.path().join("extract");
    std::fs::create_dir_all(work.join("dst")).unwrap();
    std::fs::create_dir_all(work.join("outside")).unwrap();
    std::fs::write(work.join("download.tar"), &bytes).unwrap();
    let status = std::process::Command::new("python3")
        .current_dir(&work)
        .args([
            "-c",
            // Following links is the default before 3.14 and what `fully_trusted` asks
            // for where extraction filters exist.
            "import tarfile\n\
             kw = {'filter': 'fully_trusted'} if hasattr(tarfile, 'fully_trusted_filter') else {}\n\
             tarfile.open('download.tar').extractall('dst', **kw)",
        ])
        .status()
        .expect("python3");
    assert!(status.success());
    assert_eq!(std::fs::read(work.join("dst/d/ok.txt")).unwrap(), b"fine");
    assert_eq!(std::fs::read(work.join("dst/hl2")).unwrap(), b"fine");
    assert!(
        !work.join("outside/planted.txt").exists(),
        "escaped the folder"
    );
    let (_, log) = bc.get("/api/log?tail=10").await;
    assert!(log.to_string().contains("left out"), "{log}");
}

/// The stowage backups of a series through the native API: (live, recycled).
async fn native_backups(bc: &Bc, series: &str) -> (u64, u64) {
    let admin = crate::support::admin_key(&bc.data_dir);
    let mut counts = [0, 0];
    for (i, recycled) in ["false", "true"].iter().enumerate() {
        let response = bc
            .client
            .get(format!(
                "{}/v1/backups?series={series}&recycled={recycled}",
                bc.base
            ))
            .bearer_auth(&admin)
            .send()
            .await
            .expect("list");
        let body: Value = response.json().await.expect("json");
        counts[i] = body["total"].as_u64().expect("total");
    }
    (counts[0], counts[1])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_live_in_the_targets_series() {
    let dir = tempfile::tempdir().unwrap();
    let bc = Bc::start(dir.path()).await;
    let mut series = Vec::new();
    for name in ["kept", "purged"] {
        let id = bc
            .target(name, "multi", &format!("{name}-$I"), Some(name))
            .await;
        let form = Form::new()
            .text("manual", "1")
            .part("backup_file", file_part("a", b"first file"))
            .part("backup_file", file_part("b", b"second file"));
        let (_, reply) = bc.form(&format!("/api/target/{name}/upload"), form).await;
        assert_eq!(
            bc.wait_job(reply["job_id"].as_u64().unwrap()).await,
            "FINISHED"
        );
        let series_name = format!("bc-{id}");
        assert_eq!(
            native_backups(&bc, &series_name).await,
            (2, 0),
            "one per file"
        );
        series.push(series_name);
    }
    // Recycling a Backup-chan backup recycles its stowage backups; restoring undeletes.
    let (_, view) = bc.get("/api/target/kept").await;
    let backup = view["backups"][0]["id"].as_str().unwrap().to_string();
    let recycle = |on: bool| json!({ "is_recycled": on });
    bc.send(
        Method::PATCH,
        &format!("/api/backup/{backup}"),
        Some(recycle(true)),
    )
    .await;
    assert_eq!(native_backups(&bc, &series[0]).await, (0, 2));
    bc.send(
        Method::PATCH,
        &format!("/api/backup/{backup}"),
        Some(recycle(false)),
    )
    .await;
    assert_eq!(native_backups(&bc, &series[0]).await, (2, 0));
    // Deleting without files keeps the bytes in the series; with files purges them.
    let keep = json!({ "delete_files": false });
    let (status, _) = bc
        .send(Method::DELETE, "/api/target/kept", Some(keep))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(native_backups(&bc, &series[0]).await, (2, 0));
    let purge = json!({ "delete_files": true });
    let (status, _) = bc
        .send(Method::DELETE, "/api/target/purged", Some(purge))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(native_backups(&bc, &series[1]).await, (0, 0));
    let (status, _) = bc.get("/api/target/purged").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Deleting a missing target answers success, as the real server does.
    let (status, _) = bc
        .send(
            Method::DELETE,
            "/api/target/purged",
            Some(json!({ "delete_files": true })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
}

/// Every pack file of the server's repository.
fn pack_files(data_dir: &Path) -> Vec<PathBuf> {
    let mut packs = Vec::new();
    let Ok(dirs) = std::fs::read_dir(data_dir.join("repo/packs")) else {
        return packs; // none written yet
    };
    for dir in dirs {
        for file in std::fs::read_dir(dir.unwrap().path()).unwrap() {
            packs.push(file.unwrap().path());
        }
    }
    packs.sort();
    packs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integrity_check_job_flags_a_damaged_backup() {
    let dir = tempfile::tempdir().unwrap();
    let bc = Bc::start(dir.path()).await;
    bc.target("db", "single", "db-$I", Some("db")).await;
    let mut packs_of = Vec::new();
    for seed in [1, 2] {
        let before = pack_files(&bc.data_dir);
        let data = crate::support::random_bytes(200_000, seed);
        let form = Form::new()
            .text("manual", "1")
            .part("backup_file", file_part("d.bin", &data));
        let (_, reply) = bc.form("/api/target/db/upload", form).await;
        assert_eq!(
            bc.wait_job(reply["job_id"].as_u64().unwrap()).await,
            "FINISHED"
        );
        let new: Vec<PathBuf> = pack_files(&bc.data_dir)
            .into_iter()
            .filter(|p| !before.contains(p))
            .collect();
        assert_eq!(new.len(), 1, "one pack per upload");
        packs_of.push(new[0].clone());
    }
    let (_, view) = bc.get("/api/target/db").await;
    // Newest first: the damaged pack holds the older backup.
    let damaged = view["backups"][1]["id"].clone();
    let len = std::fs::metadata(&packs_of[0]).unwrap().len();
    crate::support::flip_byte(&packs_of[0], len / 2);
    let (status, _) = bc.get("/api/jobs/force_run/integrity_check_job").await;
    assert_eq!(status, StatusCode::OK);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, view) = bc.get("/api/target/db").await;
        let flagged: Vec<&Value> = view["backups"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| b["hash_mismatch"] == true)
            .map(|b| &b["id"])
            .collect();
        if !flagged.is_empty() {
            assert_eq!(flagged, [&damaged], "{view}");
            break;
        }
        assert!(Instant::now() < deadline, "integrity_check_job did not run");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Scheduled jobs are tasks of the core scheduler, shown in /v1 with the others.
    let admin = crate::support::admin_key(&bc.data_dir);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let url = format!("{}/v1/scheduler", bc.base);
        let tasks = crate::support::get_json(&bc.client, &url, &admin).await;
        let task = tasks["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == "backupchan/integrity_check_job")
            .cloned()
            .unwrap_or_else(|| panic!("{tasks}"));
        if task["runs"] == 1 {
            assert_eq!(task["last_result"], "ok", "{task}");
            assert_eq!(task["every_secs"], 57600, "{task}");
            break;
        }
        assert!(Instant::now() < deadline, "{task}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The job logs its summary when it ends, just after the flags are set.
    loop {
        let (_, log) = bc.get("/api/log?tail=1").await;
        if log["log"]
            .as_str()
            .unwrap()
            .contains("1 backups with a hash mismatch")
        {
            break;
        }
        assert!(Instant::now() < deadline, "no summary in the log: {log}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backupchan_python_clients_work_unchanged() {
    let venv = tokio::task::spawn_blocking(|| {
        crate::support::python_venv("backupchan-clients", &CLIENT_PACKAGES)
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bc = Bc::start(dir.path()).await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/backupchan_clients.py");
    let work = dir.path().join("work");
    std::fs::create_dir_all(work.join("home")).unwrap();
    let mut command = std::process::Command::new(venv.join("bin/python"));
    command
        .arg(&script)
        .arg(bc.port.to_string())
        .arg(&bc.key)
        .arg(&work)
        .env("HOME", work.join("home"))
        // The client library leaves its folder uploads' temporary tar files behind.
        .env("TMPDIR", &work)
        .env("XDG_CONFIG_HOME", work.join("home/.config"))
        .env("XDG_DATA_HOME", work.join("home/.local/share"))
        .env(
            "PYTHON_KEYRING_BACKEND",
            "keyrings.alt.file.PlaintextKeyring",
        )
        .env("BACKUPCHAN_BIN", venv.join("bin/backupchan"))
        .env("NO_PROXY", "127.0.0.1")
        .env_remove("http_proxy")
        .env_remove("HTTP_PROXY");
    let output = tokio::task::spawn_blocking(move || command.output().expect("python"))
        .await
        .unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "client script failed:\n{text}");
    assert!(text.contains("all client checks passed"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_key_uploads_but_never_recycles_or_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let mut bc = Bc::start(dir.path()).await;
    let target = bc.target("agent", "single", "agent-$I", None).await;
    let writer = bc.key.clone();
    let (_, agent) = bc
        .keys()
        .create_for_dialect("agent", Role::Backup, BACKUPCHAN)
        .expect("backup key");
    bc.key = agent;
    let form = Form::new()
        .text("manual", "1")
        .part("backup_file", file_part("a.bin", b"agent bytes"));
    let (status, reply) = bc.form(&format!("/api/target/{target}/upload"), form).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(
        bc.wait_job(reply["job_id"].as_u64().unwrap()).await,
        "FINISHED"
    );
    let (_, view) = bc.get(&format!("/api/target/{target}")).await;
    let backup = view["backups"][0]["id"].as_str().unwrap().to_string();
    let refusals = [
        (
            Method::PATCH,
            format!("/api/backup/{backup}"),
            Some(json!({"is_recycled": true})),
        ),
        (
            Method::DELETE,
            format!("/api/backup/{backup}"),
            Some(json!({"delete_files": true})),
        ),
        (
            Method::DELETE,
            format!("/api/target/{target}/all"),
            Some(json!({"delete_files": true})),
        ),
        (
            Method::DELETE,
            format!("/api/target/{target}"),
            Some(json!({"delete_files": true})),
        ),
        (
            Method::DELETE,
            "/api/recycle_bin".to_string(),
            Some(json!({"delete_files": true})),
        ),
        (
            Method::PATCH,
            format!("/api/target/{target}"),
            Some(target_body("agent", "single", "agent-$I", None)),
        ),
    ];
    for (method, path, body) in refusals {
        let (status, reply) = bc.send(method.clone(), &path, body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {reply}");
        assert_eq!(reply["success"], false, "{reply}");
    }
    bc.key = writer;
    let (_, view) = bc.get(&format!("/api/target/{target}")).await;
    assert_eq!(view["backups"][0]["id"], backup.as_str());
    assert_eq!(view["backups"][0]["is_recycled"], false);
}

/// Any unknown path under `/api/` answers Backup-chan's `{"success": false, ...}` with 404
/// (the client parses every body), never the native envelope; an over-long URL too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_api_paths_answer_in_backupchans_envelope() {
    let dir = tempfile::tempdir().unwrap();
    let bc = Bc::start(dir.path()).await;
    for path in ["/api/nothing", "/api/targets", "/api/backup", "/api/a/b/c"] {
        let (status, reply) = bc.get(path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {reply}");
        assert_eq!(reply["success"], false, "{path}: {reply}");
        assert!(reply.get("error").is_none(), "{path}: {reply}");
    }
    let (status, reply) = bc.send(Method::PUT, "/api/target", None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{reply}");
    assert_eq!(reply["success"], false, "{reply}");
    let long = format!("/api/target?page={}", "1".repeat(10_000));
    let (status, reply) = bc.get(&long).await;
    assert_eq!(status, StatusCode::URI_TOO_LONG, "{reply}");
    assert_eq!(reply["success"], false, "{reply}");
}

/// The header is read as the real server reads it: exactly `Bearer ` then the key
/// (trimmed). Another case or no space is 401 "Unauthorized"; a key that is none is 403.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backupchan_bearer_is_matched_as_the_real_server_matches_it() {
    let dir = tempfile::tempdir().unwrap();
    let bc = Bc::start(dir.path()).await;
    let key = bc.key.clone();
    for (header, want) in [
        (format!("Bearer {key}"), StatusCode::OK),
        (format!("Bearer   {key}  "), StatusCode::OK),
        (format!("bearer {key}"), StatusCode::UNAUTHORIZED),
        (format!("BEARER {key}"), StatusCode::UNAUTHORIZED),
        (format!("Bearer\t{key}"), StatusCode::UNAUTHORIZED),
        // HTTP drops a value's trailing spaces: "Bearer " arrives as "Bearer".
        ("Bearer ".to_string(), StatusCode::UNAUTHORIZED),
        ("Bearer nope".to_string(), StatusCode::FORBIDDEN),
        (format!("Token {key}"), StatusCode::UNAUTHORIZED),
    ] {
        let (status, reply) = bc
            .call(Method::GET, Some(&header), "/api/target", None)
            .await;
        assert_eq!(status, want, "{header:?}: {reply}");
        if want == StatusCode::UNAUTHORIZED {
            assert_eq!(reply, json!({"success": false, "message": "Unauthorized"}));
        }
    }
}

/// Two uploads of the same folder to a deduplicating multi target are duplicates, as on
/// the real server, which hashes the extracted files rather than the archive: the two
/// `.tar.gz` files differ (the gzip header's time), their trees do not, and
/// `deduplicate_job` keeps the older. A changed file makes a different hash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folder_uploads_of_the_same_tree_are_duplicates() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let bc = Bc::start(dir.path()).await;
    let mut body = target_body("site", "multi", "site-$I", None);
    body["deduplicate"] = json!(true);
    let (status, reply) = bc.send(Method::POST, "/api/target", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    let target = reply["id"].as_str().unwrap().to_string();
    let files = [
        ("index.html", b"<h1>hello</h1>".to_vec()),
        ("css/site.css", b"body { margin: 0 }".to_vec()),
    ];
    let tar = plain_tar(&dir.path().join("one"), &files);
    let gzip = |mtime: u32, data: &[u8]| {
        let mut encoder = flate2::GzBuilder::new()
            .mtime(mtime)
            .write(Vec::new(), flate2::Compression::default());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    };
    let (first, second) = (gzip(1_000, &tar), gzip(2_000, &tar));
    assert_ne!(first, second, "the archives differ");
    let mut changed_files = files.clone();
    changed_files[0].1 = b"<h1>changed</h1>".to_vec();
    let third = gzip(3_000, &plain_tar(&dir.path().join("two"), &changed_files));
    for archive in [&first, &second, &third] {
        let form = Form::new()
            .text("manual", "1")
            .part("backup_file", file_part("site.tar.gz", archive));
        let (status, reply) = bc.form(&format!("/api/target/{target}/upload"), form).await;
        assert_eq!(status, StatusCode::OK, "{reply}");
        assert_eq!(
            bc.wait_job(reply["job_id"].as_u64().unwrap()).await,
            "FINISHED"
        );
    }
    let (_, view) = bc.get(&format!("/api/target/{target}")).await;
    let backups = view["backups"].as_array().unwrap().clone();
    assert_eq!(backups.len(), 3, "{view}");
    // Newest first: the changed tree, then the two copies of the same tree.
    assert_eq!(backups[1]["hash"], backups[2]["hash"], "{view}");
    assert_ne!(backups[0]["hash"], backups[1]["hash"], "{view}");
    let (status, _) = bc.get("/api/jobs/force_run/deduplicate_job").await;
    assert_eq!(status, StatusCode::OK);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, view) = bc.get(&format!("/api/target/{target}")).await;
        let ids: Vec<&Value> = view["backups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| &b["id"])
            .collect();
        if ids.len() == 2 {
            assert_eq!(
                ids,
                [&backups[0]["id"], &backups[2]["id"]],
                "the older copy stays: {view}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "deduplicate_job did not run: {view}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
