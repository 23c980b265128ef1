//! The server's state mirrored into the repository: one object, `server-state`, a blob
//! envelope (domain ServerState, name `server-state`, zstd level 3) around whatever the
//! server writes (`service::mirror` decides the content). So a server whose data
//! directory is lost is rebuilt from its backend and passphrase alone. The engine only
//! seals, stores and reads it back; it is not part of any backup and no index caches it.

use bytes::Bytes;

use super::{RepoError, Repository};
use crate::backend::BackendError;
use crate::format::blob::Domain;
use crate::pipeline::seal;

/// Object key of the mirrored server state.
pub const SERVER_STATE_KEY: &str = "server-state";
const NAME: &[u8] = b"server-state";
/// Largest accepted server state, in bytes (after opening).
pub const MAX_SERVER_STATE_BYTES: usize = 256 << 20;

impl Repository {
    /// Replaces the mirrored server state (atomically: a `put`).
    pub async fn put_server_state(&self, plain: &[u8]) -> Result<(), RepoError> {
        if plain.len() > MAX_SERVER_STATE_BYTES {
            return Err(RepoError::InvalidInput(format!(
                "server state of {} bytes exceeds {MAX_SERVER_STATE_BYTES}",
                plain.len()
            )));
        }
        let sealed = seal::seal(&self.inner.keys, Domain::ServerState, NAME, plain, 3);
        self.inner
            .backend
            .put(SERVER_STATE_KEY, Bytes::from(sealed))
            .await?;
        Ok(())
    }

    /// The mirrored server state, authenticated; `None` when none was written.
    pub async fn server_state(&self) -> Result<Option<Vec<u8>>, RepoError> {
        let sealed = match self.inner.backend.get(SERVER_STATE_KEY, None).await {
            Ok(sealed) => sealed,
            Err(BackendError::NotFound { .. }) => return Ok(None),
            Err(other) => return Err(other.into()),
        };
        seal::open(
            &self.inner.keys,
            Domain::ServerState,
            NAME,
            &sealed,
            None,
            MAX_SERVER_STATE_BYTES,
        )
        .map(Some)
        .map_err(|e| RepoError::CorruptObject {
            key: SERVER_STATE_KEY.to_string(),
            reason: e.to_string(),
        })
    }
}
