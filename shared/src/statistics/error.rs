//! The one error type of the statistics module: every variant names the offending input field
//! by its path in the JSON contract (`alpha`, `weights[1]`, `variants[2].n`, ...).

use thiserror::Error;

/// An input the statistics engine refuses. Statistics that are merely undefined for valid input
/// (zero variance, zero control mean, ...) are not errors: they come back as `None` / `null`.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum StatsError {
    /// NaN or an infinity where a finite number is required.
    #[error("{field} must be a finite number")]
    NotFinite { field: String },

    /// A number outside its allowed range; `expected` says which range.
    #[error("{field} = {value} is out of range: expected {expected}")]
    OutOfRange {
        field: String,
        value: f64,
        expected: &'static str,
    },

    /// A list with too few entries.
    #[error("{field} has {found} entries, at least {min} required")]
    TooFew {
        field: String,
        found: usize,
        min: usize,
    },

    /// A list whose length must match another one's.
    #[error("{field} has {found} entries, expected {expected}")]
    LengthMismatch {
        field: String,
        found: usize,
        expected: usize,
    },

    /// A field that is required in this context is absent.
    #[error("{field} is required: {reason}")]
    Missing { field: String, reason: &'static str },

    /// A field that contradicts another field.
    #[error("{field} conflicts with another field: {reason}")]
    Conflict { field: String, reason: &'static str },
}

impl StatsError {
    /// The path of the offending field, e.g. `variants[2].n`.
    pub fn field(&self) -> &str {
        match self {
            StatsError::NotFinite { field }
            | StatsError::OutOfRange { field, .. }
            | StatsError::TooFew { field, .. }
            | StatsError::LengthMismatch { field, .. }
            | StatsError::Missing { field, .. }
            | StatsError::Conflict { field, .. } => field,
        }
    }
}

/// Checks that `value` is finite and lies in the open interval (0, 1).
pub(super) fn open_unit(field: &str, value: f64) -> Result<f64, StatsError> {
    finite(field, value)?;
    if value > 0.0 && value < 1.0 {
        Ok(value)
    } else {
        Err(StatsError::OutOfRange {
            field: field.to_owned(),
            value,
            expected: "a number strictly between 0 and 1",
        })
    }
}

/// Checks that `value` is finite and strictly positive.
pub(super) fn positive(field: &str, value: f64) -> Result<f64, StatsError> {
    finite(field, value)?;
    if value > 0.0 {
        Ok(value)
    } else {
        Err(StatsError::OutOfRange {
            field: field.to_owned(),
            value,
            expected: "a number greater than 0",
        })
    }
}

/// Checks that `value` is finite.
pub(super) fn finite(field: &str, value: f64) -> Result<f64, StatsError> {
    if value.is_finite() {
        Ok(value)
    } else {
        Err(StatsError::NotFinite {
            field: field.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_each_variant_when_asking_for_the_field_then_the_path_comes_back() {
        // Given
        let errors = [
            StatsError::NotFinite { field: "a".into() },
            StatsError::OutOfRange {
                field: "a".into(),
                value: 2.0,
                expected: "x",
            },
            StatsError::TooFew {
                field: "a".into(),
                found: 1,
                min: 2,
            },
            StatsError::LengthMismatch {
                field: "a".into(),
                found: 1,
                expected: 2,
            },
            StatsError::Missing {
                field: "a".into(),
                reason: "x",
            },
            StatsError::Conflict {
                field: "a".into(),
                reason: "x",
            },
        ];
        // When / Then
        for e in errors {
            assert_eq!(e.field(), "a");
            assert!(e.to_string().starts_with('a'));
        }
    }

    #[test]
    fn given_boundary_values_when_checking_the_open_unit_interval_then_only_interior_passes() {
        // Given / When / Then
        assert!(open_unit("alpha", 0.05).is_ok());
        assert!(open_unit("alpha", 0.0).is_err());
        assert!(open_unit("alpha", 1.0).is_err());
        assert_eq!(
            open_unit("alpha", f64::NAN),
            Err(StatsError::NotFinite {
                field: "alpha".into()
            })
        );
        assert!(positive("x", 0.0).is_err());
        assert!(positive("x", f64::INFINITY).is_err());
        assert_eq!(positive("x", 3.0), Ok(3.0));
    }
}
