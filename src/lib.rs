//! Stratus as one process: every route family merged under `/api`.

use axum::Router;
use stratus_http::serve;
use stratus_http::AppState;

pub mod agent;
pub mod cli;

/// Every API route family, relative to `/api`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .merge(stratus_root::router())
        .merge(stratus_flows::router())
        .merge(stratus_flow_runs::router())
        .merge(stratus_task_runs::router())
        .merge(stratus_logs::router())
        .merge(stratus_blocks::router())
        .merge(stratus_concurrency::router())
        .merge(stratus_admin::router())
        .merge(stratus_work_pools::router())
        .merge(stratus_deployments::router())
        .merge(stratus_variables::router())
        .merge(stratus_artifacts::router())
        .merge(stratus_notifier::router())
        .merge(stratus_ui::router())
}

/// The whole app, as `stratus server start` serves it: the API under `/api`, the web UI
/// at the root.
pub fn app(state: AppState) -> Router {
    serve::api(routes(), state.clone()).merge(stratus_ui::pages::router().with_state(state))
}
