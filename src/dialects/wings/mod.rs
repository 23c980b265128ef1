//! The Pterodactyl Panel's remote backup API as Wings calls it (spec
//! `pterodactyl-remote-backups-api.md`), with stowage in the roles of both the Panel and
//! the S3 bucket:
//!
//! * `GET /api/remote/backups/{uuid}?size=N` announces an upload and answers one part
//!   URL per `part_size` bytes;
//! * `PUT /wings/backups/{uuid}/parts/{n}?expires=..&signature=..` are those URLs:
//!   signed, expiring, bound to the backup and the part number; each part streams
//!   through the dedup engine and is answered 200 with a quoted `ETag`;
//! * `POST /api/remote/backups/{uuid}` reports the end (parts, size, SHA-1), 204;
//! * `POST /api/remote/backups/{uuid}/restore` reports a restore, 204.
//!
//! Wings authenticates with `Bearer <token_id>.<token>`: a stowage API key with the
//! writer role. The work is done by `service::wings`; differences from the Panel are
//! listed in `docs/dialects/wings.md`.

mod error;
pub mod plugin;

pub use plugin::WingsConfig;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post, put};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::http::body;
use crate::http::error_shape::{shape_errors, Shaper};
use crate::http::metrics::Metrics;
use crate::http::principal::{bearer, AuthError};
use crate::http::public_url;
use crate::http::AppState;
use crate::service::keys::{KeyStoreError, Role};
use crate::service::signed_urls::parse_query;
use crate::service::wings::{CompletionReport, WingsService};
use error::PanelError;

#[derive(Clone)]
struct WingsState {
    app: AppState,
    service: Arc<WingsService>,
}

type Reply = Result<Response, PanelError>;

/// The dialect's routes over its service.
fn router(app: AppState, service: Arc<WingsService>) -> Router {
    let json_limit = app.limits.max_json_bytes;
    let state = WingsState { app, service };
    let panel = Router::new()
        .route(
            "/api/remote/backups/{uuid}",
            get(announce).post(report_completion),
        )
        .route("/api/remote/backups/{uuid}/restore", post(report_restore))
        // Unknown routes under the Panel's prefix answer in its error shape.
        .route("/api/remote/{*rest}", any(unknown_route))
        .layer(DefaultBodyLimit::max(json_limit));
    let parts = Router::new()
        .route("/wings/backups/{uuid}/parts/{number}", put(upload_part))
        .layer(DefaultBodyLimit::disable());
    panel
        .merge(parts)
        .layer(from_fn_with_state(error::shaped as Shaper, shape_errors))
        .with_state(state)
}

async fn unknown_route() -> PanelError {
    PanelError::new(
        StatusCode::NOT_FOUND,
        "The requested resource could not be found on the server.",
    )
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Wings' credential: `Bearer <token_id>.<token>`, a stowage key with the writer role.
fn authenticate(state: &WingsState, headers: &HeaderMap) -> Result<(), PanelError> {
    let token = match bearer(headers) {
        Ok(token) => token,
        Err(AuthError::Missing) => {
            return Err(PanelError::new(
                StatusCode::UNAUTHORIZED,
                "Access to this endpoint must include an Authorization header.",
            ))
        }
        Err(_) => return Err(malformed_authorization()),
    };
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 2 || parts.iter().any(|p| p.is_empty()) {
        return Err(malformed_authorization());
    }
    match state.app.keys.verify(token) {
        // The Panel API only creates backups and reports on them: an agent's backup key
        // is enough.
        Ok(principal) => principal
            .require(Role::Backup)
            .map_err(|_| PanelError::forbidden()),
        Err(KeyStoreError::Malformed | KeyStoreError::Unknown) => Err(PanelError::forbidden()),
        Err(error) => {
            tracing::error!(%error, "cannot read the API keys");
            Err(PanelError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the server cannot check credentials right now",
            ))
        }
    }
}

fn malformed_authorization() -> PanelError {
    PanelError::bad_request("The Authorization header provided was not in a valid format.")
}

/// `GET /api/remote/backups/{uuid}?size=N` → `{"parts":[url,...],"part_size":P}`.
async fn announce(
    State(state): State<WingsState>,
    Path(uuid): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Reply {
    authenticate(&state, &headers)?;
    let size = query_value(query.as_deref().unwrap_or(""), "size");
    let size = match size.as_deref() {
        None | Some("") => None,
        Some(text) => Some(text.parse::<u64>().map_err(|_| {
            PanelError::bad_request(format!("the size {text:?} is not a number of bytes"))
        })?),
    };
    let plan = state.service.begin(&uuid, size, now()).await?;
    let base = public_url::base(state.app.public_url.as_deref(), &headers).ok_or_else(|| {
        PanelError::bad_request(
            "the request has no usable Host header and no public_url is configured",
        )
    })?;
    let expires = now() + state.service.settings().url_lifetime_secs as i64;
    let urls: Vec<String> = (1..=plan.parts)
        .map(|number| {
            let path = part_path(&uuid, number);
            let query = state.app.signer.query("PUT", &path, expires);
            format!("{base}{path}?{query}")
        })
        .collect();
    Ok(Json(json!({ "parts": urls, "part_size": plan.part_size })).into_response())
}

fn part_path(uuid: &str, number: u32) -> String {
    format!("/wings/backups/{uuid}/parts/{number}")
}

/// One query parameter's raw value.
fn query_value(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then(|| value.to_string())
    })
}

/// `PUT` of one part to a signed URL: 200 with the part's quoted `ETag`.
async fn upload_part(
    State(state): State<WingsState>,
    Path((uuid, number)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Reply {
    let (expires, signature) = parse_query(uri.query().unwrap_or(""));
    state
        .app
        .signer
        .verify("PUT", uri.path(), expires, signature.as_deref(), now())
        .map_err(|e| PanelError::new(StatusCode::FORBIDDEN, e.to_string()))?;
    let number: u32 = number
        .parse()
        .map_err(|_| PanelError::bad_request(format!("part number {number:?} is invalid")))?;
    let expected = state.service.part_len(&uuid, number)?;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(declared) = declared.filter(|d| *d != expected) {
        return Err(PanelError::bad_request(format!(
            "part {number} of backup {uuid} must be {expected} bytes; Content-Length says \
             {declared}"
        )));
    }
    let _slot = state.app.upload_slots.acquire().await.map_err(|_| {
        PanelError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is shutting down",
        )
    })?;
    let (pump, reader) = body::channel(expected.saturating_add(1), &state.app.tasks);
    let metrics = &state.app.metrics;
    metrics.uploads_in_flight.fetch_add(1, Ordering::Relaxed);
    let storing = state.service.put_part(&uuid, number, Box::new(reader));
    let (received, stored) = tokio::join!(pump.pump(body.into_data_stream()), storing);
    metrics.uploads_in_flight.fetch_sub(1, Ordering::Relaxed);
    Metrics::add(&metrics.bytes_uploaded, received);
    let etag = stored?;
    let mut response = StatusCode::OK.into_response();
    if let Ok(value) = HeaderValue::from_str(&etag) {
        response.headers_mut().insert(header::ETAG, value);
    }
    Ok(response)
}

/// Parses a JSON object body; anything else is a 400.
fn parse_object(
    body: Result<Bytes, BytesRejection>,
) -> Result<serde_json::Map<String, Value>, PanelError> {
    let body = body.map_err(|e| PanelError::bad_request(e.body_text()))?;
    match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(PanelError::bad_request(
            "the request body must be a JSON object",
        )),
        Err(e) => Err(PanelError::bad_request(format!(
            "the request body is not valid JSON: {e}"
        ))),
    }
}

/// Laravel's `boolean` rule: true, false, 1, 0, "1", "0", "true", "false".
fn as_boolean(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::Number(n) if n.as_u64() == Some(1) => Some(true),
        Value::Number(n) if n.as_u64() == Some(0) => Some(false),
        Value::String(s) => match s.as_str() {
            "1" | "true" => Some(true),
            "0" | "false" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// A whole non-negative number, as a JSON number or a numeric string.
fn as_count(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 2f64.powi(63))
                .map(|f| f as u64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The Panel's validation of a completion report, rule by rule.
fn validate_report(body: &serde_json::Map<String, Value>) -> Result<CompletionReport, PanelError> {
    let mut failures: Vec<(String, &'static str, String)> = Vec::new();
    let present = |name: &str| body.get(name).filter(|v| !v.is_null());
    let successful = match present("successful") {
        None => {
            failures.push((
                "successful".into(),
                "required",
                "The successful field is required.".into(),
            ));
            false
        }
        Some(value) => as_boolean(value).unwrap_or_else(|| {
            failures.push((
                "successful".into(),
                "boolean",
                "The successful field must be true or false.".into(),
            ));
            false
        }),
    };
    let mut text = |name: &str| match present(name) {
        None => {
            if successful {
                failures.push((
                    name.into(),
                    "required_if",
                    format!(
                        "The {} field is required when successful is true.",
                        name.replace('_', " ")
                    ),
                ));
            }
            None
        }
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            failures.push((
                name.into(),
                "string",
                format!("The {} must be a string.", name.replace('_', " ")),
            ));
            None
        }
    };
    let checksum = text("checksum");
    let checksum_type = text("checksum_type");
    let size = match present("size") {
        None => {
            if successful {
                failures.push((
                    "size".into(),
                    "required_if",
                    "The size field is required when successful is true.".into(),
                ));
            }
            None
        }
        Some(value) => as_count(value).or_else(|| {
            failures.push((
                "size".into(),
                "numeric",
                "The size must be a number.".into(),
            ));
            None
        }),
    };
    let parts = match present("parts") {
        None => None,
        Some(Value::Array(items)) => {
            let mut parts = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let etag = item.get("etag").and_then(Value::as_str);
                let number = item.get("part_number").and_then(as_count);
                if etag.is_none() {
                    failures.push((
                        format!("parts.{i}.etag"),
                        "required",
                        format!("The parts.{i}.etag field is required and must be a string."),
                    ));
                }
                if number.is_none() {
                    failures.push((
                        format!("parts.{i}.part_number"),
                        "numeric",
                        format!(
                            "The parts.{i}.part_number field is required and must be a number."
                        ),
                    ));
                }
                if let (Some(etag), Some(number)) = (etag, number) {
                    parts.push((etag.to_string(), number));
                }
            }
            Some(parts)
        }
        Some(_) => {
            failures.push((
                "parts".into(),
                "array",
                "The parts must be an array.".into(),
            ));
            None
        }
    };
    if !failures.is_empty() {
        return Err(PanelError::validation(failures));
    }
    Ok(CompletionReport {
        successful,
        checksum,
        checksum_type,
        size,
        parts,
    })
}

/// `POST /api/remote/backups/{uuid}` → 204.
async fn report_completion(
    State(state): State<WingsState>,
    Path(uuid): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Reply {
    authenticate(&state, &headers)?;
    let report = validate_report(&parse_object(body)?)?;
    state.service.complete(&uuid, report, now()).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /api/remote/backups/{uuid}/restore` `{"successful"}` → 204.
async fn report_restore(
    State(state): State<WingsState>,
    Path(uuid): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Reply {
    authenticate(&state, &headers)?;
    let body = parse_object(body)?;
    let successful = match body.get("successful").filter(|v| !v.is_null()) {
        None => {
            return Err(PanelError::validation(vec![(
                "successful".into(),
                "required",
                "The successful field is required.".into(),
            )]))
        }
        Some(value) => as_boolean(value).ok_or_else(|| {
            PanelError::validation(vec![(
                "successful".into(),
                "boolean",
                "The successful field must be true or false.".into(),
            )])
        })?,
    };
    state.service.restored(&uuid, successful, now())?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(value: Value) -> serde_json::Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    #[test]
    fn a_report_like_wings_sends_is_accepted() {
        let report = validate_report(&object(json!({
            "checksum": "a".repeat(40), "checksum_type": "sha1", "size": 12,
            "successful": true,
            "parts": [{"etag": "\"x\"", "part_number": 1}],
        })))
        .unwrap();
        assert!(report.successful);
        assert_eq!(report.size, Some(12));
        assert_eq!(report.parts, Some(vec![("\"x\"".to_string(), 1)]));
        let failed = validate_report(&object(json!({
            "checksum": "", "checksum_type": "", "size": 0, "successful": false, "parts": null,
        })))
        .unwrap();
        assert!(!failed.successful);
        assert_eq!(failed.parts, None);
    }

    #[test]
    fn each_broken_rule_is_named() {
        let error =
            validate_report(&object(json!({"successful": true, "parts": [{}]}))).unwrap_err();
        assert_eq!(error.status, StatusCode::UNPROCESSABLE_ENTITY);
        let body = format!("{error:?}");
        for field in [
            "checksum",
            "checksum_type",
            "size",
            "parts.0.etag",
            "parts.0.part_number",
        ] {
            assert!(body.contains(&format!("\"{field}\"")), "{field}: {body}");
        }
        let error = validate_report(&object(json!({"successful": "maybe"}))).unwrap_err();
        assert!(format!("{error:?}").contains("boolean"));
        assert!(validate_report(&object(json!({}))).is_err());
    }
}
