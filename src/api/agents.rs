//! Agents (`docs/API.md`, "Agents"): work assigned to a client host's `stowage agent`,
//! and the routes the agent itself calls to take it, report progress and end it. The
//! rules are `service::agents`; this module parses the requests and shapes the answers.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::caller::Caller;
use super::{parse_json, ApiError};
use crate::http::AppState;
use crate::service::agents::{AgentAction, AgentError, AgentProgress};

impl From<AgentError> for ApiError {
    fn from(error: AgentError) -> ApiError {
        match error {
            AgentError::Denied(e) => e.into(),
            other => ApiError::from_kind(other.kind(), other.to_string()),
        }
    }
}

/// `POST /v1/agents/{host}/jobs`: assigns a backup or a restore to the host's agent.
pub async fn assign(
    State(state): State<AppState>,
    caller: Caller,
    Path(host): Path<String>,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let action: AgentAction = parse_json(&body)?;
    let job = state.agents.assign(&caller.0, &host, action)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "job": state.jobs.get(&job)? })),
    ))
}

/// `GET /v1/agents`: the agents heard from.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(json!({ "agents": state.agents.list(&caller.0)? })))
}

#[derive(Deserialize)]
pub struct NextQuery {
    host: String,
    /// Seconds to wait for work (at most 60; default 30).
    wait: Option<u64>,
}

/// `GET /v1/agent/next?host=&wait=`: the agent's long poll for work.
pub async fn next(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<NextQuery>,
) -> Result<Response, ApiError> {
    let wait = Duration::from_secs(query.wait.unwrap_or(30));
    let task = tokio::select! {
        task = state.agents.next(&caller.0, &query.host, wait) => task?,
        () = state.tasks.cancelled() => None,
    };
    Ok(match task {
        Some(task) => Json(task).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    })
}

/// `POST /v1/agent/jobs/{id}/progress`: answers whether the job was cancelled.
pub async fn progress(
    State(state): State<AppState>,
    caller: Caller,
    Path(job): Path<String>,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let report: AgentProgress = parse_json(&body)?;
    let cancelled = state.agents.report(&caller.0, &job, report)?;
    Ok(Json(json!({ "cancelled": cancelled })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FinishRequest {
    /// What the work produced (a backup, a restore's figures).
    result: Option<serde_json::Value>,
    /// Why it failed.
    error: Option<String>,
}

/// `POST /v1/agent/jobs/{id}/finish`: ends the job with the agent's result or error.
pub async fn finish(
    State(state): State<AppState>,
    caller: Caller,
    Path(job): Path<String>,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let request: FinishRequest = parse_json(&body)?;
    let outcome = match (request.result, request.error) {
        (Some(result), None) => Ok(result),
        (None, Some(error)) => Err(error.chars().take(4096).collect()),
        _ => {
            return Err(ApiError::invalid(
                "send either \"result\" or \"error\", not both",
            ))
        }
    };
    state.agents.finish(&caller.0, &job, outcome)?;
    Ok(Json(json!({ "job": state.jobs.get(&job)? })))
}
