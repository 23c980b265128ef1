//! Series: create, list, get, update (its retention policy), delete.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::caller::Caller;
use super::{parse_json, ApiError};
use crate::format::series::RetentionPolicy;
use crate::http::AppState;
use crate::service::keys::Role;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateSeries {
    name: String,
    #[serde(default)]
    policy: RetentionPolicy,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateSeries {
    #[serde(default)]
    policy: RetentionPolicy,
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(Role::Writer)?;
    let request: CreateSeries = parse_json(&body)?;
    let record = state
        .backups
        .create_series(&caller.0, &request.name, request.policy)
        .await?;
    Ok((StatusCode::CREATED, Json(record)))
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(
        json!({ "series": state.backups.list_series(&caller.0)? }),
    ))
}

pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(state.backups.series(&caller.0, &name)?))
}

pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(Role::Writer)?;
    let request: UpdateSeries = parse_json(&body)?;
    Ok(Json(
        state
            .backups
            .update_series(&caller.0, &name, request.policy)
            .await?,
    ))
}

pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    state.backups.delete_series(&caller.0, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
