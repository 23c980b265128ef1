//! Schedules: named cron expressions (five fields, or CyBorgBackup's six with a year)
//! that policies run by: create, list, get, change, delete, and the calendar of when one
//! fires.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;

use super::caller::Caller;
use super::{parse_json, ApiError};
use crate::http::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateSchedule {
    name: String,
    crontab: String,
    #[serde(default = "enabled")]
    enabled: bool,
}

fn enabled() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateSchedule {
    crontab: Option<String>,
    enabled: Option<bool>,
}

#[derive(Deserialize)]
pub struct CalendarQuery {
    /// RFC 3339; default now.
    from: Option<DateTime<Utc>>,
    /// RFC 3339; default 31 days after `from`.
    to: Option<DateTime<Utc>>,
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(
        json!({ "schedules": state.schedules.list(&caller.0)? }),
    ))
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let request: CreateSchedule = parse_json(&body)?;
    let view =
        state
            .schedules
            .create(&caller.0, &request.name, &request.crontab, request.enabled)?;
    Ok((StatusCode::CREATED, Json(view)))
}

pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(state.schedules.get(&caller.0, &name)?))
}

pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let request: UpdateSchedule = parse_json(&body)?;
    Ok(Json(state.schedules.update(
        &caller.0,
        &name,
        request.crontab.as_deref(),
        request.enabled,
    )?))
}

pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    state.schedules.delete(&caller.0, &name)?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn calendar(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(query): Query<CalendarQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let from = query.from.unwrap_or_else(Utc::now);
    let to = query.to.unwrap_or(from + chrono::Duration::days(31));
    let occurrences = state.schedules.calendar(&caller.0, &name, from, to)?;
    Ok(Json(json!({ "occurrences": occurrences })))
}
