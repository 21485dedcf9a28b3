//! Smart trial reminders: which reminders a trial gets, when each may leave, and which one
//! leaves now. Pure functions of their inputs (`now` is always a parameter).
//!
//! # Planning ([`plan`])
//! - **Trial expiry**: one reminder per offset `o` (hours; `offsets_override` of a running
//!   `timing` experiment when it passes [`validate_offsets`], else `expiry_offsets_hours`),
//!   originally due at `ends_at − o h`. Id `"{trial_id}:trial_expiry:{o}h"`.
//! - **Behavioural** (at most one of each type per trial, id `"{trial_id}:{type}"`), planned
//!   only when its signal holds at `now`, due at `now + delay`:
//!   - `feature_usage` when `usage_ratio < usage_levels.high`; its level is `low` when
//!     `ratio < low`, `medium` when `ratio < medium`, else `high` (a negative ratio counts as
//!     0). The level picks the delay (`feature_usage_low|medium|high`) and the text
//!     (`usage_level_templates[level]`, falling back to `templates.feature_usage`).
//!   - `engagement_drop` when `earlier > 0` and `current ≤ engagement_drop_ratio × earlier`.
//!   - `value_demonstration` when `value_shown ≥ value_threshold`.
//!   - `goal_alignment` when `goal_alignment ≥ goal_alignment_threshold`.
//!
//!   Unknown (`None`) or non-finite signals never hold.
//! - **Quiet hours** `[start, end)` in the user's timezone (`timezone`, else
//!   `default_timezone`; `start == end` disables them; `start > end` wraps midnight): a due
//!   time inside them moves to the end of that quiet period. Local times are resolved with
//!   the tz database: an ambiguous time takes the first instant after the moment being moved,
//!   a nonexistent one (DST gap) is read with the offset in force before the gap, i.e. it
//!   moves forward by the gap's length (02:30 on a spring-forward day is 03:30).
//! - **Skipped at planning** (returned with status `skipped` so that they are not planned
//!   again): a trial-expiry reminder originally due `≤ now` (`already_past`); a behavioural
//!   one originally due `≥ ends_at` (`trial_ended`); one moved by quiet hours to `≥ ends_at`
//!   (`quiet_hours_past_trial_end`).
//! - **Priority** ([`priority`]): base `trial_expiry` 10, `value_demonstration` 8,
//!   `engagement_drop` 6, `feature_usage` 4, `goal_alignment` 3; `+2` for a high-value user
//!   (`value_shown ≥ high_value_threshold`), `+1` when the engagement drop holds, `+3` when
//!   the due time is within 24 h of the trial end (`ends_at − due_at ≤ 24 h`); at most 10.
//! - **Text**: the messaging experiment's template for the type (when valid), else the
//!   settings' (the built-in default when missing or invalid). Variables fixed at planning:
//!   `plan`, `tier`, `feature` (`least_used_feature` for `feature_usage`, `most_used_feature`
//!   otherwise, `feature_fallback` when unknown) and `value_used` (`round(100 ×
//!   clamp(value_shown, 0, 1))` followed by `%`, `0%` when unknown). `hours_left` is added at
//!   send ([`message_variables`]): whole hours from the send to the trial end, rounded down,
//!   never below 0.
//! - The experiment tag is recorded on the reminders an override shaped (expiry reminders
//!   for a timing override, reminders whose template came from the messaging override).
//! - Planning is idempotent: ids already in `existing` (any status) are never returned.
//!
//! # Dispatch ([`dispatch`])
//! Of the trial's `planned` reminders, those with `due_at ≤ now` are decided in the order
//! priority desc, `due_at` asc, id asc; the first rule that applies wins:
//! 1. `now ≥ trial_ends_at` → skip `trial_ended`.
//! 2. `sent_this_trial` (plus sends decided earlier in the call) `≥ max_per_trial` → skip
//!    `per_trial_cap`.
//! 3. `now` in quiet hours → defer to their end (`quiet_hours`).
//! 4. The last reminder sent (ledger or this call) less than `cooldown_hours` ago → defer to
//!    `last + cooldown` (`cooldown`).
//! 5. `sent_by_day[local date of now]` (plus sends of this call) `≥ daily_cap` → defer to the
//!    next local midnight (`daily_cap`).
//! 6. Reservation: `remaining = max_per_trial − sent` is `≤` the number of other open
//!    reminders of strictly higher priority that could still be sent before the trial end if
//!    this one were sent now → skip `per_trial_cap`. That number is counted greedily in
//!    due order: each is sent at `max(its due_at, previous send + cooldown)` (the first
//!    previous send being `now`) and counts when that is before `trial_ends_at` (quiet hours
//!    and the daily cap are ignored, which errs towards the higher priorities).
//! 7. Look-ahead: an open reminder of strictly higher priority due before `now + cooldown`
//!    and before the trial end → defer to the earliest such `due_at + cooldown`
//!    (`higher_priority_due`).
//! 8. Otherwise send.
//!
//! Every deferral target is then moved out of quiet hours; a target `≥ trial_ends_at` turns
//! the deferral into a skip (`quiet_hours_past_trial_end`, `cooldown`, `daily_cap`, and
//! `cooldown` for the look-ahead). "Open" means planned and not sent or skipped earlier in
//! the same call (a deferral earlier in the call counts with its new due time).
//!
//! # Applying decisions
//! [`apply`] turns a send into `status = sent`, `sent_at = now` and the rendered `message`
//! ([`message_variables`]), a deferral into `due_at = until` with its `reason`, a skip into
//! `status = skipped` with its `reason`; [`Ledger::record_send`] counts a send (last send,
//! local day, trial). [`refresh_variables`] recomputes the planning variables of reminders
//! still planned when the signals change; [`cancel_pending`] cancels them when the trial
//! converts (`converted`) or is canceled (`canceled`).
//!
//! # Templates ([`render`])
//! Placeholders `{feature}`, `{hours_left}`, `{value_used}`, `{plan}`, `{tier}`; `{{` and
//! `}}` write literal braces. Any other placeholder, an unterminated `{` or a lone `}` is an
//! error, as is a placeholder without a value.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{
    DateTime, Duration, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeZone,
    Timelike, Utc,
};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::events::FieldError;

/// The placeholders a template may use.
pub const PLACEHOLDERS: [&str; 5] = ["feature", "hours_left", "value_used", "plan", "tier"];
/// Longest template accepted, in characters.
pub const MAX_TEMPLATE_CHARS: usize = 1000;
/// Most trial-expiry offsets.
pub const MAX_OFFSETS: usize = 10;
/// Largest trial-expiry offset and behavioural delay, in hours (30 days).
pub const MAX_HOURS: u32 = 720;

/// The machine codes stored in [`Reminder::reason`] and carried by [`Decision`]s.
pub mod reason {
    /// Moved by quiet hours to or past the trial end.
    pub const QUIET_HOURS_PAST_TRIAL_END: &str = "quiet_hours_past_trial_end";
    /// Deferred to the end of quiet hours.
    pub const QUIET_HOURS: &str = "quiet_hours";
    /// Blocked by the cooldown (deferred, or skipped when the deferral reaches the trial end).
    pub const COOLDOWN: &str = "cooldown";
    /// Blocked by the user's daily cap.
    pub const DAILY_CAP: &str = "daily_cap";
    /// The trial's cap is reached or reserved for higher priorities.
    pub const PER_TRIAL_CAP: &str = "per_trial_cap";
    /// Deferred so a higher-priority reminder due soon is not blocked by the cooldown.
    pub const HIGHER_PRIORITY_DUE: &str = "higher_priority_due";
    /// The trial is over (or a behavioural reminder would be due after it).
    pub const TRIAL_ENDED: &str = "trial_ended";
    /// A trial-expiry time that had already passed at planning.
    pub const ALREADY_PAST: &str = "already_past";
    /// Cancelled because the user converted.
    pub const CONVERTED: &str = "converted";
    /// Cancelled because the trial was canceled.
    pub const CANCELED: &str = "canceled";
}

/// What a reminder is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReminderType {
    /// Hours before the trial ends.
    TrialExpiry,
    /// The user has used less than expected (`usage_ratio < usage_levels.high`).
    FeatureUsage,
    /// The trial has already shown the user value.
    ValueDemonstration,
    /// The user's activity dropped.
    EngagementDrop,
    /// The product fits the user's goals.
    GoalAlignment,
}

impl ReminderType {
    /// Every type, in declaration order.
    pub const ALL: [ReminderType; 5] = [
        ReminderType::TrialExpiry,
        ReminderType::FeatureUsage,
        ReminderType::ValueDemonstration,
        ReminderType::EngagementDrop,
        ReminderType::GoalAlignment,
    ];

    /// The snake_case name (as serialized).
    pub fn as_str(self) -> &'static str {
        match self {
            ReminderType::TrialExpiry => "trial_expiry",
            ReminderType::FeatureUsage => "feature_usage",
            ReminderType::ValueDemonstration => "value_demonstration",
            ReminderType::EngagementDrop => "engagement_drop",
            ReminderType::GoalAlignment => "goal_alignment",
        }
    }

    /// The type named `s` (snake_case), if any.
    pub fn parse(s: &str) -> Option<ReminderType> {
        ReminderType::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// Priority before adjustments.
    pub fn base_priority(self) -> u8 {
        match self {
            ReminderType::TrialExpiry => 10,
            ReminderType::ValueDemonstration => 8,
            ReminderType::EngagementDrop => 6,
            ReminderType::FeatureUsage => 4,
            ReminderType::GoalAlignment => 3,
        }
    }

    /// The built-in template.
    pub fn default_template(self) -> &'static str {
        match self {
            ReminderType::TrialExpiry => {
                "Your {plan} trial ends in {hours_left} hours. Keep {feature} by upgrading today."
            }
            ReminderType::FeatureUsage => {
                "Have you tried {feature} yet? It is included in your {plan} trial."
            }
            ReminderType::ValueDemonstration => {
                "You have already used {value_used} of what {plan} offers. Upgrade to keep {feature}."
            }
            ReminderType::EngagementDrop => {
                "We miss you! {feature} is waiting, and your {plan} trial ends in {hours_left} hours."
            }
            ReminderType::GoalAlignment => {
                "{feature} fits your goals. Upgrade to {plan} to keep making progress."
            }
        }
    }
}

/// How far a user's feature usage is from the expected use (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageLevel {
    /// `ratio < usage_levels.low`.
    Low,
    /// `low ≤ ratio < medium`.
    Medium,
    /// `medium ≤ ratio < high`.
    High,
}

impl UsageLevel {
    /// Every level, lowest first.
    pub const ALL: [UsageLevel; 3] = [UsageLevel::Low, UsageLevel::Medium, UsageLevel::High];

    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            UsageLevel::Low => "low",
            UsageLevel::Medium => "medium",
            UsageLevel::High => "high",
        }
    }

    /// The built-in text of a `feature_usage` reminder at this level.
    pub fn default_template(self) -> &'static str {
        match self {
            UsageLevel::Low => {
                "You have barely tried {feature} yet. Give it a go while your {plan} trial lasts."
            }
            UsageLevel::Medium => {
                "You are getting started with {feature}. There is more to discover in your {plan} trial."
            }
            UsageLevel::High => {
                "You are close to getting the most out of {plan}. Try {feature} to see the rest."
            }
        }
    }
}

/// Where a reminder is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReminderStatus {
    /// Waiting for its due time.
    Planned,
    /// Sent (`sent_at`, `message`).
    Sent,
    /// Never to be sent (`reason`).
    Skipped,
    /// Withdrawn because the trial converted or was canceled (`reason`).
    Cancelled,
}

impl ReminderStatus {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ReminderStatus::Planned => "planned",
            ReminderStatus::Sent => "sent",
            ReminderStatus::Skipped => "skipped",
            ReminderStatus::Cancelled => "cancelled",
        }
    }
}

/// Local hours `[start, end)` in which nothing is sent; `start == end` means none; `start >
/// end` wraps midnight. Serialized as `"HH:MM"` strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuietHours {
    /// First quiet minute.
    #[serde(with = "hhmm")]
    pub start: NaiveTime,
    /// First minute after the quiet period.
    #[serde(with = "hhmm")]
    pub end: NaiveTime,
}

impl Default for QuietHours {
    fn default() -> Self {
        QuietHours {
            start: NaiveTime::from_hms_opt(22, 0, 0).unwrap_or(NaiveTime::MIN),
            end: NaiveTime::from_hms_opt(8, 0, 0).unwrap_or(NaiveTime::MIN),
        }
    }
}

impl QuietHours {
    /// Whether the local wall-clock time `t` is quiet.
    pub fn contains(&self, t: NaiveTime) -> bool {
        match self.start.cmp(&self.end) {
            std::cmp::Ordering::Equal => false,
            std::cmp::Ordering::Less => self.start <= t && t < self.end,
            std::cmp::Ordering::Greater => t >= self.start || t < self.end,
        }
    }

    /// Reports times that are not whole minutes.
    pub fn validate(&self, prefix: &str) -> Vec<FieldError> {
        [("start", self.start), ("end", self.end)]
            .into_iter()
            .filter(|(_, t)| t.second() != 0 || t.nanosecond() != 0)
            .map(|(f, _)| FieldError::new(path(prefix, f), "must be a whole minute (HH:MM)"))
            .collect()
    }
}

mod hhmm {
    use chrono::NaiveTime;
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &NaiveTime, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&t.format("%H:%M"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<NaiveTime, D::Error> {
        let s = String::deserialize(d)?;
        let ok = s.len() == 5 && s.as_bytes().get(2) == Some(&b':');
        ok.then(|| NaiveTime::parse_from_str(&s, "%H:%M").ok())
            .flatten()
            .ok_or_else(|| {
                D::Error::custom(format!("expected \"HH:MM\" (00:00..23:59), got {s:?}"))
            })
    }
}

/// Usage-ratio boundaries of the feature-usage levels; increasing, in (0, 1].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UsageLevels {
    /// Below it usage is `low` (default 0.3).
    pub low: f64,
    /// Below it usage is `medium` (default 0.6).
    pub medium: f64,
    /// Below it usage is `high`; at or above it no feature-usage reminder (default 0.8).
    pub high: f64,
}

impl Default for UsageLevels {
    fn default() -> Self {
        UsageLevels {
            low: 0.3,
            medium: 0.6,
            high: 0.8,
        }
    }
}

impl UsageLevels {
    /// The level of a usage ratio, `None` at or above `high` (or when not finite).
    pub fn level(&self, ratio: f64) -> Option<UsageLevel> {
        let r = finite(ratio)?.max(0.0);
        if r < self.low {
            Some(UsageLevel::Low)
        } else if r < self.medium {
            Some(UsageLevel::Medium)
        } else if r < self.high {
            Some(UsageLevel::High)
        } else {
            None
        }
    }

    /// Reports values outside (0, 1] and an order that is not strictly increasing.
    pub fn validate(&self, prefix: &str) -> Vec<FieldError> {
        let mut errors = Vec::new();
        for (f, v) in [
            ("low", self.low),
            ("medium", self.medium),
            ("high", self.high),
        ] {
            if !(v.is_finite() && v > 0.0 && v <= 1.0) {
                errors.push(FieldError::new(path(prefix, f), "must be in (0, 1]"));
            }
        }
        if errors.is_empty() && !(self.low < self.medium && self.medium < self.high) {
            errors.push(FieldError::new(
                path(prefix, "medium"),
                "must satisfy low < medium < high",
            ));
        }
        errors
    }
}

/// Hours from detection to the due time of each behavioural reminder (0..=720 each).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BehaviourDelays {
    /// Feature usage at level `low` (default 2).
    pub feature_usage_low: u32,
    /// Feature usage at level `medium` (default 12).
    pub feature_usage_medium: u32,
    /// Feature usage at level `high` (default 24).
    pub feature_usage_high: u32,
    /// Value demonstration (default 2).
    pub value_demonstration: u32,
    /// Engagement drop (default 1).
    pub engagement_drop: u32,
    /// Goal alignment (default 12).
    pub goal_alignment: u32,
}

impl Default for BehaviourDelays {
    fn default() -> Self {
        BehaviourDelays {
            feature_usage_low: 2,
            feature_usage_medium: 12,
            feature_usage_high: 24,
            value_demonstration: 2,
            engagement_drop: 1,
            goal_alignment: 12,
        }
    }
}

impl BehaviourDelays {
    fn fields(&self) -> [(&'static str, u32); 6] {
        [
            ("feature_usage_low", self.feature_usage_low),
            ("feature_usage_medium", self.feature_usage_medium),
            ("feature_usage_high", self.feature_usage_high),
            ("value_demonstration", self.value_demonstration),
            ("engagement_drop", self.engagement_drop),
            ("goal_alignment", self.goal_alignment),
        ]
    }

    /// Reports delays above 720 hours.
    pub fn validate(&self, prefix: &str) -> Vec<FieldError> {
        self.fields()
            .into_iter()
            .filter(|(_, v)| *v > MAX_HOURS)
            .map(|(f, _)| FieldError::new(path(prefix, f), "must be in 0..=720 hours"))
            .collect()
    }
}

/// Every reminder setting (see the module doc for how each is used).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReminderSettings {
    /// Hours before the trial end of each expiry reminder: 1..=720, distinct, at most 10.
    pub expiry_offsets_hours: Vec<u32>,
    /// Feature-usage level boundaries.
    pub usage_levels: UsageLevels,
    /// Engagement drops when the current window has `≤ ratio ×` the earlier one's events; [0, 1).
    pub engagement_drop_ratio: f64,
    /// Value shown from which a value-demonstration reminder is planned; (0, 1].
    pub value_threshold: f64,
    /// Goal alignment from which a goal-alignment reminder is planned; (0, 1].
    pub goal_alignment_threshold: f64,
    /// Value shown from which the user is high value (+2 priority); (0, 1].
    pub high_value_threshold: f64,
    /// Most reminders sent per trial; 1..=50.
    pub max_per_trial: u32,
    /// Least hours between two reminders sent to a user; 0..=168 (0 disables).
    pub cooldown_hours: u32,
    /// Most nudges of any kind a user gets per local calendar day; 1..=50.
    pub daily_cap: u32,
    /// Local hours in which nothing is sent.
    pub quiet_hours: QuietHours,
    /// IANA timezone of users without a valid one.
    pub default_timezone: String,
    /// Delays of the behavioural reminders.
    pub delay_hours: BehaviourDelays,
    /// Template per type (a missing type uses the built-in default).
    pub templates: BTreeMap<ReminderType, String>,
    /// Text of a feature-usage reminder per level; a missing level uses `templates.feature_usage`.
    pub usage_level_templates: BTreeMap<UsageLevel, String>,
    /// `{feature}` when the relevant feature is unknown; 1..=100 characters.
    pub feature_fallback: String,
}

impl Default for ReminderSettings {
    fn default() -> Self {
        ReminderSettings {
            expiry_offsets_hours: vec![24, 12, 6, 2, 1],
            usage_levels: UsageLevels::default(),
            engagement_drop_ratio: 0.5,
            value_threshold: 0.6,
            goal_alignment_threshold: 0.7,
            high_value_threshold: 0.8,
            max_per_trial: 5,
            cooldown_hours: 6,
            daily_cap: 3,
            quiet_hours: QuietHours::default(),
            default_timezone: "UTC".to_string(),
            delay_hours: BehaviourDelays::default(),
            templates: ReminderType::ALL
                .into_iter()
                .map(|t| (t, t.default_template().to_string()))
                .collect(),
            usage_level_templates: UsageLevel::ALL
                .into_iter()
                .map(|l| (l, l.default_template().to_string()))
                .collect(),
            feature_fallback: "premium features".to_string(),
        }
    }
}

impl ReminderSettings {
    /// Reports every bad field with its dotted path under `prefix`.
    pub fn validate(&self, prefix: &str) -> Vec<FieldError> {
        let p = |f: &str| path(prefix, f);
        let mut errors = validate_offsets(&self.expiry_offsets_hours, &p("expiry_offsets_hours"));
        errors.extend(self.usage_levels.validate(&p("usage_levels")));
        let r = self.engagement_drop_ratio;
        if !(r.is_finite() && (0.0..1.0).contains(&r)) {
            errors.push(FieldError::new(
                p("engagement_drop_ratio"),
                "must be in [0, 1)",
            ));
        }
        for (f, v) in [
            ("value_threshold", self.value_threshold),
            ("goal_alignment_threshold", self.goal_alignment_threshold),
            ("high_value_threshold", self.high_value_threshold),
        ] {
            if !(v.is_finite() && v > 0.0 && v <= 1.0) {
                errors.push(FieldError::new(p(f), "must be in (0, 1]"));
            }
        }
        for (f, v, lo, hi) in [
            ("max_per_trial", self.max_per_trial, 1, 50),
            ("cooldown_hours", self.cooldown_hours, 0, 168),
            ("daily_cap", self.daily_cap, 1, 50),
        ] {
            if !(lo..=hi).contains(&v) {
                errors.push(FieldError::new(p(f), format!("must be in {lo}..={hi}")));
            }
        }
        errors.extend(self.quiet_hours.validate(&p("quiet_hours")));
        if self.default_timezone.parse::<Tz>().is_err() {
            errors.push(FieldError::new(
                p("default_timezone"),
                "must be an IANA timezone name",
            ));
        }
        errors.extend(self.delay_hours.validate(&p("delay_hours")));
        for (t, text) in &self.templates {
            check_template(
                &mut errors,
                format!("{}.{}", p("templates"), t.as_str()),
                text,
            );
        }
        for (l, text) in &self.usage_level_templates {
            let field = format!("{}.{}", p("usage_level_templates"), l.as_str());
            check_template(&mut errors, field, text);
        }
        let n = self.feature_fallback.trim().chars().count();
        if n == 0 || n > 100 {
            errors.push(FieldError::new(
                p("feature_fallback"),
                "must have 1..=100 characters",
            ));
        }
        errors
    }
}

/// Reports offsets outside 1..=720, repeated offsets and more than 10 of them, for the
/// settings and for a `timing` experiment's variant config (`field` is the list's path).
pub fn validate_offsets(offsets: &[u32], field: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if offsets.len() > MAX_OFFSETS {
        errors.push(FieldError::new(field, "must have at most 10 offsets"));
    }
    let mut seen = BTreeSet::new();
    for (i, o) in offsets.iter().enumerate() {
        if !(1..=MAX_HOURS).contains(o) {
            errors.push(FieldError::new(
                format!("{field}[{i}]"),
                "must be in 1..=720 hours",
            ));
        } else if !seen.insert(*o) {
            errors.push(FieldError::new(
                format!("{field}[{i}]"),
                "repeats an earlier offset",
            ));
        }
    }
    errors
}

fn check_template(errors: &mut Vec<FieldError>, field: String, text: &str) {
    if text.trim().is_empty() || text.chars().count() > MAX_TEMPLATE_CHARS {
        errors.push(FieldError::new(field, "must have 1..=1000 characters"));
    } else if let Err(e) = validate_template(text) {
        errors.push(FieldError::new(field, e.to_string()));
    }
}

fn usable(text: &str) -> bool {
    !text.trim().is_empty()
        && text.chars().count() <= MAX_TEMPLATE_CHARS
        && validate_template(text).is_ok()
}

fn path(prefix: &str, field: &str) -> String {
    if prefix.is_empty() {
        field.to_string()
    } else {
        format!("{prefix}.{field}")
    }
}

/// The experiment variant that shaped a reminder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExperimentTag {
    /// The experiment's key.
    pub key: String,
    /// The variant the user is in.
    pub variant: String,
}

/// What the integrator knows about the user's trial behaviour; `None` means unknown.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct TrialSignals {
    /// Share of the expected use achieved so far (0..).
    pub usage_ratio: Option<f64>,
    /// Events in the latest window.
    pub engagement_current: Option<u64>,
    /// Events in the window before it.
    pub engagement_earlier: Option<u64>,
    /// Value demonstrated, 0..1.
    pub value_shown: Option<f64>,
    /// Goal alignment, 0..1.
    pub goal_alignment: Option<f64>,
    /// The tracked feature used least (`{feature}` of feature-usage reminders).
    pub least_used_feature: Option<String>,
    /// The feature used most (`{feature}` of the other reminders).
    pub most_used_feature: Option<String>,
}

impl TrialSignals {
    /// `earlier > 0` and `current ≤ ratio × earlier`.
    pub fn engagement_drop(&self, ratio: f64) -> bool {
        match (self.engagement_current, self.engagement_earlier) {
            (Some(c), Some(e)) if e > 0 => (c as f64) <= ratio * e as f64,
            _ => false,
        }
    }

    /// `value_shown ≥ threshold`.
    pub fn high_value(&self, threshold: f64) -> bool {
        self.value_shown
            .and_then(finite)
            .is_some_and(|v| v >= threshold)
    }
}

/// Everything [`plan`] needs about one trial.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialContext {
    /// The user on trial.
    pub user_id: String,
    /// The trial (prefix of its reminders' ids).
    pub trial_id: String,
    /// When the trial started.
    pub started_at: DateTime<Utc>,
    /// When the trial ends.
    pub ends_at: DateTime<Utc>,
    /// The plan on trial (`{plan}`).
    pub plan: String,
    /// The tier the user pays for now (`{tier}`).
    pub tier: String,
    /// The user's IANA timezone; invalid or `None` uses `default_timezone`.
    #[serde(default)]
    pub timezone: Option<String>,
    /// Behaviour signals at planning time.
    #[serde(default)]
    pub signals: TrialSignals,
    /// Expiry offsets from a running `timing` experiment variant.
    #[serde(default)]
    pub offsets_override: Option<Vec<u32>>,
    /// Templates from a running `messaging` experiment variant.
    #[serde(default)]
    pub templates_override: BTreeMap<ReminderType, String>,
    /// The experiment recorded on the reminders an override shaped.
    #[serde(default)]
    pub experiment: Option<ExperimentTag>,
}

/// A planned, sent, skipped or cancelled reminder (what is stored and listed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reminder {
    /// `"{trial_id}:trial_expiry:{offset}h"` or `"{trial_id}:{type}"`.
    pub reminder_id: String,
    /// The trial it belongs to.
    pub trial_id: String,
    /// Its recipient.
    pub user_id: String,
    /// What it is about.
    pub reminder_type: ReminderType,
    /// 0..=10, higher first.
    pub priority: u8,
    /// Where it is in its life.
    pub status: ReminderStatus,
    /// When it may leave (after quiet-hours and deferral moves).
    pub due_at: DateTime<Utc>,
    /// The original due time before any move.
    pub planned_for: DateTime<Utc>,
    /// Hours before the trial end (trial expiry only).
    pub offset_hours: Option<u32>,
    /// Feature-usage level (feature usage only).
    #[serde(default)]
    pub usage_level: Option<UsageLevel>,
    /// Why it was skipped, cancelled or last deferred (a [`reason`] code).
    pub reason: Option<String>,
    /// The template chosen at planning.
    pub template: String,
    /// Variables known at planning (`hours_left` is added at send).
    pub variables: BTreeMap<String, String>,
    /// The experiment variant that shaped it, if any.
    pub experiment: Option<ExperimentTag>,
    /// When it was planned.
    pub created_at: DateTime<Utc>,
    /// When it was sent.
    pub sent_at: Option<DateTime<Utc>>,
    /// The rendered text, once sent.
    pub message: Option<String>,
}

/// Base priority `+2` high value, `+1` engagement drop, `+3` within 24 h of the trial end,
/// at most 10.
pub fn priority(
    t: ReminderType,
    high_value: bool,
    engagement_drop: bool,
    expiring_within_24h: bool,
) -> u8 {
    let bonus =
        2 * u8::from(high_value) + u8::from(engagement_drop) + 3 * u8::from(expiring_within_24h);
    t.base_priority().saturating_add(bonus).min(10)
}

fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

fn plus(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    t.checked_add_signed(d).unwrap_or(if d < Duration::zero() {
        DateTime::<Utc>::MIN_UTC
    } else {
        DateTime::<Utc>::MAX_UTC
    })
}

fn hours(h: u32) -> Duration {
    Duration::hours(i64::from(h))
}

fn zone(tz: Option<&str>, default_tz: &str) -> Tz {
    tz.and_then(|t| t.parse::<Tz>().ok())
        .or_else(|| default_tz.parse::<Tz>().ok())
        .unwrap_or(Tz::UTC)
}

/// The first instant after `after` whose local time in `zone` is `local` when the time is
/// ambiguous; the offset before the gap when it does not exist (never earlier than `after`).
fn resolve(zone: Tz, local: NaiveDateTime, after: DateTime<Utc>) -> DateTime<Utc> {
    let t = match zone.from_local_datetime(&local) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(a, b) => {
            let (a, b) = (a.with_timezone(&Utc), b.with_timezone(&Utc));
            if a > after {
                a
            } else {
                b
            }
        }
        LocalResult::None => {
            let probe = local.checked_sub_signed(Duration::days(1)).unwrap_or(local);
            let before = zone
                .offset_from_utc_datetime(&probe)
                .fix()
                .local_minus_utc();
            plus(local.and_utc(), Duration::seconds(-i64::from(before)))
        }
    };
    t.max(after)
}

/// The end of the quiet period containing `at`, if `at` is quiet.
fn quiet_end(at: DateTime<Utc>, zone: Tz, q: &QuietHours) -> Option<DateTime<Utc>> {
    let local = at.with_timezone(&zone).naive_local();
    if !q.contains(local.time()) {
        return None;
    }
    let date = if q.start > q.end && local.time() >= q.start {
        local.date().succ_opt()?
    } else {
        local.date()
    };
    Some(resolve(zone, date.and_time(q.end), at))
}

/// Whether `at` is inside quiet hours in `tz` (else `default_timezone`).
pub fn is_quiet(at: DateTime<Utc>, tz: Option<&str>, settings: &ReminderSettings) -> bool {
    let zone = zone(tz, &settings.default_timezone);
    settings
        .quiet_hours
        .contains(at.with_timezone(&zone).time())
}

/// `at` moved to the end of the quiet period containing it (unchanged when not quiet).
pub fn after_quiet_hours(
    at: DateTime<Utc>,
    tz: Option<&str>,
    settings: &ReminderSettings,
) -> DateTime<Utc> {
    quiet_end(
        at,
        zone(tz, &settings.default_timezone),
        &settings.quiet_hours,
    )
    .unwrap_or(at)
}

/// The calendar date of `at` in `tz` (else `default_tz`, else UTC): the daily-cap day.
pub fn local_date(at: DateTime<Utc>, tz: Option<&str>, default_tz: &str) -> NaiveDate {
    at.with_timezone(&zone(tz, default_tz)).date_naive()
}

/// The planning inputs of one reminder.
struct Draft {
    id: String,
    kind: ReminderType,
    planned_for: DateTime<Utc>,
    offset: Option<u32>,
    level: Option<UsageLevel>,
    timing_shaped: bool,
}

/// The new reminders of a trial at `now` (see the module doc), ordered by original due time
/// then id. Ids in `existing` are never returned again.
pub fn plan(
    ctx: &TrialContext,
    settings: &ReminderSettings,
    existing: &[Reminder],
    now: DateTime<Utc>,
) -> Vec<Reminder> {
    let mut seen: BTreeSet<String> = existing.iter().map(|r| r.reminder_id.clone()).collect();
    let s = &ctx.signals;
    let (offsets, timing_shaped) = match &ctx.offsets_override {
        Some(o) if validate_offsets(o, "").is_empty() => (o.as_slice(), true),
        _ => (settings.expiry_offsets_hours.as_slice(), false),
    };
    let mut drafts: Vec<Draft> = offsets
        .iter()
        .map(|&o| Draft {
            id: format!("{}:trial_expiry:{o}h", ctx.trial_id),
            kind: ReminderType::TrialExpiry,
            planned_for: plus(ctx.ends_at, -hours(o)),
            offset: Some(o),
            level: None,
            timing_shaped,
        })
        .collect();
    let d = &settings.delay_hours;
    let level = s.usage_ratio.and_then(|r| settings.usage_levels.level(r));
    let behavioural = [
        (
            ReminderType::FeatureUsage,
            level.map(|l| match l {
                UsageLevel::Low => d.feature_usage_low,
                UsageLevel::Medium => d.feature_usage_medium,
                UsageLevel::High => d.feature_usage_high,
            }),
        ),
        (
            ReminderType::EngagementDrop,
            s.engagement_drop(settings.engagement_drop_ratio)
                .then_some(d.engagement_drop),
        ),
        (
            ReminderType::ValueDemonstration,
            s.high_value(settings.value_threshold)
                .then_some(d.value_demonstration),
        ),
        (
            ReminderType::GoalAlignment,
            s.goal_alignment
                .and_then(finite)
                .filter(|g| *g >= settings.goal_alignment_threshold)
                .map(|_| d.goal_alignment),
        ),
    ];
    for (kind, delay) in behavioural {
        if let Some(delay) = delay {
            drafts.push(Draft {
                id: format!("{}:{}", ctx.trial_id, kind.as_str()),
                kind,
                planned_for: plus(now, hours(delay)),
                offset: None,
                level: level.filter(|_| kind == ReminderType::FeatureUsage),
                timing_shaped: false,
            });
        }
    }
    let mut out: Vec<Reminder> = drafts
        .into_iter()
        .filter(|dr| seen.insert(dr.id.clone()))
        .map(|dr| build(ctx, settings, dr, now))
        .collect();
    out.sort_by(|a, b| {
        a.planned_for
            .cmp(&b.planned_for)
            .then_with(|| a.reminder_id.cmp(&b.reminder_id))
    });
    out
}

fn build(
    ctx: &TrialContext,
    settings: &ReminderSettings,
    dr: Draft,
    now: DateTime<Utc>,
) -> Reminder {
    let zone = zone(ctx.timezone.as_deref(), &settings.default_timezone);
    let s = &ctx.signals;
    let expiry = dr.kind == ReminderType::TrialExpiry;
    let early = if expiry && dr.planned_for <= now {
        Some(reason::ALREADY_PAST)
    } else if !expiry && dr.planned_for >= ctx.ends_at {
        Some(reason::TRIAL_ENDED)
    } else {
        None
    };
    let due_at = match early {
        Some(_) => dr.planned_for,
        None => quiet_end(dr.planned_for, zone, &settings.quiet_hours).unwrap_or(dr.planned_for),
    };
    let why = early.or((due_at >= ctx.ends_at).then_some(reason::QUIET_HOURS_PAST_TRIAL_END));
    let status = if why.is_some() {
        ReminderStatus::Skipped
    } else {
        ReminderStatus::Planned
    };
    let within_24h = plus(ctx.ends_at, -hours(24)) <= due_at;
    let drop = s.engagement_drop(settings.engagement_drop_ratio);
    let prio = priority(
        dr.kind,
        s.high_value(settings.high_value_threshold),
        drop,
        within_24h,
    );
    let overridden = ctx.templates_override.get(&dr.kind).filter(|t| usable(t));
    let template = overridden
        .or_else(|| {
            dr.level
                .and_then(|l| settings.usage_level_templates.get(&l))
                .filter(|t| usable(t))
        })
        .or_else(|| settings.templates.get(&dr.kind).filter(|t| usable(t)))
        .cloned()
        .unwrap_or_else(|| match dr.level {
            Some(l) => l.default_template().to_string(),
            None => dr.kind.default_template().to_string(),
        });
    let variables = variables(ctx, settings, dr.kind);
    let shaped = dr.timing_shaped || overridden.is_some();
    Reminder {
        reminder_id: dr.id,
        trial_id: ctx.trial_id.clone(),
        user_id: ctx.user_id.clone(),
        reminder_type: dr.kind,
        priority: prio,
        status,
        due_at,
        planned_for: dr.planned_for,
        offset_hours: dr.offset,
        usage_level: dr.level,
        reason: why.map(str::to_string),
        template,
        variables,
        experiment: ctx.experiment.clone().filter(|_| shaped),
        created_at: now,
        sent_at: None,
        message: None,
    }
}

/// The variables fixed at planning (see the module doc).
fn variables(
    ctx: &TrialContext,
    settings: &ReminderSettings,
    kind: ReminderType,
) -> BTreeMap<String, String> {
    let s = &ctx.signals;
    let feature = if kind == ReminderType::FeatureUsage {
        &s.least_used_feature
    } else {
        &s.most_used_feature
    };
    let feature = feature
        .as_deref()
        .filter(|f| !f.trim().is_empty())
        .unwrap_or(&settings.feature_fallback);
    let value = s
        .value_shown
        .and_then(finite)
        .map_or(0.0, |v| v.clamp(0.0, 1.0));
    BTreeMap::from([
        ("feature".to_string(), feature.to_string()),
        ("plan".to_string(), ctx.plan.clone()),
        ("tier".to_string(), ctx.tier.clone()),
        (
            "value_used".to_string(),
            format!("{}%", (value * 100.0).round() as u32),
        ),
    ])
}

/// Copies of the trial's still-planned reminders whose planning-time variables differ from
/// what `ctx` gives now, with the variables recomputed (ids, times, priority and template
/// unchanged), e.g. so an expiry reminder planned at the trial start names the feature the
/// user came to use most. Other statuses are never touched.
pub fn refresh_variables(
    ctx: &TrialContext,
    settings: &ReminderSettings,
    existing: &[Reminder],
) -> Vec<Reminder> {
    existing
        .iter()
        .filter(|r| r.status == ReminderStatus::Planned && r.trial_id == ctx.trial_id)
        .filter_map(|r| {
            let vars = variables(ctx, settings, r.reminder_type);
            (vars != r.variables).then(|| Reminder {
                variables: vars,
                ..r.clone()
            })
        })
        .collect()
}

/// What a user has already received: the cooldown, daily cap and per-trial cap read it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Ledger {
    /// When the user's last reminder was sent.
    pub last_reminder_at: Option<DateTime<Utc>>,
    /// Nudges of all kinds sent per local calendar date.
    pub sent_by_day: BTreeMap<NaiveDate, u32>,
    /// Reminders sent in this trial.
    pub sent_this_trial: u32,
}

impl Ledger {
    /// Records a reminder sent at `at` to a user in `tz`.
    pub fn record_send(&mut self, at: DateTime<Utc>, tz: Option<&str>, default_tz: &str) {
        self.last_reminder_at = Some(self.last_reminder_at.map_or(at, |l| l.max(at)));
        let day = self
            .sent_by_day
            .entry(local_date(at, tz, default_tz))
            .or_insert(0);
        *day = day.saturating_add(1);
        self.sent_this_trial = self.sent_this_trial.saturating_add(1);
    }
}

/// What to do with a due reminder now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// Send it now.
    Send {
        /// The reminder.
        reminder_id: String,
    },
    /// Keep it planned with `due_at = until` and `reason`.
    Defer {
        /// The reminder.
        reminder_id: String,
        /// Its new due time.
        until: DateTime<Utc>,
        /// A [`reason`] code.
        reason: String,
    },
    /// Never send it.
    Skip {
        /// The reminder.
        reminder_id: String,
        /// A [`reason`] code.
        reason: String,
    },
}

impl Decision {
    /// The reminder decided on.
    pub fn reminder_id(&self) -> &str {
        match self {
            Decision::Send { reminder_id }
            | Decision::Defer { reminder_id, .. }
            | Decision::Skip { reminder_id, .. } => reminder_id,
        }
    }
}

/// Decides every due planned reminder of one trial (see the module doc).
pub fn dispatch(
    planned: &[Reminder],
    trial_ends_at: DateTime<Utc>,
    timezone: Option<&str>,
    ledger: &Ledger,
    now: DateTime<Utc>,
    settings: &ReminderSettings,
) -> Vec<Decision> {
    let zone = zone(timezone, &settings.default_timezone);
    let q = &settings.quiet_hours;
    let cooldown = hours(settings.cooldown_hours);
    let pending: Vec<&Reminder> = planned
        .iter()
        .filter(|r| r.status == ReminderStatus::Planned)
        .collect();
    let mut open: BTreeMap<&str, (u8, DateTime<Utc>)> = pending
        .iter()
        .map(|r| (r.reminder_id.as_str(), (r.priority, r.due_at)))
        .collect();
    let mut due: Vec<&Reminder> = pending.into_iter().filter(|r| r.due_at <= now).collect();
    due.sort_by(|a, b| {
        b.priority
            .cmp(&a.priority)
            .then(a.due_at.cmp(&b.due_at))
            .then_with(|| a.reminder_id.cmp(&b.reminder_id))
    });
    let today = now.with_timezone(&zone).date_naive();
    let mut sent_today = ledger.sent_by_day.get(&today).copied().unwrap_or(0);
    let mut sent = ledger.sent_this_trial;
    let mut last = ledger.last_reminder_at;
    let mut decided = BTreeSet::new();
    let mut out = Vec::new();
    for r in due {
        let id = r.reminder_id.as_str();
        if !decided.insert(id) {
            continue;
        }
        let skip = |why: &str| Decision::Skip {
            reminder_id: id.to_string(),
            reason: why.to_string(),
        };
        let later = |target: DateTime<Utc>, defer: &str, why: &str| {
            let until = quiet_end(target, zone, q).unwrap_or(target);
            if until >= trial_ends_at {
                skip(why)
            } else {
                Decision::Defer {
                    reminder_id: id.to_string(),
                    until,
                    reason: defer.to_string(),
                }
            }
        };
        let higher: Vec<DateTime<Utc>> = {
            let mut h: Vec<(DateTime<Utc>, &str)> = open
                .iter()
                .filter(|(o, (p, d))| **o != id && *p > r.priority && *d < trial_ends_at)
                .map(|(o, (_, d))| (*d, *o))
                .collect();
            h.sort();
            h.into_iter().map(|(d, _)| d).collect()
        };
        let decision = if now >= trial_ends_at {
            skip(reason::TRIAL_ENDED)
        } else if sent >= settings.max_per_trial {
            skip(reason::PER_TRIAL_CAP)
        } else if let Some(end) = quiet_end(now, zone, q) {
            later(end, reason::QUIET_HOURS, reason::QUIET_HOURS_PAST_TRIAL_END)
        } else if let Some(l) =
            last.filter(|l| cooldown > Duration::zero() && now < plus(*l, cooldown))
        {
            later(plus(l, cooldown), reason::COOLDOWN, reason::COOLDOWN)
        } else if sent_today >= settings.daily_cap {
            let midnight = today.succ_opt().map(|d| d.and_time(NaiveTime::MIN));
            let target = midnight.map_or(DateTime::<Utc>::MAX_UTC, |m| resolve(zone, m, now));
            later(target, reason::DAILY_CAP, reason::DAILY_CAP)
        } else if settings.max_per_trial.saturating_sub(sent)
            <= feasible(&higher, now, cooldown, trial_ends_at)
        {
            skip(reason::PER_TRIAL_CAP)
        } else if let Some(h) = higher
            .iter()
            .find(|d| cooldown > Duration::zero() && **d < plus(now, cooldown))
        {
            later(
                plus(*h, cooldown),
                reason::HIGHER_PRIORITY_DUE,
                reason::COOLDOWN,
            )
        } else {
            Decision::Send {
                reminder_id: id.to_string(),
            }
        };
        match &decision {
            Decision::Send { .. } => {
                sent = sent.saturating_add(1);
                sent_today = sent_today.saturating_add(1);
                last = Some(last.map_or(now, |l| l.max(now)));
                open.remove(id);
            }
            Decision::Skip { .. } => {
                open.remove(id);
            }
            Decision::Defer { until, .. } => {
                open.insert(id, (r.priority, *until));
            }
        }
        out.push(decision);
    }
    out
}

/// How many of the sorted due times could still be sent before `end`, each at least
/// `cooldown` after the previous send, the first previous send being `now`.
fn feasible(
    due: &[DateTime<Utc>],
    now: DateTime<Utc>,
    cooldown: Duration,
    end: DateTime<Utc>,
) -> u32 {
    let mut prev = now;
    let mut count = 0u32;
    for d in due {
        let at = (*d).max(plus(prev, cooldown));
        if at < end {
            count = count.saturating_add(1);
            prev = at;
        }
    }
    count
}

/// Applies `decision` to `r` when it names it (returns whether it did). A send renders the
/// message with [`message_variables`]; when rendering fails `r` is left unchanged.
pub fn apply(
    r: &mut Reminder,
    decision: &Decision,
    trial_ends_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<bool, RenderError> {
    if decision.reminder_id() != r.reminder_id {
        return Ok(false);
    }
    match decision {
        Decision::Send { .. } => {
            let message = render(&r.template, &message_variables(r, trial_ends_at, now))?;
            r.status = ReminderStatus::Sent;
            r.sent_at = Some(now);
            r.message = Some(message);
        }
        Decision::Defer { until, reason, .. } => {
            r.due_at = *until;
            r.reason = Some(reason.clone());
        }
        Decision::Skip { reason, .. } => {
            r.status = ReminderStatus::Skipped;
            r.reason = Some(reason.clone());
        }
    }
    Ok(true)
}

/// Cancels every planned reminder (e.g. with [`reason::CONVERTED`]); returns how many.
pub fn cancel_pending(reminders: &mut [Reminder], why: &str) -> usize {
    let mut n = 0;
    for r in reminders
        .iter_mut()
        .filter(|r| r.status == ReminderStatus::Planned)
    {
        r.status = ReminderStatus::Cancelled;
        r.reason = Some(why.to_string());
        n += 1;
    }
    n
}

/// The reminder's variables plus `hours_left`: whole hours from `sent_at` to the trial end,
/// rounded down, at least 0.
pub fn message_variables(
    r: &Reminder,
    trial_ends_at: DateTime<Utc>,
    sent_at: DateTime<Utc>,
) -> BTreeMap<String, String> {
    let mut vars = r.variables.clone();
    let left = trial_ends_at
        .signed_duration_since(sent_at)
        .num_hours()
        .max(0);
    vars.insert("hours_left".to_string(), left.to_string());
    vars
}

/// Why a template cannot be used or rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// `{name}` is not one of [`PLACEHOLDERS`].
    #[error("unknown placeholder {{{name}}}; use feature, hours_left, value_used, plan or tier")]
    UnknownPlaceholder {
        /// The text between the braces.
        name: String,
    },
    /// A `{` without its `}`; `fragment` is the text after it.
    #[error("unterminated placeholder {{{fragment}")]
    Unterminated {
        /// Up to 40 characters after the `{`.
        fragment: String,
    },
    /// A `}` that closes nothing (write `}}` for a literal brace).
    #[error("unmatched '}}' at byte {position}; write '}}}}' for a literal brace")]
    UnmatchedClose {
        /// Byte offset of the `}`.
        position: usize,
    },
    /// A known placeholder without a value.
    #[error("no value for placeholder {{{name}}}")]
    MissingVariable {
        /// The placeholder.
        name: String,
    },
}

/// Fills the placeholders of `template` from `vars` (see the module doc).
pub fn render(template: &str, vars: &BTreeMap<String, String>) -> Result<String, RenderError> {
    walk(template, Some(vars))
}

/// Checks a template's syntax and placeholder names without values.
pub fn validate_template(t: &str) -> Result<(), RenderError> {
    walk(t, None).map(|_| ())
}

fn walk(template: &str, vars: Option<&BTreeMap<String, String>>) -> Result<String, RenderError> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(i) = rest.find(['{', '}']) {
        let (text, tail) = rest.split_at(i);
        out.push_str(text);
        if let Some(after) = tail.strip_prefix("{{") {
            out.push('{');
            rest = after;
        } else if let Some(after) = tail.strip_prefix("}}") {
            out.push('}');
            rest = after;
        } else if let Some(body) = tail.strip_prefix('{') {
            let close = body
                .find(['{', '}'])
                .filter(|&j| body.as_bytes().get(j) == Some(&b'}'));
            let Some((name, after)) = close.map(|j| body.split_at(j)) else {
                let end = body.find('{').unwrap_or(body.len());
                let fragment: String = body.get(..end).unwrap_or(body).chars().take(40).collect();
                return Err(RenderError::Unterminated { fragment });
            };
            if !PLACEHOLDERS.contains(&name) {
                return Err(RenderError::UnknownPlaceholder {
                    name: name.to_string(),
                });
            }
            if let Some(vars) = vars {
                let value = vars.get(name).ok_or_else(|| RenderError::MissingVariable {
                    name: name.to_string(),
                })?;
                out.push_str(value);
            }
            rest = after.strip_prefix('}').unwrap_or(after);
        } else {
            return Err(RenderError::UnmatchedClose {
                position: template.len() - rest.len() + i,
            });
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ReminderStatus::*;
    use ReminderType::*;

    const NY: Option<&str> = Some("America/New_York");

    /// A 2025 UTC instant from `"MM-DDTHH:MM"`.
    fn at(s: &str) -> DateTime<Utc> {
        format!("2025-{s}:00Z").parse().unwrap()
    }

    fn hm(t: DateTime<Utc>) -> String {
        t.format("%m-%dT%H:%M").to_string()
    }

    fn ctx(start: &str, end: &str, tz: Option<&str>) -> TrialContext {
        TrialContext {
            user_id: "u1".into(),
            trial_id: "t1".into(),
            started_at: at(start),
            ends_at: at(end),
            plan: "premium".into(),
            tier: "free".into(),
            timezone: tz.map(str::to_string),
            signals: TrialSignals::default(),
            offsets_override: None,
            templates_override: BTreeMap::new(),
            experiment: None,
        }
    }

    /// `"<id without t1:> <due> [<status>:<reason>]"` per reminder.
    fn lines(rs: &[Reminder]) -> Vec<String> {
        rs.iter()
            .map(|r| {
                let id = r.reminder_id.trim_start_matches("t1:");
                let mut line = format!("{id} {}", hm(r.due_at));
                if r.status != Planned {
                    let why = r.reason.as_deref().unwrap_or("-");
                    line += &format!(" {}:{why}", r.status.as_str());
                }
                line
            })
            .collect()
    }

    fn pending(id: &str, kind: ReminderType, priority: u8, due: &str) -> Reminder {
        let vars = [
            ("feature", "budget_tracker"),
            ("plan", "premium"),
            ("tier", "free"),
        ];
        Reminder {
            reminder_id: id.into(),
            trial_id: "t1".into(),
            user_id: "u1".into(),
            reminder_type: kind,
            priority,
            status: Planned,
            due_at: at(due),
            planned_for: at(due),
            offset_hours: None,
            usage_level: None,
            reason: None,
            template: kind.default_template().into(),
            variables: vars.map(|(k, v)| (k.to_string(), v.to_string())).into(),
            experiment: None,
            created_at: at(due),
            sent_at: None,
            message: None,
        }
    }

    /// Dispatch, with decisions shown as `"send id"`, `"defer id until reason"`, `"skip id reason"`.
    fn run(
        rs: &[Reminder],
        end: &str,
        tz: Option<&str>,
        l: &Ledger,
        now: &str,
        s: &ReminderSettings,
    ) -> Vec<String> {
        let show = |d: Decision| match d {
            Decision::Send { reminder_id } => format!("send {reminder_id}"),
            Decision::Defer {
                reminder_id,
                until,
                reason,
            } => format!("defer {reminder_id} {} {reason}", hm(until)),
            Decision::Skip {
                reminder_id,
                reason,
            } => format!("skip {reminder_id} {reason}"),
        };
        dispatch(rs, at(end), tz, l, at(now), s)
            .into_iter()
            .map(show)
            .collect()
    }

    fn sent(n: u32) -> Ledger {
        Ledger {
            sent_this_trial: n,
            ..Default::default()
        }
    }

    fn time(h: u32, m: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(h, m, 0).unwrap()
    }

    #[test]
    fn a_default_14_day_trial_gets_five_expiry_reminders_24_12_6_2_and_1_hours_before_its_end() {
        let c = ctx("06-01T21:00", "06-15T21:00", None);
        let rs = plan(&c, &ReminderSettings::default(), &[], c.started_at);
        let expected = [
            "24h 06-14T21:00",
            "12h 06-15T09:00",
            "6h 06-15T15:00",
            "2h 06-15T19:00",
            "1h 06-15T20:00",
        ];
        assert_eq!(lines(&rs), expected.map(|e| format!("trial_expiry:{e}")));
        assert_eq!(
            rs.iter()
                .map(|r| r.offset_hours.unwrap())
                .collect::<Vec<_>>(),
            [24, 12, 6, 2, 1]
        );
        assert!(rs.iter().all(|r| r.priority == 10
            && r.planned_for == r.due_at
            && r.created_at == at("06-01T21:00")));
        assert_eq!(rs[0].template, TrialExpiry.default_template());
        let vars: Vec<_> = rs[0]
            .variables
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        assert_eq!(
            vars,
            [
                "feature=premium features",
                "plan=premium",
                "tier=free",
                "value_used=0%"
            ]
        );
    }

    #[test]
    fn a_reminder_due_at_night_in_new_york_moves_to_8am_local_time() {
        // Ends 10:00 EDT; 12 h before is 22:00 EDT, 6 h before 04:00 EDT: both quiet.
        let c = ctx("06-06T14:00", "06-20T14:00", NY);
        let rs = plan(&c, &ReminderSettings::default(), &[], c.started_at);
        let due: Vec<_> = rs
            .iter()
            .map(|r| format!("{}>{}", hm(r.planned_for), hm(r.due_at)))
            .collect();
        let moved = [
            "06-20T02:00>06-20T12:00",
            "06-20T08:00>06-20T12:00",
            "06-20T12:00>06-20T12:00",
        ];
        assert_eq!(due[1..4], moved);
        assert_eq!(
            [&due[0], &due[4]],
            ["06-19T14:00>06-19T14:00", "06-20T13:00>06-20T13:00"]
        );
    }

    #[test]
    fn a_reminder_due_at_night_in_tokyo_moves_to_8am_japan_time() {
        // Ends 10:00 JST (01:00Z); 12 h before is 22:00 JST, 6 h before 04:00 JST.
        let c = ctx("06-06T01:00", "06-20T01:00", Some("Asia/Tokyo"));
        let due: Vec<_> = plan(&c, &ReminderSettings::default(), &[], c.started_at)
            .iter()
            .map(|r| hm(r.due_at))
            .collect();
        assert_eq!(
            due,
            [
                "06-19T01:00",
                "06-19T23:00",
                "06-19T23:00",
                "06-19T23:00",
                "06-20T00:00"
            ]
        );
    }

    #[test]
    fn on_dst_transition_days_the_end_of_quiet_hours_is_8am_in_the_new_offset() {
        let s = ReminderSettings::default();
        // Spring forward 03-09: 01:30 EST -> 08:00 EDT (12:00Z, not 13:00Z).
        assert_eq!(
            after_quiet_hours(at("03-09T06:30"), NY, &s),
            at("03-09T12:00")
        );
        assert!(is_quiet(at("03-09T11:59"), NY, &s) && !is_quiet(at("03-09T12:00"), NY, &s));
        // Fall back 11-02: 01:30 EDT and 01:30 EST both -> 08:00 EST (13:00Z).
        assert_eq!(
            after_quiet_hours(at("11-02T05:30"), NY, &s),
            at("11-02T13:00")
        );
        assert_eq!(
            after_quiet_hours(at("11-02T06:30"), NY, &s),
            at("11-02T13:00")
        );
        // A quiet end inside the gap (02:30) resolves forward to 03:30 EDT.
        let gap = ReminderSettings {
            quiet_hours: QuietHours {
                start: time(22, 0),
                end: time(2, 30),
            },
            ..s.clone()
        };
        assert_eq!(
            after_quiet_hours(at("03-09T06:00"), NY, &gap),
            at("03-09T07:30")
        );
        // Through plan: a trial ending 08:30 EDT on the transition day.
        let c = ctx("02-23T12:30", "03-09T12:30", NY);
        let due: Vec<_> = plan(&c, &s, &[], c.started_at)
            .iter()
            .map(|r| hm(r.due_at))
            .collect();
        assert_eq!(
            due,
            [
                "03-08T13:00",
                "03-09T00:30",
                "03-09T12:00",
                "03-09T12:00",
                "03-09T12:00"
            ]
        );
    }

    #[test]
    fn a_reminder_pushed_past_the_trial_end_by_quiet_hours_is_skipped_with_its_reason() {
        let c = ctx("06-06T03:00", "06-20T03:00", None);
        let rs = plan(&c, &ReminderSettings::default(), &[], c.started_at);
        let expected = [
            "trial_expiry:24h 06-19T08:00",
            "trial_expiry:12h 06-19T15:00",
            "trial_expiry:6h 06-19T21:00",
            "trial_expiry:2h 06-20T08:00 skipped:quiet_hours_past_trial_end",
            "trial_expiry:1h 06-20T08:00 skipped:quiet_hours_past_trial_end",
        ];
        assert_eq!(lines(&rs), expected);
        assert_eq!(rs[4].planned_for, at("06-20T02:00"));
    }

    #[test]
    fn behavioural_signals_plan_one_reminder_of_each_type_with_its_delay_priority_and_text() {
        let mut c = ctx("06-01T21:00", "06-15T21:00", None);
        c.signals = TrialSignals {
            usage_ratio: Some(0.1),
            engagement_current: Some(4),
            engagement_earlier: Some(10),
            value_shown: Some(0.85),
            goal_alignment: Some(0.75),
            least_used_feature: Some("budget_tracker".into()),
            most_used_feature: Some("investment_analysis".into()),
        };
        let rs: Vec<_> = plan(&c, &ReminderSettings::default(), &[], at("06-05T10:00"))
            .into_iter()
            .filter(|r| r.reminder_type != TrialExpiry)
            .collect();
        let got: Vec<_> = lines(&rs)
            .iter()
            .zip(&rs)
            .map(|(l, r)| format!("{l} p{} {}", r.priority, r.variables["feature"]))
            .collect();
        let expected = [
            "engagement_drop 06-05T11:00 p9 investment_analysis",
            "feature_usage 06-05T12:00 p7 budget_tracker",
            "value_demonstration 06-05T12:00 p10 investment_analysis",
            "goal_alignment 06-06T08:00 p6 investment_analysis",
        ];
        assert_eq!(got, expected);
        assert_eq!(
            (rs[1].usage_level, rs[1].template.as_str()),
            (Some(UsageLevel::Low), UsageLevel::Low.default_template())
        );
        assert_eq!(rs[2].variables["value_used"], "85%");
    }

    #[test]
    fn usage_levels_split_at_their_boundaries_and_pick_the_delay() {
        use UsageLevel::*;
        let l = UsageLevels::default();
        let got = [-1.0, 0.29, 0.3, 0.59, 0.6, 0.79, 0.8, 2.0, f64::NAN].map(|r| l.level(r));
        assert_eq!(
            got,
            [
                Some(Low),
                Some(Low),
                Some(Medium),
                Some(Medium),
                Some(High),
                Some(High),
                None,
                None,
                None
            ]
        );
        let mut c = ctx("06-01T21:00", "06-15T21:00", None);
        for (ratio, due) in [(0.4, "06-05T22:00"), (0.7, "06-06T10:00")] {
            c.signals.usage_ratio = Some(ratio);
            let rs = plan(&c, &ReminderSettings::default(), &[], at("06-05T10:00"));
            let fu = rs.iter().find(|r| r.reminder_type == FeatureUsage).unwrap();
            assert_eq!(fu.planned_for, at(due));
        }
    }

    #[test]
    fn an_engagement_drop_needs_an_earlier_window_and_a_current_one_at_most_half_of_it() {
        let s = |c, e| TrialSignals {
            engagement_current: Some(c),
            engagement_earlier: Some(e),
            ..Default::default()
        };
        assert_eq!(
            [s(5, 10), s(6, 10), s(0, 0)].map(|x| x.engagement_drop(0.5)),
            [true, false, false]
        );
        assert!(!TrialSignals::default().engagement_drop(0.5));
    }

    #[test]
    fn late_planning_skips_past_expiry_times_and_behavioural_reminders_due_after_the_end() {
        let mut c = ctx("06-01T21:00", "06-15T21:00", None);
        c.signals.value_shown = Some(0.9);
        let rs = plan(&c, &ReminderSettings::default(), &[], at("06-15T20:00"));
        let got = lines(&rs);
        assert_eq!(got[0], "trial_expiry:24h 06-14T21:00 skipped:already_past");
        assert_eq!(got[4], "trial_expiry:1h 06-15T20:00 skipped:already_past");
        assert_eq!(
            got[5],
            "value_demonstration 06-15T22:00 skipped:trial_ended"
        );
        assert!(rs.iter().all(|r| r.priority == 10));
    }

    #[test]
    fn planning_again_with_the_previous_result_returns_only_new_reminders() {
        let mut c = ctx("06-01T21:00", "06-15T21:00", None);
        let s = ReminderSettings::default();
        let mut all = plan(&c, &s, &[], c.started_at);
        assert_eq!(all.len(), 5);
        assert!(plan(&c, &s, &all, c.started_at).is_empty());
        c.signals.goal_alignment = Some(0.9);
        let new = plan(&c, &s, &all, at("06-03T09:00"));
        assert_eq!(lines(&new), ["goal_alignment 06-03T21:00"]);
        all.extend(new);
        assert!(plan(&c, &s, &all, at("06-04T09:00")).is_empty());
    }

    #[test]
    fn refreshing_variables_updates_only_planned_reminders_whose_inputs_changed() {
        let mut c = ctx("06-01T21:00", "06-15T21:00", None);
        let s = ReminderSettings::default();
        let mut rs = plan(&c, &s, &[], c.started_at);
        rs[0].status = Sent;
        assert!(refresh_variables(&c, &s, &rs).is_empty());
        c.signals.most_used_feature = Some("savings_goals".into());
        let fresh = refresh_variables(&c, &s, &rs);
        assert_eq!(fresh.len(), 4);
        assert_eq!(fresh[0].variables["feature"], "savings_goals");
        assert_eq!(
            Reminder {
                variables: rs[1].variables.clone(),
                ..fresh[0].clone()
            },
            rs[1]
        );
    }

    #[test]
    fn experiment_overrides_shape_offsets_and_texts_and_are_tagged_only_when_valid() {
        let mut c = ctx("06-01T21:00", "06-15T21:00", None);
        c.offsets_override = Some(vec![48, 3]);
        c.templates_override
            .insert(TrialExpiry, "Only {hours_left}h left!".into());
        c.experiment = Some(ExperimentTag {
            key: "timing-1".into(),
            variant: "b".into(),
        });
        let s = ReminderSettings::default();
        let rs = plan(&c, &s, &[], c.started_at);
        assert_eq!(
            lines(&rs),
            [
                "trial_expiry:48h 06-13T21:00",
                "trial_expiry:3h 06-15T18:00"
            ]
        );
        assert!(rs
            .iter()
            .all(|r| r.template == "Only {hours_left}h left!" && r.experiment == c.experiment));
        c.offsets_override = Some(vec![0]);
        c.templates_override.insert(TrialExpiry, "{oops}".into());
        let rs = plan(&c, &s, &[], c.started_at);
        assert_eq!(rs.len(), 5);
        assert!(rs
            .iter()
            .all(|r| r.experiment.is_none() && r.template == TrialExpiry.default_template()));
    }

    #[test]
    fn priority_adds_its_bonuses_to_the_base_and_caps_at_10() {
        assert_eq!(
            ReminderType::ALL.map(|t| priority(t, false, false, false)),
            [10, 4, 8, 6, 3]
        );
        assert_eq!(priority(GoalAlignment, true, true, true), 9);
        assert_eq!(priority(FeatureUsage, true, true, false), 7);
        assert_eq!(priority(EngagementDrop, false, false, true), 9);
        assert_eq!(priority(ValueDemonstration, false, false, true), 10);
        assert_eq!(priority(TrialExpiry, true, true, true), 10);
    }

    #[test]
    fn two_reminders_due_at_once_send_the_higher_priority_and_defer_the_other_by_the_cooldown() {
        let rs = [
            pending("fu", FeatureUsage, 4, "06-10T10:00"),
            pending("vd", ValueDemonstration, 8, "06-10T09:00"),
            pending("ga", GoalAlignment, 3, "06-11T10:00"),
        ];
        let d = run(
            &rs,
            "06-14T00:00",
            None,
            &sent(0),
            "06-10T10:00",
            &ReminderSettings::default(),
        );
        assert_eq!(d, ["send vd", "defer fu 06-10T16:00 cooldown"]);
    }

    #[test]
    fn after_the_6h_reminder_is_sent_the_cooldown_skips_the_2h_and_1h_ones() {
        let s = ReminderSettings::default();
        let end = at("06-15T18:00");
        let mut rs = [
            pending("6h", TrialExpiry, 10, "06-15T12:00"),
            pending("2h", TrialExpiry, 10, "06-15T16:00"),
            pending("1h", TrialExpiry, 10, "06-15T17:00"),
        ];
        let mut ledger = sent(2);
        let mut log = Vec::new();
        for now in ["06-15T12:00", "06-15T16:00", "06-15T17:00"].map(at) {
            for d in dispatch(&rs, end, None, &ledger, now, &s) {
                if matches!(d, Decision::Send { .. }) {
                    ledger.record_send(now, None, "UTC");
                }
                rs.iter_mut()
                    .for_each(|r| assert!(apply(r, &d, end, now).is_ok()));
                log.push(d);
            }
        }
        let skip = |id: &str| Decision::Skip {
            reminder_id: id.into(),
            reason: reason::COOLDOWN.into(),
        };
        assert_eq!(
            log,
            [
                Decision::Send {
                    reminder_id: "6h".into()
                },
                skip("2h"),
                skip("1h")
            ]
        );
        let msg = "Your premium trial ends in 6 hours. Keep budget_tracker by upgrading today.";
        assert_eq!(
            (rs[0].status, rs[0].message.as_deref(), rs[0].sent_at),
            (Sent, Some(msg), Some(at("06-15T12:00")))
        );
        assert_eq!(
            lines(&rs[1..]),
            [
                "2h 06-15T16:00 skipped:cooldown",
                "1h 06-15T17:00 skipped:cooldown"
            ]
        );
        // A cooldown that ends before the trial end defers instead.
        let l = Ledger {
            last_reminder_at: Some(at("06-15T10:00")),
            ..sent(1)
        };
        let d = run(
            &[pending("6h", TrialExpiry, 10, "06-15T12:00")],
            "06-15T18:00",
            None,
            &l,
            "06-15T12:00",
            &s,
        );
        assert_eq!(d, ["defer 6h 06-15T16:00 cooldown"]);
    }

    #[test]
    fn the_daily_cap_counts_sends_per_calendar_day_in_the_users_timezone() {
        let s = ReminderSettings {
            daily_cap: 1,
            cooldown_hours: 0,
            quiet_hours: QuietHours {
                start: time(0, 0),
                end: time(0, 0),
            },
            ..Default::default()
        };
        let rs = [pending("fu", FeatureUsage, 4, "06-11T03:00")];
        let mut l = Ledger::default();
        l.record_send(at("06-11T03:30"), NY, "UTC"); // 23:30 EDT on the 10th
        assert_eq!(
            l.sent_by_day,
            BTreeMap::from([(NaiveDate::from_ymd_opt(2025, 6, 10).unwrap(), 1)])
        );
        assert_eq!(
            run(&rs, "06-20T00:00", NY, &l, "06-11T03:45", &s),
            ["defer fu 06-11T04:00 daily_cap"]
        );
        // 00:30 EDT on the 11th is a new local day (the same UTC day).
        assert_eq!(
            run(&rs, "06-20T00:00", NY, &l, "06-11T04:30", &s),
            ["send fu"]
        );
        let mut utc = Ledger::default();
        utc.record_send(at("06-11T03:30"), None, "UTC");
        assert_eq!(
            run(&rs, "06-20T00:00", None, &utc, "06-11T04:30", &s),
            ["defer fu 06-12T00:00 daily_cap"]
        );
        // With quiet hours the deferral lands at their end; at or past the trial end it is a skip.
        let s = ReminderSettings {
            daily_cap: 1,
            ..Default::default()
        };
        let l = Ledger {
            sent_by_day: l.sent_by_day,
            ..sent(1)
        };
        let rs = [pending("fu", FeatureUsage, 4, "06-10T19:00")];
        assert_eq!(
            run(&rs, "06-20T00:00", NY, &l, "06-10T20:00", &s),
            ["defer fu 06-11T12:00 daily_cap"]
        );
        assert_eq!(
            run(&rs, "06-11T10:00", NY, &l, "06-10T20:00", &s),
            ["skip fu daily_cap"]
        );
    }

    #[test]
    fn the_per_trial_cap_of_5_counts_earlier_sends_and_sends_of_the_same_call() {
        let rs = [
            pending("vd", ValueDemonstration, 8, "06-10T09:00"),
            pending("fu", FeatureUsage, 4, "06-10T09:00"),
        ];
        let (end, now) = ("06-20T00:00", "06-10T10:00");
        let d = run(&rs, end, None, &sent(5), now, &ReminderSettings::default());
        assert_eq!(d, ["skip vd per_trial_cap", "skip fu per_trial_cap"]);
        let s = ReminderSettings {
            cooldown_hours: 0,
            ..Default::default()
        };
        assert_eq!(
            run(&rs, end, None, &sent(4), now, &s),
            ["send vd", "skip fu per_trial_cap"]
        );
        assert_eq!(
            run(&rs, end, None, &sent(3), now, &s),
            ["send vd", "send fu"]
        );
    }

    #[test]
    fn the_last_cap_slots_are_reserved_for_higher_priorities_that_can_still_be_sent() {
        let s = ReminderSettings::default();
        let (end, now) = ("06-20T00:00", "06-10T10:00");
        let fu = pending("fu", FeatureUsage, 4, "06-10T10:00");
        // Two higher ones a week apart both fit: they keep the 2 remaining slots.
        let rs = [
            fu.clone(),
            pending("vd", ValueDemonstration, 8, "06-12T10:00"),
            pending("24h", TrialExpiry, 10, "06-19T00:00"),
        ];
        assert_eq!(
            run(&rs, end, None, &sent(3), now, &s),
            ["skip fu per_trial_cap"]
        );
        assert_eq!(run(&rs, end, None, &sent(2), now, &s), ["send fu"]);
        // Two higher ones an hour apart: the cooldown lets only one of them out.
        let rs = [
            fu,
            pending("2h", TrialExpiry, 10, "06-19T22:00"),
            pending("1h", TrialExpiry, 10, "06-19T23:00"),
        ];
        assert_eq!(run(&rs, end, None, &sent(3), now, &s), ["send fu"]);
        let s0 = ReminderSettings {
            cooldown_hours: 0,
            ..s
        };
        assert_eq!(
            run(&rs, end, None, &sent(3), now, &s0),
            ["skip fu per_trial_cap"]
        );
    }

    #[test]
    fn a_higher_priority_reminder_due_within_the_cooldown_defers_a_lower_one_past_it() {
        let s = ReminderSettings::default();
        let fu = pending("fu", FeatureUsage, 4, "06-10T10:00");
        let rs = [
            fu.clone(),
            pending("vd", ValueDemonstration, 8, "06-10T13:00"),
        ];
        let now = "06-10T10:00";
        assert_eq!(
            run(&rs, "06-20T00:00", None, &sent(0), now, &s),
            ["defer fu 06-10T19:00 higher_priority_due"]
        );
        assert_eq!(
            run(&rs, "06-10T18:00", None, &sent(0), now, &s),
            ["skip fu cooldown"]
        );
        // Beyond the cooldown window, or without a cooldown, the lower one goes now.
        let later = [fu, pending("vd", ValueDemonstration, 8, "06-10T16:00")];
        assert_eq!(
            run(&later, "06-20T00:00", None, &sent(0), now, &s),
            ["send fu"]
        );
        let s0 = ReminderSettings {
            cooldown_hours: 0,
            ..s
        };
        assert_eq!(
            run(&rs, "06-20T00:00", None, &sent(0), now, &s0),
            ["send fu"]
        );
    }

    #[test]
    fn dispatch_defers_out_of_quiet_hours_skips_after_the_trial_end_and_ignores_the_rest() {
        let s = ReminderSettings::default();
        let mut rs = [
            pending("fu", FeatureUsage, 4, "06-10T22:00"),
            pending("ga", GoalAlignment, 3, "06-12T10:00"),
        ];
        let now = "06-10T23:00";
        assert_eq!(
            run(&rs, "06-14T00:00", None, &sent(0), now, &s),
            ["defer fu 06-11T08:00 quiet_hours"]
        );
        assert_eq!(
            run(&rs, "06-11T07:00", None, &sent(0), now, &s),
            ["skip fu quiet_hours_past_trial_end"]
        );
        assert_eq!(
            run(&rs, "06-10T23:00", None, &sent(0), now, &s),
            ["skip fu trial_ended"]
        );
        rs[0].status = Sent;
        assert!(run(&rs, "06-14T00:00", None, &sent(0), now, &s).is_empty());
    }

    #[test]
    fn render_fills_placeholders_and_names_what_is_wrong() {
        let vars = BTreeMap::from([
            ("plan".to_string(), "premium".to_string()),
            ("feature".to_string(), "budget ✓".to_string()),
        ]);
        assert_eq!(
            render("Ünï {{{plan}}} }} {feature}", &vars).unwrap(),
            "Ünï {premium} } budget ✓"
        );
        let err = |t: &str| render(t, &vars).unwrap_err();
        assert_eq!(
            err("Hi {foo}!"),
            RenderError::UnknownPlaceholder { name: "foo".into() }
        );
        assert_eq!(
            err("Hi {foo}!").to_string(),
            "unknown placeholder {foo}; use feature, hours_left, value_used, plan or tier"
        );
        assert_eq!(
            err("ends in {hours_left"),
            RenderError::Unterminated {
                fragment: "hours_left".into()
            }
        );
        assert_eq!(
            err("a {plan b {tier}"),
            RenderError::Unterminated {
                fragment: "plan b ".into()
            }
        );
        assert_eq!(err("a } b"), RenderError::UnmatchedClose { position: 2 });
        assert_eq!(
            err("{tier}"),
            RenderError::MissingVariable {
                name: "tier".into()
            }
        );
        assert_eq!(validate_template("{tier} {hours_left} {{x}}"), Ok(()));
        assert!(validate_template("{ plan }").is_err());
        let defaults = ReminderType::ALL
            .map(|t| t.default_template())
            .into_iter()
            .chain(UsageLevel::ALL.map(|l| l.default_template()));
        assert!(defaults.into_iter().all(|t| validate_template(t).is_ok()));
    }

    #[test]
    fn hours_left_is_whole_hours_to_the_trial_end_rounded_down_and_never_negative() {
        let r = pending("x", TrialExpiry, 10, "06-10T10:00");
        let end = at("06-11T00:00");
        assert_eq!(
            message_variables(&r, end, at("06-10T10:01"))["hours_left"],
            "13"
        );
        assert_eq!(
            message_variables(&r, end, at("06-11T01:00"))["hours_left"],
            "0"
        );
    }

    #[test]
    fn cancelling_marks_only_planned_reminders_with_the_reason() {
        let mut rs = [
            pending("a", TrialExpiry, 10, "06-10T10:00"),
            pending("b", FeatureUsage, 4, "06-10T10:00"),
        ];
        rs[1].status = Sent;
        assert_eq!(cancel_pending(&mut rs, reason::CONVERTED), 1);
        assert_eq!(
            lines(&rs),
            ["a 06-10T10:00 cancelled:converted", "b 06-10T10:00 sent:-"]
        );
    }

    #[test]
    fn settings_default_and_round_trip_with_hh_mm_quiet_hours_and_snake_case_keys() {
        let s = ReminderSettings::default();
        assert!(s.validate("reminders").is_empty());
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(
            json["quiet_hours"],
            serde_json::json!({"start": "22:00", "end": "08:00"})
        );
        assert_eq!(
            json["templates"]["trial_expiry"],
            TrialExpiry.default_template()
        );
        assert_eq!(serde_json::from_value::<ReminderSettings>(json).unwrap(), s);
        assert_eq!(serde_json::from_str::<ReminderSettings>("{}").unwrap(), s);
        for bad in [
            r#"{"quiet_hours":{"start":"7:00"}}"#,
            r#"{"quiet_hours":{"end":"24:00"}}"#,
            r#"{"cooldown":1}"#,
        ] {
            assert!(
                serde_json::from_str::<ReminderSettings>(bad).is_err(),
                "{bad}"
            );
        }
        assert_eq!(
            (
                ReminderType::parse("goal_alignment"),
                ReminderType::parse("nope")
            ),
            (Some(GoalAlignment), None)
        );
        let d = serde_json::to_value(Decision::Skip {
            reminder_id: "x".into(),
            reason: "cooldown".into(),
        })
        .unwrap();
        assert_eq!(
            d,
            serde_json::json!({"decision": "skip", "reminder_id": "x", "reason": "cooldown"})
        );
    }

    #[test]
    fn settings_validation_names_every_bad_field() {
        let mut s = ReminderSettings {
            expiry_offsets_hours: vec![0, 24, 24, 800],
            usage_levels: UsageLevels {
                low: 0.5,
                medium: 0.4,
                high: 0.9,
            },
            engagement_drop_ratio: 1.0,
            value_threshold: f64::NAN,
            max_per_trial: 0,
            cooldown_hours: 200,
            daily_cap: 0,
            default_timezone: "Mars/Base".into(),
            feature_fallback: " ".into(),
            ..Default::default()
        };
        s.delay_hours.goal_alignment = 721;
        s.templates.insert(TrialExpiry, "{oops}".into());
        s.usage_level_templates
            .insert(UsageLevel::High, String::new());
        let fields: Vec<_> = s
            .validate("reminders")
            .into_iter()
            .map(|e| e.field)
            .collect();
        let expected = [
            "expiry_offsets_hours[0]",
            "expiry_offsets_hours[2]",
            "expiry_offsets_hours[3]",
            "usage_levels.medium",
            "engagement_drop_ratio",
            "value_threshold",
            "max_per_trial",
            "cooldown_hours",
            "daily_cap",
            "default_timezone",
            "delay_hours.goal_alignment",
            "templates.trial_expiry",
            "usage_level_templates.high",
            "feature_fallback",
        ];
        assert_eq!(fields, expected.map(|f| format!("reminders.{f}")));
        assert_eq!(
            validate_offsets(&[1; 11], "v")[0].message,
            "must have at most 10 offsets"
        );
    }

    /// A default 14-day trial of a New York user (ends 13:00 EDT), stepped minute by minute:
    /// planned at the start, re-planned at day 3 with low usage, dispatched every minute.
    #[test]
    fn a_whole_default_trial_sends_feature_usage_then_the_24h_and_12h_expiry_reminders() {
        let s = ReminderSettings::default();
        let mut c = ctx("03-01T17:00", "03-15T17:00", NY);
        let (mut rs, mut ledger, mut now) =
            (Vec::<Reminder>::new(), Ledger::default(), c.started_at);
        while now <= c.ends_at {
            if now == c.started_at + Duration::days(3) {
                c.signals.usage_ratio = Some(0.1);
                c.signals.least_used_feature = Some("budget_tracker".into());
                c.signals.most_used_feature = Some("investment_analysis".into());
                for fresh in refresh_variables(&c, &s, &rs) {
                    rs.retain(|r| r.reminder_id != fresh.reminder_id);
                    rs.push(fresh);
                }
            }
            let new = plan(&c, &s, &rs, now);
            rs.extend(new);
            for d in dispatch(&rs, c.ends_at, NY, &ledger, now, &s) {
                if matches!(d, Decision::Send { .. }) {
                    ledger.record_send(now, NY, &s.default_timezone);
                }
                rs.iter_mut()
                    .for_each(|r| assert!(apply(r, &d, c.ends_at, now).is_ok()));
            }
            now += Duration::minutes(1);
        }
        let mut sends: Vec<_> = rs
            .iter()
            .filter_map(|r| Some((r.sent_at?, r.reminder_id.as_str(), r.message.as_deref()?)))
            .collect();
        sends.sort();
        let expected = [
            ("03-04T19:00", "t1:feature_usage", "You have barely tried budget_tracker yet. Give it a go while your premium trial lasts."),
            ("03-14T17:00", "t1:trial_expiry:24h", "Your premium trial ends in 24 hours. Keep investment_analysis by upgrading today."),
            ("03-15T12:00", "t1:trial_expiry:12h", "Your premium trial ends in 5 hours. Keep investment_analysis by upgrading today."),
        ];
        assert_eq!(sends, expected.map(|(t, id, m)| (at(t), id, m)));
        let rest: Vec<_> = rs.iter().filter(|r| r.status != Sent).cloned().collect();
        let skipped = ["6h 03-15T12:00", "2h 03-15T15:00", "1h 03-15T16:00"];
        assert_eq!(
            lines(&rest),
            skipped.map(|x| format!("trial_expiry:{x} skipped:cooldown"))
        );
        assert_eq!(ledger.sent_this_trial, 3);
        assert!(sends
            .windows(2)
            .all(|w| w[1].0 - w[0].0 >= Duration::hours(6)));
        assert!(sends.iter().all(|(t, _, _)| !is_quiet(*t, NY, &s)));
    }
}
