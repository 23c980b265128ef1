//! `stowage restore --server URL ID --target DIR`: a tree backup restored from a running
//! server onto this machine. The catalog comes page by page from `/v1/backups/{id}/catalog`
//! and the files' bytes in one pass of `/v1/backups/{id}/content` (a tree's stream is its
//! regular files end to end, in catalog order), so memory holds the catalog and one piece
//! of the stream.
//!
//! What the server sends is untrusted: every path must be relative with no `..` (the
//! check the catalog decoder makes), each file must start where the previous one ended,
//! and symbolic links are made last, so no file is ever written through a link the
//! backup planted. Owners are not restored (the files belong to whoever runs this).

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use serde_json::Value;

use super::commands::Outcome;
use super::output;
use super::remote::{checked, Remote};
use super::RepoArgs;
use crate::format::catalog::{is_safe_relative_path, CatalogEntry, EntryKind};
use crate::format::catalog_index::is_inside;
use crate::repo::Progress;

/// Catalog entries asked for per request (the API's largest page).
const CATALOG_PAGE: usize = 10_000;

/// The backup's stream, consumed in order.
struct Content {
    stream: BoxStream<'static, reqwest::Result<Bytes>>,
    current: Bytes,
    position: u64,
}

impl Content {
    async fn next_piece(&mut self) -> Result<()> {
        match self.stream.next().await {
            Some(piece) => {
                self.current = piece.context("the download broke off")?;
                Ok(())
            }
            None => bail!("the backup's content ended at byte {}", self.position),
        }
    }

    /// Writes the next `len` bytes into `out` (or drops them with `None`).
    async fn copy(&mut self, mut len: u64, mut out: Option<&mut File>) -> Result<()> {
        while len > 0 {
            if self.current.is_empty() {
                self.next_piece().await?;
            }
            let take = len.min(self.current.len() as u64) as usize;
            let piece = self.current.split_to(take);
            if let Some(file) = out.as_deref_mut() {
                file.write_all(&piece)?;
            }
            len -= take as u64;
            self.position += take as u64;
        }
        Ok(())
    }
}

async fn catalog(remote: &Remote, id: &str) -> Result<Vec<CatalogEntry>> {
    let mut entries: Vec<CatalogEntry> = Vec::new();
    loop {
        let path = format!(
            "/v1/backups/{id}/catalog?limit={CATALOG_PAGE}&offset={}",
            entries.len()
        );
        let response = remote.request(reqwest::Method::GET, &path).send().await?;
        let page: Value = checked(response).await?.json().await?;
        let batch: Vec<CatalogEntry> = serde_json::from_value(page["entries"].clone())
            .context("the server sent catalog entries of an unknown shape")?;
        let total = page["total"].as_u64().unwrap_or(0) as usize;
        let done = batch.is_empty();
        entries.extend(batch);
        if done || entries.len() >= total {
            return Ok(entries);
        }
    }
}

fn set_times(path: &Path, entry: &CatalogEntry) -> Result<()> {
    let mtime = filetime::FileTime::from_unix_time(entry.mtime, entry.mtime_nsec);
    filetime::set_symlink_file_times(path, mtime, mtime)
        .with_context(|| format!("setting the times of {}", path.display()))
}

pub async fn restore(args: &RepoArgs, id: &str, target: &Path) -> Result<Outcome> {
    let remote = Remote::new(args)?;
    let (entries, written) = restore_tree(
        &remote,
        id,
        target,
        &RestoreChoice::default(),
        &Progress::new(),
    )
    .await?;
    eprintln!(
        "restored {entries} entries, {} into {}",
        output::bytes(written),
        target.display()
    );
    Ok(Outcome::Success)
}

/// What of a backup to restore, and whether to write it.
#[derive(Debug, Default)]
pub(super) struct RestoreChoice<'a> {
    /// Only this catalog path and what lies beneath it.
    pub item: Option<&'a str>,
    /// Write nothing: count what would be restored.
    pub dry_run: bool,
}

/// Recreates the tree backup `id` (or the part `choice` names) under `target`, which
/// must be missing or empty: the entries restored and the file bytes written (with
/// `dry_run`, those that would be).
pub(super) async fn restore_tree(
    remote: &Remote,
    id: &str,
    target: &Path,
    choice: &RestoreChoice<'_>,
    progress: &Progress,
) -> Result<(u64, u64)> {
    let response = remote
        .request(reqwest::Method::GET, &format!("/v1/backups/{id}"))
        .send()
        .await?;
    let backup: Value = checked(response).await?.json().await?;
    if backup["kind"] != "tree" {
        bail!("backup {id} is a stream, not a tree: `stowage get --server URL {id} -o FILE` writes it");
    }
    if !choice.dry_run && target.exists() && std::fs::read_dir(target)?.next().is_some() {
        bail!("{} is not empty", target.display());
    }
    let mut entries = catalog(remote, id).await?;
    if let Some(bad) = entries.iter().find(|e| !is_safe_relative_path(&e.path)) {
        bail!(
            "the server sent an unsafe path {:?}; nothing was written",
            bad.path
        );
    }
    if let Some(item) = choice.item {
        entries.retain(|e| e.path == item || is_inside(&e.path, item));
        if entries.is_empty() {
            bail!("backup {id} has no entry {item:?}");
        }
    }
    let files = entries.iter().filter(|e| e.kind == EntryKind::File);
    if choice.dry_run {
        let bytes = files.map(|e| e.size).sum();
        let restorable = entries
            .iter()
            .filter(|e| !matches!(e.kind, EntryKind::Hardlink | EntryKind::Other))
            .count();
        return Ok((restorable as u64, bytes));
    }
    // An item's files lie end to end in the stream (catalog order is depth first), so
    // one ranged read fetches exactly them.
    let span = files
        .map(|e| (e.offset.unwrap_or(0), e.offset.unwrap_or(0) + e.size))
        .fold(None, |span: Option<(u64, u64)>, (start, end)| {
            Some(span.map_or((start, end), |(s, e)| (s.min(start), e.max(end))))
        });
    std::fs::create_dir_all(target).with_context(|| format!("creating {}", target.display()))?;
    let mut content = match span {
        Some((start, end)) if end > start => {
            let response = remote
                .request(reqwest::Method::GET, &format!("/v1/backups/{id}/content"))
                .header(reqwest::header::RANGE, format!("bytes={start}-{}", end - 1))
                .send()
                .await?;
            Content {
                stream: checked(response).await?.bytes_stream().boxed(),
                current: Bytes::new(),
                position: start,
            }
        }
        // Nothing to read: only folders, links and empty files (all at one offset).
        _ => Content {
            stream: futures::stream::empty().boxed(),
            current: Bytes::new(),
            position: span.map_or(0, |(start, _)| start),
        },
    };
    let (mut links, mut dirs, mut skipped, mut written) = (Vec::new(), Vec::new(), 0u64, 0u64);
    for entry in &entries {
        let path = target.join(&entry.path);
        match entry.kind {
            EntryKind::Dir => {
                std::fs::create_dir_all(&path)
                    .with_context(|| format!("creating {}", path.display()))?;
                dirs.push(entry);
            }
            EntryKind::File => {
                let start = entry
                    .offset
                    .with_context(|| format!("{} has no place in the stream", entry.path))?;
                if start < content.position {
                    bail!(
                        "{} starts at byte {start}, before the end of the previous file",
                        entry.path
                    );
                }
                content.copy(start - content.position, None).await?;
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                let mut file = File::options()
                    .write(true)
                    .create_new(true)
                    .open(&path)
                    .with_context(|| format!("creating {}", path.display()))?;
                content.copy(entry.size, Some(&mut file)).await?;
                progress.add_done(entry.size);
                progress.add_files_done(1);
                file.set_permissions(std::fs::Permissions::from_mode(entry.mode & 0o7777))?;
                drop(file);
                set_times(&path, entry)?;
                written += entry.size;
            }
            EntryKind::Symlink => links.push(entry),
            EntryKind::Hardlink | EntryKind::Other => skipped += 1,
        }
    }
    for entry in links {
        let path = target.join(&entry.path);
        let link = entry.link.as_deref().unwrap_or_default();
        std::os::unix::fs::symlink(link, &path)
            .with_context(|| format!("creating the link {}", path.display()))?;
        set_times(&path, entry)?;
    }
    // Deepest first, so setting a folder's time is not undone by filling it.
    for entry in dirs.iter().rev() {
        let path = target.join(&entry.path);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(entry.mode & 0o7777))?;
        set_times(&path, entry)?;
    }
    if skipped > 0 {
        eprintln!("warning: {skipped} entries (hard links, devices, fifos) were not restored");
    }
    Ok((entries.len() as u64 - skipped, written))
}
