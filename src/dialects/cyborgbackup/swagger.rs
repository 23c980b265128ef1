//! `GET /doc/swagger.json`: a Swagger 2.0 document of the CyBorgBackup routes stowage
//! serves, built from the same endpoint list the router dispatches on, so it names
//! exactly what answers.

use serde_json::{json, Map, Value};

use super::endpoint::Kind;

fn operation(summary: &str, secured: bool) -> Value {
    let mut op = json!({
        "summary": summary,
        "produces": ["application/json"],
        "responses": {"200": {"description": "OK"}},
    });
    if !secured {
        op["security"] = json!([]);
    }
    op
}

fn add(paths: &mut Map<String, Value>, path: &str, ops: &[(&str, &str)], secured: bool) {
    let mut item = Map::new();
    for (method, summary) in ops {
        item.insert((*method).to_string(), operation(summary, secured));
    }
    paths.insert(path.to_string(), Value::Object(item));
}

/// The document.
pub fn document() -> Value {
    let mut paths = Map::new();
    add(&mut paths, "/api/", &[("get", "API versions")], false);
    add(
        &mut paths,
        "/api/v1/",
        &[("get", "Links to the resources")],
        false,
    );
    add(
        &mut paths,
        "/api/v1/ping/",
        &[("get", "Version and pong")],
        false,
    );
    add(
        &mut paths,
        "/api/v1/config/",
        &[("get", "Server configuration")],
        true,
    );
    add(
        &mut paths,
        "/api/v1/me/",
        &[("get", "The signed-in user, as a list of one")],
        true,
    );
    add(
        &mut paths,
        "/api/token/obtain/",
        &[("post", "Access and refresh token from email and password")],
        false,
    );
    add(
        &mut paths,
        "/api/token/refresh/",
        &[("post", "New access and refresh token from a refresh token")],
        false,
    );
    add(
        &mut paths,
        "/api/login/",
        &[("get", "Sign-in hints")],
        false,
    );
    add(
        &mut paths,
        "/api/logout/",
        &[("post", "Sign out (redirect)")],
        false,
    );
    for kind in Kind::ALL {
        let name = kind.segment();
        let list: &[(&str, &str)] = if matches!(kind, Kind::Settings | Kind::Jobs) {
            &[("get", "List")]
        } else {
            &[("get", "List"), ("post", "Create")]
        };
        add(&mut paths, &format!("/api/v1/{name}/"), list, true);
        let item: &[(&str, &str)] = if kind == Kind::Settings {
            &[("get", "Read"), ("put", "Replace"), ("patch", "Change")]
        } else if kind == Kind::Jobs {
            &[("get", "Read"), ("delete", "Delete")]
        } else {
            &[
                ("get", "Read"),
                ("put", "Replace"),
                ("patch", "Change"),
                ("delete", "Delete"),
            ]
        };
        add(&mut paths, &format!("/api/v1/{name}/{{id}}/"), item, true);
        if let Some(Value::Object(ops)) = paths.get_mut(&format!("/api/v1/{name}/{{id}}/")) {
            for op in ops.values_mut() {
                op["parameters"] = json!([{
                    "name": "id", "in": "path", "required": true, "type": "integer"
                }]);
            }
        }
    }
    let id = json!([{"name": "id", "in": "path", "required": true, "type": "integer"}]);
    let below: [(&str, &[(&str, &str)]); 8] = [
        (
            "policies/{id}/launch",
            &[("get", "Launch defaults"), ("post", "Launch")],
        ),
        ("policies/{id}/calendar", &[("get", "This month's runs")]),
        (
            "jobs/{id}/cancel",
            &[("get", "Can cancel"), ("post", "Cancel")],
        ),
        (
            "jobs/{id}/start",
            &[("get", "Can start"), ("post", "Start")],
        ),
        ("jobs/{id}/relaunch", &[("post", "Relaunch")]),
        ("jobs/{id}/stdout", &[("get", "Output")]),
        ("jobs/{id}/job_events", &[("get", "Events")]),
        ("job_events/{id}", &[("get", "Read")]),
    ];
    for (path, ops) in below {
        let path = format!("/api/v1/{path}/");
        add(&mut paths, &path, ops, true);
        if let Some(Value::Object(ops)) = paths.get_mut(&path) {
            for op in ops.values_mut() {
                op["parameters"] = id.clone();
            }
        }
    }
    for (path, ops) in [
        ("policies/vmmodule", &[("get", "VM modules")][..]),
        (
            "settings/generate_ssh",
            &[
                ("get", "Whether a key pair is stored"),
                ("post", "Make a key pair"),
            ][..],
        ),
        (
            "settings/get_ssh_publickey",
            &[("get", "The public key")][..],
        ),
        ("job_events", &[("get", "List")][..]),
        ("catalogs", &[("get", "List")][..]),
        ("escatalogs", &[("get", "Search an archive's catalog")][..]),
        ("restore", &[("get", "List"), ("post", "Restore")][..]),
        ("stats", &[("get", "Backups per day")][..]),
    ] {
        add(&mut paths, &format!("/api/v1/{path}/"), ops, true);
    }
    json!({
        "swagger": "2.0",
        "info": {"title": "CyBorgBackup API (stowage)", "version": "v1"},
        "basePath": "/",
        "consumes": ["application/json"],
        "produces": ["application/json"],
        "securityDefinitions": {
            "Basic": {"type": "basic"},
            "Bearer": {"type": "apiKey", "name": "Authorization", "in": "header"},
        },
        "security": [{"Basic": []}, {"Bearer": []}],
        "paths": paths,
    })
}
