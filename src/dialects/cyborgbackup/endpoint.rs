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
}

impl Kind {
    fn parse(segment: &str) -> Option<Kind> {
        Some(match segment {
            "users" => Kind::Users,
            "settings" => Kind::Settings,
            "schedules" => Kind::Schedules,
            "repositories" => Kind::Repositories,
            "clients" => Kind::Clients,
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
        }
    }

    pub const ALL: [Kind; 5] = [
        Kind::Users,
        Kind::Settings,
        Kind::Schedules,
        Kind::Repositories,
        Kind::Clients,
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
}

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
            Endpoint::List(Kind::Settings) => {}
            Endpoint::List(_) => methods.push(Method::POST),
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
            Endpoint::List(_) if reading => Action::List,
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
        for unknown in [
            "/policies/",
            "/jobs/1/",
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
