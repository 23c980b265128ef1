//! The S3 backend against a real S3-compatible server started in-process (s3s-fs, see
//! `tests/it/s3_server.rs`): the conformance suite, then what only S3 has — multipart
//! uploads, their failures and aborts, retries, hidden errors, pagination, stale
//! uploads and bucket creation.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::{S3Backend, S3Location, S3Settings};
use crate::backend::{conformance, Backend, BackendError, DynBackend};

#[path = "../../../tests/it/s3_server.rs"]
mod server;

use server::{FailKind, S3Server, PART_SIZE};

const BUCKET: &str = "stowage-test";

async fn backend(url: &str, settings: S3Settings) -> S3Backend {
    let location = S3Location::parse(url).expect("location");
    S3Backend::connect(location, settings)
        .await
        .expect("connect")
}

/// Deterministic bytes that differ from part to part.
fn pattern(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| ((i % 253) as u8) ^ ((i / 4096) as u8).wrapping_add(seed))
        .collect::<Vec<u8>>()
        .into()
}

/// Streams `data` through `create` in 1 MiB writes and finishes.
async fn upload(b: &S3Backend, key: &str, data: &Bytes) -> Result<(), BackendError> {
    let mut writer = b.create(key).await?;
    for start in (0..data.len()).step_by(1 << 20) {
        let end = (start + (1 << 20)).min(data.len());
        writer.write(data.slice(start..end)).await?;
    }
    writer.finish().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_under_a_prefix() {
    let server = S3Server::with_bucket(BUCKET);
    let b = backend("s3://stowage-test/some/prefix/", server.settings()).await;
    // An object beside the prefix must never show through it.
    let outside = backend("s3://stowage-test/some/prefixed", server.settings()).await;
    outside
        .put("conf-list/c", Bytes::from_static(b"x"))
        .await
        .expect("put outside");
    let dyn_backend: DynBackend = Arc::new(b);
    conformance::run_all(dyn_backend).await;
    assert!(server
        .stored_keys(BUCKET)
        .iter()
        .all(|k| k.starts_with("some/prefix/") || k == "some/prefixed/conf-list/c"));
    assert!(
        server.open_uploads().is_empty(),
        "{:?}",
        server.open_uploads()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_at_the_bucket_root() {
    let server = S3Server::with_bucket(BUCKET);
    let b: DynBackend = Arc::new(backend("s3://stowage-test", server.settings()).await);
    conformance::run_all(b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_objects_go_up_in_parts_and_small_ones_in_one_put() {
    let server = S3Server::with_bucket(BUCKET);
    let b = backend("s3://stowage-test/r", server.settings()).await;
    let big = pattern(2 * PART_SIZE + 12345, 1);
    upload(&b, "packs/00/big", &big).await.expect("upload");
    let (parts, completes, _) = server.counts();
    assert_eq!((parts, completes), (3, 1), "three parts, one completion");
    assert!(b.get("packs/00/big", None).await.expect("get") == big);
    let range = (PART_SIZE as u64 - 10)..(PART_SIZE as u64 + 10);
    let got = b
        .get("packs/00/big", Some(range.clone()))
        .await
        .expect("range");
    assert!(got == big.slice(range.start as usize..range.end as usize));

    // Exactly one part: still multipart, no empty last part.
    let one = pattern(PART_SIZE, 2);
    upload(&b, "packs/00/one", &one).await.expect("upload");
    assert_eq!(server.counts().0, 4);
    assert!(b.get("packs/00/one", None).await.expect("get") == one);

    // Smaller than a part: a single PUT.
    let (_, _, puts_before) = server.counts();
    let small = pattern(PART_SIZE - 1, 3);
    upload(&b, "packs/00/small", &small).await.expect("upload");
    let (parts, completes, puts) = server.counts();
    assert_eq!((parts, completes, puts), (4, 2, puts_before + 1));
    assert!(b.get("packs/00/small", None).await.expect("get") == small);
    assert!(server.open_uploads().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_part_failure_is_retried() {
    let server = S3Server::with_bucket(BUCKET);
    let b = backend("s3://stowage-test/r", server.settings()).await;
    let data = pattern(2 * PART_SIZE + 1, 4);
    for kind in [FailKind::ServerError, FailKind::Drop] {
        server.fail_upload_parts(1, 1, kind);
        upload(&b, "packs/00/retried", &data)
            .await
            .expect("retried upload");
        assert!(b.get("packs/00/retried", None).await.expect("get") == data);
    }
    assert!(server.open_uploads().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_upload_is_aborted_and_leaves_nothing() {
    let server = S3Server::with_bucket(BUCKET);
    let b = backend("s3://stowage-test/r", server.settings()).await;
    let data = pattern(3 * PART_SIZE + 7, 5);
    for kind in [FailKind::Denied, FailKind::ServerError, FailKind::Drop] {
        server.fail_upload_parts(1, u64::MAX, kind);
        let result = upload(&b, "packs/00/failed", &data).await;
        assert!(result.is_err(), "{kind:?}: the upload must fail");
        if kind == FailKind::Denied {
            assert!(
                matches!(result, Err(BackendError::CredentialsRefused { .. })),
                "{result:?}"
            );
        }
        assert!(matches!(
            b.head("packs/00/failed").await,
            Err(BackendError::NotFound { .. })
        ));
        assert!(server.open_uploads().is_empty(), "{kind:?}: aborted");
    }
    server.fail_upload_parts(0, 0, FailKind::ServerError);
    assert!(b.list("").await.expect("list").is_empty());
    upload(&b, "packs/00/failed", &data)
        .await
        .expect("works again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_inside_a_200_complete_is_detected() {
    let server = S3Server::with_bucket(BUCKET);
    let b = backend("s3://stowage-test/r", server.settings()).await;
    let data = pattern(PART_SIZE + 100, 6);
    // More hidden errors than the client makes attempts: the upload must fail.
    server.hide_errors_in_completes(10);
    let result = upload(&b, "packs/00/hidden", &data).await;
    assert!(
        matches!(&result, Err(BackendError::Unavailable { message, .. }) if message.contains("InternalError")),
        "{result:?}"
    );
    assert!(matches!(
        b.head("packs/00/hidden").await,
        Err(BackendError::NotFound { .. })
    ));
    assert!(server.open_uploads().is_empty(), "the upload was aborted");

    let (_, completes, _) = server.counts();
    assert_eq!(
        completes, 3,
        "InternalError is transient: retried up to max_attempts"
    );

    // One hidden error: the retry completes the upload.
    server.hide_errors_in_completes(1);
    upload(&b, "packs/00/hidden", &data).await.expect("retried");
    assert_eq!(server.counts().1, 5);
    assert!(b.get("packs/00/hidden", None).await.expect("get") == data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_and_aborted_writers_abort_their_uploads() {
    let server = S3Server::with_bucket(BUCKET);
    let b = backend("s3://stowage-test/r", server.settings()).await;
    let mut writer = b.create("packs/00/aborted").await.expect("create");
    writer
        .write(pattern(PART_SIZE + 1, 7))
        .await
        .expect("write");
    assert_eq!(server.open_uploads().len(), 1);
    writer.abort().await.expect("abort");
    assert!(server.open_uploads().is_empty());

    let mut writer = b.create("packs/00/dropped").await.expect("create");
    writer
        .write(pattern(PART_SIZE + 1, 8))
        .await
        .expect("write");
    drop(writer);
    // The abort runs on a background task; the next stale sweep would also take it.
    for _ in 0..1000 {
        if server.open_uploads().is_empty() {
            break;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(server.open_uploads().is_empty(), "dropped upload aborted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_uploads_under_the_prefix_are_aborted() {
    let server = S3Server::with_bucket(BUCKET);
    let b = backend("s3://stowage-test/repo", server.settings()).await;
    let other = backend("s3://stowage-test/other", server.settings()).await;
    // Uploads a crashed process left: started, never finished nor aborted.
    for (backend, key) in [
        (&b, "packs/00/a"),
        (&b, "packs/01/b"),
        (&other, "packs/00/c"),
    ] {
        backend
            .client()
            .create_multipart_upload()
            .bucket(BUCKET)
            .key(backend.location().object_key(key))
            .send()
            .await
            .expect("create upload");
    }
    let hour = Duration::from_secs(3600);
    assert_eq!(
        b.abort_stale_uploads(hour).await.expect("sweep"),
        0,
        "too young"
    );
    server.age_uploads(2 * hour);
    assert_eq!(b.abort_stale_uploads(hour).await.expect("sweep"), 2);
    assert_eq!(
        server.open_uploads(),
        vec![(BUCKET.to_string(), "other/packs/00/c".to_string())],
        "only the repository's own uploads"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_pages_through_continuations() {
    let server = S3Server::with_bucket(BUCKET);
    let settings = S3Settings {
        list_page_size: 3,
        ..server.settings()
    };
    let b = backend("s3://stowage-test/p", settings).await;
    let keys: Vec<String> = (0..10)
        .map(|i| format!("packs/{:02}/k{i}", 9 - i))
        .collect();
    for key in &keys {
        b.put(key, Bytes::from(key.clone())).await.expect("put");
    }
    let listed: Vec<String> = b
        .list("packs/")
        .await
        .expect("list")
        .into_iter()
        .map(|m| m.key)
        .collect();
    let mut expected = keys.clone();
    expected.sort();
    assert_eq!(listed, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buckets_are_created_once_and_errors_name_the_problem() {
    let server = S3Server::start();
    let b = backend("s3://fresh-bucket/x", server.settings()).await;
    let missing = b.list("").await;
    assert!(
        matches!(&missing, Err(BackendError::Unavailable { message, .. }) if message.contains("NoSuchBucket")),
        "{missing:?}"
    );
    assert!(b.ensure_bucket().await.expect("create"));
    assert!(server.bucket_exists("fresh-bucket"));
    assert!(!b.ensure_bucket().await.expect("exists"));
    b.put("config", Bytes::from_static(b"c"))
        .await
        .expect("put");

    let wrong = S3Settings {
        credentials: Some(super::StaticCredentials {
            access_key_id: server::ACCESS_KEY.to_string(),
            secret_access_key: "not-the-secret".to_string(),
            session_token: None,
        }),
        ..server.settings()
    };
    let refused = backend("s3://fresh-bucket/x", wrong).await;
    let error = refused.get("config", None).await.expect_err("refused");
    assert!(
        matches!(error, BackendError::CredentialsRefused { .. }),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("refused the credentials"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_service_is_unavailable_after_retries() {
    let server = S3Server::with_bucket(BUCKET);
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("address").port();
    drop(closed);
    let settings = S3Settings {
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        ..server.settings()
    };
    let b = backend("s3://stowage-test/r", settings).await;
    let error = b.get("config", None).await.expect_err("nothing listens");
    assert!(
        matches!(&error, BackendError::Unavailable { key, .. } if key == "config"),
        "{error:?}"
    );
}
