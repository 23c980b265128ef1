//! `POST /api/v1/restore/`: an archive (a backup job's archive name) restored into a
//! folder of a client, all of it or one `item` and what lies beneath, as a `restore`
//! job. On the local client the server restores into its own folder, confined to
//! `policies.roots` (`service::server_restore`); on any other client its agent does,
//! confined by its `--allow` folders. Paths keep their place under `dest_folder`, as
//! `borg extract` run in that folder writes them.

use super::jobs::JobRow;
use super::policy_sources::Place;
use super::store::{self, JobLink};
use super::{Account, CbError, CyborgService};
use crate::service::agents::{AgentAction, AgentError};
use crate::service::jobs::JobKind;
use crate::service::policies::PolicyError;
use crate::service::server_restore::{restore_here, RestoreRequest};

/// What the caller asked for, its fields checked for presence.
#[derive(Debug, Clone)]
pub struct RestoreForm {
    pub archive_name: String,
    /// The client's host name.
    pub destination: String,
    pub dest_folder: String,
    /// A path inside the archive, as its catalog writes it (a leading `/` is dropped).
    pub item: Option<String>,
    pub dry_run: bool,
}

/// The message of a restore while a job of the client is active (the original's).
pub const BUSY: &str = "Backup job already running for this client.";

fn refusal(field: &str, error: PolicyError) -> CbError {
    match error {
        PolicyError::Invalid(m) | PolicyError::Forbidden(m) => CbError::invalid(field, m),
        PolicyError::Denied(_) => CbError::Forbidden,
        PolicyError::Agent(e) => agent_refusal(e),
        other => CbError::Damaged(other.to_string()),
    }
}

fn agent_refusal(error: AgentError) -> CbError {
    match error {
        AgentError::Invalid(m) => CbError::invalid("dest_folder", m),
        AgentError::Denied(_) => CbError::Forbidden,
        other => CbError::BadRequest(other.to_string()),
    }
}

impl CyborgService {
    /// Starts the restore; its job.
    pub fn restore(&self, caller: &Account, form: RestoreForm) -> Result<JobRow, CbError> {
        super::authorize(caller, super::Action::Manage)?;
        self.sync_jobs();
        let core = self.core()?;
        let who = caller.principal();
        let job_id = {
            let mut state = self.lock();
            let archive = state
                .jobs
                .values()
                .filter(|l| l.job_type == "job")
                .find(|l| l.archive_name.as_deref() == Some(form.archive_name.as_str()))
                .cloned();
            // Its backup, while it is kept: a pruned archive (recycled or deleted) is gone.
            let backup = archive.as_ref().and_then(|link| {
                let view = core.jobs.get(&link.core).ok()?;
                let id = view.result?.get("backup")?.as_str()?.to_string();
                let parsed = crate::repo::lookup_id(&id).ok()?;
                let kept = matches!(core.repo.recycled_at(&parsed), Ok(None))
                    && core.repo.backup(&parsed).is_ok();
                kept.then_some(id)
            });
            let (Some(archive), Some(backup)) = (archive, backup) else {
                return Err(CbError::invalid(
                    "archive_name",
                    format!("No archive named {}.", form.archive_name),
                ));
            };
            let client = state
                .clients
                .values()
                .find(|c| c.hostname == form.destination)
                .cloned()
                .ok_or_else(|| {
                    CbError::invalid(
                        "destination",
                        format!("No client with hostname {}.", form.destination),
                    )
                })?;
            let busy = state
                .jobs
                .values()
                .any(|l| l.client == Some(client.id) && super::jobs::is_active(core, l));
            if busy {
                return Err(CbError::BadRequest(BUSY.into()));
            }
            let item = form
                .item
                .as_deref()
                .map(|i| i.trim_start_matches('/').trim_end_matches('/'))
                .filter(|i| !i.is_empty())
                .map(str::to_string);
            let subject = format!(
                "restore {}{} onto {}:{}{}",
                form.archive_name,
                item.as_deref()
                    .map(|i| format!(" ({i})"))
                    .unwrap_or_default(),
                client.hostname,
                form.dest_folder,
                if form.dry_run { " (dry run)" } else { "" }
            );
            let core_job = match self.place(&client.hostname) {
                Place::Here => {
                    restore_here(
                        &who,
                        core.runner.policies().rules(),
                        &core.repo,
                        &core.jobs,
                        RestoreRequest {
                            backup,
                            target: form.dest_folder.clone(),
                            item,
                            dry_run: form.dry_run,
                            subject,
                        },
                    )
                    .map_err(|e| refusal("dest_folder", e))?
                    .id
                }
                Place::Agent(host) => core
                    .agents
                    .assign_as(
                        &who,
                        host,
                        AgentAction::Restore {
                            backup,
                            target: form.dest_folder.clone(),
                            item,
                            dry_run: form.dry_run,
                        },
                        JobKind::AgentRestore,
                        subject,
                    )
                    .map_err(agent_refusal)?,
            };
            let job_id = store::take_id(&mut state.next_job_id);
            state.jobs.insert(
                job_id,
                JobLink {
                    core: core_job,
                    job_type: "restore".into(),
                    launch_type: "manual".into(),
                    client: Some(client.id),
                    hostname: client.hostname.clone(),
                    schedule: None,
                    master_job: None,
                    created_by: Some(caller.id),
                    archive_name: None,
                    ..archive
                },
            );
            self.save(&state)?;
            job_id
        };
        self.job(job_id)
    }
}
