//! CyBorgBackup jobs over the core jobs of its policies' runs: integer ids in the
//! dialect's document mapped to core job ids. A launch maps its backup job at once;
//! the rest (the prune that follows a backup, the runs the core scheduler starts) is
//! mapped when jobs are next looked at. The status, times and sizes are the core job's.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::store::{self, JobLink};
use super::{Account, CbError, CyborgService};
use crate::service::jobs::JobError;
use crate::state::jobs::{JobKind, JobStatus, JobView};

/// A job as CyBorgBackup shows it.
#[derive(Debug, Clone)]
pub struct JobRow {
    pub id: u64,
    pub link: JobLink,
    pub core: JobView,
    /// Jobs that follow this one (its prune).
    pub dependents: Vec<u64>,
}

/// A core job status in CyBorgBackup's words.
pub fn status_name(status: JobStatus) -> &'static str {
    match status {
        JobStatus::Queued => "pending",
        JobStatus::Running => "running",
        JobStatus::Succeeded => "successful",
        JobStatus::Failed => "failed",
        JobStatus::Cancelled => "canceled",
    }
}

pub fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

impl JobRow {
    pub fn is_active(&self) -> bool {
        !self.core.status.is_finished()
    }

    /// A backup's archive name.
    pub fn archive_name(&self) -> Option<String> {
        (self.link.job_type == "job")
            .then(|| self.link.archive_name.clone())
            .flatten()
    }

    /// The core backup this job made.
    pub fn backup_id(&self) -> Option<String> {
        self.core
            .result
            .as_ref()?
            .get("backup")?
            .as_str()
            .map(str::to_string)
    }

    pub fn sizes(&self) -> (u64, u64) {
        let field = |name: &str| {
            self.core
                .result
                .as_ref()
                .and_then(|r| r.get(name))
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0)
        };
        (field("size"), field("stored_bytes"))
    }

    /// Seconds from start to finish (or now, while it runs).
    pub fn elapsed(&self) -> f64 {
        let Some(started) = self.core.started_at.as_deref().and_then(parse_time) else {
            return 0.0;
        };
        let end = self
            .core
            .finished_at
            .as_deref()
            .and_then(parse_time)
            .unwrap_or_else(Utc::now);
        let millis = (end - started).num_milliseconds().max(0);
        millis as f64 / 1000.0
    }

    /// What happened, as text.
    pub fn stdout(&self) -> String {
        let core = &self.core;
        let mut out = String::new();
        if let Some(archive) = self.archive_name() {
            out.push_str(&format!("Archive name: {archive}\n"));
        }
        out.push_str(&format!(
            "{} ({})\n",
            core.subject.as_deref().unwrap_or("job"),
            core.id
        ));
        out.push_str(&format!("Created: {}\n", core.created_at));
        if let Some(t) = &core.started_at {
            out.push_str(&format!("Started: {t}\n"));
        }
        if let Some(t) = &core.finished_at {
            out.push_str(&format!("Finished: {t}\n"));
        }
        out.push_str(&format!("Status: {}\n", status_name(core.status)));
        if core.progress.files_done > 0 {
            out.push_str(&format!("Files: {}\n", core.progress.files_done));
        }
        out.push_str(&format!("Bytes: {}\n", core.progress.bytes_done));
        if let Some(error) = &core.error {
            out.push_str(&format!("Error: {error}\n"));
        }
        if let Some(result) = &core.result {
            let pretty = serde_json::to_string_pretty(result).unwrap_or_default();
            out.push_str(&format!("Result: {pretty}\n"));
        }
        out
    }
}

/// Whether the core job behind `link` is still queued or running.
pub(super) fn is_active(core: &super::Core, link: &JobLink) -> bool {
    core.jobs
        .get(&link.core)
        .is_ok_and(|j| !j.status.is_finished())
}

/// The archive name of a backup of `policy_type` on `hostname` created at `created`
/// (RFC 3339): borg's minute-resolution name, made unique among the names given.
pub fn archive_name_for(
    state: &store::StateFile,
    policy_type: &str,
    hostname: &str,
    created: &str,
) -> String {
    let created = parse_time(created).unwrap_or_else(Utc::now);
    let base = format!(
        "{policy_type}-{hostname}-{}",
        created.format("%Y-%m-%d_%H-%M")
    );
    let taken = |name: &str| {
        state
            .jobs
            .values()
            .any(|l| l.archive_name.as_deref() == Some(name))
    };
    if !taken(&base) {
        return base;
    }
    (2..)
        .map(|n| format!("{base}_{n}"))
        .find(|name| !taken(name))
        .unwrap_or(base)
}

/// What a core backup job's subject names: the CyBorgBackup policy id, the client id
/// (none in the subjects of earlier versions, which ran on the local client), and
/// whether the run was scheduled (`policy cyborgbackup-<id>-<client> (scheduled): ...`).
fn policy_of_subject(subject: &str) -> Option<(u64, Option<u64>, bool)> {
    let rest = subject.strip_prefix("policy cyborgbackup-")?;
    let number = |text: &str| -> Option<(u64, usize)> {
        let digits = text.bytes().take_while(u8::is_ascii_digit).count();
        Some((text.get(..digits)?.parse().ok()?, digits))
    };
    let (policy, used) = number(rest)?;
    let mut after = rest.get(used..)?;
    let mut client = None;
    if let Some(tail) = after.strip_prefix('-') {
        let (id, used) = number(tail)?;
        client = Some(id);
        after = tail.get(used..)?;
    }
    if !after.starts_with(" (") {
        return None;
    }
    Some((policy, client, after.starts_with(" (scheduled)")))
}

impl CyborgService {
    /// Maps the core jobs of its policies that have no id yet: the scheduler's runs and
    /// the prunes after its backups.
    pub fn sync_jobs(&self) {
        let Ok(core) = self.core() else {
            return;
        };
        let views = core.jobs.list();
        let mut state = self.lock();
        let known: BTreeMap<String, u64> = state
            .jobs
            .iter()
            .map(|(id, link)| (link.core.clone(), *id))
            .collect();
        let mut changed = false;
        let live: std::collections::HashSet<&str> = views.iter().map(|v| v.id.as_str()).collect();
        let before = state.forgotten_jobs.len();
        state.forgotten_jobs.retain(|id| live.contains(id.as_str()));
        changed |= before != state.forgotten_jobs.len();
        // Oldest first, so a backup is mapped before its prune.
        for view in views.iter().rev() {
            if known.contains_key(&view.id) || state.forgotten_jobs.contains(&view.id) {
                continue;
            }
            let link = match view.kind {
                JobKind::Policy => {
                    let Some((policy_id, client_id, scheduled)) =
                        view.subject.as_deref().and_then(policy_of_subject)
                    else {
                        continue;
                    };
                    let Some(policy) = state.policies.get(&policy_id) else {
                        continue;
                    };
                    let client = match client_id {
                        Some(id) => state.clients.get(&id),
                        None => policy
                            .clients
                            .iter()
                            .filter_map(|c| state.clients.get(c))
                            .find(|c| c.hostname == super::policies::LOCAL_CLIENT),
                    };
                    let hostname =
                        client.map_or(super::policies::LOCAL_CLIENT, |c| c.hostname.as_str());
                    let archive_name = Some(archive_name_for(
                        &state,
                        &policy.policy_type,
                        hostname,
                        &view.created_at,
                    ));
                    JobLink {
                        archive_name,
                        core: view.id.clone(),
                        job_type: "job".into(),
                        launch_type: if scheduled { "scheduled" } else { "manual" }.into(),
                        policy: policy_id,
                        policy_name: policy.name.clone(),
                        policy_type: policy.policy_type.clone(),
                        client: client.map(|c| c.id),
                        hostname: hostname.to_string(),
                        repository: policy.repository,
                        schedule: Some(policy.schedule),
                        master_job: None,
                        created_by: None,
                    }
                }
                // A catalog check follows its backup; a prune follows the catalog check
                // (or the backup, when catalogs are not checked).
                JobKind::Prune | JobKind::Catalog => {
                    let master = view.parent.as_deref().and_then(|p| {
                        state
                            .jobs
                            .iter()
                            .find(|(_, l)| l.core == p)
                            .map(|(id, l)| (*id, l.clone()))
                    });
                    let Some((master_id, master)) = master else {
                        continue;
                    };
                    JobLink {
                        core: view.id.clone(),
                        job_type: if view.kind == JobKind::Catalog {
                            "catalog"
                        } else {
                            "prune"
                        }
                        .into(),
                        launch_type: "dependency".into(),
                        master_job: Some(master_id),
                        archive_name: None,
                        ..master
                    }
                }
                _ => continue,
            };
            let id = store::take_id(&mut state.next_job_id);
            state.jobs.insert(id, link);
            changed = true;
        }
        if changed {
            if let Err(error) = self.save(&state) {
                tracing::error!(%error, "cannot record the CyBorgBackup jobs");
            }
        }
    }

    fn rows(&self, links: Vec<(u64, JobLink)>) -> Vec<JobRow> {
        let Ok(core) = self.core() else {
            return Vec::new();
        };
        let dependents = |id: u64| -> Vec<u64> {
            links
                .iter()
                .filter(|(_, l)| l.master_job == Some(id))
                .map(|(d, _)| *d)
                .collect()
        };
        links
            .iter()
            .filter_map(|(id, link)| {
                let view = core.jobs.get(&link.core).ok()?;
                Some(JobRow {
                    id: *id,
                    link: link.clone(),
                    core: view,
                    dependents: dependents(*id),
                })
            })
            .collect()
    }

    /// Every job whose core job is still remembered, by id.
    pub fn list_jobs(&self) -> Vec<JobRow> {
        self.sync_jobs();
        let links: Vec<(u64, JobLink)> = self
            .lock()
            .jobs
            .iter()
            .map(|(id, l)| (*id, l.clone()))
            .collect();
        self.rows(links)
    }

    pub fn job(&self, id: u64) -> Result<JobRow, CbError> {
        self.list_jobs()
            .into_iter()
            .find(|r| r.id == id)
            .ok_or(CbError::NotFound("Job"))
    }

    /// Asks a job to stop; `false` when it is no longer active.
    pub fn cancel_job(&self, caller: &Account, id: u64) -> Result<bool, CbError> {
        super::authorize(caller, super::Action::Manage)?;
        let row = self.job(id)?;
        match self.core()?.jobs.cancel(&row.core.id) {
            Ok(_) => Ok(true),
            Err(JobError::Finished { .. }) => Ok(false),
            Err(JobError::NotFound { .. }) => Err(CbError::NotFound("Job")),
        }
    }

    /// Launches the job's policy again.
    pub fn relaunch_job(&self, caller: &Account, id: u64) -> Result<JobRow, CbError> {
        super::authorize(caller, super::Action::Manage)?;
        let row = self.job(id)?;
        if row.link.job_type == "restore" {
            return Err(CbError::BadRequest(
                "A restore job is not relaunched: post the restore to /api/v1/restore/ again."
                    .into(),
            ));
        }
        self.launch_policy(caller, row.link.policy, "relaunch")
            .map_err(|e| match e {
                CbError::BadRequest(m) if m == super::policies::BUSY => {
                    CbError::BadRequest("Backup job already running for this client.".into())
                }
                other => other,
            })
    }

    /// Forgets a finished job (the core keeps its record until its history bound).
    pub fn delete_job(&self, caller: &Account, id: u64) -> Result<(), CbError> {
        super::authorize(caller, super::Action::Manage)?;
        let row = self.job(id)?;
        if row.is_active() {
            return Err(CbError::Refused(
                "Cannot delete running job resource.".into(),
            ));
        }
        let mut state = self.lock();
        state.jobs.remove(&id);
        state.forgotten_jobs.insert(row.core.id);
        self.save(&state)
    }

    /// The original's hourly cleanup: forgets every backup job whose archive is no
    /// longer kept (pruned into the recycle bin, or deleted); its catalog entries went
    /// when the prune ended. Like the original, it does nothing while a job is active,
    /// so no chain loses its head mid-run. Returns how many jobs it forgot.
    pub fn forget_pruned_jobs(&self) -> usize {
        let Ok(core) = self.core() else {
            return 0;
        };
        let rows = self.list_jobs();
        if rows.iter().any(JobRow::is_active) {
            return 0;
        }
        let gone: Vec<(u64, String)> = rows
            .iter()
            .filter(|row| row.link.job_type == "job" && row.core.status == JobStatus::Succeeded)
            .filter_map(|row| {
                let id = crate::repo::lookup_id(&row.backup_id()?).ok()?;
                let pruned = match core.repo.recycled_at(&id) {
                    Ok(recycled) => recycled.is_some(),
                    Err(crate::repo::RepoError::BackupNotFound { .. }) => true,
                    // Unknown (an unreadable index): kept until it can be told.
                    Err(_) => false,
                };
                pruned.then(|| (row.id, row.core.id.clone()))
            })
            .collect();
        if gone.is_empty() {
            return 0;
        }
        let mut state = self.lock();
        for (id, core_id) in &gone {
            state.jobs.remove(id);
            state.forgotten_jobs.insert(core_id.clone());
        }
        if let Err(error) = self.save(&state) {
            tracing::error!(%error, "cannot forget the jobs of pruned archives");
            return 0;
        }
        gone.len()
    }

    /// Per day of the last 30, the backups' sizes and outcomes, oldest first.
    pub fn stats(&self) -> Vec<DayStats> {
        let since = Utc::now() - chrono::Duration::days(30);
        let mut days: BTreeMap<String, DayStats> = BTreeMap::new();
        for row in self.list_jobs() {
            if row.link.job_type != "job" {
                continue;
            }
            let Some(started) = row.core.started_at.as_deref().and_then(parse_time) else {
                continue;
            };
            if started < since {
                continue;
            }
            let date = started.format("%Y-%m-%d").to_string();
            let day = days.entry(date.clone()).or_insert_with(|| DayStats {
                date,
                ..DayStats::default()
            });
            let (size, dedup) = row.sizes();
            day.size += size;
            day.dedup += dedup;
            match row.core.status {
                JobStatus::Succeeded => day.success += 1,
                JobStatus::Failed | JobStatus::Cancelled => day.failed += 1,
                _ => {}
            }
        }
        days.into_values().collect()
    }
}

/// One day of `/stats/`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct DayStats {
    pub date: String,
    pub size: u64,
    pub dedup: u64,
    pub success: u64,
    pub failed: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_name_their_policy() {
        assert_eq!(
            policy_of_subject("policy cyborgbackup-12-4 (scheduled): /a into series s"),
            Some((12, Some(4), true))
        );
        assert_eq!(
            policy_of_subject("policy cyborgbackup-3 (on demand): /a into series s"),
            Some((3, None, false))
        );
        for other in [
            "policy cyborgbackup-3x (on demand)",
            "policy cyborgbackup-3- (on demand)",
            "policy cyborgbackup-3-1x (on demand)",
            "policy other (on demand)",
        ] {
            assert_eq!(policy_of_subject(other), None, "{other}");
        }
    }
}
