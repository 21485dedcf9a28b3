//! worker-events: wires the store and runs [`worker_events::handle`] on each SQS batch.

use std::sync::Arc;

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{service_fn, Error, LambdaEvent};

use shared::config::Config;
use shared::ingest::IngestSettings;
use shared::store::DynamoStore;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let config = Config::from_env()?;
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let store = Arc::new(DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&aws),
        &config.table_name,
    ));
    let settings = IngestSettings::from_config(&config);
    shared::telemetry::cold_start("worker-events");
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let store = store.clone();
        async move {
            Ok::<_, Error>(worker_events::handle(store.as_ref(), &settings, event.payload).await)
        }
    }))
    .await
}
