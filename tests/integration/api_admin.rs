use crate::common;

use common::TestApp;
use http::Method;
use serde_json::json;

#[tokio::test]
async fn admin_reports_version_and_effective_settings_without_secrets() {
    let app = TestApp::spawn().await;
    let version = app.get("/api/admin/version").await;
    assert_eq!((version.status.as_u16(), version.body), (200, json!("2.20.27")));

    let settings = app.get("/api/admin/settings").await;
    assert_eq!(settings.status, 200);
    let object = settings.body.as_object().expect("an object");
    assert!(object
        .keys()
        .all(|k| k.starts_with("PREFECT_") || k.starts_with("STRATUS_")));
    assert_eq!(settings.body["PREFECT_API_DEFAULT_LIMIT"], 200);
    assert_eq!(settings.body["PREFECT_SERVER_CSRF_PROTECTION_ENABLED"], false);
    // The harness sets the slot wait to 1 s: the answer reflects the running config.
    assert_eq!(
        settings.body["PREFECT_TASK_RUN_TAG_CONCURRENCY_SLOT_WAIT_SECONDS"],
        1
    );
    assert_eq!(settings.body["PREFECT_API_DATABASE_CONNECTION_URL"], "********");
    assert!(!settings.text.contains(&app.database_url));
    assert!(!settings.text.contains("postgres://"));
}

async fn count(app: &TestApp, table: &str) -> i64 {
    app.db()
        .await
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0)
}

async fn seed(app: &TestApp) {
    assert_eq!(
        app.post("/api/flows/", json!({"name": "doomed"})).await.status,
        201
    );
    assert_eq!(
        app.post(
            "/api/logs/",
            json!([{"name": "n", "level": 20, "message": "m", "timestamp": "2026-11-24T10:00:00Z"}])
        )
        .await
        .status,
        201
    );
    app.post(
        "/api/concurrency_limits/",
        json!({"tag": "t", "concurrency_limit": 1}),
    )
    .await;
    app.post("/api/v2/concurrency_limits/", json!({"name": "g", "limit": 1}))
        .await;
}

#[tokio::test]
async fn database_routes_need_confirmation() {
    let app = TestApp::spawn().await;
    seed(&app).await;
    for route in ["clear", "drop", "create"] {
        let path = format!("/api/admin/database/{route}");
        for body in [json!({}), json!({"confirm": false}), json!({"other": true})] {
            let refused = app.post(&path, body).await;
            assert_eq!(refused.status, 400, "{route}");
            assert_eq!(refused.body, json!({"detail": "Pass confirm=True to confirm."}));
        }
        let empty = app.raw(Method::POST, &path, None, &[]).await;
        assert_eq!(empty.status, 400, "{route}");
        let malformed = app.raw(Method::POST, &path, Some("{confirm".into()), &[]).await;
        assert_eq!(malformed.status, 422, "{route}");
        let wrong_type = app.post(&path, json!({"confirm": "yes please"})).await;
        assert_eq!(wrong_type.status, 422, "{route}");
        assert_eq!(app.get(&path).await.status, 405, "{route}");
    }
    // Nothing was touched.
    for table in ["flow", "log", "concurrency_limit", "concurrency_limit_v2"] {
        assert_eq!(count(&app, table).await, 1, "{table}");
    }
}

#[tokio::test]
async fn clearing_deletes_every_row_and_keeps_the_schema() {
    let app = TestApp::spawn().await;
    seed(&app).await;
    let cleared = app
        .post("/api/admin/database/clear", json!({"confirm": true}))
        .await;
    assert_eq!((cleared.status.as_u16(), cleared.text.as_str()), (204, ""));
    for table in ["flow", "log", "concurrency_limit", "concurrency_limit_v2"] {
        assert_eq!(count(&app, table).await, 0, "{table}");
    }
    assert_eq!(app.post("/api/flows/count", json!({})).await.body, json!(0));
    // Migrations are not forgotten, and the server keeps working.
    assert!(count(&app, "refinery_schema_history").await > 0);
    assert_eq!(
        app.post("/api/flows/", json!({"name": "reborn"})).await.status,
        201
    );
    seed(&app).await;
}

#[tokio::test]
async fn dropping_recreates_an_empty_schema_and_create_is_idempotent() {
    let app = TestApp::spawn().await;
    seed(&app).await;
    let migrations = count(&app, "refinery_schema_history").await;
    let dropped = app
        .post("/api/admin/database/drop", json!({"confirm": true}))
        .await;
    assert_eq!((dropped.status.as_u16(), dropped.text.as_str()), (204, ""));
    for table in ["flow", "log", "concurrency_limit", "concurrency_limit_v2"] {
        assert_eq!(count(&app, table).await, 0, "{table}");
    }
    assert_eq!(count(&app, "refinery_schema_history").await, migrations);
    // Pooled connections that prepared statements before the drop keep working.
    seed(&app).await;
    assert_eq!(app.post("/api/flows/count", json!({})).await.body, json!(1));

    let created = app
        .post("/api/admin/database/create", json!({"confirm": true}))
        .await;
    assert_eq!((created.status.as_u16(), created.text.as_str()), (204, ""));
    assert_eq!(count(&app, "refinery_schema_history").await, migrations);
    assert_eq!(count(&app, "flow").await, 1);
    assert_eq!(
        app.post("/api/flows/", json!({"name": "another"})).await.status,
        201
    );
}
