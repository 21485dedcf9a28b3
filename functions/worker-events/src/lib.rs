//! worker-events: folds queued events exactly once into profiles and daily aggregates, and
//! into the sufficient statistics of every experiment their users are assigned to; then
//! applies them to nudges (trial reminders, prompts, outcomes).
//! `main.rs` wires the clients; tests drive [`handle`] with SQS events against the emulator.

use std::sync::atomic::{AtomicUsize, Ordering};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};

use shared::experiments::fold::{
    self as metric_fold, MetricFoldError, MetricFoldSettings, MetricStore,
};
use shared::ingest::{fold_events, IngestError, IngestSettings, IngestStore};
use shared::nudges::service::{NudgeError, Nudges};
use shared::queue::{for_each_record, EventsMessage, RecordFailure};
use shared::telemetry::{Metrics, Unit};

/// Why a record failed.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("the message body is not an events message")]
    Malformed(#[source] serde_json::Error),
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error(transparent)]
    Metrics(#[from] MetricFoldError),
    #[error(transparent)]
    Nudges(#[from] NudgeError),
}

/// The nudge step run after both folds: trial planning and cancellation, prompt evaluation,
/// nudge outcomes (see `shared::nudges::service`).
pub struct NudgeStep<'a> {
    pub nudges: Nudges<'a>,
    pub default_trial_days: u32,
}

impl RecordFailure for RecordError {
    fn error_type(&self) -> &'static str {
        match self {
            RecordError::Malformed(_) => "malformed_message",
            RecordError::Ingest(IngestError::Store(_)) => "store_error",
            RecordError::Ingest(IngestError::Contended { .. }) => "contended",
            RecordError::Metrics(MetricFoldError::Store(_)) => "store_error",
            RecordError::Metrics(MetricFoldError::Contended { .. }) => "contended",
            RecordError::Nudges(NudgeError::Store(_)) => "store_error",
            RecordError::Nudges(NudgeError::Queue(_)) => "queue_error",
            RecordError::Nudges(NudgeError::Contended(_)) => "contended",
            RecordError::Nudges(_) => "nudge_error",
        }
    }
}

/// Folds every record of a batch; a record that fails is reported for redelivery alone.
pub async fn handle<S: IngestStore + MetricStore>(
    store: &S,
    settings: &IngestSettings,
    nudges: Option<&NudgeStep<'_>>,
    event: SqsEvent,
) -> SqsBatchResponse {
    let (applied, duplicates) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let response = for_each_record(event, |record| {
        let (applied, duplicates) = (&applied, &duplicates);
        async move {
            let message: EventsMessage =
                serde_json::from_str(record.body.as_deref().unwrap_or_default())
                    .map_err(RecordError::Malformed)?;
            let now = chrono::Utc::now();
            let events = message.events;
            let report = fold_events(store, events.clone(), settings, now).await?;
            // Both folds are exactly-once on their own, so a failure of the second only
            // redelivers the message, and the first then finds its work done.
            let metric_settings = MetricFoldSettings {
                dedupe_ttl_days: settings.dedupe_ttl_days,
                shards: settings.aggregate_shards,
            };
            let metrics = metric_fold::fold_events(store, &events, metric_settings, now).await?;
            // Third, nudges: every step there is idempotent too.
            let nudge_report = match nudges {
                Some(step) => Some(
                    step.nudges
                        .apply_events(&events, step.default_trial_days, now)
                        .await?,
                ),
                None => None,
            };
            tracing::info!(
                applied = report.applied,
                duplicates = report.duplicates,
                commits = report.commits,
                conflicts = report.conflicts,
                experiment_observations = metrics.applied,
                nudges = ?nudge_report,
                "record folded"
            );
            applied.fetch_add(report.applied, Ordering::Relaxed);
            duplicates.fetch_add(report.duplicates, Ordering::Relaxed);
            Ok::<_, RecordError>(())
        }
    })
    .await;
    Metrics::new("worker-events")
        .value("EventsApplied", applied.into_inner() as f64, Unit::Count)
        .value(
            "EventsDuplicate",
            duplicates.into_inner() as f64,
            Unit::Count,
        )
        .value(
            "RecordsFailed",
            response.batch_item_failures.len() as f64,
            Unit::Count,
        )
        .emit();
    response
}
