//! The upkeep passes against real Postgres: expired pauses fail, cancelled runs' leftovers
//! are cancelled.

use crate::common;

use chrono::{Duration, Utc};
use common::TestApp;
use serde_json::{json, Value};
use stratus_store::maintenance;

fn state(kind: &str) -> Value {
    json!({"type": kind, "state_details": {}})
}

async fn flow_run(app: &TestApp, extra: Value) -> Value {
    let flow = app.post("/api/flows/", json!({"name": "f"})).await.body;
    let mut body = json!({"flow_id": flow["id"]});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    app.post("/api/flow_runs/", body).await.body
}

async fn set(app: &TestApp, kind: &str, id: &Value, state: Value, force: bool) -> Value {
    app.post(
        &format!("/api/{kind}/{}/set_state", id.as_str().unwrap()),
        json!({"state": state, "force": force}),
    )
    .await
    .body
}

#[tokio::test]
async fn cancelling_a_flow_run_cancels_its_task_runs_and_subflows() {
    let app = TestApp::spawn().await;
    let parent = flow_run(&app, json!({})).await;
    set(&app, "flow_runs", &parent["id"], state("RUNNING"), false).await;
    let task = app
        .post(
            "/api/task_runs/",
            json!({"flow_run_id": parent["id"], "task_key": "t", "dynamic_key": "0"}),
        )
        .await
        .body;
    set(&app, "task_runs", &task["id"], state("RUNNING"), false).await;
    let dummy = app
        .post(
            "/api/task_runs/",
            json!({"flow_run_id": parent["id"], "task_key": "sub", "dynamic_key": "0"}),
        )
        .await
        .body;
    let child = flow_run(&app, json!({"parent_task_run_id": dummy["id"]})).await;
    set(&app, "flow_runs", &child["id"], state("RUNNING"), false).await;

    assert_eq!(
        set(&app, "flow_runs", &parent["id"], state("CANCELLING"), false).await["status"],
        "ACCEPT"
    );
    assert_eq!(
        set(&app, "flow_runs", &parent["id"], state("CANCELLED"), true).await["status"],
        "ACCEPT"
    );

    let report = maintenance::run_once(&app.state.runs(), &app.state.settings)
        .await
        .unwrap();
    assert_eq!(report.subflows_cancelled, 1);
    assert!(report.task_runs_cancelled >= 1);
    let task = app
        .get(&format!("/api/task_runs/{}", task["id"].as_str().unwrap()))
        .await
        .body;
    assert_eq!(task["state_type"], "CANCELLED");
    assert_eq!(task["state"]["message"], "The parent flow run was cancelled.");
    let child = app
        .get(&format!("/api/flow_runs/{}", child["id"].as_str().unwrap()))
        .await
        .body;
    assert_eq!(child["state_type"], "CANCELLED");

    // A second pass has nothing left to do.
    let again = maintenance::run_once(&app.state.runs(), &app.state.settings)
        .await
        .unwrap();
    assert_eq!(again.subflows_cancelled, 0);
}

#[tokio::test]
async fn a_pause_that_timed_out_fails_the_run() {
    let app = TestApp::spawn().await;
    let run = flow_run(&app, json!({})).await;
    set(&app, "flow_runs", &run["id"], state("RUNNING"), false).await;
    let mut paused = state("PAUSED");
    paused["state_details"]["pause_timeout"] = json!((Utc::now() + Duration::milliseconds(300)).to_rfc3339());
    assert_eq!(
        set(&app, "flow_runs", &run["id"], paused, false).await["status"],
        "ACCEPT"
    );
    assert_eq!(
        maintenance::run_once(&app.state.runs(), &app.state.settings)
            .await
            .unwrap()
            .expired_pauses_failed,
        0
    );
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert_eq!(
        maintenance::run_once(&app.state.runs(), &app.state.settings)
            .await
            .unwrap()
            .expired_pauses_failed,
        1
    );
    let read = app
        .get(&format!("/api/flow_runs/{}", run["id"].as_str().unwrap()))
        .await
        .body;
    assert_eq!(read["state_type"], "FAILED");
    assert_eq!(read["state"]["message"], "The flow was paused and never resumed.");
}

#[tokio::test]
async fn old_logs_and_superseded_states_of_finished_runs_are_pruned() {
    let app = TestApp::spawn().await;
    let run = flow_run(&app, json!({})).await;
    set(&app, "flow_runs", &run["id"], state("RUNNING"), false).await;
    set(&app, "flow_runs", &run["id"], state("COMPLETED"), false).await;
    let db = app.db().await;
    db.execute(
        "INSERT INTO log (name, level, message, timestamp) VALUES ('old', 20, 'x', now() - interval '40 days'), ('new', 20, 'y', now())",
        &[],
    )
    .await
    .unwrap();
    // Nothing is old enough yet.
    let retention = maintenance::Retention {
        log_days: 30,
        state_days: 90,
    };
    let (logs, states) = maintenance::prune(&app.state.db, retention).await.unwrap();
    assert_eq!((logs, states), (1, 0));
    db.execute("UPDATE flow_run SET end_time = now() - interval '100 days'", &[])
        .await
        .unwrap();
    let (_, states) = maintenance::prune(&app.state.db, retention).await.unwrap();
    assert_eq!(states, 2, "Pending and Running go, the current Completed stays");
    let read = app
        .get(&format!("/api/flow_runs/{}", run["id"].as_str().unwrap()))
        .await
        .body;
    assert_eq!(read["state"]["type"], "COMPLETED");
    let left: i64 = db
        .query_one("SELECT count(*) FROM log", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 1);
}
