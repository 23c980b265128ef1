//! tapu-backups' error shape: `{"error":"<snake_case_code>"}` with the codes and statuses
//! of the original (`missing_instance`, `invalid_token`, `max_token_reached`,
//! `backups_not_found`, `unknown_route`, ...), and the mapping of the service's failures
//! onto it.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::error::ErrorKind;
use crate::service::tapu::tokens::TokenError;
use crate::service::tapu::TapuError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapuHttpError {
    pub status: StatusCode,
    pub code: &'static str,
}

impl TapuHttpError {
    pub const fn new(status: StatusCode, code: &'static str) -> TapuHttpError {
        TapuHttpError { status, code }
    }

    pub const fn bad_request(code: &'static str) -> TapuHttpError {
        TapuHttpError::new(StatusCode::BAD_REQUEST, code)
    }
}

/// A JSON body with the original's `Content-Type`.
pub fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

impl IntoResponse for TapuHttpError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.code }).to_string();
        json_response(self.status, body.into_bytes())
    }
}

impl From<TapuError> for TapuHttpError {
    fn from(error: TapuError) -> TapuHttpError {
        match &error {
            TapuError::InvalidInstance => TapuHttpError::bad_request("invalid_instance"),
            TapuError::UnknownInstance(_) => {
                TapuHttpError::new(StatusCode::NOT_FOUND, "backups_not_found")
            }
            TapuError::Token(TokenError::InvalidToken) => {
                TapuHttpError::bad_request("invalid_token")
            }
            TapuError::Token(TokenError::MaxTokens { .. }) => {
                TapuHttpError::bad_request("max_token_reached")
            }
            _ => {
                tracing::error!(%error, "tapu-backups request failed");
                match error.kind() {
                    ErrorKind::Unavailable => {
                        TapuHttpError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable")
                    }
                    _ => TapuHttpError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
                }
            }
        }
    }
}

/// Errors raised outside the handlers (URL or header limits), in this shape.
pub fn shaped(status: StatusCode, _message: String) -> Response {
    let code = match status {
        StatusCode::NOT_FOUND => "unknown_route",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::URI_TOO_LONG => "uri_too_long",
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => "headers_too_large",
        StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
        s if s.is_server_error() => "internal_error",
        _ => "invalid_body",
    };
    TapuHttpError::new(status, code).into_response()
}
