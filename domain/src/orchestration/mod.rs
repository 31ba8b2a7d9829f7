//! The orchestration policy as pure code: given everything a transition depends on, decide
//! what happens. The database layer (`db::transitions`) loads a [`TransitionContext`] under
//! a row lock, calls [`orchestrate`], and applies the [`Decision`] in the same transaction.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

mod bookkeeping;
mod engine;
mod flow_rules;
mod policies;
mod rules;
mod task_rules;
#[cfg(test)]
mod tests;

use crate::api_version::ApiVersion;
use crate::states::State;
use crate::time::null_default;

/// `empirical_policy` of a flow run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FlowRunPolicy {
    #[serde(default, deserialize_with = "null_default")]
    pub max_retries: i64,
    #[serde(default, deserialize_with = "null_default")]
    pub retry_delay_seconds: f64,
    #[serde(default)]
    pub retries: Option<i64>,
    #[serde(default)]
    pub retry_delay: Option<i64>,
    #[serde(default, deserialize_with = "null_default")]
    pub pause_keys: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub resuming: bool,
    #[serde(default)]
    pub retry_type: Option<String>,
}

impl Default for FlowRunPolicy {
    fn default() -> Self {
        FlowRunPolicy {
            max_retries: 0,
            retry_delay_seconds: 0.0,
            retries: None,
            retry_delay: None,
            pause_keys: Vec::new(),
            resuming: false,
            retry_type: None,
        }
    }
}

impl FlowRunPolicy {
    /// Mirrors the deprecated `max_retries` / `retry_delay_seconds` into `retries` /
    /// `retry_delay` when those are unset, as Prefect's validator does.
    pub fn normalized(mut self) -> Self {
        if self.retries.is_none() && self.max_retries != 0 {
            self.retries = Some(self.max_retries);
        }
        if self.retry_delay.is_none() && self.retry_delay_seconds != 0.0 {
            self.retry_delay = Some(self.retry_delay_seconds as i64);
        }
        self
    }
}

/// `empirical_policy` of a task run. `retry_delay` is an int, a float or a list of ints.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TaskRunPolicy {
    #[serde(default, deserialize_with = "null_default")]
    pub max_retries: i64,
    #[serde(default, deserialize_with = "null_default")]
    pub retry_delay_seconds: f64,
    #[serde(default)]
    pub retries: Option<i64>,
    #[serde(default)]
    pub retry_delay: Option<Value>,
    #[serde(default)]
    pub retry_jitter_factor: Option<f64>,
}

impl TaskRunPolicy {
    pub fn normalized(mut self) -> Self {
        if self.retries.is_none() && self.max_retries != 0 {
            self.retries = Some(self.max_retries);
        }
        if self.retry_delay.is_none() && self.retry_delay_seconds != 0.0 {
            self.retry_delay = Some(Value::from(self.retry_delay_seconds));
        }
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunKind {
    Flow,
    Task,
}

/// The bookkeeping columns of a run row (flow or task), before or after a transition.
#[derive(Debug, Clone, PartialEq)]
pub struct RunBook {
    pub run_count: i32,
    pub start_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
    /// `total_run_time` in microseconds.
    pub total_run_time_micros: i64,
    pub expected_start_time: Option<DateTime<Utc>>,
    pub next_scheduled_start_time: Option<DateTime<Utc>>,
    /// Flow runs only: the run's `empirical_policy`.
    pub flow_policy: FlowRunPolicy,
    /// Task runs only: the run's `empirical_policy`.
    pub task_policy: TaskRunPolicy,
    /// Task runs only: `flow_run_run_count`.
    pub flow_run_run_count: i32,
}

impl RunBook {
    /// A run before its first state, as its row is when inserted bare.
    pub fn before_first_state(flow_policy: FlowRunPolicy, task_policy: TaskRunPolicy) -> Self {
        RunBook {
            run_count: 0,
            start_time: None,
            end_time: None,
            total_run_time_micros: 0,
            expected_start_time: None,
            next_scheduled_start_time: None,
            flow_policy,
            task_policy,
            flow_run_run_count: 0,
        }
    }
}

/// What the run is, beyond its bookkeeping.
#[derive(Debug, Clone, PartialEq)]
pub struct RunFacts {
    pub id: Uuid,
    /// Flow runs: the deployment, if any.
    pub deployment_id: Option<Uuid>,
    /// Flow runs: the subflow's dummy parent task run, if any.
    pub parent_task_run_id: Option<Uuid>,
    /// Flow runs: the process id or similar set by the agent.
    pub infrastructure_pid: Option<String>,
    /// Task runs: the enclosing flow run (None for autonomous tasks).
    pub flow_run_id: Option<Uuid>,
    pub tags: Vec<String>,
}

/// Task runs: the enclosing flow run's current state, as the task rules need it.
#[derive(Debug, Clone, PartialEq)]
pub struct ParentFlowRun {
    pub id: Uuid,
    pub state: Option<State>,
    pub run_count: i32,
}

/// A v1 tag concurrency limit (`concurrency_limit` row), locked for the transition.
#[derive(Debug, Clone, PartialEq)]
pub struct TagLimit {
    pub tag: String,
    pub limit: i32,
    pub active_slots: Vec<Uuid>,
}

/// Everything a transition depends on. Loaded by the database layer under a row lock.
#[derive(Debug, Clone)]
pub struct TransitionContext {
    pub kind: RunKind,
    pub force: bool,
    pub api_version: ApiVersion,
    pub now: DateTime<Utc>,
    /// The run's current state, or None for a run without one.
    pub initial: Option<State>,
    /// The proposal, already stamped by the server (`StateCreate::into_state`).
    pub proposed: State,
    pub run: RunFacts,
    pub book: RunBook,
    /// Task runs: the enclosing flow run (loaded when the proposal is RUNNING).
    pub parent_flow_run: Option<ParentFlowRun>,
    /// Task runs: the newest unexpired cached state for the proposal's `cache_key`
    /// (loaded when the proposal is RUNNING with a cache key and no `refresh_cache`).
    pub cached_state: Option<State>,
    /// Task runs: the v1 limits whose tag is on the run, sorted by tag.
    pub tag_limits: Vec<TagLimit>,
    /// `PREFECT_TASK_RUN_TAG_CONCURRENCY_SLOT_WAIT_SECONDS`.
    pub tag_slot_wait_seconds: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    Accept,
    Reject,
    Wait,
    Abort,
}

/// `details` of an OrchestrationResult.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Details {
    AcceptDetails,
    RejectDetails { reason: String },
    AbortDetails { reason: String },
    WaitDetails { delay_seconds: i64, reason: String },
}

/// The outcome of a transition, for the database layer to apply.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub status: Status,
    pub details: Details,
    /// The state to write as the run's new current state; None writes nothing and the
    /// response carries the current state.
    pub state: Option<State>,
    /// The run's bookkeeping after the transition (equal to the input when nothing changed).
    pub book: RunBook,
    /// Task runs: the limits whose `active_slots` changed, with their new slots.
    pub tag_limits: Vec<TagLimit>,
    /// Task runs: insert a `task_run_state_cache` row `(cache_key, cache_expiration)` for the
    /// written state.
    pub cache_insert: Option<(String, Option<DateTime<Utc>>)>,
}

/// Runs the policy for this transition: the core (or minimal, when forced) policy's
/// rules in priority order, then the global bookkeeping of the final proposed state.
pub fn orchestrate(ctx: &TransitionContext) -> Decision {
    engine::run(ctx, &policy_for(ctx), bookkeeping::bookkeeping)
}

/// The policy a transition gets (as Prefect 2.20's `src/prefect/server/api/flow_runs.py` `set_flow_run_state` picks it).
fn policy_for(ctx: &TransitionContext) -> Vec<engine::RuleSpec> {
    match ctx.kind {
        RunKind::Flow if ctx.force => policies::minimal_flow_policy(),
        RunKind::Flow => policies::core_flow_policy(),
        // Autonomous tasks get their own policy even when forced.
        RunKind::Task if ctx.run.flow_run_id.is_none() => policies::autonomous_task_policy(),
        RunKind::Task if ctx.force => policies::minimal_task_policy(),
        RunKind::Task => policies::core_task_policy(),
    }
}
