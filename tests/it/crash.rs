//! The crash suite: `put`, an HTTP upload to `serve`, `gc` and `repair index`, each
//! killed with SIGKILL at seeded random points of its run. After every kill,
//! `check --read-data` passes, every completed backup restores byte-exact, a rerun of
//! the operation succeeds, and gc (with no grace period) reclaims what the killed run
//! left: no temporaries, no pack the index does not know.
//!
//! A kill point is a seeded fraction of the operation's duration measured by a clean
//! run on the same machine (no timing is asserted). `STOWAGE_CRASH_ROUNDS` (default 3)
//! sets the kills per operation and `STOWAGE_CRASH_SEED` the seed, for longer runs.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;

fn rounds() -> u64 {
    std::env::var("STOWAGE_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
}

/// Seeded kill points: fractions of a run in [0.05, 0.95).
struct KillPoints(u64);

impl KillPoints {
    fn new(salt: u64) -> KillPoints {
        let seed = std::env::var("STOWAGE_CRASH_SEED")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0x5eed_c4a5);
        KillPoints((seed ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1)
    }

    fn next(&mut self, run: Duration) -> Duration {
        // xorshift64
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        let fraction = 0.05 + 0.9 * ((self.0 >> 11) as f64 / (1u64 << 53) as f64);
        run.mul_f64(fraction)
    }
}

/// Runs `command` to completion; it must succeed. Returns how long it took.
fn timed(command: &mut Command) -> Duration {
    let started = Instant::now();
    run_ok(command, None);
    started.elapsed()
}

/// Starts `command` and SIGKILLs it after `after` (unless it ended before).
fn kill_after(command: &mut Command, after: Duration) -> ExitStatus {
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn stowage");
    kill_child(&mut child, after)
}

fn kill_child(child: &mut Child, after: Duration) -> ExitStatus {
    let deadline = Instant::now() + after;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    // `Child::kill` is SIGKILL on Unix: no handler runs, nothing is flushed.
    let _ = child.kill();
    child.wait().expect("reap the killed process")
}

/// A CLI command on `repo` using the index in `state`.
fn cli_at(repo: &Path, state: &Path) -> Command {
    let mut command = cli(repo);
    command.env("STOWAGE_STATE_DIR", state);
    command
}

/// Backups listed by `ls --json`: id → series.
fn listed(repo: &Path, state: &Path) -> BTreeMap<String, String> {
    let out = run_ok(cli_at(repo, state).args(["ls", "--json"]), None);
    let list: Value = serde_json::from_slice(&out.stdout).expect("ls --json");
    list.as_array()
        .expect("a list")
        .iter()
        .map(|b| {
            let text = |key: &str| b[key].as_str().expect("a string").to_string();
            (text("id"), text("series"))
        })
        .collect()
}

/// `check --read-data` passes and every listed backup is one of `expected` (series →
/// bytes), restoring byte-exact.
fn assert_sound(repo: &Path, state: &Path, expected: &BTreeMap<&str, Vec<u8>>, context: &str) {
    let check = run(cli_at(repo, state).args(["check", "--read-data"]), None);
    assert!(
        check.status.success(),
        "{context}: check --read-data: {}{}",
        stdout_text(&check),
        stderr_text(&check)
    );
    for (id, series) in listed(repo, state) {
        let data = expected
            .get(series.as_str())
            .unwrap_or_else(|| panic!("{context}: unexpected backup {id} in {series}"));
        let got = run_ok(cli_at(repo, state).args(["get", &id]), None);
        assert!(
            got.stdout == *data,
            "{context}: backup {id} of {series} differs"
        );
    }
}

/// Gc with no grace period reclaims every leftover: afterwards no temporary is left
/// and the pack files on disk are exactly the bytes the index accounts for.
fn assert_reclaimed(repo: &Path, state: &Path, context: &str) {
    run_ok(
        cli_at(repo, state).args(["gc", "--stale-uploads-after", "0s", "--orphan-grace", "0s"]),
        None,
    );
    let temporaries = std::fs::read_dir(repo.join("tmp")).map_or(0, |d| d.count());
    assert_eq!(temporaries, 0, "{context}: temporaries left after gc");
    let stats = run_ok(cli_at(repo, state).args(["stats", "--json"]), None);
    let stats: Value = serde_json::from_slice(&stats.stdout).expect("stats --json");
    assert_eq!(
        pack_bytes_on_disk(repo),
        stats["stored_bytes"].as_u64().expect("stored_bytes"),
        "{context}: pack files the index does not account for"
    );
}

fn pack_bytes_on_disk(repo: &Path) -> u64 {
    let Ok(dirs) = std::fs::read_dir(repo.join("packs")) else {
        return 0;
    };
    dirs.flatten()
        .flat_map(|dir| {
            std::fs::read_dir(dir.path())
                .into_iter()
                .flatten()
                .flatten()
        })
        .map(|file| file.metadata().map_or(0, |m| m.len()))
        .sum()
}

/// A repository for the CLI with small chunks and packs (so a run writes many), and
/// one earlier backup in series `earlier`.
fn template(dir: &Path) -> (PathBuf, Vec<u8>) {
    let repo = dir.join("template");
    init_for_cli(&repo, small_options());
    let earlier = random_bytes(3 * MIB, 90);
    let file = dir.join("earlier.bin");
    std::fs::write(&file, &earlier).expect("write");
    run_ok(
        cli(&repo).args(["put", "--series", "earlier"]).arg(&file),
        None,
    );
    (repo, earlier)
}

/// The stream `put` ingests: part of the earlier backup, then new bytes.
fn new_stream(earlier: &[u8]) -> Vec<u8> {
    let mut data = earlier[..MIB].to_vec();
    data.extend(random_bytes(5 * MIB, 91));
    data.extend(compressible_bytes(MIB, 92));
    data
}

/// The kills of one CLI operation: `operation` (a command on a repository) is timed on a
/// copy of `template`, then, for each round, killed at a seeded point of its run on a
/// fresh copy; the repository must be sound, the rerun must succeed and leave every
/// backup of `expected` listed, and gc must reclaim the leftovers.
fn kill_rounds(
    dir: &Path,
    template: &Path,
    salt: u64,
    operation: &dyn Fn(&Path) -> Command,
    expected: &BTreeMap<&str, Vec<u8>>,
) {
    let clean = dir.join("clean");
    copy_dir(template, &clean);
    let duration = timed(&mut operation(&clean));
    let what = format!("{:?}", operation(&clean).get_args().collect::<Vec<_>>());
    let mut points = KillPoints::new(salt);
    for round in 0..rounds() {
        let repo = dir.join(format!("round-{round}"));
        copy_dir(template, &repo);
        let at = points.next(duration);
        let context = format!("{what} killed after {at:?} of {duration:?}");
        kill_after(&mut operation(&repo), at);
        let state = repo.join("state");
        assert_sound(&repo, &state, expected, &context);
        run_ok(&mut operation(&repo), None);
        // (A put killed after its commit leaves its backup: the rerun adds another.)
        let series: std::collections::BTreeSet<String> =
            listed(&repo, &state).into_values().collect();
        let wanted: std::collections::BTreeSet<String> =
            expected.keys().map(|s| s.to_string()).collect();
        assert_eq!(series, wanted, "{context}: after the rerun");
        assert_sound(&repo, &state, expected, &context);
        assert_reclaimed(&repo, &state, &context);
        assert_sound(&repo, &state, expected, &context);
    }
}

#[test]
fn put_killed_at_random_points_leaves_a_sound_repository() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (template, earlier) = template(dir.path());
    let data = new_stream(&earlier);
    let input = dir.path().join("new.bin");
    std::fs::write(&input, &data).expect("write");
    let expected = BTreeMap::from([("earlier", earlier), ("new", data)]);
    let put = |repo: &Path| {
        let mut command = cli(repo);
        command.args(["put", "--series", "new"]).arg(&input);
        command
    };
    kill_rounds(dir.path(), &template, 1, &put, &expected);
}

/// A repository where gc has packs to delete and packs to repack.
fn gc_template(dir: &Path) -> (PathBuf, BTreeMap<&'static str, Vec<u8>>) {
    let (repo, earlier) = template(dir);
    let doomed = [&earlier[..MIB], &random_bytes(6 * MIB, 93)[..]].concat();
    let file = dir.join("doomed.bin");
    std::fs::write(&file, &doomed).expect("write");
    run_ok(
        cli(&repo).args(["put", "--series", "doomed"]).arg(&file),
        None,
    );
    for (id, series) in listed(&repo, &repo.join("state")) {
        if series == "doomed" {
            run_ok(cli(&repo).args(["delete", "--purge", &id]), None);
        }
    }
    (repo, BTreeMap::from([("earlier", earlier)]))
}

#[test]
fn gc_killed_at_random_points_leaves_a_sound_repository() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (template, expected) = gc_template(dir.path());
    let gc = |repo: &Path| {
        let mut command = cli(repo);
        command.args(["gc", "--orphan-grace", "0s"]);
        command
    };
    kill_rounds(dir.path(), &template, 2, &gc, &expected);
}

#[test]
fn repair_index_killed_at_random_points_leaves_a_sound_repository() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (template, earlier) = template(dir.path());
    // More backups for repair to read back.
    let mut expected = BTreeMap::from([("earlier", earlier)]);
    for (n, series) in ["b1", "b2", "b3"].into_iter().enumerate() {
        let data = random_bytes(2 * MIB + n, 94 + n as u64);
        let file = dir.path().join(format!("{series}.bin"));
        std::fs::write(&file, &data).expect("write");
        run_ok(
            cli(&template).args(["put", "--series", series]).arg(&file),
            None,
        );
        expected.insert(series, data);
    }
    let repair = |repo: &Path| {
        let mut command = cli(repo);
        command.args(["repair", "index"]);
        command
    };
    // Whatever a kill left, the next open reconciles the index with the backend.
    kill_rounds(dir.path(), &template, 3, &repair, &expected);
}

/// `stowage serve` on a loopback port with its data in `data`; returns the child and
/// the address it listens on.
fn start_server(data: &Path) -> (Child, String) {
    let mut command = Command::new(BIN);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("STOWAGE_") {
            command.env_remove(key);
        }
    }
    let mut child = command
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .env("STOWAGE_PASSWORD", PASSPHRASE)
        .env("STOWAGE_ADMIN_KEY", ADMIN_KEY)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start stowage serve");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let address = loop {
        let line = lines
            .next()
            .expect("the server prints where it listens")
            .expect("a log line");
        if let Some(rest) = line.split("listening on http://").nth(1) {
            break rest.trim().to_string();
        }
    };
    // Keep draining the log so the server never blocks on a full pipe.
    std::thread::spawn(move || lines.map_while(Result::ok).for_each(drop));
    (child, address)
}

/// An API key in stowage's form: 16 hex digits of id, a dot, 64 of secret.
const ADMIN_KEY: &str =
    "0123456789abcdef.00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

/// Uploads `data` into `series`; the status, or the transport's error.
async fn upload(address: String, series: &str, data: Vec<u8>) -> Result<u16, reqwest::Error> {
    let response = reqwest::Client::new()
        .post(format!("http://{address}/v1/series/{series}/backups"))
        .bearer_auth(ADMIN_KEY)
        .body(data)
        .send()
        .await?;
    Ok(response.status().as_u16())
}

#[test]
fn serve_killed_during_an_http_upload_leaves_a_sound_repository() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = [random_bytes(6 * MIB, 95), compressible_bytes(2 * MIB, 96)].concat();
    let earlier = random_bytes(2 * MIB, 97);
    let expected = BTreeMap::from([("earlier", earlier.clone()), ("new", data.clone())]);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let upload_ok = |address: &str, series: &str, data: &[u8], context: &str| {
        let status = runtime
            .block_on(upload(address.to_string(), series, data.to_vec()))
            .unwrap_or_else(|e| panic!("{context}: upload: {e}"));
        assert_eq!(status, 201, "{context}");
    };
    // A killed server leaves its record of where it listened; a copy must not point
    // the CLI at whatever process has that number now.
    let copy_data_dir = |from: &Path, to: &Path| {
        copy_dir(from, to);
        let _ = std::fs::remove_file(to.join("state").join("serving.json"));
    };

    // The template: a server's data directory holding one earlier backup.
    let template = dir.path().join("template");
    let (mut server, address) = start_server(&template);
    upload_ok(&address, "earlier", &earlier, "the earlier backup");
    let _ = server.kill();
    server.wait().expect("reap");

    let clean = dir.path().join("clean");
    copy_data_dir(&template, &clean);
    let (mut server, address) = start_server(&clean);
    let started = Instant::now();
    upload_ok(&address, "new", &data, "a clean upload");
    let duration = started.elapsed();
    let _ = server.kill();
    server.wait().expect("reap");

    let mut points = KillPoints::new(4);
    for round in 0..rounds() {
        let data_dir = dir.path().join(format!("serve-{round}"));
        copy_data_dir(&template, &data_dir);
        let at = points.next(duration);
        let context = format!("serve killed after {at:?} of a {duration:?} upload");
        let (mut server, address) = start_server(&data_dir);
        let sending = runtime.spawn(upload(address, "new", data.clone()));
        kill_child(&mut server, at);
        // The client sees the connection drop (or a success that came first).
        let _ = runtime.block_on(sending).expect("the upload task");
        let (repo, state) = (data_dir.join("repo"), data_dir.join("state"));
        assert_sound(&repo, &state, &expected, &context);

        // The server comes back on the same directory and takes the upload.
        let (mut server, address) = start_server(&data_dir);
        upload_ok(&address, "new", &data, &context);
        let _ = server.kill();
        server.wait().expect("reap");
        assert_sound(&repo, &state, &expected, &context);
        assert_reclaimed(&repo, &state, &context);
    }
}
