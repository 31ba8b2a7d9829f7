//! `/flow_runs/{id}/input`: keyed values a flow run receives (run input for pause/resume).

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use stratus_http::json::{null_default, path_id};
use stratus_http::{ApiError, ApiResult, AppState, Body};
use stratus_store::db::flow_run_inputs;
use stratus_store::db::flow_runs::FlowRun;
use stratus_store::db::runs;
use uuid::Uuid;

#[derive(Deserialize, schemars::JsonSchema)]
pub struct InputCreate {
    key: String,
    value: String,
    #[serde(default)]
    sender: Option<String>,
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct InputFilter {
    prefix: String,
    #[serde(default)]
    limit: Option<i64>,
    #[serde(default, deserialize_with = "null_default")]
    exclude_keys: Vec<String>,
}

/// Keys are lowercase letters, digits and dashes, as Prefect requires.
pub fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

async fn require_run(app: &AppState, id: Uuid) -> ApiResult<()> {
    let client = app.client().await?;
    match runs::read::<FlowRun>(&client, id).await? {
        Some(_) => Ok(()),
        None => Err(ApiError::not_found("Flow run not found")),
    }
}

pub async fn create(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Body(body): Body<InputCreate>,
) -> ApiResult<Response> {
    let id = path_id(&id)?;
    if !valid_key(&body.key) {
        return Err(ApiError::invalid(
            &["body", "key"],
            "key must only contain lowercase letters, numbers, and dashes",
            "value_error",
            json!({"key": body.key}),
        ));
    }
    require_run(&app, id).await?;
    let client = app.client().await?;
    if !flow_run_inputs::insert(&client, id, &body.key, &body.value, body.sender.as_deref()).await? {
        return Err(ApiError::conflict(
            "A flow run input with this key already exists.",
        ));
    }
    Ok((StatusCode::CREATED, Json(Value::Null)).into_response())
}

pub async fn filter(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Body(body): Body<InputFilter>,
) -> ApiResult<Response> {
    let id = path_id(&id)?;
    let limit = body.limit.unwrap_or(1);
    if !(0..=stratus_http::json::DEFAULT_LIMIT).contains(&limit) {
        return Err(ApiError::unprocessable(
            "Invalid limit: must be between 0 and 200.",
        ));
    }
    let client = app.client().await?;
    let inputs = flow_run_inputs::filter(&client, id, &body.prefix, limit, &body.exclude_keys).await?;
    Ok(Json(inputs).into_response())
}

pub async fn read(
    State(app): State<AppState>,
    Path((id, key)): Path<(String, String)>,
) -> ApiResult<Response> {
    let id = path_id(&id)?;
    let client = app.client().await?;
    let input = flow_run_inputs::read(&client, id, &key)
        .await?
        .ok_or_else(|| ApiError::not_found("Flow run input not found"))?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], input.value).into_response())
}

pub async fn delete(
    State(app): State<AppState>,
    Path((id, key)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let id = path_id(&id)?;
    let client = app.client().await?;
    if !flow_run_inputs::delete(&client, id, &key).await? {
        return Err(ApiError::not_found("Flow run input not found"));
    }
    Ok(StatusCode::NO_CONTENT)
}
