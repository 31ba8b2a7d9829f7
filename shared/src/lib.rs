//! The library every Stratus function links.

pub use stratus_domain::{
    api_version, block_checksum, hydration, json_schema, names, orchestration, python, schedules, scheduling,
    states,
};

pub mod app;
pub mod config;
pub mod db;
pub mod error;
pub mod filters;
pub mod json;
pub mod maintenance;
pub mod notifications;
pub mod outbox;
pub mod queue;
pub mod run_routes;
pub mod runs_service;
pub mod scheduler;
pub mod serve;
pub mod shape;
pub mod storage;

pub use app::{ApiVersion, AppState};
pub use error::{ApiError, ApiResult};
pub use json::Body;
pub mod system_blocks;
pub mod url;
