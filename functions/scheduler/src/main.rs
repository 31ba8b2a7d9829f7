use std::time::Duration;

use lambda_http::{lambda_runtime, service_fn, Error, LambdaEvent};
use serde_json::Value;

/// Leaves headroom under the function's 60 s timeout.
const BUDGET: Duration = Duration::from_secs(40);

#[tokio::main]
async fn main() -> Result<(), Error> {
    let state = stratus_aws::lambda_state().await?;
    lambda_runtime::run(service_fn(|_: LambdaEvent<Value>| {
        let state = state.clone();
        async move {
            stratus_scheduler::invoke(&state, BUDGET)
                .await
                .map_err(Error::from)
        }
    }))
    .await
}
