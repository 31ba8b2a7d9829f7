mod common;

use common::TestApp;
use serde_json::json;

#[tokio::test]
async fn admin_reports_version_and_settings_without_secrets() {
    let app = TestApp::spawn().await;
    assert_eq!(app.get("/api/admin/version").await.body, json!("2.20.27"));
    let settings = app.get("/api/admin/settings").await;
    assert_eq!(settings.status, 200);
    assert_eq!(settings.body["PREFECT_API_DEFAULT_LIMIT"], 200);
    assert!(!settings.text.contains(&app.database_url));
}

#[tokio::test]
async fn clearing_the_database_needs_confirmation_and_keeps_the_schema() {
    let app = TestApp::spawn().await;
    app.post("/api/flows/", json!({"name": "doomed"})).await;
    let refused = app.post("/api/admin/database/clear", json!({})).await;
    assert_eq!(refused.status, 400);
    assert_eq!(app.post("/api/flows/count", json!({})).await.body, json!(1));
    assert_eq!(
        app.post("/api/admin/database/clear", json!({"confirm": true}))
            .await
            .status,
        204
    );
    assert_eq!(app.post("/api/flows/count", json!({})).await.body, json!(0));
    assert_eq!(
        app.post("/api/flows/", json!({"name": "reborn"})).await.status,
        201
    );
}

#[tokio::test]
async fn dropping_the_database_recreates_an_empty_schema() {
    let app = TestApp::spawn().await;
    app.post("/api/flows/", json!({"name": "doomed"})).await;
    assert_eq!(
        app.post("/api/admin/database/drop", json!({"confirm": false}))
            .await
            .status,
        400
    );
    assert_eq!(
        app.post("/api/admin/database/drop", json!({"confirm": true}))
            .await
            .status,
        204
    );
    assert_eq!(app.post("/api/flows/count", json!({})).await.body, json!(0));
    assert_eq!(
        app.post("/api/admin/database/create", json!({"confirm": true}))
            .await
            .status,
        204
    );
    assert_eq!(
        app.post("/api/flows/", json!({"name": "reborn"})).await.status,
        201
    );
}
