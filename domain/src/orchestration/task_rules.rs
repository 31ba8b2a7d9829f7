//! The rules of CoreTaskPolicy (Prefect 2.20's `src/prefect/server/orchestration/core_policy.py`) and the tag concurrency
//! transforms.

use rand::Rng;
use serde_json::Value;
use uuid::Uuid;

use super::engine::{After, Transition};
use super::rules::{has_persisted_result, later, type_name};
use crate::states::StateType::*;

/// Rule 1, CacheRetrieval (ALL → RUNNING), details F: a cache hit replaces the run with a
/// copy of the cached state, named `Cached`.
pub fn cache_retrieval(t: &mut Transition<'_>) {
    let details = &t.proposal().state_details;
    let has_key = details.cache_key.as_ref().is_some_and(|k| !k.is_empty());
    if !has_key || details.refresh_cache == Some(true) {
        return;
    }
    let Some(cached) = t.ctx.cached_state.clone() else {
        return;
    };
    let mut copy = cached;
    copy.id = Uuid::now_v7();
    copy.timestamp = t.stamp();
    copy.name = "Cached".to_string();
    // The bookkeeping points the copy's state_details at this run.
    t.reject(Some(copy), "Retrieved state from cache");
}

/// Rule 2, HandleTaskTerminalStateTransitions (terminal → ALL), details G.
pub fn handle_task_terminal_state_transitions(t: &mut Transition<'_>) {
    let Some(initial) = t.initial().cloned() else {
        return;
    };
    let proposed = t.proposal().kind;
    if matches!(proposed, Cancelling | Paused | Crashed) {
        t.abort(format!("Run is already {}.", type_name(&initial)));
        return;
    }
    if initial.kind == Completed && has_persisted_result(&initial) {
        t.reject(None, "This run is already completed.");
        return;
    }
    if !proposed.is_terminal() {
        // Resets the task's retries; undone (cleanup) if a later rule changes the type.
        t.book.run_count = 0;
    }
    let flow_retrying = t
        .ctx
        .parent_flow_run
        .as_ref()
        .is_some_and(|flow| t.book.flow_run_run_count < flow.run_count);
    if proposed == Running && flow_retrying {
        t.rename("Retrying");
    }
}

const FLOW_MUST_RUN: &str = "The enclosing flow must be running to begin task execution.";

/// Rule 3, PreventRunningTasksFromStoppedFlows (ALL → RUNNING), details H. Nothing is
/// checked when the enclosing flow run cannot be found, as in Prefect.
pub fn prevent_running_tasks_from_stopped_flows(t: &mut Transition<'_>) {
    let Some(flow) = t.ctx.parent_flow_run.as_ref() else {
        return;
    };
    let Some(flow_state) = flow.state.as_ref() else {
        t.abort(FLOW_MUST_RUN);
        return;
    };
    match flow_state.kind {
        Running => {}
        Paused => {
            let mut not_ready = t.new_state(Paused).named("NotReady");
            not_ready.state_details.pause_timeout = flow_state.state_details.pause_timeout;
            not_ready.state_details.pause_reschedule = flow_state.state_details.pause_reschedule;
            let reason = format!(
                "The flow is paused, new tasks can execute after resuming flow run: {}.",
                flow.id
            );
            t.reject(Some(not_ready), reason);
        }
        _ => t.abort(FLOW_MUST_RUN),
    }
}

/// How a pass over the tag limits failed.
enum SlotFailure {
    Abort(String),
    Wait(String),
}

/// Rule 4, SecureTaskConcurrencySlots (ALL → RUNNING), details I. For each limit on the
/// run's tags, in tag order:
/// * a limit of 0 aborts, a full limit waits; either way the slots taken earlier in this
///   pass are given back;
/// * otherwise the run takes a slot. Taking is idempotent: a slot the run already holds
///   is kept and does not count against the limit.
///
/// As in Prefect, the pass does not stop at a failure: limits after the last failure may
/// still give the run a slot, which it keeps while it waits. The last failure decides the
/// outcome. A later rule that changes the type gives every slot of this pass back (the
/// engine restores the limits as loaded).
pub fn secure_task_concurrency_slots(t: &mut Transition<'_>) {
    let run_id = t.ctx.run.id;
    let mut slots = t.slots.clone();
    let mut taken: Vec<usize> = Vec::new();
    let mut failure = None;
    for i in 0..slots.len() {
        let tag = slots[i].tag.clone();
        let held = slots[i].active_slots.contains(&run_id);
        let others = slots[i].active_slots.len() - usize::from(held);
        let outcome = if slots[i].limit == 0 {
            Some(SlotFailure::Abort(format!(
                "The concurrency limit on tag \"{tag}\" is 0 and will deadlock if the task tries to run again."
            )))
        } else if i64::try_from(others).unwrap_or(i64::MAX) >= i64::from(slots[i].limit) {
            Some(SlotFailure::Wait(format!(
                "Concurrency limit for the {tag} tag has been reached"
            )))
        } else {
            None
        };
        match outcome {
            Some(f) => {
                for &j in &taken {
                    slots[j].active_slots.retain(|id| *id != run_id);
                }
                failure = Some(f);
            }
            None if held => {}
            None => {
                slots[i].active_slots.push(run_id);
                taken.push(i);
            }
        }
    }
    match failure {
        Some(SlotFailure::Abort(reason)) => t.abort(reason),
        Some(SlotFailure::Wait(reason)) => t.delay(t.ctx.tag_slot_wait_seconds, reason),
        None => {}
    }
    t.slots = slots;
}

/// The base delay before retry number `run_count`: a list is indexed by attempt, its last
/// value repeating (and, as Python's `delay[-1]`, a run count of 0 takes the last value);
/// a number applies to every attempt.
pub fn base_retry_delay(retry_delay: Option<&Value>, run_count: i64) -> f64 {
    match retry_delay {
        Some(Value::Array(delays)) if !delays.is_empty() => {
            let len = delays.len() as i64;
            let mut i = (run_count - 1).min(len - 1);
            if i < 0 {
                i += len;
            }
            let i = usize::try_from(i.max(0)).unwrap_or(0);
            delays.get(i).and_then(Value::as_f64).unwrap_or(0.0)
        }
        Some(v) => v.as_f64().unwrap_or(0.0),
        None => 0.0,
    }
}

/// Prefect's `lower_clamp_multiple(k)`: the lower bound (as a multiple of the average) that
/// holds as much probability mass below the median as `k` does above it.
fn lower_clamp_multiple(k: f64) -> f64 {
    if k >= 50.0 {
        return 0.0;
    }
    let p = 2f64.powf(k);
    (p / (p - 1.0)).max(1e-10).log2()
}

/// Prefect's `clamped_poisson_interval`: an exponentially distributed draw around
/// `average`, clamped to `[average * lower_clamp_multiple(1 + factor), average * (1 +
/// factor)]`.
pub fn clamped_poisson_interval(average: f64, factor: f64, rng: &mut impl Rng) -> f64 {
    if average <= 0.0 || !average.is_finite() || factor.is_nan() || factor <= 0.0 {
        return average;
    }
    let upper_multiple = 1.0 + factor;
    let upper = average * upper_multiple;
    let lower = (average * lower_clamp_multiple(upper_multiple)).max(0.0);
    let cdf = |x: f64| 1.0 - (-x / average).exp();
    let (lo, hi) = (cdf(lower), cdf(upper));
    let u: f64 = if hi > lo { rng.random_range(lo..=hi) } else { lo };
    let draw = -(1.0 - u).max(1e-10).ln() * average;
    draw.clamp(lower, upper)
}

/// Rule 7, RetryFailedTasks (RUNNING → FAILED), details J.
pub fn retry_failed_tasks(t: &mut Transition<'_>) {
    if t.proposal().state_details.retriable == Some(false) {
        return;
    }
    let policy = t.book.task_policy.clone().normalized();
    let Some(retries) = policy.retries else {
        return;
    };
    let run_count = i64::from(t.book.run_count);
    if run_count > retries {
        return;
    }
    let base = base_retry_delay(policy.retry_delay.as_ref(), run_count);
    let delay = match policy.retry_jitter_factor {
        Some(factor) if factor > 0.0 => clamped_poisson_interval(base, factor, &mut rand::rng()),
        _ => base,
    };
    let proposal = t.proposal().clone();
    let mut retry = t.new_state(Scheduled).named("AwaitingRetry");
    retry.state_details.scheduled_time = Some(later(t.now(), delay));
    retry.message = proposal.message;
    retry.data = proposal.data;
    t.reject(Some(retry), "Retrying");
}

/// Rule 8, RenameReruns (ALL → RUNNING): a run that ran before is `Retrying` after
/// AwaitingRetry, else `Rerunning`.
pub fn rename_reruns(t: &mut Transition<'_>) {
    if t.book.run_count <= 0 {
        return;
    }
    if t.initial().is_some_and(|s| s.name == "AwaitingRetry") {
        t.rename("Retrying");
    } else {
        t.rename("Rerunning");
    }
}

/// Rule 9, UpdateFlowRunTrackerOnTasks (ALL → RUNNING): afterwards, the task remembers
/// which run of its flow it ran in.
pub fn update_flow_run_tracker_on_tasks(t: &mut Transition<'_>) {
    if let Some(flow) = &t.ctx.parent_flow_run {
        let count = flow.run_count;
        t.after(After::TrackFlowRunCount(count));
    }
}

/// Rule 10, CacheInsertion (ALL → COMPLETED): afterwards, a completed state with a cache
/// key is cached.
pub fn cache_insertion(t: &mut Transition<'_>) {
    t.after(After::InsertCache);
}

/// Rule 11, ReleaseTaskConcurrencySlots (universal, also in MinimalTaskPolicy): once the
/// run is in a state other than RUNNING or CANCELLING, it holds no tag slot.
pub fn release_task_concurrency_slots(t: &mut Transition<'_>) {
    let Some(kind) = t.proposed.as_ref().map(|p| p.kind) else {
        return;
    };
    if matches!(kind, Running | Cancelling) {
        return;
    }
    let run_id = t.ctx.run.id;
    for limit in &mut t.slots {
        limit.active_slots.retain(|id| *id != run_id);
    }
}
