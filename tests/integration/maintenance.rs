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
    let (logs, states) = in_default(maintenance::prune(&app.state.db, retention))
        .await
        .unwrap();
    assert_eq!((logs, states), (1, 0));
    db.execute("UPDATE flow_run SET end_time = now() - interval '100 days'", &[])
        .await
        .unwrap();
    let (_, states) = in_default(maintenance::prune(&app.state.db, retention))
        .await
        .unwrap();
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

/// A run of the pool "agents", claimed by the agent `worker`.
async fn claimed_run(app: &TestApp, worker: &str) -> Value {
    let flow = app.post("/api/flows/", json!({"name": "f"})).await.body;
    let run = app
        .post(
            "/api/flow_runs/",
            json!({"flow_id": flow["id"], "work_pool_name": "agents", "state": state("SCHEDULED")}),
        )
        .await
        .body;
    let claim = app
        .post(
            "/api/work_pools/agents/message_queue/claim",
            json!({"flow_run_id": run["id"], "worker": worker}),
        )
        .await;
    assert_eq!(claim.body["claimed"], true, "{}", claim.text);
    run
}

async fn heartbeat(app: &TestApp, worker: &str, runs: &[&Value]) {
    let ids: Vec<&Value> = runs.iter().map(|r| &r["id"]).collect();
    let res = app
        .post(
            "/api/work_pools/agents/workers/heartbeat",
            json!({"name": worker, "heartbeat_interval_seconds": 1, "flow_run_ids": ids}),
        )
        .await;
    assert_eq!(res.status, 204, "{}", res.text);
}

async fn run_state(app: &TestApp, run: &Value) -> Value {
    app.get(&format!("/api/flow_runs/{}", run["id"].as_str().unwrap()))
        .await
        .body["state"]
        .clone()
}

#[tokio::test]
async fn runs_of_an_agent_that_stopped_heartbeating_are_crashed_and_only_those() {
    let app = TestApp::spawn().await;
    app.post("/api/work_pools/", json!({"name": "agents", "type": "process"}))
        .await;
    heartbeat(&app, "alive", &[]).await;
    heartbeat(&app, "dead", &[]).await;
    let kept = claimed_run(&app, "alive").await;
    let lost = claimed_run(&app, "dead").await;
    let running_lost = claimed_run(&app, "dead").await;
    set(&app, "flow_runs", &running_lost["id"], state("RUNNING"), false).await;
    // A restarted agent keeps its name but not its runs: it does not name the old one.
    let left_behind = claimed_run(&app, "alive").await;
    // Unclaimed runs (the stock workers') are never judged by heartbeats.
    let unclaimed = flow_run(&app, json!({})).await;
    set(&app, "flow_runs", &unclaimed["id"], state("RUNNING"), false).await;

    // Within three intervals (3 s here) nothing is crashed.
    let report = maintenance::run_once(&app.state.runs(), &app.state.settings)
        .await
        .unwrap();
    assert_eq!(report.lost_runs_crashed, 0);
    for _ in 0..4 {
        tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
        heartbeat(&app, "alive", &[&kept]).await;
    }
    let report = maintenance::run_once(&app.state.runs(), &app.state.settings)
        .await
        .unwrap();
    assert_eq!(report.lost_runs_crashed, 3);
    assert_eq!(run_state(&app, &kept).await["type"], "PENDING");
    assert_eq!(run_state(&app, &unclaimed).await["type"], "RUNNING");
    for run in [&lost, &running_lost, &left_behind] {
        let s = run_state(&app, run).await;
        assert_eq!(s["type"], "CRASHED", "{s}");
        assert!(
            s["message"].as_str().unwrap().contains("stopped heartbeating"),
            "{s}"
        );
    }
    // The crashed runs' claims are done with; a second pass finds nothing.
    let again = maintenance::run_once(&app.state.runs(), &app.state.settings)
        .await
        .unwrap();
    assert_eq!(again.lost_runs_crashed, 0);
    let claims: i64 = app
        .db()
        .await
        .query_one("SELECT count(*) FROM flow_run_claim", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(claims, 1, "only the live agent's claim is left");
}

#[tokio::test]
async fn a_claim_whose_answer_was_lost_is_the_same_agents_again_and_no_one_elses() {
    let app = TestApp::spawn().await;
    app.post("/api/work_pools/", json!({"name": "agents", "type": "process"}))
        .await;
    let run = claimed_run(&app, "first").await;
    let claim = |worker: Value| {
        let app = &app;
        let run = &run;
        async move {
            let mut body = json!({"flow_run_id": run["id"]});
            if !worker.is_null() {
                body["worker"] = worker;
            }
            app.post("/api/work_pools/agents/message_queue/claim", body)
                .await
                .body
        }
    };
    assert_eq!(claim(json!("first")).await["claimed"], true);
    assert_eq!(claim(json!("second")).await["claimed"], false);
    assert_eq!(claim(Value::Null).await["claimed"], false);
    // Only while Pending: once its flow runs, the run is nobody's to claim.
    set(&app, "flow_runs", &run["id"], state("RUNNING"), false).await;
    assert_eq!(claim(json!("first")).await["claimed"], false);
    let states = app
        .get(&format!(
            "/api/flow_run_states/?flow_run_id={}",
            run["id"].as_str().unwrap()
        ))
        .await
        .body;
    let kinds: Vec<&str> = states
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["SCHEDULED", "PENDING", "RUNNING"],
        "claiming again wrote no state"
    );
}

/// Upkeep passes go workspace by workspace; this runs one in the default workspace.
async fn in_default<F: std::future::Future>(pass: F) -> F::Output {
    stratus_store::tenancy::within(stratus_store::db::access::DEFAULT_WORKSPACE_ID, pass).await
}

#[tokio::test]
async fn tables_never_analyzed_are_analyzed_once_they_hold_rows() {
    let app = TestApp::spawn().await;
    let db = app.db().await;
    db.execute(
        "INSERT INTO log (name, level, message, timestamp) SELECT 'n', 20, 'x', now() FROM generate_series(1, 150)",
        &[],
    )
    .await
    .unwrap();
    // A session's row counts reach Postgres's statistics when it ends (or idles a while).
    drop(db);
    let mut analyzed = Vec::new();
    for _ in 0..50 {
        analyzed = stratus_store::tenancy::system(maintenance::analyze_first_rows(&app.state.db))
            .await
            .unwrap();
        if analyzed.contains(&"log".to_string()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(analyzed.contains(&"log".to_string()), "{analyzed:?}");
    let again = stratus_store::tenancy::system(maintenance::analyze_first_rows(&app.state.db))
        .await
        .unwrap();
    assert!(
        !again.contains(&"log".to_string()),
        "analyzed once: then it is Postgres's business"
    );
}

/// Each pass prunes the superseded states of at most a batch of finished runs, the next
/// ones by end time after the last pass's: it never looks through the whole history for
/// states to prune (over 10,000,000 task runs that took 9.5 s a pass), and it keeps every
/// run's current state.
#[tokio::test]
async fn state_pruning_walks_the_finished_runs_a_batch_at_a_time() {
    let app = TestApp::spawn().await;
    let flow = app.post("/api/flows/", json!({"name": "old"})).await.body["id"].clone();
    let flow: uuid::Uuid = flow.as_str().unwrap().parse().unwrap();
    let db = app.db().await;
    db.execute(
        "WITH r AS ( \
           INSERT INTO flow_run (flow_id, name, state_type, end_time) \
           SELECT $1, 'old-' || i, 'COMPLETED', now() - interval '200 days' + i * interval '1 second' \
           FROM generate_series(1, 12000) i RETURNING id, end_time \
         ), superseded AS ( \
           INSERT INTO flow_run_state (flow_run_id, type, name, timestamp) \
           SELECT id, 'RUNNING', 'Running', end_time - interval '1 minute' FROM r \
         ) \
         INSERT INTO flow_run_state (flow_run_id, type, name, timestamp) \
         SELECT id, 'COMPLETED', 'Completed', end_time FROM r",
        &[&flow],
    )
    .await
    .unwrap();
    db.execute(
        "UPDATE flow_run fr SET state_id = s.id FROM flow_run_state s \
         WHERE s.flow_run_id = fr.id AND s.type = 'COMPLETED'",
        &[],
    )
    .await
    .unwrap();
    let retention = maintenance::Retention {
        log_days: 0,
        state_days: 90,
    };
    let mut passes = Vec::new();
    for _ in 0..4 {
        let (_, states) = in_default(maintenance::prune(&app.state.db, retention))
            .await
            .unwrap();
        passes.push(states);
    }
    let batch = maintenance::PRUNE_BATCH_SIZE as u64;
    assert_eq!(passes, vec![batch, batch, 12_000 - 2 * batch, 0]);
    let left: Vec<(String, i64)> = db
        .query("SELECT type, count(*) FROM flow_run_state GROUP BY type", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(left, vec![("COMPLETED".to_string(), 12_000)]);
}
