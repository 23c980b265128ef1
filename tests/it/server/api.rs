//! The `/v1` API's rules: keys and roles, errors and limits, series and retention,
//! recycle, restore, purge and gc, series creation, errors raised outside handlers,
//! the scheduler and schedules.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_auth_and_roles() {
    let server = Server::start().await;
    let backup = server.upload("auth", &random_bytes(100_000, 4)).await;
    let id = backup["id"].as_str().unwrap().to_string();

    // No header, malformed headers, a wrong secret.
    let response = server
        .client
        .get(server.url("/v1/backups"))
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(response).await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    let wrong_secret = format!("{}.{}", server.reader_id, "0".repeat(64));
    for authorization in [
        "Bearer".to_string(),
        "Bearer not-a-key".to_string(),
        format!("Basic {}", server.reader),
        format!("Bearer {}", &server.reader[..40]),
        format!("Bearer {wrong_secret}"),
        format!("Bearer {}.{}", "f".repeat(16), "a".repeat(64)),
    ] {
        let response = server
            .client
            .get(server.url("/v1/backups"))
            .header("authorization", &authorization)
            .send()
            .await
            .unwrap();
        let (status, body) = json_of(response).await;
        assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    }

    // A reader reads but does not write.
    let response = server
        .client
        .post(server.url("/v1/series/auth/backups"))
        .bearer_auth(&server.reader)
        .body(vec![1u8; 1000])
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(response).await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let (status, body) = server
        .post(&server.reader, &format!("/v1/backups/{id}/recycle"))
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let (status, body) = server.post(&server.writer, "/v1/repository/gc").await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
    assert_eq!(server.total("").await, 1);
    assert_eq!(server.ids("").await, vec![id.clone()]);
    let (status, _) = server.get(&server.reader, "/v1/series").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(server.download(&id).await, random_bytes(100_000, 4));

    // A revoked key is refused at once.
    server.keys().revoke(&server.reader_id).expect("revoke");
    let (status, body) = server.get(&server.reader, "/v1/backups").await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    let (status, _) = server.get(&server.admin, "/v1/backups").await;
    assert_eq!(status, StatusCode::OK);

    // Operational endpoints need no key.
    for (path, text) in [("/healthz", "ok"), ("/readyz", "ready")] {
        let response = server.client.get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(response.text().await.unwrap().trim(), text, "{path}");
    }
    let response = server
        .client
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let metrics = response.text().await.unwrap();
    assert!(
        metrics.contains("stowage_http_requests_total")
            && metrics.contains("stowage_backups_committed_total 1"),
        "{metrics}"
    );
    let response = server
        .client
        .get(server.url("/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    let (status, document) = json_of(response).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        document["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "{document}"
    );
    let paths = document["paths"].as_object().expect("paths");
    for path in [
        "/v1/backups",
        "/v1/backups/{id}/content",
        "/v1/series/{name}",
        "/v1/repository/gc",
    ] {
        assert!(paths.contains_key(path), "openapi lacks {path}");
    }
    // The upload route (API.md names its parameter `{series}`, the router `{name}`).
    assert!(
        paths.contains_key("/v1/series/{series}/backups")
            || paths.contains_key("/v1/series/{name}/backups"),
        "openapi lacks the upload route: {:?}",
        paths.keys().collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_and_limits() {
    let server = Server::start_with(|config| config.max_upload_bytes = MIB as u64).await;
    let small = random_bytes(200_000, 5);
    server.upload("limits", &small).await;
    assert_eq!(server.total("").await, 1);

    let unknown = "0".repeat(64);
    let (status, body) = server
        .get(&server.reader, &format!("/v1/backups/{unknown}"))
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    let (status, body) = server
        .get(&server.reader, &format!("/v1/backups/{unknown}/content"))
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    let (status, body) = server.get(&server.reader, "/v1/series/nope").await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    let (status, body) = server.get(&server.reader, "/v1/no/such/route").await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    let response = server
        .client
        .get(server.url("/nothing"))
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(response).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");

    // Bad JSON names the field; bad queries and series names are 400.
    let (status, body) = server
        .send_json(
            reqwest::Method::POST,
            &server.writer,
            "/v1/series",
            &json!({"policy": {"keep_last": 1}}),
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_input");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("name"),
        "message does not name the field: {message}"
    );
    let response = server
        .client
        .post(server.url("/v1/series"))
        .bearer_auth(&server.writer)
        .header(CONTENT_TYPE, "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(response).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_input");
    let (status, body) = server.get(&server.reader, "/v1/backups?limit=0").await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_input");
    let response = server.upload_raw("bad%20name%21", "", small.clone()).await;
    let (status, body) = json_of(response).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_input");

    // Over the limit, declared by Content-Length, or found out while streaming a chunked
    // body. The server answers 413 without reading the rest of the body and closes the
    // connection, so a client still sending may see the reset before the answer: either
    // is a refusal (HTTP/1.1 has no other way to stop a sender without Expect).
    let big = random_bytes(2 * MIB, 6);
    for body in [Body::from(big.clone()), chunked(big.clone(), 64 << 10)] {
        let sent = server
            .client
            .post(server.url("/v1/series/limits/backups"))
            .bearer_auth(&server.writer)
            .body(body)
            .send()
            .await;
        if let Ok(response) = sent {
            let (status, body) = json_of(response).await;
            assert_error(
                status,
                &body,
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
            );
        }
    }
    // Exactly at the limit is fine.
    let at_limit = random_bytes(MIB, 7);
    let response = server
        .upload_raw("limits", "", chunked(at_limit.clone(), 100_000))
        .await;
    let (status, body) = json_of(response).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    assert_eq!(
        server.total("").await,
        2,
        "an upload refused with 413 left a backup"
    );
    assert_eq!(server.total("?recycled=true").await, 0);
}

fn policy_keep_last(n: u32) -> Value {
    json!({"keep_last": n, "action": "delete"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_series_and_retention() {
    let server = Server::start().await;
    let (status, series) = server
        .send_json(
            reqwest::Method::POST,
            &server.writer,
            "/v1/series",
            &json!({"name": "db", "policy": policy_keep_last(2)}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{series}");
    assert_eq!(series["name"], "db");
    assert_eq!(series["policy"]["keep_last"], 2, "{series}");
    assert_eq!(series["policy"]["action"], "delete", "{series}");
    assert!(series["created_at"].is_string(), "{series}");

    let (status, body) = server
        .send_json(
            reqwest::Method::POST,
            &server.writer,
            "/v1/series",
            &json!({"name": "db"}),
        )
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "conflict");
    let (status, body) = server
        .send_json(
            reqwest::Method::POST,
            &server.writer,
            "/v1/series",
            &json!({"name": "bad name!"}),
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_input");

    let (status, list) = server.get(&server.reader, "/v1/series").await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = list["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["db"], "{list}");
    let (status, got) = server.get(&server.reader, "/v1/series/db").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got, series);

    let mut ids = Vec::new();
    for i in 0..4u64 {
        let backup = server.upload("db", &random_bytes(300_000, 100 + i)).await;
        ids.push(backup["id"].as_str().unwrap().to_string());
        assert_eq!(
            server.total("?series=db").await,
            (i + 1).min(2),
            "after upload {i} the policy keeps the newest two"
        );
    }
    assert_eq!(server.ids("?series=db").await, ids[2..].to_vec());
    assert_eq!(server.total("?series=db&recycled=true").await, 0);
    for old in &ids[..2] {
        let (status, body) = server
            .get(&server.reader, &format!("/v1/backups/{old}"))
            .await;
        assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    }
    for (i, id) in ids[2..].iter().enumerate() {
        assert_eq!(
            server.download(id).await,
            random_bytes(300_000, 102 + i as u64)
        );
    }

    let (status, updated) = server
        .send_json(
            reqwest::Method::PUT,
            &server.writer,
            "/v1/series/db",
            &json!({"policy": {"keep_last": 3, "action": "recycle"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["policy"]["keep_last"], 3);
    assert_eq!(updated["policy"]["action"], "recycle");
    let (_, got) = server.get(&server.reader, "/v1/series/db").await;
    assert_eq!(got["policy"], updated["policy"]);
    let (status, created) = server
        .send_json(
            reqwest::Method::PUT,
            &server.writer,
            "/v1/series/other",
            &json!({"policy": {"keep_daily": 7}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    assert_eq!(created["name"], "other");

    let (status, body) = json_of(
        server
            .request(reqwest::Method::DELETE, &server.writer, "/v1/series/db")
            .await,
    )
    .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let response = server
        .request(reqwest::Method::DELETE, &server.admin, "/v1/series/db")
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let (status, body) = server.get(&server.reader, "/v1/series/db").await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    assert_eq!(
        server.total("?series=db").await,
        2,
        "deleting a series keeps its backups"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_recycle_restore_purge_gc() {
    let server = Server::start().await;
    let a = random_bytes(4 * MIB, 10);
    let b = random_bytes(4 * MIB, 11);
    let id_a = server.upload("life", &a).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let id_b = server.upload("life", &b).await["id"]
        .as_str()
        .unwrap()
        .to_string();

    let (status, recycled) = server
        .post(&server.writer, &format!("/v1/backups/{id_a}/recycle"))
        .await;
    assert_eq!(status, StatusCode::OK, "{recycled}");
    assert!(recycled["recycled_at"].is_string(), "{recycled}");
    assert_eq!(server.ids("").await, vec![id_b.clone()]);
    assert_eq!(server.ids("?recycled=true").await, vec![id_a.clone()]);
    assert!(server.download(&id_a).await == a, "recycled backup differs");

    let (status, restored) = server
        .post(&server.writer, &format!("/v1/backups/{id_a}/restore"))
        .await;
    assert_eq!(status, StatusCode::OK, "{restored}");
    assert!(restored["recycled_at"].is_null(), "{restored}");
    assert_eq!(server.total("").await, 2);
    assert_eq!(server.total("?recycled=true").await, 0);

    let before = server.stats().await;
    assert_eq!(before["backups"], 2, "{before}");
    let (status, body) = json_of(
        server
            .request(
                reqwest::Method::DELETE,
                &server.writer,
                &format!("/v1/backups/{id_a}"),
            )
            .await,
    )
    .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let response = server
        .request(
            reqwest::Method::DELETE,
            &server.admin,
            &format!("/v1/backups/{id_a}"),
        )
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    for path in [
        format!("/v1/backups/{id_a}"),
        format!("/v1/backups/{id_a}/content"),
    ] {
        let (status, body) = server.get(&server.reader, &path).await;
        assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    }

    let (status, body) = server.post(&server.admin, "/v1/repository/gc").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["job"]["kind"], "gc");
    let job = server
        .wait_job(body["job"]["id"].as_str().expect("gc job id"))
        .await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert!(job["result"].is_object(), "{job}");

    let after = server.stats().await;
    assert_eq!(after["backups"], 1, "{after}");
    let (stored_before, stored_after) = (
        before["stored_bytes"].as_u64().unwrap(),
        after["stored_bytes"].as_u64().unwrap(),
    );
    assert!(
        stored_after + 3 * MIB as u64 <= stored_before,
        "gc reclaimed too little: stored {stored_before} -> {stored_after}"
    );
    assert!(
        server.download(&id_b).await == b,
        "the survivor differs after gc"
    );

    let (status, body) = server
        .post(&server.admin, "/v1/repository/check?read_data=true")
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let job = server.wait_job(body["job"]["id"].as_str().unwrap()).await;
    assert_eq!(job["status"], "succeeded", "{job}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_key_creates_and_reads_backups_but_never_destroys_them() {
    let server = Server::start().await;
    let keys = server.keys();
    let (_, agent) = keys.create("agent", Role::Backup).expect("backup key");
    let data = vec![5u8; 300_000];
    let response = server
        .client
        .post(server.url("/v1/series/agent/backups"))
        .bearer_auth(&agent)
        .body(data.clone())
        .send()
        .await
        .unwrap();
    let (status, backup) = json_of(response).await;
    assert_eq!(status, StatusCode::CREATED, "{backup}");
    let id = backup["id"].as_str().unwrap().to_string();
    let content = server
        .request(
            reqwest::Method::GET,
            &agent,
            &format!("/v1/backups/{id}/content"),
        )
        .await;
    assert_eq!(content.status(), StatusCode::OK);
    assert!(content.bytes().await.unwrap() == data);

    for (method, path) in [
        (reqwest::Method::POST, format!("/v1/backups/{id}/recycle")),
        (reqwest::Method::DELETE, format!("/v1/backups/{id}")),
        (reqwest::Method::DELETE, "/v1/series/agent".to_string()),
        (reqwest::Method::POST, "/v1/repository/gc".to_string()),
    ] {
        let (status, body) = json_of(server.request(method.clone(), &agent, &path).await).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {body}");
        assert_eq!(body["error"]["code"], "forbidden");
    }
    let (status, _) = server
        .send_json(
            reqwest::Method::PUT,
            &agent,
            "/v1/series/agent",
            &json!({"keep_last": 1, "action": "delete"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a policy that would delete");
    let (status, _) = server
        .get(&server.reader, &format!("/v1/backups/{id}"))
        .await;
    assert_eq!(status, StatusCode::OK, "the backup is still there");
    // A writer recycles it; the agent may take it back out of the recycle bin.
    let (status, _) = server
        .post(&server.writer, &format!("/v1/backups/{id}/recycle"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = server
        .post(&agent, &format!("/v1/backups/{id}/restore"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_of_one_series_make_it_once() {
    let server = Server::start().await;
    let body = json!({"name": "raced", "policy": {"keep_last": 3}});
    let attempts = (0..8)
        .map(|_| server.send_json(reqwest::Method::POST, &server.writer, "/v1/series", &body));
    let answers = futures::future::join_all(attempts).await;
    let created = answers
        .iter()
        .filter(|(status, _)| *status == StatusCode::CREATED)
        .count();
    assert_eq!(created, 1, "{answers:?}");
    for (status, body) in &answers {
        if *status != StatusCode::CREATED {
            assert_eq!(*status, StatusCode::CONFLICT, "{body}");
            assert_eq!(body["error"]["code"], "conflict");
        }
    }
}

/// A backup uploaded into a series nobody created makes the series exist: it is listed
/// and can be read, never a backup in a series that does not exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_into_a_new_series_creates_the_series() {
    let server = Server::start().await;
    let uploaded = server.upload("native", b"twelve bytes").await;
    assert_eq!(uploaded["series"], "native", "{uploaded}");
    let (status, listed) = server.get(&server.reader, "/v1/series").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        listed["series"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "native"),
        "{listed}"
    );
    let (status, series) = server.get(&server.reader, "/v1/series/native").await;
    assert_eq!(status, StatusCode::OK, "{series}");
    // A second upload into it keeps the record (and any policy) as it is.
    server.upload("native", b"more bytes").await;
    assert_eq!(server.total("?series=native").await, 2);
}

/// Errors raised outside the handlers — a wrong method, a body over the JSON limit, a
/// query value of the wrong type, a path that is not UTF-8, an over-long URL or header
/// section — answer in the one error shape, never as `text/plain` or an empty body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_escaping_handlers_keep_the_error_shape() {
    let server = Server::start().await;
    let send = |request: reqwest::RequestBuilder| async move {
        let response = request.send().await.expect("request");
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_string());
        let (status, headers, body) = parts(response).await;
        assert_eq!(
            content_type.as_deref(),
            Some("application/json"),
            "{status} {body}"
        );
        (status, headers, body)
    };
    let client = &server.client;
    let admin = &server.admin;

    let (status, headers, body) =
        send(client.patch(server.url("/v1/series")).bearer_auth(admin)).await;
    assert_error(
        status,
        &body,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
    assert!(headers.get("allow").is_some(), "405 keeps its Allow header");

    // Just over the limit: the server reads the whole body before it answers, so the
    // client is never cut off mid-write (a far larger body races the server's close and
    // can end in a broken pipe before the 413 is read).
    let over = ServerConfig::default().max_json_bytes + 512;
    let huge = format!("{{\"name\": \"{}\"}}", "a".repeat(over));
    let (status, _, body) = send(
        client
            .post(server.url("/v1/series"))
            .bearer_auth(admin)
            .header(CONTENT_TYPE, "application/json")
            .body(huge),
    )
    .await;
    assert_error(
        status,
        &body,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    );

    for path in [
        "/v1/backups?limit=-1",
        "/v1/backups?offset=many",
        "/v1/series/native/backups?wait=maybe",
        "/v1/backups/%ff",
    ] {
        let method = if path.contains("wait") {
            reqwest::Method::POST
        } else {
            reqwest::Method::GET
        };
        let (status, _, body) =
            send(client.request(method, server.url(path)).bearer_auth(admin)).await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_input");
        assert!(
            body["error"]["message"].as_str().unwrap().len() < 1100,
            "{body}"
        );
    }
    let (status, _, body) = send(
        client
            .post(server.url("/v1/backups/00000000-0000-4000-8000-000000000000/url?ttl=-5"))
            .bearer_auth(admin),
    )
    .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_input");

    let long = format!("/v1/backups?prefix={}", "a".repeat(10_000));
    let (status, _, body) = send(client.get(server.url(&long)).bearer_auth(admin)).await;
    assert_error(status, &body, StatusCode::URI_TOO_LONG, "uri_too_long");
    let (status, _, body) = send(
        client
            .get(server.url("/v1/backups"))
            .bearer_auth(admin)
            .header("x-padding", "a".repeat(70_000)),
    )
    .await;
    assert_error(
        status,
        &body,
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "headers_too_large",
    );
    // The answers are still right for requests that are fine.
    let (status, _) = server.get(&server.reader, "/v1/backups?limit=1").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_shows_its_tasks_in_v1_and_the_metrics() {
    let server = Server::start().await;
    let (status, body) = server.get(&server.reader, "/v1/scheduler").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let names: Vec<&str> = body["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    for name in [
        "wings-upload-expiry",
        "state-mirror",
        "session-expiry",
        "backupchan/recycle_job",
        "backupchan/integrity_check_job",
    ] {
        assert!(names.contains(&name), "{name}: {body}");
    }
    assert!(body["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["next_run"].is_string() && t["running"].is_boolean()));
    let metrics = server.metrics().await;
    assert!(
        metrics.contains("stowage_scheduled_runs_total{task=\"state-mirror\"}"),
        "{metrics}"
    );
}

/// Schedules in /v1: a crontab is checked when stored (the refusal names the field), the
/// next run follows the expression (five fields or six with a year), a past year is kept
/// with no next run and an empty calendar, names are unique, disabling clears the next
/// run, and deleting takes the admin role.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_are_checked_stored_and_expanded() {
    let server = Server::start().await;
    let create = |name: &str, crontab: &str| json!({"name": name, "crontab": crontab});
    let (status, weekly) = server
        .send_json(
            reqwest::Method::POST,
            &server.writer,
            "/v1/schedules",
            &create("weekly", "0 5 * * MON *"),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{weekly}");
    assert_eq!(weekly["enabled"], true);
    let next = chrono::DateTime::parse_from_rfc3339(weekly["next_run"].as_str().unwrap()).unwrap();
    assert_eq!(
        chrono::Datelike::weekday(&next),
        chrono::Weekday::Mon,
        "{weekly}"
    );
    let (status, body) = server
        .send_json(
            reqwest::Method::POST,
            &server.writer,
            "/v1/schedules",
            &create("weekly", "* * * * *"),
        )
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "conflict");
    for (crontab, words) in [
        ("0 5 * * 0 *", "day-of-week"),
        ("0 25 * * *", "hour"),
        ("* * *", "3 fields"),
    ] {
        let (status, body) = server
            .send_json(
                reqwest::Method::POST,
                &server.writer,
                "/v1/schedules",
                &create("bad", crontab),
            )
            .await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_input");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(words),
            "{crontab}: {body}"
        );
    }
    let (status, past) = server
        .send_json(
            reqwest::Method::POST,
            &server.writer,
            "/v1/schedules",
            &create("past", "0 0 1 1 * 2020"),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{past}");
    assert_eq!(past["next_run"], Value::Null);
    let (_, calendar) = server
        .get(
            &server.reader,
            "/v1/schedules/past/calendar?from=2026-01-01T00:00:00Z&to=2030-01-01T00:00:00Z",
        )
        .await;
    assert_eq!(calendar["occurrences"], json!([]));
    let (_, calendar) = server
        .get(
            &server.reader,
            "/v1/schedules/weekly/calendar?from=2026-11-01T00:00:00Z&to=2026-11-30T23:59:50Z",
        )
        .await;
    assert_eq!(
        calendar["occurrences"],
        json!([
            "2026-11-02T05:00:00Z",
            "2026-11-09T05:00:00Z",
            "2026-11-16T05:00:00Z",
            "2026-11-23T05:00:00Z",
            "2026-11-30T05:00:00Z"
        ])
    );
    let (status, body) = server
        .get(
            &server.reader,
            "/v1/schedules/weekly/calendar?from=2026-12-01T00:00:00Z&to=2026-11-01T00:00:00Z",
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_input");
    let (status, off) = server
        .send_json(
            reqwest::Method::PATCH,
            &server.writer,
            "/v1/schedules/weekly",
            &json!({"enabled": false}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{off}");
    assert_eq!(
        (&off["enabled"], &off["next_run"]),
        (&json!(false), &Value::Null)
    );
    let (status, body) = server
        .send_json(
            reqwest::Method::PATCH,
            &server.writer,
            "/v1/schedules/weekly",
            &json!({"crontab": "nonsense"}),
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_input");
    // Deleting takes the admin role.
    let (status, body) = json_of(
        server
            .request(
                reqwest::Method::DELETE,
                &server.writer,
                "/v1/schedules/past",
            )
            .await,
    )
    .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let (status, listed) = server.get(&server.reader, "/v1/schedules").await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = listed["schedules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["past", "weekly"]);
    let (status, _) = server.get(&server.reader, "/v1/schedules/none").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// Every page of `/v1/backups` that `query` starts, following `next`: the ids, and the
/// `total` the first page gave.
async fn all_pages(server: &Server, query: &str) -> (Vec<String>, u64) {
    let (mut ids, mut total, mut after) = (Vec::new(), None, None::<String>);
    loop {
        let path = match &after {
            Some(cursor) => format!("/v1/backups?{query}&after={cursor}"),
            None => format!("/v1/backups?{query}"),
        };
        let (status, page) = server.get(&server.reader, &path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {page}");
        total.get_or_insert(page["total"].as_u64().unwrap());
        ids.extend(
            page["backups"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b["id"].as_str().unwrap().to_string()),
        );
        match page["next"].as_str() {
            Some(next) => after = Some(next.to_string()),
            None => return (ids, total.unwrap_or(0)),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_listings_page_by_position_in_time_order() {
    let server = Server::start().await;
    let mut pages = Vec::new();
    for n in 0..7u64 {
        let id = server.upload("pages", &random_bytes(4096, 300 + n)).await["id"]
            .as_str()
            .unwrap()
            .to_string();
        pages.push(id);
        if n % 3 == 0 {
            server
                .upload("pages-other", &random_bytes(1024, 400 + n))
                .await;
        }
    }
    let recycled = pages.remove(2);
    let (status, body) = server
        .post(&server.writer, &format!("/v1/backups/{recycled}/recycle"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Pages of three, oldest first then newest first, cover the live backups once each.
    assert_eq!(
        all_pages(&server, "series=pages&limit=3").await,
        (pages.clone(), 6)
    );
    let newest: Vec<String> = pages.iter().rev().cloned().collect();
    assert_eq!(
        all_pages(&server, "series=pages&limit=3&order=newest").await,
        (newest.clone(), 6)
    );
    assert_eq!(
        all_pages(&server, "series=pages&recycled=true&limit=1").await,
        (vec![recycled.clone()], 1)
    );
    let (everything, total) = all_pages(&server, "limit=4").await;
    assert_eq!((everything.len(), total), (9, 9));
    // offset skips matching backups only.
    let (_, page) = server
        .get(&server.reader, "/v1/backups?series=pages&offset=2&limit=2")
        .await;
    let slice: Vec<&str> = page["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    assert_eq!(slice, [pages[2].as_str(), pages[3].as_str()]);

    // A position stays good when its backup is purged.
    let (_, first) = server
        .get(
            &server.reader,
            "/v1/backups?series=pages&limit=2&order=newest",
        )
        .await;
    let cursor = first["next"].as_str().unwrap().to_string();
    let status = server
        .request(
            reqwest::Method::DELETE,
            &server.admin,
            &format!("/v1/backups/{}", newest[1]),
        )
        .await
        .status();
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, rest) = server
        .get(
            &server.reader,
            &format!("/v1/backups?series=pages&limit=10&order=newest&after={cursor}"),
        )
        .await;
    let ids: Vec<&str> = rest["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        newest[2..].iter().map(String::as_str).collect::<Vec<_>>()
    );
    assert_eq!(
        (rest["total"].as_u64(), rest["next"].as_str()),
        (Some(5), None)
    );

    // Bad positions and orders are refused; a name no series can have lists nothing.
    for bad in ["order=sideways", "after=yesterday", "after=12_notanid"] {
        let (status, body) = server
            .get(&server.reader, &format!("/v1/backups?{bad}"))
            .await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_input");
    }
    let (status, body) = server
        .get(&server.reader, "/v1/backups?series=pages%00x")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["backups"], json!([]));
}
