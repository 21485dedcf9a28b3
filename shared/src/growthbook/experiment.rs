//! One experiment, one user: the JavaScript SDK's `runExperiment`, reduced to what a
//! server-side engine has (no URL targeting, query strings, sticky buckets, QA mode or
//! tracking callbacks).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::bucket::{choose_variation, get_bucket_ranges, in_namespace, Namespace};
use super::condition::{eval_condition_on_map, SavedGroups};
use super::hash::hash;
use super::js::Js;

fn default_true() -> bool {
    true
}

fn default_hash_version() -> u32 {
    2
}

fn default_coverage() -> f64 {
    1.0
}

fn default_hash_attribute() -> String {
    "id".to_owned()
}

/// An experiment as the assignment engine needs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentSpec {
    pub key: String,
    /// Hash seed; the key when absent or empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<String>,
    /// 1 or 2 (default); 0 means 1, as `hashVersion || 1` does in the SDK. Other versions put
    /// nobody in the experiment.
    #[serde(default = "default_hash_version")]
    pub hash_version: u32,
    /// How many variations; fewer than 2 puts nobody in the experiment.
    pub variations: usize,
    /// Traffic split; equal weights when absent, of the wrong count or not summing to 1 ± 0.01.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<Vec<f64>>,
    /// Share of eligible users in the experiment, clamped to [0, 1].
    #[serde(default = "default_coverage")]
    pub coverage: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<Namespace>,
    /// A targeting condition (see [`super::validate_condition`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<Value>,
    /// QA overrides: the user's hash attribute value (the user id by default) → variation index.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub forced: BTreeMap<String, usize>,
    /// The attribute whose value is hashed.
    #[serde(default = "default_hash_attribute")]
    pub hash_attribute: String,
    /// An inactive experiment puts nobody in.
    #[serde(default = "default_true")]
    pub active: bool,
}

impl ExperimentSpec {
    /// An active experiment with the defaults: seed = key, hash version 2, equal weights, full
    /// coverage, hashed on `id`.
    pub fn new(key: impl Into<String>, variations: usize) -> Self {
        Self {
            key: key.into(),
            seed: None,
            hash_version: default_hash_version(),
            variations,
            weights: None,
            coverage: default_coverage(),
            namespace: None,
            condition: None,
            forced: BTreeMap::new(),
            hash_attribute: default_hash_attribute(),
            active: true,
        }
    }

    /// The seed hashed with the user: `seed || key`.
    pub fn effective_seed(&self) -> &str {
        match self.seed.as_deref() {
            Some(seed) if !seed.is_empty() => seed,
            _ => &self.key,
        }
    }
}

/// The user being assigned: their attributes, among them the hash attribute (`id`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UserContext {
    #[serde(default)]
    pub attributes: Map<String, Value>,
}

impl UserContext {
    /// A user known only by id (`{"id": id}`).
    pub fn with_id(id: impl Into<String>) -> Self {
        let mut attributes = Map::new();
        attributes.insert("id".to_owned(), Value::String(id.into()));
        Self { attributes }
    }

    pub fn new(attributes: Map<String, Value>) -> Self {
        Self { attributes }
    }
}

/// Why a user is not in an experiment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotInExperimentReason {
    TooFewVariations,
    Inactive,
    HashAttributeMissing,
    InvalidHashVersion,
    ForcedVariationOutOfRange,
    Namespace,
    Condition,
    Coverage,
}

/// The outcome for one user.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Assignment {
    InExperiment {
        variation: usize,
        /// `hash(seed, hash attribute value, hash_version)`, in [0, 1).
        hash_value: f64,
        /// The number the variation was chosen by, the SDK's `Result.bucket`; the same as
        /// `hash_value`, also for forced users (for whom the SDK reports none).
        bucket: f64,
        /// Set by the experiment's `forced` map rather than by the hash.
        forced: bool,
    },
    NotInExperiment {
        reason: NotInExperimentReason,
    },
}

impl Assignment {
    /// The variation, if in the experiment.
    pub fn variation(&self) -> Option<usize> {
        match self {
            Assignment::InExperiment { variation, .. } => Some(*variation),
            Assignment::NotInExperiment { .. } => None,
        }
    }
}

fn out(reason: NotInExperimentReason) -> Assignment {
    Assignment::NotInExperiment { reason }
}

/// [`evaluate_with_groups`] with no saved groups.
pub fn evaluate(spec: &ExperimentSpec, user: &UserContext) -> Assignment {
    evaluate_with_groups(spec, user, &Map::new())
}

/// Assigns a user, in the order of the SDK's `runExperiment`: fewer than 2 variations →
/// inactive → hash attribute missing or empty (falsy in JavaScript: `""`, `0`, `false`,
/// `null`) → forced variation → namespace → condition → coverage and weights.
///
/// Two differences from the SDK, both deliberate: the forced map is per user and checked after
/// the hash attribute (the SDK's `forcedVariations` are per experiment and checked before
/// `active`); and an invalid hash version excludes forced users too.
pub fn evaluate_with_groups(
    spec: &ExperimentSpec,
    user: &UserContext,
    saved_groups: &SavedGroups,
) -> Assignment {
    if spec.variations < 2 {
        return out(NotInExperimentReason::TooFewVariations);
    }
    if !spec.active {
        return out(NotInExperimentReason::Inactive);
    }
    let hash_value = match user.attributes.get(&spec.hash_attribute).map(Js::from_json) {
        Some(v) if v.truthy() => v.to_js_string(),
        _ => return out(NotInExperimentReason::HashAttributeMissing),
    };
    let version = if spec.hash_version == 0 {
        1
    } else {
        spec.hash_version
    };
    let Some(n) = hash(spec.effective_seed(), &hash_value, version) else {
        return out(NotInExperimentReason::InvalidHashVersion);
    };
    if let Some(&variation) = spec.forced.get(hash_value.as_ref()) {
        if variation >= spec.variations {
            return out(NotInExperimentReason::ForcedVariationOutOfRange);
        }
        return Assignment::InExperiment {
            variation,
            hash_value: n,
            bucket: n,
            forced: true,
        };
    }
    if let Some(namespace) = &spec.namespace {
        if !in_namespace(&hash_value, namespace) {
            return out(NotInExperimentReason::Namespace);
        }
    }
    if let Some(condition) = &spec.condition {
        if !eval_condition_on_map(&user.attributes, condition, saved_groups) {
            return out(NotInExperimentReason::Condition);
        }
    }
    let ranges = get_bucket_ranges(spec.variations, spec.coverage, spec.weights.as_deref());
    match choose_variation(n, &ranges) {
        Some(variation) => Assignment::InExperiment {
            variation,
            hash_value: n,
            bucket: n,
            forced: false,
        },
        None => out(NotInExperimentReason::Coverage),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user(attributes: Value) -> UserContext {
        match attributes {
            Value::Object(map) => UserContext::new(map),
            _ => UserContext::default(),
        }
    }

    #[test]
    fn users_are_bucketed_by_the_version_2_hash_of_seed_and_id() {
        // Given a 50/50 experiment with an explicit seed
        let mut spec = ExperimentSpec::new("exp", 2);
        spec.seed = Some("seed".to_owned());
        // When user "a" is assigned (hash("seed", "a", 2) = 0.0505)
        let got = evaluate(&spec, &UserContext::with_id("a"));
        // Then
        assert_eq!(
            got,
            Assignment::InExperiment {
                variation: 0,
                hash_value: 0.0505,
                bucket: 0.0505,
                forced: false
            }
        );
    }

    #[test]
    fn exclusions_come_in_the_sdk_order() {
        let mut spec = ExperimentSpec::new("exp", 2);
        spec.condition = Some(json!({"country": "US"}));
        spec.namespace = Some(Namespace {
            id: "ns".to_owned(),
            start: 0.0,
            end: 0.0,
        });
        spec.active = false;
        let fr = user(json!({"id": "1", "country": "FR"}));
        let reason = |spec: &ExperimentSpec, u: &UserContext| match evaluate(spec, u) {
            Assignment::NotInExperiment { reason } => Some(reason),
            Assignment::InExperiment { .. } => None,
        };
        assert_eq!(reason(&spec, &fr), Some(NotInExperimentReason::Inactive));
        spec.active = true;
        assert_eq!(
            reason(&spec, &user(json!({"id": ""}))),
            Some(NotInExperimentReason::HashAttributeMissing)
        );
        assert_eq!(reason(&spec, &fr), Some(NotInExperimentReason::Namespace));
        spec.namespace = None;
        assert_eq!(reason(&spec, &fr), Some(NotInExperimentReason::Condition));
        spec.condition = None;
        spec.coverage = 0.0;
        assert_eq!(reason(&spec, &fr), Some(NotInExperimentReason::Coverage));
        spec.hash_version = 3;
        assert_eq!(
            reason(&spec, &fr),
            Some(NotInExperimentReason::InvalidHashVersion)
        );
        assert_eq!(
            reason(&ExperimentSpec::new("one", 1), &fr),
            Some(NotInExperimentReason::TooFewVariations)
        );
    }

    #[test]
    fn forced_users_skip_targeting_and_coverage() {
        // Given an experiment nobody qualifies for, with a QA override for user "qa"
        let mut spec = ExperimentSpec::new("exp", 3);
        spec.coverage = 0.0;
        spec.condition = Some(json!({"never": true}));
        spec.forced.insert("qa".to_owned(), 2);
        spec.forced.insert("bad".to_owned(), 3);
        // When assigned / Then "qa" gets variation 2, marked forced
        let got = evaluate(&spec, &UserContext::with_id("qa"));
        assert!(matches!(
            got,
            Assignment::InExperiment {
                variation: 2,
                forced: true,
                ..
            }
        ));
        // And an override beyond the variations is refused
        assert_eq!(
            evaluate(&spec, &UserContext::with_id("bad")),
            Assignment::NotInExperiment {
                reason: NotInExperimentReason::ForcedVariationOutOfRange
            }
        );
    }

    #[test]
    fn numeric_hash_attributes_hash_as_their_javascript_string() {
        let spec = ExperimentSpec::new("exp", 2);
        assert_eq!(
            evaluate(&spec, &user(json!({"id": 123}))),
            evaluate(&spec, &user(json!({"id": "123"})))
        );
        assert_eq!(evaluate(&spec, &user(json!({"id": 0}))).variation(), None);
    }

    #[test]
    fn specs_and_assignments_round_trip_through_json() {
        // Given a minimal spec in JSON
        let spec: ExperimentSpec =
            serde_json::from_value(json!({"key": "k", "variations": 2})).unwrap();
        // Then the defaults apply
        assert_eq!(spec, ExperimentSpec::new("k", 2));
        // And assignments serialise with a tag and snake_case reasons
        assert_eq!(
            serde_json::to_value(Assignment::NotInExperiment {
                reason: NotInExperimentReason::HashAttributeMissing
            })
            .unwrap(),
            json!({"outcome": "not_in_experiment", "reason": "hash_attribute_missing"})
        );
        let a = evaluate(&spec, &UserContext::with_id("u"));
        let back: Assignment = serde_json::from_value(serde_json::to_value(a).unwrap()).unwrap();
        assert_eq!(back, a);
    }
}
