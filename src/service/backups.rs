//! Series and backups as every API offers them: list, look up, create, update and delete
//! series; view, recycle, undelete and purge backups. Each verb checks the caller's role
//! first (a `backup` key may create and read, never recycle or purge; deleting a series
//! or purging takes an admin), and every error keeps its kind, so each API answers it in
//! its own shape. Uploads are `service::uploads`.

use super::forget::forget;
use super::keys::{KeyStoreError, Principal, Role};
use super::retention::Decision;
use super::views::BackupView;
use crate::error::ErrorKind;
use crate::format::series::{RetentionAction, RetentionPolicy, SeriesRecord};
use crate::repo::{lookup_id, RepoError, Repository};

#[derive(Debug, thiserror::Error)]
pub enum BackupsError {
    #[error(transparent)]
    Denied(#[from] KeyStoreError),
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error("series {0} not found")]
    SeriesNotFound(String),
}

impl BackupsError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            BackupsError::Denied(e) => e.kind(),
            BackupsError::Repo(e) => e.kind(),
            BackupsError::SeriesNotFound(_) => ErrorKind::NotFound,
        }
    }
}

/// The verbs, over one repository.
#[derive(Clone)]
pub struct Backups {
    repo: Repository,
}

impl Backups {
    pub fn new(repo: Repository) -> Backups {
        Backups { repo }
    }

    pub fn list_series(&self, who: &Principal) -> Result<Vec<SeriesRecord>, BackupsError> {
        who.require(Role::Reader)?;
        Ok(self.repo.list_series()?)
    }

    pub fn series(&self, who: &Principal, name: &str) -> Result<SeriesRecord, BackupsError> {
        who.require(Role::Reader)?;
        self.repo
            .series(name)?
            .ok_or_else(|| BackupsError::SeriesNotFound(name.to_string()))
    }

    /// Creates a series; `AlreadyExists` when there is one (atomic).
    pub async fn create_series(
        &self,
        who: &Principal,
        name: &str,
        policy: RetentionPolicy,
    ) -> Result<SeriesRecord, BackupsError> {
        who.require(Role::Writer)?;
        Ok(self.repo.create_series(name, policy).await?)
    }

    /// Sets a series' retention policy (creating the series when missing).
    pub async fn update_series(
        &self,
        who: &Principal,
        name: &str,
        policy: RetentionPolicy,
    ) -> Result<SeriesRecord, BackupsError> {
        who.require(Role::Writer)?;
        Ok(self.repo.put_series(name, policy).await?)
    }

    /// Deletes a series record (its backups stay).
    pub async fn delete_series(&self, who: &Principal, name: &str) -> Result<(), BackupsError> {
        who.require(Role::Admin)?;
        if self.repo.series(name)?.is_none() {
            return Err(BackupsError::SeriesNotFound(name.to_string()));
        }
        Ok(self.repo.delete_series(name).await?)
    }

    /// Applies a series' retention policy now and returns every decision, newest first.
    /// A policy that recycles takes a writer; one that deletes, an admin (as purge).
    pub async fn apply_retention(
        &self,
        who: &Principal,
        name: &str,
    ) -> Result<Vec<Decision>, BackupsError> {
        let record = self.series(who, name)?;
        if record.policy.is_empty() {
            return Err(RepoError::InvalidInput(format!(
                "series {name} has no retention policy to apply"
            ))
            .into());
        }
        who.require(match record.policy.action {
            RetentionAction::Recycle => Role::Writer,
            RetentionAction::Delete => Role::Admin,
        })?;
        Ok(forget(&self.repo, name, &record.policy, chrono::Utc::now(), false).await?)
    }

    /// A backup as callers see it (recycled ones too). Text that is no backup id is
    /// [`BackupsError`] "not found", as an unknown id is.
    pub fn view(&self, who: &Principal, id: &str) -> Result<BackupView, BackupsError> {
        who.require(Role::Reader)?;
        let entry = self.repo.backup_entry(&lookup_id(id)?)?;
        Ok(BackupView::new(&entry.manifest, entry.recycled_at))
    }

    /// Moves a backup to the recycle bin.
    pub async fn recycle(&self, who: &Principal, id: &str) -> Result<BackupView, BackupsError> {
        who.require(Role::Writer)?;
        self.repo.recycle(&lookup_id(id)?).await?;
        self.view(who, id)
    }

    /// Takes a backup out of the recycle bin (a backup key may: it destroys nothing).
    pub async fn undelete(&self, who: &Principal, id: &str) -> Result<BackupView, BackupsError> {
        who.require(Role::Backup)?;
        self.repo.undelete(&lookup_id(id)?).await?;
        self.view(who, id)
    }

    /// Removes a backup for good (its space is reclaimed by gc).
    pub async fn purge(&self, who: &Principal, id: &str) -> Result<(), BackupsError> {
        who.require(Role::Admin)?;
        Ok(self.repo.purge(&lookup_id(id)?).await?)
    }
}
