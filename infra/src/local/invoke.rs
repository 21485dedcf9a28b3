//! Invokes functions through `cargo lambda watch`'s Lambda invoke API:
//! `POST /2015-03-31/functions/<binary>/invocations` with the event as the body.
//!
//! What the watch server answers (cargo-lambda 1.9): 200 with the function's JSON result;
//! 500 with `{"errorType", "errorMessage"}` when the handler returned an error, panicked or
//! could not deserialize the event; 404 with `{"title", "detail"}` when no binary of that name
//! exists. The first invocation of a binary waits for it to compile.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

/// How long an invocation may wait for the function to be rebuilt after a code change, on
/// top of its timeout. It also bounds the wait when the watch server drops an invocation (it
/// does when a code change restarts the function mid-invocation).
const COMPILE_ALLOWANCE: Duration = Duration::from_secs(180);

#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    #[error("function {binary} failed: {error_type}: {message}")]
    Function {
        binary: String,
        error_type: String,
        message: String,
    },
    #[error("cargo lambda watch knows no function {binary}: {detail}")]
    NoSuchFunction { binary: String, detail: String },
    #[error("invoking {binary}: status {status}: {body}")]
    Unexpected {
        binary: String,
        status: u16,
        body: String,
    },
    #[error("invoking {binary}: {source}")]
    Transport {
        binary: String,
        #[source]
        source: reqwest::Error,
    },
}

#[derive(Debug, Clone)]
pub struct Invoker {
    http: reqwest::Client,
    base_url: String,
    /// Invocations per function since the stack started (shared by every clone), as
    /// `GET /_local/invocations` reports them.
    counts: Arc<Mutex<BTreeMap<String, u64>>>,
}

impl Invoker {
    pub fn new(base_url: &str) -> Invoker {
        Invoker {
            http: reqwest::Client::new(),
            base_url: base_url.trim_end_matches('/').to_string(),
            counts: Arc::default(),
        }
    }

    /// Invocations per function so far.
    pub fn counts(&self) -> BTreeMap<String, u64> {
        self.counts.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Invokes `binary` with `event`; `timeout` is the function's own timeout.
    pub async fn invoke(
        &self,
        binary: &str,
        event: &Value,
        timeout: Duration,
    ) -> Result<Value, InvokeError> {
        let url = format!(
            "{}/2015-03-31/functions/{binary}/invocations",
            self.base_url
        );
        if let Ok(mut counts) = self.counts.lock() {
            *counts.entry(binary.to_string()).or_default() += 1;
        }
        let transport = |source| InvokeError::Transport {
            binary: binary.to_string(),
            source,
        };
        let response = self
            .http
            .post(url)
            .json(event)
            .timeout(timeout + COMPILE_ALLOWANCE)
            .send()
            .await
            .map_err(transport)?;
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(transport)?;
        interpret(binary, status, &body)
    }
}

fn interpret(binary: &str, status: u16, body: &[u8]) -> Result<Value, InvokeError> {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    let field = |name: &str| {
        json.as_ref()
            .and_then(|j| j.get(name))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    match status {
        200..=299 if body.is_empty() => Ok(Value::Null),
        200..=299 => json.ok_or_else(|| InvokeError::Unexpected {
            binary: binary.to_string(),
            status,
            body: String::from_utf8_lossy(body).into_owned(),
        }),
        404 => Err(InvokeError::NoSuchFunction {
            binary: binary.to_string(),
            detail: field("detail").unwrap_or_default(),
        }),
        _ => match (field("errorType"), field("errorMessage")) {
            (Some(error_type), Some(message)) => Err(InvokeError::Function {
                binary: binary.to_string(),
                error_type,
                message,
            }),
            _ => Err(InvokeError::Unexpected {
                binary: binary.to_string(),
                status,
                body: String::from_utf8_lossy(body).into_owned(),
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_answers_map_to_results_and_errors() {
        assert_eq!(
            interpret("f", 200, br#"{"a":1}"#).unwrap(),
            serde_json::json!({"a": 1})
        );
        assert_eq!(interpret("f", 200, b"").unwrap(), Value::Null);
        let err = interpret("f", 500, br#"{"errorType":"E","errorMessage":"boom"}"#).unwrap_err();
        assert!(matches!(err, InvokeError::Function { ref message, .. } if message == "boom"));
        let err =
            interpret("f", 404, br#"{"title":"Missing function","detail":"no"}"#).unwrap_err();
        assert!(matches!(err, InvokeError::NoSuchFunction { .. }));
        assert!(matches!(
            interpret("f", 502, b"bad gateway").unwrap_err(),
            InvokeError::Unexpected { status: 502, .. }
        ));
    }
}
