//! How long each web UI page takes to render on the server with a realistic history:
//! 10,000 flow runs over the past week (completed, failed, running, late, cancelled), over
//! 100,000 task runs with dependencies, about 100,000 logs, one wide run of 2,000 mapped
//! task runs, deployments, pools, limits, variables, artifacts and blocks.
//!
//! `cargo bench --bench ui_pages [-- <postgres url> [iterations]]`
//!
//! It makes its own database (`stratus_bench_ui_<hex>`, dropped at the end unless
//! STRATUS_BENCH_KEEP=1) on the server given, else STRATUS_TEST_DATABASE_URL, else
//! 127.0.0.1:5432; fills it in SQL, then requests each page through the whole app in this
//! process (routing, queries, templates; no network) and prints p50, p95 and the slowest
//! time per page. It exits non-zero if any page's p95 is at or above the 100 ms target.

use std::time::{Duration, Instant};

use axum::body::Body;
use http::{Method, Request};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use stratus_store::config::Settings;
use tower::ServiceExt;

const FLOW_RUNS: i64 = 10_000;
const TASKS_PER_RUN: i64 = 11;
const TARGET: Duration = Duration::from_millis(100);

type App = tower_http::normalize_path::NormalizePath<axum::Router>;

async fn call(app: &App, method: Method, path: &str, body: Option<Value>) -> (u16, Vec<u8>) {
    let mut req = Request::builder().method(method).uri(path);
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let req = req
        .body(Body::from(body.map(|b| b.to_string()).unwrap_or_default()))
        .expect("request");
    let res = app.clone().oneshot(req).await.expect("response");
    let status = res.status().as_u16();
    let bytes = res.into_body().collect().await.expect("body").to_bytes();
    (status, bytes.to_vec())
}

async fn api(app: &App, method: Method, path: &str, body: Value) -> Value {
    let (status, bytes) = call(app, method, path, Some(body)).await;
    assert!(
        status < 300,
        "{path}: {status} {}",
        String::from_utf8_lossy(&bytes)
    );
    serde_json::from_slice(&bytes).unwrap_or(Value::Null)
}

use stratus_store::url::with_database;

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to Postgres at {url}: {e}"));
    tokio::spawn(conn);
    // The history is written straight into the default workspace, as the owner.
    client
        .execute(
            "SELECT set_config('stratus.workspace', $1, false)",
            &[&stratus_store::db::access::DEFAULT_WORKSPACE_ID.to_string()],
        )
        .await
        .expect("the default workspace");
    client
}

/// Pools, deployments, a secret block and the like through the API, so they are what the
/// client would have made.
async fn seed_through_api(app: &App) -> (Vec<uuid::Uuid>, Vec<uuid::Uuid>, Value) {
    let mut flows = Vec::new();
    for i in 0..20 {
        let f = api(
            app,
            Method::POST,
            "/api/flows/",
            json!({"name": format!("bench-flow-{i}")}),
        )
        .await;
        flows.push(f["id"].as_str().and_then(|s| s.parse().ok()).expect("flow id"));
    }
    for p in 0..3 {
        api(
            app,
            Method::POST,
            "/api/work_pools/",
            json!({"name": format!("bench-pool-{p}"), "type": "process"}),
        )
        .await;
    }
    let mut deployments = Vec::new();
    for d in 0..10 {
        let dep = api(
            app,
            Method::POST,
            "/api/deployments/",
            json!({
                "name": format!("bench-deployment-{d}"),
                "flow_id": flows[d % flows.len()],
                "work_pool_name": format!("bench-pool-{}", d % 3),
                "parameters": {"day": "monday", "n": d},
                "schedules": [{"schedule": {"interval": 3600 + d * 60}, "active": true}]
            }),
        )
        .await;
        deployments.push(
            dep["id"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .expect("deployment id"),
        );
    }
    for i in 0..50 {
        api(
            app,
            Method::POST,
            "/api/variables/",
            json!({"name": format!("bench_var_{i}"), "value": format!("value-{i}")}),
        )
        .await;
    }
    for i in 0..10 {
        api(
            app,
            Method::POST,
            "/api/concurrency_limits/",
            json!({"tag": format!("bench-tag-{i}"), "concurrency_limit": 5 + i}),
        )
        .await;
    }
    // A keyed artifact with twenty versions, each a markdown table (the key's page lists them).
    for v in 0..20 {
        let rows: String = (0..50).map(|r| format!("| {r} | {} |\n", r * v)).collect();
        api(
            app,
            Method::POST,
            "/api/artifacts/",
            json!({"key": "bench-notes", "type": "markdown",
                   "data": format!("# Notes {v}\n\n[docs](https://docs.prefect.io)\n\n| row | value |\n|---|---|\n{rows}")}),
        )
        .await;
    }
    let secret_type = api(app, Method::GET, "/api/block_types/slug/secret", Value::Null).await;
    let schemas = api(
        app,
        Method::POST,
        "/api/block_schemas/filter",
        json!({"block_schemas": {"block_type_id": {"any_": [secret_type["id"]]}}}),
    )
    .await;
    let block = api(
        app,
        Method::POST,
        "/api/block_documents/",
        json!({"name": "bench-secret", "block_type_id": secret_type["id"],
               "block_schema_id": schemas[0]["id"], "data": {"value": "hunter2"}}),
    )
    .await;
    (flows, deployments, block)
}

/// The bulk of the history, in a few set-based statements.
async fn seed_history(db: &tokio_postgres::Client, flows: &[uuid::Uuid], deployments: &[uuid::Uuid]) {
    let sql = format!(
        "INSERT INTO flow_run (name, flow_id, deployment_id, work_queue_id, work_queue_name, tags, parameters, \
           state_type, state_name, state_timestamp, run_count, expected_start_time, start_time, end_time, total_run_time) \
         SELECT 'bench-run-' || g, ($1::uuid[])[1 + g % 20], \
           CASE WHEN g % 3 = 0 THEN ($2::uuid[])[1 + g % 10] END, \
           CASE WHEN g % 3 = 0 THEN (SELECT d.work_queue_id FROM deployment d WHERE d.id = ($2::uuid[])[1 + g % 10]) END, \
           CASE WHEN g % 3 = 0 THEN 'default' END, \
           CASE WHEN g % 2 = 0 THEN '[\"nightly\", \"etl\"]'::jsonb ELSE '[\"adhoc\"]'::jsonb END, \
           jsonb_build_object('n', g), s.kind, s.name, s.at, s.runs, s.expected, s.started, s.ended, \
           coalesce(s.ended - s.started, interval '0') \
         FROM generate_series(1, {FLOW_RUNS}) g, LATERAL ( \
           SELECT k.kind, initcap(k.kind) AS name, t.expected, t.started, t.ended, \
             CASE WHEN k.kind = 'SCHEDULED' THEN 0 ELSE 1 END AS runs, \
             CASE k.kind WHEN 'SCHEDULED' THEN t.expected - interval '1 hour' \
               WHEN 'RUNNING' THEN t.started ELSE t.ended END AS at \
           FROM (SELECT now() - g * interval '60 seconds' AS expected, \
             CASE WHEN g % 100 BETWEEN 92 AND 96 THEN NULL \
               ELSE now() - g * interval '60 seconds' + interval '2 seconds' END AS started, \
             CASE WHEN g % 100 < 88 OR g % 100 >= 97 \
               THEN now() - g * interval '60 seconds' + (3 + g % 300) * interval '1 second' END AS ended) t, \
                (SELECT CASE WHEN g % 100 < 80 THEN 'COMPLETED' WHEN g % 100 < 88 THEN 'FAILED' \
             WHEN g % 100 < 92 THEN 'RUNNING' WHEN g % 100 < 97 THEN 'SCHEDULED' ELSE 'CANCELLED' END AS kind) k \
         ) s"
    );
    db.execute(sql.as_str(), &[&flows, &deployments])
        .await
        .expect("flow runs");
    db.batch_execute(&format!(
        "INSERT INTO flow_run_state (flow_run_id, type, name, timestamp) \
           SELECT id, 'PENDING', 'Pending', start_time - interval '1 second' FROM flow_run WHERE start_time IS NOT NULL \
           UNION ALL SELECT id, 'RUNNING', 'Running', start_time FROM flow_run \
             WHERE start_time IS NOT NULL AND state_type <> 'RUNNING' \
           UNION ALL SELECT id, state_type, state_name, state_timestamp FROM flow_run; \
         UPDATE flow_run fr SET state_id = s.id FROM flow_run_state s \
           WHERE s.flow_run_id = fr.id AND s.timestamp = fr.state_timestamp; \
         INSERT INTO task_run (id, flow_run_id, name, task_key, dynamic_key, task_inputs, tags, state_type, state_name, \
             state_timestamp, run_count, expected_start_time, start_time, end_time, total_run_time) \
           SELECT md5(fr.id::text || t)::uuid, fr.id, 'task-' || t || '-0', 'task-' || t, '0', \
             CASE WHEN t = 0 THEN '{{}}'::jsonb ELSE jsonb_build_object('x', jsonb_build_array( \
               jsonb_build_object('input_type', 'task_run', 'id', md5(fr.id::text || (t - 1))::uuid))) END, \
             fr.tags, s.kind, initcap(s.kind), fr.start_time + t * interval '1 second', 1, \
             fr.start_time + t * interval '1 second', fr.start_time + t * interval '1 second', \
             fr.start_time + (t + 1) * interval '1 second', interval '1 second' \
           FROM flow_run fr, generate_series(0, {last}) t, LATERAL (SELECT CASE \
             WHEN fr.state_type = 'FAILED' AND t = {last} THEN 'FAILED' \
             WHEN fr.state_type = 'RUNNING' AND t = {last} THEN 'RUNNING' ELSE 'COMPLETED' END AS kind) s \
           WHERE fr.start_time IS NOT NULL; \
         INSERT INTO task_run_state (task_run_id, type, name, timestamp) \
           SELECT id, state_type, state_name, state_timestamp FROM task_run; \
         UPDATE task_run tr SET state_id = s.id FROM task_run_state s WHERE s.task_run_id = tr.id; \
         INSERT INTO log (name, level, flow_run_id, message, timestamp) \
           SELECT 'prefect.flow_runs', CASE WHEN i = 9 AND fr.state_type = 'FAILED' THEN 40 WHEN i % 4 = 0 THEN 10 ELSE 20 END, \
             fr.id, 'step ' || i || ' of the run ' || fr.name || ' did its work', fr.start_time + i * interval '100 ms' \
           FROM flow_run fr, generate_series(0, 9) i WHERE fr.start_time IS NOT NULL; \
         INSERT INTO artifact (key, type, data, description, flow_run_id) \
           SELECT 'bench-report-' || (g % 50), 'markdown', to_jsonb('# Report ' || g), 'a report', \
             (SELECT id FROM flow_run ORDER BY expected_start_time DESC OFFSET g LIMIT 1) \
           FROM generate_series(1, 500) g;",
        last = TASKS_PER_RUN - 1
    ))
    .await
    .expect("history");
    // One wide run: 2,000 mapped task runs fanned out from 50 upstream ones, 2,000 logs.
    db.batch_execute(
        "WITH big AS ( \
           INSERT INTO flow_run (name, flow_id, state_type, state_name, state_timestamp, run_count, \
             expected_start_time, start_time, end_time, total_run_time, tags) \
           SELECT 'bench-big-run', id, 'COMPLETED', 'Completed', now() - interval '1 hour', 1, \
             now() - interval '2 hours', now() - interval '2 hours', now() - interval '1 hour', interval '1 hour', \
             '[\"big\"]' FROM flow WHERE name = 'bench-flow-0' RETURNING id, start_time \
         ), tasks AS ( \
           INSERT INTO task_run (id, flow_run_id, name, task_key, dynamic_key, task_inputs, state_type, state_name, \
             state_timestamp, run_count, expected_start_time, start_time, end_time, total_run_time) \
           SELECT md5(big.id::text || t)::uuid, big.id, 'mapped-' || t, 'mapped', t::text, \
             CASE WHEN t < 50 THEN '{}'::jsonb ELSE jsonb_build_object('x', jsonb_build_array( \
               jsonb_build_object('input_type', 'task_run', 'id', md5(big.id::text || (t % 50))::uuid))) END, \
             'COMPLETED', 'Completed', big.start_time + t * interval '1 second', 1, \
             big.start_time + t * interval '1 second', big.start_time + t * interval '1 second', \
             big.start_time + (t + 1) * interval '1 second', interval '1 second' \
           FROM big, generate_series(0, 1999) t RETURNING id, state_timestamp \
         ), task_states AS ( \
           INSERT INTO task_run_state (task_run_id, type, name, timestamp) \
           SELECT id, 'COMPLETED', 'Completed', state_timestamp FROM tasks \
         ) \
         INSERT INTO log (name, level, flow_run_id, message, timestamp) \
           SELECT 'prefect.task_runs', 20, big.id, 'mapped item ' || i || ' done', big.start_time + i * interval '1 second' \
           FROM big, generate_series(0, 1999) i; \
         UPDATE task_run tr SET state_id = s.id FROM task_run_state s \
           WHERE s.task_run_id = tr.id AND tr.state_id IS NULL;",
    )
    .await
    .expect("the wide run");
    // What autovacuum would have done by the time a history this long was read.
    db.batch_execute("VACUUM ANALYZE").await.expect("vacuum");
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let admin_url = args
        .first()
        .cloned()
        .or_else(|| std::env::var("STRATUS_TEST_DATABASE_URL").ok())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".to_string());
    let iterations: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(30);

    let db_name = format!(
        "stratus_bench_ui_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let admin = connect(&admin_url).await;
    admin
        .execute(&format!("CREATE DATABASE {db_name}"), &[])
        .await
        .expect("create database");
    let url = with_database(&admin_url, &db_name);
    let pool = stratus_store::db::pool(&url, 8).expect("pool");
    stratus_store::db::migrate(&pool).await.expect("migrate");
    stratus::cli::server::register_system_blocks(&pool)
        .await
        .expect("block types");
    let mut settings = Settings::from_env().expect("settings");
    settings.database_url = Some(url.clone());
    let state = stratus_aws::state(settings, pool).await.expect("the app state");
    let app = stratus_http::serve::normalize(stratus::app(state));

    let started = Instant::now();
    let (flows, deployments, block) = seed_through_api(&app).await;
    let db = connect(&url).await;
    seed_history(&db, &flows, &deployments).await;
    let counts = db
        .query_one(
            "SELECT (SELECT count(*) FROM flow_run), (SELECT count(*) FROM task_run), (SELECT count(*) FROM log)",
            &[],
        )
        .await
        .expect("counts");
    let (runs, tasks, logs): (i64, i64, i64) = (counts.get(0), counts.get(1), counts.get(2));
    println!(
        "seeded {runs} flow runs, {tasks} task runs, {logs} logs in {:.1}s ({db_name})",
        started.elapsed().as_secs_f64()
    );
    let busy: uuid::Uuid = db
        .query_one(
            "SELECT fr.id FROM flow_run fr WHERE fr.state_type = 'FAILED' ORDER BY fr.expected_start_time DESC LIMIT 1",
            &[],
        )
        .await
        .expect("a failed run")
        .get(0);

    let big: uuid::Uuid = db
        .query_one("SELECT id FROM flow_run WHERE name = 'bench-big-run'", &[])
        .await
        .expect("the wide run")
        .get(0);

    // A task run of the busy run, and one in the middle of the wide run (whose page looks
    // through the run's task runs for its neighbours).
    let task_of = |run: uuid::Uuid| {
        let db = &db;
        async move {
            let id: uuid::Uuid = db
                .query_one(
                    "SELECT id FROM task_run WHERE flow_run_id = $1 ORDER BY expected_start_time OFFSET \
                     (SELECT count(*) / 2 FROM task_run WHERE flow_run_id = $1) LIMIT 1",
                    &[&run],
                )
                .await
                .expect("a task run")
                .get(0);
            id
        }
    };
    let (busy_task, big_task) = (task_of(busy).await, task_of(big).await);

    // A place three quarters into the wide run's 2,000 log lines, as the logs page writes it.
    let deep = db
        .query_one(
            "SELECT timestamp, id FROM log WHERE flow_run_id = $1 ORDER BY timestamp, id OFFSET 1500 LIMIT 1",
            &[&big],
        )
        .await
        .expect("a log line");
    let deep_ts: chrono::DateTime<chrono::Utc> = deep.get(0);
    let deep_id: uuid::Uuid = deep.get(1);
    let deep_cursor = format!(
        "{}_{deep_id}",
        deep_ts.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    );
    let preview =
        stratus_store::url::percent_encode(r#"{"cron": "0 9 * * 1-5", "timezone": "Europe/Paris"}"#);

    let since = (chrono::Utc::now() - chrono::Duration::days(7)).to_rfc3339();
    let pages: Vec<(String, Option<Value>)> = vec![
        ("/".into(), None),
        ("/?hours=168".into(), None),
        ("/flow-runs".into(), None),
        ("/flow-runs?state=FAILED".into(), None),
        ("/flow-runs?flow=bench-flow-3&tag=nightly".into(), None),
        ("/flow-runs?deployment=bench-deployment-2".into(), None),
        ("/flow-runs?page=199".into(), None),
        (format!("/flow-runs/{busy}"), None),
        (format!("/flow-runs/{busy}?level=40"), None),
        (format!("/flow-runs/{big}"), None),
        (format!("/flow-runs/{big}/logs"), None),
        (format!("/flow-runs/{big}/logs?after={deep_cursor}"), None),
        (format!("/flow-runs/{big}/logs?before=end&level=20"), None),
        (format!("/flow-runs/{big}/logs?q=item%201999"), None),
        (format!("/flow-runs/{big}/logs.txt"), None),
        (format!("/task-runs/{busy_task}"), None),
        (format!("/task-runs/{big_task}"), None),
        ("/flows".into(), None),
        (format!("/flows/{}", flows[3]), None),
        ("/deployments".into(), None),
        (format!("/deployments/{}", deployments[2]), None),
        ("/work-pools".into(), None),
        ("/work-pools/bench-pool-1".into(), None),
        ("/blocks".into(), None),
        (
            format!("/blocks/{}", block["id"].as_str().unwrap_or_default()),
            None,
        ),
        ("/concurrency-limits".into(), None),
        ("/variables".into(), None),
        ("/artifacts".into(), None),
        ("/artifacts/key/bench-notes".into(), None),
        ("/blocks/catalog".into(), None),
        ("/blocks/catalog/docker-container".into(), None),
        (format!("/schedule-preview?schedule={preview}"), None),
        ("/api/ui/flow_runs/history".into(), Some(json!({}))),
        ("/api/ui/task_runs/count".into(), Some(json!({}))),
        (
            "/api/ui/task_runs/dashboard/counts".into(),
            Some(json!({"task_runs": {"start_time": {"after_": since}}})),
        ),
    ];

    println!(
        "\n{:<58} {:>8} {:>8} {:>8}  ({iterations} requests each, after 3 warm-up)",
        "page", "p50 ms", "p95 ms", "max ms"
    );
    let mut over = Vec::new();
    for (path, body) in &pages {
        let method = if body.is_some() { Method::POST } else { Method::GET };
        for _ in 0..3 {
            let (status, bytes) = call(&app, method.clone(), path, body.clone()).await;
            assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&bytes));
        }
        let mut times = Vec::with_capacity(iterations);
        for _ in 0..iterations {
            let t = Instant::now();
            let (status, _) = call(&app, method.clone(), path, body.clone()).await;
            times.push(t.elapsed());
            assert_eq!(status, 200, "{path}");
        }
        times.sort();
        let (p50, p95, max) = (
            percentile(&times, 0.5),
            percentile(&times, 0.95),
            times[times.len() - 1],
        );
        let flag = if p95 >= TARGET { "  OVER TARGET" } else { "" };
        let label = if path.len() > 58 { &path[..58] } else { path };
        println!("{label:<58} {:>8} {:>8} {:>8}{flag}", ms(p50), ms(p95), ms(max));
        if p95 >= TARGET {
            over.push(path.clone());
        }
    }

    drop(db);
    if std::env::var("STRATUS_BENCH_KEEP").is_err() {
        let _ = admin
            .execute(&format!("DROP DATABASE {db_name} WITH (FORCE)"), &[])
            .await;
    }
    if over.is_empty() {
        println!("\nevery page under {} ms at p95", TARGET.as_millis());
    } else {
        println!(
            "\n{} page(s) at or over {} ms at p95: {over:?}",
            over.len(),
            TARGET.as_millis()
        );
        std::process::exit(1);
    }
}
