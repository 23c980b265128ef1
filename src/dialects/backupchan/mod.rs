//! The Backup-chan dialect (`Backupchan/server`, spec `backupchan-server-api.md`): targets,
//! backups, the recycle bin, jobs, sequential uploads, stats and the log under `/api`, for
//! `backupchan-client-lib` and `backupchan-cli` unchanged. The work is done by
//! `service::backupchan`; this module speaks Backup-chan's wire format. Differences from
//! the real server are listed in `docs/dialects/backupchan.md`.

mod auth;
mod error;
pub mod plugin;
mod upload;
mod wire;

pub use plugin::BackupchanConfig;

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::{Body as HttpBody, Bytes};
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::from_fn_with_state;
use axum::response::Response;
use axum::routing::{any, delete, get, post};
use axum::Router;
use futures::StreamExt;
use serde_json::json;

use crate::error::ErrorKind;
use crate::http::error_shape::{shape_errors, Shaper};
use crate::http::AppState;
use crate::service::backupchan::targets::{SearchQuery, TargetType};
use crate::service::backupchan::BackupchanService;
use crate::service::jobs::JobFailure;
use crate::service::keys::Role;
use error::{success, success_with, BcApiError};
use wire::Body;

#[derive(Clone)]
struct BcState {
    app: AppState,
    service: Arc<BackupchanService>,
    max_files: usize,
}

type Reply = Result<Response, BcApiError>;
type JsonBody = Result<Bytes, BytesRejection>;
type Params = Result<Query<HashMap<String, String>>, QueryRejection>;

/// Longest `tail` of `GET /api/log`.
const MAX_TAIL: usize = 100_000;

/// The dialect's routes over its service.
fn router(app: AppState, service: Arc<BackupchanService>) -> Router {
    let max_files = service.max_files();
    let json_limit = app.limits.max_json_bytes;
    let state = BcState {
        app,
        service,
        max_files,
    };
    Router::new()
        // "GET /api/target": list every target (?page=N, 10 a page, by name);
        // "POST /api/target": create a new target.
        .route("/api/target", get(list_targets).post(create_target))
        // Not in the document: search by name, type, criteria, action, location,
        // template, deduplicate (on|off), alias, tags (space separated).
        .route("/api/target/search", get(search_targets))
        // "GET/PATCH/DELETE /api/target/<ID>": view (with backups, newest first), edit
        // (a full replace without the type), delete (needs delete_files).
        .route(
            "/api/target/{id}",
            get(view_target).patch(edit_target).delete(delete_target),
        )
        // "DELETE /api/target/<id>/all": every backup; ".../recycled": recycled ones.
        .route("/api/target/{id}/all", delete(delete_all))
        .route("/api/target/{id}/recycled", delete(delete_recycled))
        // "POST /target/<ID>/upload" (really under /api): multipart backup_file + manual.
        .route(
            "/api/target/{id}/upload",
            post(upload_backup).layer(DefaultBodyLimit::disable()),
        )
        // Not in the document: the client's download, named by Content-Disposition.
        .route("/api/backup/{id}/download", get(download_backup))
        // "DELETE /api/backup/<id>" (delete_files); "PATCH" (is_recycled).
        .route(
            "/api/backup/{id}",
            delete(delete_backup).patch(recycle_backup),
        )
        // Not in the document: sequential uploads.
        .route("/api/seq/{id}", get(seq_check))
        .route("/api/seq/{id}/begin", post(seq_begin))
        .route(
            "/api/seq/{id}/upload",
            post(seq_upload).layer(DefaultBodyLimit::disable()),
        )
        .route("/api/seq/{id}/finish", post(seq_finish))
        .route("/api/seq/{id}/terminate", post(seq_terminate))
        // "GET /api/recycle_bin": list; "DELETE": clear (delete_files).
        .route(
            "/api/recycle_bin",
            get(recycle_bin).delete(clear_recycle_bin),
        )
        // "GET /api/jobs": delayed and scheduled jobs; force_run/<name> runs one now.
        .route("/api/jobs", get(list_jobs))
        .route("/api/jobs/force_run/{name}", get(force_run))
        // Not in the document: the event log and statistics.
        .route("/api/log", get(log))
        .route("/api/stats", get(stats))
        // Every answer is JSON: unknown paths below the dialect's prefixes and wrong
        // methods too (the client parses every body).
        .route("/api/target/{id}/{*rest}", any(not_found))
        .route("/api/backup/{id}/{*rest}", any(not_found))
        .route("/api/seq/{id}/{*rest}", any(not_found))
        .route("/api/jobs/{*rest}", any(not_found))
        .route("/api/{*rest}", any(not_found))
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(json_limit))
        .layer(from_fn_with_state(error::shaped as Shaper, shape_errors))
        .with_state(state)
}

async fn not_found() -> BcApiError {
    BcApiError::new(StatusCode::NOT_FOUND, "Not found")
}

async fn method_not_allowed() -> BcApiError {
    BcApiError::new(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed")
}

fn body(bytes: JsonBody) -> Result<Body, BcApiError> {
    let bytes = bytes.map_err(|e| BcApiError::new(e.status(), e.body_text()))?;
    Body::parse(&bytes)
}

fn params(query: Params) -> Result<HashMap<String, String>, BcApiError> {
    query
        .map(|Query(map)| map)
        .map_err(|e| BcApiError::bad_request(e.body_text()))
}

async fn list_targets(State(s): State<BcState>, headers: HeaderMap, query: Params) -> Reply {
    auth::authorize(&s.app, &headers, Role::Reader)?;
    let page = match params(query)?.get("page") {
        None => 1,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|p| *p >= 1)
            .ok_or_else(|| {
                BcApiError::bad_request("Parameter 'page' must be a positive integer")
            })?,
    };
    let targets: Vec<wire::Target> = s
        .service
        .list_targets(page)
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(success(json!({ "targets": targets })))
}

/// 201 `{"id"}`; a missing key is 400 "Parameter '<name>' required".
async fn create_target(State(s): State<BcState>, headers: HeaderMap, bytes: JsonBody) -> Reply {
    auth::authorize(&s.app, &headers, Role::Writer)?;
    let body = body(bytes)?;
    for key in [
        "name",
        "backup_type",
        "recycle_criteria",
        "recycle_value",
        "recycle_action",
        "location",
        "name_template",
    ] {
        if !body.0.contains_key(key) {
            return Err(BcApiError::missing(key));
        }
    }
    let target_type: TargetType = body.string("backup_type")?.parse()?;
    let spec = body.target_spec()?;
    let id = s.service.create_target(target_type, spec)?;
    Ok(success_with(StatusCode::CREATED, json!({ "id": id })))
}

fn search_query(map: &HashMap<String, String>) -> Result<SearchQuery, BcApiError> {
    let get = |key: &str| {
        map.get(key)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let deduplicate = match get("deduplicate").as_deref() {
        None => None,
        Some("on") => Some(true),
        Some("off") => Some(false),
        Some(_) => {
            return Err(BcApiError::bad_request(
                "Parameter 'deduplicate' must be on or off",
            ))
        }
    };
    Ok(SearchQuery {
        name: get("name"),
        target_type: get("type").map(|v| v.parse()).transpose()?,
        recycle_criteria: get("recycle_criteria").map(|v| v.parse()).transpose()?,
        recycle_action: get("recycle_action").map(|v| v.parse()).transpose()?,
        location: get("location"),
        name_template: get("name_template"),
        deduplicate,
        alias: get("alias"),
        tags: get("tags")
            .map(|t| t.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default(),
    })
}

/// Empty parameters count as absent (the client always sends `tags=`); none at all is 400.
async fn search_targets(State(s): State<BcState>, headers: HeaderMap, query: Params) -> Reply {
    auth::authorize(&s.app, &headers, Role::Reader)?;
    let query = search_query(&params(query)?)?;
    if query.is_empty() {
        return Err(BcApiError::bad_request("No search parameters given"));
    }
    let targets: Vec<wire::Target> = s
        .service
        .search_targets(&query)
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(success(json!({ "targets": targets })))
}

async fn view_target(
    State(s): State<BcState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Reply {
    auth::authorize(&s.app, &headers, Role::Reader)?;
    let (target, backups) = s.service.target_backups(&id)?;
    let backups: Vec<wire::Backup> = backups.into_iter().map(Into::into).collect();
    Ok(success(
        json!({ "target": wire::Target::from(target), "backups": backups }),
    ))
}

async fn edit_target(
    State(s): State<BcState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: JsonBody,
) -> Reply {
    auth::authorize(&s.app, &headers, Role::Writer)?;
    s.service.target(&id)?;
    let spec = body(bytes)?.target_spec()?;
    s.service.edit_target(&id, spec)?;
    Ok(success(json!({})))
}

async fn delete_target(
    State(s): State<BcState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: JsonBody,
) -> Reply {
    auth::authorize(&s.app, &headers, Role::Writer)?;
    let delete_files = body(bytes)?.boolean("delete_files")?;
    s.service.delete_target(&id, delete_files).await?;
    Ok(success(json!({})))
}

async fn delete_all(
    State(s): State<BcState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: JsonBody,
) -> Reply {
    auth::authorize(&s.app, &headers, Role::Writer)?;
    let delete_files = body(bytes)?.boolean("delete_files")?;
    s.service
        .delete_target_backups(&id, false, delete_files)
        .await?;
    Ok(success(json!({})))
}

async fn delete_recycled(
    State(s): State<BcState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: JsonBody,
) -> Reply {
    auth::authorize(&s.app, &headers, Role::Writer)?;
    let delete_files = body(bytes)?.boolean("delete_files")?;
    s.service
        .delete_target_backups(&id, true, delete_files)
        .await?;
    Ok(success(json!({})))
}

/// Answers `{"job_id"}` once the body is read; the backup is recorded by the job.
async fn upload_backup(
    State(s): State<BcState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    request: Request,
) -> Reply {
    auth::authorize(&s.app, &headers, Role::Backup)?;
    let target = s.service.target(&id)?;
    let limit = s.app.limits.max_upload_bytes;
    let form = upload::form(request, limit).await?;
    // The job is IDLE while the upload waits for a slot.
    let job = s.service.begin_job("upload_job", &target.id)?;
    let Ok(_slot) = s.app.upload_slots.acquire().await else {
        s.service.refuse_job(
            job,
            JobFailure::new(ErrorKind::Unavailable, "the server is shutting down"),
        );
        return Err(BcApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "The server is shutting down",
        ));
    };
    s.service.start_job(job);
    upload::backup_upload(
        &s.service,
        job,
        &target.id,
        target.target_type,
        form,
        limit,
        s.max_files,
    )
    .await?;
    Ok(success(json!({ "job_id": job })))
}

async fn download_backup(
    State(s): State<BcState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Reply {
    auth::authorize(&s.app, &headers, Role::Reader)?;
    let download = s.service.download(&id).await?;
    let stream = download
        .stream
        .map(|item| item.map_err(std::io::Error::other));
    let mut response = Response::new(HttpBody::from_stream(stream));
    let h = response.headers_mut();
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(download.size));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Ok(value) = HeaderValue::from_bytes(
        format!("attachment; filename=\"{}\"", download.filename).as_bytes(),
    ) {
        h.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

async fn delete_backup(
    State(s): State<BcState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: JsonBody,
) -> Reply {
    auth::authorize(&s.app, &headers, Role::Writer)?;
    let delete_files = body(bytes)?.boolean("delete_files")?;
    s.service.delete_backup(&id, delete_files).await?;
    Ok(success(json!({})))
}

async fn recycle_backup(
    State(s): State<BcState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: JsonBody,
) -> Reply {
    auth::authorize(&s.app, &headers, Role::Writer)?;
    let recycled = body(bytes)?.boolean("is_recycled")?;
    s.service.set_recycled(&id, recycled).await?;
    Ok(success(json!({})))
}

async fn seq_begin(
    State(s): State<BcState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: JsonBody,
) -> Reply {
    auth::authorize(&s.app, &headers, Role::Backup)?;
    let body = body(bytes)?;
    let manual = body.boolean("manual")?;
    let list = body
        .0
        .get("file_list")
        .ok_or_else(|| BcApiError::missing("file_list"))?;
    let bad =
        || BcApiError::bad_request("Parameter 'file_list' must be a list of {\"path\",\"name\"}");
    let files = list
        .as_array()
        .ok_or_else(bad)?
        .iter()
        .map(|f| {
            let path = f.get("path")?.as_str()?.to_string();
            let name = f.get("name")?.as_str()?.to_string();
            Some((path, name))
        })
        .collect::<Option<Vec<_>>>()
        .ok_or_else(bad)?;
    s.service.seq_begin(&id, manual, files)?;
    Ok(success(json!({})))
}

async fn seq_check(State(s): State<BcState>, headers: HeaderMap, Path(id): Path<String>) -> Reply {
    auth::authorize(&s.app, &headers, Role::Reader)?;
    let files: Vec<wire::SeqEntry> = s
        .service
        .seq_files(&id)?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(success(json!({ "file_list": files })))
}

/// One file: fields `name` and `path`, then the file field `file`.
async fn seq_upload(
    State(s): State<BcState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    request: Request,
) -> Reply {
    auth::authorize(&s.app, &headers, Role::Backup)?;
    s.service.seq_files(&id)?;
    let limit = s.app.limits.max_upload_bytes;
    let mut form = upload::form(request, limit).await?;
    let (mut path, mut name) = (None, None);
    let mut stored = false;
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| BcApiError::bad_request(e.body_text()))?
    {
        match field.name() {
            Some("path") => path = Some(upload::text(field).await?),
            Some("name") => name = Some(upload::text(field).await?),
            Some("file") if !stored => {
                let path = path.clone().ok_or_else(|| BcApiError::missing("path"))?;
                let name = name.clone().ok_or_else(|| BcApiError::missing("name"))?;
                let (target_id, relative) = s.service.seq_claim(&id, &path, &name)?;
                let (pump, reader) = crate::http::body::channel(limit, &s.app.tasks);
                let ingest =
                    s.service
                        .seq_upload(&target_id, &path, &name, relative, Box::new(reader));
                let (fed, stored_file) = tokio::join!(upload::feed(field, pump, limit), ingest);
                fed?;
                stored_file?;
                stored = true;
            }
            _ => {}
        }
    }
    if !stored {
        return Err(BcApiError::missing("file"));
    }
    Ok(success(json!({})))
}

async fn seq_finish(State(s): State<BcState>, headers: HeaderMap, Path(id): Path<String>) -> Reply {
    auth::authorize(&s.app, &headers, Role::Backup)?;
    s.service.seq_finish(&id).await?;
    Ok(success(json!({})))
}

async fn seq_terminate(
    State(s): State<BcState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Reply {
    auth::authorize(&s.app, &headers, Role::Backup)?;
    s.service.seq_terminate(&id).await?;
    Ok(success(json!({})))
}

async fn recycle_bin(State(s): State<BcState>, headers: HeaderMap) -> Reply {
    auth::authorize(&s.app, &headers, Role::Reader)?;
    let backups: Vec<wire::Backup> = s
        .service
        .recycle_bin()
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(success(json!({ "backups": backups })))
}

async fn clear_recycle_bin(State(s): State<BcState>, headers: HeaderMap, bytes: JsonBody) -> Reply {
    auth::authorize(&s.app, &headers, Role::Writer)?;
    let delete_files = body(bytes)?.boolean("delete_files")?;
    s.service.clear_recycle_bin(delete_files).await?;
    Ok(success(json!({})))
}

async fn list_jobs(State(s): State<BcState>, headers: HeaderMap) -> Reply {
    auth::authorize(&s.app, &headers, Role::Reader)?;
    let delayed: Vec<wire::Delayed> = s
        .service
        .delayed_jobs()
        .into_iter()
        .map(Into::into)
        .collect();
    let scheduled: Vec<wire::Scheduled> = s
        .service
        .scheduled_jobs()
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(success(
        json!({ "delayed": delayed, "scheduled": scheduled }),
    ))
}

/// Always `{"success":true}`, unknown names included, as the real server answers.
async fn force_run(
    State(s): State<BcState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Reply {
    auth::authorize(&s.app, &headers, Role::Writer)?;
    s.service.force_run(&name);
    Ok(success(json!({})))
}

async fn log(State(s): State<BcState>, headers: HeaderMap, query: Params) -> Reply {
    auth::authorize(&s.app, &headers, Role::Reader)?;
    let tail = match params(query)?.get("tail") {
        None => 0,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|t| *t <= MAX_TAIL)
            .ok_or_else(|| {
                BcApiError::bad_request(format!(
                    "Parameter 'tail' must be an integer from 0 to {MAX_TAIL}"
                ))
            })?,
    };
    Ok(success(json!({ "log": s.service.log_tail(tail) })))
}

async fn stats(State(s): State<BcState>, headers: HeaderMap) -> Reply {
    auth::authorize(&s.app, &headers, Role::Reader)?;
    Ok(success(wire::stats(s.service.stats())))
}
