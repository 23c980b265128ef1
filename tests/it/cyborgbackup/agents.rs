//! CyBorgBackup clients other than the server itself, through their agent: a launched
//! folders policy of a client host is backed up by that host's `stowage agent` (the real
//! CLI), its catalog listed in escatalogs; archives restored onto the client (one item,
//! a dry run) and onto the server itself (inside the roots only); a client whose agent
//! never asks for work fails its job, saying why.

use std::path::Path;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use stowage::service::keys::Role;

use super::policies::{borg_paths, escatalog, finished, next_in_chain};
use super::{Auth, Cb};
use crate::server::agents::start_agent;
use crate::server::tree_sessions::{snapshot, write};

/// Every path of `catalog`'s results.
fn paths(catalog: &Value) -> Vec<String> {
    catalog["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap().to_string())
        .collect()
}

async fn restore(cb: &Cb, body: Value) -> (StatusCode, Value) {
    cb.as_admin(Auth::Basic, Method::POST, "/api/v1/restore/", Some(body))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_hosts_policy_runs_through_its_agent_and_restores_there() {
    let work = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(work.path()).unwrap();
    let site = root.join("web1/site");
    write(&site.join("docs/a.txt"), b"alpha\n", 0o644);
    write(&site.join("docs/sub/b.txt"), &vec![b'b'; 70_000], 0o600);
    write(&site.join("data/c.bin"), &vec![9u8; 300_000], 0o644);
    write(&site.join("data/skip.tmp"), b"left out", 0o644);
    std::os::unix::fs::symlink("../docs/a.txt", site.join("data/link")).unwrap();
    let here = root.join("here");
    std::fs::create_dir_all(&here).unwrap();

    let cb = Cb::start_with(|config| {
        config.policies.roots = vec![here.clone()];
        config.agent_claim_timeout_secs = 4;
        config.dialects.cyborgbackup.local_hostname = Some("backup-server".into());
    })
    .await;
    cb.fixtures().await;
    let auth = Auth::Basic;
    for host in ["web1", "ghost", "backup-server"] {
        cb.post(auth, "/api/v1/clients/", json!({"hostname": host}))
            .await;
    }
    let state = cb.server.as_ref().unwrap().state();
    let (_, agent_key) = state.keys.create("web1 agent", Role::Backup).unwrap();
    let _agent = start_agent(&cb.base, &agent_key, "web1", &root.join("web1"));

    // A piped policy runs a command, which only the server does.
    let (status, answer) = cb
        .as_admin(
            auth,
            Method::POST,
            "/api/v1/policies/",
            Some(
                json!({"name": "Pipe", "policy_type": "piped", "schedule": 1,
                "repository": 1, "clients": [2], "extra_vars": "{\"command\": \"date\"}"}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(
        answer["policy_type"][0]
            .as_str()
            .unwrap()
            .contains("folders only"),
        "{answer}"
    );

    // The client's folders, backed up by its agent, outside the server's roots.
    let vars = json!({"folders": [site], "exclude": ["*.tmp"]}).to_string();
    let policy = cb
        .post(
            auth,
            "/api/v1/policies/",
            json!({"name": "Site", "policy_type": "folders", "schedule": 1,
                "repository": 1, "clients": [2], "extra_vars": vars}),
        )
        .await;
    let launch = format!("/api/v1/policies/{}/launch/", policy["id"]);
    let job = cb.post(auth, &launch, json!({})).await;
    assert_eq!(job["summary_fields"]["client"]["hostname"], "web1", "{job}");
    let job = finished(&cb, &job).await;
    assert_eq!(job["status"], "successful", "{job}");
    assert!(job["original_size"].as_u64().unwrap() >= 370_006, "{job}");
    let archive = job["archive_name"].clone();
    assert!(
        archive.as_str().unwrap().starts_with("folders-web1-"),
        "{archive}"
    );
    // Its catalog is read back and checked in the job after it.
    let catalog = next_in_chain(&cb, &job).await;
    assert_eq!(catalog["job_type"], "catalog", "{catalog}");
    assert_eq!(catalog["summary_fields"]["client"]["hostname"], "web1");
    let mut expected = Vec::new();
    borg_paths(&site, &mut expected);
    expected.retain(|p| !p.ends_with(".tmp"));
    expected.sort();
    assert_eq!(paths(&escatalog(&cb, &archive).await), expected);

    // One item restored onto the client, at its place under dest_folder.
    let item = site.join("docs").to_str().unwrap().to_string();
    let target = root.join("web1/restored");
    let (status, answer) = restore(
        &cb,
        json!({"archive_name": archive, "destination": "web1",
            "dest_folder": target, "item": item}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    assert_eq!(answer["job_type"], "restore", "{answer}");
    assert!(
        answer["name"]
            .as_str()
            .unwrap()
            .starts_with("Restore Job Site web1"),
        "{answer}"
    );
    let done = finished(&cb, &answer).await;
    assert_eq!(done["status"], "successful", "{done}");
    let inside = |base: &Path, path: &Path| base.join(path.strip_prefix("/").unwrap());
    assert_eq!(
        snapshot(&inside(&target, &site.join("docs"))),
        snapshot(&site.join("docs"))
    );
    assert!(!inside(&target, &site.join("data")).exists());

    // A dry run writes nothing.
    let dry = root.join("web1/dry");
    let (status, answer) = restore(
        &cb,
        json!({"archive_name": archive, "destination": "web1",
            "dest_folder": dry, "dry_run": true}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    assert_eq!(finished(&cb, &answer).await["status"], "successful");
    assert!(!dry.exists());

    // Onto the server itself (its configured host name): inside the roots only.
    let (status, answer) = restore(
        &cb,
        json!({"archive_name": archive, "destination": "backup-server",
            "dest_folder": root.join("web1/elsewhere")}),
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
    let local = here.join("restored");
    let (status, answer) = restore(
        &cb,
        json!({"archive_name": archive, "destination": "backup-server",
            "dest_folder": local}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let done = finished(&cb, &answer).await;
    assert_eq!(done["status"], "successful", "{done}");
    let mut kept = snapshot(&site);
    kept.retain(|(path, _, _)| !path.ends_with(".tmp"));
    assert_eq!(snapshot(&inside(&local, &site)), kept);

    // Unknown archives and clients are named.
    let (status, answer) = restore(
        &cb,
        json!({"archive_name": "folders-web1-1999", "destination": "web1", "dest_folder": target}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(answer["archive_name"][0].is_string(), "{answer}");
    let (status, answer) = restore(
        &cb,
        json!({"archive_name": archive, "destination": "nobody", "dest_folder": target}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(answer["destination"][0].is_string(), "{answer}");

    // Catalog checks follow cyborgbackup_catalog_enabled: off, the client's core policy
    // has none once the policy is next saved.
    let core_policy = format!("/v1/policies/cyborgbackup-{}-2", policy["id"]);
    let core_view = |cb: &Cb| {
        let request = cb
            .client
            .get(format!("{}{core_policy}", cb.base))
            .bearer_auth(&cb.key);
        async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    assert_eq!(core_view(&cb).await["catalog_check"], true);
    let (status, _) = cb
        .as_admin(
            auth,
            Method::PATCH,
            "/api/v1/settings/3/",
            Some(json!({"value": "False"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = cb
        .as_admin(
            auth,
            Method::PATCH,
            &format!("/api/v1/policies/{}/", policy["id"]),
            Some(json!({"enabled": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let view = core_view(&cb).await;
    assert_eq!(view["catalog_check"], false, "{view}");
    assert_eq!(view["source"]["kind"], "agent", "{view}");

    // A client whose agent never comes: its job waits, then fails saying so.
    let ghost = cb
        .post(
            auth,
            "/api/v1/policies/",
            json!({"name": "Ghost", "policy_type": "config", "schedule": 1,
                "repository": 1, "clients": [3]}),
        )
        .await;
    let job = cb
        .post(
            auth,
            &format!("/api/v1/policies/{}/launch/", ghost["id"]),
            json!({}),
        )
        .await;
    assert_eq!(job["status"], "pending", "{job}");
    let job = finished(&cb, &job).await;
    assert_eq!(job["status"], "failed", "{job}");
    let reason = job["result_traceback"].as_str().unwrap();
    assert!(
        reason.contains("no agent of host ghost") && reason.contains("stowage agent"),
        "{job}"
    );
    // Ready: the host whose agent asks for work; not the one whose agent never came.
    assert_eq!(cb.get(auth, "/api/v1/clients/2/").await["ready"], true);
    assert_eq!(cb.get(auth, "/api/v1/clients/3/").await["ready"], false);
}
