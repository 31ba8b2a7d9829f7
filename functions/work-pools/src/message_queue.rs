//! `/work_pools/{name}/message_queue*` (a Stratus extension): where a pool's message queue
//! is, and the queue itself over HTTP for agents when it is served from Postgres (with
//! SQS, agents talk to SQS directly; these routes work there too).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::Value;
use stratus_shared::queue::{MAX_VISIBILITY_SECONDS, MAX_WAIT_SECONDS};
use stratus_shared::{ApiError, ApiResult, AppState, Body};

use crate::pool_named;

/// The queue's backend and, for SQS, its URL and region.
pub async fn info(State(app): State<AppState>, Path(name): Path<String>) -> ApiResult<Response> {
    let pool = pool_named(&app, &name).await?;
    Ok(Json(app.queue.ensure(pool.id).await?).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ReceiveBody {
    #[serde(default)]
    max_messages: Option<u32>,
    #[serde(default)]
    wait_seconds: Option<u32>,
    #[serde(default)]
    visibility_timeout: Option<u32>,
}

fn out_of_range(field: &str, max: u32, value: u32) -> ApiError {
    ApiError::invalid(
        &["body", field],
        format!(
            "ensure this value is between {} and {max}",
            u32::from(field == "max_messages")
        ),
        "value_error.number.not_le",
        Value::from(value),
    )
}

/// Long-polls the pool's queue, as SQS ReceiveMessage does.
pub async fn receive(
    State(app): State<AppState>,
    Path(name): Path<String>,
    Body(body): Body<ReceiveBody>,
) -> ApiResult<Response> {
    let max = body.max_messages.unwrap_or(10);
    if !(1..=10).contains(&max) {
        return Err(out_of_range("max_messages", 10, max));
    }
    let wait = body.wait_seconds.unwrap_or(MAX_WAIT_SECONDS);
    if wait > MAX_WAIT_SECONDS {
        return Err(out_of_range("wait_seconds", MAX_WAIT_SECONDS, wait));
    }
    let visibility = body.visibility_timeout.unwrap_or(30);
    if visibility > MAX_VISIBILITY_SECONDS {
        return Err(out_of_range(
            "visibility_timeout",
            MAX_VISIBILITY_SECONDS,
            visibility,
        ));
    }
    let pool = pool_named(&app, &name).await?;
    let got = app.queue.receive(pool.id, max, wait, visibility).await?;
    Ok(Json(got).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiptBody {
    receipt: String,
    #[serde(default)]
    visibility_timeout: Option<u32>,
}

pub async fn delete(
    State(app): State<AppState>,
    Path(name): Path<String>,
    Body(body): Body<ReceiptBody>,
) -> ApiResult<StatusCode> {
    let pool = pool_named(&app, &name).await?;
    app.queue
        .delete(pool.id, &body.receipt)
        .await
        .map_err(|e| ApiError::unprocessable(e.0))?;
    Ok(StatusCode::NO_CONTENT)
}

/// Makes a received message visible again after `visibility_timeout` seconds (default 0).
pub async fn release(
    State(app): State<AppState>,
    Path(name): Path<String>,
    Body(body): Body<ReceiptBody>,
) -> ApiResult<StatusCode> {
    let seconds = body.visibility_timeout.unwrap_or(0);
    if seconds > MAX_VISIBILITY_SECONDS {
        return Err(out_of_range(
            "visibility_timeout",
            MAX_VISIBILITY_SECONDS,
            seconds,
        ));
    }
    let pool = pool_named(&app, &name).await?;
    app.queue
        .release(pool.id, &body.receipt, seconds)
        .await
        .map_err(|e| ApiError::unprocessable(e.0))?;
    Ok(StatusCode::NO_CONTENT)
}
