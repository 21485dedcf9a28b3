//! api-experiments: experiment lifecycle, assignment, results and analysis, sample size.

use std::sync::Arc;

use api_experiments::{router, AppState};
use shared::auth::Verifier;
use shared::config::Config;
use shared::store::DynamoStore;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::telemetry::init();
    let config = Config::from_env()?;
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let verifier = Verifier::load(&config.auth).await?;
    let state = Arc::new(AppState {
        store: DynamoStore::new(aws_sdk_dynamodb::Client::new(&aws), &config.table_name),
        verifier,
        config,
    });
    shared::telemetry::cold_start("api-experiments");
    shared::http::run(router(state)).await
}
