//! `stowage agent --server URL`: a long-running agent on a client host. It asks the
//! server for work assigned to its host (a long poll on `/v1/agent/next`), does it with
//! the same code as `put --server DIR` (a tree session, the files cache) and
//! `restore --server`, reports progress every second (stopping when the answer says the
//! job was cancelled), and ends the job with its result or error. A lost connection or a
//! restarting server is waited out with growing pauses; a key the server refuses ends
//! the agent, since asking again will not help.
//!
//! The agent does what a writer key of the server asks: back up any folder it can read,
//! restore into any empty folder it can write. `--allow DIR` confines both to the
//! folders named, checked on the resolved path (links followed), so a link cannot lead
//! the agent outside them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use serde_json::{json, Value};

use super::commands::Outcome;
use super::remote::{checked, Remote};
use super::remote_restore::{restore_tree, RestoreChoice};
use super::session_put::PutOptions;
use super::session_tree::backup_tree;
use super::RepoArgs;
use crate::repo::tree_source::{TreeSelection, TreeWalk};
use crate::repo::Progress;
use crate::service::agents::AgentAction;
use crate::service::policies::exclusion_set;

/// Work as the server hands it out.
#[derive(Debug, Deserialize)]
struct Task {
    job: String,
    #[allow(dead_code)]
    host: String,
    #[serde(flatten)]
    action: AgentAction,
}

/// This machine's host name.
pub fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

pub async fn run(
    args: &RepoArgs,
    host: Option<String>,
    wait: u64,
    allow: &[PathBuf],
) -> Result<Outcome> {
    let remote = Remote::new(args)?;
    let host = host.unwrap_or_else(hostname);
    let allowed = allow
        .iter()
        .map(|dir| std::fs::canonicalize(dir).with_context(|| format!("--allow {}", dir.display())))
        .collect::<Result<Vec<PathBuf>>>()?;
    eprintln!("agent of {host}: asking {} for work", remote.base());
    let mut failures = 0u32;
    loop {
        let polled = tokio::select! {
            polled = poll(&remote, &host, wait) => polled,
            _ = tokio::signal::ctrl_c() => return Ok(Outcome::Success),
        };
        match polled {
            Ok(Some(task)) => {
                failures = 0;
                eprintln!("job {}: {:?}", task.job, task.action);
                run_task(&remote, task, &allowed).await;
            }
            Ok(None) => failures = 0,
            Err(error) if error.is::<Refused>() => return Err(error),
            Err(error) => {
                failures += 1;
                let pause = Duration::from_secs(1 << failures.min(5));
                eprintln!("cannot reach the server ({error:#}); asking again in {pause:?}");
                tokio::time::sleep(pause).await;
            }
        }
    }
}

/// The server refused the key (asking again will not help).
#[derive(Debug, thiserror::Error)]
#[error("the server refused the key ({0}); give the agent a key of role backup or above")]
struct Refused(reqwest::StatusCode);

async fn poll(remote: &Remote, host: &str, wait: u64) -> Result<Option<Task>> {
    let response = remote
        .request(reqwest::Method::GET, "/v1/agent/next")
        .query(&[("host", host), ("wait", &wait.to_string())])
        .timeout(Duration::from_secs(wait + 30))
        .send()
        .await
        .context("asking for work")?;
    if matches!(
        response.status(),
        reqwest::StatusCode::UNAUTHORIZED | reqwest::StatusCode::FORBIDDEN
    ) {
        return Err(Refused(response.status()).into());
    }
    let response = checked(response).await?;
    if response.status() == reqwest::StatusCode::NO_CONTENT {
        return Ok(None);
    }
    Ok(Some(response.json().await.context("reading the work")?))
}

/// Does one job, reporting its progress, and ends it on the server.
async fn run_task(remote: &Remote, task: Task, allowed: &[PathBuf]) {
    let progress = Arc::new(Progress::new());
    let work = async {
        permitted(&task.action, allowed)?;
        perform(remote, &task.action, progress.clone()).await
    };
    let watch = report_until_cancelled(remote, &task.job, &progress);
    let outcome = tokio::select! {
        outcome = work => outcome,
        () = watch => Err(anyhow::anyhow!("cancelled on the server")),
    };
    let body = match &outcome {
        Ok(result) => json!({ "result": result }),
        Err(error) => json!({ "error": format!("{error:#}") }),
    };
    match &outcome {
        Ok(_) => eprintln!("job {}: done", task.job),
        Err(error) => eprintln!("job {}: failed: {error:#}", task.job),
    }
    let path = format!("/v1/agent/jobs/{}/finish", task.job);
    for attempt in 1..=5u32 {
        let sent = remote
            .request(reqwest::Method::POST, &path)
            .json(&body)
            .send()
            .await;
        match sent {
            Ok(response) => {
                if let Err(error) = checked(response).await {
                    eprintln!("job {}: the server refused its end: {error:#}", task.job);
                }
                return;
            }
            Err(error) => {
                eprintln!(
                    "job {}: cannot report its end ({error}); trying again",
                    task.job
                );
                tokio::time::sleep(Duration::from_secs(1 << attempt)).await;
            }
        }
    }
}

async fn perform(remote: &Remote, action: &AgentAction, progress: Arc<Progress>) -> Result<Value> {
    match action {
        AgentAction::Backup {
            series,
            paths,
            exclude,
        } => {
            let selection = TreeSelection {
                folders: paths.iter().map(Into::into).collect(),
                exclude: exclusion_set(exclude)?,
            };
            let walk = TreeWalk::selection(&selection)?;
            let options = PutOptions {
                series,
                json: true,
                sha256: false,
                tar_catalog: false,
                force: false,
            };
            let (backup, report) =
                backup_tree(remote, &options, walk, &paths.join(", "), progress).await?;
            Ok(json!({
                "backup": backup,
                "files": report.files,
                "unchanged_files": report.unchanged,
                "skipped": report.skipped,
            }))
        }
        AgentAction::Restore {
            backup,
            target,
            item,
            dry_run,
        } => {
            let choice = RestoreChoice {
                item: item.as_deref(),
                dry_run: *dry_run,
            };
            let (entries, bytes) =
                restore_tree(remote, backup, Path::new(target), &choice, &progress).await?;
            Ok(json!({
                "backup": backup,
                "item": item,
                "dry_run": dry_run,
                "entries": entries,
                "bytes": bytes,
            }))
        }
    }
}

/// Refuses an action that reaches outside the allowed folders (when there are any).
fn permitted(action: &AgentAction, allowed: &[PathBuf]) -> Result<()> {
    if allowed.is_empty() {
        return Ok(());
    }
    let paths: Vec<&String> = match action {
        AgentAction::Backup { paths, .. } => paths.iter().collect(),
        AgentAction::Restore { target, .. } => vec![target],
    };
    for path in paths {
        let resolved = resolve(Path::new(path))?;
        if !allowed.iter().any(|dir| resolved.starts_with(dir)) {
            bail!(
                "{path} is outside the folders this agent may use ({})",
                allowed
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    Ok(())
}

/// `path` with its links resolved; the part that does not exist yet (a restore's new
/// target) is taken as written below its nearest existing folder.
fn resolve(path: &Path) -> Result<PathBuf> {
    let mut existing = path;
    let mut rest = Vec::new();
    loop {
        match std::fs::canonicalize(existing) {
            Ok(resolved) => return Ok(rest.iter().rev().fold(resolved, |p, part| p.join(part))),
            Err(_) => {
                let (Some(parent), Some(name)) = (existing.parent(), existing.file_name()) else {
                    bail!("{} cannot be resolved", path.display());
                };
                rest.push(name);
                existing = parent;
            }
        }
    }
}

/// Reports progress every second; returns once the server says the job was cancelled.
async fn report_until_cancelled(remote: &Remote, job: &str, progress: &Progress) {
    let path = format!("/v1/agent/jobs/{job}/progress");
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let body = json!({
            "bytes_done": progress.done(),
            "bytes_total": progress.total(),
            "files_done": progress.files_done(),
        });
        let answer = async {
            let response = remote
                .request(reqwest::Method::POST, &path)
                .json(&body)
                .send()
                .await?;
            let answer: Value = checked(response).await?.json().await?;
            if answer["cancelled"] == true {
                bail!("cancelled");
            }
            Ok(())
        };
        if let Err(error) = answer.await {
            if error.to_string() == "cancelled" {
                return;
            }
            // A lost report is not a reason to stop the work.
            tracing::warn!(%error, "a progress report failed");
        }
    }
}
