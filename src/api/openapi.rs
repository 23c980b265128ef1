//! `/v1/openapi.json`: the OpenAPI 3.1 description of the native API, built from one
//! table of operations so it stays next to the router it describes.

use axum::Json;
use serde_json::{json, Map, Value};

/// (method, path, summary, role, success status, query parameters, request body kind)
type Operation = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static [&'static str],
    Body,
);

#[derive(Clone, Copy)]
enum Body {
    None,
    Json(&'static str),
    Stream,
}

const OPERATIONS: &[Operation] = &[
    (
        "get",
        "/healthz",
        "Liveness",
        "none",
        "200",
        &[],
        Body::None,
    ),
    (
        "get",
        "/readyz",
        "Readiness (503 while shutting down)",
        "none",
        "200",
        &[],
        Body::None,
    ),
    (
        "get",
        "/metrics",
        "Prometheus metrics",
        "none",
        "200",
        &[],
        Body::None,
    ),
    (
        "get",
        "/v1/series",
        "List series",
        "reader",
        "200",
        &[],
        Body::None,
    ),
    (
        "post",
        "/v1/series",
        "Create a series",
        "writer",
        "201",
        &[],
        Body::Json("SeriesCreate"),
    ),
    (
        "get",
        "/v1/series/{name}",
        "Get a series",
        "reader",
        "200",
        &[],
        Body::None,
    ),
    (
        "put",
        "/v1/series/{name}",
        "Create or update a series' retention policy",
        "writer",
        "200",
        &[],
        Body::Json("SeriesUpdate"),
    ),
    (
        "delete",
        "/v1/series/{name}",
        "Delete a series record (its backups stay)",
        "admin",
        "204",
        &[],
        Body::None,
    ),
    (
        "post",
        "/v1/series/{name}/backups",
        "Upload a backup (raw body or multipart file field); 202 with a job when wait=false",
        "writer",
        "201",
        &["name", "wait", "sha256"],
        Body::Stream,
    ),
    (
        "get",
        "/v1/backups",
        "List backups, oldest first",
        "reader",
        "200",
        &["series", "recycled", "limit", "offset"],
        Body::None,
    ),
    (
        "get",
        "/v1/backups/{id}",
        "Get a backup",
        "reader",
        "200",
        &[],
        Body::None,
    ),
    (
        "delete",
        "/v1/backups/{id}",
        "Purge a backup (space reclaimable by gc)",
        "admin",
        "204",
        &[],
        Body::None,
    ),
    (
        "get",
        "/v1/backups/{id}/content",
        "Download a backup's bytes; honours Range (206, 416)",
        "reader",
        "200",
        &[],
        Body::None,
    ),
    (
        "post",
        "/v1/backups/{id}/url",
        "A signed link downloading the backup without a key until it expires (?ttl=seconds, default 3600)",
        "reader",
        "200",
        &[],
        Body::None,
    ),
    (
        "get",
        "/v1/download/{id}",
        "Download through a signed link (?expires=&signature=); gzip sources as application/x-gzip; honours Range",
        "none",
        "200",
        &[],
        Body::None,
    ),
    (
        "get",
        "/v1/backups/{id}/catalog",
        "List a backup's catalog entries",
        "reader",
        "200",
        &["prefix", "limit", "offset"],
        Body::None,
    ),
    (
        "post",
        "/v1/backups/{id}/recycle",
        "Move a backup to the recycle bin",
        "writer",
        "200",
        &[],
        Body::None,
    ),
    (
        "post",
        "/v1/backups/{id}/restore",
        "Take a backup out of the recycle bin",
        "writer",
        "200",
        &[],
        Body::None,
    ),
    (
        "get",
        "/v1/jobs",
        "List jobs, newest first",
        "reader",
        "200",
        &[],
        Body::None,
    ),
    (
        "get",
        "/v1/scheduler",
        "The scheduler's periodic tasks: next run, last run, last result, counts",
        "reader",
        "200",
        &[],
        Body::None,
    ),
    (
        "get",
        "/v1/jobs/{id}",
        "Get a job",
        "reader",
        "200",
        &[],
        Body::None,
    ),
    (
        "post",
        "/v1/jobs/{id}/cancel",
        "Cancel a running job",
        "writer",
        "202",
        &[],
        Body::None,
    ),
    (
        "get",
        "/v1/repository/stats",
        "Repository totals and ratios",
        "reader",
        "200",
        &[],
        Body::None,
    ),
    (
        "post",
        "/v1/repository/check",
        "Start a check job",
        "admin",
        "202",
        &["read_data"],
        Body::None,
    ),
    (
        "post",
        "/v1/repository/gc",
        "Start a garbage collection job",
        "admin",
        "202",
        &["dry_run"],
        Body::None,
    ),
];

fn operation(op: &Operation) -> Value {
    let (_, path, summary, role, status, query, body) = *op;
    let mut parameters: Vec<Value> = path
        .split('/')
        .filter_map(|part| part.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
        .collect();
    parameters.extend(query.iter().map(|name| json!({"name": name, "in": "query", "required": false, "schema": {"type": "string"}})));
    let mut value = json!({
        "summary": summary,
        "parameters": parameters,
        "responses": {
            status: {"description": "success"},
            "default": {"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
        },
        "x-required-role": role,
    });
    if role == "none" {
        value["security"] = json!([]);
    }
    match body {
        Body::None => {}
        Body::Json(schema) => {
            value["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}});
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

fn schemas() -> Value {
    let policy = json!({"type": "object", "properties": {
        "keep_last": {"type": "integer"}, "keep_within_secs": {"type": "integer"},
        "keep_hourly": {"type": "integer"}, "keep_daily": {"type": "integer"},
        "keep_weekly": {"type": "integer"}, "keep_monthly": {"type": "integer"},
        "keep_yearly": {"type": "integer"}, "min_keep": {"type": "integer"},
        "action": {"type": "string", "enum": ["recycle", "delete"]}}});
    json!({
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object",
            "required": ["code", "message"], "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}},
        "RetentionPolicy": policy,
        "SeriesCreate": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}, "policy": {"$ref": "#/components/schemas/RetentionPolicy"}}},
        "SeriesUpdate": {"type": "object", "properties": {"policy": {"$ref": "#/components/schemas/RetentionPolicy"}}},
        "Backup": {"type": "object", "properties": {
            "id": {"type": "string"}, "series": {"type": "string"}, "kind": {"type": "string", "enum": ["stream", "tree"]},
            "source": {"type": "string"}, "created_at": {"type": "string"}, "size": {"type": "integer"},
            "stored_bytes": {"type": "integer"}, "chunks": {"type": "integer"}, "new_chunks": {"type": "integer"},
            "new_metadata_blobs": {"type": "integer"},
            "blake3": {"type": ["string", "null"]}, "sha256": {"type": ["string", "null"]},
            "catalog_entries": {"type": ["integer", "null"]},
            "tar": {"type": ["string", "null"]}, "recycled_at": {"type": ["string", "null"]}}},
        "Job": {"type": "object", "properties": {
            "id": {"type": "string"},
            "kind": {"type": "string", "enum": ["upload", "check", "gc", "fa_backup", "fa_restore", "backupchan_upload"]},
            "subject": {"type": ["string", "null"]},
            "status": {"type": "string", "enum": ["queued", "running", "succeeded", "failed", "cancelled"]},
            "created_at": {"type": "string"}, "started_at": {"type": ["string", "null"]}, "finished_at": {"type": ["string", "null"]},
            "progress": {"type": "object", "properties": {"bytes_done": {"type": "integer"}, "bytes_total": {"type": "integer"}, "files_done": {"type": "integer"}, "files_total": {"type": "integer"}, "rate_bytes_per_sec": {"type": "integer"}}},
            "error": {"type": ["string", "null"]}, "error_kind": {"type": ["string", "null"]}, "result": {}}}
    })
}

/// The whole document.
pub fn openapi() -> Value {
    let mut paths = Map::new();
    for op in OPERATIONS {
        let entry = paths.entry(op.1.to_string()).or_insert_with(|| json!({}));
        entry[op.0] = operation(op);
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "stowage native API", "version": env!("CARGO_PKG_VERSION"),
                 "description": "See docs/API.md. Every /v1 route needs Authorization: Bearer <key>."},
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
}
