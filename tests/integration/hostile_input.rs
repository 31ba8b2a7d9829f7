//! Input that once gave a 500, hung the server or aborted it (found by probing and fuzzing,
//! issue "Proven under faults and hostile input"): each now gets a clear 4xx and the server
//! keeps answering.

use crate::common;

use common::TestApp;
use serde_json::{json, Value};

async fn flow_id(app: &TestApp) -> Value {
    app.post("/api/flows/", json!({"name": "f"})).await.body["id"].clone()
}

#[tokio::test]
async fn values_postgres_cannot_store_get_422_not_500() {
    let app = TestApp::spawn().await;
    // A NUL character in a text column and in a JSON document.
    let res = app.post("/api/flows/", json!({"name": "a\u{0}b"})).await;
    assert_eq!(res.status, 422, "{}", res.text);
    assert!(
        res.body["detail"].as_str().unwrap().contains("NUL"),
        "{}",
        res.text
    );
    let flow = flow_id(&app).await;
    let res = app
        .post(
            "/api/flow_runs/",
            json!({"flow_id": flow, "parameters": {"x": "a\u{0}b"}}),
        )
        .await;
    assert_eq!(res.status, 422, "{}", res.text);
    // A name no index entry can hold (about 1 MB that does not compress).
    let long: String = (0..30_000)
        .map(|_| uuid::Uuid::new_v4().simple().to_string())
        .collect();
    let res = app.post("/api/flows/", json!({ "name": long })).await;
    assert_eq!(res.status, 422, "{}", res.text);
    // Numbers past what a date or an interval can hold.
    let res = app
        .post(
            "/api/flow_runs/history",
            json!({"history_start": "2026-01-01T00:00:00Z", "history_end": "2026-01-02T00:00:00Z",
                   "history_interval_seconds": 1e308}),
        )
        .await;
    assert!(res.status.as_u16() < 500, "{}: {}", res.status, res.text);
    assert_eq!(app.get("/api/health").await.status, 200);
}

#[tokio::test]
async fn an_oversized_body_is_413() {
    let app = TestApp::spawn().await;
    let huge = "x".repeat(17 * 1024 * 1024);
    let res = app
        .post(
            "/api/logs/",
            json!([{"name": "n", "level": 20, "message": huge,
                                   "timestamp": "2026-01-01T00:00:00Z"}]),
        )
        .await;
    assert_eq!(res.status, 413, "{}", res.text);
}

#[tokio::test]
async fn schedules_prefect_refuses_are_refused() {
    let app = TestApp::spawn().await;
    let flow = flow_id(&app).await;
    for schedule in [
        json!({"interval": 60, "timezone": "Mars/Olympus"}),
        json!({"cron": "99 99 99 99 99"}),
        json!({"cron": "@reboot"}),
        json!({"interval": 1e-7}),
        json!({"rrule": "FREQ=FORTNIGHTLY"}),
    ] {
        let res = app
            .post(
                "/api/deployments/",
                json!({"name": "d", "flow_id": flow, "schedules": [{"schedule": schedule}]}),
            )
            .await;
        assert_eq!(res.status, 422, "{schedule}: {}", res.text);
    }
}

/// A tenth-of-a-second interval from Prefect's default anchor (years of steps before now)
/// once looped forever in the scheduler, and the server stopped answering.
#[tokio::test]
async fn a_short_interval_far_from_its_anchor_schedules_at_once() {
    let app = TestApp::spawn().await;
    let flow = flow_id(&app).await;
    let d = app
        .post(
            "/api/deployments/",
            json!({"name": "fast", "flow_id": flow, "schedules": [{"schedule": {"interval": 0.1}}]}),
        )
        .await;
    assert_eq!(d.status, 201, "{}", d.text);
    let id = d.body["id"].as_str().unwrap().to_string();
    let started = std::time::Instant::now();
    let res = app
        .post(
            &format!("/api/deployments/{id}/schedule"),
            json!({"max_runs": 5, "min_runs": 5}),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    let runs = app
        .post(
            "/api/flow_runs/filter",
            json!({"deployments": {"id": {"any_": [id]}}}),
        )
        .await;
    assert_eq!(runs.body.as_array().unwrap().len(), 5, "{}", runs.text);
    let res = app
        .post(
            &format!("/api/deployments/{id}/schedule"),
            json!({"min_time": 1e308}),
        )
        .await;
    assert_eq!(res.status, 422, "{}", res.text);
    assert_eq!(app.get("/api/health").await.status, 200);
}

#[tokio::test]
async fn filter_lists_are_bounded_so_one_request_cannot_hold_a_connection() {
    let app = TestApp::spawn().await;
    let ids = |n: usize| -> Vec<String> { (0..n).map(|_| uuid::Uuid::new_v4().to_string()).collect() };
    for (path, filter) in [
        (
            "/api/flow_runs/filter",
            json!({"flow_runs": {"id": {"not_any_": ids(1001)}}}),
        ),
        (
            "/api/task_runs/filter",
            json!({"task_runs": {"name": {"any_": ids(1001)}}}),
        ),
        (
            "/api/flows/filter",
            json!({"flows": {"tags": {"all_": ids(1001)}}}),
        ),
        (
            "/api/artifacts/filter",
            json!({"artifacts": {"key": {"any_": ids(1001)}}}),
        ),
    ] {
        let res = app.post(path, filter).await;
        assert_eq!(res.status, 422, "{path}: {}", res.text);
        assert!(res.text.contains("at most 1000 items"), "{path}: {}", res.text);
    }
    // At the bound the request is answered, and quickly.
    let started = std::time::Instant::now();
    let res = app
        .post(
            "/api/flow_runs/filter",
            json!({"flow_runs": {"id": {"not_any_": ids(1000)}, "name": {"any_": ids(1000)}}}),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
}

#[tokio::test]
async fn json_nested_past_128_levels_is_a_422_at_once() {
    let app = TestApp::spawn().await;
    let flow = flow_id(&app).await;
    let deep = format!(
        r#"{{"flow_id": {flow}, "parameters": {{"x": {}{}}}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let started = std::time::Instant::now();
    let res = app
        .raw(http::Method::POST, "/api/flow_runs/", Some(deep), &[])
        .await;
    assert_eq!(res.status, 422, "{}", res.text);
    assert!(res.text.contains("recursion limit exceeded"), "{}", res.text);
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
}

/// Found by the fuzzer: the collection filter's `latest_id` on the artifact routes reached
/// SQL as a column the artifact table lacks.
#[tokio::test]
async fn latest_id_is_refused_on_artifacts_as_prefect_refuses_it() {
    let app = TestApp::spawn().await;
    let body = json!({"artifacts": {"latest_id": {"not_any_": [uuid::Uuid::nil()]}}});
    for path in ["/api/artifacts/filter", "/api/artifacts/count"] {
        let res = app.post(path, body.clone()).await;
        assert_eq!(res.status, 422, "{path}: {}", res.text);
        assert_eq!(
            res.body["exception_detail"][0]["loc"],
            json!(["body", "artifacts", "latest_id"])
        );
    }
    for path in ["/api/artifacts/latest/filter", "/api/artifacts/latest/count"] {
        assert_eq!(app.post(path, body.clone()).await.status, 200, "{path}");
    }
}

/// A worker may heartbeat with any interval: three times the largest int overflowed the
/// worker's status, so one such worker broke its pool's worker list (422) and, once it had
/// claimed a run, every upkeep pass.
#[tokio::test]
async fn a_huge_heartbeat_interval_breaks_neither_the_worker_list_nor_upkeep() {
    let app = TestApp::spawn().await;
    app.post("/api/work_pools/", json!({"name": "huge", "type": "process"}))
        .await;
    let res = app
        .post(
            "/api/work_pools/huge/workers/heartbeat",
            json!({"name": "w", "heartbeat_interval_seconds": 1e12}),
        )
        .await;
    assert_eq!(res.status, 204, "{}", res.text);
    let workers = app.post("/api/work_pools/huge/workers/filter", json!({})).await;
    assert_eq!(workers.status, 200, "{}", workers.text);
    assert_eq!(workers.body[0]["status"], "ONLINE");
    let flow = flow_id(&app).await;
    let run = app
        .post(
            "/api/flow_runs/",
            json!({"flow_id": flow, "work_pool_name": "huge", "state": {"type": "SCHEDULED"}}),
        )
        .await
        .body;
    let claim = app
        .post(
            "/api/work_pools/huge/message_queue/claim",
            json!({"flow_run_id": run["id"], "worker": "w"}),
        )
        .await;
    assert_eq!(claim.body["claimed"], true, "{}", claim.text);
    let report = stratus_store::maintenance::run_once(&app.state.runs(), &app.state.settings).await;
    assert!(report.is_ok(), "{report:?}");
}

/// Thirty references, each to an `anyOf` of the one before twice: checking one value
/// against it would take 2^30 steps, and held a core (and the server) for minutes.
fn exponential_schema() -> Value {
    let mut defs = serde_json::Map::new();
    defs.insert("a0".into(), json!({"type": "string"}));
    for i in 1..=30 {
        let previous = json!({"$ref": format!("#/definitions/a{}", i - 1)});
        defs.insert(
            format!("a{i}"),
            json!({"anyOf": [previous, {"allOf": [previous]}]}),
        );
    }
    json!({"type": "object", "definitions": defs, "properties": {"x": {"$ref": "#/definitions/a30"}}})
}

#[tokio::test]
async fn a_parameter_schema_too_costly_to_check_is_refused_at_once() {
    let app = TestApp::spawn().await;
    let flow = flow_id(&app).await;
    let deployment = app
        .post(
            "/api/deployments/",
            json!({"name": "d", "flow_id": flow, "enforce_parameter_schema": true,
                   "parameter_openapi_schema": exponential_schema()}),
        )
        .await;
    assert_eq!(deployment.status, 201, "{}", deployment.text);
    let started = std::time::Instant::now();
    let res = app
        .post(
            &format!(
                "/api/deployments/{}/create_flow_run",
                deployment.body["id"].as_str().unwrap()
            ),
            json!({"parameters": {"x": 1}}),
        )
        .await;
    assert_eq!(res.status, 409, "{}", res.text);
    assert!(res.text.contains("too complex"), "{}", res.text);
    let res = app
        .post(
            "/api/ui/schemas/validate",
            json!({"schema": exponential_schema(), "values": {"x": 1}}),
        )
        .await;
    assert!(res.status.as_u16() < 500, "{}", res.text);
    assert!(res.text.contains("too complex"), "{}", res.text);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}
