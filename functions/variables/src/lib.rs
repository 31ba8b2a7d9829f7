//! The `/variables` route family: named string values flows read at run time.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use stratus_http::api_routes::{get, post, ApiRoutes};
use stratus_http::json::{null_default, page, path_id};
use stratus_http::{ApiError, ApiResult, AppState, Body};
use stratus_store::db::variables::{self, Variable, VariableFilter, VariableKey, VariableSort};

pub fn router() -> Router<AppState> {
    api().into_router()
}

/// The family's routes, as served and documented.
pub fn api() -> ApiRoutes {
    ApiRoutes::new("Variables")
        .route("/variables", post(create).returns::<Variable>())
        .route("/variables/filter", post(filter).returns::<Vec<Variable>>())
        .route("/variables/count", post(count).returns::<i64>())
        .route(
            "/variables/name/{name}",
            get(read_by_name)
                .returns::<Variable>()
                .patch(update_by_name)
                .delete(delete_by_name),
        )
        .route(
            "/variables/{id}",
            get(read).returns::<Variable>().patch(update).delete(remove),
        )
}

const MAX_NAME: usize = 255;
const MAX_VALUE: usize = 5000;

fn not_found() -> ApiError {
    ApiError::not_found("Variable not found.")
}

fn check(name: Option<&str>, value: Option<&str>) -> ApiResult<()> {
    if let Some(name) = name {
        let ok = !name.is_empty()
            && name.len() <= MAX_NAME
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        if !ok {
            return Err(ApiError::invalid(
                &["body", "name"],
                "Variable name must only contain lowercase letters, numbers, and underscores, up to 255 characters.",
                "value_error",
                json!({"name": name}),
            ));
        }
    }
    if value.is_some_and(|v| v.len() > MAX_VALUE) {
        return Err(ApiError::invalid(
            &["body", "value"],
            "ensure this value has at most 5000 characters",
            "value_error.any_str.max_length",
            Value::Null,
        ));
    }
    Ok(())
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct VariableCreate {
    name: String,
    value: String,
    #[serde(default, deserialize_with = "null_default")]
    tags: Vec<String>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct VariableUpdate {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    tags: Option<Vec<String>>,
}

async fn create(State(app): State<AppState>, Body(body): Body<VariableCreate>) -> ApiResult<Response> {
    check(Some(&body.name), Some(&body.value))?;
    let client = app.client().await?;
    let created = variables::create(&client, &body.name, &body.value, &Value::from(body.tags)).await?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

async fn read_key(app: &AppState, key: VariableKey<'_>) -> ApiResult<Response> {
    let client = app.client().await?;
    Ok(Json(variables::read(&client, key).await?.ok_or_else(not_found)?).into_response())
}

async fn read(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    read_key(&app, VariableKey::Id(path_id(&id)?)).await
}

async fn read_by_name(State(app): State<AppState>, Path(name): Path<String>) -> ApiResult<Response> {
    read_key(&app, VariableKey::Name(&name)).await
}

async fn update_key(app: &AppState, key: VariableKey<'_>, body: VariableUpdate) -> ApiResult<StatusCode> {
    check(body.name.as_deref(), body.value.as_deref())?;
    let client = app.client().await?;
    let existing = variables::read(&client, key).await?.ok_or_else(not_found)?;
    let tags = body.tags.map(Value::from);
    variables::update(
        &client,
        existing.id,
        body.name.as_deref(),
        body.value.as_deref(),
        tags.as_ref(),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn update(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Body(body): Body<VariableUpdate>,
) -> ApiResult<StatusCode> {
    update_key(&app, VariableKey::Id(path_id(&id)?), body).await
}

async fn update_by_name(
    State(app): State<AppState>,
    Path(name): Path<String>,
    Body(body): Body<VariableUpdate>,
) -> ApiResult<StatusCode> {
    update_key(&app, VariableKey::Name(&name), body).await
}

async fn delete_key(app: &AppState, key: VariableKey<'_>) -> ApiResult<StatusCode> {
    let client = app.client().await?;
    let existing = variables::read(&client, key).await?.ok_or_else(not_found)?;
    variables::delete(&client, existing.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn remove(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    delete_key(&app, VariableKey::Id(path_id(&id)?)).await
}

async fn delete_by_name(State(app): State<AppState>, Path(name): Path<String>) -> ApiResult<StatusCode> {
    delete_key(&app, VariableKey::Name(&name)).await
}

#[derive(Deserialize, Default, schemars::JsonSchema)]
struct FilterBody {
    #[serde(default)]
    variables: Option<VariableFilter>,
    #[serde(default)]
    limit: Option<i64>,
    #[serde(default)]
    offset: Option<i64>,
    #[serde(default)]
    sort: Option<String>,
}

async fn filter(State(app): State<AppState>, Body(body): Body<FilterBody>) -> ApiResult<Response> {
    let (limit, offset) = page(body.limit, body.offset)?;
    let sort = stratus_http::json::sort(body.sort.as_deref(), VariableSort::NameAsc, VariableSort::parse)?;
    let client = app.client().await?;
    Ok(
        Json(variables::filter(&client, &body.variables.unwrap_or_default(), sort, limit, offset).await?)
            .into_response(),
    )
}

async fn count(State(app): State<AppState>, Body(body): Body<FilterBody>) -> ApiResult<Response> {
    let client = app.client().await?;
    Ok(Json(variables::count(&client, &body.variables.unwrap_or_default()).await?).into_response())
}
