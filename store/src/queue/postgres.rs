//! The queue served from Postgres: what the zero-configuration local mode uses instead of
//! SQS. Same semantics: a delayed message becomes visible at `visible_at`; receiving
//! hides it for the visibility timeout and gives it a fresh receipt; an undeleted message
//! comes back (at-least-once). `FOR UPDATE SKIP LOCKED` lets concurrent receivers each
//! take different messages.

use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use serde_json::Value;
use uuid::Uuid;

use super::{MessageQueue, QueueError, QueueFuture, QueueInfo, Received, MAX_VISIBILITY_SECONDS};

/// How often a waiting receive looks again.
const POLL_EVERY: Duration = Duration::from_millis(150);

#[derive(Clone)]
pub struct PgQueue {
    db: Pool,
}

impl PgQueue {
    pub fn new(db: Pool) -> Self {
        PgQueue { db }
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, QueueError> {
        self.db
            .get()
            .await
            .map_err(|e| QueueError(format!("Postgres queue unavailable: {e}")))
    }

    async fn take(&self, queue: &str, max: u32, visibility: u32) -> Result<Vec<Received>, QueueError> {
        let c = self.client().await?;
        let rows = c
            .query(
                "UPDATE queue_message m SET visible_at = now() + $3 * interval '1 second', \
                 receive_count = m.receive_count + 1, receipt = gen_random_uuid() \
                 WHERE m.id IN (SELECT id FROM queue_message WHERE queue = $1 AND visible_at <= now() \
                                ORDER BY visible_at, id LIMIT $2 FOR UPDATE SKIP LOCKED) \
                 RETURNING m.id, m.receipt, m.body, m.receive_count",
                &[
                    &queue,
                    &i64::from(max.clamp(1, 10)),
                    &f64::from(visibility.min(MAX_VISIBILITY_SECONDS)),
                ],
            )
            .await
            .map_err(db_error)?;
        let mut out: Vec<Received> = rows
            .iter()
            .map(|r| {
                Ok(Received {
                    message_id: r.try_get::<_, i64>("id")?.to_string(),
                    receipt: r.try_get::<_, Uuid>("receipt")?.to_string(),
                    body: r.try_get("body")?,
                    receive_count: r.try_get::<_, i32>("receive_count")?.max(0) as u32,
                })
            })
            .collect::<Result<_, tokio_postgres::Error>>()
            .map_err(db_error)?;
        out.sort_by(|a, b| a.message_id.cmp(&b.message_id));
        Ok(out)
    }
}

fn db_error(e: tokio_postgres::Error) -> QueueError {
    QueueError(format!("Postgres queue: {e}"))
}

fn receipt_id(receipt: &str) -> Result<Uuid, QueueError> {
    receipt
        .parse()
        .map_err(|_| QueueError(format!("not a receipt of this queue: {receipt:?}")))
}

impl MessageQueue for PgQueue {
    fn ensure(&self, _pool_id: Uuid) -> QueueFuture<'_, QueueInfo> {
        Box::pin(async {
            Ok(QueueInfo {
                backend: "postgres".into(),
                queue_url: None,
                region: None,
            })
        })
    }

    fn remove(&self, pool_id: Uuid) -> QueueFuture<'_, ()> {
        Box::pin(async move {
            let c = self.client().await?;
            c.execute(
                "DELETE FROM queue_message WHERE queue = $1",
                &[&pool_id.to_string()],
            )
            .await
            .map_err(db_error)?;
            Ok(())
        })
    }

    fn send<'a>(&'a self, pool_id: Uuid, body: &'a Value, delay_seconds: u32) -> QueueFuture<'a, ()> {
        Box::pin(async move {
            let c = self.client().await?;
            let stmt = c
                .prepare_cached(
                    "INSERT INTO queue_message (queue, body, visible_at) VALUES ($1, $2, now() + $3 * interval '1 second')",
                )
                .await
                .map_err(db_error)?;
            c.execute(
                &stmt,
                &[&pool_id.to_string(), body, &f64::from(delay_seconds.min(900))],
            )
            .await
            .map_err(db_error)?;
            Ok(())
        })
    }

    fn receive(
        &self,
        pool_id: Uuid,
        max: u32,
        wait_seconds: u32,
        visibility_seconds: u32,
    ) -> QueueFuture<'_, Vec<Received>> {
        Box::pin(async move {
            let queue = pool_id.to_string();
            let deadline =
                Instant::now() + Duration::from_secs(u64::from(wait_seconds.min(super::MAX_WAIT_SECONDS)));
            loop {
                let got = self.take(&queue, max, visibility_seconds).await?;
                if !got.is_empty() || Instant::now() + POLL_EVERY > deadline {
                    return Ok(got);
                }
                tokio::time::sleep(POLL_EVERY).await;
            }
        })
    }

    fn delete<'a>(&'a self, pool_id: Uuid, receipt: &'a str) -> QueueFuture<'a, ()> {
        Box::pin(async move {
            let receipt = receipt_id(receipt)?;
            let c = self.client().await?;
            c.execute(
                "DELETE FROM queue_message WHERE queue = $1 AND receipt = $2",
                &[&pool_id.to_string(), &receipt],
            )
            .await
            .map_err(db_error)?;
            Ok(())
        })
    }

    fn release<'a>(&'a self, pool_id: Uuid, receipt: &'a str, seconds: u32) -> QueueFuture<'a, ()> {
        Box::pin(async move {
            let receipt = receipt_id(receipt)?;
            let c = self.client().await?;
            c.execute(
                "UPDATE queue_message SET visible_at = now() + $3 * interval '1 second' \
                 WHERE queue = $1 AND receipt = $2",
                &[
                    &pool_id.to_string(),
                    &receipt,
                    &f64::from(seconds.min(MAX_VISIBILITY_SECONDS)),
                ],
            )
            .await
            .map_err(db_error)?;
            Ok(())
        })
    }
}
