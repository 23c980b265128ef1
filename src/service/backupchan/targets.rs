//! Backup-chan targets as values: their fields, the checks the real server makes before
//! storing one (non-blank name, a name template with `$I` or `$D` and no `/`, unique
//! template and alias, an alias not shaped like a UUID, tags without spaces or commas),
//! name template expansion and search filters. Pure: no IO, no locks.

use std::path::{Component, Path, PathBuf};

use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};

use super::BcError;

/// Longest target name, location and template (in bytes).
pub const MAX_NAME_LEN: usize = 255;
pub const MAX_LOCATION_LEN: usize = 4096;
/// Tags: at most this many per target, each at most `MAX_TAG_LEN` bytes.
pub const MAX_TAGS: usize = 64;
pub const MAX_TAG_LEN: usize = 50;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetType {
    Single,
    Multi,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecycleCriteria {
    None,
    Count,
    Age,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecycleAction {
    Recycle,
    Delete,
}

impl std::str::FromStr for TargetType {
    type Err = BcError;
    fn from_str(text: &str) -> Result<Self, BcError> {
        match text {
            "single" => Ok(TargetType::Single),
            "multi" => Ok(TargetType::Multi),
            other => Err(BcError::Invalid(format!(
                "Invalid backup type '{other}' (single or multi)"
            ))),
        }
    }
}

impl std::str::FromStr for RecycleCriteria {
    type Err = BcError;
    fn from_str(text: &str) -> Result<Self, BcError> {
        match text {
            "none" => Ok(RecycleCriteria::None),
            "count" => Ok(RecycleCriteria::Count),
            "age" => Ok(RecycleCriteria::Age),
            other => Err(BcError::Invalid(format!(
                "Invalid recycle criteria '{other}' (none, count or age)"
            ))),
        }
    }
}

impl std::str::FromStr for RecycleAction {
    type Err = BcError;
    fn from_str(text: &str) -> Result<Self, BcError> {
        match text {
            "recycle" => Ok(RecycleAction::Recycle),
            "delete" => Ok(RecycleAction::Delete),
            other => Err(BcError::Invalid(format!(
                "Invalid recycle action '{other}' (recycle or delete)"
            ))),
        }
    }
}

/// What a client sends to create or edit a target (the type only on creation).
#[derive(Debug, Clone, PartialEq)]
pub struct TargetSpec {
    pub name: String,
    pub recycle_criteria: RecycleCriteria,
    pub recycle_value: Option<i64>,
    pub recycle_action: RecycleAction,
    pub location: String,
    pub name_template: String,
    pub deduplicate: bool,
    pub alias: Option<String>,
    pub min_backups: i64,
    pub tags: Vec<String>,
}

/// A stored target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Target {
    pub id: String,
    pub name: String,
    pub target_type: TargetType,
    pub recycle_criteria: RecycleCriteria,
    pub recycle_value: Option<i64>,
    pub recycle_action: RecycleAction,
    pub location: String,
    pub name_template: String,
    pub deduplicate: bool,
    pub alias: Option<String>,
    pub min_backups: i64,
    pub tags: Vec<String>,
}

impl Target {
    pub fn new(id: String, target_type: TargetType, spec: TargetSpec) -> Target {
        let mut target = Target {
            id,
            target_type,
            name: String::new(),
            recycle_criteria: RecycleCriteria::None,
            recycle_value: None,
            recycle_action: RecycleAction::Recycle,
            location: String::new(),
            name_template: String::new(),
            deduplicate: false,
            alias: None,
            min_backups: 0,
            tags: Vec::new(),
        };
        target.apply(spec);
        target
    }

    /// Replaces every field but the id and the type.
    pub fn apply(&mut self, spec: TargetSpec) {
        self.name = spec.name;
        self.recycle_criteria = spec.recycle_criteria;
        self.recycle_value = spec.recycle_value;
        self.recycle_action = spec.recycle_action;
        self.location = spec.location;
        self.name_template = spec.name_template;
        self.deduplicate = spec.deduplicate;
        self.alias = spec.alias;
        self.min_backups = spec.min_backups;
        self.tags = spec.tags;
    }

    /// Whether `reference` names this target: its id or its alias.
    pub fn is(&self, reference: &str) -> bool {
        self.id == reference || self.alias.as_deref() == Some(reference)
    }
}

/// True for text shaped like a UUID (`^[0-9a-fA-F-]{36}$`), which an alias must not be.
pub fn looks_like_uuid(text: &str) -> bool {
    text.len() == 36 && text.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}

fn printable(text: &str) -> bool {
    !text.chars().any(char::is_control)
}

/// Checks a spec against the other targets (`others` excludes the one being edited) and
/// the configured location roots (none: any location).
pub fn validate(spec: &TargetSpec, others: &[Target], roots: &[PathBuf]) -> Result<(), BcError> {
    let invalid = |m: &str| Err(BcError::Invalid(m.to_string()));
    if spec.name.trim().is_empty() {
        return invalid("Target name must not be empty");
    }
    if spec.name.len() > MAX_NAME_LEN || !printable(&spec.name) {
        return invalid("Target name must be at most 255 printable characters");
    }
    if !spec.name_template.contains("$I") && !spec.name_template.contains("$D") {
        return invalid("Filename template must contain either creation date or ID of backup");
    }
    if spec.name_template.contains('/') || spec.name_template.contains('\\') {
        return invalid("Filename template must not contain path separators");
    }
    if spec.name_template.len() > MAX_NAME_LEN || !printable(&spec.name_template) {
        return invalid("Filename template must be at most 255 printable characters");
    }
    if others.iter().any(|t| t.name_template == spec.name_template) {
        return invalid("Name template is not unique to this target");
    }
    validate_location(&spec.location, roots)?;
    if spec.recycle_criteria != RecycleCriteria::None && spec.recycle_value.is_none_or(|v| v < 0) {
        return invalid("Recycle value must be a non-negative integer for criteria count and age");
    }
    if spec.min_backups < 0 {
        return invalid("Minimum backups must not be negative");
    }
    if let Some(alias) = &spec.alias {
        if alias.trim().is_empty() {
            return invalid("Alias must not be empty");
        }
        if looks_like_uuid(alias) {
            return invalid("Alias must not look like a target ID");
        }
        if alias.len() > MAX_NAME_LEN || !printable(alias) || alias.contains('/') {
            return invalid("Alias must be at most 255 printable characters without '/'");
        }
        if others
            .iter()
            .any(|t| t.alias.as_deref() == Some(alias) || t.id == *alias)
        {
            return invalid("Alias is not unique to this target");
        }
    }
    if spec.tags.len() > MAX_TAGS {
        return invalid("A target has at most 64 tags");
    }
    for tag in &spec.tags {
        let bad = tag.is_empty()
            || tag.len() > MAX_TAG_LEN
            || tag
                .chars()
                .any(|c| c.is_whitespace() || c == ',' || c.is_control());
        if bad {
            return Err(BcError::Invalid(format!(
                "Invalid tag '{tag}': tags are 1 to 50 characters without spaces or commas"
            )));
        }
    }
    Ok(())
}

/// A location is printable; with roots configured it must also be an absolute path
/// without `..` inside one of them.
fn validate_location(location: &str, roots: &[PathBuf]) -> Result<(), BcError> {
    if location.trim().is_empty() || location.len() > MAX_LOCATION_LEN || !printable(location) {
        return Err(BcError::Invalid(
            "Location must be a non-empty printable path".into(),
        ));
    }
    if roots.is_empty() {
        return Ok(());
    }
    let path = Path::new(location);
    let clean = path.is_absolute()
        && path
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    if clean && roots.iter().any(|root| path.starts_with(root)) {
        Ok(())
    } else {
        Err(BcError::Invalid(format!(
            "Location '{location}' is outside the configured locations"
        )))
    }
}

/// `created_at` as Backup-chan writes it: ISO 8601 without a zone (UTC here).
pub fn iso(time: NaiveDateTime) -> String {
    time.format("%Y-%m-%dT%H:%M:%S").to_string()
}

/// Expands a name template: `$I` the backup id, `$D` the creation time, `$M` `manual` or
/// `auto`.
pub fn expand_template(template: &str, id: &str, created_at: &str, manual: bool) -> String {
    template
        .replace("$I", id)
        .replace("$D", created_at)
        .replace("$M", if manual { "manual" } else { "auto" })
}

/// `GET /api/target/search` filters: substrings for text, exact for enums, every tag.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SearchQuery {
    pub name: Option<String>,
    pub target_type: Option<TargetType>,
    pub recycle_criteria: Option<RecycleCriteria>,
    pub recycle_action: Option<RecycleAction>,
    pub location: Option<String>,
    pub name_template: Option<String>,
    pub deduplicate: Option<bool>,
    pub alias: Option<String>,
    pub tags: Vec<String>,
}

impl SearchQuery {
    pub fn is_empty(&self) -> bool {
        *self == SearchQuery::default()
    }

    pub fn matches(&self, t: &Target) -> bool {
        let contains = |filter: &Option<String>, value: &str| {
            filter
                .as_deref()
                .is_none_or(|f| value.to_lowercase().contains(&f.to_lowercase()))
        };
        contains(&self.name, &t.name)
            && self.target_type.is_none_or(|v| v == t.target_type)
            && self
                .recycle_criteria
                .is_none_or(|v| v == t.recycle_criteria)
            && self.recycle_action.is_none_or(|v| v == t.recycle_action)
            && contains(&self.location, &t.location)
            && contains(&self.name_template, &t.name_template)
            && self.deduplicate.is_none_or(|v| v == t.deduplicate)
            && (self.alias.is_none()
                || t.alias.as_deref().is_some_and(|a| contains(&self.alias, a)))
            && self.tags.iter().all(|tag| t.tags.contains(tag))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> TargetSpec {
        TargetSpec {
            name: "web".into(),
            recycle_criteria: RecycleCriteria::Count,
            recycle_value: Some(3),
            recycle_action: RecycleAction::Recycle,
            location: "/var/backups/web".into(),
            name_template: "web-$I".into(),
            deduplicate: false,
            alias: Some("web".into()),
            min_backups: 0,
            tags: vec!["a".into()],
        }
    }

    fn message(spec: &TargetSpec, others: &[Target]) -> String {
        validate(spec, others, &[]).unwrap_err().to_string()
    }

    #[test]
    fn validation_messages() {
        assert!(validate(&spec(), &[], &[]).is_ok());
        let blank = TargetSpec {
            name: " ".into(),
            ..spec()
        };
        assert_eq!(message(&blank, &[]), "Target name must not be empty");
        let template = TargetSpec {
            name_template: "web".into(),
            ..spec()
        };
        assert_eq!(
            message(&template, &[]),
            "Filename template must contain either creation date or ID of backup"
        );
        let other = Target::new("x".into(), TargetType::Single, spec());
        let same_alias = TargetSpec {
            name_template: "o-$D".into(),
            ..spec()
        };
        assert_eq!(
            message(&spec(), std::slice::from_ref(&other)),
            "Name template is not unique to this target"
        );
        assert_eq!(
            message(&same_alias, &[other]),
            "Alias is not unique to this target"
        );
        let uuid = TargetSpec {
            alias: Some("123e4567-e89b-12d3-a456-426614174000".into()),
            ..spec()
        };
        assert_eq!(message(&uuid, &[]), "Alias must not look like a target ID");
        let tags = TargetSpec {
            tags: vec!["a b".into()],
            ..spec()
        };
        assert!(message(&tags, &[]).starts_with("Invalid tag 'a b'"));
        let comma = TargetSpec {
            tags: vec![",".into()],
            ..spec()
        };
        assert!(message(&comma, &[]).starts_with("Invalid tag ','"));
        let no_value = TargetSpec {
            recycle_value: None,
            ..spec()
        };
        assert!(message(&no_value, &[]).starts_with("Recycle value"));
        let roots = [PathBuf::from("/srv/bc")];
        assert!(validate(
            &TargetSpec {
                location: "/srv/bc/x".into(),
                ..spec()
            },
            &[],
            &roots
        )
        .is_ok());
        for bad in ["/srv/bc/../etc", "/etc", "srv/bc/x"] {
            let s = TargetSpec {
                location: bad.into(),
                ..spec()
            };
            assert!(validate(&s, &[], &roots).is_err(), "{bad}");
        }
    }

    #[test]
    fn templates_and_search() {
        assert_eq!(
            expand_template("b-$I-$D-$M", "id", "2025-01-02T03:04:05", false),
            "b-id-2025-01-02T03:04:05-auto"
        );
        let t = Target::new("id1".into(), TargetType::Multi, spec());
        assert!(t.is("id1") && t.is("web") && !t.is("we"));
        let q = SearchQuery {
            name: Some("WE".into()),
            tags: vec!["a".into()],
            ..Default::default()
        };
        assert!(q.matches(&t));
        let q = SearchQuery {
            target_type: Some(TargetType::Single),
            ..Default::default()
        };
        assert!(!q.matches(&t));
        assert!(SearchQuery::default().is_empty());
    }
}
