//! The `/ui/*` API routes Prefect's UI reads (Prefect 2.20's `src/prefect/server/api/ui/`): the run scatter plot, task
//! run counts, and form validation.

use std::collections::HashMap;
use stratus_store::db::flow_runs::FlowRun;
use stratus_store::db::runs;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use stratus_domain::hydration;
use stratus_domain::json_schema::{self, PathPart};
use stratus_domain::states::StateType;
use stratus_http::api_routes::{post, ApiRoutes};
use stratus_http::json::{page_with_max, sort, ts};
use stratus_http::{ApiError, ApiResult, AppState, Body};
use stratus_store::db::flow_runs::FlowRunSort;
use stratus_store::db::task_runs;
use stratus_store::filters::RunFilterBody;
use uuid::Uuid;

/// The `/ui` routes, as served and documented.
pub fn api() -> ApiRoutes {
    ApiRoutes::new("UI")
        .route(
            "/ui/flow_runs/history",
            post(flow_run_history).returns::<Vec<SimpleFlowRun>>(),
        )
        .route(
            "/ui/task_runs/dashboard/counts",
            post(task_run_dashboard_counts).returns::<Vec<TaskRunCount>>(),
        )
        .route("/ui/task_runs/count", post(task_run_counts_by_state))
        .route("/ui/schemas/validate", post(validate_schema))
}

/// Most points the scatter plot asks for.
const HISTORY_MAX: i64 = 1000;

#[derive(Serialize, schemars::JsonSchema)]
struct SimpleFlowRun {
    id: Uuid,
    state_type: Option<StateType>,
    #[schemars(with = "DateTime<Utc>")]
    #[serde(with = "ts")]
    timestamp: DateTime<Utc>,
    duration: f64,
    lateness: f64,
}

async fn flow_run_history(
    State(app): State<AppState>,
    Body(body): Body<RunFilterBody>,
) -> ApiResult<Response> {
    let (limit, offset) = page_with_max(body.limit.or(Some(HISTORY_MAX)), body.offset, HISTORY_MAX)?;
    let order = sort(
        body.sort.as_deref(),
        FlowRunSort::ExpectedStartTimeDesc,
        FlowRunSort::parse,
    )?;
    let client = app.client().await?;
    let runs = runs::filter::<FlowRun>(&client, &body.filters(), order, limit, offset).await?;
    let points: Vec<SimpleFlowRun> = runs
        .into_iter()
        .filter_map(|r| {
            Some(SimpleFlowRun {
                id: r.id,
                state_type: r.timing.state_type,
                timestamp: r.timing.start_time.or(r.timing.expected_start_time)?,
                duration: r.timing.estimated_run_time,
                lateness: r.timing.estimated_start_time_delta,
            })
        })
        .collect();
    Ok(Json(points).into_response())
}

/// Buckets in the dashboard's task-run chart.
const DASHBOARD_BUCKETS: usize = 20;

#[derive(Serialize, Default, Clone, Copy, schemars::JsonSchema)]
struct TaskRunCount {
    completed: i64,
    failed: i64,
}

async fn task_run_dashboard_counts(
    State(app): State<AppState>,
    Body(body): Body<RunFilterBody>,
) -> ApiResult<Response> {
    let window = body.task_runs.as_ref().and_then(|t| t.start_time.as_ref());
    let Some(after) = window.and_then(|w| w.after_) else {
        return Err(ApiError::unprocessable("task_runs.start_time.after_ is required"));
    };
    let before = window.and_then(|w| w.before_).unwrap_or_else(Utc::now);
    let start = after.duration_trunc(TimeDelta::minutes(1)).unwrap_or(after);
    let end = before
        .duration_trunc(TimeDelta::minutes(1))
        .map(|t| t + TimeDelta::minutes(1) - TimeDelta::microseconds(1))
        .unwrap_or(before);
    if end <= start {
        return Err(ApiError::unprocessable(
            "task_runs.start_time.before_ must be after task_runs.start_time.after_",
        ));
    }
    let width = (end - start) / DASHBOARD_BUCKETS as i32;
    let bounds: Vec<DateTime<Utc>> = (1..=DASHBOARD_BUCKETS as i32)
        .map(|i| {
            if i == DASHBOARD_BUCKETS as i32 {
                end
            } else {
                start + width * i
            }
        })
        .collect();
    let client = app.client().await?;
    let rows = task_runs::terminal_counts_by_bucket(&client, &body.filters(), &bounds).await?;
    let mut buckets = [TaskRunCount::default(); DASHBOARD_BUCKETS];
    for (index, completed, failed) in rows {
        if let Some(b) = usize::try_from(index).ok().and_then(|i| buckets.get_mut(i)) {
            b.completed += completed;
            b.failed += failed;
        }
    }
    Ok(Json(buckets.to_vec()).into_response())
}

async fn task_run_counts_by_state(
    State(app): State<AppState>,
    Body(body): Body<RunFilterBody>,
) -> ApiResult<Response> {
    let client = app.client().await?;
    let counts = task_runs::count_by_state(&client, &body.filters()).await?;
    let mut out = Map::new();
    // Prefect's `CountByState` lists every state type, zero or not.
    for state in StateType::ALL {
        out.insert(state.as_str().to_string(), json!(0));
    }
    for (state, n) in counts {
        out.insert(state, json!(n));
    }
    Ok(Json(Value::Object(out)).into_response())
}

#[derive(Deserialize, schemars::JsonSchema)]
struct ValidateBody {
    schema: Map<String, Value>,
    values: Map<String, Value>,
}

async fn validate_schema(State(app): State<AppState>, Body(body): Body<ValidateBody>) -> ApiResult<Response> {
    let schema = Value::Object(body.schema);
    let values = Value::Object(body.values);
    let mut names = Vec::new();
    hydration::variable_names(&values, &mut names);
    let variables = if names.is_empty() {
        HashMap::new()
    } else {
        let client = app.client().await?;
        stratus_store::db::variables::values_named(&client, &names)
            .await?
            .into_iter()
            .collect()
    };
    let hydrated = hydration::hydrate(&values, &variables);
    Ok(Json(error_object(
        &hydrated,
        &json_schema::errors(&hydrated.value, &schema),
    ))
    .into_response())
}

/// Prefect's `build_error_obj`: errors nested by property and index, a required-property
/// error moved down to that property, and a placeholder's own error (or a deferred
/// template) taking the place of schema errors at the same path.
fn error_object(hydrated: &hydration::Hydrated, schema_errors: &[json_schema::SchemaError]) -> Value {
    let mut flat: Vec<(Vec<PathPart>, String)> = Vec::new();
    let placeholder_paths: Vec<&Vec<PathPart>> = hydrated
        .errors
        .iter()
        .map(|(p, _)| p)
        .chain(hydrated.deferred.iter())
        .collect();
    for e in schema_errors {
        let mut path = e.path.clone();
        if e.validator == "required" {
            if let Some(field) = e.message.split('\'').nth(1) {
                path.push(PathPart::Key(field.to_string()));
            }
        }
        if placeholder_paths.iter().any(|p| **p == path) {
            continue;
        }
        flat.push((path, e.message.clone()));
    }
    flat.extend(hydrated.errors.iter().cloned());
    let mut root: Vec<Value> = Vec::new();
    for (path, message) in flat {
        insert_error(&mut root, &path, message);
    }
    json!({"errors": root, "valid": root.is_empty()})
}

fn insert_error(current: &mut Vec<Value>, path: &[PathPart], message: String) {
    let Some((first, rest)) = path.split_first() else {
        current.push(Value::String(message));
        return;
    };
    let (key, id) = match first {
        PathPart::Key(k) => ("property", json!(k)),
        PathPart::Index(i) => ("index", json!(i)),
    };
    let pos = current
        .iter()
        .position(|e| e.get(key) == Some(&id))
        .unwrap_or_else(|| {
            current.push(json!({key: id, "errors": []}));
            current.len() - 1
        });
    if let Some(Value::Array(errors)) = current[pos].get_mut("errors") {
        insert_error(errors, rest, message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_nest_by_property_and_index() {
        let schema = json!({
            "type": "object",
            "properties": {
                "n": {"type": "integer"},
                "xs": {"type": "array", "items": {"type": "string"}},
                "when": {"type": "string"}
            },
            "required": ["n", "m"]
        });
        let values = json!({"n": "x", "xs": ["a", 2], "when": {"__prefect_kind": "json", "value": "{"}});
        let hydrated = hydration::hydrate(&values, &HashMap::new());
        let errors = json_schema::errors(&hydrated.value, &schema);
        let obj = error_object(&hydrated, &errors);
        assert_eq!(obj["valid"], json!(false));
        let list = obj["errors"].as_array().cloned().unwrap_or_default();
        assert!(list.contains(&json!({"property": "m", "errors": ["'m' is a required property"]})));
        assert!(list.contains(&json!({"property": "n", "errors": ["'x' is not of type 'integer'"]})));
        assert!(list.contains(
            &json!({"property": "xs", "errors": [{"index": 1, "errors": ["2 is not of type 'string'"]}]})
        ));
        let when = list
            .iter()
            .find(|e| e["property"] == "when")
            .cloned()
            .unwrap_or_default();
        assert_eq!(when["errors"].as_array().map(Vec::len), Some(1));
        assert!(when["errors"][0]
            .as_str()
            .unwrap_or("")
            .starts_with("Invalid JSON"));
    }

    #[test]
    fn valid_values_answer_valid() {
        let schema = json!({"type": "object", "properties": {"t": {"type": "integer"}}, "required": ["t"]});
        let values = json!({"t": {"__prefect_kind": "jinja", "template": "{{ n }}"}});
        let hydrated = hydration::hydrate(&values, &HashMap::new());
        let obj = error_object(&hydrated, &json_schema::errors(&hydrated.value, &schema));
        assert_eq!(obj, json!({"errors": [], "valid": true}));
    }
}
