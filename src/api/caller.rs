//! The `Caller` extractor: the verified principal of a `/v1` request.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::error::ApiError;
use crate::http::principal::authenticate;
use crate::http::AppState;
use crate::service::keys::{Principal, Role};

pub struct Caller(pub Principal);

impl Caller {
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        Ok(self.0.require(role)?)
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Caller, ApiError> {
        let keys = &state.keys;
        Ok(Caller(authenticate(keys, &parts.headers)?))
    }
}
