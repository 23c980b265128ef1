//! The key object (`keys/<name>`): the repository's random master key, wrapped by a key
//! derived from the passphrase with argon2id. Changing the passphrase rewrites only this
//! object; no data is re-encrypted.
//!
//! JSON: `{"format":"stowage-key","version":1,"kdf":{...},"nonce":hex,"wrapped_key":hex}`
//! where `wrapped_key` is XChaCha20-Poly1305 of the 32-byte master key (48 bytes with its
//! tag), associated data `"stowage-key" || repository id`. This module holds the type
//! and the bounds on its parameters; the cryptography is in `pipeline::keys`.

use serde::{Deserialize, Serialize};

pub const KEY_FORMAT: &str = "stowage-key";
pub const KEY_VERSION: u32 = 1;
/// Upper bounds on KDF cost read from a key file, so a crafted key object cannot make
/// opening a repository take unbounded memory or time.
pub const MAX_KDF_MEMORY_KIB: u32 = 4 << 20;
pub const MAX_KDF_ITERATIONS: u32 = 64;
pub const MAX_KDF_PARALLELISM: u32 = 16;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    pub algorithm: String,
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
    /// 16 random bytes, hex.
    pub salt: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyFile {
    pub format: String,
    pub version: u32,
    pub kdf: KdfParams,
    /// 24-byte XChaCha20 nonce, hex.
    pub nonce: String,
    /// The sealed master key, hex.
    pub wrapped_key: String,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("key object is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("object is not a stowage key (format {format:?}, version {version})")]
    NotAKey { format: String, version: u32 },
    #[error("key object field {field} is malformed")]
    Malformed { field: &'static str },
    #[error("key derivation parameters are outside the accepted bounds")]
    KdfOutOfBounds,
}

impl KeyFile {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).expect("key file serializes");
        out.push(b'\n');
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<KeyFile, KeyFileError> {
        let key: KeyFile = serde_json::from_slice(bytes)?;
        if key.format != KEY_FORMAT || key.version != KEY_VERSION {
            return Err(KeyFileError::NotAKey {
                format: key.format.chars().take(64).collect(),
                version: key.version,
            });
        }
        let k = &key.kdf;
        if k.algorithm != "argon2id"
            || k.memory_kib == 0
            || k.memory_kib > MAX_KDF_MEMORY_KIB
            || k.iterations == 0
            || k.iterations > MAX_KDF_ITERATIONS
            || k.parallelism == 0
            || k.parallelism > MAX_KDF_PARALLELISM
            || k.memory_kib < 8 * k.parallelism
        {
            return Err(KeyFileError::KdfOutOfBounds);
        }
        Ok(key)
    }

    /// Decodes a hex field into exactly `N` bytes.
    pub fn hex_field<const N: usize>(
        text: &str,
        field: &'static str,
    ) -> Result<[u8; N], KeyFileError> {
        let mut out = [0u8; N];
        hex::decode_to_slice(text, &mut out).map_err(|_| KeyFileError::Malformed { field })?;
        Ok(out)
    }
}
