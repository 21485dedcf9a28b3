//! Assignment decisions: sticky first, then GrowthBook-compatible bucketing.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::fold::Assignment;
use super::growthbook;
use super::model::{Experiment, Status, Variant};

/// Why a user is not in an experiment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotInReason {
    /// Draft, paused, completed or cancelled: show the default experience.
    ExperimentNotRunning,
    /// The user id (hash attribute) is empty.
    HashAttributeMissing,
    /// Outside the experiment's namespace range.
    Namespace,
    /// The targeting condition does not match the attributes.
    Condition,
    /// The user's bucket falls outside every variant's range (coverage below 1).
    Coverage,
}

/// What an assignment call decides.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// The stored assignment of the current bucket version.
    Sticky(Assignment),
    /// A first assignment, to be stored with a conditional write.
    New(Assignment),
    NotInExperiment(NotInReason),
}

/// The attributes a condition sees: the caller's, with `id` set to the user id.
pub fn attributes_for(user_id: &str, attributes: &Map<String, Value>) -> Map<String, Value> {
    let mut all = attributes.clone();
    all.insert("id".to_string(), Value::String(user_id.to_string()));
    all
}

/// Decides a user's assignment. `existing` is the stored assignment, if any.
pub fn decide(
    experiment: &Experiment,
    user_id: &str,
    attributes: &Map<String, Value>,
    existing: Option<&Assignment>,
    now: DateTime<Utc>,
) -> Decision {
    if experiment.status != Status::Running {
        return Decision::NotInExperiment(NotInReason::ExperimentNotRunning);
    }
    if let Some(a) = existing {
        if a.bucket_version == experiment.bucket_version {
            return Decision::Sticky(a.clone());
        }
    }
    let d = &experiment.definition;
    let forced = d
        .forced_variants
        .get(user_id)
        .and_then(|k| d.variant_index(k));
    let attrs = attributes_for(user_id, attributes);
    let spec = growthbook::ExperimentSpec {
        key: d.key.clone(),
        seed: Some(d.seed.clone()),
        hash_version: d.hash_version,
        variations: d.variants.len(),
        weights: Some(d.weights.clone()),
        coverage: d.coverage,
        namespace: d.namespace.as_ref().map(|n| growthbook::Namespace {
            id: n.id.clone(),
            start: n.start,
            end: n.end,
        }),
        condition: d.condition.clone(),
        forced: forced
            .map(|v| [(user_id.to_string(), v)].into_iter().collect())
            .unwrap_or_default(),
        hash_attribute: "id".to_string(),
        active: true,
    };
    let user = growthbook::UserContext::new(attrs);
    match growthbook::evaluate(&spec, &user) {
        growthbook::Assignment::InExperiment {
            variation,
            hash_value,
            forced,
            ..
        } => Decision::New(Assignment {
            experiment: d.key.clone(),
            user_id: user_id.to_string(),
            variant: variation,
            variant_key: d.variants[variation].key.clone(),
            bucket_version: experiment.bucket_version,
            epoch: experiment.current_epoch(),
            assigned_at: now,
            forced,
            hash_value: (!forced).then_some(hash_value),
            totals: Default::default(),
            version: 1,
        }),
        growthbook::Assignment::NotInExperiment { reason } => {
            use growthbook::NotInExperimentReason as R;
            Decision::NotInExperiment(match reason {
                R::HashAttributeMissing => NotInReason::HashAttributeMissing,
                R::Namespace => NotInReason::Namespace,
                R::Condition => NotInReason::Condition,
                R::Inactive => NotInReason::ExperimentNotRunning,
                _ => NotInReason::Coverage,
            })
        }
    }
}

/// An assignment as the API answers it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssignmentView {
    pub experiment: String,
    pub user_id: String,
    pub in_experiment: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<Variant>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant_index: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bucket_version: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assigned_at: Option<DateTime<Utc>>,
    /// True when this answer is a stored earlier assignment.
    pub sticky: bool,
    pub forced: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash_value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<NotInReason>,
}

impl AssignmentView {
    pub fn assigned(experiment: &Experiment, a: &Assignment, sticky: bool) -> AssignmentView {
        AssignmentView {
            experiment: a.experiment.clone(),
            user_id: a.user_id.clone(),
            in_experiment: true,
            variant: experiment.definition.variants.get(a.variant).cloned(),
            variant_index: Some(a.variant),
            bucket_version: Some(a.bucket_version),
            assigned_at: Some(a.assigned_at),
            sticky,
            forced: a.forced,
            hash_value: a.hash_value,
            reason: None,
        }
    }

    pub fn not_in(experiment: &str, user_id: &str, reason: NotInReason) -> AssignmentView {
        AssignmentView {
            experiment: experiment.to_string(),
            user_id: user_id.to_string(),
            in_experiment: false,
            variant: None,
            variant_index: None,
            bucket_version: None,
            assigned_at: None,
            sticky: false,
            forced: false,
            hash_value: None,
            reason: Some(reason),
        }
    }
}
