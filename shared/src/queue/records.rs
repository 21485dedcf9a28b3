//! The consuming side: every SQS-triggered function handles its batch the same way, each
//! record in its own span, failures reported per record (`ReportBatchItemFailures`) so only
//! they are redelivered and, after `maxReceiveCount`, dead-lettered.

use std::future::Future;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use tracing::Instrument;

/// A record's failure, with a stable `error_type` for logs and metrics.
pub trait RecordFailure: std::error::Error {
    fn error_type(&self) -> &'static str;
}

/// The correlation id a producer put on the message, else its message id.
pub fn correlation_id(record: &SqsMessage) -> String {
    record
        .message_attributes
        .get("correlation_id")
        .and_then(|a| a.string_value.clone())
        .or_else(|| record.message_id.clone())
        .unwrap_or_default()
}

/// Runs `handle` on every record, in order, each in a `record` span with its message and
/// correlation ids; returns the ids of the records that failed.
pub async fn for_each_record<F, Fut, E>(event: SqsEvent, mut handle: F) -> SqsBatchResponse
where
    F: FnMut(SqsMessage) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: RecordFailure,
{
    let mut response = SqsBatchResponse::default();
    for record in event.records {
        let message_id = record.message_id.clone().unwrap_or_default();
        let receive_count = record
            .attributes
            .get("ApproximateReceiveCount")
            .cloned()
            .unwrap_or_default();
        let span = tracing::info_span!(
            "record",
            message_id = %message_id,
            correlation_id = %correlation_id(&record),
            receive_count = %receive_count,
        );
        if let Err(e) = handle(record).instrument(span.clone()).await {
            span.in_scope(|| {
                tracing::error!(
                    error_type = e.error_type(),
                    error = %crate::http::error_chain(&e),
                    "record failed; it will be redelivered"
                )
            });
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = message_id;
            response.batch_item_failures.push(failure);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("bad record")]
    struct Bad;

    impl RecordFailure for Bad {
        fn error_type(&self) -> &'static str {
            "bad"
        }
    }

    fn event(bodies: &[&str]) -> SqsEvent {
        let records: Vec<serde_json::Value> = bodies
            .iter()
            .enumerate()
            .map(|(i, b)| serde_json::json!({"messageId": format!("m{i}"), "body": b}))
            .collect();
        serde_json::from_value(serde_json::json!({ "Records": records })).unwrap()
    }

    #[tokio::test]
    async fn only_failed_records_are_reported() {
        let response = for_each_record(event(&["ok", "bad", "ok"]), |r| async move {
            if r.body.as_deref() == Some("bad") {
                Err(Bad)
            } else {
                Ok(())
            }
        })
        .await;
        let ids: Vec<_> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        assert_eq!(ids, vec!["m1"]);
    }
}
