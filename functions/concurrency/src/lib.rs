//! Concurrency limits: v1 tag limits (`/concurrency_limits`, held by task runs through
//! the task policy) and v2 global limits (`/v2/concurrency_limits`).

mod v1;
mod v2;

use axum::Router;
use stratus_http::api_routes::{get, post, ApiRoutes};
use stratus_http::AppState;

pub fn router() -> Router<AppState> {
    api().into_router()
}

/// The family's routes, as served and documented.
pub fn api() -> ApiRoutes {
    ApiRoutes::new("Concurrency Limits")
        .route("/concurrency_limits", post(v1::create))
        .route("/concurrency_limits/filter", post(v1::filter))
        .route(
            "/concurrency_limits/tag/{tag}",
            get(v1::read_by_tag).delete(v1::delete_by_tag),
        )
        .route("/concurrency_limits/tag/{tag}/reset", post(v1::reset))
        .route("/concurrency_limits/{id}", get(v1::read).delete(v1::delete))
        .route("/v2/concurrency_limits", post(v2::create))
        .route("/v2/concurrency_limits/filter", post(v2::filter))
        .route("/v2/concurrency_limits/increment", post(v2::increment))
        .route("/v2/concurrency_limits/decrement", post(v2::decrement))
        .route(
            "/v2/concurrency_limits/{key}",
            get(v2::read).patch(v2::update).delete(v2::delete),
        )
}
