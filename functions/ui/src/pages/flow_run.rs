//! One flow run: its states, parameters, task runs with their dependency graph, subflows,
//! and logs (live while the run is active), with cancel, retry and resume.

use std::collections::HashMap;
use stratus_store::db::flow_runs::FlowRun;
use stratus_store::db::task_runs::TaskRun;

use askama::Template;
use axum::extract::State;
use serde_json::{json, Value};
use stratus_http::AppState;
use stratus_store::db::flow_runs::{self, FlowRunSort, GraphOutlineNode};
use stratus_store::db::logs::{self, LogFilter, LogSort};
use stratus_store::db::runs::{self, RunTable};
use stratus_store::db::task_runs::TaskRunSort;
use stratus_store::db::{deployments, flow_run_inputs, flows, Client};
use uuid::Uuid;

use super::view::{self, RunRow};
use super::{filters, flow_names, id_param, int_param, render, PageError, PagePath, PageResult, Params};

pub struct StateRow {
    pub(super) class: String,
    pub(super) name: String,
    pub(super) when: String,
    pub(super) message: String,
}

pub struct TaskRow {
    id: String,
    class: String,
    state_name: String,
    name: String,
    start: String,
    duration: String,
    /// Attempts, so retried tasks stand out.
    run_count: i32,
    child: Option<String>,
}

pub struct LogRow {
    pub(super) when: String,
    pub(super) level_name: String,
    pub(super) logger: String,
    pub(super) message: String,
}

/// Most task runs listed, boxes drawn and log lines shown on one page, so a run with
/// thousands of tasks still renders quickly; the page says when it shows fewer.
const TASK_ROWS: usize = 200;
const GRAPH_NODES: usize = 500;
const LOG_ROWS: i64 = 500;

/// The schema and description of the input a paused run waits for (Prefect 2.20's
/// `pause_flow_run(wait_for_input=...)` stores both as flow run inputs named by the paused
/// state's `run_input_keyset`), or None when it waits for nothing.
async fn wanted_input(c: &Client, run: &FlowRun) -> Result<Option<(String, String)>, PageError> {
    let Some(keyset) = run
        .state
        .as_ref()
        .and_then(|s| s.state_details.run_input_keyset.as_ref())
    else {
        return Ok(None);
    };
    let key = |k: &str| keyset.get(k).and_then(Value::as_str).map(str::to_string);
    let Some(schema_key) = key("schema") else {
        return Ok(None);
    };
    let Some(schema) = flow_run_inputs::read(c, run.id, &schema_key).await? else {
        return Ok(None);
    };
    let description = match key("description") {
        Some(k) => flow_run_inputs::read(c, run.id, &k)
            .await?
            .map(|d| match serde_json::from_str::<Value>(&d.value) {
                Ok(Value::String(text)) => text,
                _ => d.value,
            })
            .unwrap_or_default(),
        None => String::new(),
    };
    Ok(Some((schema.value, description)))
}

#[derive(Template)]
#[template(path = "flow_run.html")]
struct FlowRunPage {
    graph_truncated: bool,
    task_total: usize,
    earlier_logs: bool,
    nav: &'static str,
    id: String,
    name: String,
    flow_id: String,
    flow_name: String,
    state_class: String,
    state_name: String,
    active: bool,
    can_cancel: bool,
    can_retry: bool,
    can_resume: bool,
    /// What a run paused with `wait_for_input` waits for: the input's schema (JSON) and
    /// its description.
    wants_input: Option<(String, String)>,
    start: String,
    duration: String,
    run_count: i32,
    deployment: Option<(String, String)>,
    work_pool: Option<(String, String)>,
    work_queue: Option<String>,
    parent_run: Option<String>,
    tags: Vec<String>,
    states: Vec<StateRow>,
    tasks: Vec<TaskRow>,
    graph: String,
    subflows: Vec<RunRow>,
    parameters: String,
    levels: Vec<(i64, &'static str)>,
    level: i64,
    logs: Vec<LogRow>,
    last_log: String,
}

impl LogRow {
    fn of(l: &logs::Log) -> LogRow {
        LogRow {
            when: l.timestamp.format("%H:%M:%S%.3f").to_string(),
            level_name: level_name(l.level).to_string(),
            logger: l.name.clone(),
            message: l.message.clone(),
        }
    }
}

/// The latest `limit` lines `filter` matches, oldest first, and whether there are earlier
/// ones.
pub(super) async fn latest_logs(
    c: &impl deadpool_postgres::GenericClient,
    filter: &LogFilter,
    limit: i64,
) -> Result<(Vec<logs::Log>, bool), PageError> {
    let mut rows = logs::filter(c, filter, LogSort::TimestampDesc, limit + 1, 0).await?;
    let earlier = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    rows.reverse();
    Ok((rows, earlier))
}

/// The page's rows of `logs`.
pub(super) fn log_rows(logs: &[logs::Log]) -> Vec<LogRow> {
    logs.iter().map(LogRow::of).collect()
}

/// The states a person may put a run in by hand, as Prefect's UI offers them.
pub const STATE_CHOICES: [(&str, &str); 4] = [
    ("COMPLETED", "Completed"),
    ("FAILED", "Failed"),
    ("CANCELLED", "Cancelled"),
    ("CRASHED", "Crashed"),
];

/// The log level filter's choices.
pub const LEVELS: [(i64, &str); 4] = [
    (0, "All"),
    (20, "Info and above"),
    (30, "Warnings and errors"),
    (40, "Errors only"),
];

pub fn level_name(level: i16) -> &'static str {
    match level {
        l if l >= 50 => "CRITICAL",
        l if l >= 40 => "ERROR",
        l if l >= 30 => "WARNING",
        l if l >= 20 => "INFO",
        _ => "DEBUG",
    }
}

pub async fn page(State(app): State<AppState>, PagePath(raw): PagePath, params: Params) -> PageResult {
    let id = id_param(&raw, "flow run")?;
    let level = int_param(&params, "level", 0, 0, 50)?;
    let c = app.client().await?;
    let run = runs::read::<FlowRun>(&c, id)
        .await?
        .ok_or_else(|| PageError::NotFound(format!("There is no flow run {id}.")))?;
    let flow_name = flows::read(&c, run.flow_id)
        .await?
        .map(|f| f.name)
        .unwrap_or_default();
    let deployment = match run.deployment_id {
        Some(d) => deployments::read(&c, d)
            .await?
            .map(|d| (d.id.to_string(), d.name)),
        None => None,
    };
    let parent_run = match run.parent_task_run_id {
        Some(t) => runs::read::<TaskRun>(&c, t)
            .await?
            .and_then(|t| t.flow_run_id)
            .map(|u| u.to_string()),
        None => None,
    };
    let states = runs::read_states_of_run(&c, RunTable::Flow, id)
        .await?
        .into_iter()
        .map(|(_, _, _, s)| StateRow {
            class: view::state_class(Some(s.kind.as_str())),
            name: s.name,
            when: view::when(Some(s.timestamp)),
            message: s.message.unwrap_or_default(),
        })
        .collect();
    let task_filter = filters(json!({"task_runs": {"flow_run_id": {"any_": [id]}}}))?;
    let tasks = runs::filter::<TaskRun>(
        &c,
        &task_filter,
        TaskRunSort::ExpectedStartTimeAsc,
        TASK_ROWS as i64,
        0,
    )
    .await?;
    let (drawn, task_total) = flow_runs::graph_outline(&c, id, GRAPH_NODES as i64).await?;
    let task_total = (task_total as usize).max(tasks.len());
    let subflow_filter = filters(json!({"flow_runs": {"parent_flow_run_id": {"any_": [id]}}}))?;
    let subflows =
        runs::filter::<FlowRun>(&c, &subflow_filter, FlowRunSort::ExpectedStartTimeAsc, 200, 0).await?;
    let names = flow_names(&c, subflows.iter().map(|r| r.flow_id)).await?;
    let log_filter: LogFilter =
        serde_json::from_value(json!({"flow_run_id": {"any_": [id]}, "level": {"ge_": level}}))
            .map_err(|e| PageError::Internal(e.to_string()))?;
    // The latest lines, oldest first; the live tail appends after them.
    let (latest, earlier_logs) = latest_logs(&c, &log_filter, LOG_ROWS).await?;

    let kind = run.timing.state_type.map(|k| k.as_str());
    let wants_input = match kind {
        Some("PAUSED") => wanted_input(&c, &run).await?,
        _ => None,
    };
    let active = matches!(
        kind,
        Some("SCHEDULED" | "PENDING" | "RUNNING" | "CANCELLING" | "PAUSED")
    );
    let child_of: HashMap<Uuid, Uuid> = tasks
        .iter()
        .filter_map(|t| Some((t.id, t.state.as_ref()?.state_details.child_flow_run_id?)))
        .collect();
    Ok(render(&FlowRunPage {
        nav: "runs",
        id: id.to_string(),
        name: run.name.clone(),
        flow_id: run.flow_id.to_string(),
        flow_name,
        state_class: view::state_class(kind),
        state_name: run.timing.state_name.clone().unwrap_or_else(|| "—".into()),
        active,
        can_cancel: matches!(kind, Some("SCHEDULED" | "PENDING" | "RUNNING" | "PAUSED")),
        can_retry: run.deployment_id.is_some()
            && matches!(kind, Some("FAILED" | "CRASHED" | "CANCELLED" | "COMPLETED")),
        can_resume: kind == Some("PAUSED"),
        wants_input,
        start: view::when(run.timing.start_time.or(run.timing.expected_start_time)),
        duration: view::duration(run.timing.estimated_run_time.max(run.timing.total_run_time)),
        run_count: run.timing.run_count,
        deployment,
        work_pool: run
            .work_pool_name
            .clone()
            .map(|n| (super::work_pools::path_segment(&n), n)),
        work_queue: run.work_queue_name.clone(),
        parent_run,
        tags: view::tags(&run.tags),
        states,
        graph: graph_svg(&drawn),
        graph_truncated: drawn.len() < task_total,
        task_total,
        earlier_logs,
        tasks: tasks
            .iter()
            .map(|t| TaskRow {
                id: t.id.to_string(),
                class: view::state_class(t.timing.state_type.map(|k| k.as_str())),
                state_name: t.timing.state_name.clone().unwrap_or_else(|| "—".into()),
                name: t.name.clone(),
                start: view::when(t.timing.start_time.or(t.timing.expected_start_time)),
                duration: view::duration(t.timing.estimated_run_time.max(t.timing.total_run_time)),
                run_count: t.timing.run_count,
                child: child_of.get(&t.id).map(Uuid::to_string),
            })
            .collect(),
        subflows: subflows.iter().map(|r| RunRow::named(r, &names)).collect(),
        parameters: view::pretty(&run.parameters),
        levels: LEVELS.to_vec(),
        level,
        last_log: latest
            .last()
            .map(|l| stratus_domain::time::format_ts(&l.timestamp))
            .unwrap_or_default(),
        logs: log_rows(&latest),
    }))
}

/// The task dependency graph as SVG: each task in the column after its latest upstream
/// task, boxes coloured by state, edges from upstream to downstream.
pub fn graph_svg(nodes: &[GraphOutlineNode]) -> String {
    if nodes.is_empty() {
        return String::new();
    }
    let index: HashMap<Uuid, usize> = nodes.iter().enumerate().map(|(i, n)| (n.id, i)).collect();
    let upstream: Vec<Vec<usize>> = nodes
        .iter()
        .map(|n| n.upstream.iter().filter_map(|u| index.get(u).copied()).collect())
        .collect();
    // Nodes come in start order, so upstream tasks usually come first; a few passes settle
    // the rest, and cycles (impossible in Prefect) stop at the bound.
    let mut column = vec![0usize; nodes.len()];
    for _ in 0..nodes.len().min(50) {
        let mut changed = false;
        for i in 0..nodes.len() {
            let c = upstream[i].iter().map(|&u| column[u] + 1).max().unwrap_or(0);
            if c > column[i] {
                column[i] = c;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let mut row_in_column: HashMap<usize, usize> = HashMap::new();
    let mut pos = vec![(0usize, 0usize); nodes.len()];
    for i in 0..nodes.len() {
        let r = row_in_column.entry(column[i]).or_default();
        pos[i] = (column[i], *r);
        *r += 1;
    }
    let (w, h, gx, gy) = (170usize, 30usize, 50usize, 14usize);
    let cols = column.iter().max().copied().unwrap_or(0) + 1;
    let rows = row_in_column.values().max().copied().unwrap_or(1);
    let width = cols * (w + gx);
    let height = rows * (h + gy) + gy;
    let xy = |i: usize| (pos[i].0 * (w + gx) + 4, pos[i].1 * (h + gy) + gy / 2);
    let mut svg = format!(
        "<svg class=\"task-graph\" viewBox=\"0 0 {width} {height}\" width=\"{width}\" height=\"{height}\" xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" aria-label=\"Task dependency graph\">"
    );
    for (i, ups) in upstream.iter().enumerate() {
        for &u in ups {
            let (x1, y1) = xy(u);
            let (x2, y2) = xy(i);
            svg.push_str(&format!(
                "<path class=\"edge\" d=\"M{} {} C{} {} {} {} {} {}\"/>",
                x1 + w,
                y1 + h / 2,
                x1 + w + gx / 2,
                y1 + h / 2,
                x2 - gx / 2,
                y2 + h / 2,
                x2,
                y2 + h / 2
            ));
        }
    }
    for (i, n) in nodes.iter().enumerate() {
        let (x, y) = xy(i);
        let kind = n
            .state_type
            .as_deref()
            .map(str::to_ascii_lowercase)
            .unwrap_or_else(|| "none".into());
        let label: String = n.name.chars().take(22).collect();
        svg.push_str(&format!(
            "<a href=\"/task-runs/{}\"><g class=\"node node-{kind}\"><title>{}</title><rect x=\"{x}\" y=\"{y}\" width=\"{w}\" height=\"{h}\" rx=\"6\"/><text x=\"{}\" y=\"{}\">{}</text></g></a>",
            n.id,
            escape(&n.name),
            x + 10,
            y + h / 2 + 4,
            escape(&label)
        ));
    }
    svg.push_str("</svg>");
    svg
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, upstream: &[Uuid]) -> GraphOutlineNode {
        GraphOutlineNode {
            id: Uuid::new_v4(),
            name: name.into(),
            state_type: Some("COMPLETED".into()),
            upstream: upstream.to_vec(),
        }
    }

    #[test]
    fn the_graph_puts_each_task_after_its_upstream_and_draws_the_edges() {
        let a = node("extract", &[]);
        let b = node("transform", &[a.id]);
        let c = node("load <all>", &[b.id, Uuid::new_v4()]);
        let svg = graph_svg(&[a, b, c]);
        assert_eq!(svg.matches("<g class=\"node node-completed\">").count(), 3);
        assert_eq!(svg.matches("class=\"edge\"").count(), 2);
        assert!(svg.contains("load &lt;all&gt;"));
        // Three columns wide.
        assert!(svg.contains("width=\"660\""), "{svg}");
        assert_eq!(graph_svg(&[]), "");
    }
}
