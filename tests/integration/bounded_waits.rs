//! A database that stops answering (a row locked by someone else, every connection taken)
//! bounds a request's wait: the client gets a 503, which it retries, within a few seconds,
//! and nothing the request was doing is half-done.

use std::time::{Duration, Instant};

use crate::common;

use common::TestApp;
use serde_json::{json, Value};

async fn pending_run(app: &TestApp) -> Value {
    let flow = app.post("/api/flows/", json!({"name": "f"})).await.body;
    app.post("/api/flow_runs/", json!({"flow_id": flow["id"]}))
        .await
        .body["id"]
        .clone()
}

fn running() -> Value {
    json!({"state": {"type": "RUNNING", "name": null, "message": null, "data": null, "state_details": {}}, "force": false})
}

#[tokio::test]
async fn a_transition_stuck_behind_a_row_lock_is_a_503_after_the_lock_timeout() {
    let app = TestApp::spawn().await;
    let id = pending_run(&app).await;
    let path = format!("/api/flow_runs/{}/set_state", id.as_str().unwrap());
    let holder = app.db().await;
    holder.batch_execute("BEGIN").await.unwrap();
    let run_id: uuid::Uuid = id.as_str().unwrap().parse().unwrap();
    holder
        .execute("SELECT 1 FROM flow_run WHERE id = $1 FOR UPDATE", &[&run_id])
        .await
        .unwrap();
    let started = Instant::now();
    let res = app.post(&path, running()).await;
    let waited = started.elapsed();
    assert_eq!(res.status, 503, "{}", res.text);
    assert_eq!(res.body, json!({"exception_message": "Service Unavailable"}));
    assert_eq!(res.headers["retry-after"], "1");
    assert!(
        waited >= Duration::from_secs(4) && waited < Duration::from_secs(15),
        "waited {waited:?}"
    );
    holder.batch_execute("ROLLBACK").await.unwrap();
    // Nothing was half-written: the retry is the first transition.
    let res = app.post(&path, running()).await;
    assert_eq!(res.body["status"], "ACCEPT", "{}", res.text);
    let states = app
        .get(&format!(
            "/api/flow_run_states/?flow_run_id={}",
            id.as_str().unwrap()
        ))
        .await;
    assert_eq!(states.body.as_array().unwrap().len(), 2, "{}", states.text);
}

#[tokio::test]
async fn a_request_waiting_for_a_taken_pool_is_a_503_after_the_pool_wait() {
    let app = TestApp::spawn().await;
    let mut taken = Vec::new();
    while let Ok(Ok(c)) = tokio::time::timeout(Duration::from_millis(500), app.state.db.get()).await {
        taken.push(c);
    }
    assert!(!taken.is_empty());
    let started = Instant::now();
    let res = app.post("/api/flows/", json!({"name": "waits"})).await;
    let waited = started.elapsed();
    assert_eq!(res.status, 503, "{}", res.text);
    assert!(waited < Duration::from_secs(15), "waited {waited:?}");
    drop(taken);
    assert_eq!(
        app.post("/api/flows/", json!({"name": "waits"})).await.status,
        201
    );
}
