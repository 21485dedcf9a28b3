//! Per-user profiles: the pure fold of events into a user's state, and the daily aggregate
//! counters each folded event contributes.
//!
//! The fold is order-independent for everything but one documented attribution: traits
//! (tier, segment, timezone...) and the subscription are "latest wins" by
//! `(timestamp, event_id)`, usage counts are sums, first / last use are min / max, and active
//! days are a set. Active users by tier and feature usage by tier are attributed to the tier the
//! profile holds when the event is folded.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::events::{Event, EventBody, Identify, Interval, SubscriptionChange};

/// The tier name used before any event names one.
pub const UNKNOWN_TIER: &str = "unknown";

/// Settings of the fold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FoldSettings {
    pub engagement_window_days: u32,
    pub default_trial_days: u32,
}

impl Default for FoldSettings {
    fn default() -> Self {
        FoldSettings {
            engagement_window_days: 28,
            default_trial_days: 14,
        }
    }
}

/// A value with the event that set it, so the newest event wins whatever the arrival order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stamped<T> {
    pub value: T,
    pub at: DateTime<Utc>,
    pub event_id: String,
}

fn set_latest<T>(slot: &mut Option<Stamped<T>>, value: T, at: DateTime<Utc>, event_id: &str) {
    let newer = match slot {
        None => true,
        Some(s) => (at, event_id) > (s.at, s.event_id.as_str()),
    };
    if newer {
        *slot = Some(Stamped {
            value,
            at,
            event_id: event_id.to_string(),
        });
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionStatus {
    Trialing,
    Active,
    PastDue,
    Canceled,
    Expired,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subscription {
    pub status: SubscriptionStatus,
    pub plan: String,
    pub tier: String,
    /// Monthly recurring revenue in minor units (0 unless active or past due).
    pub mrr_minor: i64,
    pub currency: Option<String>,
    pub interval: Option<Interval>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trial {
    pub started_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub plan: String,
    pub tier: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureUsage {
    pub count: u64,
    pub duration_ms: u64,
    pub first_used_at: DateTime<Utc>,
    pub last_used_at: DateTime<Utc>,
}

/// Activity of one day inside the engagement window.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayActivity {
    pub events: u64,
    pub features: BTreeSet<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub user_id: String,
    /// Optimistic-concurrency version: bumped by every stored fold.
    pub version: u64,
    pub tier: Option<Stamped<String>>,
    pub segment: Option<Stamped<String>>,
    pub country: Option<Stamped<String>>,
    pub timezone: Option<Stamped<String>>,
    pub signup_date: Option<Stamped<NaiveDate>>,
    pub goals: Option<Stamped<Vec<String>>>,
    #[serde(default)]
    pub custom: BTreeMap<String, Stamped<Value>>,
    pub subscription: Option<Stamped<Subscription>>,
    pub trial: Option<Stamped<Trial>>,
    #[serde(default)]
    pub features: BTreeMap<String, FeatureUsage>,
    pub first_seen_at: Option<DateTime<Utc>>,
    pub last_active_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub active_days: BTreeSet<NaiveDate>,
    /// Per-day activity for the days inside the engagement window ending at `last_active_at`.
    #[serde(default)]
    pub recent: BTreeMap<NaiveDate, DayActivity>,
    pub event_count: u64,
    #[serde(default)]
    pub events_by_type: BTreeMap<String, u64>,
    /// Nudge outcomes the user reported, by `<nudge_kind>#<shown|clicked|converted>`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub nudge_outcomes: BTreeMap<String, u64>,
}

/// One counter increment of a daily aggregate.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct CounterDelta {
    pub day: NaiveDate,
    pub counter: String,
    pub amount: i64,
}

/// Counter names of the daily aggregates.
pub mod counters {
    pub fn events(type_name: &str) -> String {
        format!("ev#{type_name}")
    }
    pub fn active_users(tier: &str) -> String {
        format!("au#{tier}")
    }
    pub fn feature_count(tier: &str, feature: &str) -> String {
        format!("fu#{tier}#{feature}#n")
    }
    pub fn feature_ms(tier: &str, feature: &str) -> String {
        format!("fu#{tier}#{feature}#ms")
    }
    /// A segment's counter (`sg#<segment>#<name>`): `au` (active users), `trial_started`,
    /// `trial_converted`, `sub_started`, `canceled`, `subs` (net change of paying
    /// subscribers; all-time under [`ALL_TIME_DAY`]), `rev#<currency>` (payments, minor units),
    /// `nudge#<kind>#<shown|clicked|converted>`. The per-user optimization analytics read them.
    pub fn segment(segment: &str, name: &str) -> String {
        format!("sg#{segment}#{name}")
    }
}

/// The day under which all-time aggregate counters are kept (`AGG#1970-01-01`): the
/// running number of paying subscribers per segment (`sg#<segment>#subs`).
pub const ALL_TIME_DAY: NaiveDate = match NaiveDate::from_ymd_opt(1970, 1, 1) {
    Some(d) => d,
    None => NaiveDate::MIN,
};

/// The segment name used before any event names one.
pub const UNKNOWN_SEGMENT: &str = "unknown";

impl Profile {
    pub fn new(user_id: &str) -> Profile {
        Profile {
            user_id: user_id.to_string(),
            ..Profile::default()
        }
    }

    /// Whether the user pays now (an active or past-due subscription).
    pub fn paying(&self) -> bool {
        matches!(
            self.subscription.as_ref().map(|s| s.value.status),
            Some(SubscriptionStatus::Active) | Some(SubscriptionStatus::PastDue)
        )
    }

    /// The segment events are attributed to now.
    pub fn current_segment(&self) -> &str {
        self.segment
            .as_ref()
            .map(|s| s.value.as_str())
            .unwrap_or(UNKNOWN_SEGMENT)
    }

    /// The tier events are attributed to now.
    pub fn current_tier(&self) -> &str {
        self.tier
            .as_ref()
            .map(|t| t.value.as_str())
            .unwrap_or(UNKNOWN_TIER)
    }

    /// Folds one event in and returns the daily counters it adds.
    pub fn apply(&mut self, event: &Event, settings: &FoldSettings) -> Vec<CounterDelta> {
        let day = event.day();
        let at = event.timestamp;
        let id = event.event_id.as_str();
        let mut deltas = vec![CounterDelta {
            day,
            counter: counters::events(event.type_name()),
            amount: 1,
        }];
        self.event_count += 1;
        *self
            .events_by_type
            .entry(event.type_name().to_string())
            .or_default() += 1;
        self.first_seen_at = Some(self.first_seen_at.map_or(at, |f| f.min(at)));
        self.last_active_at = Some(self.last_active_at.map_or(at, |l| l.max(at)));

        let was_paying = self.paying();
        let mut used_feature = None;
        match &event.body {
            EventBody::FeatureUsed(f) => {
                let tier = self.current_tier().to_string();
                deltas.push(CounterDelta {
                    day,
                    counter: counters::feature_count(&tier, &f.feature),
                    amount: 1,
                });
                deltas.push(CounterDelta {
                    day,
                    counter: counters::feature_ms(&tier, &f.feature),
                    amount: i64::try_from(f.duration_ms).unwrap_or(i64::MAX),
                });
                let usage = self
                    .features
                    .entry(f.feature.clone())
                    .or_insert(FeatureUsage {
                        count: 0,
                        duration_ms: 0,
                        first_used_at: at,
                        last_used_at: at,
                    });
                usage.count += 1;
                usage.duration_ms += f.duration_ms;
                usage.first_used_at = usage.first_used_at.min(at);
                usage.last_used_at = usage.last_used_at.max(at);
                used_feature = Some(f.feature.clone());
            }
            EventBody::Identify(i) => self.identify(i, at, id),
            EventBody::SubscriptionTrialStarted(s) => {
                let ends_at = s
                    .trial_ends_at
                    .unwrap_or(at + Duration::days(i64::from(settings.default_trial_days)));
                let trial = Trial {
                    started_at: at,
                    ends_at,
                    plan: s.plan.clone(),
                    tier: s.tier.clone(),
                };
                set_latest(&mut self.trial, trial, at, id);
                self.subscribe(s, SubscriptionStatus::Trialing, at, id);
            }
            EventBody::SubscriptionTrialConverted(s)
            | EventBody::SubscriptionStarted(s)
            | EventBody::SubscriptionRenewed(s)
            | EventBody::SubscriptionUpgraded(s)
            | EventBody::SubscriptionDowngraded(s)
            | EventBody::SubscriptionReactivated(s) => {
                self.subscribe(s, SubscriptionStatus::Active, at, id)
            }
            EventBody::SubscriptionTrialExpired(s) => {
                self.subscribe(s, SubscriptionStatus::Expired, at, id)
            }
            EventBody::SubscriptionCanceled(s) => {
                self.subscribe(s, SubscriptionStatus::Canceled, at, id)
            }
            EventBody::PaymentFailed(_) => self.payment_state(
                SubscriptionStatus::Active,
                SubscriptionStatus::PastDue,
                at,
                id,
            ),
            EventBody::PaymentSucceeded(_) => self.payment_state(
                SubscriptionStatus::PastDue,
                SubscriptionStatus::Active,
                at,
                id,
            ),
            _ => {}
        }
        // After the body, so an identify that names the tier counts its user under it.
        let segment = self.current_segment().to_string();
        // Entering or leaving a paying state moves the segment's subscriber count, both on
        // the day (so a window's net change is known) and all-time (the count now).
        let moved = i64::from(self.paying()) - i64::from(was_paying);
        if moved != 0 {
            for d in [day, ALL_TIME_DAY] {
                deltas.push(CounterDelta {
                    day: d,
                    counter: counters::segment(&segment, "subs"),
                    amount: moved,
                });
            }
        }
        let mut segment_counter = |name: String, amount: i64| {
            deltas.push(CounterDelta {
                day,
                counter: counters::segment(&segment, &name),
                amount,
            })
        };
        match &event.body {
            EventBody::SubscriptionTrialStarted(_) => segment_counter("trial_started".into(), 1),
            EventBody::SubscriptionTrialConverted(_) => {
                segment_counter("trial_converted".into(), 1)
            }
            EventBody::SubscriptionStarted(_) => segment_counter("sub_started".into(), 1),
            EventBody::SubscriptionCanceled(_) => segment_counter("canceled".into(), 1),
            EventBody::PaymentSucceeded(p) => {
                segment_counter(format!("rev#{}", p.currency), p.amount_minor)
            }
            EventBody::NudgeShown(o)
            | EventBody::NudgeClicked(o)
            | EventBody::NudgeConverted(o) => {
                let what = match &event.body {
                    EventBody::NudgeShown(_) => "shown",
                    EventBody::NudgeClicked(_) => "clicked",
                    _ => "converted",
                };
                let key = format!("{}#{what}", o.nudge_kind.as_str());
                *self.nudge_outcomes.entry(key.clone()).or_default() += 1;
                // An offer's acceptance is its redemption, which api-nudges counts itself.
                if key != "offer#converted" {
                    segment_counter(format!("nudge#{key}"), 1)
                }
            }
            _ => {}
        }
        if self.active_days.insert(day) {
            deltas.push(CounterDelta {
                day,
                counter: counters::active_users(self.current_tier()),
                amount: 1,
            });
            deltas.push(CounterDelta {
                day,
                counter: counters::segment(&segment, "au"),
                amount: 1,
            });
        }
        self.record_recent(day, used_feature, settings);
        deltas
    }

    fn identify(&mut self, i: &Identify, at: DateTime<Utc>, id: &str) {
        if let Some(v) = &i.tier {
            set_latest(&mut self.tier, v.clone(), at, id);
        }
        if let Some(v) = &i.segment {
            set_latest(&mut self.segment, v.clone(), at, id);
        }
        if let Some(v) = &i.country {
            set_latest(&mut self.country, v.clone(), at, id);
        }
        if let Some(v) = &i.timezone {
            set_latest(&mut self.timezone, v.clone(), at, id);
        }
        if let Some(v) = i.signup_date {
            set_latest(&mut self.signup_date, v, at, id);
        }
        if let Some(v) = &i.goals {
            set_latest(&mut self.goals, v.clone(), at, id);
        }
        for (key, value) in &i.custom {
            let mut slot = self.custom.remove(key);
            set_latest(&mut slot, value.clone(), at, id);
            if let Some(s) = slot {
                self.custom.insert(key.clone(), s);
            }
        }
    }

    fn subscribe(
        &mut self,
        s: &SubscriptionChange,
        status: SubscriptionStatus,
        at: DateTime<Utc>,
        id: &str,
    ) {
        let mrr_minor = match (status, s.amount_minor, s.interval) {
            (SubscriptionStatus::Active, Some(amount), Some(interval)) => {
                interval.monthly_minor(amount)
            }
            _ => 0,
        };
        let sub = Subscription {
            status,
            plan: s.plan.clone(),
            tier: s.tier.clone(),
            mrr_minor,
            currency: s.currency.clone(),
            interval: s.interval,
        };
        set_latest(&mut self.subscription, sub, at, id);
        if matches!(
            status,
            SubscriptionStatus::Trialing | SubscriptionStatus::Active
        ) {
            set_latest(&mut self.tier, s.tier.clone(), at, id);
        }
    }

    /// A payment moves an active subscription to past due (failed) or back (succeeded), when
    /// it is newer than the subscription's last change.
    fn payment_state(
        &mut self,
        from: SubscriptionStatus,
        to: SubscriptionStatus,
        at: DateTime<Utc>,
        id: &str,
    ) {
        if let Some(current) = &self.subscription {
            if current.value.status == from && (at, id) > (current.at, current.event_id.as_str()) {
                let mut sub = current.value.clone();
                sub.status = to;
                set_latest(&mut self.subscription, sub, at, id);
            }
        }
    }

    fn record_recent(&mut self, day: NaiveDate, feature: Option<String>, s: &FoldSettings) {
        let Some(last) = self.last_active_at else {
            return;
        };
        let window_start =
            last.date_naive() - Duration::days(i64::from(s.engagement_window_days) - 1);
        if day >= window_start {
            let activity = self.recent.entry(day).or_default();
            activity.events += 1;
            if let Some(f) = feature {
                activity.features.insert(f);
            }
        }
        self.recent.retain(|d, _| *d >= window_start);
    }

    /// Engagement over the `window_days` ending on `as_of`'s day.
    pub fn engagement(&self, as_of: DateTime<Utc>, window_days: u32) -> Engagement {
        let window_days = window_days.max(1);
        let end = as_of.date_naive();
        let start = end - Duration::days(i64::from(window_days) - 1);
        let mut active_days = 0u32;
        let mut events = 0u64;
        let mut features = BTreeSet::new();
        for (_, a) in self.recent.range(start..=end) {
            active_days += 1;
            events += a.events;
            features.extend(a.features.iter().cloned());
        }
        Engagement::score(window_days, active_days, events, features.len())
    }
}

/// Engagement score: `0.5 * activity + 0.3 * breadth + 0.2 * intensity`, each in 0..1:
/// activity = active days / window days; breadth = distinct features used / 5 (capped at 1);
/// intensity = events / (5 x window days) (capped at 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Engagement {
    pub score: f64,
    pub window_days: u32,
    pub active_days: u32,
    pub events: u64,
    pub distinct_features: usize,
}

/// Distinct features in a window that count as full breadth.
const BREADTH_TARGET: f64 = 5.0;
/// Events per day that count as full intensity.
const INTENSITY_TARGET_PER_DAY: f64 = 5.0;

impl Engagement {
    pub fn score(window_days: u32, active_days: u32, events: u64, features: usize) -> Engagement {
        let w = f64::from(window_days.max(1));
        let activity = (f64::from(active_days) / w).min(1.0);
        let breadth = (features as f64 / BREADTH_TARGET).min(1.0);
        let intensity = (events as f64 / (INTENSITY_TARGET_PER_DAY * w)).min(1.0);
        let score = 0.5 * activity + 0.3 * breadth + 0.2 * intensity;
        Engagement {
            score: (score * 10_000.0).round() / 10_000.0,
            window_days,
            active_days,
            events,
            distinct_features: features,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::FeatureUsed;

    fn ev(id: &str, ts: &str, body: EventBody) -> Event {
        Event {
            event_id: id.into(),
            user_id: "u1".into(),
            timestamp: ts.parse().unwrap(),
            body,
        }
    }

    fn used(feature: &str, ms: u64) -> EventBody {
        EventBody::FeatureUsed(FeatureUsed {
            feature: feature.into(),
            duration_ms: ms,
        })
    }

    fn sub(tier: &str, amount: Option<i64>, interval: Option<Interval>) -> SubscriptionChange {
        SubscriptionChange {
            plan: format!("{tier}_plan"),
            tier: tier.into(),
            amount_minor: amount,
            currency: amount.map(|_| "USD".to_string()),
            interval,
            trial_ends_at: None,
        }
    }

    #[test]
    fn entering_and_leaving_a_paying_state_moves_the_segments_subscriber_count() {
        let (_, deltas) = fold(&[
            ev(
                "a",
                "2026-11-01T10:00:00Z",
                EventBody::SubscriptionTrialStarted(sub("mid", None, None)),
            ),
            ev(
                "b",
                "2026-11-10T10:00:00Z",
                EventBody::SubscriptionTrialConverted(sub("mid", Some(999), Some(Interval::Month))),
            ),
            ev(
                "c",
                "2026-11-12T10:00:00Z",
                EventBody::SubscriptionRenewed(sub("mid", Some(999), Some(Interval::Month))),
            ),
            ev(
                "d",
                "2026-11-20T10:00:00Z",
                EventBody::SubscriptionCanceled(sub("mid", None, None)),
            ),
        ]);
        let subs: Vec<(String, i64)> = deltas
            .iter()
            .filter(|d| d.counter == "sg#unknown#subs")
            .map(|d| (d.day.to_string(), d.amount))
            .collect();
        // A trial is not paying; the renewal changes nothing; all-time nets to 0.
        assert_eq!(
            subs,
            [
                ("1970-01-01".to_string(), -1),
                ("1970-01-01".to_string(), 1),
                ("2026-11-10".to_string(), 1),
                ("2026-11-20".to_string(), -1),
            ]
        );
    }

    fn fold(events: &[Event]) -> (Profile, Vec<CounterDelta>) {
        let mut p = Profile::new("u1");
        let mut deltas = Vec::new();
        for e in events {
            deltas.extend(p.apply(e, &FoldSettings::default()));
        }
        deltas.sort();
        (p, deltas)
    }

    #[test]
    fn feature_usage_accumulates_with_first_and_last_use() {
        let (p, deltas) = fold(&[
            ev("a", "2026-11-02T10:00:00Z", used("budget_tracker", 1000)),
            ev("b", "2026-11-01T10:00:00Z", used("budget_tracker", 2500)),
        ]);
        let u = &p.features["budget_tracker"];
        assert_eq!(u.count, 2);
        assert_eq!(u.duration_ms, 3500);
        assert_eq!(u.first_used_at.to_rfc3339(), "2026-11-01T10:00:00+00:00");
        assert_eq!(u.last_used_at.to_rfc3339(), "2026-11-02T10:00:00+00:00");
        assert_eq!(p.active_days.len(), 2);
        let active: i64 = deltas
            .iter()
            .filter(|d| d.counter == "au#unknown")
            .map(|d| d.amount)
            .sum();
        assert_eq!(active, 2, "one active user per day");
    }

    #[test]
    fn traits_are_latest_by_timestamp_whatever_the_arrival_order() {
        let older = ev(
            "a",
            "2026-11-01T10:00:00Z",
            EventBody::Identify(Identify {
                tier: Some("budget".into()),
                ..Identify::default()
            }),
        );
        let newer = ev(
            "b",
            "2026-11-02T10:00:00Z",
            EventBody::Identify(Identify {
                tier: Some("professional".into()),
                ..Identify::default()
            }),
        );
        let (p1, _) = fold(&[older.clone(), newer.clone()]);
        let (p2, _) = fold(&[newer, older]);
        assert_eq!(p1.current_tier(), "professional");
        assert_eq!(p1.tier, p2.tier);
    }

    #[test]
    fn subscription_lifecycle_sets_status_and_mrr() {
        let (p, _) = fold(&[
            ev(
                "t",
                "2026-11-01T00:00:00Z",
                EventBody::SubscriptionTrialStarted(sub("mid", None, None)),
            ),
            ev(
                "c",
                "2026-11-10T00:00:00Z",
                EventBody::SubscriptionTrialConverted(sub(
                    "mid",
                    Some(11988),
                    Some(Interval::Year),
                )),
            ),
        ]);
        let s = &p.subscription.as_ref().unwrap().value;
        assert_eq!(s.status, SubscriptionStatus::Active);
        assert_eq!(s.mrr_minor, 999);
        let trial = &p.trial.as_ref().unwrap().value;
        assert_eq!(trial.ends_at.to_rfc3339(), "2026-11-15T00:00:00+00:00");
        assert_eq!(p.current_tier(), "mid");

        let (p, _) = fold(&[
            ev(
                "s",
                "2026-11-01T00:00:00Z",
                EventBody::SubscriptionStarted(sub("pro", Some(2999), Some(Interval::Month))),
            ),
            ev(
                "f",
                "2026-11-02T00:00:00Z",
                EventBody::PaymentFailed(crate::events::Payment {
                    amount_minor: 2999,
                    currency: "USD".into(),
                    reason: Some("card_declined".into()),
                }),
            ),
        ]);
        let s = &p.subscription.as_ref().unwrap().value;
        assert_eq!(s.status, SubscriptionStatus::PastDue);
        assert_eq!(s.mrr_minor, 2999);

        let (p, _) = fold(&[
            ev(
                "s",
                "2026-11-01T00:00:00Z",
                EventBody::SubscriptionStarted(sub("pro", Some(2999), Some(Interval::Month))),
            ),
            ev(
                "x",
                "2026-11-03T00:00:00Z",
                EventBody::SubscriptionCanceled(sub("pro", None, None)),
            ),
        ]);
        let s = &p.subscription.as_ref().unwrap().value;
        assert_eq!(s.status, SubscriptionStatus::Canceled);
        assert_eq!(s.mrr_minor, 0);
    }

    #[test]
    fn engagement_counts_only_the_window() {
        let mut events = Vec::new();
        // 10 active days in the window, 2 events a day, 3 distinct features; one old day.
        for d in 0..10 {
            let ts = format!("2026-11-{:02}T09:00:00Z", 20 - d);
            let f = ["a", "b", "c"][d % 3];
            events.push(ev(&format!("x{d}"), &ts, used(f, 1)));
            events.push(ev(&format!("y{d}"), &ts, used(f, 1)));
        }
        events.push(ev("old", "2026-09-01T09:00:00Z", used("z", 1)));
        let (p, _) = fold(&events);
        let e = p.engagement("2026-11-20T23:00:00Z".parse().unwrap(), 28);
        assert_eq!(e.active_days, 10);
        assert_eq!(e.events, 20);
        assert_eq!(e.distinct_features, 3);
        // 0.5 * 10/28 + 0.3 * 3/5 + 0.2 * 20/140
        let expected = 0.5 * 10.0 / 28.0 + 0.3 * 0.6 + 0.2 * 20.0 / 140.0;
        assert!(
            (e.score - expected).abs() < 1e-4,
            "{} vs {expected}",
            e.score
        );
        let later = p.engagement("2026-12-31T00:00:00Z".parse().unwrap(), 28);
        assert_eq!(later.score, 0.0, "no activity in the window");
    }

    #[test]
    fn the_counters_do_not_depend_on_arrival_order_for_a_fixed_tier() {
        let events = vec![
            ev("1", "2026-11-01T10:00:00Z", used("a", 5)),
            ev("2", "2026-11-01T11:00:00Z", used("b", 7)),
            ev("3", "2026-11-02T10:00:00Z", used("a", 9)),
        ];
        let (p1, d1) = fold(&events);
        let mut reversed = events.clone();
        reversed.reverse();
        let (p2, d2) = fold(&reversed);
        assert_eq!(d1, d2);
        assert_eq!(p1, p2);
    }
}

/// The profile as the API shows it: plain values, durations in seconds, money in major units,
/// engagement as of the time of reading.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProfileView {
    pub user_id: String,
    pub tier: String,
    pub segment: Option<String>,
    pub country: Option<String>,
    pub timezone: Option<String>,
    pub signup_date: Option<NaiveDate>,
    pub goals: Vec<String>,
    pub custom: BTreeMap<String, Value>,
    pub subscription: Option<SubscriptionView>,
    pub trial: Option<TrialView>,
    pub features: BTreeMap<String, FeatureView>,
    pub first_seen_at: Option<DateTime<Utc>>,
    pub last_active_at: Option<DateTime<Utc>>,
    pub active_days: usize,
    pub engagement: Engagement,
    pub event_count: u64,
    pub events_by_type: BTreeMap<String, u64>,
    pub version: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SubscriptionView {
    pub status: SubscriptionStatus,
    pub plan: String,
    pub tier: String,
    pub mrr: f64,
    pub mrr_minor: i64,
    pub currency: Option<String>,
    pub interval: Option<Interval>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrialView {
    pub started_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub plan: String,
    pub tier: String,
    /// Whole hours left at the time of reading (0 once ended).
    pub hours_left: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FeatureView {
    pub count: u64,
    pub total_seconds: f64,
    pub first_used_at: DateTime<Utc>,
    pub last_used_at: DateTime<Utc>,
}

impl Profile {
    pub fn view(&self, now: DateTime<Utc>, window_days: u32) -> ProfileView {
        let value = |s: &Option<Stamped<String>>| s.as_ref().map(|v| v.value.clone());
        ProfileView {
            user_id: self.user_id.clone(),
            tier: self.current_tier().to_string(),
            segment: value(&self.segment),
            country: value(&self.country),
            timezone: value(&self.timezone),
            signup_date: self.signup_date.as_ref().map(|s| s.value),
            goals: self
                .goals
                .as_ref()
                .map(|g| g.value.clone())
                .unwrap_or_default(),
            custom: self
                .custom
                .iter()
                .map(|(k, v)| (k.clone(), v.value.clone()))
                .collect(),
            subscription: self.subscription.as_ref().map(|s| SubscriptionView {
                status: s.value.status,
                plan: s.value.plan.clone(),
                tier: s.value.tier.clone(),
                mrr: s.value.mrr_minor as f64 / 100.0,
                mrr_minor: s.value.mrr_minor,
                currency: s.value.currency.clone(),
                interval: s.value.interval,
                updated_at: s.at,
            }),
            trial: self.trial.as_ref().map(|t| TrialView {
                started_at: t.value.started_at,
                ends_at: t.value.ends_at,
                plan: t.value.plan.clone(),
                tier: t.value.tier.clone(),
                hours_left: (t.value.ends_at - now).num_hours().max(0),
            }),
            features: self
                .features
                .iter()
                .map(|(k, f)| {
                    (
                        k.clone(),
                        FeatureView {
                            count: f.count,
                            total_seconds: f.duration_ms as f64 / 1000.0,
                            first_used_at: f.first_used_at,
                            last_used_at: f.last_used_at,
                        },
                    )
                })
                .collect(),
            first_seen_at: self.first_seen_at,
            last_active_at: self.last_active_at,
            active_days: self.active_days.len(),
            engagement: self.engagement(now, window_days),
            event_count: self.event_count,
            events_by_type: self.events_by_type.clone(),
            version: self.version,
        }
    }
}
