//! Operational endpoints: liveness, readiness, metrics, and the 404 fallback.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;

use super::ApiError;
use crate::http::AppState;

pub async fn healthz() -> &'static str {
    "ok"
}

pub async fn readyz(State(state): State<AppState>) -> (StatusCode, &'static str) {
    if state.is_shutting_down() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down")
    } else {
        (StatusCode::OK, "ready")
    }
}

/// The core's series, then those the dialects add for this request.
pub async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> impl IntoResponse {
    let mut text = state
        .metrics
        .render(&state.jobs.counts(), &state.scheduler.list());
    let extensions = state.metrics.extensions();
    if !extensions.is_empty() {
        let added = tokio::task::spawn_blocking(move || {
            extensions
                .iter()
                .filter_map(|extension| extension(&headers))
                .collect::<String>()
        })
        .await
        .unwrap_or_default();
        text.push_str(&added);
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

pub async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}
