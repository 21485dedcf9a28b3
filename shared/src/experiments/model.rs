//! The experiment definition, its requests and their validation (parse, don't validate: a
//! [`Definition`] that exists is known good).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::events::{FieldError, EVENT_TYPES};

/// Tolerance of the weights' sum, as GrowthBook allows.
pub const WEIGHT_SUM_TOLERANCE: f64 = 0.01;
pub const MAX_VARIANTS: usize = 10;
pub const MAX_METRICS: usize = 20;
pub const MAX_FORCED: usize = 100;
/// Keys that are routes under `/v1/experiments/`.
pub const RESERVED_KEYS: &[&str] = &["sample-size"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Draft,
    Running,
    Paused,
    Completed,
    Cancelled,
}

impl Status {
    pub const ALL: [Status; 5] = [
        Status::Draft,
        Status::Running,
        Status::Paused,
        Status::Completed,
        Status::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Draft => "draft",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Completed => "completed",
            Status::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// The states this one may move to.
    pub fn allowed_next(self) -> &'static [Status] {
        match self {
            Status::Draft => &[Status::Running, Status::Cancelled],
            Status::Running => &[Status::Paused, Status::Completed, Status::Cancelled],
            Status::Paused => &[Status::Running, Status::Completed, Status::Cancelled],
            Status::Completed | Status::Cancelled => &[],
        }
    }

    /// Running or paused: assigned users' metric events still count.
    pub fn collects_metrics(self) -> bool {
        matches!(self, Status::Running | Status::Paused)
    }

    pub fn is_final(self) -> bool {
        matches!(self, Status::Completed | Status::Cancelled)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TestType {
    PromptDesign,
    OfferType,
    Timing,
    Messaging,
    SocialProof,
    CtaDesign,
    Pricing,
    FunnelStep,
    FeatureUi,
    Custom,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    Proportion,
    Mean,
}

/// Whether a higher value of the metric is good (conversions) or bad (churn, errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    #[default]
    Good,
    Bad,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Engine {
    Frequentist,
    Bayesian,
    #[default]
    Sequential,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Correction {
    #[default]
    Holm,
    BenjaminiHochberg,
    None,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Variant {
    pub key: String,
    pub name: String,
    #[serde(default)]
    pub config: Value,
}

/// A GrowthBook namespace range: users whose namespace hash falls in `[start, end)` may enter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamespaceRange {
    pub id: String,
    pub start: f64,
    pub end: f64,
}

/// What feeds a metric. A user's value is the sum of the values of the matching events they
/// send after their assignment (a `proportion` metric counts the user once, as 1):
/// `metric` events give their `value` (and must carry the metric's `metric_name`), events
/// with an amount (`payment_*`, `subscription_*`, `checkout_*`) give the amount in minor
/// units, any other event gives 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricDef {
    pub name: String,
    pub kind: MetricKind,
    pub event: String,
    /// For `event = "metric"`: the `properties.name` of the metric events (default: `name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric_name: Option<String>,
    #[serde(default)]
    pub direction: Direction,
}

/// Which list of the definition a metric belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricRole {
    Primary,
    Secondary,
    Guardrail,
}

/// The weights of one weights epoch: a change of weights without a new bucket version starts
/// a new epoch, so the SRM check can expect the mixture the assignments really followed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WeightsEpoch {
    pub epoch: u32,
    pub weights: Vec<f64>,
}

/// A validated experiment definition (what an admin configures).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Definition {
    pub key: String,
    pub name: String,
    #[serde(default)]
    pub hypothesis: String,
    #[serde(default)]
    pub owner: String,
    pub test_type: TestType,
    pub variants: Vec<Variant>,
    pub weights: Vec<f64>,
    pub coverage: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<NamespaceRange>,
    pub seed: String,
    pub hash_version: u32,
    pub primary_metric: MetricDef,
    #[serde(default)]
    pub secondary_metrics: Vec<MetricDef>,
    #[serde(default)]
    pub guardrail_metrics: Vec<MetricDef>,
    pub min_sample_per_variant: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_sample_per_variant: Option<u64>,
    pub alpha: f64,
    pub engine: Engine,
    pub correction: Correction,
    pub auto_stop: bool,
    pub check_interval_minutes: u32,
    /// QA overrides: user id -> variant key.
    #[serde(default)]
    pub forced_variants: BTreeMap<String, String>,
}

impl Definition {
    /// Every metric with its role, primary first; the index is the metric's stable number in
    /// the stored sufficient statistics.
    pub fn metrics(&self) -> Vec<(MetricRole, &MetricDef)> {
        let mut all = vec![(MetricRole::Primary, &self.primary_metric)];
        all.extend(
            self.secondary_metrics
                .iter()
                .map(|m| (MetricRole::Secondary, m)),
        );
        all.extend(
            self.guardrail_metrics
                .iter()
                .map(|m| (MetricRole::Guardrail, m)),
        );
        all
    }

    pub fn variant_index(&self, key: &str) -> Option<usize> {
        self.variants.iter().position(|v| v.key == key)
    }
}

/// The recorded end of an experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// `winner` or `no_difference`.
    pub result: OutcomeResult,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub winner: Option<String>,
    pub decided_at: DateTime<Utc>,
    /// `scheduled_check` or the admin who completed it.
    pub decided_by: String,
    #[serde(default)]
    pub evidence: Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeResult {
    Winner,
    NoDifference,
}

/// A stored experiment: its definition and its state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Experiment {
    #[serde(flatten)]
    pub definition: Definition,
    pub status: Status,
    /// Bumping it re-buckets everyone and starts a new phase of results.
    pub bucket_version: u32,
    /// Weights history within the current bucket version (last = current).
    pub weights_epochs: Vec<WeightsEpoch>,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub updated_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    /// When the current phase (bucket version) began collecting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase_started_at: Option<DateTime<Utc>>,
    /// Since when the experiment is paused (while it is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_at: Option<DateTime<Utc>>,
    /// Seconds the current phase spent paused before `paused_at`.
    #[serde(default)]
    pub paused_seconds: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_check_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    /// An `experiment_concluded` message is owed to the outbox (set in the same write as the
    /// outcome, cleared once sent), so a crash between the two cannot lose it.
    #[serde(default)]
    pub notice_pending: bool,
    /// Optimistic concurrency version of the stored item.
    pub version: u64,
}

impl Experiment {
    pub fn key(&self) -> &str {
        &self.definition.key
    }

    /// Seconds the current phase has been running (paused time excluded) at `now`.
    pub fn running_seconds(&self, now: DateTime<Utc>) -> i64 {
        let Some(start) = self.phase_started_at else {
            return 0;
        };
        let paused_now = self
            .paused_at
            .map(|p| (now - p).num_seconds().max(0))
            .unwrap_or(0);
        ((now - start).num_seconds() - self.paused_seconds - paused_now).max(0)
    }

    pub fn current_epoch(&self) -> u32 {
        self.weights_epochs.last().map(|e| e.epoch).unwrap_or(0)
    }

    /// Due for a scheduled significance check at `now` (compared by whole minutes, as
    /// checks record the minute of their slot).
    pub fn check_due(&self, now: DateTime<Utc>) -> bool {
        use chrono::DurationRound;
        let now = now
            .duration_trunc(chrono::TimeDelta::minutes(1))
            .unwrap_or(now);
        self.status == Status::Running
            && match self.last_check_at {
                None => true,
                Some(last) => {
                    now >= last
                        + chrono::Duration::minutes(i64::from(
                            self.definition.check_interval_minutes,
                        ))
                }
            }
    }
}

// ---------------------------------------------------------------------------------------
// Requests

/// `POST /v1/experiments`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    pub key: String,
    pub name: String,
    #[serde(default)]
    pub hypothesis: String,
    #[serde(default)]
    pub owner: String,
    pub test_type: TestType,
    pub variants: Vec<VariantInput>,
    #[serde(default)]
    pub weights: Option<Vec<f64>>,
    #[serde(default)]
    pub coverage: Option<f64>,
    #[serde(default)]
    pub condition: Option<Value>,
    #[serde(default)]
    pub namespace: Option<NamespaceRange>,
    #[serde(default)]
    pub seed: Option<String>,
    #[serde(default)]
    pub hash_version: Option<u32>,
    pub primary_metric: MetricInput,
    #[serde(default)]
    pub secondary_metrics: Vec<MetricInput>,
    #[serde(default)]
    pub guardrail_metrics: Vec<MetricInput>,
    #[serde(default)]
    pub min_sample_per_variant: Option<u64>,
    #[serde(default)]
    pub max_sample_per_variant: Option<u64>,
    #[serde(default)]
    pub alpha: Option<f64>,
    #[serde(default)]
    pub engine: Option<Engine>,
    #[serde(default)]
    pub correction: Option<Correction>,
    #[serde(default)]
    pub auto_stop: Option<bool>,
    #[serde(default)]
    pub check_interval_minutes: Option<u32>,
    #[serde(default)]
    pub forced_variants: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariantInput {
    pub key: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub config: Value,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricInput {
    pub name: String,
    pub kind: MetricKind,
    #[serde(default)]
    pub event: Option<String>,
    #[serde(default)]
    pub metric_name: Option<String>,
    #[serde(default)]
    pub direction: Direction,
}

/// `PATCH /v1/experiments/{key}`: every field optional; absent means unchanged.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateRequest {
    pub name: Option<String>,
    pub hypothesis: Option<String>,
    pub owner: Option<String>,
    pub test_type: Option<TestType>,
    pub variants: Option<Vec<VariantInput>>,
    pub weights: Option<Vec<f64>>,
    pub coverage: Option<f64>,
    /// `null` removes the condition.
    #[serde(default, deserialize_with = "double_option")]
    pub condition: Option<Option<Value>>,
    #[serde(default, deserialize_with = "double_option")]
    pub namespace: Option<Option<NamespaceRange>>,
    pub primary_metric: Option<MetricInput>,
    pub secondary_metrics: Option<Vec<MetricInput>>,
    pub guardrail_metrics: Option<Vec<MetricInput>>,
    pub min_sample_per_variant: Option<u64>,
    #[serde(default, deserialize_with = "double_option")]
    pub max_sample_per_variant: Option<Option<u64>>,
    pub alpha: Option<f64>,
    pub engine: Option<Engine>,
    pub correction: Option<Correction>,
    pub auto_stop: Option<bool>,
    pub check_interval_minutes: Option<u32>,
    pub forced_variants: Option<BTreeMap<String, String>>,
    /// Re-bucket every user with the current weights and coverage, starting a new phase.
    #[serde(default)]
    pub bump_bucket_version: bool,
}

fn double_option<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

// ---------------------------------------------------------------------------------------
// Validation

/// Keys of experiments, variants and metrics: lowercase letters, digits, `_`, `-`, `.`,
/// starting with a letter or digit, at most 64 characters.
pub fn valid_key(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-' || c == '.'
        })
}

struct Problems(Vec<FieldError>);

impl Problems {
    fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError::new(field, message));
    }
}

fn check_text(p: &mut Problems, field: &str, value: &str, max: usize, required: bool) {
    if required && value.trim().is_empty() {
        p.add(field, "must not be empty");
    } else if value.chars().count() > max {
        p.add(field, format!("must be at most {max} characters"));
    }
}

fn build_variants(p: &mut Problems, field: &str, input: &[VariantInput]) -> Vec<Variant> {
    let config_bytes: usize = input.iter().map(|v| v.config.to_string().len()).sum();
    if config_bytes > 64 * 1024 {
        p.add(
            field,
            "the variants' configs must total at most 64 KB of JSON",
        );
    }
    if input.len() < 2 || input.len() > MAX_VARIANTS {
        p.add(
            field,
            format!("needs 2 to {MAX_VARIANTS} variants (the first is control)"),
        );
    }
    let mut seen = BTreeSet::new();
    input
        .iter()
        .enumerate()
        .map(|(i, v)| {
            if !valid_key(&v.key) {
                p.add(
                    format!("{field}[{i}].key"),
                    "must be 1-64 characters of a-z, 0-9, '_', '-', '.'",
                );
            } else if !seen.insert(v.key.clone()) {
                p.add(
                    format!("{field}[{i}].key"),
                    "duplicates another variant key",
                );
            }
            let name = v.name.clone().unwrap_or_else(|| v.key.clone());
            check_text(p, &format!("{field}[{i}].name"), &name, 200, true);
            if v.config.to_string().len() > 16 * 1024 {
                p.add(
                    format!("{field}[{i}].config"),
                    "must be at most 16 KB of JSON",
                );
            }
            Variant {
                key: v.key.clone(),
                name,
                config: v.config.clone(),
            }
        })
        .collect()
}

fn check_weights(p: &mut Problems, field: &str, weights: &[f64], variants: usize) {
    if variants == 0 {
        return; // the variants' own problem says it
    }
    if weights.len() != variants {
        p.add(
            field,
            format!(
                "needs one weight per variant ({variants}), got {}",
                weights.len()
            ),
        );
        return;
    }
    for (i, w) in weights.iter().enumerate() {
        if !w.is_finite() || *w < 0.0 || *w > 1.0 {
            p.add(format!("{field}[{i}]"), "must be between 0 and 1");
        }
    }
    let sum: f64 = weights.iter().sum();
    if (sum - 1.0).abs() > WEIGHT_SUM_TOLERANCE {
        p.add(field, format!("must sum to 1 (±0.01); they sum to {sum}"));
    }
}

fn check_coverage(p: &mut Problems, field: &str, coverage: f64) {
    if !coverage.is_finite() || !(0.0..=1.0).contains(&coverage) {
        p.add(field, "must be between 0 and 1");
    }
}

fn check_namespace(p: &mut Problems, field: &str, ns: &NamespaceRange) {
    if ns.id.trim().is_empty() || ns.id.len() > 64 {
        p.add(format!("{field}.id"), "must be 1-64 characters");
    }
    let ok = ns.start.is_finite()
        && ns.end.is_finite()
        && (0.0..=1.0).contains(&ns.start)
        && (0.0..=1.0).contains(&ns.end)
        && ns.start < ns.end;
    if !ok {
        p.add(field, "needs 0 <= start < end <= 1");
    }
}

/// Largest targeting condition, as JSON.
pub const MAX_CONDITION_BYTES: usize = 16 * 1024;

fn check_condition(p: &mut Problems, field: &str, condition: &Value) {
    if condition.to_string().len() > MAX_CONDITION_BYTES {
        p.add(
            field,
            format!("must be at most {MAX_CONDITION_BYTES} bytes of JSON"),
        );
        return;
    }
    if let Err(e) = super::growthbook::validate_condition(condition) {
        // The validator names a JSON Pointer (`/country/$bogus`); fields here are dotted.
        let dotted: Vec<String> = e
            .path()
            .split('/')
            .skip(1)
            .map(|t| t.replace("~1", "/").replace("~0", "~"))
            .collect();
        let at = std::iter::once(field.to_string())
            .chain(dotted)
            .collect::<Vec<_>>()
            .join(".");
        let text = e.to_string();
        let message = text.split_once(": ").map(|(_, m)| m).unwrap_or(&text);
        p.add(at, message);
    }
}

/// Event types a metric can be fed by.
fn metric_event_allowed(event: &str) -> bool {
    event != "identify" && EVENT_TYPES.contains(&event)
}

fn build_metric(p: &mut Problems, field: &str, m: &MetricInput) -> MetricDef {
    if !valid_key(&m.name) {
        p.add(
            format!("{field}.name"),
            "must be 1-64 characters of a-z, 0-9, '_', '-', '.'",
        );
    }
    let event = m.event.clone().unwrap_or_else(|| "metric".to_string());
    if !metric_event_allowed(&event) {
        p.add(
            format!("{field}.event"),
            "must be an event type other than identify (see POST /v1/events)",
        );
    }
    if let Some(mn) = &m.metric_name {
        if event != "metric" {
            p.add(
                format!("{field}.metric_name"),
                "only applies to event \"metric\"",
            );
        } else if mn.trim().is_empty() || mn.len() > 128 {
            p.add(format!("{field}.metric_name"), "must be 1-128 characters");
        }
    }
    MetricDef {
        name: m.name.clone(),
        kind: m.kind,
        event,
        metric_name: m.metric_name.clone(),
        direction: m.direction,
    }
}

fn check_metric_names(p: &mut Problems, d: &Definition) {
    let total = 1 + d.secondary_metrics.len() + d.guardrail_metrics.len();
    if total > MAX_METRICS {
        p.add(
            "secondary_metrics",
            format!("at most {MAX_METRICS} metrics in all"),
        );
    }
    let mut seen = BTreeSet::new();
    for (role, m) in d.metrics() {
        if !seen.insert(m.name.as_str()) {
            let list = match role {
                MetricRole::Primary => "primary_metric",
                MetricRole::Secondary => "secondary_metrics",
                MetricRole::Guardrail => "guardrail_metrics",
            };
            p.add(list, format!("metric name '{}' is used twice", m.name));
        }
    }
}

fn check_settings(p: &mut Problems, d: &Definition) {
    if d.min_sample_per_variant == 0 || d.min_sample_per_variant > 100_000_000 {
        p.add("min_sample_per_variant", "must be between 1 and 100000000");
    }
    if let Some(max) = d.max_sample_per_variant {
        if max < d.min_sample_per_variant {
            p.add(
                "max_sample_per_variant",
                "must be at least min_sample_per_variant",
            );
        }
    }
    if !d.alpha.is_finite() || d.alpha <= 0.0 || d.alpha > 0.5 {
        p.add("alpha", "must be in (0, 0.5]");
    }
    if d.check_interval_minutes == 0 || d.check_interval_minutes > 10_080 {
        p.add(
            "check_interval_minutes",
            "must be between 1 and 10080 (a week)",
        );
    }
    if !matches!(d.hash_version, 1 | 2) {
        p.add("hash_version", "must be 1 or 2");
    }
    if d.seed.is_empty() || d.seed.len() > 128 {
        p.add("seed", "must be 1-128 characters");
    }
    if d.forced_variants.len() > MAX_FORCED {
        p.add("forced_variants", format!("at most {MAX_FORCED} users"));
    }
    for (user, variant) in &d.forced_variants {
        if d.variant_index(variant).is_none() {
            p.add(
                format!("forced_variants.{user}"),
                format!("'{variant}' is not a variant key"),
            );
        }
    }
}

impl CreateRequest {
    /// The definition this request describes, or every field-level problem.
    pub fn into_definition(self) -> Result<Definition, Vec<FieldError>> {
        let mut p = Problems(Vec::new());
        if !valid_key(&self.key) {
            p.add("key", "must be 1-64 characters of a-z, 0-9, '_', '-', '.'");
        } else if RESERVED_KEYS.contains(&self.key.as_str()) {
            p.add("key", format!("'{}' is reserved (it is a route)", self.key));
        }
        let variants = build_variants(&mut p, "variants", &self.variants);
        let weights = self
            .weights
            .unwrap_or_else(|| vec![1.0 / variants.len().max(1) as f64; variants.len()]);
        let coverage = self.coverage.unwrap_or(1.0);
        let primary_metric = build_metric(&mut p, "primary_metric", &self.primary_metric);
        let secondary_metrics = self
            .secondary_metrics
            .iter()
            .enumerate()
            .map(|(i, m)| build_metric(&mut p, &format!("secondary_metrics[{i}]"), m))
            .collect();
        let guardrail_metrics = self
            .guardrail_metrics
            .iter()
            .enumerate()
            .map(|(i, m)| build_metric(&mut p, &format!("guardrail_metrics[{i}]"), m))
            .collect();
        let d = Definition {
            seed: self.seed.unwrap_or_else(|| self.key.clone()),
            key: self.key,
            name: self.name,
            hypothesis: self.hypothesis,
            owner: self.owner,
            test_type: self.test_type,
            variants,
            weights,
            coverage,
            condition: self.condition,
            namespace: self.namespace,
            hash_version: self.hash_version.unwrap_or(2),
            primary_metric,
            secondary_metrics,
            guardrail_metrics,
            min_sample_per_variant: self.min_sample_per_variant.unwrap_or(100),
            max_sample_per_variant: self.max_sample_per_variant,
            alpha: self.alpha.unwrap_or(0.05),
            engine: self.engine.unwrap_or_default(),
            correction: self.correction.unwrap_or_default(),
            auto_stop: self.auto_stop.unwrap_or(false),
            check_interval_minutes: self.check_interval_minutes.unwrap_or(60),
            forced_variants: self.forced_variants,
        };
        p.0.extend(revalidate(&d));
        if p.0.is_empty() {
            Ok(d)
        } else {
            Err(p.0)
        }
    }
}

/// The rules every definition obeys, at creation and after each update (variants and metrics
/// are checked as they are built).
pub fn revalidate(d: &Definition) -> Vec<FieldError> {
    let mut p = Problems(Vec::new());
    check_text(&mut p, "name", &d.name, 200, true);
    check_text(&mut p, "hypothesis", &d.hypothesis, 2000, false);
    check_text(&mut p, "owner", &d.owner, 200, false);
    check_weights(&mut p, "weights", &d.weights, d.variants.len());
    check_coverage(&mut p, "coverage", d.coverage);
    if let Some(c) = &d.condition {
        check_condition(&mut p, "condition", c);
    }
    if let Some(ns) = &d.namespace {
        check_namespace(&mut p, "namespace", ns);
    }
    check_metric_names(&mut p, d);
    check_settings(&mut p, d);
    check_nudge_configs(&mut p, d);
    p.0
}

/// The variant config keys a nudge experiment acts on must be usable: `offsets_hours` of a
/// `timing` test, `templates` of a `messaging` test, the design fields of a `prompt_design`
/// or `cta_design` test. Other keys are the client's own and are left alone.
fn check_nudge_configs(p: &mut Problems, d: &Definition) {
    use crate::nudges::{usage, variants};
    for (i, v) in d.variants.iter().enumerate() {
        let errors = match d.test_type {
            TestType::Timing => variants::timing_override(&v.config)
                .err()
                .unwrap_or_default(),
            TestType::Messaging => variants::messaging_override(&v.config)
                .err()
                .unwrap_or_default(),
            TestType::PromptDesign | TestType::CtaDesign => {
                usage::validate_design_config(&crate::nudges::service::design_keys(&v.config))
            }
            TestType::OfferType => crate::nudges::variants::offer_config_problems(&v.config),
            _ => Vec::new(),
        };
        for e in errors {
            p.add(format!("variants[{i}].{}", e.field), e.message);
        }
    }
}

/// The variants and metrics of an update, built and validated like creation's.
pub(crate) struct UpdateParts {
    pub variants: Option<Vec<Variant>>,
    pub primary: Option<MetricDef>,
    pub secondary: Option<Vec<MetricDef>>,
    pub guardrail: Option<Vec<MetricDef>>,
    pub problems: Vec<FieldError>,
}

/// Builds the variants and metrics of an update (validated like creation).
pub(crate) fn build_update_parts(req: &UpdateRequest) -> UpdateParts {
    let mut p = Problems(Vec::new());
    let variants = req
        .variants
        .as_ref()
        .map(|v| build_variants(&mut p, "variants", v));
    let primary = req
        .primary_metric
        .as_ref()
        .map(|m| build_metric(&mut p, "primary_metric", m));
    let secondary = req.secondary_metrics.as_ref().map(|ms| {
        ms.iter()
            .enumerate()
            .map(|(i, m)| build_metric(&mut p, &format!("secondary_metrics[{i}]"), m))
            .collect()
    });
    let guardrail = req.guardrail_metrics.as_ref().map(|ms| {
        ms.iter()
            .enumerate()
            .map(|(i, m)| build_metric(&mut p, &format!("guardrail_metrics[{i}]"), m))
            .collect()
    });
    UpdateParts {
        variants,
        primary,
        secondary,
        guardrail,
        problems: p.0,
    }
}

/// Parses a JSON body into a request type, naming the field at fault on failure.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Vec<FieldError>> {
    let mut de = serde_json::Deserializer::from_slice(body);
    match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Ok(v) => match de.end() {
            Ok(()) => Ok(v),
            Err(e) => Err(vec![FieldError::new("body", clean_serde_message(&e))]),
        },
        Err(e) => {
            let path = e.path().to_string();
            let message = clean_serde_message(e.inner());
            // serde reports a missing field at its parent: name the field itself.
            let missing = message
                .strip_prefix("missing field `")
                .and_then(|m| m.strip_suffix('`'))
                .map(str::to_string);
            let field = match (path.as_str(), &missing) {
                (".", Some(name)) => name.clone(),
                (_, Some(name)) => format!("{path}.{name}"),
                (".", None) => "body".to_string(),
                _ => path,
            };
            let message = if missing.is_some() {
                "is required".to_string()
            } else {
                message
            };
            Err(vec![FieldError::new(field, message)])
        }
    }
}

/// serde_json's message without its " at line 1 column 42" suffix: the field path says where.
pub fn clean_serde_message(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn create(body: Value) -> Result<Definition, Vec<FieldError>> {
        let req: CreateRequest = parse_json(body.to_string().as_bytes())
            .map_err(|e| e.into_iter().collect::<Vec<_>>())?;
        req.into_definition()
    }

    fn minimal() -> Value {
        json!({
            "key": "checkout-cta",
            "name": "Checkout CTA",
            "test_type": "cta_design",
            "variants": [{"key": "control"}, {"key": "green", "config": {"color": "green"}}],
            "primary_metric": {"name": "converted", "kind": "proportion", "event": "subscription_started"}
        })
    }

    #[test]
    fn given_a_minimal_request_when_created_then_defaults_are_filled_in() {
        let d = create(minimal()).unwrap();
        assert_eq!(d.weights, vec![0.5, 0.5]);
        assert_eq!(d.coverage, 1.0);
        assert_eq!(d.seed, "checkout-cta");
        assert_eq!(d.hash_version, 2);
        assert_eq!(d.alpha, 0.05);
        assert_eq!(d.engine, Engine::Sequential);
        assert_eq!(d.correction, Correction::Holm);
        assert_eq!(d.check_interval_minutes, 60);
        assert!(!d.auto_stop);
        assert_eq!(d.variants[0].name, "control");
    }

    #[test]
    fn given_a_nudge_experiment_when_its_variant_config_is_unusable_then_the_key_is_named() {
        let mut body = minimal();
        body["test_type"] = json!("timing");
        body["variants"][1]["config"] = json!({"offsets_hours": [48, 0], "color": "green"});
        let errors = create(body).unwrap_err();
        assert_eq!(
            errors[0].field, "variants[1].config.offsets_hours[1]",
            "{errors:?}"
        );

        let mut body = minimal();
        body["test_type"] = json!("messaging");
        body["variants"][1]["config"] = json!({"templates": {"trial_expiry": "{nope} left"}});
        let errors = create(body).unwrap_err();
        assert_eq!(errors[0].field, "variants[1].config.templates.trial_expiry");

        let mut body = minimal();
        body["variants"][1]["config"] = json!({"cta_text": "{bogus}", "color": "green"});
        let errors = create(body).unwrap_err();
        assert!(
            errors[0].field.starts_with("variants[1].config.cta_text"),
            "{errors:?}"
        );

        // Keys a nudge does not read are the client's own.
        assert!(create(minimal()).is_ok());
    }

    #[test]
    fn given_bad_fields_when_created_then_each_is_named() {
        let mut body = minimal();
        body["key"] = json!("Bad Key");
        body["weights"] = json!([0.7, 0.7]);
        body["coverage"] = json!(1.5);
        body["alpha"] = json!(0.9);
        body["primary_metric"]["event"] = json!("identify");
        body["forced_variants"] = json!({"qa-1": "purple"});
        let errors = create(body).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        for f in [
            "key",
            "weights",
            "coverage",
            "alpha",
            "primary_metric.event",
            "forced_variants.qa-1",
        ] {
            assert!(fields.contains(&f), "{f} missing from {fields:?}");
        }
    }

    #[test]
    fn given_a_wrong_type_when_parsed_then_the_path_is_named() {
        let mut body = minimal();
        body["variants"][1]["key"] = json!(5);
        let errors = parse_json::<CreateRequest>(body.to_string().as_bytes()).unwrap_err();
        assert_eq!(errors[0].field, "variants[1].key");
        let mut body = minimal();
        body["colour"] = json!("red");
        let errors = parse_json::<CreateRequest>(body.to_string().as_bytes()).unwrap_err();
        assert!(errors[0].message.contains("unknown field"), "{errors:?}");
    }

    #[test]
    fn given_a_missing_field_or_a_bad_condition_when_parsed_then_the_field_itself_is_named() {
        let mut body = minimal();
        body.as_object_mut().unwrap().remove("test_type");
        let errors = parse_json::<CreateRequest>(body.to_string().as_bytes()).unwrap_err();
        assert_eq!(
            (errors[0].field.as_str(), errors[0].message.as_str()),
            ("test_type", "is required")
        );
        let mut body = minimal();
        body["primary_metric"]
            .as_object_mut()
            .unwrap()
            .remove("kind");
        let errors = parse_json::<CreateRequest>(body.to_string().as_bytes()).unwrap_err();
        assert_eq!(errors[0].field, "primary_metric.kind");
        let mut body = minimal();
        body["condition"] = json!({"country": {"$bogus": 1}});
        let errors = create(body).unwrap_err();
        assert_eq!(errors[0].field, "condition.country.$bogus", "{errors:?}");
        assert!(
            errors[0].message.starts_with("unknown operator"),
            "{errors:?}"
        );
    }

    #[test]
    fn given_duplicate_keys_when_created_then_refused() {
        let mut body = minimal();
        body["variants"] = json!([{"key": "a"}, {"key": "a"}]);
        body["secondary_metrics"] = json!([{"name": "converted", "kind": "mean"}]);
        let errors = create(body).unwrap_err();
        assert!(errors.iter().any(|e| e.field == "variants[1].key"));
        assert!(errors.iter().any(|e| e.field == "secondary_metrics"));
    }

    #[test]
    fn given_one_variant_when_created_then_refused() {
        let mut body = minimal();
        body["variants"] = json!([{"key": "only"}]);
        assert!(create(body)
            .unwrap_err()
            .iter()
            .any(|e| e.field == "variants"));
    }

    #[test]
    fn the_status_machine_allows_exactly_the_documented_moves() {
        use Status::*;
        assert_eq!(Draft.allowed_next(), &[Running, Cancelled]);
        assert_eq!(Running.allowed_next(), &[Paused, Completed, Cancelled]);
        assert_eq!(Paused.allowed_next(), &[Running, Completed, Cancelled]);
        assert!(Completed.allowed_next().is_empty());
        assert!(Cancelled.allowed_next().is_empty());
    }
}
