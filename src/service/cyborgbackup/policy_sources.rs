//! What a CyBorgBackup policy reads, by its type and the client it backs up: the core
//! policy source of one (policy, client) pair.
//!
//! On this server (the client `localhost` or the configured local host name): `folders`
//! the `folders` of its `extra_vars` (a JSON text, with `exclude` patterns), `config`
//! `/etc`, `mail` `/var/lib/mail` and `/var/mail`, `rootfs` the directories directly
//! under `/` less CyBorgBackup's fixed excludes, `piped` the output of
//! `sh -c <extra_vars.command>`, `postgresql` the output of `pg_dump` of its
//! `extra_vars.database` (else `pg_dumpall`). On any other client the same folders are
//! backed up by that host's agent (`rootfs` as `/` with the fixed excludes left out);
//! `piped`, `postgresql` and `mysql` (`mysqldump` of its `extra_vars.databases`, else
//! every database) run a command, which only this server does. `vm` and `proxmox` are
//! refused, naming the type.

use serde_json::{Map, Value};

use super::store::Policy;
use super::CbError;
use crate::state::policies::PolicySource;

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

/// Where `mail` policies look for mail.
const MAIL_FOLDERS: [&str; 2] = ["/var/lib/mail", "/var/mail"];

/// The client a source is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place<'a> {
    /// This server: it reads the folders itself.
    Here,
    /// A client host, through its agent.
    Agent(&'a str),
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
    let wrong = || {
        CbError::invalid(
            "extra_vars",
            format!("\"{key}\" must be a list of strings."),
        )
    };
    match vars.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .map(Some)
            .ok_or_else(wrong),
        Some(_) => Err(wrong()),
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

/// What the policy reads at `place`, as this server's disk is now.
pub fn source_of(policy: &Policy, place: Place) -> Result<PolicySource, CbError> {
    let vars = extra_vars(policy)?;
    let exclude = strings(&vars, "exclude")?.unwrap_or_default();
    let folders = |paths: Vec<String>, exclude: Vec<String>| match place {
        Place::Here => PolicySource::Folders { paths, exclude },
        Place::Agent(host) => PolicySource::Agent {
            host: host.to_string(),
            paths,
            exclude,
        },
    };
    let fixed = |paths: &[&str]| paths.iter().map(|p| p.to_string()).collect::<Vec<_>>();
    match (policy.policy_type.as_str(), place) {
        ("folders", _) => match strings(&vars, "folders")? {
            Some(paths) if !paths.is_empty() => Ok(folders(paths, exclude)),
            _ => Err(CbError::invalid(
                "extra_vars",
                "A folders policy needs {\"folders\": [absolute paths]} in extra_vars.",
            )),
        },
        ("config", _) => Ok(folders(fixed(&["/etc"]), exclude)),
        ("mail", Place::Here) => {
            let existing: Vec<&str> = MAIL_FOLDERS
                .into_iter()
                .filter(|p| std::path::Path::new(p).exists())
                .collect();
            let paths = if existing.is_empty() {
                &MAIL_FOLDERS[..]
            } else {
                &existing[..]
            };
            Ok(folders(fixed(paths), exclude))
        }
        // The agent leaves out, with a note, a folder its host does not have.
        ("mail", Place::Agent(_)) => Ok(folders(fixed(&MAIL_FOLDERS), exclude)),
        ("rootfs", Place::Here) => {
            let paths = rootfs_folders();
            if paths.is_empty() {
                return Err(CbError::invalid(
                    "policy_type",
                    "No folder under / can be backed up on this server.",
                ));
            }
            Ok(folders(paths, exclude))
        }
        ("rootfs", Place::Agent(_)) => {
            let mut all = fixed(&ROOTFS_EXCLUDES);
            all.extend(exclude);
            Ok(folders(fixed(&["/"]), all))
        }
        ("piped", Place::Here) => match vars.get("command").and_then(Value::as_str) {
            Some(command) if !command.trim().is_empty() => Ok(PolicySource::Command {
                argv: vec!["sh".into(), "-c".into(), command.to_string()],
            }),
            _ => Err(CbError::invalid(
                "extra_vars",
                "Command for piped backup not defined: give {\"command\": \"...\"} in extra_vars.",
            )),
        },
        // As the original: `pg_dump` of `extra_vars.database`, else `pg_dumpall`, run as
        // the server's user (peer authentication or its ~/.pgpass).
        ("postgresql", Place::Here) => match vars.get("database") {
            None | Some(Value::Null) => Ok(PolicySource::Command {
                argv: vec!["pg_dumpall".into()],
            }),
            Some(Value::String(name)) if valid_database(name) => Ok(PolicySource::Command {
                // One argument `--dbname=...`: a name cannot pass itself off as an option.
                argv: vec!["pg_dump".into(), format!("--dbname={name}")],
            }),
            Some(_) => Err(CbError::invalid(
                "extra_vars",
                "\"database\" must be a database name (1 to 63 bytes, no NUL).",
            )),
        },
        ("mysql", Place::Here) => mysqldump(&vars).map(|argv| PolicySource::Command { argv }),
        ("piped" | "postgresql" | "mysql", Place::Agent(host)) => Err(CbError::invalid(
            "policy_type",
            format!(
                "A {} policy runs its command on this server; client {host} has an agent, which backs up folders only: use a folders policy for it.",
                policy.policy_type
            ),
        )),
        (other, _) => Err(CbError::invalid(
            "policy_type",
            format!(
                "Policy type \"{other}\" is not supported by this server yet: use folders, config, mail, rootfs, piped, postgresql or mysql."
            ),
        )),
    }
}

/// A PostgreSQL database name as `pg_dump` takes it: 1 to 63 bytes, no NUL.
fn valid_database(name: &str) -> bool {
    !name.is_empty() && name.len() <= 63 && !name.contains('\0')
}

/// A MySQL database or user name that cannot pass for an option: 1 to 64 bytes, no
/// NUL, not starting with `-`.
fn valid_mysql_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && !name.contains('\0') && !name.starts_with('-')
}

/// As the original: `mysqldump` with `extra_vars.user` and `databases` (a list, or one
/// name), else `--all-databases`, run as the server's user. A password is refused: on a
/// command line every local user could read it in the process list; the server user's
/// `~/.my.cnf` (or socket authentication) gives it instead, as `~/.pgpass` does for
/// PostgreSQL.
fn mysqldump(vars: &Map<String, Value>) -> Result<Vec<String>, CbError> {
    let invalid = |message: &str| CbError::invalid("extra_vars", message);
    if vars.contains_key("extended_mysql") {
        return Err(invalid(
            "Per-client \"extended_mysql\" is not read: give \"user\" and \"databases\" at the top of extra_vars.",
        ));
    }
    if vars
        .get("password")
        .and_then(Value::as_str)
        .is_some_and(|p| !p.is_empty())
    {
        return Err(invalid(
            "A MySQL password is not passed on a command line, where every local user could read it: put it in the stowage server user's ~/.my.cnf ([mysqldump] password=...) and leave \"password\" out.",
        ));
    }
    let mut argv = vec!["mysqldump".to_string()];
    match vars.get("user") {
        None | Some(Value::Null) => {}
        Some(Value::String(user)) if user.is_empty() => {}
        Some(Value::String(user)) if valid_mysql_name(user) => argv.push(format!("--user={user}")),
        Some(_) => {
            return Err(invalid(
                "\"user\" must be a MySQL user name (1 to 64 bytes, not starting with -).",
            ))
        }
    }
    let bad_name = || {
        invalid("\"databases\" must be database names (1 to 64 bytes, not starting with -), as a list or one name.")
    };
    match vars.get("databases") {
        None | Some(Value::Null) => argv.push("--all-databases".into()),
        Some(Value::String(name)) if name.is_empty() => argv.push("--all-databases".into()),
        Some(Value::String(name)) if valid_mysql_name(name) => argv.push(name.clone()),
        Some(Value::Array(names)) if names.is_empty() => argv.push("--all-databases".into()),
        Some(Value::Array(names)) if names.len() <= 1000 => {
            argv.push("--databases".into());
            for name in names {
                match name.as_str() {
                    Some(name) if valid_mysql_name(name) => argv.push(name.to_string()),
                    _ => return Err(bad_name()),
                }
            }
        }
        Some(_) => return Err(bad_name()),
    }
    Ok(argv)
}

/// The field a core refusal of the policy's source is about.
pub fn source_field(policy_type: &str) -> &'static str {
    match policy_type {
        "folders" | "piped" | "postgresql" | "mysql" => "extra_vars",
        _ => "policy_type",
    }
}

#[cfg(test)]
mod tests {
    use super::super::policies::blank_policy;
    use super::*;

    #[test]
    fn sources_follow_the_policy_type() {
        let mut policy = blank_policy(1);
        policy.policy_type = "folders".into();
        policy.extra_vars = r#"{"folders": ["/srv/a"], "exclude": ["*.tmp"]}"#.into();
        assert_eq!(
            source_of(&policy, Place::Here).unwrap(),
            PolicySource::Folders {
                paths: vec!["/srv/a".into()],
                exclude: vec!["*.tmp".into()]
            }
        );
        policy.policy_type = "piped".into();
        policy.extra_vars = r#"{"command": "echo hi"}"#.into();
        assert_eq!(
            source_of(&policy, Place::Here).unwrap(),
            PolicySource::Command {
                argv: vec!["sh".into(), "-c".into(), "echo hi".into()]
            }
        );
        policy.policy_type = "config".into();
        policy.extra_vars = String::new();
        assert!(
            matches!(source_of(&policy, Place::Here).unwrap(), PolicySource::Folders { paths, .. } if paths == ["/etc"])
        );
        policy.policy_type = "rootfs".into();
        if let Ok(PolicySource::Folders { paths, .. }) = source_of(&policy, Place::Here) {
            assert!(paths
                .iter()
                .all(|p| !ROOTFS_EXCLUDES.contains(&p.as_str()) && p != "/"));
        }
        policy.policy_type = "vm".into();
        let Err(CbError::Invalid(errors)) = source_of(&policy, Place::Here) else {
            panic!("vm accepted")
        };
        assert_eq!(errors[0].0, "policy_type");
        assert!(errors[0].1.contains("not supported by this server yet"));
        policy.policy_type = "folders".into();
        policy.extra_vars = "[1]".into();
        assert!(source_of(&policy, Place::Here).is_err());
    }

    #[test]
    fn a_client_hosts_folders_go_to_its_agent() {
        let mut policy = blank_policy(1);
        policy.policy_type = "folders".into();
        policy.extra_vars = r#"{"folders": ["/srv/a"], "exclude": ["*.tmp"]}"#.into();
        assert_eq!(
            source_of(&policy, Place::Agent("web-1")).unwrap(),
            PolicySource::Agent {
                host: "web-1".into(),
                paths: vec!["/srv/a".into()],
                exclude: vec!["*.tmp".into()]
            }
        );
        policy.policy_type = "rootfs".into();
        let PolicySource::Agent { paths, exclude, .. } =
            source_of(&policy, Place::Agent("web-1")).unwrap()
        else {
            panic!("rootfs on a client is not its agent's")
        };
        assert_eq!(paths, ["/"]);
        assert!(exclude.contains(&"/proc".to_string()) && exclude.contains(&"*.tmp".to_string()));
        policy.policy_type = "mail".into();
        assert!(matches!(
            source_of(&policy, Place::Agent("web-1")).unwrap(),
            PolicySource::Agent { paths, .. } if paths == MAIL_FOLDERS
        ));
        policy.policy_type = "postgresql".into();
        policy.extra_vars = String::new();
        assert!(source_of(&policy, Place::Agent("web-1")).is_err());
        assert_eq!(
            source_of(&policy, Place::Here).unwrap(),
            PolicySource::Command {
                argv: vec!["pg_dumpall".into()]
            }
        );
        policy.extra_vars = r#"{"database": "-c drop"}"#.into();
        assert_eq!(
            source_of(&policy, Place::Here).unwrap(),
            PolicySource::Command {
                argv: vec!["pg_dump".into(), "--dbname=-c drop".into()]
            }
        );
        policy.extra_vars = r#"{"database": 7}"#.into();
        assert!(source_of(&policy, Place::Here).is_err());
        policy.policy_type = "mysql".into();
        let dump = |vars: &str| {
            let mut policy = policy.clone();
            policy.extra_vars = vars.into();
            match source_of(&policy, Place::Here) {
                Ok(PolicySource::Command { argv }) => Ok(argv),
                Ok(other) => panic!("{other:?}"),
                Err(e) => Err(e),
            }
        };
        assert_eq!(dump("").unwrap(), ["mysqldump", "--all-databases"]);
        assert_eq!(
            dump(r#"{"user": "backup", "databases": ["shop", "wiki"]}"#).unwrap(),
            ["mysqldump", "--user=backup", "--databases", "shop", "wiki"]
        );
        assert_eq!(
            dump(r#"{"databases": "shop"}"#).unwrap(),
            ["mysqldump", "shop"]
        );
        for refused in [
            r#"{"password": "hunter2"}"#,
            r#"{"databases": ["--all-databases", "x"]}"#,
            r#"{"databases": "-e"}"#,
            r#"{"user": "-p"}"#,
            r#"{"extended_mysql": {"1": {}}}"#,
            r#"{"databases": 3}"#,
        ] {
            assert!(dump(refused).is_err(), "{refused}");
        }
        assert!(source_of(&policy, Place::Agent("web-1")).is_err());
        policy.policy_type = "piped".into();
        policy.extra_vars = r#"{"command": "echo hi"}"#.into();
        let Err(CbError::Invalid(errors)) = source_of(&policy, Place::Agent("web-1")) else {
            panic!("a piped policy went to an agent")
        };
        assert!(errors[0].1.contains("folders only"), "{errors:?}");
    }
}
