//! `/work_queues`: the legacy queue API agents use. Its queues live in `default-agent-pool`.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};
use stratus_http::json::{null_default, page, path_id, ts_opt};
use stratus_http::{ApiError, ApiResult, AppState, Body};
use stratus_store::db::flow_runs::FlowRun;
use stratus_store::db::runs;
use stratus_store::db::work_pools::{self as pools, NewQueue, QueueChanges, WorkQueueFilter};
use uuid::Uuid;

fn not_found() -> ApiError {
    ApiError::not_found("work queue not found")
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueCreate {
    pub(crate) name: String,
    #[serde(default, deserialize_with = "null_default")]
    pub(crate) description: String,
    #[serde(default, deserialize_with = "null_default")]
    pub(crate) is_paused: bool,
    #[serde(default)]
    pub(crate) concurrency_limit: Option<i32>,
    #[serde(default)]
    pub(crate) priority: Option<i32>,
    /// Prefect's deprecated tag filter; the client sends it (as null) with every create.
    #[serde(default)]
    pub(crate) filter: Option<Value>,
}

impl QueueCreate {
    pub(crate) fn new_queue(&self) -> NewQueue<'_> {
        NewQueue {
            name: &self.name,
            description: &self.description,
            is_paused: self.is_paused,
            concurrency_limit: self.concurrency_limit,
            priority: self.priority,
            filter: self.filter.clone().filter(|f| !f.is_null()),
        }
    }
}

pub async fn create(State(app): State<AppState>, Body(body): Body<QueueCreate>) -> ApiResult<Response> {
    crate::check_queue_numbers(body.concurrency_limit, body.priority)?;
    let mut client = app.client().await?;
    let tx = client.transaction().await?;
    let existed = pools::read_pool_by_name(&tx, pools::DEFAULT_AGENT_POOL)
        .await?
        .is_some();
    let pool = pools::ensure_pool(&tx, pools::DEFAULT_AGENT_POOL)
        .await?
        .ok_or(ApiError::Integrity)?;
    // As Prefect 2.20's `create_work_queue` (`src/prefect/server/models/work_queues.py`):
    // creating the default agent pool creates its `default` queue, which a request for a
    // queue of that name then gets (what `Deployment.apply` relies on).
    if !existed && body.name == "default" {
        let queue = pools::read_queue_by_name(&tx, pool.id, "default")
            .await?
            .ok_or(ApiError::Integrity)?;
        tx.commit().await?;
        return Ok((StatusCode::CREATED, Json(queue)).into_response());
    }
    let queue = pools::create_queue(&tx, pool.id, &body.new_queue())
        .await?
        .ok_or_else(|| ApiError::conflict("A work queue with this name already exists."))?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(queue)).into_response())
}

pub async fn read(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let id = path_id(&id)?;
    let client = app.client().await?;
    Ok(Json(pools::read_queue(&client, id).await?.ok_or_else(not_found)?).into_response())
}

pub async fn read_by_name(State(app): State<AppState>, Path(name): Path<String>) -> ApiResult<Response> {
    let client = app.client().await?;
    Ok(Json(
        pools::read_legacy_queue_by_name(&client, &name)
            .await?
            .ok_or_else(not_found)?,
    )
    .into_response())
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueUpdate {
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
    #[serde(default, deserialize_with = "stratus_http::json::present")]
    filter: Option<Option<Value>>,
}

pub async fn update(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Body(body): Body<QueueUpdate>,
) -> ApiResult<StatusCode> {
    let id = path_id(&id)?;
    crate::check_queue_numbers(body.concurrency_limit.flatten(), body.priority)?;
    let mut client = app.client().await?;
    let tx = client.transaction().await?;
    let queue = pools::read_queue(&tx, id).await?.ok_or_else(not_found)?;
    let changes = QueueChanges {
        name: body.name,
        description: body.description,
        is_paused: body.is_paused,
        concurrency_limit: body.concurrency_limit,
        priority: body.priority,
        last_polled: body.last_polled,
        filter: body.filter,
    };
    pools::update_queue(&tx, &queue, &changes).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn delete(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    let id = path_id(&id)?;
    let client = app.client().await?;
    let queue = pools::read_queue(&client, id).await?.ok_or_else(not_found)?;
    let pool = pools::read_pool_by_name(&client, &queue.work_pool_name).await?;
    if pool.is_some_and(|p| p.default_queue_id == Some(id)) {
        return Err(ApiError::bad_request("Can't delete a pool's default queue."));
    }
    pools::delete_queue(&client, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, Default, schemars::JsonSchema)]
pub struct FilterBody {
    #[serde(default)]
    work_queues: Option<WorkQueueFilter>,
    #[serde(default)]
    limit: Option<i64>,
    #[serde(default)]
    offset: Option<i64>,
}

pub async fn filter(State(app): State<AppState>, Body(body): Body<FilterBody>) -> ApiResult<Response> {
    let (limit, offset) = page(body.limit, body.offset)?;
    let client = app.client().await?;
    Ok(Json(
        pools::filter_queues(
            &client,
            None,
            &body.work_queues.unwrap_or_default(),
            limit,
            offset,
        )
        .await?,
    )
    .into_response())
}

#[derive(Deserialize, Default, schemars::JsonSchema)]
pub struct GetRuns {
    #[serde(default)]
    limit: Option<i64>,
    #[schemars(with = "Option<chrono::DateTime<chrono::Utc>>")]
    #[serde(default, with = "ts_opt")]
    scheduled_before: Option<DateTime<Utc>>,
    #[serde(default)]
    agent_id: Option<Uuid>,
}

/// The agent poll. `X-Prefect-UI: true` reads without recording a poll.
pub async fn get_runs(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Body(body): Body<GetRuns>,
) -> ApiResult<Response> {
    let id = path_id(&id)?;
    let (limit, _) = page(body.limit, None)?;
    let from_ui = headers
        .get("x-prefect-ui")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let mut client = app.client().await?;
    let tx = client.transaction().await?;
    let queue = pools::read_queue(&tx, id).await?.ok_or_else(not_found)?;
    let ids = pools::runs_for_agent(&tx, &queue, body.scheduled_before, limit).await?;
    let mut runs = Vec::with_capacity(ids.len());
    for run_id in ids {
        if let Some(run) = runs::read::<FlowRun>(&tx, run_id).await? {
            runs.push(run);
        }
    }
    if !from_ui {
        pools::record_poll(&tx, &queue, body.agent_id).await?;
    }
    tx.commit().await?;
    Ok(Json(runs).into_response())
}

/// Healthy: no late runs and polled within the last minute.
pub async fn status(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let id = path_id(&id)?;
    let client = app.client().await?;
    let queue = pools::read_queue(&client, id).await?.ok_or_else(not_found)?;
    let late = pools::late_runs(&client, &queue).await?;
    let recent = queue
        .last_polled
        .is_some_and(|t| Utc::now() - t <= chrono::Duration::seconds(60));
    Ok(Json(json!({
        "healthy": late == 0 && recent,
        "late_runs_count": late,
        "last_polled": queue.last_polled.map(|t| stratus_domain::time::format_ts(&t)),
        "health_check_policy": {"maximum_late_runs": 0, "maximum_seconds_since_last_polled": 60},
    }))
    .into_response())
}
