//! Uploads and downloads over `/v1`: raw, multipart and as a job, ranges, tar catalogs,
//! concurrent deduplicating uploads, clients that go away mid-upload, flat memory on a
//! large streamed upload, shutdown during one, the figures an upload answers, and
//! sixteen uploads beside a gc loop and purges.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_raw_upload_download_and_ranges() {
    let server = Server::start().await;
    let data = random_bytes(3 * MIB + 12_345, 1);
    let size = data.len() as u64;
    let before = chrono::Utc::now().timestamp();
    let response = server
        .upload_raw("db", "?name=db.sql&sha256=true", data.clone())
        .await;
    let (status, backup) = json_of(response).await;
    assert_eq!(status, StatusCode::CREATED, "{backup}");
    let id = backup["id"].as_str().expect("id").to_string();
    assert!(!id.is_empty());
    assert_eq!(backup["series"], "db");
    assert_eq!(backup["source"], "db.sql");
    assert_eq!(backup["kind"], "stream");
    assert_eq!(backup["size"], size);
    assert_eq!(backup["blake3"], blake3_hex(&data));
    assert_eq!(
        backup["sha256"],
        sha256_hex(&data),
        "asked for with ?sha256=true"
    );
    assert!(backup["stored_bytes"].as_u64().expect("stored_bytes") > 0);
    assert!(backup["chunks"].as_u64().expect("chunks") > 0);
    assert!(backup["recycled_at"].is_null(), "{backup}");
    let created = backup["created_at"].as_str().expect("created_at");
    let created = chrono::DateTime::parse_from_rfc3339(created).expect("created_at is RFC 3339");
    assert!(created.timestamp() >= before - 5, "{created} vs {before}");

    let (status, meta) = server
        .get(&server.reader, &format!("/v1/backups/{id}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{meta}");
    assert_eq!(meta, backup, "metadata differs from the upload's answer");

    let content = format!("/v1/backups/{id}/content");
    let response = server
        .request(reqwest::Method::GET, &server.reader, &content)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers().clone();
    assert_eq!(header(&headers, "content-length"), size.to_string());
    assert_eq!(
        header(&headers, "etag"),
        format!("\"{}\"", blake3_hex(&data))
    );
    assert_eq!(header(&headers, "accept-ranges"), "bytes");
    assert_eq!(
        header(&headers, "content-disposition"),
        "attachment; filename=\"db.sql\""
    );
    let body = response.bytes().await.expect("content");
    assert!(body[..] == data[..], "downloaded bytes differ");

    for (range, start, end) in [
        ("bytes=0-9", 0u64, 9u64),
        ("bytes=100-", 100, size - 1),
        ("bytes=-5", size - 5, size - 1),
        ("bytes=1048570-1048585", 1_048_570, 1_048_585),
    ] {
        let response = server
            .client
            .get(server.url(&content))
            .bearer_auth(&server.reader)
            .header("range", range)
            .send()
            .await
            .expect("range request");
        assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        let headers = response.headers().clone();
        assert_eq!(
            header(&headers, "content-range"),
            format!("bytes {start}-{end}/{size}"),
            "{range}"
        );
        assert_eq!(
            header(&headers, "content-length"),
            (end - start + 1).to_string(),
            "{range}"
        );
        let body = response.bytes().await.expect("range body");
        assert!(
            body[..] == data[start as usize..=end as usize],
            "{range}: wrong bytes"
        );
    }

    for range in [
        format!("bytes={size}-"),
        format!("bytes={}-{}", size + 10, size + 20),
    ] {
        let response = server
            .client
            .get(server.url(&content))
            .bearer_auth(&server.reader)
            .header("range", &range)
            .send()
            .await
            .expect("range request");
        let (status, headers, body) = parts(response).await;
        assert_error(
            status,
            &body,
            StatusCode::RANGE_NOT_SATISFIABLE,
            "range_not_satisfiable",
        );
        assert_eq!(
            header(&headers, "content-range"),
            format!("bytes */{size}"),
            "{range}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_multipart_upload() {
    let server = Server::start().await;
    let data = random_bytes(2 * MIB + 777, 2);
    let boundary = "stowage-test-boundary-7d3f9a";
    let mut body = Vec::new();
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nnot the file\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"dump.bin\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(&data);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let response = server
        .client
        .post(server.url("/v1/series/forms/backups?name=dump.bin"))
        .bearer_auth(&server.writer)
        .header(
            CONTENT_TYPE,
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
        .await
        .expect("multipart upload");
    let (status, backup) = json_of(response).await;
    assert_eq!(status, StatusCode::CREATED, "{backup}");
    assert_eq!(backup["size"], data.len() as u64, "{backup}");
    assert_eq!(backup["blake3"], blake3_hex(&data));
    assert!(backup["sha256"].is_null(), "not asked for: {backup}");
    let id = backup["id"].as_str().unwrap();
    assert!(
        server.download(id).await == data,
        "multipart upload does not round trip"
    );

    // A form without a file field stores nothing.
    let before = server.total("").await;
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello\r\n--{boundary}--\r\n"
    );
    let response = server
        .client
        .post(server.url("/v1/series/forms/backups"))
        .bearer_auth(&server.writer)
        .header(
            CONTENT_TYPE,
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
        .await
        .expect("multipart upload");
    let (status, body) = json_of(response).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_input");
    assert_eq!(server.total("").await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_upload_as_job() {
    let server = Server::start().await;
    let data = random_bytes(6 * MIB + 1, 3);
    let response = server
        .upload_raw("jobs", "?wait=false&name=later.bin", data.clone())
        .await;
    let (status, body) = json_of(response).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let job = &body["job"];
    assert_eq!(job["kind"], "upload", "{body}");
    let job_id = job["id"].as_str().expect("job id").to_string();

    let finished = server.wait_job(&job_id).await;
    assert_eq!(finished["status"], "succeeded", "{finished}");
    assert!(finished["finished_at"].is_string(), "{finished}");
    let result = &finished["result"];
    assert_eq!(result["size"], data.len() as u64, "{finished}");
    assert_eq!(result["blake3"], blake3_hex(&data));
    assert_eq!(result["source"], "later.bin");
    let id = result["id"].as_str().expect("backup id in the job result");

    let (status, meta) = server
        .get(&server.reader, &format!("/v1/backups/{id}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{meta}");
    assert!(server.download(id).await == data, "job upload differs");

    let (status, jobs) = server.get(&server.reader, "/v1/jobs").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        jobs["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|j| j["id"] == job_id.as_str()),
        "{jobs}"
    );
    // Filters and pages: a check job beside the upload.
    let (status, body) = server.post(&server.admin, "/v1/repository/check").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let check_id = body["job"]["id"]
        .as_str()
        .expect("check job id")
        .to_string();
    server.wait_job(&check_id).await;
    let ids = |page: &serde_json::Value| -> Vec<String> {
        page["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["id"].as_str().unwrap().to_string())
            .collect()
    };
    let (_, all) = server.get(&server.reader, "/v1/jobs").await;
    assert_eq!(ids(&all), [check_id.clone(), job_id.clone()], "{all}");
    assert!(all["next"].is_null(), "{all}");
    let (_, first) = server.get(&server.reader, "/v1/jobs?limit=1").await;
    assert_eq!(ids(&first), std::slice::from_ref(&check_id), "{first}");
    let next = first["next"].as_u64().expect("a next page");
    let (_, second) = server
        .get(&server.reader, &format!("/v1/jobs?limit=1&before={next}"))
        .await;
    assert_eq!(ids(&second), std::slice::from_ref(&job_id), "{second}");
    assert!(second["next"].is_null(), "{second}");
    for (query, expected) in [
        ("kind=upload", vec![job_id.clone()]),
        ("kind=check&status=succeeded", vec![check_id.clone()]),
        ("status=failed", vec![]),
        ("q=LATER", vec![]),
        ("q=series%20jobs", vec![job_id.clone()]),
        (
            &format!("q={}", &check_id[..8]) as &str,
            vec![check_id.clone()],
        ),
    ] {
        let (status, page) = server
            .get(&server.reader, &format!("/v1/jobs?{query}"))
            .await;
        assert_eq!(status, StatusCode::OK, "{query}: {page}");
        assert_eq!(ids(&page), expected, "{query}: {page}");
    }
    for (query, says) in [
        ("status=done", "status \"done\" is not one of queued"),
        ("kind=backup", "kind \"backup\" is not one of upload"),
        ("limit=0", "limit 0 must be between 1 and 1000"),
    ] {
        let (status, body) = server
            .get(&server.reader, &format!("/v1/jobs?{query}"))
            .await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_input");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(says),
            "{query}: {body}"
        );
    }
    let long = "x".repeat(201);
    let (status, body) = server
        .get(&server.reader, &format!("/v1/jobs?q={long}"))
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_input");

    // An ended job cannot be cancelled; an unknown one is not found.
    let (status, body) = server
        .post(&server.writer, &format!("/v1/jobs/{job_id}/cancel"))
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "conflict");
    let (status, body) = server.get(&server.reader, "/v1/jobs/no-such-job").await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_tar_catalog() {
    let server = Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::write(root.join("a.txt"), b"alpha\n").unwrap();
    std::fs::write(root.join("sub/b.bin"), random_bytes(300_000, 20)).unwrap();
    std::fs::write(root.join("sub/c.txt"), b"gamma\n").unwrap();
    let archive = dir.path().join("out.tar");
    let tar = std::process::Command::new("/usr/bin/tar")
        .arg("-cf")
        .arg(&archive)
        .arg("-C")
        .arg(&root)
        .args(["a.txt", "sub"])
        .status()
        .expect("run tar");
    assert!(tar.success());
    let data = std::fs::read(&archive).unwrap();

    let response = server
        .upload_raw("tars", "?name=site.tar", data.clone())
        .await;
    let (status, backup) = json_of(response).await;
    assert_eq!(status, StatusCode::CREATED, "{backup}");
    let entries = backup["catalog_entries"].as_u64().expect("catalog_entries");
    assert_eq!(entries, 4, "{backup}");
    assert!(!backup["tar"].is_null(), "{backup}");
    let id = backup["id"].as_str().unwrap();
    assert!(server.download(id).await == data);

    let (status, all) = server
        .get(&server.reader, &format!("/v1/backups/{id}/catalog"))
        .await;
    assert_eq!(status, StatusCode::OK, "{all}");
    assert_eq!(all["total"], entries, "{all}");
    let paths: Vec<&str> = all["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().expect("path"))
        .collect();
    for expected in ["a.txt", "sub/b.bin", "sub/c.txt"] {
        assert!(paths.contains(&expected), "{expected} missing: {paths:?}");
    }
    assert!(
        paths.iter().any(|p| p.trim_end_matches('/') == "sub"),
        "{paths:?}"
    );
    let b = all["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == "sub/b.bin")
        .unwrap();
    assert_eq!(b["size"], 300_000, "{b}");

    let (status, sub) = server
        .get(
            &server.reader,
            &format!("/v1/backups/{id}/catalog?prefix=sub/"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{sub}");
    assert_eq!(sub["total"], 2, "{sub}");
    let sub_paths: Vec<&str> = sub["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(sub_paths, vec!["sub/b.bin", "sub/c.txt"]);

    let (status, page) = server
        .get(
            &server.reader,
            &format!("/v1/backups/{id}/catalog?limit=1&offset=1"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["total"], entries, "{page}");
    assert_eq!(page["limit"], 1);
    assert_eq!(page["offset"], 1);
    let page_entries = page["entries"].as_array().unwrap();
    assert_eq!(page_entries.len(), 1, "{page}");
    assert_eq!(page_entries[0], all["entries"][1]);
    let (status, body) = server
        .get(&server.reader, &format!("/v1/backups/{id}/catalog?limit=0"))
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_input");

    // One folder a page at a time, and one entry by its path, through the catalog's
    // index (tar names the two in path order).
    let folder = |query: &str| format!("/v1/backups/{id}/catalog/folder?{query}");
    let (status, top) = server.get(&server.reader, &folder("limit=1")).await;
    assert_eq!(status, StatusCode::OK, "{top}");
    assert_eq!(
        (top["dir"].as_str(), top["indexed"].as_bool()),
        (Some(""), Some(true)),
        "{top}"
    );
    assert_eq!(top["entries"][0]["path"], "a.txt", "{top}");
    assert_eq!(top["next"], "a.txt", "{top}");
    let (_, rest) = server.get(&server.reader, &folder("after=a.txt")).await;
    assert_eq!(rest["entries"].as_array().map(Vec::len), Some(1), "{rest}");
    assert_eq!(rest["entries"][0]["path"], "sub", "{rest}");
    assert!(rest["next"].is_null(), "{rest}");
    let (_, sub) = server.get(&server.reader, &folder("dir=sub/")).await;
    let names: Vec<&str> = sub["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["sub/b.bin", "sub/c.txt"], "{sub}");
    let entry = |path: &str| format!("/v1/backups/{id}/catalog/entry?path={path}");
    let (status, b) = server.get(&server.reader, &entry("sub/b.bin")).await;
    assert_eq!(status, StatusCode::OK, "{b}");
    assert_eq!(b["size"], 300_000, "{b}");
    let (status, body) = server.get(&server.reader, &entry("sub/nothing")).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    let (status, body) = server.get(&server.reader, &entry("../etc/passwd")).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_input");
    let (status, body) = server.get(&server.reader, &folder("after=sub/b.bin")).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_input");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_concurrent_overlapping_uploads() {
    let server = Server::start().await;
    let shared = random_bytes(4 * MIB, 30);
    let inputs: Vec<Vec<u8>> = (0..16u64)
        .map(|i| {
            let mut data = shared.clone();
            data.extend_from_slice(&random_bytes(MIB, 1000 + i));
            data
        })
        .collect();
    let sum: u64 = inputs.iter().map(|d| d.len() as u64).sum();
    let uploads = inputs.iter().enumerate().map(|(i, data)| {
        let server = &server;
        async move {
            let response = server
                .upload_raw("many", &format!("?name=part{i}"), data.clone())
                .await;
            json_of(response).await
        }
    });
    let answers = futures::future::join_all(uploads).await;
    let mut ids = Vec::new();
    for (i, (status, backup)) in answers.iter().enumerate() {
        assert_eq!(*status, StatusCode::CREATED, "upload {i}: {backup}");
        assert_eq!(backup["blake3"], blake3_hex(&inputs[i]), "upload {i}");
        ids.push(backup["id"].as_str().unwrap().to_string());
    }
    assert_eq!(server.total("?series=many").await, 16);

    let stats = server.stats().await;
    let stored = stats["stored_bytes"].as_u64().unwrap();
    assert_eq!(stats["logical_bytes"], sum, "{stats}");
    assert!(
        stored < sum / 2,
        "no dedup across concurrent uploads: stored {stored} of {sum} bytes ({stats})"
    );
    for (i, id) in ids.iter().enumerate() {
        assert!(server.download(id).await == inputs[i], "upload {i} differs");
    }
}

/// The number of backups must stay `expected` for a while: an upload whose client went
/// away must not turn into a (truncated) backup later, when the ingest notices the end.
async fn assert_total_stays(server: &Server, expected: u64, what: &str) {
    for _ in 0..20 {
        let total = server.total("").await;
        let recycled = server.total("?recycled=true").await;
        assert_eq!(
            (total, recycled),
            (expected, 0),
            "{what}: a backup was recorded ({:?})",
            server.get(&server.reader, "/v1/backups").await.1
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_client_gone_mid_upload() {
    let server = Server::start().await;
    server.upload("gone", &random_bytes(100_000, 40)).await;

    // The body stream fails after 3 MiB: the client aborts the chunked request.
    let prefix = Bytes::from(random_bytes(3 * MIB, 41));
    let pieces: Vec<io::Result<Bytes>> = (0..prefix.len())
        .step_by(256 << 10)
        .map(|at| Ok(prefix.slice(at..at + (256 << 10))))
        .chain(std::iter::once(Err(io::Error::other("client gave up"))))
        .collect();
    let outcome = server
        .client
        .post(server.url("/v1/series/gone/backups"))
        .bearer_auth(&server.writer)
        .body(Body::wrap_stream(futures::stream::iter(pieces)))
        .send()
        .await;
    assert!(
        outcome.is_err() || outcome.as_ref().unwrap().status() != StatusCode::CREATED,
        "an aborted upload was answered 201"
    );
    assert_total_stays(&server, 1, "chunked body aborted by an error").await;

    // The client drops the connection after 3 MiB of a declared 16 MiB (Content-Length).
    let url = server.url("/v1/series/gone/backups");
    let (client, key) = (server.client.clone(), server.writer.clone());
    let sent = prefix.clone();
    let request = tokio::spawn(async move {
        let stream =
            futures::stream::iter(vec![Ok::<_, io::Error>(sent)]).chain(futures::stream::pending());
        client
            .post(url)
            .bearer_auth(key)
            .header("content-length", (16 * MIB).to_string())
            .body(Body::wrap_stream(stream))
            .send()
            .await
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    request.abort();
    let _ = request.await;
    assert_total_stays(&server, 1, "connection dropped mid-body (Content-Length)").await;

    // The same with a chunked body.
    let url = server.url("/v1/series/gone/backups");
    let (client, key) = (server.client.clone(), server.writer.clone());
    let sent = prefix.clone();
    let request = tokio::spawn(async move {
        let stream =
            futures::stream::iter(vec![Ok::<_, io::Error>(sent)]).chain(futures::stream::pending());
        client
            .post(url)
            .bearer_auth(key)
            .body(Body::wrap_stream(stream))
            .send()
            .await
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    request.abort();
    let _ = request.await;
    assert_total_stays(&server, 1, "connection dropped mid-body (chunked)").await;

    // The server still works.
    let response = server
        .client
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let data = random_bytes(2 * MIB, 42);
    let backup = server.upload("gone", &data).await;
    assert!(server.download(backup["id"].as_str().unwrap()).await == data);
    assert_eq!(server.total("").await, 2);
    let metrics = server.metrics().await;
    assert!(
        metrics.contains("stowage_uploads_in_flight 0"),
        "uploads still counted in flight: {metrics}"
    );
}

/// Peak and current resident set of this process, in bytes.
fn memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .unwrap_or_else(|| panic!("no {name} in /proc/self/status"))
            * 1024
    };
    (field("VmHWM:"), field("VmRSS:"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_large_streamed_upload_memory_is_flat() {
    let total: u64 = std::env::var("STOWAGE_TEST_BIG_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1 << 30);
    let server = Server::start_alone().await;
    // 1 MiB blocks drawn from a pool of 24, in a scrambled order: repetitive enough to
    // dedup, random enough to exercise every stage. Generated as sent, never held whole.
    let pool: Arc<Vec<Bytes>> = Arc::new(
        (0..24u64)
            .map(|i| Bytes::from(random_bytes(MIB, 500 + i)))
            .collect(),
    );
    let hasher = Arc::new(Mutex::new(blake3::Hasher::new()));
    let generated = {
        let (pool, hasher) = (pool.clone(), hasher.clone());
        futures::stream::unfold(0u64, move |sent| {
            let (pool, hasher) = (pool.clone(), hasher.clone());
            async move {
                if sent >= total {
                    return None;
                }
                let n = sent / MIB as u64;
                let pick = (n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) as usize % pool.len();
                let len = (total - sent).min(MIB as u64) as usize;
                let block = pool[pick].slice(..len);
                hasher.lock().unwrap().update(&block);
                Some((Ok::<_, io::Error>(block), sent + len as u64))
            }
        })
    };

    // Start the peak afresh (clear_refs 5 resets VmHWM); else keep the old peak as base.
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let (peak_before, rss_before) = memory();
    let base = if reset { rss_before } else { peak_before };
    let started = Instant::now();
    let response = server
        .upload_raw("big", "?name=big.bin", Body::wrap_stream(generated))
        .await;
    let (status, backup) = json_of(response).await;
    let upload_time = started.elapsed();
    assert_eq!(status, StatusCode::CREATED, "{backup}");
    let expected = hasher.lock().unwrap().finalize().to_hex().to_string();
    assert_eq!(backup["size"], total, "{backup}");
    assert_eq!(backup["blake3"], expected.as_str(), "{backup}");
    let (peak_upload, _) = memory();

    let started = Instant::now();
    let id = backup["id"].as_str().unwrap();
    let response = server
        .request(
            reqwest::Method::GET,
            &server.reader,
            &format!("/v1/backups/{id}/content"),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut stream = response.bytes_stream();
    let mut download_hasher = blake3::Hasher::new();
    let mut received = 0u64;
    while let Some(piece) = stream.next().await {
        let piece = piece.expect("download stream");
        received += piece.len() as u64;
        download_hasher.update(&piece);
    }
    let download_time = started.elapsed();
    assert_eq!(received, total);
    assert_eq!(download_hasher.finalize().to_hex().to_string(), expected);
    let (peak_end, _) = memory();

    let mib = |b: u64| b as f64 / MIB as f64;
    eprintln!(
        "large upload: {:.0} MiB up in {:.1?} ({:.0} MiB/s), down in {:.1?} ({:.0} MiB/s); \
         rss base {:.0} MiB, peak after upload {:.0} MiB, after download {:.0} MiB \
         (peak reset: {reset}); stored {:.0} MiB",
        mib(total),
        upload_time,
        mib(total) / upload_time.as_secs_f64(),
        download_time,
        mib(total) / download_time.as_secs_f64(),
        mib(base),
        mib(peak_upload),
        mib(peak_end),
        mib(backup["stored_bytes"].as_u64().unwrap_or(0)),
    );
    let growth = peak_end.saturating_sub(base);
    assert!(
        growth < 500 * MIB as u64,
        "memory grew by {:.0} MiB over a {:.0} MiB streamed upload and download",
        mib(growth),
        mib(total)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_during_a_large_upload_stops_it_and_records_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig {
        data_dir: dir.path().join("data"),
        ..ServerConfig::default()
    };
    let state = server::prepare(&config).await.expect("start");
    let admin = admin_key(&config.data_dir);
    let (base, running) = serve_on_loopback(state).await;
    // 1 GiB, made as it is sent: far more than the server ingests before it stops.
    let chunks = futures::stream::iter((0..1024u64).map(|i| {
        Ok::<_, std::io::Error>(Bytes::from(crate::support::random_bytes(MIB, 9000 + i)))
    }));
    let client = Client::builder().no_proxy().build().unwrap();
    let upload = tokio::spawn(
        client
            .post(format!("{base}/v1/series/big/backups?name=huge.img"))
            .bearer_auth(&admin)
            .body(Body::wrap_stream(chunks))
            .send(),
    );
    let in_flight = running.state().clone();
    let deadline = Instant::now() + Duration::from_secs(60);
    while in_flight
        .metrics
        .uploads_in_flight
        .load(std::sync::atomic::Ordering::Relaxed)
        == 0
    {
        assert!(Instant::now() < deadline, "the upload never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(in_flight);
    // Liveness, not speed: shutdown must not wait for the rest of the gigabyte.
    tokio::time::timeout(Duration::from_secs(120), running.shutdown())
        .await
        .expect("shutdown ends while the upload is in flight")
        .expect("shutdown");
    if let Ok(Ok(response)) = upload.await {
        assert!(!response.status().is_success(), "{}", response.status());
    }
    let state = server::prepare(&config).await.expect("restart");
    assert!(
        state
            .repo
            .backups()
            .unwrap()
            .iter()
            .all(|b| b.series != "big"),
        "nothing half-visible"
    );
    let report = state
        .repo
        .check(true, crate::support::progress())
        .await
        .unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    state.shutdown().await;
}

/// What an upload answers and what `stats` reports add up: a 12-byte upload is one
/// chunk, new once; every blob is new to exactly one backup; unique bytes never exceed
/// logical ones; the packs are the sealed blobs plus their headers and trailers; the
/// series sum to the repository.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_answers_and_stats_add_up() {
    let server = Server::start().await;
    let first = server.upload("native", b"twelve bytes").await;
    assert_eq!(
        (
            &first["chunks"],
            &first["new_chunks"],
            &first["new_metadata_blobs"]
        ),
        (&json!(1), &json!(1), &json!(1)),
        "{first}"
    );
    let again = server.upload("native", b"twelve bytes").await;
    assert_eq!(
        (
            &again["new_chunks"],
            &again["new_metadata_blobs"],
            &again["stored_bytes"]
        ),
        (&json!(0), &json!(0), &json!(0)),
        "{again}"
    );
    let dir = tempfile::tempdir().unwrap();
    let mut files: Vec<(String, Vec<u8>)> = (0..40)
        .map(|i| (format!("tiny/{i}.txt"), format!("{i}").into_bytes()))
        .collect();
    files.push(("big.bin".into(), random_bytes(3 << 20, 21)));
    let borrowed: Vec<(&str, Vec<u8>)> =
        files.iter().map(|(p, d)| (p.as_str(), d.clone())).collect();
    let tar = plain_tar(dir.path(), &borrowed);
    let archive = server.upload("archives", &tar).await;
    assert!(
        archive["catalog_entries"].as_u64().unwrap() > 40,
        "{archive}"
    );
    let data = random_bytes(5 << 20, 22);
    server.upload("other", &data).await;
    let grown = [data.clone(), random_bytes(1 << 20, 23)].concat();
    let appended = server.upload("other", &grown).await;
    assert!(
        appended["new_chunks"].as_u64().unwrap() < appended["chunks"].as_u64().unwrap(),
        "{appended}"
    );

    let (status, listed) = server.get(&server.reader, "/v1/backups?limit=100").await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    let backups = listed["backups"].as_array().unwrap();
    assert_eq!(backups.len(), 5, "{listed}");
    let field = |b: &Value, name: &str| b[name].as_u64().unwrap_or_else(|| panic!("{name}: {b}"));
    for b in backups {
        assert!(field(b, "new_chunks") <= field(b, "chunks"), "{b}");
    }
    let (status, stats) = server.get(&server.reader, "/v1/repository/stats").await;
    assert_eq!(status, StatusCode::OK, "{stats}");
    let total = |name: &str| {
        stats[name]
            .as_u64()
            .unwrap_or_else(|| panic!("{name}: {stats}"))
    };
    // Uploads one after another, nothing purged: each blob was new to exactly one backup.
    let new_blobs: u64 = backups
        .iter()
        .map(|b| field(b, "new_chunks") + field(b, "new_metadata_blobs"))
        .sum();
    assert_eq!(
        new_blobs,
        total("chunks") + total("metadata_blobs"),
        "{stats}"
    );
    let added: u64 = backups.iter().map(|b| field(b, "stored_bytes")).sum();
    assert_eq!(added, total("sealed_bytes"), "{stats}");
    assert!(total("unique_bytes") <= total("logical_bytes"), "{stats}");
    assert!(total("sealed_bytes") <= total("stored_bytes"), "{stats}");
    let overhead = total("stored_bytes") - total("sealed_bytes");
    let blobs = total("chunks") + total("metadata_blobs");
    assert!(
        overhead <= total("packs") * 256 + blobs * 96,
        "pack overhead {overhead}: {stats}"
    );
    // Random data barely compresses: the sealed blobs are the unique bytes plus envelopes.
    assert!(
        total("sealed_bytes") >= total("unique_bytes") / 2,
        "{stats}"
    );
    let series = stats["series"].as_object().unwrap();
    assert_eq!(series.len(), 3, "{stats}");
    let sum = |name: &str| -> u64 { series.values().map(|s| s[name].as_u64().unwrap()).sum() };
    assert_eq!(sum("backups"), total("backups"));
    assert_eq!(sum("logical_bytes"), total("logical_bytes"));
    let streams: u64 = backups.iter().map(|b| field(b, "size")).sum();
    assert!(
        total("logical_bytes") > streams,
        "the archive's catalog counts: {stats}"
    );
}

/// Sixteen overlapping uploads while gc runs in a loop and the older backups they share
/// chunks with are purged: every upload is committed whole, `check --read-data` finds
/// nothing, and every backup downloads byte-exact (the gc/ingest handshake under load).
/// `STOWAGE_CONCURRENCY_ROUNDS` (default 1) repeats it with other data, for longer runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_uploads_beside_gc_and_purges_lose_nothing() {
    let rounds: u64 = std::env::var("STOWAGE_CONCURRENCY_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    for round in 0..rounds {
        sixteen_uploads_beside_gc_and_purges(round * 10_000).await;
    }
}

async fn sixteen_uploads_beside_gc_and_purges(seeds: u64) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let server = Server::start().await;
    let shared = random_bytes(3 * MIB, 60 + seeds);
    let mut old = Vec::new();
    for i in 0..4u64 {
        let mut data = shared.clone();
        data.extend_from_slice(&random_bytes(MIB / 2, 600 + seeds + i));
        old.push(
            server.upload("old", &data).await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let inputs: Vec<Vec<u8>> = (0..16u64)
        .map(|i| {
            let mut data = random_bytes(MIB / 2, 700 + seeds + i);
            data.extend_from_slice(&shared);
            data.extend_from_slice(&random_bytes(MIB / 2, 800 + seeds + i));
            data
        })
        .collect();
    let uploading = AtomicBool::new(true);
    let gc_loop = async {
        let mut runs = 0;
        while uploading.load(Ordering::Relaxed) {
            let (status, accepted) = server.post(&server.admin, "/v1/repository/gc").await;
            assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
            let job = server
                .wait_job(accepted["job"]["id"].as_str().unwrap())
                .await;
            assert_eq!(job["status"], "succeeded", "gc beside uploads: {job}");
            runs += 1;
        }
        runs
    };
    let purges = async {
        for id in &old {
            tokio::time::sleep(Duration::from_millis(30)).await;
            let response = server
                .request(
                    reqwest::Method::DELETE,
                    &server.admin,
                    &format!("/v1/backups/{id}"),
                )
                .await;
            assert_eq!(response.status(), StatusCode::NO_CONTENT);
        }
    };
    let uploads = async {
        let answers = futures::future::join_all(inputs.iter().enumerate().map(|(i, data)| {
            let server = &server;
            async move {
                json_of(
                    server
                        .upload_raw("new", &format!("?name=part{i}"), data.clone())
                        .await,
                )
                .await
            }
        }))
        .await;
        uploading.store(false, Ordering::Relaxed);
        answers
    };
    let (runs, (), answers) = tokio::join!(gc_loop, purges, uploads);
    assert!(runs >= 1);
    let mut ids = Vec::new();
    for (i, (status, backup)) in answers.iter().enumerate() {
        assert_eq!(*status, StatusCode::CREATED, "upload {i}: {backup}");
        ids.push(backup["id"].as_str().unwrap().to_string());
    }
    // Once more with nothing running: the purged backups' own chunks go, nothing else.
    let (_, accepted) = server.post(&server.admin, "/v1/repository/gc").await;
    let gc = server
        .wait_job(accepted["job"]["id"].as_str().unwrap())
        .await;
    assert_eq!(gc["status"], "succeeded", "{gc}");
    let (_, accepted) = server
        .post(&server.admin, "/v1/repository/check?read_data=true")
        .await;
    let check = server
        .wait_job(accepted["job"]["id"].as_str().unwrap())
        .await;
    assert_eq!(check["status"], "succeeded", "{check}");
    assert_eq!(check["result"]["problems"], json!([]), "{check}");
    assert_eq!(server.total("").await, 16);
    for (i, id) in ids.iter().enumerate() {
        assert!(server.download(id).await == inputs[i], "upload {i} differs");
    }
}
