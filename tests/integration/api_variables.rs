use crate::common;

use common::TestApp;
use serde_json::json;

#[tokio::test]
async fn variables_are_created_read_updated_filtered_and_deleted() {
    let app = TestApp::spawn().await;
    let res = app
        .post(
            "/api/variables/",
            json!({"name": "api_base", "value": "https://x", "tags": ["prod"]}),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.text);
    let id = res.body["id"].as_str().unwrap().to_string();
    let dup = app
        .post("/api/variables/", json!({"name": "api_base", "value": "y"}))
        .await;
    assert_eq!(dup.status, 409);
    assert!(dup.body["detail"]
        .as_str()
        .unwrap()
        .starts_with("Data integrity conflict"));
    assert_eq!(
        app.post("/api/variables/", json!({"name": "Bad Name", "value": "y"}))
            .await
            .status,
        422
    );
    assert_eq!(
        app.post(
            "/api/variables/",
            json!({"name": "big", "value": "x".repeat(5001)})
        )
        .await
        .status,
        422
    );
    assert_eq!(
        app.post("/api/variables/", json!({"name": "n", "value": 5}))
            .await
            .status,
        422,
        "values are strings"
    );

    assert_eq!(
        app.get("/api/variables/name/api_base").await.body["value"],
        "https://x"
    );
    assert_eq!(
        app.get(&format!("/api/variables/{id}")).await.body["name"],
        "api_base"
    );
    assert_eq!(
        app.get("/api/variables/name/nope").await.body,
        json!({"detail": "Variable not found."})
    );

    assert_eq!(
        app.patch("/api/variables/name/api_base", json!({"value": "https://y"}))
            .await
            .status,
        204
    );
    assert_eq!(
        app.get(&format!("/api/variables/{id}")).await.body["value"],
        "https://y"
    );
    app.post("/api/variables/", json!({"name": "other", "value": "1"}))
        .await;
    let tagged = app
        .post(
            "/api/variables/filter",
            json!({"variables": {"tags": {"all_": ["prod"]}}}),
        )
        .await
        .body;
    assert_eq!(tagged.as_array().unwrap().len(), 1);
    let sorted = app
        .post("/api/variables/filter", json!({"sort": "NAME_DESC"}))
        .await
        .body;
    assert_eq!(sorted[0]["name"], "other");
    assert_eq!(
        app.post(
            "/api/variables/count",
            json!({"variables": {"name": {"like_": "api"}}})
        )
        .await
        .body,
        json!(1)
    );
    assert_eq!(app.delete("/api/variables/name/other").await.status, 204);
    assert_eq!(app.delete(&format!("/api/variables/{id}")).await.status, 204);
    assert_eq!(app.delete(&format!("/api/variables/{id}")).await.status, 404);
}
