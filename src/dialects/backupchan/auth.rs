//! Who a Backup-chan request comes from: `Authorization: Bearer bakch-<64 hex>`, a key
//! issued by `stowage key create --dialect backupchan`. No header, or another scheme, is
//! 401 "Unauthorized"; a key that is not an active Backup-chan key is 403 "Invalid API
//! key"; a key without the needed role is 403 too.

use axum::http::HeaderMap;

use super::error::BcApiError;
use crate::http::principal::bearer;
use crate::http::AppState;
use crate::service::keys::Role;

pub fn authorize(app: &AppState, headers: &HeaderMap, role: Role) -> Result<(), BcApiError> {
    let token = bearer(headers).map_err(|_| BcApiError::unauthorized())?;
    let principal = app.keys.verify_backupchan(token)?;
    principal
        .require(role)
        .map_err(|e| BcApiError::forbidden(e.to_string()))
}
