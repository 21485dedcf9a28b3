//! Limited-time offers: who may get one, what its terms are, its code, and whether it can be
//! redeemed now.
//!
//! **Tiers and paths.** `tiers` is the upgrade ladder, lowest first (default `free`, `budget`,
//! `mid`, `professional`). An offer moves a user from `current_tier` to a `target_tier` strictly
//! above it; its *path* is `"{current_tier}_to_{target_tier}"` (e.g. `budget_to_mid`).
//!
//! **Eligibility** ([`check_eligibility`]) reports every failing rule, in this order:
//! `unknown_tier` (a tier not on the ladder, once per unknown tier), `not_an_upgrade` (target not
//! above current), `low_engagement` (`engagement_score < min_engagement_score`, 0.5; a
//! non-finite score fails), `low_feature_usage` (`feature_usage < min_feature_usage`, 2) and,
//! when `trial_eligibility` is on (default), `not_trial_eligible` (the user is not in a trial and has had one before).
//!
//! **Value ranges** (inclusive, per path): `percentage_discount` uses `discount_ranges[path]`
//! (percent; default `budget_to_mid` 20–40, `mid_to_professional` 25–50,
//! `budget_to_professional` 30–60) or `default_discount` (20–30) for a path not listed;
//! `fixed_discount` uses `fixed_discount_minor[path]` (minor units of the plan's currency;
//! default `budget_to_mid` 500–1500, `mid_to_professional` 1000–2500, `budget_to_professional`
//! 1500–3000) or `default_fixed_discount_minor` (500–1000); `free_months` uses `free_months`
//! (1–3) on every path. `feature_upgrade`, `bonus_features` and `early_access` carry
//! `discount_value = 0` and `discount_type = "feature"`.
//!
//! **Choosing the value** ([`terms`]), never an unseeded random draw:
//! - *Experiment* (the user is in a variant of an `offer_type` experiment): the variant config
//!   decides. `config.offer_type` (if present) wins over the requested type, so every user of a
//!   variant sees the same kind of offer; otherwise the requested type, else
//!   `percentage_discount`. `config.discount_value` (a whole number inside the range) is used
//!   as is; `config.position` `p` in `[0, 1]` gives `min + round(p × (max − min))` (halves round
//!   up); with neither, the midpoint (`p = 0.5`). Giving both, a value outside the range, a
//!   value or position for a feature type, a wrong JSON type or an unknown `offer_type` is a
//!   [`FieldError`] on `config.*`. Other config keys are ignored.
//! - *Deterministic*: `value = min + fnv1a64(user_id + ":" + salt) mod (max − min + 1)`, with
//!   64-bit FNV-1a over the UTF-8 bytes; the same user and salt always get the same terms, and
//!   values spread evenly over the range across users. The type is the requested one, else
//!   `percentage_discount`.
//!
//! Titles and descriptions are English templates that name the target tier (`mid_tier` is
//! shown as `Mid Tier`), e.g. `30% off Mid` / `Limited-time offer: get 30% off when you
//! upgrade to Mid before the offer ends.`; a fixed discount's text names no amount (clients
//! format `discount_value` in the plan's currency).
//!
//! **Codes** ([`offer_code`]): `PREFIX-XXXX-XXXX-XXXX-XXXX`, 80 bits of caller-supplied OS
//! randomness in Crockford base32 (`0-9A-Z` without `I L O U`). [`parse_code`] accepts any case,
//! spaces and hyphens anywhere, reads `I`/`L` as `1` and `O` as `0` in the random part, and
//! returns the canonical form; the prefix (1–8 letters or digits) must be present.
//!
//! **Redemption** ([`check_redeem`]), first failure wins: another user's offer (403, unless an
//! admin or service acts) → not started (`now < starts_at`, 409) → expired (`ends_at <= now`,
//! 410) → limit reached (`redemptions >= usage_limit`, 409). An offer runs from creation for
//! `duration_hours` (48, 1–720) and may be redeemed `usage_limit` (1) times.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::events::FieldError;

/// The kind of an offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OfferType {
    PercentageDiscount,
    FixedDiscount,
    FreeMonths,
    FeatureUpgrade,
    BonusFeatures,
    EarlyAccess,
}

impl OfferType {
    pub const ALL: [OfferType; 6] = [
        OfferType::PercentageDiscount,
        OfferType::FixedDiscount,
        OfferType::FreeMonths,
        OfferType::FeatureUpgrade,
        OfferType::BonusFeatures,
        OfferType::EarlyAccess,
    ];

    /// The wire name (`percentage_discount`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            OfferType::PercentageDiscount => "percentage_discount",
            OfferType::FixedDiscount => "fixed_discount",
            OfferType::FreeMonths => "free_months",
            OfferType::FeatureUpgrade => "feature_upgrade",
            OfferType::BonusFeatures => "bonus_features",
            OfferType::EarlyAccess => "early_access",
        }
    }

    /// The type with this wire name.
    pub fn parse(s: &str) -> Option<OfferType> {
        OfferType::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// `percentage`, `fixed_minor`, `free_months` or `feature`.
    pub fn discount_type(self) -> &'static str {
        match self {
            OfferType::PercentageDiscount => "percentage",
            OfferType::FixedDiscount => "fixed_minor",
            OfferType::FreeMonths => "free_months",
            _ => "feature",
        }
    }
}

/// An inclusive range of whole numbers, `min <= max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Range {
    pub min: u32,
    pub max: u32,
}

impl Range {
    pub const fn new(min: u32, max: u32) -> Range {
        Range { min, max }
    }

    /// Whether `v` lies in `[min, max]`.
    pub fn contains(self, v: u32) -> bool {
        self.min <= v && v <= self.max
    }

    /// Number of values in the range (at least 1, even for a malformed range).
    fn len(self) -> u64 {
        u64::from(self.max.saturating_sub(self.min)) + 1
    }
}

/// Who may receive an offer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Eligibility {
    /// Minimum engagement score, in `[0, 1]` (default 0.5).
    pub min_engagement_score: f64,
    /// Minimum number of features used (default 2).
    pub min_feature_usage: u64,
    /// When true (default), only users in a trial now or who never had one qualify.
    pub trial_eligibility: bool,
}

impl Default for Eligibility {
    fn default() -> Self {
        Eligibility {
            min_engagement_score: 0.5,
            min_feature_usage: 2,
            trial_eligibility: true,
        }
    }
}

/// Offer settings (defaults as documented on each field).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OfferSettings {
    /// How long an offer runs, in hours, 1–720 (default 48).
    pub duration_hours: u32,
    /// Percent-off range per path `<lower>_to_<higher>`, within 1–100.
    pub discount_ranges: BTreeMap<String, Range>,
    /// Percent-off range of a path not in `discount_ranges` (default 20–30).
    pub default_discount: Range,
    /// Free months, 1–24 (default 1–3).
    pub free_months: Range,
    /// Amount off in minor units per path, at least 1.
    pub fixed_discount_minor: BTreeMap<String, Range>,
    /// Amount off of a path not in `fixed_discount_minor` (default 500–1000).
    pub default_fixed_discount_minor: Range,
    /// The tier ladder, lowest first: at least two distinct names of `a-z 0-9 _ -`.
    pub tiers: Vec<String>,
    pub eligibility: Eligibility,
    /// Code prefix, 1–8 of `A-Z 0-9` (default `TU`).
    pub code_prefix: String,
}

impl Default for OfferSettings {
    fn default() -> Self {
        let map = |items: [(&str, u32, u32); 3]| {
            items
                .into_iter()
                .map(|(k, min, max)| (k.to_string(), Range::new(min, max)))
                .collect()
        };
        OfferSettings {
            duration_hours: 48,
            discount_ranges: map([
                ("budget_to_mid", 20, 40),
                ("mid_to_professional", 25, 50),
                ("budget_to_professional", 30, 60),
            ]),
            default_discount: Range::new(20, 30),
            free_months: Range::new(1, 3),
            fixed_discount_minor: map([
                ("budget_to_mid", 500, 1500),
                ("mid_to_professional", 1000, 2500),
                ("budget_to_professional", 1500, 3000),
            ]),
            default_fixed_discount_minor: Range::new(500, 1000),
            tiers: ["free", "budget", "mid", "professional"]
                .map(String::from)
                .to_vec(),
            eligibility: Eligibility::default(),
            code_prefix: "TU".to_string(),
        }
    }
}

/// Collects field errors under a dotted prefix.
struct Problems<'a> {
    prefix: &'a str,
    list: Vec<FieldError>,
}

impl Problems<'_> {
    fn add(&mut self, field: impl std::fmt::Display, message: impl Into<String>) {
        let field = format!("{}.{field}", self.prefix);
        self.list.push(FieldError::new(field, message));
    }

    fn range(&mut self, field: impl std::fmt::Display, r: Range, hi: u32) {
        if r.min > r.max {
            self.add(
                field,
                format!("min ({}) must not exceed max ({})", r.min, r.max),
            );
        } else if r.min < 1 || r.max > hi {
            self.add(field, format!("min and max must lie in 1..={hi}"));
        }
    }
}

impl OfferSettings {
    /// Every problem of the settings, with dotted paths under `prefix`.
    pub fn validate(&self, prefix: &str) -> Vec<FieldError> {
        let mut p = Problems {
            prefix,
            list: Vec::new(),
        };
        if !(1..=720).contains(&self.duration_hours) {
            p.add("duration_hours", "must be 1..=720 hours");
        }
        if self.tiers.len() < 2 {
            p.add("tiers", "needs at least two tiers");
        }
        for (i, t) in self.tiers.iter().enumerate() {
            let ok = |b: u8| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-');
            if t.is_empty() || t.len() > 64 || !t.bytes().all(ok) || t.contains("_to_") {
                p.add(
                    format!("tiers.{i}"),
                    "must be 1-64 of a-z 0-9 _ - without \"_to_\"",
                );
            } else if self.tiers[..i].contains(t) {
                p.add(format!("tiers.{i}"), "duplicate tier");
            }
        }
        let maps = [
            ("discount_ranges", &self.discount_ranges, 100),
            ("fixed_discount_minor", &self.fixed_discount_minor, u32::MAX),
        ];
        for (name, ranges, hi) in maps {
            for (path, r) in ranges {
                if self.is_upgrade_path(path) {
                    p.range(format!("{name}.{path}"), *r, hi);
                } else {
                    p.add(
                        format!("{name}.{path}"),
                        "must be <lower>_to_<higher> of tiers",
                    );
                }
            }
        }
        p.range("default_discount", self.default_discount, 100);
        p.range("free_months", self.free_months, 24);
        let fixed = self.default_fixed_discount_minor;
        p.range("default_fixed_discount_minor", fixed, u32::MAX);
        if !(0.0..=1.0).contains(&self.eligibility.min_engagement_score) {
            p.add(
                "eligibility.min_engagement_score",
                "must be a number in [0, 1]",
            );
        }
        let c = &self.code_prefix;
        let upper = |b: u8| b.is_ascii_uppercase() || b.is_ascii_digit();
        if c.is_empty() || c.len() > 8 || !c.bytes().all(upper) {
            p.add("code_prefix", "must be 1-8 of A-Z and 0-9");
        }
        p.list
    }

    /// Position of `tier` on the ladder (0 = lowest).
    pub fn rank(&self, tier: &str) -> Option<usize> {
        self.tiers.iter().position(|t| t == tier)
    }

    fn is_upgrade_path(&self, path: &str) -> bool {
        let t = &self.tiers;
        let above = |i: usize, a: &String| t[i + 1..].iter().any(|b| path == format!("{a}_to_{b}"));
        t.iter().enumerate().any(|(i, a)| above(i, a))
    }

    /// The value range of `offer_type` on `path`; `None` for the feature types.
    pub fn range_for(&self, offer_type: OfferType, path: &str) -> Option<Range> {
        let get = |m: &BTreeMap<String, Range>, d: Range| Some(*m.get(path).unwrap_or(&d));
        let fixed = self.default_fixed_discount_minor;
        match offer_type {
            OfferType::PercentageDiscount => get(&self.discount_ranges, self.default_discount),
            OfferType::FixedDiscount => get(&self.fixed_discount_minor, fixed),
            OfferType::FreeMonths => Some(self.free_months),
            _ => None,
        }
    }
}

/// What the caller knows about the user when asking for an offer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EligibilityInput {
    pub engagement_score: f64,
    pub feature_usage: u64,
    /// True when the user is in a trial now or has never had one.
    pub trial_eligible: bool,
    pub current_tier: String,
    pub target_tier: String,
}

/// One failed eligibility rule: `code` is `unknown_tier`, `not_an_upgrade`, `low_engagement`,
/// `low_feature_usage` or `not_trial_eligible`; `value` is the user's figure and `required`
/// what the rule needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IneligibleReason {
    pub code: String,
    pub message: String,
    pub value: Value,
    pub required: Value,
}

/// Checks every eligibility rule; `Err` lists all that fail, in the documented order.
pub fn check_eligibility(
    i: &EligibilityInput,
    s: &OfferSettings,
) -> Result<(), Vec<IneligibleReason>> {
    let mut out = Vec::new();
    let mut fail = |code: &str, message: String, value: Value, required: Value| {
        let code = code.to_string();
        out.push(IneligibleReason {
            code,
            message,
            value,
            required,
        });
    };
    let tiers = json!(s.tiers);
    let (cur, tgt) = (s.rank(&i.current_tier), s.rank(&i.target_tier));
    for (tier, rank) in [(&i.current_tier, cur), (&i.target_tier, tgt)] {
        if rank.is_none() {
            let msg = format!("'{tier}' is not one of the tiers");
            fail("unknown_tier", msg, json!(tier), tiers.clone());
        }
    }
    if let (Some(c), Some(t)) = (cur, tgt) {
        if t <= c {
            let above = json!(s.tiers.get(c + 1..));
            let msg = format!("'{}' is not above '{}'", i.target_tier, i.current_tier);
            fail("not_an_upgrade", msg, json!(i.target_tier), above);
        }
    }
    let e = &s.eligibility;
    let (min_score, min_usage) = (e.min_engagement_score, e.min_feature_usage);
    // Written so that a NaN score fails.
    if !matches!(i.engagement_score.partial_cmp(&min_score), Some(o) if o.is_ge()) {
        let msg = format!("engagement score must be at least {min_score}");
        let score = json!(i.engagement_score);
        fail("low_engagement", msg, score, json!(min_score));
    }
    if i.feature_usage < min_usage {
        let msg = format!("at least {min_usage} features must have been used");
        let usage = json!(i.feature_usage);
        fail("low_feature_usage", msg, usage, json!(min_usage));
    }
    if s.eligibility.trial_eligibility && !i.trial_eligible {
        let msg = "offers are for users in a trial or who have not had one yet".to_string();
        fail("not_trial_eligible", msg, json!(false), json!(true));
    }
    if out.is_empty() {
        Ok(())
    } else {
        Err(out)
    }
}

/// How the offer's value is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Choice<'a> {
    /// The user's variant of an `offer_type` experiment, with its config.
    Variant {
        experiment: &'a str,
        variant: &'a str,
        config: &'a Value,
    },
    /// A stable point per user and salt (e.g. a campaign name).
    Deterministic { user_id: &'a str, salt: &'a str },
}

/// The terms of an offer. `discount_type` is `percentage`, `fixed_minor`, `free_months` or
/// `feature`; `chosen_by` is `{"source":"experiment","experiment":..,"variant":..}` or
/// `{"source":"deterministic","salt":..,"hash":"<16 hex digits>"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OfferTerms {
    pub offer_type: OfferType,
    pub title: String,
    pub description: String,
    pub discount_value: u32,
    pub discount_type: String,
    pub path: String,
    pub chosen_by: Value,
}

/// 64-bit FNV-1a over bytes.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[derive(Clone, Copy)]
enum Pick {
    Value(u32),
    Position(f64),
    Midpoint,
    Hash(u64),
}

fn read_config(config: &Value, e: &mut Vec<FieldError>) -> (Option<OfferType>, Pick) {
    let empty = serde_json::Map::new();
    let map = match config {
        Value::Null => &empty,
        Value::Object(m) => m,
        _ => {
            e.push(FieldError::new("config", "must be an object"));
            &empty
        }
    };
    // A key that is present but unusable reads as `Some(None)`.
    let kind = |v: &Value| v.as_str().and_then(OfferType::parse);
    let offer_type = map.get("offer_type").map(kind);
    let whole = |v: &Value| v.as_u64().and_then(|n| u32::try_from(n).ok());
    let value = map.get("discount_value").map(whole);
    let unit = |v: &Value| v.as_f64().filter(|p| (0.0..=1.0).contains(p));
    let position = map.get("position").map(unit);
    let names = OfferType::ALL.map(OfferType::as_str).join(", ");
    let checks = [
        (
            "offer_type",
            offer_type == Some(None),
            format!("must be one of {names}"),
        ),
        (
            "discount_value",
            value == Some(None),
            "must be a whole number".into(),
        ),
        (
            "position",
            position == Some(None),
            "must be a number in [0, 1]".into(),
        ),
    ];
    for (name, bad, message) in checks {
        if bad {
            e.push(FieldError::new(format!("config.{name}"), message));
        }
    }
    let pick = match (value, position) {
        (Some(_), Some(_)) => {
            e.push(FieldError::new(
                "config",
                "give discount_value or position, not both",
            ));
            Pick::Midpoint
        }
        (Some(Some(v)), None) => Pick::Value(v),
        (None, Some(Some(p))) => Pick::Position(p),
        _ => Pick::Midpoint,
    };
    (offer_type.flatten(), pick)
}

/// "mid_tier" -> "Mid Tier".
fn display_tier(tier: &str) -> String {
    let cap = |w: &str| {
        w.get(..1)
            .map(|f| f.to_uppercase() + &w[1..])
            .unwrap_or_default()
    };
    let words: Vec<String> = tier
        .split(['_', '-'])
        .filter(|w| !w.is_empty())
        .map(cap)
        .collect();
    words.join(" ")
}

fn texts(t: OfferType, v: u32, target: &str) -> (String, String) {
    let tt = display_tier(target);
    let m = if v == 1 { "month" } else { "months" };
    let title = match t {
        OfferType::PercentageDiscount => format!("{v}% off {tt}"),
        OfferType::FixedDiscount => format!("Save on {tt}"),
        OfferType::FreeMonths => format!("{v} free {m} of {tt}"),
        OfferType::FeatureUpgrade => format!("Unlock {tt}"),
        OfferType::BonusFeatures => format!("Bonus features with {tt}"),
        OfferType::EarlyAccess => format!("Early access with {tt}"),
    };
    let what = match t {
        OfferType::PercentageDiscount => format!("get {v}% off"),
        OfferType::FixedDiscount => "get a fixed amount off".to_string(),
        OfferType::FreeMonths => format!("get {v} {m} free"),
        OfferType::FeatureUpgrade => "unlock every feature".to_string(),
        OfferType::BonusFeatures => "get bonus features".to_string(),
        OfferType::EarlyAccess => "get early access to new features".to_string(),
    };
    let end = format!("when you upgrade to {tt} before the offer ends.");
    (title, format!("Limited-time offer: {what} {end}"))
}

/// The terms of an offer from `current_tier` to `target_tier`, chosen as documented in the
/// module; `Err` lists every problem (unknown tiers, not an upgrade, bad variant config).
pub fn terms(
    offer_type: Option<OfferType>,
    current_tier: &str,
    target_tier: &str,
    choice: Choice,
    s: &OfferSettings,
) -> Result<OfferTerms, Vec<FieldError>> {
    let mut errors = Vec::new();
    let (cur, tgt) = (s.rank(current_tier), s.rank(target_tier));
    for (field, rank) in [("current_tier", cur), ("target_tier", tgt)] {
        if rank.is_none() {
            let msg = format!("must be one of {}", s.tiers.join(", "));
            errors.push(FieldError::new(field, msg));
        }
    }
    if matches!((cur, tgt), (Some(c), Some(t)) if t <= c) {
        errors.push(FieldError::new("target_tier", "must be above current_tier"));
    }
    let path = format!("{current_tier}_to_{target_tier}");
    let (ty, pick, chosen_by) = match choice {
        Choice::Variant {
            experiment,
            variant,
            config,
        } => {
            let (cfg_type, pick) = read_config(config, &mut errors);
            let ty = cfg_type
                .or(offer_type)
                .unwrap_or(OfferType::PercentageDiscount);
            let by = json!({"source": "experiment", "experiment": experiment, "variant": variant});
            (ty, pick, by)
        }
        Choice::Deterministic { user_id, salt } => {
            let h = fnv1a64(format!("{user_id}:{salt}").as_bytes());
            let by = json!({"source": "deterministic", "salt": salt, "hash": format!("{h:016x}")});
            let ty = offer_type.unwrap_or(OfferType::PercentageDiscount);
            (ty, Pick::Hash(h), by)
        }
    };
    let name = ty.as_str();
    let value = match (s.range_for(ty, &path), pick) {
        (None, Pick::Value(_) | Pick::Position(_)) => {
            let is_value = matches!(pick, Pick::Value(_));
            let field = if is_value {
                "discount_value"
            } else {
                "position"
            };
            let msg = format!("{name} offers carry no discount value");
            errors.push(FieldError::new(format!("config.{field}"), msg));
            0
        }
        (None, _) => 0,
        (Some(r), Pick::Value(v)) => {
            if !r.contains(v) {
                let msg = format!("must lie in {}..={} for {name} on {path}", r.min, r.max);
                errors.push(FieldError::new("config.discount_value", msg));
            }
            v
        }
        (Some(r), Pick::Position(p)) => position_value(r, p),
        (Some(r), Pick::Midpoint) => position_value(r, 0.5),
        (Some(r), Pick::Hash(h)) => r.min + u32::try_from(h % r.len()).unwrap_or(0),
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    let (title, description) = texts(ty, value, target_tier);
    let discount_type = ty.discount_type().to_string();
    let (offer_type, discount_value) = (ty, value);
    Ok(OfferTerms {
        offer_type,
        title,
        description,
        discount_value,
        discount_type,
        path,
        chosen_by,
    })
}

/// `min + round(p × (max − min))`, halves rounding up.
fn position_value(r: Range, p: f64) -> u32 {
    let span = r.max.saturating_sub(r.min);
    let offset = (f64::from(span) * p.clamp(0.0, 1.0)).round() as u32;
    r.min + offset.min(span)
}

/// Crockford base32: digits and letters without I, L, O, U.
const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// `PREFIX-XXXX-XXXX-XXXX-XXXX`: the (upper-cased) prefix and 80 bits of `entropy` in
/// Crockford base32. The caller supplies OS randomness and retries on a collision.
pub fn offer_code(prefix: &str, entropy: [u8; 10]) -> String {
    let n = entropy
        .iter()
        .fold(0u128, |acc, b| (acc << 8) | u128::from(*b));
    let mut code = prefix.to_ascii_uppercase();
    for i in 0..16 {
        if i % 4 == 0 {
            code.push('-');
        }
        code.push(char::from(CROCKFORD[((n >> (75 - 5 * i)) & 31) as usize]));
    }
    code
}

/// The canonical form of a typed code, or `None` when it cannot be one (see module docs).
pub fn parse_code(s: &str) -> Option<String> {
    if s.len() > 64 {
        return None;
    }
    let keep = |c: &char| !c.is_whitespace() && *c != '-';
    let chars: Vec<char> = s
        .chars()
        .filter(keep)
        .map(|c| c.to_ascii_uppercase())
        .collect();
    let (prefix, body) = chars.split_at(chars.len().checked_sub(16)?);
    if prefix.is_empty() || prefix.len() > 8 || !prefix.iter().all(char::is_ascii_alphanumeric) {
        return None;
    }
    let mut canon: String = prefix.iter().collect();
    for (i, c) in body.iter().enumerate() {
        let c = match c {
            'I' | 'L' => '1',
            'O' => '0',
            c if c.is_ascii() && CROCKFORD.contains(&(*c as u8)) => *c,
            _ => return None,
        };
        if i % 4 == 0 {
            canon.push('-');
        }
        canon.push(c);
    }
    Some(canon)
}

fn one() -> u32 {
    1
}

/// An offer made to one user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Offer {
    pub code: String,
    pub user_id: String,
    pub terms: OfferTerms,
    pub current_tier: String,
    pub target_tier: String,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    #[serde(default = "one")]
    pub usage_limit: u32,
    #[serde(default)]
    pub redemptions: u32,
    #[serde(default)]
    pub viewed_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub redeemed_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// Where an offer stands at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OfferState {
    Scheduled,
    Active,
    Redeemed,
    Expired,
}

impl Offer {
    /// A new offer for `user_id` starting at `now`, ending `duration_hours` later, redeemable
    /// once; the tiers are taken from the request the terms were made for.
    pub fn new(
        code: String,
        user_id: &str,
        terms: OfferTerms,
        tiers: (&str, &str),
        now: DateTime<Utc>,
        s: &OfferSettings,
    ) -> Offer {
        Offer {
            code,
            user_id: user_id.to_string(),
            terms,
            current_tier: tiers.0.to_string(),
            target_tier: tiers.1.to_string(),
            starts_at: now,
            ends_at: now + Duration::hours(i64::from(s.duration_hours)),
            usage_limit: 1,
            redemptions: 0,
            viewed_at: None,
            redeemed_at: None,
            created_at: now,
        }
    }

    /// `redeemed` once the limit is reached (even after the end), else `expired` from
    /// `ends_at`, `scheduled` before `starts_at`, otherwise `active`.
    pub fn state(&self, now: DateTime<Utc>) -> OfferState {
        if self.redemptions >= self.usage_limit {
            OfferState::Redeemed
        } else if self.ends_at <= now {
            OfferState::Expired
        } else if now < self.starts_at {
            OfferState::Scheduled
        } else {
            OfferState::Active
        }
    }
}

/// Why an offer cannot be redeemed now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedeemError {
    #[error("this offer belongs to another user")]
    NotYours,
    #[error("this offer starts at {starts_at}")]
    NotStarted { starts_at: DateTime<Utc> },
    #[error("this offer ended at {ended_at}")]
    Expired { ended_at: DateTime<Utc> },
    #[error("this offer has already been redeemed")]
    AlreadyRedeemed { redeemed_at: Option<DateTime<Utc>> },
}

impl RedeemError {
    /// HTTP status: 403, 409, 410, 409.
    pub fn status(&self) -> u16 {
        match self {
            RedeemError::NotYours => 403,
            RedeemError::NotStarted { .. } | RedeemError::AlreadyRedeemed { .. } => 409,
            RedeemError::Expired { .. } => 410,
        }
    }

    /// Stable error code: `offer_not_yours`, `offer_not_started`, `offer_expired`,
    /// `offer_already_redeemed`.
    pub fn code(&self) -> &'static str {
        match self {
            RedeemError::NotYours => "offer_not_yours",
            RedeemError::NotStarted { .. } => "offer_not_started",
            RedeemError::Expired { .. } => "offer_expired",
            RedeemError::AlreadyRedeemed { .. } => "offer_already_redeemed",
        }
    }
}

/// Whether `user_id` (or an admin/service acting for the owner) may redeem `o` at `now`.
pub fn check_redeem(
    o: &Offer,
    user_id: &str,
    is_admin_or_service: bool,
    now: DateTime<Utc>,
) -> Result<(), RedeemError> {
    let (starts_at, ended_at, redeemed_at) = (o.starts_at, o.ends_at, o.redeemed_at);
    if !is_admin_or_service && o.user_id != user_id {
        Err(RedeemError::NotYours)
    } else if now < starts_at {
        Err(RedeemError::NotStarted { starts_at })
    } else if ended_at <= now {
        Err(RedeemError::Expired { ended_at })
    } else if o.redemptions >= o.usage_limit {
        Err(RedeemError::AlreadyRedeemed { redeemed_at })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    type Terms = Result<OfferTerms, Vec<FieldError>>;

    fn input(score: f64, usage: u64, trial: bool, cur: &str, tgt: &str) -> EligibilityInput {
        EligibilityInput {
            engagement_score: score,
            feature_usage: usage,
            trial_eligible: trial,
            current_tier: cur.to_string(),
            target_tier: tgt.to_string(),
        }
    }

    /// The eligibility failure codes of a user on the default settings.
    fn elig(score: f64, usage: u64, trial: bool, cur: &str, tgt: &str) -> Vec<String> {
        let r = check_eligibility(
            &input(score, usage, trial, cur, tgt),
            &OfferSettings::default(),
        );
        let reasons = r.err().unwrap_or_default();
        reasons.into_iter().map(|r| r.code).collect()
    }

    fn det(ty: Option<OfferType>, cur: &str, tgt: &str, user: &str) -> Terms {
        let choice = Choice::Deterministic {
            user_id: user,
            salt: "spring",
        };
        terms(ty, cur, tgt, choice, &OfferSettings::default())
    }

    fn var(ty: Option<OfferType>, cur: &str, tgt: &str, config: Value) -> Terms {
        let choice = Choice::Variant {
            experiment: "offer-test",
            variant: "b",
            config: &config,
        };
        terms(ty, cur, tgt, choice, &OfferSettings::default())
    }

    fn value(t: Terms) -> u32 {
        t.unwrap().discount_value
    }

    fn fields(t: Terms) -> Vec<String> {
        t.unwrap_err().into_iter().map(|e| e.field).collect()
    }

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap()
    }

    #[test]
    fn the_default_settings_are_valid_and_bad_ones_report_every_field() {
        assert!(OfferSettings::default().validate("offers").is_empty());
        let mut bad = OfferSettings {
            duration_hours: 0,
            code_prefix: "tu".into(),
            ..Default::default()
        };
        bad.discount_ranges
            .insert("mid_to_budget".into(), Range::new(1, 2));
        bad.discount_ranges
            .insert("budget_to_mid".into(), Range::new(50, 40));
        bad.default_discount = Range::new(10, 101);
        bad.free_months = Range::new(0, 3);
        bad.tiers.extend(["Mid".to_string(), "mid".to_string()]);
        bad.eligibility.min_engagement_score = f64::NAN;
        let fields: Vec<String> = bad.validate("o").into_iter().map(|e| e.field).collect();
        let expected = [
            "o.duration_hours",
            "o.tiers.4",
            "o.tiers.5",
            "o.discount_ranges.budget_to_mid",
            "o.discount_ranges.mid_to_budget",
            "o.default_discount",
            "o.free_months",
            "o.eligibility.min_engagement_score",
            "o.code_prefix",
        ];
        assert_eq!(fields, expected);
    }

    #[test]
    fn settings_reject_unknown_fields_and_fill_defaults() {
        let s: OfferSettings = serde_json::from_value(json!({"duration_hours": 24})).unwrap();
        assert_eq!((s.duration_hours, s.free_months), (24, Range::new(1, 3)));
        assert!(serde_json::from_value::<OfferSettings>(json!({"duration": 24})).is_err());
        assert_eq!(
            serde_json::to_value(OfferType::FreeMonths).unwrap(),
            json!("free_months")
        );
        assert_eq!(
            OfferType::parse("early_access"),
            Some(OfferType::EarlyAccess)
        );
        assert_eq!(OfferType::parse("Early_Access"), None);
    }

    #[test]
    fn a_user_meeting_every_rule_exactly_at_its_threshold_is_eligible() {
        assert!(elig(0.5, 2, true, "budget", "mid").is_empty());
    }

    #[test]
    fn each_rule_fails_alone_just_below_its_threshold() {
        assert_eq!(elig(0.49, 2, true, "budget", "mid"), ["low_engagement"]);
        assert_eq!(elig(f64::NAN, 2, true, "budget", "mid"), ["low_engagement"]);
        assert_eq!(elig(0.9, 1, true, "budget", "mid"), ["low_feature_usage"]);
        assert_eq!(elig(0.9, 2, false, "budget", "mid"), ["not_trial_eligible"]);
        assert_eq!(elig(0.9, 2, true, "mid", "budget"), ["not_an_upgrade"]);
        assert_eq!(elig(0.9, 2, true, "mid", "mid"), ["not_an_upgrade"]);
        assert_eq!(elig(0.9, 2, true, "gold", "mid"), ["unknown_tier"]);
    }

    #[test]
    fn a_reason_records_the_users_figure_and_what_the_rule_requires() {
        let s = OfferSettings::default();
        let r = check_eligibility(&input(0.4, 1, true, "mid", "budget"), &s).unwrap_err();
        let got: Vec<_> = r
            .iter()
            .map(|r| (r.code.as_str(), &r.value, &r.required))
            .collect();
        assert_eq!(
            got,
            [
                ("not_an_upgrade", &json!("budget"), &json!(["professional"])),
                ("low_engagement", &json!(0.4), &json!(0.5)),
                ("low_feature_usage", &json!(1), &json!(2)),
            ]
        );
        assert_eq!(r[1].message, "engagement score must be at least 0.5");
    }

    #[test]
    fn trial_eligibility_off_lets_former_payers_through() {
        let mut s = OfferSettings::default();
        s.eligibility.trial_eligibility = false;
        assert_eq!(
            check_eligibility(&input(0.9, 2, false, "budget", "mid"), &s),
            Ok(())
        );
    }

    #[test]
    fn every_failing_rule_is_reported_in_order() {
        let all = [
            "unknown_tier",
            "unknown_tier",
            "low_engagement",
            "low_feature_usage",
            "not_trial_eligible",
        ];
        assert_eq!(elig(0.1, 0, false, "gold", "mid_tier"), all);
        assert_eq!(
            elig(0.1, 5, true, "professional", "budget"),
            ["not_an_upgrade", "low_engagement"]
        );
    }

    #[test]
    fn fnv1a64_matches_the_published_test_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn deterministic_terms_follow_the_hash_formula_and_repeat_for_the_same_user() {
        let a = det(None, "budget", "mid", "u-42").unwrap();
        let h = fnv1a64(b"u-42:spring");
        assert_eq!(a.discount_value, 20 + (h % 21) as u32);
        let by = json!({"source": "deterministic", "salt": "spring", "hash": format!("{h:016x}")});
        assert_eq!(a.chosen_by, by);
        assert_eq!(a, det(None, "budget", "mid", "u-42").unwrap());
        assert_eq!(
            (a.offer_type, a.discount_type.as_str()),
            (OfferType::PercentageDiscount, "percentage")
        );
        assert_eq!(a.path, "budget_to_mid");
        assert_eq!(a.title, format!("{}% off Mid", a.discount_value));
    }

    #[test]
    fn deterministic_values_cover_the_whole_range_about_evenly_across_1000_users() {
        let mut counts = BTreeMap::new();
        for i in 0..1000 {
            *counts
                .entry(value(det(None, "budget", "mid", &format!("user-{i}"))))
                .or_insert(0) += 1;
        }
        assert_eq!(
            counts.keys().copied().collect::<Vec<u32>>(),
            (20..=40).collect::<Vec<_>>()
        );
        assert!(counts.values().all(|c| (25..=75).contains(c)), "{counts:?}");
    }

    #[test]
    fn a_variant_discount_value_inside_the_range_is_used_as_is() {
        let cfg = json!({"offer_type": "percentage_discount", "discount_value": 35, "copy": "x"});
        let t = var(None, "budget", "mid", cfg).unwrap();
        assert_eq!(t.discount_value, 35);
        let by = json!({"source": "experiment", "experiment": "offer-test", "variant": "b"});
        assert_eq!(t.chosen_by, by);
    }

    #[test]
    fn a_variant_position_maps_onto_the_range_and_defaults_to_the_midpoint() {
        let v = |cfg: Value| value(var(None, "mid", "professional", cfg));
        assert_eq!(v(json!({"position": 0})), 25);
        assert_eq!(v(json!({"position": 1.0})), 50);
        assert_eq!(v(json!({"position": 0.5})), 38); // 25 + round(12.5)
        assert_eq!(v(json!({"position": 0.2})), 30);
        assert_eq!(v(json!({})), 38);
        assert_eq!(v(Value::Null), 38);
    }

    #[test]
    fn the_variant_offer_type_wins_over_the_requested_one() {
        let cfg = json!({"offer_type": "free_months", "discount_value": 3});
        let t = var(Some(OfferType::PercentageDiscount), "budget", "mid", cfg).unwrap();
        assert_eq!((t.offer_type, t.discount_value), (OfferType::FreeMonths, 3));
        assert_eq!(
            (t.discount_type.as_str(), t.title.as_str()),
            ("free_months", "3 free months of Mid")
        );
        let t = var(
            Some(OfferType::FixedDiscount),
            "budget",
            "mid",
            json!({"position": 1}),
        )
        .unwrap();
        assert_eq!(
            (t.offer_type, t.discount_value),
            (OfferType::FixedDiscount, 1500)
        );
    }

    #[test]
    fn bad_variant_configs_are_field_errors() {
        let f = |cfg: Value| fields(var(None, "budget", "mid", cfg));
        let e = var(None, "budget", "mid", json!({"discount_value": 41})).unwrap_err();
        let msg = "must lie in 20..=40 for percentage_discount on budget_to_mid";
        assert_eq!(e, [FieldError::new("config.discount_value", msg)]);
        assert_eq!(f(json!({"discount_value": 19})), ["config.discount_value"]);
        assert_eq!(
            f(json!({"discount_value": "30"})),
            ["config.discount_value"]
        );
        assert_eq!(
            f(json!({"discount_value": 30.5})),
            ["config.discount_value"]
        );
        assert_eq!(f(json!({"position": 1.5})), ["config.position"]);
        assert_eq!(f(json!({"position": "half"})), ["config.position"]);
        assert_eq!(
            f(json!({"position": 0.5, "discount_value": 30})),
            ["config"]
        );
        assert_eq!(f(json!({"offer_type": "bogo"})), ["config.offer_type"]);
        assert_eq!(f(json!(["free_months"])), ["config"]);
        assert_eq!(
            f(json!({"offer_type": "early_access", "position": 1})),
            ["config.position"]
        );
        assert_eq!(
            f(json!({"offer_type": "free_months", "discount_value": 4})),
            ["config.discount_value"]
        );
    }

    #[test]
    fn free_months_use_their_own_range_on_any_path() {
        let ty = Some(OfferType::FreeMonths);
        for i in 0..50 {
            assert!((1..=3).contains(&value(det(ty, "free", "professional", &format!("u{i}")))));
        }
        let one = var(ty, "free", "mid", json!({"position": 0})).unwrap();
        assert_eq!(one.title, "1 free month of Mid");
        let text =
            "Limited-time offer: get 1 month free when you upgrade to Mid before the offer ends.";
        assert_eq!(one.description, text);
    }

    #[test]
    fn a_path_without_a_range_uses_the_default_ranges() {
        let v = |ty, p: f64| value(var(Some(ty), "free", "mid", json!({"position": p})));
        let pct = OfferType::PercentageDiscount;
        assert_eq!((v(pct, 0.0), v(pct, 1.0)), (20, 30));
        let fixed = OfferType::FixedDiscount;
        assert_eq!((v(fixed, 0.0), v(fixed, 1.0)), (500, 1000));
    }

    #[test]
    fn feature_offers_carry_no_value_and_name_the_target_tier() {
        for ty in [
            OfferType::FeatureUpgrade,
            OfferType::BonusFeatures,
            OfferType::EarlyAccess,
        ] {
            let t = det(Some(ty), "budget", "professional", "u1").unwrap();
            assert_eq!((t.discount_value, t.discount_type.as_str()), (0, "feature"));
            assert!(
                t.description.contains("upgrade to Professional"),
                "{}",
                t.description
            );
        }
        let t = det(Some(OfferType::EarlyAccess), "budget", "mid", "u1").unwrap();
        let text = "Limited-time offer: get early access to new features when you upgrade to Mid before the offer ends.";
        assert_eq!(
            (t.title.as_str(), t.description.as_str()),
            ("Early access with Mid", text)
        );
        assert_eq!(display_tier("mid_tier"), "Mid Tier");
    }

    #[test]
    fn terms_reject_unknown_tiers_and_downgrades() {
        assert_eq!(
            fields(det(None, "gold", "platinum", "u")),
            ["current_tier", "target_tier"]
        );
        assert_eq!(
            fields(det(None, "professional", "mid", "u")),
            ["target_tier"]
        );
        assert_eq!(fields(det(None, "mid", "mid", "u")), ["target_tier"]);
    }

    #[test]
    fn codes_are_grouped_crockford_base32_of_the_entropy() {
        assert_eq!(offer_code("TU", [0; 10]), "TU-0000-0000-0000-0000");
        assert_eq!(offer_code("tu", [0xff; 10]), "TU-ZZZZ-ZZZZ-ZZZZ-ZZZZ");
        let mut last = [0; 10];
        last[9] = 1;
        assert_eq!(offer_code("TU", last), "TU-0000-0000-0000-0001");
        // 0x84 0x21 = 10000 10000 10000 1 ...: four symbols of 16 = 'G'.
        let mut g = [0; 10];
        (g[0], g[1]) = (0x84, 0x21);
        assert_eq!(offer_code("TU", g), "TU-GGGG-0000-0000-0000");
    }

    #[test]
    fn parsing_normalises_case_separators_and_ambiguous_letters() {
        let code = offer_code(
            "TU",
            [0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x0f, 0xed],
        );
        assert_eq!(parse_code(&code), Some(code.clone()));
        assert_eq!(parse_code(&code.to_lowercase()), Some(code.clone()));
        let canon = Some("TU-ABCD-EFGH-0123-4567".to_string());
        assert_eq!(parse_code(" tu abcd efgh 0123 4567 "), canon);
        assert_eq!(parse_code("TUABCDEFGH01234567"), canon);
        assert_eq!(
            parse_code("TU-oOiI-lL00-1111-2222"),
            Some("TU-0011-1100-1111-2222".into())
        );
    }

    #[test]
    fn parsing_rejects_bad_lengths_characters_and_missing_prefixes() {
        assert_eq!(parse_code("TU-ABCD-EFGH-0123-456"), None);
        assert_eq!(parse_code("ABCD-EFGH-0123-4567"), None);
        assert_eq!(parse_code("TU-ABCD-EFGH-0123-456U"), None);
        assert_eq!(parse_code("TU-ABCD-EFGH-0123-456*"), None);
        assert_eq!(parse_code("TU-ABCD-EFGH-0123-456é"), None);
        assert_eq!(parse_code("TOOLONGPREFIX-ABCD-EFGH-0123-4567"), None);
        assert_eq!(parse_code(""), None);
    }

    fn offer() -> Offer {
        let t = det(None, "budget", "mid", "alice").unwrap();
        let s = OfferSettings::default();
        Offer::new(
            "TU-0000-0000-0000-0001".into(),
            "alice",
            t,
            ("budget", "mid"),
            t0(),
            &s,
        )
    }

    #[test]
    fn a_new_offer_runs_for_the_configured_hours_and_is_redeemable_once() {
        let o = offer();
        assert_eq!((o.starts_at, o.ends_at), (t0(), t0() + Duration::hours(48)));
        assert_eq!((o.usage_limit, o.redemptions), (1, 0));
        assert_eq!(
            (o.state(t0()), o.state(o.ends_at)),
            (OfferState::Active, OfferState::Expired)
        );
        let back: Offer = serde_json::from_value(serde_json::to_value(&o).unwrap()).unwrap();
        assert_eq!(back, o);
    }

    #[test]
    fn redeeming_another_users_offer_is_refused_before_anything_else() {
        let o = Offer {
            redemptions: 1,
            ..offer()
        };
        let late = o.ends_at + Duration::hours(1);
        assert_eq!(
            check_redeem(&o, "bob", false, late),
            Err(RedeemError::NotYours)
        );
        assert_eq!(RedeemError::NotYours.status(), 403);
        let e = check_redeem(&o, "bob", true, late).unwrap_err();
        assert_eq!((e.code(), e.status()), ("offer_expired", 410));
    }

    #[test]
    fn an_offer_ending_exactly_now_is_expired_and_one_second_earlier_is_not() {
        let o = offer();
        let expired = Err(RedeemError::Expired {
            ended_at: o.ends_at,
        });
        assert_eq!(check_redeem(&o, "alice", false, o.ends_at), expired);
        assert_eq!(
            check_redeem(&o, "alice", false, o.ends_at - Duration::seconds(1)),
            Ok(())
        );
        assert_eq!(check_redeem(&o, "alice", false, o.starts_at), Ok(()));
    }

    #[test]
    fn an_offer_before_its_start_or_at_its_limit_is_refused() {
        let o = offer();
        let early = o.starts_at - Duration::seconds(1);
        let not_started = Err(RedeemError::NotStarted {
            starts_at: o.starts_at,
        });
        assert_eq!(check_redeem(&o, "alice", false, early), not_started);
        assert_eq!(o.state(early), OfferState::Scheduled);
        let mut o = Offer {
            redemptions: 1,
            redeemed_at: Some(t0()),
            ..o
        };
        let e = check_redeem(&o, "alice", false, t0()).unwrap_err();
        assert_eq!(
            e,
            RedeemError::AlreadyRedeemed {
                redeemed_at: Some(t0())
            }
        );
        assert_eq!((e.status(), e.code()), (409, "offer_already_redeemed"));
        assert_eq!(o.state(o.ends_at), OfferState::Redeemed);
        o.usage_limit = 2;
        assert_eq!(check_redeem(&o, "alice", false, t0()), Ok(()));
    }
}
