//! The scheduler tick against real Postgres: runs on time, never duplicated, late runs marked.

use crate::common;

use std::time::Duration;

use common::TestApp;
use serde_json::{json, Value};
use stratus_store::scheduler::{self, Limits};

async fn deployment(app: &TestApp, schedules: Value) -> Value {
    let flow = app.post("/api/flows/", json!({"name": "scheduled"})).await.body;
    app.post("/api/work_pools/", json!({"name": "local", "type": "process"}))
        .await;
    let res = app
        .post(
            "/api/deployments/",
            json!({"name": "hourly", "flow_id": flow["id"], "work_pool_name": "local", "tags": ["etl"],
                   "parameters": {"x": 1}, "schedules": schedules}),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.text);
    res.body
}

async fn scheduled_runs(app: &TestApp, deployment_id: &Value) -> Vec<Value> {
    let res = app
        .post(
            "/api/flow_runs/filter",
            json!({"flow_runs": {"deployment_id": {"any_": [deployment_id]}}, "sort": "EXPECTED_START_TIME_ASC"}),
        )
        .await;
    res.body.as_array().unwrap().clone()
}

#[tokio::test]
async fn interval_schedules_get_distinct_runs_and_repeated_ticks_add_none() {
    let app = TestApp::spawn().await;
    let d = deployment(&app, json!([{"schedule": {"interval": 1800}}])).await;
    let limits = Limits::default();
    let report = scheduler::tick(&app.state.runs(), &limits, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(report.deployments, 1);
    let runs = scheduled_runs(&app, &d["id"]).await;
    assert_eq!(runs.len(), 3, "three runs reach an hour ahead");
    let times: Vec<_> = runs
        .iter()
        .map(|r| r["next_scheduled_start_time"].as_str().unwrap().to_string())
        .collect();
    let mut distinct = times.clone();
    distinct.dedup();
    assert_eq!(distinct, times);
    let run = &runs[0];
    assert_eq!(
        (run["state_type"].clone(), run["state_name"].clone()),
        (json!("SCHEDULED"), json!("Scheduled"))
    );
    assert_eq!(run["auto_scheduled"], true);
    assert_eq!(run["tags"], json!(["auto-scheduled", "etl"]));
    assert_eq!(run["parameters"], json!({"x": 1}));
    assert_eq!(run["work_pool_name"], "local");
    assert!(run["idempotency_key"]
        .as_str()
        .unwrap()
        .starts_with(&format!("scheduled {}", d["id"].as_str().unwrap())));
    assert_eq!(
        run["state"]["state_details"]["scheduled_time"],
        run["next_scheduled_start_time"]
    );
    assert_eq!(run["state"]["state_details"]["flow_run_id"], run["id"]);
    assert_eq!(run["state"]["message"], "Flow run scheduled");
    assert_eq!(run["state_id"], run["state"]["id"]);
    assert_eq!(run["expected_start_time"], run["next_scheduled_start_time"]);
    assert_eq!(
        (run["run_count"].clone(), run["job_variables"].clone()),
        (json!(0), json!({}))
    );

    let again = scheduler::tick(&app.state.runs(), &limits, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(again.runs_created, 0);
    assert_eq!(scheduled_runs(&app, &d["id"]).await.len(), 3);

    // The runs reach workers through the pool.
    let polled = app
        .post(
            "/api/work_pools/local/get_scheduled_flow_runs",
            json!({"scheduled_before": "2100-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(polled.body.as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn concurrent_ticks_never_duplicate_a_run() {
    let app = TestApp::spawn().await;
    let d = deployment(&app, json!([{"schedule": {"cron": "*/5 * * * *"}}])).await;
    let limits = Limits::default();
    let budget = Duration::from_secs(5);
    let runs = app.state.runs();
    let (a, b, c) = tokio::join!(
        scheduler::tick(&runs, &limits, budget),
        scheduler::tick(&runs, &limits, budget),
        scheduler::tick(&runs, &limits, budget),
    );
    let created = a.unwrap().runs_created + b.unwrap().runs_created + c.unwrap().runs_created;
    let runs = scheduled_runs(&app, &d["id"]).await;
    assert_eq!(created, runs.len(), "every run was created by exactly one tick");
    // An hour of */5 is 12 or 13 dates; ticks that straddle a five-minute boundary each
    // see their own hour, so together they may reach one date further.
    assert!((12..=14).contains(&runs.len()), "an hour of */5: {}", runs.len());
}

#[tokio::test]
async fn paused_deployments_and_inactive_schedules_get_no_runs() {
    let app = TestApp::spawn().await;
    let d = deployment(&app, json!([{"schedule": {"interval": 600}, "active": false}])).await;
    let limits = Limits::default();
    scheduler::tick(&app.state.runs(), &limits, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(scheduled_runs(&app, &d["id"]).await.is_empty());
    let id = d["id"].as_str().unwrap();
    app.post(
        &format!("/api/deployments/{id}/schedules"),
        json!([{"schedule": {"interval": 600}}]),
    )
    .await;
    // With two schedules, pausing goes through PATCH (`pause_deployment` answers 422).
    let paused = app
        .patch(&format!("/api/deployments/{id}"), json!({"paused": true}))
        .await;
    assert_eq!(paused.status, 204);
    scheduler::tick(&app.state.runs(), &limits, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(scheduled_runs(&app, &d["id"]).await.is_empty());
}

#[tokio::test]
async fn overdue_scheduled_runs_are_marked_late() {
    let app = TestApp::spawn().await;
    let flow = app.post("/api/flows/", json!({"name": "f"})).await.body;
    let past = (chrono::Utc::now() - chrono::Duration::seconds(60)).to_rfc3339();
    let run = app
        .post("/api/flow_runs/", json!({"flow_id": flow["id"], "state": {"type": "SCHEDULED", "state_details": {"scheduled_time": past}}}))
        .await
        .body;
    let recent = app
        .post(
            "/api/flow_runs/",
            json!({"flow_id": flow["id"], "state": {"type": "SCHEDULED"}}),
        )
        .await
        .body;
    let marked = stratus_store::tenancy::within(
        stratus_store::db::access::DEFAULT_WORKSPACE_ID,
        scheduler::mark_late_runs(&app.state.runs(), &Limits::default()),
    )
    .await
    .unwrap();
    assert_eq!(marked, 1);
    let read = app
        .get(&format!("/api/flow_runs/{}", run["id"].as_str().unwrap()))
        .await
        .body;
    assert_eq!(
        (read["state_type"].clone(), read["state_name"].clone()),
        (json!("SCHEDULED"), json!("Late"))
    );
    assert_eq!(
        read["next_scheduled_start_time"],
        run["next_scheduled_start_time"]
    );
    let other = app
        .get(&format!("/api/flow_runs/{}", recent["id"].as_str().unwrap()))
        .await
        .body;
    assert_eq!(other["state_name"], "Scheduled");
    assert_eq!(
        scheduler::mark_late_runs(&app.state.runs(), &Limits::default())
            .await
            .unwrap(),
        0,
        "Late runs are not re-marked"
    );
}

#[tokio::test]
async fn the_scheduler_function_ticks_sweeps_and_runs_upkeep_in_one_invocation() {
    let app = TestApp::spawn().await;
    let d = deployment(&app, json!([{"schedule": {"interval": 60}}])).await;
    let report = stratus_scheduler::invoke(&app.state, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(report["runs_created"].as_u64().unwrap() >= 3, "{report}");
    // The first run is due within SQS's delay window: its message went out.
    assert!(
        report["published"].as_u64().unwrap() >= 1 || {
            let db = app.db().await;
            let row = db
                .query_one("SELECT count(*) FROM outbox WHERE published IS NOT NULL", &[])
                .await
                .unwrap();
            row.get::<_, i64>(0) >= 1
        }
    );
    assert!(!scheduled_runs(&app, &d["id"]).await.is_empty());
}
