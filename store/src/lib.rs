//! The store layer: every SQL statement of Stratus (one module per table family under
//! `db/`), the message queue port with its Postgres adapter, the outbox and notification
//! publishing, and the services that combine them: the runs service (the one owner of run
//! state changes), the scheduler tick and the upkeep passes. It knows nothing of HTTP.

pub mod config;
pub mod db;
pub mod error;
pub mod filters;
pub mod keyring;
pub mod maintenance;
pub mod notifications;
pub mod outbox;
pub mod queue;
pub mod runs_service;
pub mod scheduler;
pub mod storage;
pub mod system_blocks;
pub mod tenancy;
pub mod url;

pub use error::{SetupError, StoreError, StoreResult};
