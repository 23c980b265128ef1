//! S3 backend: each object is one S3 object, at its key under the repository's prefix in
//! one bucket (`s3://bucket/prefix`), on AWS or any S3-compatible service.
//!
//! Small objects go up as one PUT, which S3 makes visible atomically. Streamed objects
//! (packs) go up as multipart uploads (`upload`), which S3 shows only once completed, so
//! nothing partial is ever visible under a key; a failed or dropped upload is aborted,
//! and [`S3Backend::abort_stale_uploads`] aborts those a crash left behind. Ranged reads
//! are ranged GETs; `list` pages through ListObjectsV2. Retries of transient failures
//! are the client's (`client`); errors are mapped in `errors`.

pub mod config;

mod client;
mod errors;
mod upload;

#[cfg(test)]
mod tests;

use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};
use aws_sdk_s3::Client;
use bytes::Bytes;

pub use config::{LocationError, S3Location, S3Settings, SettingsError, StaticCredentials};

use super::{check_range, validate_key, Backend, BackendError, ObjectMeta, ObjectWriter};
use errors::{classify, to_backend, Failure};

/// Pages of listings read before giving up on a service that never ends one.
const MAX_LIST_PAGES: usize = 1 << 20;
/// Ranged GETs a restore keeps in flight: each waits a round trip before its bytes
/// come, so more of them hide the service's latency (docs/PERFORMANCE.md, "S3").
const READS_IN_FLIGHT: usize = 16;

/// A backend storing objects in an S3 bucket; see the module documentation.
#[derive(Clone)]
pub struct S3Backend {
    shared: Arc<Shared>,
}

/// What the backend and its writers share.
pub(super) struct Shared {
    client: Client,
    location: S3Location,
    settings: S3Settings,
}

impl std::fmt::Debug for S3Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Backend")
            .field("location", &self.shared.location)
            .finish_non_exhaustive()
    }
}

impl S3Backend {
    /// A backend on `location`. Checks the settings; makes no request.
    pub async fn connect(
        location: S3Location,
        settings: S3Settings,
    ) -> Result<S3Backend, SettingsError> {
        settings.validate()?;
        let client = client::build(&settings).await;
        Ok(S3Backend {
            shared: Arc::new(Shared {
                client,
                location,
                settings,
            }),
        })
    }

    pub fn location(&self) -> &S3Location {
        &self.shared.location
    }

    /// The S3 client, for tools that need requests the trait does not offer.
    pub fn client(&self) -> &Client {
        &self.shared.client
    }

    /// Creates the bucket unless it exists; returns whether it was created.
    pub async fn ensure_bucket(&self) -> Result<bool, BackendError> {
        let bucket = self.shared.location.bucket();
        let client = &self.shared.client;
        match client.head_bucket().bucket(bucket).send().await {
            Ok(_) => return Ok(false),
            Err(error) if classify(&error) == Failure::NotFound => {}
            Err(error) => return Err(to_backend(bucket, "HeadBucket", error)),
        }
        let region = client::region_of(client);
        let mut request = client.create_bucket().bucket(bucket);
        // us-east-1 is the one region that refuses to be named as a constraint.
        if region != "us-east-1" {
            request = request.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(region.as_str()))
                    .build(),
            );
        }
        match request.send().await {
            Ok(_) => Ok(true),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_bucket_already_owned_by_you()) =>
            {
                Ok(false)
            }
            Err(error) => Err(to_backend(bucket, "CreateBucket", error)),
        }
    }

    /// Aborts the multipart uploads under the repository's prefix started at least
    /// `older_than` ago (left by crashes or failed aborts), and returns how many.
    pub async fn abort_stale_uploads(&self, older_than: Duration) -> Result<u64, BackendError> {
        let shared = &self.shared;
        let root = shared.location.key_root();
        let cutoff = SystemTime::now()
            .checked_sub(older_than)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let cutoff = DateTime::from(cutoff);
        let (mut key_marker, mut id_marker) = (None::<String>, None::<String>);
        let mut aborted = 0;
        for _ in 0..MAX_LIST_PAGES {
            let page = shared
                .client
                .list_multipart_uploads()
                .bucket(shared.location.bucket())
                .prefix(&root)
                .set_key_marker(key_marker.clone())
                .set_upload_id_marker(id_marker.clone())
                .max_uploads(shared.settings.list_page_size)
                .send()
                .await
                .map_err(|e| to_backend(&root, "ListMultipartUploads", e))?;
            for upload in page.uploads() {
                let (Some(key), Some(id), Some(initiated)) =
                    (upload.key(), upload.upload_id(), upload.initiated())
                else {
                    continue;
                };
                if initiated.secs() > cutoff.secs() || !key.starts_with(&root) {
                    continue;
                }
                upload::abort_upload(shared, key, id).await?;
                aborted += 1;
            }
            if page.is_truncated() != Some(true) {
                return Ok(aborted);
            }
            let next = (
                page.next_key_marker().map(str::to_string),
                page.next_upload_id_marker().map(str::to_string),
            );
            if next.0.is_none() || next == (key_marker.clone(), id_marker.clone()) {
                return Err(BackendError::Unavailable {
                    key: root,
                    message: "ListMultipartUploads: a truncated page without a new marker".into(),
                });
            }
            (key_marker, id_marker) = next;
        }
        Err(too_many_pages(&root))
    }
}

fn too_many_pages(key: &str) -> BackendError {
    BackendError::Unavailable {
        key: key.to_string(),
        message: format!("listing did not end after {MAX_LIST_PAGES} pages"),
    }
}

impl Shared {
    fn bucket(&self) -> &str {
        self.location.bucket()
    }

    /// One PUT of a whole object.
    async fn put_object(&self, key: &str, data: Bytes) -> Result<(), BackendError> {
        self.client
            .put_object()
            .bucket(self.bucket())
            .key(self.location.object_key(key))
            .content_length(data.len() as i64)
            .body(ByteStream::from(data))
            .send()
            .await
            .map_err(|e| to_backend(key, "PutObject", e))?;
        Ok(())
    }

    async fn size(&self, key: &str) -> Result<u64, BackendError> {
        let head = self
            .client
            .head_object()
            .bucket(self.bucket())
            .key(self.location.object_key(key))
            .send()
            .await
            .map_err(|e| to_backend(key, "HeadObject", e))?;
        length(key, head.content_length())
    }

    fn unsatisfiable(key: &str, range: &Range<u64>, size: u64) -> BackendError {
        BackendError::RangeNotSatisfiable {
            key: key.to_string(),
            start: range.start,
            end: range.end,
            size,
        }
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, BackendError> {
        if range.start >= range.end {
            // HTTP cannot ask for an empty range: check it against the size instead.
            let size = self.size(key).await?;
            check_range(key, &range, size)?;
            return Ok(Bytes::new());
        }
        let answer = self
            .client
            .get_object()
            .bucket(self.bucket())
            .key(self.location.object_key(key))
            .range(format!("bytes={}-{}", range.start, range.end - 1))
            .send()
            .await;
        let output = match answer {
            Ok(output) => output,
            Err(error) if classify(&error) == Failure::InvalidRange => {
                let size = self.size(key).await?;
                return Err(Self::unsatisfiable(key, &range, size));
            }
            Err(error) => return Err(to_backend(key, "GetObject", error)),
        };
        let whole_object = output.content_range().is_none();
        let body = read_body(key, output.body).await?;
        let wanted = (range.end - range.start) as usize;
        if whole_object {
            // A service that ignores Range sends the whole object.
            let size = body.len() as u64;
            check_range(key, &range, size)?;
            return Ok(body.slice(range.start as usize..range.end as usize));
        }
        if body.len() != wanted {
            // S3 shortens a range that runs past the end instead of refusing it.
            let size = self.size(key).await?;
            return Err(Self::unsatisfiable(key, &range, size));
        }
        Ok(body)
    }
}

/// A size the service reported, which must be present and not negative.
fn length(key: &str, reported: Option<i64>) -> Result<u64, BackendError> {
    reported
        .and_then(|n| u64::try_from(n).ok())
        .ok_or_else(|| BackendError::Unavailable {
            key: key.to_string(),
            message: format!("the service reported no valid size ({reported:?})"),
        })
}

async fn read_body(key: &str, body: ByteStream) -> Result<Bytes, BackendError> {
    body.collect()
        .await
        .map(|data| data.into_bytes())
        .map_err(|e| BackendError::Unavailable {
            key: key.to_string(),
            message: format!("reading the object's body: {e}"),
        })
}

#[async_trait]
impl Backend for S3Backend {
    async fn put(&self, key: &str, data: Bytes) -> Result<(), BackendError> {
        validate_key(key)?;
        self.shared.put_object(key, data).await
    }

    async fn create(&self, key: &str) -> Result<Box<dyn ObjectWriter>, BackendError> {
        validate_key(key)?;
        Ok(Box::new(upload::S3Writer::new(
            Arc::clone(&self.shared),
            key,
        )))
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Bytes, BackendError> {
        validate_key(key)?;
        if let Some(range) = range {
            return self.shared.get_range(key, range).await;
        }
        let output = self
            .shared
            .client
            .get_object()
            .bucket(self.shared.bucket())
            .key(self.shared.location.object_key(key))
            .send()
            .await
            .map_err(|e| to_backend(key, "GetObject", e))?;
        let expected = output.content_length();
        let body = read_body(key, output.body).await?;
        if expected.is_some_and(|n| n != body.len() as i64) {
            return Err(BackendError::Unavailable {
                key: key.to_string(),
                message: format!(
                    "the body has {} bytes, the service announced {expected:?}",
                    body.len()
                ),
            });
        }
        Ok(body)
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta, BackendError> {
        validate_key(key)?;
        let size = self.shared.size(key).await?;
        Ok(ObjectMeta {
            key: key.to_string(),
            size,
            modified: None,
        })
    }

    async fn delete(&self, key: &str) -> Result<(), BackendError> {
        validate_key(key)?;
        let answer = self
            .shared
            .client
            .delete_object()
            .bucket(self.shared.bucket())
            .key(self.shared.location.object_key(key))
            .send()
            .await;
        match answer {
            Ok(_) => Ok(()),
            Err(error) if classify(&error) == Failure::NotFound => Ok(()),
            Err(error) => Err(to_backend(key, "DeleteObject", error)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, BackendError> {
        let shared = &self.shared;
        let root = shared.location.key_root();
        let full_prefix = format!("{root}{prefix}");
        let mut listed = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..MAX_LIST_PAGES {
            let page = shared
                .client
                .list_objects_v2()
                .bucket(shared.bucket())
                .prefix(&full_prefix)
                .max_keys(shared.settings.list_page_size)
                .set_continuation_token(token.clone())
                .send()
                .await
                .map_err(|e| to_backend(prefix, "ListObjectsV2", e))?;
            for object in page.contents() {
                let Some(key) = object.key().and_then(|k| k.strip_prefix(&root)) else {
                    continue;
                };
                // Keys outside the grammar were not written by stowage and cannot be
                // addressed through the backend: leave them out.
                if validate_key(key).is_err() {
                    tracing::debug!(key, "ignoring an S3 key outside the key grammar");
                    continue;
                }
                listed.push(ObjectMeta {
                    key: key.to_string(),
                    size: length(key, object.size())?,
                    modified: object
                        .last_modified()
                        .and_then(|when| std::time::SystemTime::try_from(*when).ok()),
                });
            }
            if page.is_truncated() != Some(true) {
                listed.sort_by(|a, b| a.key.cmp(&b.key));
                listed.dedup_by(|a, b| a.key == b.key);
                return Ok(listed);
            }
            let next = page.next_continuation_token().map(str::to_string);
            if next.is_none() || next == token {
                return Err(BackendError::Unavailable {
                    key: prefix.to_string(),
                    message: "ListObjectsV2: a truncated page without a new continuation token"
                        .into(),
                });
            }
            token = next;
        }
        Err(too_many_pages(prefix))
    }

    async fn abort_stale_uploads(&self, older_than: Duration) -> Result<u64, BackendError> {
        S3Backend::abort_stale_uploads(self, older_than).await
    }

    fn reads_in_flight(&self) -> usize {
        READS_IN_FLIGHT
    }

    fn describe(&self) -> String {
        self.shared.location.to_string()
    }
}
