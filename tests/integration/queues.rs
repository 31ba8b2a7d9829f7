//! Queue-backed work pools against real Postgres (and LocalStack's SQS when the test
//! command started it): the queue semantics of both implementations, the outbox written
//! with every due run, publishing after commit, and the sweep that recovers a publish that
//! never happened.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{localstack, TestApp};
use serde_json::{json, Value};
use stratus_store::config::AwsEndpoint;
use stratus_store::queue::postgres::PgQueue;
use stratus_store::queue::MessageQueue;
use stratus_store::scheduler::{self, Limits};
use uuid::Uuid;

async fn sqs(endpoint: &str, prefix: &str) -> Arc<dyn MessageQueue> {
    let config = stratus_aws::sdk_config(&AwsEndpoint::Url(endpoint.to_string())).await;
    Arc::new(stratus_aws::sqs::SqsQueue::new(&config, prefix))
}

fn prefix() -> String {
    format!("test-{}-", &Uuid::new_v4().simple().to_string()[..8])
}

/// What both implementations must do, on a queue of their own.
async fn has_sqs_semantics(q: &dyn MessageQueue) {
    let pool = Uuid::new_v4();
    q.ensure(pool).await.unwrap();
    q.send(pool, &json!({"n": 1}), 0).await.unwrap();
    q.send(pool, &json!({"n": 2}), 2).await.unwrap();

    let got = q.receive(pool, 10, 0, 1).await.unwrap();
    assert_eq!(got.len(), 1, "the delayed message is not visible yet: {got:?}");
    assert_eq!(got[0].body, json!({"n": 1}));
    assert_eq!(got[0].receive_count, 1);
    // Hidden for its visibility timeout, then back (at-least-once), with a new receipt.
    assert!(q
        .receive(pool, 10, 0, 1)
        .await
        .unwrap()
        .iter()
        .all(|m| m.body != json!({"n": 1})));
    let start = Instant::now();
    let mut again = Vec::new();
    while again.is_empty() && start.elapsed() < Duration::from_secs(10) {
        again = q
            .receive(pool, 10, 1, 30)
            .await
            .unwrap()
            .into_iter()
            .filter(|m| m.body == json!({"n": 1}))
            .collect();
    }
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].receive_count, 2);
    assert_ne!(again[0].receipt, got[0].receipt);
    q.delete(pool, &again[0].receipt).await.unwrap();

    // The delayed one arrives within its delay (long poll).
    let start = Instant::now();
    let mut delayed = Vec::new();
    while delayed.is_empty() && start.elapsed() < Duration::from_secs(10) {
        delayed = q.receive(pool, 10, 5, 30).await.unwrap();
    }
    assert_eq!(delayed.len(), 1);
    assert_eq!(delayed[0].body, json!({"n": 2}));
    // Released: visible again at once.
    q.release(pool, &delayed[0].receipt, 0).await.unwrap();
    let back = q.receive(pool, 10, 2, 30).await.unwrap();
    assert_eq!(back.len(), 1);
    q.delete(pool, &back[0].receipt).await.unwrap();
    assert!(q.receive(pool, 10, 0, 30).await.unwrap().is_empty());

    // Concurrent receivers never get the same message.
    for n in 0..10 {
        q.send(pool, &json!({"n": n}), 0).await.unwrap();
    }
    let mut seen = Vec::new();
    let start = Instant::now();
    while seen.len() < 10 && start.elapsed() < Duration::from_secs(15) {
        let (a, b) = tokio::join!(q.receive(pool, 10, 1, 60), q.receive(pool, 10, 1, 60));
        for m in a.unwrap().into_iter().chain(b.unwrap()) {
            seen.push(m.body["n"].as_i64().unwrap());
            q.delete(pool, &m.receipt).await.unwrap();
        }
    }
    seen.sort();
    assert_eq!(seen, (0..10).collect::<Vec<_>>());
    q.remove(pool).await.unwrap();
}

#[tokio::test]
async fn the_postgres_queue_has_sqs_semantics() {
    let app = TestApp::spawn().await;
    // A pool's queue, as a request of the default workspace sees it.
    stratus_store::tenancy::within(
        stratus_store::db::access::DEFAULT_WORKSPACE_ID,
        has_sqs_semantics(&PgQueue::new(app.state.db.clone())),
    )
    .await;
}

#[tokio::test]
async fn the_sqs_queue_has_sqs_semantics() {
    let Some(endpoint) = localstack() else { return };
    has_sqs_semantics(sqs(&endpoint, &prefix()).await.as_ref()).await;
}

/// A pool with a deployment; returns the deployment.
async fn deployment(app: &TestApp, pool: &str) -> Value {
    let res = app
        .post("/api/work_pools/", json!({"name": pool, "type": "process"}))
        .await;
    assert_eq!(res.status, 201, "{}", res.text);
    let flow = app.post("/api/flows/", json!({"name": "queued"})).await.body;
    let res = app
        .post(
            "/api/deployments/",
            json!({"name": "d", "flow_id": flow["id"], "work_pool_name": pool}),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.text);
    res.body
}

async fn receive_run(app: &TestApp, pool: &str, wait: u32) -> Vec<Value> {
    let res = app
        .post(
            &format!("/api/work_pools/{pool}/message_queue/receive"),
            json!({"wait_seconds": wait, "visibility_timeout": 60}),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.text);
    res.body.as_array().unwrap().clone()
}

async fn outbox_rows(app: &TestApp, run_id: &str) -> Vec<(bool, i32, Option<String>)> {
    let id: Uuid = run_id.parse().unwrap();
    app.db()
        .await
        .query(
            "SELECT published IS NOT NULL, attempts, last_error FROM outbox WHERE flow_run_id = $1 ORDER BY id",
            &[&id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

#[tokio::test]
async fn an_ad_hoc_run_reaches_its_pools_queue_when_created() {
    let app = TestApp::spawn().await;
    let d = deployment(&app, "adhoc").await;
    let run = app
        .post(
            &format!("/api/deployments/{}/create_flow_run", d["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    assert_eq!(run.status, 201, "{}", run.text);
    assert_eq!(
        outbox_rows(&app, run.body["id"].as_str().unwrap()).await,
        vec![(true, 1, None)]
    );

    let info = app.get("/api/work_pools/adhoc/message_queue").await;
    assert_eq!(info.body, json!({"backend": "postgres"}));
    let got = receive_run(&app, "adhoc", 0).await;
    assert_eq!(got.len(), 1, "{got:?}");
    let body = &got[0]["body"];
    assert_eq!(body["flow_run_id"], run.body["id"]);
    assert_eq!(body["work_queue_name"], "default");
    assert_eq!(
        body["work_pool_id"],
        app.get("/api/work_pools/adhoc").await.body["id"]
    );
    let res = app
        .post(
            "/api/work_pools/adhoc/message_queue/delete",
            json!({"receipt": got[0]["receipt"]}),
        )
        .await;
    assert_eq!(res.status, 204, "{}", res.text);
    assert!(receive_run(&app, "adhoc", 0).await.is_empty());

    // Bad requests get Prefect-style errors.
    let res = app
        .post(
            "/api/work_pools/adhoc/message_queue/receive",
            json!({"max_messages": 11}),
        )
        .await;
    assert_eq!(res.status, 422);
    let res = app
        .post("/api/work_pools/adhoc/message_queue/receive", json!({"wait": 1}))
        .await;
    assert_eq!(res.status, 422);
    assert_eq!(app.get("/api/work_pools/nope/message_queue").await.status, 404);
}

#[tokio::test]
async fn runs_due_later_wait_in_the_outbox_and_retries_are_published_again() {
    let app = TestApp::spawn().await;
    let d = deployment(&app, "later").await;
    let in_an_hour = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let run = app
        .post(
            &format!("/api/deployments/{}/create_flow_run", d["id"].as_str().unwrap()),
            json!({"state": {"type": "SCHEDULED", "state_details": {"scheduled_time": in_an_hour}},
                   "empirical_policy": {"retries": 1, "retry_delay": 0}}),
        )
        .await;
    let id = run.body["id"].as_str().unwrap().to_string();
    assert_eq!(
        outbox_rows(&app, &id).await,
        vec![(false, 0, None)],
        "too early for SQS's delay"
    );
    let limits = Limits::default();
    scheduler::tick(&app.state.runs(), &limits, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(outbox_rows(&app, &id).await, vec![(false, 0, None)]);

    // Rescheduled to now: the old message is replaced, and goes out at once.
    let now = chrono::Utc::now().to_rfc3339();
    let res = app
        .post(
            &format!("/api/flow_runs/{id}/set_state"),
            json!({"state": {"type": "SCHEDULED", "state_details": {"scheduled_time": now}}, "force": true}),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.text);
    assert_eq!(outbox_rows(&app, &id).await, vec![(true, 1, None)]);
    assert_eq!(receive_run(&app, "later", 0).await.len(), 1);

    // A failure with retries left goes back to AwaitingRetry, retried by the engine in the
    // process that ran it: nothing is published (another agent would run it twice).
    for state in ["PENDING", "RUNNING", "FAILED"] {
        let res = app
            .post(
                &format!("/api/flow_runs/{id}/set_state"),
                json!({"state": {"type": state}}),
            )
            .await;
        assert!(res.status.is_success(), "{}", res.text);
    }
    let run = app.get(&format!("/api/flow_runs/{id}")).await.body;
    assert_eq!(run["state"]["name"], "AwaitingRetry");
    assert_eq!(run["empirical_policy"]["retry_type"], "in_process");
    assert_eq!(outbox_rows(&app, &id).await, vec![(true, 1, None)]);
    assert!(receive_run(&app, "later", 0).await.is_empty());

    // It fails for good; retried from the UI (a forced AwaitingRetry), it is the workers'
    // again: due again, published again.
    for state in ["RUNNING", "FAILED"] {
        let res = app
            .post(
                &format!("/api/flow_runs/{id}/set_state"),
                json!({"state": {"type": state}}),
            )
            .await;
        assert!(res.status.is_success(), "{}", res.text);
    }
    let res = app
        .post(
            &format!("/api/flow_runs/{id}/set_state"),
            json!({"state": {"type": "SCHEDULED", "name": "AwaitingRetry"}, "force": true}),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.text);
    let run = app.get(&format!("/api/flow_runs/{id}")).await.body;
    assert_eq!(run["empirical_policy"]["retry_type"], Value::Null);
    assert_eq!(
        outbox_rows(&app, &id).await,
        vec![(true, 1, None), (true, 1, None)]
    );
    let got = receive_run(&app, "later", 2).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["body"]["flow_run_id"], json!(id));
}

#[tokio::test]
async fn a_publish_that_fails_after_commit_is_delivered_by_the_next_tick() {
    let app = TestApp::spawn().await;
    let d = deployment(&app, "flaky").await;
    // The publisher's queue is unreachable (nothing listens on the discard port): the run
    // is committed, the message stays in the outbox.
    let broken = app.with_queue(sqs("http://127.0.0.1:9", "never-").await);
    let run = broken
        .post(
            &format!("/api/deployments/{}/create_flow_run", d["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    assert_eq!(
        run.status, 201,
        "creating the run must not depend on the queue: {}",
        run.text
    );
    let id = run.body["id"].as_str().unwrap().to_string();
    let rows = outbox_rows(&app, &id).await;
    assert_eq!(rows.len(), 1);
    assert!(!rows[0].0 && rows[0].1 == 1 && rows[0].2.is_some(), "{rows:?}");

    // The scheduler's tick, with a working queue, sends it.
    let report = scheduler::tick(&app.state.runs(), &Limits::default(), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!((report.published, report.publish_failed), (1, 0));
    assert!(outbox_rows(&app, &id).await[0].0);
    let got = receive_run(&app, "flaky", 0).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["body"]["flow_run_id"], json!(id));

    // The same through SQS itself, when LocalStack runs.
    let Some(endpoint) = localstack() else { return };
    let sqs_app = app.with_queue(sqs(&endpoint, &prefix()).await);
    let run = broken
        .post(
            &format!("/api/deployments/{}/create_flow_run", d["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    let id = run.body["id"].as_str().unwrap().to_string();
    assert!(!outbox_rows(&app, &id).await[0].0);
    let report = scheduler::tick(&sqs_app.state.runs(), &Limits::default(), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(report.published, 1);
    let info = sqs_app.get("/api/work_pools/flaky/message_queue").await.body;
    assert_eq!(info["backend"], "sqs");
    let got = receive_run(&sqs_app, "flaky", 2).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["body"]["flow_run_id"], json!(id));
}

#[tokio::test]
async fn sqs_queues_come_and_go_with_their_pools() {
    let Some(endpoint) = localstack() else { return };
    let app = TestApp::spawn().await;
    let prefix = prefix();
    let app = app.with_queue(sqs(&endpoint, &prefix).await);
    let res = app
        .post("/api/work_pools/", json!({"name": "sqs-pool", "type": "process"}))
        .await;
    assert_eq!(res.status, 201, "{}", res.text);
    let pool_id = res.body["id"].as_str().unwrap().to_string();
    let config = stratus_aws::sdk_config(&AwsEndpoint::Url(endpoint.clone())).await;
    let client = aws_sdk_sqs::Client::new(&config);
    let url = client
        .get_queue_url()
        .queue_name(format!("{prefix}{pool_id}"))
        .send()
        .await
        .expect("the pool's queue exists once the pool does")
        .queue_url
        .unwrap();
    let info = app.get("/api/work_pools/sqs-pool/message_queue").await.body;
    assert_eq!(info["queue_url"], json!(url));
    assert_eq!(app.delete("/api/work_pools/sqs-pool").await.status, 204);
    assert!(client
        .get_queue_url()
        .queue_name(format!("{prefix}{pool_id}"))
        .send()
        .await
        .is_err());
}
