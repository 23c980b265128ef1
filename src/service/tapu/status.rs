//! The host's figures for the tapu-backups `/status` answer, read from Linux's `/proc`
//! and the file system holding the data directory: uptime, memory, processes, CPU use
//! (the difference between this call's `/proc/stat` sample and the previous one's),
//! network bytes, disk size and use. A figure the host does not offer reads as zero, so
//! the answer keeps its shape on any system.

use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::path::Path;
use std::sync::Mutex;

/// The numbers behind `/status`; the dialect writes them in the original's strings.
#[derive(Debug, Clone, PartialEq)]
pub struct HostFigures {
    pub hostname: String,
    pub uptime_secs: u64,
    pub mem_total: u64,
    pub mem_available: u64,
    pub processes: u64,
    pub cpus: u64,
    /// MHz of the first CPU, 0 when unknown.
    pub cpu_mhz: f64,
    /// Busy share of all CPUs since the previous sample (since boot on the first), 0–100.
    pub cpu_use_percent: f64,
    /// One-minute load average over the CPU count, in percent.
    pub load_percent: f64,
    pub net_rx: u64,
    pub net_tx: u64,
    pub disk_total: u64,
    pub disk_free: u64,
    pub ip_private: IpAddr,
}

/// What the repository holds for the dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Bytes the repository's backups take after deduplication and compression.
    pub stored_bytes: u64,
    /// Bytes the repository's backups hold.
    pub logical_bytes: u64,
    /// Instances with at least one backup.
    pub instances: usize,
}

/// Keeps the previous CPU sample.
#[derive(Default)]
pub struct HostSampler {
    previous: Mutex<Option<(u64, u64)>>,
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// `(busy, total)` jiffies of all CPUs from `/proc/stat`.
fn cpu_times(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: u64 = values.iter().take(8).sum();
    // idle and iowait are the 4th and 5th.
    let idle = values.get(3).copied().unwrap_or(0) + values.get(4).copied().unwrap_or(0);
    Some((total.saturating_sub(idle), total))
}

/// A `/proc/meminfo` value in bytes.
fn meminfo(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// Received and sent bytes of every interface but loopback, from `/proc/net/dev`.
fn network(text: &str) -> (u64, u64) {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(name, _)| name.trim() != "lo")
        .fold((0, 0), |(rx, tx), (_, values)| {
            let v: Vec<u64> = values
                .split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect();
            (
                rx + v.first().copied().unwrap_or(0),
                tx + v.get(8).copied().unwrap_or(0),
            )
        })
}

/// The address this host would use towards a private network (no packet is sent).
fn private_ip() -> IpAddr {
    UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
        .and_then(|socket| {
            socket.connect((Ipv4Addr::new(10, 255, 255, 255), 9))?;
            socket.local_addr()
        })
        .map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |address| address.ip())
}

impl HostSampler {
    pub fn new() -> HostSampler {
        HostSampler::default()
    }

    /// The figures now; `data_dir` names the file system whose size and use count.
    pub fn sample(&self, data_dir: &Path) -> HostFigures {
        let meminfo_text = read("/proc/meminfo");
        let cpuinfo = read("/proc/cpuinfo");
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
        let cpu_use_percent = match cpu_times(&read("/proc/stat")) {
            Some(now) => {
                let mut previous = self
                    .previous
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                let (busy0, total0) = previous.replace(now).unwrap_or((0, 0));
                let total = now.1.saturating_sub(total0);
                if total == 0 {
                    0.0
                } else {
                    100.0 * now.0.saturating_sub(busy0) as f64 / total as f64
                }
            }
            None => 0.0,
        };
        let load: f64 = read("/proc/loadavg")
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        let (net_rx, net_tx) = network(&read("/proc/net/dev"));
        let (disk_total, disk_free) = rustix::fs::statvfs(data_dir)
            .map(|s| (s.f_blocks * s.f_frsize, s.f_bavail * s.f_frsize))
            .unwrap_or((0, 0));
        let processes = std::fs::read_dir("/proc").map_or(0, |dir| {
            dir.filter_map(Result::ok)
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .bytes()
                        .all(|b| b.is_ascii_digit())
                })
                .count() as u64
        });
        HostFigures {
            hostname: read("/proc/sys/kernel/hostname").trim().to_string(),
            uptime_secs: read("/proc/uptime")
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .map_or(0, |s| s as u64),
            mem_total: meminfo(&meminfo_text, "MemTotal"),
            mem_available: meminfo(&meminfo_text, "MemAvailable"),
            processes,
            cpus,
            cpu_mhz: cpuinfo
                .lines()
                .find_map(|l| {
                    l.strip_prefix("cpu MHz")?
                        .split(':')
                        .nth(1)?
                        .trim()
                        .parse()
                        .ok()
                })
                .unwrap_or(0.0),
            cpu_use_percent,
            load_percent: 100.0 * load / cpus as f64,
            net_rx,
            net_tx,
            disk_total,
            disk_free,
            ip_private: private_ip(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_are_read() {
        assert_eq!(
            cpu_times("cpu  10 0 10 70 10 0 0 0 0 0\ncpu0 1 1 1 1 1"),
            Some((20, 100))
        );
        assert_eq!(
            meminfo("MemTotal:  2048 kB\nMemFree: 1 kB", "MemTotal"),
            2 << 20
        );
        let dev = "Inter-|\n face |bytes\n    lo: 500 1 0 0 0 0 0 0 500 1\n  eth0: 100 2 0 0 0 0 0 0 40 3\n";
        assert_eq!(network(dev), (100, 40));
    }

    #[test]
    fn a_sample_on_this_host_has_its_figures() {
        let sampler = HostSampler::new();
        let figures = sampler.sample(Path::new("/"));
        assert!(figures.cpus >= 1);
        assert!(figures.disk_total >= figures.disk_free);
        if Path::new("/proc/meminfo").exists() {
            assert!(figures.mem_total > 0 && figures.processes > 0 && figures.uptime_secs > 0);
        }
        let again = sampler.sample(Path::new("/"));
        assert!((0.0..=100.0).contains(&again.cpu_use_percent));
    }
}
