//! The repository's figures day by day (table `stats_history`), for the dashboard's
//! chart of stored bytes over time: one row per UTC day, replaced by each sample taken
//! that day, so the row holds the day's last figures. At most [`KEPT_DAYS`] rows stay.

use serde::{Deserialize, Serialize};

use super::schema::STATS_HISTORY;
use super::{decode, StateError, StateStore};

/// Days of history kept.
pub const KEPT_DAYS: usize = 400;

/// One day's figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsSample {
    /// `YYYY-MM-DD`, UTC.
    pub day: String,
    pub logical_bytes: u64,
    pub stored_bytes: u64,
    pub backups: u64,
}

impl StateStore {
    /// Records `sample` as its day's figures, then drops the oldest days past
    /// [`KEPT_DAYS`].
    pub fn record_stats_sample(&self, sample: &StatsSample) -> Result<(), StateError> {
        let encoded = serde_json::to_vec(sample).expect("stats samples serialize");
        self.put(STATS_HISTORY, &sample.day, &encoded, false)?;
        let days = self.list(STATS_HISTORY)?;
        for (day, _) in days.iter().take(days.len().saturating_sub(KEPT_DAYS)) {
            self.remove(STATS_HISTORY, day)?;
        }
        Ok(())
    }

    /// Every kept day, oldest first.
    pub fn stats_history(&self) -> Result<Vec<StatsSample>, StateError> {
        self.list(STATS_HISTORY)?
            .into_iter()
            .map(|(day, bytes)| decode(&format!("stats of {day}"), &bytes))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(day: &str, stored_bytes: u64) -> StatsSample {
        StatsSample {
            day: day.into(),
            logical_bytes: stored_bytes * 3,
            stored_bytes,
            backups: 1,
        }
    }

    #[test]
    fn a_day_keeps_its_last_sample_and_old_days_go() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(&dir.path().join("state.redb")).unwrap();
        store.record_stats_sample(&sample("2026-11-30", 5)).unwrap();
        store.record_stats_sample(&sample("2026-12-01", 7)).unwrap();
        store.record_stats_sample(&sample("2026-12-01", 9)).unwrap();
        assert_eq!(
            store.stats_history().unwrap(),
            vec![sample("2026-11-30", 5), sample("2026-12-01", 9)]
        );
        let start = chrono::NaiveDate::from_ymd_opt(2025, 1, 1).unwrap();
        for n in 0..(KEPT_DAYS as u64 + 5) {
            let day = start + chrono::Days::new(n);
            store
                .record_stats_sample(&sample(&day.to_string(), n))
                .unwrap();
        }
        let kept = store.stats_history().unwrap();
        assert_eq!(kept.len(), KEPT_DAYS);
        assert_eq!(kept.last().unwrap().day, "2026-12-01");
    }
}
