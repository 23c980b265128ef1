//! Reading and writing the key object that wraps the master key under the passphrase.

use bytes::Bytes;

use super::RepoError;
use crate::backend::{BackendError, DynBackend};
use crate::format::keyfile::KeyFile;
use crate::id::RepositoryId;
use crate::pipeline::keys::{self, KdfCost, KeyError, MasterKey};

/// Wraps `master` under `passphrase` and stores it at `key`.
pub async fn write(
    backend: &DynBackend,
    key: &str,
    master: &MasterKey,
    passphrase: &[u8],
    repository: &RepositoryId,
    cost: KdfCost,
) -> Result<(), RepoError> {
    let (master, passphrase, repository) = (master.clone(), passphrase.to_vec(), *repository);
    // argon2 takes a noticeable fraction of a second on purpose: keep it off the runtime.
    let file =
        tokio::task::spawn_blocking(move || keys::wrap(&master, &passphrase, &repository, cost))
            .await
            .map_err(|e| RepoError::Internal(e.to_string()))??;
    backend.put(key, Bytes::from(file.encode())).await?;
    Ok(())
}

/// Reads the key object at `key` and unwraps the master key.
pub async fn read(
    backend: &DynBackend,
    key: &str,
    passphrase: &[u8],
    repository: &RepositoryId,
) -> Result<MasterKey, RepoError> {
    let bytes = backend.get(key, None).await.map_err(|e| match e {
        BackendError::NotFound { key } => RepoError::Internal(format!(
            "the repository has a config but no key object {key}"
        )),
        other => other.into(),
    })?;
    let file = KeyFile::decode(&bytes).map_err(KeyError::from)?;
    let (passphrase, repository) = (passphrase.to_vec(), *repository);
    let master = tokio::task::spawn_blocking(move || keys::unwrap(&file, &passphrase, &repository))
        .await
        .map_err(|e| RepoError::Internal(e.to_string()))??;
    Ok(master)
}
