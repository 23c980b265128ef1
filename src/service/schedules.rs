//! Schedules: named cron expressions (`service::cron`) that policies run by, kept in
//! the state store. An expression is checked when it is stored, so a schedule that is
//! stored always parses; one that never fires again (a past year) is kept, with no next
//! run and an empty calendar.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::cron::{Cron, CronError};
use super::keys::{KeyStoreError, Principal, Role};
use crate::error::ErrorKind;
use crate::state::schedules::ScheduleRecord;
use crate::state::{StateError, StateStore};

/// The longest schedule name.
pub const MAX_NAME_LEN: usize = 128;
/// The most occurrences one calendar request may list.
pub const MAX_CALENDAR: usize = 50_000;

#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("{0}")]
    InvalidName(String),
    #[error("invalid crontab: {0}")]
    InvalidCrontab(#[from] CronError),
    #[error("a schedule named {0:?} exists")]
    Exists(String),
    #[error("no schedule named {0:?}")]
    NotFound(String),
    #[error("the calendar's end comes before its start")]
    BadRange,
    #[error(transparent)]
    Denied(#[from] KeyStoreError),
    #[error(transparent)]
    State(#[from] StateError),
}

impl ScheduleError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            ScheduleError::InvalidName(_)
            | ScheduleError::InvalidCrontab(_)
            | ScheduleError::BadRange => ErrorKind::InvalidInput,
            ScheduleError::Exists(_) => ErrorKind::AlreadyExists,
            ScheduleError::NotFound(_) => ErrorKind::NotFound,
            ScheduleError::Denied(e) => e.kind(),
            ScheduleError::State(e) => e.kind(),
        }
    }
}

/// A schedule as callers see it: the record and its next run (`None`: never again, or
/// disabled).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScheduleView {
    pub name: String,
    pub crontab: String,
    pub enabled: bool,
    pub created_at: String,
    pub next_run: Option<String>,
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn view(record: ScheduleRecord, now: DateTime<Utc>) -> ScheduleView {
    let next_run = record
        .enabled
        .then(|| record.crontab.parse::<Cron>().ok()?.next_after(now))
        .flatten()
        .map(rfc3339);
    ScheduleView {
        name: record.name,
        crontab: record.crontab,
        enabled: record.enabled,
        created_at: record.created_at,
        next_run,
    }
}

fn validate_name(name: &str) -> Result<(), ScheduleError> {
    check_plain_name("schedule", name).map_err(ScheduleError::InvalidName)
}

/// The rule of schedule and policy names (state store keys, command-line words): 1 to
/// [`MAX_NAME_LEN`] letters, digits, `-`, `_` or `.`, not starting with `.`; the error
/// names `what` and quotes the name.
pub(crate) fn check_plain_name(what: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} name {:?}: 1 to {MAX_NAME_LEN} letters, digits, '-', '_' or '.', not starting with '.'",
            name.chars().take(MAX_NAME_LEN + 1).collect::<String>()
        ))
    }
}

/// The schedule verbs, with their role checks.
#[derive(Clone)]
pub struct Schedules {
    store: Arc<StateStore>,
}

impl Schedules {
    pub fn new(store: Arc<StateStore>) -> Schedules {
        Schedules { store }
    }

    pub fn list(&self, who: &Principal) -> Result<Vec<ScheduleView>, ScheduleError> {
        who.require(Role::Reader)?;
        let now = Utc::now();
        Ok(self
            .store
            .schedules()?
            .into_iter()
            .map(|r| view(r, now))
            .collect())
    }

    pub fn get(&self, who: &Principal, name: &str) -> Result<ScheduleView, ScheduleError> {
        who.require(Role::Reader)?;
        Ok(view(self.record(name)?, Utc::now()))
    }

    fn record(&self, name: &str) -> Result<ScheduleRecord, ScheduleError> {
        self.store
            .schedule(name)?
            .ok_or_else(|| ScheduleError::NotFound(name.to_string()))
    }

    /// Creates a schedule; refused when the name is taken or the crontab does not parse.
    pub fn create(
        &self,
        who: &Principal,
        name: &str,
        crontab: &str,
        enabled: bool,
    ) -> Result<ScheduleView, ScheduleError> {
        who.require(Role::Writer)?;
        validate_name(name)?;
        crontab.parse::<Cron>()?;
        let record = ScheduleRecord {
            name: name.to_string(),
            crontab: crontab.trim().to_string(),
            enabled,
            created_at: rfc3339(Utc::now()),
        };
        if !self.store.insert_schedule(&record)? {
            return Err(ScheduleError::Exists(name.to_string()));
        }
        Ok(view(record, Utc::now()))
    }

    /// Changes a schedule's crontab and/or whether it is enabled.
    pub fn update(
        &self,
        who: &Principal,
        name: &str,
        crontab: Option<&str>,
        enabled: Option<bool>,
    ) -> Result<ScheduleView, ScheduleError> {
        who.require(Role::Writer)?;
        let mut record = self.record(name)?;
        if let Some(crontab) = crontab {
            crontab.parse::<Cron>()?;
            record.crontab = crontab.trim().to_string();
        }
        if let Some(enabled) = enabled {
            record.enabled = enabled;
        }
        self.store.put_schedule(&record)?;
        Ok(view(record, Utc::now()))
    }

    pub fn delete(&self, who: &Principal, name: &str) -> Result<(), ScheduleError> {
        who.require(Role::Admin)?;
        if self.store.remove_schedule(name)? {
            Ok(())
        } else {
            Err(ScheduleError::NotFound(name.to_string()))
        }
    }

    /// Every time the schedule fires in `[from, to]`, enabled or not.
    pub fn calendar(
        &self,
        who: &Principal,
        name: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<String>, ScheduleError> {
        who.require(Role::Reader)?;
        if to < from {
            return Err(ScheduleError::BadRange);
        }
        let cron: Cron = self.record(name)?.crontab.parse()?;
        Ok(cron
            .occurrences(from, to, MAX_CALENDAR)?
            .into_iter()
            .map(rfc3339)
            .collect())
    }
}
