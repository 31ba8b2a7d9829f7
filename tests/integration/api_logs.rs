use crate::common;

use common::TestApp;
use http::Method;
use serde_json::{json, Value};
use uuid::Uuid;

fn line(i: usize, level: i64, flow_run: Option<Uuid>, task_run: Option<Uuid>) -> Value {
    json!({
        "name": "prefect.flow_runs",
        "level": level,
        "message": format!("line {i}"),
        "timestamp": format!("2026-11-24T10:00:{i:02}.000000+00:00"),
        "flow_run_id": flow_run,
        "task_run_id": task_run,
    })
}

fn messages(res: &common::Response) -> Vec<String> {
    res.body
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {}", res.text))
        .iter()
        .map(|l| l["message"].as_str().unwrap().to_string())
        .collect()
}

async fn seed(app: &TestApp) -> (Uuid, Uuid) {
    let fr = Uuid::new_v4();
    let tr = Uuid::new_v4();
    let batch: Vec<_> = (0..10)
        .map(|i| {
            line(
                i,
                if i % 2 == 0 { 20 } else { 40 },
                Some(fr),
                (i == 3).then_some(tr),
            )
        })
        .collect();
    let res = app.post("/api/logs/", json!(batch)).await;
    assert_eq!(res.status, 201, "{}", res.text);
    assert_eq!(res.text, "null");
    (fr, tr)
}

#[tokio::test]
async fn logs_are_written_in_batches_and_read_back_in_prefect_format() {
    let app = TestApp::spawn().await;
    let (fr, _) = seed(&app).await;
    let all = app
        .post(
            "/api/logs/filter",
            json!({"logs": {"flow_run_id": {"any_": [fr]}}, "limit": null, "offset": null, "sort": null}),
        )
        .await;
    assert_eq!(all.status, 200);
    assert_eq!(
        messages(&all),
        (0..10).map(|i| format!("line {i}")).collect::<Vec<_>>()
    );
    let first = &all.body[0];
    assert_eq!(first["timestamp"], "2026-11-24T10:00:00.000000+00:00");
    assert_eq!(first["level"], 20);
    assert_eq!(first["name"], "prefect.flow_runs");
    assert_eq!(first["flow_run_id"], json!(fr));
    assert_eq!(first["task_run_id"], json!(null));
    assert!(Uuid::parse_str(first["id"].as_str().unwrap()).is_ok());
    for key in ["created", "updated"] {
        let text = first[key].as_str().unwrap();
        assert!(text.ends_with("+00:00") && text.len() == 32, "{key}: {text}");
    }
}

#[tokio::test]
async fn timestamps_in_any_offset_are_stored_in_utc() {
    let app = TestApp::spawn().await;
    let res = app
        .post(
            "/api/logs/",
            json!([
                {"name": "a", "level": 20, "message": "zulu", "timestamp": "2026-11-24T10:00:00.5Z"},
                {"name": "a", "level": 20, "message": "plus-two", "timestamp": "2026-11-24T11:00:01+02:00"},
            ]),
        )
        .await;
    assert_eq!(res.status, 201);
    let all = app.post("/api/logs/filter", json!({})).await;
    assert_eq!(messages(&all), ["plus-two", "zulu"]);
    assert_eq!(all.body[0]["timestamp"], "2026-11-24T09:00:01.000000+00:00");
    assert_eq!(all.body[1]["timestamp"], "2026-11-24T10:00:00.500000+00:00");
}

#[tokio::test]
async fn logs_filter_by_level_time_and_run_and_sort_and_page() {
    let app = TestApp::spawn().await;
    let (fr, tr) = seed(&app).await;
    // Another run's logs are not included by a run filter.
    app.post("/api/logs/", json!([line(50, 40, Some(Uuid::new_v4()), None)]))
        .await;
    let filter = |body: Value| app.post("/api/logs/filter", body);

    let errors = filter(
        json!({"logs": {"level": {"ge_": 40}, "flow_run_id": {"any_": [fr]}}, "sort": "TIMESTAMP_DESC"}),
    )
    .await;
    assert_eq!(
        messages(&errors),
        ["line 9", "line 7", "line 5", "line 3", "line 1"]
    );

    let infos = filter(json!({"logs": {"level": {"le_": 20}}})).await;
    assert_eq!(
        messages(&infos),
        ["line 0", "line 2", "line 4", "line 6", "line 8"]
    );

    let task = filter(json!({"logs": {"task_run_id": {"any_": [tr]}}})).await;
    assert_eq!(messages(&task), ["line 3"]);

    // before_ and after_ are both inclusive.
    let window = filter(json!({"logs": {"timestamp": {
        "after_": "2026-11-24T10:00:02Z", "before_": "2026-11-24T10:00:04.000000+00:00"}}}))
    .await;
    assert_eq!(messages(&window), ["line 2", "line 3", "line 4"]);

    let page = filter(json!({"logs": {"flow_run_id": {"any_": [fr]}}, "limit": 3, "offset": 2})).await;
    assert_eq!(messages(&page), ["line 2", "line 3", "line 4"]);
    let empty_page = filter(json!({"limit": 0})).await;
    assert_eq!(empty_page.body, json!([]));

    let either =
        filter(json!({"logs": {"operator": "or_", "task_run_id": {"any_": [tr]}, "level": {"ge_": 50}}}))
            .await;
    assert_eq!(messages(&either), ["line 3"]);

    let none = filter(json!({"logs": {"flow_run_id": {"any_": []}}})).await;
    assert_eq!(none.body, json!([]));

    // Unknown top-level keys are ignored, as FastAPI ignores extra body parameters.
    let extra = filter(json!({"flows": null, "limit": 1})).await;
    assert_eq!(messages(&extra), ["line 0"]);
}

#[tokio::test]
async fn batches_larger_than_one_insert_chunk_are_written_whole() {
    let app = TestApp::spawn().await;
    let fr = Uuid::new_v4();
    let n = stratus_store::db::logs::INSERT_CHUNK * 2 + 7;
    let batch: Vec<_> = (0..n)
        .map(|i| {
            json!({"name": "bulk", "level": 10, "message": format!("m{i}"),
                        "timestamp": "2026-11-24T10:00:00Z", "flow_run_id": fr})
        })
        .collect();
    assert_eq!(app.post("/api/logs/", json!(batch)).await.status, 201);
    let count: i64 = app
        .db()
        .await
        .query_one("SELECT count(*) FROM log WHERE flow_run_id = $1", &[&fr])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, n as i64);
}

#[tokio::test]
async fn a_full_client_log_batch_is_accepted() {
    let app = TestApp::spawn().await;
    // The client sends batches of up to 4,000,000 bytes.
    let text = "x".repeat(900_000);
    let batch: Vec<_> = (0..4)
        .map(
            |_| json!({"name": "prefect", "level": 20, "message": text, "timestamp": "2026-11-24T10:00:00Z"}),
        )
        .collect();
    let res = app.post("/api/logs/", json!(batch)).await;
    assert_eq!(res.status, 201, "{}", res.text);
}

#[tokio::test]
async fn nul_characters_in_messages_do_not_fail_the_batch() {
    let app = TestApp::spawn().await;
    let res = app
        .post(
            "/api/logs/",
            json!([{"name": "sub\u{0}process", "level": 20, "message": "before\u{0}after", "timestamp": "2026-11-24T10:00:00Z"}]),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.text);
    let all = app.post("/api/logs/filter", json!({})).await;
    assert_eq!(all.body[0]["message"], "before\u{FFFD}after");
    assert_eq!(all.body[0]["name"], "sub\u{FFFD}process");
}

async fn assert_invalid(res: common::Response) -> Value {
    assert_eq!(res.status, 422, "{}", res.text);
    assert_eq!(
        res.body["exception_message"], "Invalid request received.",
        "{}",
        res.text
    );
    assert!(res.body["exception_detail"].is_array(), "{}", res.text);
    res.body
}

#[tokio::test]
async fn bad_log_batches_are_rejected_and_nothing_is_written() {
    let app = TestApp::spawn().await;
    let ok = json!({"name": "a", "level": 20, "message": "m", "timestamp": "2026-11-24T10:00:00Z"});
    // Not an array.
    assert_invalid(app.post("/api/logs/", ok.clone()).await).await;
    // One bad line spoils the batch.
    let mut bad_level = ok.clone();
    bad_level["level"] = json!("loud");
    assert_invalid(app.post("/api/logs/", json!([ok.clone(), bad_level])).await).await;
    // Unknown keys (LogCreate is an action schema).
    let mut extra = ok.clone();
    extra["severity"] = json!("high");
    let body = assert_invalid(app.post("/api/logs/", json!([extra])).await).await;
    assert_eq!(body["exception_detail"][0]["type"], "value_error.extra");
    // Missing keys, bad ids, bad timestamps.
    assert_invalid(app.post("/api/logs/", json!([{"name": "a", "level": 20}])).await).await;
    let mut bad_id = ok.clone();
    bad_id["flow_run_id"] = json!("not-a-uuid");
    assert_invalid(app.post("/api/logs/", json!([bad_id])).await).await;
    let mut bad_time = ok.clone();
    bad_time["timestamp"] = json!("yesterday");
    assert_invalid(app.post("/api/logs/", json!([bad_time])).await).await;
    // Malformed JSON, and an empty body.
    let malformed = app
        .raw(Method::POST, "/api/logs/", Some("[{\"name\": ".into()), &[])
        .await;
    let body = assert_invalid(malformed).await;
    assert_eq!(body["exception_detail"][0]["type"], "value_error.jsondecode");
    assert_invalid(app.raw(Method::POST, "/api/logs/", None, &[]).await).await;

    assert_eq!(app.post("/api/logs/filter", json!({})).await.body, json!([]));
}

#[tokio::test]
async fn bad_filters_are_rejected_with_prefect_errors() {
    let app = TestApp::spawn().await;
    let filter = |body: Value| app.post("/api/logs/filter", body);

    let too_many = filter(json!({"limit": 201})).await;
    assert_eq!(too_many.status, 422);
    assert_eq!(
        too_many.body,
        json!({"detail": "Invalid limit: must be less than or equal to 200."})
    );
    let negative = filter(json!({"limit": -1})).await;
    assert_eq!(
        (negative.status.as_u16(), negative.body),
        (
            422,
            json!({"detail": "Invalid limit: must be greater than or equal to 0."})
        )
    );
    let body = assert_invalid(filter(json!({"offset": -1})).await).await;
    assert_eq!(body["exception_detail"][0]["loc"], json!(["body", "offset"]));
    assert_eq!(filter(json!({"limit": 200})).await.status, 200);

    let body = assert_invalid(filter(json!({"sort": "LOUDEST"})).await).await;
    assert_eq!(body["exception_detail"][0]["loc"], json!(["body", "sort"]));
    // Filter objects reject unknown keys, at every depth.
    let body = assert_invalid(filter(json!({"logs": {"levels": {"ge_": 1}}})).await).await;
    assert_eq!(body["exception_detail"][0]["type"], "value_error.extra");
    assert_invalid(filter(json!({"logs": {"level": {"gt_": 1}}})).await).await;
    assert_invalid(filter(json!({"logs": {"flow_run_id": {"any_": ["nope"]}}})).await).await;
    assert_invalid(filter(json!({"logs": {"timestamp": {"after_": "soon"}}})).await).await;
    assert_invalid(filter(json!({"logs": {"operator": "xor_"}})).await).await;
    assert_invalid(filter(json!({"limit": "many"})).await).await;
    let malformed = app
        .raw(
            Method::POST,
            "/api/logs/filter",
            Some("{\"limit\": }".into()),
            &[],
        )
        .await;
    assert_invalid(malformed).await;
    // Only POST is routed.
    assert_eq!(app.get("/api/logs/filter").await.status, 405);
}
