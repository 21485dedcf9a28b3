//! Multiple-testing adjustments of p-values, as statsmodels' `multipletests` with
//! `method='holm'` (family-wise error) and `method='fdr_bh'` (false discovery rate).

use serde::{Deserialize, Serialize};

use super::error::StatsError;

/// A family of p-values to adjust.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdjustInput {
    pub p_values: Vec<f64>,
}

/// The adjusted p-values, in the input order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdjustOutput {
    pub holm: Vec<f64>,
    pub benjamini_hochberg: Vec<f64>,
}

/// Both adjustments at once.
pub fn adjust(input: &AdjustInput) -> Result<AdjustOutput, StatsError> {
    Ok(AdjustOutput {
        holm: holm(&input.p_values)?,
        benjamini_hochberg: benjamini_hochberg(&input.p_values)?,
    })
}

/// Holm step-down: sorted ascending, p_(j)·(m - j + 1), made non-decreasing, capped at 1.
///
/// Errors: a p-value that is not a finite number in [0, 1] (`p_values[i]`).
pub fn holm(p_values: &[f64]) -> Result<Vec<f64>, StatsError> {
    let order = sorted_order(p_values)?;
    let m = p_values.len();
    let mut adjusted = vec![0.0; m];
    let mut running = 0.0_f64;
    for (rank, &i) in order.iter().enumerate() {
        running = running.max(p_values[i] * (m - rank) as f64);
        adjusted[i] = running.min(1.0);
    }
    Ok(adjusted)
}

/// Benjamini–Hochberg step-up: sorted ascending, p_(j)·m/j, made non-decreasing from the
/// largest down, capped at 1.
///
/// Errors: a p-value that is not a finite number in [0, 1] (`p_values[i]`).
pub fn benjamini_hochberg(p_values: &[f64]) -> Result<Vec<f64>, StatsError> {
    let order = sorted_order(p_values)?;
    let m = p_values.len();
    let mut adjusted = vec![0.0; m];
    let mut running = f64::INFINITY;
    for (rank, &i) in order.iter().enumerate().rev() {
        // statsmodels divides by the ECDF factor (j / m) rather than multiplying by m / j.
        let ecdf = (rank + 1) as f64 / m as f64;
        running = running.min(p_values[i] / ecdf);
        adjusted[i] = running.min(1.0);
    }
    Ok(adjusted)
}

/// Validates the p-values and returns their indices sorted by value (ties keep input order;
/// tied p-values get the same adjusted value either way).
fn sorted_order(p_values: &[f64]) -> Result<Vec<usize>, StatsError> {
    for (i, &p) in p_values.iter().enumerate() {
        let field = format!("p_values[{i}]");
        if !p.is_finite() {
            return Err(StatsError::NotFinite { field });
        }
        if !(0.0..=1.0).contains(&p) {
            return Err(StatsError::OutOfRange {
                field,
                value: p,
                expected: "a p-value between 0 and 1",
            });
        }
    }
    let mut order: Vec<usize> = (0..p_values.len()).collect();
    order.sort_by(|&a, &b| p_values[a].total_cmp(&p_values[b]));
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_close(actual: &[f64], expected: &[f64]) -> bool {
        actual.len() == expected.len()
            && actual
                .iter()
                .zip(expected)
                .all(|(a, e)| (a - e).abs() <= 1e-12)
    }

    // Reference: statsmodels.stats.multitest.multipletests(p, method='holm' | 'fdr_bh').
    #[test]
    fn given_four_p_values_when_adjusting_then_statsmodels_values_come_back() {
        // Given
        let input = AdjustInput {
            p_values: vec![0.01, 0.04, 0.03, 0.005],
        };
        // When
        let out = adjust(&input).expect("valid");
        // Then
        assert!(all_close(&out.holm, &[0.03, 0.06, 0.06, 0.02]), "{out:?}");
        assert!(
            all_close(&out.benjamini_hochberg, &[0.02, 0.04, 0.04, 0.02]),
            "{out:?}"
        );
    }

    #[test]
    fn given_ties_and_extremes_when_adjusting_then_ties_share_a_value_and_caps_hold() {
        // Given
        let p = [0.0, 1.0, 0.5, 0.0];
        // When
        let h = holm(&p).expect("valid");
        let bh = benjamini_hochberg(&p).expect("valid");
        // Then
        assert_eq!(h, vec![0.0, 1.0, 1.0, 0.0]);
        assert!(all_close(&bh, &[0.0, 1.0, 0.6666666666666666, 0.0]));
    }

    #[test]
    fn given_no_p_values_when_adjusting_then_nothing_comes_back() {
        // Given / When / Then
        assert_eq!(holm(&[]), Ok(vec![]));
        assert_eq!(benjamini_hochberg(&[]), Ok(vec![]));
    }

    #[test]
    fn given_an_invalid_p_value_when_adjusting_then_its_index_is_named() {
        // Given / When
        let e = holm(&[0.1, 1.5]);
        // Then
        assert_eq!(
            e.map_err(|e| e.field().to_owned()),
            Err("p_values[1]".to_owned())
        );
        assert!(benjamini_hochberg(&[f64::NAN]).is_err());
    }
}
