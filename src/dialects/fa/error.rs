//! fa's envelope `{"code","message","data"}` and the mapping of failures to it: 2001 is
//! success, 4001 an unknown record on GET (both HTTP 200), auth failures HTTP 401
//! `{"code":401}`, every other failure HTTP 400 `{"code":400}` (fa's
//! `ErrorHandleMiddleware`; the error bodies carry no `data`).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::json;

use crate::error::ErrorKind;
use crate::service::fa::FaError;
use crate::service::keys::KeyStoreError;

pub const SUCCESS: i64 = 2001;
pub const NO_SUCH_RECORD: i64 = 4001;

/// `{"code":2001,"message":"success","data":...}`.
pub fn success<T: Serialize>(data: T) -> Response {
    Json(json!({ "code": SUCCESS, "message": "success", "data": data })).into_response()
}

/// An unknown id on GET: HTTP 200 with code 4001.
pub fn no_such_record(what: &str, id: i64) -> Response {
    Json(json!({
        "code": NO_SUCH_RECORD,
        "message": format!("err when load {what} [ {id} ]: no such record"),
        "data": null,
    }))
    .into_response()
}

/// A failed request: 401 for authentication, 400 for everything else.
#[derive(Debug)]
pub struct FaApiError {
    pub status: StatusCode,
    pub message: String,
}

impl FaApiError {
    pub fn bad_request(message: impl Into<String>) -> FaApiError {
        FaApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    pub fn unauthorized(message: impl Into<String>) -> FaApiError {
        FaApiError {
            status: StatusCode::UNAUTHORIZED,
            message: message.into(),
        }
    }

    fn from_kind(kind: ErrorKind, message: String) -> FaApiError {
        match kind {
            ErrorKind::Unauthorized | ErrorKind::Forbidden => FaApiError::unauthorized(message),
            _ => FaApiError::bad_request(message),
        }
    }
}

impl From<FaError> for FaApiError {
    fn from(error: FaError) -> FaApiError {
        FaApiError::from_kind(error.kind(), error.to_string())
    }
}

impl From<KeyStoreError> for FaApiError {
    fn from(error: KeyStoreError) -> FaApiError {
        FaApiError::from_kind(error.kind(), error.to_string())
    }
}

/// An error answered outside every handler (a rejection, a 405, an over-long request)
/// in fa's envelope, its status kept; see `http::error_shape`.
pub fn shaped(status: StatusCode, message: String) -> Response {
    FaApiError { status, message }.into_response()
}

impl IntoResponse for FaApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({ "code": self.status.as_u16(), "message": self.message }));
        (self.status, body).into_response()
    }
}
