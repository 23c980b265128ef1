//! CyBorgBackup users over the core user store: each core user gets an integer id the
//! first time the dialect sees it (ids are never handed out twice), plus the six
//! notification choices CyBorgBackup keeps per user. Creating, changing and deleting go
//! through the core's rules; a changed email address keeps the user's id and keys.

use super::store::{self, UserExtra};
use super::{Account, CbError, CyborgService};
use crate::service::users::{
    validate_email, NewUser, UserError, MAX_NAME_LEN, MAX_PASSWORD_LEN, MIN_PASSWORD_LEN,
};

/// The notification choices, by field name.
pub const NOTIFY_FIELDS: [&str; 6] = [
    "notify_backup_daily",
    "notify_backup_weekly",
    "notify_backup_monthly",
    "notify_backup_success",
    "notify_backup_failed",
    "notify_backup_summary",
];

/// A notification choice of `extra` by field name.
pub fn notify_flag(extra: &UserExtra, field: &str) -> bool {
    match field {
        "notify_backup_daily" => extra.notify_backup_daily,
        "notify_backup_weekly" => extra.notify_backup_weekly,
        "notify_backup_monthly" => extra.notify_backup_monthly,
        "notify_backup_success" => extra.notify_backup_success,
        "notify_backup_failed" => extra.notify_backup_failed,
        "notify_backup_summary" => extra.notify_backup_summary,
        _ => false,
    }
}

fn set_notify_flag(extra: &mut UserExtra, field: &str, value: bool) {
    let flag = match field {
        "notify_backup_daily" => &mut extra.notify_backup_daily,
        "notify_backup_weekly" => &mut extra.notify_backup_weekly,
        "notify_backup_monthly" => &mut extra.notify_backup_monthly,
        "notify_backup_success" => &mut extra.notify_backup_success,
        "notify_backup_failed" => &mut extra.notify_backup_failed,
        "notify_backup_summary" => &mut extra.notify_backup_summary,
        _ => return,
    };
    *flag = value;
}

/// The writable fields of a user; `None`: not given.
#[derive(Debug, Clone, Default)]
pub struct UserInput {
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub is_superuser: Option<bool>,
    pub password: Option<String>,
    /// Notification field name → value.
    pub notify: Vec<(String, bool)>,
}

fn check_name(field: &str, name: &str) -> Result<(), CbError> {
    if name.chars().count() > MAX_NAME_LEN {
        return Err(CbError::invalid(
            field,
            format!("Ensure this field has no more than {MAX_NAME_LEN} characters."),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(CbError::invalid(
            field,
            "Control characters are not allowed.",
        ));
    }
    Ok(())
}

fn check_password(password: &str) -> Result<(), CbError> {
    if password.len() < MIN_PASSWORD_LEN || password.len() > MAX_PASSWORD_LEN {
        return Err(CbError::invalid(
            "password",
            format!("A password must be {MIN_PASSWORD_LEN} to {MAX_PASSWORD_LEN} bytes long."),
        ));
    }
    Ok(())
}

fn check(input: &UserInput) -> Result<(), CbError> {
    let mut errors = Vec::new();
    let mut note = |result: Result<(), CbError>| {
        if let Err(CbError::Invalid(mut list)) = result {
            errors.append(&mut list);
        }
    };
    if let Some(email) = &input.email {
        note(validate_email(email.trim()).map_err(|e| CbError::invalid("email", e.to_string())));
    }
    if let Some(name) = &input.first_name {
        note(check_name("first_name", name));
    }
    if let Some(name) = &input.last_name {
        note(check_name("last_name", name));
    }
    if let Some(password) = &input.password {
        note(check_password(password));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(CbError::Invalid(errors))
    }
}

impl CyborgService {
    /// Every user, by id.
    pub fn list_users(&self) -> Result<Vec<Account>, CbError> {
        let mut accounts = Vec::new();
        for user in self.users.list()? {
            accounts.push(self.account(user)?);
        }
        accounts.sort_by_key(|a| a.id);
        Ok(accounts)
    }

    /// Creates a user (superusers only).
    pub fn create_user(&self, caller: &Account, input: UserInput) -> Result<Account, CbError> {
        super::authorize(caller, super::Action::Manage)?;
        let mut missing = Vec::new();
        if input.email.is_none() {
            missing.push(("email".to_string(), "This field is required.".to_string()));
        }
        if input.password.is_none() {
            missing.push((
                "password".to_string(),
                "Password required for new User.".to_string(),
            ));
        }
        if !missing.is_empty() {
            return Err(CbError::Invalid(missing));
        }
        check(&input)?;
        let new = NewUser {
            email: input.email.clone().unwrap_or_default().trim().to_string(),
            first_name: input.first_name.clone().unwrap_or_default(),
            last_name: input.last_name.clone().unwrap_or_default(),
            superuser: input.is_superuser.unwrap_or(false),
        };
        let created = match self
            .users
            .create(new, input.password.as_deref().unwrap_or_default())
        {
            Ok(user) => user,
            Err(UserError::Exists { .. }) => {
                return Err(CbError::invalid(
                    "email",
                    "User with this Email address already exists.",
                ))
            }
            Err(e) => return Err(e.into()),
        };
        let key = crate::state::users::email_key(&created.email);
        let mut state = self.lock();
        let id = store::take_id(&mut state.next_user_id);
        let mut extra = UserExtra {
            id,
            ..UserExtra::default()
        };
        for (field, value) in &input.notify {
            set_notify_flag(&mut extra, field, *value);
        }
        state.users.insert(key, extra.clone());
        self.save(&state)?;
        Ok(Account {
            id,
            user: created,
            extra,
        })
    }

    /// Changes a user (superusers only).
    pub fn update_user(
        &self,
        caller: &Account,
        id: u64,
        input: UserInput,
    ) -> Result<Account, CbError> {
        super::authorize(caller, super::Action::Manage)?;
        let account = self.account_by_id(id)?;
        check(&input)?;
        let mut email = account.user.email.clone();
        if let Some(new) = input.email.as_deref().map(str::trim) {
            if new != email {
                email = self.rename_user(&email, new)?;
            }
        }
        let email = &email;
        let mut record = self.store.user(email)?.ok_or(CbError::NotFound("User"))?;
        if let Some(name) = input.first_name {
            record.first_name = name;
        }
        if let Some(name) = input.last_name {
            record.last_name = name;
        }
        if let Some(superuser) = input.is_superuser {
            record.superuser = superuser;
        }
        self.store.update_user(&record)?;
        if let Some(password) = &input.password {
            self.users.set_password(email, password)?;
        }
        if !input.notify.is_empty() {
            let mut state = self.lock();
            let key = crate::state::users::email_key(email);
            if let Some(extra) = state.users.get_mut(&key) {
                for (field, value) in &input.notify {
                    set_notify_flag(extra, field, *value);
                }
            }
            self.save(&state)?;
        }
        self.account_by_id(id)
    }

    /// Gives the user `email` the address `new` (their keys follow, and their id here
    /// with them); the address they now have.
    fn rename_user(&self, email: &str, new: &str) -> Result<String, CbError> {
        // Held across both steps, so no request gives the new address an id of its own
        // in between.
        let mut state = self.lock();
        let renamed = self.users.rename(email, new).map_err(|e| match e {
            UserError::Exists { .. } => {
                CbError::invalid("email", "User with this Email address already exists.")
            }
            UserError::InvalidInput(m) => CbError::invalid("email", m),
            other => other.into(),
        })?;
        let old_key = crate::state::users::email_key(email);
        if let Some(extra) = state.users.remove(&old_key) {
            state
                .users
                .insert(crate::state::users::email_key(&renamed.email), extra);
        }
        self.save(&state)?;
        Ok(renamed.email)
    }

    /// Deletes a user and revokes the keys they own (superusers only).
    pub fn delete_user(&self, caller: &Account, id: u64) -> Result<(), CbError> {
        super::authorize(caller, super::Action::Manage)?;
        let account = self.account_by_id(id)?;
        self.users.delete(&account.user.email, &self.keys)?;
        let mut state = self.lock();
        state
            .users
            .remove(&crate::state::users::email_key(&account.user.email));
        self.save(&state)
    }
}
