//! The list filters of CyBorgBackup's API (Django lookups on the query string): `field=v`,
//! `field__<lookup>=v` with Django's lookups, `not__` to negate one, `or__` to put several
//! in one alternative, `chain__` (the same as none here), and `search=` over the model's
//! text fields. They work on the objects as answered (JSON), so a filter sees exactly the
//! field values a client reads. An unknown field is a 400 naming it; every value is
//! bounded (regular expressions by size, lists by length).

use std::cmp::Ordering;

use regex::{Regex, RegexBuilder};
use serde_json::Value;

use super::error::DrfError;

/// The longest regular expression accepted, in bytes, and the most memory it may compile to.
const MAX_REGEX_LEN: usize = 1024;
const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// The most filters one request may carry.
pub const MAX_FILTERS: usize = 64;
/// The most items of one `__in` list.
const MAX_IN_ITEMS: usize = 256;

/// The model a list is of: its name (in errors), its fields and those `search=` reads.
#[derive(Debug, Clone, Copy)]
pub struct Model {
    pub name: &'static str,
    pub fields: &'static [&'static str],
    pub search: &'static [&'static str],
}

impl Model {
    /// `Ok` when `field` is one of the model's.
    pub fn field<'a>(&self, field: &'a str) -> Result<&'a str, DrfError> {
        if self.fields.contains(&field) {
            Ok(field)
        } else {
            Err(DrfError::bad_request(format!(
                "{} has no field named '{}'",
                self.name,
                field.chars().take(128).collect::<String>()
            )))
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lookup {
    Exact,
    IExact,
    Contains,
    IContains,
    StartsWith,
    IStartsWith,
    EndsWith,
    IEndsWith,
    Gt,
    Gte,
    Lt,
    Lte,
    In,
    IsNull,
    Regex,
    IRegex,
}

fn lookup(name: &str) -> Option<Lookup> {
    Some(match name {
        "exact" => Lookup::Exact,
        "iexact" => Lookup::IExact,
        "contains" => Lookup::Contains,
        "icontains" => Lookup::IContains,
        "startswith" => Lookup::StartsWith,
        "istartswith" => Lookup::IStartsWith,
        "endswith" => Lookup::EndsWith,
        "iendswith" => Lookup::IEndsWith,
        "gt" => Lookup::Gt,
        "gte" => Lookup::Gte,
        "lt" => Lookup::Lt,
        "lte" => Lookup::Lte,
        "in" => Lookup::In,
        "isnull" => Lookup::IsNull,
        "regex" => Lookup::Regex,
        "iregex" => Lookup::IRegex,
        _ => return None,
    })
}

/// One filter of the query.
#[derive(Debug)]
struct Filter {
    field: String,
    lookup: Lookup,
    value: String,
    negate: bool,
    regex: Option<Regex>,
}

/// The filters of a query: all of `and` hold, and one of `or` when there is any.
#[derive(Debug, Default)]
pub struct Filters {
    and: Vec<Filter>,
    or: Vec<Filter>,
    search: Vec<String>,
}

fn parse_bool(value: &str) -> Result<bool, DrfError> {
    match value {
        "true" | "True" | "1" | "t" => Ok(true),
        "false" | "False" | "0" | "f" => Ok(false),
        other => Err(DrfError::bad_request(format!(
            "\u{201c}{}\u{201d} value must be either True or False.",
            other.chars().take(64).collect::<String>()
        ))),
    }
}

fn compile(pattern: &str, insensitive: bool) -> Result<Regex, DrfError> {
    if pattern.len() > MAX_REGEX_LEN {
        return Err(DrfError::bad_request(format!(
            "a regular expression may be at most {MAX_REGEX_LEN} bytes"
        )));
    }
    RegexBuilder::new(pattern)
        .case_insensitive(insensitive)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| DrfError::bad_request(format!("invalid regular expression: {e}")))
}

impl Filters {
    /// The filters among the query's pairs (`reserved` names are not filters).
    pub fn parse(
        model: &Model,
        pairs: &[(String, String)],
        reserved: &[&str],
    ) -> Result<Filters, DrfError> {
        let mut filters = Filters::default();
        let mut count = 0;
        for (key, value) in pairs {
            if key == "search" {
                filters.search.extend(
                    value
                        .split(',')
                        .map(|t| t.trim().to_lowercase())
                        .filter(|t| !t.is_empty()),
                );
                continue;
            }
            if reserved.contains(&key.as_str()) {
                continue;
            }
            count += 1;
            if count > MAX_FILTERS {
                return Err(DrfError::bad_request(format!(
                    "at most {MAX_FILTERS} filters are accepted"
                )));
            }
            let (filter, alternative) = Filters::one(model, key, value)?;
            if alternative {
                filters.or.push(filter);
            } else {
                filters.and.push(filter);
            }
        }
        Ok(filters)
    }

    fn one(model: &Model, key: &str, value: &str) -> Result<(Filter, bool), DrfError> {
        let mut rest = key;
        let (mut negate, mut alternative) = (false, false);
        loop {
            if let Some(r) = rest.strip_prefix("or__") {
                alternative = true;
                rest = r;
            } else if let Some(r) = rest.strip_prefix("not__") {
                negate = !negate;
                rest = r;
            } else if let Some(r) = rest.strip_prefix("chain__") {
                rest = r;
            } else {
                break;
            }
        }
        let (field, lookup) = match rest.rsplit_once("__") {
            Some((field, name)) => match lookup(name) {
                Some(l) => (field, l),
                None => (rest, Lookup::Exact),
            },
            None => (rest, Lookup::Exact),
        };
        let field = model.field(field)?.to_string();
        let regex = match lookup {
            Lookup::Regex => Some(compile(value, false)?),
            Lookup::IRegex => Some(compile(value, true)?),
            Lookup::IsNull => {
                parse_bool(value)?;
                None
            }
            Lookup::In if value.split(',').count() > MAX_IN_ITEMS => {
                return Err(DrfError::bad_request(format!(
                    "an __in list may have at most {MAX_IN_ITEMS} items"
                )))
            }
            _ => None,
        };
        let filter = Filter {
            field,
            lookup,
            value: value.to_string(),
            negate,
            regex,
        };
        Ok((filter, alternative))
    }

    /// Whether `object` passes every filter; `Err` for a value its field cannot hold.
    pub fn keep(&self, model: &Model, object: &Value) -> Result<bool, DrfError> {
        for filter in &self.and {
            if !filter.test(object)? {
                return Ok(false);
            }
        }
        if !self.or.is_empty() {
            let mut any = false;
            for filter in &self.or {
                any |= filter.test(object)?;
            }
            if !any {
                return Ok(false);
            }
        }
        Ok(self.search.iter().all(|term| {
            model.search.iter().any(|field| {
                object
                    .get(*field)
                    .is_some_and(|v| text(v).to_lowercase().contains(term.as_str()))
            })
        }))
    }
}

/// A value as text, the way a lookup on text reads it.
fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// `value` (a field's) compared with `given` (the query's), by the field's type.
fn compare(value: &Value, given: &str) -> Result<Option<Ordering>, DrfError> {
    Ok(match value {
        Value::Null => None,
        Value::Bool(b) => Some(b.cmp(&parse_bool(given)?)),
        Value::Number(n) => {
            let given: f64 = given.trim().parse().map_err(|_| {
                DrfError::bad_request(format!(
                    "Field expected a number but got '{}'.",
                    given.chars().take(64).collect::<String>()
                ))
            })?;
            n.as_f64().and_then(|n| n.partial_cmp(&given))
        }
        other => Some(text(other).as_str().cmp(given)),
    })
}

impl Filter {
    fn test(&self, object: &Value) -> Result<bool, DrfError> {
        let value = object.get(&self.field).unwrap_or(&Value::Null);
        let lower = |s: &str| s.to_lowercase();
        let (t, v) = (text(value), self.value.as_str());
        let matched = match self.lookup {
            Lookup::Exact => compare(value, v)? == Some(Ordering::Equal),
            Lookup::IExact => !value.is_null() && lower(&t) == lower(v),
            Lookup::Contains => !value.is_null() && t.contains(v),
            Lookup::IContains => !value.is_null() && lower(&t).contains(&lower(v)),
            Lookup::StartsWith => !value.is_null() && t.starts_with(v),
            Lookup::IStartsWith => !value.is_null() && lower(&t).starts_with(&lower(v)),
            Lookup::EndsWith => !value.is_null() && t.ends_with(v),
            Lookup::IEndsWith => !value.is_null() && lower(&t).ends_with(&lower(v)),
            Lookup::Gt => compare(value, v)? == Some(Ordering::Greater),
            Lookup::Gte => matches!(
                compare(value, v)?,
                Some(Ordering::Greater | Ordering::Equal)
            ),
            Lookup::Lt => compare(value, v)? == Some(Ordering::Less),
            Lookup::Lte => matches!(compare(value, v)?, Some(Ordering::Less | Ordering::Equal)),
            Lookup::In => {
                let mut any = false;
                for item in v.split(',') {
                    any |= compare(value, item)? == Some(Ordering::Equal);
                }
                any
            }
            Lookup::IsNull => value.is_null() == parse_bool(v)?,
            Lookup::Regex | Lookup::IRegex => {
                !value.is_null() && self.regex.as_ref().is_some_and(|r| r.is_match(&t))
            }
        };
        Ok(matched != self.negate)
    }
}

/// Orders two objects by a field, the way a database orders a column: nulls first, then
/// booleans, numbers, text.
pub fn order(a: &Value, b: &Value) -> Ordering {
    fn rank(v: &Value) -> u8 {
        match v {
            Value::Null => 0,
            Value::Bool(_) => 1,
            Value::Number(_) => 2,
            Value::String(_) => 3,
            _ => 4,
        }
    }
    match (a, b) {
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(Ordering::Equal),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        _ => rank(a).cmp(&rank(b)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const MODEL: Model = Model {
        name: "Client",
        fields: &["id", "hostname", "enabled", "port", "bandwidth_limit"],
        search: &["hostname"],
    };

    fn kept(query: &[(&str, &str)]) -> Result<Vec<u64>, DrfError> {
        let objects = [
            json!({"id": 1, "hostname": "localhost", "enabled": false, "port": 22, "bandwidth_limit": null}),
            json!({"id": 2, "hostname": "web.example.org", "enabled": true, "port": 2222, "bandwidth_limit": 10}),
            json!({"id": 3, "hostname": "db.example.org", "enabled": true, "port": 22, "bandwidth_limit": null}),
        ];
        let pairs: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let filters = Filters::parse(&MODEL, &pairs, &["page"])?;
        let mut ids = Vec::new();
        for object in &objects {
            if filters.keep(&MODEL, object)? {
                ids.push(object["id"].as_u64().unwrap());
            }
        }
        Ok(ids)
    }

    #[test]
    fn lookups_follow_django() {
        assert_eq!(kept(&[("enabled", "true")]).unwrap(), [2, 3]);
        assert_eq!(kept(&[("enabled", "False")]).unwrap(), [1]);
        assert_eq!(kept(&[("hostname__icontains", "EXAMPLE")]).unwrap(), [2, 3]);
        assert_eq!(kept(&[("hostname__startswith", "db")]).unwrap(), [3]);
        assert_eq!(kept(&[("port__gt", "22")]).unwrap(), [2]);
        assert_eq!(kept(&[("id__in", "1,3")]).unwrap(), [1, 3]);
        assert_eq!(
            kept(&[("bandwidth_limit__isnull", "true")]).unwrap(),
            [1, 3]
        );
        assert_eq!(kept(&[("not__enabled", "true")]).unwrap(), [1]);
        assert_eq!(
            kept(&[("or__id", "1"), ("or__hostname", "db.example.org")]).unwrap(),
            [1, 3]
        );
        assert_eq!(kept(&[("hostname__regex", "^w.b\\.")]).unwrap(), [2]);
        assert_eq!(kept(&[("hostname__iregex", "^LOCAL")]).unwrap(), [1]);
        assert_eq!(kept(&[("search", "web")]).unwrap(), [2]);
        assert_eq!(kept(&[("page", "1")]).unwrap(), [1, 2, 3]);
    }

    #[test]
    fn bad_filters_are_400s() {
        let detail = |q: &[(&str, &str)]| kept(q).unwrap_err().body["detail"].clone();
        assert_eq!(detail(&[("nope", "1")]), "Client has no field named 'nope'");
        assert_eq!(
            detail(&[("hostname__nope", "1")]),
            "Client has no field named 'hostname__nope'"
        );
        assert!(kept(&[("enabled", "maybe")]).is_err());
        assert!(kept(&[("port", "x")]).is_err());
        assert!(kept(&[("hostname__regex", "(")]).is_err());
        assert!(kept(&[("hostname__regex", &"a".repeat(2000))]).is_err());
    }
}
