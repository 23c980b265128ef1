//! The repositories and clients CyBorgBackup keeps as its own records in the dialect's
//! document: created, changed and deleted by superusers, with their writable fields
//! checked by [`fields`](super::fields). Sizes and readiness are filled by the jobs that
//! will use them; a client named `localhost` stands for the stowage server itself.

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

impl CyborgService {
    pub fn list_repositories(&self) -> Vec<Repository> {
        self.lock().repositories.values().cloned().collect()
    }

    pub fn repository(&self, id: u64) -> Result<Repository, CbError> {
        self.lock()
            .repositories
            .get(&id)
            .cloned()
            .ok_or(CbError::NotFound("Repository"))
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
        Ok(record)
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
        Ok(record)
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
        self.lock().clients.values().cloned().collect()
    }

    pub fn client(&self, id: u64) -> Result<Client, CbError> {
        self.lock()
            .clients
            .get(&id)
            .cloned()
            .ok_or(CbError::NotFound("Client"))
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
        Ok(record)
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
        Ok(record)
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
