//! CyBorgBackup policies over the core policies (`service::policies`): each is the core
//! policy `cyborgbackup-<id>`, kept in step on every create, change and delete and again
//! at each launch, so the core scheduler runs it when its schedule fires. Its type says
//! what it reads on the server: `folders` the `folders` of its `extra_vars` (a JSON
//! text), `config` `/etc`, `mail` `/var/lib/mail` and `/var/mail`, `rootfs` the
//! directories directly under `/` less CyBorgBackup's fixed excludes, `piped` the output
//! of `sh -c <extra_vars.command>`; the other types are refused. Its backups go to the
//! series `cyborgbackup-<repository>-<type>-<hostname>`, so the retention (its `keep_*`,
//! unless `cyborgbackup_auto_prune` is off) prunes as borg's `--prefix` would. Only the
//! client `localhost`, the server itself, can be backed up: other hosts need stowage's
//! client agent, which does not exist yet.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::fields::{self, boolean, int, text, Field};
use super::jobs::JobRow;
use super::store::{self, JobLink, Policy, StateFile};
use super::{drf_now, Account, CbError, CyborgService};
use crate::format::series::RetentionPolicy;
use crate::service::policies::{NewPolicy, PolicyChanges, PolicyError};
use crate::service::policy_runs::Trigger;
use crate::state::policies::PolicySource;

/// The longest `extra_vars` text.
pub const MAX_EXTRA_VARS: usize = 64 * 1024;
/// The most clients of one policy.
pub const MAX_CLIENTS: usize = 256;
/// The client that stands for the server itself.
pub const LOCAL_CLIENT: &str = "localhost";

/// CyBorgBackup's policy types.
pub const POLICY_TYPES: [&str; 9] = [
    "rootfs",
    "vm",
    "mysql",
    "postgresql",
    "piped",
    "config",
    "mail",
    "folders",
    "proxmox",
];

/// What `rootfs` leaves out (CyBorgBackup's fixed excludes).
pub const ROOTFS_EXCLUDES: [&str; 10] = [
    "/media",
    "/dev",
    "/proc",
    "/sys",
    "/var/run",
    "/run",
    "/lost+found",
    "/mnt",
    "/var/lib/lxcfs",
    "/tmp",
];

/// The message of a launch while a job of the same clients is active (sic).
pub const BUSY: &str = "Backup job already running for theses clients.";

/// The plain writable fields of a policy (the references are checked apart).
pub const POLICY_FIELDS: [Field; 12] = [
    text("name", 512, false, true),
    text("extra_vars", MAX_EXTRA_VARS, true, false),
    text("vmprovider", 128, true, false),
    text("prehook", 4096, true, false),
    text("posthook", 4096, true, false),
    boolean("mode_pull"),
    boolean("enabled"),
    int("keep_hourly", 0, 100_000, true),
    int("keep_yearly", 0, 100_000, true),
    int("keep_daily", 0, 100_000, true),
    int("keep_weekly", 0, 100_000, true),
    int("keep_monthly", 0, 100_000, true),
];

/// A policy with what its serializer shows of the objects it names.
#[derive(Debug, Clone)]
pub struct PolicyRow {
    pub policy: Policy,
    /// `2026-11-30T05:00:00Z`.
    pub next_run: Option<String>,
    pub schedule_name: Option<String>,
    pub repository_name: Option<String>,
    pub clients: Vec<(u64, String)>,
}

/// The core policy of a CyBorgBackup policy.
pub fn core_name(id: u64) -> String {
    format!("cyborgbackup-{id}")
}

/// `cyborgbackup-<repository>-<type>-<hostname>`, in the series alphabet.
pub fn series_name(repository: u64, policy_type: &str, hostname: &str) -> String {
    let raw = format!("cyborgbackup-{repository}-{policy_type}-{hostname}");
    raw.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .take(crate::repo::ingest::MAX_SERIES_LEN)
        .collect()
}

/// `extra_vars` read as JSON: blank is an empty object.
fn extra_vars(policy: &Policy) -> Result<Map<String, Value>, CbError> {
    if policy.extra_vars.trim().is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_str::<Value>(&policy.extra_vars) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(CbError::invalid(
            "extra_vars",
            "Enter a JSON object, e.g. {\"folders\": [\"/srv/data\"], \"exclude\": []}.",
        )),
    }
}

fn strings(vars: &Map<String, Value>, key: &str) -> Result<Option<Vec<String>>, CbError> {
    match vars.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .map(Some)
            .ok_or_else(|| {
                CbError::invalid(
                    "extra_vars",
                    format!("\"{key}\" must be a list of strings."),
                )
            }),
        Some(_) => Err(CbError::invalid(
            "extra_vars",
            format!("\"{key}\" must be a list of strings."),
        )),
    }
}

/// The directories directly under `/`, less the fixed excludes (symbolic links and
/// files there are left out: the core backs up folders that resolve to themselves).
fn rootfs_folders() -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/") {
        for entry in entries.flatten() {
            let path = format!("/{}", entry.file_name().to_string_lossy());
            let is_dir = std::fs::symlink_metadata(entry.path()).is_ok_and(|m| m.is_dir());
            if is_dir && !ROOTFS_EXCLUDES.contains(&path.as_str()) {
                out.push(path);
            }
        }
    }
    out.sort();
    out.truncate(crate::service::policies::MAX_PATHS);
    out
}

/// What the policy reads on the server, as the disk is now.
pub fn source_of(policy: &Policy) -> Result<PolicySource, CbError> {
    let vars = extra_vars(policy)?;
    let exclude =
        || -> Result<Vec<String>, CbError> { Ok(strings(&vars, "exclude")?.unwrap_or_default()) };
    let folders = |paths: Vec<String>| -> Result<PolicySource, CbError> {
        Ok(PolicySource::Folders {
            paths,
            exclude: exclude()?,
        })
    };
    match policy.policy_type.as_str() {
        "folders" => match strings(&vars, "folders")? {
            Some(paths) if !paths.is_empty() => folders(paths),
            _ => Err(CbError::invalid(
                "extra_vars",
                "A folders policy needs {\"folders\": [absolute paths]} in extra_vars.",
            )),
        },
        "config" => folders(vec!["/etc".into()]),
        "mail" => {
            let all = ["/var/lib/mail", "/var/mail"];
            let existing: Vec<String> = all
                .iter()
                .filter(|p| std::path::Path::new(p).exists())
                .map(|p| p.to_string())
                .collect();
            if existing.is_empty() {
                folders(all.iter().map(|p| p.to_string()).collect())
            } else {
                folders(existing)
            }
        }
        "rootfs" => {
            let paths = rootfs_folders();
            if paths.is_empty() {
                return Err(CbError::invalid(
                    "policy_type",
                    "No folder under / can be backed up on this server.",
                ));
            }
            folders(paths)
        }
        "piped" => match vars.get("command").and_then(Value::as_str) {
            Some(command) if !command.trim().is_empty() => Ok(PolicySource::Command {
                argv: vec!["sh".into(), "-c".into(), command.to_string()],
            }),
            _ => Err(CbError::invalid(
                "extra_vars",
                "Command for piped backup not defined: give {\"command\": \"...\"} in extra_vars.",
            )),
        },
        other => Err(CbError::invalid(
            "policy_type",
            format!(
                "Policy type \"{other}\" is not supported by this server yet: use folders, config, mail, rootfs or piped."
            ),
        )),
    }
}

/// The field a core refusal of the policy's source is about.
fn source_field(policy_type: &str) -> &'static str {
    match policy_type {
        "folders" | "piped" => "extra_vars",
        _ => "policy_type",
    }
}

fn core_refusal(policy: &Policy, error: PolicyError) -> CbError {
    match error {
        PolicyError::Invalid(m) | PolicyError::Forbidden(m) => {
            CbError::invalid(source_field(&policy.policy_type), m)
        }
        PolicyError::Denied(_) => CbError::Forbidden,
        PolicyError::Running { .. } => CbError::BadRequest(BUSY.into()),
        other => CbError::Damaged(other.to_string()),
    }
}

/// The hostname a policy's backups are named by: `localhost` when it is one of its
/// clients, else its first client's.
fn hostname_of(state: &StateFile, policy: &Policy) -> String {
    let names: Vec<&str> = policy
        .clients
        .iter()
        .filter_map(|id| state.clients.get(id))
        .map(|c| c.hostname.as_str())
        .collect();
    if names.contains(&LOCAL_CLIENT) || names.is_empty() {
        LOCAL_CLIENT.to_string()
    } else {
        names[0].to_string()
    }
}

/// The core retention of the keep_* counts (`None`: auto prune off, or none set).
fn retention_of(policy: &Policy, auto_prune: bool) -> Option<RetentionPolicy> {
    let count = |n: Option<i64>| n.filter(|n| *n > 0).and_then(|n| u32::try_from(n).ok());
    let retention = RetentionPolicy {
        keep_hourly: count(policy.keep_hourly),
        keep_daily: count(policy.keep_daily),
        keep_weekly: count(policy.keep_weekly),
        keep_monthly: count(policy.keep_monthly),
        keep_yearly: count(policy.keep_yearly),
        ..RetentionPolicy::default()
    };
    let any = [
        retention.keep_hourly,
        retention.keep_daily,
        retention.keep_weekly,
        retention.keep_monthly,
        retention.keep_yearly,
    ]
    .iter()
    .any(Option::is_some);
    (auto_prune && any).then_some(retention)
}

/// Checks the references and choices of `body`, writing them into `policy`.
fn apply_refs(
    state: &StateFile,
    body: &Map<String, Value>,
    policy: &mut Policy,
    creating: bool,
    errors: &mut Vec<(String, String)>,
) {
    let required = |field: &str, errors: &mut Vec<(String, String)>| {
        errors.push((field.to_string(), "This field is required.".into()))
    };
    for field in ["schedule", "repository"] {
        match body.get(field) {
            None if creating => required(field, errors),
            None => {}
            Some(value) => {
                let id = pk(value);
                let exists = id.is_some_and(|id| match field {
                    "schedule" => state.schedules.contains_key(&id),
                    _ => state.repositories.contains_key(&id),
                });
                match (id, exists) {
                    (Some(id), true) if field == "schedule" => policy.schedule = id,
                    (Some(id), true) => policy.repository = id,
                    _ => errors.push((field.to_string(), pk_error(value))),
                }
            }
        }
    }
    match body.get("clients") {
        None => {}
        Some(Value::Array(items)) if items.len() <= MAX_CLIENTS => {
            let mut ids = Vec::new();
            for item in items {
                match pk(item).filter(|id| state.clients.contains_key(id)) {
                    Some(id) if !ids.contains(&id) => ids.push(id),
                    Some(_) => {}
                    None => {
                        errors.push(("clients".into(), pk_error(item)));
                        break;
                    }
                }
            }
            policy.clients = ids;
        }
        Some(Value::Array(_)) => errors.push((
            "clients".into(),
            format!("Ensure this field has no more than {MAX_CLIENTS} elements."),
        )),
        Some(other) => errors.push((
            "clients".into(),
            format!(
                "Expected a list of items but got type \"{}\".",
                type_name(other)
            ),
        )),
    }
    match body.get("policy_type") {
        None => {}
        Some(Value::String(t)) if POLICY_TYPES.contains(&t.as_str()) => {
            policy.policy_type = t.clone()
        }
        Some(other) => errors.push((
            "policy_type".into(),
            format!("\"{}\" is not a valid choice.", shown(other)),
        )),
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

fn shown(value: &Value) -> String {
    let text = match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    text.chars().take(64).collect()
}

fn pk(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) if s.len() <= 19 => s.parse().ok(),
        _ => None,
    }
}

fn pk_error(value: &Value) -> String {
    match value {
        Value::Number(_) | Value::String(_) if pk(value).is_some() => {
            format!("Invalid pk \"{}\" - object does not exist.", shown(value))
        }
        Value::Null => "This field may not be null.".into(),
        other => format!(
            "Incorrect type. Expected pk value, received {}.",
            type_name(other)
        ),
    }
}

/// Writes the checked plain fields into `policy`.
fn apply_fields(policy: &mut Policy, checked: &Map<String, Value>) {
    let text = |name: &str| {
        checked
            .get(name)
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let flag = |name: &str| checked.get(name).and_then(Value::as_bool);
    let keep = |name: &str| checked.get(name).map(Value::as_i64);
    if let Some(v) = text("name") {
        policy.name = v;
    }
    if let Some(v) = text("extra_vars") {
        policy.extra_vars = v;
    }
    if let Some(v) = text("vmprovider") {
        policy.vmprovider = v;
    }
    if let Some(v) = text("prehook") {
        policy.prehook = v;
    }
    if let Some(v) = text("posthook") {
        policy.posthook = v;
    }
    if let Some(v) = flag("mode_pull") {
        policy.mode_pull = v;
    }
    if let Some(v) = flag("enabled") {
        policy.enabled = v;
    }
    for (name, slot) in [
        ("keep_hourly", &mut policy.keep_hourly),
        ("keep_yearly", &mut policy.keep_yearly),
        ("keep_daily", &mut policy.keep_daily),
        ("keep_weekly", &mut policy.keep_weekly),
        ("keep_monthly", &mut policy.keep_monthly),
    ] {
        if let Some(v) = keep(name) {
            *slot = v;
        }
    }
}

fn blank_policy(caller: u64) -> Policy {
    let now = drf_now();
    Policy {
        id: 0,
        uuid: uuid::Uuid::new_v4().to_string(),
        name: String::new(),
        extra_vars: String::new(),
        clients: Vec::new(),
        repository: 0,
        schedule: 0,
        policy_type: "rootfs".into(),
        keep_hourly: None,
        keep_yearly: None,
        keep_daily: None,
        keep_weekly: None,
        keep_monthly: None,
        vmprovider: String::new(),
        mode_pull: false,
        enabled: true,
        prehook: String::new(),
        posthook: String::new(),
        created: now.clone(),
        modified: now,
        created_by: Some(caller),
        modified_by: Some(caller),
    }
}

impl CyborgService {
    /// Creates or replaces the core policy of `policy`.
    fn sync_core(
        &self,
        caller: &Account,
        state: &StateFile,
        policy: &Policy,
    ) -> Result<(), CbError> {
        let core = self.core()?;
        let source = source_of(policy)?;
        let series = series_name(
            policy.repository,
            &policy.policy_type,
            &hostname_of(state, policy),
        );
        let schedule = state
            .schedules
            .get(&policy.schedule)
            .map(|l| l.core.clone());
        let auto_prune = super::settings::Settings::read(state).auto_prune;
        let retention = retention_of(policy, auto_prune);
        let who = caller.principal();
        let policies = core.runner.policies();
        let name = core_name(policy.id);
        let changes = PolicyChanges {
            source: Some(source.clone()),
            series: Some(series.clone()),
            schedule: Some(schedule.clone()),
            retention: Some(retention.clone()),
            enabled: Some(policy.enabled),
        };
        match policies.update(&who, &name, changes) {
            Ok(_) => Ok(()),
            Err(PolicyError::NotFound(_)) => policies
                .create(
                    &who,
                    NewPolicy {
                        name,
                        source,
                        series,
                        schedule,
                        retention,
                        enabled: policy.enabled,
                    },
                )
                .map(|_| ())
                .map_err(|e| core_refusal(policy, e)),
            Err(e) => Err(core_refusal(policy, e)),
        }
    }

    fn policy_row(&self, state: &StateFile, policy: Policy, next_run: Option<String>) -> PolicyRow {
        PolicyRow {
            next_run,
            schedule_name: state
                .schedules
                .get(&policy.schedule)
                .map(|l| l.name.clone()),
            repository_name: state
                .repositories
                .get(&policy.repository)
                .map(|r| r.name.clone()),
            clients: policy
                .clients
                .iter()
                .filter_map(|id| Some((*id, state.clients.get(id)?.hostname.clone())))
                .collect(),
            policy,
        }
    }

    /// The next scheduled run of each core policy, by name.
    fn next_runs(&self, caller: &Account) -> std::collections::HashMap<String, String> {
        let Ok(core) = self.core() else {
            return Default::default();
        };
        core.runner
            .policies()
            .list(&caller.principal())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|v| {
                let at = chrono::DateTime::parse_from_rfc3339(v.next_run.as_deref()?).ok()?;
                Some((
                    v.name,
                    at.with_timezone(&chrono::Utc)
                        .format("%Y-%m-%dT%H:%M:%SZ")
                        .to_string(),
                ))
            })
            .collect()
    }

    pub fn list_policies(&self, caller: &Account) -> Vec<PolicyRow> {
        let mut next = self.next_runs(caller);
        let state = self.lock();
        state
            .policies
            .values()
            .map(|p| {
                let run = next.remove(&core_name(p.id));
                self.policy_row(&state, p.clone(), run)
            })
            .collect()
    }

    pub fn policy(&self, caller: &Account, id: u64) -> Result<PolicyRow, CbError> {
        let mut next = self.next_runs(caller);
        let state = self.lock();
        let policy = state
            .policies
            .get(&id)
            .cloned()
            .ok_or(CbError::NotFound("Policy"))?;
        let run = next.remove(&core_name(id));
        Ok(self.policy_row(&state, policy, run))
    }

    pub fn create_policy(
        &self,
        caller: &Account,
        body: &Map<String, Value>,
    ) -> Result<PolicyRow, CbError> {
        super::authorize(caller, super::Action::Manage)?;
        let mut errors = Vec::new();
        let checked = match fields::check(body, &POLICY_FIELDS, true) {
            Ok(checked) => checked,
            Err(CbError::Invalid(mut list)) => {
                errors.append(&mut list);
                Map::new()
            }
            Err(e) => return Err(e),
        };
        let mut state = self.lock();
        let mut policy = blank_policy(caller.id);
        apply_refs(&state, body, &mut policy, true, &mut errors);
        if !errors.is_empty() {
            return Err(CbError::Invalid(errors));
        }
        apply_fields(&mut policy, &checked);
        policy.id = state.next_policy_id.max(1);
        self.sync_core(caller, &state, &policy)?;
        store::take_id(&mut state.next_policy_id);
        state.policies.insert(policy.id, policy.clone());
        self.save(&state)?;
        Ok(self.policy_row(&state, policy, None))
    }

    pub fn update_policy(
        &self,
        caller: &Account,
        id: u64,
        body: &Map<String, Value>,
        partial: bool,
    ) -> Result<PolicyRow, CbError> {
        super::authorize(caller, super::Action::Manage)?;
        let mut errors = Vec::new();
        let checked = match fields::check(body, &POLICY_FIELDS, !partial) {
            Ok(checked) => checked,
            Err(CbError::Invalid(mut list)) => {
                errors.append(&mut list);
                Map::new()
            }
            Err(e) => return Err(e),
        };
        let mut state = self.lock();
        let mut policy = state
            .policies
            .get(&id)
            .cloned()
            .ok_or(CbError::NotFound("Policy"))?;
        apply_refs(&state, body, &mut policy, !partial, &mut errors);
        if !errors.is_empty() {
            return Err(CbError::Invalid(errors));
        }
        apply_fields(&mut policy, &checked);
        policy.modified = drf_now();
        policy.modified_by = Some(caller.id);
        self.sync_core(caller, &state, &policy)?;
        state.policies.insert(id, policy.clone());
        self.save(&state)?;
        drop(state);
        self.policy(caller, id)
    }

    pub fn delete_policy(&self, caller: &Account, id: u64) -> Result<(), CbError> {
        super::authorize(caller, super::Action::Manage)?;
        let mut state = self.lock();
        if !state.policies.contains_key(&id) {
            return Err(CbError::NotFound("Policy"));
        }
        let core = self.core()?;
        match core
            .runner
            .policies()
            .delete(&caller.principal(), &core_name(id))
        {
            Ok(()) | Err(PolicyError::NotFound(_)) => {}
            Err(PolicyError::Denied(_)) => return Err(CbError::Forbidden),
            Err(e) => return Err(CbError::Damaged(e.to_string())),
        }
        state.policies.remove(&id);
        self.save(&state)
    }

    /// `GET .../launch/`: what a launch would use.
    pub fn launch_defaults(&self, id: u64) -> Result<String, CbError> {
        self.lock()
            .policies
            .get(&id)
            .map(|p| p.extra_vars.clone())
            .ok_or(CbError::NotFound("Policy"))
    }

    /// Runs the policy now; its backup job.
    pub fn launch_policy(
        &self,
        caller: &Account,
        id: u64,
        launch_type: &str,
    ) -> Result<JobRow, CbError> {
        super::authorize(caller, super::Action::Manage)?;
        self.sync_jobs();
        let core = self.core()?.clone();
        let job_id = {
            let mut state = self.lock();
            let policy = state
                .policies
                .get(&id)
                .cloned()
                .ok_or(CbError::NotFound("Policy"))?;
            let enabled: Vec<(u64, String)> = policy
                .clients
                .iter()
                .filter_map(|c| state.clients.get(c))
                .filter(|c| c.enabled)
                .map(|c| (c.id, c.hostname.clone()))
                .collect();
            if enabled.is_empty() {
                return Err(CbError::BadRequest(
                    "The policy has no enabled client to back up.".into(),
                ));
            }
            let remote: Vec<&str> = enabled
                .iter()
                .map(|(_, h)| h.as_str())
                .filter(|h| *h != LOCAL_CLIENT)
                .collect();
            if !remote.is_empty() {
                return Err(CbError::BadRequest(format!(
                    "Clients {} cannot be backed up yet: they need stowage's client agent, which is not available; only the client \"{LOCAL_CLIENT}\" (this server) can be backed up.",
                    remote.join(", ")
                )));
            }
            let clients: BTreeSet<u64> = enabled.iter().map(|(c, _)| *c).collect();
            let busy = state.jobs.values().any(|link| {
                link.repository == policy.repository
                    && link.client.is_some_and(|c| clients.contains(&c))
                    && core
                        .jobs
                        .get(&link.core)
                        .is_ok_and(|j| !j.status.is_finished())
            });
            if busy {
                return Err(CbError::BadRequest(BUSY.into()));
            }
            // Resolved again: the disk may have changed, and the settings with it.
            self.sync_core(caller, &state, &policy)?;
            let view = core
                .runner
                .run(&caller.principal(), &core_name(id), Trigger::Manual)
                .map_err(|e| core_refusal(&policy, e))?;
            let job_id = store::take_id(&mut state.next_job_id);
            let (client, hostname) = enabled[0].clone();
            let archive_name = Some(super::jobs::archive_name_for(
                &state,
                &policy.policy_type,
                &hostname,
                &view.created_at,
            ));
            state.jobs.insert(
                job_id,
                JobLink {
                    archive_name,
                    core: view.id,
                    job_type: "job".into(),
                    launch_type: launch_type.into(),
                    policy: id,
                    policy_name: policy.name.clone(),
                    policy_type: policy.policy_type.clone(),
                    client: Some(client),
                    hostname,
                    repository: policy.repository,
                    schedule: Some(policy.schedule),
                    master_job: None,
                    created_by: Some(caller.id),
                },
            );
            self.save(&state)?;
            job_id
        };
        self.job(job_id)
    }

    /// The crontab of the policy's schedule.
    pub fn policy_crontab(&self, caller: &Account, id: u64) -> Result<String, CbError> {
        let schedule = self
            .lock()
            .policies
            .get(&id)
            .map(|p| p.schedule)
            .ok_or(CbError::NotFound("Policy"))?;
        Ok(self.schedule(caller, schedule)?.core.crontab)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_names_follow_the_series_rules() {
        assert_eq!(
            series_name(3, "folders", "web 1.example.org"),
            "cyborgbackup-3-folders-web_1.example.org"
        );
        crate::repo::ingest::validate_series(&series_name(1, "rootfs", &"é".repeat(300))).unwrap();
    }

    #[test]
    fn sources_follow_the_policy_type() {
        let mut policy = blank_policy(1);
        policy.policy_type = "folders".into();
        policy.extra_vars = r#"{"folders": ["/srv/a"], "exclude": ["*.tmp"]}"#.into();
        assert_eq!(
            source_of(&policy).unwrap(),
            PolicySource::Folders {
                paths: vec!["/srv/a".into()],
                exclude: vec!["*.tmp".into()]
            }
        );
        policy.policy_type = "piped".into();
        policy.extra_vars = r#"{"command": "echo hi"}"#.into();
        assert_eq!(
            source_of(&policy).unwrap(),
            PolicySource::Command {
                argv: vec!["sh".into(), "-c".into(), "echo hi".into()]
            }
        );
        policy.policy_type = "config".into();
        policy.extra_vars = String::new();
        assert!(
            matches!(source_of(&policy).unwrap(), PolicySource::Folders { paths, .. } if paths == ["/etc"])
        );
        policy.policy_type = "rootfs".into();
        if let Ok(PolicySource::Folders { paths, .. }) = source_of(&policy) {
            assert!(paths
                .iter()
                .all(|p| !ROOTFS_EXCLUDES.contains(&p.as_str()) && p != "/"));
        }
        policy.policy_type = "vm".into();
        let Err(CbError::Invalid(errors)) = source_of(&policy) else {
            panic!("vm accepted")
        };
        assert_eq!(errors[0].0, "policy_type");
        assert!(errors[0].1.contains("not supported by this server yet"));
        policy.policy_type = "folders".into();
        policy.extra_vars = "[1]".into();
        assert!(source_of(&policy).is_err());
    }

    #[test]
    fn keep_yearly_is_kept_yearly_and_auto_prune_off_keeps_nothing() {
        let mut policy = blank_policy(1);
        assert_eq!(retention_of(&policy, true), None);
        policy.keep_yearly = Some(2);
        policy.keep_hourly = Some(0);
        let retention = retention_of(&policy, true).unwrap();
        assert_eq!(retention.keep_yearly, Some(2));
        assert_eq!(retention.keep_monthly, None);
        assert_eq!(retention.keep_hourly, None);
        assert_eq!(retention_of(&policy, false), None);
    }
}
