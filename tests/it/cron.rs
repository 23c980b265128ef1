//! Six-field schedules against the reference: CyBorgBackup computes its calendars and
//! next runs with the `tzcron` 1.0.0 package, installed here from PyPI into a venv
//! under `target/`. Every expression's occurrences in a range must be exactly tzcron's.

use chrono::{DateTime, Utc};
use serde_json::json;
use stowage::service::cron::Cron;

/// Expressions across month ends, leap days, weekday lists and ranges, steps and years,
/// with the range each is expanded over (both ends inclusive).
const CASES: &[(&str, &str, &str)] = &[
    (
        "0 5 * * MON *",
        "2026-11-01T00:00:00Z",
        "2026-11-30T23:59:00Z",
    ),
    (
        "30 23 31 * * *",
        "2026-01-01T00:00:00Z",
        "2026-12-31T23:59:00Z",
    ),
    (
        "0 0 29 2 * *",
        "2023-01-01T00:00:00Z",
        "2032-12-31T00:00:00Z",
    ),
    (
        "0 12 29 FEB 4 *",
        "2000-01-01T00:00:00Z",
        "2060-01-01T00:00:00Z",
    ),
    (
        "15 8 * * 1,3,5 *",
        "2026-02-20T00:00:00Z",
        "2026-03-10T00:00:00Z",
    ),
    (
        "0 22 * * 6-7 *",
        "2026-12-20T00:00:00Z",
        "2027-01-10T00:00:00Z",
    ),
    (
        "*/20 */6 1 * * *",
        "2026-05-01T00:00:00Z",
        "2026-07-02T00:00:00Z",
    ),
    (
        "5-50/15 3 * * * *",
        "2026-11-29T00:00:00Z",
        "2026-12-02T00:00:00Z",
    ),
    (
        "10/15 * 1 1 * *",
        "2027-01-01T00:00:00Z",
        "2027-01-01T23:59:00Z",
    ),
    (
        "0 0 13 * 5 *",
        "2026-01-01T00:00:00Z",
        "2028-12-31T00:00:00Z",
    ),
    (
        "1 1 1 1 * 2030",
        "2026-11-30T00:00:00Z",
        "2031-01-01T00:00:00Z",
    ),
    (
        "1 1 1 1 * 2020",
        "2026-11-30T00:00:00Z",
        "2031-01-01T00:00:00Z",
    ),
    (
        "0 9 1-7 * MON *",
        "2026-01-01T00:00:00Z",
        "2026-12-31T00:00:00Z",
    ),
    (
        "0 0 * jan,jul sun *",
        "2026-01-01T00:00:00Z",
        "2027-12-31T00:00:00Z",
    ),
    (
        "59 23 28-31 2 * *",
        "2027-01-01T00:00:00Z",
        "2029-01-01T00:00:00Z",
    ),
    (
        "*/1 * * * * *",
        "2026-11-01T00:00:00Z",
        "2026-11-30T23:59:50Z",
    ),
];

const REFERENCE: &str = r#"
import json, sys, datetime as dt
import pytz, tzcron
out = []
for case in json.load(sys.stdin):
    parse = lambda s: dt.datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=pytz.utc)
    times = []
    try:
        for t in tzcron.Schedule(case["expr"], pytz.utc, parse(case["start"]), parse(case["end"])):
            times.append(t.astimezone(pytz.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
    except StopIteration:
        pass
    out.append(times)
json.dump(out, sys.stdout)
"#;

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_field_calendars_equal_tzcrons() {
    let venv = tokio::task::spawn_blocking(|| {
        crate::support::python_venv(
            "tzcron",
            &["tzcron==1.0.0", "pytz", "python-dateutil", "six"],
        )
    })
    .await
    .unwrap();
    let input = json!(CASES
        .iter()
        .map(|(expr, start, end)| json!({"expr": expr, "start": start, "end": end}))
        .collect::<Vec<_>>());
    let mut child = std::process::Command::new(venv.join("bin/python"))
        .args(["-c", REFERENCE])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "tzcron: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let reference: Vec<Vec<String>> = serde_json::from_slice(&output.stdout).unwrap();
    for ((expr, start, end), expected) in CASES.iter().zip(reference) {
        let cron: Cron = expr.parse().unwrap_or_else(|e| panic!("{expr}: {e}"));
        let found: Vec<String> = cron
            .occurrences(at(start), at(end), 100_000)
            .unwrap()
            .iter()
            .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
            .collect();
        assert_eq!(found.len(), expected.len(), "{expr}: count differs");
        assert_eq!(found, expected, "{expr}");
        // The next run after the start, where the calendar has one, is its second entry.
        if expected.len() > 1 {
            let first = at(&expected[0]);
            let next = cron.next_after(first).unwrap();
            assert_eq!(next, at(&expected[1]), "{expr}");
        }
    }
}
