//! The engine side of backup sessions (`repo::assembly`), without HTTP: how an assembled
//! stream is observed in order, from memory, from packs, or read back at finish.

use bytes::Bytes;
use stowage::format::chunk_batch::{ChunkEncoding, UploadedChunk};
use stowage::format::content::ContentEntry;
use stowage::id::ChunkId;
use stowage::pipeline::chunker::cut_points;
use stowage::pipeline::keys::chunk_id_with;
use stowage::repo::assembly::{Assembly, AssemblyOptions, StreamClaim};
use stowage::repo::Repository;

use crate::support::*;

/// The stream's chunks as a client names them.
fn chunks(repo: &Repository, data: &[u8]) -> Vec<(ChunkId, Bytes)> {
    let params = repo.writer_params();
    let mut start = 0;
    cut_points(data, &params.chunker, true)
        .into_iter()
        .map(|len| {
            let bytes = Bytes::copy_from_slice(&data[start..start + len]);
            start += len;
            (chunk_id_with(&params.chunk_id_key, &bytes), bytes)
        })
        .collect()
}

async fn upload(assembly: &Assembly, chunks: &[(ChunkId, Bytes)]) {
    let batch = chunks
        .iter()
        .map(|(id, bytes)| UploadedChunk {
            id: *id,
            encoding: ChunkEncoding::Raw,
            raw_len: bytes.len() as u32,
            payload: bytes.clone(),
        })
        .collect();
    assembly.upload(batch).await.expect("upload");
}

fn entries(chunks: &[(ChunkId, Bytes)]) -> Vec<ContentEntry> {
    chunks
        .iter()
        .map(|(id, bytes)| ContentEntry {
            id: *id,
            len: bytes.len() as u32,
        })
        .collect()
}

/// With no uploaded plaintext kept, appended chunks still being stored cannot be seen in
/// order: the stream is read back at finish, and the backup is the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_whose_chunks_are_not_at_hand_is_read_back_at_finish() {
    let local = LocalRepo::new();
    let repo = local.init(small_options()).await;
    let data = compressible_bytes(3 << 20, 11);
    for recent_bytes in [0, 64 << 20] {
        let options = AssemblyOptions {
            recent_bytes,
            ..AssemblyOptions::default()
        };
        let series = format!("kept-{recent_bytes}");
        let assembly = repo
            .open_assembly(&series, "data", options)
            .await
            .expect("open");
        let chunks = chunks(&repo, &data);
        assert!(chunks.len() > 4, "{} chunks", chunks.len());
        upload(&assembly, &chunks).await;
        let all = entries(&chunks);
        let half = all.len() / 2;
        let progress = assembly
            .append(0, all[..half].to_vec())
            .await
            .expect("append");
        assembly
            .append(progress.size, all[half..].to_vec())
            .await
            .expect("append");
        let manifest = assembly
            .finish(StreamClaim {
                size: data.len() as u64,
                blake3: Some(blake3_hex(&data)),
                entries_blake3: None,
            })
            .await
            .expect("finish");
        assert_eq!(restore_bytes(&repo, &manifest).await, data);
    }
    // A wrong digest is caught on either path.
    let assembly = repo
        .open_assembly(
            "kept-0",
            "data",
            AssemblyOptions {
                recent_bytes: 0,
                ..AssemblyOptions::default()
            },
        )
        .await
        .expect("open");
    let known = assembly.known_len();
    assert!(known > 4, "the series' newest backup is known ({known})");
    refuses_a_wrong_digest(&assembly, &entries(&chunks(&repo, &data)), data.len()).await;
    let report = repo.check(true, progress()).await.expect("check");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

/// A session's sets live on disk beyond a bound: with room for four uploaded ids in
/// memory, hundreds of chunks uploaded in batches (repeats among them) are spilled and
/// merged, and every one is still found for its append with its true length; the known
/// set pages in ascending order and lets the next session append without uploading.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sessions_sets_beyond_memory_still_prove_possession_and_lengths() {
    let local = LocalRepo::new();
    let repo = local.init(small_options()).await;
    let data = random_bytes(16 << 20, 12);
    let chunks = chunks(&repo, &data);
    // More than one sampled block of the runs (128 ids each).
    assert!(chunks.len() > 150, "{} chunks", chunks.len());
    let options = || AssemblyOptions {
        uploaded_in_memory: 4,
        known_in_memory: 10,
        ..AssemblyOptions::default()
    };
    let assembly = repo
        .open_assembly("spilled", "data", options())
        .await
        .expect("open");
    for batch in chunks.chunks(7) {
        upload(&assembly, batch).await;
    }
    upload(&assembly, &chunks[..50]).await;
    assert_eq!(assembly.progress().uploaded_chunks, chunks.len() as u64);
    let all = entries(&chunks);
    let mut wrong = all[all.len() / 2];
    wrong.len += 1;
    let refused = assembly
        .append(0, vec![all[0], wrong])
        .await
        .expect_err("a wrong length");
    assert!(refused.to_string().contains("bytes long"), "{refused}");
    let stranger = ContentEntry {
        id: ChunkId([7; 32]),
        len: 10,
    };
    let refused = assembly
        .append(0, vec![stranger])
        .await
        .expect_err("an id never uploaded");
    assert!(refused.to_string().contains("upload it first"), "{refused}");
    let first = append_and_finish(&assembly, &all, 64, &data).await;
    assert_eq!(restore_bytes(&repo, &first).await, data);

    let next = repo
        .open_assembly("spilled", "data", options())
        .await
        .expect("open");
    let mut expected: Vec<ChunkId> = chunks.iter().map(|(id, _)| *id).collect();
    expected.sort_unstable();
    expected.dedup();
    assert_eq!(next.known_len(), expected.len() as u64);
    let mut paged = Vec::new();
    while (paged.len() as u64) < next.known_len() {
        let page = next
            .known_page(paged.len() as u64, 100)
            .await
            .expect("page");
        assert!(!page.is_empty());
        paged.extend(page);
    }
    assert_eq!(paged, expected, "the known set pages in ascending order");
    assert!(next
        .known_page(next.known_len(), 100)
        .await
        .unwrap()
        .is_empty());
    let second = append_and_finish(&next, &all, 100, &data).await;
    assert_eq!(second.new_chunks, 0);
    assert_eq!(restore_bytes(&repo, &second).await, data);
}

/// Appends `entries` whole, then finishes with a wrong digest: refused, nothing committed.
async fn refuses_a_wrong_digest(assembly: &Assembly, entries: &[ContentEntry], size: usize) {
    assembly.append(0, entries.to_vec()).await.expect("append");
    let refused = assembly
        .finish(StreamClaim {
            size: size as u64,
            blake3: Some(blake3_hex(b"other")),
            entries_blake3: None,
        })
        .await
        .expect_err("a wrong digest");
    assert!(
        refused.to_string().contains("nothing was committed"),
        "{refused}"
    );
}

/// Appends `entries` in batches of `batch`, then finishes the stream as `data`.
async fn append_and_finish(
    assembly: &Assembly,
    entries: &[ContentEntry],
    batch: usize,
    data: &[u8],
) -> stowage::format::manifest::BackupManifest {
    let mut at = 0;
    for batch in entries.chunks(batch) {
        at = assembly
            .append(at, batch.to_vec())
            .await
            .expect("append")
            .size;
    }
    assembly
        .finish(StreamClaim {
            size: data.len() as u64,
            blake3: Some(blake3_hex(data)),
            entries_blake3: None,
        })
        .await
        .expect("finish")
}

/// A session that appends its series' newest stream again, entry for entry, inherits
/// that backup's digest instead of reading the stream back; one that departs from it
/// (in a batch, at its end, or by stopping short) has the bytes repeated so far observed
/// from the previous backup, and its digest is still checked against the client's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_stream_inherits_its_digest_and_a_departing_one_is_read() {
    let local = LocalRepo::new();
    drop(local.init(small_options()).await);
    let backend = ReadCounter::new(local.backend());
    let repo = local.open_with(backend.clone()).await;
    let data = random_bytes(4 << 20, 13);
    let options = || AssemblyOptions {
        detect_tar: false,
        ..AssemblyOptions::default()
    };
    let first_chunks = chunks(&repo, &data);
    assert!(first_chunks.len() > 20, "{} chunks", first_chunks.len());
    let first = repo
        .open_assembly("r", "data", options())
        .await
        .expect("open");
    upload(&first, &first_chunks).await;
    let first = append_and_finish(&first, &entries(&first_chunks), 5, &data).await;

    // Unchanged, in other batches: barely anything is read from the packs.
    let read_before = backend.pack_bytes();
    let again = repo
        .open_assembly("r", "data", options())
        .await
        .expect("open");
    let repeated = append_and_finish(&again, &entries(&first_chunks), 7, &data).await;
    let read = backend.pack_bytes() - read_before;
    assert!(
        read < data.len() as u64 / 20,
        "{read} bytes read from packs for a {}-byte repeat",
        data.len()
    );
    assert_eq!(repeated.blake3, first.blake3);
    assert_eq!(repeated.content, first.content);
    assert_eq!(restore_bytes(&repo, &repeated).await, data);

    // A wrong digest from the client is still refused.
    let wrong = repo
        .open_assembly("r", "data", options())
        .await
        .expect("open");
    refuses_a_wrong_digest(&wrong, &entries(&first_chunks), data.len()).await;

    // Departures: the last byte changed (inside the last batch), a chunk inserted in
    // the middle, the stream cut short, and the stream with more after it.
    let mut last_changed = data.clone();
    *last_changed.last_mut().unwrap() ^= 1;
    let mut inserted = data[..data.len() / 2].to_vec();
    inserted.extend(random_bytes(100_000, 14));
    inserted.extend(&data[data.len() / 2..]);
    let short = data[..data.len() - 200_000].to_vec();
    let mut longer = data.clone();
    longer.extend(random_bytes(300_000, 15));
    for (name, changed) in [
        ("last byte", last_changed),
        ("inserted", inserted),
        ("short", short),
        ("longer", longer),
    ] {
        let session = repo
            .open_assembly("r", "data", options())
            .await
            .expect("open");
        let changed_chunks = chunks(&repo, &changed);
        upload(&session, &changed_chunks).await;
        let manifest = append_and_finish(&session, &entries(&changed_chunks), 6, &changed).await;
        assert_eq!(manifest.blake3, Some(blake3_hex(&changed)), "{name}");
        assert_eq!(restore_bytes(&repo, &manifest).await, changed, "{name}");
        // Back to the original for the next departure.
        let back = repo
            .open_assembly("r", "data", options())
            .await
            .expect("open");
        upload(&back, &first_chunks).await;
        append_and_finish(&back, &entries(&first_chunks), 9, &data).await;
    }
    let report = repo.check(true, progress()).await.expect("check");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

/// A tar stream sent again through a session that looks for a tar takes the previous
/// backup's catalog with its digest, reading next to nothing; a changed tar, or one
/// whose previous backup was never looked at for a tar, has its catalog read from the
/// bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_tar_takes_its_catalog_and_a_changed_one_is_read_again() {
    let local = LocalRepo::new();
    drop(local.init(small_options()).await);
    let backend = ReadCounter::new(local.backend());
    let repo = local.open_with(backend.clone()).await;
    let files: Vec<(String, Vec<u8>)> = (0..16)
        .map(|n| (format!("dir/file-{n:02}"), random_bytes(200_000, 40 + n)))
        .collect();
    fn named(files: &[(String, Vec<u8>)]) -> Vec<(&str, Vec<u8>)> {
        files.iter().map(|(p, d)| (p.as_str(), d.clone())).collect()
    }
    let work = tempfile::tempdir().unwrap();
    let tar = plain_tar(&work.path().join("a"), &named(&files));
    let tar_chunks = chunks(&repo, &tar);
    let looking = AssemblyOptions::default;
    let session = repo
        .open_assembly("t", "a.tar", looking())
        .await
        .expect("open");
    upload(&session, &tar_chunks).await;
    let first = append_and_finish(&session, &entries(&tar_chunks), 5, &tar).await;
    let catalog = first.catalog.clone().expect("a tar has a catalog");
    assert!(first.tar.is_some());

    let read_before = backend.pack_bytes();
    let again = repo
        .open_assembly("t", "a.tar", looking())
        .await
        .expect("open");
    let repeated = append_and_finish(&again, &entries(&tar_chunks), 7, &tar).await;
    let read = backend.pack_bytes() - read_before;
    assert!(
        read < tar.len() as u64 / 20,
        "{read} bytes read from packs for a {}-byte repeat",
        tar.len()
    );
    assert_eq!(
        (&repeated.blake3, &repeated.catalog, repeated.tar),
        (&first.blake3, &first.catalog, first.tar)
    );
    assert_eq!(
        repo.verify_catalog(&repeated).await.expect("catalog"),
        catalog.entries
    );
    assert_eq!(restore_bytes(&repo, &repeated).await, tar);

    // One more file: the catalog is read from the new bytes.
    let mut more = files.clone();
    more.push(("dir/new".into(), random_bytes(300_000, 60)));
    let changed = plain_tar(&work.path().join("b"), &named(&more));
    let changed_chunks = chunks(&repo, &changed);
    let session = repo
        .open_assembly("t", "b.tar", looking())
        .await
        .expect("open");
    upload(&session, &changed_chunks).await;
    let manifest = append_and_finish(&session, &entries(&changed_chunks), 6, &changed).await;
    let new_catalog = manifest.catalog.clone().expect("a tar has a catalog");
    assert_eq!(new_catalog.entries, catalog.entries + 1);
    assert_eq!(
        repo.verify_catalog(&manifest).await.expect("catalog"),
        new_catalog.entries
    );
    assert_eq!(restore_bytes(&repo, &manifest).await, changed);

    // A previous backup made without looking for a tar says nothing of one: the same
    // bytes sent to a session that looks get their catalog all the same.
    let blind = AssemblyOptions {
        detect_tar: false,
        ..AssemblyOptions::default()
    };
    let session = repo.open_assembly("u", "a.tar", blind).await.expect("open");
    upload(&session, &tar_chunks).await;
    let unlooked = append_and_finish(&session, &entries(&tar_chunks), 5, &tar).await;
    assert_eq!(unlooked.catalog, None);
    let session = repo
        .open_assembly("u", "a.tar", looking())
        .await
        .expect("open");
    let looked = append_and_finish(&session, &entries(&tar_chunks), 5, &tar).await;
    assert_eq!(looked.catalog, first.catalog);
    assert_eq!(looked.tar, first.tar);
    let report = repo.check(true, progress()).await.expect("check");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

/// A backend that counts the bytes read from packs.
struct ReadCounter {
    inner: stowage::backend::DynBackend,
    pack_bytes: std::sync::atomic::AtomicU64,
}

impl ReadCounter {
    fn new(inner: stowage::backend::DynBackend) -> std::sync::Arc<ReadCounter> {
        std::sync::Arc::new(ReadCounter {
            inner,
            pack_bytes: Default::default(),
        })
    }

    fn pack_bytes(&self) -> u64 {
        self.pack_bytes.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl stowage::backend::Backend for ReadCounter {
    async fn put(&self, key: &str, data: Bytes) -> Result<(), stowage::backend::BackendError> {
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
    ) -> Result<Bytes, stowage::backend::BackendError> {
        let read = self.inner.get(key, range).await?;
        if key.starts_with(stowage::repo::PACKS_PREFIX) {
            self.pack_bytes
                .fetch_add(read.len() as u64, std::sync::atomic::Ordering::SeqCst);
        }
        Ok(read)
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
        self.inner.list(prefix).await
    }

    fn describe(&self) -> String {
        format!("read-counting {}", self.inner.describe())
    }
}
