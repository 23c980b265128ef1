//! Multipart uploads: `POST /api/target/<id>/upload` (file field `backup_file`, several
//! for a multi target, and `manual`) and `POST /api/seq/<id>/upload` (`path`, `name`,
//! then the file field `file`). Each file streams through a bounded channel into the
//! engine while it arrives; nothing holds a whole file in memory.

use std::sync::Arc;

use axum::extract::multipart::Field;
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::header;

use super::error::BcApiError;
use crate::http::body::{self, BodyPump};
use crate::service::backupchan::targets::TargetType;
use crate::service::backupchan::BackupchanService;
use crate::service::jobs::JobFailure;

/// Largest text field (`manual`, `path`, `name`) accepted.
const MAX_TEXT_FIELD: usize = 8192;

/// The multipart form of a request, refusing a declared length over `limit`.
pub async fn form(request: Request, limit: u64) -> Result<Multipart, BcApiError> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(too_large(limit));
    }
    Multipart::from_request(request, &())
        .await
        .map_err(|e| BcApiError::bad_request(e.body_text()))
}

fn too_large(limit: u64) -> BcApiError {
    BcApiError::new(
        axum::http::StatusCode::PAYLOAD_TOO_LARGE,
        format!("The upload exceeds the limit of {limit} bytes"),
    )
}

fn broken(error: impl std::fmt::Display) -> BcApiError {
    BcApiError::bad_request(format!("The multipart body could not be read: {error}"))
}

/// A text field's value, at most [`MAX_TEXT_FIELD`] bytes.
pub async fn text(mut field: Field<'_>) -> Result<String, BcApiError> {
    let name = field.name().unwrap_or_default().to_string();
    let mut bytes = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(broken)? {
        if bytes.len() + chunk.len() > MAX_TEXT_FIELD {
            return Err(BcApiError::bad_request(format!(
                "Parameter '{name}' is too long"
            )));
        }
        bytes.extend_from_slice(&chunk);
    }
    String::from_utf8(bytes)
        .map_err(|_| BcApiError::bad_request(format!("Parameter '{name}' is not UTF-8")))
}

/// `manual` as `true`/`false` (the document) or `1`/`0` (what the client sends).
pub fn manual(value: &str) -> Result<bool, BcApiError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(BcApiError::bad_request(
            "Parameter 'manual' must be true, false, 1 or 0",
        )),
    }
}

/// Streams a file field into the pump; the reader sees the end when the pump drops.
pub async fn feed(mut field: Field<'_>, mut pump: BodyPump, limit: u64) -> Result<u64, BcApiError> {
    loop {
        match field.chunk().await {
            Ok(Some(chunk)) => {
                if !pump.send(chunk).await {
                    return Err(if pump.received() > limit {
                        too_large(limit)
                    } else {
                        BcApiError::new(
                            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                            "The file could not be stored",
                        )
                    });
                }
            }
            Ok(None) => return Ok(pump.received()),
            Err(error) => {
                pump.fail(error.to_string()).await;
                return Err(broken(error));
            }
        }
    }
}

/// The file name of an uploaded file, without directories.
fn file_name(field: &Field<'_>) -> String {
    let raw = field.file_name().unwrap_or("backup");
    let base = raw.rsplit(['/', '\\']).next().unwrap_or(raw);
    let clean: String = base.chars().filter(|c| !c.is_control()).take(255).collect();
    if clean.is_empty() || clean == "." || clean == ".." {
        "backup".into()
    } else {
        clean
    }
}

/// Reads an upload form, starting an ingest per file; answers with the job once the body
/// is read, while the files become durable in the background.
pub async fn backup_upload(
    service: &Arc<BackupchanService>,
    job: u64,
    target_id: &str,
    target_type: TargetType,
    mut form: Multipart,
    limit: u64,
    max_files: usize,
) -> Result<u64, BcApiError> {
    let mut pending = Vec::new();
    let mut names = std::collections::HashSet::new();
    let mut manual_value = None;
    let outcome: Result<(), BcApiError> = async {
        while let Some(field) = form.next_field().await.map_err(broken)? {
            match field.name() {
                Some("backup_file") => {
                    if pending.len() >= max_files {
                        return Err(BcApiError::bad_request(format!(
                            "An upload has at most {max_files} files"
                        )));
                    }
                    let name = file_name(&field);
                    if !names.insert(name.clone()) {
                        return Err(BcApiError::bad_request(format!(
                            "The file '{name}' was sent twice"
                        )));
                    }
                    let (pump, reader) = body::channel(limit, service.tasks());
                    pending.push(service.start_part(job, target_id, name, Box::new(reader)));
                    feed(field, pump, limit).await?;
                }
                Some("manual") => manual_value = Some(manual(&text(field).await?)?),
                _ => {}
            }
        }
        if pending.is_empty() {
            return Err(BcApiError::bad_request("No files specified"));
        }
        if target_type == TargetType::Single && pending.len() > 1 {
            return Err(BcApiError::bad_request(
                "A single-file target takes one file per backup",
            ));
        }
        Ok(())
    }
    .await;
    let outcome = outcome.and_then(|()| manual_value.ok_or_else(|| BcApiError::missing("manual")));
    let manual = match outcome {
        Ok(manual) => manual,
        Err(error) => {
            // Answered once nothing of the upload is left in the repository.
            service.discard(pending).await;
            service.refuse_job(job, JobFailure::new(error.kind(), error.message.clone()));
            return Err(error);
        }
    };
    service.complete_upload(job, target_id.to_string(), manual, pending);
    Ok(job)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_as_the_document_and_the_client_send_it() {
        for (text, value) in [("true", true), ("1", true), ("False", false), ("0", false)] {
            assert_eq!(manual(text).unwrap(), value, "{text}");
        }
        assert!(manual("yes").is_err());
    }
}
