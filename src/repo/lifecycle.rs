//! The life of backups and series after ingest: recycling (hidden, restorable, still
//! holding chunks), restoring from the recycle bin, purging (gone; chunks reclaimable by
//! `gc`), and series records with their retention policies.
//!
//! Each state change is written to the backend first (a sealed mark or record), then to
//! the index, so `repair index` rebuilds it.

use bytes::Bytes;

use super::ingest::{now_rfc3339, validate_series};
use super::{manifest_key, RepoError, Repository, RECYCLED_PREFIX, SERIES_PREFIX};
use crate::format::blob::Domain;
use crate::format::manifest::BackupManifest;
use crate::format::series::{RetentionPolicy, SeriesRecord, MAX_SERIES_BYTES};
use crate::id::BackupId;
use crate::pipeline::seal;

/// A backup with its recycle state.
#[derive(Debug, Clone)]
pub struct BackupEntry {
    pub manifest: BackupManifest,
    /// When it was recycled; `None` while live.
    pub recycled_at: Option<String>,
}

fn decode_series(name: &str, bytes: &[u8]) -> Result<SeriesRecord, RepoError> {
    SeriesRecord::decode(bytes)
        .map_err(|e| RepoError::Internal(format!("series {name} record: {e}")))
}

fn recycled_key(id: &BackupId) -> String {
    format!("{RECYCLED_PREFIX}{id}")
}

fn series_key(name: &str) -> String {
    format!("{SERIES_PREFIX}{}", hex::encode(name))
}

impl Repository {
    /// Every backup with its recycle state, oldest first.
    pub fn backup_entries(&self) -> Result<Vec<BackupEntry>, RepoError> {
        let recycled = self.inner.index.recycled()?;
        Ok(self
            .backups()?
            .into_iter()
            .map(|manifest| BackupEntry {
                recycled_at: recycled.get(manifest.id.as_str()).cloned(),
                manifest,
            })
            .collect())
    }

    /// The recycle time of a backup, `None` when live; an error when unknown.
    pub fn recycled_at(&self, id: &BackupId) -> Result<Option<String>, RepoError> {
        Ok(self.backup_entry(id)?.recycled_at)
    }

    /// One backup with its recycle state.
    pub fn backup_entry(&self, id: &BackupId) -> Result<BackupEntry, RepoError> {
        Ok(BackupEntry {
            manifest: self.backup(id)?,
            recycled_at: self.inner.index.recycled_at(id)?,
        })
    }

    /// Moves a backup to the recycle bin. Recycling a recycled backup changes nothing.
    pub async fn recycle(&self, id: &BackupId) -> Result<(), RepoError> {
        if self.recycled_at(id)?.is_some() {
            return Ok(());
        }
        let when = now_rfc3339();
        let sealed = seal::seal(
            &self.inner.keys,
            Domain::Recycled,
            id.as_str().as_bytes(),
            when.as_bytes(),
            0,
        );
        let change = self.inner.generations.begin(&self.inner).await?;
        self.inner
            .backend
            .put(&recycled_key(id), Bytes::from(sealed))
            .await?;
        self.inner.index.set_recycled(id, Some(&when))?;
        change.finish()
    }

    /// Takes a backup out of the recycle bin.
    pub async fn undelete(&self, id: &BackupId) -> Result<(), RepoError> {
        if self.recycled_at(id)?.is_none() {
            return Ok(());
        }
        let change = self.inner.generations.begin(&self.inner).await?;
        self.inner.backend.delete(&recycled_key(id)).await?;
        self.inner.index.set_recycled(id, None)?;
        change.finish()
    }

    /// Removes a backup for good; its chunks become reclaimable by `gc`. A backup whose
    /// manifest is stored but could not be read into the index (damaged) can be purged
    /// too: that is how an operator lets `gc` run again after losing it.
    pub async fn purge(&self, id: &BackupId) -> Result<(), RepoError> {
        if self.inner.index.get_backup(id)?.is_none() {
            let not_found = || RepoError::BackupNotFound { id: id.to_string() };
            match self.inner.backend.head(&manifest_key(id)).await {
                Ok(_) => {}
                Err(crate::backend::BackendError::NotFound { .. }) => return Err(not_found()),
                Err(other) => return Err(other.into()),
            }
        }
        let change = self.inner.generations.begin(&self.inner).await?;
        // The manifest goes first: once it is gone, a rebuild cannot resurrect the backup.
        self.inner.backend.delete(&manifest_key(id)).await?;
        self.inner.backend.delete(&recycled_key(id)).await?;
        self.inner.index.remove_backup(id)?;
        change.finish()
    }

    /// Creates a series record; [`RepoError::SeriesExists`] when one exists. Atomic
    /// against every other series write of this process.
    pub async fn create_series(
        &self,
        name: &str,
        policy: RetentionPolicy,
    ) -> Result<SeriesRecord, RepoError> {
        let _one_writer = self.inner.series_writes.lock().await;
        if self.series(name)?.is_some() {
            return Err(RepoError::SeriesExists {
                name: name.to_string(),
            });
        }
        self.write_series(name, policy).await
    }

    /// Creates or replaces a series record.
    pub async fn put_series(
        &self,
        name: &str,
        policy: RetentionPolicy,
    ) -> Result<SeriesRecord, RepoError> {
        let _one_writer = self.inner.series_writes.lock().await;
        self.write_series(name, policy).await
    }

    async fn write_series(
        &self,
        name: &str,
        policy: RetentionPolicy,
    ) -> Result<SeriesRecord, RepoError> {
        validate_series(name)?;
        let created_at = self
            .series(name)?
            .map(|s| s.created_at)
            .unwrap_or_else(now_rfc3339);
        let record = SeriesRecord::new(name, created_at, policy);
        let encoded = record.encode();
        let sealed = seal::seal(
            &self.inner.keys,
            Domain::Series,
            name.as_bytes(),
            &encoded,
            0,
        );
        let change = self.inner.generations.begin(&self.inner).await?;
        self.inner
            .backend
            .put(&series_key(name), Bytes::from(sealed))
            .await?;
        self.inner.index.put_series(name, &encoded)?;
        change.finish()?;
        Ok(record)
    }

    /// A series record, if one was stored.
    pub fn series(&self, name: &str) -> Result<Option<SeriesRecord>, RepoError> {
        self.inner
            .index
            .get_series(name)?
            .map(|bytes| decode_series(name, &bytes))
            .transpose()
    }

    /// Every stored series record, by name.
    pub fn list_series(&self) -> Result<Vec<SeriesRecord>, RepoError> {
        self.inner
            .index
            .list_series()?
            .into_iter()
            .map(|(name, bytes)| decode_series(&name, &bytes))
            .collect()
    }

    /// Deletes a series record (its backups stay).
    pub async fn delete_series(&self, name: &str) -> Result<(), RepoError> {
        let change = self.inner.generations.begin(&self.inner).await?;
        self.inner.backend.delete(&series_key(name)).await?;
        self.inner.index.remove_series(name)?;
        change.finish()
    }

    /// Replaces the index's recycle marks and series records with the backend's.
    pub(crate) async fn rebuild_lifecycle(
        &self,
        skipped: &mut Vec<String>,
    ) -> Result<(), RepoError> {
        let (marks, records) = self.read_lifecycle(skipped).await?;
        self.inner.index.replace_recycled(&marks)?;
        self.inner.index.replace_series(&records)?;
        Ok(())
    }

    /// Reads every recycle mark (backup id, when) and series record (name, JSON) stored
    /// in the backend; those that cannot be read are described in `unreadable`.
    pub(crate) async fn read_lifecycle(
        &self,
        unreadable: &mut Vec<String>,
    ) -> Result<(Vec<(String, String)>, Vec<(String, Vec<u8>)>), RepoError> {
        let mut marks = Vec::new();
        for object in self.inner.backend.list(RECYCLED_PREFIX).await? {
            let Some(id) = object.key.strip_prefix(RECYCLED_PREFIX) else {
                continue;
            };
            match self
                .read_sealed(&object.key, Domain::Recycled, id.as_bytes())
                .await
            {
                Ok(when) => {
                    marks.push((id.to_string(), String::from_utf8_lossy(&when).into_owned()))
                }
                Err(e) if e.is_transient() => return Err(e),
                Err(e) => unreadable.push(format!("recycle mark {id}: {e}")),
            }
        }
        let mut records = Vec::new();
        for object in self.inner.backend.list(SERIES_PREFIX).await? {
            let name = object
                .key
                .strip_prefix(SERIES_PREFIX)
                .and_then(|h| hex::decode(h).ok())
                .and_then(|b| String::from_utf8(b).ok());
            let Some(name) = name else { continue };
            match self
                .read_sealed(&object.key, Domain::Series, name.as_bytes())
                .await
            {
                Ok(bytes) => match SeriesRecord::decode(&bytes) {
                    Ok(_) => records.push((name, bytes)),
                    Err(e) => unreadable.push(format!("series {name}: {e}")),
                },
                Err(e) if e.is_transient() => return Err(e),
                Err(e) => unreadable.push(format!("series {name}: {e}")),
            }
        }
        Ok((marks, records))
    }

    async fn read_sealed(
        &self,
        key: &str,
        domain: Domain,
        name: &[u8],
    ) -> Result<Vec<u8>, RepoError> {
        let sealed = self.inner.backend.get(key, None).await?;
        seal::open(
            &self.inner.keys,
            domain,
            name,
            &sealed,
            None,
            MAX_SERIES_BYTES,
        )
        .map_err(|e| RepoError::Internal(format!("{key}: {e}")))
    }
}
