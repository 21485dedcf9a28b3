//! Bucketing: weights to ranges, a hash to a variation, namespaces.

use serde::{Deserialize, Serialize};

use super::hash::hash;

/// `[start, end)` of the unit interval; a hash in it gets the range's variation.
pub type VariationRange = (f64, f64);

/// A slice of the unit interval that an experiment claims, so that experiments sharing a
/// namespace id with disjoint ranges never share a user (GrowthBook's `[id, start, end]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Namespace {
    pub id: String,
    pub start: f64,
    pub end: f64,
}

/// `n` weights of `1/n` each; none for `n == 0`.
pub fn get_equal_weights(n: usize) -> Vec<f64> {
    if n == 0 {
        return Vec::new();
    }
    vec![1.0 / n as f64; n]
}

/// GrowthBook's `getBucketRanges`: coverage is clamped to [0, 1]; weights fall back to equal
/// ones when absent, of the wrong count, or not summing to 1 ± 0.01; each variation gets
/// `[cumulative, cumulative + coverage * weight)`. The float operations run in the SDK's order,
/// so the ranges are bit-identical to JavaScript's.
pub fn get_bucket_ranges(
    num_variations: usize,
    coverage: f64,
    weights: Option<&[f64]>,
) -> Vec<VariationRange> {
    let coverage = coverage.clamp(0.0, 1.0); // a NaN stays NaN, as in JavaScript
    let equal = get_equal_weights(num_variations);
    let mut weights = weights.unwrap_or(&equal);
    if weights.len() != num_variations {
        weights = &equal;
    }
    let total = weights.iter().fold(0.0, |sum, w| w + sum);
    // (not `!(0.99..=1.01).contains(..)`: a NaN total keeps the weights, as in JavaScript)
    #[allow(clippy::manual_range_contains)]
    if total < 0.99 || total > 1.01 {
        weights = &equal;
    }
    let mut cumulative = 0.0;
    weights
        .iter()
        .map(|w| {
            let start = cumulative;
            cumulative += w;
            (start, start + coverage * w)
        })
        .collect()
}

/// `start <= n < end`
pub fn in_range(n: f64, range: VariationRange) -> bool {
    n >= range.0 && n < range.1
}

/// The first range holding `n`; `None` (the SDK's -1) when the hash falls outside coverage.
pub fn choose_variation(n: f64, ranges: &[VariationRange]) -> Option<usize> {
    ranges.iter().position(|range| in_range(n, *range))
}

/// Whether a user falls in a namespace's slice: `hash("__" + id, user_id, 1)` in `[start, end)`.
pub fn in_namespace(user_id: &str, namespace: &Namespace) -> bool {
    let seed = format!("__{}", namespace.id);
    match hash(&seed, user_id, 1) {
        Some(n) => n >= namespace.start && n < namespace.end,
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_weights_split_the_interval() {
        assert_eq!(get_equal_weights(0), Vec::<f64>::new());
        assert_eq!(get_equal_weights(4), vec![0.25; 4]);
    }

    #[test]
    fn reduced_coverage_shrinks_each_range_from_its_start() {
        // Given two variations at half coverage
        // When ranges are built
        let ranges = get_bucket_ranges(2, 0.5, None);
        // Then each range keeps its start and covers half its weight
        assert_eq!(ranges, vec![(0.0, 0.25), (0.5, 0.75)]);
        assert_eq!(choose_variation(0.4, &ranges), None);
        assert_eq!(choose_variation(0.6, &ranges), Some(1));
    }

    #[test]
    fn invalid_weights_fall_back_to_equal_ones() {
        // Given weights that don't sum to 1, and weights of the wrong count
        // Then the ranges are the equal ones
        let equal = get_bucket_ranges(2, 1.0, None);
        assert_eq!(get_bucket_ranges(2, 1.0, Some(&[0.7, 0.6])), equal);
        assert_eq!(get_bucket_ranges(2, 1.0, Some(&[1.0])), equal);
        // And a sum within 0.01 of 1 is kept as given
        assert_eq!(
            get_bucket_ranges(2, 1.0, Some(&[0.4, 0.5999])),
            vec![(0.0, 0.4), (0.4, 0.9999)]
        );
    }

    #[test]
    fn coverage_is_clamped() {
        assert_eq!(
            get_bucket_ranges(2, -0.2, None),
            vec![(0.0, 0.0), (0.5, 0.5)]
        );
        assert_eq!(
            get_bucket_ranges(2, 1.5, None),
            get_bucket_ranges(2, 1.0, None)
        );
    }

    #[test]
    fn a_user_is_in_a_namespace_by_the_version_1_hash() {
        let ns = |start, end| Namespace {
            id: "namespace2".to_owned(),
            start,
            end,
        };
        assert!(in_namespace("3", &ns(0.0, 0.4)));
        assert!(!in_namespace("3", &ns(0.4, 1.0)));
    }
}
