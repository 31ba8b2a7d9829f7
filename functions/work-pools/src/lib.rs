//! The `/work_pools` route family: pools, their queues and workers, and the poll workers
//! and agents use to get scheduled runs; and the legacy `/work_queues` agents use.

mod legacy;
mod message_queue;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value};
use stratus_http::api_routes::{delete, get, post, ApiRoutes};
use stratus_http::json::{null_default, page, ts_opt};
use stratus_http::{ApiError, ApiResult, AppState, Body};
use stratus_store::db::flow_runs::FlowRun;
use stratus_store::db::work_pools::{
    self as pools, NewPool, Poll, PoolChanges, QueueChanges, WorkPool, WorkPoolFilter, WorkQueue,
    WorkQueueFilter,
};
use stratus_store::queue::{QueueInfo, Received};

pub fn router() -> Router<AppState> {
    api().into_router()
}

/// The family's routes, as served and documented.
pub fn api() -> ApiRoutes {
    ApiRoutes::new("Work Pools")
        .route(
            "/work_pools",
            post(create)
                .returns::<WorkPool>()
                .also_answers("403", "Refused: the object is protected or its name reserved"),
        )
        .route("/work_pools/filter", post(filter).returns::<Vec<WorkPool>>())
        .route("/work_pools/count", post(count).returns::<i64>())
        .route(
            "/work_pools/{name}",
            get(read)
                .returns::<WorkPool>()
                .patch(update)
                .also_answers("403", "Refused: the object is protected or its name reserved")
                .delete(remove)
                .also_answers("403", "Refused: the object is protected or its name reserved"),
        )
        .route(
            "/work_pools/{name}/get_scheduled_flow_runs",
            post(get_scheduled_flow_runs).returns::<Vec<pools::WorkerFlowRun>>(),
        )
        .route(
            "/work_pools/{name}/queues",
            post(create_queue).returns::<WorkQueue>(),
        )
        .route(
            "/work_pools/{name}/queues/filter",
            post(filter_queues).returns::<Vec<WorkQueue>>(),
        )
        .route(
            "/work_pools/{name}/queues/{queue}",
            get(read_queue)
                .returns::<WorkQueue>()
                .patch(update_queue)
                .delete(delete_queue),
        )
        .route(
            "/work_pools/{name}/message_queue",
            get(message_queue::info).returns::<QueueInfo>(),
        )
        .route(
            "/work_pools/{name}/message_queue/receive",
            post(message_queue::receive).returns::<Vec<Received>>(),
        )
        .route(
            "/work_pools/{name}/message_queue/delete",
            post(message_queue::delete),
        )
        .route(
            "/work_pools/{name}/message_queue/release",
            post(message_queue::release),
        )
        .route(
            "/work_pools/{name}/message_queue/claim",
            post(message_queue::claim),
        )
        .route("/work_pools/{name}/workers/heartbeat", post(heartbeat))
        .route(
            "/work_pools/{name}/workers/filter",
            post(filter_workers).returns::<Vec<pools::Worker>>(),
        )
        .route("/work_pools/{name}/workers/{worker}", delete(delete_worker))
        .route("/collections/views/{view}", get(collection_view))
        .route("/work_queues", post(legacy::create).returns::<WorkQueue>())
        .route(
            "/work_queues/filter",
            post(legacy::filter).returns::<Vec<WorkQueue>>(),
        )
        .route(
            "/work_queues/name/{name}",
            get(legacy::read_by_name).returns::<WorkQueue>(),
        )
        .route(
            "/work_queues/{id}",
            get(legacy::read)
                .returns::<WorkQueue>()
                .patch(legacy::update)
                .delete(legacy::delete),
        )
        .route(
            "/work_queues/{id}/get_runs",
            post(legacy::get_runs).returns::<Vec<FlowRun>>(),
        )
        .route("/work_queues/{id}/status", get(legacy::status))
}

/// Worker types and their default job templates, bundled from prefect 2.20 as Prefect
/// bundles them for offline servers (`prefect work-pool create` reads it).
const AGGREGATE_WORKER_METADATA: &str = include_str!("../../../store/data/aggregate-worker-metadata.json");

/// The collection registry views. Only the worker metadata is bundled (as in Prefect); the
/// others come from the internet, which a Stratus server does not reach.
async fn collection_view(Path(view): Path<String>) -> ApiResult<Response> {
    match view.as_str() {
        "aggregate-worker-metadata" => Ok((
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            AGGREGATE_WORKER_METADATA,
        )
            .into_response()),
        "aggregate-block-metadata" | "aggregate-flow-metadata" | "demo-flows" => {
            Err(ApiError::not_found(format!(
                "View {view} is not available: the collection registry is not reachable from this server."
            )))
        }
        _ => Err(ApiError::not_found(format!("View {view} not found in registry"))),
    }
}

fn pool_not_found(name: &str) -> ApiError {
    ApiError::not_found(format!("Work pool \"{name}\" not found."))
}

fn reserved(name: &str) -> bool {
    name.to_lowercase().starts_with("prefect")
}

pub(crate) async fn pool_named(app: &AppState, name: &str) -> ApiResult<WorkPool> {
    let client = app.client().await?;
    pools::read_pool_by_name(&client, name)
        .await?
        .ok_or_else(|| pool_not_found(name))
}

/// `{}` or a template with `job_configuration` and `variables`, every `{{ var }}` in the
/// configuration declared among the variables' properties.
fn validate_template(template: &Map<String, Value>) -> ApiResult<()> {
    if template.is_empty() {
        return Ok(());
    }
    let invalid =
        |msg: String| ApiError::invalid(&["body", "base_job_template"], msg, "value_error", Value::Null);
    let (Some(config), Some(variables)) = (template.get("job_configuration"), template.get("variables"))
    else {
        return Err(invalid(
            "The `base_job_template` must contain both a `job_configuration` key and a `variables` key."
                .into(),
        ));
    };
    let declared: Vec<&String> = variables
        .get("properties")
        .and_then(Value::as_object)
        .map(|p| p.keys().collect())
        .unwrap_or_default();
    let text = config.to_string();
    let mut rest = text.as_str();
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        let name = after[..end].trim();
        if !declared.iter().any(|d| d.as_str() == name) {
            return Err(invalid(format!(
                "The variables specified in the job configuration template must be present as properties in the variables schema. Your job configuration uses the following undeclared variable(s): {name}."
            )));
        }
        rest = &after[end + 2..];
    }
    Ok(())
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct PoolCreate {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    base_job_template: Map<String, Value>,
    #[serde(default, deserialize_with = "null_default")]
    is_paused: bool,
    #[serde(default)]
    concurrency_limit: Option<i32>,
}

async fn create(State(app): State<AppState>, Body(body): Body<PoolCreate>) -> ApiResult<Response> {
    if body.name.trim().is_empty() {
        return Err(ApiError::bad_request("A work pool name must not be empty."));
    }
    if reserved(&body.name) {
        return Err(ApiError::forbidden(
            "Work pools starting with 'Prefect' are reserved for internal use.",
        ));
    }
    if body.concurrency_limit.is_some_and(|l| l < 0) {
        return Err(ApiError::invalid(
            &["body", "concurrency_limit"],
            "ensure this value is greater than or equal to 0",
            "value_error.number.not_ge",
            Value::Null,
        ));
    }
    validate_template(&body.base_job_template)?;
    let template = Value::Object(body.base_job_template);
    let kind = body.kind.unwrap_or_else(|| pools::AGENT_POOL_TYPE.to_string());
    let new = NewPool {
        name: &body.name,
        description: body.description.as_deref(),
        kind: &kind,
        base_job_template: &template,
        is_paused: body.is_paused,
        concurrency_limit: body.concurrency_limit,
    };
    let mut client = app.client().await?;
    let tx = client.transaction().await?;
    let pool = pools::create_pool(&tx, &new)
        .await?
        .ok_or_else(|| ApiError::conflict("A work pool with this name already exists."))?;
    // The pool's queue exists before anyone can see the pool (queue creation is idempotent,
    // so a failed commit leaves at worst an empty queue behind).
    app.queue.ensure(pool.id).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(pool)).into_response())
}

async fn read(State(app): State<AppState>, Path(name): Path<String>) -> ApiResult<Response> {
    Ok(Json(pool_named(&app, &name).await?).into_response())
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct PoolUpdate {
    #[serde(default, deserialize_with = "stratus_http::json::present")]
    description: Option<Option<String>>,
    #[serde(default)]
    is_paused: Option<bool>,
    #[serde(default)]
    base_job_template: Option<Map<String, Value>>,
    #[serde(default, deserialize_with = "stratus_http::json::present")]
    concurrency_limit: Option<Option<i32>>,
}

async fn update(
    State(app): State<AppState>,
    Path(name): Path<String>,
    Body(body): Body<PoolUpdate>,
) -> ApiResult<StatusCode> {
    // Prefect checks the name before looking the pool up, and counts a present null as a
    // change (`exclude_unset`, 2.20 `api/workers.py` `update_work_pool`).
    if reserved(&name) && (body.description.is_some() || body.base_job_template.is_some()) {
        return Err(ApiError::forbidden(
            "Work pools starting with 'Prefect' are reserved for internal use and can only be updated to set concurrency limits or pause.",
        ));
    }
    let pool = pool_named(&app, &name).await?;
    if let Some(template) = &body.base_job_template {
        validate_template(template)?;
    }
    let changes = PoolChanges {
        description: body.description,
        is_paused: body.is_paused,
        base_job_template: body.base_job_template.map(Value::Object),
        concurrency_limit: body.concurrency_limit,
    };
    let client = app.client().await?;
    pools::update_pool(&client, pool.id, &changes).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn remove(State(app): State<AppState>, Path(name): Path<String>) -> ApiResult<StatusCode> {
    let pool = pool_named(&app, &name).await?;
    if reserved(&name) {
        return Err(ApiError::forbidden(
            "Work pools starting with 'Prefect' are reserved for internal use and can not be deleted.",
        ));
    }
    let mut client = app.client().await?;
    let tx = client.transaction().await?;
    pools::delete_pool(&tx, pool.id).await?;
    tx.commit().await?;
    drop(client);
    if let Err(e) = app.queue.remove(pool.id).await {
        tracing::warn!(work_pool_id = %pool.id, "the deleted pool's queue stays behind: {e}");
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, Default, schemars::JsonSchema)]
struct PoolFilterBody {
    #[serde(default)]
    work_pools: Option<WorkPoolFilter>,
    #[serde(default)]
    limit: Option<i64>,
    #[serde(default)]
    offset: Option<i64>,
}

async fn filter(State(app): State<AppState>, Body(body): Body<PoolFilterBody>) -> ApiResult<Response> {
    let (limit, offset) = page(body.limit, body.offset)?;
    let client = app.client().await?;
    Ok(
        Json(pools::filter_pools(&client, &body.work_pools.unwrap_or_default(), limit, offset).await?)
            .into_response(),
    )
}

async fn count(State(app): State<AppState>, Body(body): Body<PoolFilterBody>) -> ApiResult<Response> {
    let client = app.client().await?;
    Ok(Json(pools::count_pools(&client, &body.work_pools.unwrap_or_default()).await?).into_response())
}

#[derive(Deserialize, Default, schemars::JsonSchema)]
struct PollBody {
    #[serde(default)]
    work_queue_names: Option<Vec<String>>,
    #[schemars(with = "Option<chrono::DateTime<chrono::Utc>>")]
    #[serde(default, with = "ts_opt")]
    scheduled_before: Option<DateTime<Utc>>,
    #[schemars(with = "Option<chrono::DateTime<chrono::Utc>>")]
    #[serde(default, with = "ts_opt")]
    scheduled_after: Option<DateTime<Utc>>,
    #[serde(default)]
    limit: Option<i64>,
}

async fn get_scheduled_flow_runs(
    State(app): State<AppState>,
    Path(name): Path<String>,
    Body(body): Body<PollBody>,
) -> ApiResult<Response> {
    let (limit, _) = page(body.limit, None)?;
    let mut client = app.client().await?;
    let tx = client.transaction().await?;
    let pool = pools::read_pool_by_name(&tx, &name)
        .await?
        .ok_or_else(|| pool_not_found(&name))?;
    let queue_ids = match body.work_queue_names.filter(|n| !n.is_empty()) {
        None => pools::queue_ids(&tx, pool.id).await?,
        Some(names) => {
            let mut ids = Vec::new();
            for queue in names {
                let found = pools::read_queue_by_name(&tx, pool.id, &queue)
                    .await?
                    .ok_or_else(|| ApiError::not_found(format!("Work queue \"{queue}\" not found.")))?;
                ids.push(found.id);
            }
            ids
        }
    };
    let poll = Poll {
        queue_ids,
        scheduled_before: body.scheduled_before,
        scheduled_after: body.scheduled_after,
        limit,
    };
    let runs = pools::scheduled_runs(&tx, &pool, &poll).await?;
    tx.commit().await?;
    Ok(Json(runs).into_response())
}

pub(crate) fn check_queue_numbers(limit: Option<i32>, priority: Option<i32>) -> ApiResult<()> {
    if limit.is_some_and(|l| l < 0) {
        return Err(ApiError::invalid(
            &["body", "concurrency_limit"],
            "ensure this value is greater than or equal to 0",
            "value_error.number.not_ge",
            Value::Null,
        ));
    }
    if priority.is_some_and(|p| p < 1) {
        return Err(ApiError::invalid(
            &["body", "priority"],
            "ensure this value is greater than or equal to 1",
            "value_error.number.not_ge",
            Value::Null,
        ));
    }
    Ok(())
}

async fn create_queue(
    State(app): State<AppState>,
    Path(name): Path<String>,
    Body(body): Body<legacy::QueueCreate>,
) -> ApiResult<Response> {
    check_queue_numbers(body.concurrency_limit, body.priority)?;
    let pool = pool_named(&app, &name).await?;
    let mut client = app.client().await?;
    let tx = client.transaction().await?;
    let queue = pools::create_queue(&tx, pool.id, &body.new_queue())
        .await?
        .ok_or_else(|| ApiError::conflict("A work queue with this name already exists."))?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(queue)).into_response())
}

async fn queue_named(app: &AppState, pool: &str, queue: &str) -> ApiResult<pools::WorkQueue> {
    let pool = pool_named(app, pool).await?;
    let client = app.client().await?;
    pools::read_queue_by_name(&client, pool.id, queue)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("Work queue \"{queue}\" not found.")))
}

async fn read_queue(
    State(app): State<AppState>,
    Path((name, queue)): Path<(String, String)>,
) -> ApiResult<Response> {
    Ok(Json(queue_named(&app, &name, &queue).await?).into_response())
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct QueueUpdate {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    is_paused: Option<bool>,
    #[serde(default, deserialize_with = "stratus_http::json::present")]
    concurrency_limit: Option<Option<i32>>,
    #[serde(default)]
    priority: Option<i32>,
    #[serde(default, deserialize_with = "stratus_http::json::present_ts")]
    last_polled: Option<Option<DateTime<Utc>>>,
    /// Prefect's deprecated tag filter, which its WorkQueueUpdate still carries.
    #[serde(default, deserialize_with = "stratus_http::json::present")]
    filter: Option<Option<Value>>,
}

async fn update_queue(
    State(app): State<AppState>,
    Path((name, queue)): Path<(String, String)>,
    Body(body): Body<QueueUpdate>,
) -> ApiResult<StatusCode> {
    check_queue_numbers(body.concurrency_limit.flatten(), body.priority)?;
    let existing = queue_named(&app, &name, &queue).await?;
    let changes = QueueChanges {
        name: body.name,
        description: body.description,
        is_paused: body.is_paused,
        concurrency_limit: body.concurrency_limit,
        priority: body.priority,
        last_polled: body.last_polled,
        filter: body.filter,
    };
    let mut client = app.client().await?;
    let tx = client.transaction().await?;
    pools::update_queue(&tx, &existing, &changes).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn delete_queue(
    State(app): State<AppState>,
    Path((name, queue)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let pool = pool_named(&app, &name).await?;
    let existing = queue_named(&app, &name, &queue).await?;
    if pool.default_queue_id == Some(existing.id) {
        return Err(ApiError::bad_request("Can't delete a pool's default queue."));
    }
    let client = app.client().await?;
    pools::delete_queue(&client, existing.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, Default, schemars::JsonSchema)]
struct QueueFilterBody {
    #[serde(default)]
    work_queues: Option<WorkQueueFilter>,
    #[serde(default)]
    limit: Option<i64>,
    #[serde(default)]
    offset: Option<i64>,
}

async fn filter_queues(
    State(app): State<AppState>,
    Path(name): Path<String>,
    Body(body): Body<QueueFilterBody>,
) -> ApiResult<Response> {
    let (limit, offset) = page(body.limit, body.offset)?;
    let pool = pool_named(&app, &name).await?;
    let client = app.client().await?;
    let queues = pools::filter_queues(
        &client,
        Some(pool.id),
        &body.work_queues.unwrap_or_default(),
        limit,
        offset,
    )
    .await?;
    Ok(Json(queues).into_response())
}

#[derive(Deserialize, schemars::JsonSchema)]
struct Heartbeat {
    name: String,
    #[serde(default)]
    heartbeat_interval_seconds: Option<f64>,
    /// Stratus's agent names the runs it executes, so that a run whose agent died is
    /// found (the stock workers send no such list).
    #[serde(default)]
    flow_run_ids: Vec<uuid::Uuid>,
}

async fn heartbeat(
    State(app): State<AppState>,
    Path(name): Path<String>,
    Body(body): Body<Heartbeat>,
) -> ApiResult<StatusCode> {
    let pool = pool_named(&app, &name).await?;
    let interval = body.heartbeat_interval_seconds.map(|s| s.round() as i32);
    let client = app.client().await?;
    pools::heartbeat(&client, pool.id, &body.name, interval).await?;
    pools::refresh_claims(&client, pool.id, &body.name, &body.flow_run_ids).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, Default, schemars::JsonSchema)]
struct WorkerFilterBody {
    #[serde(default)]
    workers: Option<pools::WorkerFilter>,
    #[serde(default)]
    limit: Option<i64>,
    #[serde(default)]
    offset: Option<i64>,
}

async fn filter_workers(
    State(app): State<AppState>,
    Path(name): Path<String>,
    Body(body): Body<WorkerFilterBody>,
) -> ApiResult<Response> {
    let (limit, offset) = page(body.limit, body.offset)?;
    let pool = pool_named(&app, &name).await?;
    let client = app.client().await?;
    let workers =
        pools::filter_workers(&client, pool.id, &body.workers.unwrap_or_default(), limit, offset).await?;
    Ok(Json(workers).into_response())
}

async fn delete_worker(
    State(app): State<AppState>,
    Path((name, worker)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let pool = pool_named(&app, &name).await?;
    let client = app.client().await?;
    if !pools::delete_worker(&client, pool.id, &worker).await? {
        return Err(ApiError::not_found("Worker not found."));
    }
    Ok(StatusCode::NO_CONTENT)
}
