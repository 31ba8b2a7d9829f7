//! The domain layer: what Prefect 2.20's server decides, as pure functions and types.
//! Nothing here talks to a database, a queue or the network; the store and HTTP layers
//! build on it, never the other way round.

pub mod access;
pub mod api_version;
pub mod block_checksum;
pub mod hydration;
pub mod invalid;
pub mod json_schema;
pub mod names;
pub mod orchestration;
pub mod python;
pub mod schedules;
pub mod scheduling;
pub mod states;
pub mod time;
