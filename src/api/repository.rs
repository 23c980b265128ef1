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
use crate::repo::gc::GcOptions;
use crate::service::jobs::JobKind;
use crate::service::keys::Role;

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
    caller.require(Role::Admin)?;
    let repo = state.repo.clone();
    let id = state
        .jobs
        .spawn(JobKind::Check, move |progress| async move {
            let report = repo.check(query.read_data, progress).await?;
            Ok(serde_json::to_value(report).unwrap_or_default())
        });
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
    caller.require(Role::Admin)?;
    let repo = state.repo.clone();
    let options = GcOptions {
        dry_run: query.dry_run,
        ..GcOptions::default()
    };
    let id = state.jobs.spawn(JobKind::Gc, move |progress| async move {
        let report = repo.gc(options, progress).await?;
        Ok(serde_json::to_value(report).unwrap_or_default())
    });
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "job": state.jobs.get(&id)? })),
    ))
}
