//! The fault matrix: restore, check, `repair index` and gc each run with their Nth backend call
//! failed, for every N of every kind of call a clean run makes (the fault-injection
//! backend's `FailNth`), and repair with the process stopped or torn after each of its
//! mutations. Each run ends in success or a clean `Unavailable` error, never in wrong
//! bytes or a damaged repository: afterwards `check --read-data` is clean and every
//! backup restores exactly. (Ingest and gc killed after every mutation, plain or torn,
//! are in `faults.rs` and `gc.rs`.)

use std::sync::Arc;

use stowage::backend::{FaultPlan, FaultyBackend, Operation};
use stowage::error::ErrorKind;
use stowage::format::manifest::BackupManifest;
use stowage::repo::gc::GcOptions;
use stowage::repo::ingest::IngestOptions;
use stowage::repo::{RepoError, Repository};

use crate::support::*;
use crate::tree::{build_tree, scan};

/// A repository with two stream backups spanning several packs and a tree backup.
struct Fixture {
    local: LocalRepo,
    tree_source: tempfile::TempDir,
    streams: Vec<(BackupManifest, Vec<u8>)>,
    tree: BackupManifest,
}

async fn fixture() -> Fixture {
    let local = LocalRepo::new();
    let repo = local.init(small_options()).await;
    let first = random_bytes(2 * MIB + 11, 81);
    let mut second = first[..MIB].to_vec();
    second.extend(compressible_bytes(MIB, 82));
    let mut streams = Vec::new();
    for (n, data) in [first, second].into_iter().enumerate() {
        let manifest = backup_bytes(&repo, data.clone(), &format!("s{n}")).await;
        streams.push((manifest, data));
    }
    let tree_source = tempfile::tempdir().expect("tempdir");
    build_tree(tree_source.path());
    let (tree, _) = repo
        .backup_tree(
            tree_source.path(),
            IngestOptions::new("tree", "src"),
            progress(),
        )
        .await
        .expect("backup tree");
    drop(repo);
    Fixture {
        local,
        tree_source,
        streams,
        tree,
    }
}

/// Counts of every kind of backend call `run` makes on a handle of a copy of the
/// fixture, opened through a counting wrapper (the calls of opening excluded).
async fn count_calls<F, Fut>(fixture: &Fixture, run: F) -> Vec<(Operation, u64)>
where
    F: FnOnce(Repository) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let local = fixture.local.copy();
    let counting = Arc::new(FaultyBackend::new(local.backend(), FaultPlan::Never));
    let repo = local.open_with(counting.clone()).await;
    let opened: Vec<u64> = Operation::ALL
        .iter()
        .map(|op| counting.operation_count(*op))
        .collect();
    run(repo).await;
    Operation::ALL
        .iter()
        .zip(opened)
        .map(|(op, before)| (*op, counting.operation_count(*op) - before))
        .filter(|(_, count)| *count > 0)
        .collect()
}

/// A clean error: the backend's failure passed on as `Unavailable`, not a panic, not
/// a claim of damage.
fn assert_clean_error(err: &RepoError, context: &str) {
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{context}: {err}");
    assert!(!err.to_string().contains("panic"), "{context}: {err}");
}

/// `check --read-data` is clean and every backup of the fixture restores exactly.
async fn assert_intact(repo: &Repository, fixture: &Fixture, context: &str) {
    let report = repo.check(true, progress()).await.expect("check runs");
    assert!(report.is_ok(), "{context}: {:?}", report.problems);
    assert_eq!(repo.backups().expect("backups").len(), 3, "{context}");
    for (manifest, data) in &fixture.streams {
        assert!(
            restore_bytes(repo, manifest).await == *data,
            "{context}: {}",
            manifest.id
        );
    }
    let target = tempfile::tempdir().expect("tempdir");
    let out = target.path().join("t");
    repo.restore_tree(&fixture.tree, &out, progress())
        .await
        .unwrap_or_else(|e| panic!("{context}: restoring the tree: {e}"));
    assert_eq!(scan(fixture.tree_source.path()), scan(&out), "{context}");
}

/// Restores every backup of the fixture once; `Err` at the first that fails. What a
/// stream restore wrote before failing must be a prefix of the backup: never a wrong
/// byte.
async fn restore_all(repo: &Repository, fixture: &Fixture, context: &str) -> Result<(), RepoError> {
    for (manifest, data) in &fixture.streams {
        let (result, out) = export_to_vec(repo, manifest, None).await;
        assert!(
            data.starts_with(&out),
            "{context}: {} wrote bytes that are not the backup's",
            manifest.id
        );
        let written = result?;
        assert_eq!(written, data.len() as u64, "{context}");
        assert!(out == *data, "{context}");
    }
    let target = tempfile::tempdir().expect("tempdir");
    let out = target.path().join("t");
    repo.restore_tree(&fixture.tree, &out, progress()).await?;
    assert_eq!(scan(fixture.tree_source.path()), scan(&out), "{context}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_with_any_failed_backend_call_fails_cleanly_and_writes_no_wrong_byte() {
    let fixture = fixture().await;
    let fixture = &fixture;
    let counts = count_calls(fixture, |repo| async move {
        restore_all(&repo, fixture, "counting")
            .await
            .expect("clean restore");
    })
    .await;
    assert!(
        counts
            .iter()
            .any(|(op, n)| *op == Operation::Get && *n >= 4),
        "{counts:?}"
    );
    // Restores change nothing stored: every run reads the fixture itself.
    for (operation, count) in counts {
        for n in 0..count {
            let context = format!("call {n} of {count} to {operation:?} failed");
            let (repo, faulty) =
                open_faulty(&fixture.local, FaultPlan::FailNth { operation, n }).await;
            match restore_all(&repo, fixture, &context).await {
                Ok(()) => {}
                Err(err) => assert_clean_error(&err, &context),
            }
            faulty.set_plan(FaultPlan::Never);
            // The same handle restores everything right away.
            restore_all(&repo, fixture, &context)
                .await
                .unwrap_or_else(|e| panic!("{context}: the next restore: {e}"));
        }
    }
    let repo = fixture.local.open().await;
    assert_intact(&repo, fixture, "after every restore").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_with_any_failed_backend_call_fails_cleanly_and_reports_no_false_damage() {
    let fixture = fixture().await;
    let check = |repo: Repository| async move {
        let report = repo.check(true, progress()).await.expect("clean check");
        assert!(report.is_ok(), "{:?}", report.problems);
    };
    let counts = count_calls(&fixture, check).await;
    for (operation, count) in counts {
        for n in 0..count {
            let context = format!("call {n} of {count} to {operation:?} failed during check");
            let (repo, _faulty) =
                open_faulty(&fixture.local, FaultPlan::FailNth { operation, n }).await;
            match repo.check(true, progress()).await {
                Ok(report) => assert!(report.is_ok(), "{context}: {:?}", report.problems),
                Err(err) => assert_clean_error(&err, &context),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_index_with_any_failed_call_or_stop_fails_cleanly_and_a_rerun_rebuilds() {
    let fixture = fixture().await;
    // Counted from the first call: repair unlocks the repository itself.
    let counting_copy = fixture.local.copy();
    let counting = Arc::new(FaultyBackend::new(
        counting_copy.backend(),
        FaultPlan::Never,
    ));
    repair(&counting_copy, counting.clone())
        .await
        .expect("clean repair");
    let counts: Vec<(Operation, u64)> = Operation::ALL
        .iter()
        .map(|op| (*op, counting.operation_count(*op)))
        .filter(|(_, n)| *n > 0)
        .collect();
    let mutations = counting.mutation_count();
    assert!(
        counts.iter().any(|(op, _)| *op == Operation::List),
        "{counts:?}"
    );

    let mut plans: Vec<FaultPlan> = counts
        .iter()
        .flat_map(|&(operation, count)| {
            (0..count).map(move |n| FaultPlan::FailNth { operation, n })
        })
        .collect();
    for stop in 0..mutations {
        plans.push(FaultPlan::StopAfter { mutations: stop });
        plans.push(FaultPlan::TearAfter { mutations: stop });
    }
    for plan in plans {
        let context = format!("repair index under {plan:?}");
        let local = fixture.local.copy();
        let faulty = Arc::new(FaultyBackend::new(local.backend(), plan));
        match repair(&local, faulty.clone()).await {
            // A repair that says it succeeded left a complete index: normal opening
            // takes it as current.
            Ok(()) => {
                drop(faulty);
                let repo = local.open().await;
                assert!(repo.reconciled_on_open().is_none(), "{context}");
                assert_intact(&repo, &fixture, &context).await;
            }
            Err(err) => assert_clean_error(&err, &context),
        }
        let (repo, _, _) = Repository::open_rebuilding_index(
            local.backend(),
            &local.state(),
            PASSPHRASE.as_bytes(),
        )
        .await
        .unwrap_or_else(|e| panic!("{context}: the rerun: {e}"));
        assert_intact(&repo, &fixture, &context).await;
    }
}

/// `repair index` through `backend`; the handle is dropped before it returns.
async fn repair(local: &LocalRepo, backend: Arc<FaultyBackend>) -> Result<(), RepoError> {
    Repository::open_rebuilding_index(backend, &local.state(), PASSPHRASE.as_bytes())
        .await
        .map(drop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_with_any_failed_backend_call_fails_cleanly_and_a_rerun_finishes() {
    let fixture = fixture().await;
    // Something for gc to do: the second stream's own packs go, the first's stay.
    let template = fixture.local.copy();
    {
        let repo = template.open().await;
        repo.purge(&fixture.streams[1].0.id).await.expect("purge");
    }
    let run_gc = |repo: Repository| async move {
        repo.gc(GcOptions::default(), progress())
            .await
            .expect("clean gc");
    };
    let reference = Fixture {
        local: template,
        tree_source: fixture.tree_source,
        streams: vec![fixture.streams[0].clone()],
        tree: fixture.tree,
    };
    let counts = count_calls(&reference, run_gc).await;
    assert!(
        counts.iter().any(|(op, _)| *op == Operation::Delete),
        "{counts:?}"
    );
    for (operation, count) in counts {
        for n in 0..count {
            let context = format!("call {n} of {count} to {operation:?} failed during gc");
            let local = reference.local.copy();
            let (repo, _faulty) = open_faulty(&local, FaultPlan::FailNth { operation, n }).await;
            if let Err(err) = repo.gc(GcOptions::default(), progress()).await {
                assert_clean_error(&err, &context);
            }
            drop(repo);
            let repo = local.open().await;
            assert_intact_except_purged(&repo, &reference, &context).await;
            repo.gc(GcOptions::default(), progress())
                .await
                .unwrap_or_else(|e| panic!("{context}: the rerun: {e}"));
            assert_intact_except_purged(&repo, &reference, &context).await;
        }
    }
}

/// [`assert_intact`] for the fixture less its purged stream.
async fn assert_intact_except_purged(repo: &Repository, fixture: &Fixture, context: &str) {
    let report = repo.check(true, progress()).await.expect("check runs");
    assert!(report.is_ok(), "{context}: {:?}", report.problems);
    assert_eq!(repo.backups().expect("backups").len(), 2, "{context}");
    restore_all(repo, fixture, context)
        .await
        .unwrap_or_else(|e| panic!("{context}: restoring: {e}"));
}
