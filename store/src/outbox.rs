//! Publishing the outbox: after the commit that wrote a message (for its runs only), and
//! from the scheduler's sweep (anything left unpublished, and runs whose time has come
//! within the queue's maximum delay). Publishers lock the rows they send, so two never
//! send the same row at once; a crash between sending and marking can send a message
//! twice, which consumers tolerate (SQS delivers at least once anyway).

use chrono::Utc;
use deadpool_postgres::Pool;
use uuid::Uuid;

use crate::db::outbox;
use crate::error::StoreResult;
use crate::queue::{delay_for, MessageQueue};

/// Rows one publishing transaction takes.
const BATCH: i64 = 100;

/// What a publishing pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    pub sent: usize,
    pub failed: usize,
}

/// Publishes what `runs` left in the outbox, right after the commit that wrote it. Never
/// fails the caller: what cannot be sent now stays for the scheduler's sweep.
pub async fn publish_runs(db: &Pool, queue: &dyn MessageQueue, runs: &[Uuid]) -> Published {
    if runs.is_empty() {
        return Published::default();
    }
    match publish_batch(db, queue, Some(runs)).await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(?runs, error = ?e, "outbox not published now, the scheduler will retry");
            Published::default()
        }
    }
}

/// The sweep: publishes every ready row, in batches, until none is left, a send fails
/// (the queue is likely down: the next tick retries) or `deadline` passes.
pub async fn sweep(
    db: &Pool,
    queue: &dyn MessageQueue,
    deadline: std::time::Instant,
) -> StoreResult<Published> {
    let mut total = Published::default();
    while std::time::Instant::now() < deadline {
        let p = publish_batch(db, queue, None).await?;
        total.sent += p.sent;
        total.failed += p.failed;
        if p.failed > 0 || (p.sent as i64) < BATCH {
            break;
        }
    }
    Ok(total)
}

async fn publish_batch(db: &Pool, queue: &dyn MessageQueue, runs: Option<&[Uuid]>) -> StoreResult<Published> {
    let mut client = db.get().await?;
    let tx = client.transaction().await?;
    let rows = outbox::lock_ready(&tx, runs, BATCH).await?;
    let mut sent = Vec::with_capacity(rows.len());
    let mut failed = 0;
    for row in &rows {
        let delay = delay_for(row.due, Utc::now()).unwrap_or(0);
        match queue.send(row.work_pool_id, &row.body, delay).await {
            Ok(()) => sent.push(row.id),
            Err(e) => {
                tracing::warn!(outbox_id = row.id, work_pool_id = %row.work_pool_id, "publishing failed: {e}");
                outbox::mark_failed(&tx, row.id, &e.0).await?;
                failed += 1;
                // The queue is likely unreachable: leave the rest for the next sweep.
                break;
            }
        }
    }
    outbox::mark_published(&tx, &sent).await?;
    tx.commit().await?;
    Ok(Published {
        sent: sent.len(),
        failed,
    })
}
