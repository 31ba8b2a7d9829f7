//! Concurrency limits: v1 tag limits (`/concurrency_limits`, held by task runs through
//! the task policy) and v2 global limits (`/v2/concurrency_limits`).

mod v1;
mod v2;

use axum::Router;
use stratus_http::api_routes::{get, post, ApiRoutes};
use stratus_http::AppState;
use stratus_store::db::concurrency_limits::{ConcurrencyLimit, GlobalLimit};

pub fn router() -> Router<AppState> {
    api().into_router()
}

/// The family's routes, as served and documented.
pub fn api() -> ApiRoutes {
    ApiRoutes::new("Concurrency Limits")
        .route(
            "/concurrency_limits",
            post(v1::create).returns::<ConcurrencyLimit>(),
        )
        .route(
            "/concurrency_limits/filter",
            post(v1::filter).returns::<Vec<ConcurrencyLimit>>(),
        )
        .route(
            "/concurrency_limits/tag/{tag}",
            get(v1::read_by_tag)
                .returns::<ConcurrencyLimit>()
                .delete(v1::delete_by_tag)
                .returns::<()>(),
        )
        .route(
            "/concurrency_limits/tag/{tag}/reset",
            post(v1::reset).returns::<()>(),
        )
        .route(
            "/concurrency_limits/{id}",
            get(v1::read)
                .returns::<ConcurrencyLimit>()
                .delete(v1::delete)
                .returns::<()>(),
        )
        .route(
            "/v2/concurrency_limits",
            post(v2::create).returns::<GlobalLimit>(),
        )
        .route(
            "/v2/concurrency_limits/filter",
            post(v2::filter).returns::<Vec<v2::LimitResponse<'static>>>(),
        )
        .route(
            "/v2/concurrency_limits/increment",
            post(v2::increment)
                .returns::<Vec<v2::MinimalLimit<'static>>>()
                .also_answers(
                    "423",
                    "Locked: the slots are taken; try again after `Retry-After` seconds",
                ),
        )
        .route(
            "/v2/concurrency_limits/decrement",
            post(v2::decrement).returns::<Vec<v2::MinimalLimit<'static>>>(),
        )
        .route(
            "/v2/concurrency_limits/{key}",
            get(v2::read)
                .returns::<v2::LimitResponse<'static>>()
                .patch(v2::update)
                .delete(v2::delete),
        )
}
