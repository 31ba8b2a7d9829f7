//! The block route families: `/block_types`, `/block_schemas`, `/block_documents`,
//! `/block_capabilities`.

mod documents;
mod schemas;
mod types;

use axum::routing::{get, post};
use axum::Router;
use stratus_shared::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/block_types", post(types::create))
        .route("/block_types/filter", post(types::filter))
        .route(
            "/block_types/install_system_block_types",
            post(types::install_system),
        )
        .route("/block_types/slug/{slug}", get(types::read_by_slug))
        .route(
            "/block_types/slug/{slug}/block_documents",
            get(documents::list_by_type_slug),
        )
        .route(
            "/block_types/slug/{slug}/block_documents/name/{name}",
            get(documents::read_by_type_slug_and_name),
        )
        .route(
            "/block_types/{id}",
            get(types::read).patch(types::update).delete(types::delete),
        )
        .route("/block_schemas", post(schemas::create))
        .route("/block_schemas/filter", post(schemas::filter))
        .route(
            "/block_schemas/checksum/{checksum}",
            get(schemas::read_by_checksum),
        )
        .route("/block_schemas/{id}", get(schemas::read).delete(schemas::delete))
        .route("/block_capabilities", get(schemas::capabilities))
        .route("/block_documents", post(documents::create))
        .route("/block_documents/filter", post(documents::filter))
        .route("/block_documents/count", post(documents::count))
        .route(
            "/block_documents/{id}",
            get(documents::read)
                .patch(documents::update)
                .delete(documents::delete),
        )
}

/// Slugs and document names: lowercase letters, digits and dashes.
pub(crate) fn is_slug(text: &str) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}
