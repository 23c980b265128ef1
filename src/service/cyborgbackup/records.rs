//! The repositories and clients CyBorgBackup keeps as its own records in the dialect's
//! document: created, changed and deleted by superusers, with their writable fields
//! checked by [`fields`](super::fields). A client named `localhost` (or the server's
//! host name) stands for the stowage server itself.
//!
//! What a record shows beyond its stored fields is read live: a repository's sizes are
//! the engine's figures for its kept archives. `ready` means what the original's
//! preparation jobs make it mean, "a backup can run here": it shows true once a job of
//! the client or into the repository has succeeded, or a client's agent has asked for
//! work since the server started, and the stored flag until then.

use serde_json::{Map, Value};

use super::fields::{self, boolean, int, text, Field};
use super::store::{self, Client, Repository};
use super::{drf_now, Account, CbError, CyborgService};

/// The writable fields of a repository.
pub const REPOSITORY_FIELDS: [Field; 5] = [
    text("name", 1024, false, true),
    text("path", 1024, false, true),
    text("repository_key", 1024, false, true),
    boolean("ready"),
    boolean("enabled"),
];

/// The writable fields of a client.
pub const CLIENT_FIELDS: [Field; 12] = [
    text("hostname", 1024, false, true),
    text("ip", 1024, true, false),
    int("bandwidth_limit", 0, i64::MAX, true),
    int("port", 1, 65535, false),
    text("version", 1024, true, false),
    boolean("ready"),
    boolean("hypervisor_ready"),
    text("hypervisor_name", 1024, true, false),
    boolean("can_be_updated"),
    boolean("mark_as_to_update"),
    boolean("enabled"),
    boolean("behind_firewall"),
];

/// `record` with the checked fields of `changes` written over it.
fn merged<T: serde::Serialize + serde::de::DeserializeOwned>(
    record: &T,
    changes: Map<String, Value>,
) -> Result<T, CbError> {
    let mut value = serde_json::to_value(record).expect("records serialize");
    if let Value::Object(object) = &mut value {
        object.extend(changes);
    }
    serde_json::from_value(value).map_err(|e| CbError::invalid("__all__", e.to_string()))
}

/// What records show beyond their stored fields, read once per request: where a job has
/// succeeded (the clients and repositories it proved ready) and the store's compression
/// ratio.
pub(super) struct Live {
    clients: std::collections::HashSet<u64>,
    repositories: std::collections::HashSet<u64>,
    compression_ratio: f64,
}

/// A byte count in a record's integer field.
fn as_field(bytes: u64) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

impl CyborgService {
    /// `record` with its live figures: the kept backups of its series give
    /// `original_size` (their streams' bytes) and `deduplicated_size` (the sealed bytes
    /// each added to the store); `compressed_size` is the original size at the store's
    /// compression ratio, since stowage compresses a chunk once, when it is new, and so
    /// has no compressed size of the chunks an archive shares.
    fn shown_repository(&self, mut record: Repository, live: &Live) -> Repository {
        record.ready |= live.repositories.contains(&record.id);
        let Ok(core) = self.core() else {
            return record;
        };
        let prefix = super::policies::repository_series_prefix(record.id);
        // From the kept totals: no archive is read, however many the repository holds.
        let totals = match core.repo.live_totals(&prefix) {
            Ok(totals) => totals,
            Err(error) => {
                tracing::warn!(%error, repository = record.id, "cannot read the archives' sizes");
                return record;
            }
        };
        let original = totals.stream_bytes;
        let deduplicated = totals.stored_bytes;
        let ratio = live.compression_ratio;
        let compressed = if ratio > 0.0 {
            (original as f64 / ratio).round() as u64
        } else {
            original
        };
        record.original_size = as_field(original);
        record.compressed_size = as_field(compressed);
        record.deduplicated_size = as_field(deduplicated);
        record
    }

    /// `record` with its live readiness.
    fn shown_client(&self, mut record: Client, live: &Live) -> Client {
        let heard = match self.place(&record.hostname) {
            super::policy_sources::Place::Here => false,
            super::policy_sources::Place::Agent(host) => {
                self.core().is_ok_and(|c| c.agents.heard_from(host))
            }
        };
        record.ready |= heard || live.clients.contains(&record.id);
        record
    }

    /// The live figures, from `jobs` (the listed jobs) and the store's kept totals.
    pub(super) fn live(&self, jobs: &[super::jobs::JobRow]) -> Live {
        let mut live = Live {
            clients: Default::default(),
            repositories: Default::default(),
            compression_ratio: self
                .core()
                .ok()
                .and_then(|c| c.repo.stats().ok())
                .map_or(1.0, |s| s.compression_ratio),
        };
        for row in jobs {
            if row.core.status == crate::state::jobs::JobStatus::Succeeded {
                live.repositories.insert(row.link.repository);
                live.clients.extend(row.link.client);
            }
        }
        live
    }

    fn live_now(&self) -> Live {
        self.live(&self.list_jobs())
    }

    pub fn list_repositories(&self) -> Vec<Repository> {
        self.repositories_shown(&self.live_now())
    }

    pub(super) fn repositories_shown(&self, live: &Live) -> Vec<Repository> {
        let records: Vec<Repository> = self.lock().repositories.values().cloned().collect();
        records
            .into_iter()
            .map(|r| self.shown_repository(r, live))
            .collect()
    }

    pub fn repository(&self, id: u64) -> Result<Repository, CbError> {
        let record = self
            .lock()
            .repositories
            .get(&id)
            .cloned()
            .ok_or(CbError::NotFound("Repository"))?;
        Ok(self.shown_repository(record, &self.live_now()))
    }

    pub fn create_repository(
        &self,
        caller: &Account,
        body: &Map<String, Value>,
    ) -> Result<Repository, CbError> {
        super::authorize(caller, super::Action::Manage)?;
        let changes = fields::check(body, &REPOSITORY_FIELDS, true)?;
        let mut state = self.lock();
        let now = drf_now();
        let blank = Repository {
            id: 0,
            uuid: uuid::Uuid::new_v4().to_string(),
            name: String::new(),
            path: String::new(),
            repository_key: String::new(),
            original_size: 0,
            compressed_size: 0,
            deduplicated_size: 0,
            ready: false,
            enabled: true,
            created: now.clone(),
            modified: now,
        };
        let mut record = merged(&blank, changes)?;
        record.id = store::take_id(&mut state.next_repository_id);
        state.repositories.insert(record.id, record.clone());
        self.save(&state)?;
        drop(state);
        Ok(self.shown_repository(record, &self.live_now()))
    }

    pub fn update_repository(
        &self,
        caller: &Account,
        id: u64,
        body: &Map<String, Value>,
        partial: bool,
    ) -> Result<Repository, CbError> {
        super::authorize(caller, super::Action::Manage)?;
        let changes = fields::check(body, &REPOSITORY_FIELDS, !partial)?;
        let mut state = self.lock();
        let old = state
            .repositories
            .get(&id)
            .ok_or(CbError::NotFound("Repository"))?;
        let mut record = merged(old, changes)?;
        record.modified = drf_now();
        state.repositories.insert(id, record.clone());
        self.save(&state)?;
        drop(state);
        Ok(self.shown_repository(record, &self.live_now()))
    }

    pub fn delete_repository(&self, caller: &Account, id: u64) -> Result<(), CbError> {
        super::authorize(caller, super::Action::Manage)?;
        let mut state = self.lock();
        state
            .repositories
            .remove(&id)
            .ok_or(CbError::NotFound("Repository"))?;
        self.save(&state)
    }

    pub fn list_clients(&self) -> Vec<Client> {
        self.clients_shown(&self.live_now())
    }

    pub(super) fn clients_shown(&self, live: &Live) -> Vec<Client> {
        let records: Vec<Client> = self.lock().clients.values().cloned().collect();
        records
            .into_iter()
            .map(|c| self.shown_client(c, live))
            .collect()
    }

    pub fn client(&self, id: u64) -> Result<Client, CbError> {
        let record = self
            .lock()
            .clients
            .get(&id)
            .cloned()
            .ok_or(CbError::NotFound("Client"))?;
        Ok(self.shown_client(record, &self.live_now()))
    }

    /// The policies that name each client, as `(client, policy id, policy name)`, by
    /// client then policy: a client's `summary_fields.policies`.
    pub fn client_policies(&self) -> Vec<(u64, u64, String)> {
        let state = self.lock();
        let mut out: Vec<(u64, u64, String)> = state
            .policies
            .values()
            .flat_map(|p| p.clients.iter().map(|c| (*c, p.id, p.name.clone())))
            .collect();
        out.sort();
        out
    }

    pub fn create_client(
        &self,
        caller: &Account,
        body: &Map<String, Value>,
    ) -> Result<Client, CbError> {
        super::authorize(caller, super::Action::Manage)?;
        let changes = fields::check(body, &CLIENT_FIELDS, true)?;
        let mut state = self.lock();
        let now = drf_now();
        let blank = Client {
            id: 0,
            uuid: uuid::Uuid::new_v4().to_string(),
            hostname: String::new(),
            ip: String::new(),
            bandwidth_limit: None,
            port: 22,
            version: String::new(),
            ready: false,
            hypervisor_ready: false,
            hypervisor_name: String::new(),
            can_be_updated: false,
            mark_as_to_update: false,
            enabled: true,
            behind_firewall: false,
            created: now.clone(),
            modified: now,
            created_by: Some(caller.id),
            modified_by: Some(caller.id),
        };
        let mut record = merged(&blank, changes)?;
        record.id = store::take_id(&mut state.next_client_id);
        state.clients.insert(record.id, record.clone());
        self.save(&state)?;
        drop(state);
        Ok(self.shown_client(record, &self.live_now()))
    }

    pub fn update_client(
        &self,
        caller: &Account,
        id: u64,
        body: &Map<String, Value>,
        partial: bool,
    ) -> Result<Client, CbError> {
        super::authorize(caller, super::Action::Manage)?;
        let changes = fields::check(body, &CLIENT_FIELDS, !partial)?;
        let mut state = self.lock();
        let old = state.clients.get(&id).ok_or(CbError::NotFound("Client"))?;
        let mut record = merged(old, changes)?;
        record.modified = drf_now();
        record.modified_by = Some(caller.id);
        state.clients.insert(id, record.clone());
        self.save(&state)?;
        drop(state);
        self.client_changed(caller, id);
        Ok(self.shown_client(record, &self.live_now()))
    }

    pub fn delete_client(&self, caller: &Account, id: u64) -> Result<(), CbError> {
        super::authorize(caller, super::Action::Manage)?;
        let mut state = self.lock();
        state
            .clients
            .remove(&id)
            .ok_or(CbError::NotFound("Client"))?;
        self.save(&state)?;
        drop(state);
        self.client_changed(caller, id);
        Ok(())
    }

    /// The core policies of the client's policies follow its host name, `enabled` and
    /// existence. The client's record is kept either way; one that cannot follow now
    /// (a host name no agent could have) is brought in step at the next launch.
    fn client_changed(&self, caller: &Account, id: u64) {
        if let Err(error) = self.resync_client(caller, id) {
            tracing::warn!(
                client = id,
                ?error,
                "the client's policies could not follow its change"
            );
        }
    }
}
