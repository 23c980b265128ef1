//! The native API's one error shape, `{"error":{"code","message"}}`, and the mapping from
//! every layer's error kind to an HTTP status. This is the only place (with each dialect)
//! where errors become status codes.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::error::ErrorKind;
use crate::http::body::{BodyBroken, BodyCancelled, BodyStopped, BodyTooLarge};
use crate::http::principal::AuthError;
use crate::repo::RepoError;
use crate::service::jobs::JobError;
use crate::service::keys::KeyStoreError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Extra headers (`Content-Range` on 416).
    pub headers: Vec<(&'static str, String)>,
}

impl ApiError {
    /// The shared kind of this error, read back from its code.
    pub fn kind(&self) -> ErrorKind {
        match self.code {
            "not_found" => ErrorKind::NotFound,
            "conflict" | "cancelled" => ErrorKind::Conflict,
            "invalid_input" | "range_not_satisfiable" => ErrorKind::InvalidInput,
            "unauthorized" => ErrorKind::Unauthorized,
            "forbidden" => ErrorKind::Forbidden,
            "corrupt" => ErrorKind::Corrupt,
            "unavailable" => ErrorKind::Unavailable,
            "payload_too_large" | "uri_too_long" | "headers_too_large" => ErrorKind::LimitExceeded,
            "method_not_allowed" | "unsupported_media_type" => ErrorKind::InvalidInput,
            _ => ErrorKind::Internal,
        }
    }

    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_input", message)
    }

    /// A signed link that does not grant this request (bad signature, expired).
    pub fn link_refused(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// The server began shutting down before the request could be served.
    pub fn shutting_down() -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the server is shutting down",
        )
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn too_large(limit: u64) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("request body exceeds the limit of {limit} bytes"),
        )
    }

    pub fn unsatisfiable(size: u64) -> ApiError {
        let mut error = ApiError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "range_not_satisfiable",
            format!("the range is outside the {size}-byte object"),
        );
        error
            .headers
            .push(("content-range", format!("bytes */{size}")));
        error
    }

    /// An error answered outside every handler (an extractor's rejection, the method
    /// router's 405, an over-long request), in this API's shape; see
    /// `http::error_shape`.
    pub fn shaped(status: StatusCode, message: String) -> Response {
        let code = match status {
            StatusCode::BAD_REQUEST => "invalid_input",
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::FORBIDDEN => "forbidden",
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
            StatusCode::CONFLICT => "conflict",
            StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
            StatusCode::URI_TOO_LONG => "uri_too_long",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            StatusCode::RANGE_NOT_SATISFIABLE => "range_not_satisfiable",
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => "headers_too_large",
            StatusCode::SERVICE_UNAVAILABLE => "unavailable",
            status if status.is_client_error() => "invalid_input",
            _ => "internal",
        };
        ApiError::new(status, code, message).into_response()
    }

    pub(crate) fn from_kind(kind: ErrorKind, message: String) -> ApiError {
        let (status, code) = match kind {
            ErrorKind::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            ErrorKind::AlreadyExists | ErrorKind::Conflict => (StatusCode::CONFLICT, "conflict"),
            ErrorKind::InvalidInput => (StatusCode::BAD_REQUEST, "invalid_input"),
            ErrorKind::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ErrorKind::Forbidden => (StatusCode::FORBIDDEN, "forbidden"),
            ErrorKind::Corrupt => (StatusCode::INTERNAL_SERVER_ERROR, "corrupt"),
            ErrorKind::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ErrorKind::LimitExceeded => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ErrorKind::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        ApiError::new(status, code, message)
    }
}

impl From<RepoError> for ApiError {
    fn from(error: RepoError) -> ApiError {
        // A failed upload body surfaces as the engine's read error: name the real cause.
        if let RepoError::Io { source, .. } = &error {
            if let Some(inner) = source.get_ref() {
                if let Some(too_large) = inner.downcast_ref::<BodyTooLarge>() {
                    return ApiError::too_large(too_large.limit);
                }
                if let Some(broken) = inner.downcast_ref::<BodyBroken>() {
                    return ApiError::invalid(broken.to_string());
                }
                if inner.is::<BodyCancelled>() {
                    return ApiError::new(StatusCode::CONFLICT, "cancelled", inner.to_string());
                }
                if inner.is::<BodyStopped>() {
                    return ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "unavailable",
                        BodyStopped.to_string(),
                    );
                }
            }
        }
        if matches!(error, RepoError::Cancelled) {
            return ApiError::new(StatusCode::CONFLICT, "cancelled", error.to_string());
        }
        ApiError::from_kind(error.kind(), error.to_string())
    }
}

impl From<crate::service::backups::BackupsError> for ApiError {
    fn from(error: crate::service::backups::BackupsError) -> ApiError {
        use crate::service::backups::BackupsError;
        match error {
            BackupsError::Repo(e) => e.into(),
            BackupsError::Denied(e) => e.into(),
            other => ApiError::from_kind(other.kind(), other.to_string()),
        }
    }
}

impl From<crate::service::schedules::ScheduleError> for ApiError {
    fn from(error: crate::service::schedules::ScheduleError) -> ApiError {
        use crate::service::schedules::ScheduleError;
        match error {
            ScheduleError::Denied(e) => e.into(),
            other => ApiError::from_kind(other.kind(), other.to_string()),
        }
    }
}

impl From<crate::service::policies::PolicyError> for ApiError {
    fn from(error: crate::service::policies::PolicyError) -> ApiError {
        use crate::service::policies::PolicyError;
        match error {
            PolicyError::Denied(e) => e.into(),
            other => ApiError::from_kind(other.kind(), other.to_string()),
        }
    }
}

impl From<KeyStoreError> for ApiError {
    fn from(error: KeyStoreError) -> ApiError {
        ApiError::from_kind(error.kind(), error.to_string())
    }
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> ApiError {
        match error {
            AuthError::Key(key) => key.into(),
            other => ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", other.to_string()),
        }
    }
}

impl From<JobError> for ApiError {
    fn from(error: JobError) -> ApiError {
        ApiError::from_kind(error.kind(), error.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({ "error": { "code": self.code, "message": self.message } }));
        let mut response = (self.status, body).into_response();
        for (name, value) in self.headers {
            if let Ok(value) = value.parse() {
                response.headers_mut().insert(name, value);
            }
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                "www-authenticate",
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}
