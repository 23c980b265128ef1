//! Turns failures of the S3 client into [`BackendError`]s naming the object concerned:
//! a missing key is `NotFound`, refused credentials say so, an unsatisfiable range is
//! left for the caller (it knows the range), and everything else — network failures,
//! timeouts, server errors that outlived the client's retries — is `Unavailable` with
//! the service's code and message.

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::backend::BackendError;

/// What an S3 failure means to a backend caller.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Failure {
    NotFound,
    InvalidRange,
    Other,
}

/// Classifies a failed request without consuming it.
pub(super) fn classify<E: ProvideErrorMetadata>(error: &SdkError<E, HttpResponse>) -> Failure {
    let status = error.raw_response().map(|r| r.status().as_u16());
    match (error.code(), status) {
        (Some("NoSuchBucket"), _) => Failure::Other,
        (Some("NoSuchKey" | "NotFound"), _) | (None, Some(404)) => Failure::NotFound,
        (Some("InvalidRange"), _) | (_, Some(416)) => Failure::InvalidRange,
        _ => Failure::Other,
    }
}

/// The backend error of a failed request on `key`; `NotFound` when the object is missing.
pub(super) fn to_backend<E>(
    key: &str,
    operation: &str,
    error: SdkError<E, HttpResponse>,
) -> BackendError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    if classify(&error) == Failure::NotFound {
        return BackendError::NotFound {
            key: key.to_string(),
        };
    }
    let key = key.to_string();
    let status = error.raw_response().map(|r| r.status().as_u16());
    let code = error.code().map(str::to_string);
    let message = match (&code, error.message()) {
        (Some(code), Some(text)) => format!("{operation}: {code}: {text}"),
        (Some(code), None) => format!("{operation}: {code}"),
        _ => format!("{operation}: {}", DisplayErrorContext(&error)),
    };
    let refused = matches!(
        code.as_deref(),
        Some(
            "AccessDenied"
                | "InvalidAccessKeyId"
                | "SignatureDoesNotMatch"
                | "ExpiredToken"
                | "InvalidToken"
                | "AuthorizationHeaderMalformed"
        )
    ) || matches!(status, Some(401 | 403));
    if refused {
        return BackendError::CredentialsRefused { key, message };
    }
    if code.as_deref() == Some("NoSuchBucket") {
        return BackendError::Unavailable {
            key,
            message: format!("{message} (the bucket does not exist; `stowage init` creates it)"),
        };
    }
    BackendError::Unavailable { key, message }
}
