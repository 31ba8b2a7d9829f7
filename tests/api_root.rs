mod common;
use common::TestApp;

#[tokio::test]
async fn harness_serves_unknown_routes_as_json_404() {
    let app = TestApp::spawn().await;
    let res = app.get("/api/nope").await;
    assert_eq!(res.status, 404);
}
