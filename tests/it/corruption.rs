//! Damage to the repository: flipped bytes in packs, truncated and missing packs,
//! garbage objects, wrong passphrases. Every case gives a typed error or a check problem
//! naming what is damaged, never a panic and never wrong bytes.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use stowage::backend::MemoryBackend;
use stowage::error::ErrorKind;
use stowage::format::manifest::BackupManifest;
use stowage::format::pack::BlobKind;
use stowage::id::{ChunkId, PackId};
use stowage::index::ChunkLocation;
use stowage::repo::check::CheckReport;
use stowage::repo::{Repository, CONFIG_KEY, DEFAULT_KEY_KEY};

use crate::support::*;

/// A local repository with two stream backups whose chunks live in separate packs.
struct Damaged {
    local: LocalRepo,
    repo: Repository,
    a: BackupManifest,
    a_data: Vec<u8>,
    a_packs: Vec<PathBuf>,
    b: BackupManifest,
    b_data: Vec<u8>,
}

async fn two_backups() -> Damaged {
    let local = LocalRepo::new();
    let repo = local.init(small_options()).await;
    let mut a_data = random_bytes(3 * MIB, 11);
    a_data.extend(compressible_bytes(MIB, 12));
    let a = backup_bytes(&repo, a_data.clone(), "a").await;
    let a_packs = local.pack_files();
    assert!(a_packs.len() >= 3, "several packs: {a_packs:?}");
    let b_data = random_bytes(500 * KIB, 13);
    let b = backup_bytes(&repo, b_data.clone(), "b").await;
    Damaged {
        local,
        repo,
        a,
        a_data,
        a_packs,
        b,
        b_data,
    }
}

fn pack_id(path: &Path) -> PackId {
    path.file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .expect("pack file name is an id")
}

/// Every chunk the index places in `pack`, by offset.
fn chunks_in(repo: &Repository, pack: PackId) -> Vec<(ChunkId, ChunkLocation)> {
    let mut chunks = Vec::new();
    repo.index()
        .for_each_chunk(|id, location| {
            if location.pack == pack {
                chunks.push((id, location));
            }
        })
        .expect("index scan");
    chunks.sort_by_key(|(_, l)| l.offset);
    chunks
}

fn problems_text(report: &CheckReport) -> String {
    report
        .problems
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Asserts that exporting `manifest` fails as corrupt, having written only a prefix
/// of the true bytes.
async fn assert_export_fails_cleanly(repo: &Repository, manifest: &BackupManifest, data: &[u8]) {
    let (result, out) = export_to_vec(repo, manifest, None).await;
    let err = result.expect_err("export of a damaged backup must fail");
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert!(out.len() < data.len(), "not everything was written");
    assert!(out == data[..out.len()], "the output holds wrong bytes");
    let err = read_all(repo, manifest, None)
        .await
        .expect_err("read_backup fails too");
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
}

async fn assert_restores(repo: &Repository, manifest: &BackupManifest, data: &[u8]) {
    let (result, out) = export_to_vec(repo, manifest, None).await;
    assert_eq!(result.expect("export"), data.len() as u64);
    assert!(out == data, "backup {} differs", manifest.id);
}

#[derive(Debug, Clone, Copy)]
enum Spot {
    /// The middle of a data blob in the middle of the pack.
    Blob,
    /// The middle of a content-list leaf.
    Leaf,
    /// The middle of the encrypted trailer.
    Trailer,
    /// The footer's magic.
    Footer,
    /// The header's magic.
    Header,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_in_a_pack_is_reported_and_never_restored() {
    for spot in [
        Spot::Blob,
        Spot::Leaf,
        Spot::Trailer,
        Spot::Footer,
        Spot::Header,
    ] {
        let d = two_backups().await;
        let path = match spot {
            Spot::Leaf => {
                let leaf = d.a.content.leaves[0].id;
                let location = d.repo.index().lookup_chunks(&[leaf]).unwrap()[0].unwrap();
                d.local.root().join(stowage::repo::pack_key(&location.pack))
            }
            _ => d.a_packs[d.a_packs.len() / 2].clone(),
        };
        let pack = pack_id(&path);
        let size = std::fs::metadata(&path).unwrap().len();
        let chunks = chunks_in(&d.repo, pack);
        let data_chunks: Vec<_> = chunks
            .iter()
            .filter(|(_, l)| l.kind == BlobKind::Data)
            .collect();
        let (chunk, location) = match spot {
            Spot::Leaf => {
                let leaf = d.a.content.leaves[0].id;
                (
                    leaf,
                    d.repo.index().lookup_chunks(&[leaf]).unwrap()[0].unwrap(),
                )
            }
            _ => *data_chunks[data_chunks.len() / 2],
        };
        let trailer_start = chunks
            .iter()
            .map(|(_, l)| u64::from(l.offset) + u64::from(l.stored_len))
            .max()
            .unwrap();
        let offset = match spot {
            Spot::Blob | Spot::Leaf => {
                u64::from(location.offset) + u64::from(location.stored_len) / 2
            }
            Spot::Trailer => (trailer_start + size - 12) / 2,
            Spot::Footer => size - 3,
            Spot::Header => 3,
        };
        flip_byte(&path, offset);

        let report = d.repo.check(true, progress()).await.expect("check runs");
        let text = problems_text(&report);
        assert!(!report.is_ok(), "{spot:?}: check found nothing");
        assert!(
            report.problems.iter().any(|p| p.pack == Some(pack)),
            "{spot:?}: no problem names pack {pack}:\n{text}"
        );
        assert!(text.contains(&pack.to_hex()), "{spot:?}: {text}");
        assert!(
            report
                .problems
                .iter()
                .any(|p| p.backup.as_deref() == Some(d.a.id.as_str())),
            "{spot:?}: no problem names the damaged backup:\n{text}"
        );
        assert!(
            !report
                .problems
                .iter()
                .any(|p| p.backup.as_deref() == Some(d.b.id.as_str())),
            "{spot:?}: the intact backup is reported:\n{text}"
        );
        match spot {
            Spot::Blob | Spot::Leaf => {
                assert!(
                    report
                        .problems
                        .iter()
                        .any(|p| p.chunk == Some(chunk) && p.pack == Some(pack)),
                    "{spot:?}: no problem names chunk {chunk} in pack {pack}:\n{text}"
                );
                assert_export_fails_cleanly(&d.repo, &d.a, &d.a_data).await;
            }
            // The blobs themselves are intact and each is authenticated on its own:
            // the backup still restores exactly, though check flags the pack.
            Spot::Trailer | Spot::Footer | Spot::Header => {
                assert_restores(&d.repo, &d.a, &d.a_data).await
            }
        }
        assert_restores(&d.repo, &d.b, &d.b_data).await;
        // Check without reading data does not read packs: a flipped byte is not seen.
        let report = d.repo.check(false, progress()).await.expect("check");
        if !matches!(spot, Spot::Blob | Spot::Leaf) {
            assert!(report.is_ok(), "{spot:?}: {}", problems_text(&report));
        }
        drop(d.local);
    }
}

/// How a pack is lost.
#[derive(Debug, Clone, Copy)]
enum Loss {
    /// Cut short (in the middle of its blobs, or inside the content-list leaf it holds).
    Truncated,
    TruncatedToNothing,
    Deleted,
}

/// Damages one pack of backup `a`: one holding a content-list leaf of it when `leaf`,
/// else one holding only data chunks. Returns the pack id and where the index
/// records it.
fn lose_pack(d: &Damaged, loss: Loss, leaf: bool) -> PackId {
    let leaf_id = d.a.content.leaves[0].id;
    let leaf_location = d.repo.index().lookup_chunks(&[leaf_id]).unwrap()[0].expect("leaf indexed");
    let path = if leaf {
        d.local
            .root()
            .join(stowage::repo::pack_key(&leaf_location.pack))
    } else {
        d.a_packs
            .iter()
            .find(|p| {
                chunks_in(&d.repo, pack_id(p))
                    .iter()
                    .all(|(_, l)| l.kind == BlobKind::Data)
            })
            .expect("a pack holding only data chunks")
            .clone()
    };
    let pack = pack_id(&path);
    match loss {
        Loss::Truncated => {
            let size = std::fs::metadata(&path).unwrap().len();
            let at = if leaf {
                u64::from(leaf_location.offset) + 1
            } else {
                size / 2
            };
            let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            file.set_len(at).unwrap();
        }
        Loss::TruncatedToNothing => std::fs::write(&path, b"").unwrap(),
        Loss::Deleted => std::fs::remove_file(&path).unwrap(),
    }
    pack
}

/// A lost pack is reported by check (naming it) and makes restores of the backup
/// using it fail, having written only correct bytes; other backups restore. Returns
/// the error the restore failed with.
async fn assert_pack_loss_handled(loss: Loss, leaf: bool) -> stowage::repo::RepoError {
    let d = two_backups().await;
    let pack = lose_pack(&d, loss, leaf);
    let report = d.repo.check(false, progress()).await.expect("check");
    let text = problems_text(&report);
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.pack == Some(pack) && p.chunk.is_none()),
        "{loss:?}: loss of pack {pack} not reported:\n{text}"
    );
    let report = d.repo.check(true, progress()).await.expect("check");
    assert!(problems_text(&report).contains(&pack.to_hex()), "{loss:?}");
    assert_restores(&d.repo, &d.b, &d.b_data).await;
    let (result, out) = export_to_vec(&d.repo, &d.a, None).await;
    let err = result.expect_err("export of a damaged backup must fail");
    assert!(
        out == d.a_data[..out.len()],
        "{loss:?}: wrong bytes written"
    );
    assert!(out.len() < d.a_data.len(), "{loss:?}");
    err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_or_missing_pack_of_data_chunks_fails_restores_as_corrupt() {
    for loss in [Loss::Truncated, Loss::TruncatedToNothing, Loss::Deleted] {
        let err = assert_pack_loss_handled(loss, false).await;
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{loss:?}: {err}");
    }
}

/// Check names the backups that use a lost pack, whichever way it was lost, so an
/// operator knows which backups are damaged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_names_the_backups_that_use_a_truncated_or_missing_pack() {
    let mut unnamed = Vec::new();
    for loss in [Loss::Truncated, Loss::TruncatedToNothing, Loss::Deleted] {
        let d = two_backups().await;
        let pack = lose_pack(&d, loss, false);
        let report = d.repo.check(true, progress()).await.expect("check");
        assert!(problems_text(&report).contains(&pack.to_hex()), "{loss:?}");
        let named = |id: &BackupId| {
            report
                .problems
                .iter()
                .any(|p| p.backup.as_deref() == Some(id.as_str()))
        };
        assert!(!named(&d.b.id), "{loss:?}: the intact backup is named");
        if !named(&d.a.id) {
            unnamed.push((loss, problems_text(&report)));
        }
    }
    assert!(
        unnamed.is_empty(),
        "check(read_data) does not name the backup using the lost pack: {unnamed:#?}"
    );
}

/// Reading a content-list leaf from a truncated or missing pack must fail like reading
/// a data chunk from it does: as a corrupt backup, not as an invalid range or a
/// missing object (`RepoInner::load_blob` passes the backend's error through).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_or_missing_pack_holding_a_content_list_leaf_fails_restores_as_corrupt() {
    let mut wrong = Vec::new();
    for loss in [Loss::Truncated, Loss::TruncatedToNothing, Loss::Deleted] {
        let err = assert_pack_loss_handled(loss, true).await;
        if err.kind() != ErrorKind::Corrupt {
            wrong.push(format!("{loss:?}: {:?} error: {err}", err.kind()));
        }
    }
    assert!(
        wrong.is_empty(),
        "restores failed with kinds other than Corrupt:\n{}",
        wrong.join("\n")
    );
}

/// A pack id in directory `packs/ab/`.
fn garbage_id(n: u8) -> PackId {
    let mut bytes = [n; 32];
    bytes[0] = 0xab;
    PackId(bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_objects_in_the_packs_area_are_reported_and_skipped() {
    let d = two_backups().await;
    let garbage: Vec<(PackId, Vec<u8>)> = vec![
        (garbage_id(1), random_bytes(5000, 77)),
        (garbage_id(2), b"12345".to_vec()),
        (garbage_id(3), {
            let mut bytes = b"STOWPACK\x01\0\0\0\0\0\0\0".to_vec();
            bytes.extend(random_bytes(300, 78));
            bytes.extend(b"\x10\0\0\0STOWPEND");
            bytes
        }),
    ];
    for (id, bytes) in &garbage {
        let path = d.local.root().join(stowage::repo::pack_key(id));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bytes).unwrap();
    }
    let report = d.repo.check(true, progress()).await.expect("check");
    let text = problems_text(&report);
    for (id, _) in &garbage {
        assert!(
            report.problems.iter().any(|p| p.pack == Some(*id)),
            "garbage pack {id} not reported:\n{text}"
        );
    }
    assert!(
        report.problems.iter().all(|p| p.backup.is_none()),
        "no backup is damaged:\n{text}"
    );
    assert_restores(&d.repo, &d.a, &d.a_data).await;

    let rebuilt = d.repo.rebuild_index().await.expect("rebuild");
    for (id, _) in &garbage {
        assert!(
            rebuilt.skipped.iter().any(|s| s.contains(&id.to_hex())),
            "rebuild did not skip {id}: {:?}",
            rebuilt.skipped
        );
    }
    assert_eq!(rebuilt.backups, 2);
    assert_restores(&d.repo, &d.a, &d.a_data).await;
    assert_restores(&d.repo, &d.b, &d.b_data).await;
}

/// Objects under `backups/` whose names are no backup id hold no backup (a manifest is
/// stored only under the id its seal binds): check names them, gc and a rebuild pass
/// them by, and no backup is harmed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stray_objects_in_the_backups_area_are_reported_and_passed_by() {
    let d = two_backups().await;
    let strays = [
        "backups/notes.txt",
        "backups/6f1c2a9e4b7d4c1e9a3f2d8b5e7c9a10",
    ];
    for key in strays {
        std::fs::write(d.local.root().join(key), b"not a manifest").unwrap();
    }
    let report = d.repo.check(false, progress()).await.expect("check");
    let text = problems_text(&report);
    for key in strays {
        assert!(text.contains(key), "stray {key} not reported:\n{text}");
    }
    assert!(
        report.problems.iter().all(|p| p.backup.is_none()),
        "no backup is damaged:\n{text}"
    );
    d.repo
        .gc(Default::default(), progress())
        .await
        .expect("gc passes strays by");
    let rebuilt = d.repo.rebuild_index().await.expect("rebuild");
    assert_eq!(rebuilt.backups, 2, "{rebuilt:?}");
    assert_restores(&d.repo, &d.a, &d.a_data).await;
    assert_restores(&d.repo, &d.b, &d.b_data).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_or_garbage_manifests_are_left_out_of_a_rebuild() {
    let d = two_backups().await;
    let manifest = d.local.root().join(stowage::repo::manifest_key(&d.b.id));
    let bytes = std::fs::read(&manifest).unwrap();
    std::fs::write(&manifest, &bytes[..bytes.len() / 2]).unwrap();
    let stray = d
        .local
        .root()
        .join("backups/00000000-0000-0000-0000-000000000000");
    std::fs::write(&stray, random_bytes(200, 5)).unwrap();

    let rebuilt = d.repo.rebuild_index().await.expect("rebuild");
    assert_eq!(rebuilt.backups, 1, "{rebuilt:?}");
    assert!(
        rebuilt.skipped.iter().any(|s| s.contains(d.b.id.as_str())),
        "{:?}",
        rebuilt.skipped
    );
    assert!(
        rebuilt.skipped.iter().any(|s| s.contains("00000000-0000")),
        "{:?}",
        rebuilt.skipped
    );
    let ids: Vec<BackupId> = d
        .repo
        .backups()
        .unwrap()
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(ids, vec![d.a.id.clone()]);
    let err = d.repo.backup(&d.b.id).expect_err("left out");
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_restores(&d.repo, &d.a, &d.a_data).await;
    // Check still reads the stored manifests and names the two it cannot read.
    let report = d.repo.check(true, progress()).await.expect("check");
    let text = problems_text(&report);
    assert_eq!(report.problems.len(), 2, "{text}");
    for id in [d.b.id.as_str(), "00000000-0000-0000-0000-000000000000"] {
        assert!(
            report
                .problems
                .iter()
                .any(|p| p.backup.as_deref() == Some(id) && p.message.contains("cannot be read")),
            "{id}: {text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_passphrase_is_unauthorized() {
    let local = LocalRepo::new();
    drop(local.init(small_options()).await);
    for wrong in ["wrong", "", "correct horse battery stapl"] {
        let err = Repository::open(local.backend(), &local.state(), wrong.as_bytes())
            .await
            .err()
            .expect("wrong passphrase must not open");
        assert_eq!(err.kind(), ErrorKind::Unauthorized, "{err}");
        assert!(err.to_string().contains("wrong passphrase"), "{err}");
    }
    drop(local.open().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_that_is_not_a_repository_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    for root in [dir.path().join("empty"), dir.path().join("missing")] {
        if root.ends_with("empty") {
            std::fs::create_dir(&root).unwrap();
            std::fs::write(root.join("unrelated"), b"x").unwrap();
        }
        let backend = Arc::new(stowage::backend::LocalBackend::new(&root));
        let err = Repository::open(backend, &dir.path().join("state"), PASSPHRASE.as_bytes())
            .await
            .err()
            .expect("not a repository");
        assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
        assert!(err.to_string().contains("no repository"), "{err}");
    }
    let err = Repository::open(
        Arc::new(MemoryBackend::new()),
        &dir.path().join("state2"),
        PASSPHRASE.as_bytes(),
    )
    .await
    .err()
    .expect("empty memory backend");
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initialising_twice_is_already_exists() {
    let local = LocalRepo::new();
    drop(local.init(small_options()).await);
    let err = Repository::init(
        local.backend(),
        &local.dir.path().join("other-state"),
        PASSPHRASE.as_bytes(),
        small_options(),
    )
    .await
    .err()
    .expect("second init");
    assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_config_or_key_objects_are_corrupt() {
    let cases: [(&str, &[u8]); 4] = [
        (CONFIG_KEY, b"not json at all"),
        (CONFIG_KEY, b"{\"format\":\"something-else\"}"),
        (DEFAULT_KEY_KEY, b"garbage key file"),
        (DEFAULT_KEY_KEY, b""),
    ];
    for (key, bytes) in cases {
        let local = LocalRepo::new();
        drop(local.init(small_options()).await);
        std::fs::write(local.root().join(key), bytes).unwrap();
        let err = Repository::open(local.backend(), &local.state(), PASSPHRASE.as_bytes())
            .await
            .err()
            .expect("damaged repository must not open");
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{key} = {bytes:?}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_open_of_the_same_index_is_unavailable() {
    let local = LocalRepo::new();
    let repo = local.init(small_options()).await;
    let err = Repository::open(local.backend(), &local.state(), PASSPHRASE.as_bytes())
        .await
        .err()
        .expect("index is locked");
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    drop(repo);
    drop(local.open().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_backup_ids_are_not_found() {
    let (repo, _state) = memory_repo(small_options()).await;
    let err = repo
        .backup(&bid("00000000-0000-0000-0000-000000000000"))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    let ids: BTreeSet<BackupId> = repo.backups().unwrap().into_iter().map(|m| m.id).collect();
    assert!(ids.is_empty());
}

/// A chunk the index has lost is named by check, with the backup that uses it, and only
/// that backup (the chunk ids are walked beside the index, not looked up one by one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_names_a_chunk_the_index_lost_and_the_backup_using_it() {
    let d = two_backups().await;
    let b_pack = d
        .local
        .pack_files()
        .into_iter()
        .find(|path| !d.a_packs.contains(path))
        .expect("b wrote a pack of its own");
    let (lost, _) = chunks_in(&d.repo, pack_id(&b_pack))
        .into_iter()
        .find(|(_, location)| location.kind == BlobKind::Data)
        .expect("a data chunk in b's pack");
    d.repo.index().remove_chunks(&[lost]).expect("remove");
    let report = d.repo.check(false, progress()).await.expect("check");
    assert_eq!(report.problems.len(), 1, "{}", problems_text(&report));
    let problem = &report.problems[0];
    assert_eq!(problem.chunk, Some(lost));
    assert_eq!(problem.backup.as_deref(), Some(d.b.id.as_str()));
    assert_eq!(problem.message, "chunk is not in the index");
}
