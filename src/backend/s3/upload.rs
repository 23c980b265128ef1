//! The streaming writer of the S3 backend. Bytes gather in a buffer; as soon as it holds
//! one part, a multipart upload starts and the part goes up on its own task while the
//! caller keeps writing, with at most `concurrent_parts` parts in flight (a further write
//! waits for one to finish, so memory stays within `part_size × (concurrent_parts + 1)`).
//! `finish` sends the rest as the last part and completes the upload; an object that
//! never filled one part goes up as a single PUT instead. Any failure, `abort`, or
//! dropping the writer unfinished aborts the multipart upload, so S3 never shows a
//! partial object (completion is atomic) and keeps no parts.

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::{Bytes, BytesMut};
use tokio::task::JoinSet;

use super::errors::to_backend;
use super::Shared;
use crate::backend::{BackendError, ObjectWriter};

/// S3's largest part number.
const MAX_PARTS: i32 = 10_000;

/// An upload under way.
struct Multipart {
    id: String,
    next_part: i32,
    in_flight: JoinSet<Result<CompletedPart, BackendError>>,
    done: Vec<CompletedPart>,
}

/// A streaming upload of one object; see the module documentation.
pub(super) struct S3Writer {
    shared: Arc<Shared>,
    key: String,
    buffer: BytesMut,
    upload: Option<Multipart>,
    /// Set once a failure aborted the upload: only dropping or aborting remains.
    broken: bool,
}

impl S3Writer {
    pub(super) fn new(shared: Arc<Shared>, key: &str) -> S3Writer {
        S3Writer {
            shared,
            key: key.to_string(),
            buffer: BytesMut::new(),
            upload: None,
            broken: false,
        }
    }

    fn broken_error(&self) -> BackendError {
        BackendError::Unavailable {
            key: self.key.clone(),
            message: "an earlier failure aborted this upload".into(),
        }
    }

    /// Sends one part, starting the multipart upload first if needed.
    async fn send_part(&mut self, data: Bytes) -> Result<(), BackendError> {
        if self.upload.is_none() {
            let created = self
                .shared
                .client
                .create_multipart_upload()
                .bucket(self.shared.bucket())
                .key(self.shared.location.object_key(&self.key))
                .send()
                .await
                .map_err(|e| to_backend(&self.key, "CreateMultipartUpload", e))?;
            let id = created
                .upload_id()
                .ok_or_else(|| BackendError::Unavailable {
                    key: self.key.clone(),
                    message: "CreateMultipartUpload answered without an upload id".into(),
                })?;
            self.upload = Some(Multipart {
                id: id.to_string(),
                next_part: 1,
                in_flight: JoinSet::new(),
                done: Vec::new(),
            });
        }
        let limit = self.shared.settings.concurrent_parts;
        let key = self.key.clone();
        let Some(upload) = self.upload.as_mut() else {
            return Err(self.broken_error());
        };
        while upload.in_flight.len() >= limit {
            collect_one(&key, upload).await?;
        }
        let number = upload.next_part;
        if number > MAX_PARTS {
            return Err(BackendError::Unavailable {
                key,
                message: format!("the object needs more than {MAX_PARTS} parts"),
            });
        }
        upload.next_part += 1;
        let (shared, id) = (Arc::clone(&self.shared), upload.id.clone());
        upload
            .in_flight
            .spawn(async move { upload_part(&shared, &key, &id, number, data).await });
        Ok(())
    }

    /// Aborts the multipart upload after a failure, keeping the failure as the error.
    async fn fail(&mut self, error: BackendError) -> BackendError {
        self.broken = true;
        if let Some(upload) = self.upload.take() {
            if let Err(abort) = stop(&self.shared, &self.key, upload).await {
                tracing::warn!(key = self.key, %abort, "could not abort a failed upload; gc will");
            }
        }
        error
    }
}

/// Waits for one part in flight and records it.
async fn collect_one(key: &str, upload: &mut Multipart) -> Result<(), BackendError> {
    match upload.in_flight.join_next().await {
        Some(Ok(part)) => {
            upload.done.push(part?);
            Ok(())
        }
        Some(Err(join)) => Err(BackendError::Unavailable {
            key: key.to_string(),
            message: format!("a part upload task ended abnormally: {join}"),
        }),
        None => Ok(()),
    }
}

async fn upload_part(
    shared: &Shared,
    key: &str,
    id: &str,
    number: i32,
    data: Bytes,
) -> Result<CompletedPart, BackendError> {
    let length = data.len() as i64;
    let sent = shared
        .client
        .upload_part()
        .bucket(shared.bucket())
        .key(shared.location.object_key(key))
        .upload_id(id)
        .part_number(number)
        .content_length(length)
        .body(ByteStream::from(data))
        .send()
        .await
        .map_err(|e| to_backend(key, "UploadPart", e))?;
    let etag = sent.e_tag().ok_or_else(|| BackendError::Unavailable {
        key: key.to_string(),
        message: format!("UploadPart of part {number} answered without an ETag"),
    })?;
    Ok(CompletedPart::builder()
        .part_number(number)
        .e_tag(etag)
        .build())
}

/// Cancels the parts in flight, waits until they are gone, then aborts the upload.
async fn stop(shared: &Shared, key: &str, mut upload: Multipart) -> Result<(), BackendError> {
    upload.in_flight.abort_all();
    while upload.in_flight.join_next().await.is_some() {}
    abort_upload(shared, &shared.location.object_key(key), &upload.id).await
}

/// Aborts one multipart upload by its S3 key; an upload already gone is fine.
pub(super) async fn abort_upload(
    shared: &Shared,
    s3_key: &str,
    id: &str,
) -> Result<(), BackendError> {
    let answer = shared
        .client
        .abort_multipart_upload()
        .bucket(shared.bucket())
        .key(s3_key)
        .upload_id(id)
        .send()
        .await;
    match answer {
        Ok(_) => Ok(()),
        Err(error)
            if error
                .as_service_error()
                .is_some_and(|e| e.is_no_such_upload()) =>
        {
            Ok(())
        }
        Err(error) => Err(to_backend(s3_key, "AbortMultipartUpload", error)),
    }
}

#[async_trait]
impl ObjectWriter for S3Writer {
    async fn write(&mut self, data: Bytes) -> Result<(), BackendError> {
        if self.broken {
            return Err(self.broken_error());
        }
        self.buffer.extend_from_slice(&data);
        let part_size = self.shared.settings.part_size;
        while self.buffer.len() >= part_size {
            let part = self.buffer.split_to(part_size).freeze();
            if let Err(error) = self.send_part(part).await {
                return Err(self.fail(error).await);
            }
        }
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<(), BackendError> {
        if self.broken {
            return Err(self.broken_error());
        }
        let rest = self.buffer.split().freeze();
        if self.upload.is_none() {
            return self.shared.put_object(&self.key, rest).await;
        }
        if !rest.is_empty() {
            if let Err(error) = self.send_part(rest).await {
                return Err(self.fail(error).await);
            }
        }
        let key = self.key.clone();
        let Some(mut upload) = self.upload.take() else {
            return Err(self.broken_error());
        };
        let mut outcome = Ok(());
        while !upload.in_flight.is_empty() && outcome.is_ok() {
            outcome = collect_one(&key, &mut upload).await;
        }
        if let Err(error) = outcome {
            self.upload = Some(upload);
            return Err(self.fail(error).await);
        }
        upload.done.sort_by_key(|part| part.part_number());
        let completed = self
            .shared
            .client
            .complete_multipart_upload()
            .bucket(self.shared.bucket())
            .key(self.shared.location.object_key(&key))
            .upload_id(&upload.id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(std::mem::take(&mut upload.done)))
                    .build(),
            )
            .send()
            .await;
        // S3 may answer 200 with an error in the body; the client reads such a body as
        // the error it is (shown by a test), so `Ok` here means completed.
        if let Err(error) = completed {
            self.upload = Some(upload);
            let error = to_backend(&key, "CompleteMultipartUpload", error);
            return Err(self.fail(error).await);
        }
        Ok(())
    }

    async fn abort(mut self: Box<Self>) -> Result<(), BackendError> {
        self.broken = true;
        match self.upload.take() {
            Some(upload) => stop(&self.shared, &self.key, upload).await,
            None => Ok(()),
        }
    }
}

impl Drop for S3Writer {
    fn drop(&mut self) {
        let Some(mut upload) = self.upload.take() else {
            return;
        };
        // Dropped unfinished: cancel the parts and abort the upload in the background.
        // Without a runtime the upload stays for `abort_stale_uploads` to find.
        upload.in_flight.abort_all();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (shared, key) = (Arc::clone(&self.shared), self.key.clone());
            runtime.spawn(async move {
                if let Err(error) = stop(&shared, &key, upload).await {
                    tracing::warn!(key, %error, "could not abort a dropped upload; gc will");
                }
            });
        }
    }
}
