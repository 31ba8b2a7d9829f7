//! Rules shared by flow and task policies, and helpers the rules have in common.

use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};

use super::engine::Transition;
use crate::api_version::ApiVersion;
use crate::states::State;

/// The API version from which pauses exist and retries reset the pause metadata.
pub const V0_8_4: ApiVersion = ApiVersion(0, 8, 4);

/// Whether the client speaks API 0.8.4 or later (a missing header counts as the server's
/// own version, which is).
pub fn pause_aware(t: &Transition<'_>) -> bool {
    t.ctx.api_version >= V0_8_4
}

/// Python truthiness of a JSON value: null, false, 0, "", [] and {} are false.
pub fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// `state.data and state.data.get("type") != "unpersisted"`: the state holds a persisted
/// result.
pub fn has_persisted_result(state: &State) -> bool {
    state
        .data
        .as_ref()
        .is_some_and(|d| truthy(d) && d.get("type").and_then(Value::as_str) != Some("unpersisted"))
}

/// The name of a state type as Prefect prints it in reasons ("PENDING").
pub fn type_name(state: &State) -> &'static str {
    state.kind.as_str()
}

/// `now` plus a (possibly fractional) number of seconds, to the microsecond; saturates
/// instead of overflowing.
pub fn later(now: DateTime<Utc>, seconds: f64) -> DateTime<Utc> {
    let micros = (seconds * 1_000_000.0).round();
    // `as` saturates for out-of-range floats (and maps NaN to 0).
    let delta = Duration::microseconds(micros as i64);
    now.checked_add_signed(delta).unwrap_or(if micros < 0.0 {
        DateTime::<Utc>::MIN_UTC
    } else {
        DateTime::<Utc>::MAX_UTC
    })
}

/// PreventPendingTransitions ({PENDING, CANCELLING, RUNNING, CANCELLED} → PENDING): the
/// exactly-once claim.
pub fn prevent_pending_transitions(t: &mut Transition<'_>) {
    let kind = t.initial().map(type_name).unwrap_or("None");
    t.abort(format!(
        "This run is in a {kind} state and cannot transition to a PENDING state."
    ));
}

/// CopyScheduledTime (SCHEDULED → PENDING): the proposal keeps the scheduled time.
pub fn copy_scheduled_time(t: &mut Transition<'_>) {
    let scheduled = t.initial().and_then(|s| s.state_details.scheduled_time);
    if let Some(p) = t.proposal_mut() {
        if p.state_details.scheduled_time.is_none() {
            p.state_details.scheduled_time = scheduled;
        }
    }
}

/// A duration in whole seconds as Prefect rounds a WAIT: the whole seconds, plus one when
/// the fraction is over half a second (a half rounds to even, i.e. down).
pub fn rounded_seconds(delta: Duration) -> i64 {
    match delta.num_microseconds() {
        Some(us) => us.div_euclid(1_000_000) + i64::from(us.rem_euclid(1_000_000) > 500_000),
        None => delta.num_seconds(),
    }
}

/// WaitForScheduledTime ({SCHEDULED, PENDING} → RUNNING): too early a start waits.
pub fn wait_for_scheduled_time(t: &mut Transition<'_>) {
    let Some(scheduled) = t.initial().and_then(|s| s.state_details.scheduled_time) else {
        return;
    };
    let delay = rounded_seconds(scheduled - t.now());
    if delay > 0 {
        t.delay(delay, "Scheduled time is in the future");
    }
}

/// The result Prefect records when a failed or crashed run is forced to Completed.
pub fn unknown_result() -> Value {
    json!({
        "type": "unknown",
        "value": null,
        "artifact_type": "result",
        "artifact_description": "Unknown result persisted to Prefect.",
    })
}

/// AddUnknownResult ({FAILED, CRASHED} → COMPLETED): a completion that cannot carry the
/// earlier persisted result gets an "unknown" one.
pub fn add_unknown_result(t: &mut Transition<'_>) {
    let is_reference = t
        .initial()
        .and_then(|s| s.data.as_ref())
        .and_then(|d| d.get("type"))
        .and_then(Value::as_str)
        == Some("reference");
    if is_reference {
        if let Some(p) = t.proposal_mut() {
            p.data = Some(unknown_result());
        }
    }
}
