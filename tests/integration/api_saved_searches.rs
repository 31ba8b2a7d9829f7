use crate::common;

use common::TestApp;
use serde_json::json;

#[tokio::test]
async fn saved_searches_are_upserted_by_name() {
    let app = TestApp::spawn().await;
    let filters = json!([{"object": "flow_run", "property": "state", "type": "state", "operation": "or", "value": ["Failed"]}]);
    let first = app
        .put(
            "/api/saved_searches/",
            json!({"name": "failures", "filters": filters}),
        )
        .await;
    assert_eq!(first.status, 201, "{}", first.text);
    assert_eq!(first.body["filters"], filters);
    let again = app
        .put("/api/saved_searches/", json!({"name": "failures", "filters": []}))
        .await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body["id"], first.body["id"]);
    assert_eq!(again.body["filters"], json!([]));
    assert_eq!(
        app.put(
            "/api/saved_searches/",
            json!({"name": "x", "filters": [{"object": "flow_run"}]})
        )
        .await
        .status,
        422
    );

    let id = first.body["id"].as_str().unwrap();
    assert_eq!(
        app.get(&format!("/api/saved_searches/{id}")).await.body["name"],
        "failures"
    );
    assert_eq!(
        app.post("/api/saved_searches/filter", json!({}))
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(app.delete(&format!("/api/saved_searches/{id}")).await.status, 204);
    assert_eq!(app.get(&format!("/api/saved_searches/{id}")).await.status, 404);
}
