//! scheduler: turns an EventBridge schedule firing (its `Input`, e.g. `{"job":"dlq-watch"}`)
//! into a job message on the jobs queue. The job id is derived from the job and the minute, so
//! a retried firing is recognisable downstream.

use std::sync::Arc;

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

use shared::config::Config;
use shared::jobs::{job_message, ScheduleInput};
use shared::queue::{MessageSink, SqsProducer};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let config = Arc::new(Config::from_env()?);
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let producer = Arc::new(SqsProducer::new(aws_sdk_sqs::Client::new(&aws)));
    shared::telemetry::cold_start("scheduler");
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let (config, producer) = (config.clone(), producer.clone());
        async move { fire(&config, producer.as_ref(), event.payload).await }
    }))
    .await
}

async fn fire(config: &Config, sink: &dyn MessageSink, input: Value) -> Result<Value, Error> {
    let input: ScheduleInput = serde_json::from_value(input)
        .map_err(|e| format!("schedule input must be {{\"job\": \"<name>\"}}: {e}"))?;
    let message = job_message(&input, chrono::Utc::now())?;
    let body = serde_json::to_string(&message)?;
    sink.send_all(&config.jobs_queue_url, vec![body], Some(&message.job_id))
        .await?;
    tracing::info!(job = %message.job, job_id = %message.job_id, "job enqueued");
    Ok(serde_json::json!({ "enqueued": message }))
}
