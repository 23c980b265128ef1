//! The web dashboard at `/ui/`: server-rendered pages (maud templates compiled into the
//! binary, one stylesheet, one small script of our own for live job progress), signed in
//! with the user store's email and password. Nothing is fetched from outside, so it works
//! offline; every page is plain HTML that works without the script, by keyboard and on a
//! phone.
//!
//! `admin` the keys and users page; `auth` holds the session cookie, sign-in and sign-out and the CSRF check every form
//! goes through; `pages` the pages and their actions; `layout` the frame and the helpers
//! that format figures. What a user may see and do follows their role
//! (`service::web_sessions::role_of`), checked again by the services on every action.

mod admin;
mod auth;
mod backup;
mod chart;
mod dialects;
mod layout;
mod pages;
mod series;

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::http::AppState;

const STYLESHEET: &str = include_str!("assets/app.css");
const SCRIPT: &str = include_str!("assets/app.js");
const ICON: &str = include_str!("assets/icon.svg");

/// The dashboard's routes, to be merged into the server's router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/", get(pages::overview))
        .route("/ui/login", get(auth::login_form).post(auth::login))
        .route("/ui/logout", post(auth::logout))
        .route("/ui/series/{name}", get(series::series))
        .route("/ui/series/{name}/retention", post(series::apply_retention))
        .route("/ui/backups/{id}", get(backup::backup))
        .route("/ui/backups/{id}/content", get(backup::download_backup))
        .route("/ui/backups/{id}/file", get(backup::download_file))
        .route("/ui/backups/{id}/folder.tar", get(backup::download_folder))
        .route("/ui/backups/{id}/recycle", post(backup::recycle))
        .route("/ui/backups/{id}/link", post(backup::create_link))
        .route("/ui/backups/{id}/undelete", post(backup::undelete))
        .route(
            "/ui/backups/{id}/purge",
            get(backup::purge_form).post(backup::purge),
        )
        .route("/ui/dialects", get(dialects::dialects))
        .route("/ui/jobs", get(pages::jobs))
        .route("/ui/jobs.json", get(pages::jobs_json))
        .route("/ui/jobs/{id}", get(pages::job))
        .route("/ui/jobs/{id}/cancel", post(pages::cancel_job))
        .route("/ui/admin", get(admin::access))
        .route("/ui/admin/keys", post(admin::create_key))
        .route("/ui/admin/keys/{id}/revoke", post(admin::revoke_key))
        .route("/ui/admin/users", post(admin::create_user))
        .route("/ui/admin/users/{email}/delete", post(admin::delete_user))
        .route("/ui/maintenance", get(pages::maintenance))
        .route("/ui/maintenance/check", post(pages::start_check))
        .route("/ui/maintenance/gc", post(pages::start_gc))
        .route("/ui/static/app.css", get(|| asset(STYLESHEET, "text/css")))
        .route(
            "/ui/static/app.js",
            get(|| asset(SCRIPT, "text/javascript")),
        )
        .route("/ui/static/icon.svg", get(|| asset(ICON, "image/svg+xml")))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

async fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        body,
    )
        .into_response()
}

/// Every page: only this server's own scripts, styles and images; never framed; no
/// referrer sent away; nothing cached that holds a user's data.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self'; style-src 'self'; script-src 'self'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}
