//! The names the tapu-backups dialect accepts: instances (the domain names b2 hosts give
//! their eQual instances, at most 32 characters, as the original validates them) and
//! backup file names `<instance>_<YYYYMMDD><seconds of the day, 5 digits>_<ttl days>.tar`
//! (or `.tar.gpg`), whose date and time to live drive `/remove-expired-backups`.

use chrono::{NaiveDate, NaiveDateTime};

/// Longest instance name the original accepts.
pub const MAX_INSTANCE_LEN: usize = 32;

/// Whether `text` is an instance name: at most 32 characters, dot-separated labels of
/// 1 to 63 letters, digits and `-`, the last (the top-level domain) at least two letters.
/// No `/`, no `..`: a valid instance is also a safe single path segment.
pub fn is_instance(text: &str) -> bool {
    if text.is_empty() || text.len() > MAX_INSTANCE_LEN {
        return false;
    }
    let labels: Vec<&str> = text.split('.').collect();
    let Some((tld, rest)) = labels.split_last() else {
        return false;
    };
    !rest.is_empty()
        && rest.iter().all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        && tld.len() >= 2
        && tld.bytes().all(|b| b.is_ascii_alphabetic())
}

/// A backup file name taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupName {
    /// When the backup was made (the instance's local time, as written in the name).
    pub made_at: NaiveDateTime,
    /// Days the backup is meant to be kept.
    pub ttl_days: u32,
    /// `.tar.gpg`: encrypted by the host before upload.
    pub encrypted: bool,
}

/// Why a file name is not a backup of an instance.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NameError(String);

/// Longest backup file name accepted (the instance, the fixed parts and a 4-digit TTL).
pub const MAX_NAME_LEN: usize = MAX_INSTANCE_LEN + 1 + 13 + 1 + 4 + ".tar.gpg".len();

/// Parses `name` as a backup file of `instance`:
/// `<instance>_<YYYYMMDD><sssss>_<ttl>.tar[.gpg]`, the date real, the seconds below
/// 86,400, the TTL 1 to 4 digits.
pub fn parse_backup_name(instance: &str, name: &str) -> Result<BackupName, NameError> {
    let refuse = |why: &str| Err(NameError(format!("{name:?} is not a backup name: {why}")));
    if name.len() > MAX_NAME_LEN {
        return refuse("too long");
    }
    let (stem, encrypted) = if let Some(stem) = name.strip_suffix(".tar.gpg") {
        (stem, true)
    } else if let Some(stem) = name.strip_suffix(".tar") {
        (stem, false)
    } else {
        return refuse("it must end in .tar or .tar.gpg");
    };
    let Some(rest) = stem
        .strip_prefix(instance)
        .and_then(|rest| rest.strip_prefix('_'))
    else {
        return refuse(&format!("it must begin with \"{instance}_\""));
    };
    let Some((stamp, ttl)) = rest.split_once('_') else {
        return refuse("expected <YYYYMMDD><seconds of the day>_<ttl days>");
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if stamp.len() != 13 || !digits(stamp) {
        return refuse("the date and time must be 13 digits, YYYYMMDD then 5 digits of seconds");
    }
    if ttl.len() > 4 || !digits(ttl) {
        return refuse("the time to live must be 1 to 4 digits (days)");
    }
    let (date, seconds) = stamp.split_at(8);
    let Ok(date) = NaiveDate::parse_from_str(date, "%Y%m%d") else {
        return refuse("the date is not a real date");
    };
    let seconds: u32 = seconds.parse().unwrap_or(u32::MAX);
    let Some(time) = chrono::NaiveTime::from_num_seconds_from_midnight_opt(seconds, 0) else {
        return refuse("the seconds of the day must be below 86400");
    };
    Ok(BackupName {
        made_at: date.and_time(time),
        ttl_days: ttl.parse().unwrap_or(u32::MAX),
        encrypted,
    })
}

impl BackupName {
    /// Whether the backup outlived its TTL at `now`: more than `ttl_days` whole days
    /// (rounded, as the original rounds) since the day it was made.
    pub fn expired(&self, now: NaiveDateTime) -> bool {
        let made = self.made_at.date().and_time(chrono::NaiveTime::MIN);
        let seconds = (now - made).num_seconds();
        let days = (seconds + 43_200).div_euclid(86_400);
        days > i64::from(self.ttl_days)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances_are_short_domain_names() {
        for ok in ["equal.local", "a.bc", "my-host.example.com", "x1.y2.io"] {
            assert!(is_instance(ok), "{ok}");
        }
        for bad in [
            "",
            "local",
            "equal.l",
            "equal.c0m",
            "a..bc",
            ".equal.local",
            "equal.local.",
            "../equal.local",
            "equal/local.io",
            "équal.local",
            "a-very-long-instance-name.example.com",
            "with space.io",
        ] {
            assert!(!is_instance(bad), "{bad}");
        }
        assert!(is_instance(&format!("{}.io", "a".repeat(29))));
        assert!(!is_instance(&format!("{}.io", "a".repeat(30))));
    }

    #[test]
    fn backup_names_follow_the_rule() {
        let name = parse_backup_name("equal.local", "equal.local_2026113043200_7.tar").unwrap();
        assert_eq!(name.ttl_days, 7);
        assert!(!name.encrypted);
        assert_eq!(name.made_at.to_string(), "2026-11-30 12:00:00");
        let gpg = parse_backup_name("equal.local", "equal.local_2026010100000_28.tar.gpg");
        assert!(gpg.unwrap().encrypted);
        for bad in [
            "other.local_2026113043200_7.tar",
            "equal.local_2026113043200_7.zip",
            "equal.local_2026113043200_7",
            "equal.local_2026113086400_7.tar",
            "equal.local_2026023000000_7.tar",
            "equal.local_202611304320_7.tar",
            "equal.local_2026113043200_.tar",
            "equal.local_2026113043200_12345.tar",
            "equal.local_2026113043200-7.tar",
            "../equal.local_2026113043200_7.tar",
            "equal.local_2026113043200_7.tar/x",
            "equal.local_2026113043200_+7.tar",
        ] {
            assert!(parse_backup_name("equal.local", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn expiry_counts_whole_days_from_the_day_made() {
        let name = parse_backup_name("a.io", "a.io_2026110186399_7.tar").unwrap();
        let at = |text: &str| NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").unwrap();
        assert!(!name.expired(at("2026-11-08 11:59:59")));
        assert!(name.expired(at("2026-11-08 12:00:00")));
        assert!(!name.expired(at("2026-11-01 00:00:00")));
    }
}
