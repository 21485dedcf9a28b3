//! Usage-based upgrade prompts: the analysis of a user's feature usage, the decision whether to
//! show an upgrade prompt, the tier it recommends and the prompt's design.
//!
//! Every score is a unit-free number in `0..=1`; no raw counts, hours or money are ever added to
//! a score. With `d = max(1, active_days)` (usage implies at least one active day):
//!
//! - `total_usage = Σ count` over **all** features (tracked or not), saturating at `u64::MAX`;
//!   `untracked_usage` is the part from features not in `feature_thresholds`.
//! - `uses_per_active_day = total_usage / d`; `minutes_per_active_day = Σ duration_ms / 60 000 / d`
//!   (the sum is taken in 128-bit integers, so it cannot overflow).
//! - `frequency = clamp01(uses_per_active_day / frequency_target_per_day)`.
//! - `duration = clamp01(minutes_per_active_day / duration_target_minutes_per_day)`.
//! - `depth = features_used / tracked_features`, where `features_used` counts the *tracked*
//!   features with `count > 0` (0 when nothing is tracked).
//! - `value_demonstrated = (1 / tracked_features) · Σ_tracked min(count, threshold) / threshold`:
//!   the mean progress toward the per-feature thresholds (a feature counts at most 1, so heavy use
//!   of one feature cannot stand in for breadth).
//! - `confidence = clamp01(w_frequency · frequency + w_duration · duration + w_depth · depth)`
//!   (with valid weights the clamp never binds).
//! - `thresholds_met`: the tracked features with `count >= threshold`, in name order.
//!
//! `clamp01` maps NaN to 0, so no output is ever NaN or infinite, whatever the input.
//!
//! A prompt is created when *all* of these hold; otherwise every failing rule is reported:
//! at least one threshold is met; `value_demonstrated >= value_threshold`;
//! `confidence >= confidence_threshold`; a target tier exists. The **trigger feature** is the
//! met feature with the highest `count / threshold` (compared exactly), ties going to the feature
//! unlocked by the higher tier, then to the first name. The **target tier** is
//! `feature_tiers[trigger]` if that is above the current tier on the `tiers` ladder, else the
//! tier right above the current one. A current tier listed in `bottom_aliases` (default
//! `"unknown"`, the tier of a profile no event has named yet) stands on the bottom rung; any
//! other tier not on the ladder is reported as `unknown_tier` rather than guessed, so a user on
//! a paid tier the ladder does not know is never asked to "upgrade" to a lower one.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::events::FieldError;

/// Tolerance of the sum of the pattern weights.
pub const WEIGHT_SUM_TOLERANCE: f64 = 1e-9;
/// The placeholders a design template may use.
pub const PLACEHOLDERS: [&str; 5] = ["feature", "tier", "usage", "threshold", "value_pct"];
/// The default title template.
pub const DEFAULT_TITLE: &str = "Unlock the full {feature} with {tier}";
/// The default body template.
pub const DEFAULT_BODY: &str =
    "You've used {feature} {usage} times. Upgrade to {tier} to get everything it offers.";
/// The default call-to-action text template.
pub const DEFAULT_CTA: &str = "Upgrade to {tier}";
/// The keys a design config may carry, with their maximum length in characters.
pub const DESIGN_FIELDS: [(&str, usize); 4] = [
    ("title_template", 120),
    ("body_template", 500),
    ("cta_text", 40),
    ("cta_style", 40),
];

/// The default tracked features: (feature, threshold in uses, tier that unlocks it).
pub const DEFAULT_FEATURES: [(&str, u64, &str); 5] = [
    ("budget_tracker", 5, "mid"),
    ("expense_categorizer", 3, "mid"),
    ("savings_goals", 2, "mid"),
    ("investment_analysis", 1, "professional"),
    ("retirement_planner", 1, "professional"),
];

const MS_PER_MINUTE: f64 = 60_000.0;

/// A feature's usage: how often it was used and for how long in total.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FeatureStats {
    pub count: u64,
    pub duration_ms: u64,
}

/// A user's usage: per-feature stats and the number of distinct days with any activity.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UsageInput {
    pub features: BTreeMap<String, FeatureStats>,
    pub active_days: u32,
}

/// Weights of the confidence score; each `>= 0`, summing to 1 (±[`WEIGHT_SUM_TOLERANCE`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PatternWeights {
    pub frequency: f64,
    pub duration: f64,
    pub depth: f64,
}

impl Default for PatternWeights {
    fn default() -> Self {
        PatternWeights {
            frequency: 0.4,
            duration: 0.3,
            depth: 0.3,
        }
    }
}

impl PatternWeights {
    /// Every bad weight, then the sum, with paths under `prefix`.
    pub fn validate(&self, prefix: &str) -> Vec<FieldError> {
        let mut p = Problems(prefix, Vec::new());
        let named = [
            ("frequency", self.frequency),
            ("duration", self.duration),
            ("depth", self.depth),
        ];
        for (name, w) in named {
            if !w.is_finite() || w < 0.0 {
                p.add(name, "must be a number >= 0");
            }
        }
        let sum = self.frequency + self.duration + self.depth;
        if p.1.is_empty() && (sum - 1.0).abs() > WEIGHT_SUM_TOLERANCE {
            let msg = format!("must sum to 1 (±1e-9); they sum to {sum}");
            p.1.push(FieldError::new(prefix, msg));
        }
        p.1
    }
}

/// Settings of usage-based prompts (defaults in [`Default`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PromptSettings {
    /// Uses of each tracked feature that show it is valued (every key is a "tracked feature").
    pub feature_thresholds: BTreeMap<String, u64>,
    pub weights: PatternWeights,
    /// Minimum `value_demonstrated` (inclusive).
    pub value_threshold: f64,
    /// Minimum `confidence` (inclusive).
    pub confidence_threshold: f64,
    /// Uses per active day that count as full frequency (default 1: since an active day is any
    /// day with an event, 1 means every visit includes a feature use on average).
    pub frequency_target_per_day: f64,
    /// Minutes per active day that count as full duration (default 10: a few focused
    /// personal-finance tasks, such as reviewing a budget, on every active day).
    pub duration_target_minutes_per_day: f64,
    /// The tier ladder, lowest first.
    pub tiers: Vec<String>,
    /// The tier that unlocks each tracked feature's full version.
    pub feature_tiers: BTreeMap<String, String>,
    /// Current tiers not on the ladder that stand on its bottom rung.
    pub bottom_aliases: Vec<String>,
}

impl Default for PromptSettings {
    fn default() -> Self {
        let strings = |items: &[&str]| items.iter().map(|t| t.to_string()).collect();
        PromptSettings {
            feature_thresholds: DEFAULT_FEATURES
                .iter()
                .map(|(f, n, _)| (f.to_string(), *n))
                .collect(),
            weights: PatternWeights::default(),
            value_threshold: 0.6,
            confidence_threshold: 0.7,
            frequency_target_per_day: 1.0,
            duration_target_minutes_per_day: 10.0,
            tiers: strings(&["free", "budget", "mid", "professional"]),
            feature_tiers: DEFAULT_FEATURES
                .iter()
                .map(|(f, _, t)| (f.to_string(), t.to_string()))
                .collect(),
            bottom_aliases: vec!["unknown".to_string()],
        }
    }
}

/// Collects field errors under a prefix.
struct Problems<'a>(&'a str, Vec<FieldError>);

impl Problems<'_> {
    fn add(&mut self, field: impl std::fmt::Display, message: impl Into<String>) {
        self.1
            .push(FieldError::new(format!("{}.{field}", self.0), message));
    }
}

impl PromptSettings {
    /// Every bad field, with paths under `prefix`.
    pub fn validate(&self, prefix: &str) -> Vec<FieldError> {
        let mut p = Problems(prefix, Vec::new());
        let thresholds = &self.feature_thresholds;
        if thresholds.is_empty() {
            p.add("feature_thresholds", "must name at least one feature");
        }
        for (feature, threshold) in thresholds {
            if feature.trim().is_empty() || *threshold == 0 {
                let msg = "needs a non-empty feature name and at least 1 use";
                p.add(format_args!("feature_thresholds.{feature}"), msg);
            }
        }
        p.1.extend(self.weights.validate(&format!("{prefix}.weights")));
        for (name, v) in [
            ("value_threshold", self.value_threshold),
            ("confidence_threshold", self.confidence_threshold),
        ] {
            if !(0.0..=1.0).contains(&v) {
                p.add(name, "must be between 0 and 1");
            }
        }
        let frequency = ("frequency_target_per_day", self.frequency_target_per_day);
        let minutes = self.duration_target_minutes_per_day;
        for (name, v) in [frequency, ("duration_target_minutes_per_day", minutes)] {
            if !v.is_finite() || v <= 0.0 {
                p.add(name, "must be a number > 0");
            }
        }
        if self.tiers.is_empty() {
            p.add("tiers", "must list at least one tier");
        }
        let mut ladder = BTreeSet::new();
        for (i, tier) in self.tiers.iter().enumerate() {
            if tier.trim().is_empty() || !ladder.insert(tier.as_str()) {
                p.add(
                    format_args!("tiers[{i}]"),
                    "must be a non-empty, unique tier name",
                );
            }
        }
        for feature in thresholds
            .keys()
            .filter(|f| !self.feature_tiers.contains_key(*f))
        {
            let msg = "every tracked feature needs the tier that unlocks it";
            p.add(format_args!("feature_tiers.{feature}"), msg);
        }
        for (feature, tier) in &self.feature_tiers {
            let field = format!("feature_tiers.{feature}");
            if !thresholds.contains_key(feature) {
                p.add(field, "is not a tracked feature (feature_thresholds)");
            } else if !ladder.contains(tier.as_str()) {
                p.add(field, format!("names tier {tier:?}, which is not in tiers"));
            }
        }
        for (i, alias) in self.bottom_aliases.iter().enumerate() {
            if alias.trim().is_empty() {
                p.add(format_args!("bottom_aliases[{i}]"), "must not be empty");
            }
        }
        p.1
    }
}

/// The analysis of a user's usage (see the module doc for every formula).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageAnalysis {
    pub total_usage: u64,
    pub untracked_usage: u64,
    pub active_days: u32,
    pub uses_per_active_day: f64,
    pub minutes_per_active_day: f64,
    pub features_used: u32,
    pub tracked_features: u32,
    pub frequency: f64,
    pub duration: f64,
    pub depth: f64,
    pub value_demonstrated: f64,
    pub confidence: f64,
    pub thresholds_met: Vec<String>,
}

/// `x` clamped to `0..=1`, NaN to 0.
fn clamp01(x: f64) -> f64 {
    if x.is_nan() {
        0.0
    } else {
        x.clamp(0.0, 1.0)
    }
}

/// `min(count, threshold) / threshold`; a zero threshold is met by any count.
fn progress(count: u64, threshold: u64) -> f64 {
    if threshold == 0 {
        1.0
    } else {
        count.min(threshold) as f64 / threshold as f64
    }
}

/// Analyses a user's usage against the settings.
pub fn analyse(input: &UsageInput, settings: &PromptSettings) -> UsageAnalysis {
    let (mut total, mut untracked, mut duration_ms) = (0u64, 0u64, 0u128);
    for (name, stats) in &input.features {
        total = total.saturating_add(stats.count);
        duration_ms += u128::from(stats.duration_ms);
        if !settings.feature_thresholds.contains_key(name) {
            untracked = untracked.saturating_add(stats.count);
        }
    }
    let days = f64::from(input.active_days.max(1));
    let uses_per_active_day = total as f64 / days;
    let minutes_per_active_day = duration_ms as f64 / MS_PER_MINUTE / days;
    let (mut used, mut progress_sum, mut met) = (0u32, 0.0, Vec::new());
    for (name, &threshold) in &settings.feature_thresholds {
        let count = input.features.get(name).map_or(0, |s| s.count);
        used += u32::from(count > 0);
        progress_sum += progress(count, threshold);
        if count >= threshold {
            met.push(name.clone());
        }
    }
    let tracked = settings.feature_thresholds.len();
    let per_tracked = |x: f64| {
        if tracked == 0 {
            0.0
        } else {
            x / tracked as f64
        }
    };
    let frequency = clamp01(uses_per_active_day / settings.frequency_target_per_day);
    let duration = clamp01(minutes_per_active_day / settings.duration_target_minutes_per_day);
    let depth = per_tracked(f64::from(used));
    let w = &settings.weights;
    UsageAnalysis {
        total_usage: total,
        untracked_usage: untracked,
        active_days: input.active_days,
        uses_per_active_day,
        minutes_per_active_day,
        features_used: used,
        tracked_features: u32::try_from(tracked).unwrap_or(u32::MAX),
        frequency,
        duration,
        depth,
        value_demonstrated: clamp01(per_tracked(progress_sum)),
        confidence: clamp01(w.frequency * frequency + w.duration * duration + w.depth * depth),
        thresholds_met: met,
    }
}

/// Why no prompt was created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum NotCreatedReason {
    /// No tracked feature reached its threshold.
    NoThresholdMet,
    ValueBelowThreshold {
        value: f64,
        threshold: f64,
    },
    ConfidenceBelowThreshold {
        value: f64,
        threshold: f64,
    },
    /// The current tier is the top of the ladder.
    AlreadyTopTier {
        tier: String,
    },
    /// A tier (current, or the trigger's unlocking tier) that cannot be placed on the ladder.
    UnknownTier {
        tier: String,
    },
}

impl NotCreatedReason {
    /// A human sentence.
    pub fn message(&self) -> String {
        match self {
            NotCreatedReason::NoThresholdMet => {
                "no tracked feature has reached its usage threshold".into()
            }
            NotCreatedReason::ValueBelowThreshold { value, threshold } => format!(
                "value demonstrated {} is below the threshold {}",
                pct(*value),
                pct(*threshold)
            ),
            NotCreatedReason::ConfidenceBelowThreshold { value, threshold } => format!(
                "confidence {} is below the threshold {}",
                pct(*value),
                pct(*threshold)
            ),
            NotCreatedReason::AlreadyTopTier { tier } => {
                format!("tier {tier:?} is already the top tier")
            }
            NotCreatedReason::UnknownTier { tier } => {
                format!("tier {tier:?} is not on the tier ladder")
            }
        }
    }
}

/// A whole percentage, e.g. `0.876` -> `"88%"`.
fn pct(x: f64) -> String {
    format!("{:.0}%", clamp01(x) * 100.0)
}

/// A prompt to show.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptDraft {
    pub trigger_feature: String,
    pub usage: u64,
    pub usage_threshold: u64,
    pub current_tier: String,
    pub target_tier: String,
    pub value_demonstrated: f64,
    pub confidence: f64,
    pub reason: String,
}

/// The decision: a prompt, or every rule that failed. JSON: `{"create": {...}}` or
/// `{"not_created": [...]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromptDecision {
    Create(PromptDraft),
    NotCreated(Vec<NotCreatedReason>),
}

fn rank(settings: &PromptSettings, tier: &str) -> Option<usize> {
    settings.tiers.iter().position(|t| t == tier)
}

/// The met feature with the highest `count / threshold`; ties: higher unlocking tier, then name.
fn pick_trigger<'a>(
    met: &'a [String],
    input: &UsageInput,
    settings: &PromptSettings,
) -> Option<&'a str> {
    let key = |name: &str| {
        let count = input.features.get(name).map_or(0, |s| s.count);
        let threshold = settings.feature_thresholds.get(name).copied().unwrap_or(0);
        let tier = settings
            .feature_tiers
            .get(name)
            .and_then(|t| rank(settings, t));
        (u128::from(count), u128::from(threshold), tier)
    };
    met.iter().map(String::as_str).max_by(|a, b| {
        let (ca, ta, ra) = key(a);
        let (cb, tb, rb) = key(b);
        (ca * tb)
            .cmp(&(cb * ta))
            .then(ra.cmp(&rb))
            .then_with(|| b.cmp(a))
    })
}

/// The tier to recommend (None without a trigger), or why there is none.
fn target_tier(
    current: &str,
    trigger: Option<&str>,
    settings: &PromptSettings,
) -> Result<Option<String>, NotCreatedReason> {
    let unknown = |tier: &str| NotCreatedReason::UnknownTier { tier: tier.into() };
    let current_rank = match rank(settings, current) {
        Some(r) => r,
        None if !settings.tiers.is_empty()
            && settings.bottom_aliases.iter().any(|a| a == current) =>
        {
            0
        }
        None => return Err(unknown(current)),
    };
    let Some(next) = settings.tiers.get(current_rank + 1) else {
        return Err(NotCreatedReason::AlreadyTopTier {
            tier: current.into(),
        });
    };
    let Some(trigger) = trigger else {
        return Ok(None);
    };
    match settings.feature_tiers.get(trigger) {
        None => Ok(Some(next.clone())),
        Some(t) => match rank(settings, t) {
            Some(r) if r > current_rank => Ok(Some(t.clone())),
            Some(_) => Ok(Some(next.clone())),
            None => Err(unknown(t)),
        },
    }
}

/// `value >= threshold` (inclusive); a NaN threshold never passes.
fn passes(value: f64, threshold: f64) -> bool {
    value >= threshold
}

/// Analyses the usage and decides whether to prompt a user on `current_tier` to upgrade.
pub fn evaluate(
    input: &UsageInput,
    current_tier: &str,
    settings: &PromptSettings,
) -> (UsageAnalysis, PromptDecision) {
    let a = analyse(input, settings);
    let mut reasons = Vec::new();
    let trigger = pick_trigger(&a.thresholds_met, input, settings);
    if trigger.is_none() {
        reasons.push(NotCreatedReason::NoThresholdMet);
    }
    if !passes(a.value_demonstrated, settings.value_threshold) {
        reasons.push(NotCreatedReason::ValueBelowThreshold {
            value: a.value_demonstrated,
            threshold: settings.value_threshold,
        });
    }
    if !passes(a.confidence, settings.confidence_threshold) {
        reasons.push(NotCreatedReason::ConfidenceBelowThreshold {
            value: a.confidence,
            threshold: settings.confidence_threshold,
        });
    }
    let target = target_tier(current_tier, trigger, settings).unwrap_or_else(|r| {
        reasons.push(r);
        None
    });
    let decision = match (trigger, target) {
        (Some(feature), Some(target_tier)) if reasons.is_empty() => {
            let usage = input.features.get(feature).map_or(0, |s| s.count);
            let usage_threshold = settings
                .feature_thresholds
                .get(feature)
                .copied()
                .unwrap_or(0);
            PromptDecision::Create(PromptDraft {
                reason: format!(
                    "{feature} was used {usage} times (threshold {usage_threshold}); value \
                     demonstrated {}, confidence {}: recommend {target_tier}",
                    pct(a.value_demonstrated),
                    pct(a.confidence)
                ),
                trigger_feature: feature.into(),
                usage,
                usage_threshold,
                current_tier: current_tier.into(),
                target_tier,
                value_demonstrated: a.value_demonstrated,
                confidence: a.confidence,
            })
        }
        _ => PromptDecision::NotCreated(reasons),
    };
    (a, decision)
}

/// Share of the expected use achieved so far, for trial reminders:
/// `Σ_tracked min(count, threshold) / (Σ thresholds × e)` with `e = min(elapsed_fraction, 1)`.
/// `None` when `elapsed_fraction <= 0` (or NaN) or the thresholds sum to 0. Not capped: a user
/// ahead of schedule gets more than 1 (at most `1 / e`).
pub fn usage_ratio(
    input: &UsageInput,
    settings: &PromptSettings,
    elapsed_fraction: f64,
) -> Option<f64> {
    if elapsed_fraction.is_nan() || elapsed_fraction <= 0.0 {
        return None;
    }
    let (mut achieved, mut expected) = (0u128, 0u128);
    for (name, &threshold) in &settings.feature_thresholds {
        let count = input.features.get(name).map_or(0, |s| s.count);
        achieved += u128::from(count.min(threshold));
        expected += u128::from(threshold);
    }
    if expected == 0 {
        return None;
    }
    Some(achieved as f64 / (expected as f64 * elapsed_fraction.min(1.0)))
}

/// A prompt's design: texts rendered for the draft, from the defaults or an experiment variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptDesign {
    /// `"default"` or `"experiment"`.
    pub source: String,
    pub experiment: Option<String>,
    pub variant: Option<String>,
    pub title: String,
    pub body: String,
    pub cta_text: String,
    pub cta_style: Option<String>,
}

/// A key in display form: `budget_tracker` -> `Budget Tracker`.
fn display_name(key: &str) -> String {
    key.split(['_', '-'])
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut chars = w.chars();
            chars.next().map_or(String::new(), |c| {
                c.to_uppercase().chain(chars).collect::<String>()
            })
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Renders `{name}` placeholders (`{{` and `}}` are literal braces).
fn render(template: &str, values: &[(&str, String)]) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                out.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                out.push('}');
            }
            '}' => return Err("has a '}' without '{' (write '}}' for a literal brace)".into()),
            '{' => {
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(ch) => name.push(ch),
                        None => return Err("has an unclosed '{'".into()),
                    }
                }
                match values.iter().find(|(k, _)| *k == name) {
                    Some((_, v)) => out.push_str(v),
                    None => {
                        return Err(format!(
                            "unknown placeholder {{{name}}}; allowed: {{{}}}",
                            PLACEHOLDERS.join("}, {")
                        ))
                    }
                }
            }
            _ => out.push(c),
        }
    }
    Ok(out)
}

/// Problems of an experiment variant's design config (`null` or an object with optional
/// string fields [`DESIGN_FIELDS`]), with paths under `config`.
pub fn validate_design_config(config: &Value) -> Vec<FieldError> {
    let obj = match config {
        Value::Null => return Vec::new(),
        Value::Object(obj) => obj,
        _ => return vec![FieldError::new("config", "must be an object")],
    };
    let sample: Vec<(&str, String)> = PLACEHOLDERS.iter().map(|p| (*p, String::new())).collect();
    let mut errors = Vec::new();
    for (key, value) in obj {
        let field = format!("config.{key}");
        let Some(&(_, max)) = DESIGN_FIELDS.iter().find(|(k, _)| k == key) else {
            let allowed: Vec<&str> = DESIGN_FIELDS.iter().map(|(k, _)| *k).collect();
            errors.push(FieldError::new(
                field,
                format!("unknown field; expected one of {}", allowed.join(", ")),
            ));
            continue;
        };
        let problem = match value.as_str() {
            None => Some("must be a string".to_string()),
            Some(s) if s.trim().is_empty() => Some("must not be empty".to_string()),
            Some(s) if s.chars().count() > max => Some(format!("must be at most {max} characters")),
            Some(_) if key == "cta_style" => None,
            Some(s) => render(s, &sample).err(),
        };
        if let Some(message) = problem {
            errors.push(FieldError::new(field, message));
        }
    }
    errors
}

/// The design of a prompt: the defaults ([`DEFAULT_TITLE`], [`DEFAULT_BODY`], [`DEFAULT_CTA`]),
/// overridden field by field by an experiment variant's config when one is given.
/// `{feature}` and `{tier}` render in display form (`Budget Tracker`, `Mid`), `{usage}` and
/// `{threshold}` as integers, `{value_pct}` as a whole percentage without the `%` sign.
pub fn design(
    draft: &PromptDraft,
    variant_config: Option<(&str, &str, &Value)>,
) -> Result<PromptDesign, Vec<FieldError>> {
    let empty = serde_json::Map::new();
    let (config, source, experiment, variant) = match variant_config {
        None => (&empty, "default", None, None),
        Some((exp, var, config)) => {
            let errors = validate_design_config(config);
            if !errors.is_empty() {
                return Err(errors);
            }
            let obj = config.as_object().unwrap_or(&empty);
            (
                obj,
                "experiment",
                Some(exp.to_string()),
                Some(var.to_string()),
            )
        }
    };
    let values = [
        ("feature", display_name(&draft.trigger_feature)),
        ("tier", display_name(&draft.target_tier)),
        ("usage", draft.usage.to_string()),
        ("threshold", draft.usage_threshold.to_string()),
        (
            "value_pct",
            format!("{:.0}", clamp01(draft.value_demonstrated) * 100.0),
        ),
    ];
    let text = |key: &str, default: &str| {
        let template = config.get(key).and_then(Value::as_str).unwrap_or(default);
        render(template, &values).map_err(|m| vec![FieldError::new(format!("config.{key}"), m)])
    };
    Ok(PromptDesign {
        source: source.into(),
        experiment,
        variant,
        title: text("title_template", DEFAULT_TITLE)?,
        body: text("body_template", DEFAULT_BODY)?,
        cta_text: text("cta_text", DEFAULT_CTA)?,
        cta_style: config
            .get("cta_style")
            .and_then(Value::as_str)
            .map(String::from),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Float comparisons are exact to 1e-12 (absolute).
    fn close(actual: f64, expected: f64) {
        assert!((actual - expected).abs() < 1e-12, "{actual} != {expected}");
    }

    fn usage(features: &[(&str, u64, u64)], active_days: u32) -> UsageInput {
        let stats = |&(f, count, duration_ms): &(&str, u64, u64)| {
            (f.to_string(), FeatureStats { count, duration_ms })
        };
        let features = features.iter().map(stats).collect();
        UsageInput {
            features,
            active_days,
        }
    }

    /// The reference design's example (4800 s, 3600 s, 3000 s) with `budget` budget_tracker uses.
    fn example(budget: u64) -> UsageInput {
        let features = [
            ("budget_tracker", budget, 4_800_000),
            ("expense_categorizer", 6, 3_600_000),
            ("savings_goals", 5, 3_000_000),
        ];
        usage(&features, 14)
    }

    fn reference() -> UsageInput {
        example(8)
    }

    fn value_below(value: f64) -> NotCreatedReason {
        NotCreatedReason::ValueBelowThreshold {
            value,
            threshold: 0.6,
        }
    }

    fn confidence_below(value: f64) -> NotCreatedReason {
        NotCreatedReason::ConfidenceBelowThreshold {
            value,
            threshold: 0.7,
        }
    }

    fn reasons(d: PromptDecision) -> Vec<NotCreatedReason> {
        match d {
            PromptDecision::NotCreated(r) => r,
            PromptDecision::Create(p) => panic!("unexpected prompt {p:?}"),
        }
    }

    fn draft(d: PromptDecision) -> PromptDraft {
        match d {
            PromptDecision::Create(p) => p,
            PromptDecision::NotCreated(r) => panic!("unexpected reasons {r:?}"),
        }
    }

    #[test]
    fn given_the_reference_example_when_evaluated_then_every_component_is_exact_and_mid_is_offered()
    {
        let (a, d) = evaluate(&reference(), "free", &PromptSettings::default());
        assert_eq!(
            (a.total_usage, a.untracked_usage, a.active_days),
            (19, 0, 14)
        );
        close(a.uses_per_active_day, 19.0 / 14.0); // 1.357 >= target 1.0
        close(a.minutes_per_active_day, 190.0 / 14.0); // 13.57 >= target 10
        assert_eq!((a.features_used, a.tracked_features), (3, 5));
        close(a.frequency, 1.0);
        close(a.duration, 1.0);
        close(a.depth, 0.6);
        assert_eq!(a.value_demonstrated, 0.6); // (1 + 1 + 1 + 0 + 0) / 5, exactly
        close(a.confidence, 0.88); // 0.4 + 0.3 + 0.3 * 0.6
        assert_eq!(
            a.thresholds_met,
            ["budget_tracker", "expense_categorizer", "savings_goals"]
        );
        // Ratios 8/5 = 1.6, 6/3 = 2.0, 5/2 = 2.5: savings_goals triggers.
        let p = draft(d);
        assert_eq!(
            (p.trigger_feature.as_str(), p.usage, p.usage_threshold),
            ("savings_goals", 5, 2)
        );
        assert_eq!(
            (p.current_tier.as_str(), p.target_tier.as_str()),
            ("free", "mid")
        );
        assert_eq!(
            p.reason,
            "savings_goals was used 5 times (threshold 2); value demonstrated 60%, \
             confidence 88%: recommend mid"
        );
    }

    #[test]
    fn given_no_usage_when_evaluated_then_everything_is_zero_and_three_rules_fail() {
        let (a, d) = evaluate(&UsageInput::default(), "free", &PromptSettings::default());
        assert_eq!(
            (a.total_usage, a.features_used, a.tracked_features),
            (0, 0, 5)
        );
        for x in [
            a.uses_per_active_day,
            a.minutes_per_active_day,
            a.frequency,
            a.duration,
            a.depth,
            a.value_demonstrated,
            a.confidence,
        ] {
            assert_eq!(x, 0.0);
        }
        assert_eq!(
            reasons(d),
            vec![
                NotCreatedReason::NoThresholdMet,
                value_below(0.0),
                confidence_below(0.0),
            ]
        );
    }

    #[test]
    fn given_one_feature_used_heavily_when_evaluated_then_value_and_short_sessions_block_it() {
        let s = PromptSettings::default();
        // Heavy in count and time: frequency 1, duration 1, depth 0.2 -> confidence 0.76.
        let (a, d) = evaluate(
            &usage(&[("budget_tracker", 200, 36_000_000)], 10),
            "free",
            &s,
        );
        close(a.depth, 0.2);
        close(a.value_demonstrated, 0.2);
        close(a.confidence, 0.76);
        assert_eq!(a.thresholds_met, ["budget_tracker"]);
        assert_eq!(reasons(d), vec![value_below(0.2)]);
        // Heavy in count, 5 min over 10 days: duration 0.05 -> confidence 0.475.
        let (a, d) = evaluate(&usage(&[("budget_tracker", 200, 300_000)], 10), "free", &s);
        close(a.duration, 0.05);
        close(a.confidence, 0.475);
        assert_eq!(
            reasons(d),
            vec![value_below(0.2), confidence_below(a.confidence)]
        );
    }

    #[test]
    fn given_extreme_counts_and_durations_when_analysed_then_all_scores_stay_in_unit_range() {
        let s = PromptSettings::default();
        let input = usage(
            &[
                ("budget_tracker", u64::MAX, u64::MAX),
                ("savings_goals", u64::MAX, u64::MAX),
                ("custom", u64::MAX, 0),
            ],
            1,
        );
        let a = analyse(&input, &s);
        assert_eq!((a.total_usage, a.untracked_usage), (u64::MAX, u64::MAX));
        close(
            a.minutes_per_active_day / (2.0 * u64::MAX as f64 / 60_000.0),
            1.0,
        );
        assert_eq!((a.frequency, a.duration), (1.0, 1.0));
        close(a.value_demonstrated, 0.4);
        let a = analyse(&usage(&[("budget_tracker", u64::MAX, 0)], u32::MAX), &s);
        assert_eq!((a.frequency, a.duration), (1.0, 0.0));
        close(a.confidence, 0.4 + 0.3 * 0.2);
        let mut bad = s.clone();
        bad.frequency_target_per_day = 0.0;
        bad.weights.depth = f64::INFINITY;
        let a = analyse(&UsageInput::default(), &bad);
        assert_eq!((a.frequency, a.confidence), (0.0, 0.0)); // 0/0 and inf*0 are NaN -> 0
        assert!(serde_json::to_string(&a).is_ok());
    }

    #[test]
    fn given_zero_active_days_with_usage_when_analysed_then_one_day_is_assumed() {
        let a = analyse(
            &usage(&[("budget_tracker", 3, 120_000)], 0),
            &PromptSettings::default(),
        );
        assert_eq!(a.active_days, 0);
        close(a.uses_per_active_day, 3.0);
        close(a.minutes_per_active_day, 2.0);
        close(a.duration, 0.2);
    }

    #[test]
    fn given_untracked_features_when_analysed_then_they_count_in_total_usage_only() {
        let s = PromptSettings::default();
        let input = usage(&[("budget_tracker", 5, 0), ("dark_mode", 15, 600_000)], 10);
        let a = analyse(&input, &s);
        assert_eq!(
            (a.total_usage, a.untracked_usage, a.features_used),
            (20, 15, 1)
        );
        close(a.uses_per_active_day, 2.0);
        close(a.minutes_per_active_day, 1.0);
        close(a.depth, 0.2);
        close(a.value_demonstrated, 0.2);
        assert_eq!(a.thresholds_met, ["budget_tracker"]);
    }

    #[test]
    fn given_value_exactly_at_the_threshold_then_a_prompt_is_created_and_just_below_it_is_not() {
        let mut s = PromptSettings::default();
        assert!(matches!(
            evaluate(&reference(), "free", &s).1,
            PromptDecision::Create(_)
        ));
        // budget_tracker 9995 of 10000 -> value (0.9995 + 1 + 1) / 5 = 0.5999.
        s.feature_thresholds.insert("budget_tracker".into(), 10_000);
        let (a, d) = evaluate(&example(9_995), "free", &s);
        close(a.value_demonstrated, 0.5999);
        assert_eq!(reasons(d), vec![value_below(a.value_demonstrated)]);
        // Confidence at its threshold passes too.
        let mut s = PromptSettings::default();
        s.confidence_threshold = analyse(&reference(), &s).confidence;
        assert!(matches!(
            evaluate(&reference(), "free", &s).1,
            PromptDecision::Create(_)
        ));
    }

    #[test]
    fn given_tied_ratios_when_the_trigger_is_picked_then_the_higher_tier_then_the_name_wins() {
        let s = PromptSettings::default();
        let pick = |features: &[(&str, u64, u64)]| {
            let input = usage(features, 1);
            let met = analyse(&input, &s).thresholds_met;
            pick_trigger(&met, &input, &s).map(String::from)
        };
        // 10/5 = 2/1 = 2.0: investment_analysis unlocks with professional, above mid.
        let t = pick(&[("budget_tracker", 10, 0), ("investment_analysis", 2, 0)]);
        assert_eq!(t.as_deref(), Some("investment_analysis"));
        // Same ratio and tier: the first name.
        let t = pick(&[("retirement_planner", 3, 0), ("investment_analysis", 3, 0)]);
        assert_eq!(t.as_deref(), Some("investment_analysis"));
        let t = pick(&[("expense_categorizer", 6, 0), ("savings_goals", 4, 0)]);
        assert_eq!(t.as_deref(), Some("expense_categorizer"));
        // A higher ratio beats a higher tier.
        let t = pick(&[("budget_tracker", 11, 0), ("investment_analysis", 2, 0)]);
        assert_eq!(t.as_deref(), Some("budget_tracker"));
    }

    #[test]
    fn given_each_current_tier_when_evaluated_then_the_target_follows_the_ladder() {
        let s = PromptSettings::default();
        let target = |tier: &str, input: &UsageInput| match evaluate(input, tier, &s).1 {
            PromptDecision::Create(p) => Ok(p.target_tier),
            PromptDecision::NotCreated(r) => Err(r),
        };
        let budget = reference(); // triggers savings_goals -> mid
        let mut invest = reference(); // triggers investment_analysis (3/1) -> professional
        invest.features.insert(
            "investment_analysis".into(),
            FeatureStats {
                count: 3,
                duration_ms: 0,
            },
        );
        for (tier, input, expected) in [
            ("free", &budget, "mid"),
            ("budget", &budget, "mid"),
            ("mid", &budget, "professional"), // mid unlocks nothing new: next tier
            ("unknown", &budget, "mid"),
            ("budget", &invest, "professional"),
        ] {
            assert_eq!(target(tier, input), Ok(expected.to_string()), "{tier}");
        }
        let top = NotCreatedReason::AlreadyTopTier {
            tier: "professional".into(),
        };
        assert_eq!(target("professional", &budget), Err(vec![top.clone()]));
        let enterprise = NotCreatedReason::UnknownTier {
            tier: "enterprise".into(),
        };
        assert_eq!(target("enterprise", &budget), Err(vec![enterprise]));
        // Tier reasons are listed with the others.
        let r = reasons(evaluate(&UsageInput::default(), "professional", &s).1);
        assert_eq!(
            (r.len(), &r[0], &r[3]),
            (4, &NotCreatedReason::NoThresholdMet, &top)
        );
        let mut bad = s.clone();
        bad.feature_tiers
            .insert("savings_goals".into(), "gold".into());
        let r = reasons(evaluate(&budget, "free", &bad).1);
        assert_eq!(
            r,
            vec![NotCreatedReason::UnknownTier {
                tier: "gold".into()
            }]
        );
    }

    fn sample_draft() -> PromptDraft {
        draft(evaluate(&reference(), "free", &PromptSettings::default()).1)
    }

    #[test]
    fn given_no_variant_when_designed_then_the_default_texts_name_feature_and_tier() {
        let d = design(&sample_draft(), None).unwrap();
        assert_eq!(
            d,
            PromptDesign {
                source: "default".into(),
                experiment: None,
                variant: None,
                title: "Unlock the full Savings Goals with Mid".into(),
                body: "You've used Savings Goals 5 times. Upgrade to Mid to get everything \
                       it offers."
                    .into(),
                cta_text: "Upgrade to Mid".into(),
                cta_style: None,
            }
        );
    }

    #[test]
    fn given_a_variant_config_when_designed_then_its_fields_override_the_defaults() {
        let config = json!({
            "title_template": "{{{feature}}} at {value_pct}% of its value",
            "cta_text": "Go {tier}",
            "cta_style": "#28a745"
        });
        let d = design(&sample_draft(), Some(("prompt-copy", "b", &config))).unwrap();
        assert_eq!(
            (
                d.source.as_str(),
                d.experiment.as_deref(),
                d.variant.as_deref()
            ),
            ("experiment", Some("prompt-copy"), Some("b"))
        );
        assert_eq!(d.title, "{Savings Goals} at 60% of its value");
        assert!(d.body.starts_with("You've used Savings Goals 5 times"));
        assert_eq!(
            (d.cta_text.as_str(), d.cta_style.as_deref()),
            ("Go Mid", Some("#28a745"))
        );
        let d = design(&sample_draft(), Some(("e", "control", &Value::Null))).unwrap();
        assert_eq!(
            (d.source.as_str(), d.title.as_str()),
            ("experiment", "Unlock the full Savings Goals with Mid")
        );
    }

    #[test]
    fn given_a_bad_design_config_when_validated_then_every_field_is_named() {
        let config = json!({
            "title_template": "Save ${amount} with {feature}",
            "body_template": 5,
            "cta_text": "Go } now",
            "cta_style": "",
            "cta_color": "#fff",
            "description_template": "{feature"
        });
        let errors = design(&sample_draft(), Some(("e", "a", &config))).unwrap_err();
        let got: Vec<(&str, &str)> = errors
            .iter()
            .map(|e| (e.field.as_str(), e.message.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("config.body_template", "must be a string"),
                ("config.cta_color", "unknown field; expected one of title_template, body_template, cta_text, cta_style"),
                ("config.cta_style", "must not be empty"),
                ("config.cta_text", "has a '}' without '{' (write '}}' for a literal brace)"),
                ("config.description_template", "unknown field; expected one of title_template, body_template, cta_text, cta_style"),
                ("config.title_template", "unknown placeholder {amount}; allowed: {feature}, {tier}, {usage}, {threshold}, {value_pct}"),
            ]
        );
        assert_eq!(
            validate_design_config(&json!(["x"])),
            vec![FieldError::new("config", "must be an object")]
        );
        let long = json!({"cta_text": "x".repeat(41), "title_template": "{tier"});
        let msgs: Vec<String> = validate_design_config(&long)
            .into_iter()
            .map(|e| e.message)
            .collect();
        assert_eq!(
            msgs,
            ["must be at most 40 characters", "has an unclosed '{'"]
        );
    }

    #[test]
    fn given_bad_settings_when_validated_then_every_field_is_named() {
        assert!(PromptSettings::default()
            .validate("usage_prompts")
            .is_empty());
        let mut s = PromptSettings::default();
        s.weights.frequency = 0.5; // sum 1.1
        s.feature_thresholds.insert("budget_tracker".into(), 0);
        s.value_threshold = 1.5;
        s.duration_target_minutes_per_day = 0.0;
        s.feature_tiers
            .insert("savings_goals".into(), "gold".into());
        s.feature_tiers.insert("dark_mode".into(), "mid".into());
        s.feature_tiers.remove("retirement_planner");
        s.tiers.push("mid".into());
        let fields: Vec<String> = s.validate("p").into_iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            [
                "p.feature_thresholds.budget_tracker",
                "p.weights",
                "p.value_threshold",
                "p.duration_target_minutes_per_day",
                "p.tiers[4]",
                "p.feature_tiers.retirement_planner",
                "p.feature_tiers.dark_mode",
                "p.feature_tiers.savings_goals",
            ]
        );
        let w = PatternWeights {
            frequency: -0.1,
            duration: 0.6,
            depth: 0.5,
        };
        assert_eq!(
            w.validate("w"),
            vec![FieldError::new("w.frequency", "must be a number >= 0")]
        );
        let mut s = PromptSettings::default();
        s.tiers.clear();
        s.feature_thresholds.clear();
        s.feature_tiers.clear();
        let fields: Vec<String> = s.validate("p").into_iter().map(|e| e.field).collect();
        assert_eq!(fields, ["p.feature_thresholds", "p.tiers"]);
        assert!(matches!(
            reasons(evaluate(&reference(), "free", &s).1).last(),
            Some(NotCreatedReason::UnknownTier { tier }) if tier == "free"
        ));
        // Negative thresholds and unknown fields are refused when parsed.
        let parse = |v: Value| serde_json::from_value::<PromptSettings>(v);
        assert!(parse(json!({"feature_thresholds": {"budget_tracker": -1}})).is_err());
        assert!(parse(json!({"weight": {}})).is_err());
        assert_eq!(parse(json!({})).unwrap(), PromptSettings::default());
    }

    #[test]
    fn given_a_trial_in_progress_when_the_usage_ratio_is_asked_then_it_compares_with_the_pro_rata_goal(
    ) {
        let s = PromptSettings::default(); // thresholds sum to 12
        let input = usage(
            &[
                ("budget_tracker", 9, 0),
                ("savings_goals", 1, 0),
                ("x", 50, 0),
            ],
            3,
        );
        // min(9,5) + min(1,2) = 6 achieved of 12.
        close(usage_ratio(&input, &s, 1.0).unwrap(), 0.5);
        close(usage_ratio(&input, &s, 0.25).unwrap(), 2.0);
        close(usage_ratio(&input, &s, 7.0).unwrap(), 0.5);
        assert_eq!(usage_ratio(&input, &s, 0.0), None);
        assert_eq!(usage_ratio(&input, &s, f64::NAN), None);
        let mut empty = s.clone();
        empty.feature_thresholds.clear();
        assert_eq!(usage_ratio(&input, &empty, 0.5), None);
    }

    #[test]
    fn given_a_decision_when_serialized_then_reasons_carry_a_code_and_a_message() {
        let r = NotCreatedReason::ValueBelowThreshold {
            value: 0.25,
            threshold: 0.6,
        };
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            json!({"code": "value_below_threshold", "value": 0.25, "threshold": 0.6})
        );
        assert_eq!(
            r.message(),
            "value demonstrated 25% is below the threshold 60%"
        );
        let d = PromptDecision::NotCreated(vec![NotCreatedReason::NoThresholdMet]);
        let v = serde_json::to_value(&d).unwrap();
        assert_eq!(v, json!({"not_created": [{"code": "no_threshold_met"}]}));
        assert_eq!(serde_json::from_value::<PromptDecision>(v).unwrap(), d);
        let v = serde_json::to_value(PromptDecision::Create(sample_draft())).unwrap();
        assert_eq!(v["create"]["target_tier"], "mid");
        assert_eq!(
            NotCreatedReason::AlreadyTopTier {
                tier: "professional".into()
            }
            .message(),
            "tier \"professional\" is already the top tier"
        );
    }
}
