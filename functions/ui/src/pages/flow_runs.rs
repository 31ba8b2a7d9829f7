//! The flow runs list: filters (flow, deployment, tag, state, time range) and paging.

use askama::Template;
use axum::extract::State;
use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use serde_json::{json, Map, Value};
use stratus_http::AppState;
use stratus_store::db::flow_runs::FlowRun;
use stratus_store::db::flow_runs::FlowRunSort;
use stratus_store::db::runs;
use stratus_store::db::runs::RunTable;
use stratus_store::url::percent_encode;

use stratus_domain::states::StateType;

use super::view::RunRow;
use super::{filters, flow_names, int_param, param, render, PageError, PageResult, Params};

const PAGE_SIZE: i64 = 50;

fn state_options() -> Vec<String> {
    StateType::ALL.iter().map(|t| t.as_str().to_string()).collect()
}

#[derive(Template)]
#[template(path = "flow_runs.html")]
struct FlowRunsPage {
    nav: &'static str,
    runs: Vec<RunRow>,
    /// How many runs match, or "more than" what was counted.
    total: String,
    flow: String,
    deployment: String,
    tag: String,
    state: String,
    since: String,
    until: String,
    state_options: Vec<String>,
    page: i64,
    prev: Option<String>,
    next: Option<String>,
}

/// `2026-11-25T10:00` (a datetime-local input, taken as UTC) or RFC 3339.
fn time_param(
    p: &std::collections::HashMap<String, String>,
    key: &str,
) -> Result<Option<DateTime<Utc>>, PageError> {
    let Some(raw) = param(p, key) else { return Ok(None) };
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Ok(Some(t.with_timezone(&Utc)));
    }
    for fmt in ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(raw, fmt) {
            return Ok(Some(t.and_utc()));
        }
    }
    Err(PageError::BadRequest(format!(
        "“{key}” must be a date and time such as 2026-11-25T10:00, not “{raw}”."
    )))
}

pub async fn page(State(app): State<AppState>, params: Params) -> PageResult {
    let page = int_param(&params, "page", 1, 1, 100_000)?;
    let flow = param(&params, "flow").unwrap_or_default().to_string();
    let deployment = param(&params, "deployment").unwrap_or_default().to_string();
    let tag = param(&params, "tag").unwrap_or_default().to_string();
    let state = param(&params, "state").unwrap_or_default().to_ascii_uppercase();
    if !state.is_empty() && StateType::parse(&state).is_none() {
        return Err(PageError::BadRequest(format!(
            "“{state}” is not a state; use one of {}.",
            state_options().join(", ")
        )));
    }
    let mut since = time_param(&params, "since")?;
    if let Some(h) = param(&params, "since_hours") {
        let h = int_param(&params, "since_hours", 24, 1, 24 * 365).map_err(|_| {
            PageError::BadRequest(format!("“since_hours” must be a number of hours, not “{h}”."))
        })?;
        since = Some(Utc::now() - Duration::hours(h));
    }
    let until = time_param(&params, "until")?;

    let mut runs_f = Map::new();
    if !tag.is_empty() {
        runs_f.insert("tags".into(), json!({"all_": [tag]}));
    }
    if !state.is_empty() {
        runs_f.insert("state".into(), json!({"type": {"any_": [state]}}));
    }
    if since.is_some() || until.is_some() {
        let mut t = Map::new();
        if let Some(s) = since {
            t.insert("after_".into(), json!(s));
        }
        if let Some(u) = until {
            t.insert("before_".into(), json!(u));
        }
        runs_f.insert("expected_start_time".into(), Value::Object(t));
    }
    let mut body = json!({"flow_runs": runs_f});
    if !flow.is_empty() {
        body["flows"] = json!({"name": {"like_": flow}});
    }
    if !deployment.is_empty() {
        body["deployments"] = json!({"name": {"like_": deployment}});
    }
    let f = filters(body)?;
    let c = app.client().await?;
    // Counted no further than needed to say whether a next page exists, and at least to
    // COUNTED_UP_TO: counting a million runs took longer than showing fifty of them.
    let cap = runs::COUNTED_UP_TO.max(page * PAGE_SIZE);
    let counted = runs::count_up_to(&c, RunTable::Flow, &f, cap).await?;
    let runs = runs::filter::<FlowRun>(
        &c,
        &f,
        FlowRunSort::ExpectedStartTimeDesc,
        PAGE_SIZE,
        (page - 1) * PAGE_SIZE,
    )
    .await?;
    let names = flow_names(&c, runs.iter().map(|r| r.flow_id)).await?;

    let link = |p: i64| {
        let mut pairs: Vec<(String, String)> = params
            .iter()
            .filter(|(k, v)| k.as_str() != "page" && !v.trim().is_empty())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        pairs.sort();
        pairs.push(("page".into(), p.to_string()));
        let q: Vec<String> = pairs
            .iter()
            .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
            .collect();
        format!("/flow-runs?{}", q.join("&"))
    };
    let fmt_input = |t: Option<DateTime<Utc>>| {
        t.map(|t| t.format("%Y-%m-%dT%H:%M").to_string())
            .unwrap_or_default()
    };
    Ok(render(&FlowRunsPage {
        nav: "runs",
        runs: runs.iter().map(|r| RunRow::named(r, &names)).collect(),
        total: match counted {
            n if n > cap => format!("more than {cap}"),
            n => n.to_string(),
        },
        flow,
        deployment,
        tag,
        state,
        since: fmt_input(since),
        until: fmt_input(until),
        state_options: state_options(),
        prev: (page > 1).then(|| link(page - 1)),
        next: (page * PAGE_SIZE < counted).then(|| link(page + 1)),
        page,
    }))
}
