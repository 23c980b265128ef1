//! The `Content-Disposition` of a download: a file name that is safe inside the quoted
//! `filename` parameter, whatever name the backup was stored under.

use axum::http::HeaderValue;

/// `attachment; filename="<name>"`, the name kept to visible ASCII other than `"`, `\`,
/// `/` and `;`; `fallback` when nothing of it (or only `-`, stdin's name) is left.
pub fn attachment(name: &str, fallback: &str) -> HeaderValue {
    let cleaned: String = name
        .chars()
        .filter(|c| c.is_ascii_graphic() && !matches!(c, '"' | '\\' | '/' | ';'))
        .collect();
    let name = match cleaned.as_str() {
        "" | "-" => fallback,
        _ => &cleaned,
    };
    HeaderValue::from_str(&format!("attachment; filename=\"{name}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("attachment"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_cleaned_and_fall_back() {
        let shown = |name: &str| attachment(name, "backup-id").to_str().unwrap().to_string();
        assert_eq!(shown("site.tar"), "attachment; filename=\"site.tar\"");
        assert_eq!(
            shown("/var/a \"b\";c\\d.tar"),
            "attachment; filename=\"varabcd.tar\""
        );
        assert_eq!(shown("-"), "attachment; filename=\"backup-id\"");
        assert_eq!(shown("ü ï"), "attachment; filename=\"backup-id\"");
    }
}
