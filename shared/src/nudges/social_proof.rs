//! Social proof: a catalog of testimonials, case studies, success stories, user counts, savings
//! demonstrations and reviews, and the choice of which ones to show a user.
//!
//! # Catalog
//! A [`Proof`] is written by an admin ([`parse_input`] → [`create`], [`parse_patch`] →
//! [`apply_patch`]) and only [`Approval::Approved`] proofs are ever shown. Text is trimmed of
//! surrounding whitespace and measured in Unicode characters after trimming: `title` 1..=120,
//! `content` 1..=2000, `author` 1..=80, `tier` and `segment` 1..=64 (no `#`). `tags` holds at
//! most 20 tags of 1..=40 characters from `a-z`, `0-9`, `_` (duplicates are dropped, order kept).
//! `impressions` and `conversions` are observed counters kept by the integrator from nudge
//! events; edits never touch them.
//!
//! # Relevance (0..=1)
//! For a proof `p` and an [`Audience`] `u`, with weights `w_a + w_i + w_g = 1`
//! (defaults 0.5 / 0.25 / 0.25) and `everyone_credit` `c` (default 0.6):
//! - **audience** `A`: if `p` sets neither `tier` nor `segment` it is for everyone and
//!   `A = c`. Otherwise every field `p` sets must equal the user's (exact, case-sensitive; an
//!   unknown user value never matches): all equal → `A = 1`, else `A = 0`.
//! - **interest** `I` (only when `u.feature` is given): `1` if the feature is among the tags,
//!   else `0`.
//! - **goals** `G` (only when `u.goals` is non-empty): distinct goals found in the tags divided
//!   by distinct goals.
//!
//! Feature and goals are normalised before matching: trimmed, ASCII-lowercased, each space or
//! `-` replaced by `_` (`"Save money"` matches the tag `save_money`); empty ones are ignored.
//!
//! `score = (w_a·A + w_i·I + w_g·G) / (w_a + w_i + w_g)` where a part that was not asked
//! for is left out of both sums, so its weight is shared by the others in proportion and a
//! user without a stated interest or goals is not penalised (if the remaining weights sum to
//! 0, `score = A`). An audience mismatch is a hard gate: `A = 0` ⇒ `score = 0`, so a proof
//! targeted at another tier or segment is never shown whatever its tags (and
//! `everyone_credit = 0` hides proofs for everyone). The score is clamped to 0..=1. With the defaults, a proof for everyone scores 0.6 for a user who states nothing
//! (below the 0.7 threshold) and needs a matching interest or goals to be shown.
//!
//! # Ranking (Thompson sampling)
//! [`rank`] keeps proofs that are approved, have `score >= relevance_threshold` and are not in
//! `recently_shown` (ids shown to this user within the last `rotation_hours`, see
//! [`recently_shown`]). For each, with `n = impressions`, `k = min(conversions, n)`, it draws
//! `θ ~ Beta(prior_alpha + k, prior_beta + n − k)` ([`sample_beta`]) and returns at most
//! `max_proofs` proofs ordered by `θ` descending, ties by relevance descending then id
//! ascending. Proofs are sampled in id order, so a seeded rng gives the same ranking whatever
//! the catalog order. The posterior mean `(prior_alpha + k) / (prior_alpha + prior_beta + n)`
//! is reported alongside. A Beta parameter that is not a finite positive number is replaced
//! by 1 and parameters are capped at 10^15; draws are clamped to `[1e-12, 1 − 1e-12]`.
//!
//! # Rotation
//! A proof shown to a user at `shown_at` is excluded for them while
//! `shown_at > now − rotation_hours` ([`shown_cutoff`]); it is eligible again once exactly
//! `rotation_hours` have passed. The integrator passes those ids as `recently_shown`.

use std::cmp::Ordering;
use std::collections::BTreeSet;

use chrono::{DateTime, Duration, Utc};
use rand::Rng;
use rand_distr::{Beta, Distribution};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::events::FieldError;

/// Longest `title`, in characters.
pub const MAX_TITLE_CHARS: usize = 120;
/// Longest `content`, in characters.
pub const MAX_CONTENT_CHARS: usize = 2000;
/// Longest `author`, in characters.
pub const MAX_AUTHOR_CHARS: usize = 80;
/// Longest `tier` or `segment`, in characters.
pub const MAX_AUDIENCE_CHARS: usize = 64;
/// Most tags on one proof.
pub const MAX_TAGS: usize = 20;
/// Longest tag, in characters.
pub const MAX_TAG_CHARS: usize = 40;
/// Most proofs a single ranking may return (upper bound of `max_proofs`).
pub const MAX_PROOFS_LIMIT: u32 = 10;
/// Longest rotation window, in hours (30 days).
pub const MAX_ROTATION_HOURS: u32 = 720;
/// Largest prior pseudo-count accepted by settings.
pub const MAX_PRIOR: f64 = 1000.0;
/// Beta draws are clamped to `[SAMPLE_EPSILON, 1 − SAMPLE_EPSILON]` so they lie in (0, 1).
pub const SAMPLE_EPSILON: f64 = 1e-12;
/// Beta shape parameters are capped here so sums never overflow.
pub const MAX_SHAPE: f64 = 1e15;

/// What kind of social proof a catalog entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProofType {
    Testimonial,
    CaseStudy,
    SuccessStory,
    UserCount,
    SavingsDemonstration,
    Review,
}

impl ProofType {
    /// Every type, in declaration order.
    pub const ALL: [ProofType; 6] = [
        ProofType::Testimonial,
        ProofType::CaseStudy,
        ProofType::SuccessStory,
        ProofType::UserCount,
        ProofType::SavingsDemonstration,
        ProofType::Review,
    ];

    /// The wire name, e.g. `case_study`.
    pub fn as_str(self) -> &'static str {
        match self {
            ProofType::Testimonial => "testimonial",
            ProofType::CaseStudy => "case_study",
            ProofType::SuccessStory => "success_story",
            ProofType::UserCount => "user_count",
            ProofType::SavingsDemonstration => "savings_demonstration",
            ProofType::Review => "review",
        }
    }
}

/// Moderation state; only approved proofs are shown to users.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Approval {
    #[default]
    Pending,
    Approved,
    Rejected,
}

impl Approval {
    /// Every state, in declaration order.
    pub const ALL: [Approval; 3] = [Approval::Pending, Approval::Approved, Approval::Rejected];

    /// The wire name, e.g. `approved`.
    pub fn as_str(self) -> &'static str {
        match self {
            Approval::Pending => "pending",
            Approval::Approved => "approved",
            Approval::Rejected => "rejected",
        }
    }
}

/// A catalog entry as stored and as returned to admins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proof {
    pub proof_id: String,
    pub proof_type: ProofType,
    /// Only users on this tier see it; `None` = any tier.
    pub tier: Option<String>,
    /// Only users in this segment see it; `None` = any segment.
    pub segment: Option<String>,
    /// Interests, goals and features it speaks to: lowercase snake_case.
    pub tags: Vec<String>,
    pub title: String,
    pub content: String,
    pub author: String,
    pub approval: Approval,
    /// Times shown, from nudge events.
    pub impressions: u64,
    /// Conversions attributed to it, from nudge events.
    pub conversions: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// 1 on creation, +1 on every update (for conditional writes).
    pub version: u64,
}

/// Body of the create request, as produced by [`parse_input`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProofInput {
    pub proof_type: ProofType,
    #[serde(default)]
    pub tier: Option<String>,
    #[serde(default)]
    pub segment: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    pub title: String,
    pub content: String,
    pub author: String,
    /// Defaults to `pending`.
    #[serde(default)]
    pub approval: Approval,
}

/// Body of the update request, as produced by [`parse_patch`]: absent = unchanged; for `tier`
/// and `segment`, `Some(None)` (JSON `null`) clears the targeting.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProofPatch {
    pub proof_type: Option<ProofType>,
    #[serde(deserialize_with = "double_option")]
    pub tier: Option<Option<String>>,
    #[serde(deserialize_with = "double_option")]
    pub segment: Option<Option<String>>,
    pub tags: Option<Vec<String>>,
    pub title: Option<String>,
    pub content: Option<String>,
    pub author: Option<String>,
    pub approval: Option<Approval>,
}

/// Deserializes a present field (even `null`) as `Some(..)`; an absent one stays `None`.
pub fn double_option<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

const FIELDS: [&str; 8] = [
    "proof_type",
    "tier",
    "segment",
    "tags",
    "title",
    "content",
    "author",
    "approval",
];

/// Reads the fields of a create (`patch = false`) or update body, collecting every problem.
struct Reader<'a> {
    obj: &'a Map<String, Value>,
    patch: bool,
    errors: Vec<FieldError>,
}

impl<'a> Reader<'a> {
    fn fail(&mut self, field: &str, message: impl Into<String>) {
        self.errors.push(FieldError::new(field, message));
    }

    /// The field's value; `null` counts as absent on create and is an error on update.
    fn get(&mut self, key: &str) -> Option<&'a Value> {
        match self.obj.get(key) {
            Some(Value::Null) if self.patch => {
                self.fail(key, "must not be null; omit it to leave it unchanged");
                None
            }
            Some(Value::Null) => None,
            v => v,
        }
    }

    fn text(&mut self, key: &str, max: usize) -> Option<String> {
        let v = self.get(key)?;
        let s = v.as_str().map(str::trim).unwrap_or_default();
        if !v.is_string() || s.is_empty() || s.chars().count() > max {
            self.fail(
                key,
                format!("must be a string of 1 to {max} characters (trimmed)"),
            );
            return None;
        }
        Some(s.to_string())
    }

    /// `tier`/`segment`: `Some(None)` when sent as `null` (clears it on update).
    fn audience(&mut self, key: &str) -> Option<Option<String>> {
        if self.obj.get(key).is_some_and(Value::is_null) {
            return Some(None);
        }
        let s = self.text(key, MAX_AUDIENCE_CHARS)?;
        if s.contains('#') {
            self.fail(key, "must not contain '#'");
            return None;
        }
        Some(Some(s))
    }

    fn one_of<T: Copy>(&mut self, key: &str, all: &[T], name: fn(T) -> &'static str) -> Option<T> {
        let v = self.get(key)?;
        let found = all.iter().copied().find(|t| v.as_str() == Some(name(*t)));
        if found.is_none() {
            let allowed: Vec<&str> = all.iter().map(|t| name(*t)).collect();
            self.fail(key, format!("must be one of: {}", allowed.join(", ")));
        }
        found
    }

    fn tags(&mut self) -> Option<Vec<String>> {
        let v = self.get("tags")?;
        let Some(items) = v.as_array().filter(|a| a.len() <= MAX_TAGS) else {
            self.fail(
                "tags",
                format!("must be an array of at most {MAX_TAGS} tags"),
            );
            return None;
        };
        let before = self.errors.len();
        let mut out: Vec<String> = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            match item.as_str() {
                Some(t) if valid_tag(t) => {
                    if !out.iter().any(|o| o == t) {
                        out.push(t.to_string());
                    }
                }
                _ => self.fail(
                    &format!("tags[{i}]"),
                    format!("must be 1 to {MAX_TAG_CHARS} characters of a-z, 0-9, '_'"),
                ),
            }
        }
        (self.errors.len() == before).then_some(out)
    }
}

/// A tag: 1..=40 characters of `a-z`, `0-9`, `_`.
pub fn valid_tag(t: &str) -> bool {
    (1..=MAX_TAG_CHARS).contains(&t.len())
        && t.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Every field of the body as a patch, with the problems found.
fn read(json: &Value, patch: bool) -> (ProofPatch, Vec<FieldError>) {
    let Some(obj) = json.as_object() else {
        let e = FieldError::new("body", "must be a JSON object");
        return (ProofPatch::default(), vec![e]);
    };
    let mut r = Reader {
        obj,
        patch,
        errors: Vec::new(),
    };
    for key in obj.keys().filter(|k| !FIELDS.contains(&k.as_str())) {
        let message = format!("is not a known field; expected: {}", FIELDS.join(", "));
        r.fail(key, message);
    }
    let p = ProofPatch {
        proof_type: r.one_of("proof_type", &ProofType::ALL, ProofType::as_str),
        tier: r.audience("tier"),
        segment: r.audience("segment"),
        tags: r.tags(),
        title: r.text("title", MAX_TITLE_CHARS),
        content: r.text("content", MAX_CONTENT_CHARS),
        author: r.text("author", MAX_AUTHOR_CHARS),
        approval: r.one_of("approval", &Approval::ALL, Approval::as_str),
    };
    (p, r.errors)
}

/// Parses a create body, reporting every problem with its field: unknown fields, missing
/// required fields (`proof_type`, `title`, `content`, `author`), wrong enum values (with the
/// allowed list), lengths and tag format. `null` counts as absent.
pub fn parse_input(json: &Value) -> Result<ProofInput, Vec<FieldError>> {
    let (p, mut errors) = read(json, false);
    if json.is_object() {
        let given = [
            ("proof_type", p.proof_type.is_some()),
            ("title", p.title.is_some()),
            ("content", p.content.is_some()),
            ("author", p.author.is_some()),
        ];
        for (field, _) in given.into_iter().filter(|(_, given)| !given) {
            if !errors.iter().any(|e| e.field == field) {
                errors.push(FieldError::new(field, "is required"));
            }
        }
    }
    match (p.proof_type, p.title, p.content, p.author) {
        (Some(proof_type), Some(title), Some(content), Some(author)) if errors.is_empty() => {
            Ok(ProofInput {
                proof_type,
                tier: p.tier.flatten(),
                segment: p.segment.flatten(),
                tags: p.tags.unwrap_or_default(),
                title,
                content,
                author,
                approval: p.approval.unwrap_or_default(),
            })
        }
        _ => Err(errors),
    }
}

/// Parses an update body with the same rules as [`parse_input`]; `null` clears `tier` or
/// `segment` and is an error elsewhere; a body that changes nothing is an error on `body`.
pub fn parse_patch(json: &Value) -> Result<ProofPatch, Vec<FieldError>> {
    let (patch, mut errors) = read(json, true);
    if errors.is_empty() && patch == ProofPatch::default() {
        errors.push(FieldError::new("body", "must change at least one field"));
    }
    if errors.is_empty() {
        Ok(patch)
    } else {
        Err(errors)
    }
}

/// A new proof: counters at 0, `version` 1, both timestamps `now`.
pub fn create(id: String, input: ProofInput, now: DateTime<Utc>) -> Proof {
    Proof {
        proof_id: id,
        proof_type: input.proof_type,
        tier: input.tier,
        segment: input.segment,
        tags: input.tags,
        title: input.title,
        content: input.content,
        author: input.author,
        approval: input.approval,
        impressions: 0,
        conversions: 0,
        created_at: now,
        updated_at: now,
        version: 1,
    }
}

/// The proof with the patch applied, `version + 1` and `updated_at = now`; counters, id and
/// `created_at` are kept.
pub fn apply_patch(p: &Proof, patch: &ProofPatch, now: DateTime<Utc>) -> Proof {
    let pick = |new: &Option<String>, old: &String| new.clone().unwrap_or_else(|| old.clone());
    Proof {
        proof_type: patch.proof_type.unwrap_or(p.proof_type),
        tier: patch.tier.clone().unwrap_or_else(|| p.tier.clone()),
        segment: patch.segment.clone().unwrap_or_else(|| p.segment.clone()),
        tags: patch.tags.clone().unwrap_or_else(|| p.tags.clone()),
        title: pick(&patch.title, &p.title),
        content: pick(&patch.content, &p.content),
        author: pick(&patch.author, &p.author),
        approval: patch.approval.unwrap_or(p.approval),
        version: p.version.saturating_add(1),
        updated_at: now,
        ..p.clone()
    }
}

/// Who is asking: the user's segment and tier (from the profile), the feature they are
/// looking at and their stated goals.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Audience {
    pub segment: Option<String>,
    pub tier: Option<String>,
    pub feature: Option<String>,
    pub goals: Vec<String>,
}

/// Weights of the three relevance parts; each in 0..=1, summing to 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RelevanceWeights {
    /// Default 0.5: the tier/segment fit matters most.
    pub audience: f64,
    /// Default 0.25.
    pub interest: f64,
    /// Default 0.25.
    pub goals: f64,
}

impl Default for RelevanceWeights {
    fn default() -> Self {
        RelevanceWeights {
            audience: 0.5,
            interest: 0.25,
            goals: 0.25,
        }
    }
}

/// Settings of social proof selection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SocialProofSettings {
    /// Minimum relevance to be shown, 0..=1 (default 0.7).
    pub relevance_threshold: f64,
    /// Most proofs returned per request, 1..=10 (default 3).
    pub max_proofs: u32,
    /// A proof shown to a user is not shown to them again for this many hours, 0..=720
    /// (default 24; 0 disables rotation).
    pub rotation_hours: u32,
    /// Beta prior pseudo-conversions, in (0, 1000] (default 1).
    pub prior_alpha: f64,
    /// Beta prior pseudo-non-conversions, in (0, 1000] (default 1).
    pub prior_beta: f64,
    /// Audience part of a proof with no tier and no segment, 0..=1 (default 0.6).
    pub everyone_credit: f64,
    /// Relevance weights (default 0.5 / 0.25 / 0.25).
    pub weights: RelevanceWeights,
}

impl Default for SocialProofSettings {
    fn default() -> Self {
        SocialProofSettings {
            relevance_threshold: 0.7,
            max_proofs: 3,
            rotation_hours: 24,
            prior_alpha: 1.0,
            prior_beta: 1.0,
            everyone_credit: 0.6,
            weights: RelevanceWeights::default(),
        }
    }
}

impl SocialProofSettings {
    /// Every invalid field, with paths such as `{prefix}.weights.goals`.
    pub fn validate(&self, prefix: &str) -> Vec<FieldError> {
        let path = |f: &str| {
            if prefix.is_empty() {
                f.to_string()
            } else {
                format!("{prefix}.{f}")
            }
        };
        let mut errors = Vec::new();
        let mut unit = |f: &str, v: f64| {
            if !(v.is_finite() && (0.0..=1.0).contains(&v)) {
                errors.push(FieldError::new(path(f), "must be a number from 0 to 1"));
            }
        };
        unit("relevance_threshold", self.relevance_threshold);
        unit("everyone_credit", self.everyone_credit);
        let w = &self.weights;
        unit("weights.audience", w.audience);
        unit("weights.interest", w.interest);
        unit("weights.goals", w.goals);
        let sum = w.audience + w.interest + w.goals;
        if !(sum - 1.0).abs().le(&1e-9) {
            errors.push(FieldError::new(
                path("weights"),
                format!("audience + interest + goals must sum to 1 (got {sum})"),
            ));
        }
        if !(1..=MAX_PROOFS_LIMIT).contains(&self.max_proofs) {
            errors.push(FieldError::new(
                path("max_proofs"),
                format!("must be 1 to {MAX_PROOFS_LIMIT}"),
            ));
        }
        if self.rotation_hours > MAX_ROTATION_HOURS {
            errors.push(FieldError::new(
                path("rotation_hours"),
                format!("must be 0 to {MAX_ROTATION_HOURS}"),
            ));
        }
        for (f, v) in [
            ("prior_alpha", self.prior_alpha),
            ("prior_beta", self.prior_beta),
        ] {
            if !(v.is_finite() && v > 0.0 && v <= MAX_PRIOR) {
                errors.push(FieldError::new(
                    path(f),
                    format!("must be greater than 0 and at most {MAX_PRIOR}"),
                ));
            }
        }
        errors
    }
}

/// A relevance score and its parts; `interest`/`goals` are `None` when the audience did not
/// state a feature/goals (their weight went to the other parts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RelevanceScore {
    pub score: f64,
    pub audience: f64,
    pub interest: Option<f64>,
    pub goals: Option<f64>,
}

fn normalise(s: &str) -> String {
    s.trim()
        .chars()
        .map(|c| {
            if c.is_whitespace() || c == '-' {
                '_'
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect()
}

fn targets(wanted: &Option<String>, actual: &Option<String>) -> bool {
    match (wanted, actual) {
        (None, _) => true,
        (Some(w), Some(a)) => w.trim() == a.trim(),
        (Some(_), None) => false,
    }
}

/// Relevance of a proof to an audience (formula in the module documentation).
pub fn relevance(p: &Proof, a: &Audience, s: &SocialProofSettings) -> RelevanceScore {
    let has_tag = |t: &str| p.tags.iter().any(|tag| tag == t);
    let audience = if p.tier.is_none() && p.segment.is_none() {
        s.everyone_credit
    } else if targets(&p.tier, &a.tier) && targets(&p.segment, &a.segment) {
        1.0
    } else {
        0.0
    };
    let interest = a
        .feature
        .as_deref()
        .map(normalise)
        .filter(|f| !f.is_empty())
        .map(|f| if has_tag(&f) { 1.0 } else { 0.0 });
    let goals: BTreeSet<String> = a
        .goals
        .iter()
        .map(|g| normalise(g))
        .filter(|g| !g.is_empty())
        .collect();
    let goals = (!goals.is_empty())
        .then(|| goals.iter().filter(|g| has_tag(g)).count() as f64 / goals.len() as f64);
    let w = &s.weights;
    let mut num = w.audience * audience;
    let mut den = w.audience;
    if let Some(i) = interest {
        num += w.interest * i;
        den += w.interest;
    }
    if let Some(g) = goals {
        num += w.goals * g;
        den += w.goals;
    }
    let raw = if audience <= 0.0 {
        0.0
    } else if den > 0.0 {
        num / den
    } else {
        audience
    };
    RelevanceScore {
        score: if raw.is_finite() {
            raw.clamp(0.0, 1.0)
        } else {
            0.0
        },
        audience,
        interest,
        goals,
    }
}

/// One proof chosen by [`rank`], with its relevance, Thompson draw and posterior mean.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ranked {
    pub proof_id: String,
    pub relevance: f64,
    pub sample: f64,
    pub posterior_mean: f64,
}

fn shape(x: f64) -> f64 {
    if x.is_finite() && x > 0.0 {
        x.min(MAX_SHAPE)
    } else {
        1.0
    }
}

/// A draw from `Beta(alpha, beta)` in (0, 1). A parameter that is not a finite positive number
/// is replaced by 1; parameters are capped at [`MAX_SHAPE`]; the draw is clamped to
/// `[SAMPLE_EPSILON, 1 − SAMPLE_EPSILON]`.
pub fn sample_beta(alpha: f64, beta: f64, rng: &mut impl Rng) -> f64 {
    let (a, b) = (shape(alpha), shape(beta));
    let mean = a / (a + b);
    let x = Beta::new(a, b).map_or(mean, |d| d.sample(rng));
    let x = if x.is_finite() { x } else { mean };
    x.clamp(SAMPLE_EPSILON, 1.0 - SAMPLE_EPSILON)
}

fn posterior(p: &Proof, s: &SocialProofSettings) -> (f64, f64) {
    let k = p.conversions.min(p.impressions);
    let misses = p.impressions - k;
    (
        shape(s.prior_alpha) + k as f64,
        shape(s.prior_beta) + misses as f64,
    )
}

/// `(prior_alpha + k) / (prior_alpha + prior_beta + n)` with `k = min(conversions, n)`.
pub fn posterior_mean(p: &Proof, s: &SocialProofSettings) -> f64 {
    let (a, b) = posterior(p, s);
    let (a, b) = (shape(a), shape(b));
    a / (a + b)
}

/// Ranking order: sample desc, then relevance desc, then id asc.
pub fn ranked_order(x: &Ranked, y: &Ranked) -> Ordering {
    y.sample
        .total_cmp(&x.sample)
        .then_with(|| y.relevance.total_cmp(&x.relevance))
        .then_with(|| x.proof_id.cmp(&y.proof_id))
}

/// The proofs to show, best first (rules in the module documentation).
pub fn rank(
    catalog: &[Proof],
    audience: &Audience,
    recently_shown: &BTreeSet<String>,
    s: &SocialProofSettings,
    rng: &mut impl Rng,
) -> Vec<Ranked> {
    let mut eligible: Vec<(&Proof, f64)> = catalog
        .iter()
        .filter(|p| p.approval == Approval::Approved && !recently_shown.contains(&p.proof_id))
        .map(|p| (p, relevance(p, audience, s).score))
        .filter(|(_, r)| *r >= s.relevance_threshold)
        .collect();
    eligible.sort_by(|x, y| x.0.proof_id.cmp(&y.0.proof_id));
    let mut out: Vec<Ranked> = eligible
        .into_iter()
        .map(|(p, relevance)| {
            let (a, b) = posterior(p, s);
            Ranked {
                proof_id: p.proof_id.clone(),
                relevance,
                sample: sample_beta(a, b, rng),
                posterior_mean: posterior_mean(p, s),
            }
        })
        .collect();
    out.sort_by(ranked_order);
    out.truncate(s.max_proofs as usize);
    out
}

/// `now − rotation_hours`: proofs shown to the user after this instant are "recently shown".
pub fn shown_cutoff(now: DateTime<Utc>, s: &SocialProofSettings) -> DateTime<Utc> {
    now.checked_sub_signed(Duration::hours(i64::from(s.rotation_hours)))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// Ids among `(proof_id, shown_at)` shown strictly after [`shown_cutoff`] (including any
/// timestamp after `now`); a proof becomes eligible again once `rotation_hours` have passed.
pub fn recently_shown<'a>(
    shown: impl IntoIterator<Item = (&'a str, DateTime<Utc>)>,
    now: DateTime<Utc>,
    s: &SocialProofSettings,
) -> BTreeSet<String> {
    let cutoff = shown_cutoff(now, s);
    shown
        .into_iter()
        .filter(|(_, at)| *at > cutoff)
        .map(|(id, _)| id.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use serde_json::json;

    fn t0() -> DateTime<Utc> {
        "2026-03-01T12:00:00Z".parse().unwrap()
    }

    fn proof(id: &str, tier: Option<&str>, segment: Option<&str>, tags: &[&str]) -> Proof {
        let input = ProofInput {
            proof_type: ProofType::Testimonial,
            tier: tier.map(String::from),
            segment: segment.map(String::from),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            title: "Retired 5 years early!".into(),
            content: "The retirement planning tools helped me.".into(),
            author: "Jennifer L.".into(),
            approval: Approval::Approved,
        };
        create(id.to_string(), input, t0())
    }

    fn audience(segment: Option<&str>, feature: Option<&str>, goals: &[&str]) -> Audience {
        Audience {
            segment: segment.map(String::from),
            tier: None,
            feature: feature.map(String::from),
            goals: goals.iter().map(|g| g.to_string()).collect(),
        }
    }

    fn fields(errors: &[FieldError]) -> Vec<&str> {
        errors.iter().map(|e| e.field.as_str()).collect()
    }

    fn score(p: &Proof, a: &Audience) -> f64 {
        relevance(p, a, &SocialProofSettings::default()).score
    }

    fn close(x: f64, want: f64) -> bool {
        (x - want).abs() < 1e-12
    }

    const SEED_TAGS: [&str; 3] = [
        "investment_growth",
        "retirement_planning",
        "invest_for_future",
    ];

    #[test]
    fn a_complete_body_parses_trimmed_deduplicated_and_pending_by_default() {
        let body = json!({"proof_type": "case_study", "segment": " mid_tier ", "tier": null,
            "tags": ["tax_savings", "tax_savings", "retirement"], "title": "  Retired early ",
            "content": "Text", "author": "Jennifer L."});
        let input = parse_input(&body).unwrap();
        assert_eq!(input.proof_type, ProofType::CaseStudy);
        assert_eq!(
            (input.segment.as_deref(), input.tier.as_deref()),
            (Some("mid_tier"), None)
        );
        assert_eq!(input.tags, ["tax_savings", "retirement"]);
        assert_eq!(
            (input.title.as_str(), input.approval),
            ("Retired early", Approval::Pending)
        );
        let p = create("p1".into(), input, t0());
        assert_eq!((p.version, p.impressions, p.conversions), (1, 0, 0));
        assert_eq!((p.created_at, p.updated_at), (t0(), t0()));
    }

    #[test]
    fn a_body_with_several_problems_reports_each_one_with_its_field() {
        let body = json!({"proof_type": "video", "tier": "x".repeat(65), "segment": "vip#1",
            "tags": ["ok", "Bad Tag", "y".repeat(41)], "content": "c".repeat(2001),
            "author": "   ", "approval": "maybe", "rating": 5, "title": null});
        let errors = parse_input(&body).unwrap_err();
        let want = [
            "rating",
            "proof_type",
            "tier",
            "segment",
            "tags[1]",
            "tags[2]",
            "content",
            "author",
            "approval",
            "title",
        ];
        assert_eq!(fields(&errors), want);
        assert_eq!(
            errors[1].message,
            "must be one of: testimonial, case_study, \
            success_story, user_count, savings_demonstration, review"
        );
        assert_eq!(errors[3].message, "must not contain '#'");
        assert_eq!(
            errors[6].message,
            "must be a string of 1 to 2000 characters (trimmed)"
        );
        assert_eq!(
            errors[8].message,
            "must be one of: pending, approved, rejected"
        );
        assert_eq!(errors[9].message, "is required");
    }

    #[test]
    fn a_non_object_body_or_wrongly_typed_fields_are_reported() {
        assert_eq!(fields(&parse_input(&json!([1])).unwrap_err()), ["body"]);
        let tags: Vec<String> = (0..21).map(|i| format!("t{i}")).collect();
        let body =
            json!({"proof_type": 3, "title": 7, "content": "c", "author": "a", "tags": tags});
        let errors = parse_input(&body).unwrap_err();
        assert_eq!(fields(&errors), ["proof_type", "tags", "title"]);
        assert_eq!(errors[1].message, "must be an array of at most 20 tags");
    }

    #[test]
    fn a_patch_clears_tier_with_null_and_keeps_absent_fields_and_counters() {
        let mut p = proof("p1", Some("pro"), Some("mid_tier"), &["a"]);
        (p.impressions, p.conversions) = (40, 3);
        let patch = parse_patch(&json!({"tier": null, "title": "New", "approval": "rejected"}));
        let patch = patch.unwrap();
        assert_eq!((&patch.tier, &patch.segment), (&Some(None), &None));
        let later = t0() + Duration::hours(2);
        let q = apply_patch(&p, &patch, later);
        assert_eq!(
            (q.tier.as_deref(), q.segment.as_deref()),
            (None, Some("mid_tier"))
        );
        assert_eq!((q.title.as_str(), q.approval), ("New", Approval::Rejected));
        assert_eq!((q.impressions, q.conversions, q.version), (40, 3, 2));
        assert_eq!(
            (q.created_at, q.updated_at, &q.content),
            (t0(), later, &p.content)
        );
        let set = parse_patch(&json!({"segment": "budget_tier"})).unwrap();
        assert_eq!(
            apply_patch(&q, &set, later).segment.as_deref(),
            Some("budget_tier")
        );
    }

    #[test]
    fn an_empty_patch_or_null_on_a_required_field_is_rejected() {
        let errors = parse_patch(&json!({})).unwrap_err();
        assert_eq!(
            errors,
            [FieldError::new("body", "must change at least one field")]
        );
        let body = json!({"title": null, "tags": null, "author": "", "proof_type": "poster"});
        let errors = parse_patch(&body).unwrap_err();
        assert_eq!(fields(&errors), ["proof_type", "tags", "title", "author"]);
        assert_eq!(
            errors[1].message,
            "must not be null; omit it to leave it unchanged"
        );
    }

    #[test]
    fn the_seed_example_mid_tier_testimonial_reaches_the_threshold_via_goals() {
        let p = proof("p", None, Some("mid_tier"), &SEED_TAGS);
        let goals = ["save_money", "invest_for_future"];
        let r = relevance(
            &p,
            &audience(Some("mid_tier"), None, &goals),
            &Default::default(),
        );
        assert!(close(r.score, 5.0 / 6.0)); // (0.5·1 + 0.25·0.5) / 0.75
        assert_eq!((r.audience, r.interest, r.goals), (1.0, None, Some(0.5)));
        // The seed's feature "investment_planning" is not a tag: 0.5 + 0 + 0.125.
        let feature = audience(Some("mid_tier"), Some("investment_planning"), &goals);
        assert!(close(score(&p, &feature), 0.625));
    }

    #[test]
    fn a_full_match_scores_one_and_the_users_words_are_normalised() {
        let mut p = proof("p", Some("pro"), Some("mid_tier"), &SEED_TAGS);
        p.tags.push("investment_planning".into());
        let goals = [
            "Invest for future",
            "investment_growth",
            "invest_for_future",
        ];
        let mut a = audience(Some("mid_tier"), Some(" Investment-Planning "), &goals);
        a.tier = Some("pro".into());
        let r = relevance(&p, &a, &Default::default());
        assert_eq!((r.score, r.interest, r.goals), (1.0, Some(1.0), Some(1.0)));
    }

    #[test]
    fn a_proof_for_everyone_gets_partial_audience_credit() {
        let p = proof("p", None, None, &["budget_tracker", "save_money"]);
        assert_eq!(score(&p, &audience(Some("mid_tier"), None, &[])), 0.6);
        let feature = audience(None, Some("budget_tracker"), &[]);
        assert!(close(score(&p, &feature), 0.55 / 0.75)); // 0.7333
        let both = audience(None, Some("budget_tracker"), &["save_money", "x"]);
        assert!(close(score(&p, &both), 0.675)); // 0.3 + 0.25 + 0.125
    }

    #[test]
    fn an_audience_mismatch_scores_zero_whatever_the_tags() {
        let p = proof("p", Some("pro"), None, &["budget_tracker", "save_money"]);
        let mut a = audience(None, Some("budget_tracker"), &["save_money"]);
        a.tier = Some("basic".into());
        let r = relevance(&p, &a, &Default::default());
        assert_eq!(
            (r.score, r.audience, r.interest, r.goals),
            (0.0, 0.0, Some(1.0), Some(1.0))
        );
        a.tier = None; // an unknown tier never matches a targeted proof
        assert_eq!(score(&p, &a), 0.0);
        let both = proof("q", Some("pro"), Some("mid_tier"), &[]);
        let mut half = audience(Some("budget_tier"), None, &[]);
        half.tier = Some("pro".into());
        assert_eq!(score(&both, &half), 0.0);
    }

    #[test]
    fn without_feature_or_goals_their_weight_goes_to_the_other_parts() {
        let p = proof("p", None, Some("mid_tier"), &["budget_tracker"]);
        let r = relevance(
            &p,
            &audience(Some("mid_tier"), Some("budget_tracker"), &[]),
            &Default::default(),
        );
        assert_eq!((r.score, r.goals), (1.0, None));
        let miss = audience(Some("mid_tier"), Some("tax_tool"), &[" "]); // blank goal ignored
        assert!(close(score(&p, &miss), 0.5 / 0.75));
        assert_eq!(score(&p, &audience(Some("mid_tier"), None, &[])), 1.0);
    }

    /// p1..p5 eligible for mid_tier; the others are not (pending, rejected, other segment,
    /// generic at 0.6 < 0.7).
    fn catalog() -> Vec<Proof> {
        let mut c: Vec<Proof> = ["p1", "p2", "p3", "p4", "p5", "pending", "rejected"]
            .iter()
            .map(|id| proof(id, None, Some("mid_tier"), &["save_money"]))
            .collect();
        c[5].approval = Approval::Pending;
        c[6].approval = Approval::Rejected;
        c.push(proof(
            "other_tier",
            None,
            Some("budget_tier"),
            &["save_money"],
        ));
        c.push(proof("generic", None, None, &[]));
        c
    }

    fn ids(ranked: Vec<Ranked>) -> BTreeSet<String> {
        ranked.into_iter().map(|r| r.proof_id).collect()
    }

    fn set(ids: &[&str]) -> BTreeSet<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn ranking_keeps_approved_relevant_and_not_recently_shown_proofs_at_most_three() {
        let s = SocialProofSettings::default();
        let a = audience(Some("mid_tier"), None, &["save_money"]);
        let mut rng = StdRng::seed_from_u64(7);
        let ranked = rank(&catalog(), &a, &set(&["p1", "p2"]), &s, &mut rng);
        assert_eq!(ids(ranked), set(&["p3", "p4", "p5"]));
        let three = ids(rank(&catalog(), &a, &BTreeSet::new(), &s, &mut rng));
        assert_eq!(three.len(), 3);
        assert!(three.is_subset(&set(&["p1", "p2", "p3", "p4", "p5"])));
        let ten = SocialProofSettings {
            max_proofs: 10,
            ..s
        };
        let all = ids(rank(&catalog(), &a, &BTreeSet::new(), &ten, &mut rng));
        assert_eq!(all, set(&["p1", "p2", "p3", "p4", "p5"]));
    }

    #[test]
    fn ranking_is_deterministic_for_a_seed_and_follows_the_evidence() {
        let s = SocialProofSettings::default();
        let mut c = catalog();
        for (p, k) in c.iter_mut().zip([10, 500, 250, 100, 50]) {
            (p.impressions, p.conversions) = (1000, k);
        }
        let a = audience(Some("mid_tier"), None, &[]);
        let none = BTreeSet::new();
        let first = rank(&c, &a, &none, &s, &mut StdRng::seed_from_u64(42));
        c.reverse();
        assert_eq!(
            first,
            rank(&c, &a, &none, &s, &mut StdRng::seed_from_u64(42))
        );
        let order: Vec<&str> = first.iter().map(|r| r.proof_id.as_str()).collect();
        assert_eq!(order, ["p2", "p3", "p4"]); // 50 %, 25 %, 10 % over 1,000 impressions
        assert!(close(first[0].posterior_mean, 501.0 / 1002.0));
        assert!(first.windows(2).all(|w| w[0].sample >= w[1].sample));
    }

    #[test]
    fn equal_samples_are_ordered_by_relevance_then_id() {
        let r = |id: &str, relevance: f64| Ranked {
            proof_id: id.into(),
            relevance,
            sample: 0.5,
            posterior_mean: 0.5,
        };
        let mut v = [r("b", 0.8), r("c", 0.9), r("a", 0.8)];
        v.sort_by(ranked_order);
        assert_eq!(v.map(|x| x.proof_id), ["c", "a", "b"]);
    }

    #[test]
    fn beta_draws_match_the_distributions_mean_and_variance() {
        // 100,000 draws: the mean's standard error is at most 0.0009; tolerance 0.004 for the
        // mean and 0.002 for the variance.
        let mut rng = StdRng::seed_from_u64(2026);
        for (a, b) in [(3.0, 7.0), (1.0, 1.0), (0.5, 0.5), (13.0, 1989.0)] {
            let xs: Vec<f64> = (0..100_000).map(|_| sample_beta(a, b, &mut rng)).collect();
            let n = xs.len() as f64;
            let mean = xs.iter().sum::<f64>() / n;
            let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
            let want_var = a * b / ((a + b).powi(2) * (a + b + 1.0));
            assert!(
                (mean - a / (a + b)).abs() < 0.004,
                "Beta({a},{b}) mean {mean}"
            );
            assert!((var - want_var).abs() < 0.002, "Beta({a},{b}) var {var}");
            assert!(xs.iter().all(|x| *x > 0.0 && *x < 1.0));
        }
    }

    #[test]
    fn invalid_beta_parameters_fall_back_to_one_and_counts_are_clamped() {
        let mut rng = StdRng::seed_from_u64(1);
        for (a, b) in [
            (0.0, 1.0),
            (-2.0, f64::NAN),
            (f64::INFINITY, 1e300),
            (1e-300, 1e-300),
        ] {
            let x = sample_beta(a, b, &mut rng);
            assert!(x > 0.0 && x < 1.0, "{a} {b} -> {x}");
        }
        let s = SocialProofSettings::default();
        let mut p = proof("p", None, None, &[]);
        assert_eq!(posterior_mean(&p, &s), 0.5);
        (p.impressions, p.conversions) = (10, 15);
        assert_eq!(posterior_mean(&p, &s), 11.0 / 12.0);
        (p.impressions, p.conversions) = (u64::MAX, 0);
        assert!(posterior_mean(&p, &s) < 1e-15);
    }

    #[test]
    fn a_proof_shown_within_the_rotation_window_is_excluded_on_the_next_request() {
        let s = SocialProofSettings {
            max_proofs: 10,
            ..Default::default()
        };
        let now = t0();
        assert_eq!(shown_cutoff(now, &s), now - Duration::hours(24));
        assert_eq!(
            shown_cutoff(DateTime::<Utc>::MIN_UTC, &s),
            DateTime::<Utc>::MIN_UTC
        );
        let history = [
            ("p1", now - Duration::hours(23)),
            ("p2", now - Duration::hours(24)),
            ("p3", now - Duration::hours(30)),
            ("p4", now + Duration::minutes(1)),
        ];
        let recent = recently_shown(history, now, &s);
        assert_eq!(recent, set(&["p1", "p4"]));
        let a = audience(Some("mid_tier"), None, &[]);
        let ranked = rank(&catalog(), &a, &recent, &s, &mut StdRng::seed_from_u64(3));
        assert_eq!(ids(ranked), set(&["p2", "p3", "p5"]));
    }

    #[test]
    fn settings_default_validate_and_report_every_bad_field() {
        let s = SocialProofSettings::default();
        assert!(s.validate("social_proof").is_empty());
        let parsed: SocialProofSettings = serde_json::from_value(json!({"max_proofs": 2})).unwrap();
        assert_eq!(
            parsed,
            SocialProofSettings {
                max_proofs: 2,
                ..s.clone()
            }
        );
        assert!(serde_json::from_value::<SocialProofSettings>(json!({"maxproofs": 2})).is_err());
        let bad = SocialProofSettings {
            relevance_threshold: f64::NAN,
            max_proofs: 0,
            rotation_hours: 721,
            prior_alpha: 0.0,
            prior_beta: 1001.0,
            everyone_credit: 1.5,
            weights: RelevanceWeights {
                audience: 0.5,
                interest: 0.5,
                goals: -0.1,
            },
        };
        let want = [
            "sp.relevance_threshold",
            "sp.everyone_credit",
            "sp.weights.goals",
            "sp.weights",
            "sp.max_proofs",
            "sp.rotation_hours",
            "sp.prior_alpha",
            "sp.prior_beta",
        ];
        assert_eq!(fields(&bad.validate("sp")), want);
        assert_eq!(fields(&bad.validate(""))[0], "relevance_threshold");
    }

    /// One simulated run: five relevant proofs (true rates 12 % for `best`, 5 % for the rest),
    /// `rounds` requests; the top `shown` proofs each get an impression and an independent
    /// Bernoulli conversion at their true rate. Returns `best`'s share of position-1 slots
    /// (with `shown = 1`, its share of all impressions).
    fn simulate(seed: u64, rounds: usize, shown: usize) -> f64 {
        let rates = [
            ("best", 0.12),
            ("m1", 0.05),
            ("m2", 0.05),
            ("m3", 0.05),
            ("m4", 0.05),
        ];
        let mut c: Vec<Proof> = rates
            .iter()
            .map(|(id, _)| proof(id, None, Some("mid_tier"), &["save_money"]))
            .collect();
        let (s, a) = (
            SocialProofSettings::default(),
            audience(Some("mid_tier"), None, &[]),
        );
        let mut rng = StdRng::seed_from_u64(seed);
        let mut world = StdRng::seed_from_u64(seed ^ 0x5eed);
        let mut best_first = 0;
        for _ in 0..rounds {
            let ranked = rank(&c, &a, &BTreeSet::new(), &s, &mut rng);
            assert_eq!(ranked.len(), 3);
            best_first += usize::from(ranked[0].proof_id == "best");
            for r in ranked.iter().take(shown) {
                let i = rates.iter().position(|(id, _)| *id == r.proof_id).unwrap();
                c[i].impressions += 1;
                c[i].conversions += u64::from(world.gen_bool(rates[i].1));
            }
        }
        best_first as f64 / rounds as f64
    }

    #[test]
    fn thompson_sampling_gives_the_12_percent_proof_most_top_slots_for_every_seed() {
        let top1: Vec<f64> = (0..20).map(|seed| simulate(seed, 2000, 1)).collect();
        let top3: Vec<f64> = (0..20).map(|seed| simulate(seed, 2000, 3)).collect();
        for (seed, (one, three)) in top1.iter().zip(&top3).enumerate() {
            assert!(*one > 0.5 && *three > 0.5, "seed {seed}: {one} / {three}");
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        println!(
            "mean share top-1 {:.3}, top-3 {:.3}",
            mean(&top1),
            mean(&top3)
        );
        assert!(mean(&top1) > 0.7 && mean(&top3) > 0.85);
    }
}
