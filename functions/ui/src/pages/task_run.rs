//! One task run: its states with timings, attempts, inputs and the tasks they came from,
//! the tasks fed by it, its cache key and expiry, its result reference, and its logs.

use askama::Template;
use axum::extract::State;
use serde_json::json;
use stratus_http::AppState;
use stratus_store::db::flow_runs::{self, FlowRun};
use stratus_store::db::logs::LogFilter;
use stratus_store::db::runs::{self, RunTable};
use stratus_store::db::task_runs::TaskRun;
use uuid::Uuid;

use super::flow_run::{latest_logs, log_rows, LogRow, StateRow};
use super::{id_param, render, view, PageError, PagePath, PageResult};

/// Log lines shown; the page says when there are more.
const LOG_ROWS: i64 = 500;
/// Task runs of the flow run looked through for this one's downstream tasks.
const NEIGHBOURS: i64 = 5_000;

/// A task run this one is linked to: id, name, state class and name.
pub struct Linked {
    id: String,
    name: String,
    class: String,
    state_name: String,
}

#[derive(Template)]
#[template(path = "task_run.html")]
struct TaskRunPage {
    nav: &'static str,
    id: String,
    name: String,
    flow_run: Option<(String, String)>,
    state_class: String,
    state_name: String,
    start: String,
    end: String,
    duration: String,
    run_count: i32,
    max_retries: String,
    task_key: String,
    dynamic_key: String,
    cache_key: String,
    cache_expiration: String,
    result: String,
    tags: Vec<String>,
    states: Vec<StateRow>,
    inputs: String,
    upstream: Vec<Linked>,
    downstream: Vec<Linked>,
    logs: Vec<LogRow>,
    earlier_logs: bool,
}

pub async fn page(State(app): State<AppState>, PagePath(raw): PagePath) -> PageResult {
    let id = id_param(&raw, "task run")?;
    let c = app.client().await?;
    let run = runs::read::<TaskRun>(&c, id)
        .await?
        .ok_or_else(|| PageError::NotFound(format!("There is no task run {id}.")))?;
    let flow_run = match run.flow_run_id {
        Some(f) => runs::read::<FlowRun>(&c, f)
            .await?
            .map(|r| (r.id.to_string(), r.name)),
        None => None,
    };
    // Each state with how long the run stayed in it.
    let history = runs::read_states_of_run(&c, RunTable::Task, id).await?;
    let mut states = Vec::with_capacity(history.len());
    for (i, (_, _, _, s)) in history.iter().enumerate() {
        let stayed = history.get(i + 1).map(|(_, _, _, next)| {
            view::duration((next.timestamp - s.timestamp).num_milliseconds() as f64 / 1000.0)
        });
        let message = s.message.clone().unwrap_or_default();
        states.push(StateRow {
            class: view::state_class(Some(s.kind.as_str())),
            name: s.name.clone(),
            when: view::when(Some(s.timestamp)),
            message: match stayed {
                Some(d) if message.is_empty() => format!("for {d}"),
                Some(d) => format!("for {d} · {message}"),
                None => message,
            },
        });
    }
    // Upstream: the task runs its inputs name; downstream: those naming it.
    let (upstream, downstream) = match run.flow_run_id {
        Some(f) => {
            let (nodes, _) = flow_runs::graph_outline(&c, f, NEIGHBOURS).await?;
            let link = |n: &flow_runs::GraphOutlineNode| Linked {
                id: n.id.to_string(),
                name: n.name.clone(),
                class: view::state_class(n.state_type.as_deref()),
                state_name: n.state_type.clone().unwrap_or_else(|| "—".into()),
            };
            let ups: Vec<Uuid> = nodes
                .iter()
                .find(|n| n.id == id)
                .map(|n| n.upstream.clone())
                .unwrap_or_default();
            (
                nodes.iter().filter(|n| ups.contains(&n.id)).map(link).collect(),
                nodes
                    .iter()
                    .filter(|n| n.upstream.contains(&id))
                    .map(link)
                    .collect(),
            )
        }
        None => (Vec::new(), Vec::new()),
    };
    let log_filter: LogFilter = serde_json::from_value(json!({"task_run_id": {"any_": [id]}}))
        .map_err(|e| PageError::Internal(e.to_string()))?;
    let (logs, earlier_logs) = latest_logs(&c, &log_filter, LOG_ROWS).await?;
    let result = run
        .state
        .as_ref()
        .and_then(|s| s.data.as_ref())
        .map(view::pretty)
        .unwrap_or_default();
    Ok(render(&TaskRunPage {
        nav: "runs",
        name: run.name.clone(),
        flow_run,
        id: id.to_string(),
        state_class: view::state_class(run.timing.state_type.map(|k| k.as_str())),
        state_name: run.timing.state_name.clone().unwrap_or_else(|| "—".into()),
        start: view::when(run.timing.start_time.or(run.timing.expected_start_time)),
        end: view::when(run.timing.end_time),
        duration: view::duration(run.timing.estimated_run_time.max(run.timing.total_run_time)),
        run_count: run.timing.run_count,
        max_retries: run
            .empirical_policy
            .retries
            .unwrap_or(run.empirical_policy.max_retries)
            .to_string(),
        task_key: run.task_key.clone(),
        dynamic_key: run.dynamic_key.clone(),
        cache_key: run.cache_key.clone().unwrap_or_default(),
        cache_expiration: run
            .cache_expiration
            .map(|e| view::when(Some(e)))
            .unwrap_or_default(),
        result,
        tags: view::tags(&run.tags),
        states,
        inputs: view::pretty(&run.task_inputs),
        upstream,
        downstream,
        earlier_logs,
        logs: log_rows(&logs),
    }))
}
