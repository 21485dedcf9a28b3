//! The analysis of one metric of one experiment: the JSON contract of `tierup analyze`
//! (one `AnalysisInput` per line in, one `AnalysisOutput` per line out).

use serde::{Deserialize, Deserializer, Serialize};

use super::bayesian::{bayesian_test, BayesianResult};
use super::chi_squared::{chi_squared_independence, srm_detected, srm_p_value};
use super::error::{finite, open_unit, positive, StatsError};
use super::frequentist::{sequential_t_test, t_test, DifferenceType, FrequentistResult};
use super::statistic::Statistic;

/// Default significance level.
pub const DEFAULT_ALPHA: f64 = 0.05;
/// Default sequential tuning parameter N* (gbstats' `sequential_tuning_parameter` default).
pub const DEFAULT_SEQUENTIAL_TUNING: f64 = 5000.0;

fn default_alpha() -> f64 {
    DEFAULT_ALPHA
}

fn default_tuning() -> f64 {
    DEFAULT_SEQUENTIAL_TUNING
}

/// The kind of metric, which picks the gbstats statistic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricKind {
    /// 0/1 per unit: gbstats `ProportionStatistic(n, sum)`.
    Proportion,
    /// Real-valued per unit: gbstats `SampleMeanStatistic(n, sum, sum_squares)`.
    Mean,
}

/// One variant's sufficient statistics. For a proportion `sum` is the number of converted
/// units and `sum_squares` may be left out (it equals `sum`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariantInput {
    pub n: u64,
    pub sum: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sum_squares: Option<f64>,
}

/// One metric of one experiment; the first variant is the control.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalysisInput {
    pub id: String,
    pub metric: MetricKind,
    /// Significance level for every interval and test; default 0.05.
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// Planned traffic split (any positive scale), for SRM; default equal weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<Vec<f64>>,
    /// Sequential tuning parameter N*; default 5000.
    #[serde(default = "default_tuning")]
    pub sequential_tuning: f64,
    pub variants: Vec<VariantInput>,
}

/// A lift with its confidence interval and p-value; all `null` where gbstats has no value.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Lift {
    pub estimate: Option<f64>,
    pub ci: Option<[f64; 2]>,
    pub p_value: Option<f64>,
}

/// Bayesian summary of the relative lift; all `null` where gbstats has no value.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BayesianLift {
    pub chance_to_win: Option<f64>,
    pub ci: Option<[f64; 2]>,
    /// [risk of choosing the control, risk of choosing the treatment].
    pub risk: Option<[f64; 2]>,
}

/// Always-valid interval and p-value of the relative lift; `null` where gbstats has no value.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SequentialLift {
    pub ci: Option<[f64; 2]>,
    pub p_value: Option<f64>,
}

/// One treatment against the control.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub absolute: Lift,
    pub relative: Lift,
    pub bayesian: BayesianLift,
    pub sequential: SequentialLift,
}

/// The analysis of one [`AnalysisInput`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalysisOutput {
    pub id: String,
    /// Always present: against `weights`, or equal weights when none were given.
    pub srm_p_value: f64,
    /// Proportion metrics only (absent for means); `null` when the test is undefined.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub chi_squared_p_value: Option<Option<f64>>,
    /// One per non-control variant, in input order.
    pub comparisons: Vec<Comparison>,
}

impl AnalysisOutput {
    /// Whether the SRM p-value flags a sample-ratio mismatch (p < 0.001).
    pub fn srm_detected(&self) -> bool {
        srm_detected(self.srm_p_value)
    }
}

/// A field that is present (possibly `null`) deserializes to `Some(..)`; absent is `None`.
fn present<'de, D>(deserializer: D) -> Result<Option<Option<f64>>, D::Error>
where
    D: Deserializer<'de>,
{
    Option::<f64>::deserialize(deserializer).map(Some)
}

/// An [`AnalysisInput`] past validation.
struct Experiment {
    metric: MetricKind,
    alpha: f64,
    tuning: f64,
    weights: Vec<f64>,
    variants: Vec<Statistic>,
}

impl TryFrom<&AnalysisInput> for Experiment {
    type Error = StatsError;

    fn try_from(input: &AnalysisInput) -> Result<Self, StatsError> {
        if input.variants.len() < 2 {
            return Err(StatsError::TooFew {
                field: "variants".into(),
                found: input.variants.len(),
                min: 2,
            });
        }
        let alpha = open_unit("alpha", input.alpha)?;
        let tuning = positive("sequential_tuning", input.sequential_tuning)?;
        let weights = match &input.weights {
            None => vec![1.0; input.variants.len()],
            Some(weights) => {
                if weights.len() != input.variants.len() {
                    return Err(StatsError::LengthMismatch {
                        field: "weights".into(),
                        found: weights.len(),
                        expected: input.variants.len(),
                    });
                }
                for (i, &w) in weights.iter().enumerate() {
                    positive(&format!("weights[{i}]"), w)?;
                }
                weights.clone()
            }
        };
        let variants = input
            .variants
            .iter()
            .enumerate()
            .map(|(i, v)| statistic(input.metric, i, v))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Experiment {
            metric: input.metric,
            alpha,
            tuning,
            weights,
            variants,
        })
    }
}

fn statistic(metric: MetricKind, i: usize, v: &VariantInput) -> Result<Statistic, StatsError> {
    let sum = finite(&format!("variants[{i}].sum"), v.sum)?;
    match metric {
        MetricKind::Proportion => {
            if sum < 0.0 || sum > v.n as f64 {
                return Err(StatsError::OutOfRange {
                    field: format!("variants[{i}].sum"),
                    value: sum,
                    expected: "a number of conversions between 0 and n",
                });
            }
            if let Some(sum_squares) = v.sum_squares {
                if sum_squares != sum {
                    return Err(StatsError::Conflict {
                        field: format!("variants[{i}].sum_squares"),
                        reason: "for a proportion metric sum_squares equals sum; leave it out",
                    });
                }
            }
            Ok(Statistic::Proportion { n: v.n, sum })
        }
        MetricKind::Mean => {
            let field = format!("variants[{i}].sum_squares");
            let Some(sum_squares) = v.sum_squares else {
                return Err(StatsError::Missing {
                    field,
                    reason: "a mean metric needs the sum of squared values",
                });
            };
            finite(&field, sum_squares)?;
            if sum_squares < 0.0 {
                return Err(StatsError::OutOfRange {
                    field,
                    value: sum_squares,
                    expected: "a sum of squares >= 0",
                });
            }
            Ok(Statistic::SampleMean {
                n: v.n,
                sum,
                sum_squares,
            })
        }
    }
}

/// Analyzes one metric: SRM across all variants, the chi-squared test of independence (for
/// proportions), and for each treatment against the control the absolute and relative
/// fixed-horizon t-tests, the Bayesian relative lift and the sequential relative test. See the
/// module documentation for the methods.
///
/// Errors name the offending field: `variants` (fewer than 2), `alpha` (not in (0, 1)),
/// `sequential_tuning` (not positive), `weights` / `weights[i]` (length, not positive),
/// `variants[i].sum` (not finite; a proportion outside [0, n]), `variants[i].sum_squares`
/// (missing, negative or not finite for a mean; different from `sum` for a proportion).
pub fn analyze(input: &AnalysisInput) -> Result<AnalysisOutput, StatsError> {
    let experiment = Experiment::try_from(input)?;
    let counts: Vec<u64> = experiment.variants.iter().map(Statistic::n).collect();
    let srm = srm_p_value(&counts, &experiment.weights)?;
    let chi_squared = match experiment.metric {
        MetricKind::Proportion => {
            let table: Vec<(u64, f64)> = input.variants.iter().map(|v| (v.n, v.sum)).collect();
            Some(chi_squared_independence(&table)?.and_then(finite_or_none))
        }
        MetricKind::Mean => None,
    };
    let (control, treatments) = match experiment.variants.split_first() {
        Some(split) => split,
        None => {
            return Err(StatsError::TooFew {
                field: "variants".into(),
                found: 0,
                min: 2,
            })
        }
    };
    let alpha = experiment.alpha;
    let comparisons = treatments
        .iter()
        .map(|treatment| Comparison {
            absolute: lift(t_test(control, treatment, alpha, DifferenceType::Absolute)),
            relative: lift(t_test(control, treatment, alpha, DifferenceType::Relative)),
            bayesian: bayesian_lift(bayesian_test(
                control,
                treatment,
                alpha,
                DifferenceType::Relative,
            )),
            sequential: sequential_lift(sequential_t_test(
                control,
                treatment,
                alpha,
                experiment.tuning,
                DifferenceType::Relative,
            )),
        })
        .collect();
    Ok(AnalysisOutput {
        id: input.id.clone(),
        srm_p_value: srm,
        chi_squared_p_value: chi_squared,
        comparisons,
    })
}

fn finite_or_none(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

fn finite_pair(pair: [f64; 2]) -> Option<[f64; 2]> {
    (pair[0].is_finite() && pair[1].is_finite()).then_some(pair)
}

fn lift(result: Option<FrequentistResult>) -> Lift {
    Lift {
        estimate: result.and_then(|r| finite_or_none(r.estimate)),
        ci: result.and_then(|r| finite_pair(r.ci)),
        p_value: result.and_then(|r| finite_or_none(r.p_value)),
    }
}

fn sequential_lift(result: Option<FrequentistResult>) -> SequentialLift {
    SequentialLift {
        ci: result.and_then(|r| finite_pair(r.ci)),
        p_value: result.and_then(|r| finite_or_none(r.p_value)),
    }
}

fn bayesian_lift(result: Option<BayesianResult>) -> BayesianLift {
    BayesianLift {
        chance_to_win: result.and_then(|r| finite_or_none(r.chance_to_win)),
        ci: result.and_then(|r| finite_pair(r.ci)),
        risk: result.and_then(|r| finite_pair(r.risk)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(json: &str) -> AnalysisInput {
        serde_json::from_str(json).expect("test input parses")
    }

    #[test]
    fn given_a_minimal_proportion_line_when_parsing_then_defaults_apply() {
        // Given
        let line = r#"{"id":"e1","metric":"proportion","variants":[{"n":1000,"sum":100},{"n":1000,"sum":130}]}"#;
        // When
        let parsed = input(line);
        // Then
        assert_eq!(parsed.alpha, 0.05);
        assert_eq!(parsed.sequential_tuning, 5000.0);
        assert_eq!(parsed.weights, None);
        assert_eq!(parsed.variants[1].sum_squares, None);
    }

    #[test]
    fn given_a_proportion_experiment_when_analyzing_then_the_json_has_the_contract_shape() {
        // Given
        let line = r#"{"id":"e1","metric":"proportion","variants":[{"n":1000,"sum":100},{"n":1000,"sum":130}]}"#;
        // When
        let out = analyze(&input(line)).expect("valid");
        let json = serde_json::to_value(&out).expect("serializes");
        // Then
        let keys: Vec<&str> = json
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        assert_eq!(
            keys,
            ["chi_squared_p_value", "comparisons", "id", "srm_p_value"]
        );
        let c = &json["comparisons"][0];
        for key in ["estimate", "ci", "p_value"] {
            assert!(c["absolute"][key].is_number() || c["absolute"][key].is_array());
            assert!(c["relative"][key].is_number() || c["relative"][key].is_array());
        }
        assert!(c["bayesian"]["chance_to_win"].is_number());
        assert_eq!(c["bayesian"]["risk"].as_array().map(Vec::len), Some(2));
        assert_eq!(c["sequential"]["ci"].as_array().map(Vec::len), Some(2));
        assert!(!out.srm_detected());
    }

    #[test]
    fn given_a_zero_control_when_analyzing_then_null_not_nan_is_written_and_read_back() {
        // Given
        let line = r#"{"id":"z","metric":"proportion","variants":[{"n":1000,"sum":0},{"n":1000,"sum":5}]}"#;
        // When
        let out = analyze(&input(line)).expect("valid");
        let text = serde_json::to_string(&out).expect("serializes");
        // Then
        assert!(text.contains(r#""relative":{"estimate":null,"ci":null,"p_value":null}"#));
        assert!(!text.contains("NaN"));
        let back: AnalysisOutput = serde_json::from_str(&text).expect("parses back");
        assert_eq!(back, out);
    }

    #[test]
    fn given_a_mean_metric_when_analyzing_then_there_is_no_chi_squared_field() {
        // Given
        let line = r#"{"id":"m","metric":"mean","variants":[{"n":100,"sum":250,"sum_squares":1000},{"n":100,"sum":270,"sum_squares":1100}]}"#;
        // When
        let out = analyze(&input(line)).expect("valid");
        let text = serde_json::to_string(&out).expect("serializes");
        // Then
        assert_eq!(out.chi_squared_p_value, None);
        assert!(!text.contains("chi_squared"));
        // serde_json's default float parsing may be one ulp off, so compare the shape.
        let back: AnalysisOutput = serde_json::from_str(&text).expect("parses back");
        assert_eq!(back.chi_squared_p_value, None);
        assert_eq!(back.comparisons.len(), 1);
        assert!(back.comparisons[0].bayesian.risk.is_some());
    }

    #[test]
    fn given_an_undefined_chi_squared_when_serializing_then_it_is_null_and_round_trips() {
        // Given
        let line =
            r#"{"id":"n","metric":"proportion","variants":[{"n":10,"sum":0},{"n":10,"sum":0}]}"#;
        // When
        let out = analyze(&input(line)).expect("valid");
        let text = serde_json::to_string(&out).expect("serializes");
        // Then
        assert_eq!(out.chi_squared_p_value, Some(None));
        assert!(text.contains(r#""chi_squared_p_value":null"#));
        let back: AnalysisOutput = serde_json::from_str(&text).expect("parses back");
        assert_eq!(back, out);
    }

    #[test]
    fn given_invalid_lines_when_analyzing_then_the_field_path_is_named() {
        // Given
        let cases = [
            (
                r#"{"id":"x","metric":"proportion","variants":[{"n":10,"sum":1}]}"#,
                "variants",
            ),
            (
                r#"{"id":"x","metric":"proportion","alpha":1,"variants":[{"n":10,"sum":1},{"n":10,"sum":1}]}"#,
                "alpha",
            ),
            (
                r#"{"id":"x","metric":"proportion","sequential_tuning":0,"variants":[{"n":10,"sum":1},{"n":10,"sum":1}]}"#,
                "sequential_tuning",
            ),
            (
                r#"{"id":"x","metric":"proportion","weights":[1],"variants":[{"n":10,"sum":1},{"n":10,"sum":1}]}"#,
                "weights",
            ),
            (
                r#"{"id":"x","metric":"proportion","weights":[1,-1],"variants":[{"n":10,"sum":1},{"n":10,"sum":1}]}"#,
                "weights[1]",
            ),
            (
                r#"{"id":"x","metric":"proportion","variants":[{"n":10,"sum":1},{"n":10,"sum":1},{"n":10,"sum":11}]}"#,
                "variants[2].sum",
            ),
            (
                r#"{"id":"x","metric":"proportion","variants":[{"n":10,"sum":1},{"n":10,"sum":2,"sum_squares":3}]}"#,
                "variants[1].sum_squares",
            ),
            (
                r#"{"id":"x","metric":"mean","variants":[{"n":10,"sum":1,"sum_squares":3},{"n":10,"sum":2}]}"#,
                "variants[1].sum_squares",
            ),
            (
                r#"{"id":"x","metric":"mean","variants":[{"n":10,"sum":1,"sum_squares":-3},{"n":10,"sum":2,"sum_squares":3}]}"#,
                "variants[0].sum_squares",
            ),
        ];
        for (line, field) in cases {
            // When
            let e = analyze(&input(line));
            // Then
            assert_eq!(
                e.map_err(|e| e.field().to_owned()),
                Err(field.to_owned()),
                "{line}"
            );
        }
    }

    #[test]
    fn given_trillions_of_units_when_analyzing_then_every_value_is_finite() {
        // Given Welch degrees of freedom around 10^12, far past the fixtures (statrs' own t
        // quantile does not terminate there; ours is bounded)
        let line = r#"{"id":"big","metric":"proportion","variants":[{"n":1000000000000,"sum":100000000000},{"n":1000000000000,"sum":100000100000}]}"#;
        // When
        let out = analyze(&input(line)).expect("valid");
        // Then
        let c = &out.comparisons[0];
        assert!(c.absolute.p_value.is_some_and(|p| p > 0.0 && p < 1.0));
        assert!(c.relative.ci.is_some());
        assert!(c.bayesian.chance_to_win.is_some());
        assert!(c.sequential.p_value.is_some());
    }

    #[test]
    fn given_an_unknown_or_mistyped_field_when_parsing_then_it_is_refused() {
        // Given / When / Then
        assert!(serde_json::from_str::<AnalysisInput>(
            r#"{"id":"x","metric":"proportion","sequential_tunning":1,"variants":[]}"#
        )
        .is_err());
        assert!(serde_json::from_str::<AnalysisInput>(
            r#"{"id":"x","metric":"ratio","variants":[]}"#
        )
        .is_err());
        assert!(serde_json::from_str::<AnalysisInput>(
            r#"{"id":"x","metric":"mean","variants":[{"n":-1,"sum":0}]}"#
        )
        .is_err());
    }
}
