//! Turning rows into what pages show: times, durations, states.

use chrono::{DateTime, Utc};
use serde_json::Value;
use stratus_store::db::flow_runs::FlowRun;

pub fn when(t: Option<DateTime<Utc>>) -> String {
    match t {
        Some(t) => t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        None => "—".into(),
    }
}

pub fn duration(seconds: f64) -> String {
    if !seconds.is_finite() || seconds <= 0.0 {
        return "0s".into();
    }
    if seconds < 1.0 {
        return format!("{:.0}ms", seconds * 1000.0);
    }
    let s = seconds.round() as i64;
    let (h, m, s) = (s / 3600, (s % 3600) / 60, s % 60);
    if h > 0 {
        format!("{h}h {m:02}m {s:02}s")
    } else if m > 0 {
        format!("{m}m {s:02}s")
    } else {
        format!("{s}s")
    }
}

/// The CSS class of a state type, one colour per type everywhere.
pub fn state_class(kind: Option<&str>) -> String {
    match kind {
        Some(k) => format!("state state-{}", k.to_ascii_lowercase()),
        None => "state state-none".into(),
    }
}

pub fn tags(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().filter_map(|t| t.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

pub fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// One row of a runs table.
pub struct RunRow {
    pub id: String,
    pub name: String,
    pub flow_name: String,
    pub state_class: String,
    pub state_name: String,
    pub start: String,
    pub duration: String,
    pub tags: Vec<String>,
}

impl RunRow {
    /// A row whose flow name is looked up in `names` (see `pages::flow_names`).
    pub fn named(run: &FlowRun, names: &std::collections::HashMap<uuid::Uuid, String>) -> Self {
        RunRow::new(run, names.get(&run.flow_id).map(String::as_str).unwrap_or("?"))
    }

    pub fn new(run: &FlowRun, flow_name: &str) -> Self {
        let kind = run.timing.state_type.map(|t| t.as_str());
        RunRow {
            id: run.id.to_string(),
            name: run.name.clone(),
            flow_name: flow_name.to_string(),
            state_class: state_class(kind),
            state_name: run.timing.state_name.clone().unwrap_or_else(|| "—".into()),
            start: when(run.timing.start_time.or(run.timing.expected_start_time)),
            duration: duration(run.timing.estimated_run_time.max(run.timing.total_run_time)),
            tags: tags(&run.tags),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(duration(0.0), "0s");
        assert_eq!(duration(0.25), "250ms");
        assert_eq!(duration(65.2), "1m 05s");
        assert_eq!(duration(3725.0), "1h 02m 05s");
        assert_eq!(duration(f64::NAN), "0s");
    }

    #[test]
    fn states_have_one_class_each() {
        assert_eq!(state_class(Some("COMPLETED")), "state state-completed");
        assert_eq!(state_class(None), "state state-none");
    }
}
