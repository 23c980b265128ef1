//! Series records (`series/<name>`): a named sequence of backups and its retention
//! policy, sealed in a blob envelope (domain Series, name = the series name) around JSON.
//! The policy is evaluated by `service::retention`; this module holds only the types.

use serde::{Deserialize, Serialize};

pub const SERIES_FORMAT: &str = "stowage-series";
pub const SERIES_VERSION: u32 = 1;
/// Largest series record accepted when reading.
pub const MAX_SERIES_BYTES: usize = 64 << 10;

/// What happens to a backup a policy does not keep.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetentionAction {
    /// Hidden from normal listings, restorable, still holding its chunks.
    #[default]
    Recycle,
    /// Purged: record and catalog gone, chunks reclaimable by garbage collection.
    Delete,
}

/// Which backups of a series to keep. A backup is kept when any rule keeps it; with no
/// rule at all, every backup is kept.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionPolicy {
    /// Keep the newest N backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<u32>,
    /// Keep every backup made within this many seconds before now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_within_secs: Option<u64>,
    /// Keep the newest backup of each of the last N hours (days, ...) that have backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_hourly: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_daily: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_weekly: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_monthly: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_yearly: Option<u32>,
    /// Never keep fewer than this many backups, whatever the rules say.
    #[serde(default)]
    pub min_keep: u32,
    #[serde(default)]
    pub action: RetentionAction,
}

impl RetentionPolicy {
    /// True when no rule is set (every backup is kept).
    pub fn is_empty(&self) -> bool {
        self.keep_last.is_none()
            && self.keep_within_secs.is_none()
            && self.keep_hourly.is_none()
            && self.keep_daily.is_none()
            && self.keep_weekly.is_none()
            && self.keep_monthly.is_none()
            && self.keep_yearly.is_none()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeriesRecord {
    pub format: String,
    pub version: u32,
    pub name: String,
    pub created_at: String,
    #[serde(default)]
    pub policy: RetentionPolicy,
}

#[derive(Debug, thiserror::Error)]
pub enum SeriesError {
    #[error("series record is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("object is not a stowage series record")]
    NotASeries,
    #[error("series record of {len} bytes exceeds the limit")]
    TooLarge { len: usize },
}

impl SeriesRecord {
    pub fn new(name: &str, created_at: String, policy: RetentionPolicy) -> SeriesRecord {
        SeriesRecord {
            format: SERIES_FORMAT.into(),
            version: SERIES_VERSION,
            name: name.into(),
            created_at,
            policy,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("series record serializes")
    }

    pub fn decode(bytes: &[u8]) -> Result<SeriesRecord, SeriesError> {
        if bytes.len() > MAX_SERIES_BYTES {
            return Err(SeriesError::TooLarge { len: bytes.len() });
        }
        let record: SeriesRecord = serde_json::from_slice(bytes)?;
        if record.format != SERIES_FORMAT || record.version != SERIES_VERSION {
            return Err(SeriesError::NotASeries);
        }
        Ok(record)
    }
}

/// Parses a duration like `90d`, `2w`, `12h`, `1y6m`, `0s` (y = 365 days, m = 30 days,
/// w, d, h, s; a bare number is seconds) into seconds.
pub fn parse_duration(text: &str) -> Option<u64> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(seconds);
    }
    let mut total: u64 = 0;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit: u64 = match c {
            'y' => 365 * 86_400,
            'm' => 30 * 86_400,
            'w' => 7 * 86_400,
            'd' => 86_400,
            'h' => 3_600,
            's' => 1,
            _ => return None,
        };
        let n: u64 = number.parse().ok()?;
        total = total.checked_add(n.checked_mul(unit)?)?;
        number.clear();
    }
    number.is_empty().then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Some(90));
        assert_eq!(parse_duration("2d"), Some(172_800));
        assert_eq!(parse_duration("1y6m"), Some(365 * 86_400 + 180 * 86_400));
        assert_eq!(parse_duration("1w12h"), Some(7 * 86_400 + 43_200));
        assert_eq!(parse_duration("0s"), Some(0));
        assert_eq!(parse_duration("1h30s"), Some(3_630));
        for bad in ["", "d", "5x", "3d4", "99999999999999999999y"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn record_round_trip() {
        let policy = RetentionPolicy {
            keep_last: Some(3),
            min_keep: 1,
            action: RetentionAction::Delete,
            ..Default::default()
        };
        let record = SeriesRecord::new("db", "2026-01-01T00:00:00Z".into(), policy);
        assert_eq!(SeriesRecord::decode(&record.encode()).unwrap(), record);
        assert!(SeriesRecord::decode(b"{}").is_err());
    }
}
