//! The plans of the main list routes: a page comes off an index in order, not from every
//! matching row sorted (a flow's runs list once took 217 ms a request with 6,800 runs).

use crate::common;

use common::TestApp;
use serde_json::{json, Value};
use stratus_store::db::flow_runs::{FlowRun, FlowRunSort};
use stratus_store::db::runs::{self, PlanFor, RunTable};
use stratus_store::db::work_pools::{self, Poll};
use stratus_store::filters::RunFilters;

fn node_types(plan: &Value, out: &mut Vec<String>) {
    if let Some(kind) = plan.get("Node Type").and_then(Value::as_str) {
        let on = ["Index Name", "Relation Name"]
            .iter()
            .find_map(|k| plan.get(*k).and_then(Value::as_str))
            .unwrap_or_default();
        out.push(format!("{kind} {on}").trim().to_string());
    }
    for child in plan.get("Plans").and_then(Value::as_array).into_iter().flatten() {
        node_types(child, out);
    }
}

#[tokio::test]
async fn a_flows_runs_list_is_read_from_its_index_without_a_sort() {
    let app = TestApp::spawn().await;
    let small = app.post("/api/flows/", json!({"name": "small"})).await.body["id"].clone();
    let big = app.post("/api/flows/", json!({"name": "big"})).await.body["id"].clone();
    let db = app.db().await;
    for (flow, count) in [(&small, 300), (&big, 20_000)] {
        let flow: uuid::Uuid = flow.as_str().unwrap().parse().unwrap();
        db.execute(
            "INSERT INTO flow_run (flow_id, name, expected_start_time) \
             SELECT $1, 'run-' || i, now() - i * interval '1 minute' FROM generate_series(1, $2) i",
            &[&flow, &count],
        )
        .await
        .unwrap();
    }
    db.batch_execute("ANALYZE flow_run").await.unwrap();
    let filters = RunFilters {
        flows: Some(serde_json::from_value(json!({"id": {"any_": [small]}})).unwrap()),
        ..Default::default()
    };
    let client = app.default_workspace_client().await;
    let read_in_order = |when: &'static str| {
        let (client, filters) = (&client, &filters);
        async move {
            // Both the plan for this flow and the generic one the kept statement may use.
            for kind in [PlanFor::TheseValues, PlanFor::AnyValues] {
                let plan = runs::filter_plan::<FlowRun>(
                    client,
                    filters,
                    FlowRunSort::ExpectedStartTimeDesc,
                    50,
                    kind,
                )
                .await
                .unwrap();
                let mut nodes = Vec::new();
                node_types(&plan[0]["Plan"], &mut nodes);
                let text = plan.to_string();
                let generic = text.contains("flow_id = $1");
                assert_eq!(generic, kind == PlanFor::AnyValues, "{kind:?}: {text}");
                // Costed as the page it reads, the generic plan is the one a kept statement
                // settles on (a bound LIMIT was costed at a tenth of the flow's runs).
                assert!(
                    plan[0]["Plan"]["Plan Rows"].as_f64().unwrap() <= 50.0,
                    "{when}, {kind:?}: {text}"
                );
                assert!(
                    !nodes.iter().any(|n| n.contains("Sort")),
                    "{when}, {kind:?}: the page is sorted, not read in order: {nodes:?}"
                );
                assert!(
                    nodes
                        .iter()
                        .any(|n| n.contains("ix_flow_run__flow_id_expected_start_time")),
                    "{when}, {kind:?}: {nodes:?}"
                );
            }
        }
    };
    read_in_order("analyzed").await;
    // A burst of runs the statistics have not seen (the planner still believes the flow
    // has 300): the page still comes off the index in order.
    let small_id: uuid::Uuid = small.as_str().unwrap().parse().unwrap();
    db.execute(
        "INSERT INTO flow_run (flow_id, name, expected_start_time) \
         SELECT $1, 'burst-' || i, now() - interval '1 day' - i * interval '1 second' FROM generate_series(1, 20000) i",
        &[&small_id],
    )
    .await
    .unwrap();
    read_in_order("after a burst").await;
    // And the route answers that page, newest first.
    let page = app
        .post(
            "/api/flow_runs/filter",
            json!({"flows": {"id": {"any_": [small]}}, "sort": "EXPECTED_START_TIME_DESC", "limit": 50}),
        )
        .await
        .body;
    let names: Vec<&str> = page
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 50);
    assert_eq!(names[..3], ["run-1", "run-2", "run-3"]);
}

/// The work-pool poll reads each queue's due runs off the index of Scheduled runs, a page
/// at a time, whether or not the table has statistics: never the queue's finished runs,
/// nor its runs scheduled for later.
#[tokio::test]
async fn the_poll_reads_a_page_of_due_runs_off_its_index() {
    let app = TestApp::spawn().await;
    let pool = app
        .post("/api/work_pools/", json!({"name": "big", "type": "process"}))
        .await
        .body;
    let pool_id: uuid::Uuid = pool["id"].as_str().unwrap().parse().unwrap();
    let queue: uuid::Uuid = pool["default_queue_id"].as_str().unwrap().parse().unwrap();
    let flow = app.post("/api/flows/", json!({"name": "f"})).await.body["id"].clone();
    let flow: uuid::Uuid = flow.as_str().unwrap().parse().unwrap();
    let db = app.db().await;
    // 30 due, 5,000 for later, 35,000 finished.
    db.execute(
        "INSERT INTO flow_run (flow_id, name, work_queue_id, state_type, state_name, next_scheduled_start_time, expected_start_time) \
         SELECT $1, 'run-' || i, $2, CASE WHEN i <= 5030 THEN 'SCHEDULED' ELSE 'COMPLETED' END, 'x', \
           CASE WHEN i <= 30 THEN now() - i * interval '1 second' ELSE now() + i * interval '1 minute' END, now() \
         FROM generate_series(1, 40000) i",
        &[&flow, &queue],
    )
    .await
    .unwrap();
    // And 2,000 due sooner than all of them, handed out to workers that have not yet
    // proposed Pending: a poll does not walk past them.
    db.execute(
        "INSERT INTO flow_run (flow_id, name, work_queue_id, state_type, state_name, next_scheduled_start_time, \
           expected_start_time, offered_until) \
         SELECT $1, 'offered-' || i, $2, 'SCHEDULED', 'Scheduled', now() - interval '1 hour' - i * interval '1 second', \
           now(), now() + interval '1 hour' \
         FROM generate_series(1, 2000) i",
        &[&flow, &queue],
    )
    .await
    .unwrap();
    let poll = Poll {
        queue_ids: vec![queue],
        scheduled_before: Some(chrono::Utc::now()),
        scheduled_after: None,
        limit: 10,
    };
    let client = app.default_workspace_client().await;
    for analyzed in [false, true] {
        if analyzed {
            db.batch_execute("ANALYZE flow_run").await.unwrap();
        }
        let plan = work_pools::poll_plan(&client, pool_id, &poll).await.unwrap();
        let mut nodes = Vec::new();
        node_types(&plan[0]["Plan"], &mut nodes);
        assert!(
            nodes
                .iter()
                .any(|n| n == "Index Scan ix_flow_run__work_queue_id_due"),
            "analyzed: {analyzed}: {nodes:?}"
        );
        // Offers that ended come off the index of runs on offer, by their end.
        assert!(
            nodes
                .iter()
                .any(|n| n.contains("ix_flow_run__work_queue_id_offered")),
            "analyzed: {analyzed}: {nodes:?}"
        );
        assert!(
            !nodes.iter().any(|n| n == "Seq Scan flow_run"),
            "analyzed: {analyzed}: {nodes:?}"
        );
    }
    // And it hands out the ten due soonest that are not on offer, soonest first.
    let res = app
        .post(
            "/api/work_pools/big/get_scheduled_flow_runs",
            json!({"scheduled_before": chrono::Utc::now().to_rfc3339(), "limit": 10}),
        )
        .await;
    let names: Vec<&str> = res
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["flow_run"]["name"].as_str().unwrap())
        .collect();
    let want: Vec<String> = (21..=30).rev().map(|i| format!("run-{i}")).collect();
    assert_eq!(names, want);
}

/// Runs lists are kept prepared per shape, up to a bound; paging (each offset another
/// text) must not use that bound up, nor leave a statement per page on the connection.
#[tokio::test]
async fn paging_through_a_runs_list_keeps_only_its_first_page_prepared() {
    let app = TestApp::spawn().await;
    let flow = app.post("/api/flows/", json!({"name": "paged"})).await.body["id"].clone();
    let filters = RunFilters {
        flows: Some(serde_json::from_value(json!({"id": {"any_": [flow]}})).unwrap()),
        ..Default::default()
    };
    let client = app.default_workspace_client().await;
    let prepared = || async {
        client
            .query_one(
                "SELECT count(*) FROM pg_prepared_statements \
                 WHERE statement LIKE '%ORDER BY fr.expected_start_time%' AND statement NOT LIKE '%pg_prepared%'",
                &[],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    for offset in 0..100 {
        runs::filter::<FlowRun>(&client, &filters, FlowRunSort::ExpectedStartTimeDesc, 10, offset)
            .await
            .unwrap();
    }
    assert_eq!(prepared().await, 1, "the first page only");
    // A capped count: kept at its usual cap only, whatever page a pager asks it for.
    for cap in [runs::COUNTED_UP_TO, 10_050, 10_100, 12_500] {
        runs::count_up_to(&client, RunTable::Flow, &filters, cap)
            .await
            .unwrap();
    }
    let counts: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE '%FROM (SELECT 1 FROM flow_run%' \
             AND statement NOT LIKE '%pg_prepared%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(counts, 1, "the usual cap only");
    for limit in 1..=100 {
        runs::filter::<FlowRun>(&client, &filters, FlowRunSort::ExpectedStartTimeDesc, limit, 0)
            .await
            .unwrap();
    }
    // The bound counts every kept shape: the count above holds one of them.
    assert_eq!(
        prepared().await,
        stratus_store::filters::PREPARED_SHAPES as i64 - 1,
        "no more shapes than the bound"
    );
}

/// The runs in one state, newest first (the runs page filtered by state): read in order
/// off the state's index, not found by walking every newer run in another state.
#[tokio::test]
async fn the_runs_in_one_state_are_read_from_its_index_in_order() {
    let app = TestApp::spawn().await;
    let flow: uuid::Uuid = app.post("/api/flows/", json!({"name": "states"})).await.body["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let db = app.db().await;
    db.execute(
        "INSERT INTO flow_run (flow_id, name, state_type, state_name, expected_start_time) \
         SELECT $1, 'run-' || i, CASE WHEN i > 20000 THEN 'FAILED' ELSE 'COMPLETED' END, \
           CASE WHEN i <= 30 THEN 'Late' ELSE 'x' END, now() - i * interval '1 second' \
         FROM generate_series(1, 20300) i",
        &[&flow],
    )
    .await
    .unwrap();
    // And a day of runs due tomorrow, newer than any Failed one.
    db.execute(
        "INSERT INTO flow_run (flow_id, name, state_type, state_name, expected_start_time) \
         SELECT $1, 'due-' || i, 'SCHEDULED', 'Scheduled', now() + interval '1 day' + i * interval '4 seconds' \
         FROM generate_series(1, 20000) i",
        &[&flow],
    )
    .await
    .unwrap();
    db.batch_execute("ANALYZE flow_run").await.unwrap();
    let client = app.default_workspace_client().await;
    // Failed alone, and within a window (the dashboard's Failed runs of the last day);
    // and the dashboard's Late runs, soonest first: the newest runs of the table, which
    // walking the time index from the oldest reached last.
    let day_ago = (chrono::Utc::now() - chrono::Duration::days(1)).to_rfc3339();
    let by_type = "ix_flow_run__state_type_expected_start_time";
    let cases = [
        (
            json!({"state": {"type": {"any_": ["FAILED"]}}}),
            FlowRunSort::ExpectedStartTimeDesc,
            50,
            by_type,
        ),
        (
            json!({"state": {"type": {"any_": ["FAILED"]}}, "expected_start_time": {"after_": day_ago}}),
            FlowRunSort::ExpectedStartTimeDesc,
            50,
            by_type,
        ),
        (
            json!({"state": {"name": {"any_": ["Late"]}}}),
            FlowRunSort::ExpectedStartTimeAsc,
            10,
            "ix_flow_run__state_name_expected_start_time",
        ),
    ];
    for (filter, sort, limit, index) in cases {
        let filters = RunFilters {
            flow_runs: Some(serde_json::from_value(filter).unwrap()),
            ..Default::default()
        };
        for kind in [PlanFor::TheseValues, PlanFor::AnyValues] {
            let plan = runs::filter_plan::<FlowRun>(&client, &filters, sort, limit, kind)
                .await
                .unwrap();
            let mut nodes = Vec::new();
            node_types(&plan[0]["Plan"], &mut nodes);
            assert!(!nodes.iter().any(|n| n.contains("Sort")), "{kind:?}: {nodes:?}");
            assert!(nodes.iter().any(|n| n.contains(index)), "{kind:?}: {nodes:?}");
        }
    }
}

/// The web UI's task-run counts of a window (a week of a long history) come off the
/// start-time index alone, its state included: fetching each run's row for its state took
/// 270 ms for a week of a busy year.
#[tokio::test]
async fn a_windows_task_run_counts_are_read_off_the_index_alone() {
    let app = TestApp::spawn().await;
    let db = app.db().await;
    db.execute(
        "INSERT INTO task_run (name, task_key, dynamic_key, state_type, start_time) \
         SELECT 't-' || i, 't', i::text, CASE WHEN i % 10 = 0 THEN 'FAILED' ELSE 'COMPLETED' END, \
           now() - i * interval '10 minutes' FROM generate_series(1, 20000) i",
        &[],
    )
    .await
    .unwrap();
    // Autovacuum marks a history this old all-visible; the index then answers alone.
    db.batch_execute("VACUUM ANALYZE task_run").await.unwrap();
    // Five minutes short of a week, clear of the runs' ten-minute steps.
    let week_ago =
        (chrono::Utc::now() - chrono::Duration::days(7) + chrono::Duration::minutes(5)).to_rfc3339();
    let filters = RunFilters {
        task_runs: Some(serde_json::from_value(json!({"start_time": {"after_": week_ago}})).unwrap()),
        ..Default::default()
    };
    let client = app.default_workspace_client().await;
    let plan = stratus_store::db::task_runs::count_by_state_plan(&client, &filters)
        .await
        .unwrap();
    let mut nodes = Vec::new();
    node_types(&plan[0]["Plan"], &mut nodes);
    assert!(
        nodes
            .iter()
            .any(|n| n == "Index Only Scan ix_task_run__start_time_state_type"),
        "{nodes:?}"
    );
    let counts: Value = app
        .post(
            "/api/ui/task_runs/count",
            json!({"task_runs": {"start_time": {"after_": week_ago}}}),
        )
        .await
        .body;
    // 1,007 ten-minute steps, every tenth Failed.
    assert_eq!(
        counts["COMPLETED"].as_i64().unwrap() + counts["FAILED"].as_i64().unwrap(),
        1007
    );
    assert_eq!(counts["FAILED"], 100);
}
