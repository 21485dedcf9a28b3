//! Helpers for end-to-end tests against the running local stack (`scripts/with-stack.sh`
//! exports its settings; after `make run`, `set -a; source .local/stack.env` does too).

use std::time::{Duration, Instant};

use serde_json::Value;
use shared::auth::{mint_es256, Role, TokenRequest};

/// The running stack, as its environment describes it.
pub struct Stack {
    pub api: String,
    http: reqwest::Client,
    key_pem: Vec<u8>,
    key_id: String,
    issuer: String,
    audience: String,
    role_claim: String,
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the end-to-end tests through `make test` (or source .local/stack.env after `make run`)")
    })
}

impl Stack {
    pub fn from_env() -> Stack {
        let key_path = env("TIERUP_SIGNING_KEY");
        Stack {
            api: env("TIERUP_API_URL"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("http client"),
            key_pem: std::fs::read(&key_path).unwrap_or_else(|e| panic!("{key_path}: {e}")),
            key_id: env("TIERUP_KEY_ID"),
            issuer: env("AUTH_ISSUER"),
            audience: env("AUTH_AUDIENCE"),
            role_claim: std::env::var("AUTH_ROLE_CLAIM").unwrap_or_else(|_| "role".into()),
        }
    }

    pub fn token(&self, role: Role, sub: &str) -> String {
        mint_es256(
            &self.key_pem,
            &self.key_id,
            &TokenRequest {
                issuer: &self.issuer,
                audience: &self.audience,
                role_claim: &self.role_claim,
                sub,
                role,
                ttl_seconds: 3600,
                now_epoch: chrono::Utc::now().timestamp(),
            },
        )
        .expect("mint token")
    }

    /// Sends a request; returns status and JSON body (Null when the body is not JSON).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{}", self.api, path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        let resp = req.send().await.expect("request to the local stack");
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.expect("response body");
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    pub async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, Some(token), None)
            .await
    }

    pub async fn post_json(&self, path: &str, token: &str, body: &Value) -> (u16, Value) {
        self.call(
            reqwest::Method::POST,
            path,
            Some(token),
            Some(body.to_string().into_bytes()),
        )
        .await
    }

    pub async fn sqs(&self) -> aws_sdk_sqs::Client {
        let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        aws_sdk_sqs::Client::new(&config)
    }
}

/// Polls `check` until it returns `Some`, or panics with `what` after `limit`.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if start.elapsed() > limit {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The URL of a queue of the stack by its template logical id (e.g. `EventsDLQ`).
pub fn queue_url(logical_id: &str) -> String {
    env(&format!("TIERUP_QUEUE_{logical_id}"))
}
