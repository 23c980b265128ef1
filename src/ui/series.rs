//! A series' page: its retention policy with a preview of what applying it would do (and
//! the form that applies it), and its backups newest first, a page at a time from the
//! index's timeline, so a series of 100,000 backups opens as fast as one of ten.

use axum::extract::{Form, Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{html, Markup};
use serde::Deserialize;

use super::auth::{CsrfForm, Visitor};
use super::layout::{bytes, page, when, UiError};
use crate::format::series::RetentionAction;
use crate::http::AppState;
use crate::repo::listing::{BackupQuery, ListCursor, ListScope};
use crate::service::keys::Role;

/// Backups shown on one page of a series.
pub const BACKUPS_PER_PAGE: usize = 50;
/// Retention decisions shown (the counts cover them all).
const DECISIONS_SHOWN: usize = 50;

#[derive(Deserialize)]
pub struct SeriesQuery {
    /// Older backups than this position.
    after: Option<String>,
}

pub async fn series(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(name): Path<String>,
    Query(query): Query<SeriesQuery>,
) -> Result<Markup, UiError> {
    let (user, session) = visitor.signed_in()?;
    let principal = user.principal();
    let record = state.backups.series(&principal, &name)?;
    let after: Option<ListCursor> = query
        .after
        .as_deref()
        .map(str::parse)
        .transpose()
        .map_err(UiError::Invalid)?;
    let listed = state.repo.backup_page(&BackupQuery {
        scope: ListScope::Series(&name),
        recycled: None,
        newest_first: true,
        after: after.as_ref(),
        offset: 0,
        limit: BACKUPS_PER_PAGE,
    })?;
    let live = state.repo.backup_count(Some(&name), false)?;
    let recycled = state.repo.backup_count(Some(&name), true)?;
    let policy = serde_json::to_string(&record.policy).unwrap_or_default();
    // What the policy would do now, changing nothing (read from the timeline's keys).
    let preview = if record.policy.is_empty() || after.is_some() {
        Vec::new()
    } else {
        crate::service::forget::forget(&state.repo, &name, &record.policy, chrono::Utc::now(), true)
            .await?
    };
    let removed = preview.iter().filter(|d| !d.keep).count();
    let may_apply = match record.policy.action {
        RetentionAction::Recycle => user.role >= Role::Writer,
        RetentionAction::Delete => user.role >= Role::Admin,
    };
    Ok(page(
        &name,
        Some((&user, session)),
        html! {
            h1 { "Series " (name) }
            p { (live) " live backups, " (recycled) " in the recycle bin." }
            p { "Retention policy: " code { (policy) } }
            @if !preview.is_empty() {
                h2 { "Retention preview" }
                p id="retention-summary" {
                    "Applied now, the policy would keep " (preview.len() - removed) " and "
                    @match record.policy.action {
                        RetentionAction::Recycle => { "recycle " }
                        RetentionAction::Delete => { "delete " }
                    }
                    (removed) " backups. Nothing is changed until you apply it."
                }
                @if may_apply && removed > 0 {
                    form.inline method="post" action={"/ui/series/" (name) "/retention"} {
                        input type="hidden" name="csrf" value=(session.csrf);
                        button.danger[record.policy.action == RetentionAction::Delete] type="submit" { "Apply the policy" }
                    }
                }
                div.scroll {
                    table.preview {
                        thead { tr { th { "Backup" } th { "Created" } th { "Verdict" } th { "Kept by" } } }
                        tbody {
                            @for decision in preview.iter().take(DECISIONS_SHOWN) {
                                tr {
                                    td { a href={"/ui/backups/" (decision.id)} { code { (decision.id.get(..8).unwrap_or(&decision.id)) } } }
                                    td { (decision.created_at.format("%Y-%m-%d %H:%M:%S")) }
                                    td.verdict { @if decision.keep { "keep" } @else { "remove" } }
                                    td { (decision.reasons.join(", ")) }
                                }
                            }
                        }
                    }
                }
                @if preview.len() > DECISIONS_SHOWN {
                    p { "The " (preview.len() - DECISIONS_SHOWN) " older decisions are not shown." }
                }
            }
            h2 { "Backups" }
            div.scroll {
                table.backups {
                    thead { tr { th { "Created" } th { "Source" } th { "Size" } th { "Added" } th { "BLAKE3" } th { "State" } } }
                    tbody {
                        @for entry in &listed.entries {
                            @let m = &entry.manifest;
                            tr {
                                td { a href={"/ui/backups/" (m.id.as_str())} { (when(&m.created_at)) } }
                                td { (m.source) }
                                td { (bytes(m.size)) }
                                td { (bytes(m.stored_bytes)) }
                                td { code { (m.blake3.as_deref().map(|d| &d[..16.min(d.len())]).unwrap_or("")) } }
                                td { @if entry.recycled_at.is_some() { "recycled" } @else { "kept" } }
                            }
                        }
                    }
                }
            }
            nav.pages aria-label="pages" {
                @if after.is_some() { a href={"/ui/series/" (name)} { "← Newest" } }
                @if let Some(next) = &listed.next {
                    " " a id="older" rel="next" href={"/ui/series/" (name) "?after=" (next)} { "Older →" }
                }
            }
        },
    ))
}

/// Applies the series' retention policy (the service checks the role the action takes).
pub async fn apply_retention(
    State(state): State<AppState>,
    visitor: Visitor,
    Path(name): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, UiError> {
    let user = visitor.acting(&form.csrf)?;
    state
        .backups
        .apply_retention(&user.principal(), &name)
        .await?;
    Ok(Redirect::to(&format!("/ui/series/{name}")).into_response())
}
