//! The SQS producer, the per-record consumer loop, and the message formats that travel
//! between functions.

mod records;

pub use records::{correlation_id, for_each_record, RecordFailure};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};
use aws_sdk_sqs::Client;
use serde::{Deserialize, Serialize};

use crate::error::QueueError;
use crate::events::Event;

/// Largest message body we send (SQS accepts 256 KiB; headroom for attributes).
pub const MAX_MESSAGE_BYTES: usize = 200 * 1024;
/// Largest total of one SendMessageBatch call.
const MAX_BATCH_BYTES: usize = 250 * 1024;
/// At most this many entries per SendMessageBatch.
const MAX_BATCH_ENTRIES: usize = 10;
/// Events packed into one message at most.
pub const MAX_EVENTS_PER_MESSAGE: usize = 100;

/// Accepted events on their way to worker-events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventsMessage {
    pub events: Vec<Event>,
}

/// A job for worker-jobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobMessage {
    /// Deterministic id (job name + scheduled minute): a job fired twice has one id.
    pub job_id: String,
    pub job: String,
    pub scheduled_at: chrono::DateTime<chrono::Utc>,
    #[serde(default)]
    pub params: serde_json::Value,
}

/// Splits events into message bodies of at most [`MAX_EVENTS_PER_MESSAGE`] events and
/// [`MAX_MESSAGE_BYTES`] bytes.
pub fn pack_events(events: &[Event]) -> Result<Vec<String>, QueueError> {
    // `{"events":[` + `]}`: the envelope around the comma-joined events.
    const ENVELOPE: usize = 13;
    let body = |parts: &[String]| format!("{{\"events\":[{}]}}", parts.join(","));
    let mut bodies = Vec::new();
    let mut current: Vec<String> = Vec::new();
    let mut current_bytes = 0usize;
    for event in events {
        // Each event is serialised once; its size decides the message it joins.
        let json = serde_json::to_string(event)?;
        let size = json.len() + 1;
        if size + ENVELOPE > MAX_MESSAGE_BYTES {
            return Err(QueueError::TooLarge { bytes: size });
        }
        if !current.is_empty()
            && (current.len() == MAX_EVENTS_PER_MESSAGE
                || current_bytes + size + ENVELOPE > MAX_MESSAGE_BYTES)
        {
            bodies.push(body(&current));
            current.clear();
            current_bytes = 0;
        }
        current.push(json);
        current_bytes += size;
    }
    if !current.is_empty() {
        bodies.push(body(&current));
    }
    Ok(bodies)
}

/// Where messages go: the port HTTP handlers and jobs ask for.
#[async_trait]
pub trait MessageSink: Send + Sync {
    /// Sends every body, or fails; a failure may leave some sent (receivers are idempotent).
    async fn send_all(
        &self,
        queue_url: &str,
        bodies: Vec<String>,
        correlation_id: Option<&str>,
    ) -> Result<(), QueueError>;
}

/// SQS-backed producer; counts the requests it makes.
#[derive(Clone, Debug)]
pub struct SqsProducer {
    client: Client,
    requests: Arc<AtomicU64>,
}

impl SqsProducer {
    pub fn new(client: Client) -> SqsProducer {
        SqsProducer {
            client,
            requests: Arc::new(AtomicU64::new(0)),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// SendMessageBatch requests made so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Reachability of a queue (GetQueueAttributes).
    pub async fn ping(&self, queue_url: &str) -> Result<(), QueueError> {
        self.client
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .map_err(|e| QueueError::sdk("GetQueueAttributes", e))?;
        Ok(())
    }

    /// Approximate number of visible messages in a queue.
    pub async fn depth(&self, queue_url: &str) -> Result<u64, QueueError> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .map_err(|e| QueueError::sdk("GetQueueAttributes", e))?;
        Ok(out
            .attributes
            .and_then(|a| {
                a.get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
                    .cloned()
            })
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }
}

fn batches(bodies: Vec<String>) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = Vec::new();
    let mut bytes = 0usize;
    for body in bodies {
        let start_new = match out.last() {
            None => true,
            Some(last) => last.len() == MAX_BATCH_ENTRIES || bytes + body.len() > MAX_BATCH_BYTES,
        };
        if start_new {
            out.push(Vec::new());
            bytes = 0;
        }
        bytes += body.len();
        if let Some(last) = out.last_mut() {
            last.push(body);
        }
    }
    out
}

#[async_trait]
impl MessageSink for SqsProducer {
    async fn send_all(
        &self,
        queue_url: &str,
        bodies: Vec<String>,
        correlation_id: Option<&str>,
    ) -> Result<(), QueueError> {
        for batch in batches(bodies) {
            let mut pending: Vec<(String, String)> = batch
                .into_iter()
                .enumerate()
                .map(|(i, b)| (i.to_string(), b))
                .collect();
            let mut attempt = 0u32;
            while !pending.is_empty() {
                attempt += 1;
                let mut entries = Vec::with_capacity(pending.len());
                for (id, body) in &pending {
                    let mut entry = SendMessageBatchRequestEntry::builder()
                        .id(id)
                        .message_body(body);
                    if let Some(cid) = correlation_id {
                        let attr = MessageAttributeValue::builder()
                            .data_type("String")
                            .string_value(cid)
                            .build()
                            .map_err(|e| QueueError::sdk("SendMessageBatch", e))?;
                        entry = entry.message_attributes("correlation_id", attr);
                    }
                    entries.push(
                        entry
                            .build()
                            .map_err(|e| QueueError::sdk("SendMessageBatch", e))?,
                    );
                }
                self.requests.fetch_add(1, Ordering::Relaxed);
                let out = self
                    .client
                    .send_message_batch()
                    .queue_url(queue_url)
                    .set_entries(Some(entries))
                    .send()
                    .await
                    .map_err(|e| QueueError::sdk("SendMessageBatch", e))?;
                let failed: Vec<_> = out.failed;
                if failed.is_empty() {
                    break;
                }
                let retryable = failed.iter().all(|f| !f.sender_fault);
                if !retryable || attempt >= 3 {
                    return Err(QueueError::Partial {
                        failed: failed.len(),
                        total: pending.len(),
                        reason: failed
                            .first()
                            .and_then(|f| f.message.clone())
                            .unwrap_or_else(|| failed[0].code.clone()),
                    });
                }
                let failed_ids: std::collections::HashSet<String> =
                    failed.into_iter().map(|f| f.id).collect();
                pending.retain(|(id, _)| failed_ids.contains(id));
                tokio::time::sleep(std::time::Duration::from_millis(50 * u64::from(attempt))).await;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{EventBody, FeatureUsed};

    fn event(i: usize, feature_len: usize) -> Event {
        Event {
            event_id: format!("e{i}"),
            user_id: "u".into(),
            timestamp: "2026-11-01T00:00:00Z".parse().unwrap(),
            body: EventBody::FeatureUsed(FeatureUsed {
                feature: "x".repeat(feature_len),
                duration_ms: 1,
            }),
        }
    }

    #[test]
    fn events_pack_by_count_and_by_size() {
        let small: Vec<Event> = (0..250).map(|i| event(i, 5)).collect();
        let bodies = pack_events(&small).unwrap();
        assert_eq!(bodies.len(), 3);
        let back: EventsMessage = serde_json::from_str(&bodies[2]).unwrap();
        assert_eq!(back.events.len(), 50);

        let big: Vec<Event> = (0..10).map(|i| event(i, 60_000)).collect();
        let bodies = pack_events(&big).unwrap();
        assert!(bodies.iter().all(|b| b.len() <= MAX_MESSAGE_BYTES));
        let total: usize = bodies
            .iter()
            .map(|b| {
                serde_json::from_str::<EventsMessage>(b)
                    .unwrap()
                    .events
                    .len()
            })
            .sum();
        assert_eq!(total, 10);
    }

    #[test]
    fn batches_respect_entry_and_byte_limits() {
        let bodies: Vec<String> = (0..25).map(|_| "x".repeat(100)).collect();
        let b = batches(bodies);
        assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), vec![10, 10, 5]);
        let bodies: Vec<String> = (0..3).map(|_| "x".repeat(200 * 1024)).collect();
        assert_eq!(batches(bodies).len(), 3);
    }
}
