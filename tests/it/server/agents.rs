//! `stowage agent`: the real CLI as a client host's agent, taking a backup and a restore
//! the server assigns to its host, end to end, also after the server restarted; and the
//! rules of assignments over HTTP.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use reqwest::StatusCode;
use serde_json::{json, Value};

use stowage::service::keys::Role;

use super::tree_sessions::{snapshot, write};
use super::{assert_error, random_bytes, Server};

/// The agent process, stopped when the test ends.
pub(crate) struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn start_agent(base: &str, key: &str, host: &str, allow: &Path) -> Agent {
    let child = Command::new(env!("CARGO_BIN_EXE_stowage"))
        .args(["agent", "--server", base, "--host", host, "--wait", "1"])
        .arg("--allow")
        .arg(allow)
        .env("STOWAGE_KEY", key)
        .env("STOWAGE_CACHE_DIR", allow.join("cache"))
        .env_remove("STOWAGE_REPO")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Agent(child)
}

async fn assign(server: &Server, key: &str, host: &str, action: Value) -> (StatusCode, Value) {
    server
        .send_json(
            reqwest::Method::POST,
            key,
            &format!("/v1/agents/{host}/jobs"),
            &action,
        )
        .await
}

/// Assigns `action` to `host` as the writer, and waits for its job to succeed.
async fn run_assigned(server: &Server, host: &str, action: Value) -> Value {
    let (status, answer) = assign(server, &server.writer, host, action).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let job = server.wait_job(answer["job"]["id"].as_str().unwrap()).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    job
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_runs_a_server_assigned_backup_and_restore() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().canonicalize().unwrap();
    let site = root.join("site");
    for i in 0..12u64 {
        write(
            &site.join(format!("docs/d{i}.txt")),
            format!("doc {i}\n").repeat(40).as_bytes(),
            0o644,
        );
    }
    write(&site.join("data/big.bin"), &random_bytes(2 << 20, 5), 0o600);
    std::os::unix::fs::symlink("../docs/d1.txt", site.join("data/link")).unwrap();

    let server = Server::start().await;
    let (_, agent_key) = server.keys().create("box-1 agent", Role::Backup).unwrap();
    let _agent = start_agent(&server.base, &agent_key, "box-1", &root);

    let backup = json!({"action": "backup", "series": "box", "paths": [site]});
    let job = run_assigned(&server, "box-1", backup).await;
    assert_eq!(job["kind"], "agent_backup", "{job}");
    // The result's figures are the repository's, its backup checked to be the series'.
    let result = &job["result"];
    let id = result["backup"].as_str().unwrap();
    assert_eq!(result["series"], "box", "{job}");
    let (status, backup) = server
        .get(&server.reader, &format!("/v1/backups/{id}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{backup}");
    assert_eq!(backup["kind"], "tree", "{backup}");
    assert_eq!(result["size"], backup["size"], "{job}");
    assert_eq!(
        result["catalog_entries"], backup["catalog_entries"],
        "{job}"
    );

    // The agent is known by its host, with its key.
    let (status, agents) = server.get(&server.reader, "/v1/agents").await;
    assert_eq!(status, StatusCode::OK, "{agents}");
    assert_eq!(agents["agents"][0]["host"], "box-1", "{agents}");

    let target = root.join("restored");
    let restore = json!({"action": "restore", "backup": id, "target": target});
    run_assigned(&server, "box-1", restore).await;
    // The selected folder is restored under its absolute path.
    let restored = target.join(site.strip_prefix("/").unwrap());
    assert_eq!(snapshot(&restored), snapshot(&site));

    // Restoring into a folder that is not empty fails, and says why.
    let (_, answer) = assign(
        &server,
        &server.writer,
        "box-1",
        json!({"action": "restore", "backup": id, "target": target}),
    )
    .await;
    let job = server.wait_job(answer["job"]["id"].as_str().unwrap()).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert!(
        job["error"].as_str().unwrap().contains("not empty"),
        "{job}"
    );

    // Outside the folders the agent was allowed, directly or through a link: refused.
    let outside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), root.join("escape")).unwrap();
    for action in [
        json!({"action": "backup", "series": "box", "paths": [outside.path()]}),
        json!({"action": "backup", "series": "box", "paths": [root.join("escape")]}),
        json!({"action": "restore", "backup": id, "target": root.join("escape/new")}),
    ] {
        let (_, answer) = assign(&server, &server.writer, "box-1", action.clone()).await;
        let job = server.wait_job(answer["job"]["id"].as_str().unwrap()).await;
        assert_eq!(job["status"], "failed", "{action}: {job}");
        assert!(job["error"].as_str().unwrap().contains("outside"), "{job}");
    }
    assert!(std::fs::read_dir(outside.path()).unwrap().next().is_none());
}

/// The agent outlives its server: a restart cuts its long poll, it waits the server out
/// and takes the next job the restarted server assigns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_waits_out_a_server_restart_and_takes_the_next_job() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().canonicalize().unwrap();
    let site = root.join("site");
    write(&site.join("notes.txt"), b"kept across a restart\n", 0o644);
    write(&site.join("data.bin"), &random_bytes(300 << 10, 9), 0o600);

    let mut server = Server::start().await;
    let (_, agent_key) = server.keys().create("box-2 agent", Role::Backup).unwrap();
    let _agent = start_agent(&server.base, &agent_key, "box-2", &root);
    // Registered: the agent has asked for work at least once.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (status, agents) = server.get(&server.reader, "/v1/agents").await;
        assert_eq!(status, StatusCode::OK, "{agents}");
        if agents["agents"][0]["host"] == "box-2" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the agent never asked for work"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    server.restart().await;

    let backup = json!({"action": "backup", "series": "box", "paths": [site]});
    let job = run_assigned(&server, "box-2", backup).await;
    let id = job["result"]["backup"].as_str().unwrap();
    let target = root.join("restored");
    let restore = json!({"action": "restore", "backup": id, "target": target});
    run_assigned(&server, "box-2", restore).await;
    let restored = target.join(site.strip_prefix("/").unwrap());
    assert_eq!(snapshot(&restored), snapshot(&site));
}

#[tokio::test]
async fn assignments_are_checked_and_only_the_taking_key_ends_them() {
    let server = Server::start().await;
    let (_, agent_key) = server.keys().create("agent", Role::Backup).unwrap();
    let (_, other_key) = server.keys().create("other agent", Role::Backup).unwrap();
    let backup = json!({"action": "backup", "series": "box", "paths": ["/srv"]});

    // A backup key takes work but cannot assign it; assignments are checked.
    let (status, body) = assign(&server, &agent_key, "box", backup.clone()).await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
    for (host, action) in [
        ("no host", backup.clone()),
        (
            "box",
            json!({"action": "backup", "series": "box", "paths": ["srv"]}),
        ),
        (
            "box",
            json!({"action": "backup", "series": "box", "paths": ["/srv/../etc"]}),
        ),
        (
            "box",
            json!({"action": "backup", "series": "box", "paths": []}),
        ),
        (
            "box",
            json!({"action": "restore", "backup": "nope", "target": "/tmp/x"}),
        ),
        ("box", json!({"action": "erase", "paths": ["/"]})),
        (
            "box",
            json!({"action": "backup", "series": "box", "paths": ["/"], "exclude": ["a["]}),
        ),
        (
            "box",
            json!({"action": "restore", "backup": uuid::Uuid::new_v4().to_string(), "target": "/tmp/x", "item": "../etc"}),
        ),
    ] {
        let (status, body) = assign(&server, &server.writer, host, action.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{host} {action}: {body}");
    }

    // Cancelled while queued: never handed out.
    let (_, answer) = assign(&server, &server.writer, "box", backup.clone()).await;
    let cancelled = answer["job"]["id"].as_str().unwrap().to_string();
    let (status, body) = server
        .post(&server.writer, &format!("/v1/jobs/{cancelled}/cancel"))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");

    let (_, answer) = assign(&server, &server.writer, "box", backup).await;
    let job = answer["job"]["id"].as_str().unwrap().to_string();
    let (status, task) = server
        .get(&agent_key, "/v1/agent/next?host=box&wait=1")
        .await;
    assert_eq!(status, StatusCode::OK, "{task}");
    assert_eq!(task["job"], job.as_str());
    assert_eq!(task["action"], "backup");
    assert_eq!(task["paths"], json!(["/srv"]));
    let (_, view) = server
        .get(&server.reader, &format!("/v1/jobs/{cancelled}"))
        .await;
    assert_eq!(view["status"], "cancelled", "{view}");
    let (_, view) = server.get(&server.reader, &format!("/v1/jobs/{job}")).await;
    assert_eq!(view["status"], "running", "{view}");

    // Nothing more for this host: the poll answers 204 once its wait is over.
    let response = server
        .request(
            reqwest::Method::GET,
            &agent_key,
            "/v1/agent/next?host=box&wait=1",
        )
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    // Another key cannot report on or end the job; the taker's cancel is seen.
    let progress = format!("/v1/agent/jobs/{job}/progress");
    let finish = format!("/v1/agent/jobs/{job}/finish");
    let (status, body) = server
        .send_json(
            reqwest::Method::POST,
            &other_key,
            &finish,
            &json!({"error": "x"}),
        )
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    let (status, body) = server
        .send_json(
            reqwest::Method::POST,
            &agent_key,
            &progress,
            &json!({"bytes_done": 10, "bytes_total": 100, "files_done": 1}),
        )
        .await;
    assert_eq!(
        (status, &body["cancelled"]),
        (StatusCode::OK, &json!(false)),
        "{body}"
    );
    let (_, view) = server.get(&server.reader, &format!("/v1/jobs/{job}")).await;
    assert_eq!(view["progress"]["bytes_done"], 10, "{view}");
    server
        .post(&server.writer, &format!("/v1/jobs/{job}/cancel"))
        .await;
    let (_, body) = server
        .send_json(reqwest::Method::POST, &agent_key, &progress, &json!({}))
        .await;
    assert_eq!(body["cancelled"], true, "{body}");
    let (status, body) = server
        .send_json(
            reqwest::Method::POST,
            &agent_key,
            &finish,
            &json!({"error": "cancelled on the server"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["job"]["status"], "cancelled", "{body}");

    // An agent's word on which backup it made is checked: a backup that is not the
    // series' fails the job.
    let whole = json!({"action": "backup", "series": "box", "paths": ["/"], "exclude": ["/proc"]});
    let (status, answer) = assign(&server, &server.writer, "box", whole).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let claimed = answer["job"]["id"].as_str().unwrap().to_string();
    let (_, task) = server
        .get(&agent_key, "/v1/agent/next?host=box&wait=1")
        .await;
    assert_eq!(task["exclude"], json!(["/proc"]), "{task}");
    let (status, body) = server
        .send_json(
            reqwest::Method::POST,
            &agent_key,
            &format!("/v1/agent/jobs/{claimed}/finish"),
            &json!({"result": {"backup": uuid::Uuid::new_v4().to_string()}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["job"]["status"], "failed", "{body}");
    assert!(
        body["job"]["error"]
            .as_str()
            .unwrap()
            .contains("not a committed backup of series box"),
        "{body}"
    );
    // Ended: a second end is refused.
    let (status, _) = server
        .send_json(
            reqwest::Method::POST,
            &agent_key,
            &finish,
            &json!({"result": {}}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
