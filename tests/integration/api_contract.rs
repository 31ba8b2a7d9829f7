//! Answers keep to the API's document: a working day of Prefect traffic (flows, runs, task
//! runs, logs, deployments, pools, queues, blocks, limits, variables, artifacts, policies,
//! saved searches) goes through the app, and every answer's status must be one the
//! document lists for its operation, and its body must validate against the schema
//! documented for that status. Every operation whose answer the document describes must
//! be answered successfully at least once here, so that a new route cannot go untested.

use std::collections::BTreeSet;

use crate::common;

use common::TestApp;
use http::Method;
use serde_json::{json, Value};

/// The app with the document's eye on every answer.
struct Checked {
    app: TestApp,
    doc: Value,
    /// `GET /flows/{id}`: operations answered with a 2xx.
    answered: BTreeSet<String>,
    violations: Vec<String>,
}

/// The documented path `concrete` is an instance of; a literal segment beats a parameter
/// (`/flows/count` is not `/flows/{id}`).
fn template_of<'a>(doc: &'a Value, method: &str, concrete: &str) -> Option<&'a str> {
    let parts: Vec<&str> = concrete.split('/').collect();
    let paths = doc["paths"].as_object()?;
    paths
        .iter()
        .filter(|(_, ops)| ops.get(method).is_some())
        .map(|(template, _)| template.as_str())
        .filter_map(|template| {
            let segments: Vec<&str> = template.split('/').collect();
            if segments.len() != parts.len() {
                return None;
            }
            let mut literal = 0;
            for (s, p) in segments.iter().zip(&parts) {
                if s.starts_with('{') {
                    continue;
                }
                if s != p {
                    return None;
                }
                literal += 1;
            }
            Some((literal, template))
        })
        .max_by_key(|(literal, _)| *literal)
        .map(|(_, template)| template)
}

impl Checked {
    async fn new() -> Self {
        Checked {
            app: TestApp::spawn().await,
            doc: stratus::openapi(),
            answered: BTreeSet::new(),
            violations: Vec::new(),
        }
    }

    /// Sends the request (`path` relative to `/api`, with its query) and checks the answer.
    async fn call(&mut self, method: Method, path: &str, body: Option<Value>) -> Value {
        let res = self
            .app
            .request(method.clone(), &format!("/api{path}"), body)
            .await;
        let bare = path.split('?').next().unwrap_or(path);
        let verb = method.as_str().to_ascii_lowercase();
        let Some(template) = template_of(&self.doc, &verb, bare) else {
            self.violations
                .push(format!("{method} {path}: no documented operation"));
            return res.body;
        };
        let op = format!("{method} {template}");
        let code = res.status.as_str().to_string();
        let documented = &self.doc["paths"][template][&verb]["responses"][&code];
        if documented.is_null() {
            self.violations.push(format!(
                "{op}: answered {code}, which is not documented: {}",
                res.text
            ));
            return res.body;
        }
        if res.status.is_success() {
            self.answered.insert(op.clone());
        }
        let documented = match documented.get("$ref").and_then(Value::as_str) {
            Some(r) => &self.doc["components"]["responses"][r.rsplit('/').next().unwrap_or_default()],
            None => documented,
        };
        if let Some(schema) = documented["content"]["application/json"].get("schema") {
            // The schema's `$ref`s point into the document, so it is checked as part of it.
            let mut rooted = schema.clone();
            if let Some(map) = rooted.as_object_mut() {
                map.insert("components".into(), self.doc["components"].clone());
            }
            let validator = jsonschema::draft202012::new(&rooted).unwrap();
            let errors: Vec<String> = validator
                .iter_errors(&res.body)
                .map(|e| format!("{} at {}", e, e.instance_path()))
                .take(5)
                .collect();
            if !errors.is_empty() {
                self.violations.push(format!(
                    "{op} {code}: {}\n  body: {:.600}",
                    errors.join("; "),
                    res.text
                ));
            }
        }
        res.body
    }

    async fn get(&mut self, path: &str) -> Value {
        self.call(Method::GET, path, None).await
    }
    async fn post(&mut self, path: &str, body: Value) -> Value {
        self.call(Method::POST, path, Some(body)).await
    }
    async fn put(&mut self, path: &str, body: Value) -> Value {
        self.call(Method::PUT, path, Some(body)).await
    }
    async fn patch(&mut self, path: &str, body: Value) -> Value {
        self.call(Method::PATCH, path, Some(body)).await
    }
    async fn delete(&mut self, path: &str) -> Value {
        self.call(Method::DELETE, path, None).await
    }
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn answers_keep_to_the_documented_statuses_and_schemas() {
    let mut c = Checked::new().await;
    let now = chrono::Utc::now();
    let hour_ago = (now - chrono::Duration::hours(1)).to_rfc3339();
    let in_an_hour = (now + chrono::Duration::hours(1)).to_rfc3339();

    for path in [
        "/health",
        "/version",
        "/hello",
        "/admin/version",
        "/admin/settings",
        "/ready",
    ] {
        c.get(path).await;
    }

    // Flows, flow runs and their states.
    let flow = c.post("/flows", json!({"name": "etl", "tags": ["a"]})).await;
    let flow_id = id(&flow);
    c.post("/flows", json!({"name": "etl"})).await;
    c.post("/flows/filter", json!({})).await;
    c.post("/flows/count", json!({})).await;
    c.get("/flows/name/etl").await;
    c.get(&format!("/flows/{flow_id}")).await;
    c.patch(&format!("/flows/{flow_id}"), json!({"tags": ["b"]}))
        .await;
    let run = c
        .post(
            "/flow_runs",
            json!({"flow_id": flow_id, "name": "r1", "parameters": {"x": 1}, "state": {"type": "PENDING"}}),
        )
        .await;
    let run_id = id(&run);
    c.post(
        &format!("/flow_runs/{run_id}/set_state"),
        json!({"state": {"type": "RUNNING"}}),
    )
    .await;
    c.patch(&format!("/flow_runs/{run_id}"), json!({"name": "renamed"}))
        .await;
    c.get(&format!("/flow_runs/{run_id}")).await;
    c.post("/flow_runs/filter", json!({"sort": "START_TIME_DESC"}))
        .await;
    c.post("/flow_runs/count", json!({})).await;
    c.post("/flow_runs/lateness", json!({})).await;
    let window =
        json!({"history_start": hour_ago, "history_end": in_an_hour, "history_interval_seconds": 600});
    c.post("/flow_runs/history", window.clone()).await;
    c.get(&format!("/flow_runs/{run_id}/graph")).await;
    c.get(&format!("/flow_runs/{run_id}/graph-v2")).await;
    c.post(&format!("/flow_runs/{run_id}/resume"), json!({})).await;
    c.post(
        &format!("/flow_runs/{run_id}/input"),
        json!({"key": "k", "value": "\"v\""}),
    )
    .await;
    c.post(
        &format!("/flow_runs/{run_id}/input/filter"),
        json!({"prefix": "k"}),
    )
    .await;
    c.get(&format!("/flow_runs/{run_id}/input/k")).await;
    c.delete(&format!("/flow_runs/{run_id}/input/k")).await;
    let states = c.get(&format!("/flow_run_states?flow_run_id={run_id}")).await;
    c.get(&format!("/flow_run_states/{}", id(&states[0]))).await;

    // Task runs and logs.
    let task = c
        .post(
            "/task_runs",
            json!({"flow_run_id": run_id, "task_key": "t", "dynamic_key": "0", "name": "t-0"}),
        )
        .await;
    let task_id = id(&task);
    c.post(
        &format!("/task_runs/{task_id}/set_state"),
        json!({"state": {"type": "RUNNING"}}),
    )
    .await;
    c.post(
        &format!("/task_runs/{task_id}/set_state"),
        json!({"state": {"type": "COMPLETED"}}),
    )
    .await;
    c.patch(&format!("/task_runs/{task_id}"), json!({"name": "t-renamed"}))
        .await;
    c.get(&format!("/task_runs/{task_id}")).await;
    c.post("/task_runs/filter", json!({})).await;
    c.post("/task_runs/count", json!({})).await;
    c.post("/task_runs/history", window.clone()).await;
    let task_states = c.get(&format!("/task_run_states?task_run_id={task_id}")).await;
    c.get(&format!("/task_run_states/{}", id(&task_states[0]))).await;
    c.post(
        "/logs",
        json!([{"name": "prefect.flow_runs", "level": 20, "message": "hi", "timestamp": now.to_rfc3339(),
                "flow_run_id": run_id, "task_run_id": task_id}]),
    )
    .await;
    c.post(
        "/logs/filter",
        json!({"logs": {"flow_run_id": {"any_": [run_id]}}}),
    )
    .await;
    c.post(
        &format!("/flow_runs/{run_id}/set_state"),
        json!({"state": {"type": "COMPLETED"}}),
    )
    .await;
    c.post("/ui/flow_runs/history", json!({})).await;
    c.post(
        "/ui/task_runs/dashboard/counts",
        json!({"task_runs": {"start_time": {"after_": hour_ago}}}),
    )
    .await;
    c.post("/ui/task_runs/count", json!({})).await;

    // Work pools, their queues and workers; the legacy queue routes.
    let pool = c
        .post("/work_pools", json!({"name": "local", "type": "process"}))
        .await;
    c.post("/work_pools/filter", json!({})).await;
    c.post("/work_pools/count", json!({})).await;
    c.get("/work_pools/local").await;
    c.patch("/work_pools/local", json!({"description": "d"})).await;
    c.post("/work_pools/local/queues", json!({"name": "etl-queue"}))
        .await;
    c.post("/work_pools/local/queues/filter", json!({})).await;
    c.get("/work_pools/local/queues/etl-queue").await;
    c.patch("/work_pools/local/queues/etl-queue", json!({"priority": 2}))
        .await;
    c.post("/work_pools/local/get_scheduled_flow_runs", json!({}))
        .await;
    c.post(
        "/work_pools/local/workers/heartbeat",
        json!({"name": "w1", "heartbeat_interval_seconds": 10}),
    )
    .await;
    c.post("/work_pools/local/workers/filter", json!({})).await;
    c.get("/work_pools/local/message_queue").await;
    c.post(
        "/work_pools/local/message_queue/receive",
        json!({"wait_seconds": 0}),
    )
    .await;
    let legacy = c.post("/work_queues", json!({"name": "legacy"})).await;
    let legacy_id = id(&legacy);
    c.post("/work_queues/filter", json!({})).await;
    c.get("/work_queues/name/legacy").await;
    c.get(&format!("/work_queues/{legacy_id}")).await;
    c.patch(&format!("/work_queues/{legacy_id}"), json!({"is_paused": true}))
        .await;
    c.post(&format!("/work_queues/{legacy_id}/get_runs"), json!({}))
        .await;
    c.get(&format!("/work_queues/{legacy_id}/status")).await;
    assert!(pool["id"].is_string(), "{pool}");

    // Deployments and their schedules.
    let deployment = c
        .post(
            "/deployments",
            json!({"name": "nightly", "flow_id": flow_id, "work_pool_name": "local", "work_queue_name": "etl-queue",
                   "schedules": [{"schedule": {"interval": 3600, "timezone": "UTC"}, "active": true}],
                   "parameter_openapi_schema": {"type": "object", "properties": {}}}),
        )
        .await;
    let deployment_id = id(&deployment);
    c.post("/deployments/filter", json!({})).await;
    c.post("/deployments/count", json!({})).await;
    c.get("/deployments/name/etl/nightly").await;
    c.get(&format!("/deployments/{deployment_id}")).await;
    c.patch(
        &format!("/deployments/{deployment_id}"),
        json!({"description": "d"}),
    )
    .await;
    c.post(&format!("/deployments/{deployment_id}/schedule"), json!({}))
        .await;
    c.post(
        "/deployments/get_scheduled_flow_runs",
        json!({"deployment_ids": [deployment_id]}),
    )
    .await;
    c.post(
        &format!("/deployments/{deployment_id}/create_flow_run"),
        json!({}),
    )
    .await;
    c.get(&format!("/deployments/{deployment_id}/work_queue_check"))
        .await;
    for action in [
        "pause_deployment",
        "resume_deployment",
        "set_schedule_inactive",
        "set_schedule_active",
    ] {
        c.post(&format!("/deployments/{deployment_id}/{action}"), json!({}))
            .await;
    }
    let schedules = c.get(&format!("/deployments/{deployment_id}/schedules")).await;
    c.post(
        &format!("/deployments/{deployment_id}/schedules"),
        json!([{"schedule": {"cron": "0 0 * * *"}, "active": false}]),
    )
    .await;
    let schedule_id = id(&schedules[0]);
    c.patch(
        &format!("/deployments/{deployment_id}/schedules/{schedule_id}"),
        json!({"active": false}),
    )
    .await;
    c.delete(&format!("/deployments/{deployment_id}/schedules/{schedule_id}"))
        .await;

    // Blocks.
    let block_type = c
        .post(
            "/block_types",
            json!({"name": "My Creds", "slug": "creds", "description": "d"}),
        )
        .await;
    let block_type_id = id(&block_type);
    c.post("/block_types/filter", json!({})).await;
    c.get("/block_types/slug/creds").await;
    c.get(&format!("/block_types/{block_type_id}")).await;
    c.patch(
        &format!("/block_types/{block_type_id}"),
        json!({"description": "e"}),
    )
    .await;
    let schema = c
        .post(
            "/block_schemas",
            json!({"fields": {"type": "object", "properties": {"user": {"type": "string"}}},
                   "block_type_id": block_type_id, "capabilities": ["read"], "version": "1"}),
        )
        .await;
    let checksum = schema["checksum"].as_str().unwrap_or_default().to_string();
    c.post("/block_schemas/filter", json!({})).await;
    c.get(&format!("/block_schemas/checksum/{checksum}")).await;
    c.get(&format!("/block_schemas/{}", id(&schema))).await;
    c.get("/block_capabilities").await;
    let document = c
        .post(
            "/block_documents",
            json!({"name": "prod", "data": {"user": "me"}, "block_schema_id": schema["id"],
                   "block_type_id": block_type_id}),
        )
        .await;
    let document_id = id(&document);
    c.post("/block_documents/filter", json!({})).await;
    c.post("/block_documents/count", json!({})).await;
    c.get(&format!("/block_documents/{document_id}")).await;
    c.patch(
        &format!("/block_documents/{document_id}"),
        json!({"data": {"user": "you"}}),
    )
    .await;
    c.get("/block_types/slug/creds/block_documents").await;
    c.get("/block_types/slug/creds/block_documents/name/prod").await;

    // Notification policies (over that block document), limits, variables, artifacts,
    // saved searches.
    let policy = c
        .post(
            "/flow_run_notification_policies",
            json!({"state_names": ["Failed"], "tags": [], "block_document_id": document_id}),
        )
        .await;
    c.post("/flow_run_notification_policies/filter", json!({})).await;
    c.get(&format!("/flow_run_notification_policies/{}", id(&policy)))
        .await;
    c.patch(
        &format!("/flow_run_notification_policies/{}", id(&policy)),
        json!({"is_active": false}),
    )
    .await;
    c.delete(&format!("/flow_run_notification_policies/{}", id(&policy)))
        .await;

    let limit = c
        .post(
            "/concurrency_limits",
            json!({"tag": "db", "concurrency_limit": 2}),
        )
        .await;
    c.post("/concurrency_limits/filter", json!({})).await;
    c.get("/concurrency_limits/tag/db").await;
    c.get(&format!("/concurrency_limits/{}", id(&limit))).await;
    c.post("/concurrency_limits/tag/db/reset", json!({})).await;
    c.delete("/concurrency_limits/tag/db").await;
    let limit = c
        .post(
            "/concurrency_limits",
            json!({"tag": "db", "concurrency_limit": 2}),
        )
        .await;
    c.delete(&format!("/concurrency_limits/{}", id(&limit))).await;
    c.post("/v2/concurrency_limits", json!({"name": "gpu", "limit": 2}))
        .await;
    c.post("/v2/concurrency_limits/filter", json!({})).await;
    c.get("/v2/concurrency_limits/gpu").await;
    c.patch("/v2/concurrency_limits/gpu", json!({"limit": 3})).await;
    c.post(
        "/v2/concurrency_limits/increment",
        json!({"names": ["gpu"], "slots": 1}),
    )
    .await;
    c.post(
        "/v2/concurrency_limits/decrement",
        json!({"names": ["gpu"], "slots": 1}),
    )
    .await;
    // More slots than the limit has: 423, as documented.
    c.post(
        "/v2/concurrency_limits/increment",
        json!({"names": ["gpu"], "slots": 9}),
    )
    .await;
    c.delete("/v2/concurrency_limits/gpu").await;

    let variable = c
        .post("/variables", json!({"name": "region", "value": "eu"}))
        .await;
    c.post("/variables/filter", json!({})).await;
    c.post("/variables/count", json!({})).await;
    c.get("/variables/name/region").await;
    c.get(&format!("/variables/{}", id(&variable))).await;
    c.patch("/variables/name/region", json!({"value": "us"})).await;

    let artifact = c
        .post(
            "/artifacts",
            json!({"key": "report", "type": "markdown", "data": "# hi", "flow_run_id": run_id}),
        )
        .await;
    c.post("/artifacts/filter", json!({})).await;
    c.post("/artifacts/count", json!({})).await;
    c.post("/artifacts/latest/filter", json!({})).await;
    c.post("/artifacts/latest/count", json!({})).await;
    c.get("/artifacts/report/latest").await;
    c.get(&format!("/artifacts/{}", id(&artifact))).await;
    c.patch(
        &format!("/artifacts/{}", id(&artifact)),
        json!({"description": "d"}),
    )
    .await;

    let search = c
        .put("/saved_searches", json!({"name": "mine", "filters": []}))
        .await;
    c.post("/saved_searches/filter", json!({})).await;
    c.get(&format!("/saved_searches/{}", id(&search))).await;

    // Deletes last, so that what they remove was read above.
    c.delete(&format!("/saved_searches/{}", id(&search))).await;
    c.delete(&format!("/artifacts/{}", id(&artifact))).await;
    c.delete("/variables/name/region").await;
    c.delete(&format!("/block_documents/{document_id}")).await;
    c.delete(&format!("/block_schemas/{}", id(&schema))).await;
    c.delete(&format!("/block_types/{block_type_id}")).await;
    c.delete(&format!("/deployments/{deployment_id}")).await;
    c.delete(&format!("/task_runs/{task_id}")).await;
    c.delete(&format!("/flow_runs/{run_id}")).await;
    c.delete(&format!("/work_queues/{legacy_id}")).await;
    c.delete("/work_pools/local/workers/w1").await;
    c.delete("/work_pools/local/queues/etl-queue").await;
    c.delete("/work_pools/local").await;
    c.delete(&format!("/flows/{flow_id}")).await;
    c.post("/block_types/install_system_block_types", json!({})).await;
    // A system block type is protected: 403, as documented.
    let secret = c.get("/block_types/slug/secret").await;
    c.delete(&format!("/block_types/{}", id(&secret))).await;

    assert!(
        c.violations.is_empty(),
        "{} answers stray from the document:\n{}",
        c.violations.len(),
        c.violations.join("\n")
    );
    // Every operation whose answer is described was answered here.
    let described: Vec<String> = stratus::api()
        .operations()
        .iter()
        .filter(|o| o.returns.is_some() && !o.path.starts_with("/admin/database"))
        .map(|o| format!("{} {}", o.method, o.path))
        .filter(|op| !c.answered.contains(op))
        .collect();
    assert!(
        described.is_empty(),
        "operations with a described answer that this test never got a success from:\n{}",
        described.join("\n")
    );
    println!(
        "{} operations answered successfully, every answer within the document",
        c.answered.len()
    );
}
