//! Flows and deployments: lists, a flow's deployments and runs, and a deployment's
//! schedules, upcoming runs and the form that starts an ad hoc run.

use askama::Template;
use axum::extract::State;
use serde_json::{json, Value};
use stratus_http::AppState;
use stratus_store::db::deployments::{self, Deployment, DeploymentSort};
use stratus_store::db::flow_runs::FlowRun;
use stratus_store::db::flow_runs::FlowRunSort;
use stratus_store::db::flows::{self, FlowSort};
use stratus_store::db::runs;
use stratus_store::db::work_pools as pools;
use stratus_store::filters::WorkPoolFilter;

use super::view::{self, RunRow};
use super::{filters, flow_names, id_param, render, scatter, PageError, PagePath, PageResult};

pub struct DeploymentRow {
    id: String,
    name: String,
    flow_name: String,
    schedules: String,
    pool: String,
    paused: bool,
    status: String,
}

/// A schedule as a person reads it.
pub fn describe_schedule(s: &Value) -> String {
    let tz = s.get("timezone").and_then(Value::as_str).filter(|t| *t != "UTC");
    let suffix = tz.map(|t| format!(" ({t})")).unwrap_or_default();
    if let Some(cron) = s.get("cron").and_then(Value::as_str) {
        return format!("cron “{cron}”{suffix}");
    }
    if let Some(secs) = s.get("interval").and_then(Value::as_f64) {
        return format!("every {}{suffix}", interval_text(secs));
    }
    if let Some(rrule) = s.get("rrule").and_then(Value::as_str) {
        return format!("rrule “{rrule}”{suffix}");
    }
    s.to_string()
}

/// "6 hours", "90 seconds": an interval in the largest whole unit.
fn interval_text(secs: f64) -> String {
    if secs.fract() != 0.0 || secs < 1.0 {
        return view::duration(secs);
    }
    let n = secs as i64;
    let (count, unit) = [(86_400, "day"), (3_600, "hour"), (60, "minute")]
        .iter()
        .find(|(size, _)| n % size == 0)
        .map(|(size, unit)| (n / size, *unit))
        .unwrap_or((n, "second"));
    if count == 1 {
        format!("{count} {unit}")
    } else {
        format!("{count} {unit}s")
    }
}

fn row(d: &Deployment, flow_name: &str) -> DeploymentRow {
    let schedules: Vec<String> = d
        .schedules
        .iter()
        .map(|s| describe_schedule(&s.schedule))
        .collect();
    DeploymentRow {
        id: d.id.to_string(),
        name: d.name.clone(),
        flow_name: flow_name.to_string(),
        schedules: if schedules.is_empty() {
            "—".into()
        } else {
            schedules.join("; ")
        },
        pool: d.work_pool_name.clone().unwrap_or_else(|| "—".into()),
        paused: d.paused,
        status: d.status.clone(),
    }
}

#[derive(Template)]
#[template(path = "flows.html")]
struct FlowsPage {
    nav: &'static str,
    flows: Vec<(String, String, i64, String)>,
}

pub async fn flows(State(app): State<AppState>) -> PageResult {
    let c = app.client().await?;
    let all = flows::filter(&c, &filters(json!({}))?, FlowSort::NameAsc, 500, 0).await?;
    // One count for the page, not one a flow.
    let ids: Vec<uuid::Uuid> = all.iter().map(|f| f.id).collect();
    let counts = deployments::count_by_flow(&c, &ids).await?;
    let rows: Vec<_> = all
        .into_iter()
        .map(|f| {
            let n = counts.get(&f.id).copied().unwrap_or(0);
            (f.id.to_string(), f.name, n, view::when(Some(f.created)))
        })
        .collect();
    Ok(render(&FlowsPage {
        nav: "flows",
        flows: rows,
    }))
}

#[derive(Template)]
#[template(path = "flow.html")]
struct FlowPage {
    nav: &'static str,
    name: String,
    scatter: String,
    deployment_rows: Vec<DeploymentRow>,
    runs: Vec<RunRow>,
}

pub async fn flow(State(app): State<AppState>, PagePath(raw): PagePath) -> PageResult {
    let id = id_param(&raw, "flow")?;
    let c = app.client().await?;
    let f = flows::read(&c, id)
        .await?
        .ok_or_else(|| PageError::NotFound(format!("There is no flow {id}.")))?;
    let of_flow = filters(json!({"flows": {"id": {"any_": [id]}}}))?;
    let deps = deployments::filter(&c, &of_flow, DeploymentSort::NameAsc, 200, 0).await?;
    let runs = runs::filter::<FlowRun>(&c, &of_flow, FlowRunSort::ExpectedStartTimeDesc, 20, 0).await?;
    let plotted = stratus_store::db::flow_runs::scatter(&c, &of_flow, scatter::MAX_POINTS).await?;
    let points: Vec<scatter::Point> = plotted.iter().map(scatter::Point::of).collect();
    Ok(render(&FlowPage {
        nav: "flows",
        scatter: scatter::svg_of(&points),
        deployment_rows: deps.iter().map(|d| row(d, &f.name)).collect(),
        runs: runs.iter().map(|r| RunRow::new(r, &f.name)).collect(),
        name: f.name,
    }))
}

#[derive(Template)]
#[template(path = "deployments.html")]
struct DeploymentsPage {
    nav: &'static str,
    deployments: Vec<DeploymentRow>,
}

pub async fn list(State(app): State<AppState>) -> PageResult {
    let c = app.client().await?;
    let deps = deployments::filter(&c, &filters(json!({}))?, DeploymentSort::NameAsc, 500, 0).await?;
    let names = flow_names(&c, deps.iter().map(|d| d.flow_id)).await?;
    Ok(render(&DeploymentsPage {
        nav: "deployments",
        deployments: deps
            .iter()
            .map(|d| row(d, names.get(&d.flow_id).map(String::as_str).unwrap_or("?")))
            .collect(),
    }))
}

/// A schedule's fields as its edit form shows them.
pub struct ScheduleForm {
    kind: &'static str,
    timezone: String,
    cron: String,
    day_or: bool,
    interval: String,
    anchor: String,
    rrule: String,
    active: bool,
}

impl ScheduleForm {
    fn new() -> Self {
        ScheduleForm {
            kind: "cron",
            timezone: String::new(),
            cron: String::new(),
            day_or: true,
            interval: String::new(),
            anchor: String::new(),
            rrule: String::new(),
            active: true,
        }
    }

    fn of(s: &Value, active: bool) -> Self {
        let text = |k: &str| s.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
        let kind = if s.get("interval").is_some() {
            "interval"
        } else if s.get("rrule").is_some() {
            "rrule"
        } else {
            "cron"
        };
        ScheduleForm {
            kind,
            timezone: text("timezone"),
            cron: text("cron"),
            day_or: s.get("day_or").and_then(Value::as_bool).unwrap_or(true),
            interval: s
                .get("interval")
                .and_then(Value::as_f64)
                .map(|n| n.to_string())
                .unwrap_or_default(),
            anchor: text("anchor_date"),
            rrule: text("rrule"),
            active,
        }
    }
}

pub struct ScheduleRow {
    id: String,
    form_id: String,
    api: String,
    text: String,
    active: bool,
    /// The next few times it fires, as a person reads them.
    next: String,
    form: ScheduleForm,
}

/// The next `count` times a schedule fires after now.
pub fn next_times(schedule: &Value, count: usize) -> Result<Vec<chrono::DateTime<chrono::Utc>>, String> {
    let now = chrono::Utc::now();
    let end = now + chrono::TimeDelta::days(366 * 20);
    stratus_domain::scheduling::dates(schedule, now, end, count).map_err(|e| e.to_string())
}

#[derive(Template)]
#[template(path = "deployment.html")]
struct DeploymentPage {
    nav: &'static str,
    d: DeploymentRow,
    flow_id: String,
    entrypoint: String,
    path: String,
    description: String,
    tags: Vec<String>,
    parameters: String,
    parameter_schema: String,
    job_variables: String,
    queue: String,
    pools: Vec<String>,
    has_pool: bool,
    schedules: Vec<ScheduleRow>,
    new_schedule: ScheduleForm,
    add_schedule_api: String,
    upcoming: Vec<RunRow>,
    recent: Vec<RunRow>,
}

pub async fn page(State(app): State<AppState>, PagePath(raw): PagePath) -> PageResult {
    let id = id_param(&raw, "deployment")?;
    let c = app.client().await?;
    let d = deployments::read(&c, id)
        .await?
        .ok_or_else(|| PageError::NotFound(format!("There is no deployment {id}.")))?;
    let flow_name = flows::read(&c, d.flow_id)
        .await?
        .map(|f| f.name)
        .unwrap_or_default();
    let upcoming_f = filters(
        json!({"flow_runs": {"deployment_id": {"any_": [id]}, "state": {"type": {"any_": ["SCHEDULED"]}}}}),
    )?;
    let upcoming =
        runs::filter::<FlowRun>(&c, &upcoming_f, FlowRunSort::NextScheduledStartTimeAsc, 10, 0).await?;
    let recent_f = filters(json!({"flow_runs": {"deployment_id": {"any_": [id]},
                                                "state": {"type": {"not_any_": ["SCHEDULED"]}}}}))?;
    let recent = runs::filter::<FlowRun>(&c, &recent_f, FlowRunSort::ExpectedStartTimeDesc, 20, 0).await?;
    Ok(render(&DeploymentPage {
        nav: "deployments",
        flow_id: d.flow_id.to_string(),
        entrypoint: d.entrypoint.clone().unwrap_or_default(),
        path: d.path.clone().unwrap_or_default(),
        description: d.description.clone().unwrap_or_default(),
        tags: view::tags(&d.tags),
        parameters: d.parameters.to_string(),
        parameter_schema: d
            .parameter_openapi_schema
            .clone()
            .unwrap_or_else(|| json!({"type": "object", "properties": {}}))
            .to_string(),
        job_variables: view::pretty(&d.infra_overrides),
        queue: d.work_queue_name.clone().unwrap_or_default(),
        has_pool: d.work_pool_name.is_some(),
        pools: pools::filter_pools(&c, &WorkPoolFilter::default(), 500, 0)
            .await?
            .into_iter()
            .map(|p| p.name)
            .collect(),
        schedules: d
            .schedules
            .iter()
            .map(|s| ScheduleRow {
                id: s.id.to_string(),
                form_id: format!("schedule-{}", s.id),
                api: format!("PATCH /api/deployments/{id}/schedules/{}", s.id),
                text: describe_schedule(&s.schedule),
                active: s.active,
                next: next_times(&s.schedule, 3)
                    .map(|t| {
                        t.into_iter()
                            .map(|t| view::when(Some(t)))
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default(),
                form: ScheduleForm::of(&s.schedule, s.active),
            })
            .collect(),
        new_schedule: ScheduleForm::new(),
        add_schedule_api: format!("POST /api/deployments/{id}/schedules"),
        upcoming: upcoming.iter().map(|r| RunRow::new(r, &flow_name)).collect(),
        recent: recent.iter().map(|r| RunRow::new(r, &flow_name)).collect(),
        d: row(&d, &flow_name),
    }))
}

/// `GET /schedule-preview?schedule={...}`: the next five times a schedule being written
/// fires, checked as the API checks schedules, for the schedule forms' Preview button.
pub async fn schedule_preview(
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let answer = q
        .get("schedule")
        .ok_or_else(|| "Give the schedule to preview.".to_string())
        .and_then(|text| {
            serde_json::from_str::<Value>(text).map_err(|_| "The schedule is not JSON.".to_string())
        })
        .and_then(|s| stratus_domain::schedules::validate(&s).map_err(|e| e.0))
        .and_then(|s| next_times(&s, 5));
    match answer {
        Ok(times) => {
            let times: Vec<String> = times.into_iter().map(|t| view::when(Some(t))).collect();
            axum::Json(json!({"times": times})).into_response()
        }
        Err(detail) => (
            axum::http::StatusCode::BAD_REQUEST,
            axum::Json(json!({"detail": detail})),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn schedules_read_as_people_write_them() {
        assert_eq!(describe_schedule(&json!({"interval": 21600.0})), "every 6 hours");
        assert_eq!(describe_schedule(&json!({"interval": 60})), "every 1 minute");
        assert_eq!(describe_schedule(&json!({"interval": 90})), "every 90 seconds");
        assert_eq!(describe_schedule(&json!({"interval": 172800})), "every 2 days");
        assert_eq!(
            describe_schedule(&json!({"cron": "0 3 * * *", "timezone": "Europe/Paris"})),
            "cron “0 3 * * *” (Europe/Paris)"
        );
    }
}
