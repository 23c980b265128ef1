//! Who an fa request comes from: a JWT signed HS512 with the configured secret, carrying
//! `username` and `exp` (what fa clients send, as gin-jwt checks them), or a stowage API
//! key, whose name is then the username. Like fa's middleware, the token is looked for
//! in `Authorization: Bearer`, then the query's `token`, then the `Authorization`
//! cookie.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha512;

use super::error::FaApiError;
use crate::http::principal::{bearer, AuthError};
use crate::http::AppState;
use crate::service::fa::validate_username;
use crate::service::fa::FaService;
use crate::service::keys::Role;

/// The token a request carries, found where fa's middleware looks
/// (`TokenLookup: "header: Authorization, query: token, cookie: Authorization"`), or why
/// none was found.
pub struct Credential(Result<String, AuthError>);

impl Credential {
    fn find(parts: &Parts) -> Result<String, AuthError> {
        let header = bearer(&parts.headers).map(str::to_string);
        if !matches!(header, Err(AuthError::Missing)) {
            return header;
        }
        if let Some(token) = query_token(&parts.uri) {
            return Ok(token);
        }
        cookie_token(&parts.headers).ok_or(AuthError::Missing)
    }
}

/// `token=` in the query, decoded; `None` when absent, empty or unreadable.
fn query_token(uri: &axum::http::Uri) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct TokenQuery {
        token: Option<String>,
    }
    axum::extract::Query::<TokenQuery>::try_from_uri(uri)
        .ok()?
        .0
        .token
        .filter(|token| !token.is_empty())
}

/// The `Authorization` cookie's value, as gin-jwt reads it (the raw token).
fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|line| line.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == "Authorization")
        .map(|(_, value)| value.trim().to_string())
        .filter(|token| !token.is_empty())
}

impl<S: Send + Sync> FromRequestParts<S> for Credential {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Credential(Credential::find(parts)))
    }
}

/// Why a token is refused (gin-jwt's wording where it has one).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("token contains an invalid number of segments")]
    Segments,
    #[error("token is malformed: {0}")]
    Malformed(&'static str),
    #[error("invalid signing algorithm")]
    Algorithm,
    #[error("signature is invalid")]
    Signature,
    #[error("missing exp field")]
    MissingExp,
    #[error("exp must be number")]
    BadExp,
    #[error("token is expired")]
    Expired,
    #[error("token has no username claim")]
    MissingUsername,
}

fn decode_part(part: &str, what: &'static str) -> Result<Vec<u8>, JwtError> {
    URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|_| JwtError::Malformed(what))
}

/// Verifies an HS512 JWT and returns its `username` claim. `now` is in Unix seconds.
pub fn verify_jwt(token: &str, secret: &[u8], now: i64) -> Result<String, JwtError> {
    let mut parts = token.split('.');
    let (Some(header), Some(claims), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Segments);
    };
    let header_json: Value = serde_json::from_slice(&decode_part(header, "header")?)
        .map_err(|_| JwtError::Malformed("header"))?;
    if header_json.get("alg").and_then(Value::as_str) != Some("HS512") {
        return Err(JwtError::Algorithm);
    }
    let signature = decode_part(signature, "signature")?;
    let mut mac = Hmac::<Sha512>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(header.as_bytes());
    mac.update(b".");
    mac.update(claims.as_bytes());
    mac.verify_slice(&signature)
        .map_err(|_| JwtError::Signature)?;
    let claims: Value = serde_json::from_slice(&decode_part(claims, "claims")?)
        .map_err(|_| JwtError::Malformed("claims"))?;
    let exp = claims.get("exp").ok_or(JwtError::MissingExp)?;
    let exp = exp.as_f64().ok_or(JwtError::BadExp)?;
    if exp <= now as f64 {
        return Err(JwtError::Expired);
    }
    claims
        .get("username")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or(JwtError::MissingUsername)
}

/// The username of the caller. API keys need `role`; tokens may do everything in their
/// user's home.
pub fn username(
    state: &AppState,
    service: &FaService,
    credential: &Credential,
    role: Role,
) -> Result<String, FaApiError> {
    let token = credential.0.as_deref().map_err(|e| match e {
        AuthError::Missing => FaApiError::unauthorized("auth header is empty"),
        _ => FaApiError::unauthorized("auth header is invalid"),
    })?;
    let name = if token.matches('.').count() == 2 {
        let secret = service.jwt_secret().ok_or_else(|| {
            FaApiError::unauthorized(
                "JWT authentication is not configured (set STOWAGE_FA_JWT_SECRET)",
            )
        })?;
        let now = chrono::Utc::now().timestamp();
        verify_jwt(token, secret, now).map_err(|e| FaApiError::unauthorized(e.to_string()))?
    } else {
        let principal = state.keys.verify(token)?;
        principal.require(role)?;
        principal.name
    };
    validate_username(&name).map_err(|e| FaApiError::unauthorized(e.to_string()))?;
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(header: &str, claims: &str, secret: &[u8]) -> String {
        let head = URL_SAFE_NO_PAD.encode(header);
        let body = URL_SAFE_NO_PAD.encode(claims);
        let mut mac = Hmac::<Sha512>::new_from_slice(secret).unwrap();
        mac.update(format!("{head}.{body}").as_bytes());
        let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{head}.{body}.{sig}")
    }

    const HS512: &str = r#"{"alg":"HS512","typ":"JWT"}"#;

    #[test]
    fn tokens() {
        let ok = sign(HS512, r#"{"username":"admin","exp":2000}"#, b"s");
        assert_eq!(verify_jwt(&ok, b"s", 1000).unwrap(), "admin");
        assert_eq!(verify_jwt(&ok, b"t", 1000), Err(JwtError::Signature));
        assert_eq!(verify_jwt(&ok, b"s", 2000), Err(JwtError::Expired));
        let hs256 = sign(r#"{"alg":"HS256"}"#, r#"{"username":"a","exp":2000}"#, b"s");
        assert_eq!(verify_jwt(&hs256, b"s", 1000), Err(JwtError::Algorithm));
        let none = sign(r#"{"alg":"none"}"#, r#"{"username":"a","exp":2000}"#, b"s");
        assert_eq!(verify_jwt(&none, b"s", 1000), Err(JwtError::Algorithm));
        let no_exp = sign(HS512, r#"{"username":"a"}"#, b"s");
        assert_eq!(verify_jwt(&no_exp, b"s", 1000), Err(JwtError::MissingExp));
        let no_user = sign(HS512, r#"{"exp":2000}"#, b"s");
        assert_eq!(
            verify_jwt(&no_user, b"s", 1000),
            Err(JwtError::MissingUsername)
        );
        assert_eq!(verify_jwt("a.b", b"s", 0), Err(JwtError::Segments));
    }
}
