//! The `/flows` route family: flows are upserted by name and listed with run filters.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::Value;
use stratus_http::api_routes::{get, post, ApiRoutes};
use stratus_http::json::{null_default, page, path_id};
use stratus_http::{ApiError, ApiResult, AppState, Body};
use stratus_store::db::flows::{self, Flow, FlowSort};
use stratus_store::filters::RunFilterBody;

pub fn router() -> Router<AppState> {
    api().into_router()
}

/// The family's routes, as served and documented.
pub fn api() -> ApiRoutes {
    ApiRoutes::new("Flows")
        .route("/flows", post(create).returns::<Flow>())
        .route("/flows/filter", post(filter).returns::<Vec<Flow>>())
        .route("/flows/count", post(count).returns::<i64>())
        .route("/flows/name/{name}", get(read_by_name).returns::<Flow>())
        .route(
            "/flows/{id}",
            get(read).returns::<Flow>().patch(update).delete(delete),
        )
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct FlowCreate {
    name: String,
    #[serde(default, deserialize_with = "null_default")]
    tags: Vec<String>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct FlowUpdate {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

/// Prefect forbids these characters in flow names.
const BANNED_NAME_CHARACTERS: [char; 5] = ['/', '%', '&', '>', '<'];

fn validate_name(name: &str) -> ApiResult<()> {
    if name.chars().any(|c| BANNED_NAME_CHARACTERS.contains(&c)) {
        return Err(ApiError::invalid(
            &["body", "name"],
            "Name cannot contain any of the following characters: / % & > <",
            "value_error",
            serde_json::json!({"name": name}),
        ));
    }
    Ok(())
}

async fn create(State(app): State<AppState>, Body(body): Body<FlowCreate>) -> ApiResult<Response> {
    validate_name(&body.name)?;
    let client = app.client().await?;
    let (flow, created) = flows::upsert(&client, &body.name, &Value::from(body.tags)).await?;
    Ok(stratus_http::json::upserted(flow, created))
}

async fn read(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let id = path_id(&id)?;
    let client = app.client().await?;
    let flow = flows::read(&client, id)
        .await?
        .ok_or_else(|| ApiError::not_found("Flow not found"))?;
    Ok(Json(flow).into_response())
}

async fn read_by_name(State(app): State<AppState>, Path(name): Path<String>) -> ApiResult<Response> {
    let client = app.client().await?;
    let flow = flows::read_by_name(&client, &name)
        .await?
        .ok_or_else(|| ApiError::not_found("Flow not found"))?;
    Ok(Json(flow).into_response())
}

async fn update(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Body(body): Body<FlowUpdate>,
) -> ApiResult<StatusCode> {
    let id = path_id(&id)?;
    let client = app.client().await?;
    let found = match body.tags {
        Some(tags) => flows::update_tags(&client, id, &Value::from(tags)).await?,
        None => flows::read(&client, id).await?.is_some(),
    };
    if !found {
        return Err(ApiError::not_found("Flow not found"));
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn delete(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    let id = path_id(&id)?;
    let client = app.client().await?;
    if !flows::delete(&client, id).await? {
        return Err(ApiError::not_found("Flow not found"));
    }
    Ok(StatusCode::NO_CONTENT)
}

fn sort_of(body: &RunFilterBody) -> ApiResult<FlowSort> {
    stratus_http::json::sort(body.sort.as_deref(), FlowSort::NameAsc, FlowSort::parse)
}

async fn filter(State(app): State<AppState>, Body(body): Body<RunFilterBody>) -> ApiResult<Response> {
    let (limit, offset) = page(body.limit, body.offset)?;
    let sort = sort_of(&body)?;
    let client = app.client().await?;
    let flows = flows::filter(&client, &body.filters(), sort, limit, offset).await?;
    Ok(Json(flows).into_response())
}

async fn count(State(app): State<AppState>, Body(body): Body<RunFilterBody>) -> ApiResult<Response> {
    let client = app.client().await?;
    Ok(Json(flows::count(&client, &body.filters()).await?).into_response())
}
