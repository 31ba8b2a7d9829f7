//! Periodic upkeep of runs (Prefect 2.20's `src/prefect/server/services/pause_expirations.py` and `cancellation_cleanup.py`): failing pauses that expired and cancelling the
//! leftovers of cancelled flow runs, and pruning logs and states past their retention. Each pass does bounded work in short transactions,
//! so it can run from a timer in the local server or from the scheduler function.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::Utc;
use deadpool_postgres::Pool;
use uuid::Uuid;

use crate::config::Settings;
use crate::db::runs::RunTable;
use crate::db::work_pools::worker_timeout_seconds;
use crate::error::StoreResult;
use crate::runs_service::Runs;
use stratus_domain::api_version::SERVER_API_VERSION;
use stratus_domain::orchestration::RunKind;
use stratus_domain::states::{State, StateType};

/// Rows one pass looks at per step, as Prefect's services do.
pub const BATCH_SIZE: i64 = 200;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    pub expired_pauses_failed: usize,
    pub task_runs_cancelled: usize,
    pub subflows_cancelled: usize,
    pub lost_runs_crashed: usize,
    pub logs_pruned: u64,
    pub states_pruned: u64,
}

/// How long logs and old states are kept, in days; 0 keeps them forever.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub log_days: i64,
    pub state_days: i64,
}

/// Rows one prune statement deletes at most, so a pass never holds long locks.
pub const PRUNE_BATCH_SIZE: i64 = 5_000;

/// Deletes logs and non-current states of finished runs older than the retention windows.
pub async fn prune(pool: &Pool, retention: Retention) -> StoreResult<(u64, u64)> {
    let client = pool.get().await?;
    let mut logs = 0;
    if retention.log_days > 0 {
        logs = client
            .execute(
                "DELETE FROM log WHERE id IN (SELECT id FROM log WHERE timestamp < now() - $1 * interval '1 day' LIMIT $2)",
                &[&(retention.log_days as f64), &PRUNE_BATCH_SIZE],
            )
            .await?;
    }
    let mut states = 0;
    if retention.state_days > 0 {
        for table in [RunTable::Flow, RunTable::Task] {
            states += prune_states(&client, table, retention.state_days).await?;
        }
    }
    // Published outbox rows are only kept a day, for inspection; the Postgres queue keeps
    // messages as long as SQS would (14 days, the retention Stratus's SQS queues get).
    client
        .execute(
            "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE published < now() - interval '1 day' LIMIT $1)",
            &[&PRUNE_BATCH_SIZE],
        )
        .await?;
    client
        .execute(
            "DELETE FROM queue_message WHERE id IN (SELECT id FROM queue_message WHERE created < now() - interval '14 days' LIMIT $1)",
            &[&PRUNE_BATCH_SIZE],
        )
        .await?;
    // A claim only matters while its run is active.
    client
        .execute(
            "DELETE FROM flow_run_claim WHERE flow_run_id IN (SELECT c.flow_run_id FROM flow_run_claim c \
             JOIN flow_run fr ON fr.id = c.flow_run_id \
             WHERE fr.state_type IN ('COMPLETED','FAILED','CANCELLED','CRASHED') LIMIT $1)",
            &[&PRUNE_BATCH_SIZE],
        )
        .await?;
    // A notification about a state change two weeks old is no news any more.
    client
        .execute(
            "DELETE FROM flow_run_notification_queue WHERE id IN (SELECT id FROM flow_run_notification_queue \
             WHERE created < now() - interval '14 days' LIMIT $1)",
            &[&PRUNE_BATCH_SIZE],
        )
        .await?;
    Ok((logs, states))
}

/// Where each workspace's state pruning has got to in each run table: the end time and id
/// of the last finished run it looked at. Runs end in time order, so the runs that pass the
/// retention window later all come after it. Kept in the process (a restart walks the
/// history again from its start, a bounded stretch a pass).
type Cursor = (chrono::DateTime<Utc>, Uuid);
/// A workspace (None: no scope) and a run table.
type CursorKey = (Option<Uuid>, RunTable);
static STATE_CURSORS: Mutex<Option<HashMap<CursorKey, Cursor>>> = Mutex::new(None);

/// Deletes the superseded states of at most [`PRUNE_BATCH_SIZE`] finished runs that ended
/// before the retention window, the next ones by end time after the last pass's. A pass
/// reads a bounded stretch of the runs' `end_time` index, however long the history and
/// however few of its runs have states left to prune (looking for them among every state
/// took 9.5 s a pass over 10,000,000 task runs, again and again).
async fn prune_states(c: &deadpool_postgres::Object, table: RunTable, days: i64) -> StoreResult<u64> {
    let key = (crate::tenancy::workspace(), table);
    let from = STATE_CURSORS
        .lock()
        .ok()
        .and_then(|cursors| cursors.as_ref()?.get(&key).copied())
        .unwrap_or((chrono::DateTime::<Utc>::UNIX_EPOCH, Uuid::nil()));
    let sql = format!(
        "WITH runs AS ( \
           SELECT r.id, r.state_id, r.end_time FROM {run} r \
           WHERE r.end_time < now() - $1 * interval '1 day' \
             AND r.end_time >= $2 AND (r.end_time > $2 OR r.id > $3) \
           ORDER BY r.end_time, r.id LIMIT $4 \
         ), gone AS ( \
           DELETE FROM {states} s USING runs WHERE s.{fk} = runs.id AND s.id <> runs.state_id \
           RETURNING 1 \
         ), last AS (SELECT end_time, id FROM runs ORDER BY end_time DESC, id DESC LIMIT 1) \
         SELECT (SELECT count(*) FROM gone), (SELECT end_time FROM last), (SELECT id FROM last)",
        run = table.run_table(),
        states = table.state_table(),
        fk = table.fk(),
    );
    let stmt = c.prepare_cached(&sql).await?;
    let row = c
        .query_one(&stmt, &[&(days as f64), &from.0, &from.1, &PRUNE_BATCH_SIZE])
        .await?;
    let pruned: i64 = row.try_get(0)?;
    let last: Option<chrono::DateTime<Utc>> = row.try_get(1)?;
    let last_id: Option<Uuid> = row.try_get(2)?;
    if let (Some(at), Some(id)) = (last, last_id) {
        if let Ok(mut cursors) = STATE_CURSORS.lock() {
            cursors.get_or_insert_with(HashMap::new).insert(key, (at, id));
        }
    }
    Ok(pruned as u64)
}

/// Since when this process's upkeep passes have run without a break: an agent's silence
/// only counts while Stratus could have heard it. After a Postgres outage or a restart of
/// the server, agents get a whole timeout to be heard again before their runs are judged.
/// (A process-wide clock: one process runs upkeep, the local server or the scheduler
/// function.)
static UNBROKEN: Mutex<Option<Unbroken>> = Mutex::new(None);

#[derive(Clone, Copy)]
struct Unbroken {
    since: Instant,
    last_pass: Instant,
}

/// How long upkeep has run unbroken, counting this pass; a gap of more than two intervals
/// between passes is a break.
fn unbroken_for(interval: Duration) -> Duration {
    let now = Instant::now();
    let Ok(mut clock) = UNBROKEN.lock() else {
        return Duration::ZERO;
    };
    let since = match *clock {
        Some(c) if now.duration_since(c.last_pass) <= interval * 2 + Duration::from_secs(5) => c.since,
        _ => now,
    };
    *clock = Some(Unbroken {
        since,
        last_pass: now,
    });
    now.duration_since(since)
}

fn upkeep_broke() {
    if let Ok(mut clock) = UNBROKEN.lock() {
        *clock = None;
    }
}

/// Runs every upkeep step once in every workspace.
pub async fn run_once(runs: &Runs, settings: &Settings) -> StoreResult<Report> {
    let unbroken = unbroken_for(Duration::from_secs(settings.scheduler_interval_seconds));
    if let Err(e) = crate::tenancy::system(analyze_first_rows(runs.db())).await {
        tracing::warn!(error = ?e, "could not analyze new tables");
    }
    let report = crate::tenancy::in_each_workspace(runs.db(), |_, _| passes(runs, settings, unbroken))
        .await
        .map(|reports| {
            reports.into_iter().fold(Report::default(), |a, b| Report {
                expired_pauses_failed: a.expired_pauses_failed + b.expired_pauses_failed,
                task_runs_cancelled: a.task_runs_cancelled + b.task_runs_cancelled,
                subflows_cancelled: a.subflows_cancelled + b.subflows_cancelled,
                lost_runs_crashed: a.lost_runs_crashed + b.lost_runs_crashed,
                logs_pruned: a.logs_pruned + b.logs_pruned,
                states_pruned: a.states_pruned + b.states_pruned,
            })
        });
    if report.is_err() {
        upkeep_broke();
    }
    report
}

/// Rows a table that was never analyzed may hold before upkeep analyzes it.
pub const ANALYZE_AFTER_ROWS: i64 = 100;

/// Analyzes the tables that hold rows but were never analyzed: what autovacuum does within
/// a minute, which a Postgres with autovacuum off never does. Without statistics a fresh
/// table looks empty, and the planner may then read a row by id through any index that
/// leads with the workspace (every row of it) as readily as through the primary key;
/// statements prepared then keep that plan until the table is analyzed. Returns the tables.
pub async fn analyze_first_rows(pool: &Pool) -> StoreResult<Vec<String>> {
    let client = pool.get().await?;
    let tables: Vec<String> = client
        .query(
            "SELECT format('%I', relname) FROM pg_stat_user_tables \
             WHERE schemaname = 'public' AND last_analyze IS NULL AND last_autoanalyze IS NULL \
             AND n_live_tup + n_mod_since_analyze >= $1 ORDER BY relname",
            &[&ANALYZE_AFTER_ROWS],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if !tables.is_empty() {
        client
            .batch_execute(&format!("ANALYZE {}", tables.join(", ")))
            .await?;
    }
    Ok(tables)
}

async fn passes(runs: &Runs, settings: &Settings, unbroken: Duration) -> StoreResult<Report> {
    let retention = Retention {
        log_days: settings.log_retention_days,
        state_days: settings.state_retention_days,
    };
    let (logs_pruned, states_pruned) = prune(runs.db(), retention).await?;
    Ok(Report {
        expired_pauses_failed: fail_expired_pauses(runs).await?,
        task_runs_cancelled: cancel_tasks_of_cancelled_runs(runs).await?,
        subflows_cancelled: cancel_subflows_of_cancelled_runs(runs).await?,
        lost_runs_crashed: crash_runs_of_lost_agents(runs, unbroken).await?,
        logs_pruned,
        states_pruned,
    })
}

async fn ids(pool: &Pool, sql: &str) -> StoreResult<Vec<Uuid>> {
    let client = pool.get().await?;
    let rows = client.query(sql, &[&BATCH_SIZE]).await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Proposes `state(id)` to each run, each in its own change; counts the states written.
async fn propose_each(
    runs: &Runs,
    kind: RunKind,
    ids: impl IntoIterator<Item = (Uuid, State)>,
    force: bool,
) -> StoreResult<usize> {
    let mut done = 0;
    for (id, proposed) in ids {
        if let Some(outcome) = runs
            .set_state(kind, id, proposed, SERVER_API_VERSION, force)
            .await?
        {
            done += usize::from(outcome.written);
        }
    }
    Ok(done)
}

/// FailExpiredPauses: a paused run whose `pause_timeout` passed is forced to Failed.
pub async fn fail_expired_pauses(runs: &Runs) -> StoreResult<usize> {
    let candidates = ids(
        runs.db(),
        "SELECT fr.id FROM flow_run fr JOIN flow_run_state s ON s.id = fr.state_id \
         WHERE fr.state_type = 'PAUSED' AND (s.state_details->>'pause_timeout') IS NOT NULL \
           AND (s.state_details->>'pause_timeout')::timestamptz < now() \
         ORDER BY fr.id LIMIT $1",
    )
    .await?;
    let failed = |id| {
        let state =
            State::new(StateType::Failed, Utc::now()).with_message("The flow was paused and never resumed.");
        (id, state)
    };
    propose_each(runs, RunKind::Flow, candidates.into_iter().map(failed), true).await
}

/// Runs whose Stratus agent stopped saying it executes them, for three of its heartbeat
/// intervals (90 s by default; the time after which Prefect shows a worker offline), are
/// marked Crashed; a Cancelling one is Cancelled, as nothing is left to stop. Prefect 2 has
/// no such detection: a run whose worker died stays Running for ever.
/// `listening` is how long Stratus has been able to hear heartbeats: no agent is judged
/// silent for longer than that.
pub async fn crash_runs_of_lost_agents(runs: &Runs, listening: Duration) -> StoreResult<usize> {
    let client = runs.db().get().await?;
    let rows = client
        .query(
            concat!(
                "SELECT c.flow_run_id, c.worker_name, fr.state_type = 'CANCELLING' AS cancelling \
                 FROM flow_run_claim c JOIN flow_run fr ON fr.id = c.flow_run_id \
                 LEFT JOIN worker w ON w.work_pool_id = c.work_pool_id AND w.name = c.worker_name \
                 WHERE fr.state_type IN ('PENDING','RUNNING','CANCELLING') \
                   AND c.seen < now() - ",
                worker_timeout_seconds!(),
                " * interval '1 second' AND ",
                worker_timeout_seconds!(),
                " < $2::float8 ORDER BY c.seen LIMIT $1"
            ),
            &[&BATCH_SIZE, &listening.as_secs_f64()],
        )
        .await?;
    drop(client);
    let mut proposals = Vec::with_capacity(rows.len());
    for row in &rows {
        let (id, worker, cancelling): (Uuid, String, bool) = (
            row.try_get("flow_run_id")?,
            row.try_get("worker_name")?,
            row.try_get("cancelling")?,
        );
        let state = if cancelling {
            State::new(StateType::Cancelled, Utc::now()).with_message(format!(
                "The Stratus agent {worker:?} that ran this flow run stopped heartbeating while it was cancelled."
            ))
        } else {
            State::new(StateType::Crashed, Utc::now()).with_message(format!(
                "The Stratus agent {worker:?} that claimed this flow run stopped heartbeating: \
                 its process is gone."
            ))
        };
        tracing::warn!(flow_run_id = %id, worker, "the run's agent stopped heartbeating");
        proposals.push((id, state));
    }
    propose_each(runs, RunKind::Flow, proposals, false).await
}

/// CancellationCleanup, tasks: non-terminal task runs of flow runs cancelled within the
/// last day are forced to Cancelled.
pub async fn cancel_tasks_of_cancelled_runs(runs: &Runs) -> StoreResult<usize> {
    let candidates = ids(
        runs.db(),
        "SELECT tr.id FROM task_run tr JOIN flow_run fr ON fr.id = tr.flow_run_id \
         WHERE fr.state_type = 'CANCELLED' AND fr.state_timestamp > now() - interval '1 day' \
           AND (tr.state_type IS NULL OR tr.state_type NOT IN ('COMPLETED','FAILED','CANCELLED','CRASHED')) \
         ORDER BY tr.id LIMIT $1",
    )
    .await?;
    let cancelled = |id| {
        let state =
            State::new(StateType::Cancelled, Utc::now()).with_message("The parent flow run was cancelled.");
        (id, state)
    };
    propose_each(runs, RunKind::Task, candidates.into_iter().map(cancelled), true).await
}

/// CancellationCleanup, subflows: a non-terminal subflow of a cancelled flow run is
/// proposed Cancelling when it has a deployment (its infrastructure must be stopped),
/// else Cancelled, through the core policy.
pub async fn cancel_subflows_of_cancelled_runs(runs: &Runs) -> StoreResult<usize> {
    let client = runs.db().get().await?;
    let rows = client
        .query(
            "SELECT sub.id, sub.deployment_id IS NOT NULL AS has_deployment FROM flow_run sub \
             JOIN task_run ptr ON ptr.id = sub.parent_task_run_id \
             JOIN flow_run parent ON parent.id = ptr.flow_run_id \
             WHERE parent.state_type = 'CANCELLED' \
               AND sub.state_type IN ('PENDING','SCHEDULED','RUNNING','PAUSED','CANCELLING') \
             ORDER BY sub.id LIMIT $1",
            &[&BATCH_SIZE],
        )
        .await?;
    drop(client);
    let mut proposals: Vec<(Uuid, State)> = Vec::with_capacity(rows.len());
    for row in &rows {
        let (id, has_deployment): (Uuid, bool) = (row.try_get("id")?, row.try_get("has_deployment")?);
        let kind = if has_deployment {
            StateType::Cancelling
        } else {
            StateType::Cancelled
        };
        proposals.push((
            id,
            State::new(kind, Utc::now()).with_message("The parent flow run was cancelled."),
        ));
    }
    propose_each(runs, RunKind::Flow, proposals, false).await
}
