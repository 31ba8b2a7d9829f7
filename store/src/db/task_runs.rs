//! SQL for the `task_run` table.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde::Serialize;
use serde_json::Value;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::db::runs::{self, micros_sql, state_from_row, RunTable, RunTiming, STATE_COLUMNS};
use crate::filters::{Query, RunFilters};
use stratus_domain::orchestration::TaskRunPolicy;
use stratus_domain::states::State;
use stratus_domain::time::{ts, ts_opt};

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct TaskRun {
    pub id: Uuid,
    #[schemars(with = "chrono::DateTime<chrono::Utc>")]
    #[serde(with = "ts")]
    pub created: DateTime<Utc>,
    #[schemars(with = "chrono::DateTime<chrono::Utc>")]
    #[serde(with = "ts")]
    pub updated: DateTime<Utc>,
    pub name: String,
    pub flow_run_id: Option<Uuid>,
    pub task_key: String,
    pub dynamic_key: String,
    pub cache_key: Option<String>,
    #[schemars(with = "Option<chrono::DateTime<chrono::Utc>>")]
    #[serde(with = "ts_opt")]
    pub cache_expiration: Option<DateTime<Utc>>,
    pub task_version: Option<String>,
    pub empirical_policy: TaskRunPolicy,
    pub tags: Value,
    pub state_id: Option<Uuid>,
    pub task_inputs: Value,
    pub flow_run_run_count: i32,
    /// The state summary and times, shared with flow runs.
    #[serde(flatten)]
    pub timing: RunTiming,
    pub state: Option<State>,
}

fn columns() -> String {
    format!(
        "tr.id, tr.created, tr.updated, tr.name, tr.flow_run_id, tr.task_key, tr.dynamic_key, \
         tr.cache_key, tr.cache_expiration, tr.task_version, tr.empirical_policy, tr.tags, \
         tr.state_id, tr.task_inputs, tr.state_type, tr.state_name, tr.run_count, \
         tr.flow_run_run_count, tr.expected_start_time, tr.next_scheduled_start_time, \
         tr.start_time, tr.end_time, {total} AS total_run_micros, tr.state_timestamp, {STATE_COLUMNS}",
        total = micros_sql("tr.total_run_time")
    )
}

const FROM: &str = "task_run tr LEFT JOIN task_run_state s ON s.id = tr.state_id";

pub fn from_row(row: &Row, now: DateTime<Utc>) -> Result<TaskRun, tokio_postgres::Error> {
    let policy: Value = row.try_get("empirical_policy")?;
    Ok(TaskRun {
        id: row.try_get("id")?,
        created: row.try_get("created")?,
        updated: row.try_get("updated")?,
        name: row.try_get("name")?,
        flow_run_id: row.try_get("flow_run_id")?,
        task_key: row.try_get("task_key")?,
        dynamic_key: row.try_get("dynamic_key")?,
        cache_key: row.try_get("cache_key")?,
        cache_expiration: row.try_get("cache_expiration")?,
        task_version: row.try_get("task_version")?,
        empirical_policy: serde_json::from_value(policy).unwrap_or_default(),
        tags: row.try_get("tags")?,
        state_id: row.try_get("state_id")?,
        task_inputs: row.try_get("task_inputs")?,
        flow_run_run_count: row.try_get("flow_run_run_count")?,
        timing: RunTiming::from_row(row, now)?,
        state: state_from_row(row)?,
    })
}

runs::run_row!(TaskRun, RunTable::Task, TaskRunSort);

/// The validated content of a `TaskRunCreate`.
#[derive(Debug, Clone)]
pub struct NewTaskRun {
    pub id: Option<Uuid>,
    pub name: String,
    pub flow_run_id: Option<Uuid>,
    pub task_key: String,
    pub dynamic_key: String,
    pub cache_key: Option<String>,
    pub cache_expiration: Option<DateTime<Utc>>,
    pub task_version: Option<String>,
    pub empirical_policy: TaskRunPolicy,
    pub tags: Value,
    pub task_inputs: Value,
}

impl NewTaskRun {
    /// The columns of the run's own insert, beside its id, policy and state bookkeeping.
    pub(crate) const COLUMNS: &'static str = "name, flow_run_id, task_key, dynamic_key, cache_key, \
        cache_expiration, task_version, tags, task_inputs";
    /// The unique key a repeated create meets.
    pub(crate) const CONFLICT: &'static str = "(flow_run_id, task_key, dynamic_key)";

    /// The values of [`Self::COLUMNS`], in order.
    pub(crate) fn values(&self) -> Vec<&(dyn ToSql + Sync)> {
        vec![
            &self.name,
            &self.flow_run_id,
            &self.task_key,
            &self.dynamic_key,
            &self.cache_key,
            &self.cache_expiration,
            &self.task_version,
            &self.tags,
            &self.task_inputs,
        ]
    }

    /// The id of the run a create with this flow run, task key and dynamic key made before.
    /// Autonomous tasks (no flow run) are matched too, which the unique key cannot do
    /// (its NULLs are distinct).
    pub(crate) async fn existing(
        &self,
        c: &impl GenericClient,
    ) -> Result<Option<Uuid>, tokio_postgres::Error> {
        // Two statements: `IS NOT DISTINCT FROM` would not be read off the unique index.
        let stmt = c
            .prepare_cached(match self.flow_run_id {
                Some(_) => "SELECT id FROM task_run WHERE flow_run_id = $1 AND task_key = $2 AND dynamic_key = $3",
                None => "SELECT id FROM task_run WHERE flow_run_id IS NULL AND $1::uuid IS NULL AND task_key = $2 AND dynamic_key = $3",
            })
            .await?;
        Ok(
            c.query_opt(&stmt, &[&self.flow_run_id, &self.task_key, &self.dynamic_key])
                .await?
                .map(|r| r.get(0)),
        )
    }
}

pub async fn rename(
    c: &impl GenericClient,
    id: Uuid,
    name: Option<&str>,
) -> Result<bool, tokio_postgres::Error> {
    let n = c
        .execute(
            "UPDATE task_run SET name = coalesce($2, name), updated = now() WHERE id = $1",
            &[&id, &name],
        )
        .await?;
    Ok(n > 0)
}

#[derive(Debug, Clone, Copy)]
pub enum TaskRunSort {
    IdDesc,
    ExpectedStartTimeAsc,
    ExpectedStartTimeDesc,
    NameAsc,
    NameDesc,
    NextScheduledStartTimeAsc,
    EndTimeDesc,
}

impl TaskRunSort {
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "ID_DESC" => TaskRunSort::IdDesc,
            "EXPECTED_START_TIME_ASC" => TaskRunSort::ExpectedStartTimeAsc,
            "EXPECTED_START_TIME_DESC" => TaskRunSort::ExpectedStartTimeDesc,
            "NAME_ASC" => TaskRunSort::NameAsc,
            "NAME_DESC" => TaskRunSort::NameDesc,
            "NEXT_SCHEDULED_START_TIME_ASC" => TaskRunSort::NextScheduledStartTimeAsc,
            "END_TIME_DESC" => TaskRunSort::EndTimeDesc,
            _ => return None,
        })
    }

    fn sql(self) -> &'static str {
        match self {
            TaskRunSort::IdDesc => "tr.id DESC",
            TaskRunSort::ExpectedStartTimeAsc => "tr.expected_start_time ASC, tr.id",
            TaskRunSort::ExpectedStartTimeDesc => "tr.expected_start_time DESC, tr.id",
            TaskRunSort::NameAsc => "tr.name ASC, tr.id",
            TaskRunSort::NameDesc => "tr.name DESC, tr.id",
            TaskRunSort::NextScheduledStartTimeAsc => "tr.next_scheduled_start_time ASC, tr.id",
            TaskRunSort::EndTimeDesc => "tr.end_time DESC, tr.id",
        }
    }
}

/// The ids and names of up to `limit` of a flow run's task runs, in start order: what a
/// page offers to filter by, without reading whole rows.
pub async fn names_in_flow_run(
    c: &impl GenericClient,
    flow_run_id: Uuid,
    limit: i64,
) -> Result<Vec<(Uuid, String)>, tokio_postgres::Error> {
    let rows = c
        .query(
            "SELECT id, name FROM task_run WHERE flow_run_id = $1 ORDER BY expected_start_time, id LIMIT $2",
            &[&flow_run_id, &limit],
        )
        .await?;
    rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
}

/// Task runs per state type (`/ui/task_runs/count`).
pub async fn count_by_state(
    c: &impl GenericClient,
    filters: &RunFilters,
) -> Result<Vec<(String, i64)>, tokio_postgres::Error> {
    let mut q = Query::default();
    let sql = count_by_state_sql(filters, &mut q);
    c.query(sql.as_str(), &q.params())
        .await?
        .iter()
        .map(|r| Ok((r.try_get("state_type")?, r.try_get("count")?)))
        .collect()
}

fn count_by_state_sql(filters: &RunFilters, q: &mut Query) -> String {
    let cond = filters.task_run_sql(q);
    format!(
        "SELECT tr.state_type, count(*) AS count FROM task_run tr WHERE {cond} AND tr.state_type IS NOT NULL \
         GROUP BY tr.state_type"
    )
}

/// The planner's plan of [`count_by_state`] for these filters (`EXPLAIN`, nothing is
/// run), for the test that checks a window's counts come off the start-time index alone.
pub async fn count_by_state_plan(
    c: &impl GenericClient,
    filters: &RunFilters,
) -> Result<Value, tokio_postgres::Error> {
    let mut q = Query::default();
    let sql = format!("EXPLAIN (FORMAT JSON) {}", count_by_state_sql(filters, &mut q));
    c.query_one(sql.as_str(), &q.params()).await?.try_get(0)
}

/// Terminal task runs by start-time bucket (`/ui/task_runs/dashboard/counts`): for each
/// bucket index, `(index, completed, failed)`, where failed counts FAILED and CRASHED, as
/// Prefect's dashboard does. `bounds` are the buckets' upper bounds in order: bucket `i`
/// holds runs that started before `bounds[i]` and at or after `bounds[i - 1]`; runs at or
/// after the last bound get index `bounds.len()`.
pub async fn terminal_counts_by_bucket(
    c: &impl GenericClient,
    filters: &RunFilters,
    bounds: &[DateTime<Utc>],
) -> Result<Vec<(i64, i64, i64)>, tokio_postgres::Error> {
    let mut q = Query::default();
    let cond = filters.task_run_sql(&mut q);
    let sql = format!(
        // width_bucket is a binary search over timestamps (no numeric epoch arithmetic per
        // row), and the fence (OFFSET 0) lets the planner see few buckets and hash them.
        "SELECT bucket::int8 AS bucket, sum(completed)::int8 AS completed, sum(failed)::int8 AS failed FROM ( \
           SELECT width_bucket(tr.start_time, {bounds}::timestamptz[]) AS bucket, \
             (tr.state_type = 'COMPLETED')::int AS completed, \
             (tr.state_type IN ('FAILED', 'CRASHED'))::int AS failed \
           FROM task_run tr \
           WHERE {cond} AND tr.state_type IN ('COMPLETED', 'FAILED', 'CRASHED', 'CANCELLED') \
             AND tr.start_time IS NOT NULL \
           OFFSET 0 \
         ) runs GROUP BY bucket ORDER BY bucket",
        bounds = q.bind(bounds.to_vec()),
    );
    c.query(sql.as_str(), &q.params())
        .await?
        .iter()
        .map(|r| {
            Ok((
                r.try_get("bucket")?,
                r.try_get("completed")?,
                r.try_get("failed")?,
            ))
        })
        .collect()
}
