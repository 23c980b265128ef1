//! The policies, jobs, catalogs, restore and stats of `/api/v1`: their objects on the
//! wire, field for field as CyBorgBackup's serializers write them, and the endpoints
//! below a policy (`launch`, `calendar`) or a job (`cancel`, `start`, `relaunch`,
//! `stdout`, `job_events`), each a call of `service::cyborgbackup`.

use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use regex::RegexBuilder;
use serde_json::{json, Map, Value};

use super::endpoint::Endpoint;
use super::error::DrfError;
use super::filter::Model;
use super::list::{self, ListRequest};
use super::resources::{object, Call};
use super::wire::Base;
use crate::service::cron::Cron;
use crate::service::cyborgbackup::events::JobEvent;
use crate::service::cyborgbackup::jobs::{status_name, JobRow};
use crate::service::cyborgbackup::policies::PolicyRow;
use crate::service::cyborgbackup::restores::RestoreForm;
use crate::service::cyborgbackup::{drf_from_rfc3339, Account};

type Reply = Result<Response, DrfError>;

pub const POLICY: Model = Model {
    name: "Policy",
    fields: &[
        "id",
        "type",
        "url",
        "related",
        "summary_fields",
        "created",
        "modified",
        "created_by",
        "modified_by",
        "name",
        "uuid",
        "extra_vars",
        "clients",
        "repository",
        "schedule",
        "policy_type",
        "keep_hourly",
        "keep_yearly",
        "keep_daily",
        "keep_weekly",
        "keep_monthly",
        "vmprovider",
        "next_run",
        "mode_pull",
        "enabled",
        "prehook",
        "posthook",
    ],
    search: &["name", "policy_type"],
};

pub const JOB: Model = Model {
    name: "Job",
    fields: &[
        "id",
        "type",
        "url",
        "related",
        "summary_fields",
        "created",
        "modified",
        "name",
        "created_by",
        "modified_by",
        "launch_type",
        "status",
        "policy",
        "client",
        "repository",
        "failed",
        "started",
        "finished",
        "elapsed",
        "job_args",
        "job_cwd",
        "job_env",
        "original_size",
        "compressed_size",
        "deduplicated_size",
        "archive_name",
        "job_explanation",
        "master_job",
        "dependent_jobs",
        "result_traceback",
        "event_processing_finished",
        "job_type",
    ],
    search: &["name", "status", "archive_name"],
};

pub const CATALOG: Model = Model {
    name: "Catalog",
    fields: &[
        "id",
        "url",
        "archive_name",
        "path",
        "job",
        "mode",
        "mtime",
        "owner",
        "group",
        "size",
        "healthy",
    ],
    search: &["archive_name", "path"],
};

pub const JOB_EVENT: Model = Model {
    name: "JobEvent",
    fields: &[
        "id",
        "type",
        "url",
        "related",
        "summary_fields",
        "created",
        "modified",
        "job",
        "event",
        "counter",
        "event_display",
        "event_data",
        "event_level",
        "failed",
        "changed",
        "uuid",
        "task",
        "stdout",
        "start_line",
        "end_line",
        "verbosity",
    ],
    search: &["stdout"],
};

/// The longest `path__regexp`.
const MAX_REGEX_LEN: usize = 1024;

/// `summary`: a user's summary by id, when it still exists.
pub fn policy(row: &PolicyRow, base: &Base, summary: &dyn Fn(u64) -> Option<Value>) -> Value {
    let p = &row.policy;
    let url = |path: String| Value::from(base.url(&path));
    let mut related = Map::new();
    related.insert(
        "launch".into(),
        url(format!("/api/v1/policies/{}/launch/", p.id)),
    );
    related.insert(
        "calendar".into(),
        url(format!("/api/v1/policies/{}/calendar/", p.id)),
    );
    related.insert(
        "schedule".into(),
        url(format!("/api/v1/schedules/{}/", p.schedule)),
    );
    related.insert(
        "repository".into(),
        url(format!("/api/v1/repositories/{}/", p.repository)),
    );
    let mut summary_fields = Map::new();
    if let Some(name) = &row.schedule_name {
        summary_fields.insert("schedule".into(), json!({"id": p.schedule, "name": name}));
    }
    if let Some(name) = &row.repository_name {
        summary_fields.insert(
            "repository".into(),
            json!({"id": p.repository, "name": name}),
        );
    }
    summary_fields.insert(
        "clients".into(),
        row.clients
            .iter()
            .map(|(id, hostname)| json!({"id": id, "hostname": hostname}))
            .collect(),
    );
    for (field, id) in [("created_by", p.created_by), ("modified_by", p.modified_by)] {
        if let Some(user) = id.and_then(summary) {
            related.insert(field.into(), url(format!("/api/v1/users/{}/", user["id"])));
            summary_fields.insert(field.into(), user);
        }
    }
    json!({
        "id": p.id,
        "type": "policy",
        "url": base.url(&format!("/api/v1/policies/{}/", p.id)),
        "related": related,
        "summary_fields": summary_fields,
        "created": p.created,
        "modified": p.modified,
        "created_by": p.created_by,
        "modified_by": p.modified_by,
        "name": p.name,
        "uuid": p.uuid,
        "extra_vars": p.extra_vars,
        "clients": p.clients,
        "repository": p.repository,
        "schedule": p.schedule,
        "policy_type": p.policy_type,
        "keep_hourly": p.keep_hourly,
        "keep_yearly": p.keep_yearly,
        "keep_daily": p.keep_daily,
        "keep_weekly": p.keep_weekly,
        "keep_monthly": p.keep_monthly,
        "vmprovider": p.vmprovider,
        "next_run": row.next_run,
        "mode_pull": p.mode_pull,
        "enabled": p.enabled,
        "prehook": p.prehook,
        "posthook": p.posthook,
    })
}

pub fn job(row: &JobRow, base: &Base, summary: &dyn Fn(u64) -> Option<Value>) -> Value {
    let link = &row.link;
    let core = &row.core;
    let path = |rest: &str| base.url(&format!("/api/v1/jobs/{}/{rest}", row.id));
    let mut related = Map::new();
    for name in ["job_events", "stdout", "start", "cancel", "relaunch"] {
        related.insert(name.into(), path(&format!("{name}/")).into());
    }
    related.insert(
        "policy".into(),
        base.url(&format!("/api/v1/policies/{}/", link.policy))
            .into(),
    );
    let mut summary_fields = Map::new();
    summary_fields.insert(
        "policy".into(),
        json!({"id": link.policy, "name": link.policy_name, "policy_type": link.policy_type}),
    );
    if let Some(client) = link.client {
        summary_fields.insert(
            "client".into(),
            json!({"id": client, "hostname": link.hostname, "bandwidth_limit": null}),
        );
    }
    summary_fields.insert("repository".into(), json!({"id": link.repository}));
    if let Some(user) = link.created_by.and_then(summary) {
        related.insert(
            "created_by".into(),
            base.url(&format!("/api/v1/users/{}/", user["id"])).into(),
        );
        summary_fields.insert("created_by".into(), user);
    }
    let (size, stored) = row.sizes();
    let created = drf_from_rfc3339(&core.created_at);
    let modified = core
        .finished_at
        .as_deref()
        .or(core.started_at.as_deref())
        .map(drf_from_rfc3339)
        .unwrap_or_else(|| created.clone());
    let status = status_name(core.status);
    json!({
        "id": row.id,
        "type": "job",
        "url": path(""),
        "related": related,
        "summary_fields": summary_fields,
        "created": created,
        "modified": modified,
        "name": job_name(row),
        "created_by": link.created_by,
        "modified_by": link.created_by,
        "launch_type": link.launch_type,
        "status": status,
        "policy": link.policy,
        "client": link.client,
        "repository": link.repository,
        "failed": is_failed(status),
        "started": core.started_at.as_deref().map(drf_from_rfc3339),
        "finished": core.finished_at.as_deref().map(drf_from_rfc3339),
        "elapsed": row.elapsed(),
        "job_args": core.subject.clone().unwrap_or_default(),
        "job_cwd": "/",
        "job_env": {},
        "original_size": size,
        "compressed_size": stored,
        "deduplicated_size": stored,
        "archive_name": row.archive_name(),
        "job_explanation": "",
        "master_job": link.master_job,
        "dependent_jobs": row.dependents.first(),
        "result_traceback": core.error.clone().unwrap_or_default(),
        "event_processing_finished": core.status.is_finished(),
        "job_type": link.job_type,
    })
}

/// `Backup Job <policy> <host>`, `Catalog Job ...`, `Prune Job ...`, `Restore Job ...`.
fn job_name(row: &JobRow) -> String {
    let kind = match row.link.job_type.as_str() {
        "prune" => "Prune",
        "catalog" => "Catalog",
        "restore" => "Restore",
        _ => "Backup",
    };
    format!("{kind} Job {} {}", row.link.policy_name, row.link.hostname)
}

/// Whether a job in `status` (CyBorgBackup's word) counts as failed.
fn is_failed(status: &str) -> bool {
    matches!(status, "failed" | "canceled")
}

/// Longest `stdout` of an event in a list, as the original cuts it (then `…`).
const LISTED_STDOUT_CHARS: usize = 1023;

/// A job event as the original's `JobEventSerializer` shows it; `listed` cuts its
/// `stdout` as lists do.
fn job_event(row: &JobRow, event: &JobEvent, base: &Base, listed: bool) -> Value {
    let mut stdout = event.stdout.clone();
    if listed && stdout.chars().count() > LISTED_STDOUT_CHARS {
        stdout = stdout.chars().take(LISTED_STDOUT_CHARS).collect();
        stdout.push('…');
    }
    let job_url = base.url(&format!("/api/v1/jobs/{}/", row.id));
    let time = drf_from_rfc3339(&event.created);
    json!({
        "id": event.id,
        "type": "job_event",
        "url": base.url(&format!("/api/v1/job_events/{}/", event.id)),
        "related": {"job": job_url},
        "summary_fields": {"job": {
            "id": row.id,
            "name": job_name(row),
            "status": status_name(row.core.status),
            "failed": is_failed(status_name(row.core.status)),
        }},
        "created": time,
        "modified": time,
        "job": row.id,
        "event": event.event,
        "counter": event.counter,
        "event_display": event.event_display(),
        "event_data": {},
        "event_level": 0,
        "failed": event.failed,
        "changed": false,
        "uuid": event.uuid,
        "task": "",
        "stdout": stdout,
        "start_line": event.counter - 1,
        "end_line": event.counter,
        "verbosity": 0,
    })
}

fn caller<'a>(call: &Call<'a>) -> Result<&'a Account, DrfError> {
    call.caller.ok_or_else(DrfError::not_authenticated)
}

fn user_summary<'a>(call: &'a Call) -> impl Fn(u64) -> Option<Value> + 'a {
    move |id| {
        call.service
            .account_by_id(id)
            .ok()
            .map(|a| super::wire::user_summary(&a))
    }
}

fn reading(call: &Call) -> bool {
    *call.method == Method::GET || *call.method == Method::HEAD
}

fn not_allowed(call: &Call, allowed: &[Method]) -> DrfError {
    DrfError::method_not_allowed(call.method, allowed)
}

fn empty_page(call: &Call, model: &Model) -> Reply {
    let request = ListRequest {
        path: call.path,
        query: call.query,
        max_page_size: call.max_page_size,
    };
    Ok(Json(list::page(model, Vec::new(), &request)?).into_response())
}

/// A launched job as `launch` and `relaunch` answer it: `{"job": id, ...}`.
fn launched(call: &Call, row: &JobRow) -> Reply {
    let mut body = job(row, call.base, &user_summary(call));
    body["job"] = row.id.into();
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// The sub-resources: launch, calendar, vmmodule, cancel, start, relaunch, stdout,
/// job events, catalogs, restore and stats (escatalogs: [`escatalogs`]).
pub fn answer(call: &Call, endpoint: Endpoint) -> Reply {
    let service = call.service;
    match endpoint {
        Endpoint::VmModule => Ok(Json(json!([])).into_response()),
        Endpoint::Launch(id) if reading(call) => {
            let extra_vars = service.launch_defaults(id)?;
            Ok(
                Json(json!({"defaults": {"verbosity": 0, "extra_vars": extra_vars}}))
                    .into_response(),
            )
        }
        Endpoint::Launch(id) => {
            object(call.body)?;
            let row = service.launch_policy(caller(call)?, id, "manual")?;
            launched(call, &row)
        }
        Endpoint::Calendar(id) => calendar(call, id),
        Endpoint::Cancel(id) if reading(call) => {
            let row = service.job(id)?;
            Ok(Json(json!({"can_cancel": row.is_active()})).into_response())
        }
        Endpoint::Cancel(id) => {
            if service.cancel_job(caller(call)?, id)? {
                Ok(StatusCode::ACCEPTED.into_response())
            } else {
                Err(not_allowed(call, &[Method::GET, Method::HEAD]))
            }
        }
        Endpoint::Start(id) => {
            service.job(id)?;
            if reading(call) {
                Ok(Json(json!({"can_start": false})).into_response())
            } else {
                // Jobs start when launched: none waits in CyBorgBackup's `new` state.
                Err(not_allowed(call, &[Method::GET, Method::HEAD]))
            }
        }
        Endpoint::Relaunch(id) => {
            object(call.body)?;
            let row = service.relaunch_job(caller(call)?, id)?;
            launched(call, &row)
        }
        Endpoint::Stdout(id) => stdout(call, &service.job(id)?),
        Endpoint::JobEvents(id) => {
            let objects: Vec<Value> = service
                .job_events(id)?
                .iter()
                .flat_map(|(row, events)| {
                    events
                        .iter()
                        .map(move |event| job_event(row, event, call.base, true))
                })
                .collect();
            let request = ListRequest {
                path: call.path,
                query: call.query,
                max_page_size: call.max_page_size,
            };
            let mut response = Json(list::page(&JOB_EVENT, objects, &request)?).into_response();
            response
                .headers_mut()
                .insert("X-UI-Max-Events", header::HeaderValue::from_static("4000"));
            Ok(response)
        }
        Endpoint::JobEvent(id) => {
            let (row, event) = service.job_event(id)?;
            Ok(Json(job_event(&row, &event, call.base, false)).into_response())
        }
        Endpoint::Catalogs => empty_page(call, &CATALOG),
        Endpoint::Restore if reading(call) => Ok(Json(json!([])).into_response()),
        Endpoint::Restore => restore(call),
        Endpoint::Stats => Ok(Json(json!(service.stats())).into_response()),
        _ => Err(DrfError::not_found()),
    }
}

/// The schedule's times in the current UTC month, as tzcron's `isoformat()` prints them.
fn calendar(call: &Call, id: u64) -> Reply {
    use chrono::{Datelike, TimeZone};
    let crontab = call.service.policy_crontab(caller(call)?, id)?;
    let cron: Cron = crontab
        .parse()
        .map_err(|e| DrfError::bad_request(format!("crontab: {e}")))?;
    let now = chrono::Utc::now();
    let first = chrono::Utc
        .with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0)
        .single()
        .unwrap_or(now);
    let next_month = if now.month() == 12 {
        chrono::Utc.with_ymd_and_hms(now.year() + 1, 1, 1, 0, 0, 0)
    } else {
        chrono::Utc.with_ymd_and_hms(now.year(), now.month() + 1, 1, 0, 0, 0)
    }
    .single()
    .unwrap_or(now);
    let last = next_month - chrono::Duration::seconds(10);
    let times = cron
        .occurrences(first, last, 100_000)
        .map_err(|e| DrfError::bad_request(format!("crontab: {e}")))?;
    let out: Vec<String> = times
        .iter()
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S+00:00").to_string())
        .collect();
    Ok(Json(json!(out)).into_response())
}

fn stdout(call: &Call, row: &JobRow) -> Reply {
    let pairs = list::pairs(call.query)?;
    let format = pairs
        .iter()
        .rev()
        .find(|(k, _)| k == "format")
        .map(|(_, v)| v.as_str())
        .unwrap_or("txt");
    let text = row.stdout();
    match format {
        "json" => Ok(Json(json!({"content": text})).into_response()),
        "html" => {
            let escaped = text
                .replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;");
            Ok((
                [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                format!("<pre>{escaped}</pre>"),
            )
                .into_response())
        }
        _ => Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()),
    }
}

/// `POST /restore/`: `{archive_name, destination, dest_folder, item?, dry_run?}` → 201
/// with the restore job.
fn restore(call: &Call) -> Reply {
    let account = caller(call)?;
    let body = object(call.body)?;
    let mut missing = Vec::new();
    let mut text = |field: &str| match body.get(field) {
        Some(Value::String(s)) if s.len() > 4096 => {
            missing.push((
                field.to_string(),
                "Ensure this field has no more than 4096 characters.".to_string(),
            ));
            None
        }
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Null) | None => None,
        Some(_) => {
            missing.push((field.to_string(), "Not a valid string.".to_string()));
            None
        }
    };
    let item = text("item");
    let dry_run = match body.get("dry_run") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) if matches!(s.as_str(), "true" | "True" | "1") => true,
        Some(Value::String(s)) if matches!(s.as_str(), "false" | "False" | "0" | "") => false,
        Some(_) => {
            missing.push((
                "dry_run".to_string(),
                "Must be a valid boolean.".to_string(),
            ));
            false
        }
    };
    for field in ["archive_name", "destination", "dest_folder"] {
        match body.get(field) {
            Some(Value::String(s)) if s.len() > 4096 => missing.push((
                field.to_string(),
                "Ensure this field has no more than 4096 characters.".to_string(),
            )),
            Some(Value::String(s)) if !s.trim().is_empty() => {}
            Some(Value::String(_)) => missing.push((
                field.to_string(),
                "This field may not be blank.".to_string(),
            )),
            Some(Value::Null) | None => {
                missing.push((field.to_string(), "This field is required.".to_string()))
            }
            Some(_) => missing.push((field.to_string(), "Not a valid string.".to_string())),
        }
    }
    if !missing.is_empty() {
        return Err(DrfError::fields(missing));
    }
    let field = |name: &str| {
        body.get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let row = call.service.restore(
        account,
        RestoreForm {
            archive_name: field("archive_name"),
            destination: field("destination"),
            dest_folder: field("dest_folder"),
            item,
            dry_run,
        },
    )?;
    launched(call, &row)
}

/// `GET /escatalogs/?archive_name=X[&path__regexp=R]`.
pub async fn escatalogs(call: &Call<'_>) -> Reply {
    let pairs = list::pairs(call.query)?;
    let value = |name: &str| {
        pairs
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let Some(archive) = value("archive_name") else {
        return Ok(Json(json!({"count": 0, "results": []})).into_response());
    };
    let pattern = match value("path__regexp") {
        None => None,
        Some(r) if r.len() > MAX_REGEX_LEN => {
            return Err(DrfError::bad_request(format!(
                "path__regexp: at most {MAX_REGEX_LEN} characters"
            )))
        }
        Some(r) => Some(
            RegexBuilder::new(&format!("^(?:{r})$"))
                .size_limit(1 << 20)
                .build()
                .map_err(|e| DrfError::bad_request(format!("path__regexp: {e}")))?,
        ),
    };
    let (count, results) = call.service.escatalog(&archive, pattern).await?;
    Ok(Json(json!({"count": count, "results": results})).into_response())
}
