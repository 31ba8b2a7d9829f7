//! SQL for the `flow_run` table.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde::Serialize;
use serde_json::Value;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::db::runs::{self, micros_sql, state_from_row, RunTable, RunTiming, STATE_COLUMNS};
use crate::filters::{Query, RunFilters};
use stratus_domain::orchestration::FlowRunPolicy;
use stratus_domain::states::State;
use stratus_domain::time::{ts, ts_opt};

/// `FlowRunResponse`.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct FlowRun {
    pub id: Uuid,
    #[schemars(with = "chrono::DateTime<chrono::Utc>")]
    #[serde(with = "ts")]
    pub created: DateTime<Utc>,
    #[schemars(with = "chrono::DateTime<chrono::Utc>")]
    #[serde(with = "ts")]
    pub updated: DateTime<Utc>,
    pub name: String,
    pub flow_id: Uuid,
    pub state_id: Option<Uuid>,
    pub deployment_id: Option<Uuid>,
    pub deployment_version: Option<String>,
    pub work_queue_id: Option<Uuid>,
    pub work_queue_name: Option<String>,
    pub flow_version: Option<String>,
    pub parameters: Value,
    pub idempotency_key: Option<String>,
    pub context: Value,
    pub empirical_policy: FlowRunPolicy,
    pub tags: Value,
    pub parent_task_run_id: Option<Uuid>,
    /// The state summary and times, shared with task runs.
    #[serde(flatten)]
    pub timing: RunTiming,
    pub auto_scheduled: bool,
    pub infrastructure_document_id: Option<Uuid>,
    pub infrastructure_pid: Option<String>,
    pub created_by: Option<Value>,
    pub work_pool_id: Option<Uuid>,
    pub work_pool_name: Option<String>,
    pub state: Option<State>,
    pub job_variables: Option<Value>,
}

fn columns() -> String {
    format!(
        "fr.id, fr.created, fr.updated, fr.name, fr.flow_id, fr.state_id, fr.deployment_id, \
         fr.deployment_version, fr.work_queue_id, fr.work_queue_name, fr.flow_version, fr.parameters, \
         fr.idempotency_key, fr.context, fr.empirical_policy, fr.tags, fr.parent_task_run_id, \
         fr.state_type, fr.state_name, fr.run_count, fr.expected_start_time, \
         fr.next_scheduled_start_time, fr.start_time, fr.end_time, {total} AS total_run_micros, \
         fr.auto_scheduled, fr.infrastructure_document_id, fr.infrastructure_pid, fr.created_by, \
         fr.job_variables, fr.state_timestamp, {STATE_COLUMNS}, wq.name AS queue_name, \
         wp.id AS pool_id, wp.name AS pool_name",
        total = micros_sql("fr.total_run_time")
    )
}

const FROM: &str = "flow_run fr LEFT JOIN flow_run_state s ON s.id = fr.state_id \
    LEFT JOIN work_queue wq ON wq.id = fr.work_queue_id LEFT JOIN work_pool wp ON wp.id = wq.work_pool_id";

/// A run as the runs scatter plot draws it.
#[derive(Debug, Clone)]
pub struct ScatterPoint {
    pub id: Uuid,
    pub name: String,
    pub state_type: Option<String>,
    pub state_name: Option<String>,
    /// When it started, or was expected to.
    pub start: DateTime<Utc>,
    /// How long it ran (so far, if it runs).
    pub seconds: f64,
}

/// Up to `limit` of the runs `filters` match, newest expected start first, with only what
/// the scatter plot draws: no joins, no JSON columns.
pub async fn scatter(
    c: &impl GenericClient,
    filters: &RunFilters,
    limit: i64,
) -> Result<Vec<ScatterPoint>, tokio_postgres::Error> {
    let mut q = Query::default();
    let cond = RunTable::Flow.condition(filters, &mut q);
    let sql = format!(
        "SELECT fr.id, fr.name, fr.state_type, fr.state_name, \
           coalesce(fr.start_time, fr.expected_start_time) AS start, \
           {total} + CASE WHEN fr.state_type = 'RUNNING' AND fr.state_timestamp IS NOT NULL \
             THEN greatest(0, {running}) ELSE 0 END AS micros \
         FROM flow_run fr WHERE {cond} AND coalesce(fr.start_time, fr.expected_start_time) IS NOT NULL \
         ORDER BY fr.expected_start_time DESC LIMIT {}",
        q.bind(limit),
        total = micros_sql("fr.total_run_time"),
        running = micros_sql("(now() - fr.state_timestamp)"),
    );
    c.query(sql.as_str(), &q.params())
        .await?
        .iter()
        .map(|r| {
            Ok(ScatterPoint {
                id: r.try_get("id")?,
                name: r.try_get("name")?,
                state_type: r.try_get("state_type")?,
                state_name: r.try_get("state_name")?,
                start: r.try_get("start")?,
                seconds: stratus_domain::time::seconds(r.try_get("micros")?),
            })
        })
        .collect()
}

pub fn from_row(row: &Row, now: DateTime<Utc>) -> Result<FlowRun, tokio_postgres::Error> {
    let policy: Value = row.try_get("empirical_policy")?;
    let queue_name: Option<String> = row.try_get("queue_name")?;
    Ok(FlowRun {
        id: row.try_get("id")?,
        created: row.try_get("created")?,
        updated: row.try_get("updated")?,
        name: row.try_get("name")?,
        flow_id: row.try_get("flow_id")?,
        state_id: row.try_get("state_id")?,
        deployment_id: row.try_get("deployment_id")?,
        deployment_version: row.try_get("deployment_version")?,
        work_queue_id: row.try_get("work_queue_id")?,
        // From the queue relation when the run has a queue, else the raw column.
        work_queue_name: match queue_name {
            Some(name) => Some(name),
            None => row.try_get("work_queue_name")?,
        },
        flow_version: row.try_get("flow_version")?,
        parameters: row.try_get("parameters")?,
        idempotency_key: row.try_get("idempotency_key")?,
        context: row.try_get("context")?,
        empirical_policy: serde_json::from_value(policy).unwrap_or_default(),
        tags: row.try_get("tags")?,
        parent_task_run_id: row.try_get("parent_task_run_id")?,
        timing: RunTiming::from_row(row, now)?,
        auto_scheduled: row.try_get("auto_scheduled")?,
        infrastructure_document_id: row.try_get("infrastructure_document_id")?,
        infrastructure_pid: row.try_get("infrastructure_pid")?,
        created_by: row.try_get("created_by")?,
        work_pool_id: row.try_get("pool_id")?,
        work_pool_name: row.try_get("pool_name")?,
        job_variables: row.try_get("job_variables")?,
        state: state_from_row(row)?,
    })
}

runs::run_row!(FlowRun, RunTable::Flow, FlowRunSort);

/// The validated content of a `FlowRunCreate`.
#[derive(Debug, Clone)]
pub struct NewFlowRun {
    pub name: String,
    pub flow_id: Uuid,
    pub deployment_id: Option<Uuid>,
    pub flow_version: Option<String>,
    pub parameters: Value,
    pub context: Value,
    pub parent_task_run_id: Option<Uuid>,
    pub infrastructure_document_id: Option<Uuid>,
    pub empirical_policy: FlowRunPolicy,
    pub tags: Value,
    pub idempotency_key: Option<String>,
    pub work_queue_name: Option<String>,
    pub work_queue_id: Option<Uuid>,
    pub deployment_version: Option<String>,
    pub job_variables: Option<Value>,
}

impl NewFlowRun {
    /// The columns of the run's own insert, beside its id, policy and state bookkeeping.
    pub(crate) const COLUMNS: &'static str = "name, flow_id, deployment_id, flow_version, parameters, context, \
        parent_task_run_id, infrastructure_document_id, tags, idempotency_key, work_queue_name, job_variables, \
        work_queue_id, deployment_version";
    /// The unique key a repeated create meets.
    pub(crate) const CONFLICT: &'static str = "(flow_id, idempotency_key)";

    /// The values of [`Self::COLUMNS`], in order.
    pub(crate) fn values(&self) -> Vec<&(dyn ToSql + Sync)> {
        vec![
            &self.name,
            &self.flow_id,
            &self.deployment_id,
            &self.flow_version,
            &self.parameters,
            &self.context,
            &self.parent_task_run_id,
            &self.infrastructure_document_id,
            &self.tags,
            &self.idempotency_key,
            &self.work_queue_name,
            &self.job_variables,
            &self.work_queue_id,
            &self.deployment_version,
        ]
    }

    /// The id of the run a create with this flow and idempotency key made before.
    pub(crate) async fn existing(
        &self,
        c: &impl GenericClient,
    ) -> Result<Option<Uuid>, tokio_postgres::Error> {
        let stmt = c
            .prepare_cached("SELECT id FROM flow_run WHERE flow_id = $1 AND idempotency_key = $2")
            .await?;
        Ok(c.query_opt(&stmt, &[&self.flow_id, &self.idempotency_key])
            .await?
            .map(|r| r.get(0)))
    }
}

/// The keys of a `FlowRunUpdate` that were given.
#[derive(Debug, Clone, Default)]
pub struct FlowRunChanges {
    pub name: Option<String>,
    /// `Some(None)` sets the column to NULL; `None` leaves it as it is.
    pub flow_version: Option<Option<String>>,
    pub parameters: Option<Value>,
    pub empirical_policy: Option<FlowRunPolicy>,
    pub tags: Option<Value>,
    pub infrastructure_pid: Option<Option<String>>,
    pub job_variables: Option<Option<Value>>,
}

pub async fn update(
    c: &impl GenericClient,
    id: Uuid,
    changes: &FlowRunChanges,
) -> Result<bool, tokio_postgres::Error> {
    let mut q = Query::default();
    let mut sets = vec!["updated = now()".to_string()];
    if let Some(v) = &changes.name {
        sets.push(format!("name = {}", q.bind(v.clone())));
    }
    if let Some(v) = &changes.flow_version {
        sets.push(format!("flow_version = {}", q.bind(v.clone())));
    }
    if let Some(v) = &changes.parameters {
        sets.push(format!("parameters = {}", q.bind(v.clone())));
    }
    if let Some(v) = &changes.empirical_policy {
        sets.push(format!(
            "empirical_policy = {}",
            q.bind(serde_json::to_value(v).unwrap_or(Value::Null))
        ));
    }
    if let Some(v) = &changes.tags {
        sets.push(format!("tags = {}", q.bind(v.clone())));
    }
    if let Some(v) = &changes.infrastructure_pid {
        sets.push(format!("infrastructure_pid = {}", q.bind(v.clone())));
    }
    if let Some(v) = &changes.job_variables {
        sets.push(format!("job_variables = {}", q.bind(v.clone())));
    }
    let sql = format!(
        "UPDATE flow_run SET {} WHERE id = {}",
        sets.join(", "),
        q.bind(id)
    );
    Ok(c.execute(sql.as_str(), &q.params()).await? > 0)
}

#[derive(Debug, Clone, Copy)]
pub enum FlowRunSort {
    IdDesc,
    StartTimeAsc,
    StartTimeDesc,
    ExpectedStartTimeAsc,
    ExpectedStartTimeDesc,
    NameAsc,
    NameDesc,
    NextScheduledStartTimeAsc,
    EndTimeDesc,
}

impl FlowRunSort {
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "ID_DESC" => FlowRunSort::IdDesc,
            "START_TIME_ASC" => FlowRunSort::StartTimeAsc,
            "START_TIME_DESC" => FlowRunSort::StartTimeDesc,
            "EXPECTED_START_TIME_ASC" => FlowRunSort::ExpectedStartTimeAsc,
            "EXPECTED_START_TIME_DESC" => FlowRunSort::ExpectedStartTimeDesc,
            "NAME_ASC" => FlowRunSort::NameAsc,
            "NAME_DESC" => FlowRunSort::NameDesc,
            "NEXT_SCHEDULED_START_TIME_ASC" => FlowRunSort::NextScheduledStartTimeAsc,
            "END_TIME_DESC" => FlowRunSort::EndTimeDesc,
            _ => return None,
        })
    }

    fn sql(self) -> &'static str {
        match self {
            FlowRunSort::IdDesc => "fr.id DESC",
            FlowRunSort::StartTimeAsc => "coalesce(fr.start_time, fr.expected_start_time) ASC, fr.id",
            FlowRunSort::StartTimeDesc => "coalesce(fr.start_time, fr.expected_start_time) DESC, fr.id",
            FlowRunSort::ExpectedStartTimeAsc => "fr.expected_start_time ASC, fr.id",
            FlowRunSort::ExpectedStartTimeDesc => "fr.expected_start_time DESC, fr.id",
            FlowRunSort::NameAsc => "fr.name ASC, fr.id",
            FlowRunSort::NameDesc => "fr.name DESC, fr.id",
            FlowRunSort::NextScheduledStartTimeAsc => "fr.next_scheduled_start_time ASC, fr.id",
            FlowRunSort::EndTimeDesc => "fr.end_time DESC, fr.id",
        }
    }
}

/// Average lateness in seconds of the matching runs, or None when there are none.
pub async fn lateness(
    c: &impl GenericClient,
    filters: &RunFilters,
) -> Result<Option<f64>, tokio_postgres::Error> {
    let mut q = Query::default();
    let cond = filters.flow_run_sql(&mut q);
    let sql = format!(
        "SELECT avg(CASE \
           WHEN fr.start_time IS NOT NULL AND fr.start_time > fr.expected_start_time \
             THEN extract(epoch from fr.start_time - fr.expected_start_time) \
           WHEN fr.start_time IS NULL AND fr.expected_start_time < now() \
             AND coalesce(fr.state_type, '') NOT IN ('COMPLETED','FAILED','CANCELLED','CRASHED') \
             THEN extract(epoch from now() - fr.expected_start_time) \
           ELSE 0 END)::float8 \
         FROM flow_run fr WHERE {cond}"
    );
    Ok(c.query_one(sql.as_str(), &q.params()).await?.get(0))
}

/// One row of `/flow_runs/{id}/graph`.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct GraphNode {
    pub id: Uuid,
    pub name: String,
    pub upstream_dependencies: Vec<Value>,
    pub state: Option<State>,
    #[schemars(with = "Option<chrono::DateTime<chrono::Utc>>")]
    #[serde(with = "ts_opt")]
    pub expected_start_time: Option<DateTime<Utc>>,
    #[schemars(with = "Option<chrono::DateTime<chrono::Utc>>")]
    #[serde(with = "ts_opt")]
    pub start_time: Option<DateTime<Utc>>,
    #[schemars(with = "Option<chrono::DateTime<chrono::Utc>>")]
    #[serde(with = "ts_opt")]
    pub end_time: Option<DateTime<Utc>>,
    pub total_run_time: f64,
    pub estimated_run_time: f64,
    pub untrackable_result: bool,
}

/// The task-run references among a task run's inputs (`{"input_type": "task_run", "id"}`).
fn upstream_task_runs(inputs: &Value) -> Vec<Value> {
    inputs
        .as_object()
        .into_iter()
        .flat_map(|map| map.values())
        .filter_map(Value::as_array)
        .flatten()
        .filter(|item| item.get("input_type").and_then(Value::as_str) == Some("task_run"))
        .cloned()
        .collect()
}

pub async fn graph(
    c: &impl GenericClient,
    flow_run_id: Uuid,
) -> Result<Vec<GraphNode>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT tr.id, tr.name, tr.task_inputs, tr.state_type, tr.state_name, tr.run_count, \
         tr.expected_start_time, tr.next_scheduled_start_time, tr.start_time, tr.end_time, \
         {total} AS total_run_micros, tr.state_timestamp, {STATE_COLUMNS} \
         FROM task_run tr LEFT JOIN task_run_state s ON s.id = tr.state_id \
         WHERE tr.flow_run_id = $1 ORDER BY tr.expected_start_time, tr.id LIMIT 10000",
        total = micros_sql("tr.total_run_time")
    );
    let now = Utc::now();
    let rows = c.query(sql.as_str(), &[&flow_run_id]).await?;
    rows.iter()
        .map(|r| {
            let timing = RunTiming::from_row(r, now)?;
            let state = state_from_row(r)?;
            Ok(GraphNode {
                id: r.try_get("id")?,
                name: r.try_get("name")?,
                upstream_dependencies: upstream_task_runs(&r.try_get::<_, Value>("task_inputs")?),
                untrackable_result: state.as_ref().is_some_and(|s| s.state_details.untrackable_result),
                state,
                expected_start_time: timing.expected_start_time,
                start_time: timing.start_time,
                end_time: timing.end_time,
                total_run_time: timing.total_run_time,
                estimated_run_time: timing.estimated_run_time,
            })
        })
        .collect()
}

/// One box of a drawn task graph: what the UI needs, without the states' payloads.
#[derive(Debug, Clone)]
pub struct GraphOutlineNode {
    pub id: Uuid,
    pub name: String,
    pub state_type: Option<String>,
    pub upstream: Vec<Uuid>,
}

/// The first `limit` task runs of a flow run (in start order) with the task runs their
/// inputs came from, and how many task runs the flow run has in all. Cheaper than
/// [`graph`] for wide runs: no state rows are read or decoded.
pub async fn graph_outline(
    c: &impl GenericClient,
    flow_run_id: Uuid,
    limit: i64,
) -> Result<(Vec<GraphOutlineNode>, i64), tokio_postgres::Error> {
    let rows = c
        .query(
            "SELECT tr.id, tr.name, tr.state_type, tr.task_inputs, count(*) OVER () AS total \
             FROM task_run tr WHERE tr.flow_run_id = $1 \
             ORDER BY tr.expected_start_time, tr.id LIMIT $2",
            &[&flow_run_id, &limit],
        )
        .await?;
    let total = match rows.first() {
        Some(r) => r.try_get("total")?,
        None => 0,
    };
    let nodes = rows
        .iter()
        .map(|r| {
            Ok(GraphOutlineNode {
                id: r.try_get("id")?,
                name: r.try_get("name")?,
                state_type: r.try_get("state_type")?,
                upstream: upstream_task_runs(&r.try_get::<_, Value>("task_inputs")?)
                    .iter()
                    .filter_map(|d| d.get("id")?.as_str()?.parse().ok())
                    .collect(),
            })
        })
        .collect::<Result<_, tokio_postgres::Error>>()?;
    Ok((nodes, total))
}

/// Most nodes `/flow_runs/{id}/graph-v2` returns (`PREFECT_API_MAX_FLOW_RUN_GRAPH_NODES`).
pub const MAX_GRAPH_NODES: i64 = 10_000;

/// One node of the v2 graph: a task run, or a subflow run standing in for its parent task.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct GraphV2Node {
    pub kind: &'static str,
    pub id: Uuid,
    pub label: String,
    pub state_type: Option<String>,
    #[schemars(with = "Option<chrono::DateTime<chrono::Utc>>")]
    #[serde(with = "ts_opt")]
    pub start_time: Option<DateTime<Utc>>,
    #[schemars(with = "Option<chrono::DateTime<chrono::Utc>>")]
    #[serde(with = "ts_opt")]
    pub end_time: Option<DateTime<Utc>>,
    pub parents: Vec<Value>,
    pub children: Vec<Value>,
    pub artifacts: Vec<Value>,
}

/// The nodes of a flow run's v2 graph that ended at or after `since`, with edges from the
/// task runs' inputs; None when there are more than [`MAX_GRAPH_NODES`].
pub async fn graph_v2_nodes(
    c: &impl GenericClient,
    flow_run_id: Uuid,
    since: Option<DateTime<Utc>>,
) -> Result<Option<Vec<GraphV2Node>>, tokio_postgres::Error> {
    let sql = "SELECT CASE WHEN sub.id IS NULL THEN 'task-run' ELSE 'flow-run' END AS kind, \
         tr.id AS task_run_id, coalesce(sub.id, tr.id) AS id, coalesce(sub.name, tr.name) AS label, \
         coalesce(sub.state_type, tr.state_type) AS state_type, \
         coalesce(sub.start_time, sub.expected_start_time, tr.start_time, tr.expected_start_time) AS start_time, \
         coalesce(sub.end_time, tr.end_time) AS end_time, \
         coalesce((SELECT array_agg(DISTINCT (arg->>'id')::uuid) FROM jsonb_each(tr.task_inputs) inp, \
             jsonb_array_elements(CASE WHEN jsonb_typeof(inp.value) = 'array' THEN inp.value ELSE '[]'::jsonb END) arg \
             WHERE arg->>'input_type' = 'task_run' AND arg->>'id' IS NOT NULL), '{}'::uuid[]) AS upstream \
       FROM task_run tr LEFT JOIN flow_run sub ON sub.parent_task_run_id = tr.id \
       WHERE tr.flow_run_id = $1 AND tr.state_type IS DISTINCT FROM 'PENDING' \
         AND coalesce(sub.start_time, sub.expected_start_time, tr.start_time, tr.expected_start_time) IS NOT NULL \
         AND ($2::timestamptz IS NULL OR coalesce(sub.end_time, tr.end_time) IS NULL OR coalesce(sub.end_time, tr.end_time) >= $2) \
       ORDER BY 6, 3 LIMIT $3";
    let rows = c
        .query(sql, &[&flow_run_id, &since, &(MAX_GRAPH_NODES + 1)])
        .await?;
    if rows.len() as i64 > MAX_GRAPH_NODES {
        return Ok(None);
    }
    // Edges name task runs; a subflow's node is known by the subflow run's id instead.
    let node_of_task: std::collections::HashMap<Uuid, Uuid> = rows
        .iter()
        .map(|r| Ok((r.try_get("task_run_id")?, r.try_get("id")?)))
        .collect::<Result<_, tokio_postgres::Error>>()?;
    let mut nodes: Vec<GraphV2Node> = rows
        .iter()
        .map(|r| {
            let kind: String = r.try_get("kind")?;
            let upstream: Vec<Uuid> = r.try_get("upstream")?;
            Ok(GraphV2Node {
                kind: if kind == "flow-run" {
                    "flow-run"
                } else {
                    "task-run"
                },
                id: r.try_get("id")?,
                label: r.try_get("label")?,
                state_type: r.try_get("state_type")?,
                start_time: r.try_get("start_time")?,
                end_time: r.try_get("end_time")?,
                parents: upstream
                    .iter()
                    .filter_map(|t| node_of_task.get(t))
                    .map(|id| serde_json::json!({"id": id}))
                    .collect(),
                children: Vec::new(),
                artifacts: Vec::new(),
            })
        })
        .collect::<Result<_, tokio_postgres::Error>>()?;
    let mut children: std::collections::HashMap<Uuid, Vec<Value>> = std::collections::HashMap::new();
    for node in &nodes {
        for parent in &node.parents {
            if let Some(pid) = parent
                .get("id")
                .and_then(Value::as_str)
                .and_then(|s| s.parse().ok())
            {
                children
                    .entry(pid)
                    .or_default()
                    .push(serde_json::json!({"id": node.id}));
            }
        }
    }
    for node in &mut nodes {
        node.children = children.remove(&node.id).unwrap_or_default();
    }
    Ok(Some(nodes))
}
