//! The `/api/v1` endpoints once parsed and authorized: the links, ping and configuration,
//! and the list, create, read, change and delete of users, settings, schedules,
//! repositories, clients, policies and jobs (their sub-resources in `backups`), each turned into a call of `service::cyborgbackup` and its
//! answer written by `wire`.

use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use super::backups;
use super::endpoint::{Endpoint, Kind};
use super::error::DrfError;
use super::filter::Model;
use super::list::{self, ListRequest};
use super::wire::{self, Base};
use crate::service::cyborgbackup::fields::{self, boolean, text, Field};
use crate::service::cyborgbackup::schedules::ScheduleInput;
use crate::service::cyborgbackup::ssh_keys::key_request;
use crate::service::cyborgbackup::users::{UserInput, NOTIFY_FIELDS};
use crate::service::cyborgbackup::{Account, CyborgService};

/// CyBorgBackup's version, as its clients check it.
pub const VERSION: &str = "1.4";

/// What a request to `/api/v1` carries, once authenticated.
pub struct Call<'a> {
    pub service: &'a CyborgService,
    pub caller: Option<&'a Account>,
    pub method: &'a Method,
    pub base: &'a Base,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub body: &'a [u8],
    pub max_page_size: usize,
}

type Reply = Result<Response, DrfError>;

fn ok(body: Value) -> Reply {
    Ok(Json(body).into_response())
}

fn created(body: Value) -> Reply {
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

fn no_content() -> Reply {
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The request body as a JSON object; an empty body is an empty object.
pub fn object(body: &[u8]) -> Result<Map<String, Value>, DrfError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => {
            let got = match other {
                Value::Array(_) => "list",
                Value::String(_) => "str",
                Value::Number(_) => "int",
                Value::Bool(_) => "bool",
                _ => "NoneType",
            };
            Err(DrfError::fields(vec![(
                "non_field_errors".into(),
                format!("Invalid data. Expected a dictionary, but got {got}."),
            )]))
        }
        Err(e) => Err(DrfError::bad_request(format!("JSON parse error - {e}"))),
    }
}

fn caller<'a>(call: &Call<'a>) -> Result<&'a Account, DrfError> {
    call.caller.ok_or_else(DrfError::not_authenticated)
}

/// Answers an endpoint.
pub fn answer(call: &Call, endpoint: Endpoint) -> Reply {
    match endpoint {
        Endpoint::Root => ok(root(call.base)),
        Endpoint::Ping => ok(json!({ "version": VERSION, "ping": "pong" })),
        Endpoint::Config => ok(json!({
            "time_zone": "UTC",
            "debug": false,
            "sql_debug": false,
            "allowed_hosts": ["*"],
            "version": VERSION,
        })),
        Endpoint::Me => {
            let me = wire::user(caller(call)?, call.base);
            ok(json!({ "count": 1, "next": null, "previous": null, "results": [me] }))
        }
        Endpoint::List(kind) if *call.method == Method::POST => create(call, kind),
        Endpoint::List(kind) => list(call, kind),
        Endpoint::Item(kind, id) => item(call, kind, id),
        Endpoint::GenerateSsh => generate_ssh(call),
        Endpoint::SshPublicKey => match call.service.ssh_public_key() {
            Some(line) => ok(Value::String(line)),
            None => ok(json!([])),
        },
        other => super::backups::answer(call, other),
    }
}

/// `settings/generate_ssh/`: GET 200 `[]` when a key is stored, else 204; POST
/// `{type, size, force}` → 201 `{"pubkey"}`, or 409 `{}` when one is stored and
/// `force` was not given.
fn generate_ssh(call: &Call) -> Reply {
    let service = call.service;
    if *call.method != Method::POST {
        return Ok(if service.has_ssh_key() {
            Json(json!([])).into_response()
        } else {
            StatusCode::NO_CONTENT.into_response()
        });
    }
    let body = object(call.body)?;
    let (kind, force) = key_request(&body)?;
    match service.generate_ssh_key(caller(call)?, kind, force)? {
        Some(pubkey) => {
            Ok((StatusCode::CREATED, Json(json!({ "pubkey": pubkey }))).into_response())
        }
        None => Ok((StatusCode::CONFLICT, Json(json!({}))).into_response()),
    }
}

fn root(base: &Base) -> Value {
    let mut links = Map::new();
    for name in ["ping", "config", "me"] {
        links.insert(name.into(), base.url(&format!("/api/v1/{name}/")).into());
    }
    for kind in Kind::ALL {
        let name = kind.segment();
        links.insert(name.into(), base.url(&format!("/api/v1/{name}/")).into());
    }
    for name in super::endpoint::EXTRA_RESOURCES {
        links.insert(name.into(), base.url(&format!("/api/v1/{name}/")).into());
    }
    Value::Object(links)
}

fn model(kind: Kind) -> &'static Model {
    match kind {
        Kind::Users => &wire::USER,
        Kind::Settings => &wire::SETTING,
        Kind::Schedules => &wire::SCHEDULE,
        Kind::Repositories => &wire::REPOSITORY,
        Kind::Clients => &wire::CLIENT,
        Kind::Policies => &backups::POLICY,
        Kind::Jobs => &backups::JOB,
    }
}

fn user_summary(service: &CyborgService) -> impl Fn(u64) -> Option<Value> + '_ {
    move |id| {
        service
            .account_by_id(id)
            .ok()
            .map(|a| wire::user_summary(&a))
    }
}

fn objects(call: &Call, kind: Kind) -> Result<Vec<Value>, DrfError> {
    let (service, base) = (call.service, call.base);
    Ok(match kind {
        Kind::Users => service
            .list_users()?
            .iter()
            .map(|a| wire::user(a, base))
            .collect(),
        Kind::Settings => service
            .list_settings()
            .iter()
            .map(|r| wire::setting(r, base))
            .collect(),
        Kind::Schedules => service
            .list_schedules(caller(call)?)?
            .iter()
            .map(|s| wire::schedule(s, base))
            .collect(),
        Kind::Repositories => service
            .list_repositories()
            .iter()
            .map(|r| wire::repository(r, base))
            .collect(),
        Kind::Clients => {
            let summary = user_summary(service);
            let policies = service.client_policies();
            service
                .list_clients()
                .iter()
                .map(|c| wire::client(c, base, &summary, &policies))
                .collect()
        }
        Kind::Policies => {
            let summary = user_summary(service);
            service
                .list_policies(caller(call)?)
                .iter()
                .map(|p| backups::policy(p, base, &summary))
                .collect()
        }
        Kind::Jobs => {
            let summary = user_summary(service);
            service
                .list_jobs()
                .iter()
                .map(|j| backups::job(j, base, &summary))
                .collect()
        }
    })
}

fn list(call: &Call, kind: Kind) -> Reply {
    let objects = objects(call, kind)?;
    let request = ListRequest {
        path: call.path,
        query: call.query,
        max_page_size: call.max_page_size,
    };
    ok(list::page(model(kind), objects, &request)?)
}

fn one(call: &Call, kind: Kind, id: u64) -> Result<Value, DrfError> {
    let (service, base) = (call.service, call.base);
    Ok(match kind {
        Kind::Users => wire::user(&service.account_by_id(id)?, base),
        Kind::Settings => wire::setting(&service.setting(id)?, base),
        Kind::Schedules => wire::schedule(&service.schedule(caller(call)?, id)?, base),
        Kind::Repositories => wire::repository(&service.repository(id)?, base),
        Kind::Clients => wire::client(
            &service.client(id)?,
            base,
            &user_summary(service),
            &service.client_policies(),
        ),
        Kind::Policies => backups::policy(
            &service.policy(caller(call)?, id)?,
            base,
            &user_summary(service),
        ),
        Kind::Jobs => backups::job(&service.job(id)?, base, &user_summary(service)),
    })
}

const USER_FIELDS: [Field; 11] = [
    text("email", 254, false, false),
    text("first_name", 150, true, false),
    text("last_name", 150, true, false),
    boolean("is_superuser"),
    text("password", 1024, false, false),
    boolean(NOTIFY_FIELDS[0]),
    boolean(NOTIFY_FIELDS[1]),
    boolean(NOTIFY_FIELDS[2]),
    boolean(NOTIFY_FIELDS[3]),
    boolean(NOTIFY_FIELDS[4]),
    boolean(NOTIFY_FIELDS[5]),
];

const SCHEDULE_FIELDS: [Field; 3] = [
    text("name", 512, false, false),
    text("crontab", 256, false, false),
    boolean("enabled"),
];

fn text_of(map: &Map<String, Value>, name: &str) -> Option<String> {
    map.get(name).and_then(Value::as_str).map(str::to_string)
}

fn user_input(body: &Map<String, Value>) -> Result<UserInput, DrfError> {
    let checked = fields::check(body, &USER_FIELDS, false)?;
    Ok(UserInput {
        email: text_of(&checked, "email"),
        first_name: text_of(&checked, "first_name"),
        last_name: text_of(&checked, "last_name"),
        is_superuser: checked.get("is_superuser").and_then(Value::as_bool),
        password: text_of(&checked, "password"),
        notify: NOTIFY_FIELDS
            .iter()
            .filter_map(|f| Some((f.to_string(), checked.get(*f)?.as_bool()?)))
            .collect(),
    })
}

fn schedule_input(body: &Map<String, Value>, partial: bool) -> Result<ScheduleInput, DrfError> {
    let checked = fields::check(body, &SCHEDULE_FIELDS, false)?;
    let input = ScheduleInput {
        name: text_of(&checked, "name"),
        crontab: text_of(&checked, "crontab"),
        enabled: checked.get("enabled").and_then(Value::as_bool),
    };
    if partial {
        return Ok(input);
    }
    let mut missing = Vec::new();
    for (field, given) in [
        ("name", input.name.is_some()),
        ("crontab", input.crontab.is_some()),
    ] {
        if !given {
            missing.push((field.to_string(), "This field is required.".to_string()));
        }
    }
    if missing.is_empty() {
        Ok(input)
    } else {
        Err(DrfError::fields(missing))
    }
}

fn create(call: &Call, kind: Kind) -> Reply {
    let who = caller(call)?;
    let body = object(call.body)?;
    let (service, base) = (call.service, call.base);
    created(match kind {
        Kind::Users => wire::user(&service.create_user(who, user_input(&body)?)?, base),
        Kind::Schedules => wire::schedule(
            &service.create_schedule(who, schedule_input(&body, true)?)?,
            base,
        ),
        Kind::Repositories => wire::repository(&service.create_repository(who, &body)?, base),
        Kind::Clients => wire::client(
            &service.create_client(who, &body)?,
            base,
            &user_summary(service),
            &service.client_policies(),
        ),
        Kind::Policies => backups::policy(
            &service.create_policy(who, &body)?,
            base,
            &user_summary(service),
        ),
        Kind::Settings | Kind::Jobs => return Err(DrfError::method_not_allowed(call.method, &[])),
    })
}

/// A setting's new value as text: booleans as `True`/`False`, numbers as written.
fn setting_value(body: &Map<String, Value>, partial: bool) -> Result<Option<String>, DrfError> {
    let invalid = |m: &str| DrfError::fields(vec![("value".into(), m.into())]);
    match body.get("value") {
        None if partial => Ok(None),
        None => Err(invalid("This field is required.")),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Bool(true)) => Ok(Some("True".into())),
        Some(Value::Bool(false)) => Ok(Some("False".into())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(Value::Null) => Err(invalid("This field may not be null.")),
        Some(_) => Err(invalid("Not a valid string.")),
    }
}

fn change(call: &Call, kind: Kind, id: u64) -> Reply {
    let who = caller(call)?;
    let body = object(call.body)?;
    let partial = *call.method == Method::PATCH;
    let (service, base) = (call.service, call.base);
    let answer = match kind {
        Kind::Users => {
            let account = service.update_user(who, id, user_input(&body)?)?;
            let mut response = Json(wire::user(&account, base)).into_response();
            if account.id == who.id {
                // CyBorgBackup hands a fresh access token to users changing themselves.
                if let Ok(token) = HeaderValue::from_str(&service.access_token(&account)) {
                    response.headers_mut().insert("X-Token", token);
                }
            }
            return Ok(response);
        }
        Kind::Settings => match setting_value(&body, partial)? {
            Some(value) => wire::setting(&service.set_setting(who, id, &value)?, base),
            None => {
                crate::service::cyborgbackup::authorize(
                    who,
                    crate::service::cyborgbackup::Action::Manage,
                )?;
                wire::setting(&service.setting(id)?, base)
            }
        },
        Kind::Schedules => {
            let input = schedule_input(&body, partial)?;
            wire::schedule(&service.update_schedule(who, id, input)?, base)
        }
        Kind::Repositories => {
            wire::repository(&service.update_repository(who, id, &body, partial)?, base)
        }
        Kind::Clients => wire::client(
            &service.update_client(who, id, &body, partial)?,
            base,
            &user_summary(service),
            &service.client_policies(),
        ),
        Kind::Policies => backups::policy(
            &service.update_policy(who, id, &body, partial)?,
            base,
            &user_summary(service),
        ),
        Kind::Jobs => return Err(DrfError::method_not_allowed(call.method, &[])),
    };
    ok(answer)
}

fn item(call: &Call, kind: Kind, id: u64) -> Reply {
    let method = call.method;
    if *method == Method::GET || *method == Method::HEAD {
        return ok(one(call, kind, id)?);
    }
    if *method == Method::DELETE {
        let (who, service) = (caller(call)?, call.service);
        match kind {
            Kind::Users => service.delete_user(who, id)?,
            Kind::Schedules => service.delete_schedule(who, id)?,
            Kind::Repositories => service.delete_repository(who, id)?,
            Kind::Clients => service.delete_client(who, id)?,
            Kind::Policies => service.delete_policy(who, id)?,
            Kind::Jobs => service.delete_job(who, id)?,
            Kind::Settings => return Err(DrfError::method_not_allowed(method, &[])),
        }
        return no_content();
    }
    change(call, kind, id)
}
