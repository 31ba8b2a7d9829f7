use crate::common;

use chrono::{Duration, Utc};
use common::TestApp;
use serde_json::{json, Value};

async fn flow(app: &TestApp, name: &str) -> Value {
    app.post("/api/flows/", json!({"name": name})).await.body["id"].clone()
}

async fn run(app: &TestApp, body: Value) -> Value {
    let res = app.post("/api/flow_runs/", body).await;
    assert_eq!(res.status, 201, "{}", res.text);
    res.body
}

fn state(kind: &str) -> Value {
    json!({"type": kind, "name": null, "message": null, "data": null, "state_details": {}})
}

async fn set_state(app: &TestApp, id: &Value, state: Value) -> common::Response {
    app.post(
        &format!("/api/flow_runs/{}/set_state", id.as_str().unwrap()),
        json!({"state": state, "force": false}),
    )
    .await
}

#[tokio::test]
async fn a_created_run_is_pending_with_a_generated_name() {
    let app = TestApp::spawn().await;
    let flow_id = flow(&app, "f").await;
    let body = run(
        &app,
        json!({"flow_id": flow_id, "parameters": {"a": 5}, "tags": ["t"]}),
    )
    .await;
    assert_eq!(body["state_type"], "PENDING");
    assert_eq!(body["state_name"], "Pending");
    assert_eq!(body["state"]["type"], "PENDING");
    assert_eq!(body["state"]["state_details"]["flow_run_id"], body["id"]);
    assert_eq!(body["parameters"], json!({"a": 5}));
    assert_eq!(body["run_count"], 0);
    assert_eq!(body["total_run_time"], json!(0.0));
    assert_eq!(body["empirical_policy"]["retry_delay_seconds"], json!(0.0));
    assert!(body["expected_start_time"].is_string());
    let name = body["name"].as_str().unwrap();
    assert_eq!(name.split('-').count(), 2, "{name}");
}

#[tokio::test]
async fn creation_is_idempotent_on_flow_and_key() {
    let app = TestApp::spawn().await;
    let flow_id = flow(&app, "f").await;
    let first = run(&app, json!({"flow_id": flow_id, "idempotency_key": "k1"})).await;
    let again = app
        .post(
            "/api/flow_runs/",
            json!({"flow_id": flow_id, "idempotency_key": "k1"}),
        )
        .await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body["id"], first["id"]);
    let other = app
        .post(
            "/api/flow_runs/",
            json!({"flow_id": flow_id, "idempotency_key": "k2"}),
        )
        .await;
    assert_eq!(other.status, 201);
    assert_ne!(other.body["id"], first["id"]);

    let missing_flow = app
        .post("/api/flow_runs/", json!({"flow_id": uuid::Uuid::new_v4()}))
        .await;
    // Prefect answers a missing flow with its foreign-key conflict, not a 404.
    assert_eq!(missing_flow.status, 409);
    assert_eq!(
        missing_flow.body,
        json!({"detail": "Data integrity conflict. This usually means a unique or foreign key constraint was violated. See server logs for details."})
    );
}

#[tokio::test]
async fn a_run_goes_through_running_to_completed_with_bookkeeping() {
    let app = TestApp::spawn().await;
    let flow_id = flow(&app, "f").await;
    let body = run(&app, json!({"flow_id": flow_id})).await;
    let id = &body["id"];

    let mut running = state("RUNNING");
    running["state_details"]["transition_id"] = json!(uuid::Uuid::new_v4());
    let res = set_state(&app, id, running.clone()).await;
    assert_eq!(res.status, 201, "{}", res.text);
    assert_eq!(res.body["status"], "ACCEPT");
    assert_eq!(res.body["details"], json!({"type": "accept_details"}));
    assert_eq!(res.body["state"]["type"], "RUNNING");

    // The same transition_id again: rejected, the current state comes back, nothing written.
    let dup = set_state(&app, id, running).await;
    assert_eq!(dup.status, 200);
    assert_eq!(dup.body["status"], "REJECT");
    assert_eq!(dup.body["state"]["id"], res.body["state"]["id"]);

    let done = set_state(&app, id, state("COMPLETED")).await;
    assert_eq!(done.status, 201);
    let read = app
        .get(&format!("/api/flow_runs/{}", id.as_str().unwrap()))
        .await
        .body;
    assert_eq!(read["state_type"], "COMPLETED");
    assert_eq!(read["run_count"], 1);
    assert!(read["start_time"].is_string());
    assert!(read["end_time"].is_string());
    assert!(read["total_run_time"].as_f64().unwrap() > 0.0);

    let states = app
        .get(&format!(
            "/api/flow_run_states/?flow_run_id={}",
            id.as_str().unwrap()
        ))
        .await;
    let types: Vec<_> = states
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["type"].clone())
        .collect();
    assert_eq!(
        types,
        vec![json!("PENDING"), json!("RUNNING"), json!("COMPLETED")]
    );
    let one = app
        .get(&format!(
            "/api/flow_run_states/{}",
            states.body[1]["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(one.body["name"], "Running");
    assert_eq!(app.get("/api/flow_run_states/").await.status, 422);
    assert_eq!(
        app.get(&format!("/api/flow_run_states/{}", uuid::Uuid::new_v4()))
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn set_state_on_a_missing_run_is_404_with_exception_message() {
    let app = TestApp::spawn().await;
    let id = json!(uuid::Uuid::new_v4().to_string());
    let res = set_state(&app, &id, state("RUNNING")).await;
    assert_eq!(res.status, 404);
    assert!(res.body["exception_message"]
        .as_str()
        .unwrap()
        .contains("not found"));
    let bad = app
        .post("/api/flow_runs/x/set_state", json!({"state": state("RUNNING")}))
        .await;
    assert_eq!(bad.status, 422);
    let bad_type = set_state(&app, &id, state("DANCING")).await;
    assert_eq!(bad_type.status, 422);
}

#[tokio::test]
async fn a_scheduled_run_is_claimed_exactly_once_by_concurrent_callers() {
    let app = TestApp::spawn().await;
    let flow_id = flow(&app, "f").await;
    for _ in 0..5 {
        let body = run(&app, json!({"flow_id": flow_id, "state": state("SCHEDULED")})).await;
        let id = body["id"].clone();
        let claims = futures_join(&app, &id).await;
        let accepted = claims.iter().filter(|r| r.body["status"] == "ACCEPT").count();
        let aborted = claims.iter().filter(|r| r.body["status"] == "ABORT").count();
        assert_eq!(accepted, 1, "exactly one claim wins");
        assert_eq!(aborted, claims.len() - 1);
        let reason =
            claims.iter().find(|r| r.body["status"] == "ABORT").unwrap().body["details"]["reason"].clone();
        assert_eq!(
            reason,
            "This run is in a PENDING state and cannot transition to a PENDING state."
        );
    }
}

async fn futures_join(app: &TestApp, id: &Value) -> Vec<common::Response> {
    let (a, b, c, d) = tokio::join!(
        set_state(app, id, state("PENDING")),
        set_state(app, id, state("PENDING")),
        set_state(app, id, state("PENDING")),
        set_state(app, id, state("PENDING")),
    );
    vec![a, b, c, d]
}

#[tokio::test]
async fn an_early_start_waits_for_the_scheduled_time() {
    let app = TestApp::spawn().await;
    let flow_id = flow(&app, "f").await;
    let mut scheduled = state("SCHEDULED");
    scheduled["state_details"]["scheduled_time"] = json!((Utc::now() + Duration::seconds(120)).to_rfc3339());
    let body = run(&app, json!({"flow_id": flow_id, "state": scheduled})).await;
    assert_eq!(body["state_type"], "SCHEDULED");
    assert!(body["next_scheduled_start_time"].is_string());
    let id = &body["id"];
    assert_eq!(
        set_state(&app, id, state("PENDING")).await.body["status"],
        "ACCEPT"
    );
    let early = set_state(&app, id, state("RUNNING")).await;
    assert_eq!(early.status, 200);
    assert_eq!(early.body["status"], "WAIT");
    let delay = early.body["details"]["delay_seconds"].as_i64().unwrap();
    assert!((100..=121).contains(&delay), "{delay}");
    assert_eq!(early.body["state"]["type"], "PENDING");
}

#[tokio::test]
async fn cancelling_a_scheduled_run_without_infrastructure_cancels_it() {
    let app = TestApp::spawn().await;
    let flow_id = flow(&app, "f").await;
    let body = run(&app, json!({"flow_id": flow_id, "state": state("SCHEDULED")})).await;
    let res = set_state(&app, &body["id"], state("CANCELLING")).await;
    assert_eq!(res.status, 201);
    assert_eq!(res.body["status"], "REJECT");
    assert_eq!(res.body["state"]["type"], "CANCELLED");
    // A cancelled run cannot move without force.
    let back = set_state(&app, &body["id"], state("RUNNING")).await;
    assert_eq!(back.body["status"], "REJECT");
    assert_eq!(back.body["state"]["type"], "CANCELLED");
    let forced = app
        .post(
            &format!("/api/flow_runs/{}/set_state", body["id"].as_str().unwrap()),
            json!({"state": state("SCHEDULED"), "force": true}),
        )
        .await;
    assert_eq!(forced.body["status"], "ACCEPT");
}

#[tokio::test]
async fn a_failing_run_with_retries_left_is_rescheduled_awaiting_retry() {
    let app = TestApp::spawn().await;
    let flow_id = flow(&app, "f").await;
    let body = run(
        &app,
        json!({"flow_id": flow_id, "empirical_policy": {"retries": 1, "retry_delay": 0, "max_retries": 0, "retry_delay_seconds": 0, "pause_keys": [], "resuming": false, "retry_type": null}}),
    )
    .await;
    let id = &body["id"];
    set_state(&app, id, state("RUNNING")).await;
    let mut failed = state("FAILED");
    failed["message"] = json!("boom");
    let res = set_state(&app, id, failed.clone()).await;
    assert_eq!(res.status, 201);
    assert_eq!(res.body["status"], "REJECT");
    assert_eq!(res.body["state"]["type"], "SCHEDULED");
    assert_eq!(res.body["state"]["name"], "AwaitingRetry");
    assert_eq!(res.body["state"]["message"], "boom");
    let read = app
        .get(&format!("/api/flow_runs/{}", id.as_str().unwrap()))
        .await
        .body;
    assert_eq!(read["empirical_policy"]["retry_type"], "in_process");

    assert_eq!(
        set_state(&app, id, state("RUNNING")).await.body["status"],
        "ACCEPT"
    );
    let final_fail = set_state(&app, id, failed).await;
    assert_eq!(final_fail.body["status"], "ACCEPT");
    let read = app
        .get(&format!("/api/flow_runs/{}", id.as_str().unwrap()))
        .await
        .body;
    assert_eq!(read["run_count"], 2);
    assert_eq!(read["state_type"], "FAILED");
}

#[tokio::test]
async fn subflow_states_are_mirrored_onto_the_parent_task_run() {
    let app = TestApp::spawn().await;
    let parent_flow = flow(&app, "parent").await;
    let parent = run(&app, json!({"flow_id": parent_flow})).await;
    set_state(&app, &parent["id"], state("RUNNING")).await;
    let dummy = app
        .post(
            "/api/task_runs/",
            json!({"flow_run_id": parent["id"], "task_key": "child-abc", "dynamic_key": "0", "name": null}),
        )
        .await;
    assert_eq!(dummy.status, 201, "{}", dummy.text);
    let child_flow = flow(&app, "child").await;
    let child = run(
        &app,
        json!({"flow_id": child_flow, "parent_task_run_id": dummy.body["id"]}),
    )
    .await;
    assert_eq!(child["parent_task_run_id"], dummy.body["id"]);
    assert_eq!(child["state"]["state_details"]["task_run_id"], dummy.body["id"]);

    set_state(&app, &child["id"], state("RUNNING")).await;
    let task = app
        .get(&format!("/api/task_runs/{}", dummy.body["id"].as_str().unwrap()))
        .await
        .body;
    assert_eq!(task["state_type"], "RUNNING");
    assert_eq!(task["state"]["state_details"]["child_flow_run_id"], child["id"]);

    set_state(&app, &child["id"], state("COMPLETED")).await;
    let task = app
        .get(&format!("/api/task_runs/{}", dummy.body["id"].as_str().unwrap()))
        .await
        .body;
    assert_eq!(task["state_type"], "COMPLETED");

    let subflows = app
        .post(
            "/api/flow_runs/filter",
            json!({"flows": null, "flow_runs": {"parent_task_run_id": {"any_": [dummy.body["id"]]}}, "task_runs": null, "deployments": null, "work_pools": null, "work_pool_queues": null, "sort": "EXPECTED_START_TIME_ASC", "limit": null, "offset": 0}),
        )
        .await;
    assert_eq!(subflows.status, 200, "{}", subflows.text);
    assert_eq!(subflows.body.as_array().unwrap().len(), 1);
    assert_eq!(subflows.body[0]["id"], child["id"]);
    let by_parent = app
        .post(
            "/api/flow_runs/filter",
            json!({"flow_runs": {"parent_flow_run_id": {"any_": [parent["id"]]}}}),
        )
        .await;
    assert_eq!(by_parent.body[0]["id"], child["id"]);
}

#[tokio::test]
async fn runs_are_patched_and_deleted() {
    let app = TestApp::spawn().await;
    let flow_id = flow(&app, "f").await;
    let body = run(&app, json!({"flow_id": flow_id})).await;
    let path = format!("/api/flow_runs/{}", body["id"].as_str().unwrap());
    let res = app
        .patch(
            &path,
            json!({"name": "renamed", "infrastructure_pid": "1234", "tags": ["x"]}),
        )
        .await;
    assert_eq!(res.status, 204);
    let read = app.get(&path).await.body;
    assert_eq!(read["name"], "renamed");
    assert_eq!(read["infrastructure_pid"], "1234");
    assert_eq!(read["tags"], json!(["x"]));
    let jv = app.patch(&path, json!({"job_variables": {"a": 1}})).await;
    assert_eq!(jv.status, 400);
    assert_eq!(app.patch(&path, json!({"nonsense": 1})).await.status, 422);
    // An explicit null is a change (Prefect's `exclude_unset`): nullable fields are cleared,
    // the name is generated afresh; an absent key leaves the field.
    let res = app
        .patch(&path, json!({"flow_version": "v1", "infrastructure_pid": "1234"}))
        .await;
    assert_eq!(res.status, 204, "{}", res.text);
    let res = app
        .patch(
            &path,
            json!({"flow_version": null, "infrastructure_pid": null, "job_variables": null, "name": null}),
        )
        .await;
    assert_eq!(res.status, 204, "{}", res.text);
    let read = app.get(&path).await.body;
    assert_eq!(read["flow_version"], Value::Null);
    assert_eq!(read["infrastructure_pid"], Value::Null);
    assert_eq!(read["job_variables"], Value::Null);
    let generated = read["name"].as_str().unwrap().to_string();
    assert!(!generated.is_empty() && generated != "renamed", "{generated}");
    app.patch(&path, json!({"name": ""})).await;
    let renamed = app.get(&path).await.body["name"].as_str().unwrap().to_string();
    assert!(!renamed.is_empty());
    app.patch(&path, json!({"tags": ["y"]})).await;
    assert_eq!(app.get(&path).await.body["name"], json!(renamed));
    assert_eq!(app.delete(&path).await.status, 204);
    assert_eq!(app.get(&path).await.status, 404);
    assert_eq!(app.get(&path).await.body, json!({"detail": "Flow run not found"}));
    assert_eq!(app.delete(&path).await.status, 404);
}

#[tokio::test]
async fn runs_filter_sort_page_count_history_and_lateness() {
    let app = TestApp::spawn().await;
    let flow_id = flow(&app, "f").await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let tags = if i % 2 == 0 {
            json!(["even"])
        } else {
            json!(["odd"])
        };
        let body = run(
            &app,
            json!({"flow_id": flow_id, "name": format!("run-{i}"), "tags": tags}),
        )
        .await;
        ids.push(body["id"].clone());
    }
    set_state(&app, &ids[0], state("RUNNING")).await;

    let even = app
        .post(
            "/api/flow_runs/filter",
            json!({"flow_runs": {"tags": {"all_": ["even"]}}}),
        )
        .await;
    assert_eq!(even.body.as_array().unwrap().len(), 3);
    let running = app
        .post(
            "/api/flow_runs/filter",
            json!({"flow_runs": {"state": {"type": {"any_": ["RUNNING"]}}}}),
        )
        .await;
    assert_eq!(running.body.as_array().unwrap().len(), 1);
    assert_eq!(running.body[0]["id"], ids[0]);
    let named = app
        .post(
            "/api/flow_runs/filter",
            json!({"sort": "NAME_DESC", "limit": 2, "offset": 1}),
        )
        .await;
    let names: Vec<_> = named
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("run-3"), json!("run-2")]);
    let by_flow = app
        .post(
            "/api/flow_runs/count",
            json!({"flows": {"name": {"any_": ["f"]}}}),
        )
        .await;
    assert_eq!(by_flow.body, json!(5));
    let none = app
        .post(
            "/api/flow_runs/count",
            json!({"flows": {"name": {"any_": ["g"]}}}),
        )
        .await;
    assert_eq!(none.body, json!(0));
    let with_tasks = app
        .post(
            "/api/flow_runs/count",
            json!({"task_runs": {"name": {"any_": ["nope"]}}}),
        )
        .await;
    assert_eq!(with_tasks.body, json!(0));

    let now = Utc::now();
    let history = app
        .post(
            "/api/flow_runs/history",
            json!({
                "history_start": (now - Duration::minutes(10)).to_rfc3339(),
                "history_end": (now + Duration::minutes(10)).to_rfc3339(),
                "history_interval_seconds": 300.0
            }),
        )
        .await;
    assert_eq!(history.status, 200, "{}", history.text);
    let intervals = history.body.as_array().unwrap();
    assert_eq!(intervals.len(), 4);
    let total: i64 = intervals
        .iter()
        .flat_map(|i| i["states"].as_array().unwrap().iter())
        .map(|s| s["count_runs"].as_i64().unwrap())
        .sum();
    assert_eq!(total, 5);
    let bad = app
        .post(
            "/api/flow_runs/history",
            json!({"history_start": now.to_rfc3339(), "history_end": now.to_rfc3339(), "history_interval_seconds": 0.5}),
        )
        .await;
    assert_eq!(bad.status, 422);

    let lateness = app.post("/api/flow_runs/lateness", json!({})).await;
    assert_eq!(lateness.status, 200);
    assert!(lateness.body.is_number());
}

#[tokio::test]
async fn graph_lists_task_runs_with_upstream_dependencies() {
    let app = TestApp::spawn().await;
    let flow_id = flow(&app, "f").await;
    let body = run(&app, json!({"flow_id": flow_id})).await;
    let a = app
        .post(
            "/api/task_runs/",
            json!({"flow_run_id": body["id"], "task_key": "a", "dynamic_key": "0", "name": "a-0"}),
        )
        .await
        .body;
    app.post(
        "/api/task_runs/",
        json!({"flow_run_id": body["id"], "task_key": "b", "dynamic_key": "0", "name": "b-0",
               "task_inputs": {"x": [{"input_type": "task_run", "id": a["id"]}]}}),
    )
    .await;
    let graph = app
        .get(&format!("/api/flow_runs/{}/graph", body["id"].as_str().unwrap()))
        .await;
    assert_eq!(graph.status, 200);
    let nodes = graph.body.as_array().unwrap();
    assert_eq!(nodes.len(), 2);
    let b = nodes.iter().find(|n| n["name"] == "b-0").unwrap();
    assert_eq!(b["upstream_dependencies"][0]["id"], a["id"]);
    assert_eq!(
        app.get(&format!("/api/flow_runs/{}/graph", uuid::Uuid::new_v4()))
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn resuming_a_run_that_is_not_paused_aborts() {
    let app = TestApp::spawn().await;
    let flow_id = flow(&app, "f").await;
    let body = run(&app, json!({"flow_id": flow_id})).await;
    let res = app
        .post(
            &format!("/api/flow_runs/{}/resume", body["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    assert_eq!(res.status, 200);
    assert_eq!(res.body["status"], "ABORT");
    assert_eq!(res.body["state"], Value::Null);
    assert_eq!(
        res.body["details"]["reason"],
        "Cannot resume a flow run that is not paused."
    );
    let missing = app
        .post(
            &format!("/api/flow_runs/{}/resume", uuid::Uuid::new_v4()),
            json!({}),
        )
        .await;
    assert_eq!(missing.status, 404);
}

#[tokio::test]
async fn a_paused_run_resumes_to_running() {
    let app = TestApp::spawn().await;
    let flow_id = flow(&app, "f").await;
    let body = run(&app, json!({"flow_id": flow_id})).await;
    let id = &body["id"];
    set_state(&app, id, state("RUNNING")).await;
    let mut paused = state("PAUSED");
    paused["state_details"]["pause_timeout"] = json!((Utc::now() + Duration::minutes(5)).to_rfc3339());
    paused["state_details"]["pause_key"] = json!("k1");
    let res = set_state(&app, id, paused.clone()).await;
    assert_eq!(res.body["status"], "ACCEPT", "{}", res.text);
    let resumed = app
        .post(
            &format!("/api/flow_runs/{}/resume", id.as_str().unwrap()),
            json!({}),
        )
        .await;
    assert_eq!(resumed.status, 201, "{}", resumed.text);
    assert_eq!(resumed.body["state"]["type"], "RUNNING");
    // The same pause key cannot fire twice.
    let again = set_state(&app, id, paused).await;
    assert_eq!(again.body["status"], "REJECT");
}

#[tokio::test]
async fn flow_run_inputs_are_stored_read_filtered_and_deleted() {
    let app = TestApp::spawn().await;
    let flow_id = flow(&app, "f").await;
    let body = run(&app, json!({"flow_id": flow_id})).await;
    let base = format!("/api/flow_runs/{}/input", body["id"].as_str().unwrap());
    let res = app
        .post(&base, json!({"key": "answer-1", "value": "{\"x\": 1}"}))
        .await;
    assert_eq!(res.status, 201);
    assert_eq!(res.body, Value::Null);
    assert_eq!(
        app.post(&base, json!({"key": "answer-1", "value": "2"}))
            .await
            .status,
        409
    );
    assert_eq!(
        app.post(&base, json!({"key": "Bad_Key", "value": "2"}))
            .await
            .status,
        422
    );
    app.post(
        &base,
        json!({"key": "answer-2", "value": "\"two\"", "sender": "me"}),
    )
    .await;

    let raw = app.get(&format!("{base}/answer-1")).await;
    assert_eq!(raw.status, 200);
    assert_eq!(raw.text, "{\"x\": 1}");
    assert!(raw.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));

    let listed = app
        .post(
            &format!("{base}/filter"),
            json!({"prefix": "answer", "limit": 5, "exclude_keys": ["answer-1"]}),
        )
        .await;
    let keys: Vec<_> = listed
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["key"].clone())
        .collect();
    assert_eq!(keys, vec![json!("answer-2")]);

    assert_eq!(app.delete(&format!("{base}/answer-1")).await.status, 204);
    assert_eq!(app.get(&format!("{base}/answer-1")).await.status, 404);
    let missing_run = app
        .post(
            &format!("/api/flow_runs/{}/input", uuid::Uuid::new_v4()),
            json!({"key": "k", "value": "v"}),
        )
        .await;
    assert_eq!(missing_run.status, 404);
}

#[tokio::test]
async fn resuming_with_run_input_validates_it_against_the_stored_schema() {
    let app = TestApp::spawn().await;
    let flow_id = flow(&app, "f").await;
    let body = run(&app, json!({"flow_id": flow_id})).await;
    let id = &body["id"];
    let base = format!("/api/flow_runs/{}", id.as_str().unwrap());
    let schema =
        json!({"type": "object", "properties": {"approved": {"type": "boolean"}}, "required": ["approved"]});
    app.post(
        &format!("{base}/input"),
        json!({"key": "paused-1-schema", "value": schema.to_string()}),
    )
    .await;
    set_state(&app, id, state("RUNNING")).await;
    let mut paused = state("PAUSED");
    paused["state_details"]["pause_key"] = json!("p1");
    paused["state_details"]["run_input_keyset"] =
        json!({"schema": "paused-1-schema", "response": "paused-1-response"});
    assert_eq!(set_state(&app, id, paused).await.body["status"], "ACCEPT");

    let refused = app
        .post(
            &format!("{base}/resume"),
            json!({"run_input": {"approved": "yes"}}),
        )
        .await;
    assert_eq!(refused.body["status"], "REJECT");
    assert!(refused.body["details"]["reason"]
        .as_str()
        .unwrap()
        .starts_with("Reason:"));
    assert_eq!(refused.body["state"]["type"], "PAUSED");

    let ok = app
        .post(
            &format!("{base}/resume"),
            json!({"run_input": {"approved": true}}),
        )
        .await;
    assert_eq!(ok.body["status"], "ACCEPT", "{}", ok.text);
    let stored = app.get(&format!("{base}/input/paused-1-response")).await;
    assert_eq!(
        serde_json::from_str::<Value>(&stored.text).unwrap(),
        json!({"approved": true})
    );
}

#[tokio::test]
async fn graph_v2_has_task_and_subflow_nodes_with_edges() {
    let app = TestApp::spawn().await;
    let flow_id = flow(&app, "f").await;
    let parent = run(&app, json!({"flow_id": flow_id})).await;
    let pid = &parent["id"];
    set_state(&app, pid, state("RUNNING")).await;
    let a = app
        .post(
            "/api/task_runs/",
            json!({"flow_run_id": pid, "task_key": "a", "dynamic_key": "0", "name": "a-0"}),
        )
        .await
        .body;
    let run_task = |id: Value| {
        let app = &app;
        async move {
            app.post(
                &format!("/api/task_runs/{}/set_state", id.as_str().unwrap()),
                json!({"state": state("RUNNING")}),
            )
            .await
        }
    };
    assert_eq!(run_task(a["id"].clone()).await.body["status"], "ACCEPT");
    let dummy = app
        .post(
            "/api/task_runs/",
            json!({"flow_run_id": pid, "task_key": "child", "dynamic_key": "0",
                   "task_inputs": {"x": [{"input_type": "task_run", "id": a["id"]}]}}),
        )
        .await
        .body;
    let child_flow = flow(&app, "child").await;
    let child = run(
        &app,
        json!({"flow_id": child_flow, "name": "kid", "parent_task_run_id": dummy["id"]}),
    )
    .await;
    set_state(&app, &child["id"], state("RUNNING")).await;

    let graph = app
        .get(&format!("/api/flow_runs/{}/graph-v2", pid.as_str().unwrap()))
        .await;
    assert_eq!(graph.status, 200, "{}", graph.text);
    let nodes = graph.body["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 2);
    let sub = nodes.iter().find(|n| n[1]["kind"] == "flow-run").unwrap();
    assert_eq!(sub[0], child["id"]);
    assert_eq!(sub[1]["label"], "kid");
    assert_eq!(sub[1]["parents"], json!([{"id": a["id"]}]));
    let task = nodes.iter().find(|n| n[1]["kind"] == "task-run").unwrap();
    assert_eq!(task[1]["children"], json!([{"id": child["id"]}]));
    assert_eq!(graph.body["root_node_ids"], json!([a["id"]]));
    assert_eq!(graph.body["states"].as_array().unwrap().len(), 2);
    let bad = app
        .get(&format!(
            "/api/flow_runs/{}/graph-v2?since=nope",
            pid.as_str().unwrap()
        ))
        .await;
    assert_eq!(bad.status, 422);
}

/// Answers of 1,000 bytes or more are gzipped when the client accepts it (the stock client
/// does), as Prefect's server does; smaller ones, and clients that do not, get plain JSON.
#[tokio::test]
async fn large_answers_are_gzipped_for_clients_that_accept_it() {
    let app = TestApp::spawn().await;
    let flow = app.post("/api/flows/", json!({"name": "zipped"})).await.body;
    for i in 0..20 {
        app.post(
            "/api/flow_runs/",
            json!({"flow_id": flow["id"], "name": format!("run-{i}")}),
        )
        .await;
    }
    let body = Some(json!({"limit": 20}).to_string());
    let gzip = [("accept-encoding", "gzip, deflate")];
    let zipped = app
        .raw(http::Method::POST, "/api/flow_runs/filter", body.clone(), &gzip)
        .await;
    assert_eq!(zipped.status, 200);
    assert_eq!(zipped.headers["content-encoding"], "gzip");
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&zipped.bytes[..]), &mut text).unwrap();
    let runs: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(runs.as_array().unwrap().len(), 20);
    assert!(
        zipped.bytes.len() * 4 < text.len(),
        "{} of {}",
        zipped.bytes.len(),
        text.len()
    );

    let plain = app
        .raw(http::Method::POST, "/api/flow_runs/filter", body, &[])
        .await;
    assert!(plain.headers.get("content-encoding").is_none());
    let ids = |v: &Value| -> Vec<Value> { v.as_array().unwrap().iter().map(|r| r["id"].clone()).collect() };
    assert_eq!(ids(&plain.body), ids(&runs));
    let small = app.raw(http::Method::GET, "/api/health", None, &gzip).await;
    assert!(small.headers.get("content-encoding").is_none());
    assert_eq!(small.body, json!(true));
}

/// The fields of a run that do not move with the clock (`estimated_*` do).
fn settled(run: &Value) -> Value {
    let mut run = run.clone();
    let fields = run.as_object_mut().unwrap();
    fields.remove("estimated_run_time");
    fields.remove("estimated_start_time_delta");
    run
}

#[tokio::test]
async fn a_deployment_run_is_answered_as_it_reads_and_is_due_on_its_queue() {
    let app = TestApp::spawn().await;
    let flow_id = flow(&app, "f").await;
    let pool = app
        .post("/api/work_pools/", json!({"name": "p", "type": "process"}))
        .await;
    assert_eq!(pool.status, 201, "{}", pool.text);
    let d = app
        .post(
            "/api/deployments/",
            json!({"name": "d", "flow_id": flow_id, "work_pool_name": "p", "tags": ["x"]}),
        )
        .await
        .body;
    let when = (Utc::now() + Duration::hours(1)).to_rfc3339();
    let created = app
        .post(
            &format!("/api/deployments/{}/create_flow_run", d["id"].as_str().unwrap()),
            json!({"state": {"type": "SCHEDULED", "state_details": {"scheduled_time": when}}}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.body["id"].as_str().unwrap();
    let read = app.get(&format!("/api/flow_runs/{id}")).await;
    assert_eq!(settled(&created.body), settled(&read.body));
    assert_eq!(read.body["work_pool_name"], "p");
    assert_eq!(read.body["work_queue_name"], "default");
    assert_eq!(read.body["state"]["type"], "SCHEDULED");
    assert_eq!(
        read.body["next_scheduled_start_time"],
        read.body["expected_start_time"]
    );
    assert_eq!(read.body["tags"], json!(["x"]));

    let db = app.db().await;
    let row = db
        .query_one(
            "SELECT (SELECT count(*) FROM flow_run_state WHERE flow_run_id = $1), \
                    (SELECT count(*) FROM outbox WHERE flow_run_id = $1)",
            &[&uuid::Uuid::parse_str(id).unwrap()],
        )
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, i64>(0), row.get::<_, i64>(1)),
        (1, 1),
        "one state, one message"
    );
}

#[tokio::test]
async fn concurrent_creates_with_one_key_make_one_run_in_one_state() {
    let app = TestApp::spawn().await;
    let flow_id = flow(&app, "f").await;
    let body = json!({"flow_id": flow_id, "idempotency_key": "once", "state": state("PENDING")});
    let answers =
        futures_util::future::join_all((0..8).map(|_| app.post("/api/flow_runs/", body.clone()))).await;
    let created = answers.iter().filter(|a| a.status == 201).count();
    assert_eq!(
        created,
        1,
        "{:?}",
        answers.iter().map(|a| a.status).collect::<Vec<_>>()
    );
    assert!(answers.iter().all(|a| a.status == 201 || a.status == 200));
    let id = &answers[0].body["id"];
    assert!(answers.iter().all(|a| &a.body["id"] == id));
    let db = app.db().await;
    let states: i64 = db
        .query_one(
            "SELECT count(*) FROM flow_run_state WHERE flow_run_id = $1",
            &[&uuid::Uuid::parse_str(id.as_str().unwrap()).unwrap()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(states, 1);
}

#[tokio::test]
async fn a_run_created_with_a_persisted_result_has_its_result_artifact() {
    let app = TestApp::spawn().await;
    let flow_id = flow(&app, "f").await;
    let mut done = state("COMPLETED");
    done["data"] = json!({"type": "reference", "serializer_type": "json", "storage_block_id": null,
                          "storage_key": "k", "artifact_type": "result", "artifact_description": "made"});
    let created = run(&app, json!({"flow_id": flow_id, "state": done})).await;
    assert_eq!(created["state"]["type"], "COMPLETED");
    assert_eq!(created["state"]["data"]["storage_key"], "k");
    assert!(created["state"]["data"].get("artifact_type").is_none());
    let artifacts = app
        .post(
            "/api/artifacts/filter",
            json!({"artifacts": {"flow_run_id": {"any_": [created["id"]]}}}),
        )
        .await;
    assert_eq!(artifacts.status, 200, "{}", artifacts.text);
    let artifacts = artifacts.body.as_array().unwrap().clone();
    assert_eq!(artifacts.len(), 1, "{artifacts:?}");
    assert_eq!(artifacts[0]["type"], "result");
    assert_eq!(artifacts[0]["description"], "made");
    let read = app
        .get(&format!("/api/flow_runs/{}", created["id"].as_str().unwrap()))
        .await;
    assert_eq!(settled(&created), settled(&read.body));
}

#[tokio::test]
async fn history_puts_each_run_in_its_interval_edges_included() {
    let app = TestApp::spawn().await;
    let flow_id = flow(&app, "f").await;
    let start = chrono::DateTime::from_timestamp((Utc::now() + Duration::days(1)).timestamp(), 0).unwrap();
    for offset_ms in [0, 299_999, 300_000, 899_999, 1_200_000] {
        let at = start + Duration::milliseconds(offset_ms);
        run(
            &app,
            json!({"flow_id": flow_id, "state": {"type": "SCHEDULED", "state_details": {"scheduled_time": at.to_rfc3339()}}}),
        )
        .await;
    }
    let history = app
        .post(
            "/api/flow_runs/history",
            json!({"history_start": start.to_rfc3339(), "history_end": (start + Duration::seconds(1200)).to_rfc3339(),
                   "history_interval_seconds": 300.0}),
        )
        .await;
    assert_eq!(history.status, 200, "{}", history.text);
    let intervals = history.body.as_array().unwrap();
    let counts: Vec<i64> = intervals
        .iter()
        .map(|i| {
            i["states"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["count_runs"].as_i64().unwrap())
                .sum()
        })
        .collect();
    assert_eq!(
        counts,
        [2, 1, 1, 0],
        "the end is not in the last interval: {intervals:?}"
    );
    let starts: Vec<String> = intervals
        .iter()
        .map(|i| i["interval_start"].as_str().unwrap().to_string())
        .collect();
    let expected: Vec<String> = (0..4)
        .map(|k| stratus_domain::time::format_ts(&(start + Duration::seconds(300 * k))))
        .collect();
    assert_eq!(starts, expected);
    assert_eq!(intervals[0]["states"][0]["state_type"], "SCHEDULED");
}
