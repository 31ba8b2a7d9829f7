//! The UI function: the web UI's pages at the site root ([`pages::router`]), and its API
//! routes under `/api`: `/saved_searches`, the run filters the UI saves, and the `/ui/*`
//! routes of [`ui_routes`].

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::Value;
use stratus_http::api_routes::{get, post, put, ApiRoutes};
use stratus_http::json::{null_default, page, path_id};
use stratus_http::{ApiError, ApiResult, AppState, Body};
use stratus_store::db::saved_searches::{self, SavedSearch};

pub mod pages;
mod ui_routes;

pub fn router() -> Router<AppState> {
    api().into_router()
}

/// The family's routes, as served and documented.
pub fn api() -> ApiRoutes {
    ui_routes::api().merge(
        ApiRoutes::new("SavedSearches")
            .route("/saved_searches", put(upsert).returns::<SavedSearch>())
            .route(
                "/saved_searches/filter",
                post(filter).returns::<Vec<SavedSearch>>(),
            )
            .route(
                "/saved_searches/{id}",
                get(read).returns::<SavedSearch>().delete(remove),
            ),
    )
}

fn not_found() -> ApiError {
    ApiError::not_found("Saved search not found")
}

/// One saved filter criterion.
#[derive(Deserialize, serde::Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct SavedSearchFilter {
    object: String,
    property: String,
    #[serde(rename = "type")]
    kind: String,
    operation: String,
    value: Value,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct SavedSearchCreate {
    name: String,
    #[serde(default, deserialize_with = "null_default")]
    filters: Vec<SavedSearchFilter>,
}

async fn upsert(State(app): State<AppState>, Body(body): Body<SavedSearchCreate>) -> ApiResult<Response> {
    let filters = serde_json::to_value(&body.filters)?;
    let client = app.client().await?;
    let (search, created) = saved_searches::upsert(&client, &body.name, &filters).await?;
    Ok(stratus_http::json::upserted(search, created))
}

async fn read(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let id = path_id(&id)?;
    let client = app.client().await?;
    Ok(Json(saved_searches::read(&client, id).await?.ok_or_else(not_found)?).into_response())
}

async fn remove(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    let id = path_id(&id)?;
    let client = app.client().await?;
    if !saved_searches::delete(&client, id).await? {
        return Err(not_found());
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, Default, schemars::JsonSchema)]
struct PageBody {
    #[serde(default)]
    limit: Option<i64>,
    #[serde(default)]
    offset: Option<i64>,
}

async fn filter(State(app): State<AppState>, Body(body): Body<PageBody>) -> ApiResult<Response> {
    let (limit, offset) = page(body.limit, body.offset)?;
    let client = app.client().await?;
    Ok(Json(saved_searches::filter(&client, limit, offset).await?).into_response())
}
