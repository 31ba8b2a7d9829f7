mod common;

use common::TestApp;
use serde_json::json;

#[tokio::test]
async fn tag_limits_are_upserted_read_reset_and_deleted() {
    let app = TestApp::spawn().await;
    let res = app
        .post(
            "/api/concurrency_limits/",
            json!({"tag": "db", "concurrency_limit": 2}),
        )
        .await;
    assert_eq!(res.status, 200);
    assert_eq!(res.body["active_slots"], json!([]));
    let again = app
        .post(
            "/api/concurrency_limits/",
            json!({"tag": "db", "concurrency_limit": 5}),
        )
        .await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body["id"], res.body["id"]);
    assert_eq!(again.body["concurrency_limit"], 5);

    let id = res.body["id"].as_str().unwrap();
    assert_eq!(
        app.get(&format!("/api/concurrency_limits/{id}")).await.body["tag"],
        "db"
    );
    assert_eq!(
        app.get("/api/concurrency_limits/tag/db").await.body["id"],
        res.body["id"]
    );
    let missing = app.get("/api/concurrency_limits/tag/nope").await;
    assert_eq!(missing.body, json!({"detail": "Concurrency limit not found"}));

    let slot = uuid::Uuid::new_v4();
    let reset = app
        .post(
            "/api/concurrency_limits/tag/db/reset",
            json!({"slot_override": [slot]}),
        )
        .await;
    assert_eq!(reset.status, 200);
    assert_eq!(
        app.get("/api/concurrency_limits/tag/db").await.body["active_slots"],
        json!([slot])
    );
    app.post("/api/concurrency_limits/tag/db/reset", json!({})).await;
    assert_eq!(
        app.get("/api/concurrency_limits/tag/db").await.body["active_slots"],
        json!([])
    );
    assert_eq!(
        app.post("/api/concurrency_limits/tag/nope/reset", json!({}))
            .await
            .status,
        404
    );

    app.post(
        "/api/concurrency_limits/",
        json!({"tag": "api", "concurrency_limit": 1}),
    )
    .await;
    let listed = app
        .post("/api/concurrency_limits/filter", json!({"limit": 1, "offset": 1}))
        .await;
    assert_eq!(listed.body[0]["tag"], "db");

    let deleted = app.delete("/api/concurrency_limits/tag/api").await;
    assert_eq!(
        (deleted.status.as_u16(), deleted.body.clone()),
        (200, json!(null))
    );
    assert_eq!(
        app.delete(&format!("/api/concurrency_limits/{id}")).await.status,
        200
    );
    assert_eq!(
        app.delete(&format!("/api/concurrency_limits/{id}")).await.status,
        404
    );
    assert_eq!(
        app.post(
            "/api/concurrency_limits/",
            json!({"tag": "x", "concurrency_limit": -1})
        )
        .await
        .status,
        422
    );
    assert_eq!(
        app.post("/api/concurrency_limits/", json!({"tag": "x"}))
            .await
            .status,
        422
    );
}

#[tokio::test]
async fn global_limits_grant_slots_until_full_then_lock() {
    let app = TestApp::spawn().await;
    let res = app
        .post("/api/v2/concurrency_limits/", json!({"name": "gpu", "limit": 2}))
        .await;
    assert_eq!(res.status, 201);
    assert_eq!(res.body["active"], true);
    assert!(res.body.get("denied_slots").is_none());
    assert_eq!(
        app.post("/api/v2/concurrency_limits/", json!({"name": "gpu", "limit": 2}))
            .await
            .status,
        409
    );
    assert_eq!(
        app.get("/api/v2/concurrency_limits/gpu").await.body["id"],
        res.body["id"]
    );
    let by_id = app
        .get(&format!(
            "/api/v2/concurrency_limits/{}",
            res.body["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(by_id.body["name"], "gpu");

    let take = |slots: i64| {
        app.post(
            "/api/v2/concurrency_limits/increment",
            json!({"names": ["gpu"], "slots": slots, "mode": "concurrency"}),
        )
    };
    let first = take(1).await;
    assert_eq!(first.status, 200);
    assert_eq!(
        first.body,
        json!([{"id": res.body["id"], "name": "gpu", "limit": 2}])
    );
    assert_eq!(take(1).await.status, 200);
    let locked = take(1).await;
    assert_eq!(locked.status, 423);
    assert_eq!(locked.body, json!({"detail": "Locked"}));
    let retry_after: f64 = locked.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry_after > 0.0);
    assert_eq!(take(3).await.status, 422);

    let freed = app
        .post(
            "/api/v2/concurrency_limits/decrement",
            json!({"names": ["gpu"], "slots": 1, "occupancy_seconds": 4.0}),
        )
        .await;
    assert_eq!(freed.status, 200);
    assert_eq!(
        app.get("/api/v2/concurrency_limits/gpu").await.body["active_slots"],
        1
    );
    assert_eq!(take(1).await.status, 200);

    // Unknown names are created inactive and never block.
    let unknown = app
        .post(
            "/api/v2/concurrency_limits/increment",
            json!({"names": ["new-one"], "slots": 1}),
        )
        .await;
    assert_eq!((unknown.status.as_u16(), unknown.body.clone()), (200, json!([])));
    assert_eq!(
        app.get("/api/v2/concurrency_limits/new-one").await.body["active"],
        false
    );

    assert_eq!(
        app.patch("/api/v2/concurrency_limits/gpu", json!({"limit": 10}))
            .await
            .status,
        204
    );
    assert_eq!(app.get("/api/v2/concurrency_limits/gpu").await.body["limit"], 10);
    let rate = app
        .post(
            "/api/v2/concurrency_limits/increment",
            json!({"names": ["gpu"], "slots": 1, "mode": "rate_limit"}),
        )
        .await;
    assert_eq!(rate.status, 422);
    assert_eq!(
        app.post(
            "/api/v2/concurrency_limits/increment",
            json!({"names": [], "slots": 1})
        )
        .await
        .status,
        422
    );
    let listed = app.post("/api/v2/concurrency_limits/filter", json!({})).await;
    assert_eq!(listed.body.as_array().unwrap().len(), 2);
    assert_eq!(app.delete("/api/v2/concurrency_limits/gpu").await.status, 204);
    assert_eq!(app.get("/api/v2/concurrency_limits/gpu").await.status, 404);
}
