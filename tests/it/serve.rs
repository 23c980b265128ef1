//! `stowage serve` as a process: the embedded default (data directory created on first
//! start, passphrase and admin key written with mode 0600), and graceful shutdown on
//! SIGTERM.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// `stowage serve` on a random loopback port, its data directory under `cwd`, its log
/// on a pipe.
fn spawn_serve(cwd: &std::path::Path) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_stowage"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .current_dir(cwd)
        .env_remove("STOWAGE_PASSWORD")
        .env_remove("STOWAGE_ADMIN_KEY")
        .env_remove("STOWAGE_DATA_DIR")
        .env_remove("STOWAGE_REPO")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start stowage serve")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_creates_its_data_dir_answers_and_stops_on_sigterm() {
    let cwd = tempfile::tempdir().unwrap();
    let mut child = spawn_serve(cwd.path());
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let mut log = Vec::new();
    let address = loop {
        let line = lines
            .next()
            .expect("the server prints where it listens")
            .unwrap();
        log.push(line.clone());
        if let Some(rest) = line.split("listening on http://").nth(1) {
            break rest.trim().to_string();
        }
    };
    assert!(
        log.iter().any(|l| l.contains("BACK IT UP")),
        "the log says the generated passphrase must be backed up: {log:?}"
    );
    let data = cwd.path().join("stowage-data");
    assert_eq!(mode(&data.join("passphrase")), 0o600);
    assert_eq!(mode(&data.join("admin.key")), 0o600);
    assert_eq!(mode(&data.join("state.redb")), 0o600);
    assert_eq!(mode(&data.join("control.sock")), 0o600);
    assert!(data.join("repo").join("config").exists());

    let key = std::fs::read_to_string(data.join("admin.key")).unwrap();
    let client = reqwest::Client::new();
    let health = client
        .get(format!("http://{address}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let uploaded = client
        .post(format!("http://{address}/v1/series/demo/backups"))
        .bearer_auth(key.trim())
        .body(vec![7u8; 100_000])
        .send()
        .await
        .unwrap();
    assert_eq!(uploaded.status(), 201);

    // The CLI as an agent of the running server: put from stdin, ls, get a range.
    let agent = |args: &[&str], stdin: Option<&[u8]>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_stowage"));
        command
            .args(args)
            .env("STOWAGE_KEY", key.trim())
            .env_remove("STOWAGE_REPO")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().unwrap();
        let mut input = child.stdin.take().unwrap();
        if let Some(bytes) = stdin {
            std::io::Write::write_all(&mut input, bytes).unwrap();
        }
        drop(input);
        child.wait_with_output().unwrap()
    };
    let server = format!("http://{address}");
    let payload: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let put = agent(
        &["put", "--server", &server, "--series", "agent", "-"],
        Some(&payload),
    );
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );
    let id = String::from_utf8(put.stdout)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .to_string();
    let ls = agent(
        &["ls", "--server", &server, "--series", "agent", "--json"],
        None,
    );
    let listed: serde_json::Value = serde_json::from_slice(&ls.stdout).unwrap();
    assert_eq!(listed[0]["id"], id.as_str());
    let got = agent(&["get", "--server", &server, &id, "--range=10-19"], None);
    assert_eq!(got.stdout, &payload[10..20]);
    let whole = agent(&["get", "--server", &server, &id], None);
    assert_eq!(whole.stdout, payload);
    // A file of several segments: chunked here, uploads in flight while entries are
    // appended; the second put of the same file sends no chunk, only its entries.
    let big = cwd.path().join("big.img");
    std::fs::write(&big, crate::support::random_bytes(30 << 20, 9)).unwrap();
    let session_bytes = || async {
        let text = client
            .get(format!("http://{address}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("stowage_session_bytes_total "))
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    let mut sent = Vec::new();
    for _ in 0..2 {
        let before = session_bytes().await;
        let put = agent(
            &[
                "put",
                "--server",
                &server,
                "--series",
                "big",
                big.to_str().unwrap(),
            ],
            None,
        );
        assert!(
            put.status.success(),
            "{}",
            String::from_utf8_lossy(&put.stderr)
        );
        sent.push(session_bytes().await - before);
        let id = String::from_utf8(put.stdout).unwrap().trim().to_string();
        let whole = agent(&["get", "--server", &server, &id], None);
        assert!(
            whole.stdout == std::fs::read(&big).unwrap(),
            "restored byte-exact"
        );
    }
    assert!(
        sent[0] > 30 << 20,
        "the first put sends every chunk: {sent:?}"
    );
    assert!(
        sent[1] < 64 << 10,
        "the second sends only its entries: {sent:?}"
    );
    let missing = agent(&["get", "--server", &server, "no-such-id"], None);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("404"));

    // The CLI beside the running server, pointed at its repository with neither a key nor
    // a passphrase: `ls` goes through the server; `check` says exactly what to run.
    let beside = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_stowage"))
            .args(args)
            .arg("--repo")
            .arg(data.join("repo"))
            .env_remove("STOWAGE_KEY")
            .env_remove("STOWAGE_PASSWORD")
            .env_remove("STOWAGE_SERVER")
            .env_remove("STOWAGE_REPO")
            .output()
            .unwrap()
    };
    let ls = beside(&["ls", "--series", "agent", "--json"]);
    let stderr = String::from_utf8_lossy(&ls.stderr);
    assert!(ls.status.success(), "{stderr}");
    assert!(stderr.contains("going through it"), "{stderr}");
    let listed: serde_json::Value = serde_json::from_slice(&ls.stdout).unwrap();
    assert_eq!(listed[0]["id"], id.as_str());
    let check = beside(&["check"]);
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert!(!check.status.success());
    for needed in [
        "holds this repository",
        &format!("{server}/v1/repository/check"),
        "admin.key",
    ] {
        assert!(stderr.contains(needed), "{needed}: {stderr}");
    }

    // SAFETY: sending a signal to our own child process.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "graceful shutdown exits cleanly: {status:?}"
    );
    assert!(
        client
            .get(format!("http://{address}/healthz"))
            .send()
            .await
            .is_err(),
        "nothing listens after shutdown"
    );

    // The stored passphrase and keys stay usable after shutdown: the four backups are there.
    let listed = Command::new(env!("CARGO_BIN_EXE_stowage"))
        .args(["key", "list", "--json"])
        .current_dir(cwd.path())
        .output()
        .unwrap();
    let keys: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(keys.as_array().unwrap().len(), 1);
    let passphrase = std::fs::read_to_string(data.join("passphrase")).unwrap();
    let ls = Command::new(env!("CARGO_BIN_EXE_stowage"))
        .args(["ls", "--json", "--repo"])
        .arg(data.join("repo"))
        .env("STOWAGE_PASSWORD", passphrase.trim())
        .output()
        .unwrap();
    let backups: serde_json::Value = serde_json::from_slice(&ls.stdout).unwrap();
    assert_eq!(backups.as_array().unwrap().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_large_upload_exits_promptly_and_records_nothing() {
    let cwd = tempfile::tempdir().unwrap();
    let mut child = spawn_serve(cwd.path());
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let address = loop {
        let line = lines
            .next()
            .expect("the server prints where it listens")
            .unwrap();
        if let Some(rest) = line.split("listening on http://").nth(1) {
            break rest.trim().to_string();
        }
    };
    // Keep draining the log so the server never blocks on a full pipe; kept for failures.
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = log.clone();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            kept.lock().unwrap().push(line);
        }
    });
    let data = cwd.path().join("stowage-data");
    let key = std::fs::read_to_string(data.join("admin.key")).unwrap();
    let client = reqwest::Client::new();
    // 1 GiB, made as it is sent.
    let chunks = futures::stream::iter((0..1024u64).map(|i| {
        let block: Vec<u8> = (0..1 << 20)
            .map(|j: u64| ((j * 2654435761 + i * 97) >> 13) as u8)
            .collect();
        Ok::<_, std::io::Error>(bytes::Bytes::from(block))
    }));
    let upload = tokio::spawn(
        client
            .post(format!("http://{address}/v1/series/big/backups"))
            .bearer_auth(key.trim())
            .body(reqwest::Body::wrap_stream(chunks))
            .send(),
    );
    // Until the server reports the upload in flight.
    let metrics = format!("http://{address}/metrics");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let text = client
            .get(&metrics)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if text
            .lines()
            .any(|l| l.starts_with("stowage_uploads_in_flight") && !l.ends_with(" 0"))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the upload never started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // SAFETY: sending a signal to our own child process.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    // A bound on liveness, as operators expect of a service manager's stop: 10 s.
    let stopped_by = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < stopped_by,
            "the server did not exit within 10 s of SIGTERM"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status:?}: {:?}", log.lock().unwrap());
    if let Ok(Ok(response)) = upload.await {
        assert!(!response.status().is_success(), "{}", response.status());
    }
    let passphrase = std::fs::read_to_string(data.join("passphrase")).unwrap();
    let ls = Command::new(env!("CARGO_BIN_EXE_stowage"))
        .args(["ls", "--json", "--series", "big", "--repo"])
        .arg(data.join("repo"))
        .env("STOWAGE_PASSWORD", passphrase.trim())
        .output()
        .unwrap();
    let backups: serde_json::Value = serde_json::from_slice(&ls.stdout).unwrap();
    assert_eq!(backups, serde_json::json!([]), "nothing half-visible");
    let check = Command::new(env!("CARGO_BIN_EXE_stowage"))
        .args(["check", "--read-data", "--repo"])
        .arg(data.join("repo"))
        .env("STOWAGE_PASSWORD", passphrase.trim())
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
}
