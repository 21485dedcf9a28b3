//! What the nudge rules read from a user's profile: feature usage, trial signals (usage
//! ratio, engagement windows, value shown, goal alignment), the engagement score and offer
//! eligibility inputs. Pure functions of the profile and `now`.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, NaiveDate, Utc};

use super::reminders::TrialSignals;
use super::usage::{self, FeatureStats, UsageInput};
use super::NudgeSettings;
use crate::profiles::{Profile, SubscriptionStatus};

/// Days in each of the two windows compared for an engagement drop.
pub const ENGAGEMENT_WINDOW_DAYS: i64 = 7;

/// The profile's feature usage as the usage analysis reads it (all-time counts and
/// durations; active days are the distinct UTC days with any event).
pub fn usage_input(p: &Profile) -> UsageInput {
    UsageInput {
        features: p
            .features
            .iter()
            .map(|(name, u)| {
                (
                    name.clone(),
                    FeatureStats {
                        count: u.count,
                        duration_ms: u.duration_ms,
                    },
                )
            })
            .collect(),
        active_days: u32::try_from(p.active_days.len()).unwrap_or(u32::MAX),
    }
}

/// Events in the `days` UTC days ending with `end` (inclusive), from the profile's recent
/// per-day activity.
fn events_between(p: &Profile, first: NaiveDate, last: NaiveDate) -> u64 {
    p.recent
        .range(first..=last)
        .map(|(_, activity)| activity.events)
        .sum()
}

/// Signals for planning a trial's behavioural reminders at `now`.
///
/// - `usage_ratio`: [`usage::usage_ratio`] with the elapsed share of the trial
///   ((now − start) / (end − start), clamped to 0..1); unknown at the very start.
/// - engagement: events in the last 7 UTC days (ending today) against the 7 days before.
/// - `value_shown`: the usage analysis's value demonstrated.
/// - `goal_alignment`: of the user's goals that `goal_features` knows, the share with at
///   least one of their features used; unknown without such goals.
/// - least / most used: among the tracked features (ties by name).
pub fn trial_signals(
    p: &Profile,
    started_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    now: DateTime<Utc>,
    settings: &NudgeSettings,
) -> TrialSignals {
    let input = usage_input(p);
    let length = (ends_at - started_at).num_seconds();
    let elapsed = if length > 0 {
        ((now - started_at).num_seconds() as f64 / length as f64).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let analysis = usage::analyse(&input, &settings.prompts);
    let today = now.date_naive();
    let current_first = today - Duration::days(ENGAGEMENT_WINDOW_DAYS - 1);
    let earlier_last = current_first - Duration::days(1);
    let earlier_first = earlier_last - Duration::days(ENGAGEMENT_WINDOW_DAYS - 1);
    let tracked: Vec<(&String, u64)> = settings
        .prompts
        .feature_thresholds
        .keys()
        .map(|f| (f, p.features.get(f).map_or(0, |u| u.count)))
        .collect();
    let least = tracked
        .iter()
        .min_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(b.0)))
        .map(|(f, _)| (*f).clone());
    let most = tracked
        .iter()
        .filter(|(_, c)| *c > 0)
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0)))
        .map(|(f, _)| (*f).clone());
    TrialSignals {
        usage_ratio: usage::usage_ratio(&input, &settings.prompts, elapsed),
        engagement_current: Some(events_between(p, current_first, today)),
        engagement_earlier: Some(events_between(p, earlier_first, earlier_last)),
        value_shown: Some(analysis.value_demonstrated),
        goal_alignment: goal_alignment(p, &settings.goal_features),
        least_used_feature: least,
        most_used_feature: most,
    }
}

/// Share of the user's known goals with at least one of their features used.
pub fn goal_alignment(p: &Profile, goal_features: &BTreeMap<String, Vec<String>>) -> Option<f64> {
    let goals = p.goals.as_ref()?;
    let known: Vec<&Vec<String>> = goals
        .value
        .iter()
        .filter_map(|g| goal_features.get(g))
        .collect();
    if known.is_empty() {
        return None;
    }
    let aligned = known
        .iter()
        .filter(|features| {
            features
                .iter()
                .any(|f| p.features.get(f).is_some_and(|u| u.count > 0))
        })
        .count();
    Some(aligned as f64 / known.len() as f64)
}

/// Engagement score: the share of the last `days` UTC days (ending with `now`'s day) on
/// which the user was active, 0..1.
pub fn engagement_score(p: &Profile, now: DateTime<Utc>, days: u32) -> f64 {
    let days = days.max(1);
    let last = now.date_naive();
    let first = last - Duration::days(i64::from(days) - 1);
    let active = p.active_days.range(first..=last).count();
    active as f64 / f64::from(days)
}

/// Distinct features the user has used (the offer rule's "feature usage").
pub fn features_used(p: &Profile) -> u64 {
    p.features.values().filter(|u| u.count > 0).count() as u64
}

/// Whether the user may still get a trial-style offer: they are in a trial now, or have
/// never had one (a budget subscriber who never tried a higher tier qualifies; a user whose
/// trial already ended does not).
pub fn trial_eligible(p: &Profile) -> bool {
    let trialing = matches!(
        p.subscription.as_ref().map(|s| s.value.status),
        Some(SubscriptionStatus::Trialing)
    );
    let trials = p
        .events_by_type
        .get("subscription_trial_started")
        .copied()
        .unwrap_or(0);
    trialing || (trials == 0 && p.trial.is_none())
}

/// Whether the user has ever paid (a payment, a paid start or a trial conversion, or a
/// subscription active now).
pub fn has_paid(p: &Profile) -> bool {
    let count = |t: &str| p.events_by_type.get(t).copied().unwrap_or(0);
    count("payment_succeeded") > 0
        || count("subscription_started") > 0
        || count("subscription_trial_converted") > 0
        || matches!(
            p.subscription.as_ref().map(|s| s.value.status),
            Some(SubscriptionStatus::Active) | Some(SubscriptionStatus::PastDue)
        )
}

/// The tier a trialing user is trying, if they are in a trial now.
pub fn trial_tier(p: &Profile) -> Option<String> {
    match p.subscription.as_ref().map(|s| s.value.status) {
        Some(SubscriptionStatus::Trialing) => p.trial.as_ref().map(|t| t.value.tier.clone()),
        _ => None,
    }
}

/// The tier the user pays for now: their subscription's tier while it is active or past
/// due; a trialing, cancelled or expired user is on `free`; a user who never subscribed is
/// on the tier the app reported (`identify`), else `free`.
pub fn paid_tier(p: &Profile) -> String {
    match p.subscription.as_ref().map(|s| &s.value) {
        Some(s)
            if matches!(
                s.status,
                SubscriptionStatus::Active | SubscriptionStatus::PastDue
            ) =>
        {
            s.tier.clone()
        }
        // Trialing, cancelled, expired: nothing paid now.
        Some(_) => "free".to_string(),
        // Never subscribed: the tier the app reports (identify), if any.
        None => match p.tier.as_ref() {
            Some(t) if p.trial.is_none() => t.value.clone(),
            _ => "free".to_string(),
        },
    }
}

/// The user's IANA timezone, if they told us one.
pub fn timezone(p: &Profile) -> Option<&str> {
    p.timezone.as_ref().map(|t| t.value.as_str())
}

/// Attributes an experiment condition sees for a nudge decision.
pub fn attributes(p: &Profile) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    m.insert("tier".into(), p.current_tier().into());
    m.insert("segment".into(), p.current_segment().into());
    if let Some(c) = &p.country {
        m.insert("country".into(), c.value.clone().into());
    }
    if let Some(t) = &p.timezone {
        m.insert("timezone".into(), t.value.clone().into());
    }
    for (k, v) in &p.custom {
        m.entry(k.clone()).or_insert_with(|| v.value.clone());
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Event, EventBody, FeatureUsed, Identify};
    use crate::profiles::FoldSettings;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn fold(events: Vec<(&str, EventBody)>) -> Profile {
        let mut p = Profile::new("u1");
        for (i, (ts, body)) in events.into_iter().enumerate() {
            let e = Event {
                event_id: format!("e{i}"),
                user_id: "u1".into(),
                timestamp: at(ts),
                body,
            };
            p.apply(&e, &FoldSettings::default());
        }
        p
    }

    fn used(feature: &str) -> EventBody {
        EventBody::FeatureUsed(FeatureUsed {
            feature: feature.into(),
            duration_ms: 60_000,
        })
    }

    #[test]
    fn engagement_windows_compare_the_last_week_with_the_one_before() {
        let p = fold(vec![
            ("2026-11-02T10:00:00Z", used("budget_tracker")),
            ("2026-11-03T10:00:00Z", used("budget_tracker")),
            ("2026-11-04T10:00:00Z", used("budget_tracker")),
            ("2026-11-05T10:00:00Z", used("budget_tracker")),
            ("2026-11-12T10:00:00Z", used("budget_tracker")),
        ]);
        let s = NudgeSettings::default();
        let sig = trial_signals(
            &p,
            at("2026-11-01T00:00:00Z"),
            at("2026-11-15T00:00:00Z"),
            at("2026-11-14T12:00:00Z"),
            &s,
        );
        // Current window: 8..=14 Nov (1 event); earlier: 1..=7 Nov (4 events).
        assert_eq!(sig.engagement_current, Some(1));
        assert_eq!(sig.engagement_earlier, Some(4));
        assert_eq!(sig.most_used_feature.as_deref(), Some("budget_tracker"));
        assert_eq!(
            sig.least_used_feature.as_deref(),
            Some("expense_categorizer")
        );
    }

    #[test]
    fn goal_alignment_counts_known_goals_with_a_used_feature() {
        let p = fold(vec![
            (
                "2026-11-02T10:00:00Z",
                EventBody::Identify(Identify {
                    goals: Some(vec![
                        "save_money".into(),
                        "invest_for_future".into(),
                        "unknown_goal".into(),
                    ]),
                    ..Identify::default()
                }),
            ),
            ("2026-11-03T10:00:00Z", used("savings_goals")),
        ]);
        let s = NudgeSettings::default();
        assert_eq!(goal_alignment(&p, &s.goal_features), Some(0.5));
        assert_eq!(goal_alignment(&Profile::new("x"), &s.goal_features), None);
    }

    #[test]
    fn engagement_score_is_the_share_of_active_days() {
        let p = fold(vec![
            ("2026-11-10T10:00:00Z", used("a")),
            ("2026-11-11T10:00:00Z", used("a")),
            ("2026-11-11T12:00:00Z", used("b")),
            ("2026-10-01T10:00:00Z", used("a")),
        ]);
        let now = at("2026-11-14T12:00:00Z");
        assert_eq!(engagement_score(&p, now, 14), 2.0 / 14.0);
        assert_eq!(features_used(&p), 2);
        assert!(trial_eligible(&p));
        assert_eq!(paid_tier(&p), "free");
    }
}
