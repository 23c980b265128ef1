//! HTTP `Range: bytes=...` for one range (RFC 9110 §14). Several ranges are served as the
//! whole object, which the RFC allows.

use std::ops::Range;

/// What a Range header asks of an object of a given size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeRequest {
    /// No usable Range: send everything with 200.
    Full,
    /// Send these bytes with 206.
    Partial(Range<u64>),
    /// The range lies outside the object: 416.
    Unsatisfiable,
}

/// Interprets a Range header value for an object of `size` bytes.
pub fn parse(header: Option<&str>, size: u64) -> RangeRequest {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return RangeRequest::Full;
    };
    if spec.contains(',') {
        return RangeRequest::Full;
    }
    let Some((start, end)) = spec.trim().split_once('-') else {
        return RangeRequest::Full;
    };
    let (start, end) = (start.trim(), end.trim());
    let parsed = match (start.is_empty(), end.is_empty()) {
        (true, true) => return RangeRequest::Full,
        // The last N bytes.
        (true, false) => match end.parse::<u64>() {
            Ok(0) => return RangeRequest::Unsatisfiable,
            Ok(n) => Some(size.saturating_sub(n)..size),
            Err(_) => None,
        },
        (false, true) => start.parse::<u64>().ok().map(|s| s..size),
        (false, false) => match (start.parse::<u64>(), end.parse::<u64>()) {
            (Ok(s), Ok(e)) if s <= e => Some(s..e.saturating_add(1).min(size)),
            (Ok(_), Ok(_)) => return RangeRequest::Unsatisfiable,
            _ => None,
        },
    };
    match parsed {
        None => RangeRequest::Full,
        Some(range) if range.start >= size => RangeRequest::Unsatisfiable,
        Some(range) => RangeRequest::Partial(range),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse(None, 10), RangeRequest::Full);
        assert_eq!(parse(Some("bytes=0-4"), 10), RangeRequest::Partial(0..5));
        assert_eq!(parse(Some("bytes=5-"), 10), RangeRequest::Partial(5..10));
        assert_eq!(parse(Some("bytes=-3"), 10), RangeRequest::Partial(7..10));
        assert_eq!(parse(Some("bytes=-30"), 10), RangeRequest::Partial(0..10));
        assert_eq!(parse(Some("bytes=8-100"), 10), RangeRequest::Partial(8..10));
        assert_eq!(parse(Some("bytes=10-"), 10), RangeRequest::Unsatisfiable);
        assert_eq!(parse(Some("bytes=5-2"), 10), RangeRequest::Unsatisfiable);
        assert_eq!(parse(Some("bytes=0-0"), 0), RangeRequest::Unsatisfiable);
        assert_eq!(parse(Some("bytes=0-1,4-5"), 10), RangeRequest::Full);
        assert_eq!(parse(Some("items=0-1"), 10), RangeRequest::Full);
        assert_eq!(parse(Some("bytes=x-1"), 10), RangeRequest::Full);
    }
}
