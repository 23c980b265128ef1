//! Documents and secrets in the state store. A document is one dialect's records as one
//! versioned JSON value under the dialect's name (table `documents`), replaced whole in
//! one durable transaction on every change; the dialect owns its layout (FORMAT.md §11a).
//! A secret is a few random bytes the server keeps across restarts (table `secrets`),
//! created once and never replaced.

use super::schema::{DOCUMENTS, SECRETS};
use redb::ReadableTable;

use super::{db, StateError, StateStore};

impl StateStore {
    /// The document stored under `name`, as JSON bytes.
    pub fn document(&self, name: &str) -> Result<Option<Vec<u8>>, StateError> {
        self.get(DOCUMENTS, name)
    }

    /// Stores (or replaces) the document `name`.
    pub fn put_document(&self, name: &str, json: &[u8]) -> Result<(), StateError> {
        self.put(DOCUMENTS, name, json, false).map(|_| ())
    }

    /// Every document, in name order.
    pub fn documents(&self) -> Result<Vec<(String, Vec<u8>)>, StateError> {
        self.list(DOCUMENTS)
    }

    /// The secret `name`; when there is none yet, `fresh` is stored and returned, in one
    /// transaction, so two callers never end up with different secrets.
    pub fn secret_or_insert(&self, name: &str, fresh: &[u8]) -> Result<Vec<u8>, StateError> {
        self.guarded(|| {
            let txn = self.database().begin_write().map_err(db)?;
            let secret = {
                let mut table = txn.open_table(SECRETS).map_err(db)?;
                let existing = table.get(name).map_err(db)?.map(|v| v.value().to_vec());
                match existing {
                    Some(secret) => secret,
                    None => {
                        table.insert(name, fresh).map_err(db)?;
                        fresh.to_vec()
                    }
                }
            };
            txn.commit().map_err(db)?;
            Ok(secret)
        })
    }

    /// Every secret, in name order (for the mirror).
    pub fn secrets(&self) -> Result<Vec<(String, Vec<u8>)>, StateError> {
        self.list(SECRETS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_are_replaced_and_secrets_created_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(&dir.path().join("state.redb")).unwrap();
        assert_eq!(store.document("fa").unwrap(), None);
        store.put_document("fa", b"{\"version\":1}").unwrap();
        store.put_document("fa", b"{\"version\":2}").unwrap();
        assert_eq!(
            store.document("fa").unwrap().as_deref(),
            Some(&b"{\"version\":2}"[..])
        );
        let first = store.secret_or_insert("url-signing", &[1; 32]).unwrap();
        let second = store.secret_or_insert("url-signing", &[2; 32]).unwrap();
        assert_eq!((first, second), (vec![1; 32], vec![1; 32]));
        assert_eq!(store.secrets().unwrap().len(), 1);
        assert_eq!(store.documents().unwrap().len(), 1);
    }
}
