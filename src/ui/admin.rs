//! The administrator's page: API keys (create, with the secret shown once; revoke) and
//! users (create, delete). Every action is an admin's, checked here and posted with the
//! session's CSRF token.

use axum::extract::{Form, Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{html, Markup};
use serde::Deserialize;

use super::auth::{require, CsrfForm, Visitor};
use super::layout::{page, when, UiError};
use crate::http::AppState;
use crate::service::keys::Role;
use crate::service::users::NewUser;
use crate::service::web_sessions::SignedIn;

/// `text` as one URL path segment (an email may hold `/`, `?`, `#` or `%`).
fn path_segment(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'@' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// An admin's form post: its CSRF token checked, then the role.
fn admin_acting(visitor: &Visitor, csrf: &str) -> Result<SignedIn, UiError> {
    let user = visitor.acting(csrf)?;
    require(Role::Admin, user.role)?;
    Ok(user)
}

fn access_page(
    state: &AppState,
    visitor: &Visitor,
    new_secret: Option<(&str, &str)>,
) -> Result<Markup, UiError> {
    let (user, session) = visitor.signed_in()?;
    let keys = state.keys.list()?;
    let users = state
        .users
        .list()
        .map_err(|e| UiError::Internal(e.to_string()))?;
    let csrf = session.csrf.as_str();
    Ok(page(
        "Keys and users",
        Some((&user, session)),
        html! {
            h1 { "Keys and users" }
            @if let Some((name, secret)) = new_secret {
                section.secret role="status" {
                    p { "The new key " strong { (name) } " — copy it now, it is not shown again:" }
                    pre id="new-key" { (secret) }
                }
            }
            h2 { "API keys" }
            div.scroll {
                table.keys {
                    thead { tr { th { "Id" } th { "Name" } th { "Role" } th { "User" } th { "Created" } th { "State" } th {} } }
                    tbody {
                        @for key in &keys {
                            tr data-key=(key.id) {
                                td { code { (key.id) } }
                                td { (key.name) }
                                td { (key.role) }
                                td { (key.user.clone().unwrap_or_default()) }
                                td { (when(&key.created_at)) }
                                td.state { @if key.revoked_at.is_some() { "revoked" } @else { "active" } }
                                td {
                                    @if key.revoked_at.is_none() {
                                        form method="post" action={"/ui/admin/keys/" (key.id) "/revoke"} {
                                            input type="hidden" name="csrf" value=(csrf);
                                            button.danger type="submit" { "Revoke" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            form.create method="post" action="/ui/admin/keys" {
                input type="hidden" name="csrf" value=(csrf);
                label { "Name" input type="text" name="name" required maxlength="128"; }
                label { "Role"
                    select name="role" {
                        option value="reader" { "reader" }
                        option value="backup" selected { "backup" }
                        option value="writer" { "writer" }
                        option value="admin" { "admin" }
                    }
                }
                button type="submit" { "Create key" }
            }
            h2 { "Users" }
            div.scroll {
                table.users {
                    thead { tr { th { "Email" } th { "Superuser" } th { "Created" } th { "Last sign-in" } th {} } }
                    tbody {
                        @for person in &users {
                            tr {
                                td { (person.email) }
                                td { @if person.superuser { "yes" } @else { "no" } }
                                td { (when(&person.created_at)) }
                                td { (person.last_login.as_deref().map(when).unwrap_or_default()) }
                                td {
                                    @if !person.email.eq_ignore_ascii_case(&user.user.email) {
                                        form method="post" action={"/ui/admin/users/" (path_segment(&person.email)) "/delete"} {
                                            input type="hidden" name="csrf" value=(csrf);
                                            button.danger type="submit" { "Delete" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            form.create method="post" action="/ui/admin/users" {
                input type="hidden" name="csrf" value=(csrf);
                label { "Email" input type="email" name="email" required; }
                label { "Password" input type="password" name="password" required minlength="8" autocomplete="new-password"; }
                label.check { input type="checkbox" name="superuser" value="true"; " Superuser" }
                button type="submit" { "Create user" }
            }
        },
    ))
}

pub async fn access(State(state): State<AppState>, visitor: Visitor) -> Result<Markup, UiError> {
    require(Role::Admin, visitor.signed_in()?.0.role)?;
    access_page(&state, &visitor, None)
}

#[derive(Deserialize)]
pub struct NewKeyForm {
    #[serde(default)]
    csrf: String,
    name: String,
    role: String,
}

pub async fn create_key(
    State(state): State<AppState>,
    visitor: Visitor,
    Form(form): Form<NewKeyForm>,
) -> Result<Markup, UiError> {
    admin_acting(&visitor, &form.csrf)?;
    let role = form
        .role
        .parse::<Role>()
        .map_err(|e| UiError::Invalid(e.to_string()))?;
    let name = form.name.trim();
    if name.is_empty() || name.len() > 128 {
        return Err(UiError::Invalid("a key's name is 1 to 128 bytes".into()));
    }
    let (_, secret) = state.keys.create(name, role)?;
    // Answered as a page, not a redirect: the secret exists only in this answer.
    access_page(&state, &visitor, Some((name, &secret)))
}

pub async fn revoke_key(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, UiError> {
    admin_acting(&visitor, &form.csrf)?;
    state.keys.revoke(&id)?;
    Ok(Redirect::to("/ui/admin").into_response())
}

#[derive(Deserialize)]
pub struct NewUserForm {
    #[serde(default)]
    csrf: String,
    email: String,
    password: String,
    #[serde(default)]
    superuser: bool,
}

pub async fn create_user(
    State(state): State<AppState>,
    visitor: Visitor,
    Form(form): Form<NewUserForm>,
) -> Result<Response, UiError> {
    admin_acting(&visitor, &form.csrf)?;
    let users = state.users.clone();
    let user = NewUser {
        email: form.email,
        superuser: form.superuser,
        ..NewUser::default()
    };
    // Hashing the password takes tens of milliseconds of CPU.
    tokio::task::spawn_blocking(move || users.create(user, &form.password))
        .await
        .map_err(|e| UiError::Internal(e.to_string()))?
        .map_err(|e| UiError::from_kind(e.kind(), e.to_string()))?;
    Ok(Redirect::to("/ui/admin").into_response())
}

pub async fn delete_user(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(email): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, UiError> {
    let user = admin_acting(&visitor, &form.csrf)?;
    if email.eq_ignore_ascii_case(&user.user.email) {
        return Err(UiError::Invalid("you cannot delete yourself".into()));
    }
    state
        .users
        .delete(&email, &state.keys)
        .map_err(|e| UiError::from_kind(e.kind(), e.to_string()))?;
    state.web_sessions.remove_user(&email);
    Ok(Redirect::to("/ui/admin").into_response())
}
