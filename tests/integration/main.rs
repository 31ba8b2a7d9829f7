//! The integration tests, one binary: each module is a family or subsystem against real
//! Postgres (and LocalStack where named), through `common::TestApp`.

mod access;
mod api_admin;
mod api_artifacts;
mod api_blocks;
mod api_concurrency;
mod api_contract;
mod api_deployments;
mod api_docs;
mod api_flow_runs;
mod api_flows;
mod api_logs;
mod api_root;
mod api_saved_searches;
mod api_task_runs;
mod api_variables;
mod api_work_pools;
mod api_work_queues;
mod architecture;
mod bounded_waits;
mod cli;
mod common;
mod database_faults;
mod function_schema;
mod hostile_input;
mod maintenance;
mod notifications;
mod query_plans;
mod queues;
mod scheduler;
mod secrets_at_rest;
mod ui;
mod workspaces;
