//! Scheduled significance checks: the stopping rule and the history point each check leaves.
//!
//! Checks use the sequential (always-valid) test only, so looking every hour does not inflate
//! the false-positive rate. The rule concludes when
//! 1. every variant has at least `min_sample_per_variant` users,
//! 2. there is no sample-ratio mismatch (SRM p >= 0.001),
//! 3. a treatment is significantly better than control on the primary metric under the
//!    sequential test after the experiment's correction, and it harms no guardrail metric
//!    (a guardrail moving the wrong way with sequential p < alpha) — it wins; or every
//!    treatment is significantly worse — control wins;
//!
//! or, when `max_sample_per_variant` is set and every variant has reached it without a
//! winner, it concludes "no difference". Otherwise it records why the experiment keeps running.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::analysis::{MetricResult, Results};
use super::model::{Experiment, MetricRole, OutcomeResult};

/// What a check decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Verdict {
    Continue {
        reasons: Vec<String>,
    },
    Conclude {
        result: OutcomeResult,
        #[serde(skip_serializing_if = "Option::is_none")]
        winner: Option<String>,
        evidence: Value,
    },
}

/// The primary metric's reading of one treatment at a check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrimaryReading {
    pub variant: String,
    pub relative_lift: Option<f64>,
    pub sequential_ci: [Option<f64>; 2],
    pub adjusted_sequential_p_value: Option<f64>,
}

/// One point of an experiment's check history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckPoint {
    /// The scheduled minute this check belongs to (its idempotency key).
    pub slot: String,
    pub checked_at: DateTime<Utc>,
    pub job_id: String,
    pub n: Vec<u64>,
    pub srm_p_value: Option<f64>,
    pub primary: Vec<PrimaryReading>,
    pub verdict: Verdict,
}

fn primary(results: &Results) -> Option<&MetricResult> {
    results
        .metrics
        .iter()
        .find(|m| m.role == MetricRole::Primary)
}

fn fmt_p(p: Option<f64>) -> String {
    p.map(|p| format!("{p:.4}"))
        .unwrap_or_else(|| "n/a".to_string())
}

/// Applies the stopping rule to fresh results.
pub fn stopping_rule(experiment: &Experiment, results: &Results) -> Verdict {
    let d = &experiment.definition;
    let alpha = d.alpha;
    let mut reasons = Vec::new();
    let n = &results.srm.observed;
    for (v, count) in n.iter().enumerate() {
        let active = results.active_variants.contains(&d.variants[v].key);
        if active && *count < d.min_sample_per_variant {
            reasons.push(format!(
                "variant {} has {} of the {} users required",
                d.variants[v].key, count, d.min_sample_per_variant
            ));
        }
    }
    if results.srm.flagged {
        reasons.push(format!(
            "sample ratio mismatch: p = {} < 0.001; check the assignment path before trusting results",
            fmt_p(results.srm.p_value)
        ));
    }
    let Some(p) = primary(results) else {
        reasons.push("no primary metric results".to_string());
        return Verdict::Continue { reasons };
    };
    let significant =
        |c: &super::analysis::Comparison| c.adjusted_sequential_p_value.is_some_and(|p| p < alpha);
    let harms: Vec<String> = results
        .metrics
        .iter()
        .filter(|m| m.role == MetricRole::Guardrail)
        .flat_map(|m| {
            m.comparisons
                .iter()
                .filter(|c| significant(c) && !c.improved)
                .map(move |c| (c.variant.clone(), m.name.clone(), c.sequential.p_value))
        })
        .map(|(variant, metric, p)| {
            format!(
                "variant {variant} harms guardrail {metric} (sequential p = {})",
                fmt_p(p)
            )
        })
        .collect();
    let evidence = json!({
        "n": n,
        "srm_p_value": results.srm.p_value,
        "alpha": alpha,
        "correction": d.correction,
        "primary_metric": p.name,
        "comparisons": p.comparisons.iter().map(|c| json!({
            "variant": c.variant,
            "relative_lift": c.relative.estimate,
            "sequential_ci": c.sequential.ci,
            "sequential_p_value": c.sequential.p_value,
            "adjusted_sequential_p_value": c.adjusted_sequential_p_value,
        })).collect::<Vec<_>>(),
        "guardrail_harms": harms,
    });
    if !reasons.is_empty() {
        return Verdict::Continue { reasons };
    }
    let harmed = |variant: &str| {
        harms
            .iter()
            .any(|h| h.starts_with(&format!("variant {variant} ")))
    };
    let better: Vec<&super::analysis::Comparison> = p
        .comparisons
        .iter()
        .filter(|c| significant(c) && c.improved && !harmed(&c.variant))
        .collect();
    if let Some(best) = better.iter().max_by(|a, b| {
        let score = |c: &super::analysis::Comparison| c.relative.estimate.unwrap_or(0.0).abs();
        score(a).total_cmp(&score(b))
    }) {
        return Verdict::Conclude {
            result: OutcomeResult::Winner,
            winner: Some(best.variant.clone()),
            evidence,
        };
    }
    if !p.comparisons.is_empty() && p.comparisons.iter().all(|c| significant(c) && !c.improved) {
        return Verdict::Conclude {
            result: OutcomeResult::Winner,
            winner: Some(d.variants[0].key.clone()),
            evidence,
        };
    }
    if let Some(max) = d.max_sample_per_variant {
        let active_n = d
            .variants
            .iter()
            .zip(n)
            .filter(|(v, _)| results.active_variants.contains(&v.key));
        if active_n.map(|(_, c)| *c).all(|c| c >= max) {
            return Verdict::Conclude {
                result: OutcomeResult::NoDifference,
                winner: None,
                evidence,
            };
        }
    }
    for c in &p.comparisons {
        if significant(c) && c.improved && harmed(&c.variant) {
            continue;
        }
        reasons.push(format!(
            "primary metric {}: variant {} not significant yet (adjusted sequential p = {}, alpha {alpha})",
            p.name,
            c.variant,
            fmt_p(c.adjusted_sequential_p_value)
        ));
    }
    reasons.extend(harms);
    Verdict::Continue { reasons }
}

/// The history point of a check.
pub fn check_point(slot: &str, job_id: &str, results: &Results, verdict: Verdict) -> CheckPoint {
    let primary = primary(results)
        .map(|p| {
            p.comparisons
                .iter()
                .map(|c| PrimaryReading {
                    variant: c.variant.clone(),
                    relative_lift: c.relative.estimate,
                    sequential_ci: c.sequential.ci,
                    adjusted_sequential_p_value: c.adjusted_sequential_p_value,
                })
                .collect()
        })
        .unwrap_or_default();
    CheckPoint {
        slot: slot.to_string(),
        checked_at: results.computed_at,
        job_id: job_id.to_string(),
        n: results.srm.observed.clone(),
        srm_p_value: results.srm.p_value,
        primary,
        verdict,
    }
}
