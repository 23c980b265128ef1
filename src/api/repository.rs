//! Repository-wide operations: stats now, check and gc as jobs.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::caller::Caller;
use super::ApiError;
use crate::http::AppState;
use crate::service::keys::Role;
use crate::service::maintenance;

pub async fn stats(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(Role::Reader)?;
    Ok(Json(state.repo.stats()?))
}

#[derive(Deserialize)]
pub struct CheckQuery {
    #[serde(default)]
    read_data: bool,
}

pub async fn check(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<CheckQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let id = maintenance::start_check(&caller.0, &state.jobs, &state.repo, query.read_data)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "job": state.jobs.get(&id)? })),
    ))
}

#[derive(Deserialize)]
pub struct GcQuery {
    #[serde(default)]
    dry_run: bool,
}

pub async fn gc(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<GcQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let id = maintenance::start_gc(&caller.0, &state.jobs, &state.repo, query.dry_run)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "job": state.jobs.get(&id)? })),
    ))
}
