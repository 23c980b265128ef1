//! The dialects page: which of the five foreign APIs this server speaks, where, and how
//! to point each one's clients at it (the key to create, the address to give, the
//! setting that turns it on). The steps are a summary of `docs/dialects/`.

use axum::extract::State;
use axum::http::HeaderMap;
use maud::{html, Markup};

use super::auth::Visitor;
use super::layout::{page, UiError};
use crate::http::AppState;

/// One dialect as the page presents it.
struct Dialect {
    name: &'static str,
    title: &'static str,
    /// Where its routes are, under the server's base URL.
    mount: &'static str,
    setting: &'static str,
    /// How to point its clients here; `{base}` stands for the server's URL.
    steps: &'static [&'static str],
}

const DIALECTS: &[Dialect] = &[
    Dialect {
        name: "fa",
        title: "fa (path backups and restores as jobs)",
        mount: "/fa/api/v0",
        setting: "dialects.fa.enabled",
        steps: &[
            "Create a key whose name is the fa user: stowage key create --name <user> --role writer.",
            "Give the client {base}/fa/api/v0 as its API address and the key as its bearer token (or an HS512 JWT signed with dialects.fa.jwt_secret).",
            "Paths are confined to the user's home, <dialects.fa.root>/users/<user>.",
        ],
    },
    Dialect {
        name: "wings",
        title: "Pterodactyl Wings (the Panel's remote backup API and the part uploads)",
        mount: "/api/remote/backups",
        setting: "dialects.wings.enabled",
        steps: &[
            "Create a key for the node: stowage key create --name wings-node --role backup; the part before the dot is the node's token_id, the part after it its token.",
            "Route Wings' /api/remote/backups requests to {base} (a proxy in front of the Panel, or remote: pointing here) and set the Panel's backup adapter to S3.",
            "Set public_url when Wings reaches this server by another name than its Host header: the part URLs are built from it.",
        ],
    },
    Dialect {
        name: "backupchan",
        title: "Backup-chan (targets, uploads, recycle bin)",
        mount: "/api",
        setting: "dialects.backupchan.enabled",
        steps: &[
            "Create a key: stowage key create --name laptop --dialect backupchan (it prints bakch-<64 hex> once).",
            "backupchan config new -H {host} -p {port} -a bakch-…, or backupchan.API(\"{host}\", {port}, \"bakch-…\") from Python.",
        ],
    },
    Dialect {
        name: "cyborgbackup",
        title: "CyBorgBackup (policies, schedules, jobs, catalogs)",
        mount: "/api/v1/",
        setting: "dialects.cyborgbackup.enabled",
        steps: &[
            "Give the web UI or script {base}/ as its API base.",
            "Users sign in with their stowage email and password (HTTP Basic or a JWT from /api/token/obtain/), or with a key assigned to them sent as Authorization: Token <key>.",
            "Folders a policy backs up must be under policies.roots; piped commands need policies.allow_commands.",
        ],
    },
    Dialect {
        name: "tapu",
        title: "tapu-backups (its host API and its FTP server)",
        mount: "its own listener (dialects.tapu.listen) and FTP (dialects.tapu.ftp_listen)",
        setting: "dialects.tapu.enabled",
        steps: &[
            "Turn it on with its HTTP and FTP listeners and passive ports (STOWAGE_TAPU_ENABLED=true, STOWAGE_TAPU_LISTEN, STOWAGE_TAPU_FTP_LISTEN).",
            "On the b2 hosts, point BACKUP_HOST at this server; nothing else changes.",
            "Set dialects.tapu.require_key to demand Authorization: Bearer <stowage key>.",
        ],
    },
];

pub async fn dialects(
    State(state): State<AppState>,
    visitor: Visitor,
    headers: HeaderMap,
) -> Result<Markup, UiError> {
    let (user, session) = visitor.signed_in()?;
    let mounted = state.dialect_names();
    let base = crate::http::public_url::base(state.public_url.as_deref(), &headers)
        .unwrap_or_else(|| "http://<this server>".into());
    let (host, port) = match base.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => {
            (host.to_string(), port.to_string())
        }
        _ => (
            base.clone(),
            if base.starts_with("https") {
                "443"
            } else {
                "80"
            }
            .to_string(),
        ),
    };
    let fill = |step: &str| {
        step.replace("{base}", &base)
            .replace("{host}", &host)
            .replace("{port}", &port)
    };
    Ok(page(
        "Dialects",
        Some((&user, session)),
        html! {
            h1 { "Dialects" }
            p { "Besides its own API (" code { (base) "/v1" } "), this server speaks the APIs of other backup servers, so their clients work unchanged. What each one stores goes into the same deduplicated repository." }
            @for dialect in DIALECTS {
                @let on = mounted.contains(&dialect.name);
                section.dialect id={"dialect-" (dialect.name)} data-enabled=(on) {
                    h2 { (dialect.title) " — " @if on { span.on { "on" } } @else { span.off { "off" } } }
                    p { "Served at " code { (fill(dialect.mount)) } "; setting " code { (dialect.setting) } "." }
                    @if on {
                        ol { @for step in dialect.steps { li { (fill(step)) } } }
                    } @else {
                        p { "Set " code { (dialect.setting) " = true" } " in the configuration and restart the server to serve it." }
                    }
                }
            }
        },
    ))
}
