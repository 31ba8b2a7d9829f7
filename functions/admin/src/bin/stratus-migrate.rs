//! The deploy's schema step on AWS: a CloudFormation custom resource (`SchemaMigrations` in
//! infra/template.yaml) invokes this function when the stack is created or updated. It
//! applies pending migrations and registers the core block types, then answers
//! CloudFormation at the request's `ResponseURL`. The API functions depend on the resource,
//! so a deploy migrates before it updates them; migrations only add, so the functions still
//! running meanwhile keep working. Deleting the stack leaves the database alone.

use lambda_http::{lambda_runtime, service_fn, Error, LambdaEvent};
use serde_json::{json, Value};
use stratus_store::config::Settings;

#[tokio::main]
async fn main() -> Result<(), Error> {
    stratus_http::serve::init_tracing();
    let http = reqwest::Client::new();
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        let http = http.clone();
        async move {
            let request = event.payload;
            let outcome = match request.get("RequestType").and_then(Value::as_str) {
                Some("Create") | Some("Update") => migrate().await,
                Some("Delete") => Ok(json!({ "Applied": 0 })),
                other => Err(format!("unknown RequestType {other:?}")),
            };
            if let Err(e) = &outcome {
                tracing::error!("schema step failed: {e}");
            }
            respond(&http, &request, &outcome).await?;
            Ok::<Value, Error>(json!({ "ok": outcome.is_ok() }))
        }
    }))
    .await
}

async fn migrate() -> Result<Value, String> {
    let mut settings = Settings::from_env().map_err(|e| e.to_string())?;
    stratus_aws::secrets::resolve_database_url(&mut settings).await?;
    stratus_aws::secrets::resolve_encryption_keys(&mut settings).await?;
    let keyring = settings.keyring().map_err(|e| e.to_string())?;
    let url = settings.require_database_url().map_err(|e| e.to_string())?;
    let pool = stratus_store::db::pool(url, 1).map_err(|e| e.to_string())?;
    let applied = stratus_store::db::migrate(&pool)
        .await
        .map_err(|e| e.to_string())?;
    let types = stratus_store::system_blocks::install_everywhere(&pool)
        .await
        .map_err(|e| e.to_string())?;
    // Block data written before sealing began (or under a key since rotated out of first
    // place) is sealed under the current key.
    let sealed = stratus_store::db::blocks::reseal_all(&pool, &keyring)
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(applied, workspaces = types, sealed, "schema step done");
    Ok(json!({
        "Applied": applied,
        "SchemaVersion": stratus_store::db::required_schema_version(),
    }))
}

/// CloudFormation's custom resource response: a PUT of JSON to the presigned URL.
async fn respond(
    http: &reqwest::Client,
    request: &Value,
    outcome: &Result<Value, String>,
) -> Result<(), Error> {
    let field = |k: &str| request.get(k).cloned().unwrap_or(Value::Null);
    let url = request
        .get("ResponseURL")
        .and_then(Value::as_str)
        .ok_or("the request has no ResponseURL")?;
    let mut body = json!({
        "Status": if outcome.is_ok() { "SUCCESS" } else { "FAILED" },
        "PhysicalResourceId": request.get("PhysicalResourceId").cloned().unwrap_or_else(|| json!("stratus-schema")),
        "StackId": field("StackId"),
        "RequestId": field("RequestId"),
        "LogicalResourceId": field("LogicalResourceId"),
    });
    match outcome {
        Ok(data) => body["Data"] = data.clone(),
        Err(e) => body["Reason"] = json!(e.chars().take(3000).collect::<String>()),
    }
    http.put(url)
        // The presigned URL is signed for an empty content type.
        .header("content-type", "")
        .body(body.to_string())
        .send()
        .await?
        .error_for_status()?;
    Ok(())
}
