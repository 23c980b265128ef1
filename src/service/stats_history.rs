//! The repository's figures sampled into the state store once an hour (each day keeps
//! its last sample), so the dashboard can draw stored bytes over time without scanning
//! anything: a sample reads the index's kept totals.

use std::sync::Arc;

use crate::repo::Repository;
use crate::state::stats_history::StatsSample;
use crate::state::{StateError, StateStore};

/// How often the figures are sampled.
pub const SAMPLE_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

#[derive(Clone)]
pub struct StatsHistory {
    repo: Repository,
    store: Arc<StateStore>,
}

impl StatsHistory {
    pub fn new(repo: Repository, store: Arc<StateStore>) -> StatsHistory {
        StatsHistory { repo, store }
    }

    /// Records today's figures as they are now.
    pub fn sample(&self) -> Result<(), String> {
        let stats = self.repo.stats().map_err(|e| e.to_string())?;
        self.store
            .record_stats_sample(&StatsSample {
                day: chrono::Utc::now().format("%Y-%m-%d").to_string(),
                logical_bytes: stats.logical_bytes,
                stored_bytes: stats.stored_bytes,
                backups: stats.backups,
            })
            .map_err(|e| e.to_string())
    }

    /// Every kept day, oldest first.
    pub fn days(&self) -> Result<Vec<StatsSample>, StateError> {
        self.store.stats_history()
    }
}
