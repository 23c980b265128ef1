//! Jobs: list, get, cancel; and the scheduler's periodic tasks.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::backups::page_limit;
use super::caller::Caller;
use super::ApiError;
use crate::http::AppState;
use crate::service::jobs::JobFilter;
use crate::service::keys::Role;

#[derive(Deserialize)]
pub struct ListQuery {
    status: Option<String>,
    kind: Option<String>,
    /// Searched in job ids, subjects and errors.
    q: Option<String>,
    limit: Option<usize>,
    /// Jobs created before this position: the `next` of the previous page.
    before: Option<u64>,
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<ListQuery>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(Role::Reader)?;
    let limit = page_limit(query.limit, 100, 1000)?;
    let filter = JobFilter::parse(
        query.status.as_deref(),
        query.kind.as_deref(),
        query.q.as_deref(),
    )
    .map_err(ApiError::invalid)?;
    let page = state.jobs.page(&filter, query.before, limit);
    Ok(Json(json!({ "jobs": page.jobs, "next": page.next })))
}

/// The core scheduler's tasks: next run, last run, last result, counts.
pub async fn scheduler(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(Role::Reader)?;
    Ok(Json(json!({ "tasks": state.scheduler.list() })))
}

pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(Role::Reader)?;
    Ok(Json(state.jobs.get(&id)?))
}

pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(Role::Backup)?;
    Ok((StatusCode::ACCEPTED, Json(state.jobs.cancel(&id)?)))
}
