//! The fa dialect (`ellis-chen/fa`, spec `fa-backup-api.md`): server-side path backups
//! and restores as cancellable jobs under `/fa/api/v0`, for clients that send paths on
//! the server's own file system, poll job status and cancel. The work is done by
//! `service::fa`; this module speaks fa's wire format. Differences from the document are
//! listed in `docs/dialects/fa.md`.

mod auth;
mod error;
pub mod plugin;
mod wire;

pub use plugin::FaConfig;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::Router;

use crate::http::error_shape::{shape_errors, Shaper};
use crate::http::AppState;
use crate::service::fa::FaService;
use crate::service::keys::Role;
use error::{no_such_record, success, FaApiError};

#[derive(Clone)]
struct FaState {
    app: AppState,
    service: Arc<FaService>,
}

type Reply = Result<Response, FaApiError>;

/// The dialect's routes over its service.
fn router(app: AppState, service: Arc<FaService>) -> Router {
    let json_limit = app.limits.max_json_bytes;
    let state = FaState { app, service };
    Router::new()
        // "POST /fa/api/v0/backup" with {"id","path"}: "backup a file"; the real server
        // serves it as POST /backup/new.
        .route("/fa/api/v0/backup", post(backup_new))
        .route("/fa/api/v0/backup/new", post(backup_new))
        // "GET /fa/api/v0/backup/1": "get the backup status";
        // "DELETE /fa/api/v0/backup/1": "delete a backup".
        .route(
            "/fa/api/v0/backup/{id}",
            get(backup_get).delete(backup_delete),
        )
        // "POST /fa/api/v0/backup/cancel" with {"id"}: "cancel a backup".
        .route("/fa/api/v0/backup/cancel", post(backup_cancel))
        // "POST /fa/api/v0/backup/cancel-all": "cancel all backup" (the body is ignored).
        .route("/fa/api/v0/backup/cancel-all", post(backup_cancel_all))
        // "POST /fa/api/v0/backup/destroy-repo": "delete backup repo".
        .route("/fa/api/v0/backup/destroy-repo", post(destroy_repo))
        // Not in the document; the real server answers {"destroyed": bool}.
        .route("/fa/api/v0/backup/repo-destroyed", get(repo_destroyed))
        // "POST /fa/api/v0/restore" with {"restore_id","backup_id","dst_path"}:
        // "restore a backup"; the real server serves it as POST /restore/new.
        .route("/fa/api/v0/restore", post(restore_new))
        .route("/fa/api/v0/restore/new", post(restore_new))
        // "GET /fa/api/v0/restore/1": "get the restore status".
        .route("/fa/api/v0/restore/{id}", get(restore_get))
        // Not in the document; the real server cancels one restore, or all of them.
        .route("/fa/api/v0/restore/cancel", post(restore_cancel))
        .route("/fa/api/v0/restore/cancel-all", post(restore_cancel_all))
        // The real server's public routes (no token): whether an upgrade is safe now, and
        // the "full mode" routes, which answer as fa does when that mode is off.
        .route("/fa/public/safe-upgrade", get(safe_upgrade))
        .route("/fa/public/full-restore", get(full_mode_off))
        .route("/fa/public/full-query", get(full_mode_off))
        .route(
            "/fa/public/full-ack/{id}",
            axum::routing::put(full_mode_off),
        )
        .route("/health", get(health))
        // Unknown paths under /fa/ and wrong methods answer in fa's envelope too.
        .route("/fa/{*rest}", any(unknown_route))
        .layer(DefaultBodyLimit::max(json_limit))
        .layer(from_fn_with_state(error::shaped as Shaper, shape_errors))
        .with_state(state)
}

/// `GET /health`: `UP`, as plain text.
async fn health() -> &'static str {
    "UP"
}

/// `GET /fa/public/safe-upgrade`: `{"safe_upgrade": bool}` (no envelope, as fa answers),
/// true while no fa backup or restore is pending or running.
async fn safe_upgrade(State(s): State<FaState>) -> Response {
    let safe = s.service.jobs_in_flight() == 0;
    axum::Json(serde_json::json!({ "safe_upgrade": safe })).into_response()
}

/// fa's "full mode" (whole-filesystem chores with acknowledgements) is not served:
/// its routes answer as fa does when the mode is off.
async fn full_mode_off() -> Response {
    axum::Json(serde_json::json!({
        "code": error::NO_SUCH_RECORD,
        "message": "only support when FULLMODE activated",
        "data": null,
    }))
    .into_response()
}

/// Any path under `/fa/` that is no route: gin's words, in fa's envelope.
async fn unknown_route() -> FaApiError {
    FaApiError {
        status: axum::http::StatusCode::NOT_FOUND,
        message: "404 page not found".into(),
    }
}

/// Parses a JSON body into `T`; every failure is fa's 400.
fn parse<T: serde::de::DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
) -> Result<T, FaApiError> {
    let body = body.map_err(|e| FaApiError::bad_request(e.body_text()))?;
    serde_json::from_slice(&body)
        .map_err(|e| FaApiError::bad_request(format!("invalid JSON body: {e}")))
}

/// A numeric id from the path.
fn id_of(text: &str) -> Result<i64, FaApiError> {
    text.parse()
        .map_err(|_| FaApiError::bad_request(format!("invalid id {text:?}: not an integer")))
}

fn check_storage(storage_id: Option<i64>) -> Result<(), FaApiError> {
    match storage_id {
        None | Some(-1) | Some(0) => Ok(()),
        Some(other) => Err(FaApiError::bad_request(format!(
            "storage_id {other} is not supported: only the user's home (-1) is served"
        ))),
    }
}

/// "Starting returns 2001 at once; progress shows in GET while it runs." Posting an id
/// whose job is running is ignored; an existing finished id runs again.
async fn backup_new(
    State(s): State<FaState>,
    credential: auth::Credential,
    body: Result<Bytes, BytesRejection>,
) -> Reply {
    let user = auth::username(&s.app, &s.service, &credential, Role::Backup)?;
    let request: wire::NewBackup = parse(body)?;
    check_storage(request.storage_id)?;
    s.service.start_backup(&user, request.id, &request.path)?;
    Ok(success(()))
}

/// Unknown id: HTTP 200 with code 4001 and `data: null`.
async fn backup_get(
    State(s): State<FaState>,
    credential: auth::Credential,
    Path(id): Path<String>,
) -> Reply {
    let user = auth::username(&s.app, &s.service, &credential, Role::Reader)?;
    let id = id_of(&id)?;
    Ok(match s.service.backup(&user, id)? {
        Some(view) => success(wire::Backup::from(view)),
        None => no_such_record("backup", id),
    })
}

/// Cancels the backup if it runs, removes it; its space is reclaimable by GC.
async fn backup_delete(
    State(s): State<FaState>,
    credential: auth::Credential,
    Path(id): Path<String>,
) -> Reply {
    let user = auth::username(&s.app, &s.service, &credential, Role::Writer)?;
    let id = id_of(&id)?;
    s.service.delete_backup(&user, id).await?;
    Ok(success(()))
}

/// Unknown id → 400 "err cancel backup [ ID=1 ]: no such record".
async fn backup_cancel(
    State(s): State<FaState>,
    credential: auth::Credential,
    body: Result<Bytes, BytesRejection>,
) -> Reply {
    let user = auth::username(&s.app, &s.service, &credential, Role::Backup)?;
    let request: wire::Cancel = parse(body)?;
    s.service.cancel_backup(&user, request.id)?;
    Ok(success(()))
}

async fn backup_cancel_all(State(s): State<FaState>, credential: auth::Credential) -> Reply {
    let user = auth::username(&s.app, &s.service, &credential, Role::Backup)?;
    s.service.cancel_all_backups(&user)?;
    Ok(success(()))
}

/// Cancels everything and removes every backup made through this dialect for the user.
async fn destroy_repo(State(s): State<FaState>, credential: auth::Credential) -> Reply {
    let user = auth::username(&s.app, &s.service, &credential, Role::Writer)?;
    s.service.destroy_repo(&user).await?;
    Ok(success(()))
}

async fn repo_destroyed(State(s): State<FaState>, credential: auth::Credential) -> Reply {
    let user = auth::username(&s.app, &s.service, &credential, Role::Reader)?;
    let destroyed = s.service.repo_destroyed(&user)?;
    Ok(success(wire::RepoDestroyed { destroyed }))
}

/// A missing backup still creates the restore record, as failed.
async fn restore_new(
    State(s): State<FaState>,
    credential: auth::Credential,
    body: Result<Bytes, BytesRejection>,
) -> Reply {
    let user = auth::username(&s.app, &s.service, &credential, Role::Writer)?;
    let request: wire::NewRestore = parse(body)?;
    check_storage(request.storage_id)?;
    s.service.start_restore(
        &user,
        request.restore_id,
        request.backup_id,
        &request.dst_path,
    )?;
    Ok(success(()))
}

async fn restore_get(
    State(s): State<FaState>,
    credential: auth::Credential,
    Path(id): Path<String>,
) -> Reply {
    let user = auth::username(&s.app, &s.service, &credential, Role::Reader)?;
    let id = id_of(&id)?;
    Ok(match s.service.restore(&user, id)? {
        Some(view) => success(wire::Restore::from(view)),
        None => no_such_record("restore", id),
    })
}

async fn restore_cancel(
    State(s): State<FaState>,
    credential: auth::Credential,
    body: Result<Bytes, BytesRejection>,
) -> Reply {
    let user = auth::username(&s.app, &s.service, &credential, Role::Backup)?;
    let request: wire::Cancel = parse(body)?;
    s.service.cancel_restore(&user, request.id)?;
    Ok(success(()))
}

async fn restore_cancel_all(State(s): State<FaState>, credential: auth::Credential) -> Reply {
    let user = auth::username(&s.app, &s.service, &credential, Role::Backup)?;
    s.service.cancel_all_restores(&user)?;
    Ok(success(()))
}
