//! `/concurrency_limits`: limits on how many task runs with a tag run at once.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::Value;
use stratus_http::json::{page, path_id};
use stratus_http::{ApiError, ApiResult, AppState, Body};
use stratus_store::db::concurrency_limits as limits;
use uuid::Uuid;

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitCreate {
    tag: String,
    concurrency_limit: i32,
}

/// Top-level body keys: explicit nulls mean the default, unknown keys are ignored.
#[derive(Deserialize, schemars::JsonSchema)]
pub struct PageBody {
    #[serde(default)]
    limit: Option<i64>,
    #[serde(default)]
    offset: Option<i64>,
}

/// `{slot_override?: [uuid]}`: the new active slots, or none when absent or null.
#[derive(Deserialize, Default, schemars::JsonSchema)]
pub struct ResetBody {
    #[serde(default)]
    slot_override: Option<Vec<Uuid>>,
}

fn not_found() -> ApiError {
    ApiError::not_found("Concurrency limit not found")
}

/// Upsert by tag. Prefect answers 200 even when it creates (its created-vs-now check runs
/// after the write).
///
/// Prefect's schema takes any integer; a negative limit could never be met (every task
/// run with the tag would wait forever), so it is refused with a 422.
pub async fn create(State(app): State<AppState>, Body(raw): Body<Value>) -> ApiResult<Response> {
    let body: LimitCreate = stratus_http::json::from_value(raw.clone())?;
    if body.concurrency_limit < 0 {
        return Err(ApiError::invalid(
            &["body", "concurrency_limit"],
            "ensure this value is greater than or equal to 0",
            "value_error.number.not_ge",
            raw,
        ));
    }
    let client = app.client().await?;
    Ok(Json(limits::upsert_v1(&client, &body.tag, body.concurrency_limit).await?).into_response())
}

pub async fn read(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let id = path_id(&id)?;
    let client = app.client().await?;
    Ok(Json(limits::read_v1(&client, id).await?.ok_or_else(not_found)?).into_response())
}

pub async fn read_by_tag(State(app): State<AppState>, Path(tag): Path<String>) -> ApiResult<Response> {
    let client = app.client().await?;
    Ok(Json(
        limits::read_v1_by_tag(&client, &tag)
            .await?
            .ok_or_else(not_found)?,
    )
    .into_response())
}

pub async fn filter(State(app): State<AppState>, Body(body): Body<PageBody>) -> ApiResult<Response> {
    let (limit, offset) = page(body.limit, body.offset)?;
    let client = app.client().await?;
    Ok(Json(limits::filter_v1(&client, limit, offset).await?).into_response())
}

pub async fn reset(
    State(app): State<AppState>,
    Path(tag): Path<String>,
    Body(body): Body<ResetBody>,
) -> ApiResult<Response> {
    let client = app.client().await?;
    if !limits::reset_v1(&client, &tag, &body.slot_override.unwrap_or_default()).await? {
        return Err(not_found());
    }
    Ok(Json(Value::Null).into_response())
}

/// Deletes answer 200 with `null`, as Prefect's do.
pub async fn delete(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let id = path_id(&id)?;
    let client = app.client().await?;
    if !limits::delete_v1(&client, id).await? {
        return Err(not_found());
    }
    Ok(Json(Value::Null).into_response())
}

pub async fn delete_by_tag(State(app): State<AppState>, Path(tag): Path<String>) -> ApiResult<Response> {
    let client = app.client().await?;
    if !limits::delete_v1_by_tag(&client, &tag).await? {
        return Err(not_found());
    }
    Ok(Json(Value::Null).into_response())
}
