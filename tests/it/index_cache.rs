//! The index is a cache of the backend, never trusted over it: a lost, emptied, fresh or
//! stale index is reconciled on open, so the repository never looks empty and `gc` never
//! deletes what a stored manifest references; `gc` stops before deleting anything when
//! the index does not place every live chunk in a stored pack; its dry run lists exactly
//! what it deletes; `check` reads every manifest stored in the backend; a damaged index
//! file gives a clear error (never a panic) and `repair index` rebuilds it.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use stowage::backend::{DynBackend, S3Backend, S3Location};
use stowage::format::manifest::BackupManifest;
use stowage::format::series::RetentionPolicy;
use stowage::repo::gc::{GcOptions, GcReport};
use stowage::repo::{RepoError, Repository};

use crate::s3_server::S3Server;
use crate::support::*;

/// What a repository held before its index was lost.
struct Held {
    backups: Vec<(BackupManifest, Vec<u8>)>,
    recycled: BackupId,
    packs: BTreeSet<String>,
}

fn no_grace() -> GcOptions {
    GcOptions {
        orphan_grace: Duration::ZERO,
        ..GcOptions::default()
    }
}

async fn gc(repo: &Repository, options: GcOptions) -> GcReport {
    repo.gc(options, progress()).await.expect("gc")
}

async fn pack_keys(backend: &DynBackend) -> BTreeSet<String> {
    backend
        .list("packs/")
        .await
        .expect("list packs")
        .into_iter()
        .map(|o| o.key)
        .collect()
}

/// Three backups in two series (one recycled) and a series record.
async fn fill(repo: &Repository) -> Held {
    let mut backups = Vec::new();
    for (n, data) in [
        random_bytes(3 * MIB, 1301),
        compressible_bytes(2 * MIB, 1302),
        random_bytes(100 * KIB, 1303),
    ]
    .into_iter()
    .enumerate()
    {
        let manifest = backup_bytes(repo, data.clone(), &format!("s{}", n % 2)).await;
        backups.push((manifest, data));
    }
    let recycled = backups[1].0.id.clone();
    repo.recycle(&recycled).await.expect("recycle");
    let policy = RetentionPolicy {
        keep_last: Some(2),
        ..RetentionPolicy::default()
    };
    repo.put_series("s0", policy).await.expect("series");
    Held {
        backups,
        recycled,
        packs: pack_keys(repo.backend()).await,
    }
}

/// Every backup is listed as it was, restores exactly, keeps its recycle state.
async fn assert_intact(repo: &Repository, held: &Held) {
    let ids: BTreeSet<BackupId> = repo.backups().unwrap().into_iter().map(|m| m.id).collect();
    let expected: BTreeSet<BackupId> = held.backups.iter().map(|(m, _)| m.id.clone()).collect();
    assert_eq!(ids, expected, "every backup is listed");
    for (manifest, data) in &held.backups {
        assert_eq!(&repo.backup(&manifest.id).unwrap(), manifest);
        assert!(
            restore_bytes(repo, manifest).await == *data,
            "{}",
            manifest.id
        );
    }
    assert!(repo.recycled_at(&held.recycled).unwrap().is_some());
    assert_eq!(
        repo.series("s0").unwrap().unwrap().policy.keep_last,
        Some(2)
    );
    let report = repo.check(true, progress()).await.expect("check");
    assert!(report.is_ok(), "{:?}", report.problems);
}

/// The ways an index goes missing, as an operator meets them.
#[derive(Debug, Clone, Copy)]
enum Loss {
    Deleted,
    Emptied,
    FreshStateDir,
}

const LOSSES: [Loss; 3] = [Loss::Deleted, Loss::Emptied, Loss::FreshStateDir];

/// Applies `loss` to the index in `state`; returns the state directory to open with.
fn lose(loss: Loss, state: &Path, fresh: &Path) -> std::path::PathBuf {
    let index = state.join(stowage::repo::INDEX_FILE);
    match loss {
        Loss::Deleted => fs::remove_file(&index).expect("delete index"),
        Loss::Emptied => fs::File::create(&index)
            .and_then(|f| f.set_len(0))
            .expect("truncate index"),
        Loss::FreshStateDir => return fresh.to_path_buf(),
    }
    state.to_path_buf()
}

/// After `loss`, opening lists every backup, and gc (dry and real) deletes nothing.
async fn lost_index_case(backend: DynBackend, state: &Path, loss: Loss) {
    let repo = Repository::init(
        backend.clone(),
        state,
        PASSPHRASE.as_bytes(),
        small_options(),
    )
    .await
    .expect("init");
    let held = fill(&repo).await;
    drop(repo);
    let fresh = tempfile::tempdir().unwrap();
    let state = lose(loss, state, fresh.path());

    let repo = Repository::open(backend.clone(), &state, PASSPHRASE.as_bytes())
        .await
        .expect("open");
    let reconciled = repo.reconciled_on_open().expect("the index was reconciled");
    assert_eq!(reconciled.backups, 3, "{loss:?}: {reconciled:?}");
    assert!(reconciled.skipped.is_empty(), "{reconciled:?}");
    assert_intact(&repo, &held).await;

    let dry = gc(
        &repo,
        GcOptions {
            dry_run: true,
            ..no_grace()
        },
    )
    .await;
    assert!(dry.deleted_packs.is_empty(), "{loss:?}: {dry:?}");
    assert_eq!(dry.backups_marked, 3);
    let real = gc(&repo, no_grace()).await;
    assert!(real.deleted_packs.is_empty(), "{loss:?}: {real:?}");
    assert_eq!(pack_keys(&backend).await, held.packs, "{loss:?}");
    assert_intact(&repo, &held).await;
    drop(repo);
    // Reconciled once: the next open trusts the index.
    let repo = Repository::open(backend, &state, PASSPHRASE.as_bytes())
        .await
        .expect("open again");
    assert!(repo.reconciled_on_open().is_none(), "{loss:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue13_a_lost_index_is_rebuilt_on_open_and_gc_deletes_nothing_local() {
    for loss in LOSSES {
        let local = LocalRepo::new();
        let backend = local.backend();
        backend.create_root().await.unwrap();
        lost_index_case(backend, &local.state(), loss).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue13_a_lost_index_is_rebuilt_on_open_and_gc_deletes_nothing_s3() {
    let server = S3Server::with_bucket("lost");
    for (n, loss) in LOSSES.into_iter().enumerate() {
        let location = S3Location::parse(&format!("s3://lost/r{n}")).expect("location");
        let s3 = S3Backend::connect(location, server.settings())
            .await
            .expect("connect");
        let state = tempfile::tempdir().unwrap();
        lost_index_case(Arc::new(s3), state.path(), loss).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue13_an_old_copy_of_the_index_is_reconciled_after_gc_moved_chunks() {
    let local = LocalRepo::new();
    let repo = local.init(small_options()).await;
    let kept = random_bytes(3 * MIB, 1310);
    let a = backup_bytes(&repo, kept.clone(), "a").await;
    // Interleaved with `a` in the same packs, so purging it leaves them sparse.
    let b = backup_bytes(&repo, random_bytes(3 * MIB, 1311), "b").await;
    let c = backup_bytes(&repo, random_bytes(3 * MIB, 1312), "c").await;
    drop(repo);
    let old_index = fs::read(local.index_file()).unwrap();

    let repo = local.open().await;
    repo.purge(&b.id).await.unwrap();
    repo.purge(&c.id).await.unwrap();
    let report = gc(&repo, no_grace()).await;
    assert!(!report.deleted_packs.is_empty(), "{report:?}");
    drop(repo);

    // An operator restores the state directory from a file-level backup.
    fs::write(local.index_file(), &old_index).unwrap();
    let repo = local.open().await;
    let reconciled = repo.reconciled_on_open().expect("reconciled");
    assert_eq!(reconciled.backups_removed, 2, "{reconciled:?}");
    assert!(reconciled.packs_removed > 0, "{reconciled:?}");
    let ids: Vec<BackupId> = repo.backups().unwrap().into_iter().map(|m| m.id).collect();
    assert_eq!(ids, vec![a.id.clone()]);
    assert!(restore_bytes(&repo, &a).await == kept);
    // Deduplication against the reconciled index references only stored chunks.
    let again = backup_bytes(&repo, kept.clone(), "a").await;
    assert_eq!(again.new_chunks, 0);
    assert!(restore_bytes(&repo, &again).await == kept);
    let check = repo.check(true, progress()).await.unwrap();
    assert!(check.is_ok(), "{:?}", check.problems);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue13_gc_stops_before_deleting_when_the_index_lacks_a_live_chunk() {
    let local = LocalRepo::new();
    let repo = local.init(small_options()).await;
    let data = random_bytes(2 * MIB, 1320);
    let a = backup_bytes(&repo, data.clone(), "a").await;
    let purged = backup_bytes(&repo, random_bytes(MIB, 1321), "p").await;
    repo.purge(&purged.id).await.unwrap();
    let packs = pack_keys(repo.backend()).await;
    // An index that lost entries without its generation telling (a bug, a bad disk).
    let mut lost = Vec::new();
    repo.index().for_each_chunk(|id, _| lost.push(id)).unwrap();
    repo.index().remove_chunks(&lost[..lost.len() / 2]).unwrap();

    let error = repo.gc(no_grace(), progress()).await.unwrap_err();
    assert!(matches!(error, RepoError::IndexMismatch { .. }), "{error}");
    assert!(error.to_string().contains("repair index"), "{error}");
    assert_eq!(pack_keys(repo.backend()).await, packs, "nothing deleted");

    repo.rebuild_index().await.unwrap();
    assert!(restore_bytes(&repo, &a).await == data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue13_gc_keeps_young_orphans_and_its_dry_run_lists_exactly_what_it_deletes() {
    let local = LocalRepo::new();
    let repo = local.init(small_options()).await;
    let data = random_bytes(2 * MIB, 1330);
    let a = backup_bytes(&repo, data.clone(), "a").await;
    let purged = backup_bytes(&repo, random_bytes(2 * MIB, 1331), "p").await;
    repo.purge(&purged.id).await.unwrap();
    // A pack no index knows: what an ingest elsewhere is writing, or a crash left.
    let orphan_id = "ab".repeat(32);
    let orphan = local.root().join(format!("packs/ab/{orphan_id}"));
    fs::create_dir_all(orphan.parent().unwrap()).unwrap();
    fs::write(&orphan, random_bytes(5000, 1332)).unwrap();

    let young = gc(
        &repo,
        GcOptions {
            dry_run: true,
            ..GcOptions::default()
        },
    )
    .await;
    assert_eq!(young.orphan_packs_kept, 1, "{young:?}");
    assert!(!young.deleted_packs.iter().any(|p| p.to_hex() == orphan_id));

    let two_days_ago = SystemTime::now() - Duration::from_secs(2 * 24 * 3600);
    filetime::set_file_mtime(&orphan, filetime::FileTime::from_system_time(two_days_ago)).unwrap();
    let dry = gc(
        &repo,
        GcOptions {
            dry_run: true,
            ..GcOptions::default()
        },
    )
    .await;
    assert!(dry.deleted_packs.iter().any(|p| p.to_hex() == orphan_id));
    assert!(dry.deleted_packs.len() > 1, "{dry:?}");
    let before = pack_keys(repo.backend()).await;
    let real = gc(&repo, GcOptions::default()).await;
    assert_eq!(real.deleted_packs, dry.deleted_packs);
    let after = pack_keys(repo.backend()).await;
    let gone: Vec<String> = before.difference(&after).cloned().collect();
    let listed: Vec<String> = dry
        .deleted_packs
        .iter()
        .map(stowage::repo::pack_key)
        .collect();
    assert_eq!(gone, listed, "the dry run listed exactly what was deleted");
    assert!(restore_bytes(&repo, &a).await == data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue13_check_reads_the_stored_manifests() {
    let local = LocalRepo::new();
    let repo = local.init(small_options()).await;
    let a = backup_bytes(&repo, random_bytes(MIB, 1340), "a").await;
    let b = backup_bytes(&repo, random_bytes(MIB, 1341), "b").await;
    let clean = repo.check(false, progress()).await.unwrap();
    assert!(clean.is_ok(), "{:?}", clean.problems);
    assert_eq!(clean.manifests_read, 2);

    let stored = local.root().join(stowage::repo::manifest_key(&b.id));
    flip_byte(&stored, 40);
    for read_data in [false, true] {
        let report = repo.check(read_data, progress()).await.unwrap();
        assert!(
            report
                .problems
                .iter()
                .any(|p| p.backup.as_deref() == Some(b.id.as_str())
                    && p.message.contains("cannot be read")),
            "read_data {read_data}: {:?}",
            report.problems
        );
        assert!(report
            .problems
            .iter()
            .all(|p| p.backup.as_deref() != Some(a.id.as_str())));
    }
    // gc will not guess what the damaged manifest referenced.
    let packs = pack_keys(repo.backend()).await;
    let error = repo.gc(no_grace(), progress()).await.unwrap_err();
    assert!(matches!(error, RepoError::GcStopped { .. }), "{error}");
    assert!(error.to_string().contains(b.id.as_str()), "{error}");
    assert_eq!(pack_keys(repo.backend()).await, packs);
}

#[test]
fn issue13_repair_index_names_every_backup_it_leaves_out() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    init_for_cli(&repo, small_options());
    let input = dir.path().join("input.bin");
    fs::write(&input, random_bytes(600_000, 1350)).unwrap();
    let good = last_line(&run_ok(
        cli(&repo).args(["put", "--series", "s"]).arg(&input),
        None,
    ));
    let bad = last_line(&run_ok(
        cli(&repo).args(["put", "--series", "s"]).arg(&input),
        None,
    ));
    flip_byte(&repo.join(stowage::repo::manifest_key(&bid(&bad))), 30);

    let repair = run(cli(&repo).args(["repair", "index"]), None);
    let stderr = stderr_text(&repair);
    assert_eq!(repair.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains(&bad), "{stderr}");
    assert!(stderr.contains("1 backups"), "{stderr}");
    let check = run(cli(&repo).arg("check"), None);
    assert_eq!(check.status.code(), Some(3));
    assert!(
        stdout_text(&check).contains(&bad),
        "{}",
        stdout_text(&check)
    );
    let listed = stdout_text(&run_ok(cli(&repo).arg("ls"), None));
    assert!(listed.contains(&good) && !listed.contains(&bad), "{listed}");
    // gc will not run while a stored manifest is unreadable...
    let gc = run(cli(&repo).arg("gc"), None);
    assert!(!gc.status.success());
    assert!(stderr_text(&gc).contains(&bad), "{}", stderr_text(&gc));
    // ...until the operator purges the lost backup.
    run_ok(cli(&repo).args(["delete", "--purge", &bad]), None);
    run_ok(cli(&repo).arg("gc"), None);
    run_ok(cli(&repo).args(["check", "--read-data"]), None);
    let out = run(cli(&repo).args(["delete", "--purge", "not-a-backup"]), None);
    assert!(!out.status.success());
}

/// Ways a damaged index file looks.
fn damage_index(index: &Path, how: &str, seed: u64) {
    let bytes = fs::read(index).unwrap();
    match how {
        "truncated" => fs::write(index, &bytes[..bytes.len() / 2]).unwrap(),
        "pages overwritten" => {
            let mut bytes = bytes;
            let mut rng = XorShift::new(seed);
            let pages = bytes.len() / 4096;
            for _ in 0..4 {
                let page = 1 + rng.below(pages as u64 - 1) as usize;
                let garbage = random_bytes(4096, rng.next_u64());
                let end = (page * 4096 + 4096).min(bytes.len());
                bytes[page * 4096..end].copy_from_slice(&garbage[..end - page * 4096]);
            }
            fs::write(index, &bytes).unwrap();
        }
        _ => fs::write(index, random_bytes(bytes.len(), seed)).unwrap(),
    }
}

#[test]
fn issue13_a_damaged_index_gives_a_clear_error_and_repair_rebuilds_it() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    init_for_cli(&repo, small_options());
    let data = random_bytes(3 * MIB, 1360);
    let input = dir.path().join("input.bin");
    fs::write(&input, &data).unwrap();
    let mut ids = Vec::new();
    for series in ["a", "b", "c"] {
        let put = run_ok(
            cli(&repo).args(["put", "--series", series]).arg(&input),
            None,
        );
        ids.push(last_line(&put));
    }
    let index = repo.join("state").join(stowage::repo::INDEX_FILE);
    let pristine = fs::read(&index).unwrap();
    let cases = [
        ("truncated", 0),
        ("pages overwritten", 1),
        ("pages overwritten", 2),
        ("pages overwritten", 3),
        ("garbage", 4),
    ];
    for (how, seed) in cases {
        fs::write(&index, &pristine).unwrap();
        damage_index(&index, how, seed);
        for command in [&["ls"][..], &["check"], &["gc", "--dry-run"]] {
            let out = run(cli(&repo).args(command), None);
            let stderr = stderr_text(&out);
            assert!(
                !stderr.contains("panicked"),
                "{how} {seed} {command:?}: {stderr}"
            );
            assert_ne!(out.status.code(), Some(101), "{how} {seed}: {stderr}");
            // Overwritten pages may land in unused space; a truncated or garbage file
            // never opens.
            if how != "pages overwritten" {
                assert!(!out.status.success(), "{how} {command:?} must be refused");
            }
            if !out.status.success() {
                assert!(
                    stderr.contains("damaged") && stderr.contains("repair index"),
                    "{how} {seed} {command:?}: {stderr}"
                );
            }
        }
        let repair = run_ok(cli(&repo).args(["repair", "index"]), None);
        let stderr = stderr_text(&repair);
        assert!(stderr.contains("3 backups"), "{how} {seed}: {stderr}");
        assert!(stderr.contains("before-repair"), "{how} {seed}: {stderr}");
        let listed = stdout_text(&run_ok(cli(&repo).arg("ls"), None));
        for id in &ids {
            assert!(listed.contains(id), "{how} {seed}: {listed}");
        }
        let out = dir.path().join("out.bin");
        run_ok(cli(&repo).args(["get", &ids[1], "-o"]).arg(&out), None);
        assert!(fs::read(&out).unwrap() == data, "{how} {seed}");
        run_ok(cli(&repo).args(["check", "--read-data"]), None);
        fs::write(&index, &pristine).unwrap();
    }
}

#[test]
fn issue13_repair_index_refuses_an_index_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    init_for_cli(&repo, small_options());
    let index = repo.join("state").join(stowage::repo::INDEX_FILE);
    let held = stowage::index::Index::open(&index).expect("open the index");
    let repair = run(cli(&repo).args(["repair", "index"]), None);
    assert!(!repair.status.success());
    assert!(
        stderr_text(&repair).contains("in use"),
        "{}",
        stderr_text(&repair)
    );
    assert!(index.is_file(), "the index in use stays where it is");
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue13_the_server_reconciles_a_lost_index_before_gc() {
    let dir = tempfile::tempdir().unwrap();
    let config = stowage::server::ServerConfig {
        data_dir: dir.path().join("data"),
        ..stowage::server::ServerConfig::default()
    };
    let first = stowage::server::prepare(&config)
        .await
        .expect("first start");
    let data = random_bytes(2 * MIB, 1370);
    let stored = backup_bytes(&first.repo, data.clone(), "s").await;
    let state_dir = first.repo.index().path().parent().unwrap().to_path_buf();
    first.shutdown().await;
    drop(first);
    fs::remove_file(state_dir.join(stowage::repo::INDEX_FILE)).unwrap();
    let state = stowage::server::prepare(&config)
        .await
        .expect("second start");
    let admin = admin_key(&config.data_dir);
    let (base, server) = serve_on_loopback(state).await;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let started: serde_json::Value = client
        .post(format!("{base}/v1/repository/gc"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let job = started["job"]["id"].as_str().expect("job id").to_string();
    let mut view = serde_json::Value::Null;
    for _ in 0..600 {
        view = client
            .get(format!("{base}/v1/jobs/{job}"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if view["status"] != "running" && view["status"] != "queued" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(view["status"], "succeeded", "{view}");
    assert_eq!(
        view["result"]["deleted_packs"],
        serde_json::json!([]),
        "{view}"
    );
    assert_eq!(view["result"]["backups_marked"], 1, "{view}");
    let body = client
        .get(format!("{base}/v1/backups/{}/content", stored.id))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(body.status(), 200);
    assert!(body.bytes().await.unwrap() == data);
    server.shutdown().await.unwrap();
}

/// One pause of an [`Interleaving`]: it tells the test that the call arrived, then waits
/// for the test to let it go on.
struct Pause {
    arrived: tokio::sync::oneshot::Sender<()>,
    go_on: tokio::sync::oneshot::Receiver<()>,
}

/// The test's side of a [`Pause`].
struct PauseHandle {
    arrived: tokio::sync::oneshot::Receiver<()>,
    go_on: tokio::sync::oneshot::Sender<()>,
}

fn pause() -> (Pause, PauseHandle) {
    let (arrived_tx, arrived_rx) = tokio::sync::oneshot::channel();
    let (go_tx, go_rx) = tokio::sync::oneshot::channel();
    (
        Pause {
            arrived: arrived_tx,
            go_on: go_rx,
        },
        PauseHandle {
            arrived: arrived_rx,
            go_on: go_tx,
        },
    )
}

impl Pause {
    async fn hold(self) {
        let _ = self.arrived.send(());
        let _ = self.go_on.await;
    }
}

/// A backend that can hold the next manifest write before it is made, and the next
/// listing of manifests after it is made: the interleavings of a commit with whatever
/// reads the manifests meanwhile. It can also fail the next manifest write.
struct Interleaving {
    inner: DynBackend,
    manifest_put: std::sync::Mutex<Option<Pause>>,
    manifest_list: std::sync::Mutex<Option<Pause>>,
    /// Whether the held listing is held before it is made rather than after.
    list_held_before: std::sync::atomic::AtomicBool,
    /// The prefix whose next listing is held.
    list_held_prefix: std::sync::Mutex<&'static str>,
    fail_manifest_put: std::sync::atomic::AtomicBool,
    fail_manifest_list: std::sync::atomic::AtomicBool,
}

const MANIFESTS: &str = "backups/";

impl Interleaving {
    fn new(inner: DynBackend) -> Arc<Interleaving> {
        Arc::new(Interleaving {
            inner,
            manifest_put: Default::default(),
            manifest_list: Default::default(),
            list_held_before: Default::default(),
            list_held_prefix: std::sync::Mutex::new(MANIFESTS),
            fail_manifest_put: Default::default(),
            fail_manifest_list: Default::default(),
        })
    }

    fn hold_next_manifest_put(&self) -> PauseHandle {
        let (pause, handle) = pause();
        *self.manifest_put.lock().unwrap() = Some(pause);
        handle
    }

    /// Holds the next listing of manifests after it is made: it misses what is written
    /// meanwhile.
    fn hold_next_manifest_list(&self) -> PauseHandle {
        self.hold_manifest_list(false)
    }

    /// Holds the next listing of manifests before it is made: it sees what changed
    /// meanwhile.
    fn hold_next_manifest_list_before(&self) -> PauseHandle {
        self.hold_manifest_list(true)
    }

    fn hold_manifest_list(&self, before: bool) -> PauseHandle {
        self.hold_next_list_before(MANIFESTS, before)
    }

    /// Holds the next listing of `prefix`, before it is made or after.
    fn hold_next_list_before(&self, prefix: &'static str, before: bool) -> PauseHandle {
        *self.list_held_prefix.lock().unwrap() = prefix;
        self.list_held_before
            .store(before, std::sync::atomic::Ordering::SeqCst);
        let (pause, handle) = pause();
        *self.manifest_list.lock().unwrap() = Some(pause);
        handle
    }
}

#[async_trait::async_trait]
impl stowage::backend::Backend for Interleaving {
    async fn put(
        &self,
        key: &str,
        data: bytes::Bytes,
    ) -> Result<(), stowage::backend::BackendError> {
        if key.starts_with(MANIFESTS) {
            if self
                .fail_manifest_put
                .swap(false, std::sync::atomic::Ordering::SeqCst)
            {
                return Err(stowage::backend::BackendError::Unavailable {
                    key: key.to_string(),
                    message: "the test fails this manifest write".into(),
                });
            }
            let held = self.manifest_put.lock().unwrap().take();
            if let Some(held) = held {
                held.hold().await;
            }
        }
        self.inner.put(key, data).await
    }

    async fn create(
        &self,
        key: &str,
    ) -> Result<Box<dyn stowage::backend::ObjectWriter>, stowage::backend::BackendError> {
        self.inner.create(key).await
    }

    async fn get(
        &self,
        key: &str,
        range: Option<std::ops::Range<u64>>,
    ) -> Result<bytes::Bytes, stowage::backend::BackendError> {
        self.inner.get(key, range).await
    }

    async fn head(
        &self,
        key: &str,
    ) -> Result<stowage::backend::ObjectMeta, stowage::backend::BackendError> {
        self.inner.head(key).await
    }

    async fn delete(&self, key: &str) -> Result<(), stowage::backend::BackendError> {
        self.inner.delete(key).await
    }

    async fn list(
        &self,
        prefix: &str,
    ) -> Result<Vec<stowage::backend::ObjectMeta>, stowage::backend::BackendError> {
        if prefix.starts_with(MANIFESTS)
            && self
                .fail_manifest_list
                .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            return Err(stowage::backend::BackendError::Unavailable {
                key: prefix.to_string(),
                message: "the test fails this listing".into(),
            });
        }
        let watched = *self.list_held_prefix.lock().unwrap();
        let held = match prefix.starts_with(watched) {
            true => self.manifest_list.lock().unwrap().take(),
            false => None,
        };
        let before = self
            .list_held_before
            .load(std::sync::atomic::Ordering::SeqCst);
        let Some(held) = held else {
            return self.inner.list(prefix).await;
        };
        if before {
            held.hold().await;
            return self.inner.list(prefix).await;
        }
        let listed = self.inner.list(prefix).await;
        held.hold().await;
        listed
    }

    async fn abort_stale_uploads(
        &self,
        older_than: Duration,
    ) -> Result<u64, stowage::backend::BackendError> {
        self.inner.abort_stale_uploads(older_than).await
    }

    fn describe(&self) -> String {
        format!("interleaving {}", self.inner.describe())
    }
}

/// A repository on an [`Interleaving`] backend.
async fn interleaved() -> (LocalRepo, Arc<Interleaving>, Repository) {
    let local = LocalRepo::new();
    drop(local.init(small_options()).await);
    let backend = Interleaving::new(local.backend());
    let repo = local.open_with(backend.clone()).await;
    (local, backend, repo)
}

fn spawn_backup(repo: &Repository, data: &[u8]) -> tokio::task::JoinHandle<BackupManifest> {
    let (repo, data) = (repo.clone(), data.to_vec());
    tokio::spawn(async move { backup_bytes(&repo, data, "s").await })
}

fn spawn_gc(repo: &Repository) -> tokio::task::JoinHandle<GcReport> {
    let repo = repo.clone();
    tokio::spawn(async move { gc(&repo, GcOptions::default()).await })
}

/// Asserts that `repo` holds exactly `expected`, each restoring exactly, and checks
/// clean.
async fn assert_holds(repo: &Repository, expected: &[(BackupManifest, Vec<u8>)]) {
    let ids: BTreeSet<BackupId> = repo.backups().unwrap().into_iter().map(|m| m.id).collect();
    let wanted: BTreeSet<BackupId> = expected.iter().map(|(m, _)| m.id.clone()).collect();
    assert_eq!(ids, wanted, "every committed backup is listed");
    for (manifest, data) in expected {
        assert!(
            restore_bytes(repo, manifest).await == *data,
            "{}",
            manifest.id
        );
    }
    let report = repo.check(true, progress()).await.expect("check");
    assert!(report.is_ok(), "{:?}", report.problems);
}

/// A backup commits while `gc` reads the manifests: the manifest listed before it was
/// written, the index read after its record went in. The process's own changes in
/// flight are no reason to reconcile, so the committed backup keeps its record (it used
/// to lose it to a reconciliation that took it for a record without a manifest).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_committing_while_gc_reads_the_manifests_keeps_its_record() {
    let (_local, backend, repo) = interleaved().await;
    let first = random_bytes(MIB, 1401);
    let mut expected = vec![(backup_bytes(&repo, first.clone(), "s").await, first)];

    let put = backend.hold_next_manifest_put();
    let second = random_bytes(MIB, 1402);
    let committing = spawn_backup(&repo, &second);
    put.arrived
        .await
        .expect("the second backup reaches its manifest");

    let list = backend.hold_next_manifest_list();
    let collecting = spawn_gc(&repo);
    list.arrived.await.expect("gc lists the manifests");
    put.go_on.send(()).unwrap();
    expected.push((committing.await.unwrap(), second));
    list.go_on.send(()).unwrap();
    collecting.await.unwrap();
    assert_holds(&repo, &expected).await;
}

/// After a change failed half way, the index may lag the backend, so `gc` reconciles
/// first; a backup committing meanwhile is waited for (no change runs during a
/// reconciliation), keeps its record, and the reconciled index is trusted again: the
/// next open finds it current.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_reconciles_after_a_failed_change_without_losing_a_backup_committing_meanwhile() {
    let (local, backend, repo) = interleaved().await;
    let first = random_bytes(MIB, 1411);
    let mut expected = vec![(backup_bytes(&repo, first.clone(), "s").await, first)];
    backend
        .fail_manifest_put
        .store(true, std::sync::atomic::Ordering::SeqCst);
    try_backup_bytes(&repo, random_bytes(MIB, 1412), "s")
        .await
        .expect_err("the manifest write fails");

    let put = backend.hold_next_manifest_put();
    let second = random_bytes(MIB, 1413);
    let committing = spawn_backup(&repo, &second);
    put.arrived
        .await
        .expect("the second backup reaches its manifest");
    let collecting = spawn_gc(&repo);
    // Let gc reach its reconciliation before the commit goes on.
    tokio::task::yield_now().await;
    put.go_on.send(()).unwrap();
    expected.push((committing.await.unwrap(), second));
    collecting.await.unwrap();
    assert_holds(&repo, &expected).await;
    drop(repo);
    let reopened = local.open().await;
    assert!(
        reopened.reconciled_on_open().is_none(),
        "the reconciled index was recorded as current"
    );
    assert_holds(&reopened, &expected).await;
}

/// `check` reads the index's backups, then lists the stored manifests: a backup
/// committed or purged in between is no finding (it used to be reported as missing from
/// the index, or its manifest as missing from the backend). A manifest really missing
/// from the backend still is one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_takes_backups_committed_or_purged_while_it_lists_for_no_damage() {
    let (local, backend, repo) = interleaved().await;
    let first = random_bytes(MIB, 1421);
    let mut expected = vec![(backup_bytes(&repo, first.clone(), "s").await, first)];
    let doomed = backup_bytes(&repo, random_bytes(MIB, 1422), "s").await;

    let list = backend.hold_next_manifest_list_before();
    let checking = {
        let repo = repo.clone();
        tokio::spawn(async move { repo.check(true, progress()).await.expect("check") })
    };
    list.arrived.await.expect("check lists the manifests");
    let second = random_bytes(MIB, 1423);
    expected.push((backup_bytes(&repo, second.clone(), "s").await, second));
    repo.purge(&doomed.id).await.expect("purge");
    list.go_on.send(()).unwrap();
    let report = checking.await.unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_holds(&repo, &expected).await;

    // The same for a recycle mark written while check reads the stored ones.
    let list = backend.hold_next_list_before("recycled/", false);
    let checking = {
        let repo = repo.clone();
        tokio::spawn(async move { repo.check(false, progress()).await.expect("check") })
    };
    list.arrived.await.expect("check lists the recycle marks");
    let recycled = expected.pop().unwrap();
    repo.recycle(&recycled.0.id).await.expect("recycle");
    list.go_on.send(()).unwrap();
    let report = checking.await.unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    repo.undelete(&recycled.0.id).await.expect("undelete");
    expected.push(recycled);

    let lost = &expected[0].0.id;
    fs::remove_file(local.root().join(format!("backups/{lost}"))).unwrap();
    let report = repo.check(false, progress()).await.expect("check");
    let found: Vec<String> = report.problems.iter().map(|p| p.to_string()).collect();
    assert_eq!(
        found,
        [format!(
            "backup {lost}: manifest object is missing from the backend"
        )],
    );
}

/// A rebuild that failed half way leaves an incomplete index, which nothing may take as
/// current, although this process wrote the backend's generation itself: the next gc
/// reconciles it first and every backup is listed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_failed_rebuild_gc_reconciles_the_incomplete_index() {
    let (_local, backend, repo) = interleaved().await;
    let data = random_bytes(MIB, 1431);
    let expected = vec![(backup_bytes(&repo, data.clone(), "s").await, data)];
    backend
        .fail_manifest_list
        .store(true, std::sync::atomic::Ordering::SeqCst);
    repo.rebuild_index()
        .await
        .expect_err("the listing of manifests fails");
    gc(&repo, GcOptions::default()).await;
    assert_holds(&repo, &expected).await;
}
