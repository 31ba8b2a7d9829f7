//! `/v2/concurrency_limits`: global limits, taken and released in slots.

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use stratus_shared::db::concurrency_limits::{
    self as limits, GlobalLimit, GlobalLimitChanges, NewGlobalLimit,
};
use stratus_shared::json::{null_default, page};
use stratus_shared::{ApiError, ApiResult, AppState, Body};

fn default_true() -> bool {
    true
}

#[derive(Deserialize)]
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

#[derive(Deserialize)]
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

#[derive(Deserialize)]
pub struct PageBody {
    #[serde(default)]
    limit: Option<i64>,
    #[serde(default)]
    offset: Option<i64>,
}

#[derive(Deserialize)]
pub struct SlotsBody {
    names: Vec<String>,
    slots: i32,
    #[serde(default)]
    mode: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    occupancy_seconds: Option<f64>,
    /// Accepted for newer clients; unknown names are always created, as in 2.20.
    #[serde(default, rename = "create_if_missing")]
    _create_if_missing: Option<bool>,
}

fn not_found() -> ApiError {
    ApiError::not_found("Concurrency Limit not found")
}

fn non_negative(field: &str, value: f64) -> ApiResult<()> {
    if value < 0.0 {
        return Err(ApiError::invalid(
            &["body", field],
            "ensure this value is greater than or equal to 0",
            "value_error.number.not_ge",
            Value::Null,
        ));
    }
    Ok(())
}

pub async fn create(State(app): State<AppState>, Body(body): Body<LimitCreate>) -> ApiResult<Response> {
    non_negative("limit", f64::from(body.limit))?;
    non_negative("active_slots", f64::from(body.active_slots))?;
    non_negative("denied_slots", f64::from(body.denied_slots))?;
    non_negative("slot_decay_per_second", body.slot_decay_per_second)?;
    let new = NewGlobalLimit {
        active: body.active,
        name: body.name,
        limit: body.limit,
        active_slots: body.active_slots,
        denied_slots: body.denied_slots,
        slot_decay_per_second: body.slot_decay_per_second,
    };
    let client = app.client().await?;
    let created = limits::create_v2(&client, &new).await?.ok_or_else(|| {
        ApiError::conflict(format!(
            "Concurrency limit with name {:?} already exists.",
            new.name
        ))
    })?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

pub async fn read(State(app): State<AppState>, Path(key): Path<String>) -> ApiResult<Response> {
    let client = app.client().await?;
    Ok(Json(limits::read_v2(&client, &key).await?.ok_or_else(not_found)?).into_response())
}

pub async fn update(
    State(app): State<AppState>,
    Path(key): Path<String>,
    Body(body): Body<LimitUpdate>,
) -> ApiResult<StatusCode> {
    for (field, value) in [
        ("limit", body.limit.map(f64::from)),
        ("active_slots", body.active_slots.map(f64::from)),
        ("denied_slots", body.denied_slots.map(f64::from)),
        ("slot_decay_per_second", body.slot_decay_per_second),
    ] {
        if let Some(v) = value {
            non_negative(field, v)?;
        }
    }
    let client = app.client().await?;
    let existing = limits::read_v2(&client, &key).await?.ok_or_else(not_found)?;
    let changes = GlobalLimitChanges {
        active: body.active,
        name: body.name,
        limit: body.limit,
        active_slots: body.active_slots,
        denied_slots: body.denied_slots,
        slot_decay_per_second: body.slot_decay_per_second,
    };
    if !limits::update_v2(&client, existing.id, &changes).await? {
        return Err(not_found());
    }
    Ok(StatusCode::NO_CONTENT)
}

pub async fn delete(State(app): State<AppState>, Path(key): Path<String>) -> ApiResult<StatusCode> {
    let client = app.client().await?;
    let existing = limits::read_v2(&client, &key).await?.ok_or_else(not_found)?;
    limits::delete_v2(&client, existing.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn filter(State(app): State<AppState>, Body(body): Body<PageBody>) -> ApiResult<Response> {
    let (limit, offset) = page(body.limit, body.offset)?;
    let client = app.client().await?;
    Ok(Json(limits::filter_v2(&client, limit, offset).await?).into_response())
}

fn minimal(limits: &[GlobalLimit]) -> Value {
    Value::from(
        limits
            .iter()
            .map(|l| json!({"id": l.id, "name": l.name, "limit": l.limit}))
            .collect::<Vec<_>>(),
    )
}

fn check_slots(body: &SlotsBody) -> ApiResult<()> {
    if body.names.is_empty() {
        return Err(ApiError::invalid(
            &["body", "names"],
            "ensure this value has at least 1 items",
            "value_error.list.min_items",
            Value::Null,
        ));
    }
    if body.slots <= 0 {
        return Err(ApiError::invalid(
            &["body", "slots"],
            "ensure this value is greater than 0",
            "value_error.number.not_gt",
            Value::Null,
        ));
    }
    Ok(())
}

pub async fn increment(State(app): State<AppState>, Body(body): Body<SlotsBody>) -> ApiResult<Response> {
    check_slots(&body)?;
    let rate_limit = match body.mode.as_deref() {
        None | Some("concurrency") => false,
        Some("rate_limit") => true,
        Some(other) => {
            return Err(ApiError::invalid(
                &["body", "mode"],
                format!("unexpected value {other:?}; permitted: 'concurrency', 'rate_limit'"),
                "value_error.const",
                Value::Null,
            ))
        }
    };
    let mut client = app.client().await?;
    let tx = client.transaction().await?;
    let all = limits::read_or_create_v2(&tx, &body.names).await?;
    let active: Vec<GlobalLimit> = all.into_iter().filter(|l| l.active).collect();
    if rate_limit && active.iter().any(|l| l.slot_decay_per_second == 0.0) {
        return Err(ApiError::unprocessable(
            "Only concurrency limits with slot decay can be used for rate limiting.",
        ));
    }
    if active.iter().any(|l| body.slots > l.limit) {
        return Err(ApiError::unprocessable(
            "Slots requested is greater than the limit",
        ));
    }
    if limits::try_increment_v2(&tx, &active, body.slots).await? {
        tx.commit().await?;
        return Ok(Json(minimal(&active)).into_response());
    }
    limits::add_denied_v2(&tx, &active, body.slots).await?;
    tx.commit().await?;
    let retry_after = retry_after_seconds(&active, body.slots);
    let mut response = (StatusCode::LOCKED, Json(json!({"detail": "Locked"}))).into_response();
    if let Ok(value) = header::HeaderValue::from_str(&retry_after.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    Ok(response)
}

/// How long a denied caller should wait: the slowest limit's time per slot times the
/// slots standing before it.
fn retry_after_seconds(active: &[GlobalLimit], slots: i32) -> f64 {
    let blocking = active
        .iter()
        .map(|l| {
            let waiting = f64::from(slots + l.denied_slots);
            if l.slot_decay_per_second > 0.0 {
                waiting
            } else {
                waiting / f64::from(l.limit.max(1))
            }
        })
        .fold(0.0, f64::max);
    let per_slot = active
        .iter()
        .map(|l| {
            if l.slot_decay_per_second > 0.0 {
                1.0 / l.slot_decay_per_second
            } else {
                l.avg_slot_occupancy_seconds.max(0.1)
            }
        })
        .fold(0.0, f64::max);
    per_slot * blocking
}

pub async fn decrement(State(app): State<AppState>, Body(body): Body<SlotsBody>) -> ApiResult<Response> {
    check_slots(&body)?;
    let mut client = app.client().await?;
    let tx = client.transaction().await?;
    let all = limits::lock_v2(&tx, &body.names).await?;
    let active: Vec<GlobalLimit> = all.into_iter().filter(|l| l.active).collect();
    let per_slot = body
        .occupancy_seconds
        .map(|o| (o / f64::from(body.slots)).max(0.1));
    limits::decrement_v2(&tx, &active, body.slots, per_slot).await?;
    tx.commit().await?;
    Ok(Json(minimal(&active)).into_response())
}
