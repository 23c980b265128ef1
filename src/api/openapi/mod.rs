//! `/v1/openapi.json`: the OpenAPI 3.1 description of the native API, built from one
//! table of operations so it stays next to the router it describes. Every answer a
//! route gives has its status and schema here; `tests/it/server/openapi.rs` checks real
//! answers of every route against this document, so the two cannot drift.

use axum::Json;
use serde_json::{json, Map, Value};

mod operations;
use operations::OPERATIONS;

/// A query parameter or request header: its name, JSON Schema type and meaning.
struct Param {
    name: &'static str,
    schema: &'static str,
    description: &'static str,
}

const fn param(name: &'static str, schema: &'static str, description: &'static str) -> Param {
    Param {
        name,
        schema,
        description,
    }
}

/// What a request carries.
#[derive(Clone, Copy)]
enum Body {
    None,
    Json(&'static str),
    Stream,
    /// A binary body of its own layout (a backup session's batches, `docs/API.md`).
    Binary,
    /// JSON lines (a tree session's catalog batch).
    JsonLines,
}

/// What an answer carries.
#[derive(Clone, Copy)]
enum Answer {
    /// JSON of the named schema in `components/schemas`.
    Json(&'static str),
    /// Bytes of a backup (`Content-Range` on 206).
    Bytes,
    /// Binary of the route's own layout (a session's known ids).
    Binary,
    Text,
    Empty,
}

struct Operation {
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    /// The least role that may call it; `none` for public routes.
    role: &'static str,
    query: &'static [Param],
    headers: &'static [Param],
    body: Body,
    /// Every success status with its answer; errors are listed by [`error_statuses`].
    answers: &'static [(&'static str, Answer)],
}

/// The error answers every operation may give, in the one error shape.
fn error_statuses(op: &Operation) -> Vec<(&'static str, &'static str)> {
    let mut statuses = vec![
        ("400", "invalid input: a bad body, query value or path"),
        ("404", "no such resource or route"),
        (
            "405",
            "the path exists, not with this method (`Allow` lists them)",
        ),
        ("414", "the URL is over 8 KiB"),
        ("431", "the headers are over 64 KiB"),
        ("500", "a storage failure (`internal`, `corrupt`)"),
        ("503", "shutting down, or the backend is unreachable"),
    ];
    if op.role != "none" {
        statuses.push(("401", "no key, or an unknown or revoked one"));
        statuses.push(("403", "the key's role does not allow this route"));
    }
    if op.path == "/v1/download/{id}" {
        statuses.push(("403", "the link is altered or expired"));
    }
    if !op.headers.is_empty() {
        statuses.push((
            "416",
            "the range is outside the backup (`Content-Range: bytes */SIZE`)",
        ));
    }
    if matches!(
        op.body,
        Body::Json(_) | Body::Stream | Body::Binary | Body::JsonLines
    ) {
        statuses.push(("413", "the body is over the limit"));
    }
    if op.method == "post"
        && (op.path == "/v1/series" || op.path == "/v1/schedules" || op.path.ends_with("/cancel"))
    {
        statuses.push(("409", "it exists already, or the job already ended"));
    }
    if op.path == "/v1/sessions/{id}/append" {
        statuses.push(("409", "`at` is not the stream's current size"));
    }
    if op.path == "/v1/sessions/{id}/catalog" {
        statuses.push(("409", "`at` is not the number of catalog entries received"));
    }
    statuses
}

fn answer(description: &str, answer: Answer) -> Value {
    match answer {
        Answer::Json(schema) => json!({
            "description": description,
            "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}
        }),
        Answer::Bytes => json!({
            "description": description,
            "headers": {
                "Content-Length": {"schema": {"type": "integer"}},
                "ETag": {"schema": {"type": "string"}, "description": "the BLAKE3 (else the SHA-256) of the whole stream, quoted"},
                "Accept-Ranges": {"schema": {"type": "string", "const": "bytes"}},
                "Content-Range": {"schema": {"type": "string"}, "description": "on 206"}
            },
            "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
        }),
        Answer::Binary => json!({
            "description": description,
            "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
        }),
        Answer::Text => json!({
            "description": description,
            "content": {"text/plain": {"schema": {"type": "string"}}}
        }),
        Answer::Empty => json!({"description": description}),
    }
}

fn parameter(p: &Param, place: &str) -> Value {
    json!({"name": p.name, "in": place, "required": false, "description": p.description, "schema": {"type": p.schema}})
}

fn operation(op: &Operation) -> Value {
    let mut parameters: Vec<Value> = op
        .path
        .split('/')
        .filter_map(|part| part.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
        .collect();
    parameters.extend(op.query.iter().map(|p| parameter(p, "query")));
    parameters.extend(op.headers.iter().map(|p| parameter(p, "header")));
    let mut responses = Map::new();
    for (status, kind) in op.answers {
        responses.insert(status.to_string(), answer("success", *kind));
    }
    for (status, description) in error_statuses(op) {
        responses
            .entry(status.to_string())
            .or_insert_with(|| answer(description, Answer::Json("Error")));
    }
    let mut value = json!({
        "summary": op.summary,
        "parameters": parameters,
        "responses": responses,
        "x-required-role": op.role,
    });
    if op.role == "none" {
        value["security"] = json!([]);
    }
    match op.body {
        Body::None => {}
        Body::Json(schema) => {
            value["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}});
        }
        Body::Binary => {
            value["requestBody"] = json!({"required": true, "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            }});
        }
        Body::JsonLines => {
            value["requestBody"] = json!({"required": true, "content": {
                "application/x-ndjson": {"schema": {"type": "string"}}
            }});
        }
        Body::Stream => {
            value["requestBody"] = json!({"required": true, "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                "multipart/form-data": {"schema": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}}}}
            }});
        }
    }
    value
}

/// An object schema whose every listed property is required and no other is allowed.
fn closed(properties: Value) -> Value {
    let required: Vec<&String> = properties
        .as_object()
        .map(|p| p.keys().collect())
        .unwrap_or_default();
    json!({"type": "object", "required": required, "properties": properties, "additionalProperties": false})
}

fn reference(schema: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{schema}")})
}

fn schemas() -> Value {
    let int = json!({"type": "integer", "minimum": 0});
    let text = json!({"type": "string"});
    let nullable_text = json!({"type": ["string", "null"]});
    let policy = json!({"type": "object", "additionalProperties": false, "properties": {
        "keep_last": int, "keep_within_secs": int,
        "keep_hourly": int, "keep_daily": int,
        "keep_weekly": int, "keep_monthly": int,
        "keep_yearly": int, "min_keep": int,
        "action": {"type": "string", "enum": ["recycle", "delete"]}}});
    let error_codes = [
        "invalid_input",
        "unauthorized",
        "forbidden",
        "not_found",
        "method_not_allowed",
        "conflict",
        "cancelled",
        "payload_too_large",
        "uri_too_long",
        "unsupported_media_type",
        "range_not_satisfiable",
        "headers_too_large",
        "corrupt",
        "unavailable",
        "internal",
    ];
    let job_kinds = [
        "upload",
        "check",
        "gc",
        "fa_backup",
        "fa_restore",
        "backupchan_upload",
        "policy",
        "prune",
        "agent_backup",
        "agent_restore",
        "restore",
        "catalog",
    ];
    let error_kinds = [
        "not_found",
        "already_exists",
        "conflict",
        "invalid_input",
        "unauthorized",
        "forbidden",
        "corrupt",
        "unavailable",
        "limit_exceeded",
        "internal",
    ];
    let mut schemas = json!({
        "Document": {"type": "object", "required": ["openapi", "info", "paths", "components"]},
        "Error": closed(json!({"error": closed(json!({
            "code": {"type": "string", "enum": error_codes},
            "message": {"type": "string", "minLength": 1}}))})),
        "RetentionPolicy": policy,
        "SeriesCreate": {"type": "object", "required": ["name"], "properties": {"name": text, "policy": reference("RetentionPolicy")}},
        "SeriesUpdate": {"type": "object", "properties": {"policy": reference("RetentionPolicy")}},
        "Series": closed(json!({
            "format": text, "version": int,
            "name": text, "created_at": text, "policy": reference("RetentionPolicy")})),
        "SeriesList": closed(json!({"series": {"type": "array", "items": reference("Series")}})),
        "Backup": closed(json!({
            "id": {"type": "string", "format": "uuid"}, "series": text,
            "kind": {"type": "string", "enum": ["stream", "tree"]},
            "source": text, "created_at": text, "size": int,
            "stored_bytes": int, "chunks": int, "new_chunks": int, "new_metadata_blobs": int,
            "blake3": {"type": ["string", "null"], "pattern": "^[0-9a-f]{64}$"},
            "sha256": {"type": ["string", "null"], "pattern": "^[0-9a-f]{64}$"},
            "catalog_entries": {"type": ["integer", "null"]},
            "tar": {"type": ["string", "null"], "enum": ["plain", "gzip", null]},
            "recycled_at": nullable_text})),
        "BackupList": closed(json!({
            "backups": {"type": "array", "items": reference("Backup")},
            "total": int, "limit": int, "offset": int, "next": {"type": ["string", "null"]}})),
        "SignedUrl": closed(json!({"url": text, "expires_at": text})),
        "CatalogEntry": {"type": "object", "required": ["path", "kind", "mode", "mtime", "uid", "gid", "size"],
            "additionalProperties": false, "properties": {
            "path": text, "kind": {"type": "string", "enum": ["file", "dir", "symlink", "hardlink", "other"]},
            "mode": int, "mtime": {"type": "integer"}, "mtime_nsec": int, "uid": int, "gid": int,
            "user": text, "group": text, "size": int, "link": text, "offset": int}},
        "CatalogFolder": closed(json!({
            "dir": text, "entries": {"type": "array", "items": reference("CatalogEntry")},
            "next": nullable_text, "indexed": {"type": "boolean"}})),
        "CatalogPage": closed(json!({
            "entries": {"type": "array", "items": reference("CatalogEntry")},
            "total": int, "limit": int, "offset": int})),
        "JobProgress": closed(json!({
            "bytes_done": int, "bytes_total": int, "files_done": int, "files_total": int,
            "rate_bytes_per_sec": int})),
        "Job": closed(json!({
            "id": text,
            "kind": {"type": "string", "enum": job_kinds},
            "subject": nullable_text,
            "parent": nullable_text,
            "status": {"type": "string", "enum": ["queued", "running", "succeeded", "failed", "cancelled"]},
            "created_at": text, "started_at": nullable_text, "finished_at": nullable_text,
            "progress": reference("JobProgress"),
            "error": nullable_text,
            "error_kind": {"type": ["string", "null"], "enum": error_kinds.iter().map(|k| json!(k)).chain([Value::Null]).collect::<Vec<_>>()},
            "result": {}})),
        "JobList": closed(json!({"jobs": {"type": "array", "items": reference("Job")},
            "next": {"type": ["integer", "null"], "minimum": 0}})),
        "JobAccepted": closed(json!({"job": reference("Job")})),
        "ScheduledTask": closed(json!({
            "name": text, "every_secs": int, "next_run": text, "last_run": nullable_text,
            "last_result": nullable_text, "runs": int, "failures": int, "running": {"type": "boolean"}})),
        "Scheduler": closed(json!({"tasks": {"type": "array", "items": reference("ScheduledTask")}})),
        "ScheduleCreate": {"type": "object", "required": ["name", "crontab"], "additionalProperties": false, "properties": {
            "name": text, "crontab": text, "enabled": {"type": "boolean"}}},
        "ScheduleUpdate": {"type": "object", "additionalProperties": false, "properties": {
            "crontab": text, "enabled": {"type": "boolean"}}},
        "Schedule": closed(json!({
            "name": text, "crontab": text, "enabled": {"type": "boolean"}, "created_at": text,
            "next_run": nullable_text})),
        "ScheduleList": closed(json!({"schedules": {"type": "array", "items": reference("Schedule")}})),
        "Calendar": closed(json!({"occurrences": {"type": "array", "items": text}})),
        "SeriesStats": closed(json!({"backups": int, "logical_bytes": int})),
        "Stats": closed(json!({
            "backups": int, "logical_bytes": int, "unique_bytes": int, "metadata_bytes": int,
            "sealed_bytes": int, "stored_bytes": int,
            "dedup_ratio": {"type": "number"}, "compression_ratio": {"type": "number"},
            "chunks": int, "metadata_blobs": int, "packs": int,
            "series": {"type": "object", "additionalProperties": reference("SeriesStats")}})),
    });
    if let Some(all) = schemas.as_object_mut() {
        for more in [policy_schemas(), session_schemas(), agent_schemas()] {
            if let Value::Object(more) = more {
                all.extend(more);
            }
        }
    }
    schemas
}

/// The schemas of agents and their assignments.
fn agent_schemas() -> Value {
    let int = json!({"type": "integer", "minimum": 0});
    let text = json!({"type": "string"});
    let paths = json!({"type": "array", "items": text, "minItems": 1, "maxItems": 256});
    let exclude = json!({"type": "array", "items": text});
    json!({
        "AgentAction": {"oneOf": [
            {"type": "object", "required": ["action", "series", "paths"], "additionalProperties": false,
             "properties": {"action": {"const": "backup"}, "series": text, "paths": paths,
                            "exclude": exclude}},
            {"type": "object", "required": ["action", "backup", "target"], "additionalProperties": false,
             "properties": {"action": {"const": "restore"}, "backup": text, "target": text,
                            "item": text, "dry_run": {"type": "boolean"}}}]},
        "AgentTask": {"oneOf": [
            {"type": "object", "required": ["job", "host", "action", "series", "paths"],
             "additionalProperties": false,
             "properties": {"job": text, "host": text, "action": {"const": "backup"},
                            "series": text, "paths": paths, "exclude": exclude}},
            {"type": "object", "required": ["job", "host", "action", "backup", "target"],
             "additionalProperties": false,
             "properties": {"job": text, "host": text, "action": {"const": "restore"},
                            "backup": text, "target": text, "item": text,
                            "dry_run": {"type": "boolean"}}}]},
        "AgentList": closed(json!({"agents": {"type": "array", "items": closed(json!({
            "host": text, "key_id": text, "last_seen": text}))}})),
        "AgentProgress": {"type": "object", "additionalProperties": false, "properties": {
            "bytes_done": int, "bytes_total": int, "files_done": int}},
        "AgentCancelled": closed(json!({"cancelled": {"type": "boolean"}})),
        "AgentFinish": {"type": "object", "additionalProperties": false, "properties": {
            "result": {}, "error": text}},
    })
}

/// The schemas of backup sessions.
fn session_schemas() -> Value {
    let int = json!({"type": "integer", "minimum": 0});
    let text = json!({"type": "string"});
    json!({
        "SessionOpen": {"type": "object", "required": ["series"], "additionalProperties": false, "properties": {
            "series": text, "name": text,
            "sha256": {"type": "boolean"}, "tar_catalog": {"type": "boolean"},
            "kind": {"enum": ["stream", "tree"]}}},
        "Session": {"type": "object", "additionalProperties": false,
            "required": ["id", "series", "kind", "size", "chunks", "uploaded_chunks",
                         "uploaded_bytes", "known_chunks", "idle_timeout_secs"],
            "properties": {
            "id": text, "series": text, "kind": {"enum": ["stream", "tree"]},
            "size": int, "chunks": int,
            "uploaded_chunks": int, "uploaded_bytes": int, "known_chunks": int,
            "catalog_entries": int, "idle_timeout_secs": int}},
        "SessionOpened": closed(json!({
            "session": reference("Session"),
            "writer": closed(json!({
                "chunker": closed(json!({"min_size": int, "avg_size": int, "max_size": int})),
                "chunk_id_key": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                "compression_level": int}))})),
        "SessionFinish": {"type": "object", "required": ["size"], "additionalProperties": false, "properties": {
            "size": int, "blake3": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"},
            "entries_blake3": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"}}}
    })
}

/// The schemas of backup policies.
fn policy_schemas() -> Value {
    let text = json!({"type": "string"});
    let nullable_text = json!({"type": ["string", "null"]});
    let retention = json!({"oneOf": [reference("RetentionPolicy"), {"type": "null"}]});
    json!({
        "PolicySource": {"oneOf": [
            {"type": "object", "required": ["kind", "paths"], "additionalProperties": false, "properties": {
                "kind": {"const": "folders"},
                "paths": {"type": "array", "items": text, "minItems": 1},
                "exclude": {"type": "array", "items": text}}},
            closed(json!({"kind": {"const": "command"},
                "argv": {"type": "array", "items": text, "minItems": 1}})),
            {"type": "object", "required": ["kind", "host", "paths"], "additionalProperties": false, "properties": {
                "kind": {"const": "agent"},
                "host": text,
                "paths": {"type": "array", "items": text, "minItems": 1},
                "exclude": {"type": "array", "items": text}}}]},
        "PolicyCreate": {"type": "object", "required": ["name", "source", "series"], "additionalProperties": false, "properties": {
            "name": text, "source": reference("PolicySource"), "series": text,
            "schedule": nullable_text, "retention": retention,
            "enabled": {"type": "boolean"}, "catalog_check": {"type": "boolean"}}},
        "PolicyUpdate": {"type": "object", "additionalProperties": false, "properties": {
            "source": reference("PolicySource"), "series": text,
            "schedule": nullable_text, "retention": retention,
            "enabled": {"type": "boolean"}, "catalog_check": {"type": "boolean"}}},
        "Policy": closed(json!({
            "name": text, "source": reference("PolicySource"), "series": text,
            "schedule": nullable_text, "retention": retention,
            "enabled": {"type": "boolean"}, "catalog_check": {"type": "boolean"}, "created_at": text,
            "last_job": nullable_text, "last_run_at": nullable_text, "next_run": nullable_text})),
        "PolicyList": closed(json!({"policies": {"type": "array", "items": reference("Policy")}})),
    })
}

/// The whole document.
pub fn openapi() -> Value {
    let mut paths = Map::new();
    for op in OPERATIONS {
        let entry = paths
            .entry(op.path.to_string())
            .or_insert_with(|| json!({}));
        entry[op.method] = operation(op);
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "stowage native API", "version": env!("CARGO_PKG_VERSION"),
                 "description": "See docs/API.md. Every /v1 route needs Authorization: Bearer <key> unless it says `security: []`."},
        "paths": paths,
        "components": {
            "schemas": schemas(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "<16 hex>.<64 hex> API key"}}
        },
        "security": [{"bearer": []}]
    })
}

pub async fn document() -> Json<Value> {
    Json(openapi())
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_operation_is_described_once() {
        let doc = super::openapi();
        let count: usize = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .map(|p| p.as_object().unwrap().len())
            .sum();
        assert_eq!(count, super::OPERATIONS.len());
    }

    #[test]
    fn every_reference_names_a_schema() {
        let doc = super::openapi();
        let text = doc.to_string();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for reference in text.split("\"#/components/schemas/").skip(1) {
            let name = reference.split('"').next().unwrap();
            assert!(
                schemas.contains_key(name),
                "{name} is referenced but not defined"
            );
        }
    }
}
