//! Serving a family's router: under `/api`, on Lambda or locally, with Prefect's
//! request conventions (trailing slashes, version header), behind the auth gate
//! (`crate::auth`) and the CORS origins the settings allow.

use axum::http::HeaderValue;
use axum::Router;
use stratus_store::config::Settings;
use tower::Layer;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::predicate::{NotForContentType, Predicate, SizeAbove};
use tower_http::compression::CompressionLayer;
use tower_http::cors::{AllowOrigin, Any, CorsLayer};
use tower_http::normalize_path::{NormalizePath, NormalizePathLayer};

use crate::app::{check_api_version, AppState};
use crate::auth;

/// Largest request body accepted. The client batches up to 4,000,000 bytes of logs per
/// request (`PREFECT_LOGGING_TO_API_BATCH_SIZE`) and JSON-escapes them.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Mounts family routers under `/api` with the shared middleware and state.
pub fn api(routes: Router<AppState>, state: AppState) -> Router {
    Router::new()
        .nest("/api", routes.fallback(crate::app::not_found))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(check_api_version))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::check_browser_origin,
        ))
        .layer(cors(&state.settings))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(compression())
        .with_state(state)
}

/// Answers of 1,000 bytes or more are gzipped for clients that accept it, as Prefect's
/// server does (`GZipMiddleware(minimum_size=1000)`): a page of runs is several times smaller.
/// Event streams are left alone (each event must reach the browser as it is sent). The
/// fastest level: JSON compresses well at any level, and the CPU is the server's.
fn compression() -> CompressionLayer<impl Predicate> {
    CompressionLayer::new()
        .quality(tower_http::CompressionLevel::Fastest)
        .compress_when(
            SizeAbove::new(1000)
                .and(NotForContentType::GRPC)
                .and(NotForContentType::IMAGES)
                .and(NotForContentType::SSE),
        )
}

/// Browsers may call the API from the origins `STRATUS_CORS_ORIGINS` names, and from no
/// other (Prefect's server allows any; a page on any site could then drive it).
fn cors(settings: &Settings) -> CorsLayer {
    let layer = CorsLayer::new().allow_methods(Any).allow_headers(Any);
    if settings.cors_origins.iter().any(|o| o == "*") {
        return layer.allow_origin(Any);
    }
    let origins: Vec<HeaderValue> = settings
        .cors_origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    layer.allow_origin(AllowOrigin::list(origins))
}

/// A bug must not drop the connection: log it and answer Prefect's 500 body.
pub fn panic_response(err: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    let message = err
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".to_string());
    axum::response::IntoResponse::into_response(crate::ApiError::Internal(format!("panic: {message}")))
}

/// Accepts `/flows/` and `/flows` alike (the client uses the slash form for creates), and
/// workspace URLs (`crate::workspace_url`) for every route.
pub fn normalize(router: Router) -> NormalizePath<Router> {
    let rewritten = Router::new()
        .fallback_service(router)
        .layer(axum::middleware::map_request(crate::workspace_url::rewrite));
    NormalizePathLayer::trim_trailing_slash().layer(rewritten)
}

pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("STRATUS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).try_init();
}
