//! Directory trees: a round trip with metadata, the catalog, refusals, and tar streams
//! whose entries become a catalog.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use filetime::FileTime;
use stowage::error::ErrorKind;
use stowage::format::catalog::{CatalogEntry, EntryKind};
use stowage::format::manifest::{BackupKind, BackupManifest, TarEncoding};
use stowage::repo::ingest::IngestOptions;
use stowage::repo::{RepoError, Repository};

use crate::support::*;

/// One entry of the test tree.
pub(crate) enum Node {
    Dir { mode: u32 },
    File { mode: u32, data: Vec<u8> },
    Link { target: &'static str },
}

/// The test tree: relative path → node, with a fixed past mtime per entry.
pub(crate) fn sample_tree() -> Vec<(&'static str, Node)> {
    use Node::*;
    vec![
        (
            "a.txt",
            File {
                mode: 0o644,
                data: compressible_bytes(1000, 1),
            },
        ),
        (
            "abs-link",
            Link {
                target: "/tmp/stowage-absolute-link-target",
            },
        ),
        (
            "big.bin",
            File {
                mode: 0o644,
                data: random_bytes(700 * KIB, 2),
            },
        ),
        ("dir1", Dir { mode: 0o755 }),
        (
            "dir1/b.txt",
            File {
                mode: 0o640,
                data: compressible_bytes(70 * KIB, 3),
            },
        ),
        ("dir1/nested", Dir { mode: 0o700 }),
        (
            "dir1/nested/deep.dat",
            File {
                mode: 0o600,
                data: random_bytes(300 * KIB + 1, 4),
            },
        ),
        (
            "dir1/nested/rel-link",
            Link {
                target: "../../a.txt",
            },
        ),
        (
            "dir1/one-byte",
            File {
                mode: 0o444,
                data: vec![7],
            },
        ),
        (
            "dir1-x",
            File {
                mode: 0o644,
                data: b"sorts after dir1's contents".to_vec(),
            },
        ),
        (
            "empty.bin",
            File {
                mode: 0o600,
                data: Vec::new(),
            },
        ),
        ("emptydir", Dir { mode: 0o750 }),
        (
            "exec.sh",
            File {
                mode: 0o755,
                data: b"#!/bin/sh\necho hi\n".to_vec(),
            },
        ),
        (
            "z-last",
            File {
                mode: 0o644,
                data: random_bytes(20 * KIB, 5),
            },
        ),
        (
            "ünïcödé name.txt",
            File {
                mode: 0o644,
                data: "ü".repeat(100).into_bytes(),
            },
        ),
    ]
}

/// A fixed past mtime for the `n`th entry, with nanoseconds.
fn mtime_of(n: usize) -> FileTime {
    FileTime::from_unix_time(1_500_000_000 + 86_400 * n as i64, 123_456_789 + n as u32)
}

/// Creates the sample tree under `root` (which must exist).
pub(crate) fn build_tree(root: &Path) {
    let tree = sample_tree();
    for (path, node) in &tree {
        let full = root.join(path);
        match node {
            Node::Dir { .. } => fs::create_dir_all(&full).expect("mkdir"),
            Node::File { data, .. } => fs::write(&full, data).expect("write file"),
            Node::Link { target } => std::os::unix::fs::symlink(target, &full).expect("symlink"),
        }
    }
    // Modes and times last, deepest first, so creating children does not change them.
    for (n, (path, node)) in tree.iter().enumerate().rev() {
        let full = root.join(path);
        match node {
            Node::Dir { mode } | Node::File { mode, .. } => {
                fs::set_permissions(&full, fs::Permissions::from_mode(*mode)).expect("chmod")
            }
            Node::Link { .. } => {}
        }
        filetime::set_symlink_file_times(&full, mtime_of(n), mtime_of(n)).expect("set mtime");
    }
}

/// Everything under `root` (not `root` itself) as relative path → metadata summary.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Seen {
    kind: &'static str,
    mode: Option<u32>,
    mtime: (i64, i64),
    uid: u32,
    gid: u32,
    content: Option<Vec<u8>>,
    link: Option<PathBuf>,
}

pub(crate) fn scan(root: &Path) -> BTreeMap<String, Seen> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Seen>) {
        for entry in fs::read_dir(dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            let meta = fs::symlink_metadata(&path).expect("lstat");
            let relative = path
                .strip_prefix(root)
                .unwrap()
                .to_str()
                .unwrap()
                .to_string();
            let kind = meta.file_type();
            let seen = Seen {
                kind: if kind.is_dir() {
                    "dir"
                } else if kind.is_symlink() {
                    "symlink"
                } else {
                    "file"
                },
                mode: (!kind.is_symlink()).then_some(meta.mode() & 0o7777),
                mtime: (meta.mtime(), meta.mtime_nsec()),
                uid: meta.uid(),
                gid: meta.gid(),
                content: kind.is_file().then(|| fs::read(&path).expect("read")),
                link: kind
                    .is_symlink()
                    .then(|| fs::read_link(&path).expect("readlink")),
            };
            out.insert(relative, seen);
            if kind.is_dir() {
                walk(root, &path, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// The catalog's entries. (The visitor's error type is the engine's `RepoError`.)
#[allow(clippy::result_large_err)]
pub(crate) async fn catalog_of(repo: &Repository, manifest: &BackupManifest) -> Vec<CatalogEntry> {
    let entries = Arc::new(Mutex::new(Vec::new()));
    let sink = entries.clone();
    repo.catalog(
        manifest,
        Box::new(move |entry| {
            sink.lock().unwrap().push(entry);
            Ok(())
        }),
    )
    .await
    .expect("catalog");
    let entries = entries.lock().unwrap().clone();
    entries
}

async fn backup_sample_tree(repo: &Repository) -> (tempfile::TempDir, BackupManifest) {
    let source = tempfile::tempdir().expect("tempdir");
    build_tree(source.path());
    let (manifest, skipped) = repo
        .backup_tree(source.path(), IngestOptions::new("tree", "src"), progress())
        .await
        .expect("backup_tree");
    assert!(skipped.is_empty(), "{skipped:?}");
    (source, manifest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tree_round_trip_keeps_content_kinds_modes_mtimes_and_links() {
    let (repo, _state) = memory_repo(small_options()).await;
    let (source, manifest) = backup_sample_tree(&repo).await;
    assert_eq!(manifest.kind, BackupKind::Tree);
    let expected_bytes: usize = sample_tree()
        .iter()
        .map(|(_, n)| match n {
            Node::File { data, .. } => data.len(),
            _ => 0,
        })
        .sum();
    assert_eq!(manifest.size, expected_bytes as u64);
    assert_eq!(
        manifest.catalog.as_ref().map(|c| c.entries),
        Some(sample_tree().len() as u64)
    );

    let target_dir = tempfile::tempdir().expect("tempdir");
    let target = target_dir.path().join("restored");
    let restored = repo
        .restore_tree(&manifest, &target, progress())
        .await
        .expect("restore_tree");
    assert_eq!(restored, manifest.size);

    let before = scan(source.path());
    let after = scan(&target);
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "restored paths"
    );
    for (path, seen) in &before {
        assert_eq!(Some(seen), after.get(path), "{path}");
    }
    // The values the tree was built with, not only equality with the source.
    for (n, (path, node)) in sample_tree().iter().enumerate() {
        let got = &after[*path];
        let t = mtime_of(n);
        assert_eq!(
            got.mtime,
            (t.unix_seconds(), i64::from(t.nanoseconds())),
            "{path} mtime"
        );
        match node {
            Node::Dir { mode } => assert_eq!((got.kind, got.mode), ("dir", Some(*mode)), "{path}"),
            Node::File { mode, data } => {
                assert_eq!((got.kind, got.mode), ("file", Some(*mode)), "{path}");
                assert!(
                    got.content.as_deref() == Some(data.as_slice()),
                    "{path} content"
                );
            }
            Node::Link { target } => {
                assert_eq!(got.kind, "symlink", "{path}");
                assert_eq!(got.link.as_deref(), Some(Path::new(target)), "{path}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_lists_entries_in_order_with_sizes_and_offsets() {
    let (repo, _state) = memory_repo(small_options()).await;
    let (source, manifest) = backup_sample_tree(&repo).await;
    let entries = catalog_of(&repo, &manifest).await;
    let tree = sample_tree();
    // Depth first, names sorted bytewise, a directory before its contents: the order
    // of the sample table.
    let paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
    let expected: Vec<&str> = tree.iter().map(|(p, _)| *p).collect();
    assert_eq!(paths, expected);

    let mut offset = 0u64;
    for (n, (entry, (path, node))) in entries.iter().zip(&tree).enumerate() {
        let meta = fs::symlink_metadata(source.path().join(path)).expect("lstat");
        assert_eq!(entry.mtime, mtime_of(n).unix_seconds(), "{path}");
        assert_eq!(entry.mtime_nsec, mtime_of(n).nanoseconds(), "{path}");
        assert_eq!((entry.uid, entry.gid), (meta.uid(), meta.gid()), "{path}");
        match node {
            Node::Dir { mode } => {
                assert_eq!(entry.kind, EntryKind::Dir, "{path}");
                assert_eq!(entry.mode, *mode, "{path}");
                assert_eq!((entry.size, entry.offset), (0, None), "{path}");
            }
            Node::File { mode, data } => {
                assert_eq!(entry.kind, EntryKind::File, "{path}");
                assert_eq!(entry.mode, *mode, "{path}");
                assert_eq!(entry.size, data.len() as u64, "{path}");
                assert_eq!(entry.offset, Some(offset), "{path}: files are concatenated");
                let range = offset..offset + entry.size;
                let bytes = read_all(&repo, &manifest, Some(range))
                    .await
                    .expect("range");
                assert!(bytes == *data, "{path}: bytes at its offset");
                offset += entry.size;
            }
            Node::Link { target } => {
                assert_eq!(entry.kind, EntryKind::Symlink, "{path}");
                assert_eq!(entry.link.as_deref(), Some(*target), "{path}");
                assert_eq!(entry.size, 0, "{path}");
            }
        }
    }
    assert_eq!(offset, manifest.size);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restoring_into_an_existing_empty_directory_works() {
    let (repo, _state) = memory_repo(small_options()).await;
    let (source, manifest) = backup_sample_tree(&repo).await;
    let target = tempfile::tempdir().expect("tempdir");
    repo.restore_tree(&manifest, target.path(), progress())
        .await
        .expect("restore into empty dir");
    assert_eq!(scan(source.path()), scan(target.path()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_tree_round_trips() {
    let (repo, _state) = memory_repo(small_options()).await;
    let source = tempfile::tempdir().expect("tempdir");
    let (manifest, _) = repo
        .backup_tree(
            source.path(),
            IngestOptions::new("empty", "src"),
            progress(),
        )
        .await
        .expect("backup empty tree");
    assert_eq!((manifest.size, manifest.chunks), (0, 0));
    assert!(catalog_of(&repo, &manifest).await.is_empty());
    let target = tempfile::tempdir().expect("tempdir");
    let out = target.path().join("t");
    repo.restore_tree(&manifest, &out, progress())
        .await
        .expect("restore");
    assert!(fs::read_dir(&out).expect("target exists").next().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restoring_a_stream_backup_as_a_tree_is_invalid_input() {
    let (repo, _state) = memory_repo(small_options()).await;
    let manifest = backup_bytes(&repo, random_bytes(1000, 1), "stream").await;
    let target = tempfile::tempdir().expect("tempdir");
    let err = repo
        .restore_tree(&manifest, &target.path().join("t"), progress())
        .await
        .expect_err("a stream is not a tree");
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(!target.path().join("t").exists(), "nothing created");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restoring_into_a_non_empty_directory_is_refused() {
    let (repo, _state) = memory_repo(small_options()).await;
    let (_source, manifest) = backup_sample_tree(&repo).await;
    let target = tempfile::tempdir().expect("tempdir");
    fs::write(target.path().join("a.txt"), b"keep me").expect("write");
    let err = repo
        .restore_tree(&manifest, target.path(), progress())
        .await
        .expect_err("non-empty target");
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().contains("not empty"), "{err}");
    assert_eq!(fs::read(target.path().join("a.txt")).unwrap(), b"keep me");
    assert_eq!(fs::read_dir(target.path()).unwrap().count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backing_up_a_file_as_a_tree_is_invalid_input_and_a_missing_root_not_found() {
    let (repo, _state) = memory_repo(small_options()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("file");
    fs::write(&file, b"x").unwrap();
    let options = || IngestOptions::new("t", "src");
    let err = repo
        .backup_tree(&file, options(), progress())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    let err = repo
        .backup_tree(&dir.path().join("missing"), options(), progress())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(repo.backups().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_series_names_are_invalid_input() {
    let (repo, _state) = memory_repo(small_options()).await;
    for series in ["", "has space", "slash/es", &"x".repeat(129)] {
        let err = try_backup_bytes(&repo, b"data".to_vec(), series)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{series:?}");
        assert!(matches!(err, RepoError::InvalidInput(_)));
    }
}

/// Runs /usr/bin/tar with `args` in `dir`.
pub(crate) fn tar(dir: &Path, args: &[&str]) {
    let status = Command::new("/usr/bin/tar")
        .args(args)
        .current_dir(dir)
        .status()
        .expect("run tar");
    assert!(status.success(), "tar {args:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tar_streams_record_a_catalog_matching_the_tree_and_restore_byte_exact() {
    let (repo, _state) = memory_repo(small_options()).await;
    let work = tempfile::tempdir().expect("tempdir");
    let source = work.path().join("src");
    fs::create_dir(&source).unwrap();
    build_tree(&source);
    let src = source.to_str().unwrap();
    tar(work.path(), &["-cf", "plain.tar", "-C", src, "."]);
    tar(work.path(), &["-czf", "packed.tgz", "-C", src, "."]);

    let tree: BTreeMap<&str, (usize, Node)> = sample_tree()
        .into_iter()
        .enumerate()
        .map(|(n, (path, node))| (path, (n, node)))
        .collect();
    for (name, encoding) in [
        ("plain.tar", TarEncoding::Plain),
        ("packed.tgz", TarEncoding::Gzip),
    ] {
        let archive = fs::read(work.path().join(name)).unwrap();
        let file = fs::File::open(work.path().join(name)).unwrap();
        let manifest = repo
            .backup_stream(Box::new(file), IngestOptions::new("tar", name), progress())
            .await
            .expect("backup tar stream");
        assert_eq!(manifest.kind, BackupKind::Stream);
        assert_eq!(manifest.tar, Some(encoding), "{name}");

        // `get` gives the archive back byte for byte.
        let (written, exported) = export_to_vec(&repo, &manifest, None).await;
        assert_eq!(written.expect("export"), archive.len() as u64);
        assert!(exported == archive, "{name}: exported bytes differ");

        // The bytes the catalog offsets refer to: the tar itself, or the gunzipped tar.
        let tar_bytes = match encoding {
            TarEncoding::Plain => archive.clone(),
            TarEncoding::Gzip => {
                let mut out = Vec::new();
                flate2::read::GzDecoder::new(archive.as_slice())
                    .read_to_end(&mut out)
                    .unwrap();
                out
            }
        };
        let entries = catalog_of(&repo, &manifest).await;
        assert_eq!(
            manifest.catalog.as_ref().unwrap().entries,
            entries.len() as u64
        );
        let mut paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
        paths.sort_unstable();
        assert_eq!(
            paths,
            tree.keys().copied().collect::<Vec<_>>(),
            "{name}: paths"
        );
        for entry in &entries {
            let (n, node) = &tree[entry.path.as_str()];
            let path = &entry.path;
            assert_eq!(entry.mtime, mtime_of(*n).unix_seconds(), "{name} {path}");
            match node {
                Node::Dir { mode } => {
                    assert_eq!(
                        (entry.kind, entry.mode),
                        (EntryKind::Dir, *mode),
                        "{name} {path}"
                    )
                }
                Node::File { mode, data } => {
                    assert_eq!((entry.kind, entry.mode), (EntryKind::File, *mode), "{path}");
                    assert_eq!(entry.size, data.len() as u64, "{name} {path}");
                    let start = entry.offset.expect("file offset") as usize;
                    assert!(
                        tar_bytes[start..start + data.len()] == data[..],
                        "{name} {path}: bytes at the catalog offset"
                    );
                    if encoding == TarEncoding::Plain {
                        let range = start as u64..(start + data.len()) as u64;
                        let got = read_all(&repo, &manifest, Some(range)).await.unwrap();
                        assert!(got == *data, "{name} {path}: ranged read at the offset");
                    }
                }
                Node::Link { target } => {
                    assert_eq!(entry.kind, EntryKind::Symlink, "{name} {path}");
                    assert_eq!(entry.link.as_deref(), Some(*target), "{name} {path}");
                }
            }
        }

        // A tar stream is still a stream: it does not restore as a tree.
        let target = work.path().join(format!("restore-{name}"));
        let err = repo
            .restore_tree(&manifest, &target, progress())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tar_detection_can_be_turned_off_and_ignores_non_tar_streams() {
    let (repo, _state) = memory_repo(small_options()).await;
    let work = tempfile::tempdir().expect("tempdir");
    let source = work.path().join("src");
    fs::create_dir(&source).unwrap();
    build_tree(&source);
    tar(
        work.path(),
        &["-cf", "plain.tar", "-C", source.to_str().unwrap(), "."],
    );
    let archive = fs::read(work.path().join("plain.tar")).unwrap();

    let mut options = IngestOptions::new("tar", "plain.tar");
    options.detect_tar = false;
    let manifest = repo
        .backup_stream(
            Box::new(std::io::Cursor::new(archive.clone())),
            options,
            progress(),
        )
        .await
        .unwrap();
    assert_eq!((manifest.tar, manifest.catalog.is_some()), (None, false));
    assert!(catalog_of(&repo, &manifest).await.is_empty());

    // A truncated archive is not a complete tar: no catalog, bytes kept as they are.
    let cut = archive[..archive.len() / 2 + 100].to_vec();
    let manifest = backup_bytes(&repo, cut.clone(), "cut").await;
    assert_eq!((manifest.tar, manifest.catalog.is_some()), (None, false));
    assert!(restore_bytes(&repo, &manifest).await == cut);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn special_files_are_cataloged_but_not_restored() {
    let (repo, _state) = memory_repo(small_options()).await;
    let source = tempfile::tempdir().unwrap();
    fs::write(source.path().join("before"), b"one").unwrap();
    let fifo = std::ffi::CString::new(source.path().join("pipe").to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path; mkfifo has no other preconditions.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0, "mkfifo");
    fs::write(source.path().join("z-after"), b"two").unwrap();
    let (manifest, skipped) = repo
        .backup_tree(
            source.path(),
            IngestOptions::new("special", "src"),
            progress(),
        )
        .await
        .expect("backup a tree with a fifo");
    assert!(skipped.is_empty(), "{skipped:?}");
    let entries = catalog_of(&repo, &manifest).await;
    let kinds: Vec<(&str, EntryKind)> = entries.iter().map(|e| (e.path.as_str(), e.kind)).collect();
    assert_eq!(
        kinds,
        [
            ("before", EntryKind::File),
            ("pipe", EntryKind::Other),
            ("z-after", EntryKind::File)
        ]
    );
    let target = tempfile::tempdir().unwrap();
    repo.restore_tree(&manifest, target.path(), progress())
        .await
        .expect("restore");
    assert_eq!(fs::read(target.path().join("before")).unwrap(), b"one");
    assert_eq!(fs::read(target.path().join("z-after")).unwrap(), b"two");
    assert!(
        !target.path().join("pipe").exists(),
        "a fifo is not recreated"
    );
}
