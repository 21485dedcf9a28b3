//! Experiments: the lifecycle of A/B tests, sticky GrowthBook-compatible assignment, exactly-once
//! sufficient statistics, results and scheduled sequential significance checks.
//!
//! - [`model`]: the definition, its requests and validation;
//! - [`lifecycle`]: status transitions and edits with their audit records;
//! - [`assign`]: sticky assignment decisions over [`crate::growthbook`] bucketing;
//! - [`fold`]: metric observations into per-variant (n, Σx, Σx²), exactly once;
//! - [`analysis`]: results from the stored statistics via [`crate::statistics`];
//! - [`checks`]: the stopping rule of scheduled checks and their history points.

pub mod analysis;
pub mod assign;
pub mod checks;
pub mod fold;
pub mod lifecycle;
pub mod model;
pub mod runner;

pub(crate) use crate::{growthbook, statistics};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use model::OutcomeResult;

/// The outbox message a concluded experiment sends (`type = experiment_concluded`). Its
/// `message_id` is stable, so a consumer can drop a redelivered copy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentConcluded {
    #[serde(rename = "type")]
    pub kind: String,
    pub message_id: String,
    pub experiment: String,
    pub bucket_version: u32,
    pub result: OutcomeResult,
    pub winner: Option<String>,
    pub completed: bool,
    pub decided_at: DateTime<Utc>,
    pub evidence: Value,
}

impl ExperimentConcluded {
    pub fn new(e: &model::Experiment) -> Option<ExperimentConcluded> {
        let o = e.outcome.as_ref()?;
        Some(ExperimentConcluded {
            kind: "experiment_concluded".to_string(),
            message_id: format!("experiment_concluded:{}:{}", e.key(), e.bucket_version),
            experiment: e.key().to_string(),
            bucket_version: e.bucket_version,
            result: o.result,
            winner: o.winner.clone(),
            completed: e.status == model::Status::Completed,
            decided_at: o.decided_at,
            evidence: o.evidence.clone(),
        })
    }
}
