//! The rules of CoreFlowPolicy (Prefect 2.20's `src/prefect/server/orchestration/core_policy.py`).

use uuid::Uuid;

use super::engine::{After, Transition};
use super::rules::{has_persisted_result, later, pause_aware, type_name};
use crate::states::{State, StateType::*};

/// Rule 1, PreventDuplicateTransitions (ALL → ALL): a retried request is answered with the
/// state it already made.
pub fn prevent_duplicate_transitions(t: &mut Transition<'_>) {
    let initial = t.initial().and_then(|s| s.state_details.transition_id);
    let proposed = t.proposal().state_details.transition_id;
    if initial.is_some() && initial == proposed {
        t.reject(None, "This run has already made this state transition.");
    }
}

/// Rule 2, HandleFlowTerminalStateTransitions (terminal → ALL), details A.
pub fn handle_flow_terminal_state_transitions(t: &mut Transition<'_>) {
    let Some(initial) = t.initial().cloned() else {
        return;
    };
    let proposed = t.proposal().kind;
    if matches!(proposed, Cancelling | Paused | Crashed) {
        t.abort(format!(
            "Run is already in terminal state {}.",
            type_name(&initial)
        ));
        return;
    }
    if initial.kind == Completed && !proposed.is_terminal() && has_persisted_result(&initial) {
        t.reject(None, "Run is already COMPLETED.");
        return;
    }
    if proposed == Scheduled && t.ctx.run.deployment_id.is_none() {
        t.abort("Cannot reschedule a run without an associated deployment.");
        return;
    }
    if !proposed.is_terminal() && pause_aware(t) {
        // Undone (the cleanup restores the policy) if a later rule changes the type.
        let policy = &mut t.book.flow_policy;
        policy.resuming = false;
        policy.pause_keys.clear();
        policy.retry_type = (proposed == Scheduled).then(|| "reschedule".to_string());
    }
}

/// Rule 3, EnforceCancellingToCancelledTransition ({CANCELLING, CANCELLED} → ALL but
/// CANCELLED).
pub fn enforce_cancelling_to_cancelled_transition(t: &mut Transition<'_>) {
    t.reject(
        None,
        "Cannot transition flows that are cancelling to a state other than Cancelled.",
    );
}

/// Rule 4, BypassCancellingFlowRunsWithNoInfra ({SCHEDULED, PAUSED} → CANCELLING),
/// details B. Also in MinimalFlowPolicy.
pub fn bypass_cancelling_flow_runs_with_no_infra(t: &mut Transition<'_>) {
    let Some(initial) = t.initial().cloned() else {
        return;
    };
    let no_infra = t.ctx.run.infrastructure_pid.as_deref().is_none_or(str::is_empty);
    if (initial.kind == Scheduled && no_infra) || initial.name == "Resuming" {
        let cancelled = t.new_state(Cancelled);
        t.reject(
            Some(cancelled),
            "Scheduled flow run has no infrastructure to terminate.",
        );
    } else if initial.kind == Paused && initial.state_details.pause_reschedule {
        let cancelled = t.new_state(Cancelled);
        t.reject(
            Some(cancelled),
            "Suspended flow run has no infrastructure to terminate.",
        );
    }
}

/// Rule 6, EnsureOnlyScheduledFlowsMarkedLate (ALL → SCHEDULED).
pub fn ensure_only_scheduled_flows_marked_late(t: &mut Transition<'_>) {
    if t.proposal().name == "Late" && t.initial_type() != Some(Scheduled) {
        t.reject(None, "Only scheduled flows can be marked late.");
    }
}

/// "suspend" for a proposal named `Suspended`, else "pause".
fn pause_verb(proposal: &State) -> &'static str {
    if proposal.name == "Suspended" {
        "suspend"
    } else {
        "pause"
    }
}

/// Rule 7, HandlePausingFlows (ALL → PAUSED), details C.
pub fn handle_pausing_flows(t: &mut Transition<'_>) {
    let verb = pause_verb(t.proposal());
    let Some(initial) = t.initial_type() else {
        t.abort(format!("Cannot {verb} flows with no state."));
        return;
    };
    if initial != Running {
        t.reject(
            None,
            format!("Cannot {verb} flows that are not currently running."),
        );
        return;
    }
    let key = t
        .proposal()
        .state_details
        .pause_key
        .clone()
        .unwrap_or_else(|| Uuid::new_v4().to_string());
    if t.book.flow_policy.pause_keys.contains(&key) {
        t.reject(None, format!("This {verb} has already fired."));
        return;
    }
    if t.proposal().state_details.pause_reschedule {
        if t.ctx.run.parent_task_run_id.is_some() {
            t.abort(format!("Cannot {verb} subflows."));
            return;
        }
        if t.ctx.run.deployment_id.is_none() {
            t.abort(format!("Cannot {verb} flows without a deployment."));
            return;
        }
    }
    t.after(After::AddPauseKey(key));
}

/// Rule 8, HandleResumingPausedFlows (PAUSED → ALL), details D. As in Prefect, the verb
/// and the name in the messages come from the *proposed* state ("The flow was running and
/// never resumed." for an expired pause resumed with Running).
pub fn handle_resuming_paused_flows(t: &mut Transition<'_>) {
    let Some(initial) = t.initial().cloned() else {
        return;
    };
    let proposal = t.proposal().clone();
    let kind = proposal.kind;
    if !(matches!(kind, Running | Scheduled) || kind.is_terminal()) {
        t.reject(
            None,
            format!(
                "This run cannot transition to the {} state from the {} state.",
                type_name(&proposal),
                type_name(&initial)
            ),
        );
        return;
    }
    let verb = pause_verb(&proposal);
    let display_name = if proposal.name.is_empty() {
        kind.as_str().to_lowercase()
    } else {
        proposal.name.to_lowercase()
    };
    if initial.state_details.pause_reschedule && t.ctx.run.deployment_id.is_none() {
        t.reject(
            None,
            format!("Cannot reschedule a {display_name} flow run without a deployment."),
        );
        return;
    }
    if let Some(timeout) = initial.state_details.pause_timeout {
        if timeout < t.now() {
            let failed = t
                .new_state(Failed)
                .with_message(format!("The flow was {display_name} and never resumed."));
            t.reject(
                Some(failed),
                format!("The flow run {verb} has timed out and can no longer resume."),
            );
            return;
        }
    }
    t.after(After::SetResuming);
}

/// Rule 11, RetryFailedFlows (RUNNING → FAILED), details E. (The API < 0.8.3 behaviour of
/// also forcing the flow's FAILED task runs to AwaitingRetry is not implemented.)
pub fn retry_failed_flows(t: &mut Transition<'_>) {
    let policy = t.book.flow_policy.clone().normalized();
    let Some(retries) = policy.retries else {
        return;
    };
    if i64::from(t.book.run_count) > retries {
        return;
    }
    let proposal = t.proposal().clone();
    let mut retry = t.new_state(Scheduled).named("AwaitingRetry");
    retry.state_details.scheduled_time = Some(later(t.now(), policy.retry_delay.unwrap_or(0) as f64));
    retry.message = proposal.message;
    retry.data = proposal.data;
    t.reject(Some(retry), "Retrying");
    // This rule made the change, so its own policy update stands.
    if pause_aware(t) {
        let p = &mut t.book.flow_policy;
        p.resuming = false;
        p.pause_keys.clear();
        p.retry_type = Some("in_process".to_string());
    }
}
