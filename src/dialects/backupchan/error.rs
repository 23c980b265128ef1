//! Backup-chan's envelope: every answer is JSON, `{"success":true,...}` or
//! `{"success":false,"message":...}` (the client parses every body). A missing or
//! non-Bearer `Authorization` is 401 "Unauthorized", a wrong key 403 "Invalid API key",
//! an unknown target or backup 404, bad input 400, a sequential-upload conflict 409.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::error::ErrorKind;
use crate::service::backupchan::BcError;
use crate::service::keys::KeyStoreError;

/// `{"success":true}` plus the fields of `extra` (an object).
pub fn success(extra: Value) -> Response {
    success_with(StatusCode::OK, extra)
}

pub fn success_with(status: StatusCode, extra: Value) -> Response {
    let mut body = json!({ "success": true });
    if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), extra) {
        body.extend(extra);
    }
    (status, Json(body)).into_response()
}

/// An error answered outside every handler (a rejection, an over-long request) in
/// Backup-chan's envelope, its status kept; see `http::error_shape`.
pub fn shaped(status: StatusCode, message: String) -> Response {
    BcApiError::new(status, message).into_response()
}

#[derive(Debug)]
pub struct BcApiError {
    pub status: StatusCode,
    pub message: String,
}

impl BcApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> BcApiError {
        BcApiError {
            status,
            message: message.into(),
        }
    }

    /// The kind of failure this answer reports (for the job that recorded it).
    pub fn kind(&self) -> ErrorKind {
        match self.status {
            StatusCode::BAD_REQUEST => ErrorKind::InvalidInput,
            StatusCode::NOT_FOUND => ErrorKind::NotFound,
            StatusCode::CONFLICT => ErrorKind::Conflict,
            StatusCode::UNAUTHORIZED => ErrorKind::Unauthorized,
            StatusCode::FORBIDDEN => ErrorKind::Forbidden,
            StatusCode::PAYLOAD_TOO_LARGE => ErrorKind::LimitExceeded,
            StatusCode::SERVICE_UNAVAILABLE => ErrorKind::Unavailable,
            _ => ErrorKind::Internal,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> BcApiError {
        BcApiError::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn unauthorized() -> BcApiError {
        BcApiError::new(StatusCode::UNAUTHORIZED, "Unauthorized")
    }

    pub fn forbidden(message: impl Into<String>) -> BcApiError {
        BcApiError::new(StatusCode::FORBIDDEN, message)
    }

    pub fn missing(parameter: &str) -> BcApiError {
        BcError::MissingParameter(parameter.to_string()).into()
    }

    fn from_kind(kind: ErrorKind, message: String) -> BcApiError {
        let status = match kind {
            ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Conflict | ErrorKind::AlreadyExists => StatusCode::CONFLICT,
            ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorKind::Forbidden => StatusCode::FORBIDDEN,
            ErrorKind::LimitExceeded => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Corrupt | ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        BcApiError::new(status, message)
    }
}

impl From<BcError> for BcApiError {
    fn from(error: BcError) -> BcApiError {
        BcApiError::from_kind(error.kind(), error.to_string())
    }
}

impl From<KeyStoreError> for BcApiError {
    fn from(error: KeyStoreError) -> BcApiError {
        match error.kind() {
            ErrorKind::Unauthorized => BcApiError::forbidden("Invalid API key"),
            kind => BcApiError::from_kind(kind, error.to_string()),
        }
    }
}

impl IntoResponse for BcApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({ "success": false, "message": self.message }));
        (self.status, body).into_response()
    }
}
