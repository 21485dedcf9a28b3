//! worker-events: folds queued events exactly once into profiles and daily aggregates.
//! Each SQS record is processed in its own span; a record that fails is reported in
//! `batchItemFailures` so only it is redelivered (and reaches the DLQ after `maxReceiveCount`).

use std::sync::Arc;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use lambda_runtime::{service_fn, Error, LambdaEvent};
use tracing::Instrument;

use shared::config::Config;
use shared::ingest::{fold_events, IngestSettings, IngestStore};
use shared::queue::EventsMessage;
use shared::store::DynamoStore;
use shared::telemetry::{Metrics, Unit};

struct Worker {
    store: DynamoStore,
    settings: IngestSettings,
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let config = Config::from_env()?;
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let worker = Arc::new(Worker {
        store: DynamoStore::new(aws_sdk_dynamodb::Client::new(&aws), &config.table_name),
        settings: IngestSettings::from_config(&config),
    });
    shared::telemetry::cold_start("worker-events");
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let worker = worker.clone();
        async move { Ok::<_, Error>(handle(&worker.store, &worker.settings, event.payload).await) }
    }))
    .await
}

/// Why a record failed, as a stable `error_type` for logs and metrics.
#[derive(Debug, thiserror::Error)]
enum RecordError {
    #[error("the message body is not an events message")]
    Malformed(#[source] serde_json::Error),
    #[error(transparent)]
    Ingest(#[from] shared::ingest::IngestError),
}

impl RecordError {
    fn error_type(&self) -> &'static str {
        match self {
            RecordError::Malformed(_) => "malformed_message",
            RecordError::Ingest(shared::ingest::IngestError::Store(_)) => "store_error",
            RecordError::Ingest(shared::ingest::IngestError::Contended { .. }) => "contended",
        }
    }
}

async fn handle(
    store: &dyn IngestStore,
    settings: &IngestSettings,
    event: SqsEvent,
) -> SqsBatchResponse {
    let mut failures = Vec::new();
    let (mut applied, mut duplicates) = (0usize, 0usize);
    for record in event.records {
        let message_id = record.message_id.clone().unwrap_or_default();
        let correlation_id = record
            .message_attributes
            .get("correlation_id")
            .and_then(|a| a.string_value.clone())
            .unwrap_or_else(|| message_id.clone());
        let span = tracing::info_span!("record", %message_id, %correlation_id);
        let result = async {
            let message: EventsMessage =
                serde_json::from_str(record.body.as_deref().unwrap_or_default())
                    .map_err(RecordError::Malformed)?;
            let report = fold_events(store, message.events, settings, chrono::Utc::now()).await?;
            tracing::info!(
                applied = report.applied,
                duplicates = report.duplicates,
                commits = report.commits,
                conflicts = report.conflicts,
                "record folded"
            );
            Ok::<_, RecordError>(report)
        }
        .instrument(span.clone())
        .await;
        match result {
            Ok(report) => {
                applied += report.applied;
                duplicates += report.duplicates;
            }
            Err(e) => {
                span.in_scope(|| {
                    tracing::error!(
                        error_type = e.error_type(),
                        error = %shared::http::error_chain(&e),
                        "record failed; it will be redelivered"
                    )
                });
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = message_id;
                failures.push(failure);
            }
        }
    }
    Metrics::new("worker-events")
        .value("EventsApplied", applied as f64, Unit::Count)
        .value("EventsDuplicate", duplicates as f64, Unit::Count)
        .value("RecordsFailed", failures.len() as f64, Unit::Count)
        .emit();
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failures;
    response
}
