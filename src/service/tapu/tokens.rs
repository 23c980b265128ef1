//! The live tokens of the tapu-backups dialect: one per instance, each with the password
//! of the instance's temporary FTP user. Kept as the dialect's document in the state store
//! (`tapu`), replaced in one durable transaction on every change, so credentials survive a
//! restart and die with their token. Only BLAKE3 hashes of the token and the password are
//! stored (both are 128 random bits, so a fast hash suffices); they are compared in
//! constant time. Every field is described in `docs/FORMAT.md`.

use std::collections::BTreeMap;

use rand::RngCore;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::service::documents::Document;
use crate::state::StateError;

/// Version of the document's layout.
pub const TOKENS_VERSION: u32 = 1;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TokensFile {
    pub version: u32,
    /// Live tokens by instance.
    #[serde(default)]
    pub tokens: BTreeMap<String, TokenRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Lowercase hex BLAKE3 of the token.
    pub token_blake3: String,
    /// Lowercase hex BLAKE3 of the FTP password.
    pub password_blake3: String,
    /// Unix seconds; the token expires `token_validity_secs` later.
    pub created_at: i64,
}

/// A token just created: the only time its token and password are known in clear.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub token: String,
    pub password: String,
}

/// Why a token operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{max} tokens are live: release one first")]
    MaxTokens { max: usize },
    #[error("no such token for this instance")]
    InvalidToken,
    #[error(transparent)]
    State(#[from] StateError),
    #[error("the tapu-backups tokens in the state store are unreadable: {0}")]
    Corrupt(String),
}

/// The tokens, loaded from and saved to the document.
pub struct TokenTable {
    document: Document,
    file: TokensFile,
}

fn random_hex() -> String {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn digest(secret: &str) -> [u8; 32] {
    *blake3::hash(secret.as_bytes()).as_bytes()
}

/// Whether `secret` hashes to `stored` (hex), in time independent of where they differ.
fn matches(stored: &str, secret: &str) -> bool {
    let mut expected = [0u8; 32];
    if hex::decode_to_slice(stored, &mut expected).is_err() {
        return false;
    }
    bool::from(expected.ct_eq(&digest(secret)))
}

impl TokenTable {
    pub fn open(document: Document) -> Result<TokenTable, TokenError> {
        let file = match document.load()? {
            None => TokensFile {
                version: TOKENS_VERSION,
                tokens: BTreeMap::new(),
            },
            Some(bytes) => {
                let file: TokensFile = serde_json::from_slice(&bytes)
                    .map_err(|e| TokenError::Corrupt(e.to_string()))?;
                if file.version != TOKENS_VERSION {
                    return Err(TokenError::Corrupt(format!(
                        "layout version {} is not {TOKENS_VERSION}",
                        file.version
                    )));
                }
                file
            }
        };
        Ok(TokenTable { document, file })
    }

    fn save(&self, file: &TokensFile) -> Result<(), TokenError> {
        let json = serde_json::to_vec(file).map_err(|e| TokenError::Corrupt(e.to_string()))?;
        Ok(self.document.save(&json)?)
    }

    /// Saves `file` durably, then makes it the table's: memory never runs ahead of disk.
    fn commit(&mut self, file: TokensFile) -> Result<(), TokenError> {
        self.save(&file)?;
        self.file = file;
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.file.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.file.tokens.is_empty()
    }

    /// A new token and password for `instance`, replacing its previous token (whose
    /// password stops working). Refused when `max` other instances hold tokens.
    pub fn create(
        &mut self,
        instance: &str,
        max: usize,
        now: i64,
    ) -> Result<IssuedToken, TokenError> {
        if !self.file.tokens.contains_key(instance) && self.file.tokens.len() >= max {
            return Err(TokenError::MaxTokens { max });
        }
        let issued = IssuedToken {
            token: random_hex(),
            password: random_hex(),
        };
        let mut file = self.file.clone();
        file.tokens.insert(
            instance.to_string(),
            TokenRecord {
                token_blake3: hex::encode(digest(&issued.token)),
                password_blake3: hex::encode(digest(&issued.password)),
                created_at: now,
            },
        );
        self.commit(file)?;
        Ok(issued)
    }

    /// Releases `instance`'s token when `token` is it.
    pub fn release(&mut self, instance: &str, token: &str) -> Result<(), TokenError> {
        let valid = self
            .file
            .tokens
            .get(instance)
            .is_some_and(|record| matches(&record.token_blake3, token));
        if !valid {
            return Err(TokenError::InvalidToken);
        }
        let mut file = self.file.clone();
        file.tokens.remove(instance);
        self.commit(file)
    }

    /// Releases every token created `validity_secs` or more before `now`; how many.
    pub fn release_expired(&mut self, validity_secs: u64, now: i64) -> Result<usize, TokenError> {
        let validity = i64::try_from(validity_secs).unwrap_or(i64::MAX);
        let mut file = self.file.clone();
        file.tokens
            .retain(|_, record| record.created_at.saturating_add(validity) > now);
        let released = self.file.tokens.len() - file.tokens.len();
        if released > 0 {
            self.commit(file)?;
        }
        Ok(released)
    }

    /// Whether `password` is the live password of `instance`'s FTP user. The comparison
    /// takes the same time for an unknown instance.
    pub fn check_password(&self, instance: &str, password: &str) -> bool {
        match self.file.tokens.get(instance) {
            Some(record) => matches(&record.password_blake3, password),
            None => {
                let _ = matches(&hex::encode([0u8; 32]), password);
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::state::StateStore;

    fn table(dir: &std::path::Path) -> TokenTable {
        let store = Arc::new(StateStore::open(&dir.join("state.redb")).unwrap());
        let document = Document::open(store, "tapu", &dir.join("none.json")).unwrap();
        TokenTable::open(document).unwrap()
    }

    #[test]
    fn one_token_per_instance_under_a_global_cap_and_kept_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut tokens = table(dir.path());
        let first = tokens.create("a.io", 2, 100).unwrap();
        assert_eq!(first.token.len(), 32);
        assert!(first
            .token
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert!(tokens.check_password("a.io", &first.password));
        let second = tokens.create("a.io", 2, 101).unwrap();
        assert!(!tokens.check_password("a.io", &first.password));
        assert!(tokens.check_password("a.io", &second.password));
        assert!(!tokens.check_password("b.io", &second.password));
        tokens.create("b.io", 2, 102).unwrap();
        assert!(matches!(
            tokens.create("c.io", 2, 103),
            Err(TokenError::MaxTokens { max: 2 })
        ));
        assert!(matches!(
            tokens.release("a.io", &first.token),
            Err(TokenError::InvalidToken)
        ));
        drop(tokens);
        let mut tokens = table(dir.path());
        assert!(tokens.check_password("a.io", &second.password));
        tokens.release("a.io", &second.token).unwrap();
        assert!(!tokens.check_password("a.io", &second.password));
        assert_eq!(tokens.len(), 1);
        assert_eq!(tokens.release_expired(100, 201).unwrap(), 0);
        assert_eq!(tokens.release_expired(100, 202).unwrap(), 1);
        assert!(tokens.is_empty());
    }
}
