//! The two event sources of the template, as AWS runs them: an EventBridge rule that
//! invokes a function on its rate with a scheduled-event payload, and an SQS event source
//! mapping that long-polls a queue, invokes the function with a batch, and deletes what the
//! function did not report failed. Failed messages come back when their visibility timeout
//! ends, and SQS moves one received too often to its dead-letter queue (the queue's redrive
//! policy, which LocalStack applies).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName, QueueAttributeName,
};
use aws_sdk_sqs::Client;
use serde_json::{json, Value};

use super::runtime::Instance;
use super::template::{Queue, QueueSource, Schedule, ACCOUNT, REGION};

/// The rule's invocations: the first at once (a new rule fires within its period), then
/// one per period. EventBridge invokes asynchronously; Lambda retries a failed
/// asynchronous invocation twice, one and two minutes later.
pub async fn schedule(function: Arc<Instance>, schedule: Schedule) {
    let rule = format!(
        "arn:aws:events:{REGION}:{ACCOUNT}:rule/stratus-{}-{}",
        function.id, schedule.name
    );
    let mut ticks = tokio::time::interval(Duration::from_secs(schedule.every_seconds));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let event = scheduled_event(&rule, chrono::Utc::now());
        let function = function.clone();
        tokio::spawn(async move {
            for (attempt, wait) in [0u64, 60, 120].into_iter().enumerate() {
                tokio::time::sleep(Duration::from_secs(wait)).await;
                match function.invoke(&event).await {
                    Ok(_) => return,
                    Err(e) => {
                        tracing::warn!(function = %function.id, attempt, error = ?e, "scheduled invocation failed")
                    }
                }
            }
        });
    }
}

pub fn scheduled_event(rule_arn: &str, at: chrono::DateTime<chrono::Utc>) -> Value {
    json!({
        "version": "0",
        "id": uuid::Uuid::new_v4().to_string(),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT,
        "time": at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "region": REGION,
        "resources": [rule_arn],
        "detail": {},
    })
}

/// Creates the template's queues (dead-letter queues first, so that redrive policies can
/// name them); returns each queue's URL and ARN by logical id.
pub async fn create_queues(
    sqs: &Client,
    queues: &BTreeMap<String, Queue>,
) -> Result<BTreeMap<String, (String, String)>, String> {
    let mut made: BTreeMap<String, (String, String)> = BTreeMap::new();
    let mut ordered: Vec<&Queue> = queues.values().filter(|q| q.redrive.is_none()).collect();
    ordered.extend(queues.values().filter(|q| q.redrive.is_some()));
    for q in ordered {
        let mut create = sqs.create_queue().queue_name(&q.name);
        for (k, v) in &q.attributes {
            create = create.attributes(QueueAttributeName::from(k.as_str()), v);
        }
        if let Some(r) = &q.redrive {
            let (_, dlq_arn) = made
                .get(&r.dead_letter_queue)
                .ok_or_else(|| format!("{}'s dead-letter queue has a redrive policy of its own", q.id))?;
            let policy = json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": r.max_receive_count});
            create = create.attributes(QueueAttributeName::RedrivePolicy, policy.to_string());
        }
        let url = create
            .send()
            .await
            .map_err(|e| {
                format!(
                    "could not create queue {}: {}",
                    q.name,
                    aws_sdk_sqs::error::DisplayErrorContext(e)
                )
            })?
            .queue_url
            .ok_or("CreateQueue returned no URL")?;
        let arn = sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "could not read queue {}: {}",
                    q.name,
                    aws_sdk_sqs::error::DisplayErrorContext(e)
                )
            })?
            .attributes
            .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
            .ok_or("no queue ARN")?;
        made.insert(q.id.clone(), (url, arn));
    }
    Ok(made)
}

pub struct Mapping {
    pub function: Arc<Instance>,
    pub source: QueueSource,
    pub queue_url: String,
    pub queue_arn: String,
}

/// The event source mapping's poller: one batch at a time.
pub async fn poll(sqs: Client, m: Mapping) {
    loop {
        let received = sqs
            .receive_message()
            .queue_url(&m.queue_url)
            .max_number_of_messages(m.source.batch_size as i32)
            .wait_time_seconds(20)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await;
        let messages = match received {
            Ok(out) => out.messages.unwrap_or_default(),
            Err(e) => {
                tracing::warn!(queue = %m.queue_url, error = %aws_sdk_sqs::error::DisplayErrorContext(e), "ReceiveMessage failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if messages.is_empty() {
            continue;
        }
        let event =
            json!({ "Records": messages.iter().map(|msg| record(msg, &m.queue_arn)).collect::<Vec<_>>() });
        let done: Vec<&Message> = match m.function.invoke(&event).await {
            Ok(answer) => match failed_ids(&answer, &messages, m.source.report_batch_item_failures) {
                Some(failed) => messages
                    .iter()
                    .filter(|msg| !failed.iter().any(|f| Some(f.as_str()) == msg.message_id()))
                    .collect(),
                None => Vec::new(),
            },
            Err(e) => {
                tracing::warn!(function = %m.function.id, error = ?e, "the batch failed; its messages return after their visibility timeout");
                Vec::new()
            }
        };
        let entries: Vec<DeleteMessageBatchRequestEntry> = done
            .iter()
            .enumerate()
            .filter_map(|(i, msg)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(msg.receipt_handle()?)
                    .build()
                    .ok()
            })
            .collect();
        if !entries.is_empty() {
            if let Err(e) = sqs
                .delete_message_batch()
                .queue_url(&m.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
            {
                tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(e), "DeleteMessageBatch failed");
            }
        }
    }
}

fn record(msg: &Message, queue_arn: &str) -> Value {
    let attributes: serde_json::Map<String, Value> = msg
        .attributes()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.as_str().to_string(), Value::String(v.clone())))
        .collect();
    json!({
        "messageId": msg.message_id(),
        "receiptHandle": msg.receipt_handle(),
        "body": msg.body(),
        "attributes": attributes,
        "messageAttributes": {},
        "md5OfBody": msg.md5_of_body(),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": REGION,
    })
}

/// The messages the function reported failed; `None` when the whole batch counts as
/// failed (an identifier that is empty or not of the batch, as Lambda treats it).
fn failed_ids(answer: &Value, batch: &[Message], reported: bool) -> Option<Vec<String>> {
    if !reported {
        return Some(Vec::new());
    }
    let Some(items) = answer.get("batchItemFailures").and_then(Value::as_array) else {
        return Some(Vec::new());
    };
    let mut failed = Vec::new();
    for item in items {
        let id = item.get("itemIdentifier").and_then(Value::as_str)?;
        if id.is_empty() || !batch.iter().any(|m| m.message_id() == Some(id)) {
            return None;
        }
        failed.push(id.to_string());
    }
    Some(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(id: &str) -> Message {
        Message::builder()
            .message_id(id)
            .receipt_handle(format!("r-{id}"))
            .body("{}")
            .build()
    }

    #[test]
    fn partial_batch_failures_are_honoured_as_lambda_does() {
        let batch = [msg("a"), msg("b")];
        let failed = |answer: Value| failed_ids(&answer, &batch, true);
        assert_eq!(failed(json!({"batchItemFailures": []})), Some(vec![]));
        assert_eq!(failed(json!(null)), Some(vec![]));
        assert_eq!(
            failed(json!({"batchItemFailures": [{"itemIdentifier": "b"}]})),
            Some(vec!["b".to_string()])
        );
        assert_eq!(
            failed(json!({"batchItemFailures": [{"itemIdentifier": ""}]})),
            None
        );
        assert_eq!(
            failed(json!({"batchItemFailures": [{"itemIdentifier": "zz"}]})),
            None
        );
        // Without ReportBatchItemFailures the answer is not read.
        assert_eq!(
            failed_ids(
                &json!({"batchItemFailures": [{"itemIdentifier": "b"}]}),
                &batch,
                false
            ),
            Some(vec![])
        );
    }

    #[test]
    fn scheduled_events_look_like_eventbridge_ones() {
        let at = chrono::DateTime::parse_from_rfc3339("2026-12-05T08:00:00Z")
            .expect("time")
            .to_utc();
        let e = scheduled_event("arn:rule", at);
        assert_eq!(e["detail-type"], "Scheduled Event");
        assert_eq!(e["source"], "aws.events");
        assert_eq!(e["time"], "2026-12-05T08:00:00Z");
        assert_eq!(e["resources"][0], "arn:rule");
    }
}
