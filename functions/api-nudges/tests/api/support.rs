use std::sync::Arc;

use api_nudges::{router, AppState};
use axum::Router;
use chrono::Utc;
use serde_json::Value;
use shared::auth::Role;
use shared::events::Event;
use shared::ingest::{fold_events, IngestSettings};
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

    /// A user token for `sub`.
    pub fn user(&self, sub: &str) -> String {
        self.token(Role::User, sub)
    }

    /// Folds `events` into the stored profiles as worker-events does (same settings), as of
    /// now; every event must be applied.
    pub async fn fold(&self, events: Vec<Event>) {
        let settings = IngestSettings::from_config(&http_app::config(self.store.table()));
        let count = events.len();
        let report = fold_events(&self.store, events, &settings, Utc::now())
            .await
            .expect("fold");
        assert_eq!(report.applied, count, "{report:?}");
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

    /// `GET path` with `token`: the status and the JSON body.
    pub async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        let (status, _, body) = self.call("GET", path, Some(token), None).await;
        (status, body)
    }

    /// `POST path` with `token` and an optional JSON body: the status and the JSON body.
    pub async fn post(&self, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
        let (status, _, body) = self.call("POST", path, Some(token), body).await;
        (status, body)
    }
}

/// One request through a clone of the router, for callers in spawned tasks.
pub async fn call_router(
    router: Router,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, String, Value) {
    let body = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    http_app::call(&router, method, path, token, body).await
}
