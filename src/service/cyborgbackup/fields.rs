//! Checks the writable fields of a request object the way CyBorgBackup's serializers
//! do, with their messages (`"This field is required."`, `"Must be a valid boolean."`,
//! ...): each field has a type and bounds; read-only and unknown fields are ignored; the
//! errors of every field are returned together. The result holds only fields that
//! passed, with their JSON type normalised.

use serde_json::{Map, Value};

use super::CbError;

/// A field's type and bounds.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// Text of at most `max` characters; `blank`: may be empty.
    Text {
        max: usize,
        blank: bool,
    },
    Bool,
    /// An integer in `min..=max`; `null`: may be null.
    Int {
        min: i64,
        max: i64,
        null: bool,
    },
}

/// One writable field.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub name: &'static str,
    pub kind: Kind,
    /// Must be given when creating.
    pub required: bool,
}

pub const fn text(name: &'static str, max: usize, blank: bool, required: bool) -> Field {
    Field {
        name,
        kind: Kind::Text { max, blank },
        required,
    }
}

pub const fn boolean(name: &'static str) -> Field {
    Field {
        name,
        kind: Kind::Bool,
        required: false,
    }
}

pub const fn int(name: &'static str, min: i64, max: i64, null: bool) -> Field {
    Field {
        name,
        kind: Kind::Int { min, max, null },
        required: false,
    }
}

fn check_text(value: &Value, max: usize, blank: bool) -> Result<Value, String> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return Err("Not a valid string.".into()),
    };
    if !blank && text.trim().is_empty() {
        return Err("This field may not be blank.".into());
    }
    if text.chars().count() > max {
        return Err(format!(
            "Ensure this field has no more than {max} characters."
        ));
    }
    if text
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err("Control characters are not allowed.".into());
    }
    Ok(Value::String(text))
}

fn check_bool(value: &Value) -> Result<Value, String> {
    let parsed = match value {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => match n.as_i64() {
            Some(1) => Some(true),
            Some(0) => Some(false),
            _ => None,
        },
        Value::String(s) => match s.as_str() {
            "true" | "True" | "TRUE" | "1" | "t" | "y" | "yes" | "on" => Some(true),
            "false" | "False" | "FALSE" | "0" | "f" | "n" | "no" | "off" => Some(false),
            _ => None,
        },
        _ => None,
    };
    parsed
        .map(Value::Bool)
        .ok_or_else(|| "Must be a valid boolean.".into())
}

fn check_int(value: &Value, min: i64, max: i64) -> Result<Value, String> {
    let parsed = match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) if s.len() <= 32 => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    let number = parsed.ok_or_else(|| "A valid integer is required.".to_string())?;
    if number < min {
        return Err(format!(
            "Ensure this value is greater than or equal to {min}."
        ));
    }
    if number > max {
        return Err(format!("Ensure this value is less than or equal to {max}."));
    }
    Ok(Value::from(number))
}

fn check_one(field: &Field, value: &Value) -> Result<Value, String> {
    match (field.kind, value) {
        (Kind::Int { null: true, .. }, Value::Null) => Ok(Value::Null),
        (_, Value::Null) => Err("This field may not be null.".into()),
        (Kind::Text { max, blank }, v) => check_text(v, max, blank),
        (Kind::Bool, v) => check_bool(v),
        (Kind::Int { min, max, .. }, v) => check_int(v, min, max),
    }
}

/// The given writable fields of `body`, checked; `creating`: required fields must be
/// there.
pub fn check(
    body: &Map<String, Value>,
    fields: &[Field],
    creating: bool,
) -> Result<Map<String, Value>, CbError> {
    let mut errors = Vec::new();
    let mut checked = Map::new();
    for field in fields {
        match body.get(field.name) {
            None if creating && field.required => {
                errors.push((field.name.to_string(), "This field is required.".into()))
            }
            None => {}
            Some(value) => match check_one(field, value) {
                Ok(value) => {
                    checked.insert(field.name.to_string(), value);
                }
                Err(message) => errors.push((field.name.to_string(), message)),
            },
        }
    }
    if errors.is_empty() {
        Ok(checked)
    } else {
        Err(CbError::Invalid(errors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const FIELDS: [Field; 3] = [
        text("name", 8, false, true),
        boolean("enabled"),
        int("port", 1, 65535, false),
    ];

    #[test]
    fn fields_are_checked_together_with_drf_messages() {
        let body = json!({"enabled": "maybe", "port": 0, "other": 1});
        let Err(CbError::Invalid(errors)) = check(body.as_object().unwrap(), &FIELDS, true) else {
            panic!("accepted")
        };
        assert_eq!(
            errors,
            vec![
                ("name".into(), "This field is required.".into()),
                ("enabled".into(), "Must be a valid boolean.".into()),
                (
                    "port".into(),
                    "Ensure this value is greater than or equal to 1.".into()
                ),
            ]
        );
        let body = json!({"name": "a", "enabled": "true", "port": "22"});
        let checked = check(body.as_object().unwrap(), &FIELDS, true).unwrap();
        assert_eq!(
            Value::Object(checked),
            json!({"name": "a", "enabled": true, "port": 22})
        );
        let body = json!({"name": "far too long"});
        assert!(check(body.as_object().unwrap(), &FIELDS, false).is_err());
    }
}
