//! scheduler: turns an EventBridge schedule firing (its `Input`, e.g. `{"job":"dlq-watch"}`)
//! into job messages on the jobs queue. Most jobs become one message whose id is derived from
//! the job and the minute, so a retried firing is recognisable downstream. The
//! `significance-sweep` fans out instead: one `significance-check` message per running
//! experiment whose check is due (hourly by default, `check_interval_minutes` per experiment),
//! and one per experiment that still owes its `experiment_concluded` message. The
//! `reminder-sweep` (each minute) fans out one `reminder-dispatch` per user with a trial
//! reminder due.

use std::sync::Arc;

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

use shared::config::Config;
use shared::experiments::model::Status;
use shared::jobs::{
    effective_now, job_message, reminder_dispatch_message, significance_check_message,
    ScheduleInput, REMINDER_SWEEP, SIGNIFICANCE_SWEEP,
};
use shared::nudges::service::Nudges;
use shared::queue::{MessageSink, SqsProducer};
use shared::store::DynamoStore;

struct Scheduler {
    config: Config,
    producer: SqsProducer,
    store: DynamoStore,
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let config = Config::from_env()?;
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let scheduler = Arc::new(Scheduler {
        producer: SqsProducer::new(aws_sdk_sqs::Client::new(&aws)),
        store: DynamoStore::new(aws_sdk_dynamodb::Client::new(&aws), &config.table_name),
        config,
    });
    shared::telemetry::cold_start("scheduler");
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let scheduler = scheduler.clone();
        async move { fire(&scheduler, event.payload).await }
    }))
    .await
}

async fn fire(s: &Scheduler, input: Value) -> Result<Value, Error> {
    let input: ScheduleInput = serde_json::from_value(input)
        .map_err(|e| format!("schedule input must be {{\"job\": \"<name>\"}}: {e}"))?;
    let fired = chrono::Utc::now();
    if input.job == SIGNIFICANCE_SWEEP {
        return sweep(s, &input, fired).await;
    }
    if input.job == REMINDER_SWEEP {
        return reminder_sweep(s, &input, fired).await;
    }
    let message = job_message(&input, fired)?;
    let body = serde_json::to_string(&message)?;
    let sink: &dyn MessageSink = &s.producer;
    sink.send_all(&s.config.jobs_queue_url, vec![body], Some(&message.job_id))
        .await?;
    tracing::info!(job = %message.job, job_id = %message.job_id, "job enqueued");
    Ok(serde_json::json!({ "enqueued": [message] }))
}

async fn sweep(
    s: &Scheduler,
    input: &ScheduleInput,
    fired: chrono::DateTime<chrono::Utc>,
) -> Result<Value, Error> {
    let now = effective_now(input, fired)?;
    let running = s.store.list_experiments(&[Status::Running]).await?;
    let mut keys: Vec<String> = running
        .iter()
        .filter(|e| e.check_due(now))
        .map(|e| e.key().to_string())
        .collect();
    // Experiments owing an experiment_concluded message (a decision by hand, or a send that
    // failed): their check job sends it.
    for key in s.store.pending_notices().await? {
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    let due: Vec<_> = keys
        .iter()
        .map(|key| significance_check_message(key, now))
        .collect();
    enqueue(s, &due).await?;
    tracing::info!(
        running = running.len(),
        due = due.len(),
        "significance sweep"
    );
    Ok(serde_json::json!({ "running": running.len(), "enqueued": due }))
}

/// The due-time sweep: one dispatch job per user with a reminder due at `now` (planned, or a
/// send whose confirmation is owed). The dispatch re-reads everything, so a duplicate or
/// overlapping sweep only costs a job that finds nothing to send.
async fn reminder_sweep(
    s: &Scheduler,
    input: &ScheduleInput,
    fired: chrono::DateTime<chrono::Utc>,
) -> Result<Value, Error> {
    let now = effective_now(input, fired)?;
    let nudges = Nudges::from_config(&s.store, &s.producer, &s.config);
    let users = nudges.due_users(now).await?;
    let due: Vec<_> = users
        .iter()
        .map(|u| reminder_dispatch_message(u, now))
        .collect();
    enqueue(s, &due).await?;
    tracing::info!(users = due.len(), "reminder sweep");
    Ok(serde_json::json!({ "enqueued": due }))
}

/// Sends a sweep's job messages to the jobs queue (nothing to send, no request).
async fn enqueue(s: &Scheduler, jobs: &[shared::queue::JobMessage]) -> Result<(), Error> {
    let bodies = jobs
        .iter()
        .map(serde_json::to_string)
        .collect::<Result<Vec<_>, _>>()?;
    if !bodies.is_empty() {
        let sink: &dyn MessageSink = &s.producer;
        sink.send_all(&s.config.jobs_queue_url, bodies, None)
            .await?;
    }
    Ok(())
}
