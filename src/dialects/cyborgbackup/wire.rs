//! CyBorgBackup's objects on the wire, field for field as its serializers write them, and
//! the models the list machinery filters them by. Every `url` is absolute (the server's
//! public URL, else the request's `Host`); datetimes are DRF's `...Z` with microseconds.

use serde_json::{json, Map, Value};

use super::filter::Model;
use crate::service::cyborgbackup::schedules::Schedule;
use crate::service::cyborgbackup::settings::SettingRow;
use crate::service::cyborgbackup::store::{Client, Repository};
use crate::service::cyborgbackup::users::{notify_flag, NOTIFY_FIELDS};
use crate::service::cyborgbackup::{drf_from_rfc3339, Account};

/// The base of absolute links (`http://host:port`), empty when unknown (links are then
/// relative).
#[derive(Debug, Clone, Default)]
pub struct Base(pub String);

impl Base {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.0)
    }
}

pub const USER: Model = Model {
    name: "User",
    fields: &[
        "id",
        "type",
        "url",
        "related",
        "summary_fields",
        "created",
        "first_name",
        "last_name",
        "email",
        "is_superuser",
        "notify_backup_daily",
        "notify_backup_weekly",
        "notify_backup_monthly",
        "notify_backup_success",
        "notify_backup_failed",
        "notify_backup_summary",
    ],
    search: &["email", "first_name", "last_name"],
};

pub const SETTING: Model = Model {
    name: "Setting",
    fields: &[
        "id",
        "url",
        "key",
        "type",
        "setting_type",
        "value",
        "group",
        "order",
        "created",
        "modified",
    ],
    search: &["key", "value", "group"],
};

pub const SCHEDULE: Model = Model {
    name: "Schedule",
    fields: &[
        "id", "uuid", "url", "name", "crontab", "enabled", "created", "modified",
    ],
    search: &["name", "crontab"],
};

pub const REPOSITORY: Model = Model {
    name: "Repository",
    fields: &[
        "id",
        "uuid",
        "url",
        "name",
        "path",
        "repository_key",
        "original_size",
        "compressed_size",
        "deduplicated_size",
        "ready",
        "enabled",
        "created",
        "modified",
    ],
    search: &["name", "path"],
};

pub const CLIENT: Model = Model {
    name: "Client",
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
        "hostname",
        "ip",
        "bandwidth_limit",
        "port",
        "version",
        "ready",
        "hypervisor_ready",
        "hypervisor_name",
        "can_be_updated",
        "mark_as_to_update",
        "enabled",
        "behind_firewall",
        "uuid",
    ],
    search: &["hostname", "ip"],
};

pub fn user(account: &Account, base: &Base) -> Value {
    let user = &account.user;
    let mut object = json!({
        "id": account.id,
        "type": "user",
        "url": base.url(&format!("/api/v1/users/{}/", account.id)),
        "related": {},
        "summary_fields": {},
        "created": drf_from_rfc3339(&user.created_at),
        "first_name": user.first_name,
        "last_name": user.last_name,
        "email": user.email,
        "is_superuser": user.superuser,
    });
    for field in NOTIFY_FIELDS {
        object[field] = notify_flag(&account.extra, field).into();
    }
    object
}

/// A user as the summaries of other objects show it.
pub fn user_summary(account: &Account) -> Value {
    json!({
        "id": account.id,
        "email": account.user.email,
        "first_name": account.user.first_name,
        "last_name": account.user.last_name,
    })
}

pub fn setting(row: &SettingRow, base: &Base) -> Value {
    json!({
        "id": row.spec.id,
        "url": base.url(&format!("/api/v1/settings/{}/", row.spec.id)),
        "key": row.spec.key,
        "type": "setting",
        "setting_type": row.spec.setting_type.as_str(),
        "value": row.value,
        "group": row.spec.group,
        "order": row.spec.order,
        "created": row.created,
        "modified": row.modified,
    })
}

pub fn schedule(schedule: &Schedule, base: &Base) -> Value {
    json!({
        "id": schedule.id,
        "uuid": schedule.link.uuid,
        "url": base.url(&format!("/api/v1/schedules/{}/", schedule.id)),
        "name": schedule.link.name,
        "crontab": schedule.core.crontab,
        "enabled": schedule.core.enabled,
        "created": schedule.link.created,
        "modified": schedule.link.modified,
    })
}

pub fn repository(repository: &Repository, base: &Base) -> Value {
    let mut object = serde_json::to_value(repository).unwrap_or_default();
    object["url"] = base
        .url(&format!("/api/v1/repositories/{}/", repository.id))
        .into();
    ordered(&REPOSITORY, object)
}

/// `summary`: the summary of a user id, when it still exists; `policies`: the
/// `(client, policy id, policy name)` triples of
/// [`CyborgService::client_policies`](crate::service::cyborgbackup::CyborgService::client_policies).
pub fn client(
    client: &Client,
    base: &Base,
    summary: &dyn Fn(u64) -> Option<Value>,
    policies: &[(u64, u64, String)],
) -> Value {
    let mut object = serde_json::to_value(client).unwrap_or_default();
    object["type"] = "client".into();
    object["url"] = base.url(&format!("/api/v1/clients/{}/", client.id)).into();
    let mut related = Map::new();
    let mut summary_fields = Map::new();
    let linked: Vec<Value> = policies
        .iter()
        .filter(|(c, _, _)| *c == client.id)
        .map(|(_, id, name)| json!({"id": id, "name": name}))
        .collect();
    // As the original: the key only when some policy names the client.
    if !linked.is_empty() {
        summary_fields.insert("policies".into(), Value::Array(linked));
    }
    for (field, id) in [
        ("created_by", client.created_by),
        ("modified_by", client.modified_by),
    ] {
        if let Some(summary) = id.and_then(summary) {
            related.insert(
                field.into(),
                base.url(&format!("/api/v1/users/{}/", summary["id"]))
                    .into(),
            );
            summary_fields.insert(field.into(), summary);
        }
    }
    object["related"] = Value::Object(related);
    object["summary_fields"] = Value::Object(summary_fields);
    ordered(&CLIENT, object)
}

/// The fields of `object` in the model's order (those it lacks left out).
fn ordered(model: &Model, object: Value) -> Value {
    let Value::Object(mut fields) = object else {
        return object;
    };
    let mut out = Map::new();
    for name in model.fields {
        if let Some(value) = fields.remove(*name) {
            out.insert((*name).to_string(), value);
        }
    }
    Value::Object(out)
}
