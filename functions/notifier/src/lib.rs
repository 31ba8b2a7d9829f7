//! Flow run notifications. The `/flow_run_notification_policies` route family says which
//! state changes to tell someone about and through which block; state changes that match
//! queue a notification in their own transaction (`db::transitions`), published to the
//! notifications queue; the notifier ([`deliver`]) receives them and sends each through
//! its policy's block ([`senders`]).

pub mod deliver;
pub mod senders;
pub mod templating;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::Deserialize;
use stratus_http::api_routes::{get, post, ApiRoutes};
use stratus_http::json::{page, path_id};
use stratus_http::{ApiError, ApiResult, AppState, Body};
use stratus_store::db::notifications::{self, Policy, PolicyFields, PolicyFilter};
use stratus_store::notifications::check_template;
use uuid::Uuid;

pub fn router() -> Router<AppState> {
    api().into_router()
}

/// The family's routes, as served and documented.
pub fn api() -> ApiRoutes {
    ApiRoutes::new("Flow Run Notification Policies")
        .route(
            "/flow_run_notification_policies",
            post(create).returns::<Policy>(),
        )
        .route(
            "/flow_run_notification_policies/filter",
            post(filter).returns::<Vec<Policy>>(),
        )
        .route(
            "/flow_run_notification_policies/{id}",
            get(read).returns::<Policy>().patch(update).delete(remove),
        )
}

fn not_found() -> ApiError {
    ApiError::not_found("Flow run notification policy not found")
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct PolicyCreate {
    #[serde(default = "active")]
    is_active: bool,
    state_names: Vec<String>,
    tags: Vec<String>,
    block_document_id: Uuid,
    #[serde(default)]
    message_template: Option<String>,
}

fn active() -> bool {
    true
}

/// Every field optional; an explicit null template clears it.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct PolicyUpdate {
    #[serde(default)]
    is_active: Option<bool>,
    #[serde(default)]
    state_names: Option<Vec<String>>,
    #[serde(default)]
    tags: Option<Vec<String>>,
    #[serde(default)]
    block_document_id: Option<Uuid>,
    #[serde(default, deserialize_with = "stratus_http::json::present")]
    message_template: Option<Option<String>>,
}

async fn create(State(app): State<AppState>, Body(body): Body<PolicyCreate>) -> ApiResult<Response> {
    if let Some(template) = &body.message_template {
        check_template(template)?;
    }
    let client = app.client().await?;
    let fields = PolicyFields {
        is_active: Some(body.is_active),
        state_names: Some(body.state_names),
        tags: Some(body.tags),
        block_document_id: Some(body.block_document_id),
        message_template: Some(body.message_template),
    };
    let created = notifications::create(&client, &fields).await?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

async fn read(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let id = path_id(&id)?;
    let client = app.client().await?;
    Ok(Json(notifications::read(&client, id).await?.ok_or_else(not_found)?).into_response())
}

async fn update(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Body(body): Body<PolicyUpdate>,
) -> ApiResult<StatusCode> {
    let id = path_id(&id)?;
    if let Some(Some(template)) = &body.message_template {
        check_template(template)?;
    }
    let client = app.client().await?;
    let fields = PolicyFields {
        is_active: body.is_active,
        state_names: body.state_names,
        tags: body.tags,
        block_document_id: body.block_document_id,
        message_template: body.message_template,
    };
    if !notifications::update(&client, id, &fields).await? {
        return Err(not_found());
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn remove(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    let id = path_id(&id)?;
    let client = app.client().await?;
    if !notifications::delete(&client, id).await? {
        return Err(not_found());
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, Default, schemars::JsonSchema)]
struct FilterBody {
    #[serde(default)]
    flow_run_notification_policy_filter: Option<PolicyFilter>,
    #[serde(default)]
    limit: Option<i64>,
    #[serde(default)]
    offset: Option<i64>,
}

async fn filter(State(app): State<AppState>, Body(body): Body<FilterBody>) -> ApiResult<Response> {
    let (limit, offset) = page(body.limit, body.offset)?;
    let client = app.client().await?;
    let f = body.flow_run_notification_policy_filter.unwrap_or_default();
    Ok(Json(notifications::filter(&client, &f, limit, offset).await?).into_response())
}
