//! Printing for people and scripts: tables, JSON, byte sizes, and the progress bar
//! (drawn only when stderr is a terminal).

use std::io::{self, Write};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use serde_json::json;

use crate::format::catalog::{CatalogEntry, EntryKind};
use crate::format::manifest::{BackupKind, BackupManifest};
use crate::format::series::RetentionAction;
use crate::repo::check::CheckReport;
use crate::repo::gc::GcReport;
use crate::repo::lifecycle::BackupEntry;
use crate::repo::stats::RepoStats;
use crate::repo::Progress;
use crate::service::retention::Decision;
use crate::service::views::BackupView;

/// A progress bar following a [`Progress`], refreshed by a background thread.
pub struct ProgressBar {
    bar: Option<indicatif::ProgressBar>,
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ProgressBar {
    pub fn start(progress: Arc<Progress>, label: &'static str) -> ProgressBar {
        if !super::commands::stderr_is_terminal() {
            return ProgressBar {
                bar: None,
                stop: None,
                thread: None,
            };
        }
        let bar =
            indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
        let style = indicatif::ProgressStyle::with_template(
            "{msg} {bar:30} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_message(label);
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let shown = bar.clone();
        let thread = std::thread::spawn(move || loop {
            let total = progress.total();
            if total > 0 {
                shown.set_length(total);
            }
            shown.set_position(progress.done());
            if stopped.recv_timeout(Duration::from_millis(200)).is_ok() {
                return;
            }
        });
        ProgressBar {
            bar: Some(bar),
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn finish(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

pub use crate::service::views::human_bytes as bytes;

fn kind_name(kind: BackupKind) -> &'static str {
    match kind {
        BackupKind::Stream => "stream",
        BackupKind::Tree => "tree",
    }
}

pub fn backup_json(m: &BackupManifest) -> serde_json::Value {
    serde_json::to_value(BackupView::new(m, None)).unwrap_or_default()
}

/// After a backup: a summary on stderr and the id as the last line of stdout, or one
/// JSON object on stdout.
pub fn print_backup(m: &BackupManifest, json: bool) -> Result<()> {
    let mut out = io::stdout().lock();
    if json {
        writeln!(out, "{}", backup_json(m))?;
    } else {
        eprintln!(
            "{} backup of {}: {} in {} chunks ({} new), {} added to the repository",
            kind_name(m.kind),
            m.source,
            bytes(m.size),
            m.chunks,
            m.new_chunks,
            bytes(m.stored_bytes)
        );
        writeln!(out, "{}", m.id)?;
    }
    Ok(())
}

pub fn print_backups(backups: &[BackupEntry], json: bool) -> Result<()> {
    let mut out = io::stdout().lock();
    if json {
        let list: Vec<BackupView> = backups
            .iter()
            .map(|b| BackupView::new(&b.manifest, b.recycled_at.clone()))
            .collect();
        writeln!(out, "{}", serde_json::to_string(&list)?)?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<36}  {:<27}  {:<16}  {:<6}  {:>10}  {:>10}",
        "ID", "CREATED", "SERIES", "KIND", "SIZE", "ADDED"
    )?;
    for m in backups.iter().map(|b| &b.manifest) {
        writeln!(
            out,
            "{:<36}  {:<27}  {:<16}  {:<6}  {:>10}  {:>10}",
            m.id,
            m.created_at,
            m.series,
            kind_name(m.kind),
            bytes(m.size),
            bytes(m.stored_bytes)
        )?;
    }
    Ok(())
}

pub fn print_catalog(entries: Receiver<CatalogEntry>, json: bool) -> Result<()> {
    let mut out = io::BufWriter::new(io::stdout().lock());
    if json {
        write!(out, "[")?;
    }
    for (n, entry) in entries.into_iter().enumerate() {
        if json {
            if n > 0 {
                write!(out, ",")?;
            }
            serde_json::to_writer(&mut out, &entry)?;
        } else {
            writeln!(out, "{}", catalog_line(&entry))?;
        }
    }
    if json {
        writeln!(out, "]")?;
    }
    out.flush()?;
    Ok(())
}

fn catalog_line(e: &CatalogEntry) -> String {
    let kind = match e.kind {
        EntryKind::File => '-',
        EntryKind::Dir => 'd',
        EntryKind::Symlink => 'l',
        EntryKind::Hardlink => 'h',
        EntryKind::Other => '?',
    };
    let owner = |name: &str, id: u32| {
        if name.is_empty() {
            id.to_string()
        } else {
            name.to_string()
        }
    };
    let mtime = chrono::DateTime::from_timestamp(e.mtime, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_default();
    let link = e
        .link
        .as_ref()
        .map(|l| format!(" -> {l}"))
        .unwrap_or_default();
    format!(
        "{kind}{:04o} {}/{} {:>12} {mtime} {}{link}",
        e.mode,
        owner(&e.user, e.uid),
        owner(&e.group, e.gid),
        e.size,
        e.path
    )
}

/// Schedules, one a line (name, crontab, enabled, next run), or as JSON.
pub fn print_schedules(
    schedules: &[crate::service::schedules::ScheduleView],
    json: bool,
) -> Result<()> {
    let mut out = io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string(schedules)?)?;
        return Ok(());
    }
    for s in schedules {
        writeln!(
            out,
            "{}\t{}\t{}\tnext {}",
            s.name,
            s.crontab,
            if s.enabled { "enabled" } else { "disabled" },
            s.next_run.as_deref().unwrap_or("never")
        )?;
    }
    Ok(())
}

pub fn print_stats(stats: &RepoStats, json: bool) -> Result<()> {
    let mut out = io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string(stats)?)?;
        return Ok(());
    }
    writeln!(out, "backups:            {}", stats.backups)?;
    writeln!(
        out,
        "logical bytes:      {} ({})",
        stats.logical_bytes,
        bytes(stats.logical_bytes)
    )?;
    writeln!(
        out,
        "unique bytes:       {} ({})",
        stats.unique_bytes,
        bytes(stats.unique_bytes)
    )?;
    writeln!(
        out,
        "metadata bytes:     {} ({})",
        stats.metadata_bytes,
        bytes(stats.metadata_bytes)
    )?;
    writeln!(
        out,
        "stored bytes:       {} ({})",
        stats.stored_bytes,
        bytes(stats.stored_bytes)
    )?;
    writeln!(out, "dedup ratio:        {:.2}", stats.dedup_ratio)?;
    writeln!(out, "compression ratio:  {:.2}", stats.compression_ratio)?;
    writeln!(out, "chunks:             {}", stats.chunks)?;
    writeln!(out, "metadata blobs:     {}", stats.metadata_blobs)?;
    writeln!(out, "packs:              {}", stats.packs)?;
    for (name, series) in &stats.series {
        writeln!(
            out,
            "series {name}: {} backups, {} ({})",
            series.backups,
            series.logical_bytes,
            bytes(series.logical_bytes)
        )?;
    }
    Ok(())
}

pub fn print_check(report: &CheckReport, json: bool) -> Result<()> {
    let mut out = io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string(report)?)?;
        return Ok(());
    }
    for problem in &report.problems {
        writeln!(out, "problem: {problem}")?;
    }
    writeln!(
        out,
        "checked {} backups, {} packs, {} chunks{}: {}",
        report.backups,
        report.packs,
        report.chunks,
        if report.blobs_read > 0 {
            format!(", {} blobs read", report.blobs_read)
        } else {
            String::new()
        },
        if report.is_ok() {
            "no problems".to_string()
        } else {
            format!("{} problems", report.problems.len())
        }
    )?;
    Ok(())
}

pub fn print_decisions(
    decisions: &[Decision],
    action: RetentionAction,
    dry_run: bool,
    json: bool,
) -> Result<()> {
    let mut out = io::stdout().lock();
    if json {
        writeln!(
            out,
            "{}",
            json!({ "dry_run": dry_run, "action": action, "decisions": decisions })
        )?;
        return Ok(());
    }
    let verb = match (action, dry_run) {
        (RetentionAction::Recycle, true) => "would recycle",
        (RetentionAction::Recycle, false) => "recycled",
        (RetentionAction::Delete, true) => "would delete",
        (RetentionAction::Delete, false) => "deleted",
    };
    for d in decisions {
        if d.keep {
            writeln!(
                out,
                "keep           {}  {}  ({})",
                d.id,
                d.created_at.to_rfc3339(),
                d.reasons.join(", ")
            )?;
        } else {
            writeln!(out, "{verb:<13}  {}  {}", d.id, d.created_at.to_rfc3339())?;
        }
    }
    Ok(())
}

/// Prints API key records (never a secret: the store has none).
pub fn print_keys(records: &[crate::service::keys::KeyRecord], json: bool) {
    if json {
        let list: Vec<_> = records
            .iter()
            .map(|r| serde_json::json!({"id": r.id, "name": r.name, "role": r.role, "dialect": r.dialect, "created_at": r.created_at, "revoked_at": r.revoked_at}))
            .collect();
        println!("{}", serde_json::Value::Array(list));
        return;
    }
    println!(
        "{:<16}  {:<7}  {:<20}  {:<8}  NAME",
        "ID", "ROLE", "CREATED", "STATE"
    );
    for r in records {
        let state = if r.revoked_at.is_some() {
            "revoked"
        } else {
            "active"
        };
        let dialect = r
            .dialect
            .as_deref()
            .map(|d| format!(" [{d}]"))
            .unwrap_or_default();
        println!(
            "{:<16}  {:<7}  {:<20}  {:<8}  {}{dialect}",
            r.id, r.role, r.created_at, state, r.name
        );
    }
}

/// Prints users (never a password: the store holds only hashes).
pub fn print_users(users: &[crate::service::users::UserView], json: bool) -> Result<()> {
    let mut out = io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string(users)?)?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<32}  {:<9}  {:<20}  {:<20}  NAME",
        "EMAIL", "SUPERUSER", "CREATED", "LAST LOGIN"
    )?;
    for user in users {
        writeln!(
            out,
            "{:<32}  {:<9}  {:<20}  {:<20}  {} {}",
            user.email,
            if user.superuser { "yes" } else { "no" },
            user.created_at,
            user.last_login.as_deref().unwrap_or("never"),
            user.first_name,
            user.last_name
        )?;
    }
    Ok(())
}

/// Tells, on stderr, that opening brought the index in line with the repository.
pub fn print_reconciliation(report: &crate::repo::repair::RepairReport) {
    if report.changed() {
        eprintln!(
            "the local index did not match the repository and was brought up to date: {} packs and {} backups added, {} packs and {} backups removed",
            report.packs, report.backups, report.packs_removed, report.backups_removed
        );
    }
    for reason in &report.skipped {
        eprintln!("warning: left out of the index: {reason}");
    }
}

pub fn print_gc(report: &GcReport, json: bool) -> Result<()> {
    let mut out = io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string(report)?)?;
        return Ok(());
    }
    let prefix = if report.dry_run {
        "would reclaim"
    } else {
        "reclaimed"
    };
    writeln!(
        out,
        "{prefix} {} ({} garbage chunks): {} packs deleted, {} repacked into {} new ({} rewritten), {} orphan packs deleted, {} stale uploads aborted",
        bytes(report.bytes_reclaimed),
        report.garbage_chunks,
        report.packs_deleted,
        report.packs_repacked,
        report.packs_written,
        bytes(report.bytes_rewritten),
        report.orphan_packs_deleted,
        report.stale_uploads_aborted
    )?;
    if report.orphan_packs_kept > 0 {
        writeln!(
            out,
            "kept {} unindexed packs younger than the orphan grace period",
            report.orphan_packs_kept
        )?;
    }
    let verb = if report.dry_run {
        "would delete"
    } else {
        "deleted"
    };
    for pack in &report.deleted_packs {
        writeln!(out, "{verb} pack {pack}")?;
    }
    Ok(())
}
