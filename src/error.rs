//! The one shared classification of failures.
//!
//! Every layer has its own `thiserror` enum that keeps its source; each exposes `kind()`
//! returning an [`ErrorKind`] from this one set, so the edges (CLI exit codes, HTTP status
//! codes of each dialect) can map failures without knowing every layer's variants.

/// What kind of failure happened, independent of the layer that saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    NotFound,
    AlreadyExists,
    Conflict,
    InvalidInput,
    Unauthorized,
    Forbidden,
    Corrupt,
    Unavailable,
    LimitExceeded,
    Internal,
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            ErrorKind::NotFound => "not found",
            ErrorKind::AlreadyExists => "already exists",
            ErrorKind::Conflict => "conflict",
            ErrorKind::InvalidInput => "invalid input",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::Corrupt => "corrupt",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::LimitExceeded => "limit exceeded",
            ErrorKind::Internal => "internal",
        };
        f.write_str(name)
    }
}
