//! Crash safety: an ingest cut off after every possible number of backend mutations
//! (FaultyBackend's StopAfter, as if the process died, and TearAfter, as if it died in
//! the middle of writing an object) fails cleanly, records nothing,
//! and leaves a repository that checks clean and restores every earlier backup.

use std::sync::Arc;
use std::time::Duration;

use stowage::backend::{FaultPlan, Operation};
use stowage::error::ErrorKind;
use stowage::format::manifest::BackupManifest;
use stowage::repo::{Progress, RepoError, Repository};

use crate::support::*;

/// Generous bound on one small ingest, so that a hang fails the test instead of
/// blocking it forever (not a timing assertion: a healthy run takes a second).
const HANG: Duration = Duration::from_secs(120);

/// A base repository holding one earlier backup, never opened again itself.
struct Base {
    local: LocalRepo,
    earlier: BackupManifest,
    earlier_data: Vec<u8>,
}

async fn base() -> Base {
    let local = LocalRepo::new();
    let repo = local.init(small_options()).await;
    let earlier_data = random_bytes(MIB + 5000, 61);
    let earlier = backup_bytes(&repo, earlier_data.clone(), "earlier").await;
    drop(repo);
    Base {
        local,
        earlier,
        earlier_data,
    }
}

/// The stream each replay ingests: part of the earlier backup (deduplicated), new
/// random bytes (several packs) and text.
fn new_stream() -> Vec<u8> {
    let mut data = random_bytes(MIB + 5000, 61)[..700 * KIB].to_vec();
    data.extend(random_bytes(3 * MIB + 3, 62));
    data.extend(compressible_bytes(300 * KIB, 63));
    data
}

async fn ingest(repo: &Repository, data: &[u8]) -> Result<BackupManifest, RepoError> {
    tokio::time::timeout(HANG, try_backup_bytes(repo, data.to_vec(), "new"))
        .await
        .expect("the ingest hung")
}

/// Reopens `local` on its plain backend and checks that it is consistent: a clean
/// check, exactly the backups of `expected`, each restoring exactly; and that it still
/// takes a new backup.
async fn assert_consistent(
    local: &LocalRepo,
    expected: &[(&BackupManifest, &[u8])],
    new_data: &[u8],
    context: &str,
) {
    let repo = open_when_released(local).await;
    let report = repo.check(true, progress()).await.expect("check");
    assert!(report.is_ok(), "{context}: {:?}", report.problems);
    let mut recorded: Vec<BackupId> = repo.backups().unwrap().into_iter().map(|m| m.id).collect();
    recorded.sort();
    let mut wanted: Vec<BackupId> = expected.iter().map(|(m, _)| m.id.clone()).collect();
    wanted.sort();
    assert_eq!(recorded, wanted, "{context}: recorded backups");
    for (manifest, data) in expected {
        let (result, out) = export_to_vec(&repo, manifest, None).await;
        result.unwrap_or_else(|e| panic!("{context}: restoring {}: {e}", manifest.id));
        assert!(out == *data, "{context}: backup {} differs", manifest.id);
    }
    let manifest = ingest(&repo, new_data)
        .await
        .unwrap_or_else(|e| panic!("{context}: a new backup after the crash: {e}"));
    assert!(
        restore_bytes(&repo, &manifest).await == new_data,
        "{context}"
    );
    let report = repo.check(true, progress()).await.expect("check");
    assert!(
        report.is_ok(),
        "{context}: after a new backup: {:?}",
        report.problems
    );
}

/// Opens `local` on its plain backend, waiting while background work of a previous,
/// dropped handle still holds the index open. That should never be needed (see
/// `a_failed_ingest_leaves_no_work_running_once_it_returns`), but the other tests check
/// consistency, not that.
async fn open_when_released(local: &LocalRepo) -> Repository {
    let mut attempts = 0;
    loop {
        match Repository::open(local.backend(), &local.state(), PASSPHRASE.as_bytes()).await {
            Ok(repo) => return repo,
            Err(e) if e.kind() == ErrorKind::Unavailable && attempts < 3000 => {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => panic!("reopening {}: {e}", local.root().display()),
        }
    }
}

/// Mutations of one complete ingest of `data` into a copy of `base`.
async fn count_mutations(base: &Base, data: &[u8]) -> u64 {
    let counting = base.local.copy();
    let (repo, faulty) = open_faulty(&counting, FaultPlan::Never).await;
    let manifest = ingest(&repo, data).await.expect("clean ingest");
    assert!(restore_bytes(&repo, &manifest).await == data);
    let packs = faulty.operation_count(Operation::Create);
    assert!(packs >= 3, "several packs: {packs}");
    assert_eq!(faulty.operation_count(Operation::Finish), packs);
    assert_eq!(
        faulty.operation_count(Operation::Put),
        2,
        "the repository generation, then one manifest"
    );
    assert_eq!(faulty.operation_count(Operation::Delete), 0);
    faulty.mutation_count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingest_stopped_or_torn_after_any_mutation_leaves_a_consistent_repository() {
    let base = base().await;
    let data = new_stream();

    let steps = count_mutations(&base, &data).await;
    let plans = (0..steps).flat_map(|stop| {
        [
            FaultPlan::StopAfter { mutations: stop },
            FaultPlan::TearAfter { mutations: stop },
        ]
    });
    for plan in plans {
        let context = format!("{plan:?} of {steps} mutations");
        let local = base.local.copy();
        let (repo, faulty) = open_faulty(&local, plan).await;
        let before = repo.backups().unwrap();
        let err = ingest(&repo, &data).await.expect_err(&context);
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{context}: {err}");
        assert!(!err.to_string().contains("panic"), "{context}: {err}");
        assert_eq!(
            repo.backups().unwrap(),
            before,
            "{context}: a backup was recorded"
        );
        drop(repo);
        drop(faulty);
        assert_consistent(
            &local,
            &[(&base.earlier, &base.earlier_data)],
            &data,
            &context,
        )
        .await;
    }
}

/// Once a failed ingest has returned its error and its handle is dropped, nothing of
/// it may still run: the repository can be reopened at once. Background pack uploads
/// still running would hold the index open (and keep writing to the backend).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_ingest_leaves_no_work_running_once_it_returns() {
    let base = base().await;
    let data = new_stream();
    let steps = count_mutations(&base, &data).await;
    let mut still_running = Vec::new();
    for round in 0..1 {
        for stop in 0..steps {
            let local = base.local.copy();
            let (repo, faulty) =
                open_faulty(&local, FaultPlan::StopAfter { mutations: stop }).await;
            ingest(&repo, &data).await.expect_err("stopped ingest");
            drop(repo);
            drop(faulty);
            match Repository::open(local.backend(), &local.state(), PASSPHRASE.as_bytes()).await {
                Ok(repo) => drop(repo),
                Err(e) if e.kind() == ErrorKind::Unavailable => still_running.push((round, stop)),
                Err(e) => panic!("reopening after stop {stop}: {e}"),
            }
        }
    }
    assert!(
        still_running.is_empty(),
        "after an ingest stopped by the backend returned its error and the Repository was \
         dropped, the index was still open (rounds and stop points: {still_running:?} of \
         {steps} mutations): pack-finishing tasks the ingest spawned (PackWriter::finishing \
         in src/repo/pack_writer.rs) are left running, detached, when the ingest fails"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_failed_backend_call_fails_the_ingest_and_the_handle_recovers() {
    let base = base().await;
    let data = new_stream();
    let counting = base.local.copy();
    let (repo, faulty) = open_faulty(&counting, FaultPlan::Never).await;
    let opening = Operation::ALL.map(|op| faulty.operation_count(op));
    ingest(&repo, &data).await.expect("clean ingest");
    // Every kind of call the ingest makes, reads included (today none: its dedup
    // lookups are the index's), counted from the end of opening, as `open_faulty` counts.
    let counts: Vec<(Operation, u64)> = Operation::ALL
        .into_iter()
        .zip(opening)
        .map(|(op, before)| (op, faulty.operation_count(op) - before))
        .filter(|(_, count)| *count > 0)
        .collect();
    drop(repo);

    for (operation, count) in counts {
        for n in 0..count {
            let context = format!("call {n} of {count} to {operation:?} failed");
            let local = base.local.copy();
            let (repo, _faulty) = open_faulty(&local, FaultPlan::FailNth { operation, n }).await;
            let err = ingest(&repo, &data).await.expect_err(&context);
            assert_eq!(err.kind(), ErrorKind::Unavailable, "{context}: {err}");
            assert_eq!(repo.backups().unwrap().len(), 1, "{context}");
            // The same handle (its in-flight registry included) takes the backup now.
            let manifest = ingest(&repo, &data)
                .await
                .unwrap_or_else(|e| panic!("{context}: retry: {e}"));
            assert!(restore_bytes(&repo, &manifest).await == data, "{context}");
            drop(repo);
            let repo = open_when_released(&local).await;
            let report = repo.check(false, progress()).await.expect("check");
            assert!(report.is_ok(), "{context}: {:?}", report.problems);
            assert!(restore_bytes(&repo, &base.earlier).await == base.earlier_data);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_ingest_records_nothing() {
    let local = LocalRepo::new();
    let repo = local.init(small_options()).await;
    let progress = Arc::new(Progress::new());
    progress.cancel();
    let source = std::io::Cursor::new(random_bytes(MIB, 1));
    let err = repo
        .backup_stream(Box::new(source), stream_options("cancelled"), progress)
        .await
        .expect_err("cancelled");
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert!(matches!(err, RepoError::Cancelled));
    assert!(repo.backups().unwrap().is_empty());
    let report = repo.check(true, crate::support::progress()).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
}

/// A reader that fails after `good` bytes.
struct FailingSource {
    data: std::io::Cursor<Vec<u8>>,
}

impl std::io::Read for FailingSource {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        match self.data.read(out)? {
            0 => Err(std::io::Error::other("the source disk is on fire")),
            n => Ok(n),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_read_error_fails_the_ingest_and_records_nothing() {
    let local = LocalRepo::new();
    let repo = local.init(small_options()).await;
    let source = FailingSource {
        data: std::io::Cursor::new(random_bytes(9 * MIB, 5)),
    };
    let err = repo
        .backup_stream(Box::new(source), stream_options("failing"), progress())
        .await
        .expect_err("the source failed");
    assert!(err.to_string().contains("on fire"), "{err}");
    assert!(repo.backups().unwrap().is_empty());
    let report = repo.check(true, progress()).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
}

/// A reader returning a few bytes at a time, with interruptions.
struct Trickle {
    data: Vec<u8>,
    at: usize,
    calls: u64,
}

impl std::io::Read for Trickle {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        self.calls += 1;
        if self.calls.is_multiple_of(7) {
            return Err(std::io::ErrorKind::Interrupted.into());
        }
        let n = out
            .len()
            .min(1 + (self.calls % 5000) as usize)
            .min(self.data.len() - self.at);
        out[..n].copy_from_slice(&self.data[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_with_short_reads_and_interruptions_round_trips() {
    let (repo, _state) = memory_repo(small_options()).await;
    let data = random_bytes(700 * KIB + 1, 6);
    let source = Trickle {
        data: data.clone(),
        at: 0,
        calls: 0,
    };
    let manifest = repo
        .backup_stream(Box::new(source), stream_options("trickle"), progress())
        .await
        .expect("ingest");
    assert_eq!(manifest.blake3, Some(blake3_hex(&data)));
    assert!(restore_bytes(&repo, &manifest).await == data);
}
