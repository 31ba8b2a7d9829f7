//! The `/admin` route family: settings, version, and database maintenance.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use stratus_shared::app::{PREFECT_VERSION, SERVER_API_VERSION_STR};
use stratus_shared::{ApiError, ApiResult, AppState, Body};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/settings", get(settings))
        .route("/admin/version", get(|| async { Json(PREFECT_VERSION) }))
        .route("/admin/database/clear", post(clear))
        .route("/admin/database/drop", post(drop_all))
        .route("/admin/database/create", post(create))
}

/// The effective settings, named as Prefect names its own; no secrets are included (the
/// database URL is reduced to whether one is configured).
async fn settings(State(app): State<AppState>) -> Response {
    let s = &app.settings;
    Json(json!({
        "PREFECT_API_URL": format!("http://{}:{}/api", s.host, s.port),
        "PREFECT_SERVER_API_HOST": s.host,
        "PREFECT_SERVER_API_PORT": s.port,
        "PREFECT_API_DEFAULT_LIMIT": stratus_shared::json::DEFAULT_LIMIT,
        "PREFECT_API_DATABASE_CONNECTION_URL": "********",
        "PREFECT_SERVER_CSRF_PROTECTION_ENABLED": false,
        "PREFECT_EXPERIMENTAL_EVENTS": false,
        "PREFECT_TASK_RUN_TAG_CONCURRENCY_SLOT_WAIT_SECONDS": s.tag_concurrency_slot_wait_seconds,
        "STRATUS_DATABASE_POOL_SIZE": s.pool_size,
        "STRATUS_LOG_RETENTION_DAYS": s.log_retention_days,
        "STRATUS_STATE_RETENTION_DAYS": s.state_retention_days,
        "SERVER_API_VERSION": SERVER_API_VERSION_STR,
    }))
    .into_response()
}

#[derive(Deserialize, Default)]
struct Confirm {
    #[serde(default)]
    confirm: bool,
}

fn require_confirm(body: &Confirm) -> ApiResult<()> {
    if !body.confirm {
        return Err(ApiError::bad_request("Pass confirm=True to confirm."));
    }
    Ok(())
}

/// Deletes every row, keeping the schema.
async fn clear(State(app): State<AppState>, Body(body): Body<Confirm>) -> ApiResult<StatusCode> {
    require_confirm(&body)?;
    let client = app.client().await?;
    stratus_shared::db::clear(&client).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Drops every Stratus table and re-creates the schema, so the server stays usable (a
/// serverless function cannot be restarted to re-create it).
async fn drop_all(State(app): State<AppState>, Body(body): Body<Confirm>) -> ApiResult<StatusCode> {
    require_confirm(&body)?;
    stratus_shared::db::reset(&app.db)
        .await
        .map_err(ApiError::Internal)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Applies any pending migrations.
async fn create(State(app): State<AppState>, Body(body): Body<Confirm>) -> ApiResult<StatusCode> {
    require_confirm(&body)?;
    stratus_shared::db::migrate(&app.db)
        .await
        .map_err(ApiError::Internal)?;
    Ok(StatusCode::NO_CONTENT)
}
