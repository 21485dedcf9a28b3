//! Test plumbing shared by the HTTP functions' handler tests (included with `#[path]`): a
//! signing key with its verifier and tokens, and one request through a router.

use axum::body::Body;
use axum::Router;
use http::{Request, Response};
use p256::pkcs8::{EncodePrivateKey, LineEnding};
use serde_json::Value;
use shared::auth::{mint_es256, Role, TokenRequest, Verifier};
use shared::config::Config;
use tower::ServiceExt;

pub const ISSUER: &str = "https://issuer.test";
pub const AUDIENCE: &str = "tierup";

/// A function's configuration for handler tests: `table`, queues on a closed port, this
/// module's issuer and audience.
pub fn config(table: &str) -> Config {
    let vars: std::collections::HashMap<String, String> = [
        ("TABLE_NAME", table),
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
    Config::from_map(&vars).unwrap()
}

/// An ES256 key of the test's own, its JWKS, and tokens signed with it.
pub struct Signer {
    key_pem: String,
    jwks: String,
}

impl Signer {
    pub fn new() -> Signer {
        let secret = p256::SecretKey::random(&mut rand::rngs::OsRng);
        let key_pem = secret.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
        let mut jwk: Value = serde_json::from_str(&secret.public_key().to_jwk_string()).unwrap();
        jwk["kid"] = "k1".into();
        let jwks = serde_json::json!({ "keys": [jwk] }).to_string();
        Signer { key_pem, jwks }
    }

    pub fn verifier(&self) -> Verifier {
        Verifier::from_jwks_json(&self.jwks, ISSUER, AUDIENCE, "role").unwrap()
    }

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
}

/// One request through the router: status, content type and the JSON body (Null if none).
pub async fn call(
    router: &Router,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Vec<u8>,
) -> (u16, String, Value) {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let response: Response<Body> = router
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
