//! simplejwt's views: `POST /api/token/obtain/ {"email","password"}` answers
//! `{"refresh","access"}`, `POST /api/token/refresh/ {"refresh"}` answers a new
//! `{"access","refresh"}` and retires the refresh token presented. Wrong credentials and
//! bad tokens are 401s worded as simplejwt words them.

use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use super::error::{DrfError, DEFAULT_CHALLENGE};
use super::resources::object;
use super::{only, reply, Body, CbState};
use crate::service::cyborgbackup::tokens::MAX_TOKEN_LEN;
use crate::service::cyborgbackup::CbError;

/// The longest email or password looked at.
const MAX_FIELD_LEN: usize = 1024;

/// The required text fields of `body`, or DRF's field errors.
fn required(body: &Map<String, Value>, names: &[&str]) -> Result<Vec<String>, DrfError> {
    let mut values = Vec::new();
    let mut errors = Vec::new();
    for name in names {
        match body.get(*name) {
            None => errors.push((name.to_string(), "This field is required.".into())),
            Some(Value::String(s)) if s.is_empty() => {
                errors.push((name.to_string(), "This field may not be blank.".into()))
            }
            Some(Value::String(s)) if s.len() > MAX_FIELD_LEN.max(MAX_TOKEN_LEN) => errors.push((
                name.to_string(),
                "Ensure this field has no more than 4096 characters.".into(),
            )),
            Some(Value::String(s)) => values.push(s.clone()),
            Some(_) => errors.push((name.to_string(), "Not a valid string.".into())),
        }
    }
    if errors.is_empty() {
        Ok(values)
    } else {
        Err(DrfError::fields(errors))
    }
}

fn pair(first: (&str, String), second: (&str, String)) -> Response {
    let mut body = Map::new();
    body.insert(first.0.into(), first.1.into());
    body.insert(second.0.into(), second.1.into());
    (StatusCode::OK, Json(Value::Object(body))).into_response()
}

/// `POST /api/token/obtain/`.
pub async fn obtain(State(state): State<CbState>, method: Method, body: Body) -> Response {
    reply((|| {
        only(&method, &[Method::POST])?;
        let bytes = body.map_err(|e| DrfError::detail(e.status(), e.body_text()))?;
        let values = required(&object(&bytes)?, &["email", "password"])?;
        let service = &state.mount.service;
        let account = match service.sign_in(&values[0], &values[1]) {
            Ok(account) => account,
            Err(CbError::BadCredentials) => {
                return Err(DrfError::unauthorized(
                    "No active account found with the given credentials",
                    DEFAULT_CHALLENGE,
                ))
            }
            Err(e) => return Err(e.into()),
        };
        let (access, refresh) = service.token_pair(&account);
        Ok(pair(("refresh", refresh), ("access", access)))
    })())
}

/// `POST /api/token/refresh/`.
pub async fn refresh(State(state): State<CbState>, method: Method, body: Body) -> Response {
    reply((|| {
        only(&method, &[Method::POST])?;
        let bytes = body.map_err(|e| DrfError::detail(e.status(), e.body_text()))?;
        let values = required(&object(&bytes)?, &["refresh"])?;
        match state.mount.service.refresh(&values[0]) {
            Ok((access, refresh)) => Ok(pair(("access", access), ("refresh", refresh))),
            Err(CbError::Token(e)) => {
                let mut error = DrfError::unauthorized(&e.to_string(), DEFAULT_CHALLENGE);
                error.body = json!({"detail": e.to_string(), "code": "token_not_valid"});
                Err(error)
            }
            Err(e) => Err(e.into()),
        }
    })())
}
