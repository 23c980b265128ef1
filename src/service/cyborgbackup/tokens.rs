//! CyBorgBackup's JSON Web Tokens, as its clients obtain and refresh them: HS256 under a
//! 32-byte secret created once in the state store, an access token and a refresh token
//! with the claims `token_type`, `exp`, `iat`, `jti`, `user_id`, `email`, `first_name`,
//! `last_name`. A refresh hands out a new pair and retires the refresh token presented
//! (its `jti` is remembered until it expires), so a refresh token works once.

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// Name of the signing secret in the state store.
pub const SECRET_NAME: &str = "cyborgbackup-jwt";
/// The longest token looked at.
pub const MAX_TOKEN_LEN: usize = 4096;

/// What a token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub token_type: String,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
    pub user_id: u64,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
}

/// The user a token is made for.
#[derive(Debug, Clone)]
pub struct Subject<'a> {
    pub user_id: u64,
    pub email: &'a str,
    pub first_name: &'a str,
    pub last_name: &'a str,
}

/// Which of the two a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenType {
    Access,
    Refresh,
}

impl TokenType {
    fn as_str(self) -> &'static str {
        match self {
            TokenType::Access => "access",
            TokenType::Refresh => "refresh",
        }
    }
}

/// Why a token is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("Token is invalid or expired")]
    Invalid,
    #[error("Token has wrong type")]
    WrongType,
    #[error("Token is blacklisted")]
    Used,
}

/// Signs and checks tokens.
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    pub access_secs: i64,
    pub refresh_secs: i64,
}

impl Tokens {
    pub fn new(secret: &[u8], access_secs: i64, refresh_secs: i64) -> Tokens {
        Tokens {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            access_secs: access_secs.max(1),
            refresh_secs: refresh_secs.max(1),
        }
    }

    /// A new token of `token_type` for `subject`, issued at `now` (Unix seconds).
    pub fn issue(&self, token_type: TokenType, subject: &Subject, now: i64) -> (String, Claims) {
        let lifetime = match token_type {
            TokenType::Access => self.access_secs,
            TokenType::Refresh => self.refresh_secs,
        };
        let claims = Claims {
            token_type: token_type.as_str().to_string(),
            exp: now.saturating_add(lifetime),
            iat: now,
            jti: uuid::Uuid::new_v4().simple().to_string(),
            user_id: subject.user_id,
            email: subject.email.to_string(),
            first_name: subject.first_name.to_string(),
            last_name: subject.last_name.to_string(),
        };
        let token = encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signs any claims");
        (token, claims)
    }

    /// The claims of a token of `token_type` that is well signed and not expired.
    pub fn verify(&self, token: &str, token_type: TokenType) -> Result<Claims, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Invalid);
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        let claims = decode::<Claims>(token, &self.decoding, &validation)
            .map_err(|_| TokenError::Invalid)?
            .claims;
        if claims.token_type != token_type.as_str() {
            return Err(TokenError::WrongType);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject() -> Subject<'static> {
        Subject {
            user_id: 7,
            email: "ada@example.org",
            first_name: "Ada",
            last_name: "L",
        }
    }

    #[test]
    fn tokens_round_trip_and_keep_their_type() {
        let tokens = Tokens::new(&[7; 32], 3600, 1_209_600);
        let now = chrono::Utc::now().timestamp();
        let (access, claims) = tokens.issue(TokenType::Access, &subject(), now);
        assert_eq!(claims.exp, now + 3600);
        assert_eq!(tokens.verify(&access, TokenType::Access).unwrap(), claims);
        assert_eq!(
            tokens.verify(&access, TokenType::Refresh),
            Err(TokenError::WrongType)
        );
        let other = Tokens::new(&[8; 32], 3600, 3600);
        assert_eq!(
            other.verify(&access, TokenType::Access),
            Err(TokenError::Invalid)
        );
        let (old, _) = tokens.issue(TokenType::Access, &subject(), now - 7200);
        assert_eq!(
            tokens.verify(&old, TokenType::Access),
            Err(TokenError::Invalid)
        );
        assert_eq!(
            tokens.verify("a.b.c", TokenType::Access),
            Err(TokenError::Invalid)
        );
    }
}
