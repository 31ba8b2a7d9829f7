use crate::common;

use common::TestApp;
use serde_json::json;

#[tokio::test]
async fn flows_are_upserted_by_name_with_201_then_200() {
    let app = TestApp::spawn().await;
    let first = app
        .post("/api/flows/", json!({"name": "etl", "tags": ["a"]}))
        .await;
    assert_eq!(first.status, 201);
    assert_eq!(first.body["name"], "etl");
    assert_eq!(first.body["tags"], json!(["a"]));
    assert!(first.body["created"].as_str().unwrap().ends_with("+00:00"));

    // The existing flow comes back unchanged: tags are not updated by the upsert.
    let second = app
        .post("/api/flows", json!({"name": "etl", "tags": ["b"]}))
        .await;
    assert_eq!(second.status, 200);
    assert_eq!(second.body["id"], first.body["id"]);
    assert_eq!(second.body["tags"], json!(["a"]));
}

#[tokio::test]
async fn flow_names_with_banned_characters_are_rejected() {
    let app = TestApp::spawn().await;
    for name in ["a/b", "a%b", "a&b", "a>b", "a<b"] {
        let res = app.post("/api/flows/", json!({"name": name})).await;
        assert_eq!(res.status, 422, "{name}");
        assert_eq!(res.body["exception_message"], "Invalid request received.");
    }
}

#[tokio::test]
async fn flows_are_read_updated_and_deleted() {
    let app = TestApp::spawn().await;
    let flow = app.post("/api/flows/", json!({"name": "reader"})).await.body;
    let id = flow["id"].as_str().unwrap();

    let by_id = app.get(&format!("/api/flows/{id}")).await;
    assert_eq!(by_id.status, 200);
    assert_eq!(by_id.body["name"], "reader");
    let by_name = app.get("/api/flows/name/reader").await;
    assert_eq!(by_name.body["id"], flow["id"]);

    let patched = app
        .patch(&format!("/api/flows/{id}"), json!({"tags": ["x", "y"]}))
        .await;
    assert_eq!(patched.status, 204);
    assert_eq!(
        app.get(&format!("/api/flows/{id}")).await.body["tags"],
        json!(["x", "y"])
    );

    assert_eq!(app.delete(&format!("/api/flows/{id}")).await.status, 204);
    let gone = app.get(&format!("/api/flows/{id}")).await;
    assert_eq!(gone.status, 404);
    assert_eq!(gone.body, json!({"detail": "Flow not found"}));
    assert_eq!(app.delete(&format!("/api/flows/{id}")).await.status, 404);
    assert_eq!(app.get("/api/flows/name/nope").await.status, 404);
}

#[tokio::test]
async fn bad_ids_and_bodies_get_422_not_500() {
    let app = TestApp::spawn().await;
    let res = app.get("/api/flows/not-a-uuid").await;
    assert_eq!(res.status, 422);
    assert_eq!(res.body["exception_detail"][0]["loc"], json!(["path", "id"]));

    let res = app
        .raw(http::Method::POST, "/api/flows/", Some("{not json".into()), &[])
        .await;
    assert_eq!(res.status, 422);
    let res = app
        .post("/api/flows/", json!({"name": "x", "colour": "red"}))
        .await;
    assert_eq!(res.status, 422);
    assert_eq!(res.body["exception_detail"][0]["type"], "value_error.extra");
    let res = app.post("/api/flows/", json!({"tags": []})).await;
    assert_eq!(res.status, 422);
    let res = app
        .patch(
            &format!("/api/flows/{}", uuid::Uuid::new_v4()),
            json!({"tags": []}),
        )
        .await;
    assert_eq!(res.status, 404);
}

#[tokio::test]
async fn flows_filter_sorts_pages_and_counts() {
    let app = TestApp::spawn().await;
    for name in ["charlie", "alpha", "bravo"] {
        app.post(
            "/api/flows/",
            json!({"name": name, "tags": [if name == "alpha" {"t1"} else {"t2"}]}),
        )
        .await;
    }
    let all = app
        .post(
            "/api/flows/filter",
            json!({"limit": null, "offset": null, "sort": null}),
        )
        .await;
    assert_eq!(all.status, 200);
    let names: Vec<_> = all
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("alpha"), json!("bravo"), json!("charlie")]);

    let page = app
        .post(
            "/api/flows/filter",
            json!({"sort": "NAME_DESC", "limit": 1, "offset": 1}),
        )
        .await;
    assert_eq!(page.body.as_array().unwrap().len(), 1);
    assert_eq!(page.body[0]["name"], "bravo");

    let tagged = app
        .post("/api/flows/filter", json!({"flows": {"tags": {"all_": ["t2"]}}}))
        .await;
    assert_eq!(tagged.body.as_array().unwrap().len(), 2);
    let like = app
        .post("/api/flows/filter", json!({"flows": {"name": {"like_": "RAV"}}}))
        .await;
    assert_eq!(like.body[0]["name"], "bravo");

    let count = app
        .post(
            "/api/flows/count",
            json!({"flows": {"name": {"any_": ["alpha", "bravo"]}}}),
        )
        .await;
    assert_eq!(count.body, json!(2));

    let too_many = app.post("/api/flows/filter", json!({"limit": 201})).await;
    assert_eq!(too_many.status, 422);
    assert_eq!(
        too_many.body,
        json!({"detail": "Invalid limit: must be less than or equal to 200."})
    );
    let negative = app.post("/api/flows/filter", json!({"limit": -1})).await;
    assert_eq!(
        negative.body,
        json!({"detail": "Invalid limit: must be greater than or equal to 0."})
    );
    let bad_sort = app.post("/api/flows/filter", json!({"sort": "SIDEWAYS"})).await;
    assert_eq!(bad_sort.status, 422);
    let bad_filter = app.post("/api/flows/filter", json!({"flows": {"nam": {}}})).await;
    assert_eq!(bad_filter.status, 422);
    // Unknown top-level keys are ignored, as FastAPI ignores them for `Body` parameters.
    let extra_top_level = app
        .post("/api/flows/filter", json!({"flows": null, "future_key": 1}))
        .await;
    assert_eq!(extra_top_level.status, 200);
}

#[tokio::test]
async fn flows_filter_by_their_runs() {
    let app = TestApp::spawn().await;
    let a = app.post("/api/flows/", json!({"name": "with-runs"})).await.body;
    app.post("/api/flows/", json!({"name": "without-runs"})).await;
    let run = app
        .post(
            "/api/flow_runs/",
            json!({"flow_id": a["id"], "tags": ["nightly"]}),
        )
        .await;
    assert_eq!(run.status, 201);
    let res = app
        .post(
            "/api/flows/filter",
            json!({"flow_runs": {"tags": {"all_": ["nightly"]}}}),
        )
        .await;
    let names: Vec<_> = res
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("with-runs")]);
}

#[tokio::test]
async fn a_body_that_must_be_an_object_and_is_not_gets_prefects_422() {
    let app = TestApp::spawn().await;
    // Serde would read `["etl"]` as a flow named etl; pydantic refuses it, and so does Stratus.
    for (path, body) in [
        ("/api/flows/", json!(["etl"])),
        ("/api/flows/filter", json!([])),
        ("/api/flow_runs/filter", json!([{"limit": 1}])),
        ("/api/block_types/", json!("x")),
        ("/api/variables/", json!(["v", "1"])),
    ] {
        let res = app.post(path, body.clone()).await;
        assert_eq!(res.status, 422, "{path}: {}", res.text);
        assert_eq!(
            res.body["exception_detail"][0]["msg"], "value is not a valid dict",
            "{path}: {}",
            res.text
        );
        assert_eq!(res.body["request_body"], body, "{path}");
    }
    assert!(app.post("/api/flows/filter", json!({})).await.status.is_success());
    // A list body still takes a list.
    let logs = app
        .post(
            "/api/logs/",
            json!([{"name": "x", "level": 20, "message": "m", "timestamp": "2026-12-01T00:00:00Z"}]),
        )
        .await;
    assert_eq!(logs.status, 201, "{}", logs.text);
}
