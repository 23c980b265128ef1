//! Builds the S3 client from [`S3Settings`] and the standard AWS configuration: an
//! HTTPS client on rustls (ring), the region, endpoint and credentials (given, else the
//! AWS provider chain: environment, shared files and profile, web identity, container
//! and instance metadata), path-style addressing, and the client's retry policy —
//! standard mode, which retries only transient failures (throttling, 5xx, timeouts,
//! broken connections) with jittered exponential backoff.

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{Credentials, Region, ResponseChecksumValidation};
use aws_sdk_s3::Client;
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};

use super::config::S3Settings;

/// Region used when neither the settings nor the AWS configuration name one.
const FALLBACK_REGION: &str = "us-east-1";
/// Longest wait for a TCP and TLS connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait from the start of a request to the start of its answer, the upload
/// of its body included (a part of 8 MiB at 28 KB/s): a service that never answers
/// fails the attempt, which is then retried, instead of hanging the ingest.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(300);
/// Longest retry delay.
const MAX_BACKOFF: Duration = Duration::from_secs(20);

/// A client for `settings`, which the caller has validated.
pub(super) async fn build(settings: &S3Settings) -> Client {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let retry = RetryConfig::standard()
        .with_max_attempts(settings.max_attempts)
        .with_initial_backoff(settings.initial_backoff)
        .with_max_backoff(MAX_BACKOFF);
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(RESPONSE_TIMEOUT)
        .build();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .retry_config(retry.clone())
        .timeout_config(timeouts);
    if let Some(profile) = &settings.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(region) = &settings.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(endpoint) = &settings.endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    if let Some(keys) = &settings.credentials {
        loader = loader.credentials_provider(Credentials::new(
            keys.access_key_id.clone(),
            keys.secret_access_key.clone(),
            keys.session_token.clone(),
            None,
            "stowage-settings",
        ));
    }
    let shared = loader.load().await;
    let mut config = aws_sdk_s3::config::Builder::from(&shared)
        .force_path_style(settings.path_style)
        .retry_config(retry)
        // Every byte read back is authenticated by the repository's AEAD, which
        // covers ranged reads too, so the client's whole-object checksum check adds
        // nothing. Uploads keep their checksums: the service refuses a damaged upload.
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
    if shared.region().is_none() {
        config = config.region(Region::new(FALLBACK_REGION));
    }
    Client::from_conf(config.build())
}

/// The region requests are signed for, as the client resolved it.
pub(super) fn region_of(client: &Client) -> String {
    client
        .config()
        .region()
        .map_or_else(|| FALLBACK_REGION.to_string(), |r| r.to_string())
}
