//! Backup policies: create, list, get, change, delete, and run one now (202 with its
//! backup job; the prune follows as a job of its own).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;

use super::caller::Caller;
use super::{parse_json, ApiError};
use crate::http::AppState;
use crate::service::policies::{NewPolicy, PolicyChanges};
use crate::service::policy_runs::Trigger;

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(
        json!({ "policies": state.policies.policies().list(&caller.0)? }),
    ))
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let request: NewPolicy = parse_json(&body)?;
    let view = state.policies.policies().create(&caller.0, request)?;
    Ok((StatusCode::CREATED, Json(view)))
}

pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(state.policies.policies().get(&caller.0, &name)?))
}

pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let changes: PolicyChanges = parse_json(&body)?;
    Ok(Json(
        state
            .policies
            .policies()
            .update(&caller.0, &name, changes)?,
    ))
}

pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    state.policies.policies().delete(&caller.0, &name)?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn run(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let job = state.policies.run(&caller.0, &name, Trigger::Manual)?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "job": job }))))
}
