use crate::common;

use common::TestApp;
use http::{Method, Request};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use stratus_store::config::Settings;
use tower::ServiceExt;

#[tokio::test]
async fn root_routes_answer_as_prefect_does() {
    let app = TestApp::spawn().await;
    for (path, expected) in [
        ("/api/health", json!(true)),
        ("/api/version", json!("0.8.4")),
        ("/api/hello", json!("👋")),
        ("/api/ready", json!({"message": "OK"})),
    ] {
        let res = app.get(path).await;
        assert_eq!((res.status.as_u16(), res.body), (200, expected), "{path}");
    }
    let csrf = app.get("/api/csrf-token?client=abc").await;
    assert_eq!(csrf.status, 422);
    assert_eq!(csrf.body, json!({"detail": "CSRF protection is disabled."}));
}

#[tokio::test]
async fn the_csrf_route_requires_its_client_parameter() {
    let app = TestApp::spawn().await;
    let res = app.get("/api/csrf-token").await;
    assert_eq!(res.status, 422);
    assert_eq!(res.body["exception_message"], "Invalid request received.");
    assert_eq!(res.body["exception_detail"][0]["loc"], json!(["query", "client"]));
    assert_eq!(res.body["exception_detail"][0]["type"], "value_error.missing");
}

#[tokio::test]
async fn ready_is_503_when_the_database_does_not_answer() {
    // Nothing listens on port 1: connecting fails at once.
    let pool = stratus_store::db::pool("postgres://postgres@127.0.0.1:1/nowhere", 1).unwrap();
    let state = stratus_aws::state(Settings::from_env().unwrap(), pool)
        .await
        .unwrap();
    let service = stratus_http::serve::normalize(stratus::app(state));
    let get = |path: &'static str| {
        let service = service.clone();
        async move {
            let req = Request::builder()
                .method(Method::GET)
                .uri(path)
                .body(axum::body::Body::empty())
                .unwrap();
            let res = service.oneshot(req).await.unwrap();
            let status = res.status().as_u16();
            let bytes = res.into_body().collect().await.unwrap().to_bytes();
            (status, serde_json::from_slice::<Value>(&bytes).unwrap())
        }
    };
    assert_eq!(
        get("/api/ready").await,
        (503, json!({"message": "Database is not available"}))
    );
    // Liveness does not depend on the database.
    assert_eq!(get("/api/health").await, (200, json!(true)));
    // A route that needs the database answers the client-retryable 503.
    assert_eq!(
        get("/api/concurrency_limits/tag/x").await,
        (503, json!({"exception_message": "Service Unavailable"}))
    );
}

#[tokio::test]
async fn unknown_routes_are_json_404() {
    let app = TestApp::spawn().await;
    for path in ["/api/nope", "/api/flows/x/y/z", "/api/v2/nothing/here"] {
        let res = app.get(path).await;
        assert_eq!(res.status, 404, "{path}");
        assert_eq!(res.body, json!({"detail": "Not Found"}), "{path}");
    }
}

#[tokio::test]
async fn trailing_slashes_are_accepted_on_every_route() {
    let app = TestApp::spawn().await;
    assert_eq!(app.get("/api/health/").await.body, json!(true));
    assert_eq!(app.get("/api/version/").await.body, json!("0.8.4"));
    assert_eq!(app.post("/api/flows/", json!({"name": "a"})).await.status, 201);
    assert_eq!(app.post("/api/flows", json!({"name": "b"})).await.status, 201);
    assert_eq!(app.post("/api/logs/", json!([])).await.status, 201);
    assert_eq!(app.post("/api/logs", json!([])).await.status, 201);
    assert_eq!(app.post("/api/logs/filter/", json!({})).await.body, json!([]));
}

async fn health_with_version(app: &TestApp, version: &str) -> common::Response {
    app.raw(
        Method::GET,
        "/api/health",
        None,
        &[("X-PREFECT-API-VERSION", version)],
    )
    .await
}

#[tokio::test]
async fn the_api_version_header_is_checked() {
    let app = TestApp::spawn().await;
    for accepted in ["0.8.4", "0.8.0", "0.9.0", "1.0.0"] {
        let res = health_with_version(&app, accepted).await;
        assert_eq!((res.status.as_u16(), res.body), (200, json!(true)), "{accepted}");
    }
    for malformed in ["abc", "0.8", "0.8.4.1", "", "v0.8.4"] {
        let res = health_with_version(&app, malformed).await;
        assert_eq!(res.status, 400, "{malformed:?}");
        assert_eq!(
            res.body,
            json!({"detail": format!("Invalid X-PREFECT-API-VERSION header format.Expected header in format 'x.y.z' but received {malformed}")})
        );
    }
    for old in ["0.7.0", "0.7.99"] {
        let res = health_with_version(&app, old).await;
        assert_eq!(res.status, 400);
        assert_eq!(
            res.body,
            json!({"detail": format!("The request specified API version {old} but this server requires version 0.8.0 or higher.")})
        );
    }
    // The check runs before routing and for every family.
    let res = app
        .raw(
            Method::POST,
            "/api/logs/filter",
            Some("{}".into()),
            &[("X-PREFECT-API-VERSION", "0.7.0")],
        )
        .await;
    assert_eq!(res.status, 400);
}
