//! The notifier on Lambda, invoked by the notifications SQS queue (event source mapping
//! with partial batch responses): messages whose notification should be retried are
//! reported back, and SQS delivers them again.

use lambda_http::{lambda_runtime, service_fn, Error, LambdaEvent};
use serde_json::{json, Value};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let state = stratus_aws::lambda_state().await?;
    let schema = stratus_aws::schema::SchemaCheck::default();
    let http = stratus_notifier::deliver::http_client();
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        let (state, http, schema) = (state.clone(), http.clone(), schema.clone());
        async move {
            schema
                .check(&state.db)
                .await
                .map_err(|e| Error::from(format!("{e:?}")))?;
            let retry = stratus_notifier::deliver::handle_sqs_event(&state, &http, &event.payload).await;
            let failures: Vec<Value> = retry
                .into_iter()
                .map(|id| json!({ "itemIdentifier": id }))
                .collect();
            Ok::<Value, Error>(json!({ "batchItemFailures": failures }))
        }
    }))
    .await
}
