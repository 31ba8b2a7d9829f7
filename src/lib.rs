//! Stratus as one process: every route family merged under `/api`.

use axum::Router;
use stratus_http::api_routes::ApiRoutes;
use stratus_http::serve;
use stratus_http::AppState;

pub mod agent;
pub mod cli;

/// Every API route family, relative to `/api`, as served and documented.
pub fn api() -> ApiRoutes {
    stratus_root::api()
        .merge(stratus_flows::api())
        .merge(stratus_flow_runs::api())
        .merge(stratus_task_runs::api())
        .merge(stratus_logs::api())
        .merge(stratus_blocks::api())
        .merge(stratus_concurrency::api())
        .merge(stratus_admin::api())
        .merge(stratus_work_pools::api())
        .merge(stratus_deployments::api())
        .merge(stratus_variables::api())
        .merge(stratus_artifacts::api())
        .merge(stratus_notifier::api())
        .merge(stratus_ui::api())
}

/// Every API route family, relative to `/api`.
pub fn routes() -> Router<AppState> {
    api().into_router()
}

/// The API's OpenAPI document, made from every family's routes. The root family serves a
/// copy of it (`functions/root/openapi.json`, kept equal to this by a test) so that its
/// Lambda needs none of the other families.
pub fn openapi() -> serde_json::Value {
    stratus_http::openapi::document(api().operations())
}

/// The whole app, as `stratus server start` serves it: the API under `/api`, the web UI
/// at the root.
pub fn app(state: AppState) -> Router {
    serve::api(routes(), state.clone()).merge(stratus_ui::pages::app(state))
}
