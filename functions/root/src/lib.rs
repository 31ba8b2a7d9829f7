//! The root routes: health, version, readiness, the CSRF token endpoint, the API's
//! documentation, and the events and automations routes Prefect serves disabled.

mod disabled;
pub mod docs;
mod templates;

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde_json::{json, Value};
use stratus_http::api_routes::{get, post, ApiRoutes};
use stratus_http::app::SERVER_API_VERSION_STR;
use stratus_http::{ApiError, AppState};

/// How long `/ready` waits for a connection and a `SELECT 1` before answering 503.
const READY_TIMEOUT: Duration = Duration::from_secs(5);

pub fn router() -> Router<AppState> {
    api().into_router()
}

/// The family's routes, as served and documented.
pub fn api() -> ApiRoutes {
    ApiRoutes::new("Root")
        .route("/health", get(|| async { Json(true) }).returns::<bool>())
        .route(
            "/version",
            get(|| async { Json(SERVER_API_VERSION_STR) }).returns::<String>(),
        )
        .route("/hello", get(|| async { Json("👋") }).returns::<String>())
        .route("/ready", get(ready))
        .route("/csrf-token", get(csrf_token))
        .merge(docs::routes())
        .merge(disabled::routes())
        .merge(ApiRoutes::new("Automations").route("/templates/validate", post(templates::validate)))
}

async fn database_answers(app: &AppState) -> bool {
    let probe = async {
        match app.db.get().await {
            Ok(client) => stratus_store::db::answers(&client).await,
            Err(_) => false,
        }
    };
    tokio::time::timeout(READY_TIMEOUT, probe).await.unwrap_or(false)
}

/// 200 `{"message":"OK"}` when Postgres answers, else 503.
async fn ready(State(app): State<AppState>) -> Response {
    if database_answers(&app).await {
        Json(json!({"message": "OK"})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"message": "Database is not available"})),
        )
            .into_response()
    }
}

/// CSRF protection is off (Prefect's default), so the route answers 422 and the client
/// stops asking. As in Prefect, the required `client` query parameter is validated first.
async fn csrf_token(query: Result<Query<HashMap<String, String>>, QueryRejection>) -> Response {
    let has_client = query.is_ok_and(|Query(q)| q.contains_key("client"));
    if !has_client {
        return ApiError::invalid(
            &["query", "client"],
            "field required",
            "value_error.missing",
            Value::Null,
        )
        .into_response();
    }
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        Json(json!({"detail": "CSRF protection is disabled."})),
    )
        .into_response()
}
