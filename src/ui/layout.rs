//! The frame every page shares (header, navigation, sign-out form), the error pages, and
//! the small formatters of figures.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{html, Markup, DOCTYPE};

use crate::error::ErrorKind;
use crate::service::keys::Role;
use crate::service::web_sessions::{SignedIn, WebSession};

/// A page's whole document.
pub fn page(title: &str, viewer: Option<(&SignedIn, &WebSession)>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · stowage" }
                link rel="icon" href="/ui/static/icon.svg" type="image/svg+xml";
                link rel="stylesheet" href="/ui/static/app.css";
                script src="/ui/static/app.js" defer {}
            }
            body {
                header {
                    a.brand href="/ui/" { "stowage" }
                    @if let Some((user, session)) = viewer {
                        nav aria-label="main" {
                            a href="/ui/" { "Overview" }
                            a href="/ui/jobs" { "Jobs" }
                            a href="/ui/dialects" { "Dialects" }
                            @if user.role >= Role::Admin {
                                a href="/ui/maintenance" { "Maintenance" }
                                a href="/ui/admin" { "Keys and users" }
                            }
                        }
                        form.signout method="post" action="/ui/logout" {
                            span.who { (user.user.email) " · " (user.role) }
                            input type="hidden" name="csrf" value=(session.csrf);
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// Why a page could not be shown, answered as a page (or, for a visitor who is not
/// signed in, as a redirect to the sign-in form).
#[derive(Debug)]
pub enum UiError {
    SignIn,
    Forbidden(String),
    NotFound(String),
    Invalid(String),
    Conflict(String),
    Internal(String),
}

impl UiError {
    pub fn from_kind(kind: ErrorKind, message: String) -> UiError {
        match kind {
            ErrorKind::NotFound => UiError::NotFound(message),
            ErrorKind::Forbidden | ErrorKind::Unauthorized => UiError::Forbidden(message),
            ErrorKind::InvalidInput | ErrorKind::LimitExceeded => UiError::Invalid(message),
            ErrorKind::Conflict | ErrorKind::AlreadyExists => UiError::Conflict(message),
            _ => UiError::Internal(message),
        }
    }
}

macro_rules! kinded_errors {
    ($($error:ty),*) => {$(
        impl From<$error> for UiError {
            fn from(error: $error) -> UiError {
                UiError::from_kind(error.kind(), error.to_string())
            }
        }
    )*};
}

kinded_errors!(
    crate::repo::RepoError,
    crate::service::backups::BackupsError,
    crate::service::jobs::JobError,
    crate::service::keys::KeyStoreError
);

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let (status, title, message) = match self {
            UiError::SignIn => return Redirect::to("/ui/login").into_response(),
            UiError::Forbidden(m) => (StatusCode::FORBIDDEN, "Not allowed", m),
            UiError::NotFound(m) => (StatusCode::NOT_FOUND, "Not found", m),
            UiError::Invalid(m) => (StatusCode::BAD_REQUEST, "Refused", m),
            UiError::Conflict(m) => (StatusCode::CONFLICT, "Conflict", m),
            UiError::Internal(m) => (StatusCode::INTERNAL_SERVER_ERROR, "Error", m),
        };
        let body = page(
            title,
            None,
            html! {
                section.narrow {
                    h1 { (title) }
                    p.problem role="alert" { (message) }
                    p { a href="/ui/" { "Back to the overview" } }
                }
            },
        );
        (status, body).into_response()
    }
}

pub use crate::service::views::human_bytes as bytes;

/// A value's serde name (`running`, `gc`), as the API spells it.
pub fn word<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// An RFC 3339 time shortened for a table: `2026-12-01 01:43:50`.
pub fn when(rfc3339: &str) -> String {
    rfc3339
        .get(..19)
        .map(|t| t.replace('T', " "))
        .unwrap_or_else(|| rfc3339.to_string())
}

/// Text as one URL query value.
pub fn encode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}
