//! The closed set of CyBorgBackup endpoints under `/api/v1`, parsed from the path before
//! anything else happens: which methods each allows and what a method on it means for
//! permission. A path with or without its trailing slash names the same endpoint; a
//! path naming nothing (the resources not served yet among them) is `None`, a 404.

use axum::http::Method;

use crate::service::cyborgbackup::Action;

/// A resource with a list and items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Users,
    Settings,
    Schedules,
    Repositories,
    Clients,
    Policies,
    Jobs,
}

impl Kind {
    fn parse(segment: &str) -> Option<Kind> {
        Some(match segment {
            "users" => Kind::Users,
            "settings" => Kind::Settings,
            "schedules" => Kind::Schedules,
            "repositories" => Kind::Repositories,
            "clients" => Kind::Clients,
            "policies" => Kind::Policies,
            "jobs" => Kind::Jobs,
            _ => return None,
        })
    }

    pub fn segment(self) -> &'static str {
        match self {
            Kind::Users => "users",
            Kind::Settings => "settings",
            Kind::Schedules => "schedules",
            Kind::Repositories => "repositories",
            Kind::Clients => "clients",
            Kind::Policies => "policies",
            Kind::Jobs => "jobs",
        }
    }

    pub const ALL: [Kind; 7] = [
        Kind::Users,
        Kind::Settings,
        Kind::Schedules,
        Kind::Repositories,
        Kind::Clients,
        Kind::Policies,
        Kind::Jobs,
    ];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/api/v1/`: the resources' links.
    Root,
    /// `/api/v1/ping/`.
    Ping,
    /// `/api/v1/config/`.
    Config,
    /// `/api/v1/me/`: the caller, as a list of one.
    Me,
    List(Kind),
    Item(Kind, u64),
    /// `/policies/<id>/launch/`.
    Launch(u64),
    /// `/policies/<id>/calendar/`.
    Calendar(u64),
    /// `/policies/vmmodule/`.
    VmModule,
    /// `/settings/generate_ssh/`.
    GenerateSsh,
    /// `/settings/get_ssh_publickey/`.
    SshPublicKey,
    /// `/jobs/<id>/cancel/`.
    Cancel(u64),
    /// `/jobs/<id>/start/`.
    Start(u64),
    /// `/jobs/<id>/relaunch/`.
    Relaunch(u64),
    /// `/jobs/<id>/stdout/`.
    Stdout(u64),
    /// `/job_events/` and `/jobs/<id>/job_events/`.
    JobEvents(Option<u64>),
    /// `/job_events/<id>/`.
    JobEvent(u64),
    /// `/catalogs/`.
    Catalogs,
    /// `/escatalogs/`.
    Escatalogs,
    /// `/restore/`.
    Restore,
    /// `/stats/`.
    Stats,
}

/// The listed resources beside the [`Kind`]s, for `/api/v1/`'s links.
pub const EXTRA_RESOURCES: [&str; 5] = ["job_events", "catalogs", "escatalogs", "restore", "stats"];

/// The endpoint of a path below `/api/v1` (`rest` is what follows it).
pub fn parse(rest: &str) -> Option<Endpoint> {
    let rest = rest.strip_prefix('/').unwrap_or(rest);
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let segments: Vec<&str> = if rest.is_empty() {
        Vec::new()
    } else {
        rest.split('/').collect()
    };
    Some(match segments.as_slice() {
        [] => Endpoint::Root,
        ["ping"] => Endpoint::Ping,
        ["config"] => Endpoint::Config,
        ["me"] => Endpoint::Me,
        ["policies", "vmmodule"] => Endpoint::VmModule,
        ["settings", "generate_ssh"] => Endpoint::GenerateSsh,
        ["settings", "get_ssh_publickey"] => Endpoint::SshPublicKey,
        ["job_events"] => Endpoint::JobEvents(None),
        ["catalogs"] => Endpoint::Catalogs,
        ["escatalogs"] => Endpoint::Escatalogs,
        ["restore"] => Endpoint::Restore,
        ["stats"] => Endpoint::Stats,
        ["policies", id, "launch"] => Endpoint::Launch(parse_id(id)?),
        ["policies", id, "calendar"] => Endpoint::Calendar(parse_id(id)?),
        ["jobs", id, "cancel"] => Endpoint::Cancel(parse_id(id)?),
        ["jobs", id, "start"] => Endpoint::Start(parse_id(id)?),
        ["jobs", id, "relaunch"] => Endpoint::Relaunch(parse_id(id)?),
        ["jobs", id, "stdout"] => Endpoint::Stdout(parse_id(id)?),
        ["jobs", id, "job_events"] => Endpoint::JobEvents(Some(parse_id(id)?)),
        ["job_events", id] => Endpoint::JobEvent(parse_id(id)?),
        [kind] => Endpoint::List(Kind::parse(kind)?),
        [kind, id] => Endpoint::Item(Kind::parse(kind)?, parse_id(id)?),
        _ => return None,
    })
}

/// An id as Django's `[0-9]+` route reads it (bounded to what an id can be).
fn parse_id(text: &str) -> Option<u64> {
    if text.is_empty() || text.len() > 19 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

impl Endpoint {
    /// Served to anyone, signed in or not.
    pub fn is_open(self) -> bool {
        matches!(self, Endpoint::Root | Endpoint::Ping)
    }

    pub fn methods(self) -> Vec<Method> {
        let read = [Method::GET, Method::HEAD];
        let mut methods = read.to_vec();
        match self {
            Endpoint::List(Kind::Settings | Kind::Jobs) => {}
            Endpoint::List(_) => methods.push(Method::POST),
            Endpoint::Item(Kind::Jobs, _) => methods.push(Method::DELETE),
            Endpoint::Launch(_)
            | Endpoint::Cancel(_)
            | Endpoint::Start(_)
            | Endpoint::Restore
            | Endpoint::GenerateSsh => methods.push(Method::POST),
            Endpoint::Relaunch(_) => return vec![Method::POST],
            Endpoint::Item(kind, _) => {
                methods.extend([Method::PUT, Method::PATCH]);
                if kind != Kind::Settings {
                    methods.push(Method::DELETE);
                }
            }
            _ => {}
        }
        methods
    }

    /// What `method` on this endpoint is, for permission.
    pub fn action(self, method: &Method) -> Action {
        let reading = method == Method::GET || method == Method::HEAD;
        match self {
            Endpoint::Root | Endpoint::Ping | Endpoint::Config | Endpoint::Me => Action::Own,
            Endpoint::List(_)
            | Endpoint::VmModule
            | Endpoint::GenerateSsh
            | Endpoint::SshPublicKey
            | Endpoint::JobEvents(_)
            | Endpoint::JobEvent(_)
            | Endpoint::Catalogs
            | Endpoint::Escatalogs
            | Endpoint::Restore
            | Endpoint::Stats
                if reading =>
            {
                Action::List
            }
            _ => Action::Manage,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_with_or_without_their_slash_name_one_endpoint() {
        assert_eq!(parse(""), Some(Endpoint::Root));
        assert_eq!(parse("/"), Some(Endpoint::Root));
        assert_eq!(parse("/ping"), Some(Endpoint::Ping));
        assert_eq!(parse("/ping/"), Some(Endpoint::Ping));
        assert_eq!(parse("/clients/"), Some(Endpoint::List(Kind::Clients)));
        assert_eq!(
            parse("/schedules/12/"),
            Some(Endpoint::Item(Kind::Schedules, 12))
        );
        assert_eq!(parse("/policies/vmmodule/"), Some(Endpoint::VmModule));
        assert_eq!(parse("/settings/generate_ssh"), Some(Endpoint::GenerateSsh));
        assert_eq!(
            parse("/settings/get_ssh_publickey/"),
            Some(Endpoint::SshPublicKey)
        );
        assert_eq!(parse("/policies/3/launch"), Some(Endpoint::Launch(3)));
        assert_eq!(parse("/jobs/4/stdout/"), Some(Endpoint::Stdout(4)));
        assert_eq!(parse("/jobs/"), Some(Endpoint::List(Kind::Jobs)));
        assert_eq!(
            parse("/job_events/10001/"),
            Some(Endpoint::JobEvent(10_001))
        );
        for unknown in [
            "/policies/x/launch/",
            "/jobs/1/unknown/",
            "/job_events/x/",
            "/clients/x/",
            "/clients/-1/",
            "/clients/1/extra/",
            "/clients//",
            "/clients/99999999999999999999/",
        ] {
            assert_eq!(parse(unknown), None, "{unknown}");
        }
    }
}
