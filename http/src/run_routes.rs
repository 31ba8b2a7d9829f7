//! The routes the flow-run and task-run families share, written once over the run kind:
//! read, delete, filter, count, history and `set_state` of `/{flow,task}_runs`, and
//! `/{flow,task}_run_states`. Each family mounts them with `routes::<FlowRun>()` (or
//! `TaskRun`) and adds its own (create, update, and the flow runs' graph, resume, inputs).

use crate::api_routes::{get, post, ApiRoutes};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::app::ClientVersion;
use crate::json::{null_default, page, path_id};
use crate::{ApiError, ApiResult, AppState, Body};
use stratus_domain::orchestration::RunKind;
use stratus_domain::states::{State as RunState, StateCreate};
use stratus_store::db::flow_runs::FlowRun;
use stratus_store::db::runs::{self, RunRow};
use stratus_store::db::task_runs::TaskRun;
use stratus_store::filters::RunFilterBody;
use stratus_store::runs_service::{OrchestrationResult, Outcome};

/// What the shared routes say differently for flow runs and task runs: paths and Prefect's
/// messages (`src/prefect/server/api/flow_runs.py` and `task_runs.py`, 2.20).
pub trait RunRoutes: RunRow + Serialize + schemars::JsonSchema + Send + Sync + 'static {
    const KIND: RunKind;
    /// `flow_runs`, `task_runs`.
    const PATH: &'static str;
    /// The family's name in the API's document.
    const TAG: &'static str;
    /// `flow_run_id`, `task_run_id`: the query parameter and state field naming the run.
    const FK: &'static str;
    /// The 404 detail of a run that does not exist, on reads and deletes.
    const NOT_FOUND: &'static str;
    const STATE_NOT_FOUND: &'static str;
    /// The `exception_message` of a `set_state` on a run that does not exist.
    fn run_not_found(id: Uuid) -> ApiError;
}

impl RunRoutes for FlowRun {
    const KIND: RunKind = RunKind::Flow;
    const PATH: &'static str = "flow_runs";
    const TAG: &'static str = "Flow Runs";
    const FK: &'static str = "flow_run_id";
    const NOT_FOUND: &'static str = "Flow run not found";
    const STATE_NOT_FOUND: &'static str = "Flow run state not found";
    fn run_not_found(id: Uuid) -> ApiError {
        ApiError::ObjectNotFound(format!("Flow run with id {id} not found"))
    }
}

impl RunRoutes for TaskRun {
    const KIND: RunKind = RunKind::Task;
    const PATH: &'static str = "task_runs";
    const TAG: &'static str = "Task Runs";
    const FK: &'static str = "task_run_id";
    const NOT_FOUND: &'static str = "Task not found";
    const STATE_NOT_FOUND: &'static str = "Task run state not found";
    fn run_not_found(id: Uuid) -> ApiError {
        ApiError::ObjectNotFound(format!("Task run with id {id} not found"))
    }
}

/// The shared routes of one run family.
pub fn routes<R: RunRoutes>() -> ApiRoutes {
    let path = R::PATH;
    let states = &path[..path.len() - 1];
    ApiRoutes::new(R::TAG)
        .route(format!("/{path}/filter"), post(filter::<R>).returns::<Vec<R>>())
        .route(format!("/{path}/count"), post(count::<R>).returns::<i64>())
        .route(
            format!("/{path}/history"),
            post(history::<R>).returns::<Vec<runs::HistoryInterval>>(),
        )
        .route(
            format!("/{path}/{{id}}"),
            get(read::<R>).returns::<R>().delete(delete::<R>),
        )
        .route(
            format!("/{path}/{{id}}/set_state"),
            post(set_state::<R>).returns::<OrchestrationResult>(),
        )
        .route(
            format!("/{states}_states"),
            get(list_states::<R>).returns::<Vec<RunState>>(),
        )
        .route(
            format!("/{states}_states/{{id}}"),
            get(read_state::<R>).returns::<RunState>(),
        )
}

/// Reads a run that must exist (404 with the family's detail otherwise).
pub async fn existing<R: RunRoutes>(c: &impl deadpool_postgres::GenericClient, id: Uuid) -> ApiResult<R> {
    runs::read::<R>(c, id)
        .await?
        .ok_or_else(|| ApiError::not_found(R::NOT_FOUND))
}

async fn read<R: RunRoutes>(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let id = path_id(&id)?;
    let client = app.client().await?;
    Ok(Json(existing::<R>(&client, id).await?).into_response())
}

async fn delete<R: RunRoutes>(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    let id = path_id(&id)?;
    let client = app.client().await?;
    if !runs::delete(&client, R::TABLE, id).await? {
        return Err(ApiError::not_found(R::NOT_FOUND));
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn filter<R: RunRoutes>(
    State(app): State<AppState>,
    Body(body): Body<RunFilterBody>,
) -> ApiResult<Response> {
    let (limit, offset) = page(body.limit, body.offset)?;
    let sort = crate::json::sort(body.sort.as_deref(), R::DEFAULT_SORT, R::parse_sort)?;
    let client = app.client().await?;
    let found = runs::filter::<R>(&client, &body.filters(), sort, limit, offset).await?;
    Ok(Json(found).into_response())
}

async fn count<R: RunRoutes>(
    State(app): State<AppState>,
    Body(body): Body<RunFilterBody>,
) -> ApiResult<Response> {
    let client = app.client().await?;
    Ok(Json(runs::count(&client, R::TABLE, &body.filters()).await?).into_response())
}

async fn history<R: RunRoutes>(
    State(app): State<AppState>,
    Body(body): Body<RunFilterBody>,
) -> ApiResult<Response> {
    let (start, end, step) = body.history_window()?;
    let client = app.client().await?;
    let intervals = runs::history(&client, R::TABLE, &body.filters(), start, end, step).await?;
    Ok(Json(intervals).into_response())
}

#[derive(Deserialize, schemars::JsonSchema)]
struct SetState {
    state: StateCreate,
    #[serde(default, deserialize_with = "null_default")]
    force: bool,
}

async fn set_state<R: RunRoutes>(
    State(app): State<AppState>,
    ClientVersion(version): ClientVersion,
    Path(id): Path<String>,
    Body(body): Body<SetState>,
) -> ApiResult<Response> {
    let id = path_id(&id)?;
    let proposed: RunState = body.state.into_state(Utc::now());
    let outcome = app
        .runs()
        .set_state(R::KIND, id, proposed, version, body.force)
        .await?
        .ok_or_else(|| R::run_not_found(id))?;
    Ok(respond(outcome))
}

async fn list_states<R: RunRoutes>(
    State(app): State<AppState>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> ApiResult<Response> {
    let raw = q.get(R::FK).ok_or_else(|| missing_query(R::FK))?;
    let run_id = path_id(raw)?;
    let client = app.client().await?;
    let states = runs::read_states_of_run(&client, R::TABLE, run_id).await?;
    Ok(Json(
        states
            .into_iter()
            .map(|(rid, _, _, s)| state_json(rid, R::FK, s))
            .collect::<Vec<_>>(),
    )
    .into_response())
}

async fn read_state<R: RunRoutes>(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = path_id(&id)?;
    let client = app.client().await?;
    let (run_id, _, _, state) = runs::read_state(&client, R::TABLE, id)
        .await?
        .ok_or_else(|| ApiError::not_found(R::STATE_NOT_FOUND))?;
    Ok(Json(state_json(run_id, R::FK, state)).into_response())
}

/// A `set_state` answer: 201 when a new state row was written, else 200.
pub fn respond(outcome: Outcome) -> Response {
    crate::json::upserted(outcome.result, outcome.written)
}

/// A state as `/flow_run_states` and `/task_run_states` return it: with its run's id.
pub fn state_json(run_id: Uuid, fk: &str, state: RunState) -> Value {
    let mut value = serde_json::to_value(&state).unwrap_or(Value::Null);
    if let Some(map) = value.as_object_mut() {
        map.insert(fk.to_string(), json!(run_id));
    }
    value
}

/// The 422 for a required query parameter that is missing.
pub fn missing_query(name: &str) -> ApiError {
    ApiError::Validation {
        detail: vec![json!({"loc": ["query", name], "msg": "field required", "type": "value_error.missing"})],
        body: Value::Null,
    }
}
