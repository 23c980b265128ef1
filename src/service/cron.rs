//! Cron expressions: when a schedule fires. Two forms, told apart by their field count:
//!
//! - **Standard** (5 fields: minute hour day-of-month month day-of-week), as Vixie cron
//!   reads them: day-of-week 0–7 with 0 and 7 Sunday, `a/n` meaning `a-max/n`, and when
//!   both day fields are restricted a day matches either (a field that starts with `*`
//!   counts as unrestricted).
//! - **Six-field** (minute hour day-of-month month day-of-week year), as CyBorgBackup's
//!   schedules are written: day-of-week 1–7 = Monday–Sunday (0 is invalid), `n/step`
//!   meaning only `n`, both day fields must match, and the year is `*` or one year.
//!
//! Both take `*`, lists, ranges, `*/n`, `a-b/n`, and the names `MON`–`SUN`, `JAN`–`DEC`
//! (any case). Anything else is refused with the field and the reason, which is stricter
//! than CyBorgBackup (it stores any text and fails later): `5L`, `5#2`, `?`, a reversed
//! range and a step of 0 are errors here. Times are UTC, to the minute. A valid
//! expression may never fire again (a past year): `next_after` is then `None`.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Timelike, Utc};

/// How far ahead `next_after` looks before it concludes an expression never fires
/// (31 February, or 29 February on a weekday only in 6-field form, can look for long).
const SEARCH_YEARS: i32 = 400;

/// A parsed cron expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    form: Form,
    /// Bit `m` set: minute `m` matches.
    minutes: u64,
    hours: u32,
    /// Bit `d` (1–31).
    days: u32,
    /// Bit `m` (1–12).
    months: u16,
    /// Bit `w`, 0 = Sunday … 6 = Saturday.
    weekdays: u8,
    /// The day fields as written start with `*` (standard form: they then combine with
    /// AND rather than OR).
    days_star: bool,
    weekdays_star: bool,
    year: Option<i32>,
}

/// Which of the two forms an expression is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Standard,
    SixField,
}

/// Why an expression is refused: the field and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct CronError {
    /// `expression`, or the field's name (`minute`, `hour`, `day-of-month`, `month`,
    /// `day-of-week`, `year`).
    pub field: &'static str,
    pub reason: String,
}

fn refuse(field: &'static str, reason: impl Into<String>) -> CronError {
    CronError {
        field,
        reason: reason.into(),
    }
}

/// One field's rules: its name, its range and the names it accepts.
struct FieldSpec {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [(&'static str, u32)],
}

const MONTH_NAMES: &[(&str, u32)] = &[
    ("JAN", 1),
    ("FEB", 2),
    ("MAR", 3),
    ("APR", 4),
    ("MAY", 5),
    ("JUN", 6),
    ("JUL", 7),
    ("AUG", 8),
    ("SEP", 9),
    ("OCT", 10),
    ("NOV", 11),
    ("DEC", 12),
];
const STANDARD_DAY_NAMES: &[(&str, u32)] = &[
    ("SUN", 0),
    ("MON", 1),
    ("TUE", 2),
    ("WED", 3),
    ("THU", 4),
    ("FRI", 5),
    ("SAT", 6),
];
const SIX_FIELD_DAY_NAMES: &[(&str, u32)] = &[
    ("MON", 1),
    ("TUE", 2),
    ("WED", 3),
    ("THU", 4),
    ("FRI", 5),
    ("SAT", 6),
    ("SUN", 7),
];

const MINUTE: FieldSpec = FieldSpec {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: FieldSpec = FieldSpec {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
};
const DAY: FieldSpec = FieldSpec {
    name: "day-of-month",
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: FieldSpec = FieldSpec {
    name: "month",
    min: 1,
    max: 12,
    names: MONTH_NAMES,
};
const STANDARD_WEEKDAY: FieldSpec = FieldSpec {
    name: "day-of-week",
    min: 0,
    max: 7,
    names: STANDARD_DAY_NAMES,
};
const SIX_FIELD_WEEKDAY: FieldSpec = FieldSpec {
    name: "day-of-week",
    min: 1,
    max: 7,
    names: SIX_FIELD_DAY_NAMES,
};

impl FieldSpec {
    fn value(&self, text: &str) -> Result<u32, CronError> {
        if let Some((_, value)) = self
            .names
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(text))
        {
            return Ok(*value);
        }
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            let names = if self.names.is_empty() {
                String::new()
            } else {
                format!(
                    " or a name ({})",
                    self.names
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            return Err(refuse(
                self.name,
                format!(
                    "{text:?} is not a number from {} to {}{names}",
                    self.min, self.max
                ),
            ));
        }
        let value: u32 = text.parse().map_err(|_| {
            refuse(
                self.name,
                format!("{text:?} is out of range {}–{}", self.min, self.max),
            )
        })?;
        if value < self.min || value > self.max {
            return Err(refuse(
                self.name,
                format!("{value} is out of range {}–{}", self.min, self.max),
            ));
        }
        Ok(value)
    }

    /// The set of values a field matches, as a bit mask.
    fn parse(&self, field: &str, form: Form) -> Result<u64, CronError> {
        let mut bits = 0u64;
        for item in field.split(',') {
            bits |= self.item(item, form)?;
        }
        Ok(bits)
    }

    fn item(&self, item: &str, form: Form) -> Result<u64, CronError> {
        if item.is_empty() {
            return Err(refuse(self.name, "an empty item in a list"));
        }
        let (range, step) = match item.split_once('/') {
            None => (item, None),
            Some((range, step)) => {
                let step: u32 = step
                    .parse()
                    .map_err(|_| refuse(self.name, format!("step {step:?} is not a number")))?;
                if step == 0 {
                    return Err(refuse(self.name, "a step of 0"));
                }
                (range, Some(step))
            }
        };
        let (first, last) = if range == "*" {
            (self.min, self.max)
        } else if let Some((a, b)) = range.split_once('-') {
            let (a, b) = (self.value(a)?, self.value(b)?);
            if a > b {
                return Err(refuse(
                    self.name,
                    format!("the range {range:?} runs backwards"),
                ));
            }
            (a, b)
        } else {
            let a = self.value(range)?;
            match (step, form) {
                // `a/n`: from a to the end (Vixie); in six-field form, only a.
                (Some(_), Form::Standard) => (a, self.max),
                _ => (a, a),
            }
        };
        let step = step.unwrap_or(1);
        let mut bits = 0u64;
        let mut value = first;
        while value <= last {
            bits |= 1 << value;
            value += step;
        }
        Ok(bits)
    }
}

impl FromStr for Cron {
    type Err = CronError;

    fn from_str(text: &str) -> Result<Cron, CronError> {
        if text.len() > 1024 {
            return Err(refuse("expression", "longer than 1024 bytes"));
        }
        let fields: Vec<&str> = text.split_whitespace().collect();
        let form = match fields.len() {
            5 => Form::Standard,
            6 => Form::SixField,
            n => {
                return Err(refuse(
                    "expression",
                    format!(
                        "{n} fields; expected 5 (minute hour day-of-month month day-of-week) \
                         or 6 (the same and a year)"
                    ),
                ))
            }
        };
        let weekday_spec = match form {
            Form::Standard => &STANDARD_WEEKDAY,
            Form::SixField => &SIX_FIELD_WEEKDAY,
        };
        let field = |i: usize| fields.get(i).copied().unwrap_or("*");
        let raw_weekdays = weekday_spec.parse(field(4), form)?;
        // Internally bit 0 is Sunday: 7 (both forms' Sunday) folds onto it.
        let weekdays = ((raw_weekdays & 0x7f) | (raw_weekdays >> 7)) as u8;
        let year = match form {
            Form::Standard => None,
            Form::SixField => match field(5) {
                "*" => None,
                text => Some(
                    text.parse::<i32>()
                        .ok()
                        .filter(|y| (1970..=9999).contains(y))
                        .ok_or_else(|| {
                            refuse(
                                "year",
                                format!("{text:?} is neither * nor one year (1970–9999)"),
                            )
                        })?,
                ),
            },
        };
        Ok(Cron {
            form,
            minutes: MINUTE.parse(field(0), form)?,
            hours: HOUR.parse(field(1), form)? as u32,
            days: DAY.parse(field(2), form)? as u32,
            months: MONTH.parse(field(3), form)? as u16,
            weekdays,
            days_star: field(2).starts_with('*'),
            weekdays_star: field(4).starts_with('*'),
            year,
        })
    }
}

impl fmt::Display for Form {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Form::Standard => "standard",
            Form::SixField => "six-field",
        })
    }
}

fn has(bits: u64, value: u32) -> bool {
    bits & (1 << value) != 0
}

/// Midnight UTC of a date.
fn midnight(date: NaiveDate) -> DateTime<Utc> {
    Utc.from_utc_datetime(&date.and_hms_opt(0, 0, 0).expect("midnight exists"))
}

impl Cron {
    pub fn form(&self) -> Form {
        self.form
    }

    fn day_matches(&self, date: NaiveDate) -> bool {
        let day = has(u64::from(self.days), date.day());
        let weekday = has(
            u64::from(self.weekdays),
            date.weekday().num_days_from_sunday(),
        );
        match self.form {
            Form::Standard if !self.days_star && !self.weekdays_star => day || weekday,
            _ => day && weekday,
        }
    }

    /// The first time strictly after `after` (to the minute) the expression fires;
    /// `None` when it never fires again.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let start = after.with_second(0)?.with_nanosecond(0)? + Duration::minutes(1);
        self.first_from(start)
    }

    /// The first time at or after `from` (rounded up to the minute) it fires.
    fn first_from(&self, from: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut t = if from.second() == 0 && from.nanosecond() == 0 {
            from
        } else {
            from.with_second(0)?.with_nanosecond(0)? + Duration::minutes(1)
        };
        let limit = from.year().saturating_add(SEARCH_YEARS);
        loop {
            if t.year() > limit {
                return None;
            }
            if let Some(year) = self.year {
                if t.year() < year {
                    t = midnight(NaiveDate::from_ymd_opt(year, 1, 1)?);
                    continue;
                }
                if t.year() > year {
                    return None;
                }
            }
            if !has(u64::from(self.months), t.month()) {
                let (y, m) = if t.month() == 12 {
                    (t.year() + 1, 1)
                } else {
                    (t.year(), t.month() + 1)
                };
                t = midnight(NaiveDate::from_ymd_opt(y, m, 1)?);
                continue;
            }
            if !self.day_matches(t.date_naive()) {
                t = midnight(t.date_naive().succ_opt()?);
                continue;
            }
            if !has(u64::from(self.hours), t.hour()) {
                t = t.with_minute(0)? + Duration::hours(1);
                continue;
            }
            if !has(self.minutes, t.minute()) {
                t += Duration::minutes(1);
                continue;
            }
            return Some(t);
        }
    }

    /// Every time in `[from, to]` it fires, oldest first; an error past `limit` times.
    pub fn occurrences(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<DateTime<Utc>>, CronError> {
        let mut out = Vec::new();
        let mut next = self.first_from(from);
        while let Some(t) = next.filter(|t| *t <= to) {
            if out.len() == limit {
                return Err(refuse(
                    "expression",
                    format!("fires more than {limit} times in the range asked for"),
                ));
            }
            out.push(t);
            next = self.next_after(t);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn next(expr: &str, after: &str) -> Option<String> {
        let cron: Cron = expr.parse().unwrap();
        cron.next_after(at(after)).map(|t| t.to_rfc3339())
    }

    #[test]
    fn standard_fields() {
        assert_eq!(
            next("30 2 * * *", "2026-11-30T10:00:00Z").as_deref(),
            Some("2026-12-01T02:30:00+00:00")
        );
        assert_eq!(
            next("*/15 * * * *", "2026-11-30T10:07:31Z").as_deref(),
            Some("2026-11-30T10:15:00+00:00")
        );
        // Strictly after: a time that matches moves on.
        assert_eq!(
            next("0 * * * *", "2026-11-30T10:00:00Z").as_deref(),
            Some("2026-11-30T11:00:00+00:00")
        );
        // 7 and 0 are Sunday; names in any case.
        assert_eq!(
            next("0 0 * * 7", "2026-11-30T00:00:00Z"),
            next("0 0 * * sun", "2026-11-30T00:00:00Z")
        );
        assert_eq!(
            next("0 0 * * 0", "2026-11-30T00:00:00Z").as_deref(),
            Some("2026-12-06T00:00:00+00:00")
        );
        // Both day fields restricted: either matches (Monday 2026-12-07 comes first).
        assert_eq!(
            next("0 0 13 * MON", "2026-12-01T00:00:00Z").as_deref(),
            Some("2026-12-07T00:00:00+00:00")
        );
        // `a/n` runs from a to the end.
        assert_eq!(
            next("50/5 * * * *", "2026-11-30T10:51:00Z").as_deref(),
            Some("2026-11-30T10:55:00+00:00")
        );
        // Leap days.
        assert_eq!(
            next("0 12 29 FEB *", "2026-03-01T00:00:00Z").as_deref(),
            Some("2028-02-29T12:00:00+00:00")
        );
    }

    #[test]
    fn six_field_form() {
        // Day-of-week 1–7 is Monday–Sunday; 2026-11-30 is a Monday.
        assert_eq!(
            next("0 5 * * MON *", "2026-11-30T04:00:00Z").as_deref(),
            Some("2026-11-30T05:00:00+00:00")
        );
        assert_eq!(
            next("0 5 * * 7 *", "2026-11-30T04:00:00Z").as_deref(),
            Some("2026-12-06T05:00:00+00:00")
        );
        // Both day fields must match: the 13th that is a Friday.
        assert_eq!(
            next("0 0 13 * 5 *", "2026-01-01T00:00:00Z").as_deref(),
            Some("2026-02-13T00:00:00+00:00")
        );
        // `n/step` is only n.
        assert_eq!(
            next("10/15 * * * * *", "2026-11-30T10:11:00Z").as_deref(),
            Some("2026-11-30T11:10:00+00:00")
        );
        // One year; a past one never fires again.
        assert_eq!(
            next("1 1 1 1 * 2030", "2026-11-30T00:00:00Z").as_deref(),
            Some("2030-01-01T01:01:00+00:00")
        );
        assert_eq!(next("1 1 1 1 * 2020", "2026-11-30T00:00:00Z"), None);
        assert_eq!(next("0 0 31 2 * *", "2026-11-30T00:00:00Z"), None);
    }

    #[test]
    fn refusals_name_the_field_and_the_reason() {
        for (expr, field, words) in [
            ("* * * *", "expression", "4 fields"),
            ("61 * * * *", "minute", "out of range"),
            ("* 24 * * *", "hour", "out of range"),
            ("* * 0 * *", "day-of-month", "out of range"),
            ("* * * 13 *", "month", "out of range"),
            ("* * * FOO *", "month", "not a number"),
            ("* * * * 0 *", "day-of-week", "out of range"),
            ("* * * * 5L *", "day-of-week", "not a number"),
            ("* * * * 5#2", "day-of-week", "not a number"),
            ("*/0 * * * *", "minute", "step of 0"),
            ("5-1 * * * *", "minute", "backwards"),
            ("1,,2 * * * *", "minute", "empty item"),
            ("* * ? * *", "day-of-month", "not a number"),
            ("* * * * * 19x", "year", "one year"),
            ("* * * * * 2020-2030", "year", "one year"),
        ] {
            let error = expr.parse::<Cron>().unwrap_err();
            assert_eq!(error.field, field, "{expr}: {error}");
            assert!(error.reason.contains(words), "{expr}: {error}");
        }
    }

    #[test]
    fn occurrences_in_a_range() {
        let cron: Cron = "0 5 * * MON *".parse().unwrap();
        let all = cron
            .occurrences(at("2026-11-01T00:00:00Z"), at("2026-11-30T23:59:50Z"), 100)
            .unwrap();
        let days: Vec<u32> = all.iter().map(|t| t.day()).collect();
        assert_eq!(days, [2, 9, 16, 23, 30]);
        // The start counts when it matches.
        let from_match = cron
            .occurrences(at("2026-11-02T05:00:00Z"), at("2026-11-02T05:00:00Z"), 100)
            .unwrap();
        assert_eq!(from_match.len(), 1);
        let every: Cron = "*/1 * * * * *".parse().unwrap();
        assert_eq!(
            every
                .occurrences(
                    at("2026-11-01T00:00:00Z"),
                    at("2026-11-30T23:59:50Z"),
                    50_000
                )
                .unwrap()
                .len(),
            43_200
        );
        assert!(every
            .occurrences(at("2026-11-01T00:00:00Z"), at("2026-11-30T23:59:50Z"), 100)
            .is_err());
        let past: Cron = "0 0 1 1 * 2020".parse().unwrap();
        assert!(past
            .occurrences(at("2026-01-01T00:00:00Z"), at("2027-01-01T00:00:00Z"), 10)
            .unwrap()
            .is_empty());
    }

    /// Brute force: every minute of a window checked field by field.
    fn matches(cron: &Cron, t: DateTime<Utc>) -> bool {
        cron.year.is_none_or(|y| y == t.year())
            && has(u64::from(cron.months), t.month())
            && cron.day_matches(t.date_naive())
            && has(u64::from(cron.hours), t.hour())
            && has(cron.minutes, t.minute())
    }

    #[test]
    fn the_search_agrees_with_checking_every_minute() {
        use proptest::prelude::*;
        let field = |max: u32, min: u32| {
            prop_oneof![
                Just("*".to_string()),
                (min..=max).prop_map(|v| v.to_string()),
                (min..=max, min..=max).prop_map(|(a, b)| format!("{}-{}", a.min(b), a.max(b))),
                (1u32..=10).prop_map(|s| format!("*/{s}")),
                (min..=max, 1u32..=10).prop_map(|(a, s)| format!("{a}/{s}")),
                (min..=max, min..=max).prop_map(|(a, b)| format!("{a},{b}")),
            ]
        };
        let expressions = (
            field(59, 0),
            field(23, 0),
            field(31, 1),
            field(12, 1),
            field(7, 1),
            any::<bool>(),
        )
            .prop_map(|(m, h, d, mo, w, six)| {
                if six {
                    format!("{m} {h} {d} {mo} {w} *")
                } else {
                    format!("{m} {h} {d} {mo} {w}")
                }
            });
        let mut runner = proptest::test_runner::TestRunner::new(proptest::test_runner::Config {
            cases: 64,
            ..Default::default()
        });
        runner
            .run(&expressions, |expr| {
                let cron: Cron = expr.parse().expect("generated expressions are valid");
                let from = at("2027-12-20T00:00:00Z");
                let to = at("2028-03-10T00:00:00Z");
                let mut expected = Vec::new();
                let mut t = from;
                while t <= to {
                    if matches(&cron, t) {
                        expected.push(t);
                    }
                    t += Duration::minutes(1);
                }
                let found = cron
                    .occurrences(from, to, 200_000)
                    .expect("under the limit");
                prop_assert_eq!(found, expected, "{}", expr);
                Ok(())
            })
            .unwrap();
    }
}
