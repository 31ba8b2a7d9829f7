//! The HTTP layer every function shares: the app state handlers receive, the JSON body
//! extractor and Prefect's request conventions, the error type rendered as Prefect's error
//! bodies, and serving a router on Lambda or locally. Route families live in `functions/`.

pub mod api_routes;
pub mod app;
pub mod auth;
pub mod error;
pub mod json;
pub mod openapi;
pub mod run_routes;
pub mod serve;
pub mod shape;
pub mod workspace_url;

pub use app::AppState;
pub use error::{ApiError, ApiResult};
pub use json::Body;
