//! Client-chunked backup sessions: open, known set, chunk uploads, appends, finish,
//! abandon (`docs/API.md`, "Backup sessions"). The rules are `service::sessions` and
//! `repo::assembly`; this module parses the requests and shapes the answers.

use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::caller::Caller;
use super::{parse_json, ApiError};
use crate::http::metrics::Metrics;
use crate::http::AppState;
use crate::repo::assembly::{AssemblyOptions, StreamClaim};
use crate::repo::digest::DigestRequest;
use crate::service::sessions::{
    SessionError, MAX_CATALOG_BATCH_BYTES, MAX_KNOWN_PAGE, MAX_UPLOAD_BATCH_BYTES,
};
use crate::service::views::BackupView;

impl From<SessionError> for ApiError {
    fn from(error: SessionError) -> ApiError {
        match error {
            SessionError::Repo(e) => e.into(),
            SessionError::Denied(e) => e.into(),
            other => ApiError::from_kind(other.kind(), other.to_string()),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OpenRequest {
    series: String,
    /// The stream's name (a file name, "-" for stdin).
    name: Option<String>,
    /// Also record the stream's SHA-256.
    #[serde(default)]
    sha256: bool,
    /// Record a tar stream's entries as its catalog (default true).
    #[serde(default = "yes")]
    tar_catalog: bool,
    /// `stream` (default) or `tree`: a tree session also takes the tree's catalog.
    #[serde(default)]
    kind: SessionKind,
}

#[derive(Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum SessionKind {
    #[default]
    Stream,
    Tree,
}

pub async fn open(
    State(state): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let request: OpenRequest = parse_json(&body)?;
    let name = request.name.unwrap_or_else(|| request.series.clone());
    let (session, writer) = state
        .sessions
        .open(
            &caller.0,
            &request.series,
            &name,
            AssemblyOptions {
                digests: DigestRequest {
                    sha256: request.sha256,
                },
                detect_tar: request.tar_catalog,
                tree: request.kind == SessionKind::Tree,
                ..AssemblyOptions::default()
            },
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "session": session,
            "writer": {
                "chunker": writer.chunker,
                "chunk_id_key": hex::encode(writer.chunk_id_key),
                "compression_level": writer.compression_level,
            },
        })),
    ))
}

pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(state.sessions.get(&caller.0, &id)?))
}

#[derive(Deserialize)]
pub struct KnownQuery {
    #[serde(default)]
    start: usize,
    limit: Option<usize>,
}

pub async fn known(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(query): Query<KnownQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let limit = query.limit.unwrap_or(MAX_KNOWN_PAGE);
    if !(1..=MAX_KNOWN_PAGE).contains(&limit) {
        return Err(ApiError::invalid(format!(
            "limit {limit} must be between 1 and {MAX_KNOWN_PAGE}"
        )));
    }
    let body = state
        .sessions
        .known(&caller.0, &id, query.start, limit)
        .await?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], body))
}

pub async fn upload(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    request: Request,
) -> Result<impl IntoResponse, ApiError> {
    // The body is read only once a permit is held, so the batches in memory at once
    // are bounded whatever the number of sessions and connections.
    let _permit = state
        .sessions
        .upload_permits
        .acquire()
        .await
        .map_err(|_| ApiError::shutting_down())?;
    state.sessions.get(&caller.0, &id)?;
    let body = read_body(request, MAX_UPLOAD_BATCH_BYTES).await?;
    Metrics::add(&state.metrics.session_bytes_received, body.len() as u64);
    Ok(Json(state.sessions.upload(&caller.0, &id, body).await?))
}

/// A request's body, with the API's own answer when it is over `limit` (the route's
/// body limit).
async fn read_body(request: Request, limit: usize) -> Result<Bytes, ApiError> {
    Bytes::from_request(request, &())
        .await
        .map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::too_large(limit as u64)
            } else {
                ApiError::invalid(rejection.body_text())
            }
        })
}

#[derive(Deserialize)]
pub struct AppendQuery {
    at: u64,
}

pub async fn append(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(query): Query<AppendQuery>,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    Metrics::add(&state.metrics.session_bytes_received, body.len() as u64);
    Ok(Json(
        state
            .sessions
            .append(&caller.0, &id, query.at, &body)
            .await?,
    ))
}

#[derive(Deserialize)]
pub struct CatalogQuery {
    at: u64,
}

pub async fn catalog(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(query): Query<CatalogQuery>,
    request: Request,
) -> Result<impl IntoResponse, ApiError> {
    let body = read_body(request, MAX_CATALOG_BATCH_BYTES).await?;
    Metrics::add(&state.metrics.session_bytes_received, body.len() as u64);
    Ok(Json(
        state
            .sessions
            .catalog(&caller.0, &id, query.at, body)
            .await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FinishRequest {
    size: u64,
    blake3: Option<String>,
    entries_blake3: Option<String>,
}

fn yes() -> bool {
    true
}

pub async fn finish(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let request: FinishRequest = parse_json(&body)?;
    let manifest = state
        .sessions
        .finish(
            &caller.0,
            &id,
            StreamClaim {
                size: request.size,
                blake3: request.blake3,
                entries_blake3: request.entries_blake3,
            },
        )
        .await?;
    Metrics::add(&state.metrics.backups_committed, 1);
    Ok((StatusCode::CREATED, Json(BackupView::new(&manifest, None))))
}

pub async fn abandon(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    state.sessions.abandon(&caller.0, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
