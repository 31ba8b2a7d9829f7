//! Serving a family's router: under `/api`, on Lambda or locally, with Prefect's
//! request conventions (trailing slashes, version header, permissive CORS).

use axum::Router;
use tower::Layer;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::CorsLayer;
use tower_http::normalize_path::{NormalizePath, NormalizePathLayer};

use crate::app::{check_api_version, AppState};

/// Largest request body accepted. The client batches up to 4,000,000 bytes of logs per
/// request (`PREFECT_LOGGING_TO_API_BATCH_SIZE`) and JSON-escapes them.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Mounts family routers under `/api` with the shared middleware and state.
pub fn api(routes: Router<AppState>, state: AppState) -> Router {
    Router::new()
        .nest("/api", routes.fallback(crate::app::not_found))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(check_api_version))
        .layer(CorsLayer::permissive())
        .layer(CatchPanicLayer::custom(panic_response))
        .with_state(state)
}

/// A bug must not drop the connection: log it and answer Prefect's 500 body.
fn panic_response(err: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    let message = err
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".to_string());
    axum::response::IntoResponse::into_response(crate::ApiError::Internal(format!("panic: {message}")))
}

/// Accepts `/flows/` and `/flows` alike: the client uses the slash form for creates.
pub fn normalize(router: Router) -> NormalizePath<Router> {
    NormalizePathLayer::trim_trailing_slash().layer(router)
}

pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("STRATUS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).try_init();
}
