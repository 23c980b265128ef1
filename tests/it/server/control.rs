//! The server's state beside it: `stowage key` and `stowage user` through the control
//! socket, a data directory of the earlier layout migrated, jobs across a restart, and
//! `repair state`.

use super::*;

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
        parent: None,
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
