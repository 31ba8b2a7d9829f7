//! `/v2/concurrency_limits`: global limits, taken and released in slots.

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use stratus_http::json::{page, ts};
use stratus_http::{ApiError, ApiResult, AppState, Body};
use stratus_store::db::concurrency_limits::{
    self as limits, GlobalLimit, GlobalLimitChanges, LimitKey, NewGlobalLimit,
};
use uuid::Uuid;

fn default_true() -> bool {
    true
}

/// `ConcurrencyLimitV2Create`.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitCreate {
    #[serde(default = "default_true")]
    active: bool,
    name: String,
    limit: i32,
    #[serde(default)]
    active_slots: i32,
    #[serde(default)]
    denied_slots: i32,
    #[serde(default)]
    slot_decay_per_second: f64,
}

/// `ConcurrencyLimitV2Update`: only the keys sent change; an explicit null changes nothing.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitUpdate {
    #[serde(default)]
    active: Option<bool>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    limit: Option<i32>,
    #[serde(default)]
    active_slots: Option<i32>,
    #[serde(default)]
    denied_slots: Option<i32>,
    #[serde(default)]
    slot_decay_per_second: Option<f64>,
}

/// Top-level body keys: explicit nulls mean the default, unknown keys are ignored.
#[derive(Deserialize, schemars::JsonSchema)]
pub struct PageBody {
    #[serde(default)]
    limit: Option<i64>,
    #[serde(default)]
    offset: Option<i64>,
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct SlotsBody {
    names: Vec<String>,
    slots: i32,
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    occupancy_seconds: Option<f64>,
    /// Newer clients send it; 2.20 always creates unknown names, and so do we unless it
    /// is explicitly `false`.
    #[serde(default)]
    create_if_missing: Option<bool>,
}

/// `GlobalConcurrencyLimitResponse`: what reads and lists return (no `denied_slots`, no
/// `avg_slot_occupancy_seconds`). Creation returns the whole `ConcurrencyLimitV2`.
#[derive(Serialize, schemars::JsonSchema)]
pub struct LimitResponse<'a> {
    id: Uuid,
    #[schemars(with = "DateTime<Utc>")]
    #[serde(with = "ts")]
    created: DateTime<Utc>,
    #[schemars(with = "DateTime<Utc>")]
    #[serde(with = "ts")]
    updated: DateTime<Utc>,
    active: bool,
    name: &'a str,
    limit: i32,
    active_slots: i32,
    slot_decay_per_second: f64,
}

impl<'a> From<&'a GlobalLimit> for LimitResponse<'a> {
    fn from(l: &'a GlobalLimit) -> Self {
        LimitResponse {
            id: l.id,
            created: l.created,
            updated: l.updated,
            active: l.active,
            name: &l.name,
            limit: l.limit,
            active_slots: l.active_slots,
            slot_decay_per_second: l.slot_decay_per_second,
        }
    }
}

/// Prefect's 422 for one location, with pydantic's `ctx` when it has one.
fn invalid(loc: &[&str], msg: impl Into<String>, kind: &str, ctx: Value, body: Value) -> ApiError {
    let mut detail = json!({"loc": loc, "msg": msg.into(), "type": kind});
    if ctx.as_object().is_some_and(|c| !c.is_empty()) {
        detail["ctx"] = ctx;
    }
    ApiError::Validation {
        detail: vec![detail],
        body,
    }
}

fn not_found() -> ApiError {
    ApiError::not_found("Concurrency Limit not found")
}

fn non_negative(field: &str, value: f64, body: &Value) -> ApiResult<()> {
    if value < 0.0 || value.is_nan() {
        return Err(invalid(
            &["body", field],
            "ensure this value is greater than or equal to 0",
            "value_error.number.not_ge",
            json!({"limit_value": 0}),
            body.clone(),
        ));
    }
    Ok(())
}

const BANNED_NAME_CHARACTERS: [char; 5] = ['/', '%', '&', '>', '<'];

fn check_name(name: &str, body: &Value) -> ApiResult<()> {
    if name.chars().any(|c| BANNED_NAME_CHARACTERS.contains(&c)) {
        return Err(invalid(
            &["body", "name"],
            format!(
                "Name {} contains an invalid character. Must not contain any of: ['/', '%', '&', '>', '<'].",
                stratus_domain::python::str_repr(name)
            ),
            "value_error",
            json!({}),
            body.clone(),
        ));
    }
    Ok(())
}

/// The counters must not be negative, as Prefect's `NonNegativeInteger`/`Float` say.
fn check_counters(
    limit: Option<i32>,
    active_slots: Option<i32>,
    denied_slots: Option<i32>,
    decay: Option<f64>,
    body: &Value,
) -> ApiResult<()> {
    for (field, value) in [
        ("limit", limit.map(f64::from)),
        ("active_slots", active_slots.map(f64::from)),
        ("denied_slots", denied_slots.map(f64::from)),
        ("slot_decay_per_second", decay),
    ] {
        if let Some(v) = value {
            non_negative(field, v, body)?;
        }
    }
    Ok(())
}

pub async fn create(State(app): State<AppState>, Body(raw): Body<Value>) -> ApiResult<Response> {
    let body: LimitCreate = stratus_http::json::from_value(raw.clone())?;
    check_name(&body.name, &raw)?;
    check_counters(
        Some(body.limit),
        Some(body.active_slots),
        Some(body.denied_slots),
        Some(body.slot_decay_per_second),
        &raw,
    )?;
    let new = NewGlobalLimit {
        active: body.active,
        name: body.name,
        limit: body.limit,
        active_slots: body.active_slots,
        denied_slots: body.denied_slots,
        slot_decay_per_second: body.slot_decay_per_second,
    };
    let client = app.client().await?;
    // A taken name is Prefect's unhandled unique violation: the generic 409.
    let created = limits::create_v2(&client, &new)
        .await?
        .ok_or(ApiError::Integrity)?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

pub async fn read(State(app): State<AppState>, Path(key): Path<String>) -> ApiResult<Response> {
    let client = app.client().await?;
    let found = limits::read_v2(&client, LimitKey::parse(&key))
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(LimitResponse::from(&found)).into_response())
}

pub async fn update(
    State(app): State<AppState>,
    Path(key): Path<String>,
    Body(raw): Body<Value>,
) -> ApiResult<StatusCode> {
    let body: LimitUpdate = stratus_http::json::from_value(raw.clone())?;
    if let Some(name) = &body.name {
        check_name(name, &raw)?;
    }
    check_counters(
        body.limit,
        body.active_slots,
        body.denied_slots,
        body.slot_decay_per_second,
        &raw,
    )?;
    let changes = GlobalLimitChanges {
        active: body.active,
        name: body.name,
        limit: body.limit,
        active_slots: body.active_slots,
        denied_slots: body.denied_slots,
        slot_decay_per_second: body.slot_decay_per_second,
    };
    let client = app.client().await?;
    if !limits::update_v2(&client, LimitKey::parse(&key), &changes).await? {
        return Err(not_found());
    }
    Ok(StatusCode::NO_CONTENT)
}

pub async fn delete(State(app): State<AppState>, Path(key): Path<String>) -> ApiResult<StatusCode> {
    let client = app.client().await?;
    if !limits::delete_v2(&client, LimitKey::parse(&key)).await? {
        return Err(not_found());
    }
    Ok(StatusCode::NO_CONTENT)
}

pub async fn filter(State(app): State<AppState>, Body(body): Body<PageBody>) -> ApiResult<Response> {
    let (limit, offset) = page(body.limit, body.offset)?;
    let client = app.client().await?;
    let found = limits::filter_v2(&client, limit, offset).await?;
    Ok(Json(found.iter().map(LimitResponse::from).collect::<Vec<_>>()).into_response())
}

/// `MinimalConcurrencyLimitResponse`.
#[derive(Serialize, schemars::JsonSchema)]
pub struct MinimalLimit<'a> {
    id: Uuid,
    name: &'a str,
    limit: i32,
}

fn minimal<'a>(limits: &[&'a GlobalLimit]) -> Vec<MinimalLimit<'a>> {
    limits
        .iter()
        .map(|l| MinimalLimit {
            id: l.id,
            name: &l.name,
            limit: l.limit,
        })
        .collect()
}

fn check_slots(body: &SlotsBody, raw: &Value) -> ApiResult<()> {
    if body.names.is_empty() {
        return Err(invalid(
            &["body", "names"],
            "ensure this value has at least 1 items",
            "value_error.list.min_items",
            json!({"limit_value": 1}),
            raw.clone(),
        ));
    }
    if body.slots <= 0 {
        return Err(invalid(
            &["body", "slots"],
            "ensure this value is greater than 0",
            "value_error.number.not_gt",
            json!({"limit_value": 0}),
            raw.clone(),
        ));
    }
    Ok(())
}

/// `POST /v2/concurrency_limits/increment`: takes `slots` on every named active limit, or
/// none (423 with `Retry-After`, counting the denial). Unknown names become inactive
/// limits, which never block.
pub async fn increment(State(app): State<AppState>, Body(raw): Body<Value>) -> ApiResult<Response> {
    let body: SlotsBody = stratus_http::json::from_value(raw.clone())?;
    check_slots(&body, &raw)?;
    let rate_limit = match body.mode.as_deref() {
        None | Some("concurrency") => false,
        Some("rate_limit") => true,
        Some(other) => {
            return Err(invalid(
                &["body", "mode"],
                "unexpected value; permitted: 'concurrency', 'rate_limit'",
                "value_error.const",
                json!({"given": other, "permitted": ["concurrency", "rate_limit"]}),
                raw.clone(),
            ))
        }
    };
    let mut client = app.client().await?;
    let tx = client.transaction().await?;
    let all = limits::lock_v2(&tx, &body.names, body.create_if_missing != Some(false)).await?;
    let active: Vec<&GlobalLimit> = all.iter().filter(|l| l.active).collect();
    if active.iter().any(|l| l.limit < body.slots) {
        return Err(ApiError::unprocessable(
            "Slots requested is greater than the limit",
        ));
    }
    let non_decaying: Vec<&str> = active
        .iter()
        .filter(|l| l.slot_decay_per_second == 0.0)
        .map(|l| l.name.as_str())
        .collect();
    if rate_limit && !non_decaying.is_empty() {
        return Err(ApiError::unprocessable(format!(
            "Only concurrency limits with slot decay can be used for rate limiting. \
             The following limits do not have a decay configured: {}",
            stratus_domain::python::str_repr(&non_decaying.join(","))
        )));
    }
    if active.iter().all(|l| l.active_slots + body.slots <= l.limit) {
        if !active.is_empty() {
            limits::take_slots_v2(&tx, &active, body.slots).await?;
        }
        tx.commit().await?;
        return Ok(Json(minimal(&active)).into_response());
    }
    limits::deny_slots_v2(&tx, &active, body.slots).await?;
    tx.commit().await?;
    let retry_after = retry_after_seconds(&active, body.slots);
    let mut response = (StatusCode::LOCKED, Json(json!({"detail": "Locked"}))).into_response();
    if let Ok(value) = HeaderValue::from_str(&python_float(retry_after)) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    Ok(response)
}

/// How long a denied caller should wait, as Prefect computes it: the limit with the most
/// slots standing in line (its denied slots plus these, per unit of limit when it does
/// not decay) blocks; each of those slots takes its decay interval or its average
/// occupancy.
fn retry_after_seconds(active: &[&GlobalLimit], slots: i32) -> f64 {
    let blocking = |l: &GlobalLimit| {
        let waiting = f64::from(slots) + f64::from(l.denied_slots);
        if l.slot_decay_per_second > 0.0 {
            waiting
        } else {
            waiting / f64::from(l.limit.max(1))
        }
    };
    let Some(limit) = active
        .iter()
        .copied()
        .max_by(|a, b| blocking(a).total_cmp(&blocking(b)))
    else {
        return 0.0;
    };
    let per_slot = if limit.slot_decay_per_second > 0.0 {
        1.0 / limit.slot_decay_per_second
    } else {
        limit.avg_slot_occupancy_seconds
    };
    per_slot * blocking(limit)
}

/// A float as Python's `str()` writes it (`2.0`, `0.5`), for the `Retry-After` header.
fn python_float(value: f64) -> String {
    let text = format!("{value:?}");
    if text.contains(['.', 'e', 'E', 'N', 'n']) {
        text
    } else {
        format!("{text}.0")
    }
}

/// `POST /v2/concurrency_limits/decrement`: frees `slots` on every named active limit and
/// folds `occupancy_seconds / slots` (at least 0.1) into the running average.
pub async fn decrement(State(app): State<AppState>, Body(raw): Body<Value>) -> ApiResult<Response> {
    let body: SlotsBody = stratus_http::json::from_value(raw.clone())?;
    check_slots(&body, &raw)?;
    if let Some(o) = body.occupancy_seconds {
        if o <= 0.0 || o.is_nan() {
            return Err(invalid(
                &["body", "occupancy_seconds"],
                "ensure this value is greater than 0.0",
                "value_error.number.not_gt",
                json!({"limit_value": 0.0}),
                raw.clone(),
            ));
        }
    }
    let mut client = app.client().await?;
    let tx = client.transaction().await?;
    let all = limits::lock_v2(&tx, &body.names, body.create_if_missing != Some(false)).await?;
    let active: Vec<&GlobalLimit> = all.iter().filter(|l| l.active).collect();
    if !active.is_empty() {
        let per_slot = body
            .occupancy_seconds
            .map(|o| (o / f64::from(body.slots)).max(0.1));
        limits::release_slots_v2(&tx, &active, body.slots, per_slot).await?;
    }
    tx.commit().await?;
    Ok(Json(minimal(&active)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(limit: i32, denied: i32, decay: f64, avg: f64) -> GlobalLimit {
        GlobalLimit {
            id: Uuid::nil(),
            created: Utc::now(),
            updated: Utc::now(),
            active: true,
            name: "l".into(),
            limit,
            active_slots: limit,
            denied_slots: denied,
            slot_decay_per_second: decay,
            avg_slot_occupancy_seconds: avg,
        }
    }

    #[test]
    fn retry_after_uses_the_most_blocking_limit() {
        // (1 + 3) / 2 = 2 blocking slots of 4 s each.
        let slow = limit(2, 3, 0.0, 4.0);
        assert_eq!(retry_after_seconds(&[&slow], 1), 8.0);
        // A rate limit: 1 + 1 slots at 0.5 slot/s.
        let rate = limit(5, 1, 0.5, 2.0);
        assert_eq!(retry_after_seconds(&[&slow, &rate], 1), 4.0);
        assert_eq!(retry_after_seconds(&[], 1), 0.0);
    }

    #[test]
    fn floats_and_names_print_as_python_does() {
        assert_eq!(python_float(8.0), "8.0");
        assert_eq!(python_float(0.25), "0.25");
    }
}
