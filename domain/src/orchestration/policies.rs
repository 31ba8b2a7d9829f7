//! The policies of Prefect 2.20's `src/prefect/server/orchestration/core_policy.py` and `policies.py`: which rules run, for which transitions, in which order.

use super::engine::{Rule, RuleSpec, States};
use super::{flow_rules as flow, rules as shared, task_rules as task};
use crate::states::StateType::*;

fn rule(name: &'static str, from: States, to: States, run: Rule) -> RuleSpec {
    RuleSpec {
        name,
        from,
        to,
        run,
        universal: false,
    }
}

fn universal(name: &'static str, run: Rule) -> RuleSpec {
    RuleSpec {
        name,
        from: States::Any,
        to: States::Any,
        run,
        universal: true,
    }
}

const ALL: States = States::Any;
const TERMINAL: States = States::Terminal;
const CLAIMED: States = States::Only(&[Pending, Cancelling, Running, Cancelled]);

fn prevent_pending_transitions() -> RuleSpec {
    rule(
        "PreventPendingTransitions",
        CLAIMED,
        States::Only(&[Pending]),
        shared::prevent_pending_transitions,
    )
}

fn bypass_cancelling_flow_runs_with_no_infra() -> RuleSpec {
    rule(
        "BypassCancellingFlowRunsWithNoInfra",
        States::Only(&[Scheduled, Paused]),
        States::Only(&[Cancelling]),
        flow::bypass_cancelling_flow_runs_with_no_infra,
    )
}

fn add_unknown_result() -> RuleSpec {
    rule(
        "AddUnknownResult",
        States::Only(&[Failed, Crashed]),
        States::Only(&[Completed]),
        shared::add_unknown_result,
    )
}

fn copy_scheduled_time() -> RuleSpec {
    rule(
        "CopyScheduledTime",
        States::Only(&[Scheduled]),
        States::Only(&[Pending]),
        shared::copy_scheduled_time,
    )
}

fn wait_for_scheduled_time() -> RuleSpec {
    rule(
        "WaitForScheduledTime",
        States::Only(&[Scheduled, Pending]),
        States::Only(&[Running]),
        shared::wait_for_scheduled_time,
    )
}

fn release_task_concurrency_slots() -> RuleSpec {
    universal(
        "ReleaseTaskConcurrencySlots",
        task::release_task_concurrency_slots,
    )
}

/// CoreFlowPolicy (rule 12, events instrumentation, is not implemented: events are off).
pub fn core_flow_policy() -> Vec<RuleSpec> {
    vec![
        rule(
            "PreventDuplicateTransitions",
            ALL,
            ALL,
            flow::prevent_duplicate_transitions,
        ),
        rule(
            "HandleFlowTerminalStateTransitions",
            TERMINAL,
            ALL,
            flow::handle_flow_terminal_state_transitions,
        ),
        rule(
            "EnforceCancellingToCancelledTransition",
            States::Only(&[Cancelling, Cancelled]),
            States::AllBut(&[Cancelled]),
            flow::enforce_cancelling_to_cancelled_transition,
        ),
        bypass_cancelling_flow_runs_with_no_infra(),
        prevent_pending_transitions(),
        rule(
            "EnsureOnlyScheduledFlowsMarkedLate",
            ALL,
            States::Only(&[Scheduled]),
            flow::ensure_only_scheduled_flows_marked_late,
        ),
        rule(
            "HandlePausingFlows",
            ALL,
            States::Only(&[Paused]),
            flow::handle_pausing_flows,
        ),
        rule(
            "HandleResumingPausedFlows",
            States::Only(&[Paused]),
            ALL,
            flow::handle_resuming_paused_flows,
        ),
        copy_scheduled_time(),
        wait_for_scheduled_time(),
        rule(
            "RetryFailedFlows",
            States::Only(&[Running]),
            States::Only(&[Failed]),
            flow::retry_failed_flows,
        ),
    ]
}

/// MinimalFlowPolicy, for forced transitions.
pub fn minimal_flow_policy() -> Vec<RuleSpec> {
    vec![add_unknown_result(), bypass_cancelling_flow_runs_with_no_infra()]
}

/// CoreTaskPolicy's rules, with or without PreventRunningTasksFromStoppedFlows.
fn core_task_rules(check_enclosing_flow: bool) -> Vec<RuleSpec> {
    let mut rules = vec![
        rule(
            "CacheRetrieval",
            ALL,
            States::Only(&[Running]),
            task::cache_retrieval,
        ),
        rule(
            "HandleTaskTerminalStateTransitions",
            TERMINAL,
            ALL,
            task::handle_task_terminal_state_transitions,
        ),
    ];
    if check_enclosing_flow {
        rules.push(rule(
            "PreventRunningTasksFromStoppedFlows",
            ALL,
            States::Only(&[Running]),
            task::prevent_running_tasks_from_stopped_flows,
        ));
    }
    rules.extend([
        rule(
            "SecureTaskConcurrencySlots",
            ALL,
            States::Only(&[Running]),
            task::secure_task_concurrency_slots,
        ),
        copy_scheduled_time(),
        wait_for_scheduled_time(),
        rule(
            "RetryFailedTasks",
            States::Only(&[Running]),
            States::Only(&[Failed]),
            task::retry_failed_tasks,
        ),
        rule("RenameReruns", ALL, States::Only(&[Running]), task::rename_reruns),
        rule(
            "UpdateFlowRunTrackerOnTasks",
            ALL,
            States::Only(&[Running]),
            task::update_flow_run_tracker_on_tasks,
        ),
        rule(
            "CacheInsertion",
            ALL,
            States::Only(&[Completed]),
            task::cache_insertion,
        ),
        release_task_concurrency_slots(),
    ]);
    rules
}

/// CoreTaskPolicy.
pub fn core_task_policy() -> Vec<RuleSpec> {
    core_task_rules(true)
}

/// MinimalTaskPolicy, for forced transitions.
pub fn minimal_task_policy() -> Vec<RuleSpec> {
    vec![release_task_concurrency_slots(), add_unknown_result()]
}

/// AutonomousTaskPolicy, for task runs without a flow run (forced or not): claimed once,
/// like flow runs, and never checked against an enclosing flow.
/// (EnqueueScheduledTasks needs experimental task scheduling, which is off.)
pub fn autonomous_task_policy() -> Vec<RuleSpec> {
    let mut rules = vec![prevent_pending_transitions()];
    rules.extend(core_task_rules(false));
    rules
}
