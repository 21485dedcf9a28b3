//! GrowthBook-compatible experiment assignment: pure functions, no I/O.
//!
//! Byte-compatible with GrowthBook's JavaScript SDK (`@growthbook/growthbook` 1.8.0, the
//! reference): the same hashes (FNV-1a over UTF-16 code units), the same bucket ranges bit
//! for bit, the same targeting results, loose JavaScript comparisons included. The fixtures
//! in `fixtures/` are computed by that SDK (`scripts/fixtures/gen_growthbook.mjs`) and the
//! tests match all of them exactly. What this can't do the SDK's way, it refuses: regular
//! expressions with lookaround or backreferences never match (and [`validate_condition`]
//! rejects them up front).
//!
//! - [`hash`], [`get_bucket_ranges`], [`choose_variation`], [`in_namespace`]: bucketing.
//! - [`eval_condition`], [`eval_condition_with_groups`]: targeting; [`validate_condition`]
//!   checks a condition when a client submits it.
//! - [`evaluate`]: one experiment, one user.
//! - [`assign_line`]: the `tierup assign` JSON Lines contract.

mod assign;
mod bucket;
mod condition;
mod experiment;
mod hash;
mod js;
mod js_regex;
mod validate;
mod version;

#[cfg(test)]
mod fixture_tests;

pub use self::assign::{assign_line, AssignError, AssignInput, AssignOutput};
pub use self::bucket::{
    choose_variation, get_bucket_ranges, get_equal_weights, in_namespace, in_range, Namespace,
    VariationRange,
};
pub use self::condition::{eval_condition, eval_condition_with_groups, SavedGroups};
pub use self::experiment::{
    evaluate, evaluate_with_groups, Assignment, ExperimentSpec, NotInExperimentReason, UserContext,
};
pub use self::hash::{fnv1a32, hash};
pub use self::js_regex::JsRegexError;
pub use self::validate::{validate_condition, ConditionError};
