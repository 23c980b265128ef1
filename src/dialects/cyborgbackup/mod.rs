//! The CyBorgBackup dialect (`cyborgbackup/cyborgbackup`, spec `cyborgbackup-api-v1.rst`
//! and what its server really does): its Django REST Framework API under `/api/v1/`,
//! `/api/token/...`, `/api/login/`, `/api/logout/` and `/doc/swagger.json`, for its web UI
//! and scripts. Each request is parsed into a closed endpoint (`endpoint`), its caller
//! authenticated (`auth`) and authorized by the service, then answered (`resources`)
//! with DRF's lists (`list`, `filter`) and errors (`error`). The records and rules are
//! `service::cyborgbackup`'s. Differences from the real server are listed in
//! `docs/dialects/cyborgbackup.md`.

mod auth;
mod backups;
mod endpoint;
mod error;
mod filter;
mod list;
pub mod plugin;
mod resources;
mod swagger;
mod tokens;
mod wire;

pub use plugin::CyborgbackupConfig;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::{Json, Router};
use serde_json::json;

use crate::http::error_shape::{shape_errors, Shaper};
use crate::http::AppState;
use error::DrfError;
use plugin::Mount;

#[derive(Clone)]
struct CbState {
    app: AppState,
    mount: Arc<Mount>,
}

type Body = Result<Bytes, BytesRejection>;

/// The dialect's routes. Every path is served with and without its trailing slash alike.
fn router(app: AppState, mount: Arc<Mount>) -> Router {
    let json_limit = app.limits.max_json_bytes;
    let state = CbState { app, mount };
    Router::new()
        // "They can be access on the url /api of the webserver and the V1 api on the
        // url /api/v1."
        .route("/api", any(api_root))
        .route("/api/", any(api_root))
        // "GET /api/v1: Retrieve all available submodule of the API", and every
        // resource below it (unknown ones answer a JSON 404, never another dialect's).
        .route("/api/v1", any(v1))
        .route("/api/v1/", any(v1))
        .route("/api/v1/{*rest}", any(v1))
        // simplejwt's pair and refresh views.
        .route("/api/token/obtain", any(tokens::obtain))
        .route("/api/token/obtain/", any(tokens::obtain))
        .route("/api/token/refresh", any(tokens::refresh))
        .route("/api/token/refresh/", any(tokens::refresh))
        // The browsable API's sign-in and sign-out pages.
        .route("/api/login", any(login))
        .route("/api/login/", any(login))
        .route("/api/logout", any(logout))
        .route("/api/logout/", any(logout))
        .route("/doc/swagger.json", any(swagger_json))
        .layer(DefaultBodyLimit::max(json_limit))
        .layer(from_fn_with_state(error::shaped as Shaper, shape_errors))
        .with_state(state)
}

fn only(method: &Method, allowed: &[Method]) -> Result<(), DrfError> {
    if allowed.contains(method) {
        Ok(())
    } else {
        Err(DrfError::method_not_allowed(method, allowed))
    }
}

fn reply(result: Result<Response, DrfError>) -> Response {
    result.unwrap_or_else(IntoResponse::into_response)
}

/// `GET /api/`.
async fn api_root(method: Method) -> Response {
    reply(only(&method, &[Method::GET, Method::HEAD]).map(|()| {
        Json(json!({
            "description": "CyBorgBackup API Rest",
            "current_version": "/api/v1/",
            "available_versions": {"v1": "/api/v1/"},
        }))
        .into_response()
    }))
}

/// `GET /api/login/`: stowage keeps no sessions; the page says how to sign in.
async fn login(method: Method) -> Response {
    reply(only(&method, &[Method::GET, Method::HEAD]).map(|()| {
        Json(json!({
            "detail": "Sign in with HTTP Basic (email and password), a token from POST /api/token/obtain/ (Authorization: Bearer), or a stowage API key (Authorization: Token).",
        }))
        .into_response()
    }))
}

/// `POST /api/logout/`: nothing to end; back to the sign-in page.
async fn logout(method: Method) -> Response {
    reply(
        only(&method, &[Method::POST])
            .map(|()| (StatusCode::FOUND, [(header::LOCATION, "/api/login/")]).into_response()),
    )
}

async fn swagger_json(method: Method) -> Response {
    reply(
        only(&method, &[Method::GET, Method::HEAD])
            .map(|()| Json(swagger::document()).into_response()),
    )
}

/// Everything under `/api/v1`: parse, authenticate, authorize, check the method, answer.
async fn v1(
    State(state): State<CbState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    reply(v1_reply(&state, &method, &uri, &headers, body).await)
}

async fn v1_reply(
    state: &CbState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, DrfError> {
    let path = uri.path();
    let rest = path.strip_prefix("/api/v1").unwrap_or_default();
    let endpoint = endpoint::parse(rest).ok_or_else(DrfError::not_found)?;
    let service = &state.mount.service;
    let caller = if endpoint.is_open() {
        None
    } else {
        let caller =
            auth::authenticate(service, headers)?.ok_or_else(DrfError::not_authenticated)?;
        crate::service::cyborgbackup::authorize(&caller, endpoint.action(method))?;
        Some(caller)
    };
    only(method, &endpoint.methods())?;
    let body = body.map_err(|e| DrfError::detail(e.status(), e.body_text()))?;
    let base = wire::Base(
        crate::http::public_url::base(state.app.public_url.as_deref(), headers).unwrap_or_default(),
    );
    let call = resources::Call {
        service,
        caller: caller.as_ref(),
        method,
        base: &base,
        path,
        query: uri.query(),
        body: &body,
        max_page_size: state.mount.max_page_size,
    };
    if endpoint == endpoint::Endpoint::Escatalogs {
        return backups::escatalogs(&call).await;
    }
    resources::answer(&call, endpoint)
}
