//! Sufficient statistics of one variant, as gbstats 0.8.0 models them
//! (`ProportionStatistic`, `SampleMeanStatistic` in `gbstats/models/statistics.py`).

/// One variant's sufficient statistics. `n` is the number of units; `sum` (and for means
/// `sum_squares`) are sums over those units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Statistic {
    /// A 0/1 metric (conversion): `sum` is the number of converted units.
    Proportion { n: u64, sum: f64 },
    /// A real-valued metric: `sum` of values and `sum_squares` of squared values.
    SampleMean { n: u64, sum: f64, sum_squares: f64 },
}

impl Statistic {
    /// Number of units.
    pub fn n(&self) -> u64 {
        match *self {
            Statistic::Proportion { n, .. } | Statistic::SampleMean { n, .. } => n,
        }
    }

    /// `sum / n`, and 0 for an empty variant (as gbstats).
    pub fn mean(&self) -> f64 {
        let (n, sum) = match *self {
            Statistic::Proportion { n, sum } | Statistic::SampleMean { n, sum, .. } => (n, sum),
        };
        if n == 0 {
            0.0
        } else {
            sum / n as f64
        }
    }

    /// Unit-level variance as gbstats defines it: `p(1-p)` for a proportion (no n/(n-1)
    /// correction), the sample variance `(Σx² - (Σx)²/n)/(n-1)` for a mean, 0 when n <= 1.
    pub fn variance(&self) -> f64 {
        match *self {
            Statistic::Proportion { .. } => {
                let mean = self.mean();
                mean * (1.0 - mean)
            }
            Statistic::SampleMean {
                n,
                sum,
                sum_squares,
            } => {
                if n <= 1 {
                    0.0
                } else {
                    let n = n as f64;
                    (sum_squares - sum.powi(2) / n) / (n - 1.0)
                }
            }
        }
    }

    /// gbstats' `_has_zero_variance`: variance <= 0 (rounding can make it slightly negative).
    pub(super) fn has_zero_variance(&self) -> bool {
        self.variance() <= 0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_a_proportion_when_computing_moments_then_bernoulli_moments_come_back() {
        // Given
        let s = Statistic::Proportion {
            n: 1000,
            sum: 100.0,
        };
        // When / Then
        assert_eq!(s.n(), 1000);
        assert_eq!(s.mean(), 0.1);
        assert!((s.variance() - 0.09).abs() < 1e-15);
        assert!(!s.has_zero_variance());
    }

    #[test]
    fn given_a_sample_mean_when_computing_moments_then_the_sample_variance_comes_back() {
        // Given values 1, 2, 3, 4
        let s = Statistic::SampleMean {
            n: 4,
            sum: 10.0,
            sum_squares: 30.0,
        };
        // When / Then
        assert_eq!(s.mean(), 2.5);
        assert!((s.variance() - 5.0 / 3.0).abs() < 1e-15);
    }

    #[test]
    fn given_degenerate_variants_when_computing_moments_then_gbstats_conventions_apply() {
        // Given / When / Then
        let empty = Statistic::Proportion { n: 0, sum: 0.0 };
        assert_eq!(empty.mean(), 0.0);
        assert!(empty.has_zero_variance());
        let single = Statistic::SampleMean {
            n: 1,
            sum: 5.0,
            sum_squares: 25.0,
        };
        assert_eq!(single.variance(), 0.0);
        assert!(single.has_zero_variance());
        let all_converted = Statistic::Proportion { n: 10, sum: 10.0 };
        assert!(all_converted.has_zero_variance());
    }
}
