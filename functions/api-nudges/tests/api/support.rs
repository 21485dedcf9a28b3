use std::sync::Arc;

use api_nudges::{router, AppState};
use axum::Router;
use serde_json::Value;
use shared::auth::Role;
use shared::queue::SqsProducer;
use shared::store::DynamoStore;

#[path = "../../../../shared/tests/integration/support.rs"]
#[allow(dead_code)]
mod store_support;

#[path = "../../../../shared/tests/common/http_app.rs"]
mod http_app;

use http_app::Signer;

pub struct TestApp {
    pub router: Router,
    pub store: DynamoStore,
    signer: Signer,
}

/// The router over a fresh table in the emulator.
pub async fn app() -> TestApp {
    let signer = Signer::new();
    let store = store_support::fresh_store().await;
    let aws = store_support::aws().await;
    let state = AppState {
        verifier: signer.verifier(),
        config: http_app::config(store.table()),
        store: store.clone(),
        producer: SqsProducer::new(aws_sdk_sqs::Client::new(&aws)),
    };
    TestApp {
        router: router(Arc::new(state)),
        store,
        signer,
    }
}

impl TestApp {
    pub fn token(&self, role: Role, sub: &str) -> String {
        self.signer.token(role, sub)
    }

    pub fn admin(&self) -> String {
        self.token(Role::Admin, "admin-1")
    }

    pub fn service(&self) -> String {
        self.token(Role::Service, "svc-1")
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, String, Value) {
        let body = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        http_app::call(&self.router, method, path, token, body).await
    }
}
