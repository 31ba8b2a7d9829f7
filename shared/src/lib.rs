//! The library every Stratus function links.

pub mod api_version;
pub mod app;
pub mod block_checksum;
pub mod config;
pub mod db;
pub mod error;
pub mod filters;
pub mod hydration;
pub mod json;
pub mod json_schema;
pub mod maintenance;
pub mod names;
pub mod notifications;
pub mod outbox;
pub mod python;
pub mod queue;
pub mod run_routes;
pub mod runs_service;
pub mod scheduler;
pub mod schedules;
pub mod scheduling;
pub mod serve;
pub mod shape;
pub mod storage;

pub use app::{ApiVersion, AppState};
pub use error::{ApiError, ApiResult};
pub use json::Body;
pub mod orchestration;
pub mod states;
pub mod system_blocks;
pub mod url;
