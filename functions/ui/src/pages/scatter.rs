//! Prefect's flow runs scatter plot, drawn on the server as SVG: each run a dot at its start
//! time (across) and duration (up), coloured by its state, linking to its page.

use chrono::{DateTime, Utc};
use stratus_store::db::flow_runs::ScatterPoint;

use super::view;

/// Most runs drawn: the newest ones in the window.
pub const MAX_POINTS: i64 = 500;

const WIDTH: f64 = 1000.0;
const HEIGHT: f64 = 220.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 24.0;

pub struct Point {
    id: String,
    name: String,
    start: DateTime<Utc>,
    seconds: f64,
    kind: String,
    state: String,
}

impl Point {
    pub fn of(r: &ScatterPoint) -> Point {
        Point {
            id: r.id.to_string(),
            name: r.name.clone(),
            start: r.start,
            seconds: r.seconds.max(0.0),
            kind: r
                .state_type
                .as_deref()
                .map(str::to_ascii_lowercase)
                .unwrap_or_else(|| "none".into()),
            state: r.state_name.clone().unwrap_or_else(|| "—".into()),
        }
    }
}

fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The smallest of 1, 2, 5 × 10ⁿ seconds at or above `seconds`, so the axis reads roundly.
fn nice_ceiling(seconds: f64) -> f64 {
    let seconds = seconds.max(1.0);
    let magnitude = 10f64.powf(seconds.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|v| *v >= seconds)
        .unwrap_or(10.0 * magnitude)
}

/// The plot of `points` between `start` and `end`, or an empty string when there is none.
pub fn svg(points: &[Point], start: DateTime<Utc>, end: DateTime<Utc>) -> String {
    if points.is_empty() {
        return String::new();
    }
    let span = (end - start).num_milliseconds().max(1) as f64;
    let top = nice_ceiling(points.iter().map(|p| p.seconds).fold(0.0, f64::max));
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let x = |t: DateTime<Utc>| LEFT + ((t - start).num_milliseconds() as f64 / span).clamp(0.0, 1.0) * plot_w;
    let y = |s: f64| TOP + plot_h - (s / top).clamp(0.0, 1.0) * plot_h;
    let mut out = format!(
        "<svg class=\"scatter\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" \
         aria-label=\"Flow runs by start time and duration\">"
    );
    for (fraction, label) in [
        (0.0, "0s".to_string()),
        (0.5, view::duration(top / 2.0)),
        (1.0, view::duration(top)),
    ] {
        let gy = TOP + plot_h - fraction * plot_h;
        out.push_str(&format!(
            "<line class=\"grid\" x1=\"{LEFT}\" x2=\"{}\" y1=\"{gy:.1}\" y2=\"{gy:.1}\"/><text class=\"axis\" x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            WIDTH - RIGHT,
            LEFT - 6.0,
            gy + 4.0,
            xml_escape(&label)
        ));
    }
    for (fraction, anchor) in [(0.0, "start"), (0.5, "middle"), (1.0, "end")] {
        let t = start + chrono::TimeDelta::milliseconds((span * fraction) as i64);
        out.push_str(&format!(
            "<text class=\"axis\" x=\"{:.1}\" y=\"{}\" text-anchor=\"{anchor}\">{}</text>",
            LEFT + fraction * plot_w,
            HEIGHT - 6.0,
            t.format("%b %d %H:%M")
        ));
    }
    for p in points {
        out.push_str(&format!(
            "<a href=\"/flow-runs/{}\"><circle class=\"dot dot-{}\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"4\"><title>{} · {} · {}</title></circle></a>",
            p.id,
            xml_escape(&p.kind),
            x(p.start),
            y(p.seconds),
            xml_escape(&p.name),
            xml_escape(&p.state),
            view::duration(p.seconds)
        ));
    }
    out.push_str("</svg>");
    out
}

/// The plot of `points` over the span they cover, with a twentieth (at least a minute)
/// either side so no dot sits on the edge.
pub fn svg_of(points: &[Point]) -> String {
    let (Some(first), Some(last)) = (
        points.iter().map(|p| p.start).min(),
        points.iter().map(|p| p.start).max(),
    ) else {
        return String::new();
    };
    let pad = ((last - first) / 20).max(chrono::TimeDelta::minutes(1));
    svg(points, first - pad, last + pad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(name: &str, minute: i64, seconds: f64, kind: &str) -> Point {
        Point {
            id: "00000000-0000-0000-0000-000000000001".into(),
            name: name.into(),
            start: DateTime::parse_from_rfc3339("2026-12-05T10:00:00Z")
                .unwrap()
                .with_timezone(&Utc)
                + chrono::TimeDelta::minutes(minute),
            seconds,
            kind: kind.into(),
            state: "Completed".into(),
        }
    }

    #[test]
    fn dots_sit_at_their_start_and_duration() {
        let start = DateTime::parse_from_rfc3339("2026-12-05T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let end = start + chrono::TimeDelta::minutes(60);
        let svg = svg(
            &[
                point("first", 0, 0.0, "completed"),
                point("last <b>", 60, 7.0, "failed"),
            ],
            start,
            end,
        );
        // The axis tops at 10 s; the first run sits bottom left, the last at 70% up the right.
        assert!(svg.contains("cx=\"56.0\" cy=\"196.0\""), "{svg}");
        assert!(svg.contains("cx=\"988.0\" cy=\"65.8\""), "{svg}");
        assert!(
            svg.contains("class=\"dot dot-failed\"") && svg.contains("last &lt;b&gt;"),
            "{svg}"
        );
        assert!(!svg.contains("<b>"));
        assert_eq!(super::svg(&[], start, end), "");
    }

    #[test]
    fn the_duration_axis_ends_on_a_round_number() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(7.0), 10.0);
        assert_eq!(nice_ceiling(11.0), 20.0);
        assert_eq!(nice_ceiling(430.0), 500.0);
        assert_eq!(nice_ceiling(5000.0), 5000.0);
    }
}
