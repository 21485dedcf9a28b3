//! Experiment statistics: pure functions on sufficient statistics, no I/O.
//!
//! Every variant is summarised by `(n, sum, sum_squares)`; the first variant is the control.
//! The numbers equal **gbstats 0.8.0** (GrowthBook's engine), checked field by field against
//! fixtures it generated (`fixtures/`, made by `scripts/fixtures/gen_statistics.py`; 1e-6
//! relative or 1e-9 absolute):
//!
//! * metrics: a proportion is gbstats `ProportionStatistic(n, sum)` (variance p(1-p)); a mean is
//!   `SampleMeanStatistic(n, sum, sum_squares)` (sample variance, 0 when n <= 1);
//! * frequentist lift ([`t_test`]): `TwoSidedTTest`, Welch degrees of freedom, with difference
//!   type `"absolute"` (mean_b - mean_a) and `"relative"` ((mean_b - mean_a)/mean_a, variance by
//!   the delta method);
//! * Bayesian ([`bayesian_test`]): `EffectBayesianABTest` with gbstats' default flat prior
//!   (improper Gaussian, so the posterior is the normal likelihood) on the **relative**
//!   difference (gbstats' default difference type): chance to win, equal-tailed credible
//!   interval at 1 - alpha, and risk [control, treatment]. The analysis alpha is passed to
//!   `EffectBayesianConfig(alpha=...)`; gbstats' own runner leaves it at 0.05, which is the same
//!   interval at the default alpha;
//! * sequential ([`sequential_t_test`]): `SequentialTwoSidedTTest`, relative difference,
//!   always-valid confidence sequence tuned by N* (`sequential_tuning`, default 5000);
//! * SRM ([`srm_p_value`]): chi-squared goodness of fit of the variants' n to the weights
//!   (`scipy.stats.chisquare`), flagged when p < 0.001 ([`SRM_P_THRESHOLD`]). [`analyze`] always
//!   reports it, against equal weights when none are configured;
//! * independence ([`chi_squared_independence`]): `scipy.stats.chi2_contingency` with
//!   `correction=False` (no Yates correction) on the k×2 table of a proportion metric;
//! * multiple testing ([`holm`], [`benjamini_hochberg`]): statsmodels `multipletests`;
//! * planning ([`sample_size_proportion`], [`sample_size_mean`], [`power`],
//!   [`days_to_sample`]): closed-form normal approximations.
//!
//! Where gbstats returns its uninformative default (control mean 0, variance <= 0 in either
//! variant, an empty variant) the result is `None`, which the JSON contract writes as `null`;
//! the output never holds NaN. Invalid input is a [`StatsError`] naming the field path.

mod analysis;
mod bayesian;
mod chi_squared;
mod distributions;
mod error;
mod frequentist;
mod multiple_testing;
mod planning;
mod statistic;

#[cfg(test)]
mod fixture_tests;

pub use self::analysis::{
    analyze, AnalysisInput, AnalysisOutput, BayesianLift, Comparison, Lift, MetricKind,
    SequentialLift, VariantInput, DEFAULT_ALPHA, DEFAULT_SEQUENTIAL_TUNING,
};
pub use self::bayesian::{bayesian_test, BayesianResult};
pub use self::chi_squared::{chi_squared_independence, srm_detected, srm_p_value, SRM_P_THRESHOLD};
pub use self::error::StatsError;
pub use self::frequentist::{sequential_t_test, t_test, DifferenceType, FrequentistResult};
pub use self::multiple_testing::{adjust, benjamini_hochberg, holm, AdjustInput, AdjustOutput};
pub use self::planning::{
    days_to_sample, mde_absolute_from_relative, power, sample_size, sample_size_mean,
    sample_size_proportion, PowerInput, SampleSizeInput, SampleSizeOutput,
};
pub use self::statistic::Statistic;
