//! Backups: streaming upload into a series, listing, metadata, content with Range,
//! catalog, recycle, restore from the recycle bin, purge.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::json;

use super::caller::Caller;
use super::ApiError;
use crate::format::catalog::CatalogEntry;
use crate::format::manifest::BackupManifest;
use crate::http::attachment::attachment;
use crate::http::body::{self, BodyPump};
use crate::http::metrics::Metrics;
use crate::http::public_url;
use crate::http::range::{self, RangeRequest};
use crate::http::AppState;
use crate::repo::ingest::{validate_series, IngestOptions};
use crate::repo::listing::{BackupQuery, ListCursor, ListScope};
use crate::repo::{lookup_id, Progress};
use crate::service::jobs::{JobFailure, JobKind};
use crate::service::keys::Role;
use crate::service::signed_urls;
use crate::service::uploads;
use crate::service::views::BackupView;

#[derive(Deserialize)]
pub struct UploadQuery {
    name: Option<String>,
    #[serde(default = "yes")]
    wait: bool,
    /// Also record the stream's SHA-256.
    #[serde(default)]
    sha256: bool,
}

fn yes() -> bool {
    true
}

/// Where an upload's bytes come from.
enum UploadBody {
    Raw(Body),
    Multipart(Multipart),
}

/// Streams the upload's bytes (the raw body, or a multipart form's file field) into the pump.
async fn feed(body: UploadBody, mut pump: BodyPump) -> u64 {
    match body {
        UploadBody::Raw(body) => pump.pump(body.into_data_stream()).await,
        UploadBody::Multipart(mut form) => loop {
            match form.next_field().await {
                Ok(Some(mut field)) => {
                    let is_file = field.name() == Some("file") || field.file_name().is_some();
                    if !is_file {
                        continue;
                    }
                    loop {
                        match field.chunk().await {
                            Ok(Some(chunk)) => {
                                if !pump.send(chunk).await {
                                    return pump.received();
                                }
                            }
                            Ok(None) => return pump.received(),
                            Err(e) => {
                                pump.fail(e.to_string()).await;
                                return pump.received();
                            }
                        }
                    }
                }
                Ok(None) => {
                    pump.fail("the multipart form has no file field".into())
                        .await;
                    return pump.received();
                }
                Err(e) => {
                    pump.fail(e.to_string()).await;
                    return pump.received();
                }
            }
        },
    }
}

pub async fn upload(
    State(state): State<AppState>,
    caller: Caller,
    Path(series): Path<String>,
    Query(query): Query<UploadQuery>,
    request: Request,
) -> Result<Response, ApiError> {
    caller.require(Role::Backup)?;
    validate_series(&series)?;
    let limit = state.limits.max_upload_bytes;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(ApiError::too_large(limit));
    }
    let is_form = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    let source_name = query.name.clone().unwrap_or_else(|| series.clone());
    let subject = format!("upload to series {series}");
    let options = IngestOptions::new(series, source_name).with_sha256(query.sha256);
    let body = if is_form {
        UploadBody::Multipart(
            Multipart::from_request(request, &())
                .await
                .map_err(|e| ApiError::invalid(e.body_text()))?,
        )
    } else {
        UploadBody::Raw(request.into_body())
    };
    let progress = Arc::new(Progress::new());
    if let Some(len) = declared.filter(|_| !is_form) {
        progress.set_total(len);
    }
    if query.wait {
        let work = run_upload(state.clone(), options, body, progress, None);
        let view = work.await?;
        return Ok((StatusCode::CREATED, Json(view)).into_response());
    }
    // The answer waits until the body has been read: an HTTP/1.1 server that answers
    // while the client is still sending cannot rely on the rest of the body arriving.
    // Making the backup durable (last packs, manifest, index) continues as the job.
    let (received_tx, received_rx) = tokio::sync::oneshot::channel();
    let work = run_upload(
        state.clone(),
        options,
        body,
        progress.clone(),
        Some(received_tx),
    );
    let id = state
        .jobs
        .begin(JobKind::Upload, Some(subject), progress.clone());
    let (jobs, job) = (state.jobs.clone(), id.clone());
    state.jobs.tasks().spawn_job(progress, async move {
        let outcome = work
            .await
            .map(|view| serde_json::to_value(view).unwrap_or_default());
        jobs.end(&job, outcome.map_err(job_failure));
    });
    // A failure before the body was read drops the sender: answer with the job anyway,
    // whose record carries the error.
    let _ = received_rx.await;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "job": state.jobs.get(&id)? })),
    )
        .into_response())
}

/// Keeps a background upload's failure, with its kind, in its job record.
fn job_failure(error: ApiError) -> JobFailure {
    JobFailure {
        kind: error.kind(),
        cancelled: error.code == "cancelled",
        message: error.message,
    }
}

async fn run_upload(
    state: AppState,
    options: IngestOptions,
    body: UploadBody,
    progress: Arc<Progress>,
    body_received: Option<tokio::sync::oneshot::Sender<u64>>,
) -> Result<BackupView, ApiError> {
    let _slot = state
        .upload_slots
        .acquire()
        .await
        .map_err(|_| ApiError::shutting_down())?;
    let (pump, reader) = body::channel(state.limits.max_upload_bytes, &state.tasks);
    let pump = pump.cancelled_by(progress.clone());
    state
        .metrics
        .uploads_in_flight
        .fetch_add(1, Ordering::Relaxed);
    let ingest = uploads::upload(&state.repo, options, Box::new(reader), progress);
    let reading = async {
        let received = feed(body, pump).await;
        if let Some(signal) = body_received {
            let _ = signal.send(received);
        }
        received
    };
    let (received, result) = tokio::join!(reading, ingest);
    state
        .metrics
        .uploads_in_flight
        .fetch_sub(1, Ordering::Relaxed);
    Metrics::add(&state.metrics.bytes_uploaded, received);
    let manifest = result?;
    Metrics::add(&state.metrics.backups_committed, 1);
    Ok(BackupView::new(&manifest, None))
}

#[derive(Deserialize)]
pub struct ListQuery {
    series: Option<String>,
    #[serde(default)]
    recycled: bool,
    limit: Option<usize>,
    #[serde(default)]
    offset: usize,
    /// `oldest` (the default) or `newest` first.
    order: Option<String>,
    /// Start after this position: the `next` of the previous page.
    after: Option<String>,
}

pub(super) fn page_limit(
    limit: Option<usize>,
    default: usize,
    max: usize,
) -> Result<usize, ApiError> {
    match limit.unwrap_or(default) {
        n if (1..=max).contains(&n) => Ok(n),
        n => Err(ApiError::invalid(format!(
            "limit {n} must be between 1 and {max}"
        ))),
    }
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<ListQuery>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(Role::Reader)?;
    let limit = page_limit(query.limit, 100, 1000)?;
    let newest_first = match query.order.as_deref() {
        None | Some("oldest") => false,
        Some("newest") => true,
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "order {other:?} must be \"oldest\" or \"newest\""
            )))
        }
    };
    let after: Option<ListCursor> = query
        .after
        .as_deref()
        .map(str::parse)
        .transpose()
        .map_err(ApiError::invalid)?;
    let scope = query
        .series
        .as_deref()
        .map_or(ListScope::All, ListScope::Series);
    let page = state.repo.backup_page(&BackupQuery {
        scope,
        recycled: Some(query.recycled),
        newest_first,
        after: after.as_ref(),
        offset: query.offset,
        limit,
    })?;
    let total = state
        .repo
        .backup_count(query.series.as_deref(), query.recycled)?;
    let backups: Vec<BackupView> = page
        .entries
        .into_iter()
        .map(|b| BackupView::new(&b.manifest, b.recycled_at))
        .collect();
    Ok(Json(json!({
        "backups": backups, "total": total, "limit": limit, "offset": query.offset,
        "next": page.next.map(|cursor| cursor.to_string()),
    })))
}

pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(state.backups.view(&caller.0, &id)?))
}

pub async fn content(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    caller.require(Role::Reader)?;
    stream_content(&state, &id, &headers, "application/octet-stream")
}

/// A backup's bytes (or the requested range) as a streaming response.
fn stream_content(
    state: &AppState,
    id: &str,
    headers: &HeaderMap,
    content_type: &str,
) -> Result<Response, ApiError> {
    let manifest = state.repo.backup(&lookup_id(id)?)?;
    let size = manifest.size;
    let requested = range::parse(
        headers.get(header::RANGE).and_then(|v| v.to_str().ok()),
        size,
    );
    let (status, byte_range) = match requested {
        RangeRequest::Full => (StatusCode::OK, 0..size),
        RangeRequest::Partial(r) => (StatusCode::PARTIAL_CONTENT, r),
        RangeRequest::Unsatisfiable => return Err(ApiError::unsatisfiable(size)),
    };
    let stream = state
        .repo
        .read_backup(&manifest, Some(byte_range.clone()))?;
    let metrics_state = state.clone();
    let counted = stream.map(move |item| {
        if let Ok(bytes) = &item {
            Metrics::add(&metrics_state.metrics.bytes_downloaded, bytes.len() as u64);
        }
        item.map_err(std::io::Error::other)
    });
    let mut response = Response::new(Body::from_stream(counted));
    *response.status_mut() = status;
    let h = response.headers_mut();
    let set = |h: &mut HeaderMap, name: header::HeaderName, value: String| {
        if let Ok(value) = HeaderValue::from_str(&value) {
            h.insert(name, value);
        }
    };
    set(
        h,
        header::CONTENT_LENGTH,
        (byte_range.end - byte_range.start).to_string(),
    );
    set(h, header::CONTENT_TYPE, content_type.into());
    set(
        h,
        header::ETAG,
        format!("\"{}\"", manifest.verified_digest().1),
    );
    set(h, header::ACCEPT_RANGES, "bytes".into());
    h.insert(
        header::CONTENT_DISPOSITION,
        attachment(&manifest.source, id),
    );
    if status == StatusCode::PARTIAL_CONTENT {
        set(
            h,
            header::CONTENT_RANGE,
            format!(
                "bytes {}-{}/{size}",
                byte_range.start,
                byte_range.end.saturating_sub(1)
            ),
        );
    }
    Ok(response)
}

/// The media type of a download: gzip for a source named like a gzip file (what
/// Wings requires of a restore download), else plain bytes.
fn media_type(source: &str) -> &'static str {
    let lower = source.to_ascii_lowercase();
    if lower.ends_with(".gz") || lower.ends_with(".tgz") {
        "application/x-gzip"
    } else if lower.ends_with(".tar") {
        "application/x-tar"
    } else {
        "application/octet-stream"
    }
}

#[derive(Deserialize)]
pub struct SignQuery {
    /// Lifetime in seconds.
    ttl: Option<u64>,
}

/// `POST /v1/backups/{id}/url?ttl=S`: a link that downloads the backup without a key
/// until it expires.
pub async fn sign_url(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(query): Query<SignQuery>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(Role::Reader)?;
    state.repo.backup(&lookup_id(&id)?)?;
    let base = public_url::base(state.public_url.as_deref(), &headers).ok_or_else(|| {
        ApiError::invalid("the request has no usable Host header and no public_url is configured")
    })?;
    let link = state
        .signer
        .backup_link(
            &base,
            &id,
            query.ttl.unwrap_or(3600),
            chrono::Utc::now().timestamp(),
        )
        .map_err(ApiError::invalid)?;
    Ok(Json(
        json!({ "url": link.url, "expires_at": link.expires_at }),
    ))
}

/// `GET /v1/download/{id}?expires=..&signature=..`: the backup's bytes for whoever
/// holds a signed link; Range works as on `/content`.
pub async fn signed_download(
    State(state): State<AppState>,
    Path(id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (expires, signature) = signed_urls::parse_query(uri.query().unwrap_or(""));
    state
        .signer
        .verify(
            "GET",
            &signed_urls::download_path(&id),
            expires,
            signature.as_deref(),
            chrono::Utc::now().timestamp(),
        )
        .map_err(|e| ApiError::link_refused(e.to_string()))?;
    let manifest = state.repo.backup(&lookup_id(&id)?)?;
    stream_content(&state, &id, &headers, media_type(&manifest.source))
}

#[derive(Deserialize)]
pub struct CatalogQuery {
    prefix: Option<String>,
    limit: Option<usize>,
    #[serde(default)]
    offset: usize,
}

pub async fn catalog(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(query): Query<CatalogQuery>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(Role::Reader)?;
    let limit = page_limit(query.limit, 1000, 10_000)?;
    let manifest = with_catalog(&state, &id)?;
    let page = Arc::new(std::sync::Mutex::new((Vec::<CatalogEntry>::new(), 0usize)));
    let (collector, prefix, offset) =
        (page.clone(), query.prefix.unwrap_or_default(), query.offset);
    state
        .repo
        .catalog(
            &manifest,
            Box::new(move |entry| {
                if entry.path.starts_with(&prefix) {
                    let mut page = collector.lock().unwrap_or_else(|p| p.into_inner());
                    if page.1 >= offset && page.0.len() < limit {
                        page.0.push(entry);
                    }
                    page.1 += 1;
                }
                Ok(())
            }),
        )
        .await?;
    let (entries, total) = std::mem::take(&mut *page.lock().unwrap_or_else(|p| p.into_inner()));
    Ok(Json(
        json!({ "entries": entries, "total": total, "limit": limit, "offset": offset }),
    ))
}

#[derive(Deserialize)]
pub struct FolderQuery {
    #[serde(default)]
    dir: String,
    after: Option<String>,
    limit: Option<usize>,
}

/// The direct entries of one folder of a backup's catalog, a page at a time.
pub async fn catalog_folder(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(query): Query<FolderQuery>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(Role::Reader)?;
    let limit = page_limit(query.limit, 1000, 10_000)?;
    let manifest = with_catalog(&state, &id)?;
    let dir = query.dir.trim_matches('/');
    let after = query.after.as_deref().filter(|a| !a.is_empty());
    let page = state
        .repo
        .catalog_folder(&manifest, dir, after, limit)
        .await?;
    let next = page
        .more
        .then(|| {
            page.entries
                .last()
                .map(|e| e.path.rsplit('/').next().unwrap_or("").to_string())
        })
        .flatten();
    Ok(Json(json!({
        "dir": dir, "entries": page.entries, "next": next, "indexed": page.indexed,
    })))
}

#[derive(Deserialize)]
pub struct EntryQuery {
    path: String,
}

/// One entry of a backup's catalog, by its path.
pub async fn catalog_entry(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(query): Query<EntryQuery>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(Role::Reader)?;
    let manifest = with_catalog(&state, &id)?;
    let path = query.path.trim_matches('/');
    let entry = state
        .repo
        .catalog_entry(&manifest, path)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("backup {id} holds no entry {path:?}")))?;
    Ok(Json(entry))
}

/// The manifest of a backup that has a catalog (404 otherwise).
fn with_catalog(state: &AppState, id: &str) -> Result<BackupManifest, ApiError> {
    let manifest = state.repo.backup(&lookup_id(id)?)?;
    if manifest.catalog.is_none() {
        return Err(ApiError::not_found(format!(
            "backup {id} has no catalog (neither a tree nor a tar stream)"
        )));
    }
    Ok(manifest)
}

pub async fn recycle(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(state.backups.recycle(&caller.0, &id).await?))
}

pub async fn restore(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(state.backups.undelete(&caller.0, &id).await?))
}

pub async fn purge(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    state.backups.purge(&caller.0, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
