//! Named schedules in the state store (table `schedules`): when policies run, as a cron
//! expression (`service::cron`), enabled or not.

use serde::{Deserialize, Serialize};

use super::schema::SCHEDULES;
use super::{decode, StateError, StateStore};

/// One schedule as stored (FORMAT.md, the state store's tables).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleRecord {
    pub name: String,
    /// The cron expression, as given (five or six fields).
    pub crontab: String,
    pub enabled: bool,
    /// RFC 3339 UTC.
    pub created_at: String,
}

impl StateStore {
    /// Every schedule, in name order.
    pub fn schedules(&self) -> Result<Vec<ScheduleRecord>, StateError> {
        self.list(SCHEDULES)?
            .into_iter()
            .map(|(name, bytes)| decode(&format!("schedule {name}"), &bytes))
            .collect()
    }

    pub fn schedule(&self, name: &str) -> Result<Option<ScheduleRecord>, StateError> {
        self.get(SCHEDULES, name)?
            .map(|bytes| decode(&format!("schedule {name}"), &bytes))
            .transpose()
    }

    /// Stores a new schedule; `false` (and nothing changed) when the name is taken.
    pub fn insert_schedule(&self, record: &ScheduleRecord) -> Result<bool, StateError> {
        self.put(SCHEDULES, &record.name, &encode(record), true)
    }

    /// Stores a schedule, replacing one of the same name.
    pub fn put_schedule(&self, record: &ScheduleRecord) -> Result<(), StateError> {
        self.put(SCHEDULES, &record.name, &encode(record), false)
            .map(|_| ())
    }

    /// Removes a schedule; `false` when there was none.
    pub fn remove_schedule(&self, name: &str) -> Result<bool, StateError> {
        self.remove(SCHEDULES, name)
    }
}

fn encode(record: &ScheduleRecord) -> Vec<u8> {
    serde_json::to_vec(record).expect("schedule records serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_are_stored_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(&dir.path().join("state.redb")).unwrap();
        let record = ScheduleRecord {
            name: "nightly".into(),
            crontab: "0 2 * * *".into(),
            enabled: true,
            created_at: "2026-11-30T00:00:00Z".into(),
        };
        assert!(store.insert_schedule(&record).unwrap());
        assert!(!store.insert_schedule(&record).unwrap());
        let mut changed = record.clone();
        changed.enabled = false;
        store.put_schedule(&changed).unwrap();
        assert_eq!(store.schedule("nightly").unwrap(), Some(changed.clone()));
        assert_eq!(store.schedules().unwrap(), vec![changed]);
        assert!(store.remove_schedule("nightly").unwrap());
        assert!(!store.remove_schedule("nightly").unwrap());
        assert_eq!(store.schedule("nightly").unwrap(), None);
    }
}
