//! Rebuilding the index from the backend alone: after losing the index file every
//! backup comes back, identical, and restores exactly.

use std::fs;

use stowage::format::config::ChunkerParams;
use stowage::format::manifest::BackupManifest;
use stowage::pipeline::packer::MAX_PACK_BLOBS;
use stowage::repo::ingest::IngestOptions;
use stowage::repo::stats::RepoStats;
use stowage::repo::{InitOptions, Repository};

use crate::support::*;
use crate::tree::{build_tree, scan};

struct Stored {
    local: LocalRepo,
    tree_source: tempfile::TempDir,
    streams: Vec<(BackupManifest, Vec<u8>)>,
    tree: BackupManifest,
    stats: RepoStats,
    chunks: u64,
}

async fn repository_with_backups() -> Stored {
    let local = LocalRepo::new();
    let repo = local.init(small_options()).await;
    let mut streams = Vec::new();
    for (n, data) in [
        random_bytes(2 * MIB + 1, 71),
        compressible_bytes(3 * MIB, 72),
        Vec::new(),
        random_bytes(10, 73),
    ]
    .into_iter()
    .enumerate()
    {
        let manifest = backup_bytes(&repo, data.clone(), &format!("s{n}")).await;
        streams.push((manifest, data));
    }
    let tree_source = tempfile::tempdir().unwrap();
    build_tree(tree_source.path());
    let (tree, _) = repo
        .backup_tree(
            tree_source.path(),
            IngestOptions::new("tree", "src"),
            progress(),
        )
        .await
        .expect("backup tree");
    let stats = repo.stats().unwrap();
    let chunks = repo.index().chunk_count().unwrap();
    drop(repo);
    Stored {
        local,
        tree_source,
        streams,
        tree,
        stats,
        chunks,
    }
}

/// Every backup is recorded as it was and restores exactly; check finds nothing.
async fn assert_all_restore(repo: &Repository, stored: &Stored) {
    let mut ids: Vec<BackupId> = repo.backups().unwrap().into_iter().map(|m| m.id).collect();
    ids.sort();
    let mut expected: Vec<BackupId> = stored.streams.iter().map(|(m, _)| m.id.clone()).collect();
    expected.push(stored.tree.id.clone());
    expected.sort();
    assert_eq!(ids, expected);
    for (manifest, data) in &stored.streams {
        assert_eq!(
            &repo.backup(&manifest.id).unwrap(),
            manifest,
            "record of {}",
            manifest.id
        );
        let (result, out) = export_to_vec(repo, manifest, None).await;
        assert_eq!(result.expect("export"), data.len() as u64);
        assert!(out == *data, "backup {} differs", manifest.id);
    }
    assert_eq!(repo.backup(&stored.tree.id).unwrap(), stored.tree);
    let target = tempfile::tempdir().unwrap();
    let out = target.path().join("t");
    repo.restore_tree(&stored.tree, &out, progress())
        .await
        .expect("restore tree");
    assert_eq!(scan(stored.tree_source.path()), scan(&out));
    let report = repo.check(true, progress()).await.expect("check");
    assert!(report.is_ok(), "{:?}", report.problems);
}

fn assert_same_totals(repo: &Repository, stored: &Stored) {
    let stats = repo.stats().unwrap();
    let before = &stored.stats;
    assert_eq!(
        (
            stats.backups,
            stats.logical_bytes,
            stats.unique_bytes,
            stats.stored_bytes,
            stats.chunks,
            stats.packs
        ),
        (
            before.backups,
            before.logical_bytes,
            before.unique_bytes,
            before.stored_bytes,
            before.chunks,
            before.packs
        ),
    );
    assert_eq!(repo.index().chunk_count().unwrap(), stored.chunks);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_index_is_rebuilt_from_packs_and_manifests() {
    let stored = repository_with_backups().await;
    fs::remove_file(stored.local.index_file()).expect("delete the index");
    let repo = stored.local.open().await;
    // Opening reconciles a new, empty index with the backend: nothing looks lost.
    let reconciled = repo.reconciled_on_open().expect("reconciled on open");
    assert_eq!(reconciled.backups, stored.streams.len() as u64 + 1);
    assert_same_totals(&repo, &stored);

    let report = repo.rebuild_index().await.expect("rebuild");
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    assert_eq!(report.backups, stored.streams.len() as u64 + 1);
    assert_eq!(report.packs as usize, stored.local.pack_files().len());
    assert_eq!(report.packs, stored.stats.packs);
    assert_eq!(report.chunks, stored.chunks);
    assert_same_totals(&repo, &stored);
    assert_all_restore(&repo, &stored).await;

    // Still a working repository: a new backup deduplicates against rebuilt entries.
    let (manifest, data) = &stored.streams[0];
    let again = backup_bytes(&repo, data.clone(), "again").await;
    assert_eq!(again.new_chunks, 0);
    assert_eq!(again.content, manifest.content);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuilding_an_intact_index_changes_nothing() {
    let stored = repository_with_backups().await;
    let repo = stored.local.open().await;
    for _ in 0..2 {
        let report = repo.rebuild_index().await.expect("rebuild");
        assert!(report.skipped.is_empty(), "{:?}", report.skipped);
        assert_same_totals(&repo, &stored);
    }
    assert_all_restore(&repo, &stored).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_in_a_new_state_directory_is_rebuilt() {
    let stored = repository_with_backups().await;
    let elsewhere = tempfile::tempdir().unwrap();
    let repo = Repository::open(
        stored.local.backend(),
        elsewhere.path(),
        PASSPHRASE.as_bytes(),
    )
    .await
    .expect("open with a fresh state directory");
    repo.rebuild_index().await.expect("rebuild");
    assert_same_totals(&repo, &stored);
    assert_all_restore(&repo, &stored).await;
}

#[test]
fn cli_repair_index_rebuilds_a_deleted_or_unreadable_index() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    init_for_cli(&repo, small_options());
    let data = random_bytes(1_500_000, 81);
    let input = dir.path().join("input.bin");
    fs::write(&input, &data).unwrap();
    let put = run_ok(cli(&repo).args(["put", "--series", "s"]).arg(&input), None);
    let id = last_line(&put);
    let tree = dir.path().join("tree");
    fs::create_dir(&tree).unwrap();
    build_tree(&tree);
    let tree_id = last_line(&run_ok(cli(&repo).arg("put").arg(&tree), None));

    let index = repo.join("state").join(stowage::repo::INDEX_FILE);
    let garbage = random_bytes(10_000, 82);
    for damage in ["deleted", "garbage"] {
        match damage {
            "deleted" => fs::remove_file(&index).unwrap(),
            _ => fs::write(&index, &garbage).unwrap(),
        }
        let repair = run_ok(cli(&repo).args(["repair", "index"]), None);
        let stderr = stderr_text(&repair);
        assert!(stderr.contains("index rebuilt"), "{damage}: {stderr}");
        assert!(stderr.contains("2 backups"), "{damage}: {stderr}");
        // Compacted once rebuilt (the rebuilt repository is checked below).
        assert!(stderr.contains("index compacted: "), "{damage}: {stderr}");

        let out = dir.path().join(format!("out-{damage}"));
        run_ok(cli(&repo).args(["get", &id, "-o"]).arg(&out), None);
        assert!(
            fs::read(&out).unwrap() == data,
            "{damage}: restored bytes differ"
        );
        let target = dir.path().join(format!("tree-{damage}"));
        run_ok(
            cli(&repo)
                .args(["restore", &tree_id, "--target"])
                .arg(&target),
            None,
        );
        assert_eq!(scan(&tree), scan(&target), "{damage}");
        run_ok(cli(&repo).args(["check", "--read-data"]), None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_of_another_repository_is_refused() {
    let first = LocalRepo::new();
    let repo = first.init(small_options()).await;
    backup_bytes(&repo, random_bytes(MIB, 90), "s").await;
    drop(repo);
    // A second repository pointed at the first one's state directory.
    let second = LocalRepo::new();
    let backend = second.backend();
    backend.create_root().await.unwrap();
    let error = match Repository::init(
        backend,
        &first.state(),
        PASSPHRASE.as_bytes(),
        small_options(),
    )
    .await
    {
        Ok(_) => panic!("a foreign index must be refused"),
        Err(error) => error,
    };
    assert_eq!(error.kind(), stowage::error::ErrorKind::Conflict);
    assert!(
        error.to_string().contains("belongs to repository"),
        "{error}"
    );
    // The first repository still opens on its own index.
    let repo = first.open().await;
    assert_eq!(repo.backups().unwrap().len(), 1);
}

/// Tiny chunks fill a pack by count long before its byte target: every pack lists at most
/// `MAX_PACK_BLOBS` blobs (so its open state stays small and its trailer stays readable),
/// and a rebuild from those trailers restores the backup exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packs_of_tiny_chunks_stop_at_the_blob_limit_and_are_rebuilt() {
    let local = LocalRepo::new();
    let repo = local
        .init(InitOptions {
            chunker: ChunkerParams {
                min_size: 64,
                avg_size: 256,
                max_size: 1024,
            },
            pack_size: 32 << 20,
            compression_level: 0,
            kdf: cheap_kdf(),
        })
        .await;
    let data = random_bytes(MAX_PACK_BLOBS * 512, 91);
    let manifest = backup_bytes(&repo, data.clone(), "tiny").await;
    let packs = repo.index().list_packs().unwrap();
    let chunks = repo.index().chunk_count().unwrap();
    assert!(chunks > MAX_PACK_BLOBS as u64, "only {chunks} chunks");
    assert!(packs.len() >= 2, "{} packs", packs.len());
    for (id, record) in &packs {
        assert!(record.blobs as usize <= MAX_PACK_BLOBS, "{id}: {record:?}");
    }
    drop(repo);

    fs::remove_file(local.index_file()).expect("delete the index");
    let repo = local.open().await;
    let report = repo.rebuild_index().await.expect("rebuild");
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    assert_eq!(report.packs as usize, packs.len());
    assert_eq!(report.chunks, chunks);
    assert!(restore_bytes(&repo, &manifest).await == data);
}
