//! `stowage restore --server`: a tree backup made by the server (a folder policy) restored
//! onto this machine through the API, files, folders, modes, times and links as they were.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use reqwest::StatusCode;
use serde_json::json;

use super::{random_bytes, Server};

fn write(path: &Path, data: &[u8], mode: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tree_backup_restores_through_the_server() {
    let roots = tempfile::tempdir().unwrap();
    let root = roots.path().canonicalize().unwrap();
    let site = root.join("site");
    write(&site.join("index.html"), b"<p>hello</p>", 0o644);
    write(&site.join("bin/run.sh"), b"#!/bin/sh\necho hi\n", 0o755);
    write(&site.join("data/big.bin"), &random_bytes(3 << 20, 8), 0o600);
    write(&site.join("data/empty"), b"", 0o644);
    std::os::unix::fs::symlink("../index.html", site.join("data/home")).unwrap();
    let server = Server::start_with(|config| config.policies.roots = vec![root.clone()]).await;
    let (status, body) = server
        .send_json(
            reqwest::Method::POST,
            &server.admin,
            "/v1/policies",
            &json!({"name": "site", "series": "site",
                    "source": {"kind": "folders", "paths": [site]}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, run) = server.post(&server.writer, "/v1/policies/site/run").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{run}");
    let job = server.wait_job(run["job"]["id"].as_str().unwrap()).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let id = server.ids("?series=site").await.pop().expect("a backup");

    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("restored");
    let (base_url, key) = (server.base.clone(), server.reader.clone());
    let run = move |target: std::path::PathBuf| {
        let (base_url, key, id) = (base_url.clone(), key.clone(), id.clone());
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_stowage"))
                .args(["restore", "--server", &base_url, &id, "--target"])
                .arg(target)
                .env("STOWAGE_KEY", key)
                .env_remove("STOWAGE_REPO")
                .output()
                .unwrap()
        })
    };
    let output = run(target.clone()).await.unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The backup's paths hold the folder as given: find where `site` landed.
    let base = walk_to(&target, "index.html").expect("index.html restored");
    for (name, mode) in [
        ("index.html", 0o644),
        ("bin/run.sh", 0o755),
        ("data/big.bin", 0o600),
        ("data/empty", 0o644),
    ] {
        let original = site.join(name);
        let copy = base.join(name);
        assert_eq!(
            std::fs::read(&copy).unwrap(),
            std::fs::read(&original).unwrap(),
            "{name}"
        );
        let meta = std::fs::metadata(&copy).unwrap();
        assert_eq!(meta.mode() & 0o7777, mode, "{name}");
        assert_eq!(
            meta.mtime(),
            std::fs::metadata(&original).unwrap().mtime(),
            "{name}"
        );
    }
    assert_eq!(
        std::fs::read_link(base.join("data/home")).unwrap(),
        Path::new("../index.html")
    );
    // A second restore into the same, now full, folder is refused.
    let again = run(target).await.unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));
}

/// The folder under `root` that holds `name`.
fn walk_to(root: &Path, name: &str) -> Option<std::path::PathBuf> {
    if root.join(name).is_file() {
        return Some(root.to_path_buf());
    }
    for entry in std::fs::read_dir(root).ok()? {
        let path = entry.ok()?.path();
        if path.is_dir() && !path.is_symlink() {
            if let Some(found) = walk_to(&path, name) {
                return Some(found);
            }
        }
    }
    None
}
