//! A backup's page: its record, its actions (download, signed link, recycle, undelete,
//! purge with confirmation), and for tree backups and tar archives a browser of its
//! catalog by folder with a search by name, and single-file downloads read as a range
//! of the stream.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Form, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Redirect, Response};
use futures::StreamExt;
use maud::{html, Markup};
use serde::Deserialize;

use super::auth::{require, CsrfForm, Visitor};
use super::layout::{bytes, encode, page, word, UiError};
use crate::format::catalog::{CatalogEntry, EntryKind};
use crate::format::manifest::{BackupManifest, TarEncoding};
use crate::http::attachment::attachment;
use crate::http::AppState;
use crate::repo::lookup_id;
use crate::service::keys::Role;

/// Entries of one folder shown at most.
const MAX_FOLDER_ENTRIES: usize = 1000;

#[derive(Deserialize)]
pub struct FolderQuery {
    #[serde(default)]
    dir: String,
    /// Find entries whose name holds this (any case), in every folder.
    #[serde(default)]
    q: String,
    /// List the folder's entries after the one with this name (the next page).
    after: Option<String>,
}

/// Longest search text taken.
const MAX_SEARCH_LEN: usize = 200;

/// The last part of a catalog path.
fn name_of(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
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
    let search = query.q.trim().to_lowercase();
    if search.len() > MAX_SEARCH_LEN {
        return Err(UiError::Invalid(format!(
            "a search is at most {MAX_SEARCH_LEN} bytes"
        )));
    }
    let mut folder: Vec<CatalogEntry> = Vec::new();
    let mut more = 0usize;
    let mut next_page = None;
    if manifest.catalog.is_some() && search.is_empty() {
        // A folder: read through the catalog's index, a page at a time.
        let after = query.after.as_deref().filter(|a| !a.is_empty());
        let page = state
            .repo
            .catalog_folder(&manifest, &dir, after, MAX_FOLDER_ENTRIES)
            .await?;
        if page.more {
            next_page = page.entries.last().map(|e| name_of(&e.path).to_string());
        }
        folder = page.entries;
    } else if manifest.catalog.is_some() {
        // A search by name reads the whole catalog.
        let listed = Arc::new(Mutex::new((Vec::new(), 0usize)));
        let (collector, search) = (listed.clone(), search.clone());
        state
            .repo
            .catalog(
                &manifest,
                Box::new(move |entry| {
                    if name_of(&entry.path).to_lowercase().contains(&search) {
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
                form.inline method="post" action={"/ui/backups/" (view.id) "/link"} {
                    input type="hidden" name="csrf" value=(session.csrf);
                    label { "Link valid for "
                        select name="ttl" {
                            option value="3600" { "an hour" }
                            option value="86400" selected { "a day" }
                            option value="604800" { "a week" }
                        }
                    }
                    " " button type="submit" { "Create a download link" }
                }
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
                form.create.search method="get" action={"/ui/backups/" (view.id)} role="search" {
                    label { "Find by name" input type="search" name="q" value=(query.q) maxlength=(MAX_SEARCH_LEN); }
                    button type="submit" { "Find" }
                }
                @if search.is_empty() {
                    nav.crumbs aria-label="folder" {
                        a href={"/ui/backups/" (view.id)} { "/" }
                        @for (name, path) in &crumbs {
                            " / " a href={"/ui/backups/" (view.id) "?dir=" (encode(path))} { (name) }
                        }
                        @if readable {
                            " · " a id="folder-tar" href={"/ui/backups/" (view.id) "/folder.tar?dir=" (encode(&dir))} download { "Download this folder as tar" }
                        }
                    }
                } @else {
                    p id="search-summary" { (folder.len() + more) " entries named like “" (query.q.trim()) "” · " a href={"/ui/backups/" (view.id)} { "back to the folders" } }
                }
                div.scroll {
                    table.catalog {
                        thead { tr { th { "Name" } th { "Size" } th { "Mode" } th { "Modified" } } }
                        tbody {
                            @for entry in &folder {
                                // A search shows where each entry is; a folder, its names.
                                @let name = if search.is_empty() { name_of(&entry.path) } else { entry.path.as_str() };
                                tr {
                                    td {
                                        @match entry.kind {
                                            EntryKind::Dir => { a.dir href={"/ui/backups/" (view.id) "?dir=" (encode(&entry.path))} { (name) "/" } }
                                            EntryKind::File if readable && entry.offset.is_some() => {
                                                a.file href={"/ui/backups/" (view.id) "/file?path=" (encode(&entry.path))} download=(name_of(&entry.path)) { (name) }
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
                @if more > 0 { p { (more) " more entries are not shown." } }
                @if let Some(after) = &next_page {
                    p { a id="next-entries" href={"/ui/backups/" (view.id) "?dir=" (encode(&dir)) "&after=" (encode(after))} { "Next entries" } }
                }
            }
        },
    ))
}

#[derive(Deserialize)]
pub struct LinkForm {
    #[serde(default)]
    csrf: String,
    ttl: u64,
}

/// Makes a signed link that downloads the whole backup without signing in, and shows it.
pub async fn create_link(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(form): Form<LinkForm>,
) -> Result<Markup, UiError> {
    let user = visitor.acting(&form.csrf)?;
    let view = state.backups.view(&user.principal(), &id)?;
    let base =
        crate::http::public_url::base(state.public_url.as_deref(), &headers).ok_or_else(|| {
            UiError::Invalid(
                "the request has no usable Host header and no public_url is configured".into(),
            )
        })?;
    let link = state
        .signer
        .backup_link(
            &base,
            view.id.as_str(),
            form.ttl,
            chrono::Utc::now().timestamp(),
        )
        .map_err(UiError::Invalid)?;
    let (_, session) = visitor.signed_in()?;
    Ok(page(
        "Download link",
        Some((&user, session)),
        html! {
            section.narrow {
                h1 { "Download link" }
                p { "Whoever holds this link can download the backup of " strong { (view.source) } " until " (link.expires_at) ", without signing in." }
                label { "Link" input id="signed-link" type="text" readonly value=(link.url); }
                p { a href={"/ui/backups/" (view.id)} { "Back to the backup" } }
            }
        },
    ))
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
    headers.insert(header::CONTENT_DISPOSITION, attachment(name, "download"));
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
pub struct FolderTarQuery {
    #[serde(default)]
    dir: String,
}

/// A folder and everything inside it as a tar archive, streamed as it is read.
pub async fn download_folder(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(id): Path<String>,
    Query(query): Query<FolderTarQuery>,
) -> Result<Response, UiError> {
    let (user, _) = visitor.signed_in()?;
    state.backups.view(&user.principal(), &id)?;
    let manifest = state.repo.backup(&lookup_id(&id)?)?;
    let dir = query.dir.trim_matches('/');
    let stream = state
        .repo
        .folder_tar(&manifest, dir)
        .await?
        .map(|item| item.map_err(std::io::Error::other));
    let name = match name_of(dir) {
        "" => format!("{}.tar", manifest.source),
        folder => format!("{folder}.tar"),
    };
    let mut response = Response::new(Body::from_stream(stream));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-tar"),
    );
    headers.insert(header::CONTENT_DISPOSITION, attachment(&name, "download"));
    Ok(response)
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
    let entry = state
        .repo
        .catalog_entry(&manifest, &query.path)
        .await?
        .filter(|entry| entry.kind == EntryKind::File)
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
