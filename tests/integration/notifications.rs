//! Flow run notifications against real Postgres: the policy routes, and state changes that
//! reach a real HTTP webhook through the notifications queue and the notifier, exactly
//! once, with retries for failures that may pass.

use crate::common;

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use common::TestApp;
use serde_json::{json, Value};
use stratus_notifier::deliver::{self, Delivery};
use stratus_store::queue::NOTIFICATIONS_QUEUE;

/// What a webhook received.
#[derive(Debug, Clone)]
struct Hit {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: String,
}

/// A real HTTP server on a free port that records what it gets and answers `status`.
#[derive(Clone)]
struct Webhook {
    url: String,
    hits: Arc<Mutex<Vec<Hit>>>,
    status: Arc<AtomicU16>,
}

impl Webhook {
    async fn start() -> Webhook {
        let hits: Arc<Mutex<Vec<Hit>>> = Arc::default();
        let status = Arc::new(AtomicU16::new(200));
        let (h, s) = (hits.clone(), status.clone());
        let app =
            axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let (h, s) = (h.clone(), s.clone());
                async move {
                    h.lock().unwrap().push(Hit {
                        method,
                        uri,
                        headers,
                        body: String::from_utf8_lossy(&body).into_owned(),
                    });
                    StatusCode::from_u16(s.load(Ordering::SeqCst)).unwrap()
                }
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Webhook { url, hits, status }
    }

    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }
}

/// A block document of a system block type.
async fn block(app: &TestApp, slug: &str, name: &str, data: Value) -> String {
    let block_type = app.get(&format!("/api/block_types/slug/{slug}")).await.body;
    let schemas = app
        .post(
            "/api/block_schemas/filter",
            json!({"block_schemas": {"block_type_id": {"any_": [block_type["id"]]}}}),
        )
        .await
        .body;
    let created = app
        .post(
            "/api/block_documents",
            json!({"name": name, "data": data, "block_type_id": block_type["id"], "block_schema_id": schemas[0]["id"]}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    created.body["id"].as_str().unwrap().to_string()
}

async fn setup() -> (TestApp, Webhook) {
    setup_with(|_| {}).await
}

/// [`setup`] with settings of its own.
async fn setup_with(configure: impl FnOnce(&mut stratus_store::config::Settings)) -> (TestApp, Webhook) {
    let app = TestApp::spawn_with(configure).await;
    let installed = app
        .post("/api/block_types/install_system_block_types", json!({}))
        .await;
    assert!(installed.status.is_success(), "{}", installed.text);
    (app, Webhook::start().await)
}

async fn flow_run(app: &TestApp, tags: Value) -> String {
    let flow = app.post("/api/flows", json!({"name": "nightly-etl"})).await.body;
    let run = app
        .post(
            "/api/flow_runs",
            json!({"flow_id": flow["id"], "name": "brave-otter", "tags": tags}),
        )
        .await;
    assert_eq!(run.status, StatusCode::CREATED, "{}", run.text);
    run.body["id"].as_str().unwrap().to_string()
}

async fn set_state(app: &TestApp, run: &str, state: &str) {
    let r = app
        .post(
            &format!("/api/flow_runs/{run}/set_state"),
            json!({"state": {"type": state, "message": format!("now {state}")}}),
        )
        .await;
    assert_eq!(r.body["status"], "ACCEPT", "{}", r.text);
}

/// Runs the notifier until the queue is empty.
async fn notify_all(app: &TestApp) -> usize {
    let http = deliver::http_client();
    let mut total = 0;
    loop {
        let n = deliver::receive_once(&app.state, &http, 0).await.unwrap();
        if n == 0 {
            return total;
        }
        total += n;
    }
}

async fn queued(app: &TestApp) -> i64 {
    let db = app.db().await;
    db.query_one("SELECT count(*) FROM flow_run_notification_queue", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn policies_are_created_read_updated_filtered_and_deleted() {
    let (app, hook) = setup().await;
    let block_id = block(&app, "slack-webhook", "alerts", json!({"url": hook.url})).await;

    let created = app
        .post(
            "/api/flow_run_notification_policies/",
            json!({"state_names": ["Failed"], "tags": [], "block_document_id": block_id}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let policy = created.body;
    assert_eq!(policy["is_active"], true);
    assert_eq!(policy["state_names"], json!(["Failed"]));
    assert_eq!(policy["message_template"], Value::Null);
    let id = policy["id"].as_str().unwrap();
    assert_eq!(
        app.get(&format!("/api/flow_run_notification_policies/{id}"))
            .await
            .body,
        policy
    );

    // Prefect's validation: the lists are required, the template uses known keys only.
    for (body, says) in [
        (json!({"tags": [], "block_document_id": block_id}), "state_names"),
        (
            json!({"state_names": [], "tags": [], "block_document_id": block_id, "message_template": "{flow_run_nme}"}),
            "Invalid template variable provided: 'flow_run_nme'",
        ),
        (
            json!({"state_names": [], "tags": [], "block_document_id": block_id, "extra": 1}),
            "extra",
        ),
    ] {
        let r = app.post("/api/flow_run_notification_policies/", body).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
        assert!(r.text.contains(says), "{}", r.text);
    }
    let r = app
        .post(
            "/api/flow_run_notification_policies/",
            json!({"state_names": [], "tags": [], "block_document_id": uuid::Uuid::new_v4()}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);

    let path = format!("/api/flow_run_notification_policies/{id}");
    let r = app
        .patch(
            &path,
            json!({"is_active": false, "message_template": "{flow_run_name} is {flow_run_state_name}"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    let read = app.get(&path).await.body;
    assert_eq!(read["is_active"], false);
    assert_eq!(
        read["state_names"],
        json!(["Failed"]),
        "fields not given are kept"
    );
    assert_eq!(
        read["message_template"],
        "{flow_run_name} is {flow_run_state_name}"
    );
    assert_eq!(
        app.patch(&path, json!({"message_template": "{oops}"}))
            .await
            .status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    app.patch(&path, json!({"message_template": null})).await;
    assert_eq!(app.get(&path).await.body["message_template"], Value::Null);

    let active = app
        .post(
            "/api/flow_run_notification_policies/",
            json!({"state_names": [], "tags": ["prod"], "block_document_id": block_id}),
        )
        .await
        .body;
    let only_active = app
        .post(
            "/api/flow_run_notification_policies/filter",
            json!({"flow_run_notification_policy_filter": {"is_active": {"eq_": true}}}),
        )
        .await
        .body;
    assert_eq!(only_active.as_array().unwrap().len(), 1);
    assert_eq!(only_active[0]["id"], active["id"]);
    assert_eq!(
        app.post("/api/flow_run_notification_policies/filter", json!({}))
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        2
    );

    assert_eq!(app.delete(&path).await.status, StatusCode::NO_CONTENT);
    assert_eq!(app.get(&path).await.status, StatusCode::NOT_FOUND);
    assert_eq!(app.delete(&path).await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        app.get("/api/flow_run_notification_policies/not-a-uuid")
            .await
            .status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
}

#[tokio::test]
async fn matching_state_changes_reach_the_webhooks_once() {
    let (app, hook) = setup().await;
    let custom = block(
        &app,
        "custom-webhook",
        "ops-hook",
        json!({
            "name": "ops",
            "url": format!("{}/hooks/{{{{token}}}}", hook.url),
            "method": "POST",
            "json_data": {"title": "{{subject}}", "text": "{{body}}"},
            "headers": {"Authorization": "Bearer {{token}}"},
            "timeout": 5,
            "secrets": {"token": "s3cret"}
        }),
    )
    .await;
    let slack = block(
        &app,
        "slack-webhook",
        "prod-alerts",
        json!({"url": format!("{}/slack", hook.url)}),
    )
    .await;
    let template = "{flow_name}/{flow_run_name} is {flow_run_state_name} ({flow_run_state_type}): {flow_run_state_message} {flow_run_url}";
    for body in [
        json!({"state_names": ["Failed"], "tags": [], "block_document_id": custom, "message_template": template}),
        json!({"state_names": [], "tags": ["prod"], "block_document_id": slack}),
        json!({"is_active": false, "state_names": [], "tags": [], "block_document_id": slack}),
    ] {
        assert_eq!(
            app.post("/api/flow_run_notification_policies/", body)
                .await
                .status,
            StatusCode::CREATED
        );
    }

    // A run without the tag: only its Failed state matches (the custom webhook's policy).
    let run = flow_run(&app, json!(["dev"])).await;
    set_state(&app, &run, "RUNNING").await;
    assert_eq!(notify_all(&app).await, 0);
    set_state(&app, &run, "FAILED").await;
    assert_eq!(notify_all(&app).await, 1);
    let hits = hook.hits();
    assert_eq!(hits.len(), 1, "{hits:?}");
    let hit = &hits[0];
    assert_eq!(hit.method, Method::POST);
    assert_eq!(hit.uri.path(), "/hooks/s3cret");
    assert_eq!(hit.headers["authorization"], "Bearer s3cret");
    assert_eq!(hit.headers["user-agent"], "Prefect Notifications");
    let sent: Value = serde_json::from_str(&hit.body).unwrap();
    assert_eq!(sent["title"], "Prefect flow run notification");
    let ui = app.state.settings.ui_url();
    assert_eq!(
        sent["text"],
        format!(
            "nightly-etl/brave-otter is Failed (StateType.FAILED): now FAILED {ui}/flow-runs/flow-run/{run}"
        )
    );
    // That link is Prefect's path of the run's page; the UI sends it on to its own.
    let link = app.get(&format!("/flow-runs/flow-run/{run}")).await;
    assert_eq!(link.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(link.headers["location"], format!("/flow-runs/{run}"));
    assert_eq!(queued(&app).await, 0, "a sent notification is deleted");

    // A run tagged prod: every state goes to Slack (Pending from its creation, Running,
    // Completed), with Prefect's default message.
    let run = flow_run(&app, json!(["prod"])).await;
    set_state(&app, &run, "RUNNING").await;
    set_state(&app, &run, "COMPLETED").await;
    assert_eq!(notify_all(&app).await, 3);
    let slack_hits: Vec<Hit> = hook
        .hits()
        .into_iter()
        .filter(|h| h.uri.path() == "/slack")
        .collect();
    assert_eq!(slack_hits.len(), 3);
    let texts: Vec<String> = slack_hits
        .iter()
        .map(|h| {
            serde_json::from_str::<Value>(&h.body).unwrap()["attachments"][0]["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert!(
        texts.iter().any(|t| t.contains("entered state `Running`")),
        "{texts:?}"
    );
    let first: Value = serde_json::from_str(&slack_hits[0].body).unwrap();
    assert_eq!(first["attachments"][0]["title"], "Prefect flow run notification");
    assert!(
        texts
            .iter()
            .any(|t| t.contains("entered state `Completed`") && t.contains(&format!("Flow run ID: {run}"))),
        "{texts:?}"
    );

    // A message delivered twice, and two notifiers at once: still one send.
    let run = flow_run(&app, json!([])).await;
    set_state(&app, &run, "FAILED").await;
    let db = app.db().await;
    let id: i64 = db
        .query_one("SELECT id FROM flow_run_notification_queue", &[])
        .await
        .unwrap()
        .get(0);
    let duplicate = json!({"notification_id": id});
    stratus_store::tenancy::within(
        stratus_store::db::access::DEFAULT_WORKSPACE_ID,
        app.state.queue.send(NOTIFICATIONS_QUEUE, &duplicate, 0),
    )
    .await
    .unwrap();
    let before = hook.hits().len();
    let http = deliver::http_client();
    let (a, b) = tokio::join!(
        deliver::receive_once(&app.state, &http, 0),
        deliver::receive_once(&app.state, &http, 0)
    );
    assert_eq!(a.unwrap() + b.unwrap(), 2, "both copies were received");
    notify_all(&app).await;
    assert_eq!(hook.hits().len(), before + 1, "the duplicate was not sent again");
}

#[tokio::test]
async fn failures_that_may_pass_are_retried_and_the_sweep_publishes_what_was_left() {
    let (app, hook) = setup().await;
    let slack = block(
        &app,
        "slack-webhook",
        "alerts",
        json!({"url": format!("{}/slack", hook.url)}),
    )
    .await;
    let policy = json!({"state_names": ["Crashed"], "tags": [], "block_document_id": slack});
    app.post("/api/flow_run_notification_policies/", policy).await;
    let run = flow_run(&app, json!([])).await;
    set_state(&app, &run, "RUNNING").await;
    set_state(&app, &run, "CRASHED").await;
    let db = app.db().await;
    let id: i64 = db
        .query_one("SELECT id FROM flow_run_notification_queue", &[])
        .await
        .unwrap()
        .get(0);
    let http = deliver::http_client();

    // The webhook is down: kept, with the error, until the last attempt.
    hook.status.store(503, Ordering::SeqCst);
    assert_eq!(deliver::deliver(&app.state, &http, id).await, Delivery::Retry);
    let row = db
        .query_one(
            "SELECT attempts, last_error FROM flow_run_notification_queue WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), 1);
    assert!(row.get::<_, String>(1).contains("503"));
    // Back up: sent and deleted.
    hook.status.store(200, Ordering::SeqCst);
    assert_eq!(deliver::deliver(&app.state, &http, id).await, Delivery::Done);
    assert_eq!(queued(&app).await, 0);
    assert_eq!(hook.hits().len(), 2);

    // Down for good: given up after the third send, and logged.
    let run = flow_run(&app, json!([])).await;
    set_state(&app, &run, "RUNNING").await;
    set_state(&app, &run, "CRASHED").await;
    let id: i64 = db
        .query_one("SELECT id FROM flow_run_notification_queue", &[])
        .await
        .unwrap()
        .get(0);
    hook.status.store(500, Ordering::SeqCst);
    let before = hook.hits().len();
    assert_eq!(deliver::deliver(&app.state, &http, id).await, Delivery::Retry);
    assert_eq!(deliver::deliver(&app.state, &http, id).await, Delivery::Retry);
    assert_eq!(deliver::deliver(&app.state, &http, id).await, Delivery::Done);
    assert_eq!(hook.hits().len(), before + 3);
    assert_eq!(queued(&app).await, 0);

    // A 4xx will not pass: given up at once.
    let run = flow_run(&app, json!([])).await;
    set_state(&app, &run, "RUNNING").await;
    set_state(&app, &run, "CRASHED").await;
    hook.status.store(404, Ordering::SeqCst);
    let id: i64 = db
        .query_one("SELECT id FROM flow_run_notification_queue", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(deliver::deliver(&app.state, &http, id).await, Delivery::Done);
    assert_eq!(queued(&app).await, 0);
    hook.status.store(200, Ordering::SeqCst);
    notify_all(&app).await;

    // Publishing after the commit never happened (the process died), or its message was
    // lost long ago: the scheduler's sweep publishes both, and they are sent. One
    // published a moment ago is left alone (its message is on its way).
    let tick = || async {
        stratus_store::scheduler::tick(
            &app.state.runs(),
            &stratus_store::scheduler::Limits::default(),
            std::time::Duration::from_secs(5),
        )
        .await
        .unwrap()
    };
    for (published, swept) in [("NULL", 1), ("now() - interval '11 minutes'", 1), ("now()", 0)] {
        let run = flow_run(&app, json!([])).await;
        set_state(&app, &run, "RUNNING").await;
        set_state(&app, &run, "CRASHED").await;
        db.execute(
            &format!("UPDATE flow_run_notification_queue SET published = {published}"),
            &[],
        )
        .await
        .unwrap();
        db.execute("DELETE FROM queue_message", &[]).await.unwrap();
        assert_eq!(
            tick().await.notifications_published,
            swept,
            "published = {published}"
        );
        let before = hook.hits().len();
        assert_eq!(notify_all(&app).await, swept);
        assert_eq!(hook.hits().len(), before + swept);
        db.execute("DELETE FROM flow_run_notification_queue", &[])
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_custom_webhook_can_send_form_data() {
    let (app, hook) = setup().await;
    let custom = block(
        &app,
        "custom-webhook",
        "form-hook",
        json!({"name": "form", "url": format!("{}/form", hook.url), "form_data": {"msg": "{{body}}", "to": "a b&c"}}),
    )
    .await;
    let policy = json!({"state_names": ["Failed"], "tags": [], "block_document_id": custom,
                        "message_template": "{flow_run_name} failed: 100% & more"});
    assert_eq!(
        app.post("/api/flow_run_notification_policies/", policy)
            .await
            .status,
        StatusCode::CREATED
    );
    let run = flow_run(&app, json!([])).await;
    set_state(&app, &run, "FAILED").await;
    assert_eq!(notify_all(&app).await, 1);
    let hits = hook.hits();
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(
        hits[0].headers["content-type"],
        "application/x-www-form-urlencoded"
    );
    let fields: Vec<(String, String)> = url::form_urlencoded::parse(hits[0].body.as_bytes())
        .into_owned()
        .collect();
    let run_name = app.get(&format!("/api/flow_runs/{run}")).await.body["name"].clone();
    assert!(fields.contains(&("to".into(), "a b&c".into())), "{fields:?}");
    assert!(
        fields.contains(&(
            "msg".into(),
            format!("{} failed: 100% & more", run_name.as_str().unwrap())
        )),
        "{fields:?}"
    );
}

#[tokio::test]
async fn with_private_urls_denied_no_notification_reaches_a_private_address() {
    // As a server that requires keys is by default (STRATUS_NOTIFICATIONS_PRIVATE_URLS).
    let (app, hook) = setup_with(|s| s.notifications_private_urls = false).await;
    // The block says private URLs are fine; the server's setting overrules it.
    let slack = block(
        &app,
        "slack-webhook",
        "alerts",
        json!({"url": format!("{}/slack", hook.url), "allow_private_urls": true}),
    )
    .await;
    let policy = json!({"state_names": ["Crashed"], "tags": [], "block_document_id": slack});
    app.post("/api/flow_run_notification_policies/", policy).await;
    let run = flow_run(&app, json!([])).await;
    set_state(&app, &run, "RUNNING").await;
    set_state(&app, &run, "CRASHED").await;
    let id: i64 = app
        .db()
        .await
        .query_one("SELECT id FROM flow_run_notification_queue", &[])
        .await
        .unwrap()
        .get(0);
    let http = deliver::http_client();
    assert_eq!(
        deliver::deliver(&app.state, &http, id).await,
        Delivery::Done,
        "refused for good"
    );
    assert!(hook.hits().is_empty(), "the loopback webhook was never reached");
}

#[tokio::test]
async fn a_workspace_cannot_send_through_another_workspaces_block() {
    let (app, hook) = setup().await;
    let theirs = block(
        &app,
        "slack-webhook",
        "their-alerts",
        json!({"url": format!("{}/slack", hook.url)}),
    )
    .await;
    let client = app.system_client().await;
    let account = stratus_store::db::access::create_account(&client, "other")
        .await
        .unwrap()
        .unwrap();
    let other = stratus_store::db::access::create_workspace(&client, account, "ws")
        .await
        .unwrap()
        .unwrap();
    drop(client);
    let base = other.api_path();
    // A policy naming the default workspace's block (its id leaked, say) is refused as one
    // naming no block at all.
    let policies = format!("{base}/flow_run_notification_policies/");
    let policy = |block: Value| {
        app.post(
            &policies,
            json!({"state_names": [], "tags": [], "block_document_id": block}),
        )
    };
    let refused = policy(json!(theirs)).await;
    let missing = policy(json!(uuid::Uuid::new_v4())).await;
    assert!(!refused.status.is_success(), "{}", refused.text);
    assert_eq!(
        refused.status, missing.status,
        "{} / {}",
        refused.text, missing.text
    );
    assert_eq!(hook.hits().len(), 0, "the other workspace's webhook was used");
}
