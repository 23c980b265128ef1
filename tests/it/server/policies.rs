//! Backup policies over `/v1`: a folders policy backs up exactly its files (links
//! recorded, never followed; exclusions left out), its retention prunes as a job
//! chained after the backup, folders outside the roots are refused and never read,
//! command policies store a program's output or nothing, a policy never runs twice at
//! once, and schedules fire their policies.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::*;

/// Every entry under `folder` as a catalog names it (absolute path without the leading
/// `/`), leaving out those whose name is `skip`; links are listed, not followed.
fn entries_on_disk(folder: &Path, skip: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    found.insert(folder.to_str().unwrap().trim_start_matches('/').to_string());
    let mut pending = vec![folder.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            if entry.file_name() == skip {
                continue;
            }
            let path = entry.path();
            found.insert(path.to_str().unwrap().trim_start_matches('/').to_string());
            if entry.file_type().unwrap().is_dir() {
                pending.push(path);
            }
        }
    }
    found
}

struct Roots {
    _dir: tempfile::TempDir,
    /// The configured root, resolved.
    root: PathBuf,
    /// A folder outside the root holding a secret.
    outside: PathBuf,
}

fn roots() -> Roots {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().canonicalize().unwrap();
    let root = base.join("root");
    let outside = base.join("outside");
    std::fs::create_dir_all(root.join("www/sub/cache")).unwrap();
    std::fs::create_dir_all(root.join("db")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret.txt"), b"never read").unwrap();
    std::fs::write(root.join("www/index.html"), b"<p>hello</p>").unwrap();
    std::fs::write(root.join("www/sub/data.bin"), random_bytes(200_000, 7)).unwrap();
    std::fs::write(root.join("www/sub/cache/page.tmp"), b"left out").unwrap();
    std::fs::write(root.join("db/dump.sql"), b"create table t;").unwrap();
    std::os::unix::fs::symlink(&outside, root.join("www/out")).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
    Roots {
        _dir: dir,
        root,
        outside,
    }
}

async fn catalog_paths(server: &Server, backup: &str) -> (BTreeSet<String>, Value) {
    let (status, page) = server
        .get(
            &server.reader,
            &format!("/v1/backups/{backup}/catalog?limit=10000"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let paths = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap().to_string())
        .collect();
    (paths, page)
}

/// The jobs of kind `kind` whose parent is `parent`.
async fn children(server: &Server, parent: &str, kind: &str) -> Vec<Value> {
    let (status, jobs) = server.get(&server.reader, "/v1/jobs").await;
    assert_eq!(status, StatusCode::OK, "{jobs}");
    jobs["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["parent"] == parent && j["kind"] == kind)
        .cloned()
        .collect()
}

/// The first job of kind `kind` after `parent`, once it ended.
async fn first_child(server: &Server, parent: &str, kind: &str) -> Value {
    for _ in 0..600 {
        if let Some(child) = children(server, parent, kind).await.first() {
            return server.wait_job(child["id"].as_str().unwrap()).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no {kind} job followed {parent}");
}

async fn run_policy(server: &Server, name: &str) -> Value {
    let (status, accepted) = server
        .post(&server.writer, &format!("/v1/policies/{name}/run"))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    assert_eq!(accepted["job"]["kind"], "policy", "{accepted}");
    server
        .wait_job(accepted["job"]["id"].as_str().unwrap())
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folders_policy_backs_up_exactly_its_files_and_its_retention_prunes_after_it() {
    let roots = roots();
    let root = roots.root.clone();
    let server = Server::start_with(|config| config.policies.roots = vec![root]).await;
    let (www, db) = (roots.root.join("www"), roots.root.join("db"));
    let (status, created) = server
        .send_json(
            reqwest::Method::POST,
            &server.admin,
            "/v1/policies",
            &json!({
                "name": "site", "series": "site",
                "source": {"kind": "folders", "paths": [www, db], "exclude": ["*/cache"]}
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["next_run"], Value::Null, "no schedule");

    let first = run_policy(&server, "site").await;
    assert_eq!(first["status"], "succeeded", "{first}");
    let backup = first["result"]["backup"].as_str().unwrap().to_string();
    let (paths, page) = catalog_paths(&server, &backup).await;
    let mut expected = entries_on_disk(&www, "cache");
    expected.extend(entries_on_disk(&db, "cache"));
    assert_eq!(
        paths, expected,
        "the catalog lists exactly the files on disk"
    );
    let link = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"].as_str().unwrap().ends_with("www/out"))
        .unwrap();
    assert_eq!(link["kind"], "symlink", "{link}");
    assert_eq!(link["link"], roots.outside.to_str().unwrap());
    assert!(
        !paths.iter().any(|p| p.contains("secret")),
        "a link is recorded, never followed"
    );
    let (_, policy) = server.get(&server.reader, "/v1/policies/site").await;
    assert_eq!(policy["last_job"], first["id"], "{policy}");
    // The catalog is read back and checked after the backup; no retention, no prune.
    let catalog = first_child(&server, first["id"].as_str().unwrap(), "catalog").await;
    assert_eq!(catalog["status"], "succeeded", "{catalog}");
    assert_eq!(
        catalog["result"]["entries"], first["result"]["catalog_entries"],
        "{catalog}"
    );
    assert_eq!(catalog["result"]["indexed"], true, "{catalog}");
    assert!(
        children(&server, catalog["id"].as_str().unwrap(), "prune")
            .await
            .is_empty(),
        "no retention, no prune"
    );

    // A file's bytes are where its catalog entry says, in the backup's stream.
    let data = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"].as_str().unwrap().ends_with("www/sub/data.bin"))
        .unwrap();
    let (offset, size) = (
        data["offset"].as_u64().unwrap(),
        data["size"].as_u64().unwrap(),
    );
    let response = server
        .client
        .get(server.url(&format!("/v1/backups/{backup}/content")))
        .bearer_auth(&server.reader)
        .header("Range", format!("bytes={offset}-{}", offset + size - 1))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        response.bytes().await.unwrap().to_vec(),
        std::fs::read(www.join("sub/data.bin")).unwrap()
    );

    // With keep_hourly 1, a second run prunes the first, as a job after the catalog check.
    let (status, changed) = server
        .send_json(
            reqwest::Method::PATCH,
            &server.admin,
            "/v1/policies/site",
            &json!({"retention": {"keep_hourly": 1}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    let second = run_policy(&server, "site").await;
    assert_eq!(second["status"], "succeeded", "{second}");
    let second_backup = second["result"]["backup"].as_str().unwrap();
    let catalog = first_child(&server, second["id"].as_str().unwrap(), "catalog").await;
    let prune = first_child(&server, catalog["id"].as_str().unwrap(), "prune").await;
    assert_eq!(prune["status"], "succeeded", "{prune}");
    assert_eq!(prune["result"]["removed"], json!([backup]), "{prune}");
    assert_eq!(prune["result"]["kept"], json!([second_backup]), "{prune}");
    assert_eq!(server.ids("?series=site").await, [second_backup]);

    // Clearing the retention (null) keeps every later backup.
    let (status, changed) = server
        .send_json(
            reqwest::Method::PATCH,
            &server.admin,
            "/v1/policies/site",
            &json!({"retention": null, "enabled": false, "catalog_check": false}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["retention"], Value::Null, "{changed}");
    assert_eq!(changed["catalog_check"], false, "{changed}");
    let third = run_policy(&server, "site").await;
    assert_eq!(
        third["status"], "succeeded",
        "a disabled policy runs on demand"
    );
    // Once the policy may run again, its last chain has ended: it had no catalog check.
    loop {
        let (status, answer) = server.post(&server.writer, "/v1/policies/site/run").await;
        if status == StatusCode::ACCEPTED {
            server.wait_job(answer["job"]["id"].as_str().unwrap()).await;
            break;
        }
        assert_eq!(status, StatusCode::CONFLICT, "{answer}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        children(&server, third["id"].as_str().unwrap(), "catalog")
            .await
            .is_empty(),
        "catalog checks off"
    );
    assert_eq!(server.ids("?series=site").await.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folders_outside_the_roots_are_refused_and_never_read() {
    let roots = roots();
    let root = roots.root.clone();
    let server = Server::start_with(|config| config.policies.roots = vec![root]).await;
    let create = |name: &str, path: &Path| json!({"name": name, "series": name, "source": {"kind": "folders", "paths": [path]}});
    for (name, path, why) in [
        ("etc", PathBuf::from("/etc"), "outside"),
        ("outside", roots.outside.clone(), "outside"),
        ("link", roots.root.join("link"), "symbolic link"),
        ("through", roots.root.join("link/deeper"), "symbolic link"),
    ] {
        let (status, error) = server
            .send_json(
                reqwest::Method::POST,
                &server.admin,
                "/v1/policies",
                &create(name, &path),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{name}: {error}");
        let message = error["error"]["message"].as_str().unwrap();
        assert!(message.contains(why), "{name}: {message}");
    }
    for body in [
        json!({"name": "rel", "series": "s", "source": {"kind": "folders", "paths": ["www"]}}),
        json!({"name": "dots", "series": "s", "source": {"kind": "folders", "paths": [roots.root.join("www/../db")]}}),
        json!({"name": "none", "series": "s", "source": {"kind": "folders", "paths": []}}),
        json!({"name": "bad series", "series": "s", "source": {"kind": "folders", "paths": [roots.root.join("www")]}}),
        json!({"name": "x", "series": "a/b", "source": {"kind": "folders", "paths": [roots.root.join("www")]}}),
        json!({"name": "x", "series": "s", "schedule": "nope", "source": {"kind": "folders", "paths": [roots.root.join("www")]}}),
        json!({"name": "x", "series": "s", "retention": {"keep_last": 0}, "source": {"kind": "folders", "paths": [roots.root.join("www")]}}),
        json!({"name": "x", "series": "s", "source": {"kind": "folders", "paths": [roots.root.join("www")], "exclude": ["a["]}}),
        json!({"name": "x", "series": "s", "source": {"kind": "tape"}}),
    ] {
        let (status, error) = server
            .send_json(reqwest::Method::POST, &server.admin, "/v1/policies", &body)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {error}");
    }
    let (status, error) = server
        .send_json(
            reqwest::Method::POST,
            &server.admin,
            "/v1/policies",
            &json!({"name": "cmd", "series": "cmd", "source": {"kind": "command", "argv": ["cat", "/etc/passwd"]}}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "commands are off: {error}");

    // A folder that became a link after the policy was stored is refused at run time.
    let moving = roots.root.join("moving");
    std::fs::create_dir(&moving).unwrap();
    let (status, error) = server
        .send_json(
            reqwest::Method::POST,
            &server.admin,
            "/v1/policies",
            &create("moving", &moving),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{error}");
    std::fs::remove_dir(&moving).unwrap();
    std::os::unix::fs::symlink(&roots.outside, &moving).unwrap();
    let (status, error) = server.post(&server.writer, "/v1/policies/moving/run").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{error}");
    assert_eq!(server.total("?series=moving").await, 0);
    let (status, _) = server.post(&server.reader, "/v1/policies/moving/run").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a reader runs nothing");
    let (status, _) = server
        .post(&server.writer, "/v1/policies/nothing/run")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_policies_store_the_output_or_nothing_and_never_overlap() {
    let server = Server::start_with(|config| config.policies.allow_commands = true).await;
    let command = |name: &str, script: &str| json!({"name": name, "series": name, "source": {"kind": "command", "argv": ["sh", "-c", script]}});
    for (name, script) in [
        ("dump", "printf 'dump %s' 42"),
        (
            "broken",
            "printf partial; echo 'no such database' >&2; exit 3",
        ),
        ("slow", "sleep 30; echo late"),
    ] {
        let (status, created) = server
            .send_json(
                reqwest::Method::POST,
                &server.admin,
                "/v1/policies",
                &command(name, script),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
    }
    let dump = run_policy(&server, "dump").await;
    assert_eq!(dump["status"], "succeeded", "{dump}");
    let backup = dump["result"]["backup"].as_str().unwrap();
    assert_eq!(server.download(backup).await, b"dump 42");

    let broken = run_policy(&server, "broken").await;
    assert_eq!(broken["status"], "failed", "{broken}");
    assert!(
        broken["error"]
            .as_str()
            .unwrap()
            .contains("no such database"),
        "{broken}"
    );
    assert_eq!(server.total("?series=broken").await, 0, "nothing committed");

    let (status, running) = server.post(&server.writer, "/v1/policies/slow/run").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{running}");
    let (status, again) = server.post(&server.writer, "/v1/policies/slow/run").await;
    assert_eq!(status, StatusCode::CONFLICT, "{again}");
    let id = running["job"]["id"].as_str().unwrap();
    let (status, _) = server
        .post(&server.writer, &format!("/v1/jobs/{id}/cancel"))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let cancelled = server.wait_job(id).await;
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    assert_eq!(server.total("?series=slow").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_that_fires_runs_its_enabled_policies() {
    let roots = roots();
    let root = roots.root.clone();
    let server = Server::start_with(|config| config.policies.roots = vec![root]).await;
    for (name, crontab) in [("minutely", "* * * * *"), ("never", "0 0 1 1 * 2001")] {
        let (status, body) = server
            .send_json(
                reqwest::Method::POST,
                &server.writer,
                "/v1/schedules",
                &json!({"name": name, "crontab": crontab}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let www = roots.root.join("www");
    for (name, schedule, enabled) in [
        ("fires", "minutely", true),
        ("off", "minutely", false),
        ("past", "never", true),
    ] {
        let (status, body) = server
            .send_json(
                reqwest::Method::POST,
                &server.admin,
                "/v1/policies",
                &json!({"name": name, "series": name, "schedule": schedule, "enabled": enabled,
                        "source": {"kind": "folders", "paths": [www]}}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["next_run"].is_string(), name == "fires", "{body}");
    }
    // A scheduled policy whose folder vanished: its refused run is a failed job.
    let vanishing = roots.root.join("vanishing");
    std::fs::create_dir(&vanishing).unwrap();
    let (status, body) = server
        .send_json(
            reqwest::Method::POST,
            &server.admin,
            "/v1/policies",
            &json!({"name": "vanished", "series": "vanished", "schedule": "minutely",
                    "source": {"kind": "folders", "paths": [vanishing]}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    std::fs::remove_dir(&vanishing).unwrap();
    // Two minutes on: the minutely schedule fired at least once since the last look.
    let runner = server.server.as_ref().unwrap().state().policies.clone();
    let problems = runner
        .run_due(chrono::Utc::now() + chrono::Duration::minutes(2))
        .unwrap_err();
    assert!(problems.contains("vanished"), "{problems}");
    assert!(!problems.contains("fires"), "{problems}");
    let (_, policy) = server.get(&server.reader, "/v1/policies/vanished").await;
    let (_, job) = server
        .get(
            &server.reader,
            &format!("/v1/jobs/{}", policy["last_job"].as_str().unwrap()),
        )
        .await;
    assert_eq!(job["status"], "failed", "{job}");
    assert!(
        job["error"].as_str().unwrap().contains("vanishing"),
        "{job}"
    );
    let (_, policy) = server.get(&server.reader, "/v1/policies/fires").await;
    let job = server.wait_job(policy["last_job"].as_str().unwrap()).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert!(
        job["subject"].as_str().unwrap().contains("scheduled"),
        "{job}"
    );
    assert_eq!(server.total("?series=fires").await, 1);
    for quiet in ["off", "past"] {
        let (_, policy) = server
            .get(&server.reader, &format!("/v1/policies/{quiet}"))
            .await;
        assert_eq!(policy["last_job"], Value::Null, "{policy}");
    }
    let (_, scheduler) = server.get(&server.reader, "/v1/scheduler").await;
    assert!(
        scheduler["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "policies"),
        "{scheduler}"
    );
}
