//! The CLI beside a running server. `stowage serve` holds its repository's index, so a
//! command that opens the repository would find it locked. When a server's record
//! (`<state dir>/serving.json`) says which server holds it, `ls`, `put` and `get` go
//! through that server (the key from `STOWAGE_KEY`, else the server's `admin.key`), and
//! every other command says exactly what to run instead.

use anyhow::{Error, Result};

use super::RepoArgs;
use crate::index::IndexError;
use crate::repo::RepoError;
use crate::server::Serving;

/// Whether `error` is the repository's index being held by another process.
pub fn is_locked(error: &Error) -> bool {
    error.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<IndexError>(),
            Some(IndexError::Locked { .. })
        ) || matches!(
            cause.downcast_ref::<RepoError>(),
            Some(RepoError::Index(IndexError::Locked { .. }))
        )
    })
}

/// The server holding the repository `args` names, if one runs on this host.
fn holder(args: &RepoArgs) -> Option<Serving> {
    let location = super::commands::location(args).ok()?;
    let state = super::commands::state_dir(args, &location).ok()?;
    Serving::find(&state)
}

/// `error` with what to run instead, when a running server holds the repository.
pub fn advise(args: &RepoArgs, error: Error) -> Error {
    if !is_locked(&error) {
        return error;
    }
    let Some(serving) = holder(args) else {
        return error;
    };
    let (url, data) = (&serving.url, serving.data_dir.display());
    error.context(format!(
        "the server at {url} (pid {}, data directory {data}) holds this repository. \
         `stowage ls`, `put` and `get` go through it by themselves; for the rest use its API \
         with an admin key (e.g. KEY=$(cat {data}/admin.key)): \
         check: curl -X POST -H \"Authorization: Bearer $KEY\" {url}/v1/repository/check; \
         gc: curl -X POST -H \"Authorization: Bearer $KEY\" {url}/v1/repository/gc; \
         stats: curl -H \"Authorization: Bearer $KEY\" {url}/v1/repository/stats; \
         or stop the server first",
        serving.pid
    ))
}

/// After a local `ls`, `put` or `get` failed with `error`: the same arguments aimed at
/// the server that holds the repository, when one does and a key is at hand; else the
/// error, with advice.
pub fn through_server(args: &RepoArgs, error: Error) -> Result<RepoArgs> {
    let Some(serving) = is_locked(&error).then(|| holder(args)).flatten() else {
        return Err(error);
    };
    let key = match std::env::var("STOWAGE_KEY").ok().filter(|k| !k.is_empty()) {
        Some(key) => key,
        None => {
            let path = serving.data_dir.join("admin.key");
            match std::fs::read_to_string(&path) {
                Ok(text) => text.trim().to_string(),
                Err(e) => {
                    return Err(error.context(format!(
                        "the server at {} holds this repository; set STOWAGE_KEY to one of its \
                         API keys to go through it ({} is not readable: {e})",
                        serving.url,
                        path.display()
                    )))
                }
            }
        }
    };
    eprintln!(
        "the repository is held by the server at {}: going through it",
        serving.url
    );
    let mut routed = args.clone();
    routed.repo = None;
    routed.server = Some(serving.url);
    routed.key = Some(key);
    Ok(routed)
}
