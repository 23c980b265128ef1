//! CyBorgBackup policies over the core policies (`service::policies`): each of a
//! policy's clients is the core policy `cyborgbackup-<id>-<client id>`, kept in step on
//! every create, change and delete and again at each launch, so the core scheduler runs
//! it when its schedule fires. What it reads follows its type and the client
//! (`policy_sources`): this server's own folders for the local client, the client
//! host's folders through its agent for any other. Each client's backups go to the
//! series `cyborgbackup-<repository>-<type>-<hostname>`, so the retention (its `keep_*`,
//! unless `cyborgbackup_auto_prune` is off) prunes as borg's `--prefix` would.

use std::collections::{BTreeSet, HashMap};

use serde_json::{Map, Value};

use super::fields::{self, boolean, int, text, Field};
use super::jobs::JobRow;
use super::policy_sources::{source_field, source_of, Place};
use super::store::{self, JobLink, Policy, StateFile};
use super::{drf_now, Account, CbError, CyborgService};
use crate::format::series::RetentionPolicy;
use crate::service::policies::{NewPolicy, PolicyChanges, PolicyError};
use crate::service::policy_runs::Trigger;

/// The longest `extra_vars` text.
pub const MAX_EXTRA_VARS: usize = 64 * 1024;
/// The most clients of one policy.
pub const MAX_CLIENTS: usize = 256;
/// A client that always stands for the server itself (beside its configured host name).
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

/// The core policy of one client of a CyBorgBackup policy.
pub fn core_name(id: u64, client: u64) -> String {
    format!("cyborgbackup-{id}-{client}")
}

/// Whether the core policy `name` is one of the CyBorgBackup policy `id`'s (a client's,
/// or the single `cyborgbackup-<id>` of earlier versions).
fn belongs(name: &str, id: u64) -> bool {
    let Some(rest) = name
        .strip_prefix("cyborgbackup-")
        .and_then(|r| r.strip_prefix(id.to_string().as_str()))
    else {
        return false;
    };
    rest.is_empty()
        || rest
            .strip_prefix('-')
            .is_some_and(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit()))
}

/// The start every series of a repository's archives shares.
pub fn repository_series_prefix(repository: u64) -> String {
    format!("cyborgbackup-{repository}-")
}

/// `cyborgbackup-<repository>-<type>-<hostname>`, in the series alphabet.
pub fn series_name(repository: u64, policy_type: &str, hostname: &str) -> String {
    let raw = format!(
        "{}{policy_type}-{hostname}",
        repository_series_prefix(repository)
    );
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
    // The original runs hooks on the client over SSH; stowage runs none, and a hook
    // silently skipped would let a backup run without what it was meant to prepare.
    for hook in ["prehook", "posthook"] {
        if body
            .get(hook)
            .and_then(Value::as_str)
            .is_some_and(|h| !h.trim().is_empty())
        {
            errors.push((
                hook.to_string(),
                "stowage runs no hooks: leave this empty (a piped policy runs a command on \
                 this server)."
                    .to_string(),
            ));
        }
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

pub(super) fn blank_policy(caller: u64) -> Policy {
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
    /// Where the client `hostname` is backed up from: here, or its agent.
    pub(super) fn place<'a>(&self, hostname: &'a str) -> Place<'a> {
        let local = self.core().is_ok_and(|c| c.local_hostname == hostname);
        if local || hostname == LOCAL_CLIENT {
            Place::Here
        } else {
            Place::Agent(hostname)
        }
    }

    /// Creates or replaces the core policy of each client of `policy`, and deletes those
    /// of clients it no longer names.
    fn sync_core(
        &self,
        caller: &Account,
        state: &StateFile,
        policy: &Policy,
    ) -> Result<(), CbError> {
        let core = self.core()?;
        let who = caller.principal();
        let policies = core.runner.policies();
        let schedule = state
            .schedules
            .get(&policy.schedule)
            .map(|l| l.core.clone());
        let settings = super::settings::Settings::read(state);
        let auto_prune = settings.auto_prune;
        let retention = retention_of(policy, auto_prune);
        if policy.clients.is_empty() {
            // Checked all the same, so a bad extra_vars is refused when saved.
            source_of(policy, Place::Here)?;
        }
        let mut wanted = Vec::new();
        for client in policy.clients.iter().filter_map(|id| state.clients.get(id)) {
            let source = source_of(policy, self.place(&client.hostname))?;
            let series = series_name(policy.repository, &policy.policy_type, &client.hostname);
            let name = core_name(policy.id, client.id);
            let changes = PolicyChanges {
                source: Some(source.clone()),
                series: Some(series.clone()),
                schedule: Some(schedule.clone()),
                retention: Some(retention.clone()),
                enabled: Some(policy.enabled && client.enabled),
                catalog_check: Some(settings.catalog_enabled),
            };
            match policies.update(&who, &name, changes) {
                Ok(_) => {}
                Err(PolicyError::NotFound(_)) => policies
                    .create(
                        &who,
                        NewPolicy {
                            name: name.clone(),
                            source,
                            series,
                            schedule: schedule.clone(),
                            retention: retention.clone(),
                            enabled: policy.enabled && client.enabled,
                            catalog_check: settings.catalog_enabled,
                        },
                    )
                    .map(|_| ())
                    .map_err(|e| core_refusal(policy, e))?,
                Err(e) => return Err(core_refusal(policy, e)),
            }
            wanted.push(name);
        }
        self.delete_core(caller, policy.id, &wanted)
    }

    /// Deletes the core policies of the policy `id` other than those `kept`.
    fn delete_core(&self, caller: &Account, id: u64, kept: &[String]) -> Result<(), CbError> {
        let who = caller.principal();
        let policies = self.core()?.runner.policies();
        let names = policies
            .list(&who)
            .map_err(|e| CbError::Damaged(e.to_string()))?;
        for view in names {
            if !belongs(&view.name, id) || kept.contains(&view.name) {
                continue;
            }
            match policies.delete(&who, &view.name) {
                Ok(()) | Err(PolicyError::NotFound(_)) => {}
                Err(PolicyError::Denied(_)) => return Err(CbError::Forbidden),
                Err(e) => return Err(CbError::Damaged(e.to_string())),
            }
        }
        Ok(())
    }

    /// Brings the core policies of every policy naming the client `client` in step with
    /// it (its host name or `enabled` changed).
    pub(super) fn resync_client(&self, caller: &Account, client: u64) -> Result<(), CbError> {
        let state = self.lock();
        let policies: Vec<Policy> = state
            .policies
            .values()
            .filter(|p| p.clients.contains(&client))
            .cloned()
            .collect();
        for policy in policies {
            self.sync_core(caller, &state, &policy)?;
        }
        Ok(())
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
    fn next_runs(&self, caller: &Account) -> HashMap<String, String> {
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
        let next = self.next_runs(caller);
        let state = self.lock();
        state
            .policies
            .values()
            .map(|p| self.policy_row(&state, p.clone(), next_run_of(&next, p.id)))
            .collect()
    }

    pub fn policy(&self, caller: &Account, id: u64) -> Result<PolicyRow, CbError> {
        let next = self.next_runs(caller);
        let state = self.lock();
        let policy = state
            .policies
            .get(&id)
            .cloned()
            .ok_or(CbError::NotFound("Policy"))?;
        Ok(self.policy_row(&state, policy, next_run_of(&next, id)))
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
        self.delete_core(caller, id, &[])?;
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
            let clients: BTreeSet<u64> = enabled.iter().map(|(c, _)| *c).collect();
            let busy = state.jobs.values().any(|link| {
                link.repository == policy.repository
                    && link.client.is_some_and(|c| clients.contains(&c))
                    && super::jobs::is_active(&core, link)
            });
            if busy {
                return Err(CbError::BadRequest(BUSY.into()));
            }
            // Resolved again: the disk may have changed, and the settings with it.
            self.sync_core(caller, &state, &policy)?;
            // One run per client, each its own chain (the original runs them one after
            // another; here they run side by side).
            let mut first = None;
            let mut refusal = None;
            for (client, hostname) in enabled {
                let view = match core.runner.run(
                    &caller.principal(),
                    &core_name(id, client),
                    Trigger::Manual,
                ) {
                    Ok(view) => view,
                    Err(error) => {
                        refusal.get_or_insert(core_refusal(&policy, error));
                        continue;
                    }
                };
                let job_id = store::take_id(&mut state.next_job_id);
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
                first.get_or_insert(job_id);
            }
            self.save(&state)?;
            match (first, refusal) {
                (Some(job_id), _) => job_id,
                (None, Some(refusal)) => return Err(refusal),
                (None, None) => return Err(CbError::Damaged("no run was started".into())),
            }
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

/// The soonest next run among the policy `id`'s core policies.
fn next_run_of(next: &HashMap<String, String>, id: u64) -> Option<String> {
    next.iter()
        .filter(|(name, _)| belongs(name, id))
        .map(|(_, at)| at.clone())
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_policies_are_told_apart_by_their_policy() {
        assert!(belongs(&core_name(3, 7), 3));
        assert!(belongs("cyborgbackup-3", 3));
        assert!(!belongs(&core_name(31, 7), 3));
        assert!(!belongs("cyborgbackup-3-", 3));
        assert!(!belongs("cyborgbackup-3-x", 3));
        assert!(!belongs("other-3-1", 3));
    }

    #[test]
    fn series_names_follow_the_series_rules() {
        assert_eq!(
            series_name(3, "folders", "web 1.example.org"),
            "cyborgbackup-3-folders-web_1.example.org"
        );
        crate::repo::ingest::validate_series(&series_name(1, "rootfs", &"é".repeat(300))).unwrap();
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
