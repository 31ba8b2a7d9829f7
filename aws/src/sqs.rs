//! Work pool queues on SQS: `<prefix><pool id>`, created on first use with a dead-letter
//! queue and its redrive policy, their URLs cached. A queue that exists already (the
//! notifications queue of the AWS template, say) is used as it is.

use std::collections::HashMap;
use std::sync::Mutex;

use aws_config::SdkConfig;
use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_sqs::types::QueueAttributeName;
use aws_sdk_sqs::Client;
use serde_json::Value;
use stratus_store::queue::{
    MessageQueue, QueueError, QueueFuture, QueueInfo, Received, MAX_VISIBILITY_SECONDS, MAX_WAIT_SECONDS,
};
use uuid::Uuid;

pub struct SqsQueue {
    client: Client,
    prefix: String,
    region: Option<String>,
    urls: Mutex<HashMap<Uuid, String>>,
}

fn error<E: std::error::Error + 'static>(what: &str, e: E) -> QueueError {
    QueueError(format!("SQS {what}: {}", DisplayErrorContext(e)))
}

impl SqsQueue {
    pub fn new(config: &SdkConfig, prefix: &str) -> Self {
        SqsQueue {
            client: Client::new(config),
            prefix: prefix.to_string(),
            region: config.region().map(|r| r.to_string()),
            urls: Mutex::new(HashMap::new()),
        }
    }

    /// A queue an agent was told about: its URL is known, nothing is created.
    pub fn with_url(config: &SdkConfig, pool_id: Uuid, url: &str) -> Self {
        let q = SqsQueue::new(config, "");
        if let Ok(mut urls) = q.urls.lock() {
            urls.insert(pool_id, url.to_string());
        }
        q
    }

    pub fn name(&self, pool_id: Uuid) -> String {
        if pool_id == stratus_store::queue::NOTIFICATIONS_QUEUE {
            return format!("{}notifications", self.prefix);
        }
        format!("{}{pool_id}", self.prefix)
    }

    /// The dead-letter queue of `pool_id`'s queue (names are at most 80 characters: the
    /// prefix's 44, then 36 at most).
    pub fn dead_letter_name(&self, pool_id: Uuid) -> String {
        if pool_id == stratus_store::queue::NOTIFICATIONS_QUEUE {
            return format!("{}notifications-dlq", self.prefix);
        }
        format!("{}dlq-{}", self.prefix, pool_id.simple())
    }

    /// One cheap call, to tell whether SQS answers with these credentials.
    pub async fn check(&self) -> Result<(), QueueError> {
        self.client
            .list_queues()
            .queue_name_prefix(&self.prefix)
            .max_results(1)
            .send()
            .await
            .map_err(|e| error("ListQueues", e))?;
        Ok(())
    }

    fn cached(&self, pool_id: Uuid) -> Option<String> {
        self.urls.lock().ok()?.get(&pool_id).cloned()
    }

    fn forget(&self, pool_id: Uuid) {
        if let Ok(mut urls) = self.urls.lock() {
            urls.remove(&pool_id);
        }
    }

    async fn url(&self, pool_id: Uuid) -> Result<String, QueueError> {
        if let Some(url) = self.cached(pool_id) {
            return Ok(url);
        }
        let name = self.name(pool_id);
        let url = match self.client.get_queue_url().queue_name(&name).send().await {
            Ok(out) => out.queue_url,
            Err(e) if missing_queue(&e) => None,
            Err(e) => return Err(error("GetQueueUrl", e)),
        };
        let url = match url {
            Some(url) => url,
            None => self.create(pool_id).await?,
        };
        if let Ok(mut urls) = self.urls.lock() {
            urls.insert(pool_id, url.clone());
        }
        Ok(url)
    }

    /// Creates the dead-letter queue, then the queue that redrives to it.
    async fn create(&self, pool_id: Uuid) -> Result<String, QueueError> {
        let dlq = self
            .client
            .create_queue()
            .queue_name(self.dead_letter_name(pool_id))
            .attributes(QueueAttributeName::MessageRetentionPeriod, RETENTION_SECONDS)
            .send()
            .await
            .map_err(|e| error("CreateQueue", e))?
            .queue_url
            .ok_or_else(|| QueueError("SQS CreateQueue returned no queue URL".into()))?;
        let dlq_arn = self
            .client
            .get_queue_attributes()
            .queue_url(&dlq)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|e| error("GetQueueAttributes", e))?
            .attributes
            .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
            .ok_or_else(|| QueueError("SQS GetQueueAttributes returned no queue ARN".into()))?;
        let redrive = serde_json::json!({
            "deadLetterTargetArn": dlq_arn,
            "maxReceiveCount": max_receive_count(pool_id),
        });
        self.client
            .create_queue()
            .queue_name(self.name(pool_id))
            .attributes(QueueAttributeName::ReceiveMessageWaitTimeSeconds, "20")
            .attributes(QueueAttributeName::VisibilityTimeout, "30")
            .attributes(QueueAttributeName::MessageRetentionPeriod, RETENTION_SECONDS)
            .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string())
            .send()
            .await
            .map_err(|e| error("CreateQueue", e))?
            .queue_url
            .ok_or_else(|| QueueError("SQS CreateQueue returned no queue URL".into()))
    }
}

/// SQS's longest retention: messages for runs nobody claims expire in 14 days.
const RETENTION_SECONDS: &str = "1209600";

/// Receives of one message before SQS parks it in the dead-letter queue. A notification
/// is tried a few times (the AWS template's notifications queue says the same). A run's
/// message comes back by design while its pool is paused or full, or while it is early
/// (agents hand it back with growing delays), so it gets SQS's most.
pub fn max_receive_count(pool_id: Uuid) -> u32 {
    if pool_id == stratus_store::queue::NOTIFICATIONS_QUEUE {
        NOTIFICATION_RECEIVES
    } else {
        1000
    }
}

/// The AWS template's `maxReceiveCount` for the notifications queue (infra/check.py checks
/// that they agree).
pub const NOTIFICATION_RECEIVES: u32 = 5;

fn missing_queue(e: &impl ProvideErrorMetadata) -> bool {
    matches!(
        e.code(),
        Some("AWS.SimpleQueueService.NonExistentQueue") | Some("QueueDoesNotExist")
    )
}

impl MessageQueue for SqsQueue {
    fn ensure(&self, pool_id: Uuid) -> QueueFuture<'_, QueueInfo> {
        Box::pin(async move {
            let url = self.url(pool_id).await?;
            Ok(QueueInfo {
                backend: "sqs".into(),
                queue_url: Some(url),
                region: self.region.clone(),
            })
        })
    }

    fn remove(&self, pool_id: Uuid) -> QueueFuture<'_, ()> {
        Box::pin(async move {
            let url = self.url(pool_id).await?;
            self.forget(pool_id);
            match self.client.delete_queue().queue_url(url).send().await {
                Ok(_) => Ok(()),
                Err(e) if missing_queue(&e) => Ok(()),
                Err(e) => Err(error("DeleteQueue", e)),
            }
        })
    }

    fn send<'a>(&'a self, pool_id: Uuid, body: &'a Value, delay_seconds: u32) -> QueueFuture<'a, ()> {
        Box::pin(async move {
            for attempt in 0..2 {
                let url = self.url(pool_id).await?;
                let sent = self
                    .client
                    .send_message()
                    .queue_url(url)
                    .message_body(body.to_string())
                    .delay_seconds(delay_seconds.min(900) as i32)
                    .send()
                    .await;
                match sent {
                    Ok(_) => return Ok(()),
                    // Deleted behind our back (or the cache is stale): create it again.
                    Err(e) if attempt == 0 && missing_queue(&e) => self.forget(pool_id),
                    Err(e) => return Err(error("SendMessage", e)),
                }
            }
            Err(QueueError("SQS SendMessage: the queue keeps disappearing".into()))
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
            let url = self.url(pool_id).await?;
            let out = self
                .client
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(max.clamp(1, 10) as i32)
                .wait_time_seconds(wait_seconds.min(MAX_WAIT_SECONDS) as i32)
                .visibility_timeout(visibility_seconds.min(MAX_VISIBILITY_SECONDS) as i32)
                .message_system_attribute_names(
                    aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount,
                )
                .send()
                .await
                .map_err(|e| error("ReceiveMessage", e))?;
            let mut got = Vec::new();
            for m in out.messages.unwrap_or_default() {
                let (Some(receipt), Some(body)) = (m.receipt_handle, m.body) else {
                    continue;
                };
                let body = match serde_json::from_str(&body) {
                    Ok(v) => v,
                    // Not ours: hand it back as a string, the consumer drops it.
                    Err(_) => Value::String(body),
                };
                let receive_count = m
                    .attributes
                    .as_ref()
                    .and_then(|a| {
                        a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount)
                    })
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(1);
                got.push(Received {
                    message_id: m.message_id.unwrap_or_default(),
                    receipt,
                    body,
                    receive_count,
                });
            }
            Ok(got)
        })
    }

    fn delete<'a>(&'a self, pool_id: Uuid, receipt: &'a str) -> QueueFuture<'a, ()> {
        Box::pin(async move {
            let url = self.url(pool_id).await?;
            self.client
                .delete_message()
                .queue_url(url)
                .receipt_handle(receipt)
                .send()
                .await
                .map_err(|e| error("DeleteMessage", e))?;
            Ok(())
        })
    }

    fn release<'a>(&'a self, pool_id: Uuid, receipt: &'a str, seconds: u32) -> QueueFuture<'a, ()> {
        Box::pin(async move {
            let url = self.url(pool_id).await?;
            self.client
                .change_message_visibility()
                .queue_url(url)
                .receipt_handle(receipt)
                .visibility_timeout(seconds.min(MAX_VISIBILITY_SECONDS) as i32)
                .send()
                .await
                .map_err(|e| error("ChangeMessageVisibility", e))?;
            Ok(())
        })
    }
}
