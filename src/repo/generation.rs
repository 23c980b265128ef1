//! The repository generation: a token in the backend that changes whenever what an index
//! must hold changes (a backup committed, recycled, restored or purged, a series record
//! written, packs deleted by `gc`), so an index can tell on open whether it still
//! describes the backend it caches.
//!
//! **Protocol.** A change first writes a new random token to the backend
//! ([`Generations::begin`]), then changes the backend and the index, and only then
//! records the token in the index ([`Change::finish`]). An index whose token equals the
//! backend's has seen every change up to it; any other index (a fresh one, a copy of an
//! old one, one a crash interrupted, one on another host) is reconciled with the backend
//! before it is used (`repo::sync`). While several changes of one process overlap, the
//! index records the newest token only once none is in progress, and a change that
//! failed half way leaves the token unrecorded for the rest of the process, so the next
//! open reconciles.
//!
//! **Reconciling in a running process.** A reconciliation compares a listing of the
//! backend with the index, so a change landing between the two reads looks like a
//! difference: a backup committed after the listing but before the index was read would
//! lose its record, one purged meanwhile could get its record back. So every change is
//! admitted through a gate ([`Generations::begin`] holds it shared until the change is
//! finished or dropped) and a reconciliation holds it alone
//! ([`Generations::exclusive`]): it waits for the changes in flight and none starts
//! until it is done. And while this process wrote the backend's token and no change of
//! it failed half way, its own overlapping changes are the only reason the index has not
//! recorded that token ([`Generations::explains`]): the index is current, and `gc`
//! does not reconcile at all.
//!
//! The object is `generation`: a blob envelope (domain Generation, name `generation`,
//! never compressed) around 16 random bytes.

use std::sync::{Mutex, PoisonError};

use bytes::Bytes;

use super::{RepoError, RepoInner};
use crate::backend::{BackendError, DynBackend};
use crate::format::blob::Domain;
use crate::pipeline::keys::Keys;
use crate::pipeline::seal;

/// Object key of the generation token.
pub const GENERATION_KEY: &str = "generation";
const NAME: &[u8] = b"generation";
const TOKEN_LEN: usize = 16;

/// One generation token.
pub type Token = [u8; TOKEN_LEN];

/// Reads the backend's token; `None` for a repository that has none yet (created before
/// generations existed, or just being initialised).
pub(crate) async fn read(backend: &DynBackend, keys: &Keys) -> Result<Option<Token>, RepoError> {
    let sealed = match backend.get(GENERATION_KEY, None).await {
        Ok(sealed) => sealed,
        Err(BackendError::NotFound { .. }) => return Ok(None),
        Err(other) => return Err(other.into()),
    };
    let corrupt = |reason: String| RepoError::CorruptObject {
        key: GENERATION_KEY.to_string(),
        reason,
    };
    let plain = seal::open(keys, Domain::Generation, NAME, &sealed, None, TOKEN_LEN)
        .map_err(|e| corrupt(e.to_string()))?;
    let token: Token = plain
        .as_slice()
        .try_into()
        .map_err(|_| corrupt(format!("{} bytes, expected {TOKEN_LEN}", plain.len())))?;
    Ok(Some(token))
}

/// Writes a new random token to the backend and returns it.
pub(crate) async fn write_new(backend: &DynBackend, keys: &Keys) -> Result<Token, RepoError> {
    let token: Token = rand::random();
    let sealed = seal::seal(keys, Domain::Generation, NAME, &token, 0);
    backend.put(GENERATION_KEY, Bytes::from(sealed)).await?;
    Ok(token)
}

#[derive(Default)]
struct State {
    latest: Option<Token>,
    in_progress: usize,
    /// A change failed between announcing itself and finishing: the index may lag the
    /// backend, so no token is recorded again in this process.
    tainted: bool,
}

/// This process's side of the protocol.
#[derive(Default)]
pub(crate) struct Generations {
    /// Shared by every change from its announcement to its end, held alone by a
    /// reconciliation of the index with the backend.
    gate: tokio::sync::RwLock<()>,
    /// Orders token writes, so the token last written is the one held as `latest`.
    writes: tokio::sync::Mutex<()>,
    state: Mutex<State>,
}

impl Generations {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // Every update is a few plain assignments: a poisoned lock holds a usable state.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Announces a change: writes a new token to the backend before anything else.
    /// Waits while a reconciliation runs.
    pub(crate) async fn begin<'a>(&'a self, inner: &'a RepoInner) -> Result<Change<'a>, RepoError> {
        let admitted = self.gate.read().await;
        let _ordered = self.writes.lock().await;
        let token = write_new(&inner.backend, &inner.keys).await?;
        let mut state = self.state();
        state.latest = Some(token);
        state.in_progress += 1;
        Ok(Change {
            inner,
            finished: false,
            _admitted: admitted,
        })
    }

    /// Whether this process's own changes explain why the index has not recorded
    /// `backend`, the backend's token: this process wrote it, and none of its changes
    /// failed half way. Every change it finished is then in the index and every change
    /// in flight will be, so the index describes the backend without a reconciliation.
    pub(crate) fn explains(&self, backend: &Token) -> bool {
        let state = self.state();
        !state.tainted && state.latest.as_ref() == Some(backend)
    }

    /// Holds off every change of this process for a reconciliation: waits for those in
    /// flight to end, and admits none until the guard is dropped.
    pub(crate) async fn exclusive(&self) -> tokio::sync::RwLockWriteGuard<'_, ()> {
        self.gate.write().await
    }

    /// A reconciliation, holding [`Generations::exclusive`], is about to change the
    /// index: until it records a token ([`Generations::reconciled`]) the index may be
    /// incomplete (a failed rebuild leaves it so), so nothing may take it as current.
    pub(crate) fn distrust(&self) {
        self.state().tainted = true;
    }

    /// A reconciliation, holding [`Generations::exclusive`], made the index match the
    /// backend at `token` and recorded it: the index is trusted again, whatever change
    /// had failed before.
    pub(crate) fn reconciled(&self, token: Token) {
        let mut state = self.state();
        state.latest = Some(token);
        state.tainted = false;
    }
}

/// A change announced and not yet recorded; dropped unfinished, it taints the process.
pub(crate) struct Change<'a> {
    inner: &'a RepoInner,
    finished: bool,
    /// Keeps a reconciliation out until the change is over, finished or not.
    _admitted: tokio::sync::RwLockReadGuard<'a, ()>,
}

impl Change<'_> {
    /// The change is in the backend and the index: record the newest token in the index
    /// unless another change is still running.
    pub(crate) fn finish(mut self) -> Result<(), RepoError> {
        self.finished = true;
        let record = {
            let mut state = self.inner.generations.state();
            state.in_progress -= 1;
            match (state.in_progress, state.tainted, state.latest) {
                (0, false, Some(token)) => Some(token),
                _ => None,
            }
        };
        if let Some(token) = record {
            self.inner.index.set_generation(&token)?;
        }
        Ok(())
    }
}

impl Drop for Change<'_> {
    fn drop(&mut self) {
        if !self.finished {
            let mut state = self.inner.generations.state();
            state.in_progress -= 1;
            state.tainted = true;
        }
    }
}
