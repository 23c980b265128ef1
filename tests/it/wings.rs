//! The Wings dialect over real HTTP, played the way Wings plays it: announce an archive
//! with its size, PUT every part to the signed URLs answered (200 + quoted ETag), report
//! completion with the parts and the SHA-1, then download through a signed link as a
//! restore does. Two successive ~200 MiB archives with small changes (the second adds
//! little storage), then the error cases: credentials, query, signatures, part sizes,
//! retried parts, reports that do not match, failed uploads and expiry. The two archives
//! run on a local repository and on an S3 repository in the in-process S3 server.

use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use sha1::{Digest, Sha1};
use stowage::server::{self, ServerConfig};
use stowage::service::keys::{KeyStore, Role};

use crate::s3_server::S3Server;
use crate::support::{admin_key, random_bytes, serve_on_loopback};

const PART_SIZE: u64 = 32 << 20;

struct Wings {
    base: String,
    client: Client,
    admin: String,
    /// A writer key: what the Panel's node token is here.
    node: String,
    server: Option<stowage::server::RunningServer>,
    _guard: tokio::sync::RwLockReadGuard<'static, ()>,
}

impl Drop for Wings {
    fn drop(&mut self) {
        // Stops in the background; `stop` waits for it.
        if let Some(server) = &self.server {
            server.state().begin_shutdown();
        }
    }
}

impl Wings {
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

    async fn start(dir: &Path, configure: impl FnOnce(&mut ServerConfig)) -> Wings {
        let guard = super::server::MEMORY.read().await;
        let data_dir = dir.join("data");
        let mut config = ServerConfig {
            data_dir: data_dir.clone(),
            ..ServerConfig::default()
        };
        config.dialects.wings.part_size = PART_SIZE;
        configure(&mut config);
        let state = server::prepare(&config).await.expect("prepare");
        let admin = admin_key(&data_dir);
        let (_, node) = state.keys.create("wings-node", Role::Writer).unwrap();
        let (base, server) = serve_on_loopback(state).await;
        Wings {
            base,
            client: Client::new(),
            admin,
            node,
            server: Some(server),
            _guard: guard,
        }
    }

    fn panel(&self, method: reqwest::Method, uuid: &str, suffix: &str) -> reqwest::RequestBuilder {
        self.client
            .request(
                method,
                format!("{}/api/remote/backups/{uuid}{suffix}", self.base),
            )
            .bearer_auth(&self.node)
            .header("Accept", "application/vnd.pterodactyl.v1+json")
    }

    /// `GET ?size=`: the part URLs and part size.
    async fn announce(&self, uuid: &str, size: u64) -> (Vec<String>, u64) {
        let response = self
            .panel(reqwest::Method::GET, uuid, &format!("?size={size}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        let parts = body["parts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u.as_str().unwrap().to_string())
            .collect();
        (parts, body["part_size"].as_u64().unwrap())
    }

    /// One part PUT as Wings sends it.
    async fn put_part(&self, url: &str, bytes: Vec<u8>) -> reqwest::Response {
        self.client
            .put(url)
            .header("Content-Type", "application/x-gzip")
            .body(bytes)
            .send()
            .await
            .unwrap()
    }

    /// Uploads every part; answers the `{"etag","part_number"}` list Wings reports.
    async fn upload_parts(&self, urls: &[String], part_size: u64, data: &[u8]) -> Vec<Value> {
        let mut parts = Vec::new();
        for (i, url) in urls.iter().enumerate() {
            let start = i * part_size as usize;
            let end = (start + part_size as usize).min(data.len());
            let response = self.put_part(url, data[start..end].to_vec()).await;
            assert_eq!(response.status(), StatusCode::OK, "part {}", i + 1);
            let etag = response.headers()["etag"].to_str().unwrap().to_string();
            assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
            parts.push(json!({"etag": etag, "part_number": i + 1}));
        }
        parts
    }

    async fn report(&self, uuid: &str, body: Value) -> (StatusCode, Value) {
        let response = self
            .panel(reqwest::Method::POST, uuid, "")
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Wings' whole upload of one archive.
    async fn backup(&self, uuid: &str, data: &[u8]) {
        let (urls, part_size) = self.announce(uuid, data.len() as u64).await;
        assert_eq!(urls.len() as u64, (data.len() as u64).div_ceil(part_size));
        let parts = self.upload_parts(&urls, part_size, data).await;
        let (status, body) = self
            .report(
                uuid,
                json!({"checksum": sha1_hex(data), "checksum_type": "sha1",
                       "size": data.len(), "successful": true, "parts": parts}),
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    }

    async fn native(&self, path: &str) -> Value {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.admin)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        response.json().await.unwrap()
    }

    /// A signed download link from the native API.
    async fn download_url(&self, id: &str) -> String {
        let response = self
            .client
            .post(format!("{}/v1/backups/{id}/url?ttl=600", self.base))
            .bearer_auth(&self.admin)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        body["url"].as_str().unwrap().to_string()
    }

    /// Staging parts held for unfinished uploads.
    async fn staged_parts(&self) -> u64 {
        self.native("/v1/backups?series=wings-parts&recycled=true")
            .await["total"]
            .as_u64()
            .unwrap()
    }
}

fn sha1_hex(data: &[u8]) -> String {
    hex::encode(Sha1::digest(data))
}

/// Downloads like Wings' restore: the body must be gzip-typed and byte-exact.
async fn assert_restores(wings: &Wings, uuid: &str, data: &[u8]) {
    let url = wings.download_url(uuid).await;
    let response = wings.client.get(&url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/x-gzip");
    let body = response.bytes().await.unwrap();
    assert_eq!(body.len(), data.len());
    assert!(body == data, "downloaded bytes differ");
    let response = wings
        .panel(reqwest::Method::POST, uuid, "/restore")
        .json(&json!({"successful": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
}

/// An archive-like stream: incompressible, like the gzip Wings uploads.
fn archive(len: usize, seed: u64) -> Vec<u8> {
    random_bytes(len, seed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wings_two_successive_backups_dedup_and_restore_byte_exact() {
    let dir = tempfile::tempdir().unwrap();
    let wings = Wings::start(dir.path(), |_| {}).await;
    two_successive_backups(&wings).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wings_two_successive_backups_on_an_s3_repository() {
    let s3 = S3Server::start();
    let dir = tempfile::tempdir().unwrap();
    let wings = Wings::start(dir.path(), |config| {
        config.repo = Some("s3://wings-bucket/stowage".into());
        config.s3.endpoint = Some(s3.endpoint());
        config.s3.region = Some("us-east-1".into());
        config.s3.path_style = true;
        config.s3.access_key_id = Some(crate::s3_server::ACCESS_KEY.into());
        config.s3.secret_access_key = Some(crate::s3_server::SECRET_KEY.into());
    })
    .await;
    two_successive_backups(&wings).await;
    assert!(
        s3.stored_keys("wings-bucket")
            .iter()
            .any(|k| k.starts_with("stowage/packs/")),
        "the packs live in the bucket"
    );
}

async fn two_successive_backups(wings: &Wings) {
    let first = archive(200 << 20, 1);
    let uuid_a = "3f0c9a5e-8d21-4b7a-9c44-1e2f3a4b5c6d";
    wings.backup(uuid_a, &first).await;
    assert_eq!(
        wings.staged_parts().await,
        0,
        "parts are purged on completion"
    );

    // The next night: a few bytes changed and a little data inserted in the middle.
    let mut second = first.clone();
    second[5_000_000..5_000_100].fill(7);
    second.splice(120 << 20..120 << 20, random_bytes(300_000, 9));
    second[190 << 20] ^= 1;
    let uuid_b = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d";
    wings.backup(uuid_b, &second).await;

    // The backups are stowage backups under the uuids, in the Wings series.
    let a = wings.native(&format!("/v1/backups/{uuid_a}")).await;
    let b = wings.native(&format!("/v1/backups/{uuid_b}")).await;
    assert_eq!(a["series"], "wings");
    assert_eq!(a["size"], first.len());
    assert_eq!(b["size"], second.len());
    let added = b["stored_bytes"].as_u64().unwrap();
    assert!(
        added < second.len() as u64 / 10,
        "the second archive added {added} bytes of storage"
    );

    assert_restores(wings, uuid_a, &first).await;
    assert_restores(wings, uuid_b, &second).await;

    // A completed backup: announced again → 409, reported again → 400.
    let response = wings
        .panel(reqwest::Method::GET, uuid_a, "?size=10")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CONFLICT);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["errors"][0]["status"], "409");
    assert_eq!(
        body["errors"][0]["detail"],
        "This backup is already in a completed state."
    );
    let (status, body) = wings
        .report(
            uuid_a,
            json!({"successful": true, "checksum": sha1_hex(&first), "checksum_type": "sha1",
                   "size": first.len(), "parts": null}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        body["errors"][0]["detail"],
        "Cannot update the status of a backup that is already marked as completed."
    );

    // The CLI hands out the same kind of link.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_stowage"))
        .args(["url", "--server", &wings.base, "--ttl", "60", uuid_b])
        .env("STOWAGE_KEY", &wings.admin)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let url = String::from_utf8(output.stdout).unwrap().trim().to_string();
    let response = wings
        .client
        .get(&url)
        .header("Range", "bytes=0-9")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(response.bytes().await.unwrap(), second[..10]);
    // A tampered link is refused.
    let tampered = url.replace(uuid_b, uuid_a);
    let response = wings.client.get(&tampered).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wings_credentials_are_checked_like_the_panel() {
    let dir = tempfile::tempdir().unwrap();
    let wings = Wings::start(dir.path(), |_| {}).await;
    let url = format!(
        "{}/api/remote/backups/0b3c2d1e-0000-4000-8000-000000000001?size=5",
        wings.base
    );
    let response = wings.client.get(&url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["errors"][0]["status"], "401");
    assert_eq!(
        body["errors"][0]["detail"],
        "Access to this endpoint must include an Authorization header."
    );
    for malformed in ["Bearer nodots", "Bearer a.b.c", "Bearer .x", "Basic abc"] {
        let response = wings
            .client
            .get(&url)
            .header("Authorization", malformed)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{malformed}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            body["errors"][0]["detail"],
            "The Authorization header provided was not in a valid format."
        );
    }
    let (_, reader) = wings.keys().create("watcher", Role::Reader).unwrap();
    let wrong = format!("{}.{}", &wings.node[..16], "0".repeat(64));
    for token in [wrong.as_str(), "abc.def", reader.as_str()] {
        let response = wings
            .client
            .get(&url)
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{token}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["errors"][0]["code"], "AccessDeniedHttpException");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wings_bad_requests_get_the_panels_errors_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let wings = Wings::start(dir.path(), |_| {}).await;
    let uuid = "5d6e7f80-1a2b-4c3d-9e4f-5a6b7c8d9e0f";

    // The size query.
    for query in ["", "?size=", "?size=0"] {
        let response = wings
            .panel(reqwest::Method::GET, uuid, query)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{query}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            body["errors"][0]["detail"],
            "A non-empty \"size\" query parameter must be provided."
        );
    }
    let response = wings
        .panel(reqwest::Method::GET, "NOT-A-UUID", "?size=5")
        .send()
        .await
        .unwrap();
    // The Panel knows no backup by that name.
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    // Three parts: two full ones and a short last one.
    let data = archive(2 * PART_SIZE as usize + 1000, 3);
    let (urls, part_size) = wings.announce(uuid, data.len() as u64).await;
    assert_eq!((urls.len(), part_size), (3, PART_SIZE));
    let part = |n: usize| {
        data[(n - 1) * PART_SIZE as usize..(n * PART_SIZE as usize).min(data.len())].to_vec()
    };

    // Signatures: another part's URL, a changed expiry, an expired link, no signature.
    let wrong_part = urls[0].replace("/parts/1?", "/parts/2?");
    let later = {
        let (head, tail) = urls[0].split_once("expires=").unwrap();
        let (_, rest) = tail.split_once('&').unwrap();
        format!("{head}expires=99999999999&{rest}")
    };
    let expired = sign_part_url(&wings, uuid, 1, 1_000);
    let unsigned = urls[0].split_once('?').unwrap().0.to_string();
    // (Small bodies: a server refusing a request early need not read a large one.)
    for url in [&wrong_part, &later, &expired, &unsigned] {
        let response = wings.put_part(url, vec![1; 10]).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{url}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["errors"][0]["status"], "403");
    }
    // A correctly signed URL for a part that does not exist.
    let beyond = sign_part_url(&wings, uuid, 4, chrono::Utc::now().timestamp() + 60);
    assert_eq!(
        wings.put_part(&beyond, vec![1]).await.status(),
        StatusCode::BAD_REQUEST
    );
    // A part of the wrong size is refused and leaves nothing behind.
    let response = wings.put_part(&urls[2], vec![0; 999]).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(wings.staged_parts().await, 0);

    // A retried part replaces the first attempt: first wrong bytes, then the right ones.
    let mut garbage = part(1);
    garbage[0] ^= 0xff;
    assert_eq!(
        wings.put_part(&urls[0], garbage).await.status(),
        StatusCode::OK
    );
    assert_eq!(wings.staged_parts().await, 1);
    let mut parts = Vec::new();
    for n in 1..=2 {
        let response = wings.put_part(&urls[n - 1], part(n)).await;
        assert_eq!(response.status(), StatusCode::OK);
        let etag = response.headers()["etag"].to_str().unwrap().to_string();
        parts.push(json!({"etag": etag, "part_number": n}));
    }
    assert_eq!(wings.staged_parts().await, 2);

    // Reports that do not match what was received.
    let good = |parts: &Vec<Value>| {
        json!({"checksum": sha1_hex(&data), "checksum_type": "sha1", "size": data.len(),
               "successful": true, "parts": parts})
    };
    let (status, body) = wings.report(uuid, good(&parts)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["errors"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("missing parts [3]"),
        "{body}"
    );
    let response = wings.put_part(&urls[2], part(3)).await;
    let etag = response.headers()["etag"].to_str().unwrap().to_string();
    parts.push(json!({"etag": etag, "part_number": 3}));
    let mut wrong_etag = parts.clone();
    wrong_etag[1]["etag"] = json!("\"0123\"");
    let (status, body) = wings.report(uuid, good(&wrong_etag)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["errors"][0]["detail"]
        .as_str()
        .unwrap()
        .contains("ETag"));
    let mut wrong_size = good(&parts);
    wrong_size["size"] = json!(data.len() - 1);
    let (status, body) = wings.report(uuid, wrong_size).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["errors"][0]["detail"]
        .as_str()
        .unwrap()
        .contains("size mismatch"));

    // Validation errors are 422 with the field and rule, like the Panel's.
    let (status, body) = wings.report(uuid, json!({"successful": true})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["meta"]["source_field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["checksum", "checksum_type", "size"]);
    let response = wings
        .panel(reqwest::Method::POST, uuid, "")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    // A checksum that does not match fails the backup and purges its parts.
    let mut wrong_sum = good(&parts);
    wrong_sum["checksum"] = json!("0".repeat(40));
    let (status, body) = wings.report(uuid, wrong_sum).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["errors"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("checksum mismatch"),
        "{body}"
    );
    assert_eq!(wings.staged_parts().await, 0);

    // Announced again, the upload starts over and can complete.
    let (urls, _) = wings.announce(uuid, data.len() as u64).await;
    let parts = wings.upload_parts(&urls, PART_SIZE, &data).await;
    let (status, body) = wings.report(uuid, good(&parts)).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_restores(&wings, uuid, &data).await;

    // Wings gives up: parts are discarded; restore reports for unknown uuids are 404.
    let other = "7e6d5c4b-3a29-4180-8f7e-6d5c4b3a2918";
    let (urls, _) = wings.announce(other, 10).await;
    assert_eq!(
        wings.put_part(&urls[0], vec![1; 10]).await.status(),
        StatusCode::OK
    );
    let (status, _) = wings
        .report(
            other,
            json!({"checksum": "", "checksum_type": "", "size": 0, "successful": false,
                   "parts": null}),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(wings.staged_parts().await, 0);
    let response = wings
        .panel(reqwest::Method::POST, other, "/restore")
        .json(&json!({"successful": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["errors"][0]["detail"],
        "The requested resource could not be found on the server."
    );
    let (status, _) = wings
        .report(
            "11111111-2222-4333-8444-555555555555",
            json!({"successful": false}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// A part URL signed with the server's own key (from its state store), for any expiry.
fn sign_part_url(wings: &Wings, uuid: &str, part: u32, expires: i64) -> String {
    let path = format!("/wings/backups/{uuid}/parts/{part}");
    let query = wings
        .server
        .as_ref()
        .expect("running")
        .state()
        .signer
        .query("PUT", &path, expires);
    format!("{}{path}?{query}", wings.base)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wings_unfinished_uploads_expire_and_their_parts_are_purged() {
    let dir = tempfile::tempdir().unwrap();
    let wings = Wings::start(dir.path(), |config| {
        config.dialects.wings.upload_expiry_secs = 1;
    })
    .await;
    let uuid = "2c3d4e5f-6a7b-4c8d-9e0f-1a2b3c4d5e6f";
    let (urls, _) = wings.announce(uuid, 20).await;
    assert_eq!(
        wings.put_part(&urls[0], vec![5; 20]).await.status(),
        StatusCode::OK
    );
    // The sweep runs every second; the upload is over a second old after at most two.
    let deadline = Instant::now() + Duration::from_secs(60);
    while wings.staged_parts().await > 0 {
        assert!(Instant::now() < deadline, "the upload never expired");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let response = wings.put_part(&urls[0], vec![5; 20]).await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["errors"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("failed"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wings_staging_backups_no_upload_names_are_purged_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    // What a crash between storing a part and recording it leaves: a staging backup
    // that no upload record names.
    {
        let wings = Wings::start(dir.path(), |_| {}).await;
        let response = wings
            .client
            .post(format!("{}/v1/series/wings-parts/backups", wings.base))
            .bearer_auth(&wings.admin)
            .body(vec![3u8; 1000])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        assert_eq!(
            wings.native("/v1/backups?series=wings-parts").await["total"],
            1
        );
        wings.stop().await;
    }
    let wings = Wings::start(dir.path(), |config| {
        config.dialects.wings.upload_expiry_secs = 1;
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while wings.native("/v1/backups?series=wings-parts").await["total"] != 0 {
        assert!(Instant::now() < deadline, "the stray part was never purged");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wings_part_urls_handed_out_before_a_restart_work_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let uuid = "6b2c8d5e-2f4a-4c1e-9d7b-3a5f0e1c2b4d";
    let data = archive(PART_SIZE as usize + (5 << 20), 77);
    let wings = Wings::start(dir.path(), |_| {}).await;
    let (urls, part_size) = wings.announce(uuid, data.len() as u64).await;
    assert_eq!(urls.len(), 2);
    let first = wings
        .put_part(&urls[0], data[..part_size as usize].to_vec())
        .await;
    assert_eq!(first.status(), StatusCode::OK);
    let first_etag = first.headers()["etag"].to_str().unwrap().to_string();
    wings.stop().await;

    // The same links, on the restarted server (a new port: only the base changes; the
    // signature covers method, path and expiry).
    let wings = Wings::start(dir.path(), |_| {}).await;
    let path = &urls[1][urls[1].find("/wings/").expect("part path")..];
    let second = wings
        .put_part(
            &format!("{}{path}", wings.base),
            data[part_size as usize..].to_vec(),
        )
        .await;
    assert_eq!(
        second.status(),
        StatusCode::OK,
        "a link from before the restart"
    );
    let second_etag = second.headers()["etag"].to_str().unwrap().to_string();
    let (status, body) = wings
        .report(
            uuid,
            json!({"checksum": sha1_hex(&data), "checksum_type": "sha1",
                   "size": data.len(), "successful": true,
                   "parts": [{"etag": first_etag, "part_number": 1},
                             {"etag": second_etag, "part_number": 2}]}),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_restores(&wings, uuid, &data).await;
}

/// Unknown routes under `/api/remote/` and wrong methods answer in the Panel's error shape
/// `{"errors":[{"code","status","detail"}]}` (Wings reads `errors[0]`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wings_unknown_remote_routes_and_wrong_methods_answer_in_the_panel_shape() {
    let dir = tempfile::tempdir().unwrap();
    let wings = Wings::start(dir.path(), |_| {}).await;
    let uuid = "6f1c2a9e-4b7d-4c1e-9a3f-2d8b5e7c9a10";
    let cases = [
        (
            wings.panel(reqwest::Method::DELETE, uuid, ""),
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowedHttpException",
        ),
        (
            wings.panel(reqwest::Method::GET, uuid, "/nothing"),
            StatusCode::NOT_FOUND,
            "NotFoundHttpException",
        ),
        (
            wings
                .client
                .get(format!("{}/api/remote/servers", wings.base))
                .bearer_auth(&wings.node),
            StatusCode::NOT_FOUND,
            "NotFoundHttpException",
        ),
    ];
    for (request, want, code) in cases {
        let response = request.send().await.expect("request");
        let status = response.status();
        let text = response.text().await.unwrap();
        let reply: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{status} not JSON ({e}): {text:?}"));
        assert_eq!(status, want, "{reply}");
        assert_eq!(reply["errors"][0]["code"], code, "{reply}");
        assert_eq!(
            reply["errors"][0]["status"],
            want.as_u16().to_string(),
            "{reply}"
        );
        assert!(reply["errors"][0]["detail"].is_string(), "{reply}");
    }
}

/// An upper-case (or otherwise non-canonical) uuid names no backup the Panel created: 404
/// "The requested resource could not be found on the server.", not 400, on every route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wings_an_upper_case_uuid_is_unknown_as_on_the_panel() {
    let dir = tempfile::tempdir().unwrap();
    let wings = Wings::start(dir.path(), |_| {}).await;
    let upper = "6F1C2A9E-4B7D-4C1E-9A3F-2D8B5E7C9A10";
    for request in [
        wings.panel(reqwest::Method::GET, upper, "?size=100"),
        wings
            .panel(reqwest::Method::POST, upper, "")
            .json(&json!({"successful": false, "parts": null})),
        wings
            .panel(reqwest::Method::POST, "not-a-uuid", "")
            .json(&json!({"successful": false, "parts": null})),
    ] {
        let response = request.send().await.expect("request");
        let status = response.status();
        let reply: Value = response.json().await.unwrap();
        assert_eq!(status, StatusCode::NOT_FOUND, "{reply}");
        assert_eq!(
            reply["errors"][0]["detail"],
            "The requested resource could not be found on the server.",
            "{reply}"
        );
    }
}
