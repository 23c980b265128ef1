//! tapu-backups' HTTP API on its own listener (b2 hosts call `http://HOST:8000`): every
//! route spelling the original used, GET or POST, parameters from the JSON body or the
//! query string. Checked in the original's order: the route (404 `unknown_route`), the
//! method (405 `method_not_allowed`), for anything but GET a JSON `Content-Type` (400
//! `invalid_body`) and a body that is a JSON object or array (400 `invalid_json`), then
//! the route's own fields. With `require_key`, a stowage key as `Authorization: Bearer`.

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use super::error::{json_response, shaped, TapuHttpError};
use super::status::status_document;
use crate::http::error_shape::{shape_errors, Shaper};
use crate::http::AppState;
use crate::service::keys::Role;
use crate::service::tapu::names::is_instance;
use crate::service::tapu::TapuService;

/// Largest request body: the original's bodies are a few fields.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// What the HTTP handlers share.
pub struct TapuHttp {
    pub app: AppState,
    pub service: Arc<TapuService>,
    pub require_key: bool,
    pub data_dir: PathBuf,
}

/// The routes, each under every name the original gave it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Status,
    Backups,
    CreateToken,
    ReleaseToken,
    ReleaseExpiredTokens,
    RemoveExpiredBackups,
}

impl Route {
    fn of(path: &str) -> Option<Route> {
        let path = match path.strip_suffix('/') {
            Some(trimmed) if !trimmed.is_empty() => trimmed,
            _ => path,
        };
        Some(match path {
            "/status" => Route::Status,
            "/instance/backups" => Route::Backups,
            "/token" | "/token/create" | "/instance/create-token" => Route::CreateToken,
            "/token-release" | "/token/release" | "/instance/release-token" => Route::ReleaseToken,
            "/release-expired-tokens" => Route::ReleaseExpiredTokens,
            "/remove-expired-backups" => Route::RemoveExpiredBackups,
            _ => return None,
        })
    }

    /// The least role a key needs when keys are required.
    fn role(self) -> Role {
        match self {
            Route::Status | Route::Backups => Role::Reader,
            Route::CreateToken | Route::ReleaseToken | Route::ReleaseExpiredTokens => Role::Backup,
            Route::RemoveExpiredBackups => Role::Admin,
        }
    }
}

pub fn router(http: Arc<TapuHttp>) -> axum::Router {
    axum::Router::new()
        .fallback(handle)
        .with_state(http)
        .layer(from_fn_with_state(shaped as Shaper, shape_errors))
}

type Params = Map<String, Value>;

async fn handle(
    State(http): State<Arc<TapuHttp>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match answer(&http, &method, &uri, &headers, body).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn answer(
    http: &TapuHttp,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, TapuHttpError> {
    let route =
        Route::of(uri.path()).ok_or(TapuHttpError::new(StatusCode::NOT_FOUND, "unknown_route"))?;
    if method != Method::GET && method != Method::POST {
        return Err(TapuHttpError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ));
    }
    if http.require_key {
        check_key(http, headers, route.role())?;
    }
    let params = params(method, uri, headers, body).await?;
    let now = chrono::Utc::now();
    match route {
        Route::Status => status(http).await,
        Route::Backups => {
            let instance = instance(&params)?;
            let files = http.service.files(&instance)?;
            let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
            Ok(json_response(StatusCode::OK, json_bytes(&json!(names))))
        }
        Route::CreateToken => {
            let instance = instance(&params)?;
            match params.get("no_delay") {
                None | Some(Value::Bool(_)) => {}
                Some(Value::String(s)) if matches!(s.as_str(), "true" | "false" | "1" | "0") => {}
                Some(_) => return Err(TapuHttpError::bad_request("invalid_no_delay")),
            }
            let issued = http
                .service
                .create_token(&instance, now.timestamp())
                .await?;
            let body = json!({
                "token": issued.token,
                "credentials": {"username": instance, "password": issued.password},
            });
            Ok(json_response(StatusCode::CREATED, json_bytes(&body)))
        }
        Route::ReleaseToken => {
            let instance = instance(&params)?;
            let token = match params.get("token") {
                None | Some(Value::Null) => {
                    return Err(TapuHttpError::bad_request("missing_token"))
                }
                Some(Value::String(token)) if token.len() == 32 => token.clone(),
                Some(_) => return Err(TapuHttpError::bad_request("invalid_token")),
            };
            http.service.release_token(&instance, &token)?;
            Ok(bare("token_released"))
        }
        Route::ReleaseExpiredTokens => {
            if http.service.release_expired(now.timestamp())? == 0 {
                return Ok(bare("no_tokens_to_release"));
            }
            Ok(result("expired_tokens_released"))
        }
        Route::RemoveExpiredBackups => {
            let local = chrono::Local::now().naive_local();
            let removed = http.service.remove_expired(local).await?;
            tracing::info!(removed, "tapu-backups: expired backups removed");
            Ok(result("expired_backups_removed"))
        }
    }
}

fn json_bytes(value: &Value) -> Vec<u8> {
    value.to_string().into_bytes()
}

/// The original's bare words (`token_released`), sent as they are.
fn bare(word: &'static str) -> Response {
    json_response(StatusCode::OK, word.as_bytes().to_vec())
}

fn result(word: &'static str) -> Response {
    json_response(StatusCode::OK, json_bytes(&json!({ "result": word })))
}

fn check_key(http: &TapuHttp, headers: &HeaderMap, role: Role) -> Result<(), TapuHttpError> {
    let key = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or(TapuHttpError::new(StatusCode::UNAUTHORIZED, "missing_key"))?;
    let principal = http
        .app
        .keys
        .verify(key)
        .map_err(|_| TapuHttpError::new(StatusCode::UNAUTHORIZED, "invalid_key"))?;
    principal
        .require(role)
        .map_err(|_| TapuHttpError::new(StatusCode::FORBIDDEN, "forbidden"))
}

/// The request's fields: the query string's, then the JSON body's over them.
async fn params(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
) -> Result<Params, TapuHttpError> {
    let mut params: Params = form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
        .collect();
    if method == Method::GET {
        return Ok(params);
    }
    let json_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"));
    if !json_type {
        return Err(TapuHttpError::bad_request("invalid_body"));
    }
    let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| TapuHttpError::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(params);
    }
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(fields)) => params.extend(fields),
        // A list decodes as the original's PHP array without named fields.
        Ok(Value::Array(_)) => {}
        _ => return Err(TapuHttpError::bad_request("invalid_json")),
    }
    Ok(params)
}

/// The `instance` field: present (`missing_instance`) and a valid instance name.
fn instance(params: &Params) -> Result<String, TapuHttpError> {
    match params.get("instance") {
        None | Some(Value::Null) => Err(TapuHttpError::bad_request("missing_instance")),
        Some(Value::String(name)) if is_instance(name) => Ok(name.clone()),
        Some(_) => Err(TapuHttpError::bad_request("invalid_instance")),
    }
}

async fn status(http: &TapuHttp) -> Result<Response, TapuHttpError> {
    let usage = http.service.usage().await?;
    let figures = http.service.host.sample(&http.data_dir);
    let document = status_document(&figures, &usage, http.service.live_tokens());
    Ok(json_response(StatusCode::OK, json_bytes(&document)))
}
