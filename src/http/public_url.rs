//! The base of URLs the server hands out (download links, Wings upload parts): the
//! configured public URL, else `http://` plus the request's `Host` header, which is how
//! the client reached this server.

use axum::http::header::HOST;
use axum::http::HeaderMap;

/// `scheme://host[:port]` without a trailing slash, or `None` when the request names no
/// usable host and none is configured.
pub fn base(configured: Option<&str>, headers: &HeaderMap) -> Option<String> {
    if let Some(url) = configured {
        return Some(url.trim_end_matches('/').to_string());
    }
    let host = headers.get(HOST)?.to_str().ok()?;
    let plausible = !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b));
    plausible.then(|| format!("http://{host}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn configured_url_wins_then_the_host_header() {
        let mut headers = HeaderMap::new();
        assert_eq!(base(None, &headers), None);
        headers.insert(HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert_eq!(
            base(None, &headers).as_deref(),
            Some("http://127.0.0.1:8080")
        );
        assert_eq!(
            base(Some("https://backups.example.com/"), &headers).as_deref(),
            Some("https://backups.example.com")
        );
        headers.insert(HOST, HeaderValue::from_static("evil.com/path?x"));
        assert_eq!(base(None, &headers), None);
    }
}
