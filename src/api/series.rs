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
        .repo
        .create_series(&request.name, request.policy)
        .await?;
    Ok((StatusCode::CREATED, Json(record)))
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(Role::Reader)?;
    Ok(Json(json!({ "series": state.repo.list_series()? })))
}

pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(Role::Reader)?;
    let record = state
        .repo
        .series(&name)?
        .ok_or_else(|| ApiError::not_found(format!("series {name} not found")))?;
    Ok(Json(record))
}

pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(Role::Writer)?;
    let request: UpdateSeries = parse_json(&body)?;
    Ok(Json(state.repo.put_series(&name, request.policy).await?))
}

pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(Role::Admin)?;
    if state.repo.series(&name)?.is_none() {
        return Err(ApiError::not_found(format!("series {name} not found")));
    }
    state.repo.delete_series(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}
