//! Experiment planning: sample size per variant, achieved power, and the days left until a
//! minimum sample is reached. Normal approximations, two-sided tests.

use serde::{Deserialize, Serialize};

use super::distributions::{norm_cdf, norm_ppf, norm_sf};
use super::error::{finite, open_unit, positive, StatsError};

/// Largest sample size reported (2^53: every integer below it is exact in an f64).
const MAX_SAMPLE_SIZE: f64 = 9_007_199_254_740_992.0;

/// Sample size for a proportion metric. Exactly one of `mde_absolute` (δ, in rate points,
/// e.g. 0.02 for 10% → 12%) and `mde_relative` (δ/baseline, e.g. 0.2) must be given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleSizeInput {
    pub baseline: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mde_absolute: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mde_relative: Option<f64>,
    pub alpha: f64,
    pub power: f64,
}

/// Units needed in each variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SampleSizeOutput {
    pub n_per_variant: u64,
}

/// [`sample_size_proportion`] for a [`SampleSizeInput`], converting a relative MDE first.
///
/// Errors name the field: `baseline`, `mde_absolute`, `mde_relative` (neither or both given,
/// zero, or pushing the treatment rate out of (0, 1)), `alpha`, `power`.
pub fn sample_size(input: &SampleSizeInput) -> Result<SampleSizeOutput, StatsError> {
    let baseline = open_unit("baseline", input.baseline)?;
    let (delta, field) = match (input.mde_absolute, input.mde_relative) {
        (Some(absolute), None) => (absolute, "mde_absolute"),
        (None, Some(relative)) => (
            mde_absolute_from_relative(baseline, finite("mde_relative", relative)?),
            "mde_relative",
        ),
        (None, None) => {
            return Err(StatsError::Missing {
                field: "mde_absolute".into(),
                reason: "give mde_absolute or mde_relative",
            })
        }
        (Some(_), Some(_)) => {
            return Err(StatsError::Conflict {
                field: "mde_relative".into(),
                reason: "give either mde_absolute or mde_relative, not both",
            })
        }
    };
    let reported = match field {
        "mde_relative" => input.mde_relative.unwrap_or(delta),
        _ => delta,
    };
    let n = proportion_n(baseline, delta, (field, reported), input.alpha, input.power)?;
    Ok(SampleSizeOutput { n_per_variant: n })
}

/// The absolute MDE of a relative one: δ = baseline · relative.
pub fn mde_absolute_from_relative(baseline: f64, mde_relative: f64) -> f64 {
    baseline * mde_relative
}

/// Units per variant to detect an absolute change `mde_absolute` (δ) from `baseline` (p) with
/// a two-sided test at `alpha` and the given `power` (Evan Miller's formula):
///
/// n = ⌈(z_{1-α/2}·√(2p(1-p)) + z_{power}·√(p(1-p) + (p+δ)(1-p-δ)))² / δ²⌉
///
/// Errors: `baseline` not in (0, 1), `mde_absolute` zero or p + δ not in (0, 1), `alpha` or
/// `power` not in (0, 1).
pub fn sample_size_proportion(
    baseline: f64,
    mde_absolute: f64,
    alpha: f64,
    power: f64,
) -> Result<u64, StatsError> {
    open_unit("baseline", baseline)?;
    proportion_n(
        baseline,
        mde_absolute,
        ("mde_absolute", mde_absolute),
        alpha,
        power,
    )
}

/// `mde` names the field the effect came from, and its value as given, for errors.
fn proportion_n(
    p: f64,
    delta: f64,
    mde: (&str, f64),
    alpha: f64,
    power: f64,
) -> Result<u64, StatsError> {
    let (field, given) = mde;
    finite(field, given)?;
    let out_of_range = |expected| StatsError::OutOfRange {
        field: field.into(),
        value: given,
        expected,
    };
    if delta == 0.0 || !delta.is_finite() {
        return Err(out_of_range("a non-zero effect"));
    }
    let treated = p + delta;
    if !(treated > 0.0 && treated < 1.0) {
        return Err(out_of_range(
            "an effect keeping the treatment rate strictly between 0 and 1",
        ));
    }
    let alpha = open_unit("alpha", alpha)?;
    let power = open_unit("power", power)?;
    let a = norm_ppf(1.0 - alpha / 2.0) * (2.0 * p * (1.0 - p)).sqrt();
    let b = norm_ppf(power) * (p * (1.0 - p) + treated * (1.0 - treated)).sqrt();
    whole_units((a + b).powi(2) / delta.powi(2), field, given)
}

/// Units per variant to detect an absolute change `mde_absolute` (δ) of a mean metric with
/// unit standard deviation `std_dev` (σ), two-sided at `alpha` with the given `power`:
///
/// n = ⌈2σ²(z_{1-α/2} + z_{power})² / δ²⌉
///
/// This is statsmodels' `NormalIndPower().solve_power(effect_size=δ/σ, ratio=1)` without the
/// far-tail term of the two-sided power (negligible: at most α/2 of rejections in the wrong
/// direction), rounded up.
///
/// Errors: `std_dev` not positive, `mde_absolute` zero, `alpha` or `power` not in (0, 1).
pub fn sample_size_mean(
    std_dev: f64,
    mde_absolute: f64,
    alpha: f64,
    power: f64,
) -> Result<u64, StatsError> {
    let std_dev = positive("std_dev", std_dev)?;
    let delta = nonzero("mde_absolute", mde_absolute)?;
    let alpha = open_unit("alpha", alpha)?;
    let power = open_unit("power", power)?;
    let z = norm_ppf(1.0 - alpha / 2.0) + norm_ppf(power);
    whole_units(
        2.0 * std_dev.powi(2) * z.powi(2) / delta.powi(2),
        "mde_absolute",
        delta,
    )
}

fn nonzero(field: &str, value: f64) -> Result<f64, StatsError> {
    finite(field, value)?;
    if value == 0.0 {
        return Err(StatsError::OutOfRange {
            field: field.into(),
            value,
            expected: "a non-zero effect",
        });
    }
    Ok(value)
}

fn whole_units(n: f64, field: &str, value: f64) -> Result<u64, StatsError> {
    let n = n.ceil();
    if !(n.is_finite() && n <= MAX_SAMPLE_SIZE) {
        return Err(StatsError::OutOfRange {
            field: field.into(),
            value,
            expected: "an effect large enough for a sample size below 2^53",
        });
    }
    // In range and integral: the conversion is exact.
    Ok(n.max(1.0) as u64)
}

/// Inputs of [`power`]: an absolute effect and each arm's unit variance and size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PowerInput {
    pub effect: f64,
    pub variance_control: f64,
    pub variance_treatment: f64,
    pub n_control: u64,
    pub n_treatment: u64,
    pub alpha: f64,
}

/// Achieved power of the two-sided Welch (large-sample z) test for a true absolute `effect`:
/// with se = √(σ²_c/n_c + σ²_t/n_t), d = |effect|/se and z = z_{1-α/2},
/// power = P(Z > z - d) + P(Z < -z - d).
///
/// With equal n and variances this is statsmodels
/// `NormalIndPower().power(effect_size=effect/σ, nobs1=n, alpha=alpha, ratio=1)`.
///
/// Errors: `effect` not finite, a variance not positive (`variance_control`,
/// `variance_treatment`), an empty arm (`n_control`, `n_treatment`), `alpha` not in (0, 1).
pub fn power(input: &PowerInput) -> Result<f64, StatsError> {
    let effect = finite("effect", input.effect)?;
    let var_c = positive("variance_control", input.variance_control)?;
    let var_t = positive("variance_treatment", input.variance_treatment)?;
    let n_c = at_least_one("n_control", input.n_control)?;
    let n_t = at_least_one("n_treatment", input.n_treatment)?;
    let alpha = open_unit("alpha", input.alpha)?;
    let se = (var_c / n_c + var_t / n_t).sqrt();
    let critical = -norm_ppf(alpha / 2.0);
    let d = effect.abs() / se;
    Ok(norm_sf(critical - d) + norm_cdf(-critical - d))
}

fn at_least_one(field: &str, n: u64) -> Result<f64, StatsError> {
    if n == 0 {
        return Err(StatsError::OutOfRange {
            field: field.into(),
            value: 0.0,
            expected: "at least 1 unit",
        });
    }
    Ok(n as f64)
}

/// Days still needed to reach `target_n` units at the rate seen so far (`current_n` units in
/// `elapsed_days`): `max(0, (target_n - current_n) / (current_n / elapsed_days))`.
/// `Ok(None)` when there is no traffic yet to extrapolate from (and the target is not met).
///
/// Errors: `elapsed_days` not finite and positive.
pub fn days_to_sample(
    current_n: u64,
    elapsed_days: f64,
    target_n: u64,
) -> Result<Option<f64>, StatsError> {
    let elapsed = positive("elapsed_days", elapsed_days)?;
    if current_n >= target_n {
        return Ok(Some(0.0));
    }
    if current_n == 0 {
        return Ok(None);
    }
    let rate = current_n as f64 / elapsed;
    Ok(Some((target_n - current_n) as f64 / rate))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_ten_percent_and_two_points_when_sizing_then_the_formula_rounds_up() {
        // Given 10% → 12%, α 5%, power 80%: (1.959964·√0.18 + 0.841621·√0.1956)² / 0.02² = 3622.4
        let input = SampleSizeInput {
            baseline: 0.10,
            mde_absolute: Some(0.02),
            mde_relative: None,
            alpha: 0.05,
            power: 0.8,
        };
        // When
        let out = sample_size(&input);
        // Then
        assert_eq!(
            out,
            Ok(SampleSizeOutput {
                n_per_variant: 3623
            })
        );
    }

    #[test]
    fn given_a_relative_mde_when_sizing_then_it_equals_the_absolute_one() {
        // Given
        let relative = SampleSizeInput {
            baseline: 0.10,
            mde_absolute: None,
            mde_relative: Some(0.2),
            alpha: 0.05,
            power: 0.8,
        };
        // When / Then
        assert_eq!(
            sample_size(&relative).map(|o| o.n_per_variant),
            sample_size_proportion(0.10, mde_absolute_from_relative(0.10, 0.2), 0.05, 0.8)
        );
    }

    #[test]
    fn given_invalid_inputs_when_sizing_then_the_field_is_named() {
        // Given
        let base = SampleSizeInput {
            baseline: 0.1,
            mde_absolute: Some(0.01),
            mde_relative: None,
            alpha: 0.05,
            power: 0.8,
        };
        let cases = [
            (
                SampleSizeInput {
                    baseline: 1.0,
                    ..base.clone()
                },
                "baseline",
            ),
            (
                SampleSizeInput {
                    mde_absolute: Some(0.95),
                    ..base.clone()
                },
                "mde_absolute",
            ),
            (
                SampleSizeInput {
                    mde_absolute: None,
                    mde_relative: Some(-1.0),
                    ..base.clone()
                },
                "mde_relative",
            ),
            (
                SampleSizeInput {
                    alpha: 1.0,
                    ..base.clone()
                },
                "alpha",
            ),
            (
                SampleSizeInput {
                    power: 0.0,
                    ..base.clone()
                },
                "power",
            ),
            (
                SampleSizeInput {
                    mde_absolute: Some(1e-200),
                    ..base.clone()
                },
                "mde_absolute",
            ),
        ];
        for (input, field) in cases {
            // When
            let e = sample_size(&input);
            // Then
            assert_eq!(e.map_err(|e| e.field().to_owned()), Err(field.to_owned()));
        }
    }

    #[test]
    fn given_a_mean_metric_when_sizing_then_the_closed_form_comes_back() {
        // Given σ = 10, δ = 1: 2·100·(1.959964 + 0.841621)²/1 = 1569.8 → 1570
        // When
        let n = sample_size_mean(10.0, 1.0, 0.05, 0.8);
        // Then
        assert_eq!(n, Ok(1570));
        assert_eq!(
            sample_size_mean(0.0, 1.0, 0.05, 0.8).map_err(|e| e.field().to_owned()),
            Err("std_dev".to_owned())
        );
    }

    #[test]
    fn given_the_planned_sample_when_computing_power_then_it_is_the_planned_power() {
        // Given σ = 10, δ = 1, n = 1570 per arm (statsmodels NormalIndPower gives 0.80015)
        let input = PowerInput {
            effect: 1.0,
            variance_control: 100.0,
            variance_treatment: 100.0,
            n_control: 1570,
            n_treatment: 1570,
            alpha: 0.05,
        };
        // When
        let p = power(&input).expect("valid");
        // Then
        assert!((p - 0.8).abs() < 1e-3, "{p}");
        assert_eq!(
            power(&PowerInput {
                n_treatment: 0,
                ..input
            })
            .map_err(|e| e.field().to_owned()),
            Err("n_treatment".to_owned())
        );
    }

    #[test]
    fn given_no_effect_when_computing_power_then_it_is_alpha() {
        // Given
        let input = PowerInput {
            effect: 0.0,
            variance_control: 1.0,
            variance_treatment: 2.0,
            n_control: 10,
            n_treatment: 30,
            alpha: 0.05,
        };
        // When / Then
        let p = power(&input).expect("valid");
        assert!((p - 0.05).abs() < 1e-10, "{p}");
    }

    #[test]
    fn given_traffic_so_far_when_projecting_then_days_left_come_back() {
        // Given / When / Then
        assert_eq!(days_to_sample(250, 1.0, 1000), Ok(Some(3.0)));
        assert_eq!(days_to_sample(1500, 2.0, 1000), Ok(Some(0.0)));
        assert_eq!(days_to_sample(0, 3.0, 1000), Ok(None));
        assert_eq!(
            days_to_sample(10, 0.0, 1000).map_err(|e| e.field().to_owned()),
            Err("elapsed_days".to_owned())
        );
    }
}
