use std::sync::Arc;

use api_events::{router, AppState};
use axum::Router;
use shared::auth::Role;
use shared::queue::SqsProducer;
use shared::store::DynamoStore;

#[path = "../../../../shared/tests/common/http_app.rs"]
mod http_app;

use http_app::Signer;

pub struct TestApp {
    pub router: Router,
    signer: Signer,
}

/// The router with storage and queues pointing at a closed port.
pub async fn app() -> TestApp {
    let signer = Signer::new();

    let config = http_app::config("t");
    let aws = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url("http://127.0.0.1:1")
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::for_tests())
        .load()
        .await;
    let state = AppState {
        verifier: signer.verifier(),
        store: DynamoStore::new(aws_sdk_dynamodb::Client::new(&aws), "t"),
        producer: SqsProducer::new(aws_sdk_sqs::Client::new(&aws)),
        config,
    };
    TestApp {
        router: router(Arc::new(state)),
        signer,
    }
}

impl TestApp {
    pub fn token(&self, role: Role, sub: &str) -> String {
        self.signer.token(role, sub)
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Vec<u8>,
    ) -> (u16, String, serde_json::Value) {
        http_app::call(&self.router, method, path, token, body).await
    }
}
