//! The queue port: one logical queue per work pool, with SQS's semantics (delayed
//! sends, a visibility timeout on receive, receipts, at-least-once delivery). Two real
//! implementations: SQS (the `stratus-aws` crate) and Postgres ([`postgres::PgQueue`]),
//! for the zero-configuration local mode. Agents reach the Postgres one through the API
//! (`/work_pools/{name}/message_queue/*`).

pub mod postgres;

use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// The queue the notifier reads flow run notifications from. It is not a pool's: no
/// pool has the nil id.
pub const NOTIFICATIONS_QUEUE: Uuid = Uuid::nil();

/// SQS's longest delivery delay; runs due later wait in the outbox.
pub const MAX_DELAY_SECONDS: i64 = 900;
/// SQS's longest long-poll wait.
pub const MAX_WAIT_SECONDS: u32 = 20;
/// SQS's longest visibility timeout (12 hours).
pub const MAX_VISIBILITY_SECONDS: u32 = 43_200;

pub type QueueFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, QueueError>> + Send + 'a>>;

/// Why a queue operation failed, for logs and for the 503 the API answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueError(pub String);

impl std::fmt::Display for QueueError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for QueueError {}

/// A received message: its body, and the receipt that deletes or releases it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Received {
    pub message_id: String,
    pub receipt: String,
    pub body: Value,
    /// How many times it was received, this time included (SQS's ApproximateReceiveCount).
    pub receive_count: u32,
}

/// Where an agent finds a pool's queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct QueueInfo {
    /// `sqs` or `postgres`.
    pub backend: String,
    /// The SQS queue URL; absent for the Postgres queue, which is served by the API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

/// One queue per work pool, named by the pool's id.
pub trait MessageQueue: Send + Sync + 'static {
    /// Creates the pool's queue if it does not exist yet, and says where it is.
    fn ensure(&self, pool_id: Uuid) -> QueueFuture<'_, QueueInfo>;
    /// Removes the pool's queue and its messages.
    fn remove(&self, pool_id: Uuid) -> QueueFuture<'_, ()>;
    /// Sends a message that becomes visible after `delay_seconds` (at most 900).
    fn send<'a>(&'a self, pool_id: Uuid, body: &'a Value, delay_seconds: u32) -> QueueFuture<'a, ()>;
    /// Waits up to `wait_seconds` for up to `max` visible messages, and hides them for
    /// `visibility_seconds`.
    fn receive(
        &self,
        pool_id: Uuid,
        max: u32,
        wait_seconds: u32,
        visibility_seconds: u32,
    ) -> QueueFuture<'_, Vec<Received>>;
    /// Deletes a received message. Deleting one already gone is not an error.
    fn delete<'a>(&'a self, pool_id: Uuid, receipt: &'a str) -> QueueFuture<'a, ()>;
    /// Makes a received message visible again after `seconds`.
    fn release<'a>(&'a self, pool_id: Uuid, receipt: &'a str, seconds: u32) -> QueueFuture<'a, ()>;
}

/// The message that tells an agent a run is due.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RunDue {
    pub flow_run_id: Uuid,
    pub work_pool_id: Uuid,
    #[serde(default)]
    pub work_queue_id: Option<Uuid>,
    #[serde(default)]
    pub work_queue_name: Option<String>,
    #[serde(default)]
    pub scheduled_time: Option<chrono::DateTime<chrono::Utc>>,
}

/// The delivery delay for a run due at `due`: the seconds until then, rounded to the
/// nearest second, within SQS's 0..=900. `None` when it is too early to send at all.
pub fn delay_for(due: chrono::DateTime<chrono::Utc>, now: chrono::DateTime<chrono::Utc>) -> Option<u32> {
    let millis = (due - now).num_milliseconds();
    let seconds = (millis + 500).div_euclid(1000);
    if seconds > MAX_DELAY_SECONDS {
        return None;
    }
    Some(seconds.max(0) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, Utc};

    #[test]
    fn delays_round_and_clamp() {
        let now = Utc::now();
        assert_eq!(delay_for(now - Duration::seconds(30), now), Some(0));
        assert_eq!(delay_for(now, now), Some(0));
        assert_eq!(delay_for(now + Duration::milliseconds(1400), now), Some(1));
        assert_eq!(delay_for(now + Duration::milliseconds(1600), now), Some(2));
        assert_eq!(delay_for(now + Duration::seconds(900), now), Some(900));
        assert_eq!(delay_for(now + Duration::seconds(901), now), None);
    }

    #[test]
    fn run_due_messages_round_trip() {
        let m = RunDue {
            flow_run_id: Uuid::new_v4(),
            work_pool_id: Uuid::new_v4(),
            work_queue_id: None,
            work_queue_name: Some("default".into()),
            scheduled_time: Some(Utc::now()),
        };
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(serde_json::from_value::<RunDue>(v).unwrap(), m);
    }
}
