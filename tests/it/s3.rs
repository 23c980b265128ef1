//! Repositories on S3, against a real S3-compatible server in the test process
//! (`s3_server`): the whole cycle through the library and through the `stowage` binary,
//! rebuilding a lost index from the bucket, a failure in the middle of a multipart
//! upload, an ingest killed mid-pack, stale uploads found by GC, every request of each
//! operation failed with 5xx or SlowDown, and the server's first start on S3.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use stowage::backend::{Backend, DynBackend, FaultPlan, FaultyBackend, S3Backend, S3Location};
use stowage::format::config::ChunkerParams;
use stowage::format::manifest::BackupManifest;
use stowage::repo::gc::GcOptions;
use stowage::repo::{InitOptions, Repository};

use crate::s3_server::{FailKind, S3Server, PART_SIZE};
use crate::support::*;

const BUCKET: &str = "backups";

/// Small chunks, and packs a little over one part so each goes up in two parts.
fn s3_options() -> InitOptions {
    InitOptions {
        chunker: ChunkerParams {
            min_size: 64 * 1024,
            avg_size: 256 * 1024,
            max_size: 1024 * 1024,
        },
        pack_size: (PART_SIZE + PART_SIZE / 4) as u32,
        compression_level: 1,
        kdf: cheap_kdf(),
    }
}

async fn s3_backend(server: &S3Server, url: &str) -> S3Backend {
    let location = S3Location::parse(url).expect("location");
    S3Backend::connect(location, server.settings())
        .await
        .expect("connect")
}

/// Waits (bounded) until uploads dropped by a failed ingest have been aborted by
/// their background tasks.
async fn no_open_uploads(server: &S3Server) -> bool {
    for _ in 0..2000 {
        if server.open_uploads().is_empty() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    false
}

async fn assert_consistent(repo: &Repository) {
    let report = repo.check(true, progress()).await.expect("check");
    assert!(report.is_ok(), "check --read-data: {:?}", report.problems);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_restore_check_gc_and_repair_on_s3() {
    let server = S3Server::with_bucket(BUCKET);
    let backend: DynBackend = Arc::new(s3_backend(&server, "s3://backups/host/repo").await);
    let state = tempfile::tempdir().unwrap();
    let repo = Repository::init(
        backend.clone(),
        state.path(),
        PASSPHRASE.as_bytes(),
        s3_options(),
    )
    .await
    .expect("init");
    let first = random_bytes(9 * MIB + 3, 1);
    let second = [&first[..4 * MIB], &random_bytes(5 * MIB, 2)[..]].concat();
    let a = backup_bytes(&repo, first.clone(), "a").await;
    let b = backup_bytes(&repo, second.clone(), "b").await;
    assert!(restore_bytes(&repo, &a).await == first);
    assert!(restore_bytes(&repo, &b).await == second);
    let (parts, completes, _) = server.counts();
    assert!(parts >= 4 && completes >= 2, "packs went up in parts");
    assert!(server.open_uploads().is_empty());
    assert_consistent(&repo).await;

    // Every object lives under the prefix, with the repository's layout.
    let keys = server.stored_keys(BUCKET);
    assert!(keys.iter().all(|k| k.starts_with("host/repo/")), "{keys:?}");
    assert!(keys.contains(&"host/repo/config".to_string()));
    assert!(keys.iter().any(|k| k.starts_with("host/repo/packs/")));

    repo.purge(&b.id).await.expect("purge");
    let report = repo.gc(GcOptions::default(), progress()).await.expect("gc");
    assert!(
        report.packs_deleted + report.packs_repacked > 0,
        "{report:?}"
    );
    assert_eq!(report.stale_uploads_aborted, 0);
    assert_consistent(&repo).await;
    assert!(restore_bytes(&repo, &a).await == first);
    drop(repo);

    // Lose the index, rebuild it from the bucket.
    std::fs::remove_dir_all(state.path()).unwrap();
    let repo = Repository::open(backend, state.path(), PASSPHRASE.as_bytes())
        .await
        .expect("open without index");
    let rebuilt = repo.rebuild_index().await.expect("rebuild");
    assert_eq!(rebuilt.backups, 1);
    assert!(rebuilt.skipped.is_empty(), "{:?}", rebuilt.skipped);
    assert!(restore_bytes(&repo, &repo.backup(&a.id).unwrap()).await == first);
    assert_consistent(&repo).await;
}

/// One operation of the S3 fault matrix, checking its own result when it succeeds.
#[derive(Debug, Clone, Copy)]
enum S3Step {
    Put,
    Restore,
    Gc,
    RepairIndex,
}

impl S3Step {
    /// What must hold before the step (not counted): gc gets a purged backup to collect.
    async fn prepare(self, repo: &Repository, round: u64) {
        if let S3Step::Gc = self {
            let doomed = backup_bytes(repo, random_bytes(300 * KIB, 1000 + round), "doomed").await;
            repo.purge(&doomed.id).await.expect("purge");
        }
    }

    async fn run(
        self,
        repo: &Repository,
        kept: &(BackupManifest, Vec<u8>),
        round: u64,
    ) -> Result<(), stowage::repo::RepoError> {
        match self {
            S3Step::Put => {
                let data = random_bytes(300 * KIB + 77, 2000 + round);
                let manifest = try_backup_bytes(repo, data.clone(), "p").await?;
                let (result, out) = export_to_vec(repo, &manifest, None).await;
                result?;
                assert!(out == data, "put {round}");
            }
            S3Step::Restore => {
                let (result, out) = export_to_vec(repo, &kept.0, None).await;
                assert!(kept.1.starts_with(&out), "restore {round}: wrong bytes");
                result?;
                assert!(out == kept.1, "restore {round}");
            }
            S3Step::Gc => {
                repo.gc(GcOptions::default(), progress()).await?;
            }
            S3Step::RepairIndex => unreachable!("run by run_repair"),
        }
        Ok(())
    }
}

/// `repair index` as the CLI runs it, on a handle of its own: the index set aside and
/// rebuilt from the bucket.
async fn run_repair(backend: &DynBackend, state: &Path) -> Result<(), stowage::repo::RepoError> {
    let (_repo, report, _) =
        Repository::open_rebuilding_index(backend.clone(), state, PASSPHRASE.as_bytes()).await?;
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    Ok(())
}

/// Every request of a put, a restore, a gc and a rebuild of the index, failed once with
/// `500 InternalError` or `503 SlowDown` (alternately): the client's retries carry each
/// through. Failed as many times as the client tries: each ends in success or a clean
/// `Unavailable` error, and the repository stays whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_errors_and_slow_downs_at_any_request_are_retried_or_fail_cleanly() {
    let server = S3Server::with_bucket(BUCKET);
    let backend: DynBackend = Arc::new(s3_backend(&server, "s3://backups/m").await);
    let state = tempfile::tempdir().unwrap();
    let open = || async {
        Repository::open(backend.clone(), state.path(), PASSPHRASE.as_bytes())
            .await
            .expect("open")
    };
    let repo = Repository::init(
        backend.clone(),
        state.path(),
        PASSPHRASE.as_bytes(),
        s3_options(),
    )
    .await
    .expect("init");
    let data = random_bytes(MIB + 5, 7);
    let kept = (backup_bytes(&repo, data.clone(), "kept").await, data);
    let attempts = u64::from(server.settings().max_attempts);
    let mut round = 0;
    let mut repo = Some(repo);
    for step in [
        S3Step::Put,
        S3Step::Restore,
        S3Step::Gc,
        S3Step::RepairIndex,
    ] {
        // Repair takes the repository for itself; the others share one handle.
        let run = |repo: Option<&Repository>, round: u64| {
            let (backend, state, kept) = (&backend, state.path(), &kept);
            let repo = repo.cloned();
            async move {
                match (step, repo) {
                    (S3Step::RepairIndex, _) => run_repair(backend, state).await,
                    (_, Some(repo)) => step.run(&repo, kept, round).await,
                    (_, None) => unreachable!("a shared handle is open"),
                }
            }
        };
        if let S3Step::RepairIndex = step {
            repo = None;
        }
        if let Some(repo) = &repo {
            step.prepare(repo, round).await;
        }
        let before = server.requests();
        run(repo.as_ref(), round).await.expect("clean run");
        let requests = server.requests() - before;
        assert!(requests >= 2, "{step:?}: {requests} requests");
        for n in 0..requests {
            for (count, kind) in [
                (
                    1,
                    [FailKind::ServerError, FailKind::SlowDown][n as usize % 2],
                ),
                (attempts, FailKind::ServerError),
            ] {
                round += 1;
                let context =
                    format!("{step:?}: request {n} of {requests} failed {count}x as {kind:?}");
                if let Some(repo) = &repo {
                    step.prepare(repo, round).await;
                }
                server.fail_requests(n, count, kind);
                let result = run(repo.as_ref(), round).await;
                server.fail_requests(0, 0, kind);
                match result {
                    Ok(()) => {}
                    Err(e) if count == 1 => panic!("{context}: not retried: {e}"),
                    Err(e) => assert_eq!(
                        e.kind(),
                        stowage::error::ErrorKind::Unavailable,
                        "{context}: {e}"
                    ),
                }
            }
        }
        assert!(no_open_uploads(&server).await, "{step:?}: uploads aborted");
        if let (S3Step::Put, Some(repo)) = (step, &repo) {
            // The later steps read every manifest: keep their number small.
            for manifest in repo.backups().expect("backups") {
                if manifest.id != kept.0.id {
                    repo.purge(&manifest.id).await.expect("purge");
                }
            }
        }
        let repo = match &repo {
            Some(repo) => repo,
            None => &open().await,
        };
        assert_consistent(repo).await;
        assert!(restore_bytes(repo, &kept.0).await == kept.1, "{step:?}");
    }
    let repo = open().await;
    repo.gc(GcOptions::default(), progress()).await.expect("gc");
    assert_consistent(&repo).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_mid_upload_aborts_it_and_keeps_the_repository_consistent() {
    let server = S3Server::with_bucket(BUCKET);
    let backend: DynBackend = Arc::new(s3_backend(&server, "s3://backups/r").await);
    let state = tempfile::tempdir().unwrap();
    let repo = Repository::init(backend, state.path(), PASSPHRASE.as_bytes(), s3_options())
        .await
        .expect("init");
    let kept = random_bytes(3 * MIB, 3);
    let a = backup_bytes(&repo, kept.clone(), "a").await;

    for kind in [FailKind::Denied, FailKind::Drop] {
        // The second part of the first pack, and every part after it, fails.
        server.fail_upload_parts(1, u64::MAX, kind);
        let failed = try_backup_bytes(&repo, random_bytes(8 * MIB, 4), "b").await;
        assert!(failed.is_err(), "{kind:?}: the backup must fail");
        assert!(no_open_uploads(&server).await, "{kind:?}: uploads aborted");
        assert_eq!(repo.backups().unwrap().len(), 1, "no backup recorded");
        assert_consistent(&repo).await;
        assert!(restore_bytes(&repo, &a).await == kept);
    }

    server.fail_upload_parts(0, 0, FailKind::ServerError);
    let data = random_bytes(8 * MIB, 4);
    let b = backup_bytes(&repo, data.clone(), "b").await;
    assert!(restore_bytes(&repo, &b).await == data);
    repo.gc(GcOptions::default(), progress()).await.expect("gc");
    assert_consistent(&repo).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_aborts_stale_uploads_and_reports_them() {
    let server = S3Server::with_bucket(BUCKET);
    let s3 = s3_backend(&server, "s3://backups/r").await;
    let backend: DynBackend = Arc::new(s3.clone());
    let state = tempfile::tempdir().unwrap();
    let repo = Repository::init(backend, state.path(), PASSPHRASE.as_bytes(), s3_options())
        .await
        .expect("init");
    // What a process killed mid-pack leaves: an upload that is never completed.
    let mut writer = s3.create("packs/aa/left-behind").await.expect("create");
    writer
        .write(random_bytes(PART_SIZE + 1, 5).into())
        .await
        .expect("write");
    std::mem::forget(writer);
    assert_eq!(server.open_uploads().len(), 1);

    let young = repo.gc(GcOptions::default(), progress()).await.unwrap();
    assert_eq!(young.stale_uploads_aborted, 0, "younger than a day");
    server.age_uploads(Duration::from_secs(2 * 24 * 3600));
    let dry = GcOptions {
        dry_run: true,
        ..GcOptions::default()
    };
    assert_eq!(
        repo.gc(dry, progress())
            .await
            .unwrap()
            .stale_uploads_aborted,
        0
    );
    let old = repo.gc(GcOptions::default(), progress()).await.unwrap();
    assert_eq!(old.stale_uploads_aborted, 1);
    assert!(server.open_uploads().is_empty());
    assert_eq!(
        s3.list("packs/").await.unwrap(),
        vec![],
        "never visible as an object"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingest_killed_mid_pack_leaves_only_an_upload_that_gc_aborts() {
    let server = S3Server::with_bucket(BUCKET);
    let plain: DynBackend = Arc::new(s3_backend(&server, "s3://backups/crash").await);
    let state = tempfile::tempdir().unwrap();
    let repo = Repository::init(
        plain.clone(),
        state.path(),
        PASSPHRASE.as_bytes(),
        s3_options(),
    )
    .await
    .expect("init");
    let earlier_data = random_bytes(2 * MIB, 10);
    let earlier = backup_bytes(&repo, earlier_data.clone(), "earlier").await;
    drop(repo);

    let mut left_open = 0;
    for mutations in 2..=4 {
        // The process "dies" after `mutations` backend mutations: its uploads stay open.
        let faulty = Arc::new(FaultyBackend::new(
            plain.clone(),
            FaultPlan::StopAfter { mutations },
        ));
        let backend: DynBackend = faulty.clone();
        let repo = Repository::open(backend, state.path(), PASSPHRASE.as_bytes())
            .await
            .expect("open");
        let killed = try_backup_bytes(&repo, random_bytes(8 * MIB, 11), "new").await;
        assert!(killed.is_err(), "stopped after {mutations}");
        drop(repo);
        let open = server.open_uploads().len() as u64;
        left_open += open;

        let repo = Repository::open(plain.clone(), state.path(), PASSPHRASE.as_bytes())
            .await
            .expect("reopen");
        assert_consistent(&repo).await;
        let ids: Vec<BackupId> = repo.backups().unwrap().into_iter().map(|m| m.id).collect();
        assert_eq!(ids, vec![earlier.id.clone()], "stopped after {mutations}");
        assert!(restore_bytes(&repo, &earlier).await == earlier_data);
        let options = GcOptions {
            stale_uploads_after: Duration::ZERO,
            ..GcOptions::default()
        };
        let report = repo.gc(options, progress()).await.expect("gc");
        assert_eq!(
            report.stale_uploads_aborted, open,
            "stopped after {mutations}"
        );
        assert!(server.open_uploads().is_empty());
        assert_consistent(&repo).await;
        drop(repo);
        // Only now does the dead process's state go away.
        drop(faulty);
    }
    assert!(left_open > 0, "some stop left a multipart upload open");
}

/// A `stowage` command on an S3 repository served by `server`.
fn s3_cli(server: &S3Server, url: &str, state_home: &Path) -> std::process::Command {
    let mut command = cli(Path::new(url));
    for (name, value) in server.env() {
        command.env(name, value);
    }
    command.env("XDG_STATE_HOME", state_home);
    command
}

#[test]
fn the_cli_works_on_an_s3_repository() {
    let server = S3Server::start();
    let dir = tempfile::tempdir().unwrap();
    let state_home = dir.path().join("state-home");
    let url = "s3://new-bucket/team/repo/";
    let stowage = || s3_cli(&server, url, &state_home);
    let pack_size = s3_options().pack_size.to_string();
    let init = run_ok(
        stowage().args([
            "init",
            "--chunk-min",
            "65536",
            "--chunk-avg",
            "262144",
            "--chunk-max",
            "1048576",
            "--pack-size",
            &pack_size,
        ]),
        None,
    );
    let said = stderr_text(&init);
    assert!(said.contains("created bucket new-bucket"), "{said}");
    assert!(said.contains("s3://new-bucket/team/repo"), "{said}");
    assert!(server.bucket_exists("new-bucket"));
    let state = state_home.join("stowage/s3/new-bucket+team+repo");
    assert!(
        state.join("index.redb").is_file(),
        "default state directory"
    );

    let data = random_bytes(8 * MIB + 11, 6);
    let input = dir.path().join("input.bin");
    std::fs::write(&input, &data).unwrap();
    let id = last_line(&run_ok(stowage().arg("put").arg(&input), None));
    let doomed = last_line(&run_ok(
        stowage().arg("put").arg("-"),
        Some(&random_bytes(2 * MIB, 7)),
    ));
    let listed = stdout_text(&run_ok(stowage().arg("ls"), None));
    assert!(listed.contains(&id) && listed.contains(&doomed), "{listed}");
    let got = run_ok(stowage().args(["get", &id]), None);
    assert!(got.stdout == data, "get");
    run_ok(stowage().args(["check", "--read-data"]), None);

    // A stale upload for gc to find, as a killed process would leave it.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let s3 = s3_backend(&server, url).await;
        let mut writer = s3.create("packs/bb/abandoned").await.unwrap();
        writer
            .write(random_bytes(PART_SIZE, 8).into())
            .await
            .unwrap();
        std::mem::forget(writer);
    });
    run_ok(stowage().args(["delete", "--purge", &doomed]), None);
    let gc = run_ok(
        stowage().args(["gc", "--json", "--stale-uploads-after", "0"]),
        None,
    );
    let report: Value = serde_json::from_slice(&gc.stdout).expect("gc json");
    assert_eq!(report["stale_uploads_aborted"], 1, "{report}");
    assert!(report["packs_deleted"].as_u64().unwrap() > 0, "{report}");
    assert!(server.open_uploads().is_empty());
    run_ok(stowage().args(["check", "--read-data"]), None);

    // Lose the index; `repair index` rebuilds it from the bucket.
    std::fs::remove_dir_all(&state).unwrap();
    run_ok(stowage().args(["repair", "index"]), None);
    let got = run_ok(stowage().args(["get", &id]), None);
    assert!(got.stdout == data, "get after repair");
    let listed = stdout_text(&run_ok(stowage().arg("ls"), None));
    assert!(
        listed.contains(&id) && !listed.contains(&doomed),
        "{listed}"
    );

    // An explicit state directory and a bad URL.
    let elsewhere = dir.path().join("elsewhere");
    run_ok(
        stowage()
            .args(["repair", "index", "--state-dir"])
            .arg(&elsewhere),
        None,
    );
    assert!(elsewhere.join("index.redb").is_file());
    let bad = run(cli(Path::new("s3://Bad_Bucket/x")).arg("ls"), None);
    assert!(!bad.status.success());
    assert!(
        stderr_text(&bad).contains("invalid bucket name"),
        "{}",
        stderr_text(&bad)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_creates_its_s3_repository_on_first_start() {
    let server = S3Server::start();
    let data_dir = tempfile::tempdir().unwrap();
    let config_file = data_dir.path().join("stowage.toml");
    std::fs::write(
        &config_file,
        format!(
            "repo = \"s3://srv-bucket/stowage\"\ndata_dir = \"{}\"\n\n[s3]\nendpoint = \"{}\"\nregion = \"us-east-1\"\npath_style = true\naccess_key_id = \"{}\"\nsecret_access_key = \"{}\"\n",
            data_dir.path().display(),
            server.endpoint(),
            crate::s3_server::ACCESS_KEY,
            crate::s3_server::SECRET_KEY,
        ),
    )
    .unwrap();
    let config = stowage::server::ServerConfig::from_file(&config_file).expect("config");
    assert!(!format!("{config:?}").contains(crate::s3_server::SECRET_KEY));
    let first = stowage::server::prepare(&config)
        .await
        .expect("first start");
    let stored = backup_bytes(&first.repo, random_bytes(100 * KIB, 9), "s").await;
    first.shutdown().await;
    drop(first);
    assert!(server
        .stored_keys("srv-bucket")
        .contains(&"stowage/config".to_string()));
    assert!(data_dir.path().join("state/index.redb").is_file());
    let again = stowage::server::prepare(&config)
        .await
        .expect("second start");
    assert_eq!(again.repo.backup(&stored.id).unwrap().id, stored.id);

    let mut half = config.clone();
    half.s3.secret_access_key = None;
    let error = stowage::server::prepare(&half)
        .await
        .err()
        .expect("refused");
    assert!(
        error.to_string().contains("both access_key_id"),
        "{error:#}"
    );
}

/// A server's data directory is lost; a fresh one with only the passphrase, pointed at
/// the same S3 repository, brings back its keys, users, jobs, dialect records and
/// signing secret, and its backups.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_whose_data_directory_is_lost_comes_back_from_its_s3_repository() {
    use stowage::service::backupchan::targets::{
        RecycleAction, RecycleCriteria, TargetSpec, TargetType,
    };
    use stowage::service::jobs::{JobKind, JobStatus};
    use stowage::service::keys::Role;
    use stowage::service::users::NewUser;

    let server = S3Server::with_bucket("dr-bucket");
    let configure = |data_dir: &Path| {
        let mut config = stowage::server::ServerConfig {
            data_dir: data_dir.to_path_buf(),
            ..stowage::server::ServerConfig::default()
        };
        config.repo = Some("s3://dr-bucket/stowage".into());
        config.s3.endpoint = Some(server.endpoint());
        config.s3.region = Some("us-east-1".into());
        config.s3.path_style = true;
        config.s3.access_key_id = Some(crate::s3_server::ACCESS_KEY.into());
        config.s3.secret_access_key = Some(crate::s3_server::SECRET_KEY.into());
        config
    };
    let first_dir = tempfile::tempdir().unwrap();
    let first = configure(&first_dir.path().join("data"));
    let state = stowage::server::prepare(&first).await.expect("first start");
    let (_, agent) = state.keys.create("agent", Role::Backup).unwrap();
    state
        .users
        .create(
            NewUser {
                email: "ops@example.org".into(),
                superuser: true,
                ..NewUser::default()
            },
            "a long password",
        )
        .unwrap();
    let data = random_bytes(300 * KIB, 21);
    let backup = backup_bytes(&state.repo, data.clone(), "s").await;
    let target = state
        .dialect::<stowage::service::backupchan::BackupchanService>()
        .expect("Backup-chan is on by default")
        .create_target(
            TargetType::Single,
            TargetSpec {
                name: "nightly".into(),
                recycle_criteria: RecycleCriteria::None,
                recycle_value: None,
                recycle_action: RecycleAction::Recycle,
                location: "/var/backups/nightly".into(),
                name_template: "nightly-$I".into(),
                deduplicate: false,
                alias: None,
                min_backups: 0,
                tags: vec![],
            },
        )
        .unwrap();
    let repo = state.repo.clone();
    let job = state
        .jobs
        .spawn(JobKind::Check, move |progress| async move {
            let report = repo.check(false, progress).await?;
            Ok(serde_json::to_value(report.is_ok()).unwrap())
        });
    while !state.jobs.get(&job).unwrap().status.is_finished() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let link = state
        .signer
        .query("GET", "/v1/backups/x/content", 4_000_000_000);
    let passphrase = std::fs::read(first.data_dir.join("passphrase")).unwrap();
    state.shutdown().await;
    drop(state);
    drop(first_dir);

    // A new machine: an empty data directory and the passphrase from the operator's safe.
    let second_dir = tempfile::tempdir().unwrap();
    let second = configure(&second_dir.path().join("data"));
    std::fs::create_dir_all(&second.data_dir).unwrap();
    std::fs::write(second.data_dir.join("passphrase"), &passphrase).unwrap();
    let state = stowage::server::prepare(&second)
        .await
        .expect("rebuilt start");
    assert_eq!(state.keys.verify(&agent).unwrap().role, Role::Backup);
    assert!(
        state
            .users
            .verify("ops@example.org", "a long password")
            .unwrap()
            .superuser
    );
    assert!(restore_bytes(&state.repo, &state.repo.backup(&backup.id).unwrap()).await == data);
    let targets = state
        .dialect::<stowage::service::backupchan::BackupchanService>()
        .unwrap()
        .list_targets(1);
    assert!(targets.iter().any(|t| t.id == target), "{targets:?}");
    assert_eq!(state.jobs.get(&job).unwrap().status, JobStatus::Succeeded);
    assert_eq!(
        state
            .signer
            .query("GET", "/v1/backups/x/content", 4_000_000_000),
        link,
        "links handed out before still verify"
    );
    assert!(
        !second.data_dir.join("admin.key").exists(),
        "no new admin key: the restored ones stand"
    );
    state.shutdown().await;
}
