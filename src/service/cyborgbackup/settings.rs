//! CyBorgBackup's 22 settings: their catalog (key, type, default, group and order, as
//! every CyBorgBackup install loads them), the type check of a new value, and
//! [`Settings`], the typed reading other code uses. Values are strings, booleans
//! included (`"True"`/`"False"`). Secrets (the `password` and `privatekey` types) are
//! kept as written and never shown: [`shown_value`] masks them.

use super::store::{SettingValue, StateFile};
use super::{drf_now, Account, CbError, CyborgService};

/// A setting's type, spelled as CyBorgBackup spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettingType {
    Boolean,
    String,
    Integer,
    Password,
    PrivateKey,
}

impl SettingType {
    pub fn as_str(self) -> &'static str {
        match self {
            SettingType::Boolean => "boolean",
            SettingType::String => "string",
            SettingType::Integer => "integer",
            SettingType::Password => "password",
            SettingType::PrivateKey => "privatekey",
        }
    }

    fn is_secret(self) -> bool {
        matches!(self, SettingType::Password | SettingType::PrivateKey)
    }

    /// The longest value of this type, in bytes.
    fn max_len(self) -> usize {
        match self {
            SettingType::PrivateKey => 16 * 1024,
            _ => 4096,
        }
    }
}

/// One entry of the catalog.
#[derive(Debug, Clone, Copy)]
pub struct SettingSpec {
    pub id: u32,
    pub key: &'static str,
    pub setting_type: SettingType,
    pub default: &'static str,
    pub group: &'static str,
    pub order: u32,
}

const fn spec(
    id: u32,
    key: &'static str,
    setting_type: SettingType,
    default: &'static str,
    group: &'static str,
    order: u32,
) -> SettingSpec {
    SettingSpec {
        id,
        key,
        setting_type,
        default,
        group,
        order,
    }
}

use SettingType::{Boolean, Integer, Password, PrivateKey, String as Text};

const GENERAL: &str = "1 - General";
const BACKUP: &str = "2 - Backup";
const MAIL: &str = "3 - Mail";
const SSH: &str = "4 - SSH";
const METRICS: &str = "5 - Metrics";

/// The settings every CyBorgBackup install starts with, by id.
pub const CATALOG: [SettingSpec; 22] = [
    spec(1, "cyborgbackup_mail_system", Boolean, "True", MAIL, 1),
    spec(2, "cyborgbackup_web_enabled", Boolean, "True", GENERAL, 1),
    spec(
        3,
        "cyborgbackup_catalog_enabled",
        Boolean,
        "True",
        GENERAL,
        2,
    ),
    spec(4, "cyborgbackup_auto_prune", Boolean, "True", BACKUP, 1),
    spec(
        5,
        "cyborgbackup_url",
        Text,
        "http://127.0.0.1:8000",
        GENERAL,
        4,
    ),
    spec(6, "cyborgbackup_job_cleaning", Integer, "90", BACKUP, 2),
    spec(7, "cyborgbackup_ssh_password", Password, "", SSH, 1),
    spec(
        8,
        "cyborgbackup_mail_from",
        Text,
        "cyborg@cyborg.local",
        MAIL,
        2,
    ),
    spec(9, "cyborgbackup_backup_user", Text, "root", BACKUP, 3),
    spec(10, "cyborgbackup_ssh_key", PrivateKey, "", SSH, 2),
    spec(
        11,
        "cyborgbackup_auto_restore_test",
        Boolean,
        "",
        GENERAL,
        3,
    ),
    spec(12, "cyborgbackup_mail_server", Text, "localhost", MAIL, 3),
    spec(13, "cyborgbackup_mail_username", Text, "", MAIL, 4),
    spec(14, "cyborgbackup_mail_password", Text, "", MAIL, 5),
    spec(15, "cyborgbackup_mail_port", Integer, "22", MAIL, 6),
    spec(16, "cyborgbackup_mail_tls", Boolean, "False", MAIL, 7),
    spec(
        17,
        "cyborgbackup_metrics_enabled",
        Boolean,
        "False",
        METRICS,
        1,
    ),
    spec(18, "cyborgbackup_metrics_auth", Boolean, "True", METRICS, 2),
    spec(
        19,
        "cyborgbackup_metrics_auth_username",
        Text,
        "cyborg",
        METRICS,
        3,
    ),
    spec(
        20,
        "cyborgbackup_metrics_auth_password",
        Text,
        "backup",
        METRICS,
        4,
    ),
    spec(
        21,
        "cyborgbackup_integrity_check",
        Boolean,
        "False",
        BACKUP,
        4,
    ),
    spec(22, "cyborgbackup_ic_cron", Text, "00 20 * * *", BACKUP, 5),
];

/// The catalog entry of a setting id.
pub fn by_id(id: u64) -> Option<&'static SettingSpec> {
    CATALOG.iter().find(|s| u64::from(s.id) == id)
}

/// The id of `cyborgbackup_ssh_key`, the private half of the SSH key pair.
pub const SETTING_SSH_KEY: u32 = 10;

/// What a secret's value is shown as once set.
pub const MASK: &str = "$encrypted$";

/// The value as the API shows it: a secret that is set is masked.
pub fn shown_value(spec: &SettingSpec, value: &str) -> String {
    if spec.setting_type.is_secret() && !value.is_empty() {
        MASK.to_string()
    } else {
        value.to_string()
    }
}

/// Checks a new value against the setting's type; `Ok(None)` keeps the stored value (a
/// secret written back as shown, [`MASK`]).
pub fn check(spec: &SettingSpec, value: &str) -> Result<Option<String>, CbError> {
    let invalid = |message: String| CbError::invalid("value", message);
    let kind = spec.setting_type;
    if value.len() > kind.max_len() {
        return Err(invalid(format!(
            "Ensure this field has no more than {} characters.",
            kind.max_len()
        )));
    }
    if value
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(invalid("Control characters are not allowed.".into()));
    }
    match kind {
        SettingType::Boolean if !matches!(value, "True" | "False") => Err(invalid(format!(
            "\"{}\" is not a boolean setting value: use \"True\" or \"False\".",
            truncated(value)
        ))),
        SettingType::Integer if value.trim().parse::<i64>().is_err() => Err(invalid(format!(
            "\"{}\" is not an integer.",
            truncated(value)
        ))),
        SettingType::Integer => Ok(Some(value.trim().to_string())),
        _ if kind.is_secret() && value == MASK => Ok(None),
        _ => Ok(Some(value.to_string())),
    }
}

fn truncated(value: &str) -> String {
    value.chars().take(64).collect()
}

/// A setting's current value and when it last changed.
pub fn current<'a>(state: &'a StateFile, spec: &SettingSpec) -> (&'a str, &'a str) {
    match state.settings.get(&spec.id) {
        Some(SettingValue { value, modified }) => (value.as_str(), modified.as_str()),
        None => (spec.default, state.created.as_str()),
    }
}

/// The settings stowage acts on, typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// A launched backup is followed by its catalog job.
    pub catalog_enabled: bool,
    /// A launched backup is followed by a prune when its policy keeps a count.
    pub auto_prune: bool,
    /// The base URL jobs call back to.
    pub url: String,
    /// The user backups run as on clients.
    pub backup_user: String,
    /// Days finished jobs are kept.
    pub job_cleaning_days: i64,
    /// `/metrics` is served in CyBorgBackup's form.
    pub metrics_enabled: bool,
    /// `/metrics` asks for HTTP Basic with the two strings below.
    pub metrics_auth: bool,
    pub metrics_auth_username: String,
    pub metrics_auth_password: String,
}

impl Settings {
    pub fn read(state: &StateFile) -> Settings {
        let text = |id: u32| {
            CATALOG
                .iter()
                .find(|s| s.id == id)
                .map(|s| current(state, s).0.to_string())
                .unwrap_or_default()
        };
        let flag = |id: u32| text(id) == "True";
        Settings {
            catalog_enabled: flag(3),
            auto_prune: flag(4),
            url: text(5),
            backup_user: text(9),
            job_cleaning_days: text(6).parse().unwrap_or(90),
            metrics_enabled: flag(17),
            metrics_auth: flag(18),
            metrics_auth_username: text(19),
            metrics_auth_password: text(20),
        }
    }
}

/// A setting as the API shows it (a set secret masked).
#[derive(Debug, Clone)]
pub struct SettingRow {
    pub spec: &'static SettingSpec,
    pub value: String,
    pub created: String,
    pub modified: String,
}

fn row(state: &StateFile, spec: &'static SettingSpec) -> SettingRow {
    let (value, modified) = current(state, spec);
    SettingRow {
        spec,
        value: shown_value(spec, value),
        created: state.created.clone(),
        modified: modified.to_string(),
    }
}

impl CyborgService {
    /// Every setting, by id.
    pub fn list_settings(&self) -> Vec<SettingRow> {
        let state = self.lock();
        CATALOG.iter().map(|spec| row(&state, spec)).collect()
    }

    pub fn setting(&self, id: u64) -> Result<SettingRow, CbError> {
        let spec = by_id(id).ok_or(CbError::NotFound("Setting"))?;
        Ok(row(&self.lock(), spec))
    }

    /// Writes a setting's value (superusers only), checked against its type.
    pub fn set_setting(
        &self,
        caller: &Account,
        id: u64,
        value: &str,
    ) -> Result<SettingRow, CbError> {
        super::authorize(caller, super::Action::Manage)?;
        let spec = by_id(id).ok_or(CbError::NotFound("Setting"))?;
        let mut state = self.lock();
        if let Some(value) = check(spec, value)? {
            state.settings.insert(
                spec.id,
                SettingValue {
                    value,
                    modified: drf_now(),
                },
            );
            self.save(&state)?;
        }
        Ok(row(&state, spec))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalog_has_22_settings_in_id_order() {
        for (index, spec) in CATALOG.iter().enumerate() {
            assert_eq!(spec.id as usize, index + 1);
        }
        assert_eq!(by_id(22).unwrap().key, "cyborgbackup_ic_cron");
        assert!(by_id(23).is_none());
    }

    #[test]
    fn values_are_checked_against_their_type() {
        let boolean = by_id(3).unwrap();
        assert_eq!(check(boolean, "False").unwrap().as_deref(), Some("False"));
        assert!(check(boolean, "yes").is_err());
        let integer = by_id(6).unwrap();
        assert_eq!(check(integer, " 30").unwrap().as_deref(), Some("30"));
        assert!(check(integer, "thirty").is_err());
        let secret = by_id(7).unwrap();
        assert_eq!(check(secret, MASK).unwrap(), None);
        assert_eq!(shown_value(secret, "hunter2"), MASK);
        assert_eq!(shown_value(secret, ""), "");
        assert!(check(by_id(5).unwrap(), &"x".repeat(5000)).is_err());
    }

    #[test]
    fn defaults_read_typed() {
        let state = StateFile::default();
        let settings = Settings::read(&state);
        assert!(settings.catalog_enabled && settings.auto_prune);
        assert!(!settings.metrics_enabled && settings.metrics_auth);
        assert_eq!(settings.job_cleaning_days, 90);
        assert_eq!(settings.metrics_auth_username, "cyborg");
    }
}
