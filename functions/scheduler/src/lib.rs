//! The scheduler function. On AWS an EventBridge rule invokes it every minute; locally
//! `stratus server start` runs the same pieces on timers. One invocation: a scheduler tick
//! (new scheduled runs, Late marks, the outbox sweep), then run upkeep (expired pauses,
//! cancellation cleanup, retention), within `budget`.

use std::time::Duration;

use serde_json::{json, Value};
use stratus_http::AppState;
use stratus_store::scheduler::{self, Limits};

pub async fn invoke(state: &AppState, budget: Duration) -> Result<Value, String> {
    let runs = state.runs();
    let tick = scheduler::tick(&runs, &Limits::default(), budget)
        .await
        .map_err(|e| format!("scheduler tick failed: {e:?}"))?;
    let upkeep = stratus_store::maintenance::run_once(&runs, &state.settings)
        .await
        .map_err(|e| format!("run upkeep failed: {e:?}"))?;
    if tick != Default::default() || upkeep != Default::default() {
        tracing::info!(?tick, ?upkeep, "scheduler invocation");
    }
    Ok(json!({
        "deployments": tick.deployments,
        "runs_created": tick.runs_created,
        "late_marked": tick.late_marked,
        "published": tick.published,
        "publish_failed": tick.publish_failed,
        "notifications_published": tick.notifications_published,
    }))
}
