//! Which backups the real server's scheduled jobs act on, as pure functions of the
//! backups and the clock: the recycle rule (`count`: the oldest live backups above N,
//! `min_backups` ignored; `age`: live backups older than N whole days, stopping once only
//! `min_backups` live ones remain) and deduplication (of identical backups of a target,
//! the oldest survives). The service applies the result.

use chrono::NaiveDateTime;

use super::targets::{RecycleCriteria, Target};

/// A backup as the rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: String,
    pub created_at: NaiveDateTime,
    pub hash: String,
}

/// Oldest first; backups made in the same second keep their order in `backups` (the
/// order they were recorded in).
fn oldest_first(backups: &[Candidate]) -> Vec<&Candidate> {
    let mut sorted: Vec<&Candidate> = backups.iter().collect();
    sorted.sort_by_key(|c| c.created_at);
    sorted
}

/// The ids of the live (not recycled) backups of `target` that its recycle criteria
/// select at `now`, oldest first.
pub fn to_recycle(target: &Target, live: &[Candidate], now: NaiveDateTime) -> Vec<String> {
    let Some(value) = target.recycle_value.filter(|v| *v >= 0) else {
        return Vec::new();
    };
    let sorted = oldest_first(live);
    match target.recycle_criteria {
        RecycleCriteria::None => Vec::new(),
        RecycleCriteria::Count => {
            let excess = sorted.len().saturating_sub(value as usize);
            sorted[..excess].iter().map(|c| c.id.clone()).collect()
        }
        RecycleCriteria::Age => {
            let mut remaining = sorted.len() as i64;
            let mut chosen = Vec::new();
            for candidate in sorted {
                if remaining <= target.min_backups {
                    break;
                }
                if (now - candidate.created_at).num_days() > value {
                    chosen.push(candidate.id.clone());
                    remaining -= 1;
                }
            }
            chosen
        }
    }
}

/// The ids of backups (recycled ones included) whose content equals an older backup's:
/// deduplication deletes them, so the oldest copy survives.
pub fn duplicates(backups: &[Candidate]) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    oldest_first(backups)
        .into_iter()
        .filter(|c| !seen.insert(c.hash.as_str()))
        .map(|c| c.id.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::backupchan::targets::{RecycleAction, TargetSpec, TargetType};

    fn at(day: u32, hour: u32) -> NaiveDateTime {
        chrono::NaiveDate::from_ymd_opt(2025, 8, day)
            .unwrap()
            .and_hms_opt(hour, 0, 0)
            .unwrap()
    }

    fn target(criteria: RecycleCriteria, value: i64, min_backups: i64) -> Target {
        Target::new(
            "t".into(),
            TargetType::Single,
            TargetSpec {
                name: "t".into(),
                recycle_criteria: criteria,
                recycle_value: Some(value),
                recycle_action: RecycleAction::Recycle,
                location: "/x".into(),
                name_template: "$I".into(),
                deduplicate: false,
                alias: None,
                min_backups,
                tags: vec![],
            },
        )
    }

    /// Backups `b1`..`bN` made on days 1..N at noon, given newest first.
    fn backups(n: u32) -> Vec<Candidate> {
        (1..=n)
            .rev()
            .map(|d| Candidate {
                id: format!("b{d}"),
                created_at: at(d, 12),
                hash: format!("h{d}"),
            })
            .collect()
    }

    #[test]
    fn count_acts_on_the_oldest_above_n_and_ignores_min_backups() {
        let now = at(20, 0);
        assert_eq!(
            to_recycle(&target(RecycleCriteria::Count, 3, 10), &backups(5), now),
            ["b1", "b2"]
        );
        assert!(to_recycle(&target(RecycleCriteria::Count, 5, 0), &backups(5), now).is_empty());
        assert_eq!(
            to_recycle(&target(RecycleCriteria::Count, 0, 0), &backups(2), now),
            ["b1", "b2"]
        );
        assert!(to_recycle(&target(RecycleCriteria::None, 0, 0), &backups(2), now).is_empty());
    }

    #[test]
    fn age_counts_whole_days_strictly_and_keeps_min_backups() {
        // On Aug 6 at 11:00, b1 (Aug 1 12:00) is 4 days 23 hours old: not more than 4 days.
        let now = at(6, 11);
        assert!(to_recycle(&target(RecycleCriteria::Age, 4, 0), &backups(5), now).is_empty());
        // At 13:00 it is 5 days old: more than 4; b2 is 4 days old.
        let now = at(6, 13);
        assert_eq!(
            to_recycle(&target(RecycleCriteria::Age, 4, 0), &backups(5), now),
            ["b1"]
        );
        assert_eq!(
            to_recycle(&target(RecycleCriteria::Age, 1, 0), &backups(5), now),
            ["b1", "b2", "b3", "b4"]
        );
        // Stop once only min_backups live backups remain.
        assert_eq!(
            to_recycle(&target(RecycleCriteria::Age, 1, 3), &backups(5), now),
            ["b1", "b2"]
        );
        assert!(to_recycle(&target(RecycleCriteria::Age, 1, 5), &backups(5), now).is_empty());
    }

    #[test]
    fn dedup_keeps_the_oldest_copy() {
        let mut list = backups(4);
        list[0].hash = "h1".into(); // b4 equals b1
        list[2].hash = "h1".into(); // b2 equals b1
        assert_eq!(duplicates(&list), ["b2", "b4"]);
        assert!(duplicates(&backups(3)).is_empty());
        // Made in the same second: the one recorded first is the oldest.
        let same: Vec<Candidate> = ["z", "a", "m"]
            .iter()
            .map(|id| Candidate {
                id: id.to_string(),
                created_at: at(1, 0),
                hash: "h".into(),
            })
            .collect();
        assert_eq!(duplicates(&same), ["a", "m"]);
    }
}
