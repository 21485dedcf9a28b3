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
    /// A QA override: answered, never stored or counted, and it wins over a stored
    /// assignment (as forced variations come before sticky bucketing in GrowthBook).
    Forced(Assignment),
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
    let d = &experiment.definition;
    let forced = d
        .forced_variants
        .get(user_id)
        .and_then(|k| d.variant_index(k));
    if let Some(a) = existing {
        if a.bucket_version == experiment.bucket_version && forced.is_none() {
            return Decision::Sticky(a.clone());
        }
    }
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
        } => {
            let a = Assignment {
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
            };
            if forced {
                Decision::Forced(a)
            } else {
                Decision::New(a)
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiments::lifecycle;
    use crate::experiments::model::{parse_json, CreateRequest};

    fn running(extra: &str) -> Experiment {
        let body = format!(
            r#"{{"key": "qa", "name": "QA", "test_type": "custom",
                "variants": [{{"key": "a"}}, {{"key": "b"}}],
                "primary_metric": {{"name": "m", "kind": "proportion"}}{extra}}}"#
        );
        let req: CreateRequest = parse_json(body.as_bytes()).unwrap();
        let now = Utc::now();
        let (draft, _) = lifecycle::create(req.into_definition().unwrap(), "a", now);
        lifecycle::transition(&draft, Status::Running, None, "a", now)
            .unwrap()
            .0
    }

    #[test]
    fn given_a_forced_user_with_a_stored_assignment_when_assigned_then_the_override_wins() {
        let e = running(r#", "forced_variants": {"tester": "b"}"#);
        let stored = Assignment {
            experiment: "qa".into(),
            user_id: "tester".into(),
            variant: 0,
            variant_key: "a".into(),
            bucket_version: 1,
            epoch: 0,
            assigned_at: Utc::now(),
            forced: false,
            hash_value: Some(0.1),
            totals: Default::default(),
            version: 1,
        };
        match decide(&e, "tester", &Map::new(), Some(&stored), Utc::now()) {
            Decision::Forced(a) => assert_eq!((a.variant, a.forced), (1, true)),
            other => panic!("{other:?}"),
        }
        // Without the override the stored assignment is sticky.
        let plain = running("");
        assert!(matches!(
            decide(&plain, "tester", &Map::new(), Some(&stored), Utc::now()),
            Decision::Sticky(_)
        ));
    }

    #[test]
    fn given_a_user_outside_the_condition_when_assigned_then_the_reason_is_named() {
        let e = running(r#", "condition": {"country": "DE"}"#);
        let mut attrs = Map::new();
        attrs.insert("country".into(), Value::String("FR".into()));
        assert_eq!(
            decide(&e, "u1", &attrs, None, Utc::now()),
            Decision::NotInExperiment(NotInReason::Condition)
        );
        attrs.insert("country".into(), Value::String("DE".into()));
        assert!(matches!(
            decide(&e, "u1", &attrs, None, Utc::now()),
            Decision::New(_)
        ));
    }
}
