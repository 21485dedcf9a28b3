//! The experiment lifecycle: creation, status transitions and edits, each producing the new
//! state and its audit record. Pure: the store writes both in one transaction.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::model::{
    build_update_parts, revalidate, Definition, Experiment, Outcome, OutcomeResult, Status,
    UpdateParts, UpdateRequest, WeightsEpoch,
};
use crate::events::FieldError;

/// One field's change in an audit record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub field: String,
    pub before: Value,
    pub after: Value,
}

/// Who changed what and when. Stored under the experiment, numbered by the version the
/// change produced, so records are ordered and never overwrite each other.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub experiment: String,
    pub version: u64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub changes: Vec<Change>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LifecycleError {
    /// The edit changes nothing: nothing is written and no audit record is made.
    #[error("the edit changes nothing")]
    Unchanged,
    #[error("cannot move from {from} to {to}; allowed from {from}: {allowed}", from = from.as_str(), to = to.as_str())]
    IllegalTransition {
        from: Status,
        to: Status,
        allowed: String,
    },
    #[error("{field} cannot change while the experiment is {status}", status = status.as_str())]
    Locked { field: String, status: Status },
    #[error("the experiment is {status}; it can no longer change", status = status.as_str())]
    Final { status: Status },
    #[error("invalid input")]
    Invalid(Vec<FieldError>),
}

fn allowed_list(from: Status) -> String {
    let next = from.allowed_next();
    if next.is_empty() {
        "none (it is final)".to_string()
    } else {
        next.iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn diff(before: &Value, after: &Value) -> Vec<Change> {
    let (Some(b), Some(a)) = (before.as_object(), after.as_object()) else {
        return Vec::new();
    };
    let mut keys: Vec<&String> = b.keys().chain(a.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| k.as_str() != "version" && k.as_str() != "updated_at")
        .filter_map(|k| {
            let (x, y) = (
                b.get(k).cloned().unwrap_or(Value::Null),
                a.get(k).cloned().unwrap_or(Value::Null),
            );
            (x != y).then(|| Change {
                field: k.clone(),
                before: x,
                after: y,
            })
        })
        .collect()
}

fn as_value(e: &Experiment) -> Value {
    serde_json::to_value(e).unwrap_or(Value::Null)
}

fn record(
    before: Option<&Experiment>,
    after: &Experiment,
    actor: &str,
    action: &str,
) -> AuditRecord {
    let changes = match before {
        Some(b) => diff(&as_value(b), &as_value(after)),
        None => diff(&Value::Object(Default::default()), &as_value(after)),
    };
    AuditRecord {
        experiment: after.key().to_string(),
        version: after.version,
        at: after.updated_at,
        actor: actor.to_string(),
        action: action.to_string(),
        changes,
    }
}

/// A new draft.
pub fn create(
    definition: Definition,
    actor: &str,
    now: DateTime<Utc>,
) -> (Experiment, AuditRecord) {
    let weights = definition.weights.clone();
    let e = Experiment {
        definition,
        status: Status::Draft,
        bucket_version: 1,
        weights_epochs: vec![WeightsEpoch { epoch: 0, weights }],
        created_at: now,
        created_by: actor.to_string(),
        updated_at: now,
        started_at: None,
        phase_started_at: None,
        paused_at: None,
        paused_seconds: 0,
        ended_at: None,
        last_check_at: None,
        outcome: None,
        notice_pending: false,
        version: 1,
    };
    let audit = record(None, &e, actor, "created");
    (e, audit)
}

/// Moves an experiment to `to`. Completing by hand may name the winning variant.
pub fn transition(
    current: &Experiment,
    to: Status,
    winner: Option<&str>,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<(Experiment, AuditRecord), LifecycleError> {
    if !current.status.allowed_next().contains(&to) {
        return Err(LifecycleError::IllegalTransition {
            from: current.status,
            to,
            allowed: allowed_list(current.status),
        });
    }
    if winner.is_some() && to != Status::Completed {
        return Err(LifecycleError::Invalid(vec![FieldError::new(
            "winner",
            "only applies when completing",
        )]));
    }
    let mut next = current.clone();
    next.status = to;
    next.updated_at = now;
    next.version += 1;
    if let Some(paused) = current.paused_at {
        next.paused_seconds += (now - paused).num_seconds().max(0);
        next.paused_at = None;
    }
    match to {
        Status::Running if current.status == Status::Draft => {
            next.started_at = Some(now);
            next.phase_started_at = Some(now);
        }
        Status::Paused => next.paused_at = Some(now),
        Status::Completed | Status::Cancelled => next.ended_at = Some(now),
        _ => {}
    }
    if let Some(w) = winner {
        if current.definition.variant_index(w).is_none() {
            return Err(LifecycleError::Invalid(vec![FieldError::new(
                "winner",
                format!("'{w}' is not a variant key"),
            )]));
        }
    }
    // Completing by hand records the admin's decision: a named winner replaces a scheduled
    // check's recommendation; without one, a recorded outcome stands (or "no difference").
    if to == Status::Completed && (next.outcome.is_none() || winner.is_some()) {
        // A decision by hand is announced like a scheduled one (the next sweep sends it).
        next.notice_pending = true;
        let winner = winner.map(str::to_string);
        next.outcome = Some(Outcome {
            result: if winner.is_some() {
                OutcomeResult::Winner
            } else {
                OutcomeResult::NoDifference
            },
            winner,
            decided_at: now,
            decided_by: actor.to_string(),
            evidence: Value::Null,
        });
    }
    let audit = record(Some(current), &next, actor, "status_changed");
    Ok((next, audit))
}

/// Applies an edit. Variants and metrics are fixed once the experiment has started (its
/// stored statistics are numbered by them); weights and coverage may change while it runs,
/// keeping assigned users where they are unless `bump_bucket_version` re-buckets everyone.
pub fn update(
    current: &Experiment,
    req: &UpdateRequest,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<(Experiment, AuditRecord), LifecycleError> {
    let status = current.status;
    if status.is_final() {
        return Err(LifecycleError::Final { status });
    }
    let started = status != Status::Draft;
    let locked: [(&str, bool); 5] = [
        ("variants", req.variants.is_some()),
        ("primary_metric", req.primary_metric.is_some()),
        ("secondary_metrics", req.secondary_metrics.is_some()),
        ("guardrail_metrics", req.guardrail_metrics.is_some()),
        ("test_type", req.test_type.is_some()),
    ];
    if started {
        if let Some((field, _)) = locked.iter().find(|(_, set)| *set) {
            return Err(LifecycleError::Locked {
                field: field.to_string(),
                status,
            });
        }
    }
    let UpdateParts {
        variants,
        primary,
        secondary,
        guardrail,
        mut problems,
    } = build_update_parts(req);
    let mut next = current.clone();
    let d = &mut next.definition;
    if let Some(v) = &req.name {
        d.name = v.clone();
    }
    if let Some(v) = &req.hypothesis {
        d.hypothesis = v.clone();
    }
    if let Some(v) = &req.owner {
        d.owner = v.clone();
    }
    if let Some(v) = req.test_type {
        d.test_type = v;
    }
    if let Some(v) = variants {
        // New variants without new weights get equal weights.
        if req.weights.is_none() {
            d.weights = vec![1.0 / v.len().max(1) as f64; v.len()];
        }
        d.variants = v;
    }
    if let Some(v) = &req.weights {
        d.weights = v.clone();
    }
    if let Some(v) = req.coverage {
        d.coverage = v;
    }
    if let Some(v) = &req.condition {
        d.condition = v.clone();
    }
    if let Some(v) = &req.namespace {
        d.namespace = v.clone();
    }
    if let Some(v) = primary {
        d.primary_metric = v;
    }
    if let Some(v) = secondary {
        d.secondary_metrics = v;
    }
    if let Some(v) = guardrail {
        d.guardrail_metrics = v;
    }
    if let Some(v) = req.min_sample_per_variant {
        d.min_sample_per_variant = v;
    }
    if let Some(v) = req.max_sample_per_variant {
        d.max_sample_per_variant = v;
    }
    if let Some(v) = req.alpha {
        d.alpha = v;
    }
    if let Some(v) = req.engine {
        d.engine = v;
    }
    if let Some(v) = req.correction {
        d.correction = v;
    }
    if let Some(v) = req.auto_stop {
        d.auto_stop = v;
    }
    if let Some(v) = req.check_interval_minutes {
        d.check_interval_minutes = v;
    }
    if let Some(v) = &req.forced_variants {
        d.forced_variants = v.clone();
    }
    problems.extend(revalidate(&next.definition));
    if !problems.is_empty() {
        return Err(LifecycleError::Invalid(problems));
    }
    let weights_changed = next.definition.weights != current.definition.weights;
    if req.bump_bucket_version {
        // A new phase: everyone is re-bucketed, results start over, and an outcome of the
        // previous phase (kept in this change's audit record) no longer applies.
        next.bucket_version += 1;
        next.outcome = None;
        next.notice_pending = false;
        next.last_check_at = None;
        next.weights_epochs = vec![WeightsEpoch {
            epoch: 0,
            weights: next.definition.weights.clone(),
        }];
        if started {
            next.phase_started_at = Some(now);
            next.paused_seconds = 0;
            if next.paused_at.is_some() {
                next.paused_at = Some(now);
            }
        }
    } else if weights_changed {
        if started {
            let epoch = next.current_epoch() + 1;
            next.weights_epochs.push(WeightsEpoch {
                epoch,
                weights: next.definition.weights.clone(),
            });
        } else {
            next.weights_epochs = vec![WeightsEpoch {
                epoch: 0,
                weights: next.definition.weights.clone(),
            }];
        }
    }
    next.updated_at = now;
    next.version += 1;
    let audit = record(Some(current), &next, actor, "updated");
    if audit.changes.is_empty() {
        return Err(LifecycleError::Unchanged);
    }
    Ok((next, audit))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiments::model::{parse_json, CreateRequest};
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        "2026-11-24T10:00:00Z".parse().unwrap()
    }

    fn draft() -> Experiment {
        let body = json!({
            "key": "trial-copy", "name": "Trial copy", "test_type": "messaging",
            "variants": [{"key": "a"}, {"key": "b"}],
            "primary_metric": {"name": "paid", "kind": "proportion", "event": "subscription_started"}
        });
        let req: CreateRequest = parse_json(body.to_string().as_bytes()).unwrap();
        create(req.into_definition().unwrap(), "admin-1", now()).0
    }

    #[test]
    fn given_a_draft_when_started_then_it_runs_and_the_audit_names_the_change() {
        let (running, audit) =
            transition(&draft(), Status::Running, None, "admin-2", now()).unwrap();
        assert_eq!(running.status, Status::Running);
        assert_eq!(running.started_at, Some(now()));
        assert_eq!(running.version, 2);
        assert_eq!(audit.actor, "admin-2");
        let status = audit.changes.iter().find(|c| c.field == "status").unwrap();
        assert_eq!(status.before, json!("draft"));
        assert_eq!(status.after, json!("running"));
    }

    #[test]
    fn given_a_draft_when_paused_then_the_error_names_the_allowed_moves() {
        let err = transition(&draft(), Status::Paused, None, "a", now()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot move from draft to paused; allowed from draft: running, cancelled"
        );
    }

    #[test]
    fn given_a_completed_experiment_when_anything_happens_then_it_is_final() {
        let (r, _) = transition(&draft(), Status::Running, None, "a", now()).unwrap();
        let (c, _) = transition(&r, Status::Completed, Some("b"), "a", now()).unwrap();
        assert_eq!(c.outcome.as_ref().unwrap().winner.as_deref(), Some("b"));
        let err = transition(&c, Status::Running, None, "a", now()).unwrap_err();
        assert!(err.to_string().contains("none (it is final)"));
        assert_eq!(
            update(&c, &UpdateRequest::default(), "a", now())
                .unwrap_err()
                .to_string(),
            "the experiment is completed; it can no longer change"
        );
    }

    #[test]
    fn given_a_running_experiment_when_variants_change_then_refused() {
        let (r, _) = transition(&draft(), Status::Running, None, "a", now()).unwrap();
        let req: UpdateRequest =
            parse_json(br#"{"variants": [{"key": "a"}, {"key": "c"}]}"#).unwrap();
        let err = update(&r, &req, "a", now()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "variants cannot change while the experiment is running"
        );
    }

    #[test]
    fn given_a_running_experiment_when_weights_change_then_a_new_epoch_starts() {
        let (r, _) = transition(&draft(), Status::Running, None, "a", now()).unwrap();
        let req: UpdateRequest = parse_json(br#"{"weights": [0.2, 0.8]}"#).unwrap();
        let (u, audit) = update(&r, &req, "a", now()).unwrap();
        assert_eq!(u.bucket_version, 1);
        assert_eq!(u.weights_epochs.len(), 2);
        assert_eq!(u.weights_epochs[1].weights, vec![0.2, 0.8]);
        assert!(audit.changes.iter().any(|c| c.field == "weights"));
        let bump: UpdateRequest = parse_json(br#"{"bump_bucket_version": true}"#).unwrap();
        let (b, _) = update(&u, &bump, "a", now()).unwrap();
        assert_eq!(b.bucket_version, 2);
        assert_eq!(b.weights_epochs.len(), 1);
    }

    #[test]
    fn given_a_recorded_outcome_when_the_bucket_version_is_bumped_then_a_new_phase_starts_clean() {
        let (r, _) = transition(&draft(), Status::Running, None, "a", now()).unwrap();
        let mut decided = r.clone();
        decided.outcome = Some(Outcome {
            result: OutcomeResult::Winner,
            winner: Some("b".into()),
            decided_at: now(),
            decided_by: "scheduled_check".into(),
            evidence: Value::Null,
        });
        decided.last_check_at = Some(now());
        let bump: UpdateRequest = parse_json(br#"{"bump_bucket_version": true}"#).unwrap();
        let (b, audit) = update(&decided, &bump, "a", now()).unwrap();
        assert_eq!((b.outcome.is_none(), b.last_check_at), (true, None));
        assert!(audit.changes.iter().any(|c| c.field == "outcome"));
        assert!(b.check_due(now()));
    }

    #[test]
    fn an_edit_that_changes_nothing_is_not_recorded() {
        let req: UpdateRequest = parse_json(br#"{"name": "Trial copy"}"#).unwrap();
        assert_eq!(
            update(&draft(), &req, "a", now()).unwrap_err(),
            LifecycleError::Unchanged
        );
    }

    #[test]
    fn paused_time_does_not_count_as_running_time() {
        let at = |m: i64| now() + chrono::Duration::minutes(m);
        let (r, _) = transition(&draft(), Status::Running, None, "a", at(0)).unwrap();
        let (p, _) = transition(&r, Status::Paused, None, "a", at(60)).unwrap();
        assert_eq!(p.running_seconds(at(90)), 3600);
        let (back, _) = transition(&p, Status::Running, None, "a", at(120)).unwrap();
        assert_eq!(back.paused_seconds, 3600);
        assert_eq!(back.running_seconds(at(180)), 2 * 3600);
    }

    #[test]
    fn checks_are_due_by_whole_minutes() {
        let (mut r, _) = transition(&draft(), Status::Running, None, "a", now()).unwrap();
        r.last_check_at = Some(now());
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        assert!(!r.check_due(at("2026-11-24T10:59:59Z")));
        assert!(r.check_due(at("2026-11-24T11:00:17Z")));
    }

    #[test]
    fn given_bad_weights_when_updated_then_the_field_is_named() {
        let req: UpdateRequest = parse_json(br#"{"weights": [0.2, 0.2]}"#).unwrap();
        match update(&draft(), &req, "a", now()).unwrap_err() {
            LifecycleError::Invalid(errors) => assert_eq!(errors[0].field, "weights"),
            other => panic!("{other:?}"),
        }
    }
}
