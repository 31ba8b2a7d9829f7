//! Rule-by-rule and transition-by-transition tests of the policy, without a database.
//!
//! Most tests are tables of [`Case`]s: a context built by `flow(..)` / `task(..)` and a
//! setup closure, and the exact status, resulting state type and reason expected.

use chrono::{DateTime, Duration, Utc};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::json;
use uuid::Uuid;

use super::*;
use crate::states::{State, StateType, StateType::*};

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-24T12:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn secs(s: i64) -> Duration {
    Duration::seconds(s)
}

/// A state of this type, as the run's current state, stamped 10 s ago.
fn state(kind: StateType) -> State {
    State::new(kind, now() - secs(10))
}

fn named(kind: StateType, name: &str) -> State {
    state(kind).named(name)
}

fn book() -> RunBook {
    RunBook::before_first_state(FlowRunPolicy::default(), TaskRunPolicy::default())
}

fn ctx(kind: RunKind, initial: Option<State>, proposed: State) -> TransitionContext {
    TransitionContext {
        kind,
        force: false,
        api_version: crate::api_version::SERVER_API_VERSION,
        now: now(),
        initial,
        proposed: State {
            timestamp: now(),
            ..proposed
        },
        run: RunFacts {
            id: Uuid::new_v4(),
            deployment_id: None,
            parent_task_run_id: None,
            infrastructure_pid: None,
            flow_run_id: (kind == RunKind::Task).then(Uuid::new_v4),
            tags: Vec::new(),
        },
        book: book(),
        parent_flow_run: None,
        cached_state: None,
        tag_limits: Vec::new(),
        tag_slot_wait_seconds: 30,
    }
}

/// A flow run transition from a state of type `initial` (or none) to `proposed`.
fn flow(initial: Option<StateType>, proposed: StateType) -> TransitionContext {
    ctx(RunKind::Flow, initial.map(state), State::new(proposed, now()))
}

/// A task run transition inside a RUNNING flow run that has run once.
fn task(initial: Option<StateType>, proposed: StateType) -> TransitionContext {
    let mut c = ctx(RunKind::Task, initial.map(state), State::new(proposed, now()));
    c.parent_flow_run = c.run.flow_run_id.map(|id| ParentFlowRun {
        id,
        state: Some(state(Running)),
        run_count: 1,
    });
    c.book.flow_run_run_count = 1;
    c
}

/// A task run without a flow run.
fn autonomous(initial: Option<StateType>, proposed: StateType) -> TransitionContext {
    let mut c = ctx(RunKind::Task, initial.map(state), State::new(proposed, now()));
    c.run.flow_run_id = None;
    c
}

trait With {
    fn with(self, f: impl FnOnce(&mut TransitionContext)) -> Self;
}

impl With for TransitionContext {
    fn with(mut self, f: impl FnOnce(&mut TransitionContext)) -> Self {
        f(&mut self);
        self
    }
}

/// The context's initial state, which the test set.
fn init(c: &mut TransitionContext) -> &mut State {
    c.initial.as_mut().expect("the case has an initial state")
}

fn reason(d: &Decision) -> String {
    match &d.details {
        Details::AcceptDetails => String::new(),
        Details::RejectDetails { reason } | Details::AbortDetails { reason } => reason.clone(),
        Details::WaitDetails { reason, .. } => reason.clone(),
    }
}

fn persisted() -> serde_json::Value {
    json!({"type": "reference", "storage_key": "/results/abc", "serializer_type": "pickle"})
}

/// One expected outcome: status, the resulting state's type (None: nothing written) and
/// the exact reason ("" for ACCEPT).
struct Case {
    what: &'static str,
    ctx: TransitionContext,
    status: Status,
    result: Option<StateType>,
    reason: &'static str,
}

fn case(
    what: &'static str,
    ctx: TransitionContext,
    status: Status,
    result: Option<StateType>,
    reason: &'static str,
) -> Case {
    Case {
        what,
        ctx,
        status,
        result,
        reason,
    }
}

fn accept(what: &'static str, ctx: TransitionContext) -> Case {
    let kind = ctx.proposed.kind;
    case(what, ctx, Status::Accept, Some(kind), "")
}

fn check(cases: Vec<Case>) {
    for c in cases {
        let d = orchestrate(&c.ctx);
        let label = format!(
            "{} ({:?} -> {:?})",
            c.what,
            c.ctx.initial.as_ref().map(|s| s.kind),
            c.ctx.proposed.kind
        );
        assert_eq!(d.status, c.status, "{label}: {d:?}");
        assert_eq!(d.state.as_ref().map(|s| s.kind), c.result, "{label}: {d:?}");
        assert_eq!(reason(&d), c.reason, "{label}");
        if c.status == Status::Accept {
            assert_eq!(d.details, Details::AcceptDetails, "{label}");
        }
        if matches!(c.status, Status::Wait | Status::Abort) {
            assert!(d.state.is_none(), "{label}: WAIT and ABORT write nothing");
            assert_eq!(d.book, c.ctx.book, "{label}: nothing is booked");
        }
    }
}

// ---- CoreFlowPolicy ------------------------------------------------------------------------

#[test]
fn prevent_duplicate_transitions() {
    use Status::*;
    let id = Uuid::new_v4();
    check(vec![
        case(
            "same transition id",
            flow(Some(Running), Completed).with(|c| {
                init(c).state_details.transition_id = Some(id);
                c.proposed.state_details.transition_id = Some(id);
            }),
            Reject,
            None,
            "This run has already made this state transition.",
        ),
        accept(
            "another transition id",
            flow(Some(Running), Completed).with(|c| {
                init(c).state_details.transition_id = Some(id);
                c.proposed.state_details.transition_id = Some(Uuid::new_v4());
            }),
        ),
        accept("no transition id on either", flow(Some(Running), Completed)),
        accept(
            "no initial state",
            flow(None, Pending).with(|c| c.proposed.state_details.transition_id = Some(id)),
        ),
    ]);
}

#[test]
fn handle_flow_terminal_state_transitions() {
    use Status::*;
    let deployment = Some(Uuid::new_v4());
    check(vec![
        case(
            "terminal to crashed",
            flow(Some(Completed), Crashed),
            Abort,
            None,
            "Run is already in terminal state COMPLETED.",
        ),
        case(
            "terminal to paused",
            flow(Some(Failed), Paused),
            Abort,
            None,
            "Run is already in terminal state FAILED.",
        ),
        case(
            "terminal to cancelling (rule 2 before rule 3)",
            flow(Some(Cancelled), Cancelling),
            Abort,
            None,
            "Run is already in terminal state CANCELLED.",
        ),
        case(
            "completed with a persisted result, rerun",
            flow(Some(Completed), Running).with(|c| init(c).data = Some(persisted())),
            Reject,
            None,
            "Run is already COMPLETED.",
        ),
        case(
            "completed with a persisted result, rescheduled",
            flow(Some(Completed), Scheduled).with(|c| {
                init(c).data = Some(persisted());
                c.run.deployment_id = deployment;
            }),
            Reject,
            None,
            "Run is already COMPLETED.",
        ),
        accept(
            "completed with a persisted result, to another final state",
            flow(Some(Completed), Failed).with(|c| init(c).data = Some(persisted())),
        ),
        accept(
            "completed with an unpersisted result, rerun",
            flow(Some(Completed), Running).with(|c| init(c).data = Some(json!({"type": "unpersisted"}))),
        ),
        accept(
            "completed with empty data (falsy in Python), rerun",
            flow(Some(Completed), Running).with(|c| init(c).data = Some(json!({}))),
        ),
        case(
            "rescheduled without a deployment",
            flow(Some(Failed), Scheduled),
            Abort,
            None,
            "Cannot reschedule a run without an associated deployment.",
        ),
        accept(
            "rescheduled with a deployment",
            flow(Some(Failed), Scheduled).with(|c| c.run.deployment_id = deployment),
        ),
        accept("crashed, rerun", flow(Some(Crashed), Running)),
        accept("failed, claimed again", flow(Some(Failed), Pending)),
    ]);
}

#[test]
fn leaving_a_terminal_state_resets_the_pause_and_retry_policy() {
    let dirty = |c: &mut TransitionContext| {
        c.book.flow_policy.pause_keys = vec!["k".into()];
        c.book.flow_policy.resuming = true;
        c.book.flow_policy.retry_type = Some("in_process".into());
    };
    let d = orchestrate(&flow(Some(Failed), Pending).with(dirty));
    assert_eq!(d.book.flow_policy.pause_keys, Vec::<String>::new());
    assert_eq!(d.book.flow_policy.retry_type, None);
    assert!(!d.book.flow_policy.resuming);

    let d = orchestrate(&flow(Some(Failed), Scheduled).with(|c| {
        dirty(c);
        c.run.deployment_id = Some(Uuid::new_v4());
    }));
    assert_eq!(d.book.flow_policy.retry_type.as_deref(), Some("reschedule"));
    assert!(d.book.flow_policy.pause_keys.is_empty());

    // To another final state, the keys and retry type stay (the bookkeeping clears
    // `resuming` on any final state).
    let c = flow(Some(Failed), Completed).with(dirty);
    let d = orchestrate(&c);
    assert_eq!(d.book.flow_policy.pause_keys, vec!["k".to_string()]);
    assert_eq!(d.book.flow_policy.retry_type.as_deref(), Some("in_process"));

    // Before API 0.8.4 pauses do not exist and nothing is reset.
    let c = flow(Some(Failed), Pending).with(|c| {
        dirty(c);
        c.api_version = ApiVersion(0, 8, 3);
    });
    assert_eq!(orchestrate(&c).book.flow_policy, c.book.flow_policy);
}

#[test]
fn enforce_cancelling_to_cancelled_transition() {
    use Status::*;
    const WHY: &str = "Cannot transition flows that are cancelling to a state other than Cancelled.";
    check(vec![
        case(
            "cancelling to running",
            flow(Some(Cancelling), Running),
            Reject,
            None,
            WHY,
        ),
        case(
            "cancelling to completed",
            flow(Some(Cancelling), Completed),
            Reject,
            None,
            WHY,
        ),
        case(
            "cancelling to pending (rule 3 before rule 5)",
            flow(Some(Cancelling), Pending),
            Reject,
            None,
            WHY,
        ),
        case(
            "cancelled to running",
            flow(Some(Cancelled), Running),
            Reject,
            None,
            WHY,
        ),
        case(
            "cancelled to pending",
            flow(Some(Cancelled), Pending),
            Reject,
            None,
            WHY,
        ),
        case(
            "cancelled to scheduled with a deployment",
            flow(Some(Cancelled), Scheduled).with(|c| c.run.deployment_id = Some(Uuid::new_v4())),
            Reject,
            None,
            WHY,
        ),
        accept("cancelling to cancelled", flow(Some(Cancelling), Cancelled)),
        accept("cancelled to cancelled", flow(Some(Cancelled), Cancelled)),
    ]);
}

#[test]
fn a_rejected_rerun_of_a_cancelled_flow_keeps_its_policy() {
    // Rule 2 resets the policy, rule 3 then rejects: rule 2 fizzles.
    let c = flow(Some(Cancelled), Running).with(|c| c.book.flow_policy.pause_keys = vec!["k".into()]);
    let d = orchestrate(&c);
    assert_eq!(d.status, Status::Reject);
    assert_eq!(d.book, c.book);
}

#[test]
fn bypass_cancelling_flow_runs_with_no_infra() {
    use Status::*;
    let pid = Some("4242".to_string());
    let suspended = |c: &mut TransitionContext| init(c).state_details.pause_reschedule = true;
    check(vec![
        case(
            "scheduled without infrastructure",
            flow(Some(Scheduled), Cancelling),
            Reject,
            Some(Cancelled),
            "Scheduled flow run has no infrastructure to terminate.",
        ),
        case(
            "scheduled with an empty infrastructure pid",
            flow(Some(Scheduled), Cancelling).with(|c| c.run.infrastructure_pid = Some(String::new())),
            Reject,
            Some(Cancelled),
            "Scheduled flow run has no infrastructure to terminate.",
        ),
        accept(
            "scheduled with infrastructure",
            flow(Some(Scheduled), Cancelling).with(|c| c.run.infrastructure_pid = pid.clone()),
        ),
        case(
            "resuming, even with infrastructure",
            flow(Some(Scheduled), Cancelling).with(|c| {
                init(c).name = "Resuming".into();
                c.run.infrastructure_pid = pid.clone();
            }),
            Reject,
            Some(Cancelled),
            "Scheduled flow run has no infrastructure to terminate.",
        ),
        case(
            "suspended",
            flow(Some(Paused), Cancelling).with(suspended),
            Reject,
            Some(Cancelled),
            "Suspended flow run has no infrastructure to terminate.",
        ),
        case(
            "paused in process: the resuming rule refuses cancelling",
            flow(Some(Paused), Cancelling),
            Reject,
            None,
            "This run cannot transition to the CANCELLING state from the PAUSED state.",
        ),
        accept("running", flow(Some(Running), Cancelling)),
        accept("pending", flow(Some(Pending), Cancelling)),
        case(
            "forced, still bypassed",
            flow(Some(Scheduled), Cancelling).with(|c| c.force = true),
            Reject,
            Some(Cancelled),
            "Scheduled flow run has no infrastructure to terminate.",
        ),
        case(
            "forced, suspended",
            flow(Some(Paused), Cancelling).with(|c| {
                c.force = true;
                suspended(c);
            }),
            Reject,
            Some(Cancelled),
            "Suspended flow run has no infrastructure to terminate.",
        ),
        accept(
            "forced, paused in process",
            flow(Some(Paused), Cancelling).with(|c| c.force = true),
        ),
    ]);
}

#[test]
fn the_bypass_writes_a_fresh_cancelled_state() {
    let c = flow(Some(Scheduled), Cancelling);
    let d = orchestrate(&c);
    let s = d.state.expect("a Cancelled state");
    assert_eq!((s.kind, s.name.as_str()), (Cancelled, "Cancelled"));
    assert_ne!(s.id, c.proposed.id);
    assert_eq!(s.timestamp, now());
    assert_eq!(s.state_details.flow_run_id, Some(c.run.id));
    // Never started: no end time; leaving SCHEDULED clears the next start.
    assert_eq!(d.book.end_time, None);
}

#[test]
fn prevent_pending_transitions() {
    use Status::*;
    check(vec![
        case(
            "pending",
            flow(Some(Pending), Pending),
            Abort,
            None,
            "This run is in a PENDING state and cannot transition to a PENDING state.",
        ),
        case(
            "running",
            flow(Some(Running), Pending),
            Abort,
            None,
            "This run is in a RUNNING state and cannot transition to a PENDING state.",
        ),
        accept("scheduled: the claim", flow(Some(Scheduled), Pending)),
        accept("no state", flow(None, Pending)),
        accept("failed, claimed again", flow(Some(Failed), Pending)),
        accept(
            "completed without a persisted result",
            flow(Some(Completed), Pending),
        ),
        accept("crashed", flow(Some(Crashed), Pending)),
        accept(
            "forced pending from pending",
            flow(Some(Pending), Pending).with(|c| c.force = true),
        ),
    ]);
}

#[test]
fn a_claim_succeeds_exactly_once() {
    // The first claimer moves SCHEDULED to PENDING; whoever comes next sees PENDING.
    let first = orchestrate(&flow(Some(Scheduled), Pending));
    assert_eq!(first.status, Status::Accept);
    let claimed = first.state.expect("the claim is written");
    let second = orchestrate(&ctx(RunKind::Flow, Some(claimed), State::new(Pending, now())));
    assert_eq!(second.status, Status::Abort);
    assert!(second.state.is_none());
}

#[test]
fn ensure_only_scheduled_flows_marked_late() {
    use Status::*;
    let late = |c: &mut TransitionContext| c.proposed.name = "Late".into();
    check(vec![
        case(
            "pending marked late",
            flow(Some(Pending), Scheduled).with(late),
            Reject,
            None,
            "Only scheduled flows can be marked late.",
        ),
        case(
            "no state marked late",
            flow(None, Scheduled).with(late),
            Reject,
            None,
            "Only scheduled flows can be marked late.",
        ),
        accept(
            "scheduled marked late",
            flow(Some(Scheduled), Scheduled).with(late),
        ),
        accept("pending rescheduled", flow(Some(Pending), Scheduled)),
        accept("scheduled on creation", flow(None, Scheduled)),
    ]);
}

#[test]
fn handle_pausing_flows() {
    use Status::*;
    let deployment = Some(Uuid::new_v4());
    let suspend = |c: &mut TransitionContext| {
        c.proposed.name = "Suspended".into();
        c.proposed.state_details.pause_reschedule = true;
    };
    check(vec![
        case(
            "no state",
            flow(None, Paused),
            Abort,
            None,
            "Cannot pause flows with no state.",
        ),
        case(
            "suspend, no state",
            flow(None, Paused).with(suspend),
            Abort,
            None,
            "Cannot suspend flows with no state.",
        ),
        case(
            "not running",
            flow(Some(Pending), Paused),
            Reject,
            None,
            "Cannot pause flows that are not currently running.",
        ),
        case(
            "suspend, not running",
            flow(Some(Scheduled), Paused).with(suspend),
            Reject,
            None,
            "Cannot suspend flows that are not currently running.",
        ),
        case(
            "already paused",
            flow(Some(Paused), Paused),
            Reject,
            None,
            "Cannot pause flows that are not currently running.",
        ),
        case(
            "the key fired before",
            flow(Some(Running), Paused).with(|c| {
                c.proposed.state_details.pause_key = Some("p1".into());
                c.book.flow_policy.pause_keys = vec!["p1".into()];
            }),
            Reject,
            None,
            "This pause has already fired.",
        ),
        case(
            "suspend, the key fired before",
            flow(Some(Running), Paused).with(|c| {
                suspend(c);
                c.run.deployment_id = deployment;
                c.proposed.state_details.pause_key = Some("p1".into());
                c.book.flow_policy.pause_keys = vec!["p1".into()];
            }),
            Reject,
            None,
            "This suspend has already fired.",
        ),
        case(
            "suspend a subflow",
            flow(Some(Running), Paused).with(|c| {
                suspend(c);
                c.run.deployment_id = deployment;
                c.run.parent_task_run_id = Some(Uuid::new_v4());
            }),
            Abort,
            None,
            "Cannot suspend subflows.",
        ),
        case(
            "suspend without a deployment",
            flow(Some(Running), Paused).with(suspend),
            Abort,
            None,
            "Cannot suspend flows without a deployment.",
        ),
        accept(
            "suspend a deployment run",
            flow(Some(Running), Paused).with(|c| {
                suspend(c);
                c.run.deployment_id = deployment;
            }),
        ),
        accept("pause in process", flow(Some(Running), Paused)),
        accept(
            "pause a subflow in process",
            flow(Some(Running), Paused).with(|c| c.run.parent_task_run_id = Some(Uuid::new_v4())),
        ),
    ]);
}

#[test]
fn pausing_records_the_key_after_the_transition_only() {
    let c = flow(Some(Running), Paused).with(|c| c.proposed.state_details.pause_key = Some("p1".into()));
    assert_eq!(
        orchestrate(&c).book.flow_policy.pause_keys,
        vec!["p1".to_string()]
    );

    // Without a key, a fresh one is recorded.
    let d = orchestrate(&flow(Some(Running), Paused));
    assert_eq!(d.book.flow_policy.pause_keys.len(), 1);
    assert!(Uuid::parse_str(&d.book.flow_policy.pause_keys[0]).is_ok());

    // An aborted suspend records nothing.
    let c = flow(Some(Running), Paused).with(|c| {
        c.proposed.name = "Suspended".into();
        c.proposed.state_details.pause_reschedule = true;
        c.proposed.state_details.pause_key = Some("p2".into());
    });
    assert!(orchestrate(&c).book.flow_policy.pause_keys.is_empty());
}

#[test]
fn handle_resuming_paused_flows() {
    use Status::*;
    let deployment = Some(Uuid::new_v4());
    let suspended = |c: &mut TransitionContext| {
        init(c).name = "Suspended".into();
        init(c).state_details.pause_reschedule = true;
    };
    let expired = |c: &mut TransitionContext| init(c).state_details.pause_timeout = Some(now() - secs(1));
    check(vec![
        case(
            "to pending",
            flow(Some(Paused), Pending),
            Reject,
            None,
            "This run cannot transition to the PENDING state from the PAUSED state.",
        ),
        case(
            "to paused",
            flow(Some(Paused), Paused),
            Reject,
            None,
            "Cannot pause flows that are not currently running.",
        ),
        accept("in process resume", flow(Some(Paused), Running)),
        accept("to scheduled", flow(Some(Paused), Scheduled)),
        accept("to cancelled", flow(Some(Paused), Cancelled)),
        accept("to failed", flow(Some(Paused), Failed)),
        case(
            "suspended, resumed without a deployment",
            flow(Some(Paused), Scheduled).with(|c| {
                suspended(c);
                c.proposed.name = "Resuming".into();
            }),
            Reject,
            None,
            "Cannot reschedule a resuming flow run without a deployment.",
        ),
        case(
            "suspended, run without a deployment",
            flow(Some(Paused), Running).with(suspended),
            Reject,
            None,
            "Cannot reschedule a running flow run without a deployment.",
        ),
        accept(
            "suspended, resumed with a deployment",
            flow(Some(Paused), Scheduled).with(|c| {
                suspended(c);
                c.run.deployment_id = deployment;
                c.proposed.name = "Resuming".into();
            }),
        ),
        case(
            "expired pause",
            flow(Some(Paused), Running).with(expired),
            Reject,
            Some(Failed),
            "The flow run pause has timed out and can no longer resume.",
        ),
        case(
            "expired suspension",
            flow(Some(Paused), Scheduled).with(|c| {
                suspended(c);
                expired(c);
                c.run.deployment_id = deployment;
                c.proposed.name = "Resuming".into();
            }),
            Reject,
            Some(Failed),
            "The flow run pause has timed out and can no longer resume.",
        ),
        accept(
            "pause not yet expired",
            flow(Some(Paused), Running)
                .with(|c| init(c).state_details.pause_timeout = Some(now() + secs(60))),
        ),
    ]);
}

#[test]
fn an_expired_pause_fails_the_run_with_a_message_from_the_proposal() {
    let c = flow(Some(Paused), Running).with(|c| {
        init(c).state_details.pause_timeout = Some(now() - secs(1));
        c.book.start_time = Some(now() - secs(100));
    });
    let d = orchestrate(&c);
    let s = d.state.expect("a Failed state");
    assert_eq!(
        s.message.as_deref(),
        Some("The flow was running and never resumed.")
    );
    assert_eq!((s.name.as_str(), s.timestamp), ("Failed", now()));
    assert_eq!(d.book.end_time, Some(now()), "the run ends");
    assert!(!d.book.flow_policy.resuming, "the resume did not happen");
}

#[test]
fn resuming_sets_the_indicator_after_the_transition() {
    // In process: PAUSED -> RUNNING counts a run, then marks the run resuming.
    let c = flow(Some(Paused), Running).with(|c| c.book.run_count = 1);
    let d = orchestrate(&c);
    assert_eq!(d.book.run_count, 2, "an in-process resume counts a run");
    assert!(d.book.flow_policy.resuming, "set after the transition");

    // Suspended: PAUSED -> Scheduled("Resuming"), then the next RUNNING does not count.
    let c = flow(Some(Paused), Scheduled).with(|c| {
        init(c).state_details.pause_reschedule = true;
        c.run.deployment_id = Some(Uuid::new_v4());
        c.proposed.name = "Resuming".into();
        c.book.run_count = 1;
    });
    let d = orchestrate(&c);
    assert!(d.book.flow_policy.resuming);
    let resumed = d.state.expect("Resuming");
    let c = ctx(RunKind::Flow, Some(resumed), State::new(Pending, now() + secs(1))).with(|c| {
        c.now = now() + secs(1);
        c.book = d.book.clone();
    });
    let d = orchestrate(&c);
    assert!(d.book.flow_policy.resuming, "PENDING keeps the indicator");
    let c = ctx(
        RunKind::Flow,
        d.state.clone(),
        State::new(Running, now() + secs(2)),
    )
    .with(|c| {
        c.now = now() + secs(2);
        c.book = d.book.clone();
    });
    let d = orchestrate(&c);
    assert_eq!(d.status, Status::Accept);
    assert_eq!(d.book.run_count, 1, "a resumed suspended run counts no new run");
    assert!(!d.book.flow_policy.resuming, "cleared on entering RUNNING");
}

#[test]
fn the_resuming_indicator_is_cleared_by_final_states_and_ignored_before_0_8_4() {
    let c = flow(Some(Scheduled), Cancelled).with(|c| c.book.flow_policy.resuming = true);
    assert!(!orchestrate(&c).book.flow_policy.resuming);

    let c = flow(Some(Scheduled), Running).with(|c| {
        c.book.flow_policy.resuming = true;
        c.book.run_count = 1;
        c.api_version = ApiVersion(0, 8, 3);
    });
    assert_eq!(orchestrate(&c).book.run_count, 2);
}

#[test]
fn copy_scheduled_time() {
    let at = now() + secs(90);
    let c = flow(Some(Scheduled), Pending).with(|c| init(c).state_details.scheduled_time = Some(at));
    let d = orchestrate(&c);
    assert_eq!(d.state.unwrap().state_details.scheduled_time, Some(at));

    // A proposal with its own scheduled time keeps it.
    let own = now() + secs(5);
    let c = flow(Some(Scheduled), Pending).with(|c| {
        init(c).state_details.scheduled_time = Some(at);
        c.proposed.state_details.scheduled_time = Some(own);
    });
    assert_eq!(
        orchestrate(&c).state.unwrap().state_details.scheduled_time,
        Some(own)
    );

    // Tasks too.
    let c = task(Some(Scheduled), Pending).with(|c| init(c).state_details.scheduled_time = Some(at));
    assert_eq!(
        orchestrate(&c).state.unwrap().state_details.scheduled_time,
        Some(at)
    );

    // Only from SCHEDULED.
    let c = flow(Some(Running), Pending).with(|c| c.force = true);
    assert_eq!(orchestrate(&c).state.unwrap().state_details.scheduled_time, None);
}

fn wait(delay_seconds: i64, reason: &str) -> Details {
    Details::WaitDetails {
        delay_seconds,
        reason: reason.into(),
    }
}

#[test]
fn wait_for_scheduled_time() {
    const WHY: &str = "Scheduled time is in the future";
    let at = |offset: Duration| {
        move |c: &mut TransitionContext| init(c).state_details.scheduled_time = Some(now() + offset)
    };
    let ms = Duration::milliseconds;
    let cases: Vec<(&str, TransitionContext, Option<i64>)> = vec![
        (
            "scheduled, 90 s early",
            flow(Some(Scheduled), Running).with(at(secs(90))),
            Some(90),
        ),
        (
            "pending with a copied time",
            flow(Some(Pending), Running).with(at(secs(90))),
            Some(90),
        ),
        (
            "task, 10 s early",
            task(Some(Scheduled), Running).with(at(secs(10))),
            Some(10),
        ),
        ("on time", flow(Some(Scheduled), Running).with(at(secs(0))), None),
        ("late", flow(Some(Scheduled), Running).with(at(secs(-30))), None),
        (
            "0.4 s early rounds to 0",
            flow(Some(Scheduled), Running).with(at(ms(400))),
            None,
        ),
        (
            "0.5 s early rounds to 0",
            flow(Some(Scheduled), Running).with(at(ms(500))),
            None,
        ),
        (
            "0.6 s early rounds to 1",
            flow(Some(Scheduled), Running).with(at(ms(600))),
            Some(1),
        ),
        (
            "1.5 s early rounds to 1",
            flow(Some(Scheduled), Running).with(at(ms(1500))),
            Some(1),
        ),
        (
            "2.7 s early rounds to 3",
            flow(Some(Scheduled), Running).with(at(ms(2700))),
            Some(3),
        ),
        ("no scheduled time", flow(Some(Pending), Running), None),
        (
            "forced",
            flow(Some(Scheduled), Running)
                .with(at(secs(90)))
                .with(|c| c.force = true),
            None,
        ),
    ];
    for (what, c, expected) in cases {
        let d = orchestrate(&c);
        match expected {
            Some(delay) => {
                assert_eq!(
                    (d.status, d.details.clone()),
                    (Status::Wait, wait(delay, WHY)),
                    "{what}"
                );
                assert!(d.state.is_none(), "{what}");
                assert_eq!(d.book, c.book, "{what}: nothing is booked for a wait");
            }
            None => assert_eq!(d.status, Status::Accept, "{what}"),
        }
    }
    assert_eq!(rules::rounded_seconds(ms(-400)), 0);
    assert_eq!(rules::rounded_seconds(ms(-600)), -1);
}

#[test]
fn retry_failed_flows() {
    let retrying = |c: &mut TransitionContext| {
        c.book.run_count = 1;
        c.book.flow_policy.retries = Some(2);
        c.book.flow_policy.retry_delay = Some(5);
        c.book.flow_policy.pause_keys = vec!["k".into()];
        c.book.flow_policy.resuming = true;
        c.proposed.message = Some("boom".into());
        c.proposed.data = Some(json!({"type": "unpersisted"}));
    };
    let c = flow(Some(Running), Failed).with(retrying);
    let d = orchestrate(&c);
    assert_eq!((d.status, reason(&d).as_str()), (Status::Reject, "Retrying"));
    let s = d.state.clone().expect("AwaitingRetry");
    assert_eq!((s.kind, s.name.as_str()), (Scheduled, "AwaitingRetry"));
    assert_ne!(s.id, c.proposed.id);
    assert_eq!(s.timestamp, now());
    assert_eq!(s.state_details.scheduled_time, Some(now() + secs(5)));
    assert_eq!(s.message.as_deref(), Some("boom"));
    assert_eq!(s.data, Some(json!({"type": "unpersisted"})));
    let policy = &d.book.flow_policy;
    assert_eq!(policy.retry_type.as_deref(), Some("in_process"));
    assert!(policy.pause_keys.is_empty() && !policy.resuming);
    // The bookkeeping is of the AwaitingRetry state.
    assert_eq!(d.book.next_scheduled_start_time, Some(now() + secs(5)));
    assert_eq!(d.book.end_time, None);
    assert_eq!(d.book.total_run_time_micros, 10_000_000);

    for (what, setup, retried) in [
        (
            "last retry",
            (|c: &mut TransitionContext| c.book.run_count = 3) as fn(&mut TransitionContext),
            true,
        ),
        ("retries exhausted", |c| c.book.run_count = 4, false),
        ("no retries", |c| c.book.flow_policy.retries = None, false),
        ("no delay", |c| c.book.flow_policy.retry_delay = None, true),
    ] {
        let c = flow(Some(Running), Failed).with(retrying).with(|c| {
            c.book.run_count = 3;
            c.book.flow_policy.retries = Some(3);
            setup(c);
        });
        let d = orchestrate(&c);
        let expected = if retried { Status::Reject } else { Status::Accept };
        assert_eq!(d.status, expected, "{what}");
    }

    // The deprecated max_retries / retry_delay_seconds still count.
    let c = flow(Some(Running), Failed).with(|c| {
        c.book.run_count = 1;
        c.book.flow_policy.max_retries = 1;
        c.book.flow_policy.retry_delay_seconds = 7.0;
    });
    let s = orchestrate(&c).state.unwrap();
    assert_eq!(s.state_details.scheduled_time, Some(now() + secs(7)));

    // Before API 0.8.4 the policy is left alone.
    let c = flow(Some(Running), Failed)
        .with(retrying)
        .with(|c| c.api_version = ApiVersion(0, 8, 3));
    let d = orchestrate(&c);
    assert_eq!(d.status, Status::Reject);
    assert_eq!(d.book.flow_policy, c.book.flow_policy);

    // Only from RUNNING.
    let c = flow(Some(Pending), Failed).with(retrying);
    assert_eq!(orchestrate(&c).status, Status::Accept);
}

#[test]
fn minimal_flow_policy() {
    use Status::*;
    let forced = |c: &mut TransitionContext| c.force = true;
    check(vec![
        accept("cancelled rerun", flow(Some(Cancelled), Running).with(forced)),
        accept("pending claimed twice", flow(Some(Pending), Pending).with(forced)),
        accept(
            "completed with a result, rerun",
            flow(Some(Completed), Running)
                .with(forced)
                .with(|c| init(c).data = Some(persisted())),
        ),
        accept(
            "cancelling to completed",
            flow(Some(Cancelling), Completed).with(forced),
        ),
        accept(
            "running to cancelled",
            flow(Some(Running), Cancelled).with(forced),
        ),
        accept("terminal to crashed", flow(Some(Failed), Crashed).with(forced)),
        case(
            "bypass",
            flow(Some(Scheduled), Cancelling).with(forced),
            Reject,
            Some(Cancelled),
            "Scheduled flow run has no infrastructure to terminate.",
        ),
    ]);
    let d = orchestrate(&flow(Some(Cancelled), Running).with(forced));
    assert_eq!(
        (d.book.run_count, d.book.start_time),
        (1, Some(now())),
        "bookkeeping still runs"
    );
}

#[test]
fn add_unknown_result() {
    for kind in [RunKind::Flow, RunKind::Task] {
        for from in [Failed, Crashed] {
            let mut c = ctx(kind, Some(state(from)), State::new(Completed, now()));
            c.force = true;
            init(&mut c).data = Some(persisted());
            c.proposed.data = Some(json!({"type": "unpersisted"}));
            let d = orchestrate(&c);
            assert_eq!(d.status, Status::Accept);
            assert_eq!(
                d.state.unwrap().data,
                Some(rules::unknown_result()),
                "{kind:?} from {from:?}"
            );

            // Anything but a reference is left alone.
            init(&mut c).data = Some(json!({"type": "unpersisted"}));
            assert_eq!(
                orchestrate(&c).state.unwrap().data,
                Some(json!({"type": "unpersisted"}))
            );
        }
    }
    let c = flow(Some(Failed), Completed).with(|c| init(c).data = Some(persisted()));
    assert_eq!(
        orchestrate(&c).state.unwrap().data,
        None,
        "not in the core policy"
    );
}

// ---- CoreTaskPolicy ------------------------------------------------------------------------

fn cached() -> State {
    let mut s = named(Completed, "Completed");
    s.timestamp = now() - Duration::hours(1);
    s.message = Some("done".into());
    s.data = Some(persisted());
    s.state_details.task_run_id = Some(Uuid::new_v4());
    s.state_details.flow_run_id = Some(Uuid::new_v4());
    s.state_details.cache_key = Some("k".into());
    s
}

fn keyed(c: &mut TransitionContext) {
    c.proposed.state_details.cache_key = Some("k".into());
    c.cached_state = Some(cached());
}

#[test]
fn cache_retrieval() {
    use Status::*;
    const HIT: &str = "Retrieved state from cache";
    check(vec![
        case(
            "hit",
            task(Some(Pending), Running).with(keyed),
            Reject,
            Some(Completed),
            HIT,
        ),
        case(
            "hit before the concurrency limits",
            task(Some(Pending), Running)
                .with(keyed)
                .with(|c| c.tag_limits = vec![limit("a", 0, vec![])]),
            Reject,
            Some(Completed),
            HIT,
        ),
        case(
            "hit before the terminal-state rule",
            task(Some(Completed), Running)
                .with(keyed)
                .with(|c| init(c).data = Some(persisted())),
            Reject,
            Some(Completed),
            HIT,
        ),
        case(
            "hit for an autonomous task",
            autonomous(Some(Pending), Running).with(keyed),
            Reject,
            Some(Completed),
            HIT,
        ),
        accept(
            "refresh_cache",
            task(Some(Pending), Running)
                .with(keyed)
                .with(|c| c.proposed.state_details.refresh_cache = Some(true)),
        ),
        accept(
            "an empty key",
            task(Some(Pending), Running)
                .with(keyed)
                .with(|c| c.proposed.state_details.cache_key = Some(String::new())),
        ),
        accept(
            "no key",
            task(Some(Pending), Running)
                .with(keyed)
                .with(|c| c.proposed.state_details.cache_key = None),
        ),
        accept(
            "miss",
            task(Some(Pending), Running)
                .with(keyed)
                .with(|c| c.cached_state = None),
        ),
        accept(
            "forced",
            task(Some(Pending), Running).with(keyed).with(|c| c.force = true),
        ),
    ]);
}

#[test]
fn a_cache_hit_is_a_fresh_copy_of_the_cached_state_for_this_run() {
    let c = task(Some(Pending), Running)
        .with(keyed)
        .with(|c| c.book.run_count = 2);
    let d = orchestrate(&c);
    let s = d.state.clone().expect("Cached");
    let original = cached();
    assert_eq!((s.kind, s.name.as_str()), (Completed, "Cached"));
    assert_ne!(s.id, c.proposed.id);
    assert_ne!(s.id, c.cached_state.as_ref().unwrap().id);
    assert_eq!(s.timestamp, now());
    assert_eq!((&s.message, &s.data), (&original.message, &original.data));
    assert_eq!(s.state_details.cache_key.as_deref(), Some("k"));
    assert_eq!(s.state_details.task_run_id, Some(c.run.id));
    assert_eq!(s.state_details.flow_run_id, c.run.flow_run_id);
    // Later rules are skipped: no rename, no run counted, no flow tracking.
    assert_eq!(d.book.run_count, 2);
    assert_eq!(d.book.flow_run_run_count, c.book.flow_run_run_count);
    assert_eq!(d.book.start_time, None);
    assert_eq!(d.cache_insert, None, "CacheInsertion was not chosen for RUNNING");
}

#[test]
fn handle_task_terminal_state_transitions() {
    use Status::*;
    check(vec![
        case(
            "to crashed",
            task(Some(Completed), Crashed),
            Abort,
            None,
            "Run is already COMPLETED.",
        ),
        case(
            "to cancelling",
            task(Some(Failed), Cancelling),
            Abort,
            None,
            "Run is already FAILED.",
        ),
        case(
            "to paused",
            task(Some(Cancelled), Paused),
            Abort,
            None,
            "Run is already CANCELLED.",
        ),
        case(
            "persisted result, rerun",
            task(Some(Completed), Running).with(|c| init(c).data = Some(persisted())),
            Reject,
            None,
            "This run is already completed.",
        ),
        case(
            "persisted result, to any state",
            task(Some(Completed), Failed).with(|c| init(c).data = Some(persisted())),
            Reject,
            None,
            "This run is already completed.",
        ),
        case(
            "persisted result, to completed",
            task(Some(Completed), Completed).with(|c| init(c).data = Some(persisted())),
            Reject,
            None,
            "This run is already completed.",
        ),
        accept(
            "unpersisted result, rerun",
            task(Some(Completed), Running).with(|c| init(c).data = Some(json!({"type": "unpersisted"}))),
        ),
        accept("failed, rerun", task(Some(Failed), Running)),
        accept("crashed, rescheduled", task(Some(Crashed), Scheduled)),
        accept("failed, completed", task(Some(Failed), Completed)),
        accept("cancelled, rerun", task(Some(Cancelled), Running)),
    ]);
}

#[test]
fn leaving_a_terminal_state_resets_the_task_run_count() {
    // Reset to 0, then this run counts: 1.
    let c = task(Some(Failed), Running).with(|c| c.book.run_count = 3);
    let d = orchestrate(&c);
    assert_eq!(d.book.run_count, 1);
    assert_eq!(
        d.state.unwrap().name,
        "Running",
        "RenameReruns sees the reset count"
    );

    let c = task(Some(Failed), Scheduled).with(|c| c.book.run_count = 3);
    assert_eq!(orchestrate(&c).book.run_count, 0);

    // To another final state, the count stays.
    let c = task(Some(Failed), Completed).with(|c| c.book.run_count = 3);
    assert_eq!(orchestrate(&c).book.run_count, 3);
}

#[test]
fn a_task_rerun_in_a_retrying_flow_is_renamed_retrying() {
    let c = task(Some(Completed), Running).with(|c| {
        c.book.run_count = 1;
        c.book.flow_run_run_count = 1;
        c.parent_flow_run.as_mut().unwrap().run_count = 2;
    });
    let d = orchestrate(&c);
    assert_eq!(d.status, Status::Accept);
    assert_eq!(d.state.as_ref().unwrap().name, "Retrying");
    assert_eq!(d.book.run_count, 1, "reset to 0, then this run");
    assert_eq!(d.book.flow_run_run_count, 2, "tracks the flow's run count");

    // Same flow run attempt: not renamed.
    let c = task(Some(Completed), Running).with(|c| c.book.flow_run_run_count = 1);
    assert_eq!(orchestrate(&c).state.unwrap().name, "Running");
}

#[test]
fn a_rejected_rerun_keeps_the_task_run_count() {
    // HandleTaskTerminalStateTransitions resets the count, then the paused flow rejects
    // the start: the reset fizzles.
    let c = task(Some(Failed), Running).with(|c| {
        c.book.run_count = 3;
        c.parent_flow_run.as_mut().unwrap().state = Some(state(Paused));
    });
    let d = orchestrate(&c);
    assert_eq!(d.status, Status::Reject);
    assert_eq!(d.state.as_ref().map(|s| s.name.as_str()), Some("NotReady"));
    assert_eq!(d.book.run_count, 3);
    assert_eq!(
        d.book.flow_run_run_count, c.book.flow_run_run_count,
        "tracker after-hook dropped"
    );
}

#[test]
fn prevent_running_tasks_from_stopped_flows() {
    use Status::*;
    const WHY: &str = "The enclosing flow must be running to begin task execution.";
    let flow_in =
        |s: Option<State>| move |c: &mut TransitionContext| c.parent_flow_run.as_mut().unwrap().state = s;
    let mut cases = vec![
        case(
            "flow without a state",
            task(Some(Pending), Running).with(flow_in(None)),
            Abort,
            None,
            WHY,
        ),
        accept("flow running", task(Some(Pending), Running)),
        accept(
            "flow run not found",
            task(Some(Pending), Running).with(|c| c.parent_flow_run = None),
        ),
        accept(
            "flow paused but forced",
            task(Some(Pending), Running)
                .with(flow_in(Some(state(Paused))))
                .with(|c| c.force = true),
        ),
    ];
    for kind in [
        Scheduled, Pending, Completed, Failed, Cancelled, Crashed, Cancelling,
    ] {
        cases.push(case(
            "flow not running",
            task(Some(Pending), Running).with(flow_in(Some(state(kind)))),
            Abort,
            None,
            WHY,
        ));
    }
    check(cases);

    let mut paused = state(Paused);
    paused.state_details.pause_timeout = Some(now() + Duration::minutes(5));
    paused.state_details.pause_reschedule = true;
    let c = task(Some(Pending), Running).with(flow_in(Some(paused)));
    let d = orchestrate(&c);
    let flow_id = c.parent_flow_run.as_ref().unwrap().id;
    assert_eq!(d.status, Status::Reject);
    assert_eq!(
        reason(&d),
        format!("The flow is paused, new tasks can execute after resuming flow run: {flow_id}.")
    );
    let s = d.state.expect("NotReady");
    assert_eq!(
        (s.kind, s.name.as_str(), s.timestamp),
        (Paused, "NotReady", now())
    );
    assert_eq!(s.state_details.pause_timeout, Some(now() + Duration::minutes(5)));
    assert!(s.state_details.pause_reschedule);
    assert_eq!(s.state_details.task_run_id, Some(c.run.id));
}

fn limit(tag: &str, n: i32, slots: Vec<Uuid>) -> TagLimit {
    TagLimit {
        tag: tag.into(),
        limit: n,
        active_slots: slots,
    }
}

#[test]
fn secure_task_concurrency_slots() {
    let other = Uuid::new_v4();
    let c = task(Some(Pending), Running)
        .with(|c| c.tag_limits = vec![limit("a", 2, vec![other]), limit("b", 1, vec![])]);
    let me = c.run.id;
    let d = orchestrate(&c);
    assert_eq!(d.status, Status::Accept);
    assert_eq!(
        d.tag_limits,
        vec![limit("a", 2, vec![other, me]), limit("b", 1, vec![me])]
    );

    // A full limit: WAIT for the configured time.
    let c = task(Some(Pending), Running).with(|c| {
        c.tag_limits = vec![limit("a", 1, vec![other])];
        c.tag_slot_wait_seconds = 12;
    });
    let d = orchestrate(&c);
    assert_eq!(
        d.details,
        wait(12, "Concurrency limit for the a tag has been reached")
    );
    assert!(d.state.is_none() && d.tag_limits.is_empty());

    // A zero limit: ABORT.
    let c = task(Some(Pending), Running).with(|c| c.tag_limits = vec![limit("z", 0, vec![])]);
    let d = orchestrate(&c);
    assert_eq!(d.status, Status::Abort);
    assert_eq!(
        reason(&d),
        "The concurrency limit on tag \"z\" is 0 and will deadlock if the task tries to run again."
    );
    assert!(d.tag_limits.is_empty());

    // A slot already held is kept, not taken twice, and does not count against the limit.
    let c = task(Some(Running), Running).with(|c| c.tag_limits = vec![limit("a", 1, vec![])]);
    let me = c.run.id;
    let c = c.with(|c| c.tag_limits = vec![limit("a", 1, vec![me])]);
    let d = orchestrate(&c);
    assert_eq!(d.status, Status::Accept);
    assert!(d.tag_limits.is_empty(), "nothing changed");
}

#[test]
fn a_failed_pass_gives_back_earlier_slots_but_keeps_later_ones() {
    let other = Uuid::new_v4();
    // a: free, b: full, c: free. a is given back when b fails; c is taken afterwards
    // and kept (Prefect's loop does not stop at the failure).
    let c = task(Some(Pending), Running).with(|c| {
        c.tag_limits = vec![
            limit("a", 1, vec![]),
            limit("b", 1, vec![other]),
            limit("c", 1, vec![]),
        ]
    });
    let me = c.run.id;
    let d = orchestrate(&c);
    assert_eq!(
        d.details,
        wait(30, "Concurrency limit for the b tag has been reached")
    );
    assert_eq!(d.tag_limits, vec![limit("c", 1, vec![me])]);

    // The last failure decides: an abort, then a wait, gives WAIT; every slot taken
    // before the last failure is given back.
    let c = task(Some(Pending), Running).with(|c| {
        c.tag_limits = vec![
            limit("a", 0, vec![]),
            limit("b", 1, vec![]),
            limit("c", 1, vec![other]),
        ]
    });
    let d = orchestrate(&c);
    assert_eq!(
        d.details,
        wait(30, "Concurrency limit for the c tag has been reached")
    );
    assert!(d.tag_limits.is_empty());

    // A wait, then an abort, gives ABORT.
    let c = task(Some(Pending), Running).with(|c| {
        c.tag_limits = vec![limit("a", 1, vec![other]), limit("b", 0, vec![])];
    });
    let d = orchestrate(&c);
    assert_eq!(d.status, Status::Abort);
}

#[test]
fn slots_are_given_back_when_a_later_rule_changes_the_outcome() {
    // SecureTaskConcurrencySlots takes the slot; WaitForScheduledTime then delays.
    let c = task(Some(Pending), Running).with(|c| {
        init(c).state_details.scheduled_time = Some(now() + secs(30));
        c.tag_limits = vec![limit("a", 1, vec![])];
    });
    let d = orchestrate(&c);
    assert_eq!(d.status, Status::Wait);
    assert!(d.tag_limits.is_empty());
}

#[test]
fn release_task_concurrency_slots() {
    let other = Uuid::new_v4();
    let holding = |c: &mut TransitionContext| {
        let me = c.run.id;
        c.tag_limits = vec![limit("a", 2, vec![me, other]), limit("b", 5, vec![other])];
    };
    let released = vec![limit("a", 2, vec![other])];
    let cases: Vec<(&str, TransitionContext, bool)> = vec![
        ("completed", task(Some(Running), Completed).with(holding), true),
        ("failed", task(Some(Running), Failed).with(holding), true),
        (
            "awaiting retry",
            task(Some(Running), Failed)
                .with(holding)
                .with(|c| c.book.task_policy.retries = Some(1)),
            true,
        ),
        (
            "crashed, forced",
            task(Some(Running), Crashed)
                .with(holding)
                .with(|c| c.force = true),
            true,
        ),
        (
            "cancelled, forced",
            task(Some(Cancelling), Cancelled)
                .with(holding)
                .with(|c| c.force = true),
            true,
        ),
        (
            "autonomous, completed",
            autonomous(Some(Running), Completed).with(holding),
            true,
        ),
        (
            "cached",
            task(Some(Pending), Running).with(holding).with(keyed),
            true,
        ),
        (
            "paused NotReady",
            task(Some(Pending), Running).with(holding).with(|c| {
                c.parent_flow_run.as_mut().unwrap().state = Some(state(Paused));
            }),
            true,
        ),
        ("cancelling", task(Some(Running), Cancelling).with(holding), false),
        ("running again", task(Some(Running), Running).with(holding), false),
        ("aborted", task(Some(Completed), Crashed).with(holding), false),
    ];
    for (what, c, expect_release) in cases {
        let d = orchestrate(&c);
        if expect_release {
            assert_eq!(d.tag_limits, released, "{what}: {d:?}");
        } else {
            assert!(!d.tag_limits.iter().any(|l| l.tag == "a"), "{what}: {d:?}");
        }
    }
}

#[test]
fn retry_failed_tasks() {
    let retrying = |c: &mut TransitionContext| {
        c.book.run_count = 2;
        c.book.task_policy.retries = Some(3);
        c.book.task_policy.retry_delay = Some(json!([1, 10, 100]));
        c.proposed.message = Some("boom".into());
        c.proposed.data = Some(json!({"type": "unpersisted"}));
    };
    let c = task(Some(Running), Failed).with(retrying);
    let d = orchestrate(&c);
    assert_eq!((d.status, reason(&d).as_str()), (Status::Reject, "Retrying"));
    let s = d.state.clone().expect("AwaitingRetry");
    assert_eq!(
        (s.kind, s.name.as_str(), s.timestamp),
        (Scheduled, "AwaitingRetry", now())
    );
    assert_eq!(s.state_details.scheduled_time, Some(now() + secs(10)));
    assert_eq!(s.message.as_deref(), Some("boom"));
    assert_eq!(s.data, Some(json!({"type": "unpersisted"})));
    assert_eq!(s.state_details.task_run_id, Some(c.run.id));
    assert_eq!(d.book.next_scheduled_start_time, Some(now() + secs(10)));

    let scheduled_in = |setup: fn(&mut TransitionContext)| {
        let c = task(Some(Running), Failed).with(retrying).with(setup);
        let d = orchestrate(&c);
        d.state
            .filter(|s| d.status == Status::Reject && s.name == "AwaitingRetry")
            .and_then(|s| s.state_details.scheduled_time)
            .map(|t| (t - now()).num_milliseconds())
    };
    assert_eq!(scheduled_in(|c| c.book.run_count = 1), Some(1_000));
    assert_eq!(scheduled_in(|c| c.book.run_count = 3), Some(100_000));
    assert_eq!(
        scheduled_in(|c| c.book.task_policy.retry_delay = Some(json!(2.5))),
        Some(2_500)
    );
    assert_eq!(scheduled_in(|c| c.book.task_policy.retry_delay = None), Some(0));
    assert_eq!(scheduled_in(|c| c.book.run_count = 4), None, "retries exhausted");
    assert_eq!(
        scheduled_in(|c| c.book.task_policy.retries = None),
        None,
        "no retries"
    );
    assert_eq!(
        scheduled_in(|c| c.proposed.state_details.retriable = Some(false)),
        None,
        "retry_condition_fn said no"
    );
    assert_eq!(
        scheduled_in(|c| c.proposed.state_details.retriable = Some(true)),
        Some(10_000)
    );
    assert_eq!(
        scheduled_in(|c| {
            c.book.task_policy.retries = None;
            c.book.task_policy.max_retries = 2;
            c.book.task_policy.retry_delay = None;
            c.book.task_policy.retry_delay_seconds = 3.0;
        }),
        Some(3_000),
        "deprecated fields"
    );
    assert_eq!(scheduled_in(|c| c.force = true), None, "forced");

    assert_eq!(task_rules::base_retry_delay(Some(&json!([1, 2])), 5), 2.0);
    assert_eq!(
        task_rules::base_retry_delay(Some(&json!([1, 2])), 0),
        2.0,
        "Python's delay[-1]"
    );
    assert_eq!(task_rules::base_retry_delay(Some(&json!([])), 1), 0.0);
    assert_eq!(task_rules::base_retry_delay(Some(&json!(7)), 3), 7.0);
    assert_eq!(task_rules::base_retry_delay(None, 1), 0.0);
}

#[test]
fn jittered_delays_follow_prefects_clamped_poisson_interval() {
    let mut rng = StdRng::seed_from_u64(7);
    // factor 0.3: upper 1.3 x, lower log2(2^1.3 / (2^1.3 - 1)) = 0.7521 x.
    let draws: Vec<f64> = (0..10_000)
        .map(|_| task_rules::clamped_poisson_interval(10.0, 0.3, &mut rng))
        .collect();
    let min = draws.iter().cloned().fold(f64::INFINITY, f64::min);
    let max = draws.iter().cloned().fold(0.0, f64::max);
    assert!((7.5..7.6).contains(&min), "{min}");
    assert!(max <= 13.0 && max > 12.9, "{max}");
    assert_eq!(task_rules::clamped_poisson_interval(0.0, 0.5, &mut rng), 0.0);
    assert_eq!(task_rules::clamped_poisson_interval(5.0, 0.0, &mut rng), 5.0);

    let c = task(Some(Running), Failed).with(|c| {
        c.book.run_count = 1;
        c.book.task_policy.retries = Some(1);
        c.book.task_policy.retry_delay = Some(json!(100));
        c.book.task_policy.retry_jitter_factor = Some(0.5);
    });
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..50 {
        let at = orchestrate(&c)
            .state
            .unwrap()
            .state_details
            .scheduled_time
            .unwrap();
        let ms = (at - now()).num_milliseconds();
        // k = 1.5: lower = log2(2^1.5 / (2^1.5 - 1)) = 0.6298 x.
        assert!((62_900..=150_000).contains(&ms), "{ms}");
        seen.insert(ms);
    }
    assert!(seen.len() > 1, "randomised");
}

#[test]
fn rename_reruns() {
    let rerun = |initial: State, run_count: i32| {
        let c = ctx(RunKind::Task, Some(initial), State::new(Running, now())).with(|c| {
            c.book.run_count = run_count;
            c.parent_flow_run = c.run.flow_run_id.map(|id| ParentFlowRun {
                id,
                state: Some(state(Running)),
                run_count: 0,
            });
        });
        orchestrate(&c).state.map(|s| s.name)
    };
    assert_eq!(
        rerun(named(Scheduled, "AwaitingRetry"), 1).as_deref(),
        Some("Retrying")
    );
    assert_eq!(
        rerun(named(Scheduled, "Scheduled"), 1).as_deref(),
        Some("Rerunning")
    );
    assert_eq!(rerun(named(Pending, "Pending"), 2).as_deref(), Some("Rerunning"));
    assert_eq!(rerun(named(Pending, "Pending"), 0).as_deref(), Some("Running"));
}

#[test]
fn update_flow_run_tracker_on_tasks() {
    let c = task(Some(Pending), Running).with(|c| c.parent_flow_run.as_mut().unwrap().run_count = 3);
    assert_eq!(orchestrate(&c).book.flow_run_run_count, 3);
    // Not on a wait.
    let c = c.with(|c| init(c).state_details.scheduled_time = Some(now() + secs(60)));
    assert_eq!(orchestrate(&c).book.flow_run_run_count, 1);
    // Not for other targets.
    let c = task(Some(Running), Completed).with(|c| c.parent_flow_run.as_mut().unwrap().run_count = 3);
    assert_eq!(orchestrate(&c).book.flow_run_run_count, 1);
}

#[test]
fn cache_insertion() {
    let expires = now() + Duration::days(1);
    let completing = |c: &mut TransitionContext| {
        c.proposed.state_details.cache_key = Some("k".into());
        c.proposed.state_details.cache_expiration = Some(expires);
    };
    let insert = |c: TransitionContext| orchestrate(&c).cache_insert;
    assert_eq!(
        insert(task(Some(Running), Completed).with(completing)),
        Some(("k".into(), Some(expires)))
    );
    assert_eq!(
        insert(autonomous(Some(Running), Completed).with(completing)),
        Some(("k".into(), Some(expires)))
    );
    assert_eq!(insert(task(Some(Running), Completed)), None, "no key");
    assert_eq!(
        insert(
            task(Some(Running), Completed)
                .with(completing)
                .with(|c| c.proposed.state_details.cache_key = Some(String::new()))
        ),
        None,
        "an empty key"
    );
    assert_eq!(
        insert(
            task(Some(Running), Completed)
                .with(completing)
                .with(|c| c.force = true)
        ),
        None,
        "forced"
    );
    assert_eq!(
        insert(task(Some(Running), Failed).with(completing)),
        None,
        "not completed"
    );
    assert_eq!(
        insert(
            task(Some(Completed), Completed)
                .with(completing)
                .with(|c| init(c).data = Some(persisted()))
        ),
        None,
        "rejected"
    );
}

#[test]
fn minimal_task_policy() {
    let forced = |c: &mut TransitionContext| c.force = true;
    check(vec![
        accept(
            "completed with a result, rerun",
            task(Some(Completed), Running)
                .with(forced)
                .with(|c| init(c).data = Some(persisted())),
        ),
        accept("terminal to crashed", task(Some(Completed), Crashed).with(forced)),
        accept(
            "flow not running",
            task(Some(Pending), Running)
                .with(forced)
                .with(|c| c.parent_flow_run.as_mut().unwrap().state = None),
        ),
        accept(
            "NotReady while pending",
            task(Some(Pending), Pending)
                .with(forced)
                .with(|c| c.proposed.name = "NotReady".into()),
        ),
    ]);
    let c = task(Some(Completed), Running)
        .with(forced)
        .with(|c| c.book.run_count = 1);
    assert_eq!(
        orchestrate(&c).book.run_count,
        2,
        "no reset, the bookkeeping still counts"
    );
}

#[test]
fn autonomous_task_policy() {
    use Status::*;
    check(vec![
        case(
            "claimed twice",
            autonomous(Some(Pending), Pending),
            Abort,
            None,
            "This run is in a PENDING state and cannot transition to a PENDING state.",
        ),
        case(
            "claimed twice, forced",
            autonomous(Some(Pending), Pending).with(|c| c.force = true),
            Abort,
            None,
            "This run is in a PENDING state and cannot transition to a PENDING state.",
        ),
        case(
            "claimed while running",
            autonomous(Some(Running), Pending),
            Abort,
            None,
            "This run is in a RUNNING state and cannot transition to a PENDING state.",
        ),
        case(
            "claimed when cancelled",
            autonomous(Some(Cancelled), Pending),
            Abort,
            None,
            "This run is in a CANCELLED state and cannot transition to a PENDING state.",
        ),
        accept("claimed", autonomous(Some(Scheduled), Pending)),
        accept("no enclosing flow to check", autonomous(Some(Pending), Running)),
        case(
            "core task rules apply even when forced",
            autonomous(Some(Completed), Running).with(|c| {
                c.force = true;
                init(c).data = Some(persisted());
            }),
            Reject,
            None,
            "This run is already completed.",
        ),
        case(
            "tag limits apply",
            autonomous(Some(Pending), Running).with(|c| c.tag_limits = vec![limit("a", 0, vec![])]),
            Abort,
            None,
            "The concurrency limit on tag \"a\" is 0 and will deadlock if the task tries to run again.",
        ),
    ]);
    let c = autonomous(Some(Pending), Running);
    let d = orchestrate(&c);
    let s = d.state.unwrap();
    assert_eq!(
        (s.state_details.flow_run_id, s.state_details.task_run_id),
        (None, Some(c.run.id))
    );
}

#[test]
fn policies_choose_their_rules_by_the_intended_transition() {
    let names = |c: &TransitionContext| -> Vec<&'static str> {
        engine::select(c, &policy_for(c)).iter().map(|r| r.name).collect()
    };
    assert_eq!(
        names(&flow(Some(Running), Failed)),
        ["PreventDuplicateTransitions", "RetryFailedFlows"]
    );
    assert_eq!(
        names(&flow(Some(Scheduled), Pending)),
        ["PreventDuplicateTransitions", "CopyScheduledTime"]
    );
    assert_eq!(
        names(&flow(Some(Paused), Cancelling)),
        [
            "PreventDuplicateTransitions",
            "BypassCancellingFlowRunsWithNoInfra",
            "HandleResumingPausedFlows"
        ]
    );
    assert_eq!(
        names(&flow(None, Paused)),
        ["PreventDuplicateTransitions", "HandlePausingFlows"]
    );
    assert_eq!(
        names(&task(Some(Completed), Running)),
        [
            "CacheRetrieval",
            "HandleTaskTerminalStateTransitions",
            "PreventRunningTasksFromStoppedFlows",
            "SecureTaskConcurrencySlots",
            "RenameReruns",
            "UpdateFlowRunTrackerOnTasks",
            "ReleaseTaskConcurrencySlots"
        ]
    );
    assert_eq!(
        names(&autonomous(Some(Pending), Running)),
        [
            "CacheRetrieval",
            "SecureTaskConcurrencySlots",
            "WaitForScheduledTime",
            "RenameReruns",
            "UpdateFlowRunTrackerOnTasks",
            "ReleaseTaskConcurrencySlots"
        ]
    );
    assert_eq!(
        names(&autonomous(Some(Running), Pending)),
        ["PreventPendingTransitions", "ReleaseTaskConcurrencySlots"]
    );
    assert_eq!(
        names(&task(Some(Failed), Completed).with(|c| c.force = true)),
        ["ReleaseTaskConcurrencySlots", "AddUnknownResult"]
    );
    assert_eq!(
        names(&flow(Some(Crashed), Completed).with(|c| c.force = true)),
        ["AddUnknownResult"]
    );
}

// ---- Global bookkeeping --------------------------------------------------------------------

/// A transition and the two times expected after it.
type TimesCase = (
    &'static str,
    TransitionContext,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
);

#[test]
fn start_and_end_times() {
    let started = now() - secs(60);
    let cases: Vec<TimesCase> = vec![
        ("first run", flow(Some(Pending), Running), Some(now()), None),
        (
            "start time kept",
            flow(Some(Pending), Running).with(|c| c.book.start_time = Some(started)),
            Some(started),
            None,
        ),
        (
            "ends",
            flow(Some(Running), Completed).with(|c| c.book.start_time = Some(started)),
            Some(started),
            Some(now()),
        ),
        (
            "cancelled before it started: no end",
            flow(Some(Pending), Cancelled),
            None,
            None,
        ),
        (
            "end time kept",
            task(Some(Failed), Completed).with(|c| {
                c.book.start_time = Some(started);
                c.book.end_time = Some(started + secs(1));
            }),
            Some(started),
            Some(started + secs(1)),
        ),
        (
            "leaving a final state clears the end",
            flow(Some(Failed), Running).with(|c| {
                c.book.start_time = Some(started);
                c.book.end_time = Some(started + secs(1));
            }),
            Some(started),
            None,
        ),
        ("task starts", task(Some(Pending), Running), Some(now()), None),
    ];
    for (what, c, start, end) in cases {
        let d = orchestrate(&c);
        assert_eq!((d.book.start_time, d.book.end_time), (start, end), "{what}");
    }
}

#[test]
fn total_run_time_counts_time_spent_running() {
    let c = task(Some(Running), Completed).with(|c| c.book.total_run_time_micros = 5_000_000);
    assert_eq!(orchestrate(&c).book.total_run_time_micros, 15_000_000);
    let c = flow(Some(Running), Paused);
    assert_eq!(orchestrate(&c).book.total_run_time_micros, 10_000_000);
    let c = flow(Some(Pending), Running);
    assert_eq!(orchestrate(&c).book.total_run_time_micros, 0);
}

#[test]
fn expected_and_next_scheduled_start_times() {
    let at = now() + Duration::hours(1);
    let earlier = now() - Duration::hours(1);
    let cases: Vec<TimesCase> = vec![
        (
            "scheduled on creation",
            flow(None, Scheduled).with(|c| c.proposed.state_details.scheduled_time = Some(at)),
            Some(at),
            Some(at),
        ),
        ("pending on creation", task(None, Pending), Some(now()), None),
        (
            "expected start set once",
            flow(Some(Scheduled), Pending).with(|c| {
                c.book.expected_start_time = Some(earlier);
                c.book.next_scheduled_start_time = Some(earlier);
            }),
            Some(earlier),
            None,
        ),
        (
            "late",
            flow(Some(Scheduled), Scheduled).with(|c| {
                c.proposed.name = "Late".into();
                c.proposed.state_details.scheduled_time = Some(earlier);
                c.book.expected_start_time = Some(earlier);
            }),
            Some(earlier),
            Some(earlier),
        ),
        (
            "other transitions leave it",
            flow(Some(Pending), Running).with(|c| {
                c.book.expected_start_time = Some(earlier);
                c.book.next_scheduled_start_time = Some(earlier);
            }),
            Some(earlier),
            Some(earlier),
        ),
    ];
    for (what, c, expected, next) in cases {
        let d = orchestrate(&c);
        assert_eq!(
            (d.book.expected_start_time, d.book.next_scheduled_start_time),
            (expected, next),
            "{what}"
        );
    }
}

#[test]
fn state_details_point_at_the_run() {
    let c = flow(Some(Pending), Running);
    let s = orchestrate(&c).state.unwrap();
    assert_eq!(
        (s.state_details.flow_run_id, s.state_details.task_run_id),
        (Some(c.run.id), None)
    );

    // Subflows carry their parent task run in their states, whatever the client sent.
    let parent = Uuid::new_v4();
    let c = flow(None, Pending).with(|c| {
        c.run.parent_task_run_id = Some(parent);
        c.proposed.state_details.task_run_id = Some(Uuid::new_v4());
        c.force = true;
    });
    let s = orchestrate(&c).state.unwrap();
    assert_eq!(
        (s.state_details.flow_run_id, s.state_details.task_run_id),
        (Some(c.run.id), Some(parent))
    );

    // Also on states made by rules.
    let c = flow(Some(Running), Failed).with(|c| {
        c.run.parent_task_run_id = Some(parent);
        c.book.run_count = 1;
        c.book.flow_policy.retries = Some(1);
    });
    let s = orchestrate(&c).state.unwrap();
    assert_eq!(
        (s.name.as_str(), s.state_details.task_run_id),
        ("AwaitingRetry", Some(parent))
    );

    let c =
        task(Some(Pending), Running).with(|c| c.proposed.state_details.flow_run_id = Some(Uuid::new_v4()));
    let s = orchestrate(&c).state.unwrap();
    assert_eq!(
        (s.state_details.flow_run_id, s.state_details.task_run_id),
        (c.run.flow_run_id, Some(c.run.id))
    );
}

#[test]
fn run_counts() {
    let count = |c: TransitionContext| orchestrate(&c).book.run_count;
    assert_eq!(count(flow(Some(Pending), Running)), 1);
    assert_eq!(
        count(flow(Some(Running), Running).with(|c| c.book.run_count = 1)),
        2
    );
    assert_eq!(
        count(flow(Some(Running), Completed).with(|c| c.book.run_count = 1)),
        1
    );
    assert_eq!(
        count(flow(Some(Scheduled), Running).with(|c| c.book.flow_policy.resuming = true)),
        0
    );
    assert_eq!(count(task(Some(Pending), Running)), 1);
    assert_eq!(
        count(task(Some(Running), Running).with(|c| c.book.run_count = 1)),
        2
    );
    assert_eq!(
        count(task(Some(Running), Failed).with(|c| c.book.run_count = 1)),
        1
    );
}

#[test]
fn nothing_is_booked_when_nothing_is_written() {
    let dirty = |c: &mut TransitionContext| {
        c.book.run_count = 4;
        c.book.flow_policy.resuming = true;
        c.book.flow_policy.pause_keys = vec!["k".into()];
    };
    for c in [
        flow(Some(Running), Pending).with(dirty),
        flow(Some(Cancelled), Running).with(dirty),
        flow(Some(Pending), Scheduled)
            .with(dirty)
            .with(|c| c.proposed.name = "Late".into()),
        task(Some(Pending), Running)
            .with(dirty)
            .with(|c| c.parent_flow_run.as_mut().unwrap().state = None),
    ] {
        let d = orchestrate(&c);
        assert!(d.state.is_none());
        assert_eq!(d.book, c.book);
        assert!(d.tag_limits.is_empty() && d.cache_insert.is_none());
    }
}

#[test]
fn states_made_by_rules_never_predate_the_proposal() {
    // The database layer moved the proposal after a current state stamped in the future.
    let c = flow(Some(Running), Failed).with(|c| {
        c.proposed.timestamp = now() + Duration::microseconds(5);
        c.book.run_count = 1;
        c.book.flow_policy.retries = Some(1);
    });
    let s = orchestrate(&c).state.unwrap();
    assert_eq!(s.timestamp, now() + Duration::microseconds(5));
    assert_eq!(
        s.state_details.scheduled_time,
        Some(now()),
        "the retry is due now"
    );
}

#[test]
fn a_full_flow_run_with_a_retry() {
    // Scheduled -> Pending -> Running -> Failed (AwaitingRetry) -> Running -> Completed.
    let step = |current: Option<State>, book: RunBook, proposed: State, at: i64| {
        let c = ctx(
            RunKind::Flow,
            current,
            State {
                timestamp: now() + secs(at),
                ..proposed
            },
        )
        .with(|c| {
            c.now = now() + secs(at);
            c.proposed.timestamp = now() + secs(at);
            c.book = book;
        });
        orchestrate(&c)
    };
    let mut scheduled = State::new(Scheduled, now());
    scheduled.state_details.scheduled_time = Some(now());
    let mut b = book();
    b.flow_policy.retries = Some(1);
    let d = step(None, b, scheduled, 0);
    let d = step(d.state, d.book, State::new(Pending, now()), 1);
    assert_eq!(d.status, Status::Accept);
    let d = step(d.state, d.book, State::new(Running, now()), 2);
    assert_eq!((d.book.run_count, d.book.start_time), (1, Some(now() + secs(2))));
    let d = step(d.state, d.book, State::new(Failed, now()), 5);
    assert_eq!(d.state.as_ref().unwrap().name, "AwaitingRetry");
    assert_eq!(d.book.total_run_time_micros, 3_000_000);
    let d = step(d.state, d.book, State::new(Running, now()), 6);
    assert_eq!(d.status, Status::Accept);
    assert_eq!(d.book.run_count, 2);
    assert_eq!(d.book.next_scheduled_start_time, None);
    let d = step(d.state, d.book, State::new(Failed, now()), 8);
    assert_eq!(
        (d.status, d.state.as_ref().unwrap().kind),
        (Status::Accept, Failed),
        "no retries left"
    );
    assert_eq!(d.book.end_time, Some(now() + secs(8)));
    assert_eq!(d.book.total_run_time_micros, 5_000_000);
    assert_eq!(d.book.expected_start_time, Some(now()));
}
