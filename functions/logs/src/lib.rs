//! The `/logs` route family: batches of log lines in, filtered pages out.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::Value;
use stratus_http::api_routes::{post, ApiRoutes};
use stratus_http::json::{page, sort};
use stratus_http::{ApiResult, AppState, Body};
use stratus_store::db::logs::{self, LogCreate, LogFilter, LogSort};

pub fn router() -> Router<AppState> {
    api().into_router()
}

/// The family's routes, as served and documented.
pub fn api() -> ApiRoutes {
    ApiRoutes::new("Logs")
        .route("/logs", post(create).returns::<()>())
        .route("/logs/filter", post(filter).returns::<Vec<logs::Log>>())
}

/// `POST /logs/`: a JSON array of log lines, all written or none (one transaction, one
/// multi-row INSERT per chunk). Prefect answers 201 with `null`.
async fn create(State(app): State<AppState>, Body(body): Body<Vec<LogCreate>>) -> ApiResult<Response> {
    if !body.is_empty() {
        let mut client = app.client().await?;
        let tx = client.transaction().await?;
        logs::insert(&tx, &body).await?;
        tx.commit().await?;
    }
    Ok((StatusCode::CREATED, Json(Value::Null)).into_response())
}

/// The top-level keys of `POST /logs/filter`; explicit nulls mean the default and unknown
/// top-level keys are ignored (the `logs` object itself is strict).
#[derive(Deserialize, schemars::JsonSchema)]
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
    let order = sort(body.sort.as_deref(), LogSort::TimestampAsc, LogSort::parse)?;
    let client = app.client().await?;
    let found = logs::filter(&client, &body.logs.unwrap_or_default(), order, limit, offset).await?;
    Ok(Json(found).into_response())
}
