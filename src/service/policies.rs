//! Backup policies: what to back up (folders on the server, or the output of a program
//! run on it), into which series, on which schedule, and what retention to apply after
//! each run; kept in the state store. Everything a policy names is checked when it is
//! stored (the schedule exists, the folders are absolute and inside the configured
//! roots, the exclusion patterns compile, the command is allowed); the folders are
//! checked again, resolved, when the policy runs (`service::policy_runs`), since the
//! disk may have changed in between.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::cron::Cron;
use super::keys::{KeyStoreError, Principal, Role};
use crate::error::ErrorKind;
use crate::format::series::RetentionPolicy;
use crate::repo::ingest::validate_series;
use crate::state::policies::{PolicyRecord, PolicySource};
use crate::state::{StateError, StateStore};

/// The longest policy name (the rule of schedule names).
pub use super::schedules::MAX_NAME_LEN;
/// The most folders one policy backs up.
pub const MAX_PATHS: usize = 64;
/// The most exclusion patterns of one policy.
pub const MAX_EXCLUDES: usize = 256;
/// The most arguments of a command, and the longest path, pattern or argument.
pub const MAX_ARGS: usize = 256;
pub const MAX_ITEM_LEN: usize = 4096;

/// `[policies]`: what policies may read and run on this server.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// Directories whose contents folder policies may back up (absolute). Empty: no
    /// folder policy may run.
    pub roots: Vec<PathBuf>,
    /// Whether command policies may run (each runs a program as the server's user).
    pub allow_commands: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{0}")]
    Invalid(String),
    #[error("a policy named {0:?} exists")]
    Exists(String),
    #[error("no policy named {0:?}")]
    NotFound(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("policy {name:?} is already running (job {job})")]
    Running { name: String, job: String },
    #[error(transparent)]
    Denied(#[from] KeyStoreError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Agent(#[from] super::agents::AgentError),
}

impl PolicyError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            PolicyError::Invalid(_) => ErrorKind::InvalidInput,
            PolicyError::Exists(_) => ErrorKind::AlreadyExists,
            PolicyError::NotFound(_) => ErrorKind::NotFound,
            PolicyError::Forbidden(_) => ErrorKind::Forbidden,
            PolicyError::Running { .. } => ErrorKind::Conflict,
            PolicyError::Denied(e) => e.kind(),
            PolicyError::State(e) => e.kind(),
            PolicyError::Agent(e) => e.kind(),
        }
    }
}

/// A policy as callers see it: the record and its next scheduled run (`None`: no
/// schedule, disabled, or never again).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PolicyView {
    pub name: String,
    pub source: PolicySource,
    pub series: String,
    pub schedule: Option<String>,
    pub retention: Option<RetentionPolicy>,
    pub enabled: bool,
    pub catalog_check: bool,
    pub created_at: String,
    pub last_job: Option<String>,
    pub last_run_at: Option<String>,
    pub next_run: Option<String>,
}

/// A new policy.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewPolicy {
    pub name: String,
    pub source: PolicySource,
    pub series: String,
    #[serde(default)]
    pub schedule: Option<String>,
    #[serde(default)]
    pub retention: Option<RetentionPolicy>,
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// Read each backup's catalog back and check it before the prune (default on).
    #[serde(default = "enabled")]
    pub catalog_check: bool,
}

fn enabled() -> bool {
    true
}

/// What to change in a policy; an absent field stays, `null` clears the schedule or
/// the retention.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyChanges {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<PolicySource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub series: Option<String>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub schedule: Option<Option<String>>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub retention: Option<Option<RetentionPolicy>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog_check: Option<bool>,
}

/// A field that is present, `null` or not.
fn present<'de, T: Deserialize<'de>, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(deserializer).map(Some)
}

pub(crate) fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn invalid(message: impl Into<String>) -> PolicyError {
    PolicyError::Invalid(message.into())
}

/// The configured roots, resolved; checked when the server starts.
#[derive(Debug)]
pub struct Rules {
    roots: Vec<PathBuf>,
    allow_commands: bool,
}

impl Rules {
    pub fn new(config: &PolicyConfig) -> Result<Rules, String> {
        let mut roots = Vec::new();
        for root in &config.roots {
            if !root.is_absolute() {
                return Err(format!("policy root {} is not absolute", root.display()));
            }
            let resolved = std::fs::canonicalize(root)
                .map_err(|e| format!("policy root {}: {e}", root.display()))?;
            if !resolved.is_dir() {
                return Err(format!("policy root {} is not a directory", root.display()));
            }
            roots.push(resolved);
        }
        Ok(Rules {
            roots,
            allow_commands: config.allow_commands,
        })
    }

    /// Refuses a folder outside every root, or one reached through a symbolic link: the
    /// part of it that exists must resolve to itself (a link on the way is refused rather
    /// than followed), and the whole lie inside a root.
    pub fn check_folder(&self, folder: &Path) -> Result<(), PolicyError> {
        let mut existing = folder;
        while std::fs::symlink_metadata(existing).is_err() {
            match existing.parent() {
                Some(parent) => existing = parent,
                None => break,
            }
        }
        match std::fs::canonicalize(existing) {
            Ok(resolved) if resolved != existing => {
                return Err(PolicyError::Forbidden(format!(
                    "{} goes through a symbolic link ({} resolves to {}); name the folder itself",
                    folder.display(),
                    existing.display(),
                    resolved.display()
                )))
            }
            Ok(_) => {}
            Err(e) => {
                return Err(PolicyError::Forbidden(format!(
                    "{}: {e}",
                    existing.display()
                )))
            }
        }
        if self.roots.iter().any(|root| folder.starts_with(root)) {
            return Ok(());
        }
        Err(PolicyError::Forbidden(format!(
            "{} is outside the folders policies may back up ({})",
            folder.display(),
            if self.roots.is_empty() {
                "none are configured: set policies.roots".to_string()
            } else {
                self.roots
                    .iter()
                    .map(|r| r.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        )))
    }

    pub fn check_command(&self) -> Result<(), PolicyError> {
        if self.allow_commands {
            Ok(())
        } else {
            Err(PolicyError::Forbidden(
                "command policies are disabled on this server (policies.allow_commands)".into(),
            ))
        }
    }
}

fn validate_name(name: &str) -> Result<(), PolicyError> {
    super::schedules::check_plain_name("policy", name).map_err(PolicyError::Invalid)
}

/// A folder as a policy may name it: absolute, plain (no `.`, `..`), not `/`.
pub fn validate_folder(path: &str) -> Result<PathBuf, PolicyError> {
    if path.len() > MAX_ITEM_LEN || path.contains('\0') {
        return Err(invalid(
            "a folder is longer than 4096 bytes or holds a NUL byte",
        ));
    }
    let folder = Path::new(path);
    if !folder.is_absolute() {
        return Err(invalid(format!("folder {path:?} is not an absolute path")));
    }
    if folder
        .components()
        .any(|c| !matches!(c, Component::RootDir | Component::Normal(_)))
        || path.split('/').any(|part| part == "." || part == "..")
    {
        return Err(invalid(format!("folder {path:?} contains '.' or '..'")));
    }
    if folder.components().count() < 2 {
        return Err(invalid(
            "the root folder / cannot be backed up whole: name folders in it",
        ));
    }
    Ok(folder.components().collect())
}

/// The exclusion patterns compiled (globs matched against absolute paths; `*` crosses
/// `/`, as BorgBackup's `fm:` patterns do).
pub fn exclusion_set(patterns: &[String]) -> Result<Option<globset::GlobSet>, PolicyError> {
    if patterns.is_empty() {
        return Ok(None);
    }
    if patterns.len() > MAX_EXCLUDES {
        return Err(invalid(format!(
            "at most {MAX_EXCLUDES} exclusion patterns"
        )));
    }
    let mut set = globset::GlobSetBuilder::new();
    for pattern in patterns {
        if pattern.is_empty() || pattern.len() > MAX_ITEM_LEN {
            return Err(invalid(
                "an exclusion pattern is empty or longer than 4096 bytes",
            ));
        }
        let glob = globset::GlobBuilder::new(pattern)
            .literal_separator(false)
            .build()
            .map_err(|e| invalid(format!("exclusion pattern {pattern:?}: {e}")))?;
        set.add(glob);
    }
    set.build()
        .map(Some)
        .map_err(|e| invalid(format!("exclusion patterns: {e}")))
}

fn validate_source(source: &PolicySource, rules: Option<&Rules>) -> Result<(), PolicyError> {
    match source {
        PolicySource::Folders { paths, exclude } => {
            if paths.is_empty() || paths.len() > MAX_PATHS {
                return Err(invalid(format!(
                    "a folders policy names 1 to {MAX_PATHS} folders"
                )));
            }
            for path in paths {
                let folder = validate_folder(path)?;
                if let Some(rules) = rules {
                    rules.check_folder(&folder)?;
                }
            }
            exclusion_set(exclude)?;
        }
        PolicySource::Command { argv } => {
            if argv.is_empty() || argv.len() > MAX_ARGS {
                return Err(invalid(format!(
                    "a command policy's argv holds the program and at most {} arguments",
                    MAX_ARGS - 1
                )));
            }
            if argv
                .iter()
                .any(|a| a.len() > MAX_ITEM_LEN || a.contains('\0'))
                || argv.first().is_some_and(|p| p.is_empty())
            {
                return Err(invalid(
                    "a command's program is empty, or an argument is longer than 4096 bytes or holds a NUL byte",
                ));
            }
            if let Some(rules) = rules {
                rules.check_command()?;
            }
        }
        // The host's agent confines what it reads (its `--allow` folders), not the
        // server's roots.
        PolicySource::Agent {
            host,
            paths,
            exclude,
        } => {
            super::agents::check_host(host).map_err(invalid)?;
            super::agents::check_backup(paths, exclude).map_err(invalid)?;
        }
    }
    Ok(())
}

/// A retention that keeps nothing would delete the backup just made: at least one rule
/// must keep something.
fn validate_retention(retention: &Option<RetentionPolicy>) -> Result<(), PolicyError> {
    let Some(policy) = retention else {
        return Ok(());
    };
    let counts = [
        policy.keep_last,
        policy.keep_hourly,
        policy.keep_daily,
        policy.keep_weekly,
        policy.keep_monthly,
        policy.keep_yearly,
    ];
    let keeps = counts.iter().flatten().any(|n| *n > 0)
        || policy.keep_within_secs.is_some_and(|s| s > 0)
        || policy.min_keep > 0;
    if keeps {
        Ok(())
    } else {
        Err(invalid(
            "the retention keeps nothing: set keep_last, keep_within_secs or a keep_hourly … keep_yearly above 0",
        ))
    }
}

/// The policy verbs, with their role checks.
#[derive(Clone)]
pub struct Policies {
    store: Arc<StateStore>,
    /// The server's rules; `None` when the command line opened the state store itself
    /// (the folders and commands are then checked when the server runs the policy).
    rules: Option<Arc<Rules>>,
}

impl Policies {
    pub fn new(store: Arc<StateStore>, rules: Option<Arc<Rules>>) -> Policies {
        Policies { store, rules }
    }

    pub fn rules(&self) -> Option<&Rules> {
        self.rules.as_deref()
    }

    pub fn store(&self) -> &Arc<StateStore> {
        &self.store
    }

    pub fn view(&self, record: PolicyRecord, now: DateTime<Utc>) -> PolicyView {
        let next_run = record
            .enabled
            .then(|| {
                let schedule = self.store.schedule(record.schedule.as_deref()?).ok()??;
                schedule
                    .enabled
                    .then(|| schedule.crontab.parse::<Cron>().ok()?.next_after(now))
                    .flatten()
            })
            .flatten()
            .map(rfc3339);
        PolicyView {
            name: record.name,
            source: record.source,
            series: record.series,
            schedule: record.schedule,
            retention: record.retention,
            enabled: record.enabled,
            catalog_check: record.catalog_check,
            created_at: record.created_at,
            last_job: record.last_job,
            last_run_at: record.last_run_at,
            next_run,
        }
    }

    pub fn list(&self, who: &Principal) -> Result<Vec<PolicyView>, PolicyError> {
        who.require(Role::Reader)?;
        let now = Utc::now();
        Ok(self
            .store
            .policies()?
            .into_iter()
            .map(|r| self.view(r, now))
            .collect())
    }

    pub fn get(&self, who: &Principal, name: &str) -> Result<PolicyView, PolicyError> {
        who.require(Role::Reader)?;
        Ok(self.view(self.record(name)?, Utc::now()))
    }

    pub fn record(&self, name: &str) -> Result<PolicyRecord, PolicyError> {
        self.store
            .policy(name)?
            .ok_or_else(|| PolicyError::NotFound(name.to_string()))
    }

    fn validate(&self, record: &PolicyRecord) -> Result<(), PolicyError> {
        validate_series(&record.series).map_err(|e| invalid(e.to_string()))?;
        validate_source(&record.source, self.rules())?;
        validate_retention(&record.retention)?;
        if let Some(schedule) = &record.schedule {
            if self.store.schedule(schedule)?.is_none() {
                return Err(invalid(format!("no schedule named {schedule:?}")));
            }
        }
        Ok(())
    }

    /// Creates a policy (administrators only: a policy reads the server's disk or runs
    /// a program on it).
    pub fn create(&self, who: &Principal, new: NewPolicy) -> Result<PolicyView, PolicyError> {
        who.require(Role::Admin)?;
        validate_name(&new.name)?;
        let record = PolicyRecord {
            name: new.name,
            source: new.source,
            series: new.series,
            schedule: new.schedule,
            retention: new.retention,
            enabled: new.enabled,
            catalog_check: new.catalog_check,
            created_at: rfc3339(Utc::now()),
            last_job: None,
            last_run_at: None,
        };
        self.validate(&record)?;
        if !self.store.insert_policy(&record)? {
            return Err(PolicyError::Exists(record.name));
        }
        Ok(self.view(record, Utc::now()))
    }

    pub fn update(
        &self,
        who: &Principal,
        name: &str,
        changes: PolicyChanges,
    ) -> Result<PolicyView, PolicyError> {
        who.require(Role::Admin)?;
        let mut record = self.record(name)?;
        if let Some(source) = changes.source {
            record.source = source;
        }
        if let Some(series) = changes.series {
            record.series = series;
        }
        if let Some(schedule) = changes.schedule {
            record.schedule = schedule;
        }
        if let Some(retention) = changes.retention {
            record.retention = retention;
        }
        if let Some(enabled) = changes.enabled {
            record.enabled = enabled;
        }
        if let Some(check) = changes.catalog_check {
            record.catalog_check = check;
        }
        self.validate(&record)?;
        self.store.put_policy(&record)?;
        Ok(self.view(record, Utc::now()))
    }

    pub fn delete(&self, who: &Principal, name: &str) -> Result<(), PolicyError> {
        who.require(Role::Admin)?;
        if self.store.remove_policy(name)? {
            Ok(())
        } else {
            Err(PolicyError::NotFound(name.to_string()))
        }
    }

    /// Notes that a run of `name` began as `job` (a policy deleted meanwhile is left
    /// deleted).
    pub fn record_run(&self, name: &str, job: &str, at: DateTime<Utc>) -> Result<(), StateError> {
        if let Some(mut record) = self.store.policy(name)? {
            record.last_job = Some(job.to_string());
            record.last_run_at = Some(rfc3339(at));
            self.store.put_policy(&record)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_must_be_plain_absolute_paths() {
        assert!(validate_folder("/srv/www").is_ok());
        assert_eq!(
            validate_folder("/srv/www/").unwrap(),
            PathBuf::from("/srv/www")
        );
        for bad in ["srv", "/", "/srv/../etc", "/srv/./www", "/a\0b", ""] {
            assert!(validate_folder(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn rules_confine_folders_to_the_roots_without_following_links() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(root.join("www")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
        let rules = Rules::new(&PolicyConfig {
            roots: vec![root.clone()],
            allow_commands: false,
        })
        .unwrap();
        let root = std::fs::canonicalize(&root).unwrap();
        rules.check_folder(&root.join("www")).unwrap();
        rules.check_folder(&root.join("not-yet")).unwrap();
        assert!(rules.check_folder(&root.join("link")).is_err());
        assert!(rules.check_folder(&root.join("link/x")).is_err());
        assert!(rules
            .check_folder(&std::fs::canonicalize(&outside).unwrap())
            .is_err());
        assert!(rules.check_command().is_err());
    }

    #[test]
    fn a_retention_must_keep_something() {
        assert!(validate_retention(&None).is_ok());
        let zero = RetentionPolicy {
            keep_last: Some(0),
            ..RetentionPolicy::default()
        };
        assert!(validate_retention(&Some(zero)).is_err());
        assert!(validate_retention(&Some(RetentionPolicy::default())).is_err());
        let hourly = RetentionPolicy {
            keep_hourly: Some(1),
            ..RetentionPolicy::default()
        };
        assert!(validate_retention(&Some(hourly)).is_ok());
    }

    #[test]
    fn exclusion_patterns_cross_directories_and_bad_ones_are_named() {
        let set = exclusion_set(&["*.tmp".into(), "/srv/www/cache".into()])
            .unwrap()
            .unwrap();
        assert!(set.is_match("/srv/www/a/b.tmp"));
        assert!(set.is_match("/srv/www/cache"));
        assert!(!set.is_match("/srv/www/cache2"));
        let error = exclusion_set(&["a[".into()]).unwrap_err().to_string();
        assert!(error.contains("a["), "{error}");
    }
}
