mod common;

use common::TestApp;
use serde_json::json;

#[tokio::test]
async fn logs_are_written_in_batches_and_filtered() {
    let app = TestApp::spawn().await;
    let fr = uuid::Uuid::new_v4();
    let tr = uuid::Uuid::new_v4();
    let batch: Vec<_> = (0..10)
        .map(|i| {
            json!({"name": "prefect.flow_runs", "level": if i % 2 == 0 { 20 } else { 40 },
                   "message": format!("line {i}"), "timestamp": format!("2026-11-24T10:00:{i:02}.000000+00:00"),
                   "flow_run_id": fr, "task_run_id": if i == 3 { Some(tr) } else { None }})
        })
        .collect();
    let res = app.post("/api/logs/", json!(batch)).await;
    assert_eq!(res.status, 201);
    assert_eq!(res.body, json!(null));

    let all = app
        .post(
            "/api/logs/filter",
            json!({"logs": {"flow_run_id": {"any_": [fr]}}, "limit": null, "offset": null, "sort": null}),
        )
        .await;
    let lines = all.body.as_array().unwrap();
    assert_eq!(lines.len(), 10);
    assert_eq!(lines[0]["message"], "line 0");
    assert_eq!(lines[0]["timestamp"], "2026-11-24T10:00:00.000000+00:00");

    let errors = app
        .post(
            "/api/logs/filter",
            json!({"logs": {"level": {"ge_": 40}}, "sort": "TIMESTAMP_DESC"}),
        )
        .await;
    let lines = errors.body.as_array().unwrap();
    assert_eq!(lines.len(), 5);
    assert_eq!(lines[0]["message"], "line 9");

    let task = app
        .post(
            "/api/logs/filter",
            json!({"logs": {"task_run_id": {"any_": [tr]}}}),
        )
        .await;
    assert_eq!(task.body[0]["message"], "line 3");
    let window = app
        .post(
            "/api/logs/filter",
            json!({"logs": {"timestamp": {"after_": "2026-11-24T10:00:08Z"}}, "limit": 1, "offset": 1}),
        )
        .await;
    assert_eq!(window.body.as_array().unwrap().len(), 1);
    assert_eq!(window.body[0]["message"], "line 9");
}

#[tokio::test]
async fn bad_log_bodies_are_rejected_and_nothing_is_written() {
    let app = TestApp::spawn().await;
    let not_array = app.post("/api/logs/", json!({"name": "x"})).await;
    assert_eq!(not_array.status, 422);
    let half_bad = app
        .post("/api/logs/", json!([{"name": "a", "level": 20, "message": "m", "timestamp": "2026-11-24T10:00:00Z"},
                                    {"name": "b", "level": "loud", "message": "m", "timestamp": "2026-11-24T10:00:00Z"}]))
        .await;
    assert_eq!(half_bad.status, 422);
    let all = app.post("/api/logs/filter", json!({})).await;
    assert_eq!(all.body, json!([]));
    assert_eq!(
        app.post("/api/logs/filter", json!({"limit": 500})).await.status,
        422
    );
    assert_eq!(
        app.post("/api/logs/filter", json!({"sort": "LOUDEST"}))
            .await
            .status,
        422
    );
}

#[tokio::test]
async fn a_full_client_log_batch_is_accepted() {
    let app = TestApp::spawn().await;
    // The client sends batches of up to 4,000,000 bytes.
    let line = "x".repeat(900_000);
    let batch: Vec<_> = (0..4)
        .map(
            |_| json!({"name": "prefect", "level": 20, "message": line, "timestamp": "2026-11-24T10:00:00Z"}),
        )
        .collect();
    let res = app.post("/api/logs/", json!(batch)).await;
    assert_eq!(res.status, 201, "{}", res.text);
}
