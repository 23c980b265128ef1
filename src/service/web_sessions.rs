//! Sign-in sessions of the web dashboard (`/ui/`): a random token per browser, kept in
//! memory with the signed-in user, their role and the CSRF token every form carries. A
//! browser gets a session before signing in (so the sign-in form has a CSRF token too);
//! signing in replaces it with a new one (no fixation), signing out removes it, and a
//! session idle past [`IDLE_TIMEOUT`] is gone. Tokens are compared through a hash map of
//! their SHA-256, so no token is kept in clear.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::keys::{KeyStore, Principal, Role};
use super::users::UserView;

/// A session unused this long is signed out.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Sessions held at once; the least recently used go first beyond it.
pub const MAX_SESSIONS: usize = 10_000;

/// Who a session belongs to once signed in.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub user: UserView,
    pub role: Role,
}

impl SignedIn {
    /// The principal the services check roles against.
    pub fn principal(&self) -> Principal {
        Principal {
            key_id: format!("ui:{}", self.user.email),
            name: self.user.email.clone(),
            role: self.role,
        }
    }
}

/// A session as a request sees it.
#[derive(Debug, Clone)]
pub struct WebSession {
    pub csrf: String,
    pub signed_in: Option<SignedIn>,
}

impl WebSession {
    /// Whether `token` is this session's CSRF token (constant time).
    pub fn csrf_matches(&self, token: &str) -> bool {
        self.csrf.as_bytes().ct_eq(token.as_bytes()).into()
    }
}

struct Entry {
    session: WebSession,
    last_used: Instant,
}

/// The dashboard's sessions.
#[derive(Default)]
pub struct WebSessions {
    by_hash: Mutex<HashMap<[u8; 32], Entry>>,
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The role a user acts with in the dashboard: admin for a superuser, else the highest
/// role among the user's own live keys, else reader.
pub fn role_of(user: &UserView, keys: &KeyStore) -> Role {
    if user.superuser {
        return Role::Admin;
    }
    keys.list()
        .unwrap_or_default()
        .into_iter()
        .filter(|k| k.revoked_at.is_none() && k.user.as_deref() == Some(user.email.as_str()))
        .map(|k| k.role)
        .max()
        .unwrap_or(Role::Reader)
}

impl WebSessions {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Entry>> {
        self.by_hash
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The live session of `token`, touched.
    pub fn get(&self, token: &str) -> Option<WebSession> {
        let mut map = self.map();
        let key = hash(token);
        let entry = map.get_mut(&key)?;
        if entry.last_used.elapsed() >= IDLE_TIMEOUT {
            map.remove(&key);
            return None;
        }
        entry.last_used = Instant::now();
        Some(entry.session.clone())
    }

    /// A new session (anonymous, or signed in); returns its token.
    pub fn create(&self, signed_in: Option<SignedIn>) -> (String, WebSession) {
        let token = random_token();
        let session = WebSession {
            csrf: random_token(),
            signed_in,
        };
        let mut map = self.map();
        map.retain(|_, e| e.last_used.elapsed() < IDLE_TIMEOUT);
        if map.len() >= MAX_SESSIONS {
            if let Some(oldest) = map
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(key, _)| *key)
            {
                map.remove(&oldest);
            }
        }
        map.insert(
            hash(&token),
            Entry {
                session: session.clone(),
                last_used: Instant::now(),
            },
        );
        (token, session)
    }

    /// Ends a session.
    pub fn remove(&self, token: &str) {
        self.map().remove(&hash(token));
    }

    /// Ends every session of a user (their password changed, they were deleted).
    pub fn remove_user(&self, email: &str) {
        self.map().retain(|_, e| {
            e.session
                .signed_in
                .as_ref()
                .is_none_or(|s| !s.user.email.eq_ignore_ascii_case(email))
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> UserView {
        UserView {
            email: "a@example.com".into(),
            first_name: String::new(),
            last_name: String::new(),
            superuser: false,
            created_at: String::new(),
            last_login: None,
        }
    }

    #[test]
    fn a_session_is_found_by_its_token_only_and_ends_when_removed() {
        let sessions = WebSessions::default();
        let (token, session) = sessions.create(Some(SignedIn {
            user: user(),
            role: Role::Reader,
        }));
        let found = sessions.get(&token).expect("found");
        assert!(found.csrf_matches(&session.csrf));
        assert!(!found.csrf_matches("other"));
        assert!(sessions.get("not a token").is_none());
        sessions.remove_user("A@example.com");
        assert!(sessions.get(&token).is_none());
        let (token, _) = sessions.create(None);
        sessions.remove(&token);
        assert!(sessions.get(&token).is_none());
    }
}
