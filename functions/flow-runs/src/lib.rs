//! The `/flow_runs` and `/flow_run_states` route families.

mod inputs;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use chrono::Utc;
use serde::Deserialize;
use serde_json::{Map, Value};
use stratus_domain::access::Need;
use stratus_domain::orchestration::RunKind;
use stratus_domain::orchestration::{Details, FlowRunPolicy, Status};
use stratus_domain::states::{State as RunState, StateCreate, StateType};
use stratus_http::api_routes::{get, patch, post, ApiRoutes};
use stratus_http::app::ClientVersion;
use stratus_http::auth::Caller;
use stratus_http::json::{null_default, path_id, present};
use stratus_http::run_routes::{self, RunRoutes};
use stratus_http::{ApiError, ApiResult, AppState, Body};
use stratus_store::db::flow_runs::FlowRun;
use stratus_store::db::flow_runs::{self, FlowRunChanges, NewFlowRun};
use stratus_store::db::runs::{self, RunTable};
use stratus_store::filters::RunFilterBody;
use stratus_store::runs_service::OrchestrationResult;
use uuid::Uuid;

pub fn router() -> Router<AppState> {
    api().into_router()
}

/// The family's routes, as served and documented.
pub fn api() -> ApiRoutes {
    run_routes::routes::<FlowRun>()
        .route("/flow_runs", post(create).returns::<FlowRun>())
        .route("/flow_runs/lateness", post(lateness).returns::<Option<f64>>())
        .route("/flow_runs/{id}", patch(update))
        .route(
            "/flow_runs/{id}/resume",
            post(resume).returns::<OrchestrationResult>(),
        )
        .route(
            "/flow_runs/{id}/graph",
            get(graph).returns::<Vec<flow_runs::GraphNode>>(),
        )
        .route("/flow_runs/{id}/graph-v2", get(graph_v2))
        .route("/flow_runs/{id}/input", post(inputs::create).returns::<()>())
        .route(
            "/flow_runs/{id}/input/filter",
            post(inputs::filter).returns::<Vec<stratus_store::db::flow_run_inputs::FlowRunInput>>(),
        )
        .route(
            "/flow_runs/{id}/input/{key}",
            get(inputs::read).delete(inputs::delete),
        )
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct FlowRunCreate {
    #[serde(default)]
    state: Option<StateCreate>,
    #[serde(default)]
    name: Option<String>,
    flow_id: Uuid,
    #[serde(default)]
    deployment_id: Option<Uuid>,
    #[serde(default)]
    flow_version: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    parameters: Map<String, Value>,
    #[serde(default, deserialize_with = "null_default")]
    context: Map<String, Value>,
    #[serde(default)]
    parent_task_run_id: Option<Uuid>,
    #[serde(default)]
    infrastructure_document_id: Option<Uuid>,
    #[serde(default, deserialize_with = "null_default")]
    empirical_policy: FlowRunPolicy,
    #[serde(default, deserialize_with = "null_default")]
    tags: Vec<String>,
    #[serde(default)]
    idempotency_key: Option<String>,
    // Keys newer clients and the server-side schema also accept.
    #[serde(default)]
    work_queue_name: Option<String>,
    #[serde(default)]
    work_pool_name: Option<String>,
    #[serde(default)]
    job_variables: Option<Map<String, Value>>,
    #[serde(default)]
    created_by: Option<Value>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
// Prefect's `FlowRunUpdate` applies `exclude_unset`: an explicit null is a change (the
// nullable columns become NULL, `name` gets a new generated one) and an absent key is not.
struct FlowRunUpdate {
    #[serde(default, deserialize_with = "present")]
    name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    flow_version: Option<Option<String>>,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
    #[serde(default)]
    empirical_policy: Option<FlowRunPolicy>,
    #[serde(default)]
    tags: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    infrastructure_pid: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    job_variables: Option<Option<Map<String, Value>>>,
}

#[derive(Deserialize, Default, schemars::JsonSchema)]
struct Resume {
    #[serde(default)]
    run_input: Option<Map<String, Value>>,
}

/// Job variables (`env`, the command's settings) decide what runs on agents' machines:
/// only roles that may deploy may set them (a runner may run work, not change it).
fn may_set_job_variables(caller: &Caller) -> ApiResult<()> {
    caller.require(Need::Write, "set a flow run's job variables")
}

fn run_not_found(id: Uuid) -> ApiError {
    FlowRun::run_not_found(id)
}

async fn create(
    State(app): State<AppState>,
    ClientVersion(version): ClientVersion,
    caller: Caller,
    Body(body): Body<FlowRunCreate>,
) -> ApiResult<Response> {
    if body.job_variables.as_ref().is_some_and(|v| !v.is_empty()) || body.infrastructure_document_id.is_some()
    {
        may_set_job_variables(&caller)?;
    }
    let now = Utc::now();
    let initial = match body.state {
        Some(state) => state.into_state(now),
        None => RunState::new(StateType::Pending, now),
    };
    let new = NewFlowRun {
        name: stratus_domain::names::given_or_new(body.name),
        flow_id: body.flow_id,
        deployment_id: body.deployment_id,
        flow_version: body.flow_version,
        parameters: Value::Object(body.parameters),
        context: Value::Object(body.context),
        parent_task_run_id: body.parent_task_run_id,
        infrastructure_document_id: body.infrastructure_document_id,
        empirical_policy: body.empirical_policy.normalized(),
        tags: Value::from(body.tags),
        idempotency_key: body.idempotency_key,
        work_queue_name: body.work_queue_name,
        work_queue_id: None,
        deployment_version: None,
        job_variables: body.job_variables.map(Value::Object),
    };
    let _ = (body.work_pool_name, body.created_by);
    let (run, created) = app
        .runs()
        .change::<_, ApiError>(version, async |change| {
            // A missing flow fails the foreign key: Prefect's 409, as on Prefect 2.20
            // (`api/flow_runs.py` `create_flow_run` does not look the flow up).
            change
                .create_flow_run(&new, initial)
                .await?
                .ok_or_else(|| ApiError::not_found("Flow run not found"))
        })
        .await?;
    Ok(stratus_http::json::upserted(run, created))
}

async fn update(
    State(app): State<AppState>,
    Path(id): Path<String>,
    caller: Caller,
    Body(body): Body<FlowRunUpdate>,
) -> ApiResult<StatusCode> {
    let id = path_id(&id)?;
    if body.job_variables.is_some() {
        may_set_job_variables(&caller)?;
    }
    let client = app.client().await?;
    let run = run_routes::existing::<FlowRun>(&client, id).await?;
    // What a deployment's run is given is the deployment's (or its developer's) to say;
    // the engine sends the same parameters back, which is no change.
    if let Some(parameters) = &body.parameters {
        if run.deployment_id.is_some() && Value::Object(parameters.clone()) != run.parameters {
            caller.require(Need::Write, "change the parameters of a deployment's run")?;
        }
    }
    if let Some(Some(_)) = body.job_variables {
        if run.deployment_id.is_none() {
            return Err(ApiError::bad_request(
                "Job variables for a flow run can only be updated for flow runs created from a deployment.",
            ));
        }
        if run.timing.state_type != Some(StateType::Scheduled) {
            return Err(ApiError::bad_request(format!(
                "Job variables for a flow run in state {} cannot be updated",
                run.timing.state_type.map(|t| t.as_str()).unwrap_or("None")
            )));
        }
    }
    let changes = FlowRunChanges {
        name: body.name.map(stratus_domain::names::given_or_new),
        flow_version: body.flow_version,
        parameters: body.parameters.map(Value::Object),
        empirical_policy: body.empirical_policy.map(FlowRunPolicy::normalized),
        tags: body.tags.map(Value::from),
        infrastructure_pid: body.infrastructure_pid,
        job_variables: body.job_variables.map(|v| v.map(Value::Object)),
    };
    if !flow_runs::update(&client, id, &changes).await? {
        return Err(ApiError::not_found("Flow run not found"));
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn lateness(State(app): State<AppState>, Body(body): Body<RunFilterBody>) -> ApiResult<Response> {
    let client = app.client().await?;
    Ok(Json(flow_runs::lateness(&client, &body.filters()).await?).into_response())
}

async fn resume(
    State(app): State<AppState>,
    ClientVersion(version): ClientVersion,
    Path(id): Path<String>,
    Body(body): Body<Resume>,
) -> ApiResult<Response> {
    let id = path_id(&id)?;
    let answer = app
        .runs()
        .change::<_, ApiError>(version, async |change| {
            let tx = change.tx();
            let run = runs::read::<FlowRun>(tx, id)
                .await?
                .ok_or_else(|| run_not_found(id))?;
            let Some(current) = run.state.filter(|s| s.kind == StateType::Paused) else {
                let result = OrchestrationResult {
                    state: None,
                    status: Status::Abort,
                    details: Details::AbortDetails {
                        reason: "Cannot resume a flow run that is not paused.".into(),
                    },
                };
                return Ok((StatusCode::OK, Json(result)).into_response());
            };
            let now = Utc::now();
            let keyset = current.state_details.run_input_keyset.clone();
            let run_input = Value::Object(body.run_input.unwrap_or_default());
            if let Some(keyset) = &keyset {
                if let Some(reason) = check_run_input(tx, id, keyset, &run_input).await? {
                    let result = OrchestrationResult {
                        state: Some(current),
                        status: Status::Reject,
                        details: Details::RejectDetails { reason },
                    };
                    return Ok((StatusCode::OK, Json(result)).into_response());
                }
            }
            let proposed = if current.state_details.pause_reschedule {
                let mut s = RunState::new(StateType::Scheduled, now).named("Resuming");
                s.state_details.scheduled_time = Some(now);
                s
            } else {
                RunState::new(StateType::Running, now)
            };
            let outcome = change
                .set_state(RunKind::Flow, id, proposed, false)
                .await?
                .ok_or_else(|| run_not_found(id))?;
            let accepted = matches!(outcome.result.status, Status::Accept);
            if let (true, Some(response_key)) = (
                accepted,
                keyset
                    .as_ref()
                    .and_then(|k| k.get("response"))
                    .and_then(Value::as_str),
            ) {
                stratus_store::db::flow_run_inputs::insert(
                    tx,
                    id,
                    response_key,
                    &run_input.to_string(),
                    None,
                )
                .await?;
            }
            Ok(stratus_http::run_routes::respond(outcome))
        })
        .await?;
    Ok(answer)
}

#[derive(Deserialize, schemars::JsonSchema)]
struct GraphQuery {
    since: Option<String>,
}

async fn graph_v2(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<GraphQuery>,
) -> ApiResult<Response> {
    let id = path_id(&id)?;
    let since = match q.since.as_deref() {
        None => None,
        Some(raw) => Some(stratus_domain::time::parse_ts(raw).ok_or_else(|| {
            ApiError::invalid(
                &["query", "since"],
                "invalid datetime format",
                "value_error.datetime",
                Value::Null,
            )
        })?),
    };
    let client = app.client().await?;
    let run = runs::read::<FlowRun>(&client, id)
        .await?
        .ok_or_else(|| run_not_found(id))?;
    let nodes = flow_runs::graph_v2_nodes(&client, id, since)
        .await?
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "This flow run has more than {} nodes and is too large to display.",
                flow_runs::MAX_GRAPH_NODES
            ))
        })?;
    let root_node_ids: Vec<Uuid> = nodes
        .iter()
        .filter(|n| n.parents.is_empty())
        .map(|n| n.id)
        .collect();
    let states: Vec<Value> = runs::read_states_of_run(&client, RunTable::Flow, id)
        .await?
        .into_iter()
        .map(|(_, _, _, s)| {
            serde_json::json!({"id": s.id, "timestamp": stratus_domain::time::format_ts(&s.timestamp), "type": s.kind, "name": s.name})
        })
        .collect();
    let nodes: Vec<Value> = nodes.into_iter().map(|n| serde_json::json!([n.id, n])).collect();
    Ok(Json(serde_json::json!({
        "start_time": run.timing.start_time.map(|t| stratus_domain::time::format_ts(&t)),
        "end_time": run.timing.end_time.map(|t| stratus_domain::time::format_ts(&t)),
        "root_node_ids": root_node_ids,
        "nodes": nodes,
        "artifacts": [],
        "states": states,
    }))
    .into_response())
}

/// Validates run input against the schema the paused flow stored; returns why it is
/// refused, if it is.
async fn check_run_input(
    c: &impl deadpool_postgres::GenericClient,
    id: Uuid,
    keyset: &Value,
    run_input: &Value,
) -> ApiResult<Option<String>> {
    let Some(schema_key) = keyset.get("schema").and_then(Value::as_str) else {
        return Ok(Some("Run input schema not found.".into()));
    };
    let Some(stored) = stratus_store::db::flow_run_inputs::read(c, id, schema_key).await? else {
        return Ok(Some("Run input schema not found.".into()));
    };
    let Ok(schema) = serde_json::from_str::<Value>(&stored.value) else {
        return Ok(Some("Run input schema is not valid JSON.".into()));
    };
    Ok(stratus_domain::json_schema::validate(run_input, &schema)
        .err()
        .map(|e| {
            if e.message.starts_with("Invalid schema") {
                e.to_string()
            } else {
                format!("Reason: {e}")
            }
        }))
}

async fn graph(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let id = path_id(&id)?;
    let client = app.client().await?;
    if runs::read::<FlowRun>(&client, id).await?.is_none() {
        return Err(run_not_found(id));
    }
    Ok(Json(flow_runs::graph(&client, id).await?).into_response())
}
