//! Structured telemetry: JSON logs through `tracing`, and metrics as CloudWatch Embedded
//! Metric Format (EMF) lines on stdout, which Lambda forwards to CloudWatch Logs where they
//! become metrics without an API call.

use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{json, Map, Value};

/// The CloudWatch namespace of every tierup metric.
pub const NAMESPACE: &str = "tierup";

/// Starts JSON logging filtered by `RUST_LOG` (default `info`). Safe to call twice.
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .without_time()
        .try_init();
}

/// A metric's unit, as CloudWatch names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Milliseconds,
    Bytes,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
            Unit::Bytes => "Bytes",
        }
    }
}

/// Builds one EMF document: a set of metrics sharing dimensions.
#[derive(Debug, Clone)]
pub struct Metrics {
    function: String,
    dimensions: Vec<(String, String)>,
    values: Vec<(String, f64, Unit)>,
}

impl Metrics {
    pub fn new(function: &str) -> Metrics {
        Metrics {
            function: function.to_string(),
            dimensions: Vec::new(),
            values: Vec::new(),
        }
    }

    pub fn dimension(mut self, name: &str, value: &str) -> Metrics {
        self.dimensions.push((name.to_string(), value.to_string()));
        self
    }

    pub fn value(mut self, name: &str, value: f64, unit: Unit) -> Metrics {
        self.values.push((name.to_string(), value, unit));
        self
    }

    /// The EMF JSON document for a timestamp in epoch milliseconds.
    pub fn document(&self, timestamp_ms: i64) -> Value {
        let mut dims: Vec<&str> = vec!["function"];
        dims.extend(self.dimensions.iter().map(|(n, _)| n.as_str()));
        let mut root = Map::new();
        root.insert(
            "_aws".into(),
            json!({
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": [dims],
                    "Metrics": self.values.iter()
                        .map(|(n, _, u)| json!({"Name": n, "Unit": u.as_str()}))
                        .collect::<Vec<_>>(),
                }],
            }),
        );
        root.insert("function".into(), Value::from(self.function.as_str()));
        for (n, v) in &self.dimensions {
            root.insert(n.clone(), Value::from(v.as_str()));
        }
        for (n, v, _) in &self.values {
            root.insert(n.clone(), json!(v));
        }
        Value::Object(root)
    }

    /// Writes the document as one stdout line.
    pub fn emit(&self) {
        if self.values.is_empty() {
            return;
        }
        println!("{}", self.document(chrono::Utc::now().timestamp_millis()));
    }
}

static COLD: AtomicBool = AtomicBool::new(true);

/// True on the first call in this process (a cold start), false after; emits a `ColdStart`
/// metric the first time.
pub fn cold_start(function: &str) -> bool {
    let cold = COLD.swap(false, Ordering::Relaxed);
    if cold {
        Metrics::new(function)
            .value("ColdStart", 1.0, Unit::Count)
            .emit();
    }
    cold
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_document_declares_every_metric_and_dimension() {
        let doc = Metrics::new("worker-events")
            .dimension("outcome", "applied")
            .value("EventsFolded", 12.0, Unit::Count)
            .document(1_700_000_000_000);
        assert_eq!(doc["_aws"]["Timestamp"], 1_700_000_000_000i64);
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "tierup");
        assert_eq!(directive["Dimensions"][0], json!(["function", "outcome"]));
        assert_eq!(
            directive["Metrics"][0],
            json!({"Name": "EventsFolded", "Unit": "Count"})
        );
        assert_eq!(doc["EventsFolded"], 12.0);
        assert_eq!(doc["outcome"], "applied");
        assert_eq!(doc["function"], "worker-events");
    }
}
