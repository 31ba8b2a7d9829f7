//! A function does not migrate: it checks the schema on its first request. Older than it
//! needs: 503, saying what to run (and it checks again on the next request). Newer: served,
//! since migrations only add.

use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use crate::common::TestApp;

async fn filter_flows(app: &tower_http::normalize_path::NormalizePath<axum::Router>) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(Method::POST)
        .uri("/api/flows/filter")
        .header("content-type", "application/json")
        .body(axum::body::Body::from("{}"))
        .expect("request");
    let res = app.clone().oneshot(req).await.expect("answer");
    let status = res.status();
    let body = res.into_body().collect().await.expect("body").to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_function_refuses_an_older_schema_until_it_is_migrated_and_serves_a_newer_one() {
    let test = TestApp::spawn().await;
    let db = test.db().await;
    let need = stratus_store::db::required_schema_version();
    let function = || {
        stratus_aws::function_app(
            stratus_http::serve::api(stratus_flows::router(), test.state.clone()),
            test.state.db.clone(),
        )
    };

    // The newest migration's record set aside: the schema looks a version older.
    db.execute(
        "UPDATE refinery_schema_history SET version = -1 WHERE version = $1",
        &[&need],
    )
    .await
    .expect("set the newest migration aside");
    let older = function();
    let (status, body) = filter_flows(&older).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains(&format!("at version {}", need - 1)) && detail.contains("stratus database upgrade"),
        "{detail}"
    );

    // Migrated meanwhile: the same instance serves at once.
    db.execute(
        "UPDATE refinery_schema_history SET version = $1 WHERE version = -1",
        &[&need],
    )
    .await
    .expect("put it back");
    assert_eq!(filter_flows(&older).await.0, StatusCode::OK);

    // A later deploy's migration ran before this function was updated: it keeps serving.
    db.execute(
        "INSERT INTO refinery_schema_history (version, name, applied_on, checksum) VALUES ($1, 'from_a_later_deploy', '2026-12-05', '0')",
        &[&(need + 1)],
    )
    .await
    .expect("record a newer migration");
    assert_eq!(filter_flows(&function()).await.0, StatusCode::OK);
}
