//! The web UI against a real database: the `/api/ui/*` routes Prefect's UI reads, and the
//! server-rendered pages with real runs (they render, link to each other, filter, and turn
//! bad input into friendly pages, never a 500).

use crate::common;

use common::TestApp;
use serde_json::{json, Value};

fn state(kind: &str) -> Value {
    json!({"type": kind, "name": null, "message": null, "data": null, "state_details": {}})
}

async fn flow_run(app: &TestApp, flow: &str, tags: Value) -> Value {
    let flow = app.post("/api/flows/", json!({"name": flow})).await.body;
    let res = app
        .post(
            "/api/flow_runs/",
            json!({"flow_id": flow["id"], "name": format!("run-{}", uuid::Uuid::new_v4().simple()), "tags": tags}),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.text);
    res.body
}

async fn set_state(app: &TestApp, family: &str, id: &Value, kind: &str) {
    let res = app
        .post(
            &format!("/api/{family}/{}/set_state", id.as_str().unwrap()),
            json!({"state": state(kind), "force": true}),
        )
        .await;
    assert_eq!(res.status, 201, "{}", res.text);
}

async fn task_run(app: &TestApp, flow_run: &Value, key: &str, end: &str) -> Value {
    let t = app
        .post(
            "/api/task_runs/",
            json!({"flow_run_id": flow_run["id"], "task_key": key, "dynamic_key": "0", "name": key}),
        )
        .await
        .body;
    set_state(app, "task_runs", &t["id"], "RUNNING").await;
    set_state(app, "task_runs", &t["id"], end).await;
    t
}

#[tokio::test]
async fn ui_history_lists_runs_with_timestamp_duration_and_lateness() {
    let app = TestApp::spawn().await;
    let a = flow_run(&app, "etl", json!([])).await;
    let b = flow_run(&app, "etl", json!([])).await;
    set_state(&app, "flow_runs", &a["id"], "RUNNING").await;
    set_state(&app, "flow_runs", &a["id"], "COMPLETED").await;

    let res = app.post("/api/ui/flow_runs/history", json!({})).await;
    assert_eq!(res.status, 200, "{}", res.text);
    let points = res.body.as_array().unwrap();
    assert_eq!(points.len(), 2);
    let pa = points.iter().find(|p| p["id"] == a["id"]).unwrap();
    assert_eq!(pa["state_type"], "COMPLETED");
    assert!(pa["duration"].as_f64().unwrap() >= 0.0);
    assert!(pa["lateness"].is_number());
    assert!(pa["timestamp"].is_string());
    let pb = points.iter().find(|p| p["id"] == b["id"]).unwrap();
    assert_eq!(pb["state_type"], "PENDING");

    let one = app
        .post(
            "/api/ui/flow_runs/history",
            json!({"flow_runs": {"id": {"any_": [a["id"]]}}, "limit": 1}),
        )
        .await;
    assert_eq!(one.body.as_array().unwrap().len(), 1);
    assert_eq!(
        app.post("/api/ui/flow_runs/history", json!({"limit": 1001}))
            .await
            .status,
        422
    );
    assert_eq!(
        app.post("/api/ui/flow_runs/history", json!({"sort": "NOPE"}))
            .await
            .status,
        422
    );
}

#[tokio::test]
async fn ui_task_run_counts_by_state_and_dashboard_buckets() {
    let app = TestApp::spawn().await;
    let fr = flow_run(&app, "etl", json!([])).await;
    set_state(&app, "flow_runs", &fr["id"], "RUNNING").await;
    task_run(&app, &fr, "a", "COMPLETED").await;
    task_run(&app, &fr, "b", "COMPLETED").await;
    task_run(&app, &fr, "c", "FAILED").await;
    task_run(&app, &fr, "d", "CRASHED").await;
    task_run(&app, &fr, "e", "RUNNING").await;

    let counts = app.post("/api/ui/task_runs/count", json!({})).await;
    assert_eq!(counts.status, 200, "{}", counts.text);
    assert_eq!(
        counts.body,
        json!({"COMPLETED": 2, "PENDING": 0, "RUNNING": 1, "FAILED": 1, "CANCELLED": 0,
               "CRASHED": 1, "PAUSED": 0, "CANCELLING": 0, "SCHEDULED": 0})
    );

    let missing = app
        .post("/api/ui/task_runs/dashboard/counts", json!({"task_runs": {}}))
        .await;
    assert_eq!(missing.status, 422, "{}", missing.text);

    let after = chrono::Utc::now() - chrono::Duration::hours(1);
    let res = app
        .post(
            "/api/ui/task_runs/dashboard/counts",
            json!({"task_runs": {"start_time": {"after_": after}}}),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.text);
    let buckets = res.body.as_array().unwrap();
    assert_eq!(buckets.len(), 20);
    let completed: i64 = buckets.iter().map(|b| b["completed"].as_i64().unwrap()).sum();
    let failed: i64 = buckets.iter().map(|b| b["failed"].as_i64().unwrap()).sum();
    assert_eq!((completed, failed), (2, 2));
    // Everything ran just now: the last bucket holds it.
    assert_eq!(buckets[19]["completed"], 2);
}

#[tokio::test]
async fn ui_schema_validation_hydrates_and_nests_errors() {
    let app = TestApp::spawn().await;
    let created = app
        .post("/api/variables/", json!({"name": "bucket", "value": "data"}))
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let schema = json!({
        "type": "object",
        "properties": {"name": {"type": "string"}, "n": {"type": "integer"}, "xs": {"type": "array", "items": {"type": "integer"}}},
        "required": ["name", "n"]
    });
    let ok = app
        .post(
            "/api/ui/schemas/validate",
            json!({"schema": schema, "values": {
                "name": {"__prefect_kind": "workspace_variable", "variable_name": "bucket"},
                "n": {"__prefect_kind": "json", "value": "3"}
            }}),
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    assert_eq!(ok.body, json!({"errors": [], "valid": true}));

    let bad = app
        .post(
            "/api/ui/schemas/validate",
            json!({"schema": schema, "values": {
                "name": {"__prefect_kind": "workspace_variable", "variable_name": "nope"},
                "xs": [1, "two"]
            }}),
        )
        .await;
    assert_eq!(bad.status, 200);
    assert_eq!(bad.body["valid"], false);
    let errors = bad.body["errors"].as_array().unwrap();
    assert!(errors.contains(&json!({"property": "n", "errors": ["'n' is a required property"]})));
    assert!(errors.contains(&json!({"property": "name", "errors": ["Variable 'nope' not found."]})));
    assert!(errors.contains(
        &json!({"property": "xs", "errors": [{"index": 1, "errors": ["'two' is not of type 'integer'"]}]})
    ));
    assert_eq!(
        app.post("/api/ui/schemas/validate", json!({"schema": {}}))
            .await
            .status,
        422
    );
}

#[tokio::test]
async fn ui_settings_point_at_the_api() {
    let app = TestApp::spawn().await;
    let res = app.get("/ui-settings").await;
    assert_eq!(res.status, 200);
    assert_eq!(res.body["api_url"], "/api");
}

fn html(res: &common::Response) -> &str {
    assert!(
        res.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .starts_with("text/html"),
        "not HTML: {:?}",
        res.headers
    );
    &res.text
}

#[tokio::test]
async fn pages_render_real_runs_and_link_to_each_other() {
    let app = TestApp::spawn().await;
    let run = flow_run(&app, "nightly-etl", json!(["prod"])).await;
    set_state(&app, "flow_runs", &run["id"], "RUNNING").await;
    task_run(&app, &run, "extract", "COMPLETED").await;
    task_run(&app, &run, "load", "FAILED").await;
    let logs = app
        .post(
            "/api/logs/",
            json!([{"name": "prefect.flow_runs", "level": 20, "message": "hello from the run",
                    "timestamp": chrono::Utc::now(), "flow_run_id": run["id"]}]),
        )
        .await;
    assert_eq!(logs.status, 201, "{}", logs.text);
    let other = flow_run(&app, "reports", json!([])).await;

    let dashboard = app.get("/").await;
    assert_eq!(dashboard.status, 200);
    let dot = format!(
        "<a href=\"/flow-runs/{}\"><circle class=\"dot dot-running\"",
        run["id"].as_str().unwrap()
    );
    assert!(
        dashboard.text.contains("<svg class=\"scatter\"") && dashboard.text.contains(&dot),
        "{}",
        dashboard.text
    );
    assert!(html(&dashboard).contains("nightly-etl") || dashboard.text.contains("Running"));

    let list = app.get("/flow-runs").await;
    assert_eq!(list.status, 200);
    let run_link = format!("/flow-runs/{}", run["id"].as_str().unwrap());
    assert!(html(&list).contains(&run_link));
    assert!(list.text.contains(other["name"].as_str().unwrap()));

    let filtered = app.get("/flow-runs?flow=nightly&tag=prod&state=running").await;
    assert_eq!(filtered.status, 200, "{}", filtered.text);
    assert!(filtered.text.contains(&run_link));
    assert!(!filtered.text.contains(other["name"].as_str().unwrap()));

    let detail = app.get(&run_link).await;
    assert_eq!(detail.status, 200, "{}", detail.text);
    for text in ["extract", "load", "hello from the run", "nightly-etl"] {
        assert!(html(&detail).contains(text), "flow run page lacks {text}");
    }
    let errors_only = app.get(&format!("{run_link}?level=40")).await;
    assert_eq!(errors_only.status, 200);
    assert!(!errors_only.text.contains("hello from the run"));

    let flow_id = run["flow_id"].as_str().unwrap();
    assert!(
        app.get(&format!("/flows/{flow_id}")).await.text.contains(&dot),
        "no dot on the flow's plot"
    );
    for page in [
        "/flows".to_string(),
        format!("/flows/{flow_id}"),
        "/deployments".into(),
        "/work-pools".into(),
        "/blocks".into(),
        "/concurrency-limits".into(),
        "/variables".into(),
        "/artifacts".into(),
        "/notifications".into(),
    ] {
        let res = app.get(&page).await;
        assert_eq!(res.status, 200, "{page}: {}", res.text);
        html(&res);
    }
    let css = app.get("/ui-static/app.css").await;
    assert_eq!(css.status, 200);
    assert!(app.get("/ui-static/app.js").await.text.contains("fetch("));
}

#[tokio::test]
async fn bad_page_input_gets_a_friendly_page_not_a_500() {
    let app = TestApp::spawn().await;
    for (path, status) in [
        ("/flow-runs?page=abc", 400),
        ("/flow-runs?page=0", 400),
        ("/flow-runs?state=EXPLODED", 400),
        ("/flow-runs?since=yesterday", 400),
        ("/flow-runs?since_hours=-3", 400),
        ("/?hours=nope", 400),
        ("/flow-runs/not-a-uuid", 404),
        ("/flow-runs/00000000-0000-0000-0000-000000000000", 404),
        ("/flow-runs/00000000-0000-0000-0000-000000000000?level=abc", 400),
        ("/deployments/zzz", 404),
        ("/flows/00000000-0000-0000-0000-000000000000", 404),
        ("/work-pools/no-such-pool", 404),
        ("/blocks/zzz", 404),
        ("/no/such/page", 404),
        ("/work-pools/%FF", 400),
        ("/flow-runs/%E0%A4%A", 400),
        ("/task-runs/not-a-uuid", 404),
        ("/task-runs/00000000-0000-0000-0000-000000000000", 404),
        // A NUL can name nothing stored; asking Postgres for it would fail.
        ("/work-pools/a%00b", 404),
        ("/artifacts/key/%00", 404),
        ("/blocks/catalog/%00", 404),
    ] {
        let res = app.get(path).await;
        assert_eq!(res.status, status, "{path}: {}", res.text);
        assert!(html(&res).contains("<nav"), "{path} is not a full page");
        assert!(!res.text.to_lowercase().contains("panicked"));
    }
    // A huge page number is simply empty.
    let far = app.get("/flow-runs?page=99999").await;
    assert_eq!(far.status, 200);
}

#[tokio::test]
async fn a_task_run_page_shows_its_states_attempts_neighbours_cache_and_logs() {
    let app = TestApp::spawn().await;
    let run = flow_run(&app, "etl", json!([])).await;
    let extract = task_run(&app, &run, "extract", "COMPLETED").await;
    let load = app
        .post(
            "/api/task_runs/",
            json!({"flow_run_id": run["id"], "task_key": "load", "dynamic_key": "0", "name": "load-<1>",
                   "cache_key": "load-cache-key", "empirical_policy": {"retries": 3, "retry_delay": 0},
                   "task_inputs": {"rows": [{"input_type": "task_run", "id": extract["id"]}]}}),
        )
        .await
        .body;
    set_state(&app, "task_runs", &load["id"], "RUNNING").await;
    set_state(&app, "task_runs", &load["id"], "COMPLETED").await;
    let logged = app
        .post(
            "/api/logs/",
            json!([{"name": "prefect.task_runs", "level": 40, "message": "loading <rows>", "timestamp": "2026-12-05T00:00:00Z",
                    "flow_run_id": run["id"], "task_run_id": load["id"]},
                   {"name": "prefect.task_runs", "level": 20, "message": "extract own line", "timestamp": "2026-12-05T00:00:01Z",
                    "flow_run_id": run["id"], "task_run_id": extract["id"]}]),
        )
        .await;
    assert_eq!(logged.status, 201, "{}", logged.text);

    let load_id = load["id"].as_str().unwrap();
    let page = app.get(&format!("/task-runs/{load_id}")).await;
    assert_eq!(page.status, 200, "{}", page.text);
    let text = html(&page);
    assert!(
        text.contains("load-&#60;1&#62;") && !text.contains("load-<1>"),
        "names are escaped: {text}"
    );
    assert!(
        text.contains(&format!("/flow-runs/{}", run["id"].as_str().unwrap())),
        "it links its flow run"
    );
    assert!(text.contains("load-cache-key"));
    assert!(text.contains("retries allowed: 3"));
    for state in ["Running", "Completed"] {
        assert!(text.contains(state), "{state} is in the history");
    }
    let upstream = text.split("id=\"upstream\"").nth(1).unwrap_or_default();
    assert!(
        upstream.contains(&format!("/task-runs/{}", extract["id"].as_str().unwrap())),
        "{text}"
    );
    assert!(
        text.contains("loading &#60;rows&#62;") && !text.contains("extract own line"),
        "its own logs only"
    );

    let extract_res = app
        .get(&format!("/task-runs/{}", extract["id"].as_str().unwrap()))
        .await;
    let extract_page = html(&extract_res);
    let downstream = extract_page.split("id=\"downstream\"").nth(1).unwrap_or_default();
    assert!(
        downstream.contains(&format!("/task-runs/{load_id}")),
        "{extract_page}"
    );

    // The flow run page links each task run, in the table and the graph.
    let run_res = app
        .get(&format!("/flow-runs/{}", run["id"].as_str().unwrap()))
        .await;
    let run_page = html(&run_res);
    assert!(
        run_page
            .matches(&format!("href=\"/task-runs/{load_id}\""))
            .count()
            >= 2,
        "{run_page}"
    );
}

/// The href of the page's link marked `rel`, as a path to request.
fn rel_link(page: &str, rel: &str) -> Option<String> {
    let end = page.find(&format!("\" rel=\"{rel}\""))?;
    let start = page[..end].rfind("href=\"")? + "href=\"".len();
    Some(page[start..end].replace("&#38;", "&").replace("&amp;", "&"))
}

/// The messages of the log table, in page order.
fn messages(page: &str) -> Vec<String> {
    page.split("<td class=\"msg\">")
        .skip(1)
        .filter_map(|cell| cell.split("</td>").next())
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn every_log_line_of_a_run_is_reached_by_keyset_pages_filtered_searched_and_downloaded() {
    let app = TestApp::spawn().await;
    let run = flow_run(&app, "chatty", json!([])).await;
    let task = task_run(&app, &run, "noisy", "COMPLETED").await;
    // 1,250 lines, ten to a timestamp: pages must break ties by id, never skip or repeat.
    let start = chrono::DateTime::parse_from_rfc3339("2026-12-05T00:00:00Z").unwrap();
    let lines: Vec<Value> = (0..1250)
        .map(|i| {
            json!({"name": "prefect.flow_runs", "level": if i % 100 == 0 { 40 } else { 20 },
                   "message": format!("line {i:04}{}", if i == 777 { " Needle_100%" } else { "" }),
                   "timestamp": start + chrono::TimeDelta::milliseconds(i / 10),
                   "flow_run_id": run["id"],
                   "task_run_id": if i % 5 == 0 { task["id"].clone() } else { Value::Null }})
        })
        .collect();
    for chunk in lines.chunks(500) {
        let res = app.post("/api/logs/", json!(chunk)).await;
        assert_eq!(res.status, 201, "{}", res.text);
    }
    let run_id = run["id"].as_str().unwrap();
    let first = format!("/flow-runs/{run_id}/logs");

    // Forwards from the first page, by the "Later" links.
    let mut seen = Vec::new();
    let mut next = Some(first.clone());
    let mut pages = 0;
    while let Some(path) = next {
        let page = app.get(&path).await;
        assert_eq!(page.status, 200, "{path}: {}", page.text);
        let got = messages(html(&page));
        assert!(got.len() <= 200, "{path} holds {} lines", got.len());
        seen.extend(got);
        next = rel_link(&page.text, "next");
        pages += 1;
        assert!(pages < 20, "the pages do not end");
    }
    let mut all: Vec<String> = (0..1250).map(|i| format!("line {i:04}")).collect();
    all[777].push_str(" Needle_100%");
    // Oldest first; lines of one timestamp come in id order, so only the timestamp (the
    // line number's tens) must not go back.
    let order = |lines: &[String]| {
        lines
            .iter()
            .map(|m| m[5..9].parse::<u32>().unwrap() / 10)
            .collect::<Vec<_>>()
    };
    let sorted = |lines: &[String]| {
        let mut v = lines.to_vec();
        v.sort();
        v
    };
    assert!(order(&seen).is_sorted(), "forwards out of order");
    assert_eq!(seen.len(), 1250, "forwards: every line once");
    assert!(sorted(&seen) == all, "forwards: every line once");

    // Backwards from the latest page, by the "Earlier" links.
    let mut back = Vec::new();
    let mut prev = Some(format!("{first}?before=end"));
    while let Some(path) = prev {
        let page = app.get(&path).await;
        assert_eq!(page.status, 200, "{path}: {}", page.text);
        let mut got = messages(&page.text);
        got.extend(back);
        back = got;
        prev = rel_link(&page.text, "prev");
    }
    assert_eq!(back, seen, "backwards reads the same lines in the same order");

    // Filtered by level, by task, by text (any case; % and _ are plain characters).
    let errors = app.get(&format!("{first}?level=40")).await;
    assert_eq!(messages(&errors.text).len(), 13, "{}", errors.text);
    let of_task = app
        .get(&format!("{first}?task={}", task["id"].as_str().unwrap()))
        .await;
    let task_lines = messages(&of_task.text);
    assert_eq!(task_lines.len(), 200);
    assert!(task_lines
        .iter()
        .all(|m| m[5..9].parse::<u32>().unwrap() % 5 == 0));
    let found = app.get(&format!("{first}?q=needle_100%25")).await;
    assert_eq!(messages(&found.text), vec!["line 0777 Needle_100%".to_string()]);
    let none = app.get(&format!("{first}?q=needle_1000")).await;
    assert!(messages(&none.text).is_empty() && none.text.contains("No log lines match."));

    // The download holds every matching line, oldest first.
    let file = app.get(&format!("/flow-runs/{run_id}/logs.txt")).await;
    assert_eq!(file.status, 200);
    assert!(file.headers["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("attachment"));
    let file_lines: Vec<&str> = file.text.lines().collect();
    assert_eq!(file_lines.len(), 1250);
    let file_messages: Vec<String> = file_lines
        .iter()
        .map(|l| l.split(" | ").nth(1).unwrap().to_string())
        .collect();
    assert!(
        file_messages == seen,
        "the file holds the pages' lines in their order"
    );
    assert!(file_lines.iter().filter(|l| l.contains(" ERROR ")).count() == 13);
    let errors_file = app.get(&format!("/flow-runs/{run_id}/logs.txt?level=40")).await;
    assert_eq!(errors_file.text.lines().count(), 13);

    // Bad input is a friendly 400 or 404.
    for (path, status) in [
        (format!("{first}?after=yesterday"), 400),
        (format!("{first}?before=2026-12-05T00:00:00Z_nope"), 400),
        (format!("{first}?task=nope"), 400),
        (format!("{first}?level=99"), 400),
        (format!("/flow-runs/{}/logs", uuid::Uuid::new_v4()), 404),
        (format!("/flow-runs/{}/logs.txt", uuid::Uuid::new_v4()), 404),
    ] {
        let res = app.get(&path).await;
        assert_eq!(res.status, status, "{path}: {}", res.text);
        html(&res);
    }
}

#[tokio::test]
async fn artifact_pages_render_markdown_inert_tables_as_tables_and_list_versions() {
    let app = TestApp::spawn().await;
    let run = flow_run(&app, "reporting", json!([])).await;
    let hostile = "# Weekly\n\n<script>alert(1)</script>\n\n<img src=x onerror=alert(2)>\n\n\
                   [click](javascript:alert(3)) [docs](https://docs.prefect.io)";
    for (i, markdown) in ["# old version", hostile].iter().enumerate() {
        let res = app
            .post(
                "/api/artifacts/",
                json!({"key": "weekly-report", "type": "markdown", "data": markdown,
                       "description": format!("version {i}"), "flow_run_id": run["id"]}),
            )
            .await;
        assert_eq!(res.status, 201, "{}", res.text);
    }
    let table = app
        .post(
            "/api/artifacts/",
            json!({"key": "rows", "type": "table", "data": "[{\"city\": \"Lyon\", \"n\": 3}, {\"city\": \"<b>Oslo</b>\", \"n\": 4}]"}),
        )
        .await
        .body;
    let progress = app
        .post("/api/artifacts/", json!({"type": "progress", "data": 42.5}))
        .await
        .body;

    let list = app.get("/artifacts").await;
    assert_eq!(list.status, 200);
    assert!(list.text.contains("/artifacts/key/weekly-report") && list.text.contains("/artifacts/key/rows"));
    assert!(list
        .text
        .contains(&format!("/artifacts/{}", progress["id"].as_str().unwrap())));

    let page = app.get("/artifacts/key/weekly-report").await;
    assert_eq!(page.status, 200, "{}", page.text);
    let text = html(&page);
    assert!(text.contains("<h1>Weekly</h1>"), "{text}");
    assert!(
        !text.contains("<script>alert") && text.contains("&lt;script&gt;"),
        "{text}"
    );
    assert!(
        !text.contains("<img src=x") && !text.contains("href=\"javascript"),
        "{text}"
    );
    assert!(
        text.contains("<a href=\"https://docs.prefect.io\">docs</a>"),
        "{text}"
    );
    assert_eq!(
        text.matches("<a href=\"/artifacts/").count(),
        2,
        "two versions listed: {text}"
    );
    let old_id = rel_version(text, 1);
    let old = app.get(&format!("/artifacts/{old_id}")).await;
    assert!(old.text.contains("<h1>old version</h1>"), "{}", old.text);

    let rows = app.get("/artifacts/key/rows").await;
    assert!(
        rows.text.contains("<th>city</th>") && rows.text.contains("<td>Lyon</td>"),
        "{}",
        rows.text
    );
    assert!(
        rows.text.contains("&#60;b&#62;Oslo&#60;/b&#62;"),
        "cells are escaped: {}",
        rows.text
    );
    assert!(!rows.text.contains("<b>Oslo</b>"));
    let _ = table;
    let bar = app
        .get(&format!("/artifacts/{}", progress["id"].as_str().unwrap()))
        .await;
    assert!(
        bar.text.contains("<progress max=\"100\" value=\"42.5\">"),
        "{}",
        bar.text
    );

    for (path, status) in [
        ("/artifacts/key/no-such-key".to_string(), 404),
        (format!("/artifacts/{}", uuid::Uuid::new_v4()), 404),
        ("/artifacts/not-a-uuid".to_string(), 404),
    ] {
        assert_eq!(app.get(&path).await.status, status, "{path}");
    }
}

/// The id of the `n`th version listed on an artifact page (newest first).
fn rel_version(page: &str, n: usize) -> String {
    let part = page.split("<a href=\"/artifacts/").nth(n + 1).unwrap();
    part[..36].to_string()
}

#[tokio::test]
async fn the_schedule_preview_answers_the_next_times_or_why_not() {
    let app = TestApp::spawn().await;
    let preview = |s: Value| {
        format!(
            "/schedule-preview?schedule={}",
            stratus_store::url::percent_encode(&s.to_string())
        )
    };
    let daily = app
        .get(&preview(
            json!({"cron": "30 9 * * *", "timezone": "Europe/Paris"}),
        ))
        .await;
    assert_eq!(daily.status, 200, "{}", daily.text);
    let times = daily.body["times"].as_array().unwrap();
    assert_eq!(times.len(), 5);
    assert!(
        times.iter().all(|t| t.as_str().unwrap().contains(":30:00 UTC")),
        "{times:?}"
    );
    let every = app
        .get(&preview(
            json!({"interval": 5400, "anchor_date": "2026-01-01T00:30:00Z"}),
        ))
        .await;
    let every: Vec<&str> = every.body["times"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert!(
        every
            .iter()
            .all(|t| t.ends_with(":30:00 UTC") || t.ends_with(":00:00 UTC")),
        "{every:?}"
    );
    let rrule = app.get(&preview(json!({"rrule": "FREQ=WEEKLY;BYDAY=MO"}))).await;
    assert_eq!(rrule.body["times"].as_array().unwrap().len(), 5, "{}", rrule.text);
    for bad in [
        json!({"cron": "61 * * * *"}),
        json!({"interval": -1}),
        json!({"cron": "* * * * *", "timezone": "Mars/Base"}),
    ] {
        let res = app.get(&preview(bad.clone())).await;
        assert_eq!(res.status, 400, "{bad}: {}", res.text);
        assert!(
            res.body["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{}",
            res.text
        );
    }
    assert_eq!(app.get("/schedule-preview").await.status, 400);
    assert_eq!(app.get("/schedule-preview?schedule=%7Bnope").await.status, 400);
}

#[tokio::test]
async fn block_pages_offer_the_catalog_and_forms_that_never_hold_a_secret() {
    let app = TestApp::spawn().await;
    let installed = app
        .post("/api/block_types/install_system_block_types", json!({}))
        .await;
    assert_eq!(installed.status, 200, "{}", installed.text);
    let kind = app.get("/api/block_types/slug/docker-registry").await.body;
    let schema = app
        .post(
            "/api/block_schemas/filter",
            json!({"block_schemas": {"block_type_id": {"any_": [kind["id"]]}}}),
        )
        .await
        .body[0]
        .clone();
    let doc = app
        .post(
            "/api/block_documents/",
            json!({"name": "registry", "block_type_id": kind["id"], "block_schema_id": schema["id"],
                   "data": {"username": "u", "password": "s3cret-pass", "registry_url": "r", "reauth": true}}),
        )
        .await;
    assert_eq!(doc.status, 201, "{}", doc.text);

    let catalog = app.get("/blocks/catalog").await;
    assert_eq!(catalog.status, 200);
    assert!(
        catalog.text.contains("/blocks/catalog/docker-registry") && catalog.text.contains("Docker Registry")
    );
    let create = app.get("/blocks/catalog/docker-registry").await;
    assert_eq!(create.status, 200, "{}", create.text);
    assert!(create.text.contains("data-schema=") && create.text.contains("POST /api/block_documents/"));
    let container = app.get("/blocks/catalog/docker-container").await;
    assert!(
        container.text.contains("docker-registry") && container.text.contains("registry"),
        "nested choices"
    );
    assert!(!container.text.contains("s3cret-pass"));

    let page = app
        .get(&format!("/blocks/{}", doc.body["id"].as_str().unwrap()))
        .await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(!page.text.contains("s3cret-pass"), "the secret reached the page");
    assert!(
        page.text.contains("**********"),
        "the secret is not shown obfuscated"
    );
    assert_eq!(app.get("/blocks/catalog/no-such-type").await.status, 404);
}

#[tokio::test]
async fn the_runs_page_counts_no_further_than_its_pager_needs() {
    let app = TestApp::spawn().await;
    let first = flow_run(&app, "many", json!([])).await;
    let flow: uuid::Uuid = first["flow_id"].as_str().unwrap().parse().unwrap();
    app.db()
        .await
        .execute(
            "INSERT INTO flow_run (flow_id, name, expected_start_time) \
             SELECT $1, 'bulk-' || i, now() - i * interval '1 second' FROM generate_series(1, 10000) i",
            &[&flow],
        )
        .await
        .unwrap();
    let page = app.get("/flow-runs").await;
    assert_eq!(page.status, 200);
    assert!(page.text.contains("more than 10000 matching"), "{}", page.text);
    assert!(page.text.contains("page=2"), "a next page");
    // Deep enough, the count covers every run again: 10,001 of them, and no page after.
    let last = app.get("/flow-runs?page=201").await;
    assert_eq!(last.status, 200);
    assert!(last.text.contains("10001 matching"), "{}", last.text);
    assert!(!last.text.contains("page=202"));
    let narrow = app.get("/flow-runs?state=PENDING").await;
    assert!(narrow.text.contains("1 matching"), "{}", narrow.text);
}

#[tokio::test]
async fn a_pool_page_lists_the_runs_waiting_in_its_queues_soonest_first() {
    let app = TestApp::spawn().await;
    let pool = app
        .post("/api/work_pools/", json!({"name": "waits", "type": "process"}))
        .await;
    assert_eq!(pool.status, 201, "{}", pool.text);
    let other = app
        .post("/api/work_pools/waits/queues", json!({"name": "other"}))
        .await
        .body;
    let flow = app.post("/api/flows/", json!({"name": "f"})).await.body;
    let run_in = |name: &'static str, queue: Value, minutes: i64, kind: &'static str| {
        let (app, flow) = (&app, &flow);
        async move {
            let at = (chrono::Utc::now() + chrono::Duration::minutes(minutes)).to_rfc3339();
            let run = app
                .post(
                    "/api/flow_runs/",
                    json!({"flow_id": flow["id"], "name": name,
                           "state": {"type": "SCHEDULED", "state_details": {"scheduled_time": at}}}),
                )
                .await
                .body;
            let id: uuid::Uuid = run["id"].as_str().unwrap().parse().unwrap();
            let queue: uuid::Uuid = queue.as_str().unwrap().parse().unwrap();
            app.db()
                .await
                .execute(
                    "UPDATE flow_run SET work_queue_id = $2 WHERE id = $1",
                    &[&id, &queue],
                )
                .await
                .unwrap();
            if kind != "SCHEDULED" {
                set_state(app, "flow_runs", &run["id"], kind).await;
            }
        }
    };
    let default = pool.body["default_queue_id"].clone();
    run_in("later-run", default.clone(), 60, "SCHEDULED").await;
    run_in("sooner-run", other["id"].clone(), 5, "SCHEDULED").await;
    run_in("started-run", other["id"].clone(), 1, "PENDING").await;
    run_in("done-run", default, 2, "COMPLETED").await;
    let page = app.get("/work-pools/waits").await;
    assert_eq!(page.status, 200);
    let at = |name: &str| page.text.find(name);
    assert!(at("done-run").is_none(), "finished runs do not wait");
    let (started, sooner, later) = (at("started-run"), at("sooner-run"), at("later-run"));
    assert!(
        started.is_some() && sooner.is_some() && later.is_some(),
        "{}",
        page.text
    );
    // Soonest first; a Pending run has no next scheduled time and comes after.
    assert!(
        sooner < later && later < started,
        "{started:?} {sooner:?} {later:?}"
    );
}

/// The dashboard's Failed runs are the window's Failed and Crashed runs, newest first, then
/// by id, ten of them (each state is read off its index, then the two are merged).
#[tokio::test]
async fn the_dashboard_lists_the_windows_failed_and_crashed_runs_newest_first() {
    let app = TestApp::spawn().await;
    let flow = app.post("/api/flows/", json!({"name": "flaky"})).await.body;
    let now = chrono::Utc::now();
    let mut runs = vec![
        (
            "failed-long-ago".to_string(),
            now - chrono::Duration::hours(72),
            "FAILED",
        ),
        ("completed-now".to_string(), now, "COMPLETED"),
        // The same expected start: by id, the first made first.
        (
            "tie-first".to_string(),
            now - chrono::Duration::hours(1),
            "CRASHED",
        ),
        (
            "tie-second".to_string(),
            now - chrono::Duration::hours(1),
            "FAILED",
        ),
    ];
    for h in 2..=13 {
        let end = if h % 2 == 0 { "FAILED" } else { "CRASHED" };
        runs.push((format!("older-{h:02}"), now - chrono::Duration::hours(h), end));
    }
    for (name, at, end) in &runs {
        let run = app
            .post(
                "/api/flow_runs/",
                json!({"flow_id": flow["id"], "name": name,
                       "state": {"type": "SCHEDULED", "state_details": {"scheduled_time": at}}}),
            )
            .await;
        assert_eq!(run.status, 201, "{}", run.text);
        set_state(&app, "flow_runs", &run.body["id"], end).await;
    }
    let page = app.get("/").await;
    assert_eq!(page.status, 200);
    let text = html(&page);
    let failed = &text[text.find("Failed runs").unwrap()..text.find("Late runs").unwrap()];
    let at = |name: &str| failed.find(&format!(" {name}</a>"));
    for absent in [
        "failed-long-ago",
        "completed-now",
        "older-10",
        "older-11",
        "older-12",
        "older-13",
    ] {
        assert!(at(absent).is_none(), "{absent}: {failed}");
    }
    let mut shown = vec!["tie-first".to_string(), "tie-second".to_string()];
    shown.extend((2..=9).map(|h| format!("older-{h:02}")));
    let order: Vec<Option<usize>> = shown.iter().map(|n| at(n)).collect();
    assert!(order.iter().all(Option::is_some), "{shown:?}: {failed}");
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "newest first, then by id: {failed}"
    );
}
