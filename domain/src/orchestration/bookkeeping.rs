//! The global bookkeeping of Prefect 2.20's `src/prefect/server/orchestration/global_policy.py`: the transforms every transition gets, forced
//! or not, on the *final* proposed state, and nothing when that is None. (The state mirror
//! `state_type` / `state_name` / `state_timestamp` and the subflow parent-task mirroring
//! are applied by the database layer from [`super::Decision::state`].)

use super::engine::Transition;
use super::rules::pause_aware;
use super::RunKind;
use crate::states::StateType::*;

pub fn bookkeeping(t: &mut Transition<'_>) {
    let ctx = t.ctx;
    let (initial, run, kind) = (ctx.initial.as_ref(), &ctx.run, ctx.kind);
    let pause_aware = pause_aware(t);
    let Some(p) = t.proposed.as_mut() else {
        return;
    };
    let book = &mut t.book;
    let from = initial.map(|s| s.kind);

    // SetStartTime: the first time the run enters RUNNING.
    if p.kind == Running && book.start_time.is_none() {
        book.start_time = Some(p.timestamp);
    }
    // SetEndTime: cleared when leaving a terminal state for a non-terminal one; set on
    // entering a terminal state when the run started and has none.
    if from.is_some_and(|k| k.is_terminal()) && !p.kind.is_terminal() {
        book.end_time = None;
    }
    if p.kind.is_terminal() && book.start_time.is_some() && book.end_time.is_none() {
        book.end_time = Some(p.timestamp);
    }
    // IncrementRunTime: the time spent RUNNING.
    if let Some(running) = initial.filter(|s| s.kind == Running) {
        let spent = (p.timestamp - running.timestamp)
            .num_microseconds()
            .unwrap_or(0)
            .max(0);
        book.total_run_time_micros = book.total_run_time_micros.saturating_add(spent);
    }
    // SetExpectedStartTime: once.
    if book.expected_start_time.is_none() {
        book.expected_start_time = if p.kind == Scheduled {
            p.state_details.scheduled_time.or(Some(p.timestamp))
        } else {
            Some(p.timestamp)
        };
    }
    // SetNextScheduledStartTime: cleared when leaving SCHEDULED, set when entering it
    // (AwaitingRetry and Late included).
    if from == Some(Scheduled) {
        book.next_scheduled_start_time = None;
    }
    if p.kind == Scheduled {
        book.next_scheduled_start_time = p.state_details.scheduled_time;
    }

    match kind {
        RunKind::Flow => {
            // UpdateStateDetails.
            p.state_details.flow_run_id = Some(run.id);
            // UpdateSubflowStateDetails: a subflow's states point at its parent task run.
            if let Some(parent_task) = run.parent_task_run_id {
                p.state_details.task_run_id = Some(parent_task);
            }
            // IncrementFlowRunCount: not when resuming (API >= 0.8.4).
            if p.kind == Running && !(pause_aware && book.flow_policy.resuming) {
                book.run_count = book.run_count.saturating_add(1);
            }
            // RemoveResumingIndicator.
            if p.kind == Running || p.kind.is_terminal() {
                book.flow_policy.resuming = false;
            }
        }
        RunKind::Task => {
            // UpdateStateDetails.
            p.state_details.flow_run_id = run.flow_run_id;
            p.state_details.task_run_id = Some(run.id);
            // IncrementTaskRunCount.
            if p.kind == Running {
                book.run_count = book.run_count.saturating_add(1);
            }
        }
    }
}
