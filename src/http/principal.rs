//! The caller's identity from `Authorization: Bearer <key>`, verified against the key
//! store. What a principal may do is decided by the service (`Principal::require`).

use axum::http::header::AUTHORIZATION;
use axum::http::HeaderMap;

use crate::service::keys::{KeyStore, KeyStoreError, Principal};

/// Why a request carries no usable credential.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing Authorization header (expected: Bearer <key>)")]
    Missing,
    #[error("Authorization header is not a Bearer credential")]
    NotBearer,
    #[error(transparent)]
    Key(#[from] KeyStoreError),
}

/// The bearer token of a request, if it has one.
pub fn bearer(headers: &HeaderMap) -> Result<&str, AuthError> {
    let value = headers.get(AUTHORIZATION).ok_or(AuthError::Missing)?;
    let text = value.to_str().map_err(|_| AuthError::NotBearer)?;
    let (scheme, token) = text.split_once(' ').ok_or(AuthError::NotBearer)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(AuthError::NotBearer);
    }
    Ok(token.trim())
}

/// Verifies the request's bearer key.
pub fn authenticate(keys: &KeyStore, headers: &HeaderMap) -> Result<Principal, AuthError> {
    let token = bearer(headers)?;
    Ok(keys.verify(token)?)
}
