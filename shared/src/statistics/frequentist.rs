//! Frequentist comparisons of a treatment against the control, as gbstats 0.8.0
//! (`gbstats/frequentist/tests.py`): the fixed-horizon Welch t-test (`TwoSidedTTest`) and the
//! always-valid sequential test (`SequentialTwoSidedTTest`, Waudby-Smith et al. 2023).
//!
//! Both return `None` exactly where gbstats returns its uninformative default output: a control
//! mean of 0 (for either difference type, as gbstats) or a variance <= 0 in either variant
//! (which covers empty variants, n = 1, and all-or-nothing conversions).

use super::distributions::{t_isf, t_sf};
use super::statistic::Statistic;

/// What the lift is measured in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DifferenceType {
    /// `mean_b - mean_a`.
    Absolute,
    /// `(mean_b - mean_a) / mean_a`, variance by the delta method.
    Relative,
}

/// A point estimate with its two-sided confidence interval and p-value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrequentistResult {
    pub estimate: f64,
    pub ci: [f64; 2],
    pub p_value: f64,
}

/// gbstats `frequentist_diff`.
pub(super) fn difference(a: &Statistic, b: &Statistic, difference: DifferenceType) -> f64 {
    match difference {
        DifferenceType::Absolute => b.mean() - a.mean(),
        DifferenceType::Relative => (b.mean() - a.mean()) / a.mean(),
    }
}

/// gbstats `frequentist_variance`: the variance of [`difference`].
pub(super) fn difference_variance(a: &Statistic, b: &Statistic, difference: DifferenceType) -> f64 {
    let (var_a, mean_a, n_a) = (a.variance(), a.mean(), a.n() as f64);
    let (var_b, mean_b, n_b) = (b.variance(), b.mean(), b.n() as f64);
    match difference {
        DifferenceType::Absolute => var_b / n_b + var_a / n_a,
        DifferenceType::Relative => {
            var_b / (mean_a.powi(2) * n_b) + var_a * mean_b.powi(2) / (mean_a.powi(4) * n_a)
        }
    }
}

/// Welch–Satterthwaite degrees of freedom on the unit-level variances.
fn welch_dof(a: &Statistic, b: &Statistic) -> f64 {
    let (var_a, n_a) = (a.variance(), a.n() as f64);
    let (var_b, n_b) = (b.variance(), b.n() as f64);
    (var_b / n_b + var_a / n_a).powi(2)
        / (var_b.powi(2) / (n_b.powi(2) * (n_b - 1.0))
            + var_a.powi(2) / (n_a.powi(2) * (n_a - 1.0)))
}

/// gbstats' guard clauses shared by both frequentist tests.
fn defined(a: &Statistic, b: &Statistic) -> bool {
    a.mean() != 0.0 && !a.has_zero_variance() && !b.has_zero_variance()
}

/// Two-sided Welch t-test of `treatment` against `control` (gbstats `TwoSidedTTest`):
/// CI = estimate ± t_{1-α/2, df}·se, p = 2·P(T_df > |estimate/se|).
///
/// `alpha` must lie in (0, 1); `None` where gbstats has no value.
pub fn t_test(
    control: &Statistic,
    treatment: &Statistic,
    alpha: f64,
    difference_type: DifferenceType,
) -> Option<FrequentistResult> {
    if !defined(control, treatment) {
        return None;
    }
    let estimate = difference(control, treatment, difference_type);
    let se = difference_variance(control, treatment, difference_type).sqrt();
    let dof = welch_dof(control, treatment);
    let critical = estimate / se;
    let p_value = 2.0 * t_sf(critical.abs(), dof)?;
    let width = t_isf(alpha / 2.0, dof)? * se;
    Some(FrequentistResult {
        estimate,
        ci: [estimate - width, estimate + width],
        p_value,
    })
}

/// Always-valid two-sided test (gbstats `SequentialTwoSidedTTest`): the asymptotic confidence
/// sequence of Waudby-Smith et al. (2023, eq. 9) with ρ from eq. 161 tuned for `tuning`
/// (gbstats' `sequential_tuning_parameter`, N*), and the p-value 1/e-value of eq. 155.
///
/// `alpha` must lie in (0, 1) and `tuning` be positive; `None` where gbstats has no value.
pub fn sequential_t_test(
    control: &Statistic,
    treatment: &Statistic,
    alpha: f64,
    tuning: f64,
    difference_type: DifferenceType,
) -> Option<FrequentistResult> {
    if !defined(control, treatment) {
        return None;
    }
    let estimate = difference(control, treatment, difference_type);
    let variance = difference_variance(control, treatment, difference_type);
    let n = control.n() as f64 + treatment.n() as f64;
    let rho = ((-2.0 * alpha.ln() + (-2.0 * alpha.ln() + 1.0).ln()) / tuning).sqrt();
    let n_rho2_plus_1 = n * rho.powi(2) + 1.0;

    let s2 = variance * n;
    let width = s2.sqrt()
        * ((2.0 * n_rho2_plus_1) * (n_rho2_plus_1.sqrt() / alpha).ln() / (n * rho).powi(2)).sqrt();

    // p = min(1, 1/e) with e = exp(ρ²·S²/(2(Nρ²+1))) / sqrt(Nρ²+1), taken in log space so
    // that a huge statistic gives a tiny p instead of overflowing (gbstats gives 0 there).
    let st2 = estimate.powi(2) * n / variance;
    let log_e = rho.powi(2) * st2 / (2.0 * n_rho2_plus_1) - 0.5 * n_rho2_plus_1.ln();
    let p_value = (-log_e).exp().min(1.0);
    Some(FrequentistResult {
        estimate,
        ci: [estimate - width, estimate + width],
        p_value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(actual: f64, expected: f64) -> bool {
        (actual - expected).abs() <= 1e-9 * expected.abs().max(1e-3)
    }

    fn proportion(n: u64, sum: f64) -> Statistic {
        Statistic::Proportion { n, sum }
    }

    // Reference: gbstats 0.8.0 TwoSidedTTest / SequentialTwoSidedTTest, alpha 0.05.
    #[test]
    fn given_ten_versus_thirteen_percent_when_t_testing_the_absolute_lift_then_gbstats_values_come_back(
    ) {
        // Given
        let (a, b) = (proportion(1000, 100.0), proportion(1000, 130.0));
        // When
        let r = t_test(&a, &b, 0.05, DifferenceType::Absolute);
        // Then
        let r = r.expect("defined");
        assert!(close(r.estimate, 0.03));
        assert!(close(r.ci[0], 0.0020507842909493826));
        assert!(close(r.ci[1], 0.057949215709050615));
        assert!(close(r.p_value, 0.03541149025749646));
    }

    #[test]
    fn given_ten_versus_thirteen_percent_when_t_testing_the_relative_lift_then_gbstats_values_come_back(
    ) {
        // Given
        let (a, b) = (proportion(1000, 100.0), proportion(1000, 130.0));
        // When
        let r = t_test(&a, &b, 0.05, DifferenceType::Relative).expect("defined");
        // Then
        assert!(close(r.estimate, 0.3));
        assert!(close(r.ci[0], -0.019375372265978963));
        assert!(close(r.ci[1], 0.6193753722659789));
        assert!(close(r.p_value, 0.06559733260262468));
    }

    #[test]
    fn given_a_zero_control_mean_when_testing_then_there_is_no_value_for_either_difference() {
        // Given
        let (a, b) = (proportion(1000, 0.0), proportion(1000, 12.0));
        // When / Then
        assert_eq!(t_test(&a, &b, 0.05, DifferenceType::Absolute), None);
        assert_eq!(t_test(&a, &b, 0.05, DifferenceType::Relative), None);
        assert_eq!(
            sequential_t_test(&a, &b, 0.05, 5000.0, DifferenceType::Relative),
            None
        );
    }

    #[test]
    fn given_a_zero_variance_treatment_when_testing_then_there_is_no_value() {
        // Given
        let (a, b) = (proportion(500, 480.0), proportion(500, 500.0));
        // When / Then
        assert_eq!(t_test(&a, &b, 0.05, DifferenceType::Absolute), None);
    }

    #[test]
    fn given_an_overwhelming_effect_when_testing_sequentially_then_p_is_tiny_not_nan() {
        // Given
        let (a, b) = (
            proportion(1_000_000, 10_000.0),
            proportion(1_000_000, 30_000.0),
        );
        // When
        let r = sequential_t_test(&a, &b, 0.05, 5000.0, DifferenceType::Relative).expect("defined");
        // Then
        assert!(r.p_value >= 0.0 && r.p_value < 1e-300);
        assert!(r.ci[0] < 2.0 && r.ci[1] > 2.0);
    }

    #[test]
    fn given_identical_variants_when_testing_sequentially_then_p_is_one() {
        // Given
        let a = proportion(5000, 500.0);
        // When
        let r = sequential_t_test(&a, &a, 0.05, 5000.0, DifferenceType::Relative).expect("defined");
        // Then
        assert_eq!(r.p_value, 1.0);
        assert_eq!(r.estimate, 0.0);
    }
}
