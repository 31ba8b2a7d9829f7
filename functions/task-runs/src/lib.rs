//! The `/task_runs` and `/task_run_states` route families.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Router;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value};
use stratus_domain::orchestration::TaskRunPolicy;
use stratus_domain::states::{State as RunState, StateCreate, StateType};
use stratus_http::api_routes::{patch, post, ApiRoutes};
use stratus_http::app::ClientVersion;
use stratus_http::json::{null_default, path_id, present, ts_opt};
use stratus_http::run_routes::{self};
use stratus_http::{ApiError, ApiResult, AppState, Body};
use stratus_store::db::flow_runs::FlowRun;
use stratus_store::db::runs::{self};
use stratus_store::db::task_runs::TaskRun;
use stratus_store::db::task_runs::{self, NewTaskRun};
use uuid::Uuid;

pub fn router() -> Router<AppState> {
    api().into_router()
}

/// The family's routes, as served and documented.
pub fn api() -> ApiRoutes {
    run_routes::routes::<TaskRun>()
        .route("/task_runs", post(create).returns::<TaskRun>())
        .route("/task_runs/{id}", patch(update))
}

/// Prefect caps cache keys at 2000 characters.
const MAX_CACHE_KEY_LENGTH: usize = 2000;

#[derive(Deserialize, schemars::JsonSchema)]
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
    #[schemars(with = "Option<chrono::DateTime<chrono::Utc>>")]
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

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct TaskRunUpdate {
    // As Prefect's `TaskRunUpdate`: a present `name` that is null or empty gets a new one.
    #[serde(default, deserialize_with = "present")]
    name: Option<Option<String>>,
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
        name: stratus_domain::names::given_or_new(body.name),
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
                if runs::read::<FlowRun>(change.tx(), flow_run_id).await?.is_none() {
                    return Err(ApiError::not_found("Flow run not found"));
                }
            }
            change
                .create_task_run(&new, initial)
                .await?
                .ok_or_else(|| ApiError::not_found("Task not found"))
        })
        .await?;
    Ok(stratus_http::json::upserted(run, created))
}

async fn update(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Body(body): Body<TaskRunUpdate>,
) -> ApiResult<StatusCode> {
    let id = path_id(&id)?;
    let client = app.client().await?;
    let name = body.name.map(stratus_domain::names::given_or_new);
    if !task_runs::rename(&client, id, name.as_deref()).await? {
        return Err(ApiError::not_found("Task not found"));
    }
    Ok(StatusCode::NO_CONTENT)
}
