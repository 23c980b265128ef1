//! Who a Backup-chan request comes from: `Authorization: Bearer bakch-<64 hex>`, a key
//! issued by `stowage key create --dialect backupchan`. The header is read as the real
//! server reads it: it must start with exactly `Bearer ` (that case, one space), and the
//! rest, trimmed, is the key. No header, or another start, is 401 "Unauthorized"; a key
//! that is not an active Backup-chan key (an empty one too) is 403 "Invalid API key"; a
//! key without the needed role is 403 too.

use axum::http::{header, HeaderMap};

use super::error::BcApiError;
use crate::http::AppState;
use crate::service::keys::Role;

/// The key after the `Bearer ` prefix, or `None` when the header is absent or starts
/// otherwise.
fn presented_key(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    Some(value.strip_prefix("Bearer ")?.trim())
}

pub fn authorize(app: &AppState, headers: &HeaderMap, role: Role) -> Result<(), BcApiError> {
    let token = presented_key(headers).ok_or_else(BcApiError::unauthorized)?;
    let principal = app.keys.verify_backupchan(token)?;
    principal
        .require(role)
        .map_err(|e| BcApiError::forbidden(e.to_string()))
}
