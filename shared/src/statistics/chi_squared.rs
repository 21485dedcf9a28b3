//! Chi-squared tests across all variants: sample-ratio mismatch (goodness of fit of the
//! variants' unit counts to the configured weights) and independence of conversion from
//! variant (k×2 contingency table).

use super::distributions::chi2_sf;
use super::error::{positive, StatsError};

/// SRM is flagged when the goodness-of-fit p-value falls below this (GrowthBook's default).
pub const SRM_P_THRESHOLD: f64 = 0.001;

/// Whether an SRM p-value indicates a sample-ratio mismatch (p < [`SRM_P_THRESHOLD`]).
pub fn srm_detected(p_value: f64) -> bool {
    p_value < SRM_P_THRESHOLD
}

/// Sample-ratio-mismatch p-value: Pearson's chi-squared goodness of fit of `counts` (units per
/// variant) to the split `weights` (any positive scale), k - 1 degrees of freedom. Equals
/// `scipy.stats.chisquare(counts, weights / sum(weights) * sum(counts))` and gbstats
/// `check_srm`. With no units at all there is no evidence of a mismatch: 1 (gbstats'
/// convention; scipy would give NaN).
///
/// Errors: fewer than 2 variants (`counts`), lengths differ (`weights`), a weight that is not
/// finite and positive (`weights[i]`).
pub fn srm_p_value(counts: &[u64], weights: &[f64]) -> Result<f64, StatsError> {
    if counts.len() < 2 {
        return Err(StatsError::TooFew {
            field: "counts".into(),
            found: counts.len(),
            min: 2,
        });
    }
    if weights.len() != counts.len() {
        return Err(StatsError::LengthMismatch {
            field: "weights".into(),
            found: weights.len(),
            expected: counts.len(),
        });
    }
    for (i, w) in weights.iter().enumerate() {
        positive(&format!("weights[{i}]"), *w)?;
    }
    let total: f64 = counts.iter().map(|&c| c as f64).sum();
    if total == 0.0 {
        return Ok(1.0);
    }
    let weight_total: f64 = weights.iter().sum();
    let statistic: f64 = counts
        .iter()
        .zip(weights)
        .map(|(&observed, &w)| {
            let expected = w / weight_total * total;
            (observed as f64 - expected).powi(2) / expected
        })
        .sum();
    Ok(chi2_sf(statistic, (counts.len() - 1) as f64).unwrap_or(1.0))
}

/// Chi-squared test of independence between variant and conversion on the k×2 table
/// `[conversions, n - conversions]` per variant, Pearson statistic **without** Yates'
/// continuity correction (`scipy.stats.chi2_contingency(table, correction=False)`), k - 1
/// degrees of freedom. Yates' correction is left out because it only applies to the 2×2 case
/// in scipy and is conservative; without it the 2-variant test agrees with the pooled z-test.
///
/// `variants` holds `(n, conversions)` per variant. `Ok(None)` when an expected frequency is
/// zero (no conversions at all, every unit converted, or an empty variant), where scipy raises.
///
/// Errors: fewer than 2 variants (`variants`), conversions not finite or outside [0, n]
/// (`variants[i].sum`).
pub fn chi_squared_independence(variants: &[(u64, f64)]) -> Result<Option<f64>, StatsError> {
    if variants.len() < 2 {
        return Err(StatsError::TooFew {
            field: "variants".into(),
            found: variants.len(),
            min: 2,
        });
    }
    for (i, &(n, sum)) in variants.iter().enumerate() {
        let field = format!("variants[{i}].sum");
        if !sum.is_finite() {
            return Err(StatsError::NotFinite { field });
        }
        if sum < 0.0 || sum > n as f64 {
            return Err(StatsError::OutOfRange {
                field,
                value: sum,
                expected: "a number of conversions between 0 and n",
            });
        }
    }
    let rows: Vec<[f64; 2]> = variants
        .iter()
        .map(|&(n, sum)| [sum, n as f64 - sum])
        .collect();
    let columns = [
        rows.iter().map(|r| r[0]).sum::<f64>(),
        rows.iter().map(|r| r[1]).sum::<f64>(),
    ];
    let total = columns[0] + columns[1];
    let mut statistic = 0.0;
    for row in &rows {
        let row_total = row[0] + row[1];
        for (observed, column_total) in row.iter().zip(columns) {
            let expected = row_total * column_total / total;
            // Zero (or NaN, for an all-empty table): scipy refuses the table.
            if expected.is_nan() || expected <= 0.0 {
                return Ok(None);
            }
            statistic += (observed - expected).powi(2) / expected;
        }
    }
    Ok(chi2_sf(statistic, (variants.len() - 1) as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(actual: f64, expected: f64) -> bool {
        (actual - expected).abs() <= 1e-9 * expected.abs().max(1e-3)
    }

    #[test]
    fn given_a_perfect_split_when_checking_srm_then_p_is_one_and_nothing_is_flagged() {
        // Given
        let counts = [5000, 5000];
        // When
        let p = srm_p_value(&counts, &[1.0, 1.0]);
        // Then
        assert_eq!(p, Ok(1.0));
        assert!(!srm_detected(1.0));
    }

    #[test]
    fn given_a_lopsided_split_when_checking_srm_then_it_is_flagged() {
        // Given 5000 vs 5400 on a 50/50 split: chi2 = 15.38, p = 8.8e-5 (scipy.stats.chisquare)
        let counts = [5000, 5400];
        // When
        let p = srm_p_value(&counts, &[0.5, 0.5]).expect("valid");
        // Then
        assert!(srm_detected(p), "p = {p}");
    }

    #[test]
    fn given_bad_weights_when_checking_srm_then_the_field_is_named() {
        // Given / When / Then
        assert_eq!(
            srm_p_value(&[10, 10], &[1.0, 0.0]).map_err(|e| e.field().to_owned()),
            Err("weights[1]".to_owned())
        );
        assert_eq!(
            srm_p_value(&[10, 10], &[1.0]).map_err(|e| e.field().to_owned()),
            Err("weights".to_owned())
        );
        assert_eq!(
            srm_p_value(&[10], &[1.0]).map_err(|e| e.field().to_owned()),
            Err("counts".to_owned())
        );
    }

    #[test]
    fn given_ten_versus_thirteen_percent_when_testing_independence_then_scipy_value_comes_back() {
        // Given (scipy.stats.chi2_contingency(..., correction=False))
        let variants = [(1000, 100.0), (1000, 130.0)];
        // When
        let p = chi_squared_independence(&variants).expect("valid");
        // Then
        assert!(p.is_some_and(|p| close(p, 0.03548845046647463)), "{p:?}");
    }

    #[test]
    fn given_no_conversions_when_testing_independence_then_the_test_is_undefined() {
        // Given / When / Then
        assert_eq!(
            chi_squared_independence(&[(1000, 0.0), (1000, 0.0)]),
            Ok(None)
        );
        assert_eq!(
            chi_squared_independence(&[(0, 0.0), (1000, 10.0)]),
            Ok(None)
        );
    }

    #[test]
    fn given_more_conversions_than_units_when_testing_independence_then_the_field_is_named() {
        // Given / When
        let e = chi_squared_independence(&[(10, 1.0), (10, 11.0)]);
        // Then
        assert_eq!(
            e.map_err(|e| e.field().to_owned()),
            Err("variants[1].sum".to_owned())
        );
    }
}
