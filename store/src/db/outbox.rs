//! The `outbox` table: messages that must reach a work pool's queue, written in the
//! transaction that makes a run due.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde_json::Value;
use uuid::Uuid;

use crate::db::rows::{self, FromRow};
use crate::error::StoreResult;
use crate::queue::MAX_DELAY_SECONDS;

/// Records that a run is due on its pool's queue, replacing any unpublished message for it.
/// Runs without a pool queue (created outside deployments) need no message, nor do runs
/// retrying in the process that ran them (Prefect's in-process flow retries).
pub async fn enqueue_run(c: &impl GenericClient, run_id: Uuid) -> StoreResult<bool> {
    let drop_stale = c
        .prepare_cached("DELETE FROM outbox WHERE flow_run_id = $1 AND published IS NULL")
        .await?;
    c.execute(&drop_stale, &[&run_id]).await?;
    enqueue_new_run(c, run_id).await
}

/// [`enqueue_run`] for a run created in this transaction, which has no message to replace.
pub async fn enqueue_new_run(c: &impl GenericClient, run_id: Uuid) -> StoreResult<bool> {
    let insert = c
        .prepare_cached(
            "INSERT INTO outbox (work_pool_id, flow_run_id, due, body) \
             SELECT wq.work_pool_id, fr.id, coalesce(fr.next_scheduled_start_time, now()), \
                    jsonb_build_object('flow_run_id', fr.id, 'work_pool_id', wq.work_pool_id, \
                        'work_queue_id', wq.id, 'work_queue_name', wq.name, \
                        'scheduled_time', coalesce(fr.next_scheduled_start_time, now())) \
             FROM flow_run fr JOIN work_queue wq ON wq.id = fr.work_queue_id WHERE fr.id = $1 \
               AND coalesce(fr.empirical_policy->>'retry_type', '') <> 'in_process'",
        )
        .await?;
    Ok(c.execute(&insert, &[&run_id]).await? > 0)
}

/// An outbox row ready to go out.
#[derive(Debug, Clone, FromRow)]
pub struct Pending {
    pub id: i64,
    pub work_pool_id: Uuid,
    pub due: DateTime<Utc>,
    pub body: Value,
}

/// Locks unpublished rows whose run is due within the queue's maximum delay: those of
/// `runs` when given, else any. Rows another publisher holds are skipped.
pub async fn lock_ready(
    c: &impl GenericClient,
    runs: Option<&[Uuid]>,
    limit: i64,
) -> StoreResult<Vec<Pending>> {
    let stmt = c
        .prepare_cached(
            "SELECT id, work_pool_id, due, body FROM outbox \
             WHERE published IS NULL AND due <= now() + $1 * interval '1 second' \
               AND ($2::uuid[] IS NULL OR flow_run_id = ANY($2)) \
             ORDER BY due, id LIMIT $3 FOR UPDATE SKIP LOCKED",
        )
        .await?;
    let runs: Option<Vec<Uuid>> = runs.map(<[Uuid]>::to_vec);
    Ok(rows::all(
        c.query(&stmt, &[&(MAX_DELAY_SECONDS as f64), &runs, &limit])
            .await?,
    )?)
}

pub async fn mark_published(c: &impl GenericClient, ids: &[i64]) -> StoreResult<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let stmt = c
        .prepare_cached("UPDATE outbox SET published = now(), attempts = attempts + 1 WHERE id = ANY($1)")
        .await?;
    c.execute(&stmt, &[&ids]).await?;
    Ok(())
}

pub async fn mark_failed(c: &impl GenericClient, id: i64, error: &str) -> StoreResult<()> {
    c.execute(
        "UPDATE outbox SET attempts = attempts + 1, last_error = $2 WHERE id = $1",
        &[&id, &error],
    )
    .await?;
    Ok(())
}

/// How many messages still wait: (ready to go out now, waiting for their run's time).
pub async fn backlog(c: &impl GenericClient) -> StoreResult<(i64, i64)> {
    let row = c
        .query_one(
            "SELECT count(*) FILTER (WHERE due <= now() + $1 * interval '1 second') AS ready, \
                    count(*) FILTER (WHERE due > now() + $1 * interval '1 second') AS waiting \
             FROM outbox WHERE published IS NULL",
            &[&(MAX_DELAY_SECONDS as f64)],
        )
        .await?;
    Ok((row.try_get("ready")?, row.try_get("waiting")?))
}
