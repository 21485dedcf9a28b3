//! worker-events: wires the store and runs [`worker_events::handle`] on each SQS batch.

#![recursion_limit = "512"]

use std::sync::Arc;

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{service_fn, Error, LambdaEvent};

use shared::config::Config;
use shared::ingest::IngestSettings;
use shared::nudges::service::Nudges;
use shared::queue::SqsProducer;
use shared::store::DynamoStore;
use worker_events::NudgeStep;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let config = Config::from_env()?;
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&aws), &config.table_name);
    let producer = SqsProducer::new(aws_sdk_sqs::Client::new(&aws));
    let settings = IngestSettings::from_config(&config);
    let state = Arc::new((store, producer, config, settings));
    shared::telemetry::cold_start("worker-events");
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let state = state.clone();
        async move {
            let (store, producer, config, settings) = state.as_ref();
            let step = NudgeStep {
                nudges: Nudges::from_config(store, producer, config),
                default_trial_days: config.default_trial_days,
            };
            Ok::<_, Error>(worker_events::handle(store, settings, Some(&step), event.payload).await)
        }
    }))
    .await
}
