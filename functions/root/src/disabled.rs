//! Events and automations, which Prefect 2.20 serves only with `PREFECT_EXPERIMENTAL_EVENTS`
//! on (off by default, and the stock client then sends none): every route answers 404 with
//! Prefect's message, as a default Prefect server does, so that the API lists the same
//! paths.

use stratus_http::api_routes::{delete, get, post, ApiRoutes};
use stratus_http::ApiError;

async fn events_disabled() -> ApiError {
    ApiError::not_found("Events are not enabled. Please enable the PREFECT_EXPERIMENTAL_EVENTS setting.")
}

async fn automations_disabled() -> ApiError {
    ApiError::not_found(
        "Automations are not enabled. Please enable the PREFECT_EXPERIMENTAL_EVENTS and \
         PREFECT_API_SERVICES_TRIGGERS_ENABLED settings.",
    )
}

pub fn routes() -> ApiRoutes {
    ApiRoutes::new("Events")
        .route("/events", post(events_disabled))
        .route("/events/filter", post(events_disabled))
        .route("/events/filter/next", get(events_disabled))
        .route("/events/count-by/{countable}", post(events_disabled))
        .merge(
            ApiRoutes::new("Automations")
                .route("/automations", post(automations_disabled))
                .route(
                    "/automations/{id}",
                    get(automations_disabled)
                        .put(automations_disabled)
                        .patch(automations_disabled)
                        .delete(automations_disabled),
                )
                .route("/automations/filter", post(automations_disabled))
                .route("/automations/count", post(automations_disabled))
                .route("/automations/related-to/{resource_id}", get(automations_disabled))
                .route(
                    "/automations/owned-by/{resource_id}",
                    delete(automations_disabled),
                ),
        )
}
