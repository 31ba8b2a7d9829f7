//! The `/task_runs` and `/task_run_states` route families.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value};
use stratus_domain::orchestration::RunKind;
use stratus_domain::orchestration::TaskRunPolicy;
use stratus_domain::states::{State as RunState, StateCreate, StateType};
use stratus_http::app::ClientVersion;
use stratus_http::json::{null_default, page, path_id, ts_opt};
use stratus_http::run_routes::{missing_query, state_json};
use stratus_http::{ApiError, ApiResult, AppState, Body};
use stratus_store::db::runs::{self, RunTable};
use stratus_store::db::task_runs::{self, NewTaskRun, TaskRunSort};
use stratus_store::filters::RunFilterBody;
use uuid::Uuid;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/task_runs", post(create))
        .route("/task_runs/filter", post(filter))
        .route("/task_runs/count", post(count))
        .route("/task_runs/history", post(history))
        .route("/task_runs/{id}", get(read).patch(update).delete(delete))
        .route("/task_runs/{id}/set_state", post(set_state))
        .route("/task_run_states", get(list_states))
        .route("/task_run_states/{id}", get(read_state))
}

/// Prefect caps cache keys at 2000 characters.
const MAX_CACHE_KEY_LENGTH: usize = 2000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskRunCreate {
    #[serde(default)]
    id: Option<Uuid>,
    #[serde(default)]
    state: Option<StateCreate>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    flow_run_id: Option<Uuid>,
    task_key: String,
    dynamic_key: String,
    #[serde(default)]
    cache_key: Option<String>,
    #[serde(default, with = "ts_opt")]
    cache_expiration: Option<DateTime<Utc>>,
    #[serde(default)]
    task_version: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    empirical_policy: TaskRunPolicy,
    #[serde(default, deserialize_with = "null_default")]
    tags: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    task_inputs: Map<String, Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskRunUpdate {
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
struct SetState {
    state: StateCreate,
    #[serde(default, deserialize_with = "null_default")]
    force: bool,
}

fn run_not_found(id: Uuid) -> ApiError {
    ApiError::ObjectNotFound(format!("Task run with id {id} not found"))
}

async fn create(
    State(app): State<AppState>,
    ClientVersion(version): ClientVersion,
    Body(body): Body<TaskRunCreate>,
) -> ApiResult<Response> {
    if body
        .cache_key
        .as_ref()
        .is_some_and(|k| k.len() > MAX_CACHE_KEY_LENGTH)
    {
        return Err(ApiError::invalid(
            &["body", "cache_key"],
            format!("Cache key exceeded maximum allowed length of {MAX_CACHE_KEY_LENGTH} characters."),
            "value_error",
            Value::Null,
        ));
    }
    let now = Utc::now();
    let initial = match body.state {
        Some(state) => state.into_state(now),
        None => RunState::new(StateType::Pending, now),
    };
    let new = NewTaskRun {
        id: body.id,
        name: body
            .name
            .filter(|n| !n.is_empty())
            .unwrap_or_else(stratus_domain::names::run_name),
        flow_run_id: body.flow_run_id,
        task_key: body.task_key,
        dynamic_key: body.dynamic_key,
        cache_key: body.cache_key,
        cache_expiration: body.cache_expiration,
        task_version: body.task_version,
        empirical_policy: body.empirical_policy.normalized(),
        tags: Value::from(body.tags),
        task_inputs: Value::Object(body.task_inputs),
    };
    let (run, created) = app
        .runs()
        .change::<_, ApiError>(version, async |change| {
            if let Some(flow_run_id) = new.flow_run_id {
                if stratus_store::db::flow_runs::read(change.tx(), flow_run_id)
                    .await?
                    .is_none()
                {
                    return Err(ApiError::not_found("Flow run not found"));
                }
            }
            change
                .create_task_run(&new, initial)
                .await?
                .ok_or_else(|| ApiError::not_found("Task not found"))
        })
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(run)).into_response())
}

async fn read(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let id = path_id(&id)?;
    let client = app.client().await?;
    let run = task_runs::read(&client, id)
        .await?
        .ok_or_else(|| ApiError::not_found("Task not found"))?;
    Ok(Json(run).into_response())
}

async fn update(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Body(body): Body<TaskRunUpdate>,
) -> ApiResult<StatusCode> {
    let id = path_id(&id)?;
    let client = app.client().await?;
    if !task_runs::rename(&client, id, body.name.as_deref()).await? {
        return Err(ApiError::not_found("Task not found"));
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn delete(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    let id = path_id(&id)?;
    let client = app.client().await?;
    if !task_runs::delete(&client, id).await? {
        return Err(ApiError::not_found("Task not found"));
    }
    Ok(StatusCode::NO_CONTENT)
}

fn sort_of(body: &RunFilterBody) -> ApiResult<TaskRunSort> {
    stratus_http::json::sort(body.sort.as_deref(), TaskRunSort::IdDesc, TaskRunSort::parse)
}

async fn filter(State(app): State<AppState>, Body(body): Body<RunFilterBody>) -> ApiResult<Response> {
    let (limit, offset) = page(body.limit, body.offset)?;
    let sort = sort_of(&body)?;
    let client = app.client().await?;
    Ok(Json(task_runs::filter(&client, &body.filters(), sort, limit, offset).await?).into_response())
}

async fn count(State(app): State<AppState>, Body(body): Body<RunFilterBody>) -> ApiResult<Response> {
    let client = app.client().await?;
    Ok(Json(task_runs::count(&client, &body.filters()).await?).into_response())
}

async fn history(State(app): State<AppState>, Body(body): Body<RunFilterBody>) -> ApiResult<Response> {
    stratus_http::run_routes::history(&app, &body, RunTable::Task).await
}

async fn set_state(
    State(app): State<AppState>,
    ClientVersion(version): ClientVersion,
    Path(id): Path<String>,
    Body(body): Body<SetState>,
) -> ApiResult<Response> {
    let id = path_id(&id)?;
    let proposed = body.state.into_state(Utc::now());
    let outcome = app
        .runs()
        .set_state(RunKind::Task, id, proposed, version, body.force)
        .await?
        .ok_or_else(|| run_not_found(id))?;
    Ok(stratus_http::run_routes::respond(outcome))
}

#[derive(Deserialize)]
struct StatesQuery {
    task_run_id: Option<String>,
}

async fn list_states(State(app): State<AppState>, Query(q): Query<StatesQuery>) -> ApiResult<Response> {
    let raw = q.task_run_id.ok_or_else(|| missing_query("task_run_id"))?;
    let run_id = path_id(&raw)?;
    let client = app.client().await?;
    let states = runs::read_states_of_run(&client, RunTable::Task, run_id).await?;
    Ok(Json(
        states
            .into_iter()
            .map(|(rid, _, _, s)| state_json(rid, "task_run_id", s))
            .collect::<Vec<_>>(),
    )
    .into_response())
}

async fn read_state(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let id = path_id(&id)?;
    let client = app.client().await?;
    let (run_id, _, _, state) = runs::read_state(&client, RunTable::Task, id)
        .await?
        .ok_or_else(|| ApiError::not_found("Task run state not found"))?;
    Ok(Json(state_json(run_id, "task_run_id", state)).into_response())
}
