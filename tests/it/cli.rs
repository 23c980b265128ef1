//! The command-line contract, through the real binary.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::support::*;
use crate::tree::{build_tree, sample_tree, scan, Node};

/// A temporary directory with a repository (cheap KDF) at `<dir>/repo`.
struct CliRepo {
    dir: tempfile::TempDir,
    repo: PathBuf,
}

impl CliRepo {
    fn new() -> CliRepo {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        init_for_cli(&repo, small_options());
        CliRepo { dir, repo }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, data: &[u8]) -> PathBuf {
        let path = self.path(name);
        fs::write(&path, data).unwrap();
        path
    }

    /// `stowage put PATH`; returns the backup id.
    fn put(&self, path: &Path) -> String {
        let output = run_ok(cli(&self.repo).arg("put").arg(path), None);
        last_line(&output)
    }

    fn json(&self, args: &[&str]) -> Value {
        let output = run_ok(cli(&self.repo).args(args), None);
        serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {}", stdout_text(&output)))
    }
}

fn assert_is_uuid(id: &str) {
    let parsed = uuid::Uuid::parse_str(id).unwrap_or_else(|e| panic!("{id:?}: {e}"));
    assert_eq!(parsed.hyphenated().to_string(), id);
}

fn assert_fails(output: &std::process::Output, code: i32, message: &str) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&output.stdout),
        stderr_text(output)
    );
    assert!(
        stderr_text(output).contains(message),
        "stderr does not mention {message:?}: {}",
        stderr_text(output)
    );
}

#[test]
fn init_then_put_and_get_round_trip_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let init = run_ok(
        cli(&repo).args([
            "init",
            "--chunk-min",
            "16384",
            "--chunk-avg",
            "65536",
            "--chunk-max",
            "262144",
            "--pack-size",
            "1048576",
        ]),
        None,
    );
    assert!(
        stderr_text(&init).contains("created repository"),
        "{}",
        stderr_text(&init)
    );
    assert!(repo.join("config").is_file());
    let config: Value = serde_json::from_slice(&fs::read(repo.join("config")).unwrap()).unwrap();
    assert_eq!(config["chunker"]["avg_size"], 65536);
    assert_eq!(config["pack_size"], 1048576);

    let data = random_bytes(700 * KIB, 1);
    let input = dir.path().join("input.bin");
    fs::write(&input, &data).unwrap();
    let put = run_ok(cli(&repo).arg("put").arg(&input), None);
    let id = last_line(&put);
    assert_is_uuid(&id);
    let got = run_ok(cli(&repo).args(["get", &id]), None);
    assert!(got.stdout == data, "get to stdout differs");

    let again = run(cli(&repo).arg("init"), None);
    assert_fails(&again, 1, "already exists");
}

#[test]
fn put_of_a_file_stdin_and_a_directory_prints_the_backup_id_last() {
    let r = CliRepo::new();
    let file_data = compressible_bytes(300 * KIB, 2);
    let file = r.write("notes.txt", &file_data);
    let stdin_data = random_bytes(400 * KIB, 3);
    let tree = r.path("photos");
    fs::create_dir(&tree).unwrap();
    build_tree(&tree);

    let file_id = r.put(&file);
    let stdin_out = run_ok(
        cli(&r.repo).args(["put", "--series", "piped", "--sha256", "-"]),
        Some(&stdin_data),
    );
    let stdin_id = last_line(&stdin_out);
    let tree_id = r.put(&tree);
    for id in [&file_id, &stdin_id, &tree_id] {
        assert_is_uuid(id);
    }

    let list = r.json(&["ls", "--json"]);
    let list = list.as_array().expect("ls --json is an array");
    assert_eq!(list.len(), 3);
    let find = |id: &str| list.iter().find(|b| b["id"] == id).expect("listed").clone();
    let (f, s, t) = (find(&file_id), find(&stdin_id), find(&tree_id));
    assert_eq!(
        (f["kind"].as_str(), f["source"].as_str()),
        (Some("stream"), Some("notes.txt"))
    );
    assert_eq!(
        (s["kind"].as_str(), s["source"].as_str()),
        (Some("stream"), Some("-"))
    );
    assert_eq!(s["series"], "piped");
    assert_eq!(f["series"], "default");
    assert_eq!(
        (t["kind"].as_str(), t["source"].as_str()),
        (Some("tree"), Some("photos"))
    );
    assert_eq!(s["size"], stdin_data.len() as u64);
    assert_eq!(
        s["sha256"],
        sha256_hex(&stdin_data),
        "asked for with --sha256"
    );
    assert_eq!(s["blake3"], blake3_hex(&stdin_data));
    assert!(f["sha256"].is_null(), "not asked for: {f}");

    let filtered = r.json(&["ls", "--series", "piped", "--json"]);
    assert_eq!(filtered.as_array().map(Vec::len), Some(1));

    let got = run_ok(cli(&r.repo).args(["get", &file_id]), None);
    assert!(got.stdout == file_data);
    let got = run_ok(cli(&r.repo).args(["get", &stdin_id]), None);
    assert!(got.stdout == stdin_data);
    let target = r.path("restored");
    run_ok(
        cli(&r.repo)
            .args(["restore", &tree_id, "--target"])
            .arg(&target),
        None,
    );
    assert_eq!(scan(&tree), scan(&target));
}

#[test]
fn put_json_prints_one_object_describing_the_backup() {
    let r = CliRepo::new();
    let data = random_bytes(MIB + 17, 4);
    let input = r.write("data.bin", &data);
    for round in 0..2 {
        let output = run_ok(
            cli(&r.repo)
                .args(["put", "--json", "--series", "nightly"])
                .arg(&input),
            None,
        );
        let text = stdout_text(&output);
        assert_eq!(text.trim_end().lines().count(), 1, "one line: {text}");
        let json: Value = serde_json::from_str(&text).expect("JSON");
        assert_is_uuid(json["id"].as_str().expect("id"));
        assert_eq!(json["series"], "nightly");
        assert_eq!(json["kind"], "stream");
        assert_eq!(json["size"], data.len() as u64);
        assert_eq!(json["blake3"], blake3_hex(&data));
        let chunks = json["chunks"].as_u64().expect("chunks");
        let new_chunks = json["new_chunks"].as_u64().expect("new_chunks");
        let stored = json["stored_bytes"].as_u64().expect("stored_bytes");
        assert!(chunks >= 5, "{json}");
        if round == 0 {
            let new_lists = json["new_metadata_blobs"]
                .as_u64()
                .expect("new_metadata_blobs");
            assert!(
                new_chunks == chunks && new_lists >= 1 && stored >= data.len() as u64,
                "{json}"
            );
        } else {
            assert_eq!(
                (new_chunks, stored),
                (0, 0),
                "second put deduplicates: {json}"
            );
        }
    }
    let tree = r.path("tree");
    fs::create_dir(&tree).unwrap();
    build_tree(&tree);
    let json: Value = serde_json::from_slice(
        &run_ok(cli(&r.repo).args(["put", "--json"]).arg(&tree), None).stdout,
    )
    .unwrap();
    assert_eq!(json["kind"], "tree");
    assert_eq!(json["catalog_entries"], sample_tree().len() as u64);
}

#[test]
fn get_writes_whole_backups_and_inclusive_ranges() {
    let r = CliRepo::new();
    let data = random_bytes(600 * KIB + 3, 5);
    let id = r.put(&r.write("data.bin", &data));
    let len = data.len();

    let out = r.path("out.bin");
    run_ok(cli(&r.repo).args(["get", &id, "-o"]).arg(&out), None);
    assert!(fs::read(&out).unwrap() == data, "-o FILE");
    let out2 = r.path("out2.bin");
    run_ok(cli(&r.repo).args(["get", &id, "--output"]).arg(&out2), None);
    assert!(fs::read(&out2).unwrap() == data, "--output FILE");

    let ranges: Vec<(String, std::ops::Range<usize>)> = vec![
        ("10-19".into(), 10..20),
        ("0-0".into(), 0..1),
        ("5-".into(), 5..len),
        (format!("{}-{}", len - 1, len - 1), len - 1..len),
        (format!("{}-", len), len..len),
        (format!("100000-{}", 400_000), 100_000..400_001),
    ];
    for (text, range) in ranges {
        let got = run_ok(cli(&r.repo).args(["get", &id, "--range", &text]), None);
        assert!(
            got.stdout == data[range.clone()],
            "--range {text}: expected {range:?}"
        );
    }
    for bad in [
        "20-10",
        &format!("0-{len}"),
        "abc",
        "5",
        "-5",
        &format!("{}-", len + 1),
    ] {
        let output = run(
            cli(&r.repo).args(["get", &id, &format!("--range={bad}")]),
            None,
        );
        assert_eq!(output.status.code(), Some(1), "--range {bad}");
        assert!(output.stdout.is_empty(), "--range {bad} wrote to stdout");
        assert!(
            stderr_text(&output).contains("range"),
            "{}",
            stderr_text(&output)
        );
    }
    let output = run(
        cli(&r.repo).args(["get", "00000000-0000-0000-0000-000000000000"]),
        None,
    );
    assert_fails(&output, 1, "not found");
}

#[test]
fn restore_recreates_a_tree_and_refuses_a_non_empty_target() {
    let r = CliRepo::new();
    let tree = r.path("tree");
    fs::create_dir(&tree).unwrap();
    build_tree(&tree);
    let id = r.put(&tree);
    let target = r.path("target");
    let output = run_ok(
        cli(&r.repo).args(["restore", &id, "--target"]).arg(&target),
        None,
    );
    assert!(
        stderr_text(&output).contains("restored"),
        "{}",
        stderr_text(&output)
    );
    assert_eq!(scan(&tree), scan(&target));

    let output = run(
        cli(&r.repo).args(["restore", &id, "--target"]).arg(&target),
        None,
    );
    assert_fails(&output, 1, "not empty");
    assert_eq!(scan(&tree), scan(&target), "the target is untouched");

    let stream = r.put(&r.write("s.bin", b"just bytes"));
    let output = run(
        cli(&r.repo)
            .args(["restore", &stream, "--target"])
            .arg(r.path("t2")),
        None,
    );
    assert_fails(&output, 1, "not a tree");
}

#[test]
fn ls_catalog_stats_and_check_print_json() {
    let r = CliRepo::new();
    let tree = r.path("tree");
    fs::create_dir(&tree).unwrap();
    build_tree(&tree);
    let tree_id = r.put(&tree);
    let stream_id = r.put(&r.write("plain.bin", &random_bytes(100 * KIB, 6)));

    let ls = r.json(&["ls", "--json"]);
    assert_eq!(ls.as_array().map(Vec::len), Some(2));

    let catalog = r.json(&["catalog", &tree_id, "--json"]);
    let entries = catalog.as_array().expect("catalog --json is an array");
    let expected = sample_tree();
    assert_eq!(entries.len(), expected.len());
    for (entry, (path, node)) in entries.iter().zip(&expected) {
        assert_eq!(entry["path"], *path);
        match node {
            Node::File { data, mode } => {
                assert_eq!(entry["kind"], "file", "{path}");
                assert_eq!(entry["size"], data.len() as u64, "{path}");
                assert_eq!(entry["mode"], *mode, "{path}");
            }
            Node::Dir { mode } => {
                assert_eq!(entry["kind"], "dir", "{path}");
                assert_eq!(entry["mode"], *mode, "{path}");
            }
            Node::Link { target } => {
                assert_eq!(entry["kind"], "symlink", "{path}");
                assert_eq!(entry["link"], *target, "{path}");
            }
        }
    }
    let text = stdout_text(&run_ok(cli(&r.repo).args(["catalog", &tree_id]), None));
    assert_eq!(text.lines().count(), expected.len());
    assert!(
        text.contains("dir1/nested/rel-link -> ../../a.txt"),
        "{text}"
    );
    let output = run(cli(&r.repo).args(["catalog", &stream_id]), None);
    assert_fails(&output, 1, "no catalog");

    let stats = r.json(&["stats", "--json"]);
    assert_eq!(stats["backups"], 2);
    for field in [
        "logical_bytes",
        "unique_bytes",
        "stored_bytes",
        "chunks",
        "packs",
    ] {
        assert!(
            stats[field].as_u64().is_some_and(|v| v > 0),
            "{field}: {stats}"
        );
    }
    assert!(stats["dedup_ratio"].as_f64().is_some(), "{stats}");
    assert!(stats["compression_ratio"].as_f64().is_some(), "{stats}");

    for args in [
        &["check", "--json"][..],
        &["check", "--read-data", "--json"][..],
    ] {
        let check = r.json(args);
        assert_eq!(
            check["problems"],
            Value::Array(Vec::new()),
            "{args:?}: {check}"
        );
        assert_eq!(check["backups"], 2);
    }
    let check = r.json(&["check", "--read-data", "--json"]);
    assert!(check["blobs_read"].as_u64().unwrap() > 0);

    let text = stdout_text(&run_ok(cli(&r.repo).arg("ls"), None));
    assert!(
        text.contains(&tree_id) && text.contains(&stream_id),
        "{text}"
    );
    let text = stdout_text(&run_ok(cli(&r.repo).arg("stats"), None));
    assert!(
        text.contains("backups:") && text.contains("dedup ratio"),
        "{text}"
    );
    let text = stdout_text(&run_ok(cli(&r.repo).args(["check", "--read-data"]), None));
    assert!(text.contains("no problems"), "{text}");
}

#[test]
fn check_exits_non_zero_and_names_a_corrupted_pack() {
    let r = CliRepo::new();
    let data = random_bytes(2 * MIB, 7);
    let id = r.put(&r.write("data.bin", &data));
    let packs: Vec<PathBuf> = walk_files(&r.repo.join("packs"));
    let pack = &packs[0];
    let pack_hex = pack.file_name().unwrap().to_str().unwrap().to_string();
    // Inside the first blob, which starts right after the 16-byte header.
    flip_byte(pack, 100);

    let output = run(cli(&r.repo).args(["check", "--read-data"]), None);
    assert_eq!(output.status.code(), Some(3), "{}", stderr_text(&output));
    let text = stdout_text(&output);
    assert!(
        text.contains(&pack_hex),
        "check output does not name {pack_hex}: {text}"
    );
    assert!(
        text.contains(&id),
        "check output does not name backup {id}: {text}"
    );

    let output = run(cli(&r.repo).args(["check", "--read-data", "--json"]), None);
    assert_eq!(output.status.code(), Some(3));
    let json: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let problems = json["problems"].as_array().unwrap();
    assert!(
        problems.iter().any(|p| p["pack"] == pack_hex.as_str()),
        "{json}"
    );

    let out = r.path("out.bin");
    let output = run(cli(&r.repo).args(["get", &id, "-o"]).arg(&out), None);
    assert_fails(&output, 1, "corrupt");
    assert!(!out.exists(), "a failed get leaves no output file");
}

fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk_files(&path));
        } else {
            files.push(path);
        }
    }
    files.sort();
    files
}

#[test]
fn passphrases_come_from_a_file_or_the_environment() {
    let r = CliRepo::new();
    let id = r.put(&r.write("a.bin", b"some bytes"));

    let good = r.write("pass.txt", format!("{PASSPHRASE}\n").as_bytes());
    let output = run_ok(
        cli(&r.repo)
            .env_remove("STOWAGE_PASSWORD")
            .arg("ls")
            .arg("--password-file")
            .arg(&good),
        None,
    );
    assert!(stdout_text(&output).contains(&id));
    let output = run_ok(
        cli(&r.repo)
            .env_remove("STOWAGE_PASSWORD")
            .env("STOWAGE_PASSWORD_FILE", &good)
            .arg("ls"),
        None,
    );
    assert!(stdout_text(&output).contains(&id));

    let wrong = r.write("wrong.txt", b"not the passphrase\n");
    let output = run(
        cli(&r.repo)
            .env_remove("STOWAGE_PASSWORD")
            .args(["ls", "--password-file"])
            .arg(&wrong),
        None,
    );
    assert_fails(&output, 1, "wrong passphrase");

    let output = run(cli(&r.repo).env_remove("STOWAGE_PASSWORD").arg("ls"), None);
    assert_fails(&output, 1, "STOWAGE_PASSWORD");
    assert!(output.stdout.is_empty());

    let output = run(
        cli(&r.repo).env("STOWAGE_PASSWORD", "wrong").arg("ls"),
        None,
    );
    assert_fails(&output, 1, "wrong passphrase");
    let output = run(
        cli(&r.repo)
            .env("STOWAGE_PASSWORD", "wrong")
            .args(["get", &id]),
        None,
    );
    assert_fails(&output, 1, "wrong passphrase");
    assert!(output.stdout.is_empty());

    let output = run(cli(&r.repo).env("STOWAGE_PASSWORD", "").arg("ls"), None);
    assert_fails(&output, 1, "empty");
}

#[test]
fn a_directory_that_is_not_a_repository_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let output = run(cli(dir.path()).arg("ls"), None);
    assert_fails(&output, 1, "no repository");
    assert!(stderr_text(&output).contains("stowage init"));
}

#[test]
fn stderr_has_no_progress_bar_escape_codes_when_not_a_terminal() {
    let r = CliRepo::new();
    let data = random_bytes(3 * MIB, 8);
    let input = r.write("big.bin", &data);
    let tree = r.path("tree");
    fs::create_dir(&tree).unwrap();
    build_tree(&tree);
    let put = run_ok(cli(&r.repo).arg("put").arg(&input), None);
    let id = last_line(&put);
    let tree_id = last_line(&run_ok(cli(&r.repo).arg("put").arg(&tree), None));
    let outputs = vec![
        put,
        run_ok(cli(&r.repo).args(["put", "-"]), Some(&data)),
        run_ok(
            cli(&r.repo).args(["get", &id, "-o"]).arg(r.path("out")),
            None,
        ),
        run_ok(cli(&r.repo).args(["get", &id]), None),
        run_ok(
            cli(&r.repo)
                .args(["restore", &tree_id, "--target"])
                .arg(r.path("t")),
            None,
        ),
        run_ok(cli(&r.repo).args(["check", "--read-data"]), None),
    ];
    for output in outputs {
        let stderr = stderr_text(&output);
        assert!(
            !stderr.contains('\x1b'),
            "escape code in stderr: {stderr:?}"
        );
        assert!(
            !stderr.contains('\r'),
            "carriage return in stderr: {stderr:?}"
        );
    }
}

#[test]
fn put_of_a_missing_path_fails_and_records_nothing() {
    let r = CliRepo::new();
    let output = run(cli(&r.repo).arg("put").arg(r.path("does-not-exist")), None);
    assert_fails(&output, 1, "does-not-exist");
    assert!(output.stdout.is_empty());
    assert_eq!(r.json(&["ls", "--json"]), Value::Array(Vec::new()));
}

/// `stowage schedule` on a data directory no server holds: create (a bad crontab is
/// refused naming its field), list with the next run, calendar, disable, delete.
#[test]
fn schedule_commands_manage_schedules_in_the_state_store() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let stowage = |args: &[&str]| {
        let mut command = cli(&dir.path().join("repo"));
        command
            .arg("schedule")
            .args(args)
            .arg("--data-dir")
            .arg(&data);
        command
    };
    run_ok(&mut stowage(&["create", "weekly", "0 5 * * MON *"]), None);
    let refused = run(&mut stowage(&["create", "bad", "0 25 * * *"]), None);
    assert!(!refused.status.success());
    let text = String::from_utf8_lossy(&refused.stderr);
    assert!(text.contains("hour"), "{text}");
    let listed = run_ok(&mut stowage(&["list", "--json"]), None);
    let schedules: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(schedules[0]["name"], "weekly", "{schedules}");
    assert!(schedules[0]["next_run"].is_string(), "{schedules}");
    let calendar = run_ok(
        &mut stowage(&[
            "calendar",
            "weekly",
            "--from",
            "2026-11-01T00:00:00Z",
            "--to",
            "2026-11-30T23:59:00Z",
        ]),
        None,
    );
    let days: Vec<String> = String::from_utf8_lossy(&calendar.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(
        days,
        [
            "2026-11-02T05:00:00Z",
            "2026-11-09T05:00:00Z",
            "2026-11-16T05:00:00Z",
            "2026-11-23T05:00:00Z",
            "2026-11-30T05:00:00Z"
        ]
    );
    run_ok(&mut stowage(&["set", "weekly", "--disable"]), None);
    let listed = run_ok(&mut stowage(&["list", "--json"]), None);
    let schedules: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(schedules[0]["enabled"], false, "{schedules}");
    assert_eq!(schedules[0]["next_run"], serde_json::Value::Null);
    run_ok(&mut stowage(&["delete", "weekly"]), None);
    let listed = run_ok(&mut stowage(&["list", "--json"]), None);
    assert_eq!(String::from_utf8_lossy(&listed.stdout).trim(), "[]");
}

/// `stowage policy` on a data directory no server holds: create (folders, or a program
/// after `--`), list, change, delete; `run` says it needs the server.
#[test]
fn policy_commands_manage_policies_in_the_state_store() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let stowage = |args: &[&str]| {
        let mut command = cli(&dir.path().join("repo"));
        let (verb, rest) = args.split_first().unwrap();
        command
            .arg("policy")
            .arg(verb)
            .arg("--data-dir")
            .arg(&data)
            .args(rest);
        command
    };
    run_ok(
        &mut stowage(&[
            "create",
            "www",
            "--series",
            "www",
            "--folder",
            "/srv/www",
            "--exclude",
            "*.tmp",
            "--keep-daily",
            "7",
        ]),
        None,
    );
    run_ok(
        &mut stowage(&[
            "create",
            "db",
            "--series",
            "db",
            "--",
            "pg_dumpall",
            "-U",
            "postgres",
        ]),
        None,
    );
    // A client host's folders, through its agent: the server's roots do not apply.
    run_ok(
        &mut stowage(&[
            "create", "box", "--series", "box", "--host", "box-1", "--folder", "/",
        ]),
        None,
    );
    let refused = run(
        &mut stowage(&["create", "bad", "--series", "bad", "--folder", "srv/www"]),
        None,
    );
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("absolute"));
    let refused = run(
        &mut stowage(&["create", "bad", "--series", "bad", "--host", "box-1"]),
        None,
    );
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--host needs --folder"));
    let listed = run_ok(&mut stowage(&["list", "--json"]), None);
    let policies: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(
        policies[0]["source"],
        serde_json::json!({"kind": "agent", "host": "box-1", "paths": ["/"], "exclude": []}),
        "{policies}"
    );
    run_ok(&mut stowage(&["delete", "box"]), None);
    let listed = run_ok(&mut stowage(&["list", "--json"]), None);
    let policies: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(policies[0]["name"], "db", "{policies}");
    assert_eq!(
        policies[0]["source"],
        serde_json::json!({"kind": "command", "argv": ["pg_dumpall", "-U", "postgres"]})
    );
    assert_eq!(
        policies[1]["source"]["exclude"],
        serde_json::json!(["*.tmp"])
    );
    assert_eq!(policies[1]["retention"]["keep_daily"], 7, "{policies}");
    run_ok(
        &mut stowage(&["set", "www", "--disable", "--no-retention"]),
        None,
    );
    let listed = run_ok(&mut stowage(&["list", "--json"]), None);
    let policies: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(policies[1]["enabled"], false, "{policies}");
    assert_eq!(
        policies[1]["retention"],
        serde_json::Value::Null,
        "{policies}"
    );
    let run_alone = run(&mut stowage(&["run", "www"]), None);
    assert!(!run_alone.status.success());
    assert!(
        String::from_utf8_lossy(&run_alone.stderr).contains("stowage serve"),
        "{}",
        String::from_utf8_lossy(&run_alone.stderr)
    );
    run_ok(&mut stowage(&["delete", "www"]), None);
    run_ok(&mut stowage(&["delete", "db"]), None);
    let listed = run_ok(&mut stowage(&["list", "--json"]), None);
    assert_eq!(String::from_utf8_lossy(&listed.stdout).trim(), "[]");
}
