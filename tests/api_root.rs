mod common;

use common::TestApp;
use http::Method;
use serde_json::json;

#[tokio::test]
async fn root_routes_answer_as_prefect_does() {
    let app = TestApp::spawn().await;
    assert_eq!(app.get("/api/health").await.body, json!(true));
    assert_eq!(app.get("/api/version").await.body, json!("0.8.4"));
    assert_eq!(app.get("/api/hello").await.body, json!("👋"));
    assert_eq!(app.get("/api/ready").await.body, json!({"message": "OK"}));
    let csrf = app.get("/api/csrf-token?client=abc").await;
    assert_eq!(csrf.status, 422);
    assert_eq!(csrf.body, json!({"detail": "CSRF protection is disabled."}));
}

#[tokio::test]
async fn unknown_routes_are_json_404() {
    let app = TestApp::spawn().await;
    let res = app.get("/api/nope").await;
    assert_eq!(res.status, 404);
    assert_eq!(res.body, json!({"detail": "Not Found"}));
}

#[tokio::test]
async fn trailing_slashes_are_accepted_on_every_route() {
    let app = TestApp::spawn().await;
    assert_eq!(app.get("/api/health/").await.body, json!(true));
    assert_eq!(app.post("/api/flows/", json!({"name": "a"})).await.status, 201);
    assert_eq!(app.post("/api/flows", json!({"name": "b"})).await.status, 201);
}

#[tokio::test]
async fn the_api_version_header_is_checked() {
    let app = TestApp::spawn().await;
    let ok = app
        .raw(
            Method::GET,
            "/api/health",
            None,
            &[("X-PREFECT-API-VERSION", "0.8.4")],
        )
        .await;
    assert_eq!(ok.status, 200);
    let bad = app
        .raw(
            Method::GET,
            "/api/health",
            None,
            &[("X-PREFECT-API-VERSION", "abc")],
        )
        .await;
    assert_eq!(bad.status, 400);
    assert_eq!(
        bad.body,
        json!({"detail": "Invalid X-PREFECT-API-VERSION header format.Expected header in format 'x.y.z' but received abc"})
    );
    let old = app
        .raw(
            Method::GET,
            "/api/health",
            None,
            &[("X-PREFECT-API-VERSION", "0.7.0")],
        )
        .await;
    assert_eq!(old.status, 400);
    assert_eq!(
        old.body,
        json!({"detail": "The request specified API version 0.7.0 but this server requires version 0.8.0 or higher."})
    );
}
