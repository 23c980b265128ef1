//! The backend contract of `backend/mod.rs` as executable assertions (test-only).
//!
//! [`run_all`] exercises one backend through the [`Backend`] trait alone and panics on
//! the first breach. Each check uses its own key prefix, so the backend may hold other
//! objects. Behaviour that the trait cannot observe (durability, temporaries on disk)
//! is tested next to each implementation instead.

use std::fmt::Debug;
use std::sync::Arc;

use bytes::Bytes;

use super::{Backend, BackendError, DynBackend, MAX_COMPONENT_LEN, MAX_KEY_LEN};

const MIB: usize = 1 << 20;

/// Checks every rule of the contract against `backend`.
pub async fn run_all(backend: DynBackend) {
    let b = backend.as_ref();
    round_trips(b).await;
    replace(b).await;
    ranges(b).await;
    missing(b).await;
    delete(b).await;
    list(b).await;
    streaming(b).await;
    abandoned_uploads(b).await;
    invalid_keys(b).await;
    concurrent_puts(&backend).await;
    concurrent_replacements(&backend).await;
}

/// Deterministic, non-repeating-looking bytes; `seed` tells objects apart.
fn pattern(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| ((i % 251) as u8).wrapping_mul(7).wrapping_add(seed))
        .collect::<Vec<u8>>()
        .into()
}

async fn get(b: &dyn Backend, key: &str) -> Bytes {
    match b.get(key, None).await {
        Ok(data) => data,
        Err(error) => panic!("get {key}: {error}"),
    }
}

async fn put(b: &dyn Backend, key: &str, data: Bytes) {
    if let Err(error) = b.put(key, data).await {
        panic!("put {key}: {error}");
    }
}

async fn keys(b: &dyn Backend, prefix: &str) -> Vec<String> {
    match b.list(prefix).await {
        Ok(listed) => listed.into_iter().map(|meta| meta.key).collect(),
        Err(error) => panic!("list {prefix:?}: {error}"),
    }
}

fn assert_not_found<T: Debug>(result: Result<T, BackendError>, what: &str) {
    assert!(
        matches!(result, Err(BackendError::NotFound { .. })),
        "{what}: expected NotFound, got {result:?}"
    );
}

fn assert_unsatisfiable<T: Debug>(result: Result<T, BackendError>, what: &str) {
    assert!(
        matches!(result, Err(BackendError::RangeNotSatisfiable { .. })),
        "{what}: expected RangeNotSatisfiable, got {result:?}"
    );
}

async fn round_trips(b: &dyn Backend) {
    for (key, data) in [
        ("conf-rt/empty", Bytes::new()),
        ("conf-rt/one", Bytes::from_static(b"x")),
        ("conf-rt/deep/er/big", pattern(3 * MIB, 1)),
    ] {
        put(b, key, data.clone()).await;
        assert!(get(b, key).await == data, "round trip of {key}");
        let meta = b.head(key).await.expect("head");
        assert_eq!((meta.key, meta.size), (key.to_string(), data.len() as u64));
    }
}

async fn replace(b: &dyn Backend) {
    let key = "conf-replace/obj";
    put(b, key, pattern(5000, 2)).await;
    put(b, key, pattern(10, 3)).await;
    assert_eq!(get(b, key).await, pattern(10, 3));
    assert_eq!(b.head(key).await.expect("head").size, 10);
    assert_eq!(keys(b, "conf-replace/").await, vec![key.to_string()]);
}

async fn ranges(b: &dyn Backend) {
    let key = "conf-range/obj";
    let data = pattern(1000, 4);
    put(b, key, data.clone()).await;
    for range in [
        0..10,
        400..600,
        990..1000,
        1000..1000,
        0..0,
        0..1000,
        500..500,
    ] {
        let got = b.get(key, Some(range.clone())).await.expect("ranged get");
        let expected = data.slice(range.start as usize..range.end as usize);
        assert_eq!(got, expected, "range {range:?}");
    }
    for range in [995..1001, 1000..1001, 1001..1001, 2000..3000] {
        assert_unsatisfiable(b.get(key, Some(range.clone())).await, &format!("{range:?}"));
    }
    #[allow(clippy::reversed_empty_ranges)]
    let inverted = 10..5;
    assert_unsatisfiable(b.get(key, Some(inverted)).await, "inverted range");

    put(b, "conf-range/empty", Bytes::new()).await;
    let empty = b.get("conf-range/empty", Some(0..0)).await.expect("0..0");
    assert!(empty.is_empty());
    assert_unsatisfiable(b.get("conf-range/empty", Some(0..1)).await, "past empty");

    let big = pattern(3 * MIB, 5);
    put(b, "conf-range/big", big.clone()).await;
    let middle = (MIB as u64 - 7)..(2 * MIB as u64 + 13);
    let got = b
        .get("conf-range/big", Some(middle.clone()))
        .await
        .expect("big range");
    assert!(got == big.slice(middle.start as usize..middle.end as usize));
}

async fn missing(b: &dyn Backend) {
    let key = "conf-missing/none";
    assert_not_found(b.get(key, None).await, "get");
    assert_not_found(b.get(key, Some(0..0)).await, "ranged get");
    assert_not_found(b.head(key).await, "head");
    assert_not_found(b.get("conf-missing/no/such/dir", None).await, "deep get");
    assert!(keys(b, "conf-missing/").await.is_empty());
}

async fn delete(b: &dyn Backend) {
    let key = "conf-delete/obj";
    put(b, key, pattern(100, 6)).await;
    b.delete(key).await.expect("delete");
    assert_not_found(b.get(key, None).await, "get after delete");
    assert_not_found(b.head(key).await, "head after delete");
    b.delete(key).await.expect("second delete");
    b.delete("conf-delete/never/was")
        .await
        .expect("delete missing");
    assert!(keys(b, "conf-delete/").await.is_empty());
}

async fn list(b: &dyn Backend) {
    let objects = [
        ("conf-list/c", 3),
        ("conf-list/a/y", 2),
        ("conf-list/ab", 4),
        ("conf-list/a/x", 1),
        ("conf-list/b.z", 0),
    ];
    for (key, len) in objects {
        put(b, key, pattern(len, 7)).await;
    }
    // A pending upload never shows.
    let mut pending = b.create("conf-list/pending").await.expect("create");
    pending.write(pattern(9, 8)).await.expect("write");

    let listed: Vec<(String, u64)> = b
        .list("conf-list/")
        .await
        .expect("list")
        .into_iter()
        .map(|meta| (meta.key, meta.size))
        .collect();
    let mut expected: Vec<(String, u64)> = objects
        .iter()
        .map(|&(key, len)| (key.to_string(), len as u64))
        .collect();
    expected.sort();
    assert_eq!(listed, expected, "full listing, sorted, with sizes");

    let all: Vec<String> = keys(b, "").await;
    let ours: Vec<&String> = all.iter().filter(|k| k.starts_with("conf-list/")).collect();
    assert_eq!(ours.len(), objects.len(), "empty prefix lists everything");
    assert!(all.windows(2).all(|w| w[0] < w[1]), "sorted: {all:?}");

    for (prefix, want) in [
        (
            "conf-list/a",
            &["conf-list/a/x", "conf-list/a/y", "conf-list/ab"][..],
        ),
        ("conf-list/a/", &["conf-list/a/x", "conf-list/a/y"][..]),
        ("conf-list/a/x", &["conf-list/a/x"][..]),
        ("conf-list/b", &["conf-list/b.z"][..]),
        (
            "conf-list",
            &[
                "conf-list/a/x",
                "conf-list/a/y",
                "conf-list/ab",
                "conf-list/b.z",
                "conf-list/c",
            ][..],
        ),
        ("conf-list/zz", &[][..]),
        ("conf-list/p", &[][..]),
        ("../", &[][..]),
    ] {
        assert_eq!(keys(b, prefix).await, want, "prefix {prefix:?}");
    }
    pending.abort().await.expect("abort");
}

async fn streaming(b: &dyn Backend) {
    // Replacing by upload: the old object stays until finish.
    let key = "conf-stream/obj";
    put(b, key, Bytes::from_static(b"old")).await;
    let mut writer = b.create(key).await.expect("create");
    for part in ["hello", "", " ", "world"] {
        writer.write(Bytes::from(part)).await.expect("write");
    }
    assert_eq!(get(b, key).await, "old", "visible before finish");
    writer.finish().await.expect("finish");
    assert_eq!(get(b, key).await, "hello world");

    // A new key: nothing under it until finish.
    let fresh = "conf-stream/new/obj";
    let mut writer = b.create(fresh).await.expect("create");
    writer.write(pattern(10, 9)).await.expect("write");
    assert_not_found(b.head(fresh).await, "head before finish");
    assert_not_found(b.get(fresh, None).await, "get before finish");
    writer.finish().await.expect("finish");
    assert_eq!(get(b, fresh).await, pattern(10, 9));

    let empty = "conf-stream/empty";
    b.create(empty)
        .await
        .expect("create")
        .finish()
        .await
        .expect("finish");
    assert!(get(b, empty).await.is_empty());

    streaming_large_and_interleaved(b).await;
}

async fn streaming_large_and_interleaved(b: &dyn Backend) {
    let (first, second) = (pattern(3 * MIB, 10), pattern(MIB + 17, 11));
    let mut one = b.create("conf-stream/big1").await.expect("create");
    let mut two = b.create("conf-stream/big2").await.expect("create");
    for start in (0..first.len()).step_by(64 * 1024) {
        let end = (start + 64 * 1024).min(first.len());
        one.write(first.slice(start..end)).await.expect("write");
        if start < second.len() {
            let end = (start + 64 * 1024).min(second.len());
            two.write(second.slice(start..end)).await.expect("write");
        }
    }
    two.finish().await.expect("finish");
    one.finish().await.expect("finish");
    assert!(get(b, "conf-stream/big1").await == first, "3 MiB upload");
    assert!(
        get(b, "conf-stream/big2").await == second,
        "interleaved upload"
    );
}

async fn abandoned_uploads(b: &dyn Backend) {
    let mut aborted = b.create("conf-abandon/aborted").await.expect("create");
    aborted.write(pattern(100, 12)).await.expect("write");
    aborted.abort().await.expect("abort");
    assert_not_found(b.head("conf-abandon/aborted").await, "after abort");

    let mut dropped = b.create("conf-abandon/dropped").await.expect("create");
    dropped.write(pattern(100, 13)).await.expect("write");
    drop(dropped);
    assert_not_found(b.head("conf-abandon/dropped").await, "after drop");

    // An abandoned replacement leaves the old object intact.
    put(b, "conf-abandon/kept", Bytes::from_static(b"kept")).await;
    let mut replacing = b.create("conf-abandon/kept").await.expect("create");
    replacing.write(pattern(100, 14)).await.expect("write");
    replacing.abort().await.expect("abort");
    b.create("conf-abandon/kept").await.expect("create");
    assert_eq!(get(b, "conf-abandon/kept").await, "kept");
    assert_eq!(keys(b, "conf-abandon/").await, vec!["conf-abandon/kept"]);
}

async fn invalid_keys(b: &dyn Backend) {
    let too_long = ["x"; 3].map(|part| part.repeat(200)).join("/");
    let component_too_long = "x".repeat(MAX_COMPONENT_LEN + 1);
    let bad = [
        "",
        "/abs",
        "a//b",
        "a/../b",
        "..",
        ".",
        "UPPER",
        "a b",
        "a/",
        "é",
        "tmp",
        "tmp/x",
        &too_long,
        &component_too_long,
    ];
    for key in bad {
        let invalid =
            |r: &Result<(), BackendError>| matches!(r, Err(BackendError::InvalidKey { .. }));
        let put = b.put(key, Bytes::from_static(b"x")).await;
        assert!(invalid(&put), "put {key:?}: {put:?}");
        let created = b.create(key).await.map(|_| ());
        assert!(invalid(&created), "create {key:?}: {created:?}");
        let got = b.get(key, None).await.map(|_| ());
        assert!(invalid(&got), "get {key:?}: {got:?}");
        let ranged = b.get(key, Some(0..0)).await.map(|_| ());
        assert!(invalid(&ranged), "ranged get {key:?}: {ranged:?}");
        let head = b.head(key).await.map(|_| ());
        assert!(invalid(&head), "head {key:?}: {head:?}");
        let deleted = b.delete(key).await;
        assert!(invalid(&deleted), "delete {key:?}: {deleted:?}");
    }
    let longest_part = "y".repeat(MAX_COMPONENT_LEN);
    put(b, &longest_part, Bytes::from_static(b"y")).await;
    b.delete(&longest_part)
        .await
        .expect("delete longest component");
    let last = "z".repeat(MAX_KEY_LEN - 2 * 201);
    let longest = format!("{}/{}/{last}", "y".repeat(200), "y".repeat(200));
    assert_eq!(longest.len(), MAX_KEY_LEN);
    put(b, &longest, Bytes::from_static(b"y")).await;
    b.delete(&longest).await.expect("delete longest key");
}

/// Content of object `k` of task `t` in [`concurrent_puts`].
fn task_object(t: usize, k: usize) -> (String, Bytes) {
    (
        format!("conf-conc/t{t}/k{k}"),
        pattern(1000 + 8 * t + k, t as u8),
    )
}

async fn concurrent_puts(backend: &DynBackend) {
    const TASKS: usize = 8;
    const PER_TASK: usize = 8;
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let b = Arc::clone(backend);
        tasks.push(tokio::spawn(async move {
            for k in 0..PER_TASK {
                let (key, data) = task_object(t, k);
                if k % 2 == 0 {
                    put(b.as_ref(), &key, data).await;
                } else {
                    let mut writer = b.create(&key).await.expect("create");
                    writer.write(data).await.expect("write");
                    writer.finish().await.expect("finish");
                }
            }
        }));
    }
    for task in futures::future::join_all(tasks).await {
        task.expect("task panicked");
    }
    let listed = keys(backend.as_ref(), "conf-conc/").await;
    assert_eq!(listed.len(), TASKS * PER_TASK);
    for t in 0..TASKS {
        for k in 0..PER_TASK {
            let (key, data) = task_object(t, k);
            assert!(get(backend.as_ref(), &key).await == data, "{key}");
        }
    }
}

/// Several writers replace one key while a reader checks it only ever sees whole objects.
async fn concurrent_replacements(backend: &DynBackend) {
    const KEY: &str = "conf-race/obj";
    let versions: Arc<Vec<Bytes>> =
        Arc::new((0..4).map(|v| pattern(4096 + 1000 * v, v as u8)).collect());
    let mut tasks = Vec::new();
    for v in 0..versions.len() {
        let (b, versions) = (Arc::clone(backend), Arc::clone(&versions));
        tasks.push(tokio::spawn(async move {
            for _ in 0..5 {
                put(b.as_ref(), KEY, versions[v].clone()).await;
            }
        }));
    }
    let (b, seen) = (Arc::clone(backend), Arc::clone(&versions));
    tasks.push(tokio::spawn(async move {
        for _ in 0..40 {
            match b.get(KEY, None).await {
                Ok(data) => assert!(seen.contains(&data), "torn object of {} bytes", data.len()),
                Err(BackendError::NotFound { .. }) => {}
                Err(error) => panic!("get during replacements: {error}"),
            }
        }
    }));
    for task in futures::future::join_all(tasks).await {
        task.expect("task panicked");
    }
    assert!(versions.contains(&get(backend.as_ref(), KEY).await));
}
