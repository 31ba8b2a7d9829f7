//! The template's custom resources, created as CloudFormation creates them: it invokes the
//! resource's function with a `Create` request and waits for the function to PUT its
//! answer to the request's `ResponseURL`. The schema step (`SchemaMigrations`) is one:
//! the emulated deploy migrates through the real migration function, before anything
//! serves.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::routing::put;
use serde_json::{json, Value};
use tokio::sync::oneshot;

use super::runtime::Instance;
use super::template::{CustomResource, ACCOUNT, REGION};

/// Creates `resource` with `function`; returns the `Data` it answered.
pub async fn create(function: &Instance, resource: &CustomResource) -> Result<Value, String> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(|e| format!("no port for the custom resource's answer: {e}"))?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let (tx, rx) = oneshot::channel::<Value>();
    let tx = Arc::new(Mutex::new(Some(tx)));
    let app = axum::Router::new().route(
        "/response",
        put(move |body: Bytes| {
            let tx = tx.clone();
            async move {
                let answer = serde_json::from_slice(&body).unwrap_or(Value::Null);
                if let Some(tx) = tx.lock().ok().and_then(|mut t| t.take()) {
                    let _ = tx.send(answer);
                }
            }
        }),
    );
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let mut properties = resource.properties.clone();
    properties.insert(
        "ServiceToken".into(),
        json!(format!(
            "arn:aws:lambda:{REGION}:{ACCOUNT}:function:{}",
            function.id
        )),
    );
    let event = json!({
        "RequestType": "Create",
        "ServiceToken": properties["ServiceToken"],
        "ResponseURL": format!("http://127.0.0.1:{port}/response"),
        "StackId": format!("arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/stratus/{}", uuid::Uuid::new_v4()),
        "RequestId": uuid::Uuid::new_v4().to_string(),
        "LogicalResourceId": resource.id,
        "ResourceType": resource.resource_type,
        "ResourceProperties": properties,
    });
    let outcome = async {
        function
            .invoke(&event)
            .await
            .map_err(|e| format!("{} failed: {e:?}", function.id))?;
        tokio::time::timeout(function.timeout + Duration::from_secs(5), rx)
            .await
            .map_err(|_| format!("{} did not answer CloudFormation", function.id))?
            .map_err(|_| format!("{} did not answer CloudFormation", function.id))
    }
    .await;
    server.abort();
    let answer = outcome?;
    match answer.get("Status").and_then(Value::as_str) {
        Some("SUCCESS") => Ok(answer.get("Data").cloned().unwrap_or(Value::Null)),
        _ => Err(format!(
            "{} failed: {}",
            resource.id,
            answer
                .get("Reason")
                .and_then(Value::as_str)
                .unwrap_or("no reason given")
        )),
    }
}
