use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lambda_http::{lambda_runtime, service_fn, Error, LambdaEvent};
use serde_json::Value;

/// Left over at the end of an invocation, under the function's timeout.
const MARGIN: Duration = Duration::from_secs(5);

/// EventBridge's finest rate is one minute, but Prefect marks runs Late and expires pauses
/// within seconds. So one invocation ticks every `STRATUS_SCHEDULER_INTERVAL_SECONDS` for
/// `STRATUS_SCHEDULER_INVOCATION_SECONDS` (55 of the template's 60), and stops sooner if
/// its deadline nears; the rule's next invocation takes over, and reserved concurrency 1
/// keeps two from overlapping. A deadline already past when the invocation starts is not
/// believed: cargo-lambda's emulator sends its timeout (600000) where the Runtime API
/// gives an instant.
const DEFAULT_INVOCATION_SECONDS: u64 = 55;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let state = stratus_aws::lambda_state().await?;
    let schema = stratus_aws::schema::SchemaCheck::default();
    let budget = Duration::from_secs(
        std::env::var("STRATUS_SCHEDULER_INVOCATION_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(DEFAULT_INVOCATION_SECONDS),
    );
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        let (state, schema) = (state.clone(), schema.clone());
        async move {
            schema
                .check(&state.db)
                .await
                .map_err(|e| Error::from(format!("{e:?}")))?;
            let every = Duration::from_secs(state.settings.scheduler_interval_seconds.max(1));
            let started = tokio::time::Instant::now();
            let now = || SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
            let deadline = Duration::from_millis(event.context.deadline);
            let believable = deadline > now();
            let left = || {
                let by_budget = budget.saturating_sub(started.elapsed());
                if believable {
                    by_budget.min(deadline.saturating_sub(now()))
                } else {
                    by_budget
                }
            };
            let mut ticks = 0u32;
            loop {
                let tick = tokio::time::Instant::now();
                let report = stratus_scheduler::invoke(&state, every)
                    .await
                    .map_err(Error::from)?;
                ticks += 1;
                if left() < every + MARGIN {
                    return Ok::<Value, Error>(serde_json::json!({ "ticks": ticks, "last": report }));
                }
                tokio::time::sleep_until(tick + every).await;
            }
        }
    }))
    .await
}
