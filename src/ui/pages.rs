//! The dashboard's pages and the actions their forms post: the overview, a series and its
//! backups, a backup with its catalog and downloads, jobs (live progress, cancel), and
//! maintenance (check, gc and its dry run). Every action checks the form's CSRF token and
//! goes through the same services and role checks as the API.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Form, Path, Query, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use futures::StreamExt;
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::json;

use super::auth::{require, CsrfForm, Visitor};
use super::layout::{bytes, page, when, word, UiError};
use crate::format::catalog::{CatalogEntry, EntryKind};
use crate::format::manifest::{BackupManifest, TarEncoding};
use crate::http::AppState;
use crate::repo::lookup_id;
use crate::service::jobs::JobKind;
use crate::service::keys::Role;
use crate::service::maintenance;
use crate::state::jobs::{JobStatus, JobView};

/// Entries of one folder shown at most.
const MAX_FOLDER_ENTRIES: usize = 1000;

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
                dt { "Repository" } dd { "open, " (stats.packs) " packs" }
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

#[derive(Deserialize)]
pub struct FolderQuery {
    #[serde(default)]
    dir: String,
}

/// The parent folder of a catalog path (`""` for the root).
fn parent_of(path: &str) -> &str {
    path.rsplit_once('/')
        .map(|(parent, _)| parent)
        .unwrap_or("")
}

fn encode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// Whether one file of this backup can be read as a range of its stream.
fn files_readable(manifest: &BackupManifest) -> bool {
    manifest.tar != Some(TarEncoding::Gzip)
}

pub async fn backup(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(id): Path<String>,
    Query(query): Query<FolderQuery>,
) -> Result<Markup, UiError> {
    let (user, session) = visitor.signed_in()?;
    let view = state.backups.view(&user.principal(), &id)?;
    let manifest = state.repo.backup(&lookup_id(&id)?)?;
    let dir = query.dir.trim_matches('/').to_string();
    let mut folder: Vec<CatalogEntry> = Vec::new();
    let mut more = 0usize;
    if manifest.catalog.is_some() {
        let listed = Arc::new(Mutex::new((Vec::new(), 0usize)));
        let (collector, wanted) = (listed.clone(), dir.clone());
        state
            .repo
            .catalog(
                &manifest,
                Box::new(move |entry| {
                    if parent_of(&entry.path) == wanted && entry.path != wanted {
                        let mut listed = collector.lock().unwrap_or_else(|p| p.into_inner());
                        if listed.0.len() < MAX_FOLDER_ENTRIES {
                            listed.0.push(entry);
                        } else {
                            listed.1 += 1;
                        }
                    }
                    Ok(())
                }),
            )
            .await?;
        let mut listed = listed.lock().unwrap_or_else(|p| p.into_inner());
        folder = std::mem::take(&mut listed.0);
        more = listed.1;
    }
    let readable = files_readable(&manifest);
    let crumbs: Vec<(String, String)> = {
        let mut path = String::new();
        dir.split('/')
            .filter(|p| !p.is_empty())
            .map(|part| {
                if !path.is_empty() {
                    path.push('/');
                }
                path.push_str(part);
                (part.to_string(), path.clone())
            })
            .collect()
    };
    Ok(page(
        "Backup",
        Some((&user, session)),
        html! {
            h1 { "Backup of " (view.source) }
            dl.meta {
                dt { "Id" } dd id="backup-id" { (view.id) }
                dt { "Series" } dd { a href={"/ui/series/" (view.series)} { (view.series) } }
                dt { "Created" } dd { (view.created_at) }
                dt { "Kind" } dd { (word(&view.kind)) }
                dt { "Size" } dd { (bytes(view.size)) " (" (view.size) " bytes)" }
                dt { "Added to the repository" } dd { (bytes(view.stored_bytes)) }
                dt { "Chunks" } dd { (view.chunks) " (" (view.new_chunks) " new)" }
                dt { "BLAKE3" } dd { code { (view.blake3.clone().unwrap_or_default()) } }
                @if let Some(recycled) = &view.recycled_at { dt { "Recycled" } dd { (recycled) } }
            }
            div.actions {
                a.button href={"/ui/backups/" (view.id) "/content"} download { "Download the whole backup" }
                " "
                @if view.recycled_at.is_some() && user.role >= Role::Backup {
                    form.inline method="post" action={"/ui/backups/" (view.id) "/undelete"} {
                        input type="hidden" name="csrf" value=(session.csrf);
                        button type="submit" { "Take out of the recycle bin" }
                    }
                }
                @if view.recycled_at.is_none() && user.role >= Role::Writer {
                    form.inline method="post" action={"/ui/backups/" (view.id) "/recycle"} {
                        input type="hidden" name="csrf" value=(session.csrf);
                        button type="submit" { "Recycle" }
                    }
                }
                @if user.role >= Role::Admin {
                    a.button.danger href={"/ui/backups/" (view.id) "/purge"} { "Purge…" }
                }
            }
            @if manifest.catalog.is_some() {
                h2 { "Files" }
                nav.crumbs aria-label="folder" {
                    a href={"/ui/backups/" (view.id)} { "/" }
                    @for (name, path) in &crumbs {
                        " / " a href={"/ui/backups/" (view.id) "?dir=" (encode(path))} { (name) }
                    }
                }
                div.scroll {
                    table.catalog {
                        thead { tr { th { "Name" } th { "Size" } th { "Mode" } th { "Modified" } } }
                        tbody {
                            @for entry in &folder {
                                @let name = entry.path.rsplit('/').next().unwrap_or(&entry.path);
                                tr {
                                    td {
                                        @match entry.kind {
                                            EntryKind::Dir => { a.dir href={"/ui/backups/" (view.id) "?dir=" (encode(&entry.path))} { (name) "/" } }
                                            EntryKind::File if readable && entry.offset.is_some() => {
                                                a.file href={"/ui/backups/" (view.id) "/file?path=" (encode(&entry.path))} download=(name) { (name) }
                                            }
                                            EntryKind::Symlink | EntryKind::Hardlink => { (name) " → " (entry.link.clone().unwrap_or_default()) }
                                            _ => { (name) }
                                        }
                                    }
                                    td { @if entry.kind == EntryKind::File { (bytes(entry.size)) } }
                                    td { code { (format!("{:04o}", entry.mode)) } }
                                    td { (chrono::DateTime::from_timestamp(entry.mtime, 0).map(|t| t.format("%Y-%m-%d %H:%M").to_string()).unwrap_or_default()) }
                                }
                            }
                        }
                    }
                }
                @if more > 0 { p { (more) " more entries in this folder are not shown." } }
            }
        },
    ))
}

fn attachment(name: &str) -> HeaderValue {
    let cleaned: String = name
        .chars()
        .filter(|c| c.is_ascii_graphic() && !matches!(c, '"' | '\\' | '/' | ';'))
        .collect();
    let cleaned = if cleaned.is_empty() {
        "download".to_string()
    } else {
        cleaned
    };
    HeaderValue::from_str(&format!("attachment; filename=\"{cleaned}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("attachment"))
}

fn stream_range(
    state: &AppState,
    manifest: &BackupManifest,
    range: std::ops::Range<u64>,
    name: &str,
) -> Result<Response, UiError> {
    let length = range.end - range.start;
    let stream = state
        .repo
        .read_backup(manifest, Some(range))?
        .map(|item| item.map_err(std::io::Error::other));
    let mut response = Response::new(Body::from_stream(stream));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    headers.insert(header::CONTENT_DISPOSITION, attachment(name));
    Ok(response)
}

pub async fn download_backup(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(id): Path<String>,
) -> Result<Response, UiError> {
    let (user, _) = visitor.signed_in()?;
    state.backups.view(&user.principal(), &id)?;
    let manifest = state.repo.backup(&lookup_id(&id)?)?;
    let name = manifest.source.clone();
    stream_range(&state, &manifest, 0..manifest.size, &name)
}

#[derive(Deserialize)]
pub struct FileQuery {
    path: String,
}

pub async fn download_file(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(id): Path<String>,
    Query(query): Query<FileQuery>,
) -> Result<Response, UiError> {
    let (user, _) = visitor.signed_in()?;
    state.backups.view(&user.principal(), &id)?;
    let manifest = state.repo.backup(&lookup_id(&id)?)?;
    if !files_readable(&manifest) {
        return Err(UiError::Invalid(
            "the files of a gzip tar archive are not read one by one; download the whole backup"
                .into(),
        ));
    }
    let found = Arc::new(Mutex::new(None::<CatalogEntry>));
    let (slot, wanted) = (found.clone(), query.path.clone());
    state
        .repo
        .catalog(
            &manifest,
            Box::new(move |entry| {
                if entry.kind == EntryKind::File && entry.path == wanted {
                    *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(entry);
                }
                Ok(())
            }),
        )
        .await?;
    let entry = found
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
        .ok_or_else(|| UiError::NotFound(format!("no file {:?} in this backup", query.path)))?;
    let start = entry
        .offset
        .ok_or_else(|| UiError::NotFound(format!("{:?} has no stored bytes", query.path)))?;
    let end = start
        .checked_add(entry.size)
        .filter(|end| *end <= manifest.size)
        .ok_or_else(|| {
            UiError::Internal("the catalog places the file outside the backup".into())
        })?;
    let name = entry.path.rsplit('/').next().unwrap_or("file").to_string();
    stream_range(&state, &manifest, start..end, &name)
}

/// Moves a backup to the recycle bin (writer), or takes it out (backup role): the
/// service checks the role.
pub async fn recycle(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, UiError> {
    let user = visitor.acting(&form.csrf)?;
    state.backups.recycle(&user.principal(), &id).await?;
    Ok(Redirect::to(&format!("/ui/backups/{id}")).into_response())
}

pub async fn undelete(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, UiError> {
    let user = visitor.acting(&form.csrf)?;
    state.backups.undelete(&user.principal(), &id).await?;
    Ok(Redirect::to(&format!("/ui/backups/{id}")).into_response())
}

pub async fn purge_form(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(id): Path<String>,
) -> Result<Markup, UiError> {
    let (user, session) = visitor.signed_in()?;
    require(Role::Admin, user.role)?;
    let view = state.backups.view(&user.principal(), &id)?;
    Ok(page(
        "Purge",
        Some((&user, session)),
        html! {
            section.narrow {
                h1 { "Purge this backup?" }
                p { "The backup of " strong { (view.source) } " in series " (view.series) " taken " (view.created_at)
                    " (" (bytes(view.size)) ") is deleted for good; its space is reclaimed by the next gc." }
                form method="post" action={"/ui/backups/" (view.id) "/purge"} {
                    input type="hidden" name="csrf" value=(session.csrf);
                    button.danger type="submit" { "Purge" }
                    " " a href={"/ui/backups/" (view.id)} { "Keep it" }
                }
            }
        },
    ))
}

pub async fn purge(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, UiError> {
    let user = visitor.acting(&form.csrf)?;
    let view = state.backups.view(&user.principal(), &id)?;
    state.backups.purge(&user.principal(), &id).await?;
    Ok(Redirect::to(&format!("/ui/series/{}", view.series)).into_response())
}

pub async fn jobs(State(state): State<AppState>, visitor: Visitor) -> Result<Markup, UiError> {
    let (user, session) = visitor.signed_in()?;
    let jobs = state.jobs.list();
    Ok(page(
        "Jobs",
        Some((&user, session)),
        html! {
            h1 { "Jobs" }
            @if jobs.is_empty() { p { "No jobs yet." } }
            @else { (jobs_table(&jobs, &session.csrf, user.role >= Role::Backup)) }
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
