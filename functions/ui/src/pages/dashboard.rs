//! The dashboard: runs by state over a window, their history, failed and late runs, and
//! the work pools' health.

use std::collections::HashMap;
use stratus_store::db::flow_runs::FlowRun;
use stratus_store::db::runs;

use askama::Template;
use axum::extract::State;
use chrono::{Duration, Utc};
use serde_json::json;
use stratus_domain::states::StateType;
use stratus_http::AppState;
use stratus_store::db::flow_runs::{self, FlowRunSort};
use stratus_store::db::runs::RunTable;
use stratus_store::db::work_pools as pools;
use stratus_store::filters::WorkPoolFilter;

use super::view::{self, RunRow};
use super::work_pools::{pool_row, PoolRow};
use super::{filters, flow_names, int_param, render, scatter, PageResult, Params};

/// The order the counts and chart segments are shown in.
const STATES: [StateType; 9] = [
    StateType::Completed,
    StateType::Running,
    StateType::Scheduled,
    StateType::Pending,
    StateType::Failed,
    StateType::Crashed,
    StateType::Cancelled,
    StateType::Cancelling,
    StateType::Paused,
];
const BARS: i64 = 48;

pub struct Count {
    kind: &'static str,
    label: String,
    class: String,
    count: i64,
}

pub struct Segment {
    class: String,
    height: String,
}

pub struct Bar {
    title: String,
    segments: Vec<Segment>,
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct Dashboard {
    nav: &'static str,
    hours: i64,
    windows: Vec<(i64, &'static str)>,
    counts: Vec<Count>,
    bars: Vec<Bar>,
    chart_start: String,
    chart_end: String,
    scatter: String,
    failed: Vec<RunRow>,
    late: Vec<RunRow>,
    pools: Vec<PoolRow>,
}

/// The newest Failed or Crashed runs expected since `start`, at most `limit`. Each
/// state's come off its `(state, expected start)` index in order and are merged here:
/// asked for both states at once, Postgres walked the time index instead, past every run
/// in another state (a day of runs due tomorrow: 375 ms at a million runs, 0.3 ms so).
async fn newest_failed(
    c: &impl deadpool_postgres::GenericClient,
    start: chrono::DateTime<Utc>,
    limit: i64,
) -> Result<Vec<FlowRun>, super::PageError> {
    let mut found = Vec::new();
    for kind in [StateType::Failed, StateType::Crashed] {
        let f = filters(json!({"flow_runs": {"state": {"type": {"any_": [kind.as_str()]}},
                                             "expected_start_time": {"after_": start}}}))?;
        found.extend(runs::filter::<FlowRun>(c, &f, FlowRunSort::ExpectedStartTimeDesc, limit, 0).await?);
    }
    // As the list's own order: newest expected start first, then id.
    found.sort_by(|a, b| (b.timing.expected_start_time, a.id).cmp(&(a.timing.expected_start_time, b.id)));
    // Read apart, a run that went from Failed to Crashed between the two can be in both.
    found.dedup_by_key(|r| r.id);
    found.truncate(usize::try_from(limit).unwrap_or(0));
    Ok(found)
}

pub async fn page(State(app): State<AppState>, params: Params) -> PageResult {
    let hours = int_param(&params, "hours", 24, 1, 24 * 90)?;
    let end = Utc::now();
    let start = end - Duration::hours(hours);
    let c = app.client().await?;

    let window = filters(json!({"flow_runs": {"expected_start_time": {"after_": start, "before_": end}}}))?;
    let step = (end - start).num_microseconds().unwrap_or(i64::MAX) / BARS;
    let history = runs::history(&c, RunTable::Flow, &window, start, end, step).await?;
    let plotted = stratus_store::db::flow_runs::scatter(&c, &window, scatter::MAX_POINTS).await?;
    let points: Vec<scatter::Point> = plotted.iter().map(scatter::Point::of).collect();
    let mut totals: HashMap<String, i64> = HashMap::new();
    let peak = history
        .iter()
        .map(|i| i.states.iter().map(|s| s.count_runs).sum::<i64>())
        .max()
        .unwrap_or(0)
        .max(1);
    let mut bars = Vec::with_capacity(history.len());
    for interval in &history {
        let mut segments = Vec::new();
        let mut parts = Vec::new();
        for state in STATES {
            let kind = state.as_str();
            let n: i64 = interval
                .states
                .iter()
                .filter(|s| s.state_type == kind)
                .map(|s| s.count_runs)
                .sum();
            if n > 0 {
                *totals.entry(kind.to_string()).or_default() += n;
                segments.push(Segment {
                    class: view::state_class(Some(kind)),
                    height: format!("{:.1}", n as f64 * 100.0 / peak as f64),
                });
                parts.push(format!("{n} {}", state.default_name()));
            }
        }
        let title = format!(
            "{} – {}: {}",
            interval.interval_start.format("%b %d %H:%M"),
            interval.interval_end.format("%H:%M"),
            if parts.is_empty() {
                "no runs".to_string()
            } else {
                parts.join(", ")
            }
        );
        bars.push(Bar { title, segments });
    }
    let counts = STATES
        .iter()
        .map(|state| Count {
            kind: state.as_str(),
            label: state.default_name(),
            class: view::state_class(Some(state.as_str())),
            count: totals.get(state.as_str()).copied().unwrap_or(0),
        })
        .collect();

    let failed = newest_failed(&c, start, 10).await?;
    let late_f = filters(json!({"flow_runs": {"state": {"name": {"any_": ["Late"]}}}}))?;
    let late = runs::filter::<FlowRun>(&c, &late_f, FlowRunSort::ExpectedStartTimeAsc, 10, 0).await?;
    let names = flow_names(&c, failed.iter().chain(late.iter()).map(|r| r.flow_id)).await?;
    let row = |r: &flow_runs::FlowRun| RunRow::named(r, &names);

    let mut pool_rows = Vec::new();
    for p in pools::filter_pools(&c, &WorkPoolFilter::default(), 100, 0).await? {
        pool_rows.push(pool_row(&c, &p).await?.0);
    }

    Ok(render(&Dashboard {
        nav: "dashboard",
        hours,
        windows: vec![
            (1, "Last hour"),
            (24, "Last day"),
            (168, "Last week"),
            (720, "Last 30 days"),
        ],
        counts,
        bars,
        chart_start: view::when(Some(start)),
        chart_end: view::when(Some(end)),
        scatter: scatter::svg(&points, start, end),
        failed: failed.iter().map(row).collect(),
        late: late.iter().map(row).collect(),
        pools: pool_rows,
    }))
}
