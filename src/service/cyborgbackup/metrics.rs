//! CyBorgBackup's Prometheus gauges (`cyborgbackup_*`), with the names and labels of the
//! original's `/metrics`, rendered from the dialect's records and the engine's figures.
//! Which requests see them is the `metrics_*` settings' decision
//! ([`CyborgService::metrics_for`]); the core's own series are served beside them.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::jobs::status_name;
use super::policies::POLICY_TYPES;
use super::CyborgService;
use crate::service::keys::{Principal, Role};

/// The original's version string, as `cyborgbackup_info` reports it.
const VERSION: &str = "1.4";

/// Every job status the original counts.
const JOB_STATUSES: [&str; 9] = [
    "new",
    "pending",
    "waiting",
    "running",
    "successful",
    "failed",
    "error",
    "canceled",
    "starting",
];

/// A label value in the exposition format: `\`, `"` and newlines escaped.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Python's text of a boolean, as the original's labels carry it.
fn python_bool(value: bool) -> &'static str {
    if value {
        "True"
    } else {
        "False"
    }
}

/// One gauge: its help, then each sample `labels → value`.
struct Gauge<'a> {
    out: &'a mut String,
    name: &'static str,
}

impl<'a> Gauge<'a> {
    fn new(out: &'a mut String, name: &'static str, help: &str) -> Gauge<'a> {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        Gauge { out, name }
    }

    /// One sample per flag value, `enabled="True"` and `"False"`, counted by `count`.
    fn by_flag(&mut self, instance: &str, count: impl Fn(bool) -> usize) {
        for state in [true, false] {
            self.sample(
                &[("instance", instance), ("enabled", python_bool(state))],
                count(state) as f64,
            );
        }
    }

    fn sample(&mut self, labels: &[(&str, &str)], value: f64) {
        let labels: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", label(v)))
            .collect();
        let _ = writeln!(self.out, "{}{{{}}} {value:?}", self.name, labels.join(","));
    }
}

impl CyborgService {
    /// The gauges for a request that carried `basic` (the user and password of an
    /// `Authorization: Basic` header, if any): none while `metrics_enabled` is off, and
    /// with `metrics_auth` on only for the settings' user and password.
    pub fn metrics_for(&self, basic: Option<(&str, &str)>) -> Option<String> {
        let settings = self.settings();
        if !settings.metrics_enabled {
            return None;
        }
        if settings.metrics_auth {
            let (user, password) = basic?;
            let same = |a: &str, b: &str| {
                use subtle::ConstantTimeEq;
                bool::from(a.as_bytes().ct_eq(b.as_bytes()))
            };
            // Both compared, so the time does not tell which one was wrong.
            let user_ok = same(user, &settings.metrics_auth_username);
            let password_ok = same(password, &settings.metrics_auth_password);
            if !(user_ok && password_ok) {
                return None;
            }
        }
        Some(self.render_metrics())
    }

    /// The gauges, whoever asks.
    pub fn render_metrics(&self) -> String {
        let instance = self
            .core()
            .map(|c| c.local_hostname.clone())
            .unwrap_or_default();
        let instance = instance.as_str();
        // The jobs are read once: the repositories' and clients' live figures come from
        // the same rows.
        let jobs = self.list_jobs();
        let live = self.live(&jobs);
        let repositories = self.repositories_shown(&live);
        let clients = self.clients_shown(&live);
        let (policies, schedules_enabled) = {
            let state = self.lock();
            let policies: Vec<(String, String, bool, usize)> = state
                .policies
                .values()
                .map(|p| {
                    (
                        p.name.clone(),
                        p.policy_type.clone(),
                        p.enabled,
                        p.clients.len(),
                    )
                })
                .collect();
            let cores: Vec<String> = state.schedules.values().map(|l| l.core.clone()).collect();
            (policies, cores)
        };
        let reader = Principal {
            key_id: "cyborgbackup-metrics".into(),
            name: "CyBorgBackup metrics".into(),
            role: Role::Reader,
        };
        let schedules: Vec<bool> = self
            .schedules
            .list(&reader)
            .map(|all| {
                all.into_iter()
                    .filter(|s| schedules_enabled.contains(&s.name))
                    .map(|s| s.enabled)
                    .collect()
            })
            .unwrap_or_default();

        let mut out = String::new();
        Gauge::new(&mut out, "cyborgbackup_info", "CyBorgBackup Instance")
            .sample(&[("instance", instance), ("version", VERSION)], 1.0);

        let mut by_status: BTreeMap<&str, u64> = BTreeMap::new();
        for row in &jobs {
            *by_status.entry(status_name(row.core.status)).or_default() += 1;
        }
        let mut gauge = Gauge::new(
            &mut out,
            "cyborgbackup_jobs_status",
            "CyBorgBackup Job Status",
        );
        for status in JOB_STATUSES {
            let count = by_status.get(status).copied().unwrap_or(0);
            gauge.sample(&[("instance", instance), ("status", status)], count as f64);
        }

        Gauge::new(
            &mut out,
            "cyborgbackup_policies_enabled",
            "CyBorgBackup Policies Enabled",
        )
        .by_flag(instance, |state| {
            policies.iter().filter(|p| p.2 == state).count()
        });

        let mut gauge = Gauge::new(
            &mut out,
            "cyborgbackup_policies_type",
            "CyBorgBackup Policies Type",
        );
        for kind in POLICY_TYPES {
            let count = policies.iter().filter(|p| p.1 == kind).count();
            gauge.sample(
                &[("instance", instance), ("policy_type", kind)],
                count as f64,
            );
        }

        // The original labels each policy's name `policy_type`; kept, as dashboards
        // query it so.
        let mut gauge = Gauge::new(
            &mut out,
            "cyborgbackup_policies_clients",
            "CyBorgBackup Policies Clients",
        );
        for (name, _, _, clients) in &policies {
            gauge.sample(
                &[("instance", instance), ("policy_type", name)],
                *clients as f64,
            );
        }

        Gauge::new(
            &mut out,
            "cyborgbackup_clients_enabled",
            "CyBorgBackup Clients Enabled",
        )
        .by_flag(instance, |state| {
            clients.iter().filter(|c| c.enabled == state).count()
        });
        Gauge::new(
            &mut out,
            "cyborgbackup_schedules_enabled",
            "CyBorgBackup Schedules Enabled",
        )
        .by_flag(instance, |state| {
            schedules.iter().filter(|e| **e == state).count()
        });

        let mut gauge = Gauge::new(
            &mut out,
            "cyborgbackup_repositories_size",
            "CyBorgBackup Repositories Sizing",
        );
        for repository in &repositories {
            for (stat, value) in [
                ("compressed", repository.compressed_size),
                ("deduplicated", repository.deduplicated_size),
                ("original", repository.original_size),
            ] {
                gauge.sample(
                    &[
                        ("instance", instance),
                        ("repository_name", &repository.name),
                        ("stat", stat),
                    ],
                    value as f64,
                );
            }
        }

        let backups: Vec<_> = jobs
            .iter()
            .filter_map(|row| row.archive_name().map(|name| (row, name)))
            .collect();
        let mut gauge = Gauge::new(
            &mut out,
            "cyborgbackup_backups_size",
            "CyBorgBackup Backup Sizing",
        );
        for (row, archive) in &backups {
            let (size, stored) = row.sizes();
            for (stat, value) in [
                ("compressed", stored),
                ("deduplicated", stored),
                ("original", size),
            ] {
                gauge.sample(
                    &[
                        ("instance", instance),
                        ("archive_name", archive),
                        ("stat", stat),
                    ],
                    value as f64,
                );
            }
        }
        let mut gauge = Gauge::new(
            &mut out,
            "cyborgbackup_jobs_duration",
            "CyBorgBackup Job Duration",
        );
        for (row, archive) in &backups {
            gauge.sample(
                &[
                    ("instance", instance),
                    ("archive_name", archive),
                    ("client", &row.link.hostname),
                    ("policy_type", &row.link.policy_type),
                ],
                row.elapsed(),
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        let mut out = String::new();
        Gauge::new(&mut out, "x_total", "X").sample(&[("name", "q\"")], 2.0);
        assert_eq!(
            out,
            "# HELP x_total X\n# TYPE x_total gauge\nx_total{name=\"q\\\"\"} 2.0\n"
        );
    }
}
