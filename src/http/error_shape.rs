//! Errors that never pass through an API's own error type — axum's extractor rejections
//! (a bad query value, a body over the limit, a path that is not UTF-8), the method
//! router's 405, and requests whose URL or header section is too long — answered in the
//! calling API's own error shape instead of axum's `text/plain` or empty bodies.
//!
//! Each API (the native `/v1` and every dialect) wraps its routes in [`shape_errors`]
//! with its [`Shaper`]: a response with an error status and a body that is not JSON is
//! rebuilt by the shaper from its status and text, keeping its other headers (`Allow`
//! on a 405). The URL and header limits sit here, below hyper's own (64 KiB of URL,
//! about 400 KiB of headers), so nearly every over-long request reaches a handler's
//! shape; what exceeds hyper's limits is refused by hyper with an empty body before any
//! route is known.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

/// Builds an API's error answer from a status and a message.
pub type Shaper = fn(StatusCode, String) -> Response;

/// The longest URL (path and query) an API accepts.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// The most header bytes (names, values and separators) an API accepts.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// The most of a rejection's text carried into the shaped message.
const MAX_MESSAGE_BYTES: usize = 1024;

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            let essence = v.split(';').next().unwrap_or("").trim();
            essence == "application/json" || essence.ends_with("+json")
        })
}

fn header_bytes(headers: &HeaderMap) -> usize {
    headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum()
}

/// The middleware: refuses over-long requests, then reshapes error answers that are not
/// JSON. Use with `axum::middleware::from_fn_with_state(shaper, shape_errors)`.
pub async fn shape_errors(State(shaper): State<Shaper>, request: Request, next: Next) -> Response {
    let uri_len = request
        .uri()
        .path_and_query()
        .map_or(0, |pq| pq.as_str().len());
    if uri_len > MAX_URI_BYTES {
        return shaper(
            StatusCode::URI_TOO_LONG,
            format!("the URL is {uri_len} bytes long; at most {MAX_URI_BYTES} are accepted"),
        );
    }
    let headers_len = header_bytes(request.headers());
    if headers_len > MAX_HEADER_BYTES {
        return shaper(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!(
                "the request's headers are {headers_len} bytes; at most {MAX_HEADER_BYTES} are accepted"
            ),
        );
    }
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json(response.headers()) {
        return response;
    }
    let (parts, body) = response.into_parts();
    // Rejection texts are a line; anything longer is cut, never buffered whole.
    let text = match axum::body::to_bytes(body, 64 * 1024).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_MESSAGE_BYTES)])
            .trim()
            .to_string(),
        Err(_) => String::new(),
    };
    let message = if text.is_empty() {
        match status {
            StatusCode::METHOD_NOT_ALLOWED => "this method is not allowed on this path".into(),
            _ => status.canonical_reason().unwrap_or("error").to_lowercase(),
        }
    } else {
        text
    };
    let mut shaped = shaper(status, message);
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            shaped.headers_mut().insert(name.clone(), value.clone());
        }
    }
    shaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_recognised_by_its_media_type() {
        let mut headers = HeaderMap::new();
        assert!(!is_json(&headers));
        headers.insert(
            header::CONTENT_TYPE,
            "text/plain; charset=utf-8".parse().unwrap(),
        );
        assert!(!is_json(&headers));
        headers.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        assert!(is_json(&headers));
        headers.insert(
            header::CONTENT_TYPE,
            "application/problem+json".parse().unwrap(),
        );
        assert!(is_json(&headers));
    }
}
