//! Evaluating a retention policy over the backups of one series: which stay, which go,
//! and which rule kept each. Pure: the caller passes the backups and "now".
//!
//! The rules follow restic and BorgBackup: `keep_last` keeps the newest N;
//! `keep_within` keeps everything younger than a duration (measured from now); each of
//! hourly/daily/weekly/monthly/yearly keeps the newest backup of each of the last N
//! periods that have backups (periods in UTC; weeks are ISO weeks). A backup kept by
//! several rules lists them all. `min_keep` then keeps the newest of the rest until that
//! many are kept. A policy with no rule keeps everything.

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::Serialize;

use crate::format::series::RetentionPolicy;

/// One backup as retention sees it.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub id: String,
    pub created_at: DateTime<Utc>,
}

/// The verdict on one backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub id: String,
    pub created_at: DateTime<Utc>,
    pub keep: bool,
    /// The rules that kept it (`last`, `within`, `hourly`, ..., `minimum`, `no policy`).
    pub reasons: Vec<&'static str>,
}

type PeriodKey = fn(&DateTime<Utc>) -> (i32, u32, u32, u32);

fn hour(t: &DateTime<Utc>) -> (i32, u32, u32, u32) {
    (t.year(), t.month(), t.day(), t.hour())
}
fn day(t: &DateTime<Utc>) -> (i32, u32, u32, u32) {
    (t.year(), t.month(), t.day(), 0)
}
fn week(t: &DateTime<Utc>) -> (i32, u32, u32, u32) {
    let w = t.iso_week();
    (w.year(), w.week(), 0, 0)
}
fn month(t: &DateTime<Utc>) -> (i32, u32, u32, u32) {
    (t.year(), t.month(), 0, 0)
}
fn year(t: &DateTime<Utc>) -> (i32, u32, u32, u32) {
    (t.year(), 0, 0, 0)
}

/// Decides, for each candidate, whether `policy` keeps it. Returned newest first.
pub fn evaluate(
    policy: &RetentionPolicy,
    candidates: &[Candidate],
    now: DateTime<Utc>,
) -> Vec<Decision> {
    let mut sorted: Vec<&Candidate> = candidates.iter().collect();
    sorted.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
    let mut decisions: Vec<Decision> = sorted
        .iter()
        .map(|c| Decision {
            id: c.id.clone(),
            created_at: c.created_at,
            keep: false,
            reasons: Vec::new(),
        })
        .collect();
    if policy.is_empty() {
        decisions.iter_mut().for_each(|d| keep(d, "no policy"));
        return decisions;
    }
    if let Some(n) = policy.keep_last {
        decisions
            .iter_mut()
            .take(n as usize)
            .for_each(|d| keep(d, "last"));
    }
    if let Some(seconds) = policy.keep_within_secs {
        let cutoff = now - chrono::Duration::seconds(seconds.min(i64::MAX as u64) as i64);
        decisions
            .iter_mut()
            .filter(|d| d.created_at >= cutoff)
            .for_each(|d| keep(d, "within"));
    }
    let periods: [(Option<u32>, PeriodKey, &'static str); 5] = [
        (policy.keep_hourly, hour, "hourly"),
        (policy.keep_daily, day, "daily"),
        (policy.keep_weekly, week, "weekly"),
        (policy.keep_monthly, month, "monthly"),
        (policy.keep_yearly, year, "yearly"),
    ];
    for (count, key, reason) in periods {
        if let Some(count) = count {
            keep_newest_per_period(&mut decisions, count, key, reason);
        }
    }
    let kept = decisions.iter().filter(|d| d.keep).count();
    let missing = (policy.min_keep as usize).saturating_sub(kept);
    decisions
        .iter_mut()
        .filter(|d| !d.keep)
        .take(missing)
        .for_each(|d| keep(d, "minimum"));
    decisions
}

fn keep(decision: &mut Decision, reason: &'static str) {
    decision.keep = true;
    decision.reasons.push(reason);
}

/// Keeps the newest backup of each of the `count` newest periods that have backups.
fn keep_newest_per_period(
    decisions: &mut [Decision],
    count: u32,
    key: PeriodKey,
    reason: &'static str,
) {
    let mut last_period = None;
    let mut remaining = count;
    for decision in decisions.iter_mut() {
        if remaining == 0 {
            break;
        }
        let period = key(&decision.created_at);
        if last_period != Some(period) {
            last_period = Some(period);
            remaining -= 1;
            keep(decision, reason);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::series::RetentionPolicy;
    use chrono::TimeZone;

    /// One backup every 6 hours for 400 days before 2026-06-30 12:00 UTC.
    fn calendar() -> (Vec<Candidate>, DateTime<Utc>) {
        let now = Utc.with_ymd_and_hms(2026, 6, 30, 12, 0, 0).unwrap();
        let candidates = (0..400 * 4)
            .map(|i| Candidate {
                id: format!("b{i:04}"),
                created_at: now - chrono::Duration::hours(6 * i as i64),
            })
            .collect();
        (candidates, now)
    }

    fn kept_by(decisions: &[Decision], reason: &str) -> Vec<String> {
        decisions
            .iter()
            .filter(|d| d.reasons.contains(&reason))
            .map(|d| d.id.clone())
            .collect()
    }

    #[test]
    fn no_rule_keeps_everything() {
        let (candidates, now) = calendar();
        let decisions = evaluate(&RetentionPolicy::default(), &candidates, now);
        assert!(decisions.iter().all(|d| d.keep));
    }

    #[test]
    fn keep_last_keeps_the_newest() {
        let (candidates, now) = calendar();
        let policy = RetentionPolicy {
            keep_last: Some(3),
            ..Default::default()
        };
        let decisions = evaluate(&policy, &candidates, now);
        assert_eq!(kept_by(&decisions, "last"), ["b0000", "b0001", "b0002"]);
        assert_eq!(decisions.iter().filter(|d| d.keep).count(), 3);
    }

    #[test]
    fn keep_within_is_measured_from_now() {
        let (candidates, now) = calendar();
        let policy = RetentionPolicy {
            keep_within_secs: Some(86_400),
            ..Default::default()
        };
        let decisions = evaluate(&policy, &candidates, now);
        // 0h, 6h, 12h, 18h and exactly 24h ago.
        assert_eq!(kept_by(&decisions, "within").len(), 5);
    }

    #[test]
    fn daily_keeps_the_newest_of_each_day() {
        let (candidates, now) = calendar();
        let policy = RetentionPolicy {
            keep_daily: Some(3),
            ..Default::default()
        };
        let decisions = evaluate(&policy, &candidates, now);
        // Backups at 12:00, 06:00, 00:00 on June 30, then 18:00 on June 29 and 28.
        assert_eq!(kept_by(&decisions, "daily"), ["b0000", "b0003", "b0007"]);
    }

    #[test]
    fn hourly_weekly_monthly_yearly_pick_one_per_period() {
        let (candidates, now) = calendar();
        let policy = RetentionPolicy {
            keep_hourly: Some(2),
            keep_weekly: Some(2),
            keep_monthly: Some(3),
            keep_yearly: Some(5),
            ..Default::default()
        };
        let decisions = evaluate(&policy, &candidates, now);
        assert_eq!(kept_by(&decisions, "hourly"), ["b0000", "b0001"]);
        // 2026-06-30 is a Tuesday: ISO week 27 starts Monday June 29 00:00.
        assert_eq!(kept_by(&decisions, "weekly"), ["b0000", "b0007"]);
        // June 30 12:00, then May 31 18:00 (b0119), April 30 18:00 (b0243).
        assert_eq!(kept_by(&decisions, "monthly"), ["b0000", "b0119", "b0243"]);
        // 2026, 2025 (Dec 31 18:00 = b0723); the data starts in 2025.
        assert_eq!(kept_by(&decisions, "yearly"), ["b0000", "b0723"]);
    }

    #[test]
    fn combined_rules_and_the_minimum() {
        let (candidates, now) = calendar();
        let policy = RetentionPolicy {
            keep_last: Some(2),
            keep_daily: Some(2),
            min_keep: 6,
            ..Default::default()
        };
        let decisions = evaluate(&policy, &candidates, now);
        let first = &decisions[0];
        assert_eq!(first.reasons, ["last", "daily"]);
        // last: b0000 b0001; daily: b0000 b0003 → 3 kept; minimum adds b0002, b0004, b0005.
        assert_eq!(kept_by(&decisions, "minimum"), ["b0002", "b0004", "b0005"]);
        assert_eq!(decisions.iter().filter(|d| d.keep).count(), 6);
    }
}
