use crate::common;

use common::TestApp;
use serde_json::{json, Value};

/// `Deployment.apply(work_queue_concurrency=...)` creates `default` on a fresh server,
/// then reads it by name (Prefect 2.20's `create_work_queue` returns the default queue the
/// new default agent pool was created with).
#[tokio::test]
async fn the_default_queue_is_created_with_the_default_agent_pool() {
    let app = TestApp::spawn().await;
    let res = app.post("/api/work_queues/", json!({"name": "default"})).await;
    assert_eq!(res.status, 201, "{}", res.text);
    assert_eq!(res.body["name"], "default");
    assert_eq!(res.body["work_pool_name"], "default-agent-pool");
    let by_name = app.get("/api/work_queues/name/default").await;
    assert_eq!(by_name.status, 200, "{}", by_name.text);
    assert_eq!(by_name.body["id"], res.body["id"]);
    let pool = app.get("/api/work_pools/default-agent-pool").await;
    assert_eq!(pool.body["default_queue_id"], res.body["id"]);
    // Once the pool exists, the name is taken, as on Prefect.
    let again = app.post("/api/work_queues/", json!({"name": "default"})).await;
    assert_eq!(again.status, 409, "{}", again.text);
    assert_eq!(
        again.body,
        json!({"detail": "A work queue with this name already exists."})
    );
}

#[tokio::test]
async fn legacy_queues_live_in_the_default_agent_pool() {
    let app = TestApp::spawn().await;
    let res = app
        .post(
            "/api/work_queues/",
            json!({"name": "agents", "description": null, "filter": null}),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.text);
    assert_eq!(res.body["work_pool_name"], "default-agent-pool");
    let id = res.body["id"].as_str().unwrap().to_string();
    assert_eq!(
        app.post("/api/work_queues/", json!({"name": "agents"}))
            .await
            .body,
        json!({"detail": "A work queue with this name already exists."})
    );
    assert_eq!(
        app.get("/api/work_queues/name/agents").await.body["id"],
        json!(id)
    );
    assert_eq!(
        app.get("/api/work_queues/name/nope").await.body,
        json!({"detail": "work queue not found"})
    );
    assert_eq!(
        app.get(&format!("/api/work_queues/{id}")).await.body["name"],
        "agents"
    );
    assert_eq!(
        app.patch(
            &format!("/api/work_queues/{id}"),
            json!({"concurrency_limit": 1, "filter": {"tags": ["x"]}})
        )
        .await
        .status,
        204
    );
    let read = app.get(&format!("/api/work_queues/{id}")).await.body;
    assert_eq!(
        (read["concurrency_limit"].clone(), read["filter"].clone()),
        (json!(1), json!({"tags": ["x"]}))
    );
    // Explicit nulls clear the filter and the poll time; absent keys leave them.
    app.patch(
        &format!("/api/work_queues/{id}"),
        json!({"last_polled": "2026-01-02T03:04:05Z"}),
    )
    .await;
    app.patch(&format!("/api/work_queues/{id}"), json!({"description": "d"}))
        .await;
    let read = app.get(&format!("/api/work_queues/{id}")).await.body;
    assert!(
        read["last_polled"].is_string() && read["filter"].is_object(),
        "{read}"
    );
    let res = app
        .patch(
            &format!("/api/work_queues/{id}"),
            json!({"last_polled": null, "filter": null}),
        )
        .await;
    assert_eq!(res.status, 204, "{}", res.text);
    let read = app.get(&format!("/api/work_queues/{id}")).await.body;
    assert_eq!(
        (read["last_polled"].clone(), read["filter"].clone()),
        (Value::Null, Value::Null)
    );
    let listed = app
        .post(
            "/api/work_queues/filter",
            json!({"work_queues": {"name": {"any_": ["agents"]}}}),
        )
        .await
        .body;
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(app.delete(&format!("/api/work_queues/{id}")).await.status, 204);
    assert_eq!(app.get(&format!("/api/work_queues/{id}")).await.status, 404);
}

#[tokio::test]
async fn agents_get_runs_by_queue_name_within_the_limit() {
    let app = TestApp::spawn().await;
    let queue = app
        .post(
            "/api/work_queues/",
            json!({"name": "agents", "concurrency_limit": 1}),
        )
        .await
        .body;
    let id = queue["id"].as_str().unwrap();
    let flow = app.post("/api/flows/", json!({"name": "f"})).await.body;
    let d = app
        .post(
            "/api/deployments/",
            json!({"name": "d", "flow_id": flow["id"], "work_queue_name": "agents"}),
        )
        .await
        .body;
    let mut runs = Vec::new();
    for _ in 0..2 {
        let r = app
            .post(
                &format!("/api/deployments/{}/create_flow_run", d["id"].as_str().unwrap()),
                json!({}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        runs.push(r.body["id"].clone());
    }
    let status = app.get(&format!("/api/work_queues/{id}/status")).await.body;
    assert_eq!(status["healthy"], false, "never polled");

    let ui = app
        .raw(
            http::Method::POST,
            &format!("/api/work_queues/{id}/get_runs"),
            Some("{}".into()),
            &[("X-Prefect-UI", "true")],
        )
        .await;
    assert_eq!(
        ui.body.as_array().unwrap().len(),
        1,
        "the queue's limit of 1 caps the answer"
    );
    assert_eq!(
        app.get(&format!("/api/work_queues/{id}")).await.body["last_polled"],
        Value::Null
    );

    let agent = uuid::Uuid::new_v4();
    let got = app
        .post(
            &format!("/api/work_queues/{id}/get_runs"),
            json!({"agent_id": agent}),
        )
        .await
        .body;
    assert_eq!(got[0]["id"], runs[0]);
    assert_eq!(
        got[0]["state"]["type"], "SCHEDULED",
        "the agent poll includes the state"
    );
    assert!(app.get(&format!("/api/work_queues/{id}")).await.body["last_polled"].is_string());
    assert_eq!(
        app.get(&format!("/api/work_queues/{id}/status")).await.body["healthy"],
        true
    );
    let db = app.db().await;
    let agents: i64 = db
        .query_one("SELECT count(*) FROM agent WHERE id = $1", &[&agent])
        .await
        .unwrap()
        .get(0);
    assert_eq!(agents, 1);

    // Once one run is pending, the limit leaves no room.
    let claim = app
        .post(
            &format!("/api/flow_runs/{}/set_state", runs[0].as_str().unwrap()),
            json!({"state": {"type": "PENDING"}}),
        )
        .await;
    assert_eq!(claim.body["status"], "ACCEPT");
    assert_eq!(
        app.post(&format!("/api/work_queues/{id}/get_runs"), json!({}))
            .await
            .body,
        json!([])
    );
}

/// Without the default agent pool, a legacy name lookup finds the queue in any pool (Prefect
/// 2.20 `read_work_queue_by_name`, kept for servers mid-migration).
#[tokio::test]
async fn a_legacy_name_lookup_falls_back_to_any_pool_without_the_default_one() {
    let app = TestApp::spawn().await;
    let res = app
        .post("/api/work_pools/", json!({"name": "other", "type": "process"}))
        .await;
    assert_eq!(res.status, 201, "{}", res.text);
    let by_name = app.get("/api/work_queues/name/default").await;
    assert_eq!(by_name.status, 200, "{}", by_name.text);
    assert_eq!(by_name.body["work_pool_name"], "other");
    // Once the default agent pool exists, only its queues are found by name.
    app.post("/api/work_queues/", json!({"name": "agents"})).await;
    let by_name = app.get("/api/work_queues/name/default").await;
    assert_eq!(by_name.body["work_pool_name"], "default-agent-pool");
}
