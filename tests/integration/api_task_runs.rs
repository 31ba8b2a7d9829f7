use crate::common;

use common::TestApp;
use serde_json::{json, Value};

fn state(kind: &str) -> Value {
    json!({"type": kind, "name": null, "message": null, "data": null, "state_details": {}})
}

/// A running flow run to put task runs in.
async fn running_flow_run(app: &TestApp) -> Value {
    let flow = app.post("/api/flows/", json!({"name": "f"})).await.body;
    let run = app
        .post("/api/flow_runs/", json!({"flow_id": flow["id"]}))
        .await
        .body;
    let res = app
        .post(
            &format!("/api/flow_runs/{}/set_state", run["id"].as_str().unwrap()),
            json!({"state": state("RUNNING")}),
        )
        .await;
    assert_eq!(res.body["status"], "ACCEPT");
    run["id"].clone()
}

async fn task(app: &TestApp, flow_run_id: &Value, key: &str, extra: Value) -> Value {
    let mut body = json!({
        "flow_run_id": flow_run_id, "task_key": key, "dynamic_key": "0", "name": format!("{key}-0"),
        "cache_key": null, "cache_expiration": null, "task_version": null,
        "empirical_policy": {"max_retries": 0, "retry_delay_seconds": 0, "retries": 0, "retry_delay": 0, "retry_jitter_factor": null},
        "tags": [], "task_inputs": {}, "state": state("PENDING")
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let res = app.post("/api/task_runs/", body).await;
    assert_eq!(res.status, 201, "{}", res.text);
    res.body
}

async fn set(app: &TestApp, id: &Value, state: Value) -> common::Response {
    app.post(
        &format!("/api/task_runs/{}/set_state", id.as_str().unwrap()),
        json!({"state": state, "force": false}),
    )
    .await
}

#[tokio::test]
async fn task_runs_are_upserted_on_flow_run_task_key_and_dynamic_key() {
    let app = TestApp::spawn().await;
    let fr = running_flow_run(&app).await;
    let first = task(&app, &fr, "add-1", json!({})).await;
    assert_eq!(first["state_type"], "PENDING");
    assert_eq!(first["state"]["state_details"]["task_run_id"], first["id"]);
    let again = app
        .post(
            "/api/task_runs/",
            json!({"flow_run_id": fr, "task_key": "add-1", "dynamic_key": "0", "name": "other"}),
        )
        .await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body["id"], first["id"]);
    assert_eq!(again.body["name"], "add-1-0");

    let missing = app.post("/api/task_runs/", json!({"task_key": "k"})).await;
    assert_eq!(missing.status, 422);
    let huge = app
        .post(
            "/api/task_runs/",
            json!({"flow_run_id": fr, "task_key": "k", "dynamic_key": "0", "cache_key": "x".repeat(2001)}),
        )
        .await;
    assert_eq!(huge.status, 422);
}

#[tokio::test]
async fn a_task_completes_and_is_read_filtered_and_counted() {
    let app = TestApp::spawn().await;
    let fr = running_flow_run(&app).await;
    let t = task(&app, &fr, "add-1", json!({"tags": ["math"]})).await;
    let res = set(&app, &t["id"], state("RUNNING")).await;
    assert_eq!(res.status, 201);
    assert_eq!(res.body["status"], "ACCEPT");
    let mut done = state("COMPLETED");
    done["data"] = json!({"type": "unpersisted", "artifact_type": "result", "artifact_description": "x"});
    let res = set(&app, &t["id"], done).await;
    assert_eq!(res.body["status"], "ACCEPT");
    assert_eq!(res.body["state"]["data"]["type"], "unpersisted");

    let read = app
        .get(&format!("/api/task_runs/{}", t["id"].as_str().unwrap()))
        .await
        .body;
    assert_eq!(read["state_type"], "COMPLETED");
    assert_eq!(read["run_count"], 1);
    assert_eq!(read["flow_run_run_count"], 1);
    assert_eq!(
        read["state"]["data"],
        Value::Null,
        "unpersisted data is not stored"
    );

    let filtered = app
        .post(
            "/api/task_runs/filter",
            json!({"flow_runs": {"id": {"any_": [fr]}}, "sort": "EXPECTED_START_TIME_ASC"}),
        )
        .await;
    assert_eq!(filtered.body.as_array().unwrap().len(), 1);
    let count = app
        .post(
            "/api/task_runs/count",
            json!({"task_runs": {"tags": {"all_": ["math"]}}}),
        )
        .await;
    assert_eq!(count.body, json!(1));
    let states = app
        .get(&format!(
            "/api/task_run_states/?task_run_id={}",
            t["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(states.body.as_array().unwrap().len(), 3);

    assert_eq!(
        app.patch(
            &format!("/api/task_runs/{}", t["id"].as_str().unwrap()),
            json!({"name": "renamed"})
        )
        .await
        .status,
        204
    );
    assert_eq!(
        app.get(&format!("/api/task_runs/{}", t["id"].as_str().unwrap()))
            .await
            .body["name"],
        "renamed"
    );
    // Absent: unchanged; null or empty: a new generated name, as Prefect's `TaskRunUpdate`.
    let path = format!("/api/task_runs/{}", t["id"].as_str().unwrap());
    assert_eq!(app.patch(&path, json!({})).await.status, 204);
    assert_eq!(app.get(&path).await.body["name"], "renamed");
    for name in [Value::Null, json!("")] {
        assert_eq!(app.patch(&path, json!({ "name": name })).await.status, 204);
        let name = app.get(&path).await.body["name"].clone();
        assert!(
            name.as_str().is_some_and(|n| !n.is_empty() && n != "renamed"),
            "{name}"
        );
    }
    assert_eq!(
        app.delete(&format!("/api/task_runs/{}", t["id"].as_str().unwrap()))
            .await
            .status,
        204
    );
    let gone = app
        .get(&format!("/api/task_runs/{}", t["id"].as_str().unwrap()))
        .await;
    assert_eq!(gone.body, json!({"detail": "Task not found"}));
}

#[tokio::test]
async fn tasks_cannot_run_unless_their_flow_run_is_running() {
    let app = TestApp::spawn().await;
    let flow = app.post("/api/flows/", json!({"name": "f"})).await.body;
    let run = app
        .post("/api/flow_runs/", json!({"flow_id": flow["id"]}))
        .await
        .body;
    let t = task(&app, &run["id"], "k", json!({})).await;
    let res = set(&app, &t["id"], state("RUNNING")).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.body["status"], "ABORT");
    assert_eq!(
        res.body["details"]["reason"],
        "The enclosing flow must be running to begin task execution."
    );
}

#[tokio::test]
async fn a_failing_task_with_retries_is_retried_with_renamed_state() {
    let app = TestApp::spawn().await;
    let fr = running_flow_run(&app).await;
    let t = task(
        &app,
        &fr,
        "flaky",
        json!({"empirical_policy": {"max_retries": 0, "retry_delay_seconds": 0, "retries": 2, "retry_delay": [0, 0], "retry_jitter_factor": null}}),
    )
    .await;
    set(&app, &t["id"], state("RUNNING")).await;
    let mut failed = state("FAILED");
    failed["message"] = json!("Task run encountered an exception ValueError: nope");
    failed["state_details"]["retriable"] = json!(true);
    let res = set(&app, &t["id"], failed.clone()).await;
    assert_eq!(res.status, 201);
    assert_eq!(res.body["status"], "REJECT");
    assert_eq!(res.body["state"]["name"], "AwaitingRetry");
    assert_eq!(res.body["details"]["reason"], "Retrying");

    let rerun = set(&app, &t["id"], state("RUNNING")).await;
    assert_eq!(rerun.body["status"], "ACCEPT");
    assert_eq!(rerun.body["state"]["name"], "Retrying");
    assert_eq!(
        set(&app, &t["id"], state("COMPLETED")).await.body["status"],
        "ACCEPT"
    );
    let read = app
        .get(&format!("/api/task_runs/{}", t["id"].as_str().unwrap()))
        .await
        .body;
    assert_eq!(read["run_count"], 2);
}

#[tokio::test]
async fn a_cached_result_is_reused_by_a_later_task_run() {
    let app = TestApp::spawn().await;
    let fr = running_flow_run(&app).await;
    let first = task(&app, &fr, "cached", json!({})).await;
    let mut running = state("RUNNING");
    running["state_details"]["cache_key"] = json!("key-1");
    assert_eq!(
        set(&app, &first["id"], running.clone()).await.body["status"],
        "ACCEPT"
    );
    let mut done = state("COMPLETED");
    done["state_details"]["cache_key"] = json!("key-1");
    done["data"] = json!({"type": "reference", "serializer_type": "pickle", "storage_block_id": uuid::Uuid::new_v4(),
                          "storage_key": "abc", "artifact_type": "result", "artifact_description": "d"});
    assert_eq!(set(&app, &first["id"], done).await.body["status"], "ACCEPT");

    let second = app
        .post(
            "/api/task_runs/",
            json!({"flow_run_id": fr, "task_key": "cached", "dynamic_key": "1", "name": "cached-1"}),
        )
        .await
        .body;
    let res = set(&app, &second["id"], running).await;
    assert_eq!(res.status, 201, "{}", res.text);
    assert_eq!(res.body["status"], "REJECT");
    assert_eq!(res.body["details"]["reason"], "Retrieved state from cache");
    assert_eq!(res.body["state"]["type"], "COMPLETED");
    assert_eq!(res.body["state"]["name"], "Cached");
    assert_eq!(res.body["state"]["data"]["storage_key"], "abc");

    let mut refresh = state("RUNNING");
    refresh["state_details"]["cache_key"] = json!("key-1");
    refresh["state_details"]["refresh_cache"] = json!(true);
    let third = app
        .post(
            "/api/task_runs/",
            json!({"flow_run_id": fr, "task_key": "cached", "dynamic_key": "2", "name": "cached-2"}),
        )
        .await
        .body;
    assert_eq!(set(&app, &third["id"], refresh).await.body["status"], "ACCEPT");
}

/// A cached task submitted twice to a task server (`task.submit()` outside a flow, Prefect
/// 2.20's `create_autonomous_task_run`, then `TaskServer.execute_task_run`): each run is
/// created Scheduled with no flow run, the server proposes Pending, the engine Running with
/// the cache key; the second run gets the first's result as `Cached`.
#[tokio::test]
async fn an_autonomous_task_run_takes_the_cached_state_of_an_earlier_one() {
    let app = TestApp::spawn().await;
    let submit = |dynamic_key: &'static str| {
        let app = &app;
        async move {
            let mut scheduled = state("SCHEDULED");
            scheduled["state_details"]["task_parameters_id"] = json!(uuid::Uuid::new_v4());
            let res = app
                .post(
                    "/api/task_runs/",
                    json!({"name": "task_with_cache", "flow_run_id": null, "task_key": "tasks.task_with_cache",
                           "dynamic_key": dynamic_key, "cache_key": null, "cache_expiration": null,
                           "task_version": null, "tags": [], "task_inputs": {}, "state": scheduled}),
                )
                .await;
            assert_eq!(res.status, 201, "{}", res.text);
            let id = res.body["id"].clone();
            assert_eq!(set(app, &id, state("PENDING")).await.body["status"], "ACCEPT");
            id
        }
    };
    let mut running = state("RUNNING");
    running["state_details"]["cache_key"] = json!("input-hash");
    let first = submit("tasks.task_with_cache-1a2").await;
    assert_eq!(set(&app, &first, running.clone()).await.body["status"], "ACCEPT");
    let mut done = state("COMPLETED");
    done["state_details"]["cache_key"] = json!("input-hash");
    done["data"] = json!({"type": "reference", "serializer_type": "pickle", "storage_block_id": uuid::Uuid::new_v4(),
                          "storage_key": "result-1"});
    assert_eq!(set(&app, &first, done).await.body["status"], "ACCEPT");

    let second = submit("tasks.task_with_cache-3b4").await;
    assert_ne!(second, first);
    let res = set(&app, &second, running).await;
    assert_eq!(res.body["status"], "REJECT", "{}", res.text);
    assert_eq!(res.body["details"]["reason"], "Retrieved state from cache");
    assert_eq!(res.body["state"]["type"], "COMPLETED");
    assert_eq!(res.body["state"]["name"], "Cached");
    assert_eq!(res.body["state"]["data"]["storage_key"], "result-1");
    let read = app
        .get(&format!("/api/task_runs/{}", second.as_str().unwrap()))
        .await;
    assert_eq!(read.body["state"]["name"], "Cached");
}

#[tokio::test]
async fn tag_concurrency_limits_hold_tasks_until_a_slot_frees() {
    let app = TestApp::spawn().await;
    let db = app.db().await;
    db.execute(
        "INSERT INTO concurrency_limit (tag, concurrency_limit) VALUES ('db', 1), ('zero', 0)",
        &[],
    )
    .await
    .unwrap();
    let fr = running_flow_run(&app).await;
    let a = task(&app, &fr, "a", json!({"tags": ["db"]})).await;
    let b = task(&app, &fr, "b", json!({"tags": ["db"]})).await;

    assert_eq!(
        set(&app, &a["id"], state("RUNNING")).await.body["status"],
        "ACCEPT"
    );
    let held = set(&app, &b["id"], state("RUNNING")).await;
    assert_eq!(held.status, 200);
    assert_eq!(held.body["status"], "WAIT");
    assert_eq!(
        held.body["details"]["reason"],
        "Concurrency limit for the db tag has been reached"
    );
    let slots: Value = db
        .query_one("SELECT active_slots FROM concurrency_limit WHERE tag = 'db'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(slots, json!([a["id"]]));

    assert_eq!(
        set(&app, &a["id"], state("COMPLETED")).await.body["status"],
        "ACCEPT"
    );
    assert_eq!(
        set(&app, &b["id"], state("RUNNING")).await.body["status"],
        "ACCEPT"
    );
    assert_eq!(
        set(&app, &b["id"], state("COMPLETED")).await.body["status"],
        "ACCEPT"
    );
    let slots: Value = db
        .query_one("SELECT active_slots FROM concurrency_limit WHERE tag = 'db'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(slots, json!([]));

    let z = task(&app, &fr, "z", json!({"tags": ["zero"]})).await;
    let res = set(&app, &z["id"], state("RUNNING")).await;
    assert_eq!(res.body["status"], "ABORT");
    assert_eq!(
        res.body["details"]["reason"],
        "The concurrency limit on tag \"zero\" is 0 and will deadlock if the task tries to run again."
    );
}

#[tokio::test]
async fn concurrent_tasks_never_exceed_their_tag_limit() {
    let app = TestApp::spawn().await;
    let db = app.db().await;
    db.execute(
        "INSERT INTO concurrency_limit (tag, concurrency_limit) VALUES ('io', 2)",
        &[],
    )
    .await
    .unwrap();
    let fr = running_flow_run(&app).await;
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(task(&app, &fr, &format!("t{i}"), json!({"tags": ["io"]})).await["id"].clone());
    }
    let results = futures_all(&app, &ids).await;
    let accepted = results.iter().filter(|s| *s == "ACCEPT").count();
    assert_eq!(accepted, 2, "{results:?}");
    let slots: Value = db
        .query_one("SELECT active_slots FROM concurrency_limit WHERE tag = 'io'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(slots.as_array().unwrap().len(), 2);
}

async fn futures_all(app: &TestApp, ids: &[Value]) -> Vec<String> {
    let (a, b, c, d, e, f) = tokio::join!(
        set(app, &ids[0], state("RUNNING")),
        set(app, &ids[1], state("RUNNING")),
        set(app, &ids[2], state("RUNNING")),
        set(app, &ids[3], state("RUNNING")),
        set(app, &ids[4], state("RUNNING")),
        set(app, &ids[5], state("RUNNING")),
    );
    [a, b, c, d, e, f]
        .iter()
        .map(|r| r.body["status"].as_str().unwrap_or("").to_string())
        .collect()
}

/// The newest cache entry decides: when its run (and so its state) is deleted, a later run
/// with the key runs afresh, although an older run's cached state remains (Prefect 2.20
/// `CacheRetrieval` reads the newest entry's state only).
#[tokio::test]
async fn a_deleted_newest_cache_entry_is_a_miss_not_a_fallback_to_an_older_one() {
    let app = TestApp::spawn().await;
    let fr = running_flow_run(&app).await;
    let mut running = state("RUNNING");
    running["state_details"]["cache_key"] = json!("key-k");
    let mut done = state("COMPLETED");
    done["state_details"]["cache_key"] = json!("key-k");
    let mut refresh = running.clone();
    refresh["state_details"]["refresh_cache"] = json!(true);
    for key in ["older", "newest"] {
        let run = task(&app, &fr, key, json!({})).await;
        assert_eq!(
            set(&app, &run["id"], refresh.clone()).await.body["status"],
            "ACCEPT"
        );
        assert_eq!(set(&app, &run["id"], done.clone()).await.body["status"], "ACCEPT");
        if key == "newest" {
            let path = format!("/api/task_runs/{}", run["id"].as_str().unwrap());
            assert_eq!(app.delete(&path).await.status, 204);
        }
    }
    let later = task(&app, &fr, "later", json!({})).await;
    let res = set(&app, &later["id"], running).await;
    assert_eq!(res.body["status"], "ACCEPT", "{}", res.text);
}

#[tokio::test]
async fn an_autonomous_task_run_created_running_takes_a_cached_state() {
    let app = TestApp::spawn().await;
    let flow_run_id = running_flow_run(&app).await;
    let first = task(&app, &flow_run_id, "cached", json!({})).await;
    let mut running = state("RUNNING");
    running["state_details"]["cache_key"] = json!("input-hash");
    assert_eq!(
        set(&app, &first["id"], running.clone()).await.body["status"],
        "ACCEPT"
    );
    let mut done = state("COMPLETED");
    done["state_details"]["cache_key"] = json!("input-hash");
    done["data"] = json!({"type": "reference", "serializer_type": "pickle", "storage_block_id": null,
                          "storage_key": "result-1"});
    assert_eq!(set(&app, &first["id"], done).await.body["status"], "ACCEPT");

    // Its first state is decided with the cache read, as any later Running would be.
    let res = app
        .post(
            "/api/task_runs/",
            json!({"name": "again", "flow_run_id": null, "task_key": "cached", "dynamic_key": "x",
                   "tags": [], "task_inputs": {}, "state": running}),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.text);
    assert_eq!(res.body["state"]["type"], "COMPLETED", "{}", res.text);
    assert_eq!(res.body["state"]["name"], "Cached");
    assert_eq!(res.body["state"]["data"]["storage_key"], "result-1");
}

#[tokio::test]
async fn concurrent_creates_of_one_task_make_one_run_in_one_state() {
    let app = TestApp::spawn().await;
    let flow_run_id = running_flow_run(&app).await;
    let body = json!({
        "flow_run_id": flow_run_id, "task_key": "same", "dynamic_key": "0", "name": "same-0",
        "tags": ["a"], "task_inputs": {}, "state": state("PENDING")
    });
    let answers =
        futures_util::future::join_all((0..8).map(|_| app.post("/api/task_runs/", body.clone()))).await;
    let created = answers.iter().filter(|a| a.status == 201).count();
    assert_eq!(
        created,
        1,
        "{:?}",
        answers.iter().map(|a| a.status).collect::<Vec<_>>()
    );
    assert!(answers.iter().all(|a| a.status == 201 || a.status == 200));
    let id = answers[0].body["id"].clone();
    assert!(answers.iter().all(|a| a.body["id"] == id));
    let read = app
        .get(&format!("/api/task_runs/{}", id.as_str().unwrap()))
        .await
        .body;
    assert_eq!(read["state"]["type"], "PENDING");
    assert_eq!(read["state_id"], read["state"]["id"]);
    assert_eq!(read["tags"], json!(["a"]));
    let db = app.db().await;
    let states: i64 = db
        .query_one(
            "SELECT count(*) FROM task_run_state WHERE task_run_id = $1",
            &[&uuid::Uuid::parse_str(id.as_str().unwrap()).unwrap()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(states, 1);
}
