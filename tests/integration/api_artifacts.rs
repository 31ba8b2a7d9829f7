use crate::common;

use common::TestApp;
use serde_json::{json, Value};

#[tokio::test]
async fn keyed_artifacts_keep_a_latest_version() {
    let app = TestApp::spawn().await;
    let flow = app.post("/api/flows/", json!({"name": "f"})).await.body;
    let run = app
        .post("/api/flow_runs/", json!({"flow_id": flow["id"]}))
        .await
        .body;
    let first = app
        .post(
            "/api/artifacts/",
            json!({"key": "report", "type": "markdown", "data": "# v1", "flow_run_id": run["id"],
                                        "metadata_": {"rows": "x".repeat(600)}}),
        )
        .await;
    assert_eq!(first.status, 201, "{}", first.text);
    assert_eq!(first.body["metadata_"]["rows"].as_str().unwrap().len(), 500);
    let second = app
        .post(
            "/api/artifacts/",
            json!({"key": "report", "type": "markdown", "data": "# v2"}),
        )
        .await
        .body;
    app.post("/api/artifacts/", json!({"type": "table", "data": [[1]]}))
        .await;
    assert_eq!(
        app.post("/api/artifacts/", json!({"key": "Bad Key"}))
            .await
            .status,
        422
    );

    let latest = app.get("/api/artifacts/report/latest").await.body;
    assert_eq!(latest["data"], "# v2");
    assert_eq!(latest["latest_id"], second["id"]);
    assert_ne!(
        latest["id"], second["id"],
        "the latest answer carries the collection's id"
    );

    assert_eq!(app.post("/api/artifacts/count", json!({})).await.body, json!(3));
    assert_eq!(
        app.post("/api/artifacts/latest/count", json!({})).await.body,
        json!(1)
    );
    let keyed = app
        .post(
            "/api/artifacts/filter",
            json!({"artifacts": {"key": {"exists_": true}}, "sort": "CREATED_DESC"}),
        )
        .await
        .body;
    assert_eq!(keyed.as_array().unwrap().len(), 2);
    assert_eq!(keyed[0]["id"], second["id"]);
    let by_run = app
        .post(
            "/api/artifacts/filter",
            json!({"flow_runs": {"id": {"any_": [run["id"]]}}}),
        )
        .await
        .body;
    assert_eq!(by_run[0]["id"], first.body["id"]);

    let sid = second["id"].as_str().unwrap();
    assert_eq!(
        app.patch(&format!("/api/artifacts/{sid}"), json!({"description": "second"}))
            .await
            .status,
        204
    );
    assert_eq!(
        app.get("/api/artifacts/report/latest").await.body["description"],
        "second"
    );
    // Explicit nulls clear the fields, on the artifact and on its key's latest entry.
    app.patch(&format!("/api/artifacts/{sid}"), json!({"metadata_": {"k": "v"}}))
        .await;
    let res = app
        .patch(
            &format!("/api/artifacts/{sid}"),
            json!({"data": null, "description": null, "metadata_": null}),
        )
        .await;
    assert_eq!(res.status, 204, "{}", res.text);
    for path in [
        format!("/api/artifacts/{sid}"),
        "/api/artifacts/report/latest".into(),
    ] {
        let read = app.get(&path).await.body;
        assert_eq!(
            (
                read["data"].clone(),
                read["description"].clone(),
                read["metadata_"].clone()
            ),
            (Value::Null, Value::Null, Value::Null),
            "{path}"
        );
    }
    // Deleting the latest makes the previous version the latest.
    assert_eq!(app.delete(&format!("/api/artifacts/{sid}")).await.status, 204);
    assert_eq!(app.get("/api/artifacts/report/latest").await.body["data"], "# v1");
    app.delete(&format!("/api/artifacts/{}", first.body["id"].as_str().unwrap()))
        .await;
    assert_eq!(
        app.get("/api/artifacts/report/latest").await.body,
        json!({"detail": "Artifact not found."})
    );
    assert_eq!(app.get(&format!("/api/artifacts/{sid}")).await.status, 404);
}
