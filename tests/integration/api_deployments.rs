use crate::common;

use common::TestApp;
use serde_json::{json, Value};

async fn flow(app: &TestApp) -> Value {
    app.post("/api/flows/", json!({"name": "etl"})).await.body["id"].clone()
}

fn deployment(flow_id: &Value, extra: Value) -> Value {
    let mut body = json!({
        "name": "nightly", "flow_id": flow_id, "schedules": [], "parameters": {"x": 1}, "tags": ["prod"],
        "infra_overrides": {}, "entrypoint": "flows.py:etl", "path": ".", "version": "1",
        "parameter_openapi_schema": {"type": "object", "properties": {"x": {"type": "integer"}}}
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

#[tokio::test]
async fn deployments_are_upserted_with_queues_and_schedules() {
    let app = TestApp::spawn().await;
    let flow_id = flow(&app).await;
    app.post("/api/work_pools/", json!({"name": "local", "type": "process"}))
        .await;
    let body = deployment(
        &flow_id,
        json!({"work_pool_name": "local", "work_queue_name": "etl-queue",
               "schedules": [{"schedule": {"interval": 3600, "timezone": "UTC"}, "active": true}]}),
    );
    let first = app.post("/api/deployments/", body.clone()).await;
    assert_eq!(first.status, 201, "{}", first.text);
    let d = &first.body;
    assert!(
        d.get("job_variables").is_none(),
        "the response carries infra_overrides only"
    );
    assert_eq!(d["infra_overrides"], json!({}));
    assert_eq!(
        (d["work_pool_name"].clone(), d["work_queue_name"].clone()),
        (json!("local"), json!("etl-queue"))
    );
    assert_eq!(d["schedules"][0]["schedule"]["interval"], json!(3600.0));
    assert_eq!(d["schedule"], d["schedules"][0]["schedule"]);
    assert_eq!(
        (d["paused"].clone(), d["is_schedule_active"].clone()),
        (json!(false), json!(true))
    );
    assert_eq!(
        app.get("/api/work_pools/local/queues/etl-queue").await.status,
        200,
        "the queue is created"
    );

    let again = app
        .post(
            "/api/deployments/",
            deployment(&flow_id, json!({"version": "2", "work_pool_name": "local"})),
        )
        .await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body["id"], d["id"]);
    assert_eq!(again.body["version"], "2");
    assert_eq!(again.body["work_queue_name"], "default");
    assert_eq!(again.body["schedules"], json!([]));

    let by_name = app.get("/api/deployments/name/etl/nightly").await;
    assert_eq!(by_name.body["id"], d["id"]);
    assert_eq!(
        app.get("/api/deployments/name/etl/nope").await.body,
        json!({"detail": "Deployment not found"})
    );
}

#[tokio::test]
async fn a_queue_name_alone_lands_in_the_default_agent_pool() {
    let app = TestApp::spawn().await;
    let flow_id = flow(&app).await;
    let res = app
        .post(
            "/api/deployments/",
            deployment(&flow_id, json!({"work_queue_name": "legacy"})),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.text);
    assert_eq!(res.body["work_pool_name"], "default-agent-pool");
    let pool = app.get("/api/work_pools/default-agent-pool").await.body;
    assert_eq!(
        (pool["type"].clone(), pool["status"].clone()),
        (json!("prefect-agent"), Value::Null)
    );
}

#[tokio::test]
async fn bad_deployments_are_refused() {
    let app = TestApp::spawn().await;
    let flow_id = flow(&app).await;
    let missing_pool = app
        .post(
            "/api/deployments/",
            deployment(&flow_id, json!({"work_pool_name": "nope"})),
        )
        .await;
    assert_eq!(missing_pool.status, 404);
    let missing_block = app
        .post(
            "/api/deployments/",
            deployment(&flow_id, json!({"storage_document_id": uuid::Uuid::new_v4()})),
        )
        .await;
    assert_eq!(missing_block.status, 409);
    let differing = app
        .post(
            "/api/deployments/",
            deployment(
                &flow_id,
                json!({"infra_overrides": {"a": 1}, "job_variables": {"a": 2}}),
            ),
        )
        .await;
    assert_eq!(differing.status, 422);
    let bad_schedule = app
        .post(
            "/api/deployments/",
            deployment(&flow_id, json!({"schedules": [{"schedule": {"cron": "nope"}}]})),
        )
        .await;
    assert_eq!(bad_schedule.status, 422);
    let missing_flow = app
        .post(
            "/api/deployments/",
            deployment(&json!(uuid::Uuid::new_v4()), json!({})),
        )
        .await;
    // Prefect answers a missing flow with its foreign-key conflict, not a 404.
    assert_eq!(missing_flow.status, 409);
    assert_eq!(
        missing_flow.body,
        json!({"detail": "Data integrity conflict. This usually means a unique or foreign key constraint was violated. See server logs for details."})
    );
    app.post(
        "/api/work_pools/",
        json!({"name": "typed", "type": "process", "base_job_template": {
            "job_configuration": {"command": "{{ command }}"},
            "variables": {"properties": {"command": {"type": "string"}}, "required": ["command"]}}}),
    )
    .await;
    let bad_vars = app
        .post(
            "/api/deployments/",
            deployment(
                &flow_id,
                json!({"work_pool_name": "typed", "job_variables": {"command": 5}}),
            ),
        )
        .await;
    assert_eq!(bad_vars.status, 422);
    let ok_vars = app
        .post(
            "/api/deployments/",
            deployment(&flow_id, json!({"work_pool_name": "typed", "job_variables": {}})),
        )
        .await;
    assert_eq!(
        ok_vars.status, 201,
        "required variables are not enforced on deployments"
    );
}

#[tokio::test]
async fn ad_hoc_runs_are_scheduled_in_the_deployments_queue() {
    let app = TestApp::spawn().await;
    let flow_id = flow(&app).await;
    app.post("/api/work_pools/", json!({"name": "local", "type": "process"}))
        .await;
    let d = app
        .post(
            "/api/deployments/",
            deployment(&flow_id, json!({"work_pool_name": "local"})),
        )
        .await
        .body;
    let id = d["id"].as_str().unwrap();
    let res = app
        .post(
            &format!("/api/deployments/{id}/create_flow_run"),
            json!({"parameters": {"y": 2}, "tags": ["adhoc"]}),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.text);
    let run = &res.body;
    assert_eq!(run["state_type"], "SCHEDULED");
    assert_eq!(run["deployment_id"], d["id"]);
    assert_eq!(run["deployment_version"], "1");
    assert_eq!(run["parameters"], json!({"x": 1, "y": 2}));
    assert_eq!(run["tags"], json!(["prod", "adhoc"]));
    assert_eq!(
        (run["work_pool_name"].clone(), run["work_queue_name"].clone()),
        (json!("local"), json!("default"))
    );

    let polled = app
        .post("/api/work_pools/local/get_scheduled_flow_runs", json!({}))
        .await;
    assert_eq!(polled.body[0]["flow_run"]["id"], run["id"]);
    let served = app
        .post(
            "/api/deployments/get_scheduled_flow_runs",
            json!({"deployment_ids": [d["id"]]}),
        )
        .await;
    assert_eq!(served.body[0]["id"], run["id"]);
    assert_eq!(
        app.get(&format!("/api/deployments/{id}")).await.body["status"],
        "READY"
    );

    let invalid = app
        .post(
            &format!("/api/deployments/{id}/create_flow_run"),
            json!({"parameters": {"x": "one"}, "enforce_parameter_schema": true}),
        )
        .await;
    assert_eq!(invalid.status, 409);
    assert_eq!(
        app.post(
            &format!("/api/deployments/{}/create_flow_run", uuid::Uuid::new_v4()),
            json!({})
        )
        .await
        .status,
        404
    );

    let by_deployment = app
        .post(
            "/api/flow_runs/count",
            json!({"deployments": {"name": {"any_": ["nightly"]}}}),
        )
        .await;
    assert_eq!(by_deployment.body, json!(1));
    // Deleting the deployment deletes its scheduled runs.
    assert_eq!(app.delete(&format!("/api/deployments/{id}")).await.status, 204);
    assert_eq!(
        app.get(&format!("/api/flow_runs/{}", run["id"].as_str().unwrap()))
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn pausing_drops_auto_scheduled_runs_and_schedules_are_managed() {
    let app = TestApp::spawn().await;
    let flow_id = flow(&app).await;
    let d = app
        .post(
            "/api/deployments/",
            deployment(
                &flow_id,
                json!({"schedules": [{"schedule": {"cron": "*/5 * * * *"}}]}),
            ),
        )
        .await
        .body;
    let id = d["id"].as_str().unwrap().to_string();
    let db = app.db().await;
    let did: uuid::Uuid = id.parse().unwrap();
    db.execute(
        "INSERT INTO flow_run (name, flow_id, deployment_id, auto_scheduled, state_type) SELECT 'auto', flow_id, id, true, 'SCHEDULED' FROM deployment WHERE id = $1",
        &[&did],
    )
    .await
    .unwrap();
    assert_eq!(
        app.post(&format!("/api/deployments/{id}/pause_deployment"), json!({}))
            .await
            .status,
        200
    );
    let read = app.get(&format!("/api/deployments/{id}")).await.body;
    assert_eq!(
        (read["paused"].clone(), read["is_schedule_active"].clone()),
        (json!(true), json!(false))
    );
    assert_eq!(read["schedules"][0]["active"], false);
    let left: i64 = db
        .query_one("SELECT count(*) FROM flow_run WHERE deployment_id = $1", &[&did])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
    app.post(&format!("/api/deployments/{id}/set_schedule_active"), json!({}))
        .await;
    assert_eq!(
        app.get(&format!("/api/deployments/{id}")).await.body["paused"],
        false
    );

    let added = app
        .post(
            &format!("/api/deployments/{id}/schedules"),
            json!([{"schedule": {"rrule": "FREQ=DAILY"}, "active": false}]),
        )
        .await;
    assert_eq!(added.status, 201, "{}", added.text);
    let schedules = app.get(&format!("/api/deployments/{id}/schedules")).await.body;
    assert_eq!(schedules.as_array().unwrap().len(), 2);
    assert_eq!(
        app.post(&format!("/api/deployments/{id}/pause_deployment"), json!({}))
            .await
            .status,
        422
    );
    let sid = added.body[0]["id"].as_str().unwrap();
    assert_eq!(
        app.patch(
            &format!("/api/deployments/{id}/schedules/{sid}"),
            json!({"active": true, "max_active_runs": 3})
        )
        .await
        .status,
        204
    );
    // Schedule updates are applied with `exclude_none`: a null leaves the field.
    app.patch(
        &format!("/api/deployments/{id}/schedules/{sid}"),
        json!({"max_active_runs": null, "max_scheduled_runs": null}),
    )
    .await;
    let schedules = app.get(&format!("/api/deployments/{id}/schedules")).await.body;
    let changed = schedules
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == json!(sid))
        .unwrap();
    assert_eq!(changed["max_active_runs"], 3);
    assert_eq!(
        app.delete(&format!("/api/deployments/{id}/schedules/{sid}"))
            .await
            .status,
        204
    );
    assert_eq!(
        app.delete(&format!("/api/deployments/{id}/schedules/{sid}"))
            .await
            .body,
        json!({"detail": "Schedule not found."})
    );

    assert_eq!(
        app.patch(
            &format!("/api/deployments/{id}"),
            json!({"description": "new", "tags": ["a"]})
        )
        .await
        .status,
        204
    );
    let read = app.get(&format!("/api/deployments/{id}")).await.body;
    assert_eq!(
        (read["description"].clone(), read["tags"].clone()),
        (json!("new"), json!(["a"]))
    );
    assert_eq!(read["version"], "1", "keys not sent are kept");
    assert_eq!(
        app.post(
            "/api/deployments/count",
            json!({"deployments": {"tags": {"all_": ["a"]}}})
        )
        .await
        .body,
        json!(1)
    );
    let listed = app
        .post(
            "/api/deployments/filter",
            json!({"flows": {"name": {"any_": ["etl"]}}, "sort": "NAME_DESC"}),
        )
        .await;
    assert_eq!(listed.body.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn backfill_creates_the_runs_of_a_window_once() {
    let app = TestApp::spawn().await;
    let f = flow(&app).await;
    app.post("/api/work_pools/", json!({"name": "bf", "type": "process"}))
        .await;
    let d = app
        .post(
            "/api/deployments/",
            deployment(&f, json!({"work_pool_name": "bf", "schedules": [{"schedule": {"interval": 3600, "anchor_date": "2026-01-01T00:00:00Z"}}]})),
        )
        .await
        .body;
    let id = d["id"].as_str().unwrap();
    let window = json!({"start_time": "2026-03-01T00:00:00Z", "end_time": "2026-03-01T05:30:00Z", "min_runs": 1, "max_runs": 100, "min_time": 86400});
    let res = app
        .post(&format!("/api/deployments/{id}/schedule"), window.clone())
        .await;
    assert_eq!(
        (res.status.as_u16(), &res.body),
        (200, &Value::Null),
        "{}",
        res.text
    );
    let runs = app
        .post(
            "/api/flow_runs/filter",
            json!({"flow_runs": {"deployment_id": {"any_": [id]}}, "sort": "EXPECTED_START_TIME_ASC"}),
        )
        .await
        .body;
    let times: Vec<&str> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["expected_start_time"].as_str().unwrap())
        .collect();
    assert_eq!(times.len(), 6, "{times:?}");
    assert!(
        times[0].starts_with("2026-03-01T00:00:00") && times[5].starts_with("2026-03-01T05:00:00"),
        "{times:?}"
    );
    assert!(runs
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["auto_scheduled"] == true && r["work_pool_name"] == "bf"));
    // Backfilling again adds nothing.
    app.post(&format!("/api/deployments/{id}/schedule"), window).await;
    let count = app
        .post(
            "/api/flow_runs/count",
            json!({"flow_runs": {"deployment_id": {"any_": [id]}}}),
        )
        .await
        .body;
    assert_eq!(count, json!(6));

    let res = app
        .post(
            &format!("/api/deployments/{id}/schedule"),
            json!({"end_time": "2000-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(res.status, 422, "{}", res.text);
    let res = app
        .post(
            &format!("/api/deployments/{id}/schedule"),
            json!({"max_runs": -1}),
        )
        .await;
    assert_eq!(res.status, 422);
    let missing = uuid::Uuid::new_v4();
    assert_eq!(
        app.post(&format!("/api/deployments/{missing}/schedule"), json!({}))
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn work_queue_check_lists_legacy_queues_whose_filter_matches() {
    let app = TestApp::spawn().await;
    let f = flow(&app).await;
    let d = app
        .post(
            "/api/deployments/",
            deployment(&f, json!({"tags": ["etl", "nightly"]})),
        )
        .await
        .body;
    let id = d["id"].as_str().unwrap();
    let make = |name: &str, filter: Value| {
        let app = &app;
        let name = name.to_string();
        async move {
            let res = app
                .post("/api/work_queues/", json!({"name": name, "filter": filter}))
                .await;
            assert_eq!(res.status, 201, "{}", res.text);
        }
    };
    make("etl-only", json!({"tags": ["etl"], "deployment_ids": null})).await;
    make("this-one", json!({"tags": [], "deployment_ids": [id]})).await;
    make("other-tag", json!({"tags": ["ml"], "deployment_ids": null})).await;
    make(
        "other-deployment",
        json!({"tags": [], "deployment_ids": [uuid::Uuid::new_v4()]}),
    )
    .await;
    make("no-filter", Value::Null).await;
    let res = app.get(&format!("/api/deployments/{id}/work_queue_check")).await;
    assert_eq!(res.status, 200, "{}", res.text);
    let mut names: Vec<&str> = res
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["etl-only", "this-one"]);
    let missing = uuid::Uuid::new_v4();
    assert_eq!(
        app.get(&format!("/api/deployments/{missing}/work_queue_check"))
            .await
            .status,
        404
    );
}

/// `Deployment.schedule = None` then `apply()`: the stock client's `update_deployment`
/// sends `"schedule": null`, which removes the schedule (Prefect applies PATCH bodies with
/// `exclude_unset`, so an explicit null is a change); an absent key leaves it.
#[tokio::test]
async fn a_null_legacy_schedule_removes_the_schedule() {
    let app = TestApp::spawn().await;
    let flow_id = flow(&app).await;
    let d = app
        .post(
            "/api/deployments/",
            deployment(&flow_id, json!({"schedules": [{"schedule": {"interval": 60}}]})),
        )
        .await
        .body;
    let id = d["id"].as_str().unwrap().to_string();
    // Absent: unchanged, even when other fields change.
    let res = app
        .patch(
            &format!("/api/deployments/{id}"),
            json!({"description": "same schedule"}),
        )
        .await;
    assert_eq!(res.status, 204, "{}", res.text);
    let read = app.get(&format!("/api/deployments/{id}")).await.body;
    assert_eq!(read["schedules"].as_array().unwrap().len(), 1);
    // Only `is_schedule_active`: the one schedule stays, inactive. Prefect 2.20 rebuilds the
    // schedule from its legacy `schedule` column instead, which is NULL on a deployment
    // created with `schedules`, so there the schedule would be lost; a user toggling the
    // activity expects to keep it.
    app.patch(
        &format!("/api/deployments/{id}"),
        json!({"is_schedule_active": false}),
    )
    .await;
    let read = app.get(&format!("/api/deployments/{id}")).await.body;
    assert_eq!(read["schedules"][0]["schedule"]["interval"], json!(60.0));
    assert_eq!(read["schedules"][0]["active"], false);
    assert_eq!(read["paused"], true);
    // Explicit null: removed.
    let res = app
        .patch(
            &format!("/api/deployments/{id}"),
            json!({"schedule": null, "is_schedule_active": false}),
        )
        .await;
    assert_eq!(res.status, 204, "{}", res.text);
    let read = app.get(&format!("/api/deployments/{id}")).await.body;
    assert_eq!(read["schedule"], Value::Null);
    assert_eq!(read["schedules"], json!([]));
    // Several schedules cannot be changed through the legacy field.
    app.patch(
        &format!("/api/deployments/{id}"),
        json!({"schedules": [{"schedule": {"interval": 60}}, {"schedule": {"cron": "0 * * * *"}}]}),
    )
    .await;
    let res = app
        .patch(&format!("/api/deployments/{id}"), json!({"schedule": null}))
        .await;
    assert_eq!(res.status, 422, "{}", res.text);
    assert_eq!(
        res.body["detail"][0],
        json!(format!(
            "Error updating deployment: Deployment UUID('{id}') has multiple schedules. \
             Please use the UI or update your client to adjust this deployment's schedules."
        ))
    );
}

/// A new pool without a queue name moves the deployment to that pool's default queue; fields
/// Prefect's `DeploymentUpdate` lacks are refused.
#[tokio::test]
async fn a_new_pool_alone_moves_the_deployment_to_its_default_queue() {
    let app = TestApp::spawn().await;
    let flow_id = flow(&app).await;
    for pool in ["first", "second"] {
        app.post("/api/work_pools/", json!({"name": pool, "type": "process"}))
            .await;
    }
    let d = app
        .post(
            "/api/deployments/",
            deployment(
                &flow_id,
                json!({"work_pool_name": "first", "work_queue_name": "special"}),
            ),
        )
        .await
        .body;
    let path = format!("/api/deployments/{}", d["id"].as_str().unwrap());
    let res = app.patch(&path, json!({"work_pool_name": "second"})).await;
    assert_eq!(res.status, 204, "{}", res.text);
    let read = app.get(&path).await.body;
    assert_eq!(
        (read["work_pool_name"].clone(), read["work_queue_name"].clone()),
        (json!("second"), json!("default"))
    );
    for field in ["pull_steps", "parameter_openapi_schema"] {
        let res = app.patch(&path, json!({ field: [] })).await;
        assert_eq!(res.status, 422, "{field}: {}", res.text);
    }
}
