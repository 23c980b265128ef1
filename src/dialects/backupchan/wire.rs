//! Backup-chan's JSON, spelled as its server writes it and its clients read it, and the
//! parsing of its request bodies ("Parameter '<name>' required" for a missing key).

use chrono::DateTime;
use serde::Serialize;
use serde_json::{Map, Value};

use super::error::BcApiError;
use crate::service::backupchan::targets::{Target as TargetModel, TargetSpec};
use crate::service::backupchan::{BackupView, DelayedJob, ScheduledView, SeqFile, Stats};

#[derive(Serialize)]
pub struct Target {
    id: String,
    name: String,
    target_type: &'static str,
    recycle_criteria: &'static str,
    recycle_value: Option<i64>,
    recycle_action: &'static str,
    location: String,
    name_template: String,
    deduplicate: bool,
    alias: Option<String>,
    min_backups: i64,
    tags: Vec<String>,
}

fn spelled<T: Serialize>(value: T) -> &'static str {
    match serde_json::to_value(value)
        .ok()
        .as_ref()
        .and_then(Value::as_str)
    {
        Some("single") => "single",
        Some("multi") => "multi",
        Some("none") => "none",
        Some("count") => "count",
        Some("age") => "age",
        Some("recycle") => "recycle",
        Some("delete") => "delete",
        _ => "unknown",
    }
}

impl From<TargetModel> for Target {
    fn from(t: TargetModel) -> Target {
        Target {
            target_type: spelled(t.target_type),
            recycle_criteria: spelled(t.recycle_criteria),
            recycle_action: spelled(t.recycle_action),
            id: t.id,
            name: t.name,
            recycle_value: t.recycle_value,
            location: t.location,
            name_template: t.name_template,
            deduplicate: t.deduplicate,
            alias: t.alias,
            min_backups: t.min_backups,
            tags: t.tags,
        }
    }
}

#[derive(Serialize)]
pub struct Backup {
    id: String,
    target_id: String,
    created_at: String,
    manual: bool,
    is_recycled: bool,
    filesize: u64,
    hash: String,
    hash_mismatch: bool,
}

impl From<BackupView> for Backup {
    fn from(b: BackupView) -> Backup {
        Backup {
            id: b.id,
            target_id: b.target_id,
            created_at: b.created_at,
            manual: b.manual,
            is_recycled: b.is_recycled,
            filesize: b.filesize,
            hash: b.hash,
            hash_mismatch: b.hash_mismatch,
        }
    }
}

/// `Mon, 11 Aug 2025 17:33:29 GMT`, as Flask renders datetimes.
pub fn http_date(unix: i64) -> String {
    DateTime::from_timestamp(unix, 0)
        .unwrap_or_default()
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

#[derive(Serialize)]
pub struct Delayed {
    id: u64,
    name: String,
    status: String,
    start_time: String,
    /// The start time while the job runs: the client parses both as dates.
    end_time: String,
}

impl From<DelayedJob> for Delayed {
    fn from(j: DelayedJob) -> Delayed {
        let status = serde_json::to_value(j.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        Delayed {
            id: j.id,
            name: j.name,
            status,
            start_time: http_date(j.start_time),
            end_time: http_date(j.end_time.unwrap_or(j.start_time)),
        }
    }
}

#[derive(Serialize)]
pub struct Scheduled {
    name: String,
    interval: u64,
    next_run: f64,
}

impl From<ScheduledView> for Scheduled {
    fn from(j: ScheduledView) -> Scheduled {
        Scheduled {
            name: j.name,
            interval: j.interval,
            next_run: j.next_run,
        }
    }
}

#[derive(Serialize)]
pub struct SeqEntry {
    path: String,
    name: String,
    uploaded: bool,
}

impl From<SeqFile> for SeqEntry {
    fn from(f: SeqFile) -> SeqEntry {
        SeqEntry {
            uploaded: f.part.is_some(),
            path: f.path,
            name: f.name,
        }
    }
}

pub fn stats(s: Stats) -> Value {
    serde_json::json!({
        "program_version": format!("stowage {}", env!("CARGO_PKG_VERSION")),
        "total_target_size": s.total_target_size,
        "total_recycle_bin_size": s.total_recycle_bin_size,
        "total_targets": s.total_targets,
        "total_backups": s.total_backups,
        "total_recycled_backups": s.total_recycled_backups,
    })
}

/// A JSON request body: an object.
pub struct Body(pub Map<String, Value>);

impl Body {
    pub fn parse(bytes: &[u8]) -> Result<Body, BcApiError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Body(Map::new()));
        }
        match serde_json::from_slice(bytes) {
            Ok(Value::Object(map)) => Ok(Body(map)),
            Ok(_) => Err(BcApiError::bad_request(
                "The request body must be a JSON object",
            )),
            Err(e) => Err(BcApiError::bad_request(format!("Invalid JSON body: {e}"))),
        }
    }

    fn required(&self, key: &str) -> Result<&Value, BcApiError> {
        self.0.get(key).ok_or_else(|| BcApiError::missing(key))
    }

    pub fn string(&self, key: &str) -> Result<String, BcApiError> {
        match self.required(key)? {
            Value::String(s) => Ok(s.clone()),
            _ => Err(BcApiError::bad_request(format!(
                "Parameter '{key}' must be a string"
            ))),
        }
    }

    pub fn boolean(&self, key: &str) -> Result<bool, BcApiError> {
        match self.required(key)? {
            Value::Bool(b) => Ok(*b),
            Value::Number(n) if n.as_i64() == Some(0) || n.as_i64() == Some(1) => {
                Ok(n.as_i64() == Some(1))
            }
            _ => Err(BcApiError::bad_request(format!(
                "Parameter '{key}' must be true or false"
            ))),
        }
    }

    /// An integer or null.
    fn int_or_null(&self, key: &str, value: &Value) -> Result<Option<i64>, BcApiError> {
        match value {
            Value::Null => Ok(None),
            Value::Number(n) => n.as_i64().map(Some).ok_or_else(|| {
                BcApiError::bad_request(format!("Parameter '{key}' must be an integer"))
            }),
            _ => Err(BcApiError::bad_request(format!(
                "Parameter '{key}' must be an integer or null"
            ))),
        }
    }

    fn optional(&self, key: &str) -> Option<&Value> {
        self.0.get(key).filter(|v| !v.is_null())
    }

    /// The fields of a target (create and edit share all but the type).
    pub fn target_spec(&self) -> Result<TargetSpec, BcApiError> {
        let name = self.string("name")?;
        let recycle_criteria = self.string("recycle_criteria")?.parse()?;
        let recycle_value = self.int_or_null("recycle_value", self.required("recycle_value")?)?;
        let recycle_action = self.string("recycle_action")?.parse()?;
        let location = self.string("location")?;
        let name_template = self.string("name_template")?;
        let deduplicate = match self.optional("deduplicate") {
            None => false,
            Some(_) => self.boolean("deduplicate")?,
        };
        let alias = match self.optional("alias") {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                return Err(BcApiError::bad_request(
                    "Parameter 'alias' must be a string or null",
                ))
            }
        };
        let min_backups = match (self.optional("min_backups"), self.optional("num_backups")) {
            (Some(v), _) => self.int_or_null("min_backups", v)?,
            (None, Some(v)) => self.int_or_null("num_backups", v)?,
            (None, None) => None,
        }
        .unwrap_or(0);
        let tags = match self.optional("tags") {
            None => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|t| t.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| {
                    BcApiError::bad_request("Parameter 'tags' must be a list of strings")
                })?,
            Some(_) => {
                return Err(BcApiError::bad_request(
                    "Parameter 'tags' must be a list of strings",
                ))
            }
        };
        Ok(TargetSpec {
            name,
            recycle_criteria,
            recycle_value,
            recycle_action,
            location,
            name_template,
            deduplicate,
            alias,
            min_backups,
            tags,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_times_as_flask_renders_them() {
        assert_eq!(http_date(1_754_933_609), "Mon, 11 Aug 2025 17:33:29 GMT");
    }

    #[test]
    fn bodies_name_the_missing_parameter() {
        let body = Body::parse(br#"{"name":"n","recycle_criteria":"none"}"#).unwrap();
        let error = body.target_spec().unwrap_err();
        assert_eq!(error.message, "Parameter 'recycle_value' required");
        assert!(Body::parse(b"[1]").is_err());
        assert!(Body::parse(b"  ").unwrap().0.is_empty());
        let body = Body::parse(br#"{"delete_files":"yes"}"#).unwrap();
        assert_eq!(
            body.boolean("delete_files").unwrap_err().message,
            "Parameter 'delete_files' must be true or false"
        );
    }
}
