//! Joining stream backups into one without moving bytes: the joined backup restores
//! byte-exact (its digest checked) after its parts are purged and space is collected, and
//! bad requests are refused without recording anything.

use stowage::repo::compose::ComposeSpec;
use stowage::repo::digest::StreamDigests;
use stowage::repo::gc::GcOptions;
use stowage::repo::RepoError;

use crate::support::*;

fn spec(id: &str, sha256: String) -> ComposeSpec {
    ComposeSpec {
        id: bid(id),
        series: "joined".into(),
        source: "joined.bin".into(),
        digests: StreamDigests {
            blake3: None,
            sha256: Some(sha256),
        },
    }
}

const JOINED_ID: &str = "6f1c2a9e-4b7d-4c1e-9a3f-2d8b5e7c9a10";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joined_backup_survives_purging_its_parts_and_gc() {
    let local = LocalRepo::new();
    let repo = local.init(small_options()).await;
    let pieces = [
        random_bytes(700_000, 1),
        random_bytes(1, 2),
        random_bytes(0, 3),
        random_bytes(1_300_000, 4),
    ];
    let mut parts = Vec::new();
    for piece in &pieces {
        let manifest = backup_bytes(&repo, piece.clone(), "staging").await;
        repo.recycle(&manifest.id).await.unwrap();
        parts.push(manifest.id);
    }
    let whole = pieces.concat();
    let joined = repo
        .compose(&parts, spec(JOINED_ID, sha256_hex(&whole)))
        .await
        .expect("compose");
    assert_eq!(joined.id, JOINED_ID);
    assert_eq!(joined.size, whole.len() as u64);

    for part in &parts {
        repo.purge(part).await.unwrap();
    }
    let report = repo.gc(GcOptions::default(), progress()).await.unwrap();
    assert_eq!(report.garbage_chunks, 0, "{report:?}");

    // A full export checks the recorded sha256 (the only digest given here); a range reads across part boundaries.
    let manifest = repo.backup(&bid(JOINED_ID)).unwrap();
    let sink = SharedBuf::default();
    repo.export(&manifest, None, Box::new(sink.clone()))
        .await
        .expect("export");
    assert!(sink.bytes() == whole);
    let range = 699_990..700_010;
    let middle = read_all(&repo, &manifest, Some(range.clone()))
        .await
        .unwrap();
    assert!(middle == whole[699_990..700_010]);
    let report = repo.check(true, progress()).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);

    // The joined backup is an ordinary one: a rebuilt index finds it.
    repo.rebuild_index().await.expect("rebuild");
    assert_eq!(
        repo.backup(&bid(JOINED_ID)).unwrap().size,
        whole.len() as u64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_compose_requests_record_nothing() {
    let local = LocalRepo::new();
    let repo = local.init(small_options()).await;
    let part = backup_bytes(&repo, random_bytes(10_000, 7), "staging").await;
    let sha = "0".repeat(64);
    let parts = vec![part.id.clone()];

    let invalid = |r: Result<_, RepoError>| matches!(r, Err(RepoError::InvalidInput(_)));
    // A joined backup's id is a BackupId, which only the canonical spelling parses to.
    assert!("Not-A-Uuid".parse::<BackupId>().is_err());
    assert!(JOINED_ID.to_uppercase().parse::<BackupId>().is_err());
    assert!(invalid(
        repo.compose(&parts, spec(JOINED_ID, "xyz".into())).await
    ));
    let missing = vec![part.id.clone(), bid("0b9c1f43-0d5a-4c8e-8e55-3f1d7c2b6a99")];
    assert!(matches!(
        repo.compose(&missing, spec(JOINED_ID, sha.clone())).await,
        Err(RepoError::BackupNotFound { .. })
    ));
    assert!(matches!(
        repo.compose(&parts, spec(part.id.as_str(), sha.clone()))
            .await,
        Err(RepoError::BackupExists { .. })
    ));
    let tree_dir = tempfile::tempdir().unwrap();
    std::fs::write(tree_dir.path().join("file"), b"tree content").unwrap();
    let (tree, _) = repo
        .backup_tree(tree_dir.path(), stream_options("trees"), progress())
        .await
        .unwrap();
    assert!(invalid(
        repo.compose(&[tree.id], spec(JOINED_ID, sha.clone())).await
    ));
    assert!(repo.backup(&bid(JOINED_ID)).is_err());
}
