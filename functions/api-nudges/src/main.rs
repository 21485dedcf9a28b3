//! api-nudges: trial reminders, usage-based prompts, social proof, limited-time offers,
//! per-user optimization analytics.

use std::sync::Arc;

use api_nudges::{router, AppState};
use shared::auth::Verifier;
use shared::config::Config;
use shared::queue::SqsProducer;
use shared::store::DynamoStore;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::telemetry::init();
    let config = Config::from_env()?;
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let verifier = Verifier::load(&config.auth).await?;
    let state = Arc::new(AppState {
        store: DynamoStore::new(aws_sdk_dynamodb::Client::new(&aws), &config.table_name),
        producer: SqsProducer::new(aws_sdk_sqs::Client::new(&aws)),
        verifier,
        config,
    });
    shared::telemetry::cold_start("api-nudges");
    shared::http::run(router(state)).await
}
