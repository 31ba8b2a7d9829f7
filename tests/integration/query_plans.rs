//! The plans of the main list routes: a page comes off an index in order, not from every
//! matching row sorted (a flow's runs list once took 217 ms a request with 6,800 runs).

use crate::common;

use common::TestApp;
use serde_json::{json, Value};
use stratus_store::db::flow_runs::{FlowRun, FlowRunSort};
use stratus_store::db::runs;
use stratus_store::filters::RunFilters;

fn node_types(plan: &Value, out: &mut Vec<String>) {
    if let Some(kind) = plan.get("Node Type").and_then(Value::as_str) {
        let index = plan.get("Index Name").and_then(Value::as_str).unwrap_or_default();
        out.push(format!("{kind} {index}").trim().to_string());
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
    let plan = runs::filter_plan::<FlowRun>(&client, &filters, FlowRunSort::ExpectedStartTimeDesc, 50)
        .await
        .unwrap();
    let mut nodes = Vec::new();
    node_types(&plan[0]["Plan"], &mut nodes);
    assert!(
        !nodes.iter().any(|n| n.contains("Sort")),
        "the page is sorted, not read in order: {nodes:?}"
    );
    assert!(
        nodes
            .iter()
            .any(|n| n.contains("ix_flow_run__flow_id_expected_start_time")),
        "{nodes:?}"
    );
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
