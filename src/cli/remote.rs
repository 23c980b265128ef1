//! The CLI as an agent: `put`, `get` and `ls` against a running server (`--server URL`,
//! key from `STOWAGE_KEY`), with the same output as against a repository. `put` chunks
//! here and sends only what the server lacks (`session_put`); this module's `put` is the
//! plain upload of every byte (`put --whole`).

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context, Result};
use futures::StreamExt;
use serde_json::Value;

use super::commands::{parse_range, Outcome};
use super::RepoArgs;

#[derive(Clone)]
pub(super) struct Remote {
    base: String,
    key: String,
    client: reqwest::Client,
}

impl Remote {
    pub(super) fn new(args: &RepoArgs) -> Result<Remote> {
        let base = args.server.as_deref().context("no --server URL")?;
        match &args.key {
            Some(key) => Ok(Remote::with_key(base, key.clone())),
            None => Remote::connect(base),
        }
    }

    fn connect(base: &str) -> Result<Remote> {
        let key =
            std::env::var("STOWAGE_KEY").context("set STOWAGE_KEY to an API key for the server")?;
        Ok(Remote::with_key(base, key))
    }

    fn with_key(base: &str, key: String) -> Remote {
        Remote {
            base: base.trim_end_matches('/').to_string(),
            key,
            client: reqwest::Client::new(),
        }
    }

    /// The server's URL, without a trailing `/`.
    pub(super) fn base(&self) -> &str {
        &self.base
    }

    pub(super) fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.key)
    }
}

/// Turns a non-success answer into an error carrying the server's message.
pub(super) async fn checked(response: reqwest::Response) -> Result<reqwest::Response> {
    if response.status().is_success() {
        return Ok(response);
    }
    let status = response.status();
    let body: Value = response.json().await.unwrap_or_default();
    let message = body["error"]["message"]
        .as_str()
        .unwrap_or("no message")
        .to_string();
    bail!("server answered {status}: {message}")
}

/// Bytes read from the source per piece of a plain upload's body: `ReaderStream`'s
/// default of 4 KiB made the upload run at a third of the server's ingest speed.
const READ_PIECE: usize = 1 << 20;

pub async fn put(
    args: &RepoArgs,
    series: &str,
    json: bool,
    sha256: bool,
    path: &Path,
) -> Result<Outcome> {
    let remote = Remote::new(args)?;
    let (name, body) = if path == Path::new("-") {
        let stdin = tokio_util::io::ReaderStream::with_capacity(tokio::io::stdin(), READ_PIECE);
        ("-".to_string(), reqwest::Body::wrap_stream(stdin))
    } else {
        if std::fs::metadata(path)
            .with_context(|| format!("reading {}", path.display()))?
            .is_dir()
        {
            bail!("the server takes streams: back a directory up with --repo, or send a tar of it");
        }
        let file = tokio::fs::File::open(path)
            .await
            .with_context(|| format!("opening {}", path.display()))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        (
            name,
            reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(
                file, READ_PIECE,
            )),
        )
    };
    let response = remote
        .request(
            reqwest::Method::POST,
            &format!("/v1/series/{series}/backups"),
        )
        .query(&[("name", name.as_str())])
        .query(&[("sha256", sha256)])
        .body(body)
        .send()
        .await
        .context("sending the upload")?;
    let backup: Value = checked(response).await?.json().await?;
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{backup}")?;
    } else {
        eprintln!(
            "backup of {name}: {} bytes, {} added to the repository",
            backup["size"], backup["stored_bytes"]
        );
        writeln!(out, "{}", backup["id"].as_str().unwrap_or_default())?;
    }
    Ok(Outcome::Success)
}

pub async fn get(
    args: &RepoArgs,
    id: &str,
    output: Option<&Path>,
    range: Option<&str>,
) -> Result<Outcome> {
    let remote = Remote::new(args)?;
    let mut request = remote.request(reqwest::Method::GET, &format!("/v1/backups/{id}/content"));
    if let Some(text) = range {
        // Validate locally with an unbounded size; the server checks the real bounds.
        let r = parse_range(text, u64::MAX)?;
        let end = if r.end == u64::MAX {
            String::new()
        } else {
            (r.end - 1).to_string()
        };
        request = request.header(reqwest::header::RANGE, format!("bytes={}-{end}", r.start));
    }
    let response = checked(request.send().await.context("requesting the backup")?).await?;
    let mut sink: Box<dyn Write> = match output {
        Some(path) => Box::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(bytes) => sink.write_all(&bytes)?,
            Err(e) => {
                drop(sink);
                if let Some(path) = output {
                    let _ = std::fs::remove_file(path);
                }
                bail!("download interrupted: {e}");
            }
        }
    }
    sink.flush()?;
    Ok(Outcome::Success)
}

pub async fn url(server: &str, id: &str, ttl: u64, json: bool) -> Result<Outcome> {
    let remote = Remote::connect(server)?;
    let response = remote
        .request(reqwest::Method::POST, &format!("/v1/backups/{id}/url"))
        .query(&[("ttl", ttl.to_string())])
        .send()
        .await?;
    let link: Value = checked(response).await?.json().await?;
    if json {
        println!("{link}");
    } else {
        println!(
            "{}",
            link["url"].as_str().context("the server sent no url")?
        );
        eprintln!(
            "valid until {}",
            link["expires_at"].as_str().unwrap_or("(unknown)")
        );
    }
    Ok(Outcome::Success)
}

pub async fn ls(
    args: &RepoArgs,
    series: Option<&str>,
    recycled: bool,
    json: bool,
) -> Result<Outcome> {
    let remote = Remote::new(args)?;
    let mut all: Vec<Value> = Vec::new();
    loop {
        let mut query: Vec<(&str, String)> =
            vec![("limit", "1000".into()), ("offset", all.len().to_string())];
        if let Some(s) = series {
            query.push(("series", s.to_string()));
        }
        if recycled {
            query.push(("recycled", "true".into()));
        }
        let response = remote
            .request(reqwest::Method::GET, "/v1/backups")
            .query(&query)
            .send()
            .await?;
        let page: Value = checked(response).await?.json().await?;
        let batch = page["backups"].as_array().cloned().unwrap_or_default();
        let total = page["total"].as_u64().unwrap_or(0) as usize;
        let done = batch.is_empty();
        all.extend(batch);
        if done || all.len() >= total {
            break;
        }
    }
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", Value::Array(all))?;
        return Ok(Outcome::Success);
    }
    writeln!(
        out,
        "{:<36}  {:<27}  {:<16}  {:<6}  {:>12}",
        "ID", "CREATED", "SERIES", "KIND", "SIZE"
    )?;
    for b in all {
        let text = |k: &str| b[k].as_str().unwrap_or_default().to_string();
        writeln!(
            out,
            "{:<36}  {:<27}  {:<16}  {:<6}  {:>12}",
            text("id"),
            text("created_at"),
            text("series"),
            text("kind"),
            b["size"]
        )?;
    }
    Ok(Outcome::Success)
}
