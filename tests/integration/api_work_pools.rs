use crate::common;

use chrono::{Duration, Utc};
use common::TestApp;
use serde_json::{json, Value};

async fn pool(app: &TestApp, name: &str, extra: Value) -> Value {
    let mut body = json!({"name": name, "type": "process"});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let res = app.post("/api/work_pools/", body).await;
    assert_eq!(res.status, 201, "{}", res.text);
    res.body
}

#[tokio::test]
async fn pools_are_created_with_a_default_queue_and_validated() {
    let app = TestApp::spawn().await;
    let p = pool(&app, "local", json!({})).await;
    assert_eq!(p["status"], "NOT_READY");
    assert_eq!(p["type"], "process");
    let read = app.get("/api/work_pools/local").await.body;
    assert_eq!(read["id"], p["id"]);
    let queues = app
        .post("/api/work_pools/local/queues/filter", json!({}))
        .await
        .body;
    assert_eq!(queues.as_array().unwrap().len(), 1);
    assert_eq!(queues[0]["name"], "default");
    assert_eq!(queues[0]["id"], p["default_queue_id"]);
    assert_eq!(queues[0]["work_pool_name"], "local");

    assert_eq!(
        app.post("/api/work_pools/", json!({"name": "local"}))
            .await
            .status,
        409
    );
    assert_eq!(
        app.post("/api/work_pools/", json!({"name": "Prefect-pool"}))
            .await
            .status,
        403
    );
    assert_eq!(
        app.post("/api/work_pools/", json!({"name": " "})).await.status,
        400
    );
    let bad_template = app
        .post("/api/work_pools/", json!({"name": "t", "base_job_template": {"job_configuration": {"command": "{{ cmd }}"}, "variables": {"properties": {}}}}))
        .await;
    assert_eq!(bad_template.status, 422);
    let good_template = app
        .post("/api/work_pools/", json!({"name": "t", "base_job_template": {"job_configuration": {"command": "{{ cmd }}"}, "variables": {"properties": {"cmd": {"type": "string"}}}}}))
        .await;
    assert_eq!(good_template.status, 201);
    let agent = app.post("/api/work_pools/", json!({"name": "agents"})).await.body;
    assert_eq!(
        (agent["type"].clone(), agent["status"].clone()),
        (json!("prefect-agent"), Value::Null)
    );
    assert_eq!(
        app.get("/api/work_pools/nope").await.body,
        json!({"detail": "Work pool \"nope\" not found."})
    );
    assert_eq!(app.post("/api/work_pools/count", json!({})).await.body, json!(3));
    let by_type = app
        .post(
            "/api/work_pools/filter",
            json!({"work_pools": {"type": {"any_": ["process"]}}}),
        )
        .await
        .body;
    assert_eq!(
        by_type.as_array().unwrap().len(),
        1,
        "pools without a type are agent pools"
    );
}

#[tokio::test]
async fn pausing_heartbeats_and_deleting_pools() {
    let app = TestApp::spawn().await;
    pool(&app, "local", json!({})).await;
    assert_eq!(
        app.patch("/api/work_pools/local", json!({"is_paused": true}))
            .await
            .status,
        204
    );
    assert_eq!(app.get("/api/work_pools/local").await.body["status"], "PAUSED");
    app.patch("/api/work_pools/local", json!({"is_paused": false}))
        .await;
    assert_eq!(app.get("/api/work_pools/local").await.body["status"], "NOT_READY");

    let hb = app
        .post(
            "/api/work_pools/local/workers/heartbeat",
            json!({"name": "w1", "heartbeat_interval_seconds": 10.0}),
        )
        .await;
    assert_eq!(hb.status, 204);
    assert_eq!(app.get("/api/work_pools/local").await.body["status"], "READY");
    let workers = app
        .post("/api/work_pools/local/workers/filter", json!({}))
        .await
        .body;
    assert_eq!(workers[0]["name"], "w1");
    assert_eq!(workers[0]["status"], "ONLINE");
    assert_eq!(workers[0]["heartbeat_interval_seconds"], 10);
    let offline = app
        .post(
            "/api/work_pools/local/workers/filter",
            json!({"workers": {"status": {"any_": ["OFFLINE"]}}}),
        )
        .await
        .body;
    assert_eq!(offline, json!([]));
    assert_eq!(app.delete("/api/work_pools/local/workers/w1").await.status, 204);
    assert_eq!(
        app.delete("/api/work_pools/local/workers/w1").await.body,
        json!({"detail": "Worker not found."})
    );

    assert_eq!(
        app.patch("/api/work_pools/local", json!({"concurrency_limit": 3}))
            .await
            .status,
        204
    );
    assert_eq!(
        app.get("/api/work_pools/local").await.body["concurrency_limit"],
        3
    );
    app.patch("/api/work_pools/local", json!({"concurrency_limit": null}))
        .await;
    assert_eq!(
        app.get("/api/work_pools/local").await.body["concurrency_limit"],
        Value::Null
    );

    assert_eq!(app.delete("/api/work_pools/local").await.status, 204);
    assert_eq!(app.get("/api/work_pools/local").await.status, 404);
    assert_eq!(app.delete("/api/work_pools/local").await.status, 404);
}

#[tokio::test]
async fn queues_keep_distinct_priorities() {
    let app = TestApp::spawn().await;
    pool(&app, "local", json!({})).await;
    let high = app
        .post("/api/work_pools/local/queues", json!({"name": "high"}))
        .await;
    assert_eq!(high.status, 201);
    assert_eq!(high.body["priority"], 2);
    // What `prefect work-queue create --pool` sends: every field, the deprecated filter null.
    let low = app
        .post(
            "/api/work_pools/local/queues",
            json!({"name": "low", "concurrency_limit": 1, "description": null, "filter": null,
                   "is_paused": false, "priority": null}),
        )
        .await;
    assert_eq!(low.status, 201, "{}", low.text);
    assert_eq!(
        app.post("/api/work_pools/local/queues", json!({"name": "high"}))
            .await
            .status,
        409
    );
    assert_eq!(
        app.post(
            "/api/work_pools/local/queues",
            json!({"name": "x", "priority": 0})
        )
        .await
        .status,
        422
    );

    assert_eq!(
        app.patch("/api/work_pools/local/queues/low", json!({"priority": 1}))
            .await
            .status,
        204
    );
    let queues = app
        .post("/api/work_pools/local/queues/filter", json!({}))
        .await
        .body;
    let order: Vec<_> = queues
        .as_array()
        .unwrap()
        .iter()
        .map(|q| (q["name"].clone(), q["priority"].clone()))
        .collect();
    assert_eq!(
        order,
        vec![
            (json!("low"), json!(1)),
            (json!("default"), json!(2)),
            (json!("high"), json!(3))
        ]
    );

    app.patch("/api/work_pools/local/queues/high", json!({"is_paused": true}))
        .await;
    assert_eq!(
        app.get("/api/work_pools/local/queues/high").await.body["status"],
        "PAUSED"
    );
    let starts = app
        .post(
            "/api/work_pools/local/queues/filter",
            json!({"work_queues": {"name": {"startswith_": ["hi"]}}}),
        )
        .await
        .body;
    assert_eq!(starts.as_array().unwrap().len(), 1);
    assert_eq!(
        app.delete("/api/work_pools/local/queues/default").await.status,
        400
    );
    assert_eq!(app.delete("/api/work_pools/local/queues/high").await.status, 204);
    assert_eq!(app.get("/api/work_pools/local/queues/high").await.status, 404);
}

/// A SCHEDULED run in the given queue, due `in_seconds` from now.
async fn scheduled_run(app: &TestApp, queue_id: &Value, in_seconds: i64) -> Value {
    let flow = app.post("/api/flows/", json!({"name": "f"})).await.body;
    let at = (Utc::now() + Duration::seconds(in_seconds)).to_rfc3339();
    let run = app
        .post("/api/flow_runs/", json!({"flow_id": flow["id"], "state": {"type": "SCHEDULED", "state_details": {"scheduled_time": at}}}))
        .await
        .body;
    let db = app.db().await;
    let run_id: uuid::Uuid = run["id"].as_str().unwrap().parse().unwrap();
    let queue: uuid::Uuid = queue_id.as_str().unwrap().parse().unwrap();
    db.execute(
        "UPDATE flow_run SET work_queue_id = $2 WHERE id = $1",
        &[&run_id, &queue],
    )
    .await
    .unwrap();
    run
}

#[tokio::test]
async fn the_poll_hands_out_due_runs_by_priority_within_limits() {
    let app = TestApp::spawn().await;
    let p = pool(&app, "local", json!({})).await;
    let urgent = app
        .post(
            "/api/work_pools/local/queues",
            json!({"name": "urgent", "priority": 1}),
        )
        .await
        .body;
    let capped = app
        .post(
            "/api/work_pools/local/queues",
            json!({"name": "capped", "concurrency_limit": 1}),
        )
        .await
        .body;
    let a = scheduled_run(&app, &p["default_queue_id"], -10).await;
    let b = scheduled_run(&app, &urgent["id"], -5).await;
    let _later = scheduled_run(&app, &p["default_queue_id"], 3600).await;
    let c1 = scheduled_run(&app, &capped["id"], -3).await;
    let _c2 = scheduled_run(&app, &capped["id"], -2).await;

    let now = Utc::now().to_rfc3339();
    let res = app
        .post(
            "/api/work_pools/local/get_scheduled_flow_runs",
            json!({"scheduled_before": now}),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.text);
    let got: Vec<_> = res
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["flow_run"]["id"].clone())
        .collect();
    assert_eq!(
        got,
        vec![b["id"].clone(), a["id"].clone(), c1["id"].clone()],
        "priority, then time, one from the capped queue"
    );
    assert_eq!(res.body[0]["work_pool_id"], p["id"]);
    assert_eq!(res.body[0]["work_queue_id"], urgent["id"]);
    assert_eq!(res.body[0]["flow_run"]["state"], Value::Null);

    let read = app
        .get(&format!("/api/flow_runs/{}", b["id"].as_str().unwrap()))
        .await
        .body;
    assert_eq!(
        (read["work_pool_name"].clone(), read["work_queue_name"].clone()),
        (json!("local"), json!("urgent"))
    );
    let queue = app.get("/api/work_pools/local/queues/urgent").await.body;
    assert_eq!(queue["status"], "READY");
    assert!(queue["last_polled"].is_string());

    // What a poll handed out is not handed out again while its offer lasts; once it
    // runs out, it is.
    let only_urgent = || {
        app.post(
            "/api/work_pools/local/get_scheduled_flow_runs",
            json!({"work_queue_names": ["urgent"], "scheduled_before": now}),
        )
    };
    assert_eq!(only_urgent().await.body, json!([]));
    app.db()
        .await
        .execute(
            "UPDATE flow_run SET offered_until = now() - interval '1 second'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(only_urgent().await.body.as_array().unwrap().len(), 1);
    let missing = app
        .post(
            "/api/work_pools/local/get_scheduled_flow_runs",
            json!({"work_queue_names": ["nope"]}),
        )
        .await;
    assert_eq!(missing.status, 404);

    app.patch("/api/work_pools/local", json!({"is_paused": true}))
        .await;
    let paused = app
        .post(
            "/api/work_pools/local/get_scheduled_flow_runs",
            json!({"scheduled_before": now}),
        )
        .await;
    assert_eq!(paused.body, json!([]));

    let by_pool = app
        .post(
            "/api/flow_runs/count",
            json!({"work_pools": {"name": {"any_": ["local"]}}}),
        )
        .await;
    assert_eq!(by_pool.body, json!(5));
    let by_queue = app
        .post(
            "/api/flow_runs/count",
            json!({"work_pool_queues": {"name": {"any_": ["capped"]}}}),
        )
        .await;
    assert_eq!(by_queue.body, json!(2));
}

#[tokio::test]
async fn worker_metadata_is_served_for_pool_creation() {
    let app = TestApp::spawn().await;
    let res = app.get("/api/collections/views/aggregate-worker-metadata").await;
    assert_eq!(res.status, 200);
    let template = &res.body["prefect"]["process"]["default_base_job_configuration"];
    assert!(template["job_configuration"].is_object(), "{template}");
    assert_eq!(app.get("/api/collections/views/nope").await.status, 404);
}

/// Claims a run through its pool, as the Stratus agent does.
async fn claim(app: &TestApp, pool: &str, run: &Value) -> Value {
    let res = app
        .post(
            &format!("/api/work_pools/{pool}/message_queue/claim"),
            json!({"flow_run_id": run["id"]}),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.text);
    res.body
}

#[tokio::test]
async fn agent_claims_respect_pauses_and_concurrency_limits_exactly() {
    let app = TestApp::spawn().await;
    let p = pool(&app, "capped", json!({"concurrency_limit": 2})).await;
    let q = app
        .post(
            "/api/work_pools/capped/queues",
            json!({"name": "one", "concurrency_limit": 1}),
        )
        .await
        .body;

    // The queue's limit: one at a time.
    let q1 = scheduled_run(&app, &q["id"], -5).await;
    let q2 = scheduled_run(&app, &q["id"], -5).await;
    let won = claim(&app, "capped", &q1).await;
    assert_eq!(won["claimed"], true, "{won}");
    assert_eq!(won["state"]["type"], "PENDING");
    let held = claim(&app, "capped", &q2).await;
    assert_eq!(held["claimed"], false);
    assert_eq!(held["retry_after"], 5);
    assert!(held["reason"]
        .as_str()
        .unwrap()
        .contains("work queue already runs its concurrency limit (1)"));
    // Claiming the same run again loses, without a hold.
    let again = claim(&app, "capped", &q1).await;
    assert_eq!(again["claimed"], false);
    assert!(again.get("retry_after").is_none(), "{again}");

    // The pool's limit (2), under concurrent claims: exactly one more of five wins.
    let runs: Vec<Value> = scheduled_runs(&app, &p["default_queue_id"], 5).await;
    let answers = futures_util::future::join_all(runs.iter().map(|r| claim(&app, "capped", r))).await;
    let won: Vec<_> = answers.iter().filter(|a| a["claimed"] == true).collect();
    assert_eq!(won.len(), 1, "{answers:?}");
    assert!(answers
        .iter()
        .filter(|a| a["claimed"] == false)
        .all(|a| a["reason"]
            .as_str()
            .unwrap()
            .contains("work pool already runs its concurrency limit (2)")));

    // A finished run makes room again.
    let done = app
        .post(
            &format!("/api/flow_runs/{}/set_state", q1["id"].as_str().unwrap()),
            json!({"state": {"type": "CANCELLED"}, "force": true}),
        )
        .await;
    assert_eq!(done.status, 201, "{}", done.text);
    assert_eq!(claim(&app, "capped", &q2).await["claimed"], true);

    // Runs a stock worker's poll was handed out take room too, while their offer lasts.
    let shared = pool(&app, "shared", json!({"concurrency_limit": 1})).await;
    let polled = scheduled_run(&app, &shared["default_queue_id"], -5).await;
    let claimed = scheduled_run(&app, &shared["default_queue_id"], -5).await;
    let handed = app
        .post(
            "/api/work_pools/shared/get_scheduled_flow_runs",
            json!({"limit": 1}),
        )
        .await;
    assert_eq!(handed.body[0]["flow_run"]["id"], polled["id"], "{}", handed.text);
    let held = claim(&app, "shared", &claimed).await;
    assert_eq!(held["claimed"], false, "{held}");
    assert!(held["reason"]
        .as_str()
        .unwrap()
        .contains("work pool already runs its concurrency limit (1)"));
    // The offered run itself may still be claimed: it does not count against itself.
    assert_eq!(claim(&app, "shared", &polled).await["claimed"], true);

    // Paused: held back, whatever the room.
    let free = pool(&app, "free", json!({})).await;
    let r = scheduled_run(&app, &free["default_queue_id"], -5).await;
    app.patch("/api/work_pools/free", json!({"is_paused": true}))
        .await;
    let held = claim(&app, "free", &r).await;
    assert_eq!(
        (held["claimed"].clone(), held["reason"].clone()),
        (json!(false), json!("the work pool is paused"))
    );
    app.patch("/api/work_pools/free", json!({"is_paused": false}))
        .await;
    // Another pool's run is not this pool's to claim; an unknown pool is a 404.
    let other = claim(&app, "capped", &r).await;
    assert_eq!(other["claimed"], false);
    assert!(other.get("retry_after").is_none());
    assert_eq!(claim(&app, "free", &r).await["claimed"], true);
    // A flow retrying in the process that ran it is that process's: never claimed.
    let retrying = scheduled_run(&app, &free["default_queue_id"], -5).await;
    let id: uuid::Uuid = retrying["id"].as_str().unwrap().parse().unwrap();
    app.db()
        .await
        .execute(
            "UPDATE flow_run SET empirical_policy = empirical_policy || '{\"retry_type\": \"in_process\"}' WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    let own = claim(&app, "free", &retrying).await;
    assert_eq!(own["claimed"], false);
    assert!(
        own["reason"]
            .as_str()
            .unwrap()
            .contains("retrying in the process"),
        "{own}"
    );
    assert!(own.get("retry_after").is_none(), "{own}");
    let missing = app
        .post(
            "/api/work_pools/nope/message_queue/claim",
            json!({"flow_run_id": r["id"]}),
        )
        .await;
    assert_eq!(missing.status, 404);
}

/// Workers polling at once each get runs no other poll got; a run whose state changed
/// since it was handed out (say it was rescheduled) is handed out again at once.
#[tokio::test]
async fn concurrent_polls_never_hand_out_a_run_twice() {
    let app = TestApp::spawn().await;
    let p = pool(&app, "busy", json!({})).await;
    let runs = scheduled_runs(&app, &p["default_queue_id"], 40).await;
    let poll = || {
        app.post(
            "/api/work_pools/busy/get_scheduled_flow_runs",
            json!({"scheduled_before": Utc::now().to_rfc3339(), "limit": 10}),
        )
    };
    let answers = futures_util::future::join_all((0..8).map(|_| poll())).await;
    let mut handed: Vec<String> = answers
        .iter()
        .flat_map(|a| {
            assert_eq!(a.status, 200, "{}", a.text);
            a.body.as_array().unwrap().clone()
        })
        .map(|r| r["flow_run"]["id"].as_str().unwrap().to_string())
        .collect();
    let all = handed.len();
    handed.sort();
    handed.dedup();
    assert_eq!(handed.len(), all, "a run was handed out twice");
    assert_eq!(all, 40, "every due run was handed out once");
    assert_eq!(poll().await.body, json!([]));

    let again = &runs[0]["id"];
    let at = (Utc::now() - Duration::seconds(1)).to_rfc3339();
    let res = app
        .post(
            &format!("/api/flow_runs/{}/set_state", again.as_str().unwrap()),
            json!({"state": {"type": "SCHEDULED", "state_details": {"scheduled_time": at}}, "force": true}),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.text);
    let cleared: Option<chrono::DateTime<Utc>> = app
        .db()
        .await
        .query_one(
            "SELECT offered_until FROM flow_run WHERE id = $1",
            &[&again.as_str().unwrap().parse::<uuid::Uuid>().unwrap()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(cleared, None, "the new state ended the offer");
    let got = poll().await.body;
    assert_eq!(got.as_array().unwrap().len(), 1, "{got}");
    assert_eq!(&got[0]["flow_run"]["id"], again);
    // A Late mark (the scheduler's, while the worker proposes Pending) does not end the
    // offer: the run stays with the worker it was handed to.
    let res = app
        .post(
            &format!("/api/flow_runs/{}/set_state", again.as_str().unwrap()),
            json!({"state": {"type": "SCHEDULED", "name": "Late", "state_details": {"scheduled_time": at}},
                   "force": true}),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.text);
    let got = poll().await.body;
    assert!(
        got.as_array()
            .unwrap()
            .iter()
            .all(|r| &r["flow_run"]["id"] != again),
        "{got}"
    );
}

/// Runs handed out and not yet Pending take their queue's and pool's room while their
/// offer lasts: polls one after another, or at once, never hand out more than the limits.
#[tokio::test]
async fn runs_handed_out_count_against_concurrency_limits() {
    let app = TestApp::spawn().await;
    let p = pool(&app, "limited", json!({"concurrency_limit": 3})).await;
    let q = app
        .post(
            "/api/work_pools/limited/queues",
            json!({"name": "two", "concurrency_limit": 2}),
        )
        .await
        .body;
    scheduled_runs(&app, &q["id"], 5).await;
    scheduled_runs(&app, &p["default_queue_id"], 5).await;
    let poll = |queue: &'static str| {
        app.post(
            "/api/work_pools/limited/get_scheduled_flow_runs",
            json!({"work_queue_names": [queue], "scheduled_before": Utc::now().to_rfc3339()}),
        )
    };
    let answers = futures_util::future::join_all([poll("two"), poll("two"), poll("two")]).await;
    let from_two: usize = answers.iter().map(|a| a.body.as_array().unwrap().len()).sum();
    assert_eq!(from_two, 2, "the queue's limit");
    let answers = futures_util::future::join_all([poll("default"), poll("default")]).await;
    let from_default: usize = answers.iter().map(|a| a.body.as_array().unwrap().len()).sum();
    assert_eq!(from_default, 1, "what the pool's limit leaves");
    assert_eq!(poll("default").await.body, json!([]));
}

async fn scheduled_runs(app: &TestApp, queue_id: &Value, n: usize) -> Vec<Value> {
    let mut runs = Vec::new();
    for _ in 0..n {
        runs.push(scheduled_run(app, queue_id, -5).await);
    }
    runs
}

/// PATCH bodies are applied as Prefect's `exclude_unset`: an explicit null clears a nullable
/// field, an absent key leaves it; a reserved pool refuses any change but pause and limit,
/// null or not, before it is looked up.
#[tokio::test]
async fn explicit_nulls_clear_nullable_pool_and_queue_fields() {
    let app = TestApp::spawn().await;
    pool(&app, "local", json!({"description": "kept"})).await;
    app.patch("/api/work_pools/local", json!({"is_paused": true}))
        .await;
    assert_eq!(app.get("/api/work_pools/local").await.body["description"], "kept");
    let res = app
        .patch("/api/work_pools/local", json!({"description": null}))
        .await;
    assert_eq!(res.status, 204, "{}", res.text);
    assert_eq!(
        app.get("/api/work_pools/local").await.body["description"],
        Value::Null
    );
    for name in ["prefect-managed", "Prefect-missing"] {
        let res = app
            .patch(&format!("/api/work_pools/{name}"), json!({"description": null}))
            .await;
        assert_eq!(res.status, 403, "{name}: {}", res.text);
    }

    let queue = "/api/work_pools/local/queues/default";
    let polled = "2026-01-02T03:04:05+00:00";
    let res = app.patch(queue, json!({"last_polled": polled})).await;
    assert_eq!(res.status, 204, "{}", res.text);
    assert_eq!(
        app.get(queue).await.body["last_polled"],
        "2026-01-02T03:04:05.000000+00:00"
    );
    app.patch(queue, json!({"description": "d"})).await;
    assert!(app.get(queue).await.body["last_polled"].is_string());
    app.patch(queue, json!({"last_polled": null})).await;
    assert_eq!(app.get(queue).await.body["last_polled"], Value::Null);
}
