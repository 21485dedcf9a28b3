//! worker-jobs: runs job messages from the jobs queue, one span per record, reporting failed
//! records so only they are retried (and reach the jobs DLQ after `maxReceiveCount`).

#![recursion_limit = "256"]

use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{service_fn, Error, LambdaEvent};

use shared::config::Config;
use shared::experiments::runner::{run_check, CheckError, CheckRun};
use shared::jobs::{DlqDepth, DlqReport, DLQ_WATCH, REMINDER_DISPATCH, SIGNIFICANCE_CHECK};
use shared::nudges::service::{NudgeError, Nudges};
use shared::queue::{for_each_record, JobMessage, RecordFailure, SqsProducer};
use shared::store::DynamoStore;
use shared::telemetry::{Metrics, Unit};

struct Jobs {
    config: Config,
    store: DynamoStore,
    producer: SqsProducer,
}

#[derive(Debug, thiserror::Error)]
enum JobFailure {
    #[error("the message body is not a job message")]
    Malformed(#[source] serde_json::Error),
    #[error("unknown job '{0}'")]
    Unknown(String),
    #[error(transparent)]
    Store(#[from] shared::error::StoreError),
    #[error(transparent)]
    Queue(#[from] shared::error::QueueError),
    #[error("job parameters: {0}")]
    BadParams(String),
    #[error(transparent)]
    Check(#[from] CheckError),
    #[error(transparent)]
    Nudge(#[from] NudgeError),
}

impl RecordFailure for JobFailure {
    fn error_type(&self) -> &'static str {
        match self {
            JobFailure::Malformed(_) => "malformed_message",
            JobFailure::Unknown(_) => "unknown_job",
            JobFailure::Store(_) => "store_error",
            JobFailure::Queue(_) => "queue_error",
            JobFailure::BadParams(_) => "bad_params",
            JobFailure::Check(CheckError::Store(_)) => "store_error",
            JobFailure::Check(CheckError::Queue(_)) => "queue_error",
            JobFailure::Check(CheckError::Analysis(_)) => "analysis_error",
            JobFailure::Check(CheckError::Contended(_)) => "contended",
            JobFailure::Nudge(NudgeError::Store(_)) => "store_error",
            JobFailure::Nudge(NudgeError::Queue(_)) => "queue_error",
            JobFailure::Nudge(NudgeError::Contended(_)) => "contended",
            JobFailure::Nudge(_) => "nudge_error",
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let config = Config::from_env()?;
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let jobs = Arc::new(Jobs {
        store: DynamoStore::new(aws_sdk_dynamodb::Client::new(&aws), &config.table_name),
        producer: SqsProducer::new(aws_sdk_sqs::Client::new(&aws)),
        config,
    });
    shared::telemetry::cold_start("worker-jobs");
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let jobs = jobs.clone();
        async move { Ok::<_, Error>(handle(&jobs, event.payload).await) }
    }))
    .await
}

async fn handle(jobs: &Jobs, event: SqsEvent) -> SqsBatchResponse {
    for_each_record(event, |record| async move {
        run_record(jobs, record.body.as_deref().unwrap_or_default()).await
    })
    .await
}

async fn run_record(jobs: &Jobs, body: &str) -> Result<(), JobFailure> {
    let job: JobMessage = serde_json::from_str(body).map_err(JobFailure::Malformed)?;
    tracing::info!(job = %job.job, job_id = %job.job_id, "running job");
    match job.job.as_str() {
        DLQ_WATCH => dlq_watch(jobs, &job).await,
        SIGNIFICANCE_CHECK => significance_check(jobs, &job).await,
        REMINDER_DISPATCH => reminder_dispatch(jobs, &job).await,
        other => Err(JobFailure::Unknown(other.to_string())),
    }
}

/// The time a fanned-out job runs as: its sweep's `params.now`, else the wall clock.
fn job_now(job: &JobMessage) -> chrono::DateTime<chrono::Utc> {
    job.params
        .get("now")
        .and_then(|v| v.as_str())
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&chrono::Utc))
        .unwrap_or_else(chrono::Utc::now)
}

/// Runs one experiment's scheduled sequential significance check (see
/// `shared::experiments::runner`). `params.now` is the sweep's time (injectable for replays).
async fn significance_check(jobs: &Jobs, job: &JobMessage) -> Result<(), JobFailure> {
    let key = job
        .params
        .get("experiment")
        .and_then(|v| v.as_str())
        .ok_or_else(|| JobFailure::BadParams("params.experiment is required".into()))?;
    let now = job_now(job);
    let run = run_check(
        &jobs.store,
        &jobs.producer,
        &jobs.config.outbox_queue_url,
        key,
        job.scheduled_at,
        &job.job_id,
        now,
    )
    .await?;
    match &run {
        CheckRun::Skipped(why) => tracing::info!(experiment = key, why, "check skipped"),
        CheckRun::Checked {
            verdict,
            completed,
            notice_sent,
        } => {
            tracing::info!(
                experiment = key,
                ?verdict,
                completed,
                notice_sent,
                "check done"
            );
            Metrics::new("worker-jobs")
                .dimension("experiment", key)
                .value("SignificanceChecks", 1.0, Unit::Count)
                .emit();
        }
    }
    Ok(())
}

/// A dispatch job older than this runs as of the wall clock.
const LATE_DISPATCH_MINUTES: i64 = 5;

/// Sends one user's due trial reminders within their caps, exactly once (see
/// `shared::nudges::service`). `params.now` is the sweep's time.
async fn reminder_dispatch(jobs: &Jobs, job: &JobMessage) -> Result<(), JobFailure> {
    let user_id = job
        .params
        .get("user_id")
        .and_then(|v| v.as_str())
        .ok_or_else(|| JobFailure::BadParams("params.user_id is required".into()))?;
    let now = job_now(job);
    // A job delivered late (say, redriven from the DLQ hours later) runs as of the real time,
    // so quiet hours, caps and "hours left" are judged when the message really leaves; an
    // injected later time (a test or replay of the future) is kept.
    let wall = chrono::Utc::now();
    let now = if now < wall - chrono::Duration::minutes(LATE_DISPATCH_MINUTES) {
        wall
    } else {
        now
    };
    let nudges = Nudges::from_config(&jobs.store, &jobs.producer, &jobs.config);
    let report = nudges.dispatch_user(user_id, now, &job.job_id).await?;
    tracing::info!(
        user_id,
        sent = report.sent.len(),
        resent = report.resent.len(),
        deferred = report.deferred.len(),
        skipped = report.skipped.len(),
        "reminders dispatched"
    );
    Metrics::new("worker-jobs")
        .value(
            "RemindersSent",
            (report.sent.len() + report.resent.len()) as f64,
            Unit::Count,
        )
        .emit();
    Ok(())
}

/// Reads each dead-letter queue's depth, stores the report (shown by `GET /v1/health`) and
/// emits one `DeadLetterMessages` metric per queue. Running it twice just refreshes the report.
async fn dlq_watch(jobs: &Jobs, job: &JobMessage) -> Result<(), JobFailure> {
    let mut depths = Vec::new();
    for (name, url) in &jobs.config.dead_letter_queues {
        let messages = jobs.producer.depth(url).await?;
        Metrics::new("worker-jobs")
            .dimension("queue", name)
            .value("DeadLetterMessages", messages as f64, Unit::Count)
            .emit();
        depths.push(DlqDepth {
            queue: name.clone(),
            messages,
        });
    }
    let report = DlqReport::new(&job.job_id, chrono::Utc::now(), depths);
    if report.total > 0 {
        tracing::warn!(
            total = report.total,
            "dead-letter queues hold messages; see `tierup dlq list`"
        );
    }
    let doc = serde_json::to_value(&report).map_err(JobFailure::Malformed)?;
    jobs.store.put_ops_document(DLQ_WATCH, &doc).await?;
    Ok(())
}
