//! Where an S3 repository is and how to reach it: the `s3://bucket/prefix` location
//! (parsed purely, with S3's bucket naming rules and the key grammar for the prefix) and
//! the connection settings (endpoint, region, addressing style, credentials, part size,
//! concurrency, retries), each checked against its limits before any request is made.

use std::fmt;
use std::time::Duration;

use crate::backend::MAX_KEY_LEN;

/// Scheme that marks a repository location as an S3 one.
pub const SCHEME: &str = "s3://";

/// S3's smallest part: every part of a multipart upload but the last must be this big.
pub const MIN_PART_SIZE: usize = 5 << 20;
/// S3's largest part.
pub const MAX_PART_SIZE: usize = 5 << 30;
/// Default part size of multipart uploads.
pub const DEFAULT_PART_SIZE: usize = 8 << 20;
/// Longest accepted key prefix: with the longest object key and its separator it stays
/// under S3's limit of 1024 bytes per key.
pub const MAX_PREFIX_LEN: usize = 1024 - MAX_KEY_LEN - 1;

/// An invalid `s3://` location, with what is wrong in it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocationError {
    #[error("{text:?} is not an S3 location: it must start with s3://")]
    NotS3 { text: String },
    #[error("invalid bucket name {bucket:?} in the S3 location: {reason}")]
    Bucket {
        bucket: String,
        reason: &'static str,
    },
    #[error("invalid key prefix {prefix:?} in the S3 location: {reason}")]
    Prefix {
        prefix: String,
        reason: &'static str,
    },
}

/// A bucket and a key prefix inside it (`s3://bucket/prefix`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct S3Location {
    bucket: String,
    /// Empty, or `/`-separated components without a leading or trailing `/`.
    prefix: String,
}

impl S3Location {
    /// Parses `s3://bucket` or `s3://bucket/some/prefix` (trailing slashes are ignored).
    ///
    /// The bucket follows S3's naming rules (3 to 63 lowercase letters, digits, `.` and
    /// `-`, starting and ending with a letter or digit, no `..`, not an IP address). The
    /// prefix follows the object key grammar: lowercase ASCII letters, digits, `-`, `_`
    /// and `.` in non-empty components other than `.` and `..`.
    pub fn parse(text: &str) -> Result<S3Location, LocationError> {
        let rest = text
            .strip_prefix(SCHEME)
            .ok_or_else(|| LocationError::NotS3 {
                text: text.chars().take(100).collect(),
            })?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        check_bucket(bucket)?;
        let prefix = prefix.trim_end_matches('/');
        check_prefix(prefix)?;
        Ok(S3Location {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        })
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The key prefix, without a trailing `/`; empty for the bucket's root.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The S3 key of a repository object key.
    pub fn object_key(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix)
        }
    }

    /// What every S3 key of the repository starts with (empty, or the prefix and `/`).
    pub fn key_root(&self) -> String {
        self.object_key("")
    }

    /// A file name naming this location, unique per bucket and prefix: the bucket, then
    /// each prefix component after a `+` (which neither bucket names nor prefixes use).
    pub fn file_name(&self) -> String {
        if self.prefix.is_empty() {
            self.bucket.clone()
        } else {
            format!("{}+{}", self.bucket, self.prefix.replace('/', "+"))
        }
    }
}

impl fmt::Display for S3Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix.is_empty() {
            write!(f, "{SCHEME}{}", self.bucket)
        } else {
            write!(f, "{SCHEME}{}/{}", self.bucket, self.prefix)
        }
    }
}

fn check_bucket(bucket: &str) -> Result<(), LocationError> {
    let fail = |reason| {
        Err(LocationError::Bucket {
            bucket: bucket.chars().take(100).collect(),
            reason,
        })
    };
    if bucket.is_empty() {
        return fail("the bucket name is missing (s3://bucket/prefix)");
    }
    if !(3..=63).contains(&bucket.len()) {
        return fail("it must be 3 to 63 characters long");
    }
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-';
    if !bucket.chars().all(allowed) {
        return fail("only lowercase letters, digits, '.' and '-' are allowed");
    }
    let alphanumeric = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !alphanumeric(bucket.chars().next()) || !alphanumeric(bucket.chars().last()) {
        return fail("it must start and end with a letter or digit");
    }
    if bucket.contains("..") {
        return fail("it must not contain '..'");
    }
    if bucket.parse::<std::net::Ipv4Addr>().is_ok() {
        return fail("it must not look like an IP address");
    }
    Ok(())
}

fn check_prefix(prefix: &str) -> Result<(), LocationError> {
    if prefix.is_empty() {
        return Ok(());
    }
    let fail = |reason| {
        Err(LocationError::Prefix {
            prefix: prefix.chars().take(100).collect(),
            reason,
        })
    };
    if prefix.len() > MAX_PREFIX_LEN {
        return fail("it is longer than 511 bytes");
    }
    let valid_char =
        |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_' || c == '.';
    for part in prefix.split('/') {
        if part.is_empty() {
            return fail("it has an empty component ('//')");
        }
        if part == "." || part == ".." {
            return fail("'.' and '..' components are not allowed");
        }
        if !part.chars().all(valid_char) {
            return fail("only lowercase letters, digits, '-', '_', '.' and '/' are allowed");
        }
    }
    Ok(())
}

/// Access keys given in the configuration rather than found by the AWS provider chain.
#[derive(Clone, PartialEq, Eq)]
pub struct StaticCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl fmt::Debug for StaticCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticCredentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// How to reach the S3 service. Whatever is `None` comes from the standard AWS
/// configuration (environment, shared config and credentials files, profile).
#[derive(Debug, Clone, PartialEq)]
pub struct S3Settings {
    /// Endpoint URL of an S3-compatible service (`http://` or `https://`); `None` uses
    /// AWS (or `AWS_ENDPOINT_URL`).
    pub endpoint: Option<String>,
    /// Region; `None` uses `AWS_REGION` or the profile, else `us-east-1`.
    pub region: Option<String>,
    /// Address buckets in the path (`endpoint/bucket/key`) instead of the host name.
    pub path_style: bool,
    /// Named profile of the shared AWS config files.
    pub profile: Option<String>,
    /// Access keys; `None` uses the AWS provider chain.
    pub credentials: Option<StaticCredentials>,
    /// Size of each multipart upload part but the last; an object smaller than one part
    /// goes up in a single PUT.
    pub part_size: usize,
    /// Parts of one upload sent at once.
    pub concurrent_parts: usize,
    /// Attempts of one request, retries of transient failures included.
    pub max_attempts: u32,
    /// First retry delay; it doubles (with jitter) on each further retry.
    pub initial_backoff: Duration,
    /// Keys asked for per list request (at most 1000).
    pub list_page_size: i32,
}

impl Default for S3Settings {
    fn default() -> Self {
        S3Settings {
            endpoint: None,
            region: None,
            path_style: false,
            profile: None,
            credentials: None,
            part_size: DEFAULT_PART_SIZE,
            concurrent_parts: 4,
            max_attempts: 5,
            initial_backoff: Duration::from_millis(200),
            list_page_size: 1000,
        }
    }
}

/// A setting outside its limits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid S3 setting {setting}: {reason}")]
pub struct SettingsError {
    pub setting: &'static str,
    pub reason: String,
}

impl S3Settings {
    /// Checks every setting against its limits.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let fail = |setting, reason: String| Err(SettingsError { setting, reason });
        if let Some(endpoint) = &self.endpoint {
            let scheme_ok = endpoint.starts_with("http://") || endpoint.starts_with("https://");
            if !scheme_ok || endpoint.len() > 2048 {
                return fail(
                    "endpoint",
                    format!("{endpoint:?} is not an http:// or https:// URL"),
                );
            }
        }
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&self.part_size) {
            return fail(
                "part_size",
                format!(
                    "{} bytes is outside S3's limits of {MIN_PART_SIZE}..={MAX_PART_SIZE}",
                    self.part_size
                ),
            );
        }
        if !(1..=64).contains(&self.concurrent_parts) {
            return fail(
                "concurrent_parts",
                format!("{} is outside 1..=64", self.concurrent_parts),
            );
        }
        if !(1..=20).contains(&self.max_attempts) {
            return fail(
                "max_attempts",
                format!("{} is outside 1..=20", self.max_attempts),
            );
        }
        if self.initial_backoff > Duration::from_secs(60) {
            return fail(
                "initial_backoff",
                format!("{:?} is over a minute", self.initial_backoff),
            );
        }
        if !(1..=1000).contains(&self.list_page_size) {
            return fail(
                "list_page_size",
                format!("{} is outside 1..=1000", self.list_page_size),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn location(text: &str) -> S3Location {
        S3Location::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn parses_bucket_and_prefix() {
        for (text, bucket, prefix) in [
            ("s3://bucket", "bucket", ""),
            ("s3://bucket/", "bucket", ""),
            ("s3://bucket///", "bucket", ""),
            ("s3://my-bucket.1/backups", "my-bucket.1", "backups"),
            ("s3://abc/a/b/c/", "abc", "a/b/c"),
            ("s3://abc/host-1/repo_2.x", "abc", "host-1/repo_2.x"),
        ] {
            let parsed = location(text);
            assert_eq!(
                (parsed.bucket(), parsed.prefix()),
                (bucket, prefix),
                "{text}"
            );
        }
    }

    #[test]
    fn keys_and_names() {
        let root = location("s3://bucket");
        assert_eq!(root.object_key("config"), "config");
        assert_eq!(root.key_root(), "");
        assert_eq!(root.file_name(), "bucket");
        assert_eq!(root.to_string(), "s3://bucket");
        let nested = location("s3://bucket/a/b/");
        assert_eq!(nested.object_key("packs/00/x"), "a/b/packs/00/x");
        assert_eq!(nested.key_root(), "a/b/");
        assert_eq!(nested.file_name(), "bucket+a+b");
        assert_eq!(nested.to_string(), "s3://bucket/a/b");
        assert_ne!(
            location("s3://bbb.c/d").file_name(),
            location("s3://bbb/c.d").file_name()
        );
    }

    #[test]
    fn refuses_invalid_locations() {
        let not_s3 = [
            "",
            "bucket/prefix",
            "/srv/repo",
            "S3://bucket",
            "s3:/bucket",
            "http://x",
        ];
        for text in not_s3 {
            assert!(
                matches!(S3Location::parse(text), Err(LocationError::NotS3 { .. })),
                "{text}"
            );
        }
        let long = format!("s3://{}", "a".repeat(64));
        let bad_buckets = [
            "s3://",
            "s3:///prefix",
            "s3://ab",
            &long,
            "s3://Bucket",
            "s3://bu_cket",
            "s3://-bucket",
            "s3://bucket-",
            "s3://a..b",
            "s3://192.168.1.1",
            "s3://buc ket",
            "s3://bucket?x=1",
        ];
        for text in bad_buckets {
            assert!(
                matches!(S3Location::parse(text), Err(LocationError::Bucket { .. })),
                "{text}: {:?}",
                S3Location::parse(text)
            );
        }
        let long_prefix = format!("s3://bucket/{}", "p".repeat(MAX_PREFIX_LEN + 1));
        let bad_prefixes = [
            "s3://bucket//x",
            "s3://bucket/a//b",
            "s3://bucket/a/../b",
            "s3://bucket/.",
            "s3://bucket/Upper",
            "s3://bucket/a b",
            "s3://bucket/p?region=x",
            "s3://bucket/é",
            &long_prefix,
        ];
        for text in bad_prefixes {
            assert!(
                matches!(S3Location::parse(text), Err(LocationError::Prefix { .. })),
                "{text}: {:?}",
                S3Location::parse(text)
            );
        }
        let message = S3Location::parse("s3://a..b/x").unwrap_err().to_string();
        assert!(
            message.contains("a..b") && message.contains(".."),
            "{message}"
        );
    }

    #[test]
    fn settings_limits() {
        assert_eq!(S3Settings::default().validate(), Ok(()));
        let cases: [(&str, S3Settings); 6] = [
            (
                "endpoint",
                S3Settings {
                    endpoint: Some("localhost:9000".into()),
                    ..S3Settings::default()
                },
            ),
            (
                "part_size",
                S3Settings {
                    part_size: MIN_PART_SIZE - 1,
                    ..S3Settings::default()
                },
            ),
            (
                "concurrent_parts",
                S3Settings {
                    concurrent_parts: 0,
                    ..S3Settings::default()
                },
            ),
            (
                "max_attempts",
                S3Settings {
                    max_attempts: 0,
                    ..S3Settings::default()
                },
            ),
            (
                "initial_backoff",
                S3Settings {
                    initial_backoff: Duration::from_secs(61),
                    ..S3Settings::default()
                },
            ),
            (
                "list_page_size",
                S3Settings {
                    list_page_size: 1001,
                    ..S3Settings::default()
                },
            ),
        ];
        for (setting, settings) in cases {
            assert_eq!(settings.validate().map_err(|e| e.setting), Err(setting));
        }
    }
}
