use std::collections::HashMap;
use std::sync::Arc;

use api_experiments::{router, AppState};
use axum::body::Body;
use axum::Router;
use http::{Request, Response};
use p256::pkcs8::{EncodePrivateKey, LineEnding};
use serde_json::Value;
use shared::auth::{mint_es256, Role, TokenRequest, Verifier};
use shared::config::Config;
use tower::ServiceExt;

#[path = "../../../../shared/tests/integration/support.rs"]
#[allow(dead_code)]
mod store_support;

pub struct TestApp {
    pub router: Router,
    key_pem: String,
}

const ISSUER: &str = "https://issuer.test";
const AUDIENCE: &str = "tierup";

/// The router over a fresh table in the emulator.
pub async fn app() -> TestApp {
    let secret = p256::SecretKey::random(&mut rand::rngs::OsRng);
    let key_pem = secret.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
    let mut jwk: Value = serde_json::from_str(&secret.public_key().to_jwk_string()).unwrap();
    jwk["kid"] = "k1".into();
    let jwks = serde_json::json!({ "keys": [jwk] }).to_string();
    let store = store_support::fresh_store().await;
    let vars: HashMap<String, String> = [
        ("TABLE_NAME", store.table()),
        ("EVENTS_QUEUE_URL", "http://127.0.0.1:1/queue/events"),
        ("JOBS_QUEUE_URL", "http://127.0.0.1:1/queue/jobs"),
        ("OUTBOX_QUEUE_URL", "http://127.0.0.1:1/queue/outbox"),
        ("AUTH_ISSUER", ISSUER),
        ("AUTH_AUDIENCE", AUDIENCE),
        ("AUTH_JWKS_URL", "file:///unused"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let state = AppState {
        verifier: Verifier::from_jwks_json(&jwks, ISSUER, AUDIENCE, "role").unwrap(),
        config: Config::from_map(&vars).unwrap(),
        store,
    };
    TestApp {
        router: router(Arc::new(state)),
        key_pem,
    }
}

impl TestApp {
    pub fn token(&self, role: Role, sub: &str) -> String {
        mint_es256(
            self.key_pem.as_bytes(),
            "k1",
            &TokenRequest {
                issuer: ISSUER,
                audience: AUDIENCE,
                role_claim: "role",
                sub,
                role,
                ttl_seconds: 300,
                now_epoch: chrono::Utc::now().timestamp(),
            },
        )
        .unwrap()
    }

    pub fn admin(&self) -> String {
        self.token(Role::Admin, "admin-1")
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, String, Value) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let body = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let response: Response<Body> = self
            .router
            .clone()
            .oneshot(req.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, content_type, json)
    }
}
