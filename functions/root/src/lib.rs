//! The root routes: health, version, readiness, and the CSRF token endpoint.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use stratus_shared::app::SERVER_API_VERSION_STR;
use stratus_shared::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/health", get(|| async { Json(true) }))
        .route("/version", get(|| async { Json(SERVER_API_VERSION_STR) }))
        .route("/hello", get(|| async { Json("👋") }))
        .route("/ready", get(ready))
        .route("/csrf-token", get(csrf_token))
}

async fn ready(State(app): State<AppState>) -> Response {
    let ok = match app.db.get().await {
        Ok(client) => client.simple_query("SELECT 1").await.is_ok(),
        Err(_) => false,
    };
    if ok {
        Json(json!({"message": "OK"})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"message": "Database is not available"})),
        )
            .into_response()
    }
}

/// CSRF protection is off (Prefect's default); the client turns it off on this answer.
async fn csrf_token() -> Response {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        Json(json!({"detail": "CSRF protection is disabled."})),
    )
        .into_response()
}
