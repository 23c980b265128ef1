//! Running backup policies: on demand, or by the scheduler when their schedule fires.
//! A run is a chain of jobs in the one job system: the backup (`policy`: the folders as
//! one tree with its catalog, or the program's output as one stream); when it made a
//! catalog and the policy checks catalogs, the catalog read back from the repository and
//! checked (`catalog`, whose `parent` is the backup job); then, when every step before
//! succeeded and a retention applies (the policy's, else its series'), the prune
//! (`prune`, whose `parent` is the step before). A policy never runs twice at once.
//!
//! Folders are checked again when the run starts: each must resolve to itself (no
//! symbolic link on the way) inside a configured root; the walk records links and
//! never follows them, so nothing outside the roots is read.
//!
//! A client host's folders are backed up by that host's agent: the run's backup job is
//! an assignment (`service::agents`), queued until the agent takes it, and the prune
//! follows once the agent's backup is checked and the job has succeeded.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};
use serde_json::json;

use super::agents::{AgentAction, Agents};
use super::command_source::CommandOutput;
use super::cron::Cron;
use super::forget::forget;
use super::jobs::{JobFailure, JobKind, JobRegistry, JobStatus, JobView};
use super::keys::{Principal, Role};
use super::policies::{exclusion_set, validate_folder, Policies, PolicyError};
use crate::format::manifest::BackupManifest;
use crate::format::series::RetentionPolicy;
use crate::repo::ingest::IngestOptions;
use crate::repo::tree_source::TreeSelection;
use crate::repo::{Progress, RepoError, Repository};
use crate::state::policies::{PolicyRecord, PolicySource};

/// How often the scheduler looks for policies whose schedule fired.
pub const CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(15);

/// Why a run started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// Asked for (API, command line, a dialect's launch).
    Manual,
    /// Its schedule fired.
    Scheduled,
}

/// What a run reads, checked.
enum Prepared {
    Folders(TreeSelection),
    Command(Vec<String>),
    /// An assignment for the agent of the host.
    Agent {
        host: String,
        action: AgentAction,
    },
}

pub struct PolicyRunner {
    policies: Policies,
    repo: Repository,
    jobs: Arc<JobRegistry>,
    agents: Arc<Agents>,
    /// Policy name → the job of its run in progress (backup or prune).
    running: Mutex<HashMap<String, String>>,
    /// The last time the scheduler looked; schedules that fired since run at its next
    /// look. Starts when the server does: times missed while it was down are not
    /// caught up.
    last_look: Mutex<DateTime<Utc>>,
}

/// The scheduler, as the principal of scheduled runs.
fn scheduler_principal() -> Principal {
    Principal {
        key_id: "scheduler".into(),
        name: "policy scheduler".into(),
        role: Role::Writer,
    }
}

impl PolicyRunner {
    pub fn new(
        policies: Policies,
        repo: Repository,
        jobs: Arc<JobRegistry>,
        agents: Arc<Agents>,
    ) -> PolicyRunner {
        PolicyRunner {
            policies,
            repo,
            jobs,
            agents,
            running: Mutex::new(HashMap::new()),
            last_look: Mutex::new(Utc::now()),
        }
    }

    pub fn policies(&self) -> &Policies {
        &self.policies
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Checks what the policy reads, as the disk is now.
    fn prepare(&self, record: &PolicyRecord) -> Result<Prepared, PolicyError> {
        let rules = self
            .policies
            .rules()
            .ok_or_else(|| PolicyError::Forbidden("policies run only in the server".into()))?;
        match &record.source {
            PolicySource::Folders { paths, exclude } => {
                let mut folders = Vec::new();
                for path in paths {
                    let folder: PathBuf = validate_folder(path)?;
                    rules.check_folder(&folder)?;
                    if let Err(error) = std::fs::symlink_metadata(&folder) {
                        return Err(PolicyError::Invalid(format!("folder {path}: {error}")));
                    }
                    folders.push(folder);
                }
                Ok(Prepared::Folders(TreeSelection {
                    folders,
                    exclude: exclusion_set(exclude)?,
                }))
            }
            PolicySource::Command { argv } => {
                rules.check_command()?;
                Ok(Prepared::Command(argv.clone()))
            }
            PolicySource::Agent {
                host,
                paths,
                exclude,
            } => Ok(Prepared::Agent {
                host: host.clone(),
                action: AgentAction::Backup {
                    series: record.series.clone(),
                    paths: paths.clone(),
                    exclude: exclude.clone(),
                },
            }),
        }
    }

    /// Starts a run of the policy `name`; returns its backup job.
    pub fn run(
        self: &Arc<Self>,
        who: &Principal,
        name: &str,
        trigger: Trigger,
    ) -> Result<JobView, PolicyError> {
        who.require(Role::Writer)?;
        let record = self.policies.record(name)?;
        let prepared = match self.prepare(&record) {
            Ok(prepared) => prepared,
            Err(error) => {
                // Nobody waits on a scheduled run for its answer: the refusal is recorded
                // as a failed job, where people look.
                if trigger == Trigger::Scheduled {
                    let job = self.jobs.begin(
                        JobKind::Policy,
                        Some(format!("policy {name} (scheduled): not started")),
                        Arc::new(Progress::new()),
                    );
                    self.jobs
                        .end(&job, Err(JobFailure::new(error.kind(), error.to_string())));
                    if let Err(e) = self.policies.record_run(name, &job, Utc::now()) {
                        tracing::error!(policy = %name, error = %e, "cannot record the policy's run");
                    }
                }
                return Err(error);
            }
        };
        let progress = Arc::new(Progress::new());
        let job = {
            let mut running = self.running();
            if let Some(job) = running.get(name) {
                return Err(PolicyError::Running {
                    name: name.to_string(),
                    job: job.clone(),
                });
            }
            let what = match &record.source {
                PolicySource::Folders { paths, .. } => paths.join(", "),
                PolicySource::Command { argv } => argv.join(" "),
                PolicySource::Agent { host, paths, .. } => format!("{host}:{}", paths.join(", ")),
            };
            let subject = format!(
                "policy {name} ({}): {what} into series {}",
                match trigger {
                    Trigger::Manual => "on demand",
                    Trigger::Scheduled => "scheduled",
                },
                record.series
            );
            let job = match &prepared {
                Prepared::Agent { host, action } => {
                    self.agents
                        .assign_as(who, host, action.clone(), JobKind::Policy, subject)?
                }
                _ => self
                    .jobs
                    .begin(JobKind::Policy, Some(subject), progress.clone()),
            };
            running.insert(name.to_string(), job.clone());
            job
        };
        if let Err(error) = self.policies.record_run(name, &job, Utc::now()) {
            tracing::error!(policy = %name, %error, "cannot record the policy's run");
        }
        let runner = self.clone();
        let (policy, chain) = (name.to_string(), job.clone());
        if let Prepared::Agent { .. } = prepared {
            // The agent does the work; this only waits for its end to prune. At shutdown
            // it stops waiting (the job is then recorded as interrupted).
            let tasks = self.jobs.tasks().clone();
            self.jobs.tasks().spawn(async move {
                tokio::select! {
                    _ = tasks.cancelled() => {}
                    _ = runner.after_agent(&record, &chain) => {}
                }
                runner.running().remove(&policy);
            });
        } else {
            self.jobs.tasks().spawn_job(progress.clone(), async move {
                runner.carry_out(&record, prepared, &chain, progress).await;
                runner.running().remove(&policy);
            });
        }
        self.jobs
            .get(&job)
            .map_err(|e| PolicyError::Invalid(e.to_string()))
    }

    /// Waits for the agent's backup job `job`; once it succeeded, the prune.
    async fn after_agent(&self, record: &PolicyRecord, job: &str) {
        let Some(view) = self.jobs.finished(job).await else {
            return;
        };
        if view.status != JobStatus::Succeeded {
            return;
        }
        // The result's backup was checked against the series when the agent ended the job.
        let made = view
            .result
            .as_ref()
            .and_then(|r| r.get("backup"))
            .and_then(serde_json::Value::as_str)
            .and_then(|id| crate::repo::lookup_id(id).ok())
            .and_then(|id| self.repo.backup(&id).ok());
        let Some(made) = made else {
            tracing::error!(job, "an agent's checked backup is not in the repository");
            return;
        };
        if let Some(step) = self.check_catalog(record, job, &made).await {
            self.prune(record, &step, made.id.as_ref()).await;
        }
    }

    /// Reads the new backup's catalog back from the repository and checks it (every
    /// line, the entry count, the index's marks), as a `catalog` job after `parent`,
    /// when the policy asks for it and the backup has a catalog. The job the prune
    /// follows, or `None` when the check failed: nothing follows a failed step.
    async fn check_catalog(
        &self,
        record: &PolicyRecord,
        parent: &str,
        made: &BackupManifest,
    ) -> Option<String> {
        let Some(catalog) = made.catalog.as_ref().filter(|_| record.catalog_check) else {
            return Some(parent.to_string());
        };
        let progress = Arc::new(Progress::new());
        progress.set_files_total(catalog.entries);
        let job = self.jobs.begin_after(
            parent,
            JobKind::Catalog,
            Some(format!(
                "catalog of backup {} after policy {}",
                made.id, record.name
            )),
            progress,
        );
        let outcome = self.repo.verify_catalog(made).await;
        let checked = outcome.is_ok();
        self.jobs.end(
            &job,
            outcome.map_err(JobFailure::from).map(|entries| {
                json!({
                    "backup": made.id,
                    "entries": entries,
                    "indexed": catalog.index.is_some(),
                })
            }),
        );
        checked.then_some(job)
    }

    /// The backup, then the prune.
    async fn carry_out(
        &self,
        record: &PolicyRecord,
        prepared: Prepared,
        job: &str,
        progress: Arc<Progress>,
    ) {
        let outcome = self.back_up(record, prepared, progress.clone()).await;
        // Committed after a cancellation arrived: undone, so a cancelled run leaves
        // nothing behind.
        let outcome = match outcome {
            Ok((manifest, _)) if progress.is_cancelled() => {
                if let Err(error) = self.repo.purge(&manifest.id).await {
                    tracing::error!(backup = %manifest.id, %error, "cannot purge the backup of a cancelled policy run");
                }
                Err(RepoError::Cancelled)
            }
            other => other,
        };
        let manifest = match outcome {
            Ok((manifest, skipped)) => {
                self.jobs.end(
                    job,
                    Ok(json!({
                        "policy": record.name,
                        "series": record.series,
                        "backup": manifest.id,
                        "size": manifest.size,
                        "stored_bytes": manifest.stored_bytes,
                        "catalog_entries": manifest.catalog.as_ref().map(|c| c.entries),
                        "skipped": skipped,
                    })),
                );
                manifest
            }
            Err(error) => {
                self.jobs.end(job, Err(JobFailure::from(error)));
                return;
            }
        };
        if let Some(step) = self.check_catalog(record, job, &manifest).await {
            self.prune(record, &step, manifest.id.as_ref()).await;
        }
    }

    async fn back_up(
        &self,
        record: &PolicyRecord,
        prepared: Prepared,
        progress: Arc<Progress>,
    ) -> Result<(BackupManifest, Vec<String>), RepoError> {
        match self
            .repo
            .create_series(&record.series, RetentionPolicy::default())
            .await
        {
            Ok(_) | Err(RepoError::SeriesExists { .. }) => {}
            Err(error) => return Err(error),
        }
        match prepared {
            Prepared::Folders(selection) => {
                let options = IngestOptions {
                    detect_tar: false,
                    ..IngestOptions::new(record.series.clone(), format!("policy {}", record.name))
                };
                self.repo
                    .backup_selection(selection, options, progress)
                    .await
            }
            Prepared::Command(argv) => {
                let program = argv.first().cloned().unwrap_or_default();
                let source = tokio::task::spawn_blocking(move || CommandOutput::spawn(&argv))
                    .await
                    .map_err(|e| RepoError::Internal(format!("starting the program: {e}")))?
                    .map_err(|e| RepoError::InvalidInput(e.to_string()))?;
                let options = IngestOptions::new(record.series.clone(), program);
                let manifest = self
                    .repo
                    .backup_stream(Box::new(source), options, progress)
                    .await?;
                Ok((manifest, Vec::new()))
            }
            Prepared::Agent { .. } => Err(RepoError::Internal(
                "a client host's folders are backed up by its agent, not here".into(),
            )),
        }
    }

    /// Applies the retention (the policy's, else the series') as a job after `parent` (the
    /// backup job, or its catalog check).
    async fn prune(&self, record: &PolicyRecord, parent: &str, made: &str) {
        let retention = match &record.retention {
            Some(retention) => retention.clone(),
            None => match self.repo.series(&record.series) {
                Ok(Some(series)) => series.policy,
                Ok(None) => return,
                Err(error) => {
                    tracing::warn!(series = %record.series, %error, "cannot read the series policy");
                    return;
                }
            },
        };
        if retention.is_empty() {
            return;
        }
        let progress = Arc::new(Progress::new());
        let job = self.jobs.begin_after(
            parent,
            JobKind::Prune,
            Some(format!(
                "prune series {} after policy {}",
                record.series, record.name
            )),
            progress,
        );
        let outcome = forget(&self.repo, &record.series, &retention, Utc::now(), false).await;
        self.jobs.end(
            &job,
            outcome.map_err(JobFailure::from).map(|decisions| {
                let (kept, removed): (Vec<_>, Vec<_>) = decisions.into_iter().partition(|d| d.keep);
                if removed.iter().any(|d| d.id == made) {
                    tracing::error!(backup = %made, "the retention removed the backup just made");
                }
                json!({
                    "series": record.series,
                    "action": retention.action,
                    "kept": kept.iter().map(|d| &d.id).collect::<Vec<_>>(),
                    "removed": removed.iter().map(|d| &d.id).collect::<Vec<_>>(),
                })
            }),
        );
    }

    /// Runs every enabled policy whose enabled schedule fired since the last look.
    pub fn run_due(self: &Arc<Self>, now: DateTime<Utc>) -> Result<(), String> {
        let since = {
            let mut last = self
                .last_look
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            std::mem::replace(&mut *last, now)
        };
        let store = self.policies.store();
        let mut problems = Vec::new();
        for record in store.policies().map_err(|e| e.to_string())? {
            let Some(schedule) = record.schedule.as_deref().filter(|_| record.enabled) else {
                continue;
            };
            let fired = match store.schedule(schedule) {
                Ok(Some(s)) if s.enabled => s
                    .crontab
                    .parse::<Cron>()
                    .ok()
                    .and_then(|cron| cron.next_after(since))
                    .is_some_and(|at| at <= now),
                Ok(_) => false,
                Err(error) => {
                    problems.push(format!("policy {}: {error}", record.name));
                    false
                }
            };
            if !fired {
                continue;
            }
            if let Err(error) = self.run(&scheduler_principal(), &record.name, Trigger::Scheduled) {
                tracing::warn!(policy = %record.name, %error, "scheduled policy run not started");
                problems.push(format!("policy {}: {error}", record.name));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}
