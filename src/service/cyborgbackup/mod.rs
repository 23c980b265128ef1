//! The CyBorgBackup dialect's service: who its callers are (the core users, signed in by
//! password, by an API key assigned to them, or by a token from [`tokens`]), what they may
//! do ([`authorize`]), and its records: integer ids over the core users and schedules
//! (`users`, `schedules`), its settings (`settings`), its repositories and clients
//! (`records`), all kept in its document (`store`). No HTTP types: the dialect in
//! `dialects::cyborgbackup` speaks the wire format.

pub mod catalogs;
pub mod events;
pub mod fields;
pub mod jobs;
pub mod metrics;
pub mod policies;
pub mod policy_sources;
pub mod records;
pub mod restores;
pub mod schedules;
pub mod settings;
pub mod ssh_keys;
pub mod store;
pub mod tokens;
pub mod users;

use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::ErrorKind;
use crate::service::documents::Document;
use crate::service::keys::{KeyStore, KeyStoreError};
use crate::service::schedules::{ScheduleError, Schedules};
use crate::service::users::{UserError, UserStore, UserView};
use crate::state::{StateError, StateStore};
use store::{StateFile, UserExtra};
use tokens::{TokenError, TokenType, Tokens};

/// DRF's time form, UTC with microseconds: `2018-11-22T18:17:51.831221Z`.
pub fn drf_time(time: chrono::DateTime<chrono::Utc>) -> String {
    time.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

pub fn drf_now() -> String {
    drf_time(chrono::Utc::now())
}

/// An RFC 3339 time of the core (a user's creation) in DRF's form; kept as is when it
/// does not parse.
pub fn drf_from_rfc3339(text: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| drf_time(t.with_timezone(&chrono::Utc)))
        .unwrap_or_else(|_| text.to_string())
}

#[derive(Debug, thiserror::Error)]
pub enum CbError {
    /// Bad input, by field (`__all__` for none): DRF's `{"field": ["message"]}`.
    #[error("invalid input: {0:?}")]
    Invalid(Vec<(String, String)>),
    /// No object of this model with that id.
    #[error("No {0} matches the given query.")]
    NotFound(&'static str),
    #[error("You do not have permission to perform this action.")]
    Forbidden,
    /// A wrong email or password, or a key or token of nobody.
    #[error("wrong credentials")]
    BadCredentials,
    #[error("{0}")]
    Token(#[from] TokenError),
    #[error("{0}")]
    Damaged(String),
    /// A request that cannot be done as asked: DRF's `{"detail": "..."}` with a 400.
    #[error("{0}")]
    BadRequest(String),
    /// Refused for what the object is now (a running job's delete): a 403 with a detail.
    #[error("{0}")]
    Refused(String),
    /// The core this needs is not attached (a service opened without the server).
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Users(#[from] UserError),
    #[error(transparent)]
    Schedules(#[from] ScheduleError),
    #[error(transparent)]
    Keys(#[from] KeyStoreError),
}

impl CbError {
    pub fn invalid(field: &str, message: impl Into<String>) -> CbError {
        CbError::Invalid(vec![(field.to_string(), message.into())])
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            CbError::Invalid(_) => ErrorKind::InvalidInput,
            CbError::NotFound(_) => ErrorKind::NotFound,
            CbError::Forbidden => ErrorKind::Forbidden,
            CbError::BadCredentials | CbError::Token(_) => ErrorKind::Unauthorized,
            CbError::Damaged(_) => ErrorKind::Corrupt,
            CbError::BadRequest(_) => ErrorKind::InvalidInput,
            CbError::Refused(_) => ErrorKind::Forbidden,
            CbError::Unavailable(_) => ErrorKind::Unavailable,
            CbError::State(e) => e.kind(),
            CbError::Users(e) => e.kind(),
            CbError::Schedules(e) => e.kind(),
            CbError::Keys(e) => e.kind(),
        }
    }
}

/// A signed-in caller: a core user and its CyBorgBackup id and choices.
#[derive(Debug, Clone)]
pub struct Account {
    pub id: u64,
    pub user: UserView,
    pub extra: UserExtra,
}

impl Account {
    pub fn is_superuser(&self) -> bool {
        self.user.superuser
    }

    /// The caller as the core services see it: a superuser administers, others read.
    pub fn principal(&self) -> crate::service::keys::Principal {
        use crate::service::keys::Role;
        crate::service::keys::Principal {
            key_id: format!("cyborgbackup-user-{}", self.id),
            name: self.user.email.clone(),
            role: if self.is_superuser() {
                Role::Admin
            } else {
                Role::Reader
            },
        }
    }
}

/// What a request does, as far as permission goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// GET of a list.
    List,
    /// The caller's own record (`/me/`) or the server's configuration (`/config/`).
    Own,
    /// Anything else: one object, a create, an update, a delete.
    Manage,
}

/// CyBorgBackup's rule: superusers may do everything; other users may read lists, their
/// own record and the configuration.
pub fn authorize(account: &Account, action: Action) -> Result<(), CbError> {
    match action {
        Action::List | Action::Own => Ok(()),
        Action::Manage if account.is_superuser() => Ok(()),
        Action::Manage => Err(CbError::Forbidden),
    }
}

/// How long tokens live.
#[derive(Debug, Clone, Copy)]
pub struct TokenLifetimes {
    pub access_secs: u64,
    pub refresh_secs: u64,
}

/// The core services the policies and jobs run on.
#[derive(Clone)]
pub struct Core {
    pub runner: Arc<crate::service::policy_runs::PolicyRunner>,
    pub jobs: Arc<crate::service::jobs::JobRegistry>,
    pub repo: crate::repo::Repository,
    pub agents: Arc<crate::service::agents::Agents>,
    /// The host name of clients that are this server (beside `localhost`).
    pub local_hostname: String,
}

/// The dialect's service.
pub struct CyborgService {
    core: Option<Core>,
    document: Document,
    state: Mutex<StateFile>,
    store: Arc<StateStore>,
    users: UserStore,
    keys: KeyStore,
    schedules: Schedules,
    tokens: Tokens,
}

impl CyborgService {
    /// Opens the service over the core stores and its document; the token secret is
    /// created in the state store the first time.
    pub fn open(
        store: Arc<StateStore>,
        keys: KeyStore,
        document: Document,
        lifetimes: TokenLifetimes,
    ) -> Result<CyborgService, CbError> {
        let state = store::load(&document)?;
        let secret = store.secret_or_insert(tokens::SECRET_NAME, &rand::random::<[u8; 32]>())?;
        let secs = |s: u64| i64::try_from(s).unwrap_or(i64::MAX);
        let service = CyborgService {
            document,
            core: None,
            users: UserStore::new(store.clone()),
            schedules: Schedules::new(store.clone()),
            state: Mutex::new(state),
            store,
            keys,
            tokens: Tokens::new(
                &secret,
                secs(lifetimes.access_secs),
                secs(lifetimes.refresh_secs),
            ),
        };
        service.save(&service.lock())?;
        Ok(service)
    }

    /// Gives the service the core's policies, jobs and repository.
    pub fn attach(&mut self, core: Core) {
        self.core = Some(core);
    }

    fn core(&self) -> Result<&Core, CbError> {
        self.core
            .as_ref()
            .ok_or_else(|| CbError::Unavailable("policies and jobs run only in the server".into()))
    }

    fn lock(&self) -> MutexGuard<'_, StateFile> {
        // A panic while holding the lock leaves the last saved state in memory too.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn save(&self, state: &StateFile) -> Result<(), CbError> {
        store::save(&self.document, state)
    }

    /// The settings stowage acts on.
    pub fn settings(&self) -> settings::Settings {
        settings::Settings::read(&self.lock())
    }

    /// The account of a core user, its CyBorgBackup id given on first sight.
    fn account(&self, user: UserView) -> Result<Account, CbError> {
        let mut state = self.lock();
        let key = crate::state::users::email_key(&user.email);
        let extra = match state.users.get(&key) {
            Some(extra) => extra.clone(),
            None => {
                let id = store::take_id(&mut state.next_user_id);
                let extra = UserExtra {
                    id,
                    ..UserExtra::default()
                };
                state.users.insert(key, extra.clone());
                self.save(&state)?;
                extra
            }
        };
        Ok(Account {
            id: extra.id,
            user,
            extra,
        })
    }

    /// Signs in with email and password.
    pub fn sign_in(&self, email: &str, password: &str) -> Result<Account, CbError> {
        match self.users.verify(email, password) {
            Ok(user) => self.account(user),
            Err(UserError::WrongPassword) => Err(CbError::BadCredentials),
            Err(e) => Err(e.into()),
        }
    }

    /// Signs in with a stowage API key assigned to a user.
    pub fn sign_in_with_key(&self, key: &str) -> Result<Account, CbError> {
        let principal = self.keys.verify(key).map_err(|e| match e.kind() {
            ErrorKind::Unauthorized => CbError::BadCredentials,
            _ => e.into(),
        })?;
        let owner = self
            .store
            .key(&principal.key_id)?
            .and_then(|record| record.user)
            .ok_or(CbError::BadCredentials)?;
        match self.users.get(&owner) {
            Ok(user) => self.account(user),
            Err(UserError::NotFound { .. }) => Err(CbError::BadCredentials),
            Err(e) => Err(e.into()),
        }
    }

    /// The account a token's claims name, if it still exists.
    fn account_of_claims(&self, claims: &tokens::Claims) -> Result<Account, CbError> {
        let account = self
            .account_by_id(claims.user_id)
            .map_err(|_| CbError::Token(TokenError::Invalid))?;
        Ok(account)
    }

    /// Signs in with an access token.
    pub fn sign_in_with_token(&self, token: &str) -> Result<Account, CbError> {
        let claims = self.tokens.verify(token, TokenType::Access)?;
        self.account_of_claims(&claims)
    }

    /// A new access and refresh token for an account.
    pub fn token_pair(&self, account: &Account) -> (String, String) {
        let subject = tokens::Subject {
            user_id: account.id,
            email: &account.user.email,
            first_name: &account.user.first_name,
            last_name: &account.user.last_name,
        };
        let now = chrono::Utc::now().timestamp();
        let (access, _) = self.tokens.issue(TokenType::Access, &subject, now);
        let (refresh, _) = self.tokens.issue(TokenType::Refresh, &subject, now);
        (access, refresh)
    }

    /// A new access token only (handed back when users change their own record).
    pub fn access_token(&self, account: &Account) -> String {
        self.token_pair(account).0
    }

    /// Exchanges a refresh token for a new pair; the one presented is retired.
    pub fn refresh(&self, token: &str) -> Result<(String, String), CbError> {
        let claims = self.tokens.verify(token, TokenType::Refresh)?;
        {
            let mut state = self.lock();
            let now = chrono::Utc::now().timestamp();
            state.used_refresh.retain(|_, exp| *exp >= now);
            if state.used_refresh.contains_key(&claims.jti) {
                return Err(TokenError::Used.into());
            }
            state.used_refresh.insert(claims.jti.clone(), claims.exp);
            self.save(&state)?;
        }
        let account = self.account_of_claims(&claims)?;
        Ok(self.token_pair(&account))
    }

    /// The account of a CyBorgBackup user id.
    pub fn account_by_id(&self, id: u64) -> Result<Account, CbError> {
        let email = {
            let state = self.lock();
            state
                .users
                .iter()
                .find(|(_, extra)| extra.id == id)
                .map(|(email, _)| email.clone())
        };
        let email = email.ok_or(CbError::NotFound("User"))?;
        match self.users.get(&email) {
            Ok(user) => self.account(user),
            Err(UserError::NotFound { .. }) => Err(CbError::NotFound("User")),
            Err(e) => Err(e.into()),
        }
    }
}
