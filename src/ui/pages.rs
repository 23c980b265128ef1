//! The dashboard's pages and the actions their forms post: the overview, a series and its
//! backups, a backup with its catalog and downloads, jobs (live progress, cancel), and
//! maintenance (check, gc and its dry run). Every action checks the form's CSRF token and
//! goes through the same services and role checks as the API.

use std::collections::BTreeMap;

use axum::extract::{Form, Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::json;

use super::auth::{require, CsrfForm, Visitor};
use super::layout::{bytes, encode, page, when, word, UiError};
use crate::format::manifest::BackupManifest;
use crate::http::AppState;
use crate::service::jobs::{JobFilter, JobKind, KIND_WORDS, STATUS_WORDS};
use crate::service::keys::Role;
use crate::service::maintenance;
use crate::state::jobs::{JobStatus, JobView};

fn job_row(job: &JobView, csrf: &str, may_cancel: bool) -> Markup {
    let status = word(&job.status);
    let total = job.progress.bytes_total;
    html! {
        tr data-job=(job.id) {
            td { a href={"/ui/jobs/" (job.id)} { (word(&job.kind)) } }
            td { (job.subject.clone().unwrap_or_default()) }
            td.status data-status=(status) { (status) }
            td {
                @if total > 0 {
                    progress max=(total) value=(job.progress.bytes_done) {}
                }
                " " span.done { (bytes(job.progress.bytes_done)) }
            }
            td { (when(&job.created_at)) }
            td {
                @if may_cancel && !job.status.is_finished() {
                    form method="post" action={"/ui/jobs/" (job.id) "/cancel"} {
                        input type="hidden" name="csrf" value=(csrf);
                        button type="submit" { "Cancel" }
                    }
                }
            }
        }
    }
}

fn jobs_table(jobs: &[JobView], csrf: &str, may_cancel: bool) -> Markup {
    html! {
        div.scroll {
            table.jobs {
                thead { tr { th { "Job" } th { "Subject" } th { "Status" } th { "Progress" } th { "Created" } th {} } }
                tbody {
                    @for job in jobs { (job_row(job, csrf, may_cancel)) }
                }
            }
        }
    }
}

/// Series shown on one page of the overview.
const SERIES_PER_PAGE: usize = 100;

#[derive(Deserialize)]
pub struct OverviewQuery {
    /// Series after this name.
    series_after: Option<String>,
}

pub async fn overview(
    State(state): State<AppState>,
    visitor: Visitor,
    Query(query): Query<OverviewQuery>,
) -> Result<Markup, UiError> {
    let (user, session) = visitor.signed_in()?;
    let stats = state.repo.stats()?;
    // The series from the kept totals, a page at a time, each with its newest backup
    // from the timeline: no scan of the backups.
    let after = query.series_after.unwrap_or_default();
    let mut last: BTreeMap<String, BackupManifest> = BTreeMap::new();
    let mut more_series = None;
    for name in stats.series.keys().filter(|name| **name > after) {
        if last.len() == SERIES_PER_PAGE {
            more_series = last.keys().next_back().cloned();
            break;
        }
        if let Some(newest) = state.repo.newest_backup(name)? {
            last.insert(name.clone(), newest.manifest);
        }
    }
    let jobs = state.jobs.list();
    let running: Vec<JobView> = jobs
        .iter()
        .filter(|j| !j.status.is_finished())
        .cloned()
        .collect();
    let failed: Vec<JobView> = jobs
        .iter()
        .filter(|j| j.status == JobStatus::Failed)
        .take(10)
        .cloned()
        .collect();
    let latest = |kind: JobKind| {
        jobs.iter()
            .find(|j| j.kind == kind && j.status.is_finished())
    };
    let scheduled = state.scheduler.list();
    let health = maintenance::backend_health(&state.repo).await;
    let history = state.stats_history.days().unwrap_or_else(|error| {
        tracing::warn!(%error, "cannot read the figures' history");
        Vec::new()
    });
    let may_cancel = user.role >= Role::Backup;
    let figure = |id: &str, label: &str, shown: String, value: String| {
        html! { div.figure { dt { (label) } dd id=(id) data-value=(value) { (shown) } } }
    };
    Ok(page(
        "Overview",
        Some((&user, session)),
        html! {
            h1 { "Overview" }
            dl.figures {
                (figure("stat-logical", "Logical bytes", bytes(stats.logical_bytes), stats.logical_bytes.to_string()))
                (figure("stat-stored", "Stored bytes", bytes(stats.stored_bytes), stats.stored_bytes.to_string()))
                (figure("stat-dedup", "Dedup ratio", format!("{:.2}×", stats.dedup_ratio), format!("{:.2}", stats.dedup_ratio)))
                (figure("stat-compression", "Compression ratio", format!("{:.2}×", stats.compression_ratio), format!("{:.2}", stats.compression_ratio)))
                (figure("stat-backups", "Backups", stats.backups.to_string(), stats.backups.to_string()))
                (figure("stat-chunks", "Chunks", stats.chunks.to_string(), stats.chunks.to_string()))
            }
            h2 { "Bytes over time" }
            (super::chart::bytes_over_time(&history))
            h2 { "Series" }
            @if last.is_empty() {
                p { "No backups yet." }
            } @else {
                div.scroll {
                    table.series {
                        thead { tr { th { "Series" } th { "Backups" } th { "Last backup" } th { "Size" } } }
                        tbody {
                            @for (name, backup) in &last {
                                tr {
                                    td { a href={"/ui/series/" (name)} { (name) } }
                                    td { (stats.series.get(name).map(|s| s.backups).unwrap_or(0)) }
                                    td { a href={"/ui/backups/" (backup.id.as_str())} { (when(&backup.created_at)) } }
                                    td { (bytes(backup.size)) }
                                }
                            }
                        }
                    }
                }
                @if let Some(from) = &more_series {
                    nav.pages aria-label="series pages" { a rel="next" href={"/ui/?series_after=" (encode(from))} { "More series →" } }
                }
            }
            h2 { "Running jobs" }
            @if running.is_empty() { p { "None." } } @else { (jobs_table(&running, &session.csrf, may_cancel)) }
            h2 { "Failed jobs" }
            @if failed.is_empty() { p { "None." } } @else { (jobs_table(&failed, &session.csrf, false)) }
            h2 { "Health" }
            dl.health {
                dt { "Storage" } dd { (health.location) }
                dt { "Reachable" } dd id="health-reachable" {
                    @match &health.reachable {
                        Ok(took) => { "yes, answered in " (took.as_millis()) " ms" }
                        Err(why) => { span.problem { "no: " (why) } }
                    }
                }
                dt { "Free space" } dd id="health-free" {
                    @match health.free_bytes {
                        Some(free) => { (bytes(free)) }
                        None => { "not reported by this storage" }
                    }
                }
                dt { "Repository" } dd { (stats.packs) " packs" }
                dt { "Last check" } dd { (latest(JobKind::Check).map(|j| format!("{} {}", word(&j.status), when(j.finished_at.as_deref().unwrap_or("")))).unwrap_or_else(|| "never".into())) }
                dt { "Last gc" } dd { (latest(JobKind::Gc).map(|j| format!("{} {}", word(&j.status), when(j.finished_at.as_deref().unwrap_or("")))).unwrap_or_else(|| "never".into())) }
            }
            h2 { "Scheduled" }
            div.scroll {
                table {
                    thead { tr { th { "Task" } th { "Every" } th { "Next run" } th { "Last result" } } }
                    tbody {
                        @for task in &scheduled {
                            tr {
                                td { (task.name) }
                                td { (task.every_secs) " s" }
                                td { (when(&task.next_run)) }
                                td { (task.last_result.clone().unwrap_or_default()) }
                            }
                        }
                    }
                }
            }
        },
    ))
}

/// Jobs shown on one page of the jobs list.
const JOBS_PER_PAGE: usize = 50;

#[derive(Deserialize)]
pub struct JobsQuery {
    status: Option<String>,
    kind: Option<String>,
    q: Option<String>,
    /// Jobs created before this position (the previous page's last).
    before: Option<u64>,
}

pub async fn jobs(
    State(state): State<AppState>,
    visitor: Visitor,
    Query(query): Query<JobsQuery>,
) -> Result<Markup, UiError> {
    let (user, session) = visitor.signed_in()?;
    let filter = JobFilter::parse(
        query.status.as_deref(),
        query.kind.as_deref(),
        query.q.as_deref(),
    )
    .map_err(UiError::Invalid)?;
    let listed = state.jobs.page(&filter, query.before, JOBS_PER_PAGE);
    let chosen = |value: Option<String>| value.unwrap_or_default();
    let (status, kind) = (
        chosen(filter.status.map(|s| word(&s))),
        chosen(filter.kind.map(|k| word(&k))),
    );
    let text = filter.text.clone().unwrap_or_default();
    let select = |name: &str, label: &str, words: &str, current: &str| {
        html! {
            label { (label) " "
                select name=(name) {
                    option value="" selected[current.is_empty()] { "any" }
                    @for w in words.split(", ") {
                        option value=(w) selected[current == w] { (w.replace('_', " ")) }
                    }
                }
            }
        }
    };
    let next = listed.next.map(|before| {
        format!(
            "/ui/jobs?status={}&kind={}&q={}&before={before}",
            encode(&status),
            encode(&kind),
            encode(&text)
        )
    });
    Ok(page(
        "Jobs",
        Some((&user, session)),
        html! {
            h1 { "Jobs" }
            form.filters id="job-filters" method="get" action="/ui/jobs" {
                (select("status", "Status", STATUS_WORDS, &status))
                (select("kind", "Kind", KIND_WORDS, &kind))
                label { "Text " input type="search" name="q" value=(text) maxlength=(JobFilter::MAX_TEXT) placeholder="id, subject or error"; }
                button type="submit" { "Filter" }
                @if filter != JobFilter::default() { " " a href="/ui/jobs" { "Show all" } }
            }
            @if listed.jobs.is_empty() {
                p id="no-jobs" { @if filter == JobFilter::default() && query.before.is_none() { "No jobs yet." } @else { "No job matches." } }
            } @else { (jobs_table(&listed.jobs, &session.csrf, user.role >= Role::Backup)) }
            @if let Some(next) = next { p { a id="older-jobs" href=(next) { "Older jobs" } } }
        },
    ))
}

/// Progress of the jobs still running, for the page script's live updates.
pub async fn jobs_json(
    State(state): State<AppState>,
    visitor: Visitor,
) -> Result<Response, UiError> {
    visitor.signed_in()?;
    let jobs: Vec<serde_json::Value> = state
        .jobs
        .list()
        .into_iter()
        .map(|j| {
            json!({
                "id": j.id, "status": word(&j.status),
                "bytes_done": j.progress.bytes_done, "bytes_total": j.progress.bytes_total,
            })
        })
        .collect();
    Ok(Json(json!({ "jobs": jobs })).into_response())
}

pub async fn job(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(id): Path<String>,
) -> Result<Markup, UiError> {
    let (user, session) = visitor.signed_in()?;
    let job = state.jobs.get(&id)?;
    let result = job
        .result
        .as_ref()
        .and_then(|r| serde_json::to_string_pretty(r).ok());
    Ok(page(
        "Job",
        Some((&user, session)),
        html! {
            h1 { "Job " (word(&job.kind)) }
            (jobs_table(std::slice::from_ref(&job), &session.csrf, user.role >= Role::Backup))
            @if let Some(error) = &job.error {
                h2 { "Error" }
                pre.problem id="job-error" { (error) }
            }
            @if let Some(result) = result {
                h2 { "Result" }
                pre id="job-result" { (result) }
            }
        },
    ))
}

pub async fn cancel_job(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, UiError> {
    let user = visitor.acting(&form.csrf)?;
    require(Role::Backup, user.role)?;
    state.jobs.cancel(&id)?;
    Ok(Redirect::to(&format!("/ui/jobs/{id}")).into_response())
}

pub async fn maintenance(
    State(state): State<AppState>,
    visitor: Visitor,
) -> Result<Markup, UiError> {
    let (user, session) = visitor.signed_in()?;
    require(Role::Admin, user.role)?;
    let recent: Vec<JobView> = state
        .jobs
        .list()
        .into_iter()
        .filter(|j| matches!(j.kind, JobKind::Check | JobKind::Gc))
        .take(20)
        .collect();
    let button = |action: &str, field: &str, value: &str, label: &str| {
        html! {
            form.inline method="post" action={"/ui/maintenance/" (action)} {
                input type="hidden" name="csrf" value=(session.csrf);
                input type="hidden" name=(field) value=(value);
                button type="submit" { (label) }
            }
        }
    };
    Ok(page(
        "Maintenance",
        Some((&user, session)),
        html! {
            h1 { "Maintenance" }
            p { "A check reads every manifest and verifies the index against the packs; reading all data also opens every stored blob. A gc dry run says how much space a gc would free, and deletes nothing." }
            div.actions {
                (button("check", "read_data", "false", "Check"))
                (button("check", "read_data", "true", "Check, reading all data"))
                (button("gc", "dry_run", "true", "Gc dry run"))
                (button("gc", "dry_run", "false", "Gc"))
            }
            h2 { "Recent checks and gc runs" }
            @if recent.is_empty() { p { "None yet." } }
            @else { (jobs_table(&recent, &session.csrf, true)) }
        },
    ))
}

#[derive(Deserialize)]
pub struct CheckForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    read_data: bool,
}

pub async fn start_check(
    State(state): State<AppState>,
    visitor: Visitor,
    Form(form): Form<CheckForm>,
) -> Result<Response, UiError> {
    let user = visitor.acting(&form.csrf)?;
    let id = maintenance::start_check(&user.principal(), &state.jobs, &state.repo, form.read_data)?;
    Ok(Redirect::to(&format!("/ui/jobs/{id}")).into_response())
}

#[derive(Deserialize)]
pub struct GcForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    dry_run: bool,
}

pub async fn start_gc(
    State(state): State<AppState>,
    visitor: Visitor,
    Form(form): Form<GcForm>,
) -> Result<Response, UiError> {
    let user = visitor.acting(&form.csrf)?;
    let id = maintenance::start_gc(&user.principal(), &state.jobs, &state.repo, form.dry_run)?;
    Ok(Redirect::to(&format!("/ui/jobs/{id}")).into_response())
}
