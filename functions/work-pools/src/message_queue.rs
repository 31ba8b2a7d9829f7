//! `/work_pools/{name}/message_queue*` (a Stratus extension): where a pool's message queue
//! is, and the queue itself over HTTP for agents when it is served from Postgres (with
//! SQS, agents talk to SQS directly; these routes work there too).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use stratus_http::app::ClientVersion;
use stratus_http::{ApiError, ApiResult, AppState, Body};
use stratus_store::queue::{MAX_VISIBILITY_SECONDS, MAX_WAIT_SECONDS};

use crate::pool_named;

/// The queue's backend and, for SQS, its URL and region.
pub async fn info(State(app): State<AppState>, Path(name): Path<String>) -> ApiResult<Response> {
    let pool = pool_named(&app, &name).await?;
    Ok(Json(app.queue.ensure(pool.id).await?).into_response())
}

#[derive(Deserialize, Default, schemars::JsonSchema)]
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

#[derive(Deserialize, schemars::JsonSchema)]
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

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimBody {
    flow_run_id: uuid::Uuid,
    /// The claiming agent's worker name: it must then name the run in its heartbeats
    /// (`flow_run_ids`), or the run is marked Crashed once the agent is silent.
    #[serde(default)]
    worker: Option<String>,
}

/// Claims a run of the pool for an agent (Scheduled → Pending, exactly once), as the
/// workers' poll would have handed it out: not while its pool or queue is paused, nor
/// while either runs as many as its concurrency limit allows (ask again after
/// `retry_after` seconds), nor while it retries in the process that ran it (never).
/// A Pending run this same worker claimed before is its again (the answer to that claim
/// may have been lost). Answers `claimed`, with the reason when not; the orchestration
/// result otherwise.
pub async fn claim(
    State(app): State<AppState>,
    ClientVersion(version): ClientVersion,
    Path(name): Path<String>,
    Body(body): Body<ClaimBody>,
) -> ApiResult<Response> {
    use stratus_domain::orchestration::{RunKind, Status};
    use stratus_domain::states::{State as RunState, StateType};
    use stratus_store::db::work_pools::{claim_check, reclaim, record_claim, ClaimCheck};

    let pool = pool_named(&app, &name).await?;
    let id = body.flow_run_id;
    let answer = app
        .runs()
        .change::<_, ApiError>(version, async |change| {
            if let Some(worker) = body.worker.as_deref() {
                if reclaim(change.tx(), id, pool.id, worker).await? {
                    return Ok(json!({"claimed": true, "reason": "the run was already claimed by this worker"}));
                }
            }
            match claim_check(change.tx(), id).await? {
                Some(check) if check.work_pool_id != pool.id => {
                    return Ok(json!({"claimed": false, "reason": format!("the run is not in the work pool {name:?}")}));
                }
                Some(ClaimCheck { hold: Some(hold), .. }) => {
                    let mut answer = json!({"claimed": false, "reason": hold.to_string()});
                    if let Some(seconds) = hold.retry_after() {
                        answer["retry_after"] = json!(seconds);
                    }
                    return Ok(answer);
                }
                _ => {}
            }
            let pending = RunState::new(StateType::Pending, chrono::Utc::now());
            let outcome = change
                .set_state(RunKind::Flow, id, pending, false)
                .await?
                .ok_or_else(|| ApiError::not_found("Flow run not found"))?;
            let claimed = matches!(outcome.result.status, Status::Accept)
                && outcome.written
                && outcome.result.state.as_ref().map(|s| s.kind) == Some(StateType::Pending);
            if let (true, Some(worker)) = (claimed, body.worker.as_deref()) {
                record_claim(change.tx(), id, pool.id, worker).await?;
            }
            let mut answer = serde_json::to_value(&outcome.result).unwrap_or(Value::Null);
            if let Some(map) = answer.as_object_mut() {
                map.insert("claimed".into(), Value::Bool(claimed));
            }
            Ok(answer)
        })
        .await?;
    Ok(Json(answer).into_response())
}
