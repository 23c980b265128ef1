//! Who is looking: the session cookie (`stowage_ui`: HttpOnly, SameSite=Strict, path
//! `/ui`, Secure behind TLS), sign-in with the user store's email and password (its
//! slow-down after failures applies), sign-out, and the CSRF token every form posts.

use axum::extract::{Form, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;

use super::layout::{page, UiError};
use crate::http::AppState;
use crate::service::keys::Role;
use crate::service::users::UserError;
use crate::service::web_sessions::{role_of, SignedIn, WebSession};

const COOKIE: &str = "stowage_ui";

/// The request's session, if its cookie names a live one.
pub struct Visitor {
    pub token: Option<String>,
    pub session: Option<WebSession>,
    /// Whether the browser reached us over TLS (cookies then get `Secure`).
    pub secure: bool,
}

impl Visitor {
    /// The signed-in user, or a redirect to the sign-in page.
    pub fn signed_in(&self) -> Result<(SignedIn, &WebSession), UiError> {
        match &self.session {
            Some(session) => match &session.signed_in {
                Some(user) => Ok((user.clone(), session)),
                None => Err(UiError::SignIn),
            },
            None => Err(UiError::SignIn),
        }
    }

    /// A form post: refused unless it carries this session's CSRF token, then the
    /// signed-in user who sent it.
    pub fn acting(&self, csrf: &str) -> Result<SignedIn, UiError> {
        self.check_csrf(csrf)?;
        Ok(self.signed_in()?.0)
    }

    /// Refuses a form whose CSRF token is not this session's.
    pub fn check_csrf(&self, token: &str) -> Result<(), UiError> {
        match &self.session {
            Some(session) if session.csrf_matches(token) => Ok(()),
            _ => Err(UiError::Forbidden(
                "the form was refused: it did not come from this dashboard's page (reload \
                 the page and try again)"
                    .into(),
            )),
        }
    }
}

/// Refuses an act that needs `role` to a user who acts with `have`.
pub fn require(role: Role, have: Role) -> Result<(), UiError> {
    if have >= role {
        Ok(())
    } else {
        Err(UiError::Forbidden(format!(
            "this needs the {role} role; you have {have}"
        )))
    }
}

fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_string())
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn is_secure(state: &AppState, headers: &HeaderMap) -> bool {
    state
        .public_url
        .as_deref()
        .is_some_and(|url| url.starts_with("https://"))
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

impl FromRequestParts<AppState> for Visitor {
    type Rejection = UiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Visitor, UiError> {
        let token = cookie_token(&parts.headers);
        let session = token.as_deref().and_then(|t| state.web_sessions.get(t));
        Ok(Visitor {
            token,
            session,
            secure: is_secure(state, &parts.headers),
        })
    }
}

fn set_cookie(token: &str, secure: bool) -> String {
    format!(
        "{COOKIE}={token}; Path=/ui; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    )
}

fn login_page(csrf: &str, email: &str, problem: Option<&str>) -> maud::Markup {
    page(
        "Sign in",
        None,
        html! {
            section.narrow {
                h1 { "Sign in to stowage" }
                @if let Some(problem) = problem {
                    p.problem role="alert" id="login-problem" { (problem) }
                }
                form method="post" action="/ui/login" {
                    input type="hidden" name="csrf" value=(csrf);
                    label { "Email" input type="email" name="email" value=(email) required autofocus autocomplete="username"; }
                    label { "Password" input type="password" name="password" required autocomplete="current-password"; }
                    button type="submit" { "Sign in" }
                }
            }
        },
    )
}

/// The sign-in form; a browser without a session gets one, for the form's CSRF token.
pub async fn login_form(State(state): State<AppState>, visitor: Visitor) -> Response {
    if let Some(session) = &visitor.session {
        if session.signed_in.is_some() {
            return Redirect::to("/ui/").into_response();
        }
        return login_page(&session.csrf, "", None).into_response();
    }
    let (token, session) = state.web_sessions.create(None);
    (
        [(header::SET_COOKIE, set_cookie(&token, visitor.secure))],
        login_page(&session.csrf, "", None),
    )
        .into_response()
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
}

pub async fn login(
    State(state): State<AppState>,
    visitor: Visitor,
    Form(form): Form<LoginForm>,
) -> Result<Response, UiError> {
    visitor.check_csrf(&form.csrf)?;
    let users = state.users.clone();
    let (email, password) = (form.email.clone(), form.password);
    // The password hash takes tens of milliseconds of CPU: off the runtime's workers.
    let verified = tokio::task::spawn_blocking(move || users.verify(&email, &password))
        .await
        .map_err(|e| UiError::Internal(format!("sign-in failed: {e}")))?;
    let csrf = visitor
        .session
        .as_ref()
        .map(|s| s.csrf.clone())
        .unwrap_or_default();
    // A refused sign-in answers the form again, with the reason, as a page (200): the
    // browser shows it, and an error status would only add a console error.
    let user = match verified {
        Ok(user) => user,
        Err(UserError::Throttled { retry_after_secs }) => {
            let problem = format!("Too many failed sign-ins: try again in {retry_after_secs} s.");
            return Ok(login_page(&csrf, &form.email, Some(&problem)).into_response());
        }
        Err(UserError::WrongPassword) => {
            let problem = "Wrong email or password.";
            return Ok(login_page(&csrf, &form.email, Some(problem)).into_response());
        }
        Err(error) => return Err(UiError::Internal(error.to_string())),
    };
    let role = role_of(&user, &state.keys);
    if let Some(old) = &visitor.token {
        state.web_sessions.remove(old);
    }
    let (token, _) = state.web_sessions.create(Some(SignedIn { user, role }));
    Ok((
        [(header::SET_COOKIE, set_cookie(&token, visitor.secure))],
        Redirect::to("/ui/"),
    )
        .into_response())
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    pub csrf: String,
}

pub async fn logout(
    State(state): State<AppState>,
    visitor: Visitor,
    Form(form): Form<CsrfForm>,
) -> Result<Response, UiError> {
    visitor.check_csrf(&form.csrf)?;
    if let Some(token) = &visitor.token {
        state.web_sessions.remove(token);
    }
    Ok((
        [(
            header::SET_COOKIE,
            format!("{COOKIE}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0"),
        )],
        Redirect::to("/ui/login"),
    )
        .into_response())
}
