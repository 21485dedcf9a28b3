//! The `tierup assign` contract, one JSON object per line:
//! `{"seed", "user_id", "variations", "coverage", "weights"?}` →
//! `{"hash", "variation"}`, with hash version 2 and `variation` -1 when the user is outside
//! coverage.
//!
//! Stricter than the SDK on input: where the SDK silently falls back (coverage clamped,
//! equal weights instead of bad ones), a line here is an error, so a typo in a script doesn't
//! quietly produce a different split.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::bucket::{choose_variation, get_bucket_ranges};
use super::hash::hash;

/// One input line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssignInput {
    pub seed: String,
    pub user_id: String,
    pub variations: usize,
    pub coverage: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<Vec<f64>>,
}

/// One output line.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AssignOutput {
    /// `hash(seed, user_id, 2)`, in [0, 1).
    pub hash: f64,
    /// The variation index, or -1 when not in the experiment.
    pub variation: i64,
}

/// Why an input line can't be assigned.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum AssignError {
    #[error("variations must be at least 2, got {0}")]
    TooFewVariations(usize),
    #[error("coverage must be between 0 and 1, got {0}")]
    CoverageOutOfRange(f64),
    #[error("{got} weights for {variations} variations")]
    WeightCount { got: usize, variations: usize },
    #[error("weight {index} must be a finite number from 0 to 1, got {weight}")]
    InvalidWeight { index: usize, weight: f64 },
    #[error("weights must sum to 1 (within 0.01), got {0}")]
    WeightSum(f64),
}

/// Assigns one input line.
pub fn assign_line(input: &AssignInput) -> Result<AssignOutput, AssignError> {
    if input.variations < 2 {
        return Err(AssignError::TooFewVariations(input.variations));
    }
    if !(0.0..=1.0).contains(&input.coverage) {
        return Err(AssignError::CoverageOutOfRange(input.coverage));
    }
    if let Some(weights) = &input.weights {
        if weights.len() != input.variations {
            return Err(AssignError::WeightCount {
                got: weights.len(),
                variations: input.variations,
            });
        }
        if let Some((index, &weight)) = weights
            .iter()
            .enumerate()
            .find(|(_, w)| !(0.0..=1.0).contains(*w))
        {
            return Err(AssignError::InvalidWeight { index, weight });
        }
        // summed as the SDK sums them
        let total = weights.iter().fold(0.0, |sum, w| w + sum);
        if !(0.99..=1.01).contains(&total) {
            return Err(AssignError::WeightSum(total));
        }
    }
    // hash version 2 always exists
    let n = hash(&input.seed, &input.user_id, 2).unwrap_or(f64::NAN);
    let ranges = get_bucket_ranges(input.variations, input.coverage, input.weights.as_deref());
    let variation = if input.user_id.is_empty() {
        None // the SDK skips users whose hash attribute is empty
    } else {
        choose_variation(n, &ranges)
    };
    Ok(AssignOutput {
        hash: n,
        variation: variation.map_or(-1, |v| v as i64),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn input(line: serde_json::Value) -> AssignInput {
        serde_json::from_value(line).unwrap()
    }

    #[test]
    fn a_line_gets_the_version_2_hash_and_its_variation() {
        // Given a full-coverage 50/50 line (hash("seed", "b", 2) = 0.2696)
        let line = input(json!({"seed": "seed", "user_id": "b", "variations": 2, "coverage": 1}));
        // When assigned
        let out = assign_line(&line).unwrap();
        // Then
        assert_eq!(
            out,
            AssignOutput {
                hash: 0.2696,
                variation: 0
            }
        );
        assert_eq!(
            serde_json::to_string(&out).unwrap(),
            r#"{"hash":0.2696,"variation":0}"#
        );
    }

    #[test]
    fn users_outside_coverage_get_minus_one() {
        let line = input(json!({"seed": "seed", "user_id": "b", "variations": 2, "coverage": 0.1}));
        assert_eq!(assign_line(&line).unwrap().variation, -1);
        let empty = input(json!({"seed": "s", "user_id": "", "variations": 2, "coverage": 1}));
        assert_eq!(assign_line(&empty).unwrap().variation, -1);
    }

    #[test]
    fn weights_shift_the_split() {
        // Given hash 0.2696 and 20/80 weights
        let line = input(
            json!({"seed": "seed", "user_id": "b", "variations": 2, "coverage": 1, "weights": [0.2, 0.8]}),
        );
        // Then the user falls in the second variation
        assert_eq!(assign_line(&line).unwrap().variation, 1);
    }

    #[test]
    fn invalid_lines_are_errors() {
        let base = json!({"seed": "s", "user_id": "u", "variations": 2, "coverage": 1});
        let with = |key: &str, value: serde_json::Value| {
            let mut line = base.clone();
            line[key] = value;
            assign_line(&input(line))
        };
        assert_eq!(
            with("variations", json!(1)),
            Err(AssignError::TooFewVariations(1))
        );
        assert_eq!(
            with("coverage", json!(1.5)),
            Err(AssignError::CoverageOutOfRange(1.5))
        );
        assert_eq!(
            with("weights", json!([1.0])),
            Err(AssignError::WeightCount {
                got: 1,
                variations: 2
            })
        );
        assert_eq!(
            with("weights", json!([-0.5, 1.5])),
            Err(AssignError::InvalidWeight {
                index: 0,
                weight: -0.5
            })
        );
        assert!(matches!(
            with("weights", json!([0.5, 0.6])),
            Err(AssignError::WeightSum(_))
        ));
        // And unknown fields are refused when parsing
        assert!(serde_json::from_str::<AssignInput>(
            r#"{"seed":"s","user_id":"u","variations":2,"coverage":1,"weight":[1]}"#
        )
        .is_err());
    }
}
