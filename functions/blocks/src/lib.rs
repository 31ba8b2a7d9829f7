//! The `blocks` route family.

use axum::Router;
use stratus_shared::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
}
