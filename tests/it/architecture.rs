//! The layering of the crate, checked on its source text: dependencies point one way,
//! `error, id, unwind → format → pipeline → index, backend, state → repo → service → http → api, dialects → server → cli`.
//!
//! Every `crate::x` path (in `use` declarations, grouped `use crate::{...}` imports, and
//! paths in code) and every `super::` path that climbs to the crate root is an edge to
//! the top-level module `x`. Comments and string literals are ignored.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Top-level modules a module of `layer` must not use.
fn forbidden(layer: &str) -> &'static [&'static str] {
    const ABOVE_REPO: [&str; 7] = ["service", "http", "api", "dialects", "ui", "server", "cli"];
    match layer {
        "error" | "id" | "unwind" => &[
            "format", "pipeline", "index", "backend", "state", "repo", "service", "http", "api",
            "dialects", "server", "cli",
        ],
        "format" => &[
            "pipeline", "index", "backend", "repo", "service", "http", "api", "dialects", "server",
            "cli",
        ],
        "pipeline" => &[
            "index", "backend", "repo", "service", "http", "api", "dialects", "server", "cli",
        ],
        "index" => &[
            "backend", "state", "repo", "service", "http", "api", "dialects", "server", "cli",
        ],
        // The state store is a storage façade beside the index: below the services that
        // give its records meaning.
        "state" => &[
            "index", "backend", "repo", "service", "http", "api", "dialects", "server", "cli",
        ],
        "backend" => &[
            "index", "state", "repo", "service", "http", "api", "dialects", "server", "cli",
        ],
        "repo" => &ABOVE_REPO,
        "service" => &["http", "api", "dialects", "ui", "server", "cli"],
        "http" => &["api", "dialects", "ui", "server", "cli"],
        "api" => &["dialects", "ui", "server", "cli"],
        // The web dashboard sits beside the native API: over the services, never using
        // the API's handlers or a dialect.
        "ui" => &["api", "dialects", "server", "cli"],
        // A dialect speaks through the services, like the native API, never to the engine
        // or to the byte formats.
        "dialects" => &[
            "api", "ui", "server", "cli", "repo", "index", "backend", "pipeline", "state", "format",
        ],
        "server" => &["cli"],
        "cli" | "lib" | "main" | "fuzzing" => &[],
        other => panic!(
            "src/{other} belongs to no layer: place it in tests/it/architecture.rs::forbidden"
        ),
    }
}

/// Replaces comments and string and char literals with spaces, keeping line breaks.
fn strip_comments_and_strings(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            loop {
                if i >= chars.len() {
                    break;
                }
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if c == 'r'
            && matches!(next, Some('"') | Some('#'))
            && !is_ident_char(prev(&chars, i))
        {
            // Raw string r"..." or r#"..."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= chars.len() {
                    break;
                }
                if chars[j] == '"' && (0..hashes).all(|h| chars.get(j + 1 + h) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            for &skipped in &chars[i..j.min(chars.len())] {
                out.push(blank(skipped));
            }
            i = j;
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < chars.len() {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
        } else if c == '\'' && next == Some('\\') {
            // An escaped char literal: up to the closing quote.
            let mut j = i + 2;
            while j < chars.len() && chars[j] != '\'' {
                j += 1;
            }
            out.push_str(&" ".repeat(j + 1 - i));
            i = j + 1;
        } else if c == '\'' && chars.get(i + 2) == Some(&'\'') {
            out.push_str("   ");
            i += 3;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn prev(chars: &[char], i: usize) -> char {
    if i == 0 {
        ' '
    } else {
        chars[i - 1]
    }
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn ident_at(text: &str, at: usize) -> String {
    text[at..]
        .chars()
        .take_while(|&c| is_ident_char(c))
        .collect()
}

/// Leading identifiers of the items of a `{...}` group starting at `open` (the brace).
fn group_heads(text: &str, open: usize) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 0;
    let mut expect_item = false;
    for (offset, c) in text[open..].char_indices() {
        match c {
            '{' => {
                depth += 1;
                if depth == 1 {
                    expect_item = true;
                }
            }
            '}' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            ',' if depth == 1 => expect_item = true,
            c if depth == 1 && expect_item && is_ident_char(c) => {
                heads.push(ident_at(text, open + offset));
                expect_item = false;
            }
            _ => {}
        }
    }
    heads
}

/// Module path of a file under `src/`: `repo/ingest.rs` → [repo, ingest],
/// `repo/mod.rs` → [repo], `lib.rs` → [].
fn module_path(relative: &Path) -> Vec<String> {
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_str().expect("UTF-8 path").to_string())
        .collect();
    let file = parts.pop().expect("a file");
    let stem = file.trim_end_matches(".rs");
    if !matches!(stem, "mod" | "lib" | "main") {
        parts.push(stem.to_string());
    }
    parts
}

/// Top-level modules that the file at `relative` (under `src/`) refers to, with the
/// line of each reference.
fn edges(relative: &Path, source: &str) -> Vec<(String, usize)> {
    let text = strip_comments_and_strings(source);
    let line_of = |at: usize| text[..at].matches('\n').count() + 1;
    let module = module_path(relative);
    let mut found = Vec::new();
    let add_root_item = |at: usize, found: &mut Vec<(String, usize)>| {
        if text[at..].starts_with('{') {
            for head in group_heads(&text, at) {
                found.push((head, line_of(at)));
            }
        } else {
            let head = ident_at(&text, at);
            if !head.is_empty() {
                found.push((head, line_of(at)));
            }
        }
    };
    for (at, _) in text.match_indices("crate::") {
        let before = text[..at].chars().last().unwrap_or(' ');
        if is_ident_char(before) || before == '$' {
            continue;
        }
        add_root_item(at + "crate::".len(), &mut found);
    }
    let mut at = 0;
    while let Some(pos) = text[at..].find("super::") {
        let start = at + pos;
        let before = text[..start].chars().last().unwrap_or(' ');
        let mut end = start;
        let mut levels = 0;
        while text[end..].starts_with("super::") {
            levels += 1;
            end += "super::".len();
        }
        at = end;
        if is_ident_char(before) || before == ':' {
            continue;
        }
        if levels >= module.len() {
            add_root_item(end, &mut found);
        }
    }
    found.retain(|(head, _)| !matches!(head.as_str(), "self" | "super" | ""));
    found
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn layer_of(relative: &Path) -> String {
    let first = relative.iter().next().unwrap().to_str().unwrap();
    first.trim_end_matches(".rs").to_string()
}

#[test]
fn modules_only_depend_on_lower_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    assert!(files.len() > 20, "found only {} files", files.len());
    let mut violations = Vec::new();
    let mut seen_edges = BTreeSet::new();
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap();
        let layer = layer_of(relative);
        let banned = forbidden(&layer);
        let source = std::fs::read_to_string(file).expect("read source");
        for (target, line) in edges(relative, &source) {
            seen_edges.insert((layer.clone(), target.clone()));
            if banned.contains(&target.as_str()) {
                violations.push(format!(
                    "src/{}:{line}: the {layer} layer uses crate::{target}",
                    relative.display()
                ));
            }
        }
    }
    // The scan sees the edges that must exist, so it is not passing vacuously.
    for (from, to) in [
        ("format", "id"),
        ("pipeline", "format"),
        ("index", "format"),
        ("backend", "error"),
        ("repo", "backend"),
        ("repo", "index"),
        ("repo", "pipeline"),
        ("cli", "repo"),
        ("service", "repo"),
        ("http", "service"),
        ("api", "http"),
        ("server", "api"),
        ("cli", "server"),
    ] {
        assert!(
            seen_edges.contains(&(from.to_string(), to.to_string())),
            "expected edge {from} -> {to} not found; edges: {seen_edges:?}"
        );
    }
    assert!(
        violations.is_empty(),
        "layering violations:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_scanner_finds_every_form_of_reference() {
    let heads = |path: &str, source: &str| -> Vec<String> {
        let mut found: Vec<String> = edges(Path::new(path), source)
            .into_iter()
            .map(|(h, _)| h)
            .collect();
        found.sort();
        found.dedup();
        found
    };
    assert_eq!(
        heads("format/a.rs", "use crate::repo::Repository;"),
        ["repo"]
    );
    assert_eq!(
        heads(
            "format/a.rs",
            "use crate::{\n    backend::{A, B},\n    index::C,\n    id,\n};"
        ),
        ["backend", "id", "index"]
    );
    assert_eq!(
        heads("format/a.rs", "fn f() { let x = crate::cli::run(); }"),
        ["cli"]
    );
    assert_eq!(
        heads("format/a.rs", "pub(crate) fn f() {}"),
        Vec::<String>::new()
    );
    assert_eq!(
        heads("format/a.rs", "// use crate::repo;\n/* crate::cli */"),
        Vec::<String>::new()
    );
    assert_eq!(
        heads("format/a.rs", r#"let s = "crate::repo"; let c = '"';"#),
        Vec::<String>::new()
    );
    assert_eq!(
        heads("format/a.rs", "let s = r#\"crate::repo\"#;"),
        Vec::<String>::new()
    );
    assert_eq!(heads("format/mod.rs", "use super::repo::X;"), ["repo"]);
    assert_eq!(
        heads("format/a.rs", "use super::pack::X;"),
        Vec::<String>::new()
    );
    assert_eq!(heads("format/a.rs", "use super::super::cli;"), ["cli"]);
    assert_eq!(
        heads("error.rs", "use super::{backend, id};"),
        ["backend", "id"]
    );
    assert_eq!(
        heads("repo/x.rs", "fn f<'a>(x: &'a str) -> crate::id::Id {}"),
        ["id"]
    );
    assert_eq!(
        heads("repo/x.rs", "macro_rules! m { () => { $crate::cli::x() } }"),
        Vec::<String>::new()
    );
}

/// The layers where an external crate may be named; any other layer using it fails.
const CRATE_HOMES: [(&str, &[&str]); 6] = [
    // HTTP is the edge: the services and the engine know nothing of it.
    (
        "axum",
        &["http", "api", "dialects", "ui", "server", "fuzzing"],
    ),
    // The storage façades are the only users of redb; no redb type escapes them.
    ("redb", &["index", "state"]),
    ("aws_sdk_s3", &["backend"]),
    ("aws_config", &["backend"]),
    // The HTTP client is the CLI's, talking to a server.
    ("reqwest", &["cli"]),
    // HTML is the dashboard's alone.
    ("maud", &["ui"]),
];

/// Layers that do no IO and run no runtime.
const WITHOUT_TOKIO: [&str; 4] = ["format", "pipeline", "error", "id"];

/// Lines of `source` (comments and strings removed) that name crate `name`.
fn crate_uses(source: &str, name: &str) -> Vec<usize> {
    let code = strip_comments_and_strings(source);
    let mut lines = Vec::new();
    for (number, line) in code.lines().enumerate() {
        let mut from = 0;
        while let Some(found) = line[from..].find(name) {
            let at = from + found;
            let before = line[..at].chars().next_back();
            let after = &line[at + name.len()..];
            let starts_word = !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':');
            if starts_word && (after.starts_with("::") || line[..at].trim_end().ends_with("use")) {
                lines.push(number + 1);
                break;
            }
            from = at + name.len();
        }
    }
    lines
}

#[test]
fn external_crates_stay_in_their_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut violations = Vec::new();
    let mut homes_seen = BTreeSet::new();
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap();
        let layer = layer_of(relative);
        let source = std::fs::read_to_string(file).expect("read source");
        for (name, homes) in CRATE_HOMES {
            for line in crate_uses(&source, name) {
                if homes.contains(&layer.as_str()) {
                    homes_seen.insert(name);
                } else {
                    violations.push(format!(
                        "src/{}:{line}: {layer} uses {name}",
                        relative.display()
                    ));
                }
            }
        }
        if WITHOUT_TOKIO.contains(&layer.as_str()) {
            for line in crate_uses(&source, "tokio") {
                violations.push(format!(
                    "src/{}:{line}: {layer} uses tokio",
                    relative.display()
                ));
            }
        }
    }
    // Not passing vacuously: each crate is found where it lives.
    for (name, _) in CRATE_HOMES {
        assert!(homes_seen.contains(name), "{name} was found nowhere");
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[test]
fn the_crate_scanner_finds_uses_and_ignores_lookalikes() {
    assert_eq!(crate_uses("use redb::Database;", "redb"), [1]);
    assert_eq!(
        crate_uses("fn f() {\n let x = axum::Router::new();\n}", "axum"),
        [2]
    );
    assert_eq!(
        crate_uses("// redb::Database\nlet s = \"redb::x\";", "redb"),
        Vec::<usize>::new()
    );
    assert_eq!(
        crate_uses("let x = my_redb::f();", "redb"),
        Vec::<usize>::new()
    );
    assert_eq!(
        crate_uses("use crate::redb::x;", "redb"),
        Vec::<usize>::new()
    );
}

/// The dialects are plug-ins: the shared layers (http, the native API, the server)
/// never name one (they mount whatever `dialects::DIALECTS` lists), and no dialect
/// reaches into another.
#[test]
fn the_shared_layers_name_no_dialect() {
    const DIALECTS: [&str; 5] = ["fa", "wings", "backupchan", "cyborgbackup", "tapu"];
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut violations = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap();
        let layer = layer_of(relative);
        let own = relative
            .iter()
            .nth(1)
            .and_then(|p| p.to_str())
            .map(|p| p.trim_end_matches(".rs").to_string());
        let text = strip_comments_and_strings(&std::fs::read_to_string(file).unwrap());
        for dialect in DIALECTS {
            let named = [
                format!("dialects::{dialect}"),
                format!("service::{dialect}"),
            ]
            .iter()
            .any(|path| text.contains(path.as_str()));
            let shared = matches!(layer.as_str(), "http" | "api" | "server");
            let other_dialect = layer == "dialects" && own.as_deref() != Some(dialect);
            if named && (shared || other_dialect) {
                violations.push(format!(
                    "src/{}: names the {dialect} dialect",
                    relative.display()
                ));
            }
        }
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}
