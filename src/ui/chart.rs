//! The overview's chart of stored and logical bytes over time: an inline SVG drawn on the
//! server from the daily samples (`service::stats_history`), so it needs no script and
//! no library, and reads as a sentence to a screen reader.

use chrono::NaiveDate;
use maud::{html, Markup};

use super::layout::bytes;
use crate::state::stats_history::StatsSample;

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 180.0;
/// Room for the labels under the plot.
const PLOT_HEIGHT: f64 = 150.0;

fn day_of(sample: &StatsSample) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(&sample.day, "%Y-%m-%d").ok()
}

/// The points of one series of figures, as SVG `points`.
fn points(days: &[(NaiveDate, u64)], first: NaiveDate, span: f64, top: f64) -> String {
    days.iter()
        .map(|(day, value)| {
            let x = if span > 0.0 {
                (*day - first).num_days() as f64 / span * WIDTH
            } else {
                WIDTH / 2.0
            };
            let y = PLOT_HEIGHT - (*value as f64 / top) * (PLOT_HEIGHT - 10.0);
            format!("{x:.1},{y:.1}")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Stored and logical bytes by day; a note when there is no sample yet.
pub fn bytes_over_time(samples: &[StatsSample]) -> Markup {
    let dated: Vec<(NaiveDate, &StatsSample)> = samples
        .iter()
        .filter_map(|s| Some((day_of(s)?, s)))
        .collect();
    let (Some((first, _)), Some((last, newest))) = (dated.first(), dated.last()) else {
        return html! { p { "No figures recorded yet: the server samples them once an hour, the first a moment after it starts." } };
    };
    let span = (*last - *first).num_days() as f64;
    let top = dated
        .iter()
        .map(|(_, s)| s.logical_bytes.max(s.stored_bytes))
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let stored: Vec<(NaiveDate, u64)> = dated.iter().map(|(d, s)| (*d, s.stored_bytes)).collect();
    let logical: Vec<(NaiveDate, u64)> = dated.iter().map(|(d, s)| (*d, s.logical_bytes)).collect();
    let summary = format!(
        "From {first} to {last}: stored bytes {} then {}, logical bytes {} then {}.",
        bytes(dated[0].1.stored_bytes),
        bytes(newest.stored_bytes),
        bytes(dated[0].1.logical_bytes),
        bytes(newest.logical_bytes),
    );
    html! {
        figure.chart {
            svg id="stored-chart" viewBox={"0 0 " (WIDTH) " " (HEIGHT)} role="img" aria-label=(summary) data-days=(dated.len()) {
                title { (summary) }
                line.axis x1="0" y1=(PLOT_HEIGHT) x2=(WIDTH) y2=(PLOT_HEIGHT) {}
                polyline.logical points=(points(&logical, *first, span, top)) {}
                polyline.stored points=(points(&stored, *first, span, top)) {}
                @for (day, value) in stored.iter().chain(&logical) {
                    @let one = [(*day, *value)];
                    @let at = points(&one, *first, span, top);
                    @if let Some((x, y)) = at.split_once(',') {
                        circle cx=(x) cy=(y) r="2.5" {}
                    }
                }
                text x="0" y=(HEIGHT - 8.0) { (first) }
                text x=(WIDTH) y=(HEIGHT - 8.0) text-anchor="end" { (last) }
                text x="4" y="12" { "max " (bytes(top as u64)) }
            }
            figcaption {
                span.key-stored { "■ stored" } " " span.key-logical { "■ logical" }
                " — " (summary)
            }
        }
    }
}
