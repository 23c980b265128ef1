//! In-memory backend: every object lives in one ordered map behind a mutex.
//!
//! It keeps the whole contract except durability, and exists for tests and tools that
//! need a throwaway repository. It is not a cache, and it bounds nothing: every object
//! stays in memory until deleted.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};

use super::{check_range, validate_key, Backend, BackendError, ObjectMeta, ObjectWriter};

type Objects = Arc<Mutex<BTreeMap<String, Bytes>>>;

/// A backend holding its objects in memory; see the module documentation.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    objects: Objects,
}

impl MemoryBackend {
    pub fn new() -> MemoryBackend {
        MemoryBackend::default()
    }
}

/// Locks the map. A panic elsewhere while holding the lock cannot leave the map half
/// updated (every update is one insert or remove), so a poisoned lock is still usable.
fn lock(objects: &Objects) -> MutexGuard<'_, BTreeMap<String, Bytes>> {
    objects.lock().unwrap_or_else(PoisonError::into_inner)
}

fn not_found(key: &str) -> BackendError {
    BackendError::NotFound {
        key: key.to_string(),
    }
}

#[async_trait]
impl Backend for MemoryBackend {
    async fn put(&self, key: &str, data: Bytes) -> Result<(), BackendError> {
        validate_key(key)?;
        lock(&self.objects).insert(key.to_string(), data);
        Ok(())
    }

    async fn create(&self, key: &str) -> Result<Box<dyn ObjectWriter>, BackendError> {
        validate_key(key)?;
        Ok(Box::new(MemoryWriter {
            objects: Arc::clone(&self.objects),
            key: key.to_string(),
            chunks: Vec::new(),
        }))
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Bytes, BackendError> {
        validate_key(key)?;
        let data = lock(&self.objects)
            .get(key)
            .cloned()
            .ok_or_else(|| not_found(key))?;
        let Some(range) = range else {
            return Ok(data);
        };
        check_range(key, &range, data.len() as u64)?;
        // Both bounds are at most data.len(), which is a usize, so the casts are lossless.
        Ok(data.slice(range.start as usize..range.end as usize))
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta, BackendError> {
        validate_key(key)?;
        let size = lock(&self.objects)
            .get(key)
            .map(|data| data.len() as u64)
            .ok_or_else(|| not_found(key))?;
        Ok(ObjectMeta {
            key: key.to_string(),
            size,
            modified: None,
        })
    }

    async fn delete(&self, key: &str) -> Result<(), BackendError> {
        validate_key(key)?;
        lock(&self.objects).remove(key);
        Ok(())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, BackendError> {
        // Keys sharing a prefix are contiguous in the map, starting at the prefix itself.
        let objects = lock(&self.objects);
        let listed = objects
            .range(prefix.to_string()..)
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(key, data)| ObjectMeta {
                key: key.clone(),
                size: data.len() as u64,
                modified: None,
            })
            .collect();
        Ok(listed)
    }

    fn describe(&self) -> String {
        "memory".to_string()
    }
}

/// A streaming upload: chunks are kept as written and joined at `finish`.
struct MemoryWriter {
    objects: Objects,
    key: String,
    chunks: Vec<Bytes>,
}

impl MemoryWriter {
    /// Joins the chunks, without copying when the object was written in one piece.
    fn into_object(mut self) -> Bytes {
        if self.chunks.len() <= 1 {
            return self.chunks.pop().unwrap_or_default();
        }
        let len = self.chunks.iter().map(Bytes::len).sum();
        let mut joined = BytesMut::with_capacity(len);
        for chunk in &self.chunks {
            joined.extend_from_slice(chunk);
        }
        joined.freeze()
    }
}

#[async_trait]
impl ObjectWriter for MemoryWriter {
    async fn write(&mut self, data: Bytes) -> Result<(), BackendError> {
        if !data.is_empty() {
            self.chunks.push(data);
        }
        Ok(())
    }

    async fn finish(self: Box<Self>) -> Result<(), BackendError> {
        let objects = Arc::clone(&self.objects);
        let key = self.key.clone();
        let data = self.into_object();
        lock(&objects).insert(key, data);
        Ok(())
    }

    async fn abort(self: Box<Self>) -> Result<(), BackendError> {
        // Nothing was published; dropping the chunks is the whole abort.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::conformance;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn conformance() {
        conformance::run_all(Arc::new(MemoryBackend::new())).await;
    }

    #[tokio::test]
    async fn describe_and_single_chunk_upload() {
        let backend = MemoryBackend::new();
        assert_eq!(backend.describe(), "memory");
        let data = Bytes::from_static(b"one piece");
        let mut writer = backend.create("k").await.expect("create");
        writer.write(data.clone()).await.expect("write");
        writer.finish().await.expect("finish");
        let stored = backend.get("k", None).await.expect("get");
        // The single written chunk is stored as is, not copied.
        assert_eq!(stored.as_ptr(), data.as_ptr());
    }
}
