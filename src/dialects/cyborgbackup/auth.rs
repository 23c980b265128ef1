//! Who a CyBorgBackup request comes from, as its clients authenticate: HTTP Basic with
//! a user's email and password, `Token <stowage API key assigned to the user>`, or
//! `Bearer <access token>` from `/api/token/obtain/`. An `Authorization` of another
//! scheme, or none, is no credential. Refusals carry DRF's and simplejwt's wording and
//! the scheme tried as `WWW-Authenticate`. Passwords are never logged.

use axum::http::header::AUTHORIZATION;
use axum::http::HeaderMap;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use super::error::{DrfError, DEFAULT_CHALLENGE};
use crate::service::cyborgbackup::{Account, CbError, CyborgService};

const BASIC: &str = "Basic realm=\"api\"";
const TOKEN: &str = "Token";

/// The caller of a request: `Ok(None)` when it carries no credential of a known scheme.
pub fn authenticate(
    service: &CyborgService,
    headers: &HeaderMap,
) -> Result<Option<Account>, DrfError> {
    let Some(text) = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return Ok(None);
    };
    let mut words = text.split_whitespace();
    let scheme = words.next().unwrap_or_default().to_ascii_lowercase();
    let credential = words.next();
    let extra = words.next().is_some();
    match scheme.as_str() {
        "basic" => basic(service, credential, extra).map(Some),
        "token" => token(service, credential, extra).map(Some),
        "bearer" => bearer(service, credential, extra).map(Some),
        _ => Ok(None),
    }
}

/// The user and password of an `Authorization: Basic` header, if it carries one.
pub fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let text = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let mut words = text.split_whitespace();
    if !words.next()?.eq_ignore_ascii_case("basic") {
        return None;
    }
    let encoded = words.next()?;
    if words.next().is_some() {
        return None;
    }
    decode_basic(encoded)
}

/// `user:password` out of a Basic credential's base64 text.
fn decode_basic(encoded: &str) -> Option<(String, String)> {
    let decoded = String::from_utf8(STANDARD.decode(encoded).ok()?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

fn basic(
    service: &CyborgService,
    credential: Option<&str>,
    extra: bool,
) -> Result<Account, DrfError> {
    let refuse = |detail: &str| DrfError::unauthorized(detail, BASIC);
    let Some(encoded) = credential else {
        return Err(refuse("Invalid basic header. No credentials provided."));
    };
    if extra {
        return Err(refuse(
            "Invalid basic header. Credentials string should not contain spaces.",
        ));
    }
    let Some((email, password)) = decode_basic(encoded) else {
        return Err(refuse(
            "Invalid basic header. Credentials not correctly base64 encoded.",
        ));
    };
    match service.sign_in(&email, &password) {
        Ok(account) => Ok(account),
        Err(CbError::BadCredentials) => Err(refuse("Invalid username/password.")),
        Err(e) => Err(e.into()),
    }
}

fn token(
    service: &CyborgService,
    credential: Option<&str>,
    extra: bool,
) -> Result<Account, DrfError> {
    let refuse = |detail: &str| DrfError::unauthorized(detail, TOKEN);
    let Some(key) = credential else {
        return Err(refuse("Invalid token header. No credentials provided."));
    };
    if extra {
        return Err(refuse(
            "Invalid token header. Token string should not contain spaces.",
        ));
    }
    match service.sign_in_with_key(key) {
        Ok(account) => Ok(account),
        Err(CbError::BadCredentials) => Err(refuse("Invalid token.")),
        Err(e) => Err(e.into()),
    }
}

fn bearer(
    service: &CyborgService,
    credential: Option<&str>,
    extra: bool,
) -> Result<Account, DrfError> {
    let Some(token) = credential.filter(|_| !extra) else {
        let mut error = DrfError::unauthorized(
            "Authorization header must contain two space-delimited values",
            DEFAULT_CHALLENGE,
        );
        error.body["code"] = "bad_authorization_header".into();
        return Err(error);
    };
    match service.sign_in_with_token(token) {
        Ok(account) => Ok(account),
        Err(CbError::Token(e)) => Err(DrfError::bad_token(&e, "AccessToken")),
        Err(e) => Err(e.into()),
    }
}
