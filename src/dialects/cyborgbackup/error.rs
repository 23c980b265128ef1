//! Django REST Framework's error answers, as CyBorgBackup's clients read them:
//! `{"detail": "..."}` for 401, 403, 404, 405 and request-wide 400s, `{"field":
//! ["message", ...]}` for invalid fields, and simplejwt's `{"detail", "code",
//! "messages"}` for a refused token. A 401 names the scheme to use in
//! `WWW-Authenticate`.

use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use crate::error::ErrorKind;
use crate::service::cyborgbackup::tokens::TokenError;
use crate::service::cyborgbackup::CbError;
use crate::service::users::UserError;

/// The scheme a 401 asks for when the request tried none.
pub const DEFAULT_CHALLENGE: &str = "Bearer realm=\"api\"";

#[derive(Debug)]
pub struct DrfError {
    pub status: StatusCode,
    pub body: Value,
    /// `WWW-Authenticate` of a 401.
    pub challenge: Option<&'static str>,
    /// `Allow` of a 405.
    pub allow: Option<String>,
    /// `Retry-After` (seconds) of a 429.
    pub retry_after: Option<u64>,
}

impl DrfError {
    pub fn detail(status: StatusCode, detail: impl Into<String>) -> DrfError {
        DrfError {
            status,
            body: json!({ "detail": detail.into() }),
            challenge: None,
            allow: None,
            retry_after: None,
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> DrfError {
        DrfError::detail(StatusCode::BAD_REQUEST, detail)
    }

    /// A path that names nothing.
    pub fn not_found() -> DrfError {
        DrfError::detail(StatusCode::NOT_FOUND, "Not found.")
    }

    pub fn unauthorized(detail: &str, challenge: &'static str) -> DrfError {
        DrfError {
            challenge: Some(challenge),
            ..DrfError::detail(StatusCode::UNAUTHORIZED, detail)
        }
    }

    /// No credentials on a request that needs them.
    pub fn not_authenticated() -> DrfError {
        DrfError::unauthorized(
            "Authentication credentials were not provided.",
            DEFAULT_CHALLENGE,
        )
    }

    pub fn forbidden() -> DrfError {
        DrfError::detail(
            StatusCode::FORBIDDEN,
            "You do not have permission to perform this action.",
        )
    }

    pub fn method_not_allowed(method: &Method, allowed: &[Method]) -> DrfError {
        let method = method.as_str().chars().take(16).collect::<String>();
        DrfError {
            allow: Some(
                allowed
                    .iter()
                    .map(Method::as_str)
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            ..DrfError::detail(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("Method \"{method}\" not allowed."),
            )
        }
    }

    /// A refused bearer token, as simplejwt words it.
    pub fn bad_token(error: &TokenError, token_class: &str) -> DrfError {
        let token_type = if token_class == "AccessToken" {
            "access"
        } else {
            "refresh"
        };
        DrfError {
            status: StatusCode::UNAUTHORIZED,
            body: json!({
                "detail": "Given token not valid for any token type",
                "code": "token_not_valid",
                "messages": [{
                    "token_class": token_class,
                    "token_type": token_type,
                    "message": error.to_string(),
                }],
            }),
            challenge: Some(DEFAULT_CHALLENGE),
            allow: None,
            retry_after: None,
        }
    }

    /// Field errors, grouped by field in the order given.
    pub fn fields(errors: Vec<(String, String)>) -> DrfError {
        let mut body = Map::new();
        for (field, message) in errors {
            let entry = body
                .entry(field)
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(list) = entry {
                list.push(Value::String(message));
            }
        }
        DrfError {
            status: StatusCode::BAD_REQUEST,
            body: Value::Object(body),
            challenge: None,
            allow: None,
            retry_after: None,
        }
    }
}

/// An error answered outside every handler (a rejection, an over-long request) in DRF's
/// shape, its status kept; see `http::error_shape`.
pub fn shaped(status: StatusCode, message: String) -> Response {
    DrfError::detail(status, message).into_response()
}

impl From<CbError> for DrfError {
    fn from(error: CbError) -> DrfError {
        match error {
            CbError::Invalid(list) => DrfError::fields(list),
            CbError::NotFound(model) => DrfError::detail(
                StatusCode::NOT_FOUND,
                format!("No {model} matches the given query."),
            ),
            CbError::Forbidden => DrfError::forbidden(),
            CbError::BadCredentials => {
                DrfError::unauthorized("Invalid username/password.", DEFAULT_CHALLENGE)
            }
            CbError::Token(e) => DrfError::bad_token(&e, "AccessToken"),
            // DRF's throttling answer, after repeated failed sign-ins of one email.
            CbError::Users(UserError::Throttled { retry_after_secs }) => DrfError {
                retry_after: Some(retry_after_secs),
                ..DrfError::detail(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!(
                        "Request was throttled. Expected available in {retry_after_secs} seconds."
                    ),
                )
            },
            other => {
                let status = match other.kind() {
                    ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
                    ErrorKind::NotFound => StatusCode::NOT_FOUND,
                    ErrorKind::AlreadyExists | ErrorKind::Conflict => StatusCode::CONFLICT,
                    ErrorKind::Forbidden => StatusCode::FORBIDDEN,
                    ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
                    ErrorKind::LimitExceeded => StatusCode::PAYLOAD_TOO_LARGE,
                    ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
                    ErrorKind::Corrupt | ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
                };
                if status.is_server_error() {
                    tracing::error!(error = %other, "CyBorgBackup request failed");
                    return DrfError::detail(status, "A server error occurred.");
                }
                DrfError::detail(status, other.to_string())
            }
        }
    }
}

impl IntoResponse for DrfError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body)).into_response();
        if let Some(challenge) = self.challenge {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        if let Some(allow) = self.allow.and_then(|a| HeaderValue::from_str(&a).ok()) {
            response.headers_mut().insert(header::ALLOW, allow);
        }
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}
