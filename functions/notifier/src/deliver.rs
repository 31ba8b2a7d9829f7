//! The notifier: takes each notification the notifications queue delivers, sends it
//! through its policy's block, and deletes it. The row stays locked while it is sent, so
//! two notifiers (or a message delivered twice) do not both send it; a send is repeated
//! only if the database fails right after it. A failure that may pass is retried (the
//! row counts the sends), then given up and logged, as Prefect logs it.

use std::time::Duration;

use serde_json::Value;
use stratus_http::{ApiResult, AppState};
use stratus_store::db::blocks::read_document;
use stratus_store::db::notifications::{self, Taken};
use stratus_store::notifications::{message, SUBJECT};
use stratus_store::queue::{Received, NOTIFICATIONS_QUEUE};

use crate::senders;

/// Sends of one notification before a failure is final.
pub const MAX_ATTEMPTS: i32 = notifications::MAX_SEND_ATTEMPTS;
/// How long a notification whose send failed waits before it is tried again.
pub const RETRY_AFTER_SECONDS: u32 = 10;
/// How long a received message stays hidden: longer than a send may take.
const VISIBILITY_SECONDS: u32 = 60;

/// What became of one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Sent, or finally given up, or already done: the message can go.
    Done,
    /// Try again later: keep the message.
    Retry,
}

/// What comes of a notification whose sends keep failing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exhausted {
    /// After [`MAX_ATTEMPTS`] sends it is dropped and logged, as Prefect does (the
    /// notifier of `stratus server start`).
    Drop,
    /// Every delivery sends; a failure keeps the notification and its message, and the
    /// queue's redrive policy parks the message in its dead-letter queue once it has been
    /// received often enough (the notifier Lambda). Nothing is lost: redriving the
    /// dead-letter queue delivers it again.
    Park,
}

/// The client notifications are sent with.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_default()
}

/// Delivers the notification `id`, dropping it after [`MAX_ATTEMPTS`] failed sends.
pub async fn deliver(app: &AppState, http: &reqwest::Client, id: i64) -> Delivery {
    deliver_or(app, http, id, Exhausted::Drop).await
}

/// Delivers the notification `id`.
pub async fn deliver_or(app: &AppState, http: &reqwest::Client, id: i64, exhausted: Exhausted) -> Delivery {
    match deliver_in_its_workspace(app, http, id, exhausted).await {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(notification_id = id, error = ?e, "notification not delivered now; it will be retried");
            Delivery::Retry
        }
    }
}

/// A notification is found by its id, whatever its workspace, and sent within that
/// workspace: its policy can only use a block of its own workspace.
async fn deliver_in_its_workspace(
    app: &AppState,
    http: &reqwest::Client,
    id: i64,
    exhausted: Exhausted,
) -> ApiResult<Delivery> {
    let workspace = {
        let client = app.system_client().await?;
        notifications::workspace_of(&client, id).await?
    };
    match workspace {
        Some(w) => stratus_store::tenancy::within(w, try_deliver(app, http, id, exhausted)).await,
        None => Ok(Delivery::Done),
    }
}

async fn try_deliver(
    app: &AppState,
    http: &reqwest::Client,
    id: i64,
    exhausted: Exhausted,
) -> ApiResult<Delivery> {
    let mut client = app.client().await?;
    let tx = client.transaction().await?;
    let n = match notifications::take(&tx, id).await? {
        Taken::Gone => return Ok(Delivery::Done),
        Taken::Busy => return Ok(Delivery::Retry),
        Taken::Ready(n) => n,
    };
    let Some(block) = read_document(&tx, &app.keyring, n.block_document_id, true).await? else {
        tracing::error!(notification_id = id, policy_id = %n.policy_id, "the policy's block document is gone");
        notifications::remove(&tx, id).await?;
        tx.commit().await?;
        return Ok(Delivery::Done);
    };
    let attempt = n.attempts + 1;
    let slug = block
        .block_type
        .as_ref()
        .map(|t| t.slug.as_str())
        .unwrap_or_default();
    let body = message(&n, &app.settings.ui_url());
    let sent = match senders::request(slug, &block.data, SUBJECT, &body) {
        Ok(mut requests) => {
            if !app.settings.notifications_private_urls {
                for r in &mut requests {
                    r.private_ok = false;
                }
            }
            send_all(http, &requests).await
        }
        Err(e) => Err(e),
    };
    let outcome = match sent {
        Ok(()) => {
            tracing::info!(notification_id = id, flow_run_id = %n.flow_run_id, policy_id = %n.policy_id, block = slug, "notification sent");
            notifications::remove(&tx, id).await?;
            Delivery::Done
        }
        Err(e) if exhausted == Exhausted::Park || (e.retry && attempt < MAX_ATTEMPTS) => {
            tracing::warn!(notification_id = id, flow_run_id = %n.flow_run_id, attempt, "sending a notification failed, will retry: {e}");
            notifications::mark_failed(&tx, id, &e.message).await?;
            Delivery::Retry
        }
        Err(e) => {
            tracing::error!(notification_id = id, flow_run_id = %n.flow_run_id, policy_id = %n.policy_id, attempt, "sending a notification failed: {e}");
            notifications::remove(&tx, id).await?;
            Delivery::Done
        }
    };
    tx.commit().await?;
    Ok(outcome)
}

/// All the sends of one notification (a block may post to several channels) finish
/// within this, well inside the notifier Lambda's 25 s.
const SEND_BUDGET: Duration = Duration::from_secs(15);

/// Sends each request within [`SEND_BUDGET`]; the first failure stops.
async fn send_all(http: &reqwest::Client, requests: &[senders::Request]) -> Result<(), senders::SendError> {
    let deadline = std::time::Instant::now() + SEND_BUDGET;
    for r in requests {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(senders::SendError {
                message: "the sends took longer than 15 s".into(),
                retry: true,
            });
        }
        let r = senders::Request {
            timeout: r.timeout.min(left),
            ..r.clone()
        };
        senders::send(http, &r).await?;
    }
    Ok(())
}

/// The notification a queue message names, if it names one.
pub fn notification_id(body: &Value) -> Option<i64> {
    body.get("notification_id").and_then(Value::as_i64)
}

/// Delivers one received message, and deletes or releases it.
async fn handle(app: &AppState, http: &reqwest::Client, m: &Received) {
    let done = match notification_id(&m.body) {
        Some(id) => deliver(app, http, id).await == Delivery::Done,
        None => {
            tracing::warn!(body = %m.body, "not a notification message; dropped");
            true
        }
    };
    let queued = if done {
        app.queue.delete(NOTIFICATIONS_QUEUE, &m.receipt).await
    } else {
        app.queue
            .release(NOTIFICATIONS_QUEUE, &m.receipt, RETRY_AFTER_SECONDS)
            .await
    };
    if let Err(e) = queued {
        tracing::warn!("notifications queue: {e}");
    }
}

/// One receive from the notifications queue (waiting up to `wait_seconds`), each message
/// delivered. Returns how many messages there were.
pub async fn receive_once(
    app: &AppState,
    http: &reqwest::Client,
    wait_seconds: u32,
) -> Result<usize, String> {
    // The notifications queue holds every workspace's.
    stratus_store::tenancy::system(async {
        let got = app
            .queue
            .receive(NOTIFICATIONS_QUEUE, 10, wait_seconds, VISIBILITY_SECONDS)
            .await
            .map_err(|e| e.to_string())?;
        for m in &got {
            handle(app, http, m).await;
        }
        Ok(got.len())
    })
    .await
}

/// The notifier as a long-running loop (`stratus server start`): long-polls SQS, or looks
/// at the Postgres queue every second.
pub async fn run(app: AppState) {
    // The notifications queue holds every workspace's.
    stratus_store::tenancy::system(deliver_forever(app)).await
}

async fn deliver_forever(app: AppState) {
    let http = http_client();
    let wait = loop {
        match app.queue.ensure(NOTIFICATIONS_QUEUE).await {
            Ok(info) if info.backend == "sqs" => break stratus_store::queue::MAX_WAIT_SECONDS,
            Ok(_) => break 0,
            Err(e) => {
                tracing::warn!("notifications queue unavailable, retrying in 5 s: {e}");
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    };
    loop {
        match receive_once(&app, &http, wait).await {
            Ok(0) if wait == 0 => tokio::time::sleep(Duration::from_secs(1)).await,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!("notifications queue unavailable, retrying in 5 s: {e}");
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    }
}

/// The notifier on Lambda, invoked by SQS with a batch of messages: the ids of those to
/// retry, as Lambda's partial batch response (`batchItemFailures`) wants them. They come
/// back after the queue's visibility timeout, and go to its dead-letter queue after its
/// `maxReceiveCount` receives.
pub async fn handle_sqs_event(app: &AppState, http: &reqwest::Client, event: &Value) -> Vec<String> {
    let mut retry = Vec::new();
    for record in event
        .get("Records")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let message_id = record
            .get("messageId")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let body: Value = record
            .get("body")
            .and_then(Value::as_str)
            .and_then(|b| serde_json::from_str(b).ok())
            .unwrap_or(Value::Null);
        let Some(id) = notification_id(&body) else {
            tracing::warn!(message_id, "not a notification message; dropped");
            continue;
        };
        if deliver_or(app, http, id, Exhausted::Park).await == Delivery::Retry {
            retry.push(message_id.to_string());
        }
    }
    retry
}
