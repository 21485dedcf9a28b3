//! Bayesian comparison, as gbstats 0.8.0 `EffectBayesianABTest` with its default prior
//! (`GaussianPrior(mean=0, variance=1, proper=False)`, i.e. flat): the posterior of the lift is
//! normal with the frequentist estimate as mean and the delta-method variance.

use super::distributions::{norm_cdf, norm_pdf, norm_ppf, norm_sf};
use super::frequentist::{difference, difference_variance, DifferenceType};
use super::statistic::Statistic;

/// Posterior summary of the lift of a treatment over the control.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BayesianResult {
    /// P(lift > 0).
    pub chance_to_win: f64,
    /// Equal-tailed credible interval at level 1 - alpha.
    pub ci: [f64; 2],
    /// Expected loss [of choosing the control, of choosing the treatment]:
    /// [E max(lift, 0), E max(-lift, 0)].
    pub risk: [f64; 2],
}

/// gbstats `EffectBayesianABTest(...).compute_result()` with the flat prior, not inverse.
///
/// `None` where gbstats returns its default output: a control mean of 0 with a relative
/// difference, an empty variant, or a variance <= 0 in either variant. `alpha` in (0, 1).
pub fn bayesian_test(
    control: &Statistic,
    treatment: &Statistic,
    alpha: f64,
    difference_type: DifferenceType,
) -> Option<BayesianResult> {
    if control.mean() == 0.0 && difference_type == DifferenceType::Relative {
        return None;
    }
    if control.n() == 0 || treatment.n() == 0 {
        return None;
    }
    if control.has_zero_variance() || treatment.has_zero_variance() {
        return None;
    }
    let mean = difference(control, treatment, difference_type);
    // Flat prior: posterior precision = data precision.
    let precision = 1.0 / difference_variance(control, treatment, difference_type);
    let sd = (1.0 / precision).sqrt();

    let z = mean / sd;
    let chance_to_win = norm_sf(-z);
    let ci = [
        mean + sd * norm_ppf(alpha / 2.0),
        mean + sd * norm_ppf(1.0 - alpha / 2.0),
    ];
    // E[X·1{X>0}] = μΦ(μ/σ) + σφ(μ/σ);  -E[X·1{X<0}] = σφ(μ/σ) - μΦ(-μ/σ).
    // (gbstats multiplies tail probabilities by truncated-normal means; same quantities.)
    let density = sd * norm_pdf(z);
    let risk_control = mean * norm_cdf(z) + density;
    let risk_treatment = density - mean * norm_cdf(-z);
    Some(BayesianResult {
        chance_to_win,
        ci,
        risk: [risk_control.max(0.0), risk_treatment.max(0.0)],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(actual: f64, expected: f64) -> bool {
        (actual - expected).abs() <= 1e-9 * expected.abs().max(1e-3)
    }

    // Reference: gbstats 0.8.0 EffectBayesianABTest, default (relative, flat prior).
    #[test]
    fn given_ten_versus_thirteen_percent_when_testing_then_gbstats_values_come_back() {
        // Given
        let a = Statistic::Proportion {
            n: 1000,
            sum: 100.0,
        };
        let b = Statistic::Proportion {
            n: 1000,
            sum: 130.0,
        };
        // When
        let r = bayesian_test(&a, &b, 0.05, DifferenceType::Relative).expect("defined");
        // Then
        assert!(close(r.chance_to_win, 0.9672763417294));
        assert!(r.ci[0] < 0.0 && r.ci[1] > 0.6);
        assert!(r.risk[0] > r.risk[1]);
    }

    #[test]
    fn given_identical_variants_when_testing_then_the_chance_to_win_is_a_coin_flip() {
        // Given
        let a = Statistic::Proportion {
            n: 5000,
            sum: 500.0,
        };
        // When
        let r = bayesian_test(&a, &a, 0.05, DifferenceType::Relative).expect("defined");
        // Then
        assert_eq!(r.chance_to_win, 0.5);
        assert!(close(r.risk[0], r.risk[1]));
        assert!(close(r.ci[0], -r.ci[1]));
    }

    #[test]
    fn given_degenerate_input_when_testing_then_there_is_no_value() {
        // Given
        let zero = Statistic::Proportion { n: 1000, sum: 0.0 };
        let empty = Statistic::Proportion { n: 0, sum: 0.0 };
        let fine = Statistic::Proportion { n: 1000, sum: 10.0 };
        // When / Then
        assert_eq!(
            bayesian_test(&zero, &fine, 0.05, DifferenceType::Relative),
            None
        );
        assert_eq!(
            bayesian_test(&fine, &empty, 0.05, DifferenceType::Relative),
            None
        );
        assert_eq!(
            bayesian_test(&fine, &zero, 0.05, DifferenceType::Absolute),
            None
        );
    }
}
