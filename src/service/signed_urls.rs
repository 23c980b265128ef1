//! Capability URLs: a request path made usable without an API key for a limited time by
//! two query parameters, `expires` (unix seconds) and `signature`, an HMAC-SHA256 over
//! the method, the path and the expiry under a server secret. Whoever holds the URL may
//! make that one request until it expires; changing any byte of method, path or expiry
//! invalidates it. Used for backup downloads and for the upload parts the Wings dialect
//! hands out.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Longest lifetime a signed URL may be given.
pub const MAX_LIFETIME_SECS: u64 = 7 * 24 * 3600;

/// Why a signed request is refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the URL is not signed (expected the query parameters expires and signature)")]
    Missing,
    #[error("the URL's signature does not match")]
    Invalid,
    #[error("the URL expired at {expires} (unix time)")]
    Expired { expires: i64 },
}

/// Signs and verifies capability URLs with one secret.
#[derive(Clone)]
pub struct UrlSigner {
    secret: [u8; 32],
}

impl std::fmt::Debug for UrlSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UrlSigner(..)")
    }
}

/// The path a backup's signed download link names.
pub fn download_path(id: &str) -> String {
    format!("/v1/download/{id}")
}

/// A signed link made for a caller: the whole URL and when it expires (RFC 3339).
#[derive(Debug, Clone)]
pub struct SignedLink {
    pub url: String,
    pub expires_at: String,
}

impl UrlSigner {
    pub fn new(secret: [u8; 32]) -> UrlSigner {
        UrlSigner { secret }
    }

    /// A link under `base` (scheme and host) that downloads backup `id` for `ttl`
    /// seconds from `now` (unix seconds); the lifetime must be 1 s to
    /// [`MAX_LIFETIME_SECS`].
    pub fn backup_link(
        &self,
        base: &str,
        id: &str,
        ttl: u64,
        now: i64,
    ) -> Result<SignedLink, String> {
        if ttl == 0 || ttl > MAX_LIFETIME_SECS {
            return Err(format!(
                "ttl {ttl} must be between 1 and {MAX_LIFETIME_SECS} seconds"
            ));
        }
        let expires = now.saturating_add(ttl as i64);
        let path = download_path(id);
        Ok(SignedLink {
            url: format!("{base}{path}?{}", self.query("GET", &path, expires)),
            expires_at: chrono::DateTime::from_timestamp(expires, 0)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .unwrap_or_default(),
        })
    }

    fn mac(&self, method: &str, path: &str, expires: i64) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret).expect("any key length");
        mac.update(format!("{method}\n{path}\n{expires}").as_bytes());
        mac
    }

    /// The query string (`expires=...&signature=...`) that lets `method path` be
    /// requested until `expires`.
    pub fn query(&self, method: &str, path: &str, expires: i64) -> String {
        let signature = hex::encode(self.mac(method, path, expires).finalize().into_bytes());
        format!("expires={expires}&signature={signature}")
    }

    /// Checks a request's `expires` and `signature` at time `now` (unix seconds).
    pub fn verify(
        &self,
        method: &str,
        path: &str,
        expires: Option<i64>,
        signature: Option<&str>,
        now: i64,
    ) -> Result<(), SignatureError> {
        let (Some(expires), Some(signature)) = (expires, signature) else {
            return Err(SignatureError::Missing);
        };
        let signature = hex::decode(signature).map_err(|_| SignatureError::Invalid)?;
        self.mac(method, path, expires)
            .verify_slice(&signature)
            .map_err(|_| SignatureError::Invalid)?;
        if now >= expires {
            return Err(SignatureError::Expired { expires });
        }
        Ok(())
    }
}

/// Splits a signed query into its two values.
pub fn parse_query(query: &str) -> (Option<i64>, Option<String>) {
    let (mut expires, mut signature) = (None, None);
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("expires", v)) => expires = v.parse().ok(),
            Some(("signature", v)) => signature = Some(v.to_string()),
            _ => {}
        }
    }
    (expires, signature)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verify(
        signer: &UrlSigner,
        method: &str,
        path: &str,
        query: &str,
        now: i64,
    ) -> Result<(), SignatureError> {
        let (expires, signature) = parse_query(query);
        signer.verify(method, path, expires, signature.as_deref(), now)
    }

    #[test]
    fn a_signed_url_works_for_its_request_until_it_expires() {
        let signer = UrlSigner::new([7; 32]);
        let query = signer.query("PUT", "/wings/parts/a/1", 1000);
        assert_eq!(
            verify(&signer, "PUT", "/wings/parts/a/1", &query, 999),
            Ok(())
        );
        assert_eq!(
            verify(&signer, "PUT", "/wings/parts/a/1", &query, 1000),
            Err(SignatureError::Expired { expires: 1000 })
        );
        for (method, path) in [("GET", "/wings/parts/a/1"), ("PUT", "/wings/parts/a/2")] {
            assert_eq!(
                verify(&signer, method, path, &query, 0),
                Err(SignatureError::Invalid)
            );
        }
        let later = query.replace("expires=1000", "expires=2000");
        assert_eq!(
            verify(&signer, "PUT", "/wings/parts/a/1", &later, 0),
            Err(SignatureError::Invalid)
        );
        let other = UrlSigner::new([8; 32]);
        assert_eq!(
            verify(&other, "PUT", "/wings/parts/a/1", &query, 0),
            Err(SignatureError::Invalid)
        );
        assert_eq!(
            verify(&signer, "PUT", "/wings/parts/a/1", "expires=5", 0),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify(
                &signer,
                "PUT",
                "/wings/parts/a/1",
                "expires=5&signature=zz",
                0
            ),
            Err(SignatureError::Invalid)
        );
    }
}
