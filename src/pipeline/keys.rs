//! Repository keys: the random master key, the keys derived from it, and wrapping the
//! master key under a passphrase (argon2id + XChaCha20-Poly1305).
//!
//! Two independent keys are derived with BLAKE3's key derivation: one keys the chunk-id
//! hash (so ids reveal nothing about content to whoever lacks the key), one seals blobs.

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;

use crate::format::keyfile::{KdfParams, KeyFile, KeyFileError, KEY_FORMAT, KEY_VERSION};
use crate::id::{ChunkId, RepositoryId};

const CHUNK_ID_CONTEXT: &str = "stowage 2026-11-01 chunk id key";
const BLOB_KEY_CONTEXT: &str = "stowage 2026-11-01 blob encryption key";
const WRAP_AAD_PREFIX: &[u8] = b"stowage-key";

/// The secret master key of a repository.
#[derive(Clone)]
pub struct MasterKey([u8; 32]);

impl MasterKey {
    pub fn random() -> MasterKey {
        let mut key = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut key);
        MasterKey(key)
    }
}

/// The working keys derived from a master key.
#[derive(Clone)]
pub struct Keys {
    pub chunk_id_key: [u8; 32],
    pub cipher: XChaCha20Poly1305,
}

impl Keys {
    pub fn derive(master: &MasterKey) -> Keys {
        let chunk_id_key = blake3::derive_key(CHUNK_ID_CONTEXT, &master.0);
        let blob_key = blake3::derive_key(BLOB_KEY_CONTEXT, &master.0);
        Keys {
            chunk_id_key,
            cipher: XChaCha20Poly1305::new((&blob_key).into()),
        }
    }

    /// The chunk id of `plaintext`: BLAKE3 keyed with the repository's chunk-id key.
    pub fn chunk_id(&self, plaintext: &[u8]) -> ChunkId {
        chunk_id_with(&self.chunk_id_key, plaintext)
    }
}

/// The chunk id of `plaintext` under a repository's chunk-id key (all a client that
/// chunks for a server holds).
pub fn chunk_id_with(chunk_id_key: &[u8; 32], plaintext: &[u8]) -> ChunkId {
    ChunkId(*blake3::keyed_hash(chunk_id_key, plaintext).as_bytes())
}

/// Cost of the passphrase key derivation.
#[derive(Debug, Clone, Copy)]
pub struct KdfCost {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for KdfCost {
    /// The OWASP-recommended argon2id setting of 64 MiB, 3 passes.
    fn default() -> Self {
        KdfCost {
            memory_kib: 64 * 1024,
            iterations: 3,
            parallelism: 1,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Format(#[from] KeyFileError),
    #[error("wrong passphrase for this repository")]
    WrongPassphrase,
    #[error("key derivation failed: {0}")]
    Kdf(String),
}

fn derive_wrapping_key(passphrase: &[u8], kdf: &KdfParams) -> Result<[u8; 32], KeyError> {
    let salt: [u8; 16] = KeyFile::hex_field(&kdf.salt, "kdf.salt")?;
    let params = Params::new(kdf.memory_kib, kdf.iterations, kdf.parallelism, Some(32))
        .map_err(|e| KeyError::Kdf(e.to_string()))?;
    let mut out = [0u8; 32];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(passphrase, &salt, &mut out)
        .map_err(|e| KeyError::Kdf(e.to_string()))?;
    Ok(out)
}

fn wrap_aad(repository: &RepositoryId) -> Vec<u8> {
    [WRAP_AAD_PREFIX, repository.as_bytes()].concat()
}

/// Wraps `master` under `passphrase` for the repository `repository`.
pub fn wrap(
    master: &MasterKey,
    passphrase: &[u8],
    repository: &RepositoryId,
    cost: KdfCost,
) -> Result<KeyFile, KeyError> {
    let mut salt = [0u8; 16];
    let mut nonce = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut salt);
    rand::thread_rng().fill_bytes(&mut nonce);
    let kdf = KdfParams {
        algorithm: "argon2id".into(),
        memory_kib: cost.memory_kib,
        iterations: cost.iterations,
        parallelism: cost.parallelism,
        salt: hex::encode(salt),
    };
    let kek = derive_wrapping_key(passphrase, &kdf)?;
    let aad = wrap_aad(repository);
    let wrapped = XChaCha20Poly1305::new((&kek).into())
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: &master.0,
                aad: &aad,
            },
        )
        .map_err(|_| KeyError::Kdf("sealing the master key failed".into()))?;
    Ok(KeyFile {
        format: KEY_FORMAT.into(),
        version: KEY_VERSION,
        kdf,
        nonce: hex::encode(nonce),
        wrapped_key: hex::encode(wrapped),
    })
}

/// Recovers the master key from a key file; a wrong passphrase is
/// [`KeyError::WrongPassphrase`].
pub fn unwrap(
    key: &KeyFile,
    passphrase: &[u8],
    repository: &RepositoryId,
) -> Result<MasterKey, KeyError> {
    let nonce: [u8; 24] = KeyFile::hex_field(&key.nonce, "nonce")?;
    let wrapped: [u8; 48] = KeyFile::hex_field(&key.wrapped_key, "wrapped_key")?;
    let kek = derive_wrapping_key(passphrase, &key.kdf)?;
    let aad = wrap_aad(repository);
    let plain = XChaCha20Poly1305::new((&kek).into())
        .decrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: &wrapped,
                aad: &aad,
            },
        )
        .map_err(|_| KeyError::WrongPassphrase)?;
    let bytes: [u8; 32] = plain
        .as_slice()
        .try_into()
        .map_err(|_| KeyError::WrongPassphrase)?;
    Ok(MasterKey(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> KdfCost {
        KdfCost {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        }
    }

    #[test]
    fn wrap_unwrap_and_wrong_passphrase() {
        let master = MasterKey::random();
        let repo = RepositoryId::random();
        let file = wrap(&master, b"secret", &repo, cheap()).unwrap();
        let file = KeyFile::decode(&file.encode()).unwrap();
        let back = unwrap(&file, b"secret", &repo).unwrap();
        assert_eq!(back.0, master.0);
        assert!(matches!(
            unwrap(&file, b"wrong", &repo),
            Err(KeyError::WrongPassphrase)
        ));
        assert!(matches!(
            unwrap(&file, b"secret", &RepositoryId::random()),
            Err(KeyError::WrongPassphrase)
        ));
    }

    #[test]
    fn derived_keys_differ_and_ids_are_keyed() {
        let a = Keys::derive(&MasterKey::random());
        let b = Keys::derive(&MasterKey::random());
        assert_ne!(a.chunk_id(b"x"), b.chunk_id(b"x"));
        assert_eq!(a.chunk_id(b"x"), a.chunk_id(b"x"));
    }
}
