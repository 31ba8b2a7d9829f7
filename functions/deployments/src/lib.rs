//! The `/deployments` route family: deployments with their schedules, ad hoc runs, and the
//! poll `flow.serve()` runners use.

mod backfill;
mod schedules;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use stratus_domain::access::Need;
use stratus_domain::orchestration::FlowRunPolicy;
use stratus_domain::states::{State as RunState, StateCreate, StateType};
use stratus_http::api_routes::{get, post, ApiRoutes};
use stratus_http::app::ClientVersion;
use stratus_http::auth::Caller;
use stratus_http::json::{null_default, page, path_id, ts_opt};
use stratus_http::{ApiError, ApiResult, AppState, Body};
use stratus_store::db::blocks;
use stratus_store::db::deployments::{self, Deployment, DeploymentFields, DeploymentSort, NewSchedule};
use stratus_store::db::flow_runs::FlowRun;
use stratus_store::db::flow_runs::NewFlowRun;
use stratus_store::db::runs;
use stratus_store::db::work_pools::{self as pools, NewQueue};
use stratus_store::filters::RunFilterBody;
use uuid::Uuid;

pub fn router() -> Router<AppState> {
    api().into_router()
}

/// The family's routes, as served and documented.
pub fn api() -> ApiRoutes {
    ApiRoutes::new("Deployments")
        .route("/deployments", post(create).returns::<Deployment>())
        .route("/deployments/filter", post(filter).returns::<Vec<Deployment>>())
        .route("/deployments/count", post(count).returns::<i64>())
        .route(
            "/deployments/get_scheduled_flow_runs",
            post(get_scheduled_flow_runs).returns::<Vec<FlowRun>>(),
        )
        .route(
            "/deployments/name/{flow}/{name}",
            get(read_by_name).returns::<Deployment>(),
        )
        .route(
            "/deployments/{id}",
            get(read).returns::<Deployment>().patch(update).delete(remove),
        )
        .route(
            "/deployments/{id}/create_flow_run",
            post(create_flow_run).returns::<FlowRun>(),
        )
        .route(
            "/deployments/{id}/schedule",
            post(backfill::schedule).returns::<()>(),
        )
        .route(
            "/deployments/{id}/work_queue_check",
            get(backfill::work_queue_check).returns::<Vec<pools::WorkQueue>>(),
        )
        .route("/deployments/{id}/pause_deployment", post(pause).returns::<()>())
        .route(
            "/deployments/{id}/set_schedule_inactive",
            post(pause).returns::<()>(),
        )
        .route(
            "/deployments/{id}/resume_deployment",
            post(resume).returns::<()>(),
        )
        .route(
            "/deployments/{id}/set_schedule_active",
            post(resume).returns::<()>(),
        )
        .route(
            "/deployments/{id}/schedules",
            get(schedules::list)
                .returns::<Vec<deployments::Schedule>>()
                .post(schedules::create)
                .returns::<Vec<deployments::Schedule>>(),
        )
        .route(
            "/deployments/{id}/schedules/{schedule_id}",
            stratus_http::api_routes::patch(schedules::update).delete(schedules::remove),
        )
}

pub(crate) fn not_found() -> ApiError {
    ApiError::not_found("Deployment not found")
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ScheduleCreate {
    pub schedule: Value,
    #[serde(default = "yes")]
    pub active: bool,
    #[serde(default)]
    pub max_active_runs: Option<i32>,
    #[serde(default)]
    pub max_scheduled_runs: Option<i32>,
    #[serde(default, deserialize_with = "null_default")]
    pub catchup: bool,
}

fn yes() -> bool {
    true
}

pub(crate) fn new_schedule(s: ScheduleCreate) -> ApiResult<NewSchedule> {
    let schedule = stratus_domain::schedules::validate(&s.schedule)
        .map_err(|e| ApiError::invalid(&["body", "schedules"], e.to_string(), "value_error", Value::Null))?;
    if s.max_scheduled_runs.is_some_and(|n| !(1..=50).contains(&n)) {
        return Err(ApiError::invalid(
            &["body", "max_scheduled_runs"],
            "ensure this value is between 1 and 50",
            "value_error",
            Value::Null,
        ));
    }
    Ok(NewSchedule {
        schedule,
        active: s.active,
        max_active_runs: s.max_active_runs,
        max_scheduled_runs: s.max_scheduled_runs,
        catchup: s.catchup,
    })
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct DeploymentCreate {
    name: String,
    flow_id: Uuid,
    #[serde(default)]
    is_schedule_active: Option<bool>,
    #[serde(default)]
    paused: Option<bool>,
    #[serde(default)]
    schedules: Option<Vec<ScheduleCreate>>,
    #[serde(default)]
    schedule: Option<Value>,
    #[serde(default)]
    enforce_parameter_schema: Option<bool>,
    #[serde(default)]
    parameter_openapi_schema: Option<Value>,
    #[serde(default, deserialize_with = "null_default")]
    parameters: Map<String, Value>,
    #[serde(default, deserialize_with = "null_default")]
    tags: Vec<String>,
    #[serde(default)]
    pull_steps: Option<Vec<Value>>,
    #[serde(default)]
    manifest_path: Option<String>,
    #[serde(default)]
    work_queue_name: Option<String>,
    #[serde(default)]
    work_pool_name: Option<String>,
    #[serde(default)]
    storage_document_id: Option<Uuid>,
    #[serde(default)]
    infrastructure_document_id: Option<Uuid>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    entrypoint: Option<String>,
    #[serde(default)]
    job_variables: Option<Map<String, Value>>,
    #[serde(default)]
    infra_overrides: Option<Map<String, Value>>,
    // Older clients' names, silently dropped as Prefect does.
    #[serde(default, rename = "worker_pool_name")]
    _worker_pool_name: Option<Value>,
    #[serde(default, rename = "worker_pool_queue_name")]
    _worker_pool_queue_name: Option<Value>,
    #[serde(default, rename = "work_pool_queue_name")]
    _work_pool_queue_name: Option<Value>,
}

/// `job_variables` and `infra_overrides` are the same thing; both may come, but not differing.
fn job_variables(
    a: Option<Map<String, Value>>,
    b: Option<Map<String, Value>>,
) -> ApiResult<Option<Map<String, Value>>> {
    match (a, b) {
        (Some(a), Some(b)) if a != b => Err(ApiError::invalid(
            &["body"],
            "The `infra_overrides` and `job_variables` fields must be the same if both are provided.",
            "value_error",
            Value::Null,
        )),
        (Some(a), _) => Ok(Some(a)),
        (None, b) => Ok(b),
    }
}

/// Resolves the queue a deployment (or run) goes to, creating the queue (and the
/// `default-agent-pool`) when missing, as Prefect does.
async fn resolve_queue(
    c: &impl GenericClient,
    pool_name: Option<&str>,
    queue_name: Option<&str>,
) -> ApiResult<Option<(pools::WorkPool, Uuid, String)>> {
    let pool = match (pool_name, queue_name) {
        (None, None) => return Ok(None),
        (Some(pool), _) => pools::read_pool_by_name(c, pool)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("Work pool \"{pool}\" not found.")))?,
        (None, Some(_)) => pools::ensure_pool(c, pools::DEFAULT_AGENT_POOL)
            .await?
            .ok_or(ApiError::Integrity)?,
    };
    let queue = match queue_name {
        None => {
            let id = pool.default_queue_id.ok_or(ApiError::Integrity)?;
            pools::read_queue(c, id).await?.ok_or(ApiError::Integrity)?
        }
        Some(name) => match pools::read_queue_by_name(c, pool.id, name).await? {
            Some(q) => q,
            None => {
                let new = NewQueue {
                    name,
                    description: "",
                    is_paused: false,
                    concurrency_limit: None,
                    priority: None,
                    filter: None,
                };
                match pools::create_queue(c, pool.id, &new).await? {
                    Some(q) => q,
                    None => pools::read_queue_by_name(c, pool.id, name)
                        .await?
                        .ok_or(ApiError::Integrity)?,
                }
            }
        },
    };
    Ok(Some((pool, queue.id, queue.name)))
}

/// Job variables must fit the pool's template (required fields are not enforced).
fn check_job_variables(pool: &pools::WorkPool, variables: &Map<String, Value>) -> ApiResult<()> {
    if pool.name == pools::DEFAULT_AGENT_POOL || variables.is_empty() {
        return Ok(());
    }
    let Some(mut schema) = pool.base_job_template.get("variables").cloned() else {
        return Ok(());
    };
    if let Some(obj) = schema.as_object_mut() {
        obj.remove("required");
    }
    stratus_domain::json_schema::validate(&Value::Object(variables.clone()), &schema).map_err(|e| {
        ApiError::invalid(
            &["body", "job_variables"],
            format!("Validation failed for field {e}"),
            "value_error",
            Value::Null,
        )
    })
}

async fn check_blocks(c: &impl GenericClient, ids: &[Option<Uuid>]) -> ApiResult<()> {
    for id in ids.iter().flatten() {
        if !blocks::document_exists(c, *id).await? {
            return Err(ApiError::conflict(format!(
                "Error creating deployment. Could not find block document {id}"
            )));
        }
    }
    Ok(())
}

/// The deployment's schedules: `schedules`, or the legacy single `schedule`.
fn requested_schedules(
    schedules: Option<Vec<ScheduleCreate>>,
    legacy: Option<Value>,
    legacy_active: Option<bool>,
) -> ApiResult<Option<Vec<NewSchedule>>> {
    match (schedules, legacy.filter(|v| !v.is_null())) {
        (Some(list), _) if !list.is_empty() => Ok(Some(
            list.into_iter().map(new_schedule).collect::<ApiResult<_>>()?,
        )),
        (_, Some(schedule)) => Ok(Some(vec![new_schedule(ScheduleCreate {
            schedule,
            active: legacy_active.unwrap_or(true),
            max_active_runs: None,
            max_scheduled_runs: None,
            catchup: false,
        })?])),
        (Some(_), None) => Ok(Some(Vec::new())),
        (None, None) => Ok(None),
    }
}

/// The schedules a deployment update leaves, or None when it leaves them as they are, as
/// Prefect 2.20's `update_deployment` (`src/prefect/server/api/deployments.py`) decides: a
/// legacy `schedule` or `is_schedule_active` in the body (even `"schedule": null`, which
/// removes the schedule) replaces them with that one schedule, else `schedules` does.
fn updated_schedules(
    existing: &deployments::Deployment,
    schedules: Option<Vec<ScheduleCreate>>,
    legacy: Option<Option<Value>>,
    legacy_active: Option<bool>,
) -> ApiResult<Option<Vec<NewSchedule>>> {
    if legacy.is_none() && legacy_active.is_none() {
        return match schedules {
            Some(list) => Ok(Some(
                list.into_iter().map(new_schedule).collect::<ApiResult<_>>()?,
            )),
            None => Ok(None),
        };
    }
    if existing.schedules.len() > 1 {
        return Err(ApiError::DetailJson(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!([format!(
                "Error updating deployment: Deployment UUID('{}') has multiple schedules. \
                 Please use the UI or update your client to adjust this deployment's schedules.",
                existing.id
            )]),
        ));
    }
    let schedule = match legacy {
        Some(explicit) => explicit.filter(|v| !v.is_null()),
        None => existing.schedules.first().map(|s| s.schedule.clone()),
    };
    let Some(schedule) = schedule else {
        return Ok(Some(Vec::new()));
    };
    Ok(Some(vec![new_schedule(ScheduleCreate {
        schedule,
        active: legacy_active.unwrap_or(existing.is_schedule_active),
        max_active_runs: None,
        max_scheduled_runs: None,
        catchup: false,
    })?]))
}

async fn create(State(app): State<AppState>, Body(body): Body<DeploymentCreate>) -> ApiResult<Response> {
    if body.name.trim().is_empty() {
        return Err(ApiError::invalid(
            &["body", "name"],
            "name must not be empty",
            "value_error",
            Value::Null,
        ));
    }
    let variables = job_variables(body.job_variables, body.infra_overrides)?;
    let schedules = requested_schedules(body.schedules, body.schedule, body.is_schedule_active)?;
    let paused = body.paused.or(body.is_schedule_active.map(|active| !active));
    let mut client = app.client().await?;
    let tx = client.transaction().await?;
    // A missing flow fails the foreign key when the row is written: Prefect's 409, as on
    // Prefect 2.20 (`api/deployments.py` `create_deployment` does not look the flow up).
    check_blocks(&tx, &[body.storage_document_id, body.infrastructure_document_id]).await?;
    let queue = resolve_queue(
        &tx,
        body.work_pool_name.as_deref(),
        body.work_queue_name.as_deref(),
    )
    .await?;
    if let (Some((pool, _, _)), Some(vars)) = (&queue, &variables) {
        check_job_variables(pool, vars)?;
    }
    let fields = DeploymentFields {
        version: Some(body.version),
        description: Some(body.description),
        work_queue_id: Some(queue.as_ref().map(|(_, id, _)| *id)),
        work_queue_name: Some(queue.as_ref().map(|(_, _, name)| name.clone())),
        infra_overrides: Some(Value::Object(variables.unwrap_or_default())),
        path: Some(body.path),
        entrypoint: Some(body.entrypoint),
        manifest_path: Some(body.manifest_path),
        parameter_openapi_schema: Some(body.parameter_openapi_schema),
        parameters: Some(Value::Object(body.parameters)),
        pull_steps: body.pull_steps.map(|p| Some(Value::from(p))),
        tags: Some(Value::from(body.tags)),
        paused,
        enforce_parameter_schema: body.enforce_parameter_schema,
        storage_document_id: Some(body.storage_document_id),
        infrastructure_document_id: Some(body.infrastructure_document_id),
    };
    let (id, created) = deployments::upsert(&tx, body.flow_id, &body.name, &fields).await?;
    deployments::delete_auto_scheduled_runs(&tx, id).await?;
    deployments::replace_schedules(&tx, id, &schedules.unwrap_or_default()).await?;
    let deployment = deployments::read(&tx, id).await?.ok_or_else(not_found)?;
    tx.commit().await?;
    Ok(stratus_http::json::upserted(deployment, created))
}

async fn read(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let id = path_id(&id)?;
    let client = app.client().await?;
    Ok(Json(deployments::read(&client, id).await?.ok_or_else(not_found)?).into_response())
}

async fn read_by_name(
    State(app): State<AppState>,
    Path((flow, name)): Path<(String, String)>,
) -> ApiResult<Response> {
    let client = app.client().await?;
    Ok(Json(
        deployments::read_by_name(&client, &flow, &name)
            .await?
            .ok_or_else(not_found)?,
    )
    .into_response())
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct DeploymentUpdate {
    #[serde(default, deserialize_with = "stratus_http::json::present")]
    version: Option<Option<String>>,
    /// Absent: unchanged; null: removed (pydantic's `exclude_unset`).
    #[serde(default, deserialize_with = "stratus_http::json::present")]
    schedule: Option<Option<Value>>,
    #[serde(default)]
    schedules: Option<Vec<ScheduleCreate>>,
    #[serde(default, deserialize_with = "stratus_http::json::present")]
    description: Option<Option<String>>,
    #[serde(default)]
    is_schedule_active: Option<bool>,
    #[serde(default)]
    paused: Option<bool>,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
    #[serde(default)]
    tags: Option<Vec<String>>,
    #[serde(default)]
    work_queue_name: Option<String>,
    #[serde(default)]
    work_pool_name: Option<String>,
    #[serde(default, deserialize_with = "stratus_http::json::present")]
    path: Option<Option<String>>,
    #[serde(default)]
    job_variables: Option<Map<String, Value>>,
    #[serde(default)]
    infra_overrides: Option<Map<String, Value>>,
    #[serde(default, deserialize_with = "stratus_http::json::present")]
    entrypoint: Option<Option<String>>,
    #[serde(default, deserialize_with = "stratus_http::json::present")]
    manifest_path: Option<Option<String>>,
    #[serde(default, deserialize_with = "stratus_http::json::present")]
    storage_document_id: Option<Option<Uuid>>,
    #[serde(default, deserialize_with = "stratus_http::json::present")]
    infrastructure_document_id: Option<Option<Uuid>>,
    #[serde(default)]
    enforce_parameter_schema: Option<bool>,
}

async fn update(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Body(body): Body<DeploymentUpdate>,
) -> ApiResult<StatusCode> {
    let id = path_id(&id)?;
    let variables = job_variables(body.job_variables, body.infra_overrides)?;
    let mut client = app.client().await?;
    let tx = client.transaction().await?;
    let existing = deployments::read(&tx, id).await?.ok_or_else(not_found)?;
    let schedules = updated_schedules(&existing, body.schedules, body.schedule, body.is_schedule_active)?;
    check_blocks(
        &tx,
        &[
            body.storage_document_id.flatten(),
            body.infrastructure_document_id.flatten(),
        ],
    )
    .await?;
    // A new pool without a queue name means its default queue (Prefect 2.20
    // `models/deployments.py` `update_deployment`); new job variables are checked against
    // the pool the deployment will be in.
    let queue = if body.work_pool_name.is_none() && body.work_queue_name.is_none() && variables.is_none() {
        None
    } else {
        let queue_name = match &body.work_pool_name {
            Some(_) => body.work_queue_name.as_deref(),
            None => body
                .work_queue_name
                .as_deref()
                .or(existing.work_queue_name.as_deref()),
        };
        let pool_name = body
            .work_pool_name
            .as_deref()
            .or(existing.work_pool_name.as_deref());
        resolve_queue(&tx, pool_name, queue_name).await?
    };
    if let (Some((pool, _, _)), Some(vars)) = (&queue, &variables) {
        check_job_variables(pool, vars)?;
    }
    let paused = body.paused.or(body.is_schedule_active.map(|active| !active));
    let fields = DeploymentFields {
        version: body.version,
        description: body.description,
        work_queue_id: queue.as_ref().map(|(_, id, _)| Some(*id)),
        work_queue_name: queue.as_ref().map(|(_, _, name)| Some(name.clone())),
        infra_overrides: variables.map(Value::Object),
        path: body.path,
        entrypoint: body.entrypoint,
        manifest_path: body.manifest_path,
        // Prefect's `DeploymentUpdate` has neither field: they are set by creating again.
        parameter_openapi_schema: None,
        parameters: body.parameters.map(Value::Object),
        pull_steps: None,
        tags: body.tags.map(Value::from),
        paused,
        enforce_parameter_schema: body.enforce_parameter_schema,
        storage_document_id: body.storage_document_id,
        infrastructure_document_id: body.infrastructure_document_id,
    };
    deployments::update(&tx, id, &fields).await?;
    // Every update drops the runs made from the old settings.
    deployments::delete_auto_scheduled_runs(&tx, id).await?;
    if let Some(schedules) = schedules {
        deployments::replace_schedules(&tx, id, &schedules).await?;
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn remove(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    let id = path_id(&id)?;
    let mut client = app.client().await?;
    let tx = client.transaction().await?;
    if !deployments::delete(&tx, id).await? {
        return Err(not_found());
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

fn sort_of(body: &RunFilterBody) -> ApiResult<DeploymentSort> {
    stratus_http::json::sort(
        body.sort.as_deref(),
        DeploymentSort::NameAsc,
        DeploymentSort::parse,
    )
}

async fn filter(State(app): State<AppState>, Body(body): Body<RunFilterBody>) -> ApiResult<Response> {
    let (limit, offset) = page(body.limit, body.offset)?;
    let sort = sort_of(&body)?;
    let client = app.client().await?;
    Ok(Json(deployments::filter(&client, &body.filters(), sort, limit, offset).await?).into_response())
}

async fn count(State(app): State<AppState>, Body(body): Body<RunFilterBody>) -> ApiResult<Response> {
    let client = app.client().await?;
    Ok(Json(deployments::count(&client, &body.filters()).await?).into_response())
}

async fn set_paused(app: &AppState, id: &str, paused: bool) -> ApiResult<Response> {
    let id = path_id(id)?;
    let mut client = app.client().await?;
    let tx = client.transaction().await?;
    let existing = deployments::read(&tx, id).await?.ok_or_else(not_found)?;
    if existing.schedules.len() > 1 {
        return Err(ApiError::unprocessable(
            "This deployment has multiple schedules; pause or resume them individually.",
        ));
    }
    deployments::set_paused(&tx, id, paused).await?;
    if paused {
        deployments::delete_auto_scheduled_runs(&tx, id).await?;
    }
    tx.commit().await?;
    Ok(Json(Value::Null).into_response())
}

async fn pause(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    set_paused(&app, &id, true).await
}

async fn resume(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    set_paused(&app, &id, false).await
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct DeploymentFlowRunCreate {
    #[serde(default)]
    state: Option<StateCreate>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    parameters: Map<String, Value>,
    #[serde(default)]
    enforce_parameter_schema: Option<bool>,
    #[serde(default, deserialize_with = "null_default")]
    context: Map<String, Value>,
    #[serde(default)]
    infrastructure_document_id: Option<Uuid>,
    #[serde(default, deserialize_with = "null_default")]
    empirical_policy: FlowRunPolicy,
    #[serde(default, deserialize_with = "null_default")]
    tags: Vec<String>,
    #[serde(default)]
    idempotency_key: Option<String>,
    #[serde(default)]
    parent_task_run_id: Option<Uuid>,
    #[serde(default)]
    work_queue_name: Option<String>,
    #[serde(default)]
    job_variables: Option<Map<String, Value>>,
}

fn union_tags(deployment: &Deployment, extra: Vec<String>) -> Value {
    let mut tags: Vec<String> = deployment
        .tags
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t.as_str().map(str::to_string))
        .collect();
    for tag in extra {
        if !tags.contains(&tag) {
            tags.push(tag);
        }
    }
    Value::from(tags)
}

async fn create_flow_run(
    State(app): State<AppState>,
    ClientVersion(version): ClientVersion,
    Path(id): Path<String>,
    caller: Caller,
    Body(body): Body<DeploymentFlowRunCreate>,
) -> ApiResult<Response> {
    let id = path_id(&id)?;
    // A runner starts a deployment's runs as the deployment says; changing what runs on
    // the agent's machine (job variables, another infrastructure block) takes a developer.
    if body.job_variables.as_ref().is_some_and(|v| !v.is_empty()) || body.infrastructure_document_id.is_some()
    {
        caller.require(Need::Write, "set a run's job variables or infrastructure")?;
    }
    let now = Utc::now();
    let (run, created) = app
        .runs()
        .change::<_, ApiError>(version, async |change| {
            let tx = change.tx();
            let deployment = deployments::read(tx, id).await?.ok_or_else(not_found)?;
            let mut parameters = deployment.parameters.as_object().cloned().unwrap_or_default();
            parameters.extend(body.parameters);
            let (queue_id, queue_name) = match &body.work_queue_name {
                Some(name) => {
                    let pool_name = deployment.work_pool_name.clone();
                    match resolve_queue(tx, pool_name.as_deref(), Some(name)).await? {
                        Some((_, qid, qname)) => (Some(qid), Some(qname)),
                        None => (None, None),
                    }
                }
                None => (deployment.work_queue_id, deployment.work_queue_name.clone()),
            };
            if let (Some(vars), Some(pool)) = (&body.job_variables, deployment.work_pool_name.as_deref()) {
                if let Some(pool) = pools::read_pool_by_name(tx, pool).await? {
                    check_job_variables(&pool, vars)?;
                }
            }
            if body
                .enforce_parameter_schema
                .unwrap_or(deployment.enforce_parameter_schema)
            {
                if let Some(schema) = deployment
                    .parameter_openapi_schema
                    .as_ref()
                    .filter(|s| !s.is_null())
                {
                    stratus_domain::json_schema::validate(&Value::Object(parameters.clone()), schema)
                        .map_err(|e| {
                            ApiError::conflict(format!(
                                "Error creating flow run: Validation failed. Failure reason: {e}"
                            ))
                        })?;
                }
            }
            let initial = match body.state {
                Some(state) => state.into_state(now),
                None => {
                    let mut s = RunState::new(StateType::Scheduled, now);
                    s.state_details.scheduled_time = Some(now);
                    s
                }
            };
            let new = NewFlowRun {
                name: stratus_domain::names::given_or_new(body.name),
                flow_id: deployment.flow_id,
                deployment_id: Some(deployment.id),
                flow_version: None,
                parameters: Value::Object(parameters),
                context: Value::Object(body.context),
                parent_task_run_id: body.parent_task_run_id,
                infrastructure_document_id: body
                    .infrastructure_document_id
                    .or(deployment.infrastructure_document_id),
                empirical_policy: body.empirical_policy.normalized(),
                tags: union_tags(&deployment, body.tags),
                idempotency_key: body.idempotency_key,
                work_queue_name: queue_name,
                work_queue_id: queue_id,
                deployment_version: deployment.version.clone(),
                job_variables: Some(Value::Object(body.job_variables.unwrap_or_default())),
            };
            change
                .create_flow_run(&new, initial)
                .await?
                .ok_or_else(|| ApiError::not_found("Flow run not found"))
        })
        .await?;
    Ok(stratus_http::json::upserted(run, created))
}

#[derive(Deserialize, schemars::JsonSchema)]
struct ServePoll {
    deployment_ids: Vec<Uuid>,
    #[schemars(with = "Option<chrono::DateTime<chrono::Utc>>")]
    #[serde(default, with = "ts_opt")]
    scheduled_before: Option<DateTime<Utc>>,
    #[serde(default)]
    limit: Option<i64>,
}

async fn get_scheduled_flow_runs(
    State(app): State<AppState>,
    Body(body): Body<ServePoll>,
) -> ApiResult<Response> {
    let (limit, _) = page(body.limit, None)?;
    let before = body.scheduled_before.unwrap_or_else(Utc::now);
    let mut client = app.client().await?;
    let tx = client.transaction().await?;
    let ids = deployments::scheduled_runs(&tx, &body.deployment_ids, before, limit).await?;
    let mut runs = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(run) = runs::read::<FlowRun>(&tx, id).await? {
            runs.push(run);
        }
    }
    tx.commit().await?;
    Ok(Json(runs).into_response())
}
