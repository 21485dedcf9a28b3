//! The SQS event source mapping, emulated: polls a queue, invokes the function with an SQS
//! event and deletes what the function processed. Failed messages are left alone, so the
//! queue's visibility timeout redelivers them and its RedrivePolicy moves them to the DLQ after
//! `maxReceiveCount` receives (the emulator, moto, does that on receive, as SQS does).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, Message, MessageAttributeValue, MessageSystemAttributeName,
};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde_json::{json, Map, Value};
use tracing::{info, warn};

use super::invoke::Invoker;
use crate::template::{QueueRef, SqsSource, REGION};

/// Pause between polls of an empty queue.
const IDLE_PAUSE: Duration = Duration::from_millis(250);
/// Pause after a failed poll before trying again.
const ERROR_BACKOFF: Duration = Duration::from_secs(2);
/// SQS returns at most ten messages per receive.
const MAX_PER_RECEIVE: u32 = 10;

pub struct Poller {
    pub sqs: aws_sdk_sqs::Client,
    pub invoker: Invoker,
    pub queue: QueueRef,
    pub source: SqsSource,
    pub binary: String,
    pub timeout: Duration,
}

impl Poller {
    /// Polls until the task is aborted.
    pub async fn run(self) {
        info!(queue = %self.queue.name, function = %self.binary, "polling");
        loop {
            if let Err(e) = self.poll_once().await {
                warn!(queue = %self.queue.name, error = format!("{e:#}"), "poll failed");
                tokio::time::sleep(ERROR_BACKOFF).await;
            }
        }
    }

    async fn poll_once(&self) -> anyhow::Result<()> {
        let messages = self.receive_batch().await?;
        if messages.is_empty() {
            return Ok(());
        }
        let event = sqs_event(&messages, &self.queue.arn);
        let ids: Vec<&str> = messages
            .iter()
            .map(|m| m.message_id().unwrap_or_default())
            .collect();
        let failed = match self
            .invoker
            .invoke(&self.binary, &event, self.timeout)
            .await
        {
            Ok(result) => failed_items(&ids, &result, self.source.report_batch_item_failures),
            Err(e) => {
                warn!(queue = %self.queue.name, error = %e, "invocation failed; the batch will be redelivered");
                tokio::time::sleep(ERROR_BACKOFF).await;
                return Ok(());
            }
        };
        let done: Vec<&Message> = messages
            .iter()
            .filter(|m| !failed.contains(m.message_id().unwrap_or_default()))
            .collect();
        if !failed.is_empty() {
            warn!(queue = %self.queue.name, failed = failed.len(), "messages reported as failed will be redelivered");
        }
        self.delete(&done).await
    }

    /// Up to BatchSize messages, collecting for at most MaximumBatchingWindowInSeconds once
    /// the first arrived. Short polls with pauses rather than long polls: the emulator serves
    /// one request at a time, and a long poll would hold it for everyone.
    async fn receive_batch(&self) -> anyhow::Result<Vec<Message>> {
        let mut batch = self.receive(self.source.batch_size).await?;
        if batch.is_empty() {
            tokio::time::sleep(IDLE_PAUSE).await;
            return Ok(batch);
        }
        let window = Duration::from_secs(u64::from(self.source.batching_window_seconds));
        let deadline = Instant::now() + window;
        while (batch.len() as u32) < self.source.batch_size {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                break;
            }
            tokio::time::sleep(remaining.min(IDLE_PAUSE)).await;
            let more = self
                .receive(self.source.batch_size - batch.len() as u32)
                .await?;
            batch.extend(more);
        }
        Ok(batch)
    }

    async fn receive(&self, wanted: u32) -> anyhow::Result<Vec<Message>> {
        let max = i32::try_from(wanted.min(MAX_PER_RECEIVE)).unwrap_or(1);
        let output = self
            .sqs
            .receive_message()
            .queue_url(&self.queue.url)
            .max_number_of_messages(max)
            .wait_time_seconds(0)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await?;
        Ok(output.messages.unwrap_or_default())
    }

    async fn delete(&self, messages: &[&Message]) -> anyhow::Result<()> {
        for chunk in messages.chunks(MAX_PER_RECEIVE as usize) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(m.receipt_handle().unwrap_or_default())
                        .build()
                })
                .collect::<Result<Vec<_>, _>>()?;
            let output = self
                .sqs
                .delete_message_batch()
                .queue_url(&self.queue.url)
                .set_entries(Some(entries))
                .send()
                .await?;
            for failure in output.failed() {
                warn!(queue = %self.queue.name, id = failure.id(), reason = ?failure.message(), "delete failed");
            }
        }
        Ok(())
    }
}

/// The message ids to keep on the queue after a successful invocation. With
/// ReportBatchItemFailures, the listed ids; a malformed or unknown entry fails the whole batch,
/// as Lambda does. Without it, none.
pub fn failed_items<'a>(ids: &[&'a str], result: &Value, report: bool) -> HashSet<&'a str> {
    let all = || ids.iter().copied().collect();
    if !report {
        return HashSet::new();
    }
    let Some(failures) = result.get("batchItemFailures").filter(|f| !f.is_null()) else {
        return HashSet::new();
    };
    let Some(failures) = failures.as_array() else {
        return all();
    };
    let mut failed = HashSet::new();
    for failure in failures {
        let id = failure.get("itemIdentifier").and_then(Value::as_str);
        match id.and_then(|id| ids.iter().find(|known| **known == id)) {
            Some(known) => {
                failed.insert(*known);
            }
            None => return all(),
        }
    }
    failed
}

/// The SQS event Lambda delivers for `messages`.
pub fn sqs_event(messages: &[Message], queue_arn: &str) -> Value {
    let records: Vec<Value> = messages.iter().map(|m| record(m, queue_arn)).collect();
    json!({ "Records": records })
}

fn record(message: &Message, queue_arn: &str) -> Value {
    let attributes: Map<String, Value> = message
        .attributes()
        .map(|a| {
            a.iter()
                .map(|(k, v)| (k.as_str().to_string(), Value::from(v.as_str())))
                .collect()
        })
        .unwrap_or_default();
    let message_attributes: Map<String, Value> = message
        .message_attributes()
        .map(|a| {
            a.iter()
                .map(|(k, v)| (k.clone(), message_attribute(v)))
                .collect()
        })
        .unwrap_or_default();
    json!({
        "messageId": message.message_id(),
        "receiptHandle": message.receipt_handle(),
        "body": message.body().unwrap_or_default(),
        "attributes": attributes,
        "messageAttributes": message_attributes,
        "md5OfBody": message.md5_of_body(),
        "md5OfMessageAttributes": message.md5_of_message_attributes(),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": REGION,
    })
}

fn message_attribute(value: &MessageAttributeValue) -> Value {
    let binary = |b: &aws_sdk_sqs::primitives::Blob| Value::from(BASE64.encode(b.as_ref()));
    json!({
        "stringValue": value.string_value(),
        "binaryValue": value.binary_value().map(binary),
        "stringListValues": value.string_list_values(),
        "binaryListValues": value.binary_list_values().iter().map(binary).collect::<Vec<_>>(),
        "dataType": value.data_type(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lambda_events::sqs::SqsEvent;

    #[test]
    fn the_event_is_what_an_sqs_handler_parses() {
        let message = Message::builder()
            .message_id("m1")
            .receipt_handle("rh1")
            .body(r#"{"event_id":"e1"}"#)
            .md5_of_body("abc")
            .attributes(MessageSystemAttributeName::ApproximateReceiveCount, "2")
            .attributes(MessageSystemAttributeName::SentTimestamp, "1795491395937")
            .message_attributes(
                "trace",
                MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value("t-1")
                    .build()
                    .unwrap(),
            )
            .build();
        let value = sqs_event(&[message], "arn:aws:sqs:us-east-1:123456789012:q");
        let event: SqsEvent = serde_json::from_value(value).unwrap();
        let r = &event.records[0];
        assert_eq!(r.message_id.as_deref(), Some("m1"));
        assert_eq!(r.receipt_handle.as_deref(), Some("rh1"));
        assert_eq!(r.body.as_deref(), Some(r#"{"event_id":"e1"}"#));
        assert_eq!(r.attributes["ApproximateReceiveCount"], "2");
        assert_eq!(r.attributes["SentTimestamp"], "1795491395937");
        assert_eq!(
            r.message_attributes["trace"].string_value.as_deref(),
            Some("t-1")
        );
        assert_eq!(r.event_source.as_deref(), Some("aws:sqs"));
        assert_eq!(
            r.event_source_arn.as_deref(),
            Some("arn:aws:sqs:us-east-1:123456789012:q")
        );
        assert_eq!(r.aws_region.as_deref(), Some("us-east-1"));
    }

    #[test]
    fn only_reported_items_stay_on_the_queue() {
        let ids = ["a", "b", "c"];
        let result = json!({"batchItemFailures": [{"itemIdentifier": "b"}]});
        assert_eq!(failed_items(&ids, &result, true), HashSet::from(["b"]));
        assert!(failed_items(&ids, &json!({"batchItemFailures": []}), true).is_empty());
        assert!(failed_items(&ids, &Value::Null, true).is_empty());
        // Without ReportBatchItemFailures a successful invocation settles the whole batch.
        assert!(failed_items(&ids, &result, false).is_empty());
    }

    #[test]
    fn a_malformed_failure_report_fails_the_whole_batch() {
        let ids = ["a", "b"];
        let unknown = json!({"batchItemFailures": [{"itemIdentifier": "zzz"}]});
        assert_eq!(failed_items(&ids, &unknown, true).len(), 2);
        let missing = json!({"batchItemFailures": [{}]});
        assert_eq!(failed_items(&ids, &missing, true).len(), 2);
        let not_a_list = json!({"batchItemFailures": "b"});
        assert_eq!(failed_items(&ids, &not_a_list, true).len(), 2);
    }
}
