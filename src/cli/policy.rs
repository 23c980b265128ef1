//! `stowage policy ...`: backup policies through the control protocol (the state store
//! opened directly, or the running server's control socket); `run` needs the server,
//! which runs the policy as one of its jobs.

use anyhow::{bail, Result};
use clap::Subcommand;

use super::commands::{policy_from_args, Outcome};
use super::{DataDirArgs, PolicyArgs};
use crate::service::control::{ControlReply, ControlRequest};
use crate::service::policies::{NewPolicy, PolicyChanges, PolicyView};
use crate::state::policies::PolicySource;

#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Create a policy backing up server folders (--folder, repeatable), a client host's
    /// folders through its agent (--host H --folder ...), or the output of a program
    /// (after `--`: `stowage policy create db --series db -- pg_dumpall`).
    Create {
        #[command(flatten)]
        data: DataDirArgs,
        name: String,
        /// The series its backups go to.
        #[arg(long)]
        series: String,
        /// An absolute folder inside the server's `policies.roots` (with --host: on that
        /// host, `/` for all of it).
        #[arg(long = "folder")]
        folders: Vec<String>,
        /// Back up the folders of this client host, through its `stowage agent`.
        #[arg(long)]
        host: Option<String>,
        /// A pattern of paths to leave out (`*` crosses `/`).
        #[arg(long = "exclude")]
        excludes: Vec<String>,
        /// The schedule it runs by (none: only on demand).
        #[arg(long)]
        schedule: Option<String>,
        #[command(flatten)]
        retention: PolicyArgs,
        /// Create it disabled.
        #[arg(long)]
        disabled: bool,
        /// Do not read each backup's catalog back to check it before the prune.
        #[arg(long)]
        no_catalog_check: bool,
        /// The program and its arguments, run without a shell.
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// List policies with their next runs.
    List {
        #[command(flatten)]
        data: DataDirArgs,
        #[arg(long)]
        json: bool,
    },
    /// Change a policy.
    Set {
        #[command(flatten)]
        data: DataDirArgs,
        name: String,
        #[arg(long)]
        series: Option<String>,
        /// Replace its folders (repeatable).
        #[arg(long = "folder")]
        folders: Vec<String>,
        /// The folders are on this client host, backed up by its agent (with --folder).
        #[arg(long)]
        host: Option<String>,
        /// Replace its exclusion patterns (with --folder).
        #[arg(long = "exclude")]
        excludes: Vec<String>,
        #[arg(long, conflicts_with = "no_schedule")]
        schedule: Option<String>,
        /// Run only on demand.
        #[arg(long)]
        no_schedule: bool,
        #[command(flatten)]
        retention: PolicyArgs,
        /// Use the series' own retention.
        #[arg(long)]
        no_retention: bool,
        #[arg(long, conflicts_with = "disable")]
        enable: bool,
        #[arg(long)]
        disable: bool,
        /// Read each backup's catalog back and check it before the prune.
        #[arg(long, conflicts_with = "no_catalog_check")]
        catalog_check: bool,
        /// Do not check the catalogs.
        #[arg(long)]
        no_catalog_check: bool,
        /// Replace its program and arguments.
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// Delete a policy (its backups stay).
    Delete {
        #[command(flatten)]
        data: DataDirArgs,
        name: String,
    },
    /// Run a policy now in the running server; prints its job.
    Run {
        #[command(flatten)]
        data: DataDirArgs,
        name: String,
    },
}

/// The source the flags name, if any.
fn source(
    folders: Vec<String>,
    host: Option<String>,
    excludes: Vec<String>,
    command: Vec<String>,
) -> Result<Option<PolicySource>> {
    if host.is_some() && folders.is_empty() {
        bail!("--host needs --folder: the folders of that host to back up");
    }
    match (folders.is_empty(), command.is_empty()) {
        (false, false) => bail!("give --folder or a command after --, not both"),
        (false, true) => Ok(Some(match host {
            Some(host) => PolicySource::Agent {
                host,
                paths: folders,
                exclude: excludes,
            },
            None => PolicySource::Folders {
                paths: folders,
                exclude: excludes,
            },
        })),
        (true, false) if excludes.is_empty() => Ok(Some(PolicySource::Command { argv: command })),
        (true, false) => bail!("--exclude applies to --folder policies"),
        (true, true) if excludes.is_empty() => Ok(None),
        (true, true) => bail!("--exclude needs --folder"),
    }
}

/// The retention the flags give; `None` when none is set.
fn retention(args: &PolicyArgs) -> Result<Option<crate::format::series::RetentionPolicy>> {
    let policy = policy_from_args(args)?;
    Ok((!policy.is_empty() || policy.min_keep > 0).then_some(policy))
}

pub async fn policy(action: PolicyCommand) -> Result<Outcome> {
    let (data, request, json) = match action {
        PolicyCommand::Create {
            data,
            name,
            series,
            folders,
            host,
            excludes,
            schedule,
            retention: keep,
            disabled,
            no_catalog_check,
            command,
        } => {
            let Some(source) = source(folders, host, excludes, command)? else {
                bail!("give --folder PATH (repeatable) or a program after --");
            };
            let policy = NewPolicy {
                name,
                source,
                series,
                schedule,
                retention: retention(&keep)?,
                enabled: !disabled,
                catalog_check: !no_catalog_check,
            };
            (data, ControlRequest::PolicyCreate { policy }, false)
        }
        PolicyCommand::List { data, json } => (data, ControlRequest::PolicyList, json),
        PolicyCommand::Set {
            data,
            name,
            series,
            folders,
            host,
            excludes,
            schedule,
            no_schedule,
            retention: keep,
            no_retention,
            enable,
            disable,
            catalog_check,
            no_catalog_check,
            command,
        } => {
            let retention = match (retention(&keep)?, no_retention) {
                (Some(_), true) => bail!("--no-retention and --keep-* together"),
                (Some(policy), false) => Some(Some(policy)),
                (None, true) => Some(None),
                (None, false) => None,
            };
            let changes = PolicyChanges {
                source: source(folders, host, excludes, command)?,
                series,
                schedule: if no_schedule {
                    Some(None)
                } else {
                    schedule.map(Some)
                },
                retention,
                catalog_check: match (catalog_check, no_catalog_check) {
                    (true, _) => Some(true),
                    (_, true) => Some(false),
                    _ => None,
                },
                enabled: match (enable, disable) {
                    (true, _) => Some(true),
                    (_, true) => Some(false),
                    _ => None,
                },
            };
            (data, ControlRequest::PolicySet { name, changes }, false)
        }
        PolicyCommand::Delete { data, name } => {
            (data, ControlRequest::PolicyDelete { name }, false)
        }
        PolicyCommand::Run { data, name } => (data, ControlRequest::PolicyRun { name }, true),
    };
    match super::control::run(&data.data_dir, request).await? {
        ControlReply::Policy { policy } => print(&[policy], false)?,
        ControlReply::Policies { policies } => print(&policies, json)?,
        ControlReply::Job { job } => println!("{}", serde_json::to_string(&job)?),
        ControlReply::Done => eprintln!("done"),
        ControlReply::Error { message } => bail!("{message}"),
        other => bail!("unexpected answer from the state store: {other:?}"),
    }
    Ok(Outcome::Success)
}

/// Policies, one a line (name, source, series, schedule, enabled, next run), or JSON.
fn print(policies: &[PolicyView], json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string(policies)?);
        return Ok(());
    }
    for p in policies {
        let what = match &p.source {
            PolicySource::Folders { paths, .. } => paths.join(","),
            PolicySource::Command { argv } => format!("$ {}", argv.join(" ")),
            PolicySource::Agent { host, paths, .. } => format!("{host}:{}", paths.join(",")),
        };
        println!(
            "{}\t{}\tseries {}\tschedule {}\t{}\tnext {}",
            p.name,
            what,
            p.series,
            p.schedule.as_deref().unwrap_or("-"),
            if p.enabled { "enabled" } else { "disabled" },
            p.next_run.as_deref().unwrap_or("never")
        );
    }
    Ok(())
}
