//! Every route's real answers validated against the OpenAPI document, and every
//! documented operation exercised.

use super::*;

/// One request of the contract test: what is sent and which documented operation it is.
struct Call {
    method: reqwest::Method,
    template: &'static str,
    path: String,
    key: Option<String>,
    headers: Vec<(&'static str, String)>,
    body: Option<Vec<u8>>,
}

impl Call {
    fn new(
        method: reqwest::Method,
        template: &'static str,
        path: impl Into<String>,
        key: &str,
    ) -> Call {
        Call {
            method,
            template,
            path: path.into(),
            key: Some(key.to_string()),
            headers: Vec::new(),
            body: None,
        }
    }

    fn anonymous(mut self) -> Call {
        self.key = None;
        self
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Call {
        self.headers.push((name, value.into()));
        self
    }

    fn json(mut self, body: Value) -> Call {
        self.headers
            .push(("content-type", "application/json".into()));
        self.body = Some(body.to_string().into_bytes());
        self
    }

    fn bytes(mut self, body: Vec<u8>) -> Call {
        self.body = Some(body);
        self
    }
}

/// Sends `call` and checks its answer against the document: the status is documented
/// for the operation, the media type is the documented one, and a JSON body validates
/// against the documented schema. Returns the status and the JSON body (or null).
async fn check_against_document(server: &Server, doc: &Value, call: Call) -> (StatusCode, Value) {
    let operation = &doc["paths"][call.template][call.method.as_str().to_lowercase()];
    assert!(
        operation.is_object(),
        "{} {} is not documented",
        call.method,
        call.template
    );
    let mut request = server
        .client
        .request(call.method.clone(), server.url(&call.path));
    if let Some(key) = &call.key {
        request = request.bearer_auth(key);
    }
    for (name, value) in &call.headers {
        request = request.header(*name, value);
    }
    if let Some(body) = call.body {
        request = request.body(body);
    }
    let response = request.send().await.expect("request");
    let status = response.status();
    let content_type = response.headers().get(CONTENT_TYPE).map(|v| {
        v.to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .trim()
            .to_string()
    });
    let bytes = response.bytes().await.expect("body");
    let context = format!("{} {} → {status}", call.method, call.path);
    let documented = &operation["responses"][status.as_str()];
    assert!(
        documented.is_object(),
        "{context}: status not documented: {}",
        String::from_utf8_lossy(&bytes)
    );
    let Some(content) = documented["content"].as_object() else {
        assert!(
            bytes.is_empty(),
            "{context}: documented without a body, got {bytes:?}"
        );
        return (status, Value::Null);
    };
    let media = content_type.unwrap_or_else(|| panic!("{context}: no Content-Type"));
    assert!(
        content.contains_key(&media),
        "{context}: {media} is not documented ({content:?})"
    );
    if media != "application/json" {
        return (status, Value::Null);
    }
    let body: Value = serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{context}: {e}"));
    let schema = json!({
        "$ref": content[&media]["schema"]["$ref"],
        "components": doc["components"],
    });
    let validator =
        jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("{context}: schema: {e}"));
    let errors: Vec<String> = validator
        .iter_errors(&body)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    assert!(
        errors.is_empty(),
        "{context}: {body}\n{}",
        errors.join("\n")
    );
    (status, body)
}

/// Real answers of every route, successes and errors, validate against the OpenAPI
/// document the server serves, and every documented operation is exercised: the
/// document cannot drift from the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_as_the_openapi_document_says() {
    use reqwest::Method;
    let roots = tempfile::tempdir().unwrap();
    let www = roots.path().canonicalize().unwrap().join("www");
    std::fs::create_dir(&www).unwrap();
    std::fs::write(www.join("index.html"), b"<p>hello</p>").unwrap();
    let root = roots.path().to_path_buf();
    let server = Server::start_with(|config| config.policies.roots = vec![root]).await;
    let (status, doc) = server.get(&server.reader, "/v1/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    let (admin, writer, reader) = (
        server.admin.clone(),
        server.writer.clone(),
        server.reader.clone(),
    );
    let mut seen = std::collections::BTreeSet::new();
    macro_rules! check {
        ($call:expr) => {{
            let call: Call = $call;
            seen.insert((call.method.as_str().to_lowercase(), call.template));
            check_against_document(&server, &doc, call).await
        }};
    }
    for path in ["/healthz", "/readyz", "/metrics"] {
        let template: &'static str = match path {
            "/healthz" => "/healthz",
            "/readyz" => "/readyz",
            _ => "/metrics",
        };
        assert_eq!(
            check!(Call::new(Method::GET, template, path, "").anonymous()).0,
            StatusCode::OK
        );
    }
    check!(Call::new(Method::GET, "/v1/openapi.json", "/v1/openapi.json", "").anonymous());

    // Series.
    let policy = json!({"keep_last": 3, "action": "recycle"});
    let (status, _) = check!(Call::new(Method::POST, "/v1/series", "/v1/series", &writer)
        .json(json!({"name": "docs", "policy": policy})));
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) =
        check!(Call::new(Method::POST, "/v1/series", "/v1/series", &writer)
            .json(json!({"name": "docs"})));
    assert_eq!(status, StatusCode::CONFLICT);
    check!(Call::new(Method::GET, "/v1/series", "/v1/series", &reader));
    check!(Call::new(
        Method::GET,
        "/v1/series/{name}",
        "/v1/series/docs",
        &reader
    ));
    check!(
        Call::new(Method::PUT, "/v1/series/{name}", "/v1/series/docs", &writer)
            .json(json!({"policy": {"keep_daily": 7}}))
    );
    let (status, _) = check!(Call::new(
        Method::GET,
        "/v1/series/{name}",
        "/v1/series/nothing",
        &reader
    ));
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Uploads: waited for, and answered at once.
    let data = random_bytes(300_000, 51);
    let (status, stream) = check!(Call::new(
        Method::POST,
        "/v1/series/{name}/backups",
        "/v1/series/docs/backups?name=data.bin&sha256=true",
        &writer,
    )
    .bytes(data.clone()));
    assert_eq!(status, StatusCode::CREATED);
    let id = stream["id"].as_str().unwrap().to_string();
    // The validation is real: a field too many, or one missing, fails it.
    let backup_schema =
        json!({"$ref": "#/components/schemas/Backup", "components": doc["components"]});
    let validator = jsonschema::validator_for(&backup_schema).unwrap();
    assert!(validator.is_valid(&stream));
    let mut extra = stream.clone();
    extra["surprise"] = json!(1);
    assert!(!validator.is_valid(&extra));
    let mut short = stream.clone();
    short.as_object_mut().unwrap().remove("new_chunks");
    assert!(!validator.is_valid(&short));
    let dir = tempfile::tempdir().unwrap();
    let tar = plain_tar(
        dir.path(),
        &[("a/b.txt", b"bee".to_vec()), ("c.txt", b"sea".to_vec())],
    );
    let (status, archive) = check!(Call::new(
        Method::POST,
        "/v1/series/{name}/backups",
        "/v1/series/docs/backups?wait=false",
        &writer,
    )
    .bytes(tar));
    assert_eq!(status, StatusCode::ACCEPTED);
    let upload_job = archive["job"]["id"].as_str().unwrap().to_string();
    let finished = server.wait_job(&upload_job).await;
    let archive_id = finished["result"]["id"].as_str().unwrap().to_string();
    let (status, _) = check!(Call::new(
        Method::POST,
        "/v1/series/{name}/backups",
        "/v1/series/docs/backups?wait=maybe",
        &writer,
    )
    .bytes(b"x".to_vec()));
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Backups.
    check!(Call::new(
        Method::GET,
        "/v1/backups",
        "/v1/backups?series=docs&limit=10&offset=0",
        &reader
    ));
    check!(Call::new(
        Method::GET,
        "/v1/backups/{id}",
        format!("/v1/backups/{id}"),
        &reader
    ));
    let (status, _) = check!(Call::new(
        Method::GET,
        "/v1/backups",
        "/v1/backups?limit=-1",
        &reader
    ));
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let content = format!("/v1/backups/{id}/content");
    assert_eq!(
        check!(Call::new(
            Method::GET,
            "/v1/backups/{id}/content",
            content.clone(),
            &reader
        ))
        .0,
        StatusCode::OK
    );
    let (status, _) = check!(Call::new(
        Method::GET,
        "/v1/backups/{id}/content",
        content.clone(),
        &reader
    )
    .header("range", "bytes=10-99"));
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    let (status, _) = check!(Call::new(
        Method::GET,
        "/v1/backups/{id}/content",
        content.clone(),
        &reader
    )
    .header("range", "bytes=999999999-"));
    assert_eq!(status, StatusCode::RANGE_NOT_SATISFIABLE);
    let (_, signed) = check!(Call::new(
        Method::POST,
        "/v1/backups/{id}/url",
        format!("/v1/backups/{id}/url?ttl=600"),
        &reader
    ));
    let link = signed["url"].as_str().unwrap();
    let link_path = &link[link.find("/v1/download/").unwrap()..];
    assert_eq!(
        check!(Call::new(Method::GET, "/v1/download/{id}", link_path, "").anonymous()).0,
        StatusCode::OK
    );
    let (status, _) = check!(Call::new(Method::GET, "/v1/download/{id}", link_path, "")
        .anonymous()
        .header("range", "bytes=-100"));
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    let forged = link_path.replace("signature=", "signature=0");
    let (status, _) = check!(Call::new(Method::GET, "/v1/download/{id}", forged, "").anonymous());
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, page) = check!(Call::new(
        Method::GET,
        "/v1/backups/{id}/catalog",
        format!("/v1/backups/{archive_id}/catalog?prefix=a&limit=5"),
        &reader,
    ));
    assert!(!page["entries"].as_array().unwrap().is_empty(), "{page}");
    let first = page["entries"][0]["path"].as_str().unwrap().to_string();
    let (_, folder) = check!(Call::new(
        Method::GET,
        "/v1/backups/{id}/catalog/folder",
        format!("/v1/backups/{archive_id}/catalog/folder?limit=1"),
        &reader,
    ));
    assert!(
        !folder["entries"].as_array().unwrap().is_empty(),
        "{folder}"
    );
    let (status, _) = check!(Call::new(
        Method::GET,
        "/v1/backups/{id}/catalog/entry",
        format!("/v1/backups/{archive_id}/catalog/entry?path={first}"),
        &reader,
    ));
    assert_eq!(status, StatusCode::OK);
    let (status, _) = check!(Call::new(
        Method::GET,
        "/v1/backups/{id}/catalog/entry",
        format!("/v1/backups/{archive_id}/catalog/entry?path=no/such/entry"),
        &reader,
    ));
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = check!(Call::new(
        Method::POST,
        "/v1/backups/{id}/recycle",
        format!("/v1/backups/{id}/recycle"),
        &reader
    ));
    assert_eq!(status, StatusCode::FORBIDDEN);
    check!(Call::new(
        Method::POST,
        "/v1/backups/{id}/recycle",
        format!("/v1/backups/{id}/recycle"),
        &writer
    ));
    check!(Call::new(
        Method::POST,
        "/v1/backups/{id}/restore",
        format!("/v1/backups/{id}/restore"),
        &writer
    ));

    // Schedules.
    let (status, _) = check!(
        Call::new(Method::POST, "/v1/schedules", "/v1/schedules", &writer)
            .json(json!({"name": "nightly", "crontab": "0 2 * * *"}))
    );
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = check!(
        Call::new(Method::POST, "/v1/schedules", "/v1/schedules", &writer)
            .json(json!({"name": "bad", "crontab": "61 * * * *"}))
    );
    assert_eq!(status, StatusCode::BAD_REQUEST);
    check!(Call::new(
        Method::GET,
        "/v1/schedules",
        "/v1/schedules",
        &reader
    ));
    check!(Call::new(
        Method::GET,
        "/v1/schedules/{name}",
        "/v1/schedules/nightly",
        &reader
    ));
    check!(Call::new(
        Method::PATCH,
        "/v1/schedules/{name}",
        "/v1/schedules/nightly",
        &writer
    )
    .json(json!({"enabled": false})));
    check!(Call::new(
        Method::GET,
        "/v1/schedules/{name}/calendar",
        "/v1/schedules/nightly/calendar?from=2026-12-01T00:00:00Z&to=2026-12-03T00:00:00Z",
        &reader,
    ));
    let (status, _) = check!(Call::new(
        Method::DELETE,
        "/v1/schedules/{name}",
        "/v1/schedules/nightly",
        &admin
    ));
    assert_eq!(status, StatusCode::NO_CONTENT);

    // Policies.
    let www = www.to_str().unwrap();
    let (status, _) = check!(
        Call::new(Method::POST, "/v1/policies", "/v1/policies", &admin).json(json!({
            "name": "www", "series": "www",
            "source": {"kind": "folders", "paths": [www], "exclude": ["*.tmp"]}}))
    );
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = check!(
        Call::new(Method::POST, "/v1/policies", "/v1/policies", &admin).json(json!({
            "name": "etc", "series": "etc", "source": {"kind": "folders", "paths": ["/etc"]}}))
    );
    assert_eq!(status, StatusCode::FORBIDDEN, "outside the roots");
    // A client host's folders, backed up by its agent: the server's roots do not apply;
    // its run is an assignment, queued for the host's agent.
    let (status, made) = check!(
        Call::new(Method::POST, "/v1/policies", "/v1/policies", &admin).json(json!({
            "name": "box", "series": "box",
            "source": {"kind": "agent", "host": "box-1", "paths": ["/"], "exclude": ["/proc"]}}))
    );
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let (status, run) = check!(Call::new(
        Method::POST,
        "/v1/policies/{name}/run",
        "/v1/policies/box/run",
        &writer
    ));
    assert_eq!(status, StatusCode::ACCEPTED, "{run}");
    assert_eq!(run["job"]["kind"], "policy", "{run}");
    assert_eq!(run["job"]["status"], "queued", "{run}");
    let (status, _) = check!(
        Call::new(Method::POST, "/v1/policies", "/v1/policies", &writer).json(json!({
            "name": "w", "series": "w", "source": {"kind": "folders", "paths": [www]}}))
    );
    assert_eq!(status, StatusCode::FORBIDDEN, "a writer creates no policy");
    check!(Call::new(
        Method::GET,
        "/v1/policies",
        "/v1/policies",
        &reader
    ));
    check!(Call::new(
        Method::GET,
        "/v1/policies/{name}",
        "/v1/policies/www",
        &reader
    ));
    check!(Call::new(
        Method::PATCH,
        "/v1/policies/{name}",
        "/v1/policies/www",
        &admin
    )
    .json(json!({"retention": {"keep_last": 1}})));
    let (status, run) = check!(Call::new(
        Method::POST,
        "/v1/policies/{name}/run",
        "/v1/policies/www/run",
        &writer
    ));
    assert_eq!(status, StatusCode::ACCEPTED);
    let job = server.wait_job(run["job"]["id"].as_str().unwrap()).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let (status, _) = check!(Call::new(
        Method::DELETE,
        "/v1/policies/{name}",
        "/v1/policies/www",
        &admin
    ));
    assert_eq!(status, StatusCode::NO_CONTENT);

    // A backup session: the stream is one chunk the client names itself.
    let (status, opened) = check!(
        Call::new(Method::POST, "/v1/sessions", "/v1/sessions", &writer)
            .json(json!({"series": "notes", "name": "note.txt"}))
    );
    assert_eq!(status, StatusCode::CREATED);
    let session = opened["session"]["id"].as_str().unwrap().to_string();
    let key: [u8; 32] = hex::decode(opened["writer"]["chunk_id_key"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let note = b"a note the client chunked itself".to_vec();
    let chunk = stowage::pipeline::keys::chunk_id_with(&key, &note);
    let mut batch = Vec::new();
    stowage::format::chunk_batch::encode_chunk(
        &mut batch,
        &chunk,
        stowage::format::chunk_batch::ChunkEncoding::Raw,
        note.len() as u32,
        &note,
    );
    let mut entries = Vec::new();
    stowage::format::chunk_batch::encode_entry(
        &mut entries,
        &stowage::format::content::ContentEntry {
            id: chunk,
            len: note.len() as u32,
        },
    );
    check!(Call::new(
        Method::GET,
        "/v1/sessions/{id}/known",
        format!("/v1/sessions/{session}/known?start=0&limit=10"),
        &writer
    ));
    check!(Call::new(
        Method::POST,
        "/v1/sessions/{id}/chunks",
        format!("/v1/sessions/{session}/chunks"),
        &writer
    )
    .bytes(batch));
    check!(Call::new(
        Method::POST,
        "/v1/sessions/{id}/append",
        format!("/v1/sessions/{session}/append?at=0"),
        &writer
    )
    .bytes(entries.clone()));
    let (status, _) = check!(Call::new(
        Method::POST,
        "/v1/sessions/{id}/append",
        format!("/v1/sessions/{session}/append?at=0"),
        &writer
    )
    .bytes(entries.clone()));
    assert_eq!(status, StatusCode::CONFLICT);
    let entries_again = entries;
    check!(Call::new(
        Method::GET,
        "/v1/sessions/{id}",
        format!("/v1/sessions/{session}"),
        &writer
    ));
    let (status, _) = check!(Call::new(
        Method::POST,
        "/v1/sessions/{id}/finish",
        format!("/v1/sessions/{session}/finish"),
        &writer
    )
    .json(json!({"size": note.len(), "blake3": blake3_hex(&note)})));
    assert_eq!(status, StatusCode::CREATED);
    // A tree session of one file, the same chunk, known now.
    let (_, opened) = check!(
        Call::new(Method::POST, "/v1/sessions", "/v1/sessions", &writer)
            .json(json!({"series": "notes", "name": "/notes", "kind": "tree"}))
    );
    let tree = opened["session"]["id"].as_str().unwrap().to_string();
    check!(Call::new(
        Method::POST,
        "/v1/sessions/{id}/append",
        format!("/v1/sessions/{tree}/append?at=0"),
        &writer
    )
    .bytes(entries_again.clone()));
    let line = json!({"path": "note.txt", "kind": "file", "mode": 420, "mtime": 0,
                      "uid": 0, "gid": 0, "size": note.len(), "offset": 0});
    for expected in [StatusCode::OK, StatusCode::CONFLICT] {
        let (status, _) = check!(Call::new(
            Method::POST,
            "/v1/sessions/{id}/catalog",
            format!("/v1/sessions/{tree}/catalog?at=0"),
            &writer
        )
        .bytes(format!("{line}\n").into_bytes()));
        assert_eq!(status, expected);
    }
    let (status, _) = check!(Call::new(
        Method::POST,
        "/v1/sessions/{id}/finish",
        format!("/v1/sessions/{tree}/finish"),
        &writer
    )
    .json(json!({"size": note.len(), "entries_blake3": blake3_hex(&entries_again)})));
    assert_eq!(status, StatusCode::CREATED);
    let (_, opened) = check!(
        Call::new(Method::POST, "/v1/sessions", "/v1/sessions", &writer)
            .json(json!({"series": "notes"}))
    );
    let (status, _) = check!(Call::new(
        Method::DELETE,
        "/v1/sessions/{id}",
        format!("/v1/sessions/{}", opened["session"]["id"].as_str().unwrap()),
        &writer
    ));
    assert_eq!(status, StatusCode::NO_CONTENT);

    // An agent's work: assigned, taken, reported on, ended.
    let (status, _) = check!(Call::new(
        Method::POST,
        "/v1/agents/{host}/jobs",
        "/v1/agents/box/jobs",
        &writer
    )
    .json(json!({"action": "backup", "series": "box", "paths": ["/srv"]})));
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, task) = check!(Call::new(
        Method::GET,
        "/v1/agent/next",
        "/v1/agent/next?host=box&wait=1",
        &writer
    ));
    assert_eq!(status, StatusCode::OK);
    let agent_job = task["job"].as_str().unwrap().to_string();
    let (status, _) = check!(Call::new(
        Method::GET,
        "/v1/agent/next",
        "/v1/agent/next?host=box&wait=1",
        &writer
    ));
    assert_eq!(status, StatusCode::NO_CONTENT);
    check!(Call::new(Method::GET, "/v1/agents", "/v1/agents", &reader));
    check!(Call::new(
        Method::POST,
        "/v1/agent/jobs/{id}/progress",
        format!("/v1/agent/jobs/{agent_job}/progress"),
        &writer
    )
    .json(json!({"bytes_done": 1})));
    let (status, _) = check!(Call::new(
        Method::POST,
        "/v1/agent/jobs/{id}/finish",
        format!("/v1/agent/jobs/{agent_job}/finish"),
        &writer
    )
    .json(json!({"error": "no such folder"})));
    assert_eq!(status, StatusCode::OK);

    // Jobs and the repository.
    check!(Call::new(Method::GET, "/v1/jobs", "/v1/jobs", &reader));
    check!(Call::new(
        Method::GET,
        "/v1/scheduler",
        "/v1/scheduler",
        &reader
    ));
    check!(Call::new(
        Method::GET,
        "/v1/jobs/{id}",
        format!("/v1/jobs/{upload_job}"),
        &reader
    ));
    let (status, _) = check!(Call::new(
        Method::POST,
        "/v1/jobs/{id}/cancel",
        format!("/v1/jobs/{upload_job}/cancel"),
        &writer
    ));
    assert_eq!(status, StatusCode::CONFLICT, "the job has ended");
    check!(Call::new(
        Method::GET,
        "/v1/repository/stats",
        "/v1/repository/stats",
        &reader
    ));
    let (_, check) = check!(Call::new(
        Method::POST,
        "/v1/repository/check",
        "/v1/repository/check?read_data=true",
        &admin
    ));
    let (_, gc) = check!(Call::new(
        Method::POST,
        "/v1/repository/gc",
        "/v1/repository/gc?dry_run=true",
        &admin
    ));
    for job in [&check, &gc] {
        let id = job["job"]["id"].as_str().unwrap();
        server.wait_job(id).await;
        check!(Call::new(
            Method::GET,
            "/v1/jobs/{id}",
            format!("/v1/jobs/{id}"),
            &reader
        ));
    }
    let (status, _) = check!(Call::new(
        Method::POST,
        "/v1/repository/gc",
        "/v1/repository/gc",
        &writer
    ));
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = check!(Call::new(Method::GET, "/v1/jobs", "/v1/jobs", &reader).anonymous());
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = check!(Call::new(Method::GET, "/v1/jobs", "/v1/jobs", &reader)
        .header("x-padding", "a".repeat(70_000)));
    assert_eq!(status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);

    // Deletions last.
    assert_eq!(
        check!(Call::new(
            Method::DELETE,
            "/v1/backups/{id}",
            format!("/v1/backups/{id}"),
            &admin
        ))
        .0,
        StatusCode::NO_CONTENT
    );
    let (status, _) = check!(Call::new(
        Method::GET,
        "/v1/backups/{id}",
        format!("/v1/backups/{id}"),
        &reader
    ));
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        check!(Call::new(
            Method::DELETE,
            "/v1/series/{name}",
            "/v1/series/docs",
            &admin
        ))
        .0,
        StatusCode::NO_CONTENT
    );

    let documented: std::collections::BTreeSet<(String, &str)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, methods)| {
            methods
                .as_object()
                .unwrap()
                .keys()
                .map(move |m| (m.clone(), path.as_str()))
        })
        .collect();
    let missing: Vec<_> = documented.iter().filter(|op| !seen.contains(*op)).collect();
    assert!(
        missing.is_empty(),
        "documented but not exercised: {missing:?}"
    );
}
