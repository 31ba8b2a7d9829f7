//! What flow runs and task runs share: their state rows and computed time fields.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde::Serialize;
use serde_json::Value;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::db::rows::FromRow;
use crate::filters::{Query, RunFilters};
use stratus_domain::states::{State, StateDetails, StateType};
use stratus_domain::time::{ts, ts_opt};

/// Which of the two run tables a query is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunTable {
    Flow,
    Task,
}

impl RunTable {
    pub fn run_table(self) -> &'static str {
        match self {
            RunTable::Flow => "flow_run",
            RunTable::Task => "task_run",
        }
    }
    pub fn state_table(self) -> &'static str {
        match self {
            RunTable::Flow => "flow_run_state",
            RunTable::Task => "task_run_state",
        }
    }
    pub fn fk(self) -> &'static str {
        match self {
            RunTable::Flow => "flow_run_id",
            RunTable::Task => "task_run_id",
        }
    }
}

/// The seven state columns, to select from a state table aliased `s`; each is named
/// `s_<column>` so it cannot be mistaken for a run column of the same name.
pub const STATE_COLUMNS: &str = "s.id AS s_id, s.type AS s_type, s.name AS s_name, \
    s.timestamp AS s_timestamp, s.message AS s_message, s.data AS s_data, s.state_details AS s_state_details";

/// A row's state columns ([`STATE_COLUMNS`]), by name.
#[derive(FromRow)]
struct StateColumns {
    s_id: Option<Uuid>,
    s_type: Option<String>,
    s_name: Option<String>,
    s_timestamp: Option<DateTime<Utc>>,
    s_message: Option<String>,
    s_data: Option<Value>,
    s_state_details: Option<Value>,
}

/// Reads a row's [`STATE_COLUMNS`]; None when the run has no state.
pub fn state_from_row(row: &Row) -> Result<Option<State>, tokio_postgres::Error> {
    let s = StateColumns::try_from_row(row)?;
    let (Some(id), Some(name), Some(timestamp)) = (s.s_id, s.s_name, s.s_timestamp) else {
        return Ok(None);
    };
    Ok(Some(State {
        id,
        kind: s
            .s_type
            .as_deref()
            .and_then(StateType::parse)
            .unwrap_or(StateType::Pending),
        name,
        timestamp,
        message: s.s_message,
        data: s.s_data,
        state_details: s
            .s_state_details
            .and_then(|d| serde_json::from_value::<StateDetails>(d).ok())
            .unwrap_or_default(),
    }))
}

/// The state summary and times flow runs and task runs both carry, read from the run's
/// row: its `state_type`, `state_name`, `run_count`, the four times, `state_timestamp` and
/// `total_run_micros` (the total run time in microseconds).
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct RunTiming {
    pub state_type: Option<StateType>,
    pub state_name: Option<String>,
    pub run_count: i32,
    #[schemars(with = "Option<chrono::DateTime<chrono::Utc>>")]
    #[serde(with = "ts_opt")]
    pub expected_start_time: Option<DateTime<Utc>>,
    #[schemars(with = "Option<chrono::DateTime<chrono::Utc>>")]
    #[serde(with = "ts_opt")]
    pub next_scheduled_start_time: Option<DateTime<Utc>>,
    #[schemars(with = "Option<chrono::DateTime<chrono::Utc>>")]
    #[serde(with = "ts_opt")]
    pub start_time: Option<DateTime<Utc>>,
    #[schemars(with = "Option<chrono::DateTime<chrono::Utc>>")]
    #[serde(with = "ts_opt")]
    pub end_time: Option<DateTime<Utc>>,
    pub total_run_time: f64,
    pub estimated_run_time: f64,
    pub estimated_start_time_delta: f64,
}

impl RunTiming {
    pub fn from_row(row: &Row, now: DateTime<Utc>) -> Result<Self, tokio_postgres::Error> {
        let state_type: Option<String> = row.try_get("state_type")?;
        let state_type = state_type.as_deref().and_then(StateType::parse);
        let total_micros: i64 = row.try_get("total_run_micros")?;
        let start_time = row.try_get("start_time")?;
        let expected_start_time = row.try_get("expected_start_time")?;
        let state_timestamp: Option<DateTime<Utc>> = row.try_get("state_timestamp")?;
        Ok(RunTiming {
            state_type,
            state_name: row.try_get("state_name")?,
            run_count: row.try_get("run_count")?,
            expected_start_time,
            next_scheduled_start_time: row.try_get("next_scheduled_start_time")?,
            start_time,
            end_time: row.try_get("end_time")?,
            total_run_time: stratus_domain::time::seconds(total_micros),
            estimated_run_time: estimated_run_time(total_micros, state_type, state_timestamp, now),
            estimated_start_time_delta: estimated_start_time_delta(
                start_time,
                expected_start_time,
                state_type,
                now,
            ),
        })
    }
}

/// `(extract(epoch ...) * 1e6)::bigint` of an interval column, for reading durations.
pub fn micros_sql(col: &str) -> String {
    format!("(extract(epoch from {col}) * 1000000)::bigint")
}

/// `estimated_run_time`: total run time plus the time spent in the current RUNNING state.
fn estimated_run_time(
    total_micros: i64,
    state_type: Option<StateType>,
    state_timestamp: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> f64 {
    let mut micros = total_micros;
    if let (Some(StateType::Running), Some(since)) = (state_type, state_timestamp) {
        micros += (now - since).num_microseconds().unwrap_or(0).max(0);
    }
    stratus_domain::time::seconds(micros)
}

/// `estimated_start_time_delta`: how late the run started, or is, relative to expectation.
fn estimated_start_time_delta(
    start_time: Option<DateTime<Utc>>,
    expected_start_time: Option<DateTime<Utc>>,
    state_type: Option<StateType>,
    now: DateTime<Utc>,
) -> f64 {
    let Some(expected) = expected_start_time else {
        return 0.0;
    };
    match start_time {
        Some(start) if start > expected => {
            stratus_domain::time::seconds((start - expected).num_microseconds().unwrap_or(0))
        }
        None if !state_type.is_some_and(StateType::is_terminal) && expected < now => {
            stratus_domain::time::seconds((now - expected).num_microseconds().unwrap_or(0))
        }
        _ => 0.0,
    }
}

impl RunTable {
    /// The run table's alias in the queries of this module and the filters (`fr`, `tr`).
    pub fn alias(self) -> &'static str {
        match self {
            RunTable::Flow => "fr",
            RunTable::Task => "tr",
        }
    }

    /// The filters' conditions on this table's runs.
    pub fn condition(self, filters: &RunFilters, q: &mut Query) -> String {
        match self {
            RunTable::Flow => filters.flow_run_sql(q),
            RunTable::Task => filters.task_run_sql(q),
        }
    }
}

/// A row of one of the two run tables, read whole: what the reads they share need to
/// know of each (`FlowRun` and `TaskRun` implement it).
pub trait RunRow: Sized {
    const TABLE: RunTable;
    /// The orders `/filter` accepts, as Prefect's `FlowRunSort` and `TaskRunSort`.
    type Sort: Copy + Send + Sync + 'static;
    const DEFAULT_SORT: Self::Sort;
    /// `SELECT <columns> FROM <run> LEFT JOIN <its state s>`, the run aliased as its table's alias.
    fn select() -> &'static str;
    fn from_row(row: &Row, now: DateTime<Utc>) -> Result<Self, tokio_postgres::Error>;
    fn parse_sort(text: &str) -> Option<Self::Sort>;
    fn sort_sql(sort: Self::Sort) -> &'static str;
}

/// Implements [`RunRow`] for a run table's row type, from the `columns()`, `FROM` and
/// `from_row` of the module it is invoked in, and its sort type (with `parse` and `sql`).
macro_rules! run_row {
    ($row:ty, $table:expr, $sort:ty) => {
        impl $crate::db::runs::RunRow for $row {
            const TABLE: $crate::db::runs::RunTable = $table;
            type Sort = $sort;
            const DEFAULT_SORT: $sort = <$sort>::IdDesc;

            fn select() -> &'static str {
                static SELECT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
                SELECT.get_or_init(|| format!("SELECT {} FROM {FROM}", columns()))
            }

            fn from_row(row: &Row, now: DateTime<Utc>) -> Result<Self, tokio_postgres::Error> {
                from_row(row, now)
            }

            fn parse_sort(text: &str) -> Option<$sort> {
                <$sort>::parse(text)
            }

            fn sort_sql(sort: $sort) -> &'static str {
                sort.sql()
            }
        }
    };
}
pub(crate) use run_row;

pub async fn read<R: RunRow>(c: &impl GenericClient, id: Uuid) -> Result<Option<R>, tokio_postgres::Error> {
    let a = R::TABLE.alias();
    let stmt = c
        .prepare_cached(&format!("{} WHERE {a}.id = $1", R::select()))
        .await?;
    let now = Utc::now();
    c.query_opt(&stmt, &[&id])
        .await?
        .map(|r| R::from_row(&r, now))
        .transpose()
}

/// The runs with these ids that exist, in the order of `ids`.
pub async fn read_many<R: RunRow>(
    c: &impl GenericClient,
    ids: &[Uuid],
) -> Result<Vec<R>, tokio_postgres::Error> {
    let a = R::TABLE.alias();
    let stmt = c
        .prepare_cached(&format!(
            "{} JOIN unnest($1::uuid[]) WITH ORDINALITY AS wanted(id, n) ON wanted.id = {a}.id ORDER BY wanted.n",
            R::select()
        ))
        .await?;
    let now = Utc::now();
    c.query(&stmt, &[&ids])
        .await?
        .iter()
        .map(|r| R::from_row(r, now))
        .collect()
}

pub async fn filter<R: RunRow>(
    c: &impl GenericClient,
    filters: &RunFilters,
    sort: R::Sort,
    limit: i64,
    offset: i64,
) -> Result<Vec<R>, tokio_postgres::Error> {
    let (sql, q) = filter_sql::<R>(filters, sort, limit, offset);
    let now = Utc::now();
    // Only first pages are kept prepared: each offset is another text, and paging through
    // a list would use up the shapes a process keeps.
    let rows = match offset {
        0 => q.rows(c, &sql).await?,
        _ => q.rows_planned_once(c, &sql).await?,
    };
    rows.iter().map(|r| R::from_row(r, now)).collect()
}

fn filter_sql<R: RunRow>(filters: &RunFilters, sort: R::Sort, limit: i64, offset: i64) -> (String, Query) {
    let mut q = Query::default();
    let cond = R::TABLE.condition(filters, &mut q);
    // The page is written into the text, not bound: a kept statement's generic plan
    // would assume a bound LIMIT takes a tenth of the matching rows, cost the page at
    // hundreds of rows, and leave every execution planned anew for its values.
    let sql = format!(
        "{} WHERE {cond} ORDER BY {} LIMIT {limit} OFFSET {offset}",
        R::select(),
        R::sort_sql(sort),
    );
    (sql, q)
}

/// Which plan [`filter_plan`] shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanFor {
    /// The plan for these values, as a statement's first executions get.
    TheseValues,
    /// The generic plan a kept statement may settle on after them, made without looking
    /// at the values ([`crate::filters::Query::rows`] keeps runs lists prepared).
    AnyValues,
}

/// The planner's plan (`EXPLAIN (FORMAT JSON)`) of the query [`filter`] runs with these
/// arguments, for tests that check a list is read from an index in order.
pub async fn filter_plan<R: RunRow>(
    c: &impl GenericClient,
    filters: &RunFilters,
    sort: R::Sort,
    limit: i64,
    plan: PlanFor,
) -> Result<Value, tokio_postgres::Error> {
    let (sql, q) = filter_sql::<R>(filters, sort, limit, 0);
    if plan == PlanFor::TheseValues {
        return c
            .query_one(format!("EXPLAIN (FORMAT JSON) {sql}").as_str(), &q.params())
            .await?
            .try_get(0);
    }
    // EXPLAIN EXECUTE takes its arguments as SQL: each value is written as a literal of
    // its parameter's type, by Postgres itself.
    let stmt = c.prepare(&sql).await?;
    let mut args = Vec::new();
    for (ty, value) in stmt.params().iter().zip(q.params()) {
        let show = c
            .prepare_typed("SELECT $1::text", std::slice::from_ref(ty))
            .await?;
        let text: Option<String> = c.query_one(&show, &[value]).await?.try_get(0)?;
        args.push(match text {
            Some(text) => format!("'{}'::{}", text.replace('\'', "''"), ty.name()),
            None => format!("NULL::{}", ty.name()),
        });
    }
    let types: Vec<&str> = stmt.params().iter().map(|t| t.name()).collect();
    let plan = match c
        .batch_execute(&format!(
            "SET plan_cache_mode = force_generic_plan; PREPARE stratus_filter_plan ({}) AS {sql}",
            types.join(", ")
        ))
        .await
    {
        Ok(()) => {
            let explain = format!(
                "EXPLAIN (FORMAT JSON) EXECUTE stratus_filter_plan ({})",
                args.join(", ")
            );
            let plan = c.query_one(explain.as_str(), &[]).await;
            c.batch_execute("DEALLOCATE stratus_filter_plan").await?;
            plan
        }
        Err(e) => Err(e),
    };
    // Whatever happened, the connection goes back to the pool with its own plan mode.
    c.batch_execute("RESET plan_cache_mode").await?;
    plan?.try_get(0)
}

/// The cap of [`count_up_to`] whose statements are kept prepared: each cap is another
/// statement text, and a pager's deep pages must not use up the shapes a process keeps.
pub const COUNTED_UP_TO: i64 = 10_000;

/// [`count`], counting no further than `cap + 1`: a page that only says "more than" a
/// number reads at most that many rows, however many match.
pub async fn count_up_to(
    c: &impl GenericClient,
    table: RunTable,
    filters: &RunFilters,
    cap: i64,
) -> Result<i64, tokio_postgres::Error> {
    let mut q = Query::default();
    let cond = table.condition(filters, &mut q);
    let sql = format!(
        "SELECT count(*) FROM (SELECT 1 FROM {} {} WHERE {cond} LIMIT {}) matching",
        table.run_table(),
        table.alias(),
        cap.saturating_add(1)
    );
    let rows = match cap {
        COUNTED_UP_TO => q.rows(c, &sql).await?,
        _ => q.rows_planned_once(c, &sql).await?,
    };
    Ok(rows.first().map_or(0, |r| r.get(0)))
}

pub async fn count(
    c: &impl GenericClient,
    table: RunTable,
    filters: &RunFilters,
) -> Result<i64, tokio_postgres::Error> {
    let mut q = Query::default();
    let cond = table.condition(filters, &mut q);
    let sql = format!(
        "SELECT count(*) FROM {} {} WHERE {cond}",
        table.run_table(),
        table.alias()
    );
    let rows = q.rows(c, &sql).await?;
    Ok(rows.first().map_or(0, |r| r.get(0)))
}

pub async fn delete(
    c: &impl GenericClient,
    table: RunTable,
    id: Uuid,
) -> Result<bool, tokio_postgres::Error> {
    let sql = format!("DELETE FROM {} WHERE id = $1", table.run_table());
    Ok(c.execute(sql.as_str(), &[&id]).await? > 0)
}

/// One state by id, or every state of one run, oldest first.
pub async fn read_state(
    c: &impl GenericClient,
    table: RunTable,
    id: Uuid,
) -> Result<Option<StateOfRun>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT {STATE_COLUMNS}, s.{fk} AS run_id, s.created, s.updated FROM {st} s WHERE s.id = $1",
        fk = table.fk(),
        st = table.state_table()
    );
    let Some(row) = c.query_opt(sql.as_str(), &[&id]).await? else {
        return Ok(None);
    };
    state_with_run(&row)
}

pub async fn read_states_of_run(
    c: &impl GenericClient,
    table: RunTable,
    run_id: Uuid,
) -> Result<Vec<StateOfRun>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT {STATE_COLUMNS}, s.{fk} AS run_id, s.created, s.updated FROM {st} s WHERE s.{fk} = $1 \
         ORDER BY s.timestamp",
        fk = table.fk(),
        st = table.state_table()
    );
    let mut states = Vec::new();
    for row in c.query(sql.as_str(), &[&run_id]).await? {
        states.extend(state_with_run(&row)?);
    }
    Ok(states)
}

/// One interval of `/flow_runs/history` and `/task_runs/history`.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct HistoryInterval {
    #[schemars(with = "chrono::DateTime<chrono::Utc>")]
    #[serde(with = "ts")]
    pub interval_start: DateTime<Utc>,
    #[schemars(with = "chrono::DateTime<chrono::Utc>")]
    #[serde(with = "ts")]
    pub interval_end: DateTime<Utc>,
    pub states: Vec<HistoryState>,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct HistoryState {
    pub state_type: String,
    pub state_name: String,
    pub count_runs: i64,
    pub sum_estimated_run_time: f64,
    pub sum_estimated_lateness: f64,
}

/// Flow runs (or task runs) matching `filters` per interval by state, bucketed on
/// `expected_start_time`, as Prefect 2.20's `run_history` does
/// (`src/prefect/server/api/run_history.py`).
pub async fn history(
    c: &impl GenericClient,
    table: RunTable,
    filters: &RunFilters,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    interval_micros: i64,
) -> Result<Vec<HistoryInterval>, tokio_postgres::Error> {
    let mut q = Query::default();
    let (a, from_where) = match table {
        RunTable::Flow => (
            "fr",
            format!("flow_run fr WHERE {}", filters.flow_run_sql(&mut q)),
        ),
        RunTable::Task => (
            "tr",
            format!("task_run tr WHERE {}", filters.task_run_sql(&mut q)),
        ),
    };
    // Each run's interval is worked out from its time (the intervals are `start + n *
    // step`) and the runs are grouped before meeting the intervals: joining each interval
    // to the runs in its range compared every interval with every run (a second a
    // dashboard over 30,000 runs).
    let sql = format!(
        "WITH intervals AS ( \
           SELECT s.n, s.g AS interval_start, s.g + {step}::float8 * interval '1 microsecond' AS interval_end \
           FROM generate_series({start}::timestamptz, {end}::timestamptz, {step}::float8 * interval '1 microsecond') \
             WITH ORDINALITY AS s(g, n) \
           WHERE s.g < {end}::timestamptz \
         ), runs AS ( \
           SELECT 1 + floor(extract(epoch from {a}.expected_start_time - {start}::timestamptz) * 1000000 / {step}::float8)::int8 AS n, \
             {a}.state_type, {a}.state_name, \
             extract(epoch from {a}.total_run_time) + CASE WHEN {a}.state_type = 'RUNNING' \
               THEN extract(epoch from now() - {a}.state_timestamp) ELSE 0 END AS run_time, \
             CASE WHEN {a}.start_time IS NOT NULL AND {a}.start_time > {a}.expected_start_time \
               THEN extract(epoch from {a}.start_time - {a}.expected_start_time) \
               WHEN {a}.start_time IS NULL AND {a}.expected_start_time < now() \
                 AND coalesce({a}.state_type, '') NOT IN ('COMPLETED','FAILED','CANCELLED','CRASHED') \
               THEN extract(epoch from now() - {a}.expected_start_time) ELSE 0 END AS lateness \
           FROM {from_where} AND {a}.expected_start_time >= {start}::timestamptz \
             AND {a}.expected_start_time < {end}::timestamptz AND {a}.state_type IS NOT NULL \
         ), grouped AS ( \
           SELECT n, state_type, state_name, count(*) AS count_runs, \
             sum(run_time)::float8 AS sum_estimated_run_time, sum(lateness)::float8 AS sum_estimated_lateness \
           FROM runs GROUP BY n, state_type, state_name \
         ) \
         SELECT i.interval_start, i.interval_end, r.state_type, r.state_name, coalesce(r.count_runs, 0) AS count_runs, \
           coalesce(r.sum_estimated_run_time, 0)::float8 AS sum_estimated_run_time, \
           coalesce(r.sum_estimated_lateness, 0)::float8 AS sum_estimated_lateness \
         FROM intervals i LEFT JOIN grouped r ON r.n = i.n \
         ORDER BY i.interval_start, r.state_type, r.state_name",
        step = q.bind(interval_micros as f64),
        start = q.bind(start),
        end = q.bind(end),
    );
    let rows = c.query(sql.as_str(), &q.params()).await?;
    let mut out: Vec<HistoryInterval> = Vec::new();
    for r in rows {
        let interval_start: DateTime<Utc> = r.try_get("interval_start")?;
        if out.last().map(|i| i.interval_start) != Some(interval_start) {
            out.push(HistoryInterval {
                interval_start,
                interval_end: r.try_get("interval_end")?,
                states: Vec::new(),
            });
        }
        let state_type: Option<String> = r.try_get("state_type")?;
        if let (Some(state_type), Some(last)) = (state_type, out.last_mut()) {
            last.states.push(HistoryState {
                state_type,
                state_name: r.try_get::<_, Option<String>>("state_name")?.unwrap_or_default(),
                count_runs: r.try_get("count_runs")?,
                sum_estimated_run_time: r.try_get("sum_estimated_run_time")?,
                sum_estimated_lateness: r.try_get("sum_estimated_lateness")?,
            });
        }
    }
    Ok(out)
}

/// A state with its run's id and its `created` and `updated`.
pub type StateOfRun = (Uuid, DateTime<Utc>, DateTime<Utc>, State);

fn state_with_run(row: &Row) -> Result<Option<StateOfRun>, tokio_postgres::Error> {
    let Some(state) = state_from_row(row)? else {
        return Ok(None);
    };
    Ok(Some((
        row.try_get("run_id")?,
        row.try_get("created")?,
        row.try_get("updated")?,
        state,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    #[test]
    fn lateness_follows_prefect() {
        let now = Utc::now();
        let expected = now - Duration::seconds(10);
        // Started 2 s late.
        let d = estimated_start_time_delta(Some(expected + Duration::seconds(2)), Some(expected), None, now);
        assert!((d - 2.0).abs() < 1e-6);
        // Not started, still pending: late by now - expected.
        let d = estimated_start_time_delta(None, Some(expected), Some(StateType::Pending), now);
        assert!((d - 10.0).abs() < 1e-6);
        // Terminal without a start: not late.
        assert_eq!(
            estimated_start_time_delta(None, Some(expected), Some(StateType::Cancelled), now),
            0.0
        );
    }

    #[test]
    fn running_time_grows_while_running() {
        let now = Utc::now();
        let t = estimated_run_time(
            1_500_000,
            Some(StateType::Running),
            Some(now - Duration::seconds(2)),
            now,
        );
        assert!((t - 3.5).abs() < 1e-6);
        assert_eq!(
            estimated_run_time(1_500_000, Some(StateType::Completed), Some(now), now),
            1.5
        );
    }
}
