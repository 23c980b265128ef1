//! The `/status` answer in the original's shape (`stats`, `instant`, `config`, `type`),
//! every value a string as the original writes them (`"12%"`, `"3days"`, `"20G"`), filled
//! with this host's figures and the repository's: `backups_disk` is what the backups take
//! in the repository (after deduplication and compression), `backups_logical` (stowage's
//! addition) what they hold.

use serde_json::{json, Value};

use crate::service::tapu::status::{HostFigures, Usage};

/// Bytes as `df -h` writes them: `512B`, `1.5K`, `20G`.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["K", "M", "G", "T", "P", "E"];
    if bytes < 1024 {
        return format!("{bytes}B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    let unit = UNITS.get(unit).copied().unwrap_or("E");
    if value < 10.0 {
        format!("{value:.1}{unit}")
    } else {
        format!("{value:.0}{unit}")
    }
}

/// A duration as the original writes uptimes: `3days`, `5hours`, `12minutes`.
pub fn duration(secs: u64) -> String {
    match secs {
        s if s >= 86_400 => format!("{}days", s / 86_400),
        s if s >= 3_600 => format!("{}hours", s / 3_600),
        s => format!("{}minutes", s / 60),
    }
}

fn percent(value: f64) -> String {
    format!("{:.0}%", value.clamp(0.0, 100.0))
}

fn share(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "0%".into();
    }
    percent(100.0 * part as f64 / whole as f64)
}

pub fn status_document(host: &HostFigures, usage: &Usage, live_tokens: usize) -> Value {
    let total = host.net_rx + host.net_tx;
    let rate = total / host.uptime_secs.max(1);
    json!({
        "stats": {
            "net": {
                "rx": human(host.net_rx),
                "tx": human(host.net_tx),
                "total": human(total),
                "avg_rate": format!("{}/s", human(rate)),
            },
            "cpu": percent(host.load_percent),
            "uptime": duration(host.uptime_secs),
            "backups_disk": human(usage.stored_bytes),
            "backups_logical": human(usage.logical_bytes),
        },
        "instant": {
            "total_proc": host.processes.to_string(),
            "ram_use": share(host.mem_total.saturating_sub(host.mem_available), host.mem_total),
            "cpu_use": percent(host.cpu_use_percent),
            "disk_use": share(host.disk_total.saturating_sub(host.disk_free), host.disk_total),
            "usr_active": live_tokens.to_string(),
            "usr_total": usage.instances.to_string(),
            "backup_tokens_qty": live_tokens.to_string(),
        },
        "config": {
            "host": host.hostname,
            "uptime": duration(host.uptime_secs),
            "mem": human(host.mem_total),
            "cpu_qty": host.cpus.to_string(),
            "cpu_freq": format!("{:.1}GHz", host.cpu_mhz / 1000.0),
            "disk": human(host.disk_total),
            "ip_private": host.ip_private.to_string(),
        },
        "type": "tapu_backups",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_are_written_as_the_original_writes_them() {
        assert_eq!(human(512), "512B");
        assert_eq!(human(1536), "1.5K");
        assert_eq!(human(20 << 30), "20G");
        assert_eq!(duration(3 * 86_400 + 5), "3days");
        assert_eq!(duration(7_200), "2hours");
        assert_eq!(share(1, 4), "25%");
        assert_eq!(share(1, 0), "0%");
    }
}
