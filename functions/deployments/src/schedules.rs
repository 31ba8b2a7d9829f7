//! `/deployments/{id}/schedules`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::Value;
use stratus_http::json::path_id;
use stratus_http::{ApiError, ApiResult, AppState, Body};
use stratus_store::db::deployments::{self, ScheduleChanges};

use crate::{new_schedule, not_found, ScheduleCreate};

pub async fn list(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let id = path_id(&id)?;
    let client = app.client().await?;
    if deployments::read(&client, id).await?.is_none() {
        return Err(not_found());
    }
    Ok(Json(deployments::schedules(&client, id).await?).into_response())
}

pub async fn create(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Body(body): Body<Vec<ScheduleCreate>>,
) -> ApiResult<Response> {
    let id = path_id(&id)?;
    let schedules = body
        .into_iter()
        .map(new_schedule)
        .collect::<ApiResult<Vec<_>>>()?;
    let mut client = app.client().await?;
    let tx = client.transaction().await?;
    if deployments::read(&tx, id).await?.is_none() {
        return Err(not_found());
    }
    let created = deployments::add_schedules(&tx, id, &schedules).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleUpdate {
    #[serde(default)]
    schedule: Option<Value>,
    #[serde(default)]
    active: Option<bool>,
    #[serde(default)]
    max_active_runs: Option<i32>,
    #[serde(default)]
    max_scheduled_runs: Option<i32>,
    #[serde(default)]
    catchup: Option<bool>,
}

fn schedule_not_found() -> ApiError {
    ApiError::not_found("Schedule not found.")
}

pub async fn update(
    State(app): State<AppState>,
    Path((id, schedule_id)): Path<(String, String)>,
    Body(body): Body<ScheduleUpdate>,
) -> ApiResult<StatusCode> {
    let id = path_id(&id)?;
    let schedule_id = path_id(&schedule_id)?;
    let schedule = match body.schedule {
        Some(s) => Some(stratus_domain::schedules::validate(&s).map_err(|e| {
            ApiError::invalid(&["body", "schedule"], e.to_string(), "value_error", Value::Null)
        })?),
        None => None,
    };
    let changes = ScheduleChanges {
        schedule,
        active: body.active,
        max_active_runs: body.max_active_runs,
        max_scheduled_runs: body.max_scheduled_runs,
        catchup: body.catchup,
    };
    let mut client = app.client().await?;
    let tx = client.transaction().await?;
    if deployments::read(&tx, id).await?.is_none() {
        return Err(not_found());
    }
    if !deployments::update_schedule(&tx, id, schedule_id, &changes).await? {
        return Err(schedule_not_found());
    }
    deployments::delete_auto_scheduled_runs(&tx, id).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn remove(
    State(app): State<AppState>,
    Path((id, schedule_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let id = path_id(&id)?;
    let schedule_id = path_id(&schedule_id)?;
    let mut client = app.client().await?;
    let tx = client.transaction().await?;
    if deployments::read(&tx, id).await?.is_none() {
        return Err(not_found());
    }
    if !deployments::delete_schedule(&tx, id, schedule_id).await? {
        return Err(schedule_not_found());
    }
    deployments::delete_auto_scheduled_runs(&tx, id).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
