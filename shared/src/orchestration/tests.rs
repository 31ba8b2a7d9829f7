//! Rule-by-rule and transition-by-transition tests of the policy, without a database.

use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use uuid::Uuid;

use super::*;
use crate::states::{State, StateType, StateType::*};

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-24T12:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn state(kind: StateType) -> State {
    State::new(kind, now() - Duration::seconds(10))
}

fn book() -> RunBook {
    RunBook {
        run_count: 0,
        start_time: None,
        end_time: None,
        total_run_time_micros: 0,
        expected_start_time: None,
        next_scheduled_start_time: None,
        flow_policy: FlowRunPolicy::default(),
        task_policy: TaskRunPolicy::default(),
        flow_run_run_count: 0,
    }
}

fn ctx(kind: RunKind, initial: Option<State>, proposed: State) -> TransitionContext {
    let id = Uuid::new_v4();
    TransitionContext {
        kind,
        force: false,
        api_version: crate::app::SERVER_API_VERSION,
        now: now(),
        initial,
        proposed: State {
            timestamp: now(),
            ..proposed
        },
        run: RunFacts {
            id,
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

fn flow(initial: Option<StateType>, proposed: StateType) -> TransitionContext {
    ctx(RunKind::Flow, initial.map(state), State::new(proposed, now()))
}

fn task(initial: Option<StateType>, proposed: StateType) -> TransitionContext {
    let mut c = ctx(RunKind::Task, initial.map(state), State::new(proposed, now()));
    let parent = c.run.flow_run_id;
    c.parent_flow_run = parent.map(|id| ParentFlowRun {
        id,
        state: Some(state(Running)),
        run_count: 1,
    });
    c
}

fn reason(d: &Decision) -> String {
    match &d.details {
        Details::AcceptDetails => String::new(),
        Details::RejectDetails { reason } | Details::AbortDetails { reason } => reason.clone(),
        Details::WaitDetails { reason, .. } => reason.clone(),
    }
}

/// (initial, proposed, expected status, expected resulting type or None, reason prefix)
type Case = (
    Option<StateType>,
    StateType,
    Status,
    Option<StateType>,
    &'static str,
);

fn check(cases: &[Case], make: fn(Option<StateType>, StateType) -> TransitionContext) {
    for (initial, proposed, status, result, why) in cases {
        let d = orchestrate(&make(*initial, *proposed));
        let label = format!("{initial:?} -> {proposed:?}");
        assert_eq!(d.status, *status, "{label}: {d:?}");
        assert_eq!(d.state.as_ref().map(|s| s.kind), *result, "{label}");
        assert!(reason(&d).starts_with(why), "{label}: {:?}", reason(&d));
    }
}

#[test]
fn core_flow_policy_transition_table() {
    use Status::*;
    let cases: &[Case] = &[
        (None, Pending, Accept, Some(Pending), ""),
        (Some(Pending), Running, Accept, Some(Running), ""),
        (Some(Running), Completed, Accept, Some(Completed), ""),
        (Some(Scheduled), Pending, Accept, Some(Pending), ""),
        // PreventPendingTransitions: the exactly-once claim.
        (
            Some(Pending),
            Pending,
            Abort,
            None,
            "This run is in a PENDING state",
        ),
        (
            Some(Running),
            Pending,
            Abort,
            None,
            "This run is in a RUNNING state",
        ),
        (
            Some(Cancelling),
            Pending,
            Reject,
            None,
            "Cannot transition flows that are cancelling",
        ),
        // Rule 3 comes before rule 5: a cancelled run is rejected, not aborted.
        (
            Some(Cancelled),
            Pending,
            Reject,
            None,
            "Cannot transition flows that are cancelling",
        ),
        // HandleFlowTerminalStateTransitions.
        (
            Some(Completed),
            Crashed,
            Abort,
            None,
            "Run is already in terminal state COMPLETED.",
        ),
        (
            Some(Failed),
            Paused,
            Abort,
            None,
            "Run is already in terminal state FAILED.",
        ),
        (
            Some(Failed),
            Scheduled,
            Abort,
            None,
            "Cannot reschedule a run without an associated deployment.",
        ),
        (Some(Failed), Running, Accept, Some(Running), ""),
        // EnforceCancellingToCancelledTransition.
        (
            Some(Cancelling),
            Running,
            Reject,
            None,
            "Cannot transition flows that are cancelling",
        ),
        (Some(Cancelling), Cancelled, Accept, Some(Cancelled), ""),
        // BypassCancellingFlowRunsWithNoInfra.
        (
            Some(Scheduled),
            Cancelling,
            Reject,
            Some(Cancelled),
            "Scheduled flow run has no infrastructure",
        ),
        (Some(Running), Cancelling, Accept, Some(Cancelling), ""),
        // HandlePausingFlows.
        (None, Paused, Abort, None, "Cannot pause flows with no state."),
        (
            Some(Pending),
            Paused,
            Reject,
            None,
            "Cannot pause flows that are not currently running.",
        ),
        (Some(Running), Paused, Accept, Some(Paused), ""),
        // HandleResumingPausedFlows.
        (
            Some(Paused),
            Pending,
            Reject,
            None,
            "This run cannot transition to the PENDING state from the PAUSED state.",
        ),
        (Some(Paused), Running, Accept, Some(Running), ""),
        (Some(Paused), Cancelled, Accept, Some(Cancelled), ""),
    ];
    check(cases, flow);
}

#[test]
fn duplicate_transition_ids_are_rejected() {
    let mut c = flow(Some(Running), Completed);
    let id = Uuid::new_v4();
    c.initial.as_mut().unwrap().state_details.transition_id = Some(id);
    c.proposed.state_details.transition_id = Some(id);
    let d = orchestrate(&c);
    assert_eq!(d.status, Status::Reject);
    assert!(d.state.is_none());
    assert_eq!(reason(&d), "This run has already made this state transition.");
    c.proposed.state_details.transition_id = Some(Uuid::new_v4());
    assert_eq!(orchestrate(&c).status, Status::Accept);
}

#[test]
fn a_completed_run_with_a_persisted_result_cannot_rerun() {
    let mut c = flow(Some(Completed), Running);
    c.initial.as_mut().unwrap().data = Some(json!({"type": "reference", "storage_key": "k"}));
    let d = orchestrate(&c);
    assert_eq!(
        (d.status, reason(&d).as_str()),
        (Status::Reject, "Run is already COMPLETED.")
    );
    c.initial.as_mut().unwrap().data = Some(json!({"type": "unpersisted"}));
    assert_eq!(orchestrate(&c).status, Status::Accept);
}

#[test]
fn leaving_a_terminal_state_resets_the_pause_and_retry_policy() {
    let mut c = flow(Some(Failed), Running);
    c.book.flow_policy.pause_keys = vec!["k".into()];
    c.book.flow_policy.resuming = true;
    c.book.flow_policy.retry_type = Some("in_process".into());
    let d = orchestrate(&c);
    assert_eq!(d.book.flow_policy.pause_keys, Vec::<String>::new());
    assert_eq!(d.book.flow_policy.retry_type, None);
    assert!(!d.book.flow_policy.resuming);
    // Rescheduling a deployment run marks the policy "reschedule".
    let mut c = flow(Some(Failed), Scheduled);
    c.run.deployment_id = Some(Uuid::new_v4());
    assert_eq!(
        orchestrate(&c).book.flow_policy.retry_type.as_deref(),
        Some("reschedule")
    );
}

#[test]
fn only_scheduled_runs_are_marked_late() {
    let mut c = flow(Some(Pending), Scheduled);
    c.proposed.name = "Late".into();
    let d = orchestrate(&c);
    assert_eq!(
        (d.status, reason(&d).as_str()),
        (Status::Reject, "Only scheduled flows can be marked late.")
    );
    let mut c = flow(Some(Scheduled), Scheduled);
    c.proposed.name = "Late".into();
    assert_eq!(orchestrate(&c).status, Status::Accept);
}

#[test]
fn pausing_records_its_key_once_and_suspends_need_a_deployment() {
    let mut c = flow(Some(Running), Paused);
    c.proposed.state_details.pause_key = Some("p1".into());
    let d = orchestrate(&c);
    assert_eq!(d.book.flow_policy.pause_keys, vec!["p1".to_string()]);
    c.book.flow_policy.pause_keys = vec!["p1".into()];
    let d = orchestrate(&c);
    assert_eq!(
        (d.status, reason(&d).as_str()),
        (Status::Reject, "This pause has already fired.")
    );

    let mut c = flow(Some(Running), Paused);
    c.proposed.name = "Suspended".into();
    c.proposed.state_details.pause_reschedule = true;
    assert_eq!(
        reason(&orchestrate(&c)),
        "Cannot suspend flows without a deployment."
    );
    c.run.parent_task_run_id = Some(Uuid::new_v4());
    assert_eq!(reason(&orchestrate(&c)), "Cannot suspend subflows.");
}

#[test]
fn resuming_sets_the_indicator_and_expired_pauses_fail() {
    let d = orchestrate(&flow(Some(Paused), Running));
    assert!(d.book.flow_policy.resuming, "set after the transition");
    assert_eq!(d.book.run_count, 1, "an in-process resume still counts a run");

    let mut c = flow(Some(Paused), Running);
    c.initial.as_mut().unwrap().state_details.pause_timeout = Some(now() - Duration::seconds(1));
    let d = orchestrate(&c);
    assert_eq!(d.status, Status::Reject);
    assert_eq!(d.state.as_ref().map(|s| s.kind), Some(Failed));
    assert_eq!(
        d.state.unwrap().message.as_deref(),
        Some("The flow was paused and never resumed.")
    );
}

#[test]
fn a_resumed_suspended_run_does_not_count_another_run() {
    let mut c = flow(Some(Scheduled), Running);
    c.book.flow_policy.resuming = true;
    c.book.run_count = 1;
    let d = orchestrate(&c);
    assert_eq!(d.book.run_count, 1);
    assert!(!d.book.flow_policy.resuming, "cleared on entering RUNNING");
}

#[test]
fn scheduled_time_is_copied_and_early_starts_wait() {
    let mut c = flow(Some(Scheduled), Pending);
    let at = now() + Duration::seconds(90);
    c.initial.as_mut().unwrap().state_details.scheduled_time = Some(at);
    let d = orchestrate(&c);
    assert_eq!(d.state.unwrap().state_details.scheduled_time, Some(at));

    let mut c = flow(Some(Pending), Running);
    c.initial.as_mut().unwrap().state_details.scheduled_time = Some(at);
    let d = orchestrate(&c);
    assert_eq!(d.status, Status::Wait);
    assert_eq!(
        d.details,
        Details::WaitDetails {
            delay_seconds: 90,
            reason: "Scheduled time is in the future".into()
        }
    );
    assert!(d.state.is_none());
    assert_eq!(d.book, c.book, "nothing is booked for a wait");
}

#[test]
fn failed_flows_with_retries_left_await_retry() {
    let mut c = flow(Some(Running), Failed);
    c.book.run_count = 1;
    c.book.flow_policy.retries = Some(1);
    c.book.flow_policy.retry_delay = Some(5);
    c.proposed.message = Some("boom".into());
    let d = orchestrate(&c);
    let s = d.state.clone().unwrap();
    assert_eq!(
        (d.status, s.kind, s.name.as_str()),
        (Status::Reject, Scheduled, "AwaitingRetry")
    );
    assert_eq!(s.state_details.scheduled_time, Some(now() + Duration::seconds(5)));
    assert_eq!(s.message.as_deref(), Some("boom"));
    assert_eq!(d.book.flow_policy.retry_type.as_deref(), Some("in_process"));
    assert_eq!(
        d.book.next_scheduled_start_time,
        Some(now() + Duration::seconds(5))
    );

    c.book.run_count = 2;
    assert_eq!(orchestrate(&c).status, Status::Accept, "retries exhausted");
}

#[test]
fn forced_flow_transitions_skip_the_core_rules_but_keep_bookkeeping() {
    let mut c = flow(Some(Cancelled), Running);
    c.force = true;
    let d = orchestrate(&c);
    assert_eq!(d.status, Status::Accept);
    assert_eq!(d.book.run_count, 1);
    // The no-infrastructure bypass applies even when forced.
    let mut c = flow(Some(Scheduled), Cancelling);
    c.force = true;
    assert_eq!(orchestrate(&c).state.map(|s| s.kind), Some(Cancelled));
    // AddUnknownResult.
    let mut c = flow(Some(Failed), Completed);
    c.force = true;
    c.initial.as_mut().unwrap().data = Some(json!({"type": "reference"}));
    assert_eq!(orchestrate(&c).state.unwrap().data.unwrap()["type"], "unknown");
}

#[test]
fn bookkeeping_tracks_times_counts_and_ids() {
    let c = flow(Some(Pending), Running);
    let d = orchestrate(&c);
    let s = d.state.clone().unwrap();
    assert_eq!(d.book.start_time, Some(now()));
    assert_eq!(d.book.run_count, 1);
    assert_eq!(d.book.expected_start_time, Some(now()));
    assert_eq!(s.state_details.flow_run_id, Some(c.run.id));

    let mut c = flow(Some(Running), Completed);
    c.book.start_time = Some(now() - Duration::seconds(10));
    let d = orchestrate(&c);
    assert_eq!(d.book.end_time, Some(now()));
    assert_eq!(d.book.total_run_time_micros, 10_000_000);

    // A run cancelled before it started has no end time.
    let d = orchestrate(&flow(Some(Pending), Cancelled));
    assert_eq!(d.book.end_time, None);

    // Leaving a terminal state clears the end time.
    let mut c = flow(Some(Failed), Running);
    c.book.start_time = Some(now() - Duration::seconds(60));
    c.book.end_time = Some(now() - Duration::seconds(30));
    assert_eq!(orchestrate(&c).book.end_time, None);

    // Subflows carry their parent task run in their states.
    let mut c = flow(None, Pending);
    let parent = Uuid::new_v4();
    c.run.parent_task_run_id = Some(parent);
    assert_eq!(
        orchestrate(&c).state.unwrap().state_details.task_run_id,
        Some(parent)
    );

    // Scheduled states set the expected and next scheduled start times.
    let mut c = flow(None, Scheduled);
    let at = now() + Duration::hours(1);
    c.proposed.state_details.scheduled_time = Some(at);
    let d = orchestrate(&c);
    assert_eq!(
        (d.book.expected_start_time, d.book.next_scheduled_start_time),
        (Some(at), Some(at))
    );
    let mut c = flow(Some(Scheduled), Pending);
    c.book.next_scheduled_start_time = Some(at);
    assert_eq!(orchestrate(&c).book.next_scheduled_start_time, None);
}

#[test]
fn core_task_policy_transition_table() {
    use Status::*;
    let cases: &[Case] = &[
        (None, Pending, Accept, Some(Pending), ""),
        (Some(Pending), Running, Accept, Some(Running), ""),
        (Some(Running), Completed, Accept, Some(Completed), ""),
        (Some(Completed), Crashed, Abort, None, "Run is already COMPLETED."),
        (Some(Failed), Cancelling, Abort, None, "Run is already FAILED."),
        (Some(Completed), Running, Accept, Some(Running), ""),
    ];
    check(cases, task);
}

#[test]
fn tasks_need_a_running_flow() {
    let mut c = task(Some(Pending), Running);
    c.parent_flow_run.as_mut().unwrap().state = Some(state(Pending));
    let d = orchestrate(&c);
    assert_eq!(
        (d.status, reason(&d).as_str()),
        (
            Status::Abort,
            "The enclosing flow must be running to begin task execution."
        )
    );
    c.parent_flow_run.as_mut().unwrap().state = None;
    assert_eq!(orchestrate(&c).status, Status::Abort);

    let mut paused = state(Paused);
    paused.state_details.pause_timeout = Some(now() + Duration::minutes(5));
    c.parent_flow_run.as_mut().unwrap().state = Some(paused);
    let d = orchestrate(&c);
    let s = d.state.clone().unwrap();
    assert_eq!(
        (d.status, s.kind, s.name.as_str()),
        (Status::Reject, Paused, "NotReady")
    );
    assert_eq!(s.state_details.pause_timeout, Some(now() + Duration::minutes(5)));
}

#[test]
fn completed_tasks_with_persisted_results_are_not_rerun() {
    let mut c = task(Some(Completed), Running);
    c.initial.as_mut().unwrap().data = Some(json!({"type": "reference"}));
    let d = orchestrate(&c);
    assert_eq!(
        (d.status, reason(&d).as_str()),
        (Status::Reject, "This run is already completed.")
    );
}

#[test]
fn a_task_rerun_in_a_retrying_flow_is_renamed_and_its_count_reset() {
    let mut c = task(Some(Completed), Running);
    c.book.run_count = 1;
    c.book.flow_run_run_count = 1;
    c.parent_flow_run.as_mut().unwrap().run_count = 2;
    let d = orchestrate(&c);
    assert_eq!(d.state.as_ref().unwrap().name, "Retrying");
    assert_eq!(d.book.run_count, 1, "reset to 0, then this run");
    assert_eq!(d.book.flow_run_run_count, 2, "tracks the flow's run count");
}

#[test]
fn failed_tasks_retry_with_list_delays() {
    let mut c = task(Some(Running), Failed);
    c.book.run_count = 2;
    c.book.task_policy.retries = Some(3);
    c.book.task_policy.retry_delay = Some(json!([1, 10, 100]));
    let d = orchestrate(&c);
    let s = d.state.unwrap();
    assert_eq!(
        (s.name.as_str(), s.state_details.scheduled_time),
        ("AwaitingRetry", Some(now() + Duration::seconds(10)))
    );

    c.proposed.state_details.retriable = Some(false);
    assert_eq!(
        orchestrate(&c).status,
        Status::Accept,
        "retry_condition_fn said no"
    );
    c.proposed.state_details.retriable = None;
    c.book.run_count = 4;
    assert_eq!(orchestrate(&c).status, Status::Accept, "retries exhausted");

    assert_eq!(rules::base_retry_delay(Some(&json!([1, 2])), 5), 2.0);
    assert_eq!(rules::base_retry_delay(Some(&json!(7)), 3), 7.0);
    assert_eq!(rules::base_retry_delay(None, 1), 0.0);
}

#[test]
fn jittered_delays_stay_within_bounds() {
    let mut rng = rand::rng();
    for _ in 0..1000 {
        let d = rules::clamped_poisson_interval(10.0, 0.3, &mut rng);
        assert!((7.0..=13.0).contains(&d), "{d}");
    }
    assert_eq!(rules::clamped_poisson_interval(0.0, 0.5, &mut rng), 0.0);
}

#[test]
fn reruns_are_renamed_by_what_came_before() {
    let mut c = task(Some(Scheduled), Running);
    c.book.run_count = 1;
    c.initial.as_mut().unwrap().name = "AwaitingRetry".into();
    assert_eq!(orchestrate(&c).state.unwrap().name, "Retrying");
    c.initial.as_mut().unwrap().name = "Scheduled".into();
    assert_eq!(orchestrate(&c).state.unwrap().name, "Rerunning");
}

#[test]
fn cache_hits_replace_the_run_and_completions_are_cached() {
    let mut c = task(Some(Pending), Running);
    c.proposed.state_details.cache_key = Some("k".into());
    let mut cached = state(Completed);
    cached.data = Some(json!({"type": "reference", "storage_key": "abc"}));
    c.cached_state = Some(cached.clone());
    let d = orchestrate(&c);
    let s = d.state.clone().unwrap();
    assert_eq!(
        (d.status, s.kind, s.name.as_str()),
        (Status::Reject, Completed, "Cached")
    );
    assert_eq!(reason(&d), "Retrieved state from cache");
    assert_ne!(s.id, cached.id);
    assert_eq!(s.data, cached.data);
    assert_eq!(s.state_details.task_run_id, Some(c.run.id));

    c.proposed.state_details.refresh_cache = Some(true);
    assert_eq!(orchestrate(&c).status, Status::Accept);

    let mut c = task(Some(Running), Completed);
    c.proposed.state_details.cache_key = Some("k".into());
    let expires = now() + Duration::days(1);
    c.proposed.state_details.cache_expiration = Some(expires);
    assert_eq!(
        orchestrate(&c).cache_insert,
        Some(("k".to_string(), Some(expires)))
    );
    assert_eq!(orchestrate(&task(Some(Running), Completed)).cache_insert, None);
}

fn limit(tag: &str, n: i32, slots: Vec<Uuid>) -> TagLimit {
    TagLimit {
        tag: tag.into(),
        limit: n,
        active_slots: slots,
    }
}

#[test]
fn tag_limits_grant_wait_abort_and_release() {
    let mut c = task(Some(Pending), Running);
    c.tag_limits = vec![limit("a", 2, vec![]), limit("b", 1, vec![])];
    let d = orchestrate(&c);
    assert_eq!(d.status, Status::Accept);
    assert_eq!(d.tag_limits.len(), 2);
    assert!(d.tag_limits.iter().all(|l| l.active_slots == vec![c.run.id]));

    // A full limit makes the task wait and gives back what this pass took.
    c.tag_limits = vec![limit("a", 2, vec![]), limit("b", 1, vec![Uuid::new_v4()])];
    let d = orchestrate(&c);
    assert_eq!(d.status, Status::Wait);
    assert_eq!(
        d.details,
        Details::WaitDetails {
            delay_seconds: 30,
            reason: "Concurrency limit for the b tag has been reached".into()
        }
    );
    assert!(d.tag_limits.is_empty(), "nothing held");

    c.tag_limits = vec![limit("z", 0, vec![])];
    let d = orchestrate(&c);
    assert_eq!(d.status, Status::Abort);
    assert_eq!(
        reason(&d),
        "The concurrency limit on tag \"z\" is 0 and will deadlock if the task tries to run again."
    );

    // A slot already held is kept, not counted twice.
    c.tag_limits = vec![limit("a", 1, vec![c.run.id])];
    assert_eq!(orchestrate(&c).status, Status::Accept);

    // Any transition out of RUNNING releases the run's slots, forced or not.
    let mut done = task(Some(Running), Completed);
    let other = Uuid::new_v4();
    done.tag_limits = vec![limit("a", 2, vec![done.run.id, other])];
    let d = orchestrate(&done);
    assert_eq!(d.tag_limits, vec![limit("a", 2, vec![other])]);
    done.force = true;
    assert_eq!(orchestrate(&done).tag_limits, vec![limit("a", 2, vec![other])]);
}

#[test]
fn a_later_rule_undoes_the_slots_an_earlier_rule_took() {
    // SecureTaskConcurrencySlots takes the slot; WaitForScheduledTime then delays: the
    // slot must not be kept.
    let mut c = task(Some(Pending), Running);
    c.initial.as_mut().unwrap().state_details.scheduled_time = Some(now() + Duration::seconds(30));
    c.tag_limits = vec![limit("a", 1, vec![])];
    let d = orchestrate(&c);
    assert_eq!(d.status, Status::Wait);
    assert!(d.tag_limits.is_empty());
}

#[test]
fn autonomous_tasks_are_claimed_once_even_when_forced() {
    let mut c = task(Some(Pending), Pending);
    c.run.flow_run_id = None;
    c.parent_flow_run = None;
    c.force = true;
    assert_eq!(orchestrate(&c).status, Status::Abort);
    let mut c = task(Some(Pending), Running);
    c.run.flow_run_id = None;
    c.parent_flow_run = None;
    assert_eq!(orchestrate(&c).status, Status::Accept, "no parent flow to check");
}

#[test]
fn task_bookkeeping_counts_runs_and_fills_ids() {
    let c = task(Some(Pending), Running);
    let d = orchestrate(&c);
    let s = d.state.unwrap();
    assert_eq!(d.book.run_count, 1);
    assert_eq!(s.state_details.task_run_id, Some(c.run.id));
    assert_eq!(s.state_details.flow_run_id, c.run.flow_run_id);
}
