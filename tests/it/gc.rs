//! Deleting backups and reclaiming space: recycle and undelete, purge then GC, GC killed
//! at every backend mutation, and GC looping beside concurrent overlapping ingests.

use std::path::Path;
use std::sync::Arc;

use stowage::backend::{FaultPlan, FaultyBackend};
use stowage::repo::gc::GcOptions;
use stowage::repo::Repository;

use crate::support::*;

async fn put(repo: &Repository, series: &str, data: &[u8]) -> BackupId {
    backup_bytes(repo, data.to_vec(), series).await.id
}

/// A full restore through `export`, which also checks the recorded digest.
async fn restore(repo: &Repository, id: &BackupId) -> Vec<u8> {
    let manifest = repo.backup(id).expect("backup record");
    let sink = SharedBuf::default();
    repo.export(&manifest, None, Box::new(sink.clone()))
        .await
        .expect("restore");
    sink.bytes()
}

async fn assert_clean(repo: &Repository) {
    let report = repo.check(true, progress()).await.expect("check runs");
    assert!(
        report.is_ok(),
        "check found problems: {:?}",
        report.problems
    );
}

/// A gc that keeps few ids in memory, so its mark and plan go through sorted files.
async fn gc(repo: &Repository) -> stowage::repo::gc::GcReport {
    let options = GcOptions {
        ids_in_memory: 97,
        ..GcOptions::default()
    };
    repo.gc(options, progress()).await.expect("gc")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recycled_backups_are_hidden_restorable_and_undeletable() {
    let local = LocalRepo::new();
    let repo = local.init(small_options()).await;
    let data = random_bytes(300_000, 1);
    let id = put(&repo, "s", &data).await;
    repo.recycle(&id).await.unwrap();
    let entries = repo.backup_entries().unwrap();
    assert!(entries[0].recycled_at.is_some());
    assert_eq!(
        restore(&repo, &id).await,
        data,
        "a recycled backup still restores"
    );
    // GC keeps the chunks of recycled backups.
    gc(&repo).await;
    assert_eq!(restore(&repo, &id).await, data);
    repo.undelete(&id).await.unwrap();
    assert!(repo.backup_entries().unwrap()[0].recycled_at.is_none());
    // The recycle state survives an index rebuild.
    repo.recycle(&id).await.unwrap();
    repo.rebuild_index().await.unwrap();
    assert!(repo.recycled_at(&id).unwrap().is_some());
    let unknown = bid("00000000-0000-4000-8000-000000000000");
    assert!(repo.recycle(&unknown).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_then_gc_reclaims_what_only_the_purged_backups_used() {
    let local = LocalRepo::new();
    let repo = local.init(small_options()).await;
    let base = random_bytes(6 << 20, 2);
    let kept = put(&repo, "s", &base).await;
    let after_kept = repo.stats().unwrap().stored_bytes;
    // Two backups sharing the base, each with 4 MiB of their own.
    let mut doomed = Vec::new();
    for seed in [3, 4] {
        let mut data = base.clone();
        data.extend_from_slice(&random_bytes(4 << 20, seed));
        doomed.push(put(&repo, "s", &data).await);
    }
    let before = repo.stats().unwrap().stored_bytes;
    let only_doomed = before - after_kept;
    for id in &doomed {
        repo.purge(id).await.unwrap();
    }
    let dry = repo
        .gc(
            GcOptions {
                dry_run: true,
                ..GcOptions::default()
            },
            progress(),
        )
        .await
        .unwrap();
    assert_eq!(
        repo.stats().unwrap().stored_bytes,
        before,
        "a dry run changes nothing"
    );
    let report = gc(&repo).await;
    assert_eq!(report.garbage_chunks, dry.garbage_chunks);
    let after = repo.stats().unwrap().stored_bytes;
    let reclaimed = before - after;
    assert!(
        reclaimed as f64 >= 0.95 * only_doomed as f64,
        "reclaimed {reclaimed} of {only_doomed}"
    );
    assert_eq!(restore(&repo, &kept).await, base);
    assert_clean(&repo).await;
    // On disk too: the pack files are gone.
    let on_disk: u64 = walk_size(&local.root().join("packs"));
    assert_eq!(on_disk, after);
}

fn walk_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| {
                    let e = e.unwrap();
                    if e.file_type().unwrap().is_dir() {
                        walk_size(&e.path())
                    } else {
                        e.metadata().unwrap().len()
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

/// A repository where GC must delete packs, repack a half-live pack and sweep chunks.
async fn gc_fixture(local: &LocalRepo) -> Vec<(BackupId, Vec<u8>)> {
    let repo = local.init(small_options()).await;
    // The purged stream interleaves its own bytes with bytes a kept backup shares, so
    // its packs end up partly live: GC must repack them.
    let (head, tail) = (random_bytes(400 << 10, 10), random_bytes(400 << 10, 14));
    let mixed = [head.clone(), random_bytes(400 << 10, 11), tail.clone()].concat();
    let shared = [head, tail].concat();
    let doomed_mixed = put(&repo, "s", &mixed).await;
    let keeper = put(&repo, "s", &shared).await;
    let doomed_alone = put(&repo, "s", &random_bytes(1 << 20, 12)).await;
    let small = random_bytes(100 << 10, 13);
    let small_id = put(&repo, "t", &small).await;
    repo.purge(&doomed_mixed).await.unwrap();
    repo.purge(&doomed_alone).await.unwrap();
    vec![(keeper, shared), (small_id, small)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_killed_or_torn_at_any_step_leaves_a_sound_repository_and_a_rerun_finishes() {
    let template = LocalRepo::new();
    let live = gc_fixture(&template).await;
    // Count the backend mutations of one full run.
    let counting = template.copy();
    let counter = Arc::new(FaultyBackend::new(counting.backend(), FaultPlan::Never));
    let repo = counting.open_with(counter.clone()).await;
    let full = gc(&repo).await;
    assert!(
        full.packs_deleted > 0 && full.packs_repacked > 0,
        "{full:?}"
    );
    let reclaimed_size = repo.stats().unwrap().stored_bytes;
    drop(repo);
    let mutations = counter.mutation_count();
    assert!(mutations >= 4, "only {mutations} mutations");

    let plans = (0..mutations).flat_map(|stop| {
        [
            FaultPlan::StopAfter { mutations: stop },
            FaultPlan::TearAfter { mutations: stop },
        ]
    });
    for plan in plans {
        let stop = format!("{plan:?}");
        let local = template.copy();
        let faulty = Arc::new(FaultyBackend::new(local.backend(), FaultPlan::Never));
        let repo = local.open_with(faulty.clone()).await;
        // Opening only reads; the process "dies" (in the middle of a write, when torn)
        // after `stop` mutations of the GC.
        faulty.set_plan(plan);
        let result = repo.gc(GcOptions::default(), progress()).await;
        assert!(result.is_err(), "GC under {stop} must fail");
        drop(repo);
        // The "restarted process": the plain backend, the same state directory.
        let repo = local.open().await;
        assert_clean(&repo).await;
        for (id, data) in &live {
            assert_eq!(&restore(&repo, id).await, data, "stop {stop}: backup {id}");
        }
        gc(&repo).await;
        assert_clean(&repo).await;
        assert!(
            repo.stats().unwrap().stored_bytes <= reclaimed_size + (64 << 10),
            "stop {stop}: the rerun finishes the job"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_looping_beside_overlapping_ingests_never_sweeps_a_used_chunk() {
    let local = LocalRepo::new();
    let repo = local.init(small_options()).await;
    // Streams drawn from a small pool of blocks overlap heavily with each other.
    let pool: Vec<Vec<u8>> = (0..24).map(|i| random_bytes(96 << 10, 100 + i)).collect();
    let pool = Arc::new(pool);
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let collector = {
        let (repo, done) = (repo.clone(), done.clone());
        tokio::spawn(async move {
            let mut runs = 0u32;
            while !done.load(std::sync::atomic::Ordering::Relaxed) || runs == 0 {
                repo.gc(GcOptions::default(), progress())
                    .await
                    .expect("gc beside ingest");
                runs += 1;
            }
            runs
        })
    };
    let mut writers = Vec::new();
    for writer in 0..4u64 {
        let (repo, pool) = (repo.clone(), pool.clone());
        writers.push(tokio::spawn(async move {
            let mut kept = Vec::new();
            for round in 0..6u64 {
                let data: Vec<u8> = (0..10)
                    .flat_map(|k| pool[((writer * 7 + round * 3 + k * 5) % 24) as usize].clone())
                    .collect();
                let id = put(&repo, "w", &data).await;
                if round % 2 == 0 {
                    // Make garbage for the collector while others still use its chunks.
                    repo.purge(&id).await.unwrap();
                } else {
                    kept.push((id, data));
                }
            }
            kept
        }));
    }
    let mut kept = Vec::new();
    for writer in writers {
        kept.extend(writer.await.unwrap());
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let runs = collector.await.unwrap();
    assert!(runs >= 1);
    for (id, data) in &kept {
        assert_eq!(&restore(&repo, id).await, data, "backup {id}");
    }
    assert_clean(&repo).await;
}
