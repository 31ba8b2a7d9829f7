//! SQL for work pools, their queues and workers, and the poll that hands scheduled runs
//! to workers and agents.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::db::given;
use crate::db::rows::{self, FromRow};
use crate::filters::{Query, TextFilter};
pub use crate::filters::{WorkPoolFilter, WorkQueueFilter};
use stratus_domain::time::{ts, ts_opt};

/// The pool legacy work queues and agents live in.
pub const DEFAULT_AGENT_POOL: &str = "default-agent-pool";
pub const AGENT_POOL_TYPE: &str = "prefect-agent";
pub const DEFAULT_QUEUE: &str = "default";
/// SQL over a `worker w` row: the seconds of silence after which the worker is offline,
/// three of its heartbeat intervals (30 s when it gave none), as Prefect counts. In bigint:
/// a worker may send any interval, and three times the largest int overflows. A macro, so
/// that statements can `concat!` it.
macro_rules! worker_timeout_seconds {
    () => {
        "(3 * coalesce(w.heartbeat_interval_seconds, 30)::bigint)"
    };
}
pub(crate) use worker_timeout_seconds;

#[derive(Debug, Clone, Serialize, FromRow, schemars::JsonSchema)]
pub struct WorkPool {
    pub id: Uuid,
    #[schemars(with = "chrono::DateTime<chrono::Utc>")]
    #[serde(with = "ts")]
    pub created: DateTime<Utc>,
    #[schemars(with = "chrono::DateTime<chrono::Utc>")]
    #[serde(with = "ts")]
    pub updated: DateTime<Utc>,
    pub name: String,
    pub description: Option<String>,
    #[serde(rename = "type")]
    #[from_row(rename = "type")]
    pub kind: String,
    pub base_job_template: Value,
    pub is_paused: bool,
    pub concurrency_limit: Option<i32>,
    pub status: Option<String>,
    pub default_queue_id: Option<Uuid>,
}

const POOL_COLUMNS: &str = "wp.id, wp.created, wp.updated, wp.name, wp.description, wp.type, \
    wp.base_job_template, wp.is_paused, wp.concurrency_limit, wp.status, wp.default_queue_id";

#[derive(Debug, Clone, Serialize, FromRow, schemars::JsonSchema)]
pub struct WorkQueue {
    pub id: Uuid,
    #[schemars(with = "chrono::DateTime<chrono::Utc>")]
    #[serde(with = "ts")]
    pub created: DateTime<Utc>,
    #[schemars(with = "chrono::DateTime<chrono::Utc>")]
    #[serde(with = "ts")]
    pub updated: DateTime<Utc>,
    pub name: String,
    pub description: String,
    pub is_paused: bool,
    pub concurrency_limit: Option<i32>,
    pub priority: i32,
    pub work_pool_id: Uuid,
    pub filter: Option<Value>,
    #[schemars(with = "Option<chrono::DateTime<chrono::Utc>>")]
    #[serde(with = "ts_opt")]
    pub last_polled: Option<DateTime<Utc>>,
    pub work_pool_name: String,
    pub status: String,
}

const QUEUE_COLUMNS: &str = "wq.id, wq.created, wq.updated, wq.name, wq.description, wq.is_paused, \
    wq.concurrency_limit, wq.priority, wq.work_pool_id, wq.filter, wq.last_polled, wp.name AS work_pool_name, wq.status";

#[derive(Debug, Clone, Serialize, FromRow, schemars::JsonSchema)]
pub struct Worker {
    pub id: Uuid,
    #[schemars(with = "chrono::DateTime<chrono::Utc>")]
    #[serde(with = "ts")]
    pub created: DateTime<Utc>,
    #[schemars(with = "chrono::DateTime<chrono::Utc>")]
    #[serde(with = "ts")]
    pub updated: DateTime<Utc>,
    pub name: String,
    pub work_pool_id: Uuid,
    #[schemars(with = "chrono::DateTime<chrono::Utc>")]
    #[serde(with = "ts")]
    pub last_heartbeat_time: DateTime<Utc>,
    pub heartbeat_interval_seconds: Option<i32>,
    pub status: String,
}

/// Workers' status is derived from their heartbeat, so it is right without a sweeper.
const WORKER_STATUS: &str = concat!(
    "CASE WHEN w.last_heartbeat_time >= now() - ",
    worker_timeout_seconds!(),
    " * interval '1 second' THEN 'ONLINE' ELSE 'OFFLINE' END"
);
static WORKER_COLUMNS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "w.id, w.created, w.updated, w.name, w.work_pool_id, w.last_heartbeat_time, \
         w.heartbeat_interval_seconds, {WORKER_STATUS} AS status"
    )
});

pub struct NewPool<'a> {
    pub name: &'a str,
    pub description: Option<&'a str>,
    pub kind: &'a str,
    pub base_job_template: &'a Value,
    pub is_paused: bool,
    pub concurrency_limit: Option<i32>,
}

/// A pool's status when created: agent pools have none; others start NOT_READY or PAUSED.
fn initial_status(kind: &str, is_paused: bool) -> Option<&'static str> {
    match (kind == AGENT_POOL_TYPE, is_paused) {
        (true, _) => None,
        (false, true) => Some("PAUSED"),
        (false, false) => Some("NOT_READY"),
    }
}

/// Creates a pool with its `default` queue; None when the name is taken.
pub async fn create_pool(
    c: &impl GenericClient,
    p: &NewPool<'_>,
) -> Result<Option<WorkPool>, tokio_postgres::Error> {
    let sql = format!(
        "INSERT INTO work_pool AS wp (name, description, type, base_job_template, is_paused, concurrency_limit, status) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (workspace_id, name) DO NOTHING RETURNING {POOL_COLUMNS}"
    );
    let status = initial_status(p.kind, p.is_paused);
    let Some(row) = c
        .query_opt(
            sql.as_str(),
            &[
                &p.name,
                &p.description,
                &p.kind,
                p.base_job_template,
                &p.is_paused,
                &p.concurrency_limit,
                &status,
            ],
        )
        .await?
    else {
        return Ok(None);
    };
    let mut pool: WorkPool = rows::one(&row)?;
    let queue: Uuid = c
        .query_one(
            "INSERT INTO work_queue (name, priority, work_pool_id) VALUES ($1, 1, $2) RETURNING id",
            &[&DEFAULT_QUEUE, &pool.id],
        )
        .await?
        .get(0);
    c.execute(
        "UPDATE work_pool SET default_queue_id = $2 WHERE id = $1",
        &[&pool.id, &queue],
    )
    .await?;
    pool.default_queue_id = Some(queue);
    Ok(Some(pool))
}

pub async fn read_pool_by_name(
    c: &impl GenericClient,
    name: &str,
) -> Result<Option<WorkPool>, tokio_postgres::Error> {
    let stmt = c
        .prepare_cached(&format!(
            "SELECT {POOL_COLUMNS} FROM work_pool wp WHERE wp.name = $1"
        ))
        .await?;
    rows::maybe(c.query_opt(&stmt, &[&name]).await?)
}

/// The pool, created (as an agent pool) if missing: `default-agent-pool` appears on demand.
/// None only if it was deleted while being created.
pub async fn ensure_pool(
    c: &impl GenericClient,
    name: &str,
) -> Result<Option<WorkPool>, tokio_postgres::Error> {
    if let Some(pool) = read_pool_by_name(c, name).await? {
        return Ok(Some(pool));
    }
    let template = Value::Object(Default::default());
    let new = NewPool {
        name,
        description: None,
        kind: AGENT_POOL_TYPE,
        base_job_template: &template,
        is_paused: false,
        concurrency_limit: None,
    };
    match create_pool(c, &new).await? {
        Some(pool) => Ok(Some(pool)),
        None => read_pool_by_name(c, name).await,
    }
}

#[derive(Debug, Clone, Default)]
/// `Some(None)` sets a nullable column to NULL; `None` leaves it as it is.
pub struct PoolChanges {
    pub description: Option<Option<String>>,
    pub is_paused: Option<bool>,
    pub base_job_template: Option<Value>,
    pub concurrency_limit: Option<Option<i32>>,
}

/// Applies the changes; pausing sets PAUSED, unpausing READY if a worker is online, else
/// NOT_READY (agent pools keep no status).
pub async fn update_pool(
    c: &impl GenericClient,
    id: Uuid,
    ch: &PoolChanges,
) -> Result<bool, tokio_postgres::Error> {
    let (set_limit, limit) = given(&ch.concurrency_limit);
    let (set_description, description) = given(&ch.description);
    let n = c
        .execute(
            concat!(
                "UPDATE work_pool SET description = CASE WHEN $7 THEN $2 ELSE description END, \
                 is_paused = coalesce($3, is_paused), \
                 base_job_template = coalesce($4, base_job_template), \
                 concurrency_limit = CASE WHEN $5 THEN $6 ELSE concurrency_limit END, \
                 status = CASE WHEN type = 'prefect-agent' THEN NULL \
                     WHEN $3 IS NULL THEN status \
                     WHEN $3 THEN 'PAUSED' \
                     WHEN EXISTS (SELECT 1 FROM worker w WHERE w.work_pool_id = work_pool.id \
                         AND w.last_heartbeat_time >= now() - ",
                worker_timeout_seconds!(),
                " * interval '1 second') \
                       THEN 'READY' ELSE 'NOT_READY' END, \
                 updated = now() WHERE id = $1"
            ),
            &[
                &id,
                &description,
                &ch.is_paused,
                &ch.base_job_template,
                &set_limit,
                &limit,
                &set_description,
            ],
        )
        .await?;
    Ok(n > 0)
}

pub async fn delete_pool(c: &impl GenericClient, id: Uuid) -> Result<bool, tokio_postgres::Error> {
    c.execute(
        "UPDATE work_pool SET default_queue_id = NULL WHERE id = $1",
        &[&id],
    )
    .await?;
    Ok(c.execute("DELETE FROM work_pool WHERE id = $1", &[&id]).await? > 0)
}

fn pool_filter_sql(f: &WorkPoolFilter, q: &mut Query) -> String {
    f.sql(q, "wp")
}

pub async fn filter_pools(
    c: &impl GenericClient,
    f: &WorkPoolFilter,
    limit: i64,
    offset: i64,
) -> Result<Vec<WorkPool>, tokio_postgres::Error> {
    let mut q = Query::default();
    let cond = pool_filter_sql(f, &mut q);
    let sql = format!(
        "SELECT {POOL_COLUMNS} FROM work_pool wp WHERE {cond} ORDER BY wp.name LIMIT {} OFFSET {}",
        q.bind(limit),
        q.bind(offset)
    );
    rows::all(c.query(sql.as_str(), &q.params()).await?)
}

pub async fn count_pools(c: &impl GenericClient, f: &WorkPoolFilter) -> Result<i64, tokio_postgres::Error> {
    let mut q = Query::default();
    let cond = pool_filter_sql(f, &mut q);
    let sql = format!("SELECT count(*) FROM work_pool wp WHERE {cond}");
    Ok(c.query_one(sql.as_str(), &q.params()).await?.get(0))
}

// ---- queues -------------------------------------------------------------------------------

pub struct NewQueue<'a> {
    pub name: &'a str,
    pub description: &'a str,
    pub is_paused: bool,
    pub concurrency_limit: Option<i32>,
    pub priority: Option<i32>,
    pub filter: Option<Value>,
}

/// Creates a queue in the pool (lowest priority unless given; a given priority moves the
/// queues at or below it down one); None when the name is taken.
pub async fn create_queue(
    c: &impl GenericClient,
    pool_id: Uuid,
    q: &NewQueue<'_>,
) -> Result<Option<WorkQueue>, tokio_postgres::Error> {
    if read_queue_by_name(c, pool_id, q.name).await?.is_some() {
        return Ok(None);
    }
    if let Some(priority) = q.priority {
        c.execute(
            "UPDATE work_queue SET priority = priority + 1 WHERE work_pool_id = $1 AND priority >= $2",
            &[&pool_id, &priority],
        )
        .await?;
    }
    let row = c
        .query_opt(
            "INSERT INTO work_queue (name, description, is_paused, concurrency_limit, priority, filter, work_pool_id, status) \
             SELECT $1, $2, $3, $4, coalesce($5, (SELECT coalesce(max(priority), 0) + 1 FROM work_queue WHERE work_pool_id = $7)), \
                    $6, $7, CASE WHEN $3 THEN 'PAUSED' ELSE 'NOT_READY' END \
             ON CONFLICT (work_pool_id, name) DO NOTHING RETURNING id",
            &[&q.name, &q.description, &q.is_paused, &q.concurrency_limit, &q.priority, &q.filter, &pool_id],
        )
        .await?;
    match row {
        Some(r) => read_queue(c, r.get(0)).await,
        None => Ok(None),
    }
}

pub async fn read_queue(
    c: &impl GenericClient,
    id: Uuid,
) -> Result<Option<WorkQueue>, tokio_postgres::Error> {
    let sql = format!("SELECT {QUEUE_COLUMNS} FROM work_queue wq JOIN work_pool wp ON wp.id = wq.work_pool_id WHERE wq.id = $1");
    rows::maybe(c.query_opt(sql.as_str(), &[&id]).await?)
}

pub async fn read_queue_by_name(
    c: &impl GenericClient,
    pool_id: Uuid,
    name: &str,
) -> Result<Option<WorkQueue>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT {QUEUE_COLUMNS} FROM work_queue wq JOIN work_pool wp ON wp.id = wq.work_pool_id \
         WHERE wq.work_pool_id = $1 AND wq.name = $2"
    );
    rows::maybe(c.query_opt(sql.as_str(), &[&pool_id, &name]).await?)
}

/// A legacy queue by name: in the default agent pool, or in any pool (the oldest queue)
/// when that pool does not exist (Prefect 2.20 `models/work_queues.py`
/// `read_work_queue_by_name`).
pub async fn read_legacy_queue_by_name(
    c: &impl GenericClient,
    name: &str,
) -> Result<Option<WorkQueue>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT {QUEUE_COLUMNS} FROM work_queue wq JOIN work_pool wp ON wp.id = wq.work_pool_id \
         WHERE wq.name = $1 AND (wp.name = $2 OR NOT EXISTS (SELECT 1 FROM work_pool WHERE name = $2)) \
         ORDER BY wq.created, wq.id LIMIT 1"
    );
    rows::maybe(c.query_opt(sql.as_str(), &[&name, &DEFAULT_AGENT_POOL]).await?)
}

#[derive(Debug, Clone, Default)]
pub struct QueueChanges {
    pub name: Option<String>,
    pub description: Option<String>,
    pub is_paused: Option<bool>,
    pub concurrency_limit: Option<Option<i32>>,
    pub priority: Option<i32>,
    pub last_polled: Option<Option<DateTime<Utc>>>,
    /// The deprecated tag filter of legacy queues.
    pub filter: Option<Option<Value>>,
}

/// Applies the changes. A new priority shifts the queues between the old and new positions,
/// so priorities stay distinct.
pub async fn update_queue(
    c: &impl GenericClient,
    queue: &WorkQueue,
    ch: &QueueChanges,
) -> Result<(), tokio_postgres::Error> {
    if let Some(priority) = ch.priority.filter(|p| *p != queue.priority) {
        if priority < queue.priority {
            c.execute(
                "UPDATE work_queue SET priority = priority + 1 WHERE work_pool_id = $1 AND priority >= $2 AND priority < $3",
                &[&queue.work_pool_id, &priority, &queue.priority],
            )
            .await?;
        } else {
            c.execute(
                "UPDATE work_queue SET priority = priority - 1 WHERE work_pool_id = $1 AND priority > $3 AND priority <= $2",
                &[&queue.work_pool_id, &priority, &queue.priority],
            )
            .await?;
        }
    }
    let (set_limit, limit) = given(&ch.concurrency_limit);
    let (set_polled, last_polled) = given(&ch.last_polled);
    let (set_filter, filter) = given(&ch.filter);
    c.execute(
        "UPDATE work_queue SET name = coalesce($2, name), description = coalesce($3, description), \
         is_paused = coalesce($4, is_paused), concurrency_limit = CASE WHEN $5 THEN $6 ELSE concurrency_limit END, \
         priority = coalesce($7, priority), last_polled = CASE WHEN $10 THEN $8 ELSE last_polled END, \
         filter = CASE WHEN $11 THEN $9 ELSE filter END, \
         status = CASE WHEN $4 IS NULL THEN status WHEN $4 THEN 'PAUSED' \
             WHEN last_polled >= now() - interval '60 seconds' THEN 'READY' ELSE 'NOT_READY' END, \
         updated = now() WHERE id = $1",
        &[
            &queue.id, &ch.name, &ch.description, &ch.is_paused, &set_limit, &limit, &ch.priority,
            &last_polled, &filter, &set_polled, &set_filter,
        ],
    )
    .await?;
    Ok(())
}

/// Legacy tag-filter queues that would pick up a deployment: their filter's tags are a
/// subset of the deployment's, and its deployment ids (if any) include it.
pub async fn queues_matching_deployment(
    c: &impl GenericClient,
    deployment_id: Uuid,
    tags: &Value,
) -> Result<Vec<WorkQueue>, tokio_postgres::Error> {
    let sql = format!(
        "SELECT {QUEUE_COLUMNS} FROM work_queue wq JOIN work_pool wp ON wp.id = wq.work_pool_id \
         WHERE wq.filter IS NOT NULL AND jsonb_typeof(wq.filter) = 'object' \
           AND $2::jsonb @> coalesce(nullif(wq.filter->'tags', 'null'::jsonb), '[]'::jsonb) \
           AND (coalesce(nullif(wq.filter->'deployment_ids', 'null'::jsonb), '[]'::jsonb) = '[]'::jsonb \
                OR wq.filter->'deployment_ids' ? $1::text) \
         ORDER BY wq.priority, wq.name"
    );
    rows::all(c.query(sql.as_str(), &[&deployment_id.to_string(), tags]).await?)
}

pub async fn delete_queue(c: &impl GenericClient, id: Uuid) -> Result<bool, tokio_postgres::Error> {
    Ok(c.execute("DELETE FROM work_queue WHERE id = $1", &[&id]).await? > 0)
}

pub async fn filter_queues(
    c: &impl GenericClient,
    pool_id: Option<Uuid>,
    f: &WorkQueueFilter,
    limit: i64,
    offset: i64,
) -> Result<Vec<WorkQueue>, tokio_postgres::Error> {
    let mut q = Query::default();
    let mut cond = f.sql(&mut q, "wq");
    if let Some(pool) = pool_id {
        cond = format!("wq.work_pool_id = {} AND {cond}", q.bind(pool));
    }
    let sql = format!(
        "SELECT {QUEUE_COLUMNS} FROM work_queue wq JOIN work_pool wp ON wp.id = wq.work_pool_id \
         WHERE {cond} ORDER BY wq.priority, wq.name LIMIT {} OFFSET {}",
        q.bind(limit),
        q.bind(offset)
    );
    rows::all(c.query(sql.as_str(), &q.params()).await?)
}

// ---- workers ------------------------------------------------------------------------------

/// Records a worker's heartbeat; a NOT_READY pool becomes READY.
pub async fn heartbeat(
    c: &impl GenericClient,
    pool_id: Uuid,
    name: &str,
    interval: Option<i32>,
) -> Result<(), tokio_postgres::Error> {
    c.execute(
        "INSERT INTO worker (name, work_pool_id, heartbeat_interval_seconds, last_heartbeat_time, status) \
         VALUES ($1, $2, $3, now(), 'ONLINE') ON CONFLICT (work_pool_id, name) DO UPDATE \
         SET last_heartbeat_time = now(), status = 'ONLINE', \
             heartbeat_interval_seconds = coalesce(EXCLUDED.heartbeat_interval_seconds, worker.heartbeat_interval_seconds), \
             updated = now()",
        &[&name, &pool_id, &interval],
    )
    .await?;
    c.execute(
        "UPDATE work_pool SET status = 'READY', last_transitioned_status_at = now() WHERE id = $1 AND status = 'NOT_READY'",
        &[&pool_id],
    )
    .await?;
    Ok(())
}

/// Records that `worker` of the pool claimed `run` (within the claim's transaction): from
/// now on the worker must name the run in its heartbeats, or upkeep marks it Crashed.
pub async fn record_claim(
    c: &impl GenericClient,
    run: Uuid,
    pool_id: Uuid,
    worker: &str,
) -> Result<(), tokio_postgres::Error> {
    c.execute(
        "INSERT INTO flow_run_claim (flow_run_id, work_pool_id, worker_name) VALUES ($1, $2, $3) \
         ON CONFLICT (flow_run_id) DO UPDATE SET work_pool_id = EXCLUDED.work_pool_id, \
             worker_name = EXCLUDED.worker_name, claimed = now(), seen = now()",
        &[&run, &pool_id, &worker],
    )
    .await?;
    Ok(())
}

/// Whether `run` is Pending under a claim of this same worker: an agent whose claim was
/// written but whose answer was lost (the server stopped, the connection dropped) gets
/// the run again when its message comes back, instead of leaving it to be Crashed.
pub async fn reclaim(
    c: &impl GenericClient,
    run: Uuid,
    pool_id: Uuid,
    worker: &str,
) -> Result<bool, tokio_postgres::Error> {
    let n = c
        .execute(
            "UPDATE flow_run_claim c SET seen = now() FROM flow_run fr \
             WHERE c.flow_run_id = $1 AND fr.id = c.flow_run_id AND c.work_pool_id = $2 \
               AND c.worker_name = $3 AND fr.state_type = 'PENDING'",
            &[&run, &pool_id, &worker],
        )
        .await?;
    Ok(n == 1)
}

/// The runs a worker's heartbeat says it still executes: their claims are fresh again.
/// Only the worker's own claims count, so a restarted agent of the same name does not
/// keep alive the runs its previous process left behind.
pub async fn refresh_claims(
    c: &impl GenericClient,
    pool_id: Uuid,
    worker: &str,
    runs: &[Uuid],
) -> Result<u64, tokio_postgres::Error> {
    if runs.is_empty() {
        return Ok(0);
    }
    c.execute(
        "UPDATE flow_run_claim SET seen = now() \
         WHERE work_pool_id = $1 AND worker_name = $2 AND flow_run_id = ANY($3)",
        &[&pool_id, &worker, &runs],
    )
    .await
}

#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkerFilter {
    #[serde(default)]
    pub operator: Option<crate::filters::Operator>,
    #[serde(default)]
    pub last_heartbeat_time: Option<crate::filters::TimeFilter>,
    #[serde(default)]
    pub status: Option<TextFilter>,
}

/// Workers of a pool, newest heartbeat first.
pub async fn filter_workers(
    c: &impl GenericClient,
    pool_id: Uuid,
    f: &WorkerFilter,
    limit: i64,
    offset: i64,
) -> Result<Vec<Worker>, tokio_postgres::Error> {
    let mut q = Query::default();
    let mut parts = vec![format!("w.work_pool_id = {}", q.bind(pool_id))];
    if let Some(t) = &f.last_heartbeat_time {
        if let Some(before) = t.before_ {
            parts.push(format!("w.last_heartbeat_time <= {}", q.bind(before)));
        }
        if let Some(after) = t.after_ {
            parts.push(format!("w.last_heartbeat_time >= {}", q.bind(after)));
        }
    }
    let status = WORKER_STATUS;
    if let Some(s) = &f.status {
        if let Some(any) = &s.any_ {
            parts.push(format!("{status} = ANY({}::text[])", q.bind(any.clone())));
        }
        if let Some(not_any) = &s.not_any_ {
            parts.push(format!(
                "NOT ({status} = ANY({}::text[]))",
                q.bind(not_any.clone())
            ));
        }
    }
    let sql = format!(
        "SELECT {} FROM worker w WHERE {} ORDER BY w.last_heartbeat_time DESC LIMIT {} OFFSET {}",
        *WORKER_COLUMNS,
        parts.join(" AND "),
        q.bind(limit),
        q.bind(offset)
    );
    rows::all(c.query(sql.as_str(), &q.params()).await?)
}

pub async fn delete_worker(
    c: &impl GenericClient,
    pool_id: Uuid,
    name: &str,
) -> Result<bool, tokio_postgres::Error> {
    Ok(c.execute(
        "DELETE FROM worker WHERE work_pool_id = $1 AND name = $2",
        &[&pool_id, &name],
    )
    .await?
        > 0)
}

// ---- the poll -----------------------------------------------------------------------------

/// A scheduled run handed to a worker: `{work_pool_id, work_queue_id, flow_run}`.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct WorkerFlowRun {
    pub work_pool_id: Uuid,
    pub work_queue_id: Uuid,
    pub flow_run: Value,
}

pub struct Poll {
    pub queue_ids: Vec<Uuid>,
    pub scheduled_before: Option<DateTime<Utc>>,
    pub scheduled_after: Option<DateTime<Utc>>,
    pub limit: i64,
}

/// How long a run a poll handed out is kept from other polls, unless its state changes
/// first (being marked Late, which the scheduler may do meanwhile, is no change here): Prefect's worker proposes Pending within a second of its poll. Short, because a
/// worker at its `--limit` drops what it cannot take, and those runs wait this long.
pub const OFFER_SECONDS: f64 = 3.0;

/// A run (aliased `r`) that takes room under its queue's and pool's concurrency limits:
/// Pending or Running, or handed out by a poll whose offer still lasts (a state change
/// other than a Late mark clears the offer, `transitions::apply`). A macro, so that the
/// statements built from it stay constants.
macro_rules! busy_run {
    () => {
        "(r.state_type IN ('RUNNING','PENDING') OR (r.state_type = 'SCHEDULED' AND r.offered_until > now()))"
    };
}

/// Marks the queues whose ids are the array at the given placeholder (and their
/// deployments) polled now: READY, `last_polled` now. Pollers of one queue would queue up
/// behind each other's row locks for this bookkeeping: a row another poll is marking, or
/// one marked within the last second, is left as it is. Two statements, or two CTEs of
/// the poll's.
macro_rules! mark_polled {
    (queues: $ids:literal) => {
        concat!(
            "UPDATE work_queue SET last_polled = now(), status = CASE WHEN is_paused THEN 'PAUSED' ELSE 'READY' END \
             WHERE id IN (SELECT id FROM work_queue WHERE id = ANY(",
            $ids,
            ") AND (last_polled IS NULL OR last_polled < now() - interval '1 second' \
                 OR status <> CASE WHEN is_paused THEN 'PAUSED' ELSE 'READY' END) \
               FOR NO KEY UPDATE SKIP LOCKED)"
        )
    };
    (deployments: $ids:literal) => {
        concat!(
            "UPDATE deployment SET last_polled = now(), status = 'READY' \
             WHERE id IN (SELECT id FROM deployment WHERE work_queue_id = ANY(",
            $ids,
            ") AND (last_polled IS NULL OR last_polled < now() - interval '1 second' OR status <> 'READY') \
               FOR NO KEY UPDATE SKIP LOCKED)"
        )
    };
}

/// A page of queue `q`'s Scheduled runs in the poll's window (`$3`, `$4`) whose offer
/// `$offer` picks, soonest first, locked (those another poll holds are skipped): the poll
/// reads the runs never offered and those whose offer ended alike, each off its index.
macro_rules! due_runs {
    ($offer:literal) => {
        concat!(
            "SELECT fr.id, fr.next_scheduled_start_time FROM flow_run fr \
             WHERE fr.work_queue_id = q.id AND fr.state_type = 'SCHEDULED' AND ",
            $offer,
            " AND coalesce(fr.empirical_policy->>'retry_type', '') <> 'in_process' \
               AND fr.next_scheduled_start_time <= coalesce($3::timestamptz, 'infinity') \
               AND fr.next_scheduled_start_time >= coalesce($4::timestamptz, '-infinity') \
             ORDER BY fr.next_scheduled_start_time, fr.id LIMIT q.room \
             FOR UPDATE OF fr SKIP LOCKED"
        )
    };
}

/// The poll: each queue's due runs, soonest first, at most its room (`$5` or what its
/// limit leaves), not held by another poll nor offered to one, marked offered, in the
/// order they are handed out (queue priority, then time); the queues marked polled. Runs
/// never offered (or whose offer a state change cleared) and runs whose offer ended are
/// read off two indexes, so live offers are never walked past (`V16`). Each of the two
/// locks up to a page; what the page leaves out stays locked until the poll commits, and
/// a poll meanwhile hands out later runs instead. `offered_state_id` records the state an
/// offer was made in; `offered_until` alone says whether it lasts.
const POLL_SQL: &str = concat!(
    "WITH queues AS ( \
       SELECT wq.id, wq.priority, \
         CASE WHEN wq.concurrency_limit IS NULL THEN $5::bigint ELSE least($5::bigint, greatest(0, wq.concurrency_limit - \
           (SELECT count(*) FROM flow_run r WHERE r.work_queue_id = wq.id AND ",
    busy_run!(),
    "))) END AS room \
       FROM work_queue wq WHERE wq.work_pool_id = $1 AND NOT wq.is_paused AND wq.id = ANY($2) \
     ), offered AS ( \
       SELECT due.id, q.id AS queue_id, q.priority, due.next_scheduled_start_time FROM queues q CROSS JOIN LATERAL ( \
         SELECT never.id, never.next_scheduled_start_time FROM (",
    due_runs!("fr.offered_until IS NULL"),
    ") never UNION ALL SELECT ended.id, ended.next_scheduled_start_time FROM (",
    due_runs!("fr.offered_until < now()"),
    ") ended \
         ORDER BY 2, 1 LIMIT q.room \
       ) due \
       ORDER BY q.priority, due.next_scheduled_start_time, due.id LIMIT $5::bigint \
     ), handed AS ( \
       UPDATE flow_run fr SET offered_state_id = fr.state_id, \
         offered_until = now() + $6::float8 * interval '1 second' \
       FROM offered o WHERE fr.id = o.id RETURNING fr.id, o.queue_id, o.priority, o.next_scheduled_start_time \
     ), polled_queues AS (",
    mark_polled!(queues: "$2"),
    "), polled_deployments AS (",
    mark_polled!(deployments: "$2"),
    ") SELECT id, queue_id FROM handed ORDER BY priority, next_scheduled_start_time, id"
);

/// Up to `limit` of a pool's runs waiting for a worker (Scheduled or Pending), soonest
/// first: each queue's Scheduled runs off the poll's two indexes (those on offer, handed
/// out in the last seconds or dropped by their worker, are few and sorted here), its
/// Pending ones off the busy runs' index, so the page reads a few runs per queue however
/// long the history. (As a
/// runs filter on the pool, it walked the table's `next_scheduled_start_time` index past
/// every finished run: half a second at a million runs.)
pub async fn waiting_runs(
    c: &impl GenericClient,
    pool_id: Uuid,
    limit: i64,
) -> Result<Vec<crate::db::flow_runs::FlowRun>, tokio_postgres::Error> {
    let stmt = c
        .prepare_cached(
            "SELECT w.id FROM work_queue wq CROSS JOIN LATERAL ( \
               (SELECT fr.id, fr.next_scheduled_start_time FROM flow_run fr \
                WHERE fr.work_queue_id = wq.id AND fr.state_type = 'SCHEDULED' AND fr.offered_until IS NULL \
                ORDER BY fr.next_scheduled_start_time, fr.id LIMIT $2) \
               UNION ALL \
               (SELECT fr.id, fr.next_scheduled_start_time FROM flow_run fr \
                WHERE fr.work_queue_id = wq.id AND fr.state_type = 'SCHEDULED' AND fr.offered_until IS NOT NULL \
                ORDER BY fr.next_scheduled_start_time, fr.id LIMIT $2) \
               UNION ALL \
               (SELECT fr.id, fr.next_scheduled_start_time FROM flow_run fr \
                WHERE fr.work_queue_id = wq.id AND fr.state_type = 'PENDING' \
                ORDER BY fr.next_scheduled_start_time, fr.id LIMIT $2) \
             ) w WHERE wq.work_pool_id = $1 \
             ORDER BY w.next_scheduled_start_time NULLS LAST, w.id LIMIT $2",
        )
        .await?;
    let ids: Vec<Uuid> = c
        .query(&stmt, &[&pool_id, &limit])
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?;
    crate::db::runs::read_many(c, &ids).await
}

/// The planner's plan of the poll's statement (`EXPLAIN`, nothing is run), for the test
/// that checks it reads due runs off their index.
pub async fn poll_plan(
    c: &impl GenericClient,
    pool_id: Uuid,
    poll: &Poll,
) -> Result<Value, tokio_postgres::Error> {
    c.query_one(
        format!("EXPLAIN (FORMAT JSON) {POLL_SQL}").as_str(),
        &[
            &pool_id,
            &poll.queue_ids,
            &poll.scheduled_before,
            &poll.scheduled_after,
            &poll.limit,
            &OFFER_SECONDS,
        ],
    )
    .await?
    .try_get(0)
}

/// SCHEDULED runs in the given queues of an unpaused pool, by queue priority then time,
/// within the pool's and each queue's concurrency limit, that no other poll was handed in
/// the last [`OFFER_SECONDS`] (unless its state changed since, a Late mark excepted) or
/// holds right now. Each queue's due runs are read soonest first off its indexes, at most
/// a page of them; the runs handed out are marked offered. Marks the queues (and their
/// deployments) polled and ready.
pub async fn scheduled_runs(
    c: &impl GenericClient,
    pool: &WorkPool,
    poll: &Poll,
) -> Result<Vec<WorkerFlowRun>, tokio_postgres::Error> {
    // Where the pool or one of its queues has a limit, polls (and claims, `claim_check`)
    // take turns on the pool's row: each then counts the runs the one before handed out.
    if !pool.is_paused {
        let stmt = c
            .prepare_cached(
                "SELECT 1 FROM work_pool p WHERE p.id = $1 AND (p.concurrency_limit IS NOT NULL \
                   OR EXISTS (SELECT 1 FROM work_queue q WHERE q.work_pool_id = p.id AND q.concurrency_limit IS NOT NULL)) \
                 FOR NO KEY UPDATE OF p",
            )
            .await?;
        c.execute(&stmt, &[&pool.id]).await?;
    }
    let limit = match pool.concurrency_limit {
        _ if pool.is_paused => 0,
        None => poll.limit,
        Some(cap) => {
            // Runs handed out and not yet Pending count as busy while their offer lasts.
            let stmt = c
                .prepare_cached(concat!(
                    "SELECT count(*) FROM flow_run r JOIN work_queue wq ON wq.id = r.work_queue_id \
                     WHERE wq.work_pool_id = $1 AND ",
                    busy_run!()
                ))
                .await?;
            let busy: i64 = c.query_one(&stmt, &[&pool.id]).await?.get(0);
            (i64::from(cap) - busy).clamp(0, poll.limit)
        }
    };
    if limit == 0 {
        mark_polled(c, &poll.queue_ids).await?;
        return Ok(Vec::new());
    }
    let stmt = c.prepare_cached(POLL_SQL).await?;
    let picked: Vec<(Uuid, Uuid)> = c
        .query(
            &stmt,
            &[
                &pool.id,
                &poll.queue_ids,
                &poll.scheduled_before,
                &poll.scheduled_after,
                &limit,
                &OFFER_SECONDS,
            ],
        )
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<_, tokio_postgres::Error>>()?;
    if picked.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = picked.iter().map(|(id, _)| *id).collect();
    let mut runs = Vec::with_capacity(ids.len());
    let queue_of: HashMap<Uuid, Uuid> = picked.into_iter().collect();
    // In the poll's order, which `read_many` keeps.
    for run in crate::db::runs::read_many::<crate::db::flow_runs::FlowRun>(c, &ids).await? {
        let queue_id = queue_of.get(&run.id).copied().unwrap_or_default();
        let mut value = serde_json::to_value(&run).unwrap_or(Value::Null);
        if let Some(map) = value.as_object_mut() {
            // The poll's runs are the core FlowRun: no state, the raw queue name.
            map.insert("state".into(), Value::Null);
            map.remove("work_pool_id");
            map.remove("work_pool_name");
        }
        runs.push(WorkerFlowRun {
            work_pool_id: pool.id,
            work_queue_id: queue_id,
            flow_run: value,
        });
    }
    Ok(runs)
}

/// Queues (and their deployments) polled now are marked so ([`mark_polled!`]).
async fn mark_polled(c: &impl GenericClient, queue_ids: &[Uuid]) -> Result<(), tokio_postgres::Error> {
    let queues = c.prepare_cached(mark_polled!(queues: "$1")).await?;
    c.execute(&queues, &[&queue_ids]).await?;
    let deployments = c.prepare_cached(mark_polled!(deployments: "$1")).await?;
    c.execute(&deployments, &[&queue_ids]).await?;
    Ok(())
}

pub async fn queue_ids(c: &impl GenericClient, pool_id: Uuid) -> Result<Vec<Uuid>, tokio_postgres::Error> {
    Ok(c.query(
        &c.prepare_cached("SELECT id FROM work_queue WHERE work_pool_id = $1")
            .await?,
        &[&pool_id],
    )
    .await?
    .iter()
    .map(|r| r.get(0))
    .collect())
}

/// The legacy agent poll: SCHEDULED runs whose `work_queue_name` is the queue's name (runs
/// are matched by name, not id), soonest first, within the queue's concurrency limit.
pub async fn runs_for_agent(
    c: &impl GenericClient,
    queue: &WorkQueue,
    scheduled_before: Option<DateTime<Utc>>,
    limit: i64,
) -> Result<Vec<Uuid>, tokio_postgres::Error> {
    if queue.is_paused {
        return Ok(Vec::new());
    }
    let mut limit = limit;
    if let Some(cap) = queue.concurrency_limit {
        let busy: i64 = c
            .query_one(
                "SELECT count(*) FROM flow_run WHERE work_queue_name = $1 AND state_type IN ('RUNNING','PENDING','CANCELLING')",
                &[&queue.name],
            )
            .await?
            .get(0);
        limit = limit.min((i64::from(cap) - busy).max(0));
    }
    let rows = c
        .query(
            "SELECT id FROM flow_run WHERE work_queue_name = $1 AND state_type = 'SCHEDULED' \
             AND ($2::timestamptz IS NULL OR next_scheduled_start_time <= $2) \
             ORDER BY next_scheduled_start_time, id LIMIT $3 FOR UPDATE SKIP LOCKED",
            &[&queue.name, &scheduled_before, &limit],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Records a poll of the queue: `last_polled`, READY status, its deployments, the agent.
pub async fn record_poll(
    c: &impl GenericClient,
    queue: &WorkQueue,
    agent_id: Option<Uuid>,
) -> Result<(), tokio_postgres::Error> {
    mark_polled(c, std::slice::from_ref(&queue.id)).await?;
    if let Some(agent) = agent_id {
        c.execute(
            "INSERT INTO agent (id, name, work_queue_id, last_activity_time) VALUES ($1, $2, $3, now()) \
             ON CONFLICT (id) DO UPDATE SET last_activity_time = now(), work_queue_id = EXCLUDED.work_queue_id",
            &[&agent, &agent.to_string(), &queue.id],
        )
        .await?;
    }
    Ok(())
}

/// Late runs in the queue and whether it was polled recently: the queue's health.
pub async fn late_runs(c: &impl GenericClient, queue: &WorkQueue) -> Result<i64, tokio_postgres::Error> {
    Ok(c.query_one(
        "SELECT count(*) FROM flow_run WHERE work_queue_id = $1 AND state_name = 'Late' AND state_type = 'SCHEDULED'",
        &[&queue.id],
    )
    .await?
    .get(0))
}

/// Why a pool's run may not start now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hold {
    PoolPaused,
    QueuePaused,
    /// The pool runs as many as its concurrency limit allows.
    PoolFull(i32),
    QueueFull(i32),
    /// The flow is retrying in the process that ran it: no one else may claim it.
    RetryingInProcess,
}

impl Hold {
    /// Seconds before asking again; None when asking again is pointless.
    pub fn retry_after(&self) -> Option<u32> {
        match self {
            Hold::PoolPaused | Hold::QueuePaused => Some(30),
            Hold::PoolFull(_) | Hold::QueueFull(_) => Some(5),
            Hold::RetryingInProcess => None,
        }
    }
}

impl std::fmt::Display for Hold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Hold::PoolPaused => f.write_str("the work pool is paused"),
            Hold::QueuePaused => f.write_str("the work queue is paused"),
            Hold::PoolFull(n) => write!(f, "the work pool already runs its concurrency limit ({n})"),
            Hold::QueueFull(n) => write!(f, "the work queue already runs its concurrency limit ({n})"),
            Hold::RetryingInProcess => f.write_str("the flow run is retrying in the process that ran it"),
        }
    }
}

/// Where a run is queued: its pool and queue, and whether they let it start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimCheck {
    pub work_pool_id: Uuid,
    pub hold: Option<Hold>,
}

/// What a claim needs to know of the run's queue and pool, by column name.
#[derive(FromRow)]
struct ClaimRow {
    pool_id: Uuid,
    pool_paused: bool,
    pool_limit: Option<i32>,
    queue_id: Uuid,
    queue_paused: bool,
    queue_limit: Option<i32>,
    not_waiting: bool,
    retrying_in_process: bool,
}

/// Whether `run` may start now, as the workers' poll decides: it is not retrying in its
/// own process, its pool and queue are not paused, and both are below their concurrency
/// limits (runs Pending or Running count, and those a poll handed out while its offer
/// lasts). When a limit applies the pool row is locked until the transaction
/// ends, so concurrent claims in one pool are counted one after the other. A run no longer
/// Scheduled is never held. None when the run is in no work queue.
pub async fn claim_check(
    c: &impl GenericClient,
    run: Uuid,
) -> Result<Option<ClaimCheck>, tokio_postgres::Error> {
    let Some(row) = c
        .query_opt(
            "SELECT wp.id AS pool_id, wp.is_paused AS pool_paused, wp.concurrency_limit AS pool_limit, \
                    wq.id AS queue_id, wq.is_paused AS queue_paused, wq.concurrency_limit AS queue_limit, \
                    fr.state_type IS DISTINCT FROM 'SCHEDULED' AS not_waiting, \
                    coalesce(fr.empirical_policy->>'retry_type', '') = 'in_process' AS retrying_in_process \
             FROM flow_run fr JOIN work_queue wq ON wq.id = fr.work_queue_id \
             JOIN work_pool wp ON wp.id = wq.work_pool_id WHERE fr.id = $1",
            &[&run],
        )
        .await?
    else {
        return Ok(None);
    };
    let ClaimRow {
        pool_id,
        pool_paused,
        pool_limit,
        queue_id,
        queue_paused,
        queue_limit,
        not_waiting,
        retrying_in_process,
    } = rows::one(&row)?;
    let check = |hold| {
        Ok(Some(ClaimCheck {
            work_pool_id: pool_id,
            hold,
        }))
    };
    // Only a waiting run is held back; the orchestration answers for any other.
    if not_waiting {
        return check(None);
    }
    if retrying_in_process {
        return check(Some(Hold::RetryingInProcess));
    }
    if pool_paused {
        return check(Some(Hold::PoolPaused));
    }
    if queue_paused {
        return check(Some(Hold::QueuePaused));
    }
    if pool_limit.is_none() && queue_limit.is_none() {
        return check(None);
    }
    // NO KEY UPDATE: claims of the pool wait for each other, but not for (nor block) the
    // key-share locks that inserting a row referencing the pool takes.
    c.execute(
        "SELECT 1 FROM work_pool WHERE id = $1 FOR NO KEY UPDATE",
        &[&pool_id],
    )
    .await?;
    // Runs a poll handed out to workers count too, as the poll counts them; the run being
    // claimed (which a poll may have offered too) does not count against itself.
    let stmt = c
        .prepare_cached(concat!(
            "SELECT count(*) FILTER (WHERE r.work_queue_id = $2) AS in_queue, count(*) AS in_pool \
             FROM flow_run r JOIN work_queue wq ON wq.id = r.work_queue_id \
             WHERE wq.work_pool_id = $1 AND r.id <> $3 AND ",
            busy_run!()
        ))
        .await?;
    let busy = c.query_one(&stmt, &[&pool_id, &queue_id, &run]).await?;
    let (in_queue, in_pool): (i64, i64) = (busy.try_get("in_queue")?, busy.try_get("in_pool")?);
    if let Some(limit) = queue_limit.filter(|l| in_queue >= i64::from(*l)) {
        return check(Some(Hold::QueueFull(limit)));
    }
    if let Some(limit) = pool_limit.filter(|l| in_pool >= i64::from(*l)) {
        return check(Some(Hold::PoolFull(limit)));
    }
    check(None)
}
