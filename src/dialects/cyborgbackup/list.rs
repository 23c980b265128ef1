//! DRF's list answer, `{"count", "next", "previous", "results"}`, for any model: the
//! objects (as answered, JSON) are filtered (`filter`), ordered (`-id`, newest first,
//! unless `order_by=`/`order=` names other fields), then one page is cut (`page`,
//! `page_size`, default 100, bounded by the configured maximum). `next` and `previous`
//! are relative: the request's path and query with `page` replaced, the query's names
//! sorted as Django writes them.

use serde_json::{json, Value};

use super::error::DrfError;
use super::filter::{order, Filters, Model};
use axum::http::StatusCode;

/// Objects a page holds unless `page_size` says otherwise.
pub const DEFAULT_PAGE_SIZE: usize = 100;
/// The most query pairs a list request may carry.
const MAX_PAIRS: usize = 128;
/// Query names that are no filter.
const RESERVED: [&str; 6] = ["page", "page_size", "order", "order_by", "format", "type"];

/// The request a list answers.
pub struct ListRequest<'a> {
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub max_page_size: usize,
}

/// The query's name/value pairs, decoded.
pub fn pairs(query: Option<&str>) -> Result<Vec<(String, String)>, DrfError> {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .take(MAX_PAIRS + 1)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if pairs.len() > MAX_PAIRS {
        return Err(DrfError::bad_request(format!(
            "at most {MAX_PAIRS} query parameters are accepted"
        )));
    }
    Ok(pairs)
}

fn last<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Sorts `objects` by the query's ordering, `-id` by default.
fn sort(model: &Model, objects: &mut [Value], pairs: &[(String, String)]) -> Result<(), DrfError> {
    let spec = last(pairs, "order_by")
        .or_else(|| last(pairs, "order"))
        .unwrap_or("-id");
    let mut keys = Vec::new();
    for item in spec
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .take(8)
    {
        let (descending, field) = match item.strip_prefix('-') {
            Some(field) => (true, field),
            None => (false, item),
        };
        keys.push((descending, model.field(field)?.to_string()));
    }
    objects.sort_by(|a, b| {
        for (descending, field) in &keys {
            let (x, y) = (
                a.get(field).unwrap_or(&Value::Null),
                b.get(field).unwrap_or(&Value::Null),
            );
            let ordering = order(x, y);
            let ordering = if *descending {
                ordering.reverse()
            } else {
                ordering
            };
            if ordering.is_ne() {
                return ordering;
            }
        }
        std::cmp::Ordering::Equal
    });
    Ok(())
}

/// `path?query` with `page` set to `page`, the names sorted.
fn link(path: &str, pairs: &[(String, String)], page: usize) -> String {
    let mut kept: Vec<(&str, String)> = pairs
        .iter()
        .filter(|(k, _)| k != "page")
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    kept.push(("page", page.to_string()));
    kept.sort_by(|a, b| a.0.cmp(b.0));
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(kept)
        .finish();
    format!("{path}?{query}")
}

fn invalid_page() -> DrfError {
    DrfError::detail(StatusCode::NOT_FOUND, "Invalid page.")
}

/// The page of `objects` the request asks for, in DRF's list shape.
pub fn page(model: &Model, objects: Vec<Value>, request: &ListRequest) -> Result<Value, DrfError> {
    let pairs = pairs(request.query)?;
    let filters = Filters::parse(model, &pairs, &RESERVED)?;
    let mut kept = Vec::new();
    for object in objects {
        if filters.keep(model, &object)? {
            kept.push(object);
        }
    }
    sort(model, &mut kept, &pairs)?;
    let size = last(&pairs, "page_size")
        .and_then(|s| s.trim().parse::<usize>().ok())
        .filter(|s| *s > 0)
        .map_or(DEFAULT_PAGE_SIZE, |s| s.min(request.max_page_size.max(1)));
    let count = kept.len();
    let pages = count.div_ceil(size).max(1);
    let number = match last(&pairs, "page") {
        None => 1,
        Some("last") => pages,
        Some(text) => text
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=pages).contains(n))
            .ok_or_else(invalid_page)?,
    };
    let results: Vec<Value> = kept
        .into_iter()
        .skip((number - 1) * size)
        .take(size)
        .collect();
    let next = (number < pages).then(|| link(request.path, &pairs, number + 1));
    let previous = (number > 1).then(|| link(request.path, &pairs, number - 1));
    Ok(json!({
        "count": count,
        "next": next,
        "previous": previous,
        "results": results,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODEL: Model = Model {
        name: "Client",
        fields: &["id", "hostname"],
        search: &["hostname"],
    };

    fn objects(n: u64) -> Vec<Value> {
        (1..=n)
            .map(|id| json!({"id": id, "hostname": format!("h{}", id % 3)}))
            .collect()
    }

    fn ask(query: &str) -> Result<Value, DrfError> {
        page(
            &MODEL,
            objects(12),
            &ListRequest {
                path: "/api/v1/clients/",
                query: Some(query),
                max_page_size: 10,
            },
        )
    }

    #[test]
    fn pages_are_newest_first_with_relative_links() {
        let body = ask("page_size=5&page=2").unwrap();
        assert_eq!(body["count"], 12);
        let ids: Vec<u64> = body["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["id"].as_u64().unwrap())
            .collect();
        assert_eq!(ids, [7, 6, 5, 4, 3]);
        assert_eq!(body["next"], "/api/v1/clients/?page=3&page_size=5");
        assert_eq!(body["previous"], "/api/v1/clients/?page=1&page_size=5");
        let last = ask("page_size=5&page=last").unwrap();
        assert_eq!(last["next"], Value::Null);
        assert_eq!(last["results"].as_array().unwrap().len(), 2);
        assert_eq!(ask("page=9").unwrap_err().body["detail"], "Invalid page.");
        assert_eq!(ask("page=0").unwrap_err().status, StatusCode::NOT_FOUND);
        // Bounded by the maximum.
        assert_eq!(
            ask("page_size=1000").unwrap()["results"]
                .as_array()
                .unwrap()
                .len(),
            10
        );
    }

    #[test]
    fn ordering_can_be_chosen() {
        let body = ask("order_by=hostname,id&page_size=3").unwrap();
        let ids: Vec<u64> = body["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["id"].as_u64().unwrap())
            .collect();
        assert_eq!(ids, [3, 6, 9]);
        assert_eq!(
            ask("order=-nope").unwrap_err().body["detail"],
            "Client has no field named 'nope'"
        );
    }
}
