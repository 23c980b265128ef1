//! The web dashboard in a real headless Chromium (`ui_browser.py`, Selenium with
//! Debian's `chromium` and `chromium-driver`, which `.ci/run` installs): sign-in, the
//! overview's figures against `/v1`, a tar backup's folders and one file downloaded
//! byte-exact, a running job cancelled, a gc dry run, CSRF-less forms refused, and a
//! reader who cannot purge; any browser console error fails it.

use std::path::Path;

use futures::StreamExt;
use reqwest::{Body, StatusCode};
use serde_json::json;
use sha2::{Digest, Sha256};

use stowage::service::users::NewUser;

use super::{json_of, plain_tar, random_bytes, Server};
use crate::support::python_venv;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_in_a_real_browser() {
    for tool in [CHROMIUM, CHROMEDRIVER] {
        assert!(
            Path::new(tool).exists(),
            "{tool} is missing: install Debian's chromium and chromium-driver (.ci/run does)"
        );
    }
    let server = Server::start().await;
    let users = &server.server.as_ref().unwrap().state().users;
    let admin = NewUser {
        email: "admin@example.com".into(),
        superuser: true,
        ..NewUser::default()
    };
    let reader = NewUser {
        email: "reader@example.com".into(),
        ..NewUser::default()
    };
    users.create(admin, "admin-password-1").unwrap();
    users.create(reader, "reader-password-1").unwrap();

    let dir = tempfile::tempdir().unwrap();
    // An older backup in the series, which a keep-last-one policy would remove.
    let old = plain_tar(dir.path(), &[("old.txt", b"older\n".to_vec())]);
    let (status, body) = json_of(server.upload_raw("site", "?name=old.tar", old).await).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let data = random_bytes(700_000, 21);
    let tar = plain_tar(
        dir.path(),
        &[
            ("docs/readme.txt", b"read me\n".to_vec()),
            ("docs/deep/data.bin", data.clone()),
        ],
    );
    let (status, backup) = json_of(server.upload_raw("site", "?name=site.tar", tar).await).await;
    assert_eq!(status, StatusCode::CREATED, "{backup}");
    let backup_id = backup["id"].as_str().unwrap().to_string();
    let (status, body) = server
        .send_json(
            reqwest::Method::PUT,
            &server.writer,
            "/v1/series/site",
            &json!({"policy": {"keep_last": 1}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // A series longer than a page of the dashboard.
    for n in 0..53u64 {
        let (status, body) = json_of(
            server
                .upload_raw("many", "", random_bytes(100, 1000 + n))
                .await,
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }

    // An upload that keeps its job running until the browser cancels it: its body sends
    // a little, then waits.
    let (feed, body) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    feed.send(Ok(vec![1u8; 64 << 10])).await.unwrap();
    let stream = tokio_stream_of(body);
    let slow = tokio::spawn({
        let request = server
            .client
            .post(server.url("/v1/series/slow/backups?wait=false"))
            .bearer_auth(&server.writer)
            .body(Body::wrap_stream(stream));
        async move { request.send().await }
    });
    wait_for_running_upload(&server).await;

    let downloads = dir.path().join("downloads");
    std::fs::create_dir(&downloads).unwrap();
    let screenshots = std::env::var("STOWAGE_UI_SCREENSHOTS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| dir.path().join("screenshots"));
    std::fs::create_dir_all(&screenshots).unwrap();
    let config = json!({
        "base": server.base,
        "chromium": CHROMIUM,
        "chromedriver": CHROMEDRIVER,
        "downloads": downloads,
        "screenshots": screenshots,
        "admin_key": server.admin,
        "admin": {"email": "admin@example.com", "password": "admin-password-1"},
        "reader": {"email": "reader@example.com", "password": "reader-password-1"},
        "series": "site",
        "long_series": "many",
        // The test server's dialects: the defaults (tapu is off unless asked for).
        "dialects_on": ["dialect-fa", "dialect-wings", "dialect-backupchan", "dialect-cyborgbackup"],
        "backup_id": backup_id,
        "backup_size": backup["size"],
        "file_path": "docs/deep/data.bin",
        "file_sha256": hex::encode(Sha256::digest(&data)),
    });
    let config_path = dir.path().join("ui.json");
    std::fs::write(&config_path, config.to_string()).unwrap();
    let output = tokio::task::spawn_blocking(move || {
        let venv = python_venv("ui-venv", &["selenium==4.27.1", "requests==2.32.3"]);
        std::process::Command::new(venv.join("bin/python"))
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/ui_browser.py"))
            .arg(&config_path)
            .env("SE_OFFLINE", "true")
            .output()
            .expect("running ui_browser.py")
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "ui_browser.py failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    drop(feed);
    slow.abort();
    // The browser applied the series' keep-last-one policy: the older backup is recycled.
    assert_eq!(server.total("?series=site").await, 1);
    assert_eq!(server.total("?series=site&recycled=true").await, 1);
    // The upload the browser cancelled recorded nothing.
    assert_eq!(server.total("?series=slow").await, 0);
}

fn tokio_stream_of(
    mut receiver: tokio::sync::mpsc::Receiver<Result<Vec<u8>, std::io::Error>>,
) -> impl futures::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures::stream::poll_fn(move |cx| receiver.poll_recv(cx)).fuse()
}

async fn wait_for_running_upload(server: &Server) {
    for _ in 0..200 {
        let (_, jobs) = server.get(&server.reader, "/v1/jobs").await;
        let running = jobs["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|j| j["kind"] == "upload" && j["status"] == "running");
        if running {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the slow upload's job never ran");
}
