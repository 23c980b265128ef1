//! CyBorgBackup's policies, jobs, catalogs and stats on the core: its API tests 16–18
//! and 34–40 (the calendar compared with tzcron 1.0.0 itself), then end to end: a
//! folders policy launched on the local client backs up exactly the files on disk (as
//! its escatalog shows), a second launch with `keep_hourly` 1 prunes the first, a
//! folder outside the roots is refused and never read, and the jobs, their stdout,
//! cancel, delete and the stats follow.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use super::{Auth, Cb, AUTHS};

/// Tzcron's calendar of the current UTC month, as `isoformat()` strings.
fn tzcron_month(crontab: &str) -> Vec<String> {
    let venv = crate::support::python_venv(
        "tzcron",
        &["tzcron==1.0.0", "pytz", "python-dateutil", "six"],
    );
    let script = r#"
import calendar, datetime as dt, json, sys
import pytz, tzcron
now = dt.datetime.now(pytz.utc)
start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
last = calendar.monthrange(now.year, now.month)[1]
end = now.replace(day=last, hour=23, minute=59, second=50, microsecond=0)
json.dump([t.isoformat() for t in tzcron.Schedule(sys.argv[1], pytz.utc, start, end)], sys.stdout)
"#;
    let output = std::process::Command::new(venv.join("bin/python"))
        .args(["-c", script, crontab])
        .output()
        .expect("python");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

async fn demo_policy(cb: &Cb) {
    let policy = json!({"name": "Demo Policy", "policy_type": "rootfs", "schedule": 1,
        "repository": 1, "enabled": false});
    assert_eq!(
        cb.post(Auth::Basic, "/api/v1/policies/", policy).await["id"],
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cyborgbackup_policy_tests_pass_with_basic_token_and_jwt() {
    // rootfs and config read folders under /: the roots allow them (nothing runs).
    let cb = Cb::start_with(|config| config.policies.roots = vec![PathBuf::from("/")]).await;
    cb.fixtures().await;
    demo_policy(&cb).await;
    let expected = tokio::task::spawn_blocking(|| tzcron_month("0 5 * * MON *"))
        .await
        .unwrap();
    for auth in AUTHS {
        // 16–18, on the fixtures alone.
        assert_eq!(cb.count(auth, "/api/v1/policies/").await, 1);
        assert_eq!(cb.count(auth, "/api/v1/catalogs/").await, 0);
        assert_eq!(cb.get(auth, "/api/v1/stats/").await, json!([]));
    }
    for auth in AUTHS {
        // 34–36
        let demo = cb.get(auth, "/api/v1/policies/1/").await;
        assert_eq!(demo["name"], "Demo Policy");
        assert_eq!(demo["enabled"], false);
        assert_eq!(demo["policy_type"], "rootfs");
        assert_eq!(demo["type"], "policy");
        assert!(demo["related"]["launch"]
            .as_str()
            .unwrap()
            .ends_with("/api/v1/policies/1/launch/"));
        assert_eq!(demo["summary_fields"]["schedule"]["name"], "Demo Schedule");
        assert_eq!(demo["next_run"], Value::Null);
        assert_eq!(cb.get(auth, "/api/v1/policies/vmmodule/").await, json!([]));
        let calendar = cb.get(auth, "/api/v1/policies/1/calendar/").await;
        assert_eq!(calendar, json!(expected));
        // 37–40
        let body = json!({"name": "Test Create Policy", "policy_type": "config",
            "schedule": 1, "repository": 1, "clients": [1]});
        let made = cb.post(auth, "/api/v1/policies/", body.clone()).await;
        assert_eq!(made["name"], "Test Create Policy");
        assert_eq!(made["policy_type"], "config");
        assert_eq!(made["enabled"], true);
        assert_eq!(made["clients"], json!([1]));
        assert_ne!(cb.count(auth, "/api/v1/policies/").await, 0);
        let path = format!("/api/v1/policies/{}/", made["id"]);
        let (status, patched) = cb
            .as_admin(auth, Method::PATCH, &path, Some(json!({"enabled": false})))
            .await;
        assert_eq!(status, StatusCode::OK, "{patched}");
        assert_eq!(patched["id"], made["id"]);
        assert_eq!(patched["name"], made["name"]);
        assert!(patched["url"].as_str().unwrap().ends_with(&path));
        assert_eq!(patched["enabled"], false);
        super::delete_keeps_count(&cb, auth, "/api/v1/policies/", body).await;
    }
    // Choices, references and unsupported types.
    for (body, field, message) in [
        (
            json!({"name": "x", "policy_type": "nope", "schedule": 1, "repository": 1}),
            "policy_type",
            "\"nope\" is not a valid choice.",
        ),
        (
            json!({"name": "x", "policy_type": "config", "schedule": 9, "repository": 1}),
            "schedule",
            "Invalid pk \"9\" - object does not exist.",
        ),
        (
            json!({"name": "x", "policy_type": "config", "schedule": 1, "repository": 1, "clients": [7]}),
            "clients",
            "Invalid pk \"7\" - object does not exist.",
        ),
        (
            json!({"policy_type": "config", "schedule": 1, "repository": 1}),
            "name",
            "This field is required.",
        ),
    ] {
        let (status, answer) = cb
            .as_admin(Auth::Basic, Method::POST, "/api/v1/policies/", Some(body))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert_eq!(answer[field], json!([message]), "{answer}");
    }
    let (status, answer) = cb
        .as_admin(
            Auth::Basic,
            Method::POST,
            "/api/v1/policies/",
            Some(json!({"name": "v", "policy_type": "vm", "schedule": 1, "repository": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(answer["policy_type"][0]
        .as_str()
        .unwrap()
        .contains("not supported by this server yet"));
    // A disabled client cannot be launched; another host's job waits for its agent.
    let (status, answer) = cb
        .as_admin(
            Auth::Basic,
            Method::POST,
            "/api/v1/policies/1/launch/",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    cb.post(Auth::Basic, "/api/v1/clients/", json!({"hostname": "web1"}))
        .await;
    let (status, _) = cb
        .as_admin(
            Auth::Basic,
            Method::PATCH,
            "/api/v1/policies/1/",
            Some(json!({"clients": [2]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, answer) = cb
        .as_admin(
            Auth::Basic,
            Method::POST,
            "/api/v1/policies/1/launch/",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    assert_eq!(answer["status"], "pending", "{answer}");
    assert_eq!(answer["summary_fields"]["client"]["hostname"], "web1");
    let cancel = format!("/api/v1/jobs/{}/cancel/", answer["id"]);
    let (status, _) = cb.as_admin(Auth::Basic, Method::POST, &cancel, None).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(finished(&cb, &answer).await["status"], "canceled");
    let defaults = cb.get(Auth::Basic, "/api/v1/policies/1/launch/").await;
    assert_eq!(
        defaults,
        json!({"defaults": {"verbosity": 0, "extra_vars": ""}})
    );
}

/// Every path under `dir` (itself included) as borg's catalog writes it.
pub(super) fn borg_paths(dir: &Path, out: &mut Vec<String>) {
    out.push(dir.to_str().unwrap().trim_start_matches('/').to_string());
    let meta = std::fs::symlink_metadata(dir).unwrap();
    if meta.is_dir() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if std::fs::symlink_metadata(&path).unwrap().is_dir() {
                borg_paths(&path, out);
            } else {
                out.push(path.to_str().unwrap().trim_start_matches('/').to_string());
            }
        }
    }
}

pub(super) async fn finished(cb: &Cb, job: &Value) -> Value {
    let path = format!("/api/v1/jobs/{}/", job["id"]);
    for _ in 0..600 {
        let job = cb.get(Auth::Basic, &path).await;
        if !matches!(job["status"].as_str(), Some("pending" | "running")) {
            return job;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{path} did not finish");
}

/// The job that follows `job` in its chain, once it succeeded.
pub(super) async fn next_in_chain(cb: &Cb, job: &Value) -> Value {
    for _ in 0..600 {
        let job = cb
            .get(Auth::Basic, &format!("/api/v1/jobs/{}/", job["id"]))
            .await;
        if let Some(id) = job["dependent_jobs"].as_u64() {
            let candidate = cb.get(Auth::Basic, &format!("/api/v1/jobs/{id}/")).await;
            if candidate["status"] == "successful" {
                return candidate;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no job followed {}", job["id"]);
}

pub(super) async fn escatalog(cb: &Cb, archive: &Value) -> Value {
    cb.get(
        Auth::Basic,
        &format!(
            "/api/v1/escatalogs/?archive_name={}&path__regexp=.*",
            archive.as_str().unwrap()
        ),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_launched_folders_policy_backs_up_its_files_and_prunes_by_keep_hourly() {
    let roots = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(roots.path()).unwrap();
    let outside = tempfile::tempdir().unwrap();
    let outside = std::fs::canonicalize(outside.path()).unwrap();
    std::fs::write(outside.join("secret.txt"), b"never read").unwrap();
    let data = root.join("data");
    std::fs::create_dir_all(data.join("sub/deeper")).unwrap();
    std::fs::write(data.join("a.txt"), b"alpha").unwrap();
    std::fs::write(data.join("sub/b.bin"), vec![7u8; 100_000]).unwrap();
    std::fs::write(data.join("sub/deeper/c"), b"").unwrap();
    std::os::unix::fs::symlink(&outside, data.join("away")).unwrap();
    let cb = Cb::start_with(|config| {
        config.policies.roots = vec![root.clone()];
        config.dialects.cyborgbackup.cleanup_interval_secs = 1;
    })
    .await;
    cb.fixtures().await;
    let auth = Auth::Basic;
    let (status, _) = cb
        .as_admin(
            auth,
            Method::PATCH,
            "/api/v1/clients/1/",
            Some(json!({"enabled": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // Outside the roots: refused on extra_vars with the core's reason.
    let outside_vars = json!({"folders": [outside]}).to_string();
    let (status, answer) = cb
        .as_admin(
            auth,
            Method::POST,
            "/api/v1/policies/",
            Some(
                json!({"name": "Away", "policy_type": "folders", "schedule": 1,
                "repository": 1, "clients": [1], "extra_vars": outside_vars}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(
        answer["extra_vars"][0]
            .as_str()
            .unwrap()
            .contains("outside"),
        "{answer}"
    );
    // Hooks would be skipped silently: refused.
    let (status, answer) = cb
        .as_admin(
            auth,
            Method::POST,
            "/api/v1/policies/",
            Some(
                json!({"name": "Hooked", "policy_type": "folders", "schedule": 1,
                "repository": 1, "clients": [1], "prehook": "systemctl stop db",
                "extra_vars": json!({"folders": [data]}).to_string()}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(
        answer["prehook"][0].as_str().unwrap().contains("no hooks"),
        "{answer}"
    );
    let policy = cb
        .post(
            auth,
            "/api/v1/policies/",
            json!({"name": "Data", "policy_type": "folders", "schedule": 1,
                "repository": 1, "clients": [1], "keep_hourly": 1,
                "extra_vars": json!({"folders": [data]}).to_string()}),
        )
        .await;
    let launch = format!("/api/v1/policies/{}/launch/", policy["id"]);
    let first = cb.post(auth, &launch, json!({})).await;
    assert_eq!(first["job"], first["id"]);
    assert_eq!(first["job_type"], "job");
    assert_eq!(first["launch_type"], "manual");
    let first = finished(&cb, &first).await;
    assert_eq!(first["status"], "successful", "{first}");
    assert_eq!(first["failed"], false);
    assert!(
        first["original_size"].as_u64().unwrap() >= 100_005,
        "{first}"
    );
    let archive = first["archive_name"].clone();
    assert!(
        archive.as_str().unwrap().starts_with("folders-localhost-"),
        "{archive}"
    );
    // The repository's figures are its archives': one so far.
    let repository = cb.get(auth, "/api/v1/repositories/1/").await;
    assert_eq!(repository["ready"], true, "{repository}");
    assert_eq!(repository["original_size"], first["original_size"]);
    assert_eq!(repository["deduplicated_size"], first["deduplicated_size"]);
    let compressed = repository["compressed_size"].as_u64().unwrap();
    assert!(
        compressed > 0 && compressed < first["original_size"].as_u64().unwrap(),
        "{repository}"
    );
    // The client is this server (ready) and lists the policies that name it.
    let client = cb.get(auth, "/api/v1/clients/1/").await;
    assert_eq!(client["ready"], true, "{client}");
    let linked = client["summary_fields"]["policies"].as_array().unwrap();
    assert!(
        linked.contains(&json!({"id": policy["id"], "name": "Data"})),
        "{client}"
    );
    // Its output, as text and as one event per line.
    let stdout = cb
        .client
        .get(format!("{}/api/v1/jobs/{}/stdout/", cb.base, first["id"]))
        .header("authorization", cb.header(auth))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(stdout.contains(archive.as_str().unwrap()), "{stdout}");
    let events = cb
        .get(
            auth,
            &format!("/api/v1/jobs/{}/job_events/?order_by=counter", first["id"]),
        )
        .await;
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(events["count"], lines.len(), "{events}");
    let shown: Vec<&str> = events["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["stdout"].as_str().unwrap())
        .collect();
    assert_eq!(shown, lines);
    let one = &events["results"][0];
    assert_eq!(one["job"], first["id"]);
    assert_eq!(one["counter"], 1);
    assert_eq!(one["event"], "verbose");
    assert_eq!(one["type"], "job_event");
    assert_eq!(
        cb.get(auth, &format!("/api/v1/job_events/{}/", one["id"]))
            .await,
        *one
    );
    let all = cb.get(auth, "/api/v1/job_events/").await;
    assert!(
        all["count"].as_u64().unwrap() >= lines.len() as u64,
        "{all}"
    );
    let (status, _) = cb
        .as_admin(auth, Method::GET, "/api/v1/job_events/99990001/", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let cancel = format!("/api/v1/jobs/{}/cancel/", first["id"]);
    assert_eq!(cb.get(auth, &cancel).await, json!({"can_cancel": false}));
    let (status, _) = cb.as_admin(auth, Method::POST, &cancel, None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    // Exactly the files on disk, borg's paths, sorted; the link stays a link.
    let mut expected = Vec::new();
    borg_paths(&data, &mut expected);
    expected.sort();
    let catalog = escatalog(&cb, &archive).await;
    let paths: Vec<&str> = catalog["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, expected);
    assert_eq!(catalog["count"], expected.len());
    let entry = |path: &str| {
        catalog["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["path"].as_str().unwrap().ends_with(path))
            .unwrap()
            .clone()
    };
    assert_eq!(entry("data/a.txt")["type"], "-");
    assert_eq!(entry("data/a.txt")["size"], 5);
    assert_eq!(entry("data/away")["type"], "l");
    assert_eq!(entry("data/sub")["type"], "d");
    assert!(entry("data/sub")["mode"].as_str().unwrap().starts_with('d'));
    assert!(!paths.iter().any(|p| p.contains("secret")));
    let only = cb
        .get(
            auth,
            &format!(
                "/api/v1/escatalogs/?archive_name={}&path__regexp=.*/sub/.*",
                archive.as_str().unwrap()
            ),
        )
        .await;
    assert_eq!(only["count"], 3, "{only}");
    // The second run prunes the first (one per hour kept).
    let second = cb.post(auth, &launch, json!({})).await;
    let second = finished(&cb, &second).await;
    assert_eq!(second["status"], "successful", "{second}");
    assert_ne!(second["archive_name"], archive);
    // The chain: backup → catalog → prune, each the master job of the next.
    let catalog = next_in_chain(&cb, &second).await;
    assert_eq!(catalog["job_type"], "catalog", "{catalog}");
    assert_eq!(catalog["master_job"], second["id"]);
    assert!(
        catalog["name"]
            .as_str()
            .unwrap()
            .starts_with("Catalog Job Data"),
        "{catalog}"
    );
    let prune = next_in_chain(&cb, &catalog).await;
    assert_eq!(prune["job_type"], "prune", "{prune}");
    assert_eq!(prune["master_job"], catalog["id"]);
    assert_eq!(escatalog(&cb, &archive).await["count"], 0);
    let (status, answer) = cb
        .as_admin(
            auth,
            Method::POST,
            "/api/v1/restore/",
            Some(json!({"archive_name": archive, "destination": "localhost",
                "dest_folder": root.join("restored")})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(answer["archive_name"][0].is_string(), "{answer}");
    assert_eq!(
        escatalog(&cb, &second["archive_name"]).await["count"],
        expected.len()
    );
    // The repository now holds the second archive alone.
    let repository = cb.get(auth, "/api/v1/repositories/1/").await;
    assert_eq!(repository["original_size"], second["original_size"]);
    // The cleanup forgets the first backup job, whose archive was pruned, and nothing
    // else.
    let first_path = format!("/api/v1/jobs/{}/", first["id"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (status, _) = cb.as_admin(auth, Method::GET, &first_path, None).await;
        if status == StatusCode::NOT_FOUND {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the first backup job is still listed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    for kept in [&second, &catalog, &prune] {
        let (status, _) = cb
            .as_admin(
                auth,
                Method::GET,
                &format!("/api/v1/jobs/{}/", kept["id"]),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{kept}");
    }
    let stats = cb.get(auth, "/api/v1/stats/").await;
    assert_eq!(stats.as_array().unwrap().len(), 1, "{stats}");
    assert_eq!(stats[0]["success"], 1);
    assert_eq!(stats[0]["failed"], 0);
    assert!(stats[0]["size"].as_u64().unwrap() >= 100_005);
    // A finished job can be deleted.
    let path = format!("/api/v1/jobs/{}/", catalog["id"]);
    let (status, _) = cb.as_admin(auth, Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = cb.as_admin(auth, Method::GET, &path, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, answer) = cb
        .as_admin(
            auth,
            Method::POST,
            "/api/v1/restore/",
            Some(
                json!({"archive_name": second["archive_name"], "destination": "localhost",
                "dest_folder": "/tmp/x"}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(
        answer["dest_folder"][0]
            .as_str()
            .unwrap()
            .contains("outside"),
        "{answer}"
    );
}
