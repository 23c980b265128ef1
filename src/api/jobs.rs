//! Jobs: list, get, cancel; and the scheduler's periodic tasks.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;

use super::caller::Caller;
use super::ApiError;
use crate::http::AppState;
use crate::service::keys::Role;

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(Role::Reader)?;
    Ok(Json(json!({ "jobs": state.jobs.list() })))
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
