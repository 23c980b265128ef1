//! Deduplication: repeated and slightly edited streams add little, and concurrent
//! ingests of overlapping streams deduplicate against each other.

use bytes::Bytes;
use stowage::repo::Repository;

use crate::support::*;

/// Size of the stream stored repeatedly (random, so only deduplication can save space).
const DEDUP_STREAM: usize = 200 * MIB;

/// Stores `data` and returns how many bytes the repository's packs grew by, with the
/// backup's own count of added bytes.
async fn added_by(repo: &Repository, data: Bytes, case: &str) -> (u64, u64, Bytes) {
    let before = repo.stats().expect("stats").stored_bytes;
    let manifest = backup_bytes(repo, data.clone(), "dedup").await;
    assert_eq!(manifest.size, data.len() as u64);
    assert_eq!(manifest.blake3, Some(blake3_hex(&data)));
    // Spot checks that the stored stream is the edited one: its start and its end.
    let len = data.len() as u64;
    for range in [0..2 * MIB as u64, len - MIB as u64..len] {
        let got = read_all(repo, &manifest, Some(range.clone()))
            .await
            .expect("read range");
        assert!(
            got == data[range.start as usize..range.end as usize],
            "{case}: bytes {range:?} differ"
        );
    }
    let after = repo.stats().expect("stats").stored_bytes;
    (after - before, manifest.stored_bytes, data)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_and_edited_streams_add_little() {
    let (repo, _state) = memory_repo(default_options()).await;
    let original = Bytes::from(random_bytes(DEDUP_STREAM, 200));
    let (first, first_manifest_bytes, _) = added_by(&repo, original.clone(), "first").await;
    assert!(
        first >= DEDUP_STREAM as u64,
        "random data cannot shrink: {first} bytes stored"
    );
    assert!(first_manifest_bytes >= DEDUP_STREAM as u64);

    let with = |edit: fn(&mut Vec<u8>)| {
        let mut data = original.to_vec();
        edit(&mut data);
        Bytes::from(data)
    };
    // (name, stream, largest share of the stream it may add)
    let cases: Vec<(&str, Bytes, f64)> = vec![
        ("the same stream again", original.clone(), 0.01),
        (
            "one byte inserted at offset 1000",
            with(|d| d.insert(1000, 0x5a)),
            0.03,
        ),
        (
            "one byte changed in the middle",
            with(|d| d[DEDUP_STREAM / 2] ^= 1),
            0.03,
        ),
        (
            "one byte deleted near the end",
            with(|d| {
                d.remove(DEDUP_STREAM - 5000);
            }),
            0.03,
        ),
        (
            "a prefix of the stream",
            original.slice(..DEDUP_STREAM / 3),
            0.03,
        ),
    ];
    let size = DEDUP_STREAM as f64;
    for (name, data, limit) in cases {
        let (grown, manifest_bytes, _) = added_by(&repo, data, name).await;
        assert!(
            (grown as f64) < limit * size,
            "{name}: repository grew by {grown} bytes ({:.3}%, limit {}%)",
            100.0 * grown as f64 / size,
            100.0 * limit
        );
        assert!(
            (manifest_bytes as f64) < limit * size,
            "{name}: backup reports {manifest_bytes} stored bytes"
        );
    }
    let stats = repo.stats().expect("stats");
    assert_eq!(stats.backups, 6);
    assert!(stats.dedup_ratio > 4.5, "{stats:?}");
    assert!(
        (stats.stored_bytes as f64) < 1.1 * size,
        "six backups of one random stream take {} bytes",
        stats.stored_bytes
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_stream_twice_stores_no_new_chunk() {
    let (repo, _state) = memory_repo(small_options()).await;
    let data = Bytes::from(random_bytes(3 * MIB, 201));
    let first = backup_bytes(&repo, data.clone(), "a").await;
    let second = backup_bytes(&repo, data.clone(), "b").await;
    assert_eq!(first.new_chunks, first.chunks, "every data chunk is new");
    assert!(first.new_metadata_blobs >= 1, "and so is its content list");
    assert_eq!((second.new_chunks, second.new_metadata_blobs), (0, 0));
    assert_eq!(second.stored_bytes, 0);
    assert_eq!(second.chunks, first.chunks);
    assert_eq!(second.content, first.content);
    assert_ne!(second.id, first.id);
    assert!(restore_bytes(&repo, &second).await == data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_overlapping_ingests_deduplicate_and_restore_exactly() {
    let local = LocalRepo::new();
    let repo = local.init(small_options()).await;
    const PART: usize = 3 * MIB;
    let parts: Vec<Vec<u8>> = (0..5).map(|i| random_bytes(PART, 300 + i)).collect();
    let streams: Vec<Bytes> = [[0, 1, 2], [1, 2, 3], [2, 3, 4], [0, 1, 2], [4, 0, 2]]
        .iter()
        .map(|picks| Bytes::from(picks.map(|p| parts[p].as_slice()).concat()))
        .collect();

    let tasks: Vec<_> = streams
        .iter()
        .enumerate()
        .map(|(n, data)| {
            let repo = repo.clone();
            let data = data.clone();
            tokio::spawn(async move { try_backup_bytes(&repo, data, &format!("task-{n}")).await })
        })
        .collect();
    let mut manifests = Vec::new();
    for task in tasks {
        manifests.push(task.await.expect("task").expect("concurrent ingest"));
    }

    let logical: u64 = streams.iter().map(|s| s.len() as u64).sum();
    let added: u64 = manifests.iter().map(|m| m.stored_bytes).sum();
    let unique = (5 * PART) as u64;
    assert!(
        added < unique + unique / 5,
        "{added} bytes added for {unique} distinct bytes (of {logical} ingested)"
    );
    let stats = repo.stats().expect("stats");
    assert_eq!(stats.backups, streams.len() as u64);
    assert_eq!(stats.logical_bytes, logical);
    assert!(stats.unique_bytes < unique + unique / 5, "{stats:?}");
    assert!(stats.stored_bytes < logical / 2, "{stats:?}");

    for (manifest, data) in manifests.iter().zip(&streams) {
        assert_eq!(manifest.blake3, Some(blake3_hex(data)));
        assert!(
            restore_bytes(&repo, manifest).await == data[..],
            "backup {} ({}) differs",
            manifest.id,
            manifest.series
        );
    }
    let report = repo.check(true, progress()).await.expect("check");
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.backups, streams.len() as u64);
    assert!(report.blobs_read >= report.chunks);

    // The same holds after reopening: everything the ingests relied on is durable.
    drop(repo);
    let repo = local.open().await;
    for (manifest, data) in manifests.iter().zip(&streams) {
        assert!(restore_bytes(&repo, manifest).await == data[..]);
    }
}

#[test]
fn concurrent_ingests_from_plain_threads_share_one_repository() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (repo, _state) = runtime.block_on(memory_repo(small_options()));
    let shared = random_bytes(2 * MIB, 400);
    let threads: Vec<_> = (0..4u64)
        .map(|n| {
            let repo = repo.clone();
            let handle = runtime.handle().clone();
            let mut data = random_bytes(256 * KIB, 500 + n);
            data.extend_from_slice(&shared);
            std::thread::spawn(move || {
                let manifest = handle.block_on(backup_bytes(&repo, data.clone(), "threads"));
                (manifest, data)
            })
        })
        .collect();
    let results: Vec<_> = threads
        .into_iter()
        .map(|t| t.join().expect("ingest thread"))
        .collect();
    runtime.block_on(async {
        let added: u64 = results.iter().map(|(m, _)| m.stored_bytes).sum();
        assert!(
            added < (2 * MIB + 4 * 256 * KIB) as u64 * 12 / 10,
            "{added}"
        );
        for (manifest, data) in &results {
            assert!(restore_bytes(&repo, manifest).await == *data);
        }
        let report = repo.check(true, progress()).await.expect("check");
        assert!(report.is_ok(), "{:?}", report.problems);
    });
}
