//! Results of an experiment: every metric's variants against control, computed by
//! [`crate::statistics`] from the stored sufficient statistics, with SRM, multiple-testing
//! correction, power and the time to the minimum sample.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::fold::PhaseStats;
use super::model::{Correction, Direction, Engine, Experiment, MetricKind, MetricRole};
use super::statistics;

/// SRM is flagged below this p-value.
pub const SRM_THRESHOLD: f64 = 0.001;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    pub estimate: Option<f64>,
    pub ci: [Option<f64>; 2],
    pub p_value: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bayesian {
    pub chance_to_win: Option<f64>,
    pub ci: [Option<f64>; 2],
    pub risk: [Option<f64>; 2],
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sequential {
    pub ci: [Option<f64>; 2],
    pub p_value: Option<f64>,
}

/// One variant against control on one metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub variant: String,
    pub absolute: Estimate,
    pub relative: Estimate,
    pub bayesian: Bayesian,
    pub sequential: Sequential,
    /// The fixed-horizon p-value (relative) after the experiment's correction.
    pub adjusted_p_value: Option<f64>,
    /// The sequential p-value after the experiment's correction.
    pub adjusted_sequential_p_value: Option<f64>,
    /// Significant under the experiment's engine (after correction).
    pub significant: bool,
    /// The variant moved the metric in its good direction (by the point estimate).
    pub improved: bool,
    /// Power of the two-sided test at the current sample to detect the observed absolute
    /// effect (post hoc; it says how stable the current reading is, not whether to stop).
    pub power: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VariantSummary {
    pub key: String,
    pub n: u64,
    pub sum: f64,
    pub sum_squares: f64,
    pub mean: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricResult {
    pub name: String,
    pub role: MetricRole,
    pub kind: MetricKind,
    pub direction: Direction,
    pub variants: Vec<VariantSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chi_squared_p_value: Option<f64>,
    pub comparisons: Vec<Comparison>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Srm {
    pub p_value: Option<f64>,
    pub flagged: bool,
    pub observed: Vec<u64>,
    /// Expected users per variant of the current epoch under its weights.
    pub expected: Vec<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleProgress {
    pub min_per_variant: u64,
    pub smallest_variant_n: u64,
    pub reached: bool,
    /// Days the current phase has been running (paused time excluded).
    pub days_running: f64,
    /// At the current rate of the smallest variant; `None` before any traffic.
    pub estimated_days_to_min: Option<f64>,
}

/// Users per variant of one weights epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochSummary {
    pub epoch: u32,
    pub weights: Vec<f64>,
    pub n: Vec<u64>,
}

/// The results of the current phase (bucket version), computed on the users assigned in its
/// current weights epoch: users assigned under different splits have been exposed for
/// different lengths of time, and pooling them would bias the comparison. Earlier epochs'
/// users keep their variants and their statistics stay stored (see `epochs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Results {
    pub experiment: String,
    pub status: super::model::Status,
    pub bucket_version: u32,
    /// The weights epoch the comparisons use.
    pub epoch: u32,
    pub epochs: Vec<EpochSummary>,
    /// Variants taking part in the comparisons (control, and treatments with weight or users).
    pub active_variants: Vec<String>,
    pub computed_at: DateTime<Utc>,
    pub engine: Engine,
    pub correction: Correction,
    pub alpha: f64,
    pub srm: Srm,
    pub sample: SampleProgress,
    pub metrics: Vec<MetricResult>,
}

#[derive(Debug, thiserror::Error)]
#[error("analysis failed: {0}")]
pub struct AnalysisError(pub String);

fn num(v: &Value) -> Option<f64> {
    v.as_f64().filter(|x| x.is_finite())
}

fn pair(v: &Value) -> [Option<f64>; 2] {
    [num(&v[0]), num(&v[1])]
}

/// Runs the shared engine (the same one `tierup analyze` runs) on one metric.
fn analyze_metric(
    kind: MetricKind,
    alpha: f64,
    variants: &[VariantSummary],
) -> Result<Value, AnalysisError> {
    let input = json!({
        "id": "metric",
        "metric": match kind { MetricKind::Proportion => "proportion", MetricKind::Mean => "mean" },
        "alpha": alpha,
        "variants": variants.iter().map(|v| json!({
            "n": v.n, "sum": v.sum, "sum_squares": v.sum_squares
        })).collect::<Vec<_>>(),
    });
    let input: statistics::AnalysisInput =
        serde_json::from_value(input).map_err(|e| AnalysisError(e.to_string()))?;
    let output = statistics::analyze(&input).map_err(|e| AnalysisError(e.to_string()))?;
    serde_json::to_value(output).map_err(|e| AnalysisError(e.to_string()))
}

/// Adjusted p-values by the chosen correction (missing p-values stay missing).
pub fn adjust(correction: Correction, p: &[Option<f64>]) -> Vec<Option<f64>> {
    let present: Vec<f64> = p.iter().flatten().copied().collect();
    let adjusted = match correction {
        Correction::None => present.clone(),
        Correction::Holm => statistics::holm(&present).unwrap_or_else(|_| present.clone()),
        Correction::BenjaminiHochberg => {
            statistics::benjamini_hochberg(&present).unwrap_or_else(|_| present.clone())
        }
    };
    let mut it = adjusted.into_iter();
    p.iter().map(|x| x.and_then(|_| it.next())).collect()
}

/// SRM p-value of the observed assignment counts against the expected ones. A variant with no
/// expected users (weight 0 throughout) takes no part, unless it has users, which is a
/// certain mismatch (p = 0).
pub fn srm_p_value(observed: &[u64], expected: &[f64]) -> Option<f64> {
    let mut counts = Vec::new();
    let mut weights = Vec::new();
    for (o, e) in observed.iter().zip(expected) {
        if *e > 0.0 {
            counts.push(*o);
            weights.push(*e);
        } else if *o > 0 {
            return Some(0.0);
        }
    }
    if counts.len() < 2 {
        return None;
    }
    statistics::srm_p_value(&counts, &weights).ok()
}

/// Expected users per variant of an epoch with `total` users under `weights`.
pub fn expected_counts(weights: &[f64], total: u64) -> Vec<f64> {
    let sum: f64 = weights.iter().sum();
    weights
        .iter()
        .map(|w| {
            if sum > 0.0 {
                total as f64 * w / sum
            } else {
                0.0
            }
        })
        .collect()
}

fn variant_summaries(
    experiment: &Experiment,
    stats: &PhaseStats,
    epoch: u32,
    metric: usize,
) -> Vec<VariantSummary> {
    experiment
        .definition
        .variants
        .iter()
        .enumerate()
        .map(|(v, variant)| {
            let n = stats.n(epoch, v);
            let sum = stats.sum(epoch, metric, v);
            let sum_squares = stats.sum_squares(epoch, metric, v);
            VariantSummary {
                key: variant.key.clone(),
                n,
                sum,
                sum_squares,
                mean: (n > 0).then(|| sum / n as f64),
            }
        })
        .collect()
}

/// Variance of a variant's metric (population form, as the tests use it).
fn variance(kind: MetricKind, v: &VariantSummary) -> f64 {
    if v.n < 2 {
        return 0.0;
    }
    let n = v.n as f64;
    let mean = v.sum / n;
    match kind {
        MetricKind::Proportion => mean * (1.0 - mean),
        MetricKind::Mean => ((v.sum_squares - v.sum * v.sum / n) / (n - 1.0)).max(0.0),
    }
}

/// Computes the results of an experiment from its phase statistics.
pub fn compute(
    experiment: &Experiment,
    stats: &PhaseStats,
    now: DateTime<Utc>,
) -> Result<Results, AnalysisError> {
    let d = &experiment.definition;
    let metrics = d.metrics();
    let epoch = experiment.current_epoch();
    let weights = experiment
        .weights_epochs
        .last()
        .map(|e| e.weights.clone())
        .unwrap_or_else(|| d.weights.clone());
    let observed: Vec<u64> = (0..d.variants.len()).map(|v| stats.n(epoch, v)).collect();
    let expected = expected_counts(&weights, observed.iter().sum());
    let srm_p = if observed.iter().sum::<u64>() > 0 {
        srm_p_value(&observed, &expected)
    } else {
        None
    };
    // A treatment switched off (weight 0, nobody assigned) takes no part in the comparisons.
    let active: Vec<usize> = (0..d.variants.len())
        .filter(|&v| v == 0 || weights.get(v).is_some_and(|w| *w > 0.0) || observed[v] > 0)
        .collect();
    let mut results = Vec::new();
    for (index, (role, m)) in metrics.iter().enumerate() {
        let variants = variant_summaries(experiment, stats, epoch, index);
        let analysed: Vec<VariantSummary> = active.iter().map(|&v| variants[v].clone()).collect();
        let analysis = if analysed.len() >= 2 && analysed.iter().all(|v| v.n >= 2) {
            Some(analyze_metric(m.kind, d.alpha, &analysed)?)
        } else {
            None
        };
        let comparisons = active
            .iter()
            .enumerate()
            .skip(1)
            .map(|(position, &v)| {
                let c = analysis
                    .as_ref()
                    .map(|a| a["comparisons"][position - 1].clone())
                    .unwrap_or(Value::Null);
                let est = |x: &Value| Estimate {
                    estimate: num(&x["estimate"]),
                    ci: pair(&x["ci"]),
                    p_value: num(&x["p_value"]),
                };
                let relative = est(&c["relative"]);
                let absolute = est(&c["absolute"]);
                let improved = match (m.direction, absolute.estimate) {
                    (Direction::Good, Some(e)) => e > 0.0,
                    (Direction::Bad, Some(e)) => e < 0.0,
                    _ => false,
                };
                let power = absolute.estimate.and_then(|effect| {
                    let (a, b) = (&variants[0], &variants[v]);
                    statistics::power(&statistics::PowerInput {
                        effect,
                        variance_control: variance(m.kind, a),
                        variance_treatment: variance(m.kind, b),
                        n_control: a.n,
                        n_treatment: b.n,
                        alpha: d.alpha,
                    })
                    .ok()
                    .filter(|p| p.is_finite())
                });
                Comparison {
                    variant: variants[v].key.clone(),
                    absolute,
                    relative,
                    bayesian: Bayesian {
                        chance_to_win: num(&c["bayesian"]["chance_to_win"]),
                        ci: pair(&c["bayesian"]["ci"]),
                        risk: pair(&c["bayesian"]["risk"]),
                    },
                    sequential: Sequential {
                        ci: pair(&c["sequential"]["ci"]),
                        p_value: num(&c["sequential"]["p_value"]),
                    },
                    adjusted_p_value: None,
                    adjusted_sequential_p_value: None,
                    significant: false,
                    improved,
                    power,
                }
            })
            .collect();
        results.push(MetricResult {
            name: m.name.clone(),
            role: *role,
            kind: m.kind,
            direction: m.direction,
            chi_squared_p_value: analysis
                .as_ref()
                .and_then(|a| num(&a["chi_squared_p_value"])),
            variants,
            comparisons,
        });
    }
    apply_corrections(d.correction, d.engine, d.alpha, &mut results);
    let smallest = active.iter().map(|&v| observed[v]).min().unwrap_or(0);
    let days_running = experiment.running_seconds(now) as f64 / 86_400.0;
    let min = d.min_sample_per_variant;
    let estimated_days_to_min = if smallest >= min {
        Some(0.0)
    } else {
        statistics::days_to_sample(smallest, days_running, min)
            .ok()
            .flatten()
    };
    Ok(Results {
        experiment: d.key.clone(),
        status: experiment.status,
        bucket_version: experiment.bucket_version,
        epoch,
        epochs: experiment
            .weights_epochs
            .iter()
            .map(|e| EpochSummary {
                epoch: e.epoch,
                weights: e.weights.clone(),
                n: (0..d.variants.len()).map(|v| stats.n(e.epoch, v)).collect(),
            })
            .collect(),
        active_variants: active.iter().map(|&v| d.variants[v].key.clone()).collect(),
        computed_at: now,
        engine: d.engine,
        correction: d.correction,
        alpha: d.alpha,
        srm: Srm {
            flagged: srm_p.is_some_and(|p| p < SRM_THRESHOLD),
            p_value: srm_p,
            observed,
            expected,
        },
        sample: SampleProgress {
            min_per_variant: min,
            smallest_variant_n: smallest,
            reached: smallest >= min,
            days_running,
            estimated_days_to_min,
        },
        metrics: results,
    })
}

/// Corrects across every (variant, metric) pair of the primary and secondary metrics;
/// guardrails are judged on their own, uncorrected, so harm is caught early.
fn apply_corrections(
    correction: Correction,
    engine: Engine,
    alpha: f64,
    metrics: &mut [MetricResult],
) {
    let mut fixed = Vec::new();
    let mut sequential = Vec::new();
    for m in metrics.iter().filter(|m| m.role != MetricRole::Guardrail) {
        for c in &m.comparisons {
            fixed.push(c.relative.p_value);
            sequential.push(c.sequential.p_value);
        }
    }
    let fixed = adjust(correction, &fixed);
    let sequential = adjust(correction, &sequential);
    let mut i = 0;
    for m in metrics.iter_mut() {
        let guardrail = m.role == MetricRole::Guardrail;
        for c in &mut m.comparisons {
            if guardrail {
                c.adjusted_p_value = c.relative.p_value;
                c.adjusted_sequential_p_value = c.sequential.p_value;
            } else {
                c.adjusted_p_value = fixed[i];
                c.adjusted_sequential_p_value = sequential[i];
                i += 1;
            }
            c.significant = match engine {
                Engine::Frequentist => c.adjusted_p_value.is_some_and(|p| p < alpha),
                Engine::Sequential => c.adjusted_sequential_p_value.is_some_and(|p| p < alpha),
                Engine::Bayesian => c
                    .bayesian
                    .chance_to_win
                    .is_some_and(|w| w > 1.0 - alpha || w < alpha),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_a_zero_weight_variant_when_checked_then_it_takes_no_part_unless_it_has_users() {
        assert_eq!(srm_p_value(&[0, 500, 500], &[0.0, 500.0, 500.0]), Some(1.0));
        assert_eq!(srm_p_value(&[3, 500, 500], &[0.0, 500.0, 500.0]), Some(0.0));
        assert_eq!(srm_p_value(&[0, 10], &[0.0, 10.0]), None);
    }

    #[test]
    fn given_weights_when_checked_then_the_split_is_expected() {
        assert_eq!(expected_counts(&[0.2, 0.8], 1000), vec![200.0, 800.0]);
        let p = srm_p_value(&[200, 800], &[200.0, 800.0]).unwrap();
        assert!((p - 1.0).abs() < 1e-12);
        // scipy.stats.chisquare([500, 500], [200, 800]).pvalue underflows to 0
        let p = srm_p_value(&[500, 500], &[200.0, 800.0]).unwrap();
        assert!(p < 1e-30, "{p}");
    }

    #[test]
    fn given_missing_p_values_when_adjusted_then_they_stay_missing_and_the_rest_are_holm() {
        let adjusted = adjust(
            Correction::Holm,
            &[Some(0.01), None, Some(0.04), Some(0.03)],
        );
        // statsmodels multipletests([0.01, 0.04, 0.03], method="holm") -> [0.03, 0.06, 0.06]
        assert_eq!(adjusted[1], None);
        let got: Vec<f64> = adjusted.into_iter().flatten().collect();
        for (g, want) in got.iter().zip([0.03, 0.06, 0.06]) {
            assert!((g - want).abs() < 1e-12, "{got:?}");
        }
    }
}
