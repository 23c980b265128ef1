//! Catalog indexes: a folder listed, and a path found, through the index agree with the
//! catalog read whole, page by page; a tar not in path order gets no index and answers the
//! same by reading through; gc keeps the index and check reads it. And a folder downloaded
//! as a tar archive holds exactly that folder.

use std::fs;
use std::path::Path;

use stowage::format::catalog::CatalogEntry;
use stowage::format::manifest::BackupManifest;
use stowage::repo::gc::GcOptions;
use stowage::repo::ingest::IngestOptions;
use stowage::repo::{RepoError, Repository};

use crate::support::*;
use crate::tree::{catalog_of, tar};

/// A tree of about 7,400 entries: names that sort differently bytewise and by path
/// (`a`, `a-b`, `a.c`, `a/x`), three folders of 24 subfolders, each folder's catalog lines
/// spanning several index blocks and chunks, and a wide folder.
fn build_wide_tree(root: &Path) {
    for dir in ["a", "a-b", "a/x", "wide"] {
        fs::create_dir_all(root.join(dir)).unwrap();
    }
    fs::write(root.join("a.c"), b"a.c").unwrap();
    fs::write(root.join("a/x/inner"), b"inner").unwrap();
    fs::write(root.join("a-b/file"), b"file").unwrap();
    for d in 0..3 {
        for s in 0..24 {
            let sub = root.join(format!("d{d}/s{s:02}"));
            fs::create_dir_all(&sub).unwrap();
            for f in 0..100 {
                fs::write(sub.join(format!("file-{f:03}.txt")), format!("{d}{s}{f}")).unwrap();
            }
        }
    }
    for f in 0..150 {
        fs::write(root.join(format!("wide/w{f:04}")), b"w").unwrap();
    }
}

fn parent_of(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(parent, _)| parent)
}

fn name_of(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Lists `dir` through `catalog_folder`, `limit` entries a page.
async fn list_paged(
    repo: &Repository,
    manifest: &BackupManifest,
    dir: &str,
    limit: usize,
) -> (Vec<CatalogEntry>, bool) {
    let mut listed = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = repo
            .catalog_folder(manifest, dir, after.as_deref(), limit)
            .await
            .expect("list a folder");
        assert!(page.entries.len() <= limit);
        listed.extend(page.entries.iter().cloned());
        if !page.more {
            return (listed, page.indexed);
        }
        assert_eq!(page.entries.len(), limit, "a page before the last is full");
        after = page.entries.last().map(|e| name_of(&e.path).to_string());
    }
}

/// Every folder of the catalog, listed whole and in pages of 7, equals the entries the full
/// catalog places in it; every path is found, and paths that are not there are not.
async fn assert_lookups_agree(repo: &Repository, manifest: &BackupManifest, indexed: bool) {
    let entries = catalog_of(repo, manifest).await;
    let mut folders: Vec<&str> = entries
        .iter()
        .filter(|e| e.kind == stowage::format::catalog::EntryKind::Dir)
        .map(|e| e.path.as_str())
        .collect();
    folders.push("");
    for dir in folders {
        let expected: Vec<CatalogEntry> = entries
            .iter()
            .filter(|e| parent_of(&e.path) == dir)
            .cloned()
            .collect();
        let (whole, used_index) = list_paged(repo, manifest, dir, 10_000).await;
        assert_eq!(used_index, indexed, "{dir:?}");
        assert_eq!(whole, expected, "folder {dir:?} listed whole");
        let (paged, _) = list_paged(repo, manifest, dir, 7).await;
        assert_eq!(paged, expected, "folder {dir:?} listed 7 at a time");
    }
    for entry in entries.iter().step_by(13).chain(entries.last()) {
        let found = repo
            .catalog_entry(manifest, &entry.path)
            .await
            .expect("lookup");
        assert_eq!(found.as_ref(), Some(entry), "{}", entry.path);
    }
    for missing in ["d0/s00/file-999.txt", "d0/s", "a/x/inner/deeper", "zz", "A"] {
        let found = repo.catalog_entry(manifest, missing).await.expect("lookup");
        assert!(found.is_none(), "{missing} is not in the catalog");
    }
    let (nothing, _) = list_paged(repo, manifest, "no/such/folder", 10).await;
    assert!(nothing.is_empty());
    let refused = repo.catalog_entry(manifest, "../etc/passwd").await;
    assert!(
        matches!(refused, Err(RepoError::InvalidInput(_))),
        "{refused:?}"
    );
    let refused = repo.catalog_folder(manifest, "", Some("a/b"), 10).await;
    assert!(
        matches!(refused, Err(RepoError::InvalidInput(_))),
        "{refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexed_tree_catalogs_answer_folders_and_paths_like_a_full_read() {
    let (repo, _state) = memory_repo(small_options()).await;
    let source = tempfile::tempdir().unwrap();
    build_wide_tree(source.path());
    let (manifest, skipped) = repo
        .backup_tree(
            source.path(),
            IngestOptions::new("tree", "wide"),
            progress(),
        )
        .await
        .expect("tree backup");
    assert!(skipped.is_empty(), "{skipped:?}");
    let catalog = manifest.catalog.as_ref().expect("a catalog");
    let index = catalog.index.as_ref().expect("a tree catalog is indexed");
    // About 7,400 lines of 120-odd bytes: several 64 KiB blocks.
    assert!(index.marks >= 8, "{} marks", index.marks);
    assert_lookups_agree(&repo, &manifest, true).await;
    // The top folder's listing jumps over the big folders' contents.
    let top = repo.catalog_folder(&manifest, "", None, 100).await.unwrap();
    assert_eq!(top.entries.len(), 7, "{:?}", top.entries);
    assert!(top.reads > 1 && top.reads <= 5, "{} reads", top.reads);
    let wide = repo
        .catalog_folder(&manifest, "wide", None, 100)
        .await
        .unwrap();
    assert_eq!((wide.entries.len(), wide.more, wide.reads), (100, true, 1));

    // An index that does not belong to the catalog is caught, not followed: the same tree
    // with one more entry at its top has every line one place later.
    fs::write(source.path().join("0-first"), b"first").unwrap();
    let (shifted, _) = repo
        .backup_tree(
            source.path(),
            IngestOptions::new("tree", "wide"),
            progress(),
        )
        .await
        .expect("second tree backup");
    let mut mixed = manifest.clone();
    let mixed_catalog = mixed.catalog.as_mut().unwrap();
    mixed_catalog.index = shifted.catalog.as_ref().unwrap().index.clone();
    let deep = "d2/s23/file-099.txt";
    let found = repo.catalog_entry(&mixed, deep).await;
    assert!(
        matches!(found, Err(RepoError::CorruptCatalog { .. })),
        "{found:?}"
    );
    let verified = repo.verify_catalog(&mixed).await;
    assert!(
        matches!(verified, Err(RepoError::CorruptCatalog { .. })),
        "{verified:?}"
    );
    repo.purge(&shifted.id).await.expect("purge");

    // gc keeps the index's blobs; check reads the catalog against its index.
    let other = repo
        .backup_stream(
            Box::new(std::io::Cursor::new(random_bytes(300 * KIB, 9))),
            IngestOptions::new("other", "other"),
            progress(),
        )
        .await
        .expect("another backup");
    repo.purge(&other.id).await.expect("purge");
    repo.gc(GcOptions::default(), progress()).await.expect("gc");
    assert_lookups_agree(&repo, &manifest, true).await;
    let report = repo.check(true, progress()).await.expect("check");
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.catalog_entries, catalog.entries);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tar_catalogs_are_indexed_only_in_path_order() {
    let (repo, _state) = memory_repo(small_options()).await;
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("src");
    build_wide_tree(&source);
    let src = source.to_str().unwrap();
    // Sorted names give path order; naming the folders backwards does not.
    tar(
        work.path(),
        &[
            "--sort=name",
            "-cf",
            "sorted.tar",
            "-C",
            src,
            "a",
            "a-b",
            "a.c",
            "d0",
            "d1",
            "wide",
        ],
    );
    tar(
        work.path(),
        &[
            "--sort=name",
            "-cf",
            "backwards.tar",
            "-C",
            src,
            "wide",
            "d1",
            "d0",
            "a.c",
            "a-b",
            "a",
        ],
    );
    for (name, indexed) in [("sorted.tar", true), ("backwards.tar", false)] {
        let manifest = backup_file(&repo, work.path(), name).await;
        let catalog = manifest.catalog.as_ref().expect("a tar catalog");
        assert_eq!(catalog.index.is_some(), indexed, "{name}");
        assert_lookups_agree(&repo, &manifest, indexed).await;
        let top = repo.catalog_folder(&manifest, "", None, 100).await.unwrap();
        assert_eq!(top.entries.len(), 6, "{name}");
        // With an index the listing jumps over d0's contents; without, it reads through.
        assert_eq!(top.reads > 1, indexed, "{name}: {} reads", top.reads);
    }
    let report = repo.check(true, progress()).await.expect("check");
    assert!(report.is_ok(), "{:?}", report.problems);
}

/// The tar archive of `dir` in `manifest`, extracted by /usr/bin/tar into a new folder.
/// Backs up the file `name` of `dir` as a stream of series `tar`.
async fn backup_file(repo: &Repository, dir: &Path, name: &str) -> BackupManifest {
    let file = fs::File::open(dir.join(name)).unwrap();
    repo.backup_stream(Box::new(file), IngestOptions::new("tar", name), progress())
        .await
        .expect("tar backup")
}

async fn extract_folder(
    repo: &Repository,
    manifest: &BackupManifest,
    dir: &str,
) -> tempfile::TempDir {
    use futures::TryStreamExt;
    let stream = repo.folder_tar(manifest, dir).await.expect("folder tar");
    let pieces: Vec<bytes::Bytes> = stream.try_collect().await.expect("the whole archive");
    let out = tempfile::tempdir().unwrap();
    fs::write(out.path().join("folder.tar"), pieces.concat()).unwrap();
    fs::create_dir(out.path().join("x")).unwrap();
    tar(out.path(), &["-xf", "folder.tar", "-C", "x"]);
    out
}

/// Every path under `root` with its kind and content (or link target).
fn tree_listing(root: &Path) -> Vec<(String, String)> {
    let mut listed = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path
                .strip_prefix(root)
                .unwrap()
                .to_str()
                .unwrap()
                .to_string();
            let meta = fs::symlink_metadata(&path).unwrap();
            let what = if meta.file_type().is_symlink() {
                format!("link {}", fs::read_link(&path).unwrap().display())
            } else if meta.is_dir() {
                pending.push(path.clone());
                "dir".to_string()
            } else {
                format!(
                    "file {}",
                    String::from_utf8_lossy(&fs::read(&path).unwrap())
                )
            };
            listed.push((name, what));
        }
    }
    listed.sort();
    listed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_downloads_as_a_tar_of_exactly_that_folder() {
    let (repo, _state) = memory_repo(small_options()).await;
    let source = tempfile::tempdir().unwrap();
    build_wide_tree(source.path());
    std::os::unix::fs::symlink("../a.c", source.path().join("d1/s05/link")).unwrap();
    let (manifest, _) = repo
        .backup_tree(
            source.path(),
            IngestOptions::new("tree", "wide"),
            progress(),
        )
        .await
        .expect("tree backup");
    for dir in ["d1/s05", "a", "d0"] {
        let out = extract_folder(&repo, &manifest, dir).await;
        let name = dir.rsplit('/').next().unwrap();
        let parent = source.path().join(dir).parent().unwrap().to_path_buf();
        let expected: Vec<_> = tree_listing(&parent)
            .into_iter()
            .filter(|(path, _)| path == name || path.starts_with(&format!("{name}/")))
            .collect();
        assert_eq!(tree_listing(&out.path().join("x")), expected, "{dir}");
    }
    let whole = extract_folder(&repo, &manifest, "").await;
    assert_eq!(
        tree_listing(&whole.path().join("x")),
        tree_listing(source.path())
    );
    for missing in ["a.c", "nothing", "d0/s00/file-000.txt"] {
        let refused = repo.folder_tar(&manifest, missing).await.err();
        assert!(
            matches!(refused, Some(RepoError::InvalidInput(_))),
            "{missing}: {refused:?}"
        );
    }

    // A plain tar stream's folder, read from the archive's own bytes; a gzip one is refused.
    let work = tempfile::tempdir().unwrap();
    let src = source.path().to_str().unwrap();
    tar(work.path(), &["-cf", "plain.tar", "-C", src, "d1", "a"]);
    tar(work.path(), &["-czf", "packed.tgz", "-C", src, "a"]);
    let plain = backup_file(&repo, work.path(), "plain.tar").await;
    let out = extract_folder(&repo, &plain, "d1/s05").await;
    let expected: Vec<_> = tree_listing(&source.path().join("d1"))
        .into_iter()
        .filter(|(path, _)| path == "s05" || path.starts_with("s05/"))
        .collect();
    assert_eq!(tree_listing(&out.path().join("x")), expected);
    // A folder whose files lie on both sides of 9 MiB of another file: the gap is jumped.
    fs::write(source.path().join("big.bin"), random_bytes(9 * MIB, 4)).unwrap();
    let members = [
        "d1",
        "d1/s05",
        "d1/s05/file-000.txt",
        "big.bin",
        "d1/s05/file-001.txt",
    ];
    let mut args = vec!["--no-recursion", "-cf", "spread.tar", "-C", src];
    args.extend(members);
    tar(work.path(), &args);
    let spread = backup_file(&repo, work.path(), "spread.tar").await;
    let out = extract_folder(&repo, &spread, "d1/s05").await;
    let listed = tree_listing(&out.path().join("x"));
    let names: Vec<&str> = listed.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["s05", "s05/file-000.txt", "s05/file-001.txt"]);
    assert_eq!(listed[2].1, "file 151", "{listed:?}");

    let packed = backup_file(&repo, work.path(), "packed.tgz").await;
    let refused = repo.folder_tar(&packed, "a").await.err();
    assert!(
        matches!(refused, Some(RepoError::InvalidInput(_))),
        "{refused:?}"
    );
}
