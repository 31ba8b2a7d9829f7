//! The rule catalogue of reference §4.2, one function per rule, and the policies that
//! order them.

use chrono::Duration;
use rand::Rng;
use serde_json::{json, Value};
use uuid::Uuid;

use super::engine::{After, RuleSpec, States, Transition};
use crate::app::ApiVersion;
use crate::states::{State, StateType};
use StateType::*;

const V0_8_4: ApiVersion = ApiVersion(0, 8, 4);

fn rule(from: States, to: States, run: fn(&mut Transition<'_>)) -> RuleSpec {
    RuleSpec {
        from,
        to,
        run,
        universal: false,
    }
}

fn universal(run: fn(&mut Transition<'_>)) -> RuleSpec {
    RuleSpec {
        from: States::Any,
        to: States::Any,
        run,
        universal: true,
    }
}

pub fn core_flow_policy() -> Vec<RuleSpec> {
    vec![
        rule(States::Any, States::Any, prevent_duplicate_transitions),
        rule(
            States::Terminal,
            States::Any,
            handle_flow_terminal_state_transitions,
        ),
        rule(
            States::Only(&[Cancelling, Cancelled]),
            States::AllBut(&[Cancelled]),
            enforce_cancelling_to_cancelled,
        ),
        rule(
            States::Only(&[Scheduled, Paused]),
            States::Only(&[Cancelling]),
            bypass_cancelling_with_no_infra,
        ),
        rule(
            States::Only(&[Pending, Cancelling, Running, Cancelled]),
            States::Only(&[Pending]),
            prevent_pending_transitions,
        ),
        rule(
            States::Any,
            States::Only(&[Scheduled]),
            ensure_only_scheduled_flows_marked_late,
        ),
        rule(States::Any, States::Only(&[Paused]), handle_pausing_flows),
        rule(States::Only(&[Paused]), States::Any, handle_resuming_paused_flows),
        rule(
            States::Only(&[Scheduled]),
            States::Only(&[Pending]),
            copy_scheduled_time,
        ),
        rule(
            States::Only(&[Scheduled, Pending]),
            States::Only(&[Running]),
            wait_for_scheduled_time,
        ),
        rule(
            States::Only(&[Running]),
            States::Only(&[Failed]),
            retry_failed_flows,
        ),
    ]
}

pub fn minimal_flow_policy() -> Vec<RuleSpec> {
    vec![
        rule(
            States::Only(&[Failed, Crashed]),
            States::Only(&[Completed]),
            add_unknown_result,
        ),
        rule(
            States::Only(&[Scheduled, Paused]),
            States::Only(&[Cancelling]),
            bypass_cancelling_with_no_infra,
        ),
    ]
}

fn core_task_rules(with_stopped_flow_check: bool) -> Vec<RuleSpec> {
    let mut rules = vec![
        rule(States::Any, States::Only(&[Running]), cache_retrieval),
        rule(
            States::Terminal,
            States::Any,
            handle_task_terminal_state_transitions,
        ),
    ];
    if with_stopped_flow_check {
        rules.push(rule(
            States::Any,
            States::Only(&[Running]),
            prevent_running_tasks_from_stopped_flows,
        ));
    }
    rules.extend([
        rule(
            States::Any,
            States::Only(&[Running]),
            secure_task_concurrency_slots,
        ),
        rule(
            States::Only(&[Scheduled]),
            States::Only(&[Pending]),
            copy_scheduled_time,
        ),
        rule(
            States::Only(&[Scheduled, Pending]),
            States::Only(&[Running]),
            wait_for_scheduled_time,
        ),
        rule(
            States::Only(&[Running]),
            States::Only(&[Failed]),
            retry_failed_tasks,
        ),
        rule(States::Any, States::Only(&[Running]), rename_reruns),
        rule(
            States::Any,
            States::Only(&[Running]),
            update_flow_run_tracker_on_tasks,
        ),
        rule(States::Any, States::Only(&[Completed]), cache_insertion),
        universal(release_task_concurrency_slots),
    ]);
    rules
}

pub fn core_task_policy() -> Vec<RuleSpec> {
    core_task_rules(true)
}

pub fn minimal_task_policy() -> Vec<RuleSpec> {
    vec![
        universal(release_task_concurrency_slots),
        rule(
            States::Only(&[Failed, Crashed]),
            States::Only(&[Completed]),
            add_unknown_result,
        ),
    ]
}

/// Tasks without a flow run: claimed like flow runs, never checked against a parent.
pub fn autonomous_task_policy() -> Vec<RuleSpec> {
    let mut rules = vec![rule(
        States::Only(&[Pending, Cancelling, Running, Cancelled]),
        States::Only(&[Pending]),
        prevent_pending_transitions,
    )];
    rules.extend(core_task_rules(false));
    rules
}

fn uses_new_pause_semantics(t: &Transition<'_>) -> bool {
    t.ctx.api_version >= V0_8_4
}

// ---- flow rules -------------------------------------------------------------------------

fn prevent_duplicate_transitions(t: &mut Transition<'_>) {
    let initial = t.initial().and_then(|s| s.state_details.transition_id);
    let proposed = t.proposal().state_details.transition_id;
    if initial.is_some() && initial == proposed {
        t.reject(None, "This run has already made this state transition.");
    }
}

fn handle_flow_terminal_state_transitions(t: &mut Transition<'_>) {
    let Some(initial) = t.initial().cloned() else {
        return;
    };
    let proposed = t.proposal().kind;
    if matches!(proposed, Cancelling | Paused | Crashed) {
        t.abort(format!(
            "Run is already in terminal state {}.",
            initial.kind.as_str()
        ));
        return;
    }
    if initial.kind == Completed && !proposed.is_terminal() && initial.has_persisted_data() {
        t.reject(None, "Run is already COMPLETED.");
        return;
    }
    if proposed == Scheduled && t.ctx.run.deployment_id.is_none() {
        t.abort("Cannot reschedule a run without an associated deployment.");
        return;
    }
    if !proposed.is_terminal() && uses_new_pause_semantics(t) {
        let policy = &mut t.book.flow_policy;
        policy.resuming = false;
        policy.pause_keys.clear();
        policy.retry_type = (proposed == Scheduled).then(|| "reschedule".to_string());
    }
}

fn enforce_cancelling_to_cancelled(t: &mut Transition<'_>) {
    t.reject(
        None,
        "Cannot transition flows that are cancelling to a state other than Cancelled.",
    );
}

fn bypass_cancelling_with_no_infra(t: &mut Transition<'_>) {
    let Some(initial) = t.initial().cloned() else {
        return;
    };
    let now = t.now();
    if (initial.kind == Scheduled && t.ctx.run.infrastructure_pid.is_none()) || initial.name == "Resuming" {
        t.reject(
            Some(State::new(Cancelled, now)),
            "Scheduled flow run has no infrastructure to terminate.",
        );
    } else if initial.kind == Paused && initial.state_details.pause_reschedule {
        t.reject(
            Some(State::new(Cancelled, now)),
            "Suspended flow run has no infrastructure to terminate.",
        );
    }
}

fn prevent_pending_transitions(t: &mut Transition<'_>) {
    let kind = t.initial_type().map(StateType::as_str).unwrap_or("None");
    t.abort(format!(
        "This run is in a {kind} state and cannot transition to a PENDING state."
    ));
}

fn ensure_only_scheduled_flows_marked_late(t: &mut Transition<'_>) {
    if t.proposal().name == "Late" && t.initial_type() != Some(Scheduled) {
        t.reject(None, "Only scheduled flows can be marked late.");
    }
}

fn pause_verb(state: &State) -> &'static str {
    if state.name == "Suspended" {
        "suspend"
    } else {
        "pause"
    }
}

fn handle_pausing_flows(t: &mut Transition<'_>) {
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

fn handle_resuming_paused_flows(t: &mut Transition<'_>) {
    let Some(initial) = t.initial().cloned() else {
        return;
    };
    let proposed = t.proposal().kind;
    if !(matches!(proposed, Running | Scheduled) || proposed.is_terminal()) {
        t.reject(
            None,
            format!(
                "This run cannot transition to the {} state from the {} state.",
                proposed.as_str(),
                initial.kind.as_str()
            ),
        );
        return;
    }
    if initial.state_details.pause_reschedule && t.ctx.run.deployment_id.is_none() {
        t.reject(
            None,
            "Cannot reschedule a suspended flow run without a deployment.",
        );
        return;
    }
    if let Some(timeout) = initial.state_details.pause_timeout {
        if timeout < t.now() {
            let (name, verb) = if initial.name == "Suspended" {
                ("suspended", "suspension")
            } else {
                ("paused", "pause")
            };
            let failed =
                State::new(Failed, t.now()).with_message(format!("The flow was {name} and never resumed."));
            t.reject(
                Some(failed),
                format!("The flow run {verb} has timed out and can no longer resume."),
            );
            return;
        }
    }
    t.after(After::SetResuming);
}

fn copy_scheduled_time(t: &mut Transition<'_>) {
    let scheduled = t.initial().and_then(|s| s.state_details.scheduled_time);
    if let Some(p) = t.proposal_mut() {
        if p.state_details.scheduled_time.is_none() {
            p.state_details.scheduled_time = scheduled;
        }
    }
}

fn wait_for_scheduled_time(t: &mut Transition<'_>) {
    let Some(scheduled) = t.initial().and_then(|s| s.state_details.scheduled_time) else {
        return;
    };
    // Whole seconds, truncated, as pendulum's `in_seconds()`.
    let delay = (scheduled - t.now()).num_seconds();
    if delay > 0 {
        t.delay(delay, "Scheduled time is in the future");
    }
}

fn retry_failed_flows(t: &mut Transition<'_>) {
    let policy = t.book.flow_policy.clone();
    let Some(retries) = policy.retries else { return };
    if i64::from(t.book.run_count) > retries {
        return;
    }
    let proposal = t.proposal().clone();
    let mut retry = State::new(Scheduled, t.now()).named("AwaitingRetry");
    retry.state_details.scheduled_time = Some(t.now() + Duration::seconds(policy.retry_delay.unwrap_or(0)));
    retry.message = proposal.message;
    retry.data = proposal.data;
    t.reject(Some(retry), "Retrying");
    // This rule made the change, so its own policy update stands.
    if uses_new_pause_semantics(t) {
        let p = &mut t.book.flow_policy;
        p.resuming = false;
        p.pause_keys.clear();
        p.retry_type = Some("in_process".to_string());
    }
}

fn add_unknown_result(t: &mut Transition<'_>) {
    let is_reference = t
        .initial()
        .and_then(|s| s.data.as_ref())
        .and_then(|d| d.get("type"))
        .and_then(Value::as_str)
        == Some("reference");
    if is_reference {
        if let Some(p) = t.proposal_mut() {
            p.data = Some(
                json!({"type": "unknown", "value": null, "artifact_type": "result",
                                 "artifact_description": "Unknown result persisted to Prefect."}),
            );
        }
    }
}

// ---- task rules -------------------------------------------------------------------------

fn cache_retrieval(t: &mut Transition<'_>) {
    let details = &t.proposal().state_details;
    if details.cache_key.is_none() || details.refresh_cache == Some(true) {
        return;
    }
    let Some(cached) = t.ctx.cached_state.clone() else {
        return;
    };
    let mut copy = cached;
    copy.id = Uuid::new_v4();
    copy.timestamp = t.now();
    copy.name = "Cached".to_string();
    t.reject(Some(copy), "Retrieved state from cache");
}

fn handle_task_terminal_state_transitions(t: &mut Transition<'_>) {
    let Some(initial) = t.initial().cloned() else {
        return;
    };
    let proposed = t.proposal().kind;
    if matches!(proposed, Cancelling | Paused | Crashed) {
        t.abort(format!("Run is already {}.", initial.kind.as_str()));
        return;
    }
    if initial.kind == Completed && initial.has_persisted_data() {
        t.reject(None, "This run is already completed.");
        return;
    }
    if !proposed.is_terminal() {
        t.book.run_count = 0;
    }
    let flow_retrying = t
        .ctx
        .parent_flow_run
        .as_ref()
        .is_some_and(|parent| t.book.flow_run_run_count < parent.run_count);
    if proposed == Running && flow_retrying {
        if let Some(p) = t.proposal_mut() {
            p.name = "Retrying".to_string();
        }
    }
}

const FLOW_MUST_RUN: &str = "The enclosing flow must be running to begin task execution.";

fn prevent_running_tasks_from_stopped_flows(t: &mut Transition<'_>) {
    let parent_state = t.ctx.parent_flow_run.as_ref().and_then(|p| p.state.clone());
    let Some(parent_state) = parent_state else {
        t.abort(FLOW_MUST_RUN);
        return;
    };
    match parent_state.kind {
        Running => {}
        Paused => {
            let mut not_ready = State::new(Paused, t.now()).named("NotReady");
            not_ready.state_details.pause_timeout = parent_state.state_details.pause_timeout;
            not_ready.state_details.pause_reschedule = parent_state.state_details.pause_reschedule;
            let id = t.ctx.parent_flow_run.as_ref().map(|p| p.id).unwrap_or_default();
            t.reject(
                Some(not_ready),
                format!("The flow is paused, new tasks can execute after resuming flow run: {id}."),
            );
        }
        _ => t.abort(FLOW_MUST_RUN),
    }
}

/// Takes a slot on every limit of the run's tags. On the first limit that is 0 or full,
/// the slots taken in this pass are given back and the transition aborts or waits.
/// (Prefect keeps looping after a failure and may leave later tags' slots taken; stopping
/// at the first failure holds no slot the run cannot use.)
fn secure_task_concurrency_slots(t: &mut Transition<'_>) {
    let run_id = t.ctx.run.id;
    let wait = t.ctx.tag_slot_wait_seconds;
    for i in 0..t.slots.len() {
        let limit = &t.slots[i];
        if limit.active_slots.contains(&run_id) {
            continue;
        }
        let tag = limit.tag.clone();
        if limit.limit <= 0 {
            t.abort(format!(
                "The concurrency limit on tag \"{tag}\" is 0 and will deadlock if the task tries to run again."
            ));
            return;
        }
        if limit.active_slots.len() >= limit.limit as usize {
            t.delay(
                wait,
                format!("Concurrency limit for the {tag} tag has been reached"),
            );
            return;
        }
        t.slots[i].active_slots.push(run_id);
        t.touch(&tag);
    }
}

fn retry_failed_tasks(t: &mut Transition<'_>) {
    if t.proposal().state_details.retriable == Some(false) {
        return;
    }
    let policy = t.book.task_policy.clone();
    let Some(retries) = policy.retries else { return };
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
    let mut retry = State::new(Scheduled, t.now()).named("AwaitingRetry");
    retry.state_details.scheduled_time = Some(t.now() + Duration::microseconds((delay * 1_000_000.0) as i64));
    retry.message = proposal.message;
    retry.data = proposal.data;
    t.reject(Some(retry), "Retrying");
}

/// The delay before retry number `run_count`: a list is indexed by attempt (its last value
/// repeats), a number applies to every attempt.
pub fn base_retry_delay(retry_delay: Option<&Value>, run_count: i64) -> f64 {
    match retry_delay {
        Some(Value::Array(delays)) if !delays.is_empty() => {
            let i = (run_count - 1).clamp(0, delays.len() as i64 - 1) as usize;
            delays[i].as_f64().unwrap_or(0.0)
        }
        Some(v) => v.as_f64().unwrap_or(0.0),
        None => 0.0,
    }
}

/// Prefect's `clamped_poisson_interval`: an exponential draw around `average`, kept within
/// `average * (1 ± factor)` (lower bound at least 0).
pub fn clamped_poisson_interval(average: f64, factor: f64, rng: &mut impl Rng) -> f64 {
    if average <= 0.0 {
        return 0.0;
    }
    let upper = average * (1.0 + factor);
    let lower = (average * (1.0 - factor)).max(0.0);
    let cdf = |x: f64| 1.0 - (-x / average).exp();
    let (lo, hi) = (cdf(lower), cdf(upper));
    let u: f64 = rng.random_range(lo..=hi);
    (-average * (1.0 - u).ln()).clamp(lower, upper)
}

fn rename_reruns(t: &mut Transition<'_>) {
    if t.book.run_count <= 0 {
        return;
    }
    let name = if t.initial().is_some_and(|s| s.name == "AwaitingRetry") {
        "Retrying"
    } else {
        "Rerunning"
    };
    if let Some(p) = t.proposal_mut() {
        p.name = name.to_string();
    }
}

fn update_flow_run_tracker_on_tasks(t: &mut Transition<'_>) {
    if let Some(parent) = &t.ctx.parent_flow_run {
        let count = parent.run_count;
        t.after(After::TrackFlowRunCount(count));
    }
}

fn cache_insertion(t: &mut Transition<'_>) {
    t.after(After::InsertCache);
}

fn release_task_concurrency_slots(t: &mut Transition<'_>) {
    let Some(kind) = t.proposed.as_ref().map(|p| p.kind) else {
        return;
    };
    if matches!(kind, Running | Cancelling) {
        return;
    }
    let run_id = t.ctx.run.id;
    for i in 0..t.slots.len() {
        if t.slots[i].active_slots.contains(&run_id) {
            t.slots[i].active_slots.retain(|id| *id != run_id);
            let tag = t.slots[i].tag.clone();
            t.touch(&tag);
        }
    }
}

// ---- global bookkeeping (§4.3) ------------------------------------------------------------

/// The transforms every transition gets, forced or not, on the final proposed state.
pub fn bookkeeping(t: &mut Transition<'_>) {
    let initial = t.ctx.initial.clone();
    let run = t.ctx.run.clone();
    let is_flow = t.ctx.kind == super::RunKind::Flow;
    let new_semantics = uses_new_pause_semantics(t);
    let Some(mut p) = t.proposed.take() else { return };
    let book = &mut t.book;

    if p.kind == Running && book.start_time.is_none() {
        book.start_time = Some(p.timestamp);
    }
    if initial.as_ref().is_some_and(|s| s.kind.is_terminal()) && !p.kind.is_terminal() {
        book.end_time = None;
    }
    if p.kind.is_terminal() && book.start_time.is_some() && book.end_time.is_none() {
        book.end_time = Some(p.timestamp);
    }
    if let Some(init) = initial.as_ref().filter(|s| s.kind == Running) {
        let micros = (p.timestamp - init.timestamp)
            .num_microseconds()
            .unwrap_or(0)
            .max(0);
        book.total_run_time_micros += micros;
    }
    if book.expected_start_time.is_none() {
        book.expected_start_time = if p.kind == Scheduled {
            p.state_details.scheduled_time.or(Some(p.timestamp))
        } else {
            Some(p.timestamp)
        };
    }
    if initial.as_ref().is_some_and(|s| s.kind == Scheduled) {
        book.next_scheduled_start_time = None;
    }
    if p.kind == Scheduled {
        book.next_scheduled_start_time = p.state_details.scheduled_time;
    }
    if is_flow {
        p.state_details.flow_run_id = Some(run.id);
        if let Some(parent_task) = run.parent_task_run_id {
            p.state_details.task_run_id = Some(parent_task);
        }
        if p.kind == Running && !(new_semantics && book.flow_policy.resuming) {
            book.run_count += 1;
        }
        if p.kind == Running || p.kind.is_terminal() {
            book.flow_policy.resuming = false;
        }
    } else {
        p.state_details.flow_run_id = run.flow_run_id;
        p.state_details.task_run_id = Some(run.id);
        if p.kind == Running {
            book.run_count += 1;
        }
    }
    t.proposed = Some(p);
}
