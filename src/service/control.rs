//! The control protocol: what `stowage key ...`, `stowage user ...`,
//! `stowage schedule ...` and `stowage policy ...` ask of the state
//! store, answered the same way whether the CLI opened the store itself or, because a
//! running server holds it, sent the request over the server's control socket
//! (`<data_dir>/control.sock`, mode 0600: whoever may read the data directory may
//! administer the server).
//!
//! One request per connection: a JSON line in, a JSON line out, each at most
//! [`MAX_LINE_BYTES`]. Requests carry passwords: they are never logged.

use serde::{Deserialize, Serialize};

use super::jobs::JobView;
use super::keys::{KeyRecord, KeyStore, Principal, Role};
use super::policies::{NewPolicy, Policies, PolicyChanges, PolicyView};
use super::policy_runs::{PolicyRunner, Trigger};
use super::schedules::{ScheduleView, Schedules};
use super::users::{NewUser, UserStore, UserView};

/// File name of the control socket inside the data directory.
pub const CONTROL_SOCKET: &str = "control.sock";
/// Longest request or reply line.
pub const MAX_LINE_BYTES: usize = 1 << 20;

#[derive(Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ControlRequest {
    KeyCreate {
        name: String,
        role: Role,
        #[serde(default)]
        dialect: Option<String>,
        /// The email of the user the key belongs to.
        #[serde(default)]
        user: Option<String>,
    },
    KeyList,
    KeyRevoke {
        id: String,
    },
    UserCreate {
        user: NewUser,
        password: String,
    },
    UserList,
    UserPasswd {
        email: String,
        password: String,
    },
    UserDelete {
        email: String,
    },
    ScheduleCreate {
        name: String,
        crontab: String,
        enabled: bool,
    },
    ScheduleList,
    ScheduleSet {
        name: String,
        #[serde(default)]
        crontab: Option<String>,
        #[serde(default)]
        enabled: Option<bool>,
    },
    ScheduleDelete {
        name: String,
    },
    ScheduleCalendar {
        name: String,
        from: chrono::DateTime<chrono::Utc>,
        to: chrono::DateTime<chrono::Utc>,
    },
    PolicyCreate {
        policy: NewPolicy,
    },
    PolicyList,
    PolicySet {
        name: String,
        changes: PolicyChanges,
    },
    PolicyDelete {
        name: String,
    },
    /// Runs only in a server (the command line alone holds no repository).
    PolicyRun {
        name: String,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum ControlReply {
    /// A new key: its record and the full key, shown once.
    KeyCreated {
        record: KeyRecord,
        key: String,
    },
    Keys {
        records: Vec<KeyRecord>,
    },
    User {
        user: UserView,
    },
    Users {
        users: Vec<UserView>,
    },
    Schedule {
        schedule: ScheduleView,
    },
    Schedules {
        schedules: Vec<ScheduleView>,
    },
    Calendar {
        occurrences: Vec<String>,
    },
    Policy {
        policy: PolicyView,
    },
    Policies {
        policies: Vec<PolicyView>,
    },
    Job {
        job: JobView,
    },
    Done,
    Error {
        message: String,
    },
}

/// The stores a request may touch.
pub struct Stores<'a> {
    pub keys: &'a KeyStore,
    pub users: &'a UserStore,
    pub schedules: &'a Schedules,
    pub policies: &'a Policies,
    /// The server's policy runner; `None` when the command line opened the store.
    pub runner: Option<&'a std::sync::Arc<PolicyRunner>>,
}

/// Who asks over the control protocol: whoever may read the data directory, which is
/// the server's administrator.
fn administrator() -> Principal {
    Principal {
        key_id: "control".into(),
        name: "control socket".into(),
        role: Role::Admin,
    }
}

/// Carries out one request.
pub fn handle(stores: &Stores<'_>, request: ControlRequest) -> ControlReply {
    match carry_out(stores, request) {
        Ok(reply) => reply,
        Err(message) => ControlReply::Error { message },
    }
}

fn text(error: impl std::fmt::Display) -> String {
    error.to_string()
}

fn carry_out(stores: &Stores<'_>, request: ControlRequest) -> Result<ControlReply, String> {
    let (keys, users) = (stores.keys, stores.users);
    Ok(match request {
        ControlRequest::KeyCreate {
            name,
            role,
            dialect,
            user,
        } => {
            if let Some(email) = &user {
                users.get(email).map_err(text)?;
            }
            let (mut record, key) = match dialect {
                Some(dialect) => keys.create_for_dialect(&name, role, &dialect),
                None => keys.create(&name, role),
            }
            .map_err(text)?;
            if let Some(email) = user {
                record = keys.assign(&record.id, Some(&email)).map_err(text)?;
            }
            ControlReply::KeyCreated { record, key }
        }
        ControlRequest::KeyList => ControlReply::Keys {
            records: keys.list().map_err(text)?,
        },
        ControlRequest::KeyRevoke { id } => {
            keys.revoke(&id).map_err(text)?;
            ControlReply::Done
        }
        ControlRequest::UserCreate { user, password } => ControlReply::User {
            user: users.create(user, &password).map_err(text)?,
        },
        ControlRequest::UserList => ControlReply::Users {
            users: users.list().map_err(text)?,
        },
        ControlRequest::UserPasswd { email, password } => {
            users.set_password(&email, &password).map_err(text)?;
            ControlReply::Done
        }
        ControlRequest::UserDelete { email } => {
            users.delete(&email, keys).map_err(text)?;
            ControlReply::Done
        }
        ControlRequest::ScheduleCreate {
            name,
            crontab,
            enabled,
        } => ControlReply::Schedule {
            schedule: stores
                .schedules
                .create(&administrator(), &name, &crontab, enabled)
                .map_err(text)?,
        },
        ControlRequest::ScheduleList => ControlReply::Schedules {
            schedules: stores.schedules.list(&administrator()).map_err(text)?,
        },
        ControlRequest::ScheduleSet {
            name,
            crontab,
            enabled,
        } => ControlReply::Schedule {
            schedule: stores
                .schedules
                .update(&administrator(), &name, crontab.as_deref(), enabled)
                .map_err(text)?,
        },
        ControlRequest::ScheduleDelete { name } => {
            stores
                .schedules
                .delete(&administrator(), &name)
                .map_err(text)?;
            ControlReply::Done
        }
        ControlRequest::ScheduleCalendar { name, from, to } => ControlReply::Calendar {
            occurrences: stores
                .schedules
                .calendar(&administrator(), &name, from, to)
                .map_err(text)?,
        },
        ControlRequest::PolicyCreate { policy } => ControlReply::Policy {
            policy: stores
                .policies
                .create(&administrator(), policy)
                .map_err(text)?,
        },
        ControlRequest::PolicyList => ControlReply::Policies {
            policies: stores.policies.list(&administrator()).map_err(text)?,
        },
        ControlRequest::PolicySet { name, changes } => ControlReply::Policy {
            policy: stores
                .policies
                .update(&administrator(), &name, changes)
                .map_err(text)?,
        },
        ControlRequest::PolicyDelete { name } => {
            stores
                .policies
                .delete(&administrator(), &name)
                .map_err(text)?;
            ControlReply::Done
        }
        ControlRequest::PolicyRun { name } => {
            let Some(runner) = stores.runner else {
                return Err(
                    "policies run in the server: start `stowage serve`, then run this again".into(),
                );
            };
            ControlReply::Job {
                job: runner
                    .run(&administrator(), &name, Trigger::Manual)
                    .map_err(text)?,
            }
        }
    })
}

/// Decodes a request line; a bad one is answered with an error reply.
pub fn handle_line(stores: &Stores<'_>, line: &[u8]) -> ControlReply {
    match serde_json::from_slice::<ControlRequest>(line) {
        Ok(request) => handle(stores, request),
        Err(error) => ControlReply::Error {
            message: format!("not a control request: {error}"),
        },
    }
}
