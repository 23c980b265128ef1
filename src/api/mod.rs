//! The native `/v1` API: JSON in and out, one error shape, bearer keys with roles.
//! The contract is `docs/API.md`; `openapi.rs` serves it as OpenAPI 3.1.

mod agents;
mod backups;
mod caller;
pub mod error;
mod jobs;
mod openapi;
mod ops;
mod policies;
mod repository;
mod schedules;
mod series;
mod sessions;

use axum::extract::DefaultBodyLimit;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use axum::Router;

use crate::http::error_shape::{shape_errors, Shaper};
use crate::http::AppState;
pub use error::ApiError;

/// Parses a JSON request body, naming the offending field on error.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::invalid(format!("invalid JSON body: {e}")))
}

pub fn router(state: AppState) -> Router {
    let json_limit = state.limits.max_json_bytes;
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/v1/openapi.json", get(openapi::document))
        .route("/v1/series", get(series::list).post(series::create))
        .route(
            "/v1/series/{name}",
            get(series::get).put(series::update).delete(series::delete),
        )
        .route(
            "/v1/series/{name}/backups",
            post(backups::upload).layer(DefaultBodyLimit::disable()),
        )
        .route("/v1/backups", get(backups::list))
        .route("/v1/backups/{id}", get(backups::get).delete(backups::purge))
        .route("/v1/backups/{id}/content", get(backups::content))
        .route("/v1/backups/{id}/url", post(backups::sign_url))
        .route("/v1/download/{id}", get(backups::signed_download))
        .route("/v1/backups/{id}/catalog", get(backups::catalog))
        .route(
            "/v1/backups/{id}/catalog/folder",
            get(backups::catalog_folder),
        )
        .route(
            "/v1/backups/{id}/catalog/entry",
            get(backups::catalog_entry),
        )
        .route("/v1/backups/{id}/recycle", post(backups::recycle))
        .route("/v1/backups/{id}/restore", post(backups::restore))
        .route(
            "/v1/schedules",
            get(schedules::list).post(schedules::create),
        )
        .route(
            "/v1/schedules/{name}",
            get(schedules::get)
                .patch(schedules::update)
                .delete(schedules::delete),
        )
        .route("/v1/schedules/{name}/calendar", get(schedules::calendar))
        .route("/v1/policies", get(policies::list).post(policies::create))
        .route(
            "/v1/policies/{name}",
            get(policies::get)
                .patch(policies::update)
                .delete(policies::delete),
        )
        .route("/v1/policies/{name}/run", post(policies::run))
        .route("/v1/sessions", post(sessions::open))
        .route(
            "/v1/sessions/{id}",
            get(sessions::get).delete(sessions::abandon),
        )
        .route("/v1/sessions/{id}/known", get(sessions::known))
        .route(
            "/v1/sessions/{id}/chunks",
            post(sessions::upload).layer(DefaultBodyLimit::max(
                crate::service::sessions::MAX_UPLOAD_BATCH_BYTES,
            )),
        )
        .route(
            "/v1/sessions/{id}/append",
            post(sessions::append).layer(DefaultBodyLimit::max(
                crate::service::sessions::MAX_APPEND_ENTRIES
                    * crate::format::chunk_batch::ENTRY_LEN,
            )),
        )
        .route(
            "/v1/sessions/{id}/catalog",
            post(sessions::catalog).layer(DefaultBodyLimit::max(
                crate::service::sessions::MAX_CATALOG_BATCH_BYTES,
            )),
        )
        .route("/v1/sessions/{id}/finish", post(sessions::finish))
        .route("/v1/agents", get(agents::list))
        .route("/v1/agents/{host}/jobs", post(agents::assign))
        .route("/v1/agent/next", get(agents::next))
        .route("/v1/agent/jobs/{id}/progress", post(agents::progress))
        .route("/v1/agent/jobs/{id}/finish", post(agents::finish))
        .route("/v1/jobs", get(jobs::list))
        .route("/v1/scheduler", get(jobs::scheduler))
        .route("/v1/jobs/{id}", get(jobs::get))
        .route("/v1/jobs/{id}/cancel", post(jobs::cancel))
        .route("/v1/repository/stats", get(repository::stats))
        .route("/v1/repository/check", post(repository::check))
        .route("/v1/repository/gc", post(repository::gc))
        .fallback(ops::not_found)
        .layer(DefaultBodyLimit::max(json_limit))
        .layer(from_fn_with_state(ApiError::shaped as Shaper, shape_errors))
        .with_state(state)
}
