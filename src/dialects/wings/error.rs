//! The Panel's error shape, `{"errors":[{"code","status","detail"}]}` with the HTTP
//! status repeated as a string (Wings reads `errors[0]`), validation failures as 422
//! with one entry per failed rule and `meta: {source_field, rule}`, and the mapping of
//! the service's failures onto it.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::error::ErrorKind;
use crate::service::wings::WingsError;

#[derive(Debug)]
pub struct PanelError {
    pub status: StatusCode,
    entries: Vec<Value>,
}

/// The exception class the Panel names for a status.
fn code_for(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "BadRequestHttpException",
        StatusCode::UNAUTHORIZED => "HttpException",
        StatusCode::FORBIDDEN => "AccessDeniedHttpException",
        StatusCode::NOT_FOUND => "NotFoundHttpException",
        StatusCode::METHOD_NOT_ALLOWED => "MethodNotAllowedHttpException",
        StatusCode::CONFLICT => "ConflictHttpException",
        StatusCode::PAYLOAD_TOO_LARGE => "PayloadTooLargeHttpException",
        StatusCode::SERVICE_UNAVAILABLE => "ServiceUnavailableHttpException",
        _ => "HttpException",
    }
}

impl PanelError {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> PanelError {
        PanelError {
            status,
            entries: vec![json!({
                "code": code_for(status),
                "status": status.as_u16().to_string(),
                "detail": detail.into(),
            })],
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> PanelError {
        PanelError::new(StatusCode::BAD_REQUEST, detail)
    }

    pub fn forbidden() -> PanelError {
        PanelError::new(
            StatusCode::FORBIDDEN,
            "You are not authorized to access this resource.",
        )
    }

    /// 422 with one entry per `(field, rule, detail)`.
    pub fn validation(failures: Vec<(String, &'static str, String)>) -> PanelError {
        let status = StatusCode::UNPROCESSABLE_ENTITY;
        PanelError {
            status,
            entries: failures
                .into_iter()
                .map(|(field, rule, detail)| {
                    json!({
                        "code": "ValidationException",
                        "status": "422",
                        "detail": detail,
                        "meta": { "source_field": field, "rule": rule },
                    })
                })
                .collect(),
        }
    }
}

impl From<WingsError> for PanelError {
    fn from(error: WingsError) -> PanelError {
        let status = match &error {
            WingsError::NotFound(_) => StatusCode::NOT_FOUND,
            WingsError::BadRequest(_) => StatusCode::BAD_REQUEST,
            WingsError::Conflict(_) => StatusCode::CONFLICT,
            WingsError::Records(_) | WingsError::InvalidRecords(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            WingsError::Repo(e) => match e.kind() {
                ErrorKind::NotFound => StatusCode::NOT_FOUND,
                ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
                ErrorKind::AlreadyExists | ErrorKind::Conflict => StatusCode::CONFLICT,
                ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
                ErrorKind::LimitExceeded => StatusCode::PAYLOAD_TOO_LARGE,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            },
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(%error, "Wings request failed");
        }
        PanelError::new(status, error.to_string())
    }
}

/// An error answered outside every handler (a rejection, a 405, an over-long request)
/// in the Panel's shape, its status kept; see `http::error_shape`.
pub fn shaped(status: StatusCode, message: String) -> Response {
    PanelError::new(status, message).into_response()
}

impl IntoResponse for PanelError {
    fn into_response(self) -> Response {
        let unauthorized = self.status == StatusCode::UNAUTHORIZED;
        let mut response = (self.status, Json(json!({ "errors": self.entries }))).into_response();
        if unauthorized {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
