//! The `/logs` route family: batches of log lines in, filtered pages out.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::Value;
use stratus_shared::db::logs::{self, LogCreate, LogFilter, LogSort};
use stratus_shared::json::page;
use stratus_shared::{ApiResult, AppState, Body};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/logs", post(create))
        .route("/logs/filter", post(filter))
}

async fn create(State(app): State<AppState>, Body(body): Body<Vec<LogCreate>>) -> ApiResult<Response> {
    let client = app.client().await?;
    logs::insert(&client, &body).await?;
    Ok((StatusCode::CREATED, Json(Value::Null)).into_response())
}

#[derive(Deserialize)]
struct FilterBody {
    #[serde(default)]
    limit: Option<i64>,
    #[serde(default)]
    offset: Option<i64>,
    #[serde(default)]
    logs: Option<LogFilter>,
    #[serde(default)]
    sort: Option<String>,
}

async fn filter(State(app): State<AppState>, Body(body): Body<FilterBody>) -> ApiResult<Response> {
    let (limit, offset) = page(body.limit, body.offset)?;
    let sort = stratus_shared::json::sort(body.sort.as_deref(), LogSort::TimestampAsc, LogSort::parse)?;
    let client = app.client().await?;
    let found = logs::filter(&client, &body.logs.unwrap_or_default(), sort, limit, offset).await?;
    Ok(Json(found).into_response())
}
