//! Per-user optimization analytics: conversion metrics computed from a segment's counters over
//! a window of `days`, the user's own nudge rates, and rule-based recommendations.
//!
//! **Rates.** A [`Rate`] is `numerator / denominator` with both counts shown; its `value` is
//! `None` when the denominator is 0 (never NaN or infinite) and is not clamped, so a counter
//! anomaly (more clicks than impressions) stays visible.
//!
//! **Segment metrics** ([`metrics`]), all over the segment's window:
//! - `trial_to_paid = trials_converted / trials_started` (conversions in the window over trials
//!   started in it; for a steady flow of trials this approximates the cohort rate).
//! - `prompt_click_through = nudges.prompt.clicked / nudges.prompt.shown`;
//!   `prompt_conversion = nudges.prompt.converted / nudges.prompt.shown`;
//!   `offer_acceptance = nudges.offer.converted / nudges.offer.shown`;
//!   `social_proof_effectiveness = nudges.social_proof.converted / nudges.social_proof.shown`
//!   (a missing kind counts as zeros).
//! - `experiment_lift` = arithmetic mean of the known, finite `relative_lift`s of the user's
//!   variants against control (`None` when none is known; significance is not required).
//! - `arpu_minor_by_currency[c] = revenue_minor_by_currency[c] × 30 / days /
//!   ((subscribers_at_start + subscribers_now) / 2)`: revenue per paying subscriber per 30
//!   days (ChartMogul's ARPA), in minor units (may be negative when refunds exceed revenue).
//!   Empty when `days` is 0 or the segment had no subscribers.
//! - `churn_rate = cancellations / (subscribers_at_start + subscriptions_started +
//!   trials_converted)`: the share of everyone who paid during the window who cancelled in it.
//! - `monthly_churn = 1 − (1 − min(churn_rate, 1))^(30 / days)`: the window rate rescaled to
//!   30 days assuming a constant cancellation hazard; in `[0, 1]`, `None` when `days` is 0 or
//!   the base is 0.
//! - `ltv_minor_by_currency[c] = arpu[c] / monthly_churn` (a geometric lifetime of
//!   `1 / monthly_churn` months), `None` when monthly churn is unknown or 0.
//!
//! *Limits:* subscribers are counted per segment as users enter and leave a paying state
//! (the segment the profile holds then), so a user who changes segment while paying stays
//! counted in the old one until they cancel. The average of the two ends approximates the
//! window's average subscriber count.
//!
//! **User rates** ([`user_rates`]): `prompt_click_through = prompts_clicked / prompts_shown`,
//! `prompt_conversion = prompts_converted / prompts_shown`, `social_proof_effectiveness =
//! proof_conversions / proof_impressions`, `offer_acceptance = offers_redeemed / offers_viewed`.
//!
//! **Recommendations** ([`recommendations`]), in this order, each citing its figure (unknown or
//! non-finite figures never fire a rule):
//! 1. `low_engagement`: `engagement_score < low_engagement_below` (0.3).
//! 2. `lead_with_value`: `value_demonstrated >= strong_value_at_least` (0.6), not converted.
//! 3. `social_proof_not_converting`: `proof_impressions >= proof_min_impressions` (5) and the
//!    user's social proof effectiveness `< proof_effectiveness_below` (0.05).
//! 4. `offer_resistance`: `offers_viewed` (else `offers_created`) `>= offer_resistance_min_offers`
//!    (2) and `offers_redeemed = 0`.
//! 5. `prompt_fatigue`: `prompts_shown >= prompt_fatigue_min_shown` (5) and the user's prompt
//!    click-through `< prompt_ctr_below` (0.05).
//! 6. `try_limited_time_offer`: trialing, not converted, no offer yet, and the segment's
//!    `trial_to_paid < segment_trial_to_paid_below` (0.15).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::events::FieldError;

/// A ratio with its counts; `value` is `None` when `denominator` is 0.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Rate {
    pub numerator: u64,
    pub denominator: u64,
    pub value: Option<f64>,
}

impl Rate {
    pub fn new(numerator: u64, denominator: u64) -> Rate {
        let value = (denominator > 0).then(|| numerator as f64 / denominator as f64);
        Rate {
            numerator,
            denominator,
            value,
        }
    }
}

/// One user's nudge counters and profile figures (all counts since their first nudge).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct UserNudgeCounts {
    pub reminders_sent: u64,
    pub reminders_skipped: u64,
    pub reminders_cancelled: u64,
    pub prompts_created: u64,
    pub prompts_shown: u64,
    pub prompts_clicked: u64,
    pub prompts_converted: u64,
    pub proofs_served: u64,
    pub proof_impressions: u64,
    pub proof_conversions: u64,
    pub offers_created: u64,
    pub offers_viewed: u64,
    pub offers_redeemed: u64,
    pub offers_expired: u64,
    /// Engagement score in `[0, 1]`, when known.
    pub engagement_score: Option<f64>,
    /// Value demonstrated in `[0, 1]`, when known.
    pub value_demonstrated: Option<f64>,
    pub trialing: bool,
    pub converted: bool,
}

/// Outcomes of one nudge kind in a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NudgeTally {
    pub shown: u64,
    pub clicked: u64,
    pub converted: u64,
}

/// A segment's counters over a window of `days`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SegmentCounts {
    pub segment: String,
    pub days: u32,
    /// Paying subscribers at the start of the window.
    pub subscribers_at_start: u64,
    /// Paying subscribers now.
    pub subscribers_now: u64,
    pub trials_started: u64,
    pub trials_converted: u64,
    /// Paid subscriptions started without a trial.
    pub subscriptions_started: u64,
    pub cancellations: u64,
    /// Sum over days of the users active that day (informational).
    pub active_user_days: u64,
    pub active_users_estimate: u64,
    /// Net revenue in minor units per ISO 4217 currency.
    pub revenue_minor_by_currency: BTreeMap<String, i64>,
    /// Tallies per nudge kind: `reminder`, `prompt`, `social_proof`, `offer`.
    pub nudges: BTreeMap<String, NudgeTally>,
}

/// A variant's lift against control on one metric (computed by the caller from stored
/// experiment statistics).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentLift {
    pub experiment: String,
    pub variant: String,
    pub metric: String,
    pub relative_lift: Option<f64>,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    pub significant: Option<bool>,
}

/// The segment's conversion metrics (formulas in the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversionMetrics {
    pub trial_to_paid: Rate,
    pub prompt_click_through: Rate,
    pub prompt_conversion: Rate,
    pub offer_acceptance: Rate,
    pub social_proof_effectiveness: Rate,
    pub experiment_lift: Option<f64>,
    pub arpu_minor_by_currency: BTreeMap<String, f64>,
    pub ltv_minor_by_currency: BTreeMap<String, Option<f64>>,
    pub churn_rate: Rate,
    pub monthly_churn: Option<f64>,
}

/// Computes the segment's conversion metrics.
pub fn metrics(segment: &SegmentCounts, lifts: &[ExperimentLift]) -> ConversionMetrics {
    let tally = |kind: &str| segment.nudges.get(kind).copied().unwrap_or_default();
    let (prompt, offer, proof) = (tally("prompt"), tally("offer"), tally("social_proof"));
    let known: Vec<f64> = lifts
        .iter()
        .filter_map(|l| l.relative_lift)
        .filter(|x| x.is_finite())
        .collect();
    let mean = known.iter().sum::<f64>() / known.len().max(1) as f64;
    let experiment_lift = Some(mean).filter(|m| !known.is_empty() && m.is_finite());

    let days = f64::from(segment.days);
    let users = (segment.subscribers_at_start as f64 + segment.subscribers_now as f64) / 2.0;
    let arpu: BTreeMap<String, f64> = if segment.days > 0 && users > 0.0 {
        let per = |r: i64| r as f64 * 30.0 / days / users;
        segment
            .revenue_minor_by_currency
            .iter()
            .map(|(c, r)| (c.clone(), per(*r)))
            .collect()
    } else {
        BTreeMap::new()
    };

    let base = segment
        .subscribers_at_start
        .saturating_add(segment.subscriptions_started)
        .saturating_add(segment.trials_converted);
    let churn_rate = Rate::new(segment.cancellations, base);
    let monthly_churn = churn_rate
        .value
        .filter(|_| segment.days > 0)
        .map(|c| 1.0 - (1.0 - c.clamp(0.0, 1.0)).powf(30.0 / days));
    let churn = monthly_churn.filter(|m| *m > 0.0);
    let ltv = arpu
        .iter()
        .map(|(c, a)| (c.clone(), churn.map(|m| a / m).filter(|l| l.is_finite())))
        .collect();

    ConversionMetrics {
        trial_to_paid: Rate::new(segment.trials_converted, segment.trials_started),
        prompt_click_through: Rate::new(prompt.clicked, prompt.shown),
        prompt_conversion: Rate::new(prompt.converted, prompt.shown),
        offer_acceptance: Rate::new(offer.converted, offer.shown),
        social_proof_effectiveness: Rate::new(proof.converted, proof.shown),
        experiment_lift,
        arpu_minor_by_currency: arpu,
        ltv_minor_by_currency: ltv,
        churn_rate,
        monthly_churn,
    }
}

/// The user's own nudge rates (formulas in the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserRates {
    pub prompt_click_through: Rate,
    pub prompt_conversion: Rate,
    pub social_proof_effectiveness: Rate,
    pub offer_acceptance: Rate,
}

/// Computes the user's own nudge rates.
pub fn user_rates(u: &UserNudgeCounts) -> UserRates {
    UserRates {
        prompt_click_through: Rate::new(u.prompts_clicked, u.prompts_shown),
        prompt_conversion: Rate::new(u.prompts_converted, u.prompts_shown),
        social_proof_effectiveness: Rate::new(u.proof_conversions, u.proof_impressions),
        offer_acceptance: Rate::new(u.offers_redeemed, u.offers_viewed),
    }
}

/// One recommendation: `figure` names the number that triggered it (`user.engagement_score`,
/// `segment.trial_to_paid`, ...), `value` is that number and `threshold` the rule's bound.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recommendation {
    pub code: String,
    pub message: String,
    pub figure: String,
    pub value: f64,
    pub threshold: f64,
}

/// Thresholds of the recommendation rules (defaults on each field).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecommendationRules {
    /// `low_engagement` below this engagement score (0.3).
    pub low_engagement_below: f64,
    /// `lead_with_value` at or above this value demonstrated (0.6).
    pub strong_value_at_least: f64,
    /// Social proof impressions needed before judging it (5).
    pub proof_min_impressions: u64,
    /// `social_proof_not_converting` below this effectiveness (0.05).
    pub proof_effectiveness_below: f64,
    /// Offers viewed (or created) before `offer_resistance` can fire (2).
    pub offer_resistance_min_offers: u64,
    /// Prompts shown before `prompt_fatigue` can fire (5).
    pub prompt_fatigue_min_shown: u64,
    /// `prompt_fatigue` below this click-through (0.05).
    pub prompt_ctr_below: f64,
    /// `try_limited_time_offer` below this segment trial-to-paid rate (0.15).
    pub segment_trial_to_paid_below: f64,
}

impl Default for RecommendationRules {
    fn default() -> Self {
        RecommendationRules {
            low_engagement_below: 0.3,
            strong_value_at_least: 0.6,
            proof_min_impressions: 5,
            proof_effectiveness_below: 0.05,
            offer_resistance_min_offers: 2,
            prompt_fatigue_min_shown: 5,
            prompt_ctr_below: 0.05,
            segment_trial_to_paid_below: 0.15,
        }
    }
}

impl RecommendationRules {
    /// Every problem of the rules, with dotted paths under `prefix`: fractions must lie in
    /// `[0, 1]`, minimum counts must be at least 1.
    pub fn validate(&self, prefix: &str) -> Vec<FieldError> {
        let mut e = Vec::new();
        for (name, x) in [
            ("low_engagement_below", self.low_engagement_below),
            ("strong_value_at_least", self.strong_value_at_least),
            ("proof_effectiveness_below", self.proof_effectiveness_below),
            ("prompt_ctr_below", self.prompt_ctr_below),
            (
                "segment_trial_to_paid_below",
                self.segment_trial_to_paid_below,
            ),
        ] {
            if !(0.0..=1.0).contains(&x) {
                e.push(FieldError::new(
                    format!("{prefix}.{name}"),
                    "must be a number in [0, 1]",
                ));
            }
        }
        for (name, n) in [
            ("proof_min_impressions", self.proof_min_impressions),
            (
                "offer_resistance_min_offers",
                self.offer_resistance_min_offers,
            ),
            ("prompt_fatigue_min_shown", self.prompt_fatigue_min_shown),
        ] {
            if n == 0 {
                e.push(FieldError::new(
                    format!("{prefix}.{name}"),
                    "must be at least 1",
                ));
            }
        }
        e
    }
}

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

fn rec(code: &str, message: String, figure: &str, value: f64, threshold: f64) -> Recommendation {
    Recommendation {
        code: code.to_string(),
        message,
        figure: figure.to_string(),
        value,
        threshold,
    }
}

/// The recommendations whose rules fire for this user, in the documented order.
pub fn recommendations(
    user: &UserNudgeCounts,
    segment_metrics: &ConversionMetrics,
    rules: &RecommendationRules,
) -> Vec<Recommendation> {
    let mut out = Vec::new();
    let rates = user_rates(user);
    if let Some(e) = user
        .engagement_score
        .filter(|e| e.is_finite() && *e < rules.low_engagement_below)
    {
        let msg = format!(
            "Engagement is low ({e:.2} < {:.2}): increase engagement through personalized content before asking for an upgrade.",
            rules.low_engagement_below
        );
        out.push(rec(
            "low_engagement",
            msg,
            "user.engagement_score",
            e,
            rules.low_engagement_below,
        ));
    }
    if let Some(v) = user
        .value_demonstrated
        .filter(|v| v.is_finite() && *v >= rules.strong_value_at_least && !user.converted)
    {
        let msg = format!(
            "Strong value demonstrated ({v:.2}): lead with the value the user already gets."
        );
        out.push(rec(
            "lead_with_value",
            msg,
            "user.value_demonstrated",
            v,
            rules.strong_value_at_least,
        ));
    }
    if user.proof_impressions >= rules.proof_min_impressions {
        let r = rates.social_proof_effectiveness;
        if let Some(v) = r.value.filter(|v| *v < rules.proof_effectiveness_below) {
            let msg = format!(
                "Social proof converted {} of {} impressions ({}): optimize its relevance and timing.",
                r.numerator,
                r.denominator,
                pct(v)
            );
            let t = rules.proof_effectiveness_below;
            out.push(rec(
                "social_proof_not_converting",
                msg,
                "user.social_proof_effectiveness",
                v,
                t,
            ));
        }
    }
    let min_offers = rules.offer_resistance_min_offers;
    if user.offers_redeemed == 0 {
        let seen = if user.offers_viewed >= min_offers {
            Some(("user.offers_viewed", user.offers_viewed, "viewed"))
        } else if user.offers_created >= min_offers {
            Some(("user.offers_created", user.offers_created, "made"))
        } else {
            None
        };
        if let Some((figure, n, verb)) = seen {
            let msg = format!(
                "{n} offers {verb}, none redeemed: test different offer types and messaging."
            );
            out.push(rec(
                "offer_resistance",
                msg,
                figure,
                n as f64,
                min_offers as f64,
            ));
        }
    }
    if user.prompts_shown >= rules.prompt_fatigue_min_shown {
        let r = rates.prompt_click_through;
        if let Some(v) = r.value.filter(|v| *v < rules.prompt_ctr_below) {
            let msg = format!(
                "Prompts were shown {} times with {} click-through: show fewer prompts or change their design.",
                r.denominator,
                pct(v)
            );
            out.push(rec(
                "prompt_fatigue",
                msg,
                "user.prompt_click_through",
                v,
                rules.prompt_ctr_below,
            ));
        }
    }
    if user.trialing && !user.converted && user.offers_created == 0 {
        let t = rules.segment_trial_to_paid_below;
        if let Some(v) = segment_metrics.trial_to_paid.value.filter(|v| *v < t) {
            let msg = format!(
                "The segment converts {} of trials: try a limited-time offer.",
                pct(v)
            );
            out.push(rec(
                "try_limited_time_offer",
                msg,
                "segment.trial_to_paid",
                v,
                t,
            ));
        }
    }
    out
}

/// The analytics response for one user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserAnalytics {
    pub user_id: String,
    pub segment: String,
    pub window_days: u32,
    pub counts: UserNudgeCounts,
    pub user_rates: UserRates,
    pub conversion_metrics: ConversionMetrics,
    pub recommendations: Vec<Recommendation>,
}

/// Everything the analytics endpoint returns for `user_id`.
pub fn analytics(
    user_id: &str,
    user: &UserNudgeCounts,
    segment: &SegmentCounts,
    lifts: &[ExperimentLift],
    rules: &RecommendationRules,
) -> UserAnalytics {
    let conversion_metrics = metrics(segment, lifts);
    UserAnalytics {
        user_id: user_id.to_string(),
        segment: segment.segment.clone(),
        window_days: segment.days,
        counts: user.clone(),
        user_rates: user_rates(user),
        recommendations: recommendations(user, &conversion_metrics, rules),
        conversion_metrics,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn segment() -> SegmentCounts {
        let tally = |shown, clicked, converted| NudgeTally {
            shown,
            clicked,
            converted,
        };
        SegmentCounts {
            segment: "smb".into(),
            days: 60,
            subscribers_at_start: 150,
            subscribers_now: 180,
            trials_started: 200,
            trials_converted: 30,
            subscriptions_started: 20,
            cancellations: 20,
            active_user_days: 21_000,
            active_users_estimate: 1000,
            revenue_minor_by_currency: BTreeMap::from([
                ("EUR".into(), 120_000),
                ("USD".into(), 600_000),
            ]),
            nudges: BTreeMap::from([
                ("prompt".into(), tally(400, 60, 12)),
                ("offer".into(), tally(50, 20, 10)),
                ("social_proof".into(), tally(300, 0, 9)),
            ]),
        }
    }

    fn lift(x: Option<f64>) -> ExperimentLift {
        ExperimentLift {
            experiment: "e".into(),
            variant: "b".into(),
            metric: "conversion".into(),
            relative_lift: x,
            ci_low: None,
            ci_high: None,
            significant: None,
        }
    }

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-9)
    }

    #[test]
    fn metrics_of_a_hand_built_segment_match_the_formulas() {
        let lifts = [
            lift(Some(0.10)),
            lift(Some(0.02)),
            lift(None),
            lift(Some(f64::NAN)),
        ];
        let m = metrics(&segment(), &lifts);
        assert_eq!(
            m.trial_to_paid,
            Rate {
                numerator: 30,
                denominator: 200,
                value: Some(0.15)
            }
        );
        assert_eq!(m.prompt_click_through, Rate::new(60, 400));
        assert_eq!(m.prompt_click_through.value, Some(0.15));
        assert_eq!(m.prompt_conversion.value, Some(0.03));
        assert_eq!(m.offer_acceptance.value, Some(0.2));
        assert_eq!(m.social_proof_effectiveness.value, Some(0.03));
        assert!(close(m.experiment_lift, 0.06));
        assert_eq!(
            m.arpu_minor_by_currency,
            BTreeMap::from([
                ("EUR".into(), 363.636_363_636_363_6),
                ("USD".into(), 1_818.181_818_181_818_2)
            ])
        );
        assert_eq!(
            m.churn_rate,
            Rate {
                numerator: 20,
                denominator: 200,
                value: Some(0.1)
            }
        );
        // 1 - 0.9^(30/60) = 1 - sqrt(0.9)
        assert!(close(m.monthly_churn, 0.051_316_701_949_486_23));
        assert!(close(m.ltv_minor_by_currency["USD"], 35_430.605_419_100_23));
        assert!(close(m.ltv_minor_by_currency["EUR"], 7_086.121_083_820_046));
    }

    #[test]
    fn a_thirty_day_window_keeps_the_window_churn_as_monthly_churn() {
        let s = SegmentCounts {
            days: 30,
            ..segment()
        };
        let m = metrics(&s, &[]);
        assert!(close(m.monthly_churn, 0.1));
        assert_eq!(m.arpu_minor_by_currency["USD"], 3_636.363_636_363_636_5);
        assert!(close(m.ltv_minor_by_currency["USD"], 36_363.636_363_636_36));
        assert_eq!(m.experiment_lift, None);
    }

    #[test]
    fn zero_denominators_give_none_and_never_nan() {
        let m = metrics(&SegmentCounts::default(), &[]);
        for r in [
            m.trial_to_paid,
            m.prompt_click_through,
            m.prompt_conversion,
            m.offer_acceptance,
        ] {
            assert_eq!(r.value, None);
        }
        assert_eq!(
            (m.social_proof_effectiveness.value, m.churn_rate.value),
            (None, None)
        );
        assert_eq!((m.monthly_churn, m.experiment_lift), (None, None));
        assert!(m.arpu_minor_by_currency.is_empty() && m.ltv_minor_by_currency.is_empty());
        let no_users = SegmentCounts {
            subscribers_at_start: 0,
            subscribers_now: 0,
            ..segment()
        };
        assert!(metrics(&no_users, &[]).arpu_minor_by_currency.is_empty());
        let no_days = SegmentCounts {
            days: 0,
            ..segment()
        };
        let m = metrics(&no_days, &[]);
        assert_eq!((m.monthly_churn, m.arpu_minor_by_currency.len()), (None, 0));
        assert_eq!(m.churn_rate.value, Some(0.1));
        assert!(!serde_json::to_string(&m).unwrap().contains("NaN"));
    }

    #[test]
    fn churn_above_one_is_clamped_and_zero_churn_leaves_ltv_unknown() {
        let s = SegmentCounts {
            cancellations: 500,
            ..segment()
        };
        let m = metrics(&s, &[]);
        assert_eq!(
            (m.churn_rate.value, m.monthly_churn),
            (Some(2.5), Some(1.0))
        );
        assert_eq!(
            m.ltv_minor_by_currency["USD"],
            Some(1_818.181_818_181_818_2)
        );
        let s = SegmentCounts {
            cancellations: 0,
            ..segment()
        };
        let m = metrics(&s, &[]);
        assert_eq!(m.monthly_churn, Some(0.0));
        assert_eq!(m.ltv_minor_by_currency["USD"], None);
    }

    fn fired(u: &UserNudgeCounts) -> Vec<(String, String, f64, f64)> {
        let m = metrics(&segment(), &[]);
        recommendations(u, &m, &RecommendationRules::default())
            .into_iter()
            .map(|r| (r.code, r.figure, r.value, r.threshold))
            .collect()
    }

    fn one(
        code: &str,
        figure: &str,
        value: f64,
        threshold: f64,
    ) -> Vec<(String, String, f64, f64)> {
        vec![(code.into(), figure.into(), value, threshold)]
    }

    #[test]
    fn a_user_without_figures_gets_no_recommendation() {
        assert!(fired(&UserNudgeCounts::default()).is_empty());
    }

    #[test]
    fn low_engagement_fires_below_its_threshold_only() {
        let u = |e| UserNudgeCounts {
            engagement_score: Some(e),
            ..Default::default()
        };
        assert_eq!(
            fired(&u(0.29)),
            one("low_engagement", "user.engagement_score", 0.29, 0.3)
        );
        assert!(fired(&u(0.3)).is_empty());
        assert!(fired(&u(f64::NEG_INFINITY)).is_empty() && fired(&u(f64::NAN)).is_empty());
    }

    #[test]
    fn strong_value_fires_at_its_threshold_for_unconverted_users() {
        let u = |v, converted| UserNudgeCounts {
            value_demonstrated: Some(v),
            converted,
            ..Default::default()
        };
        assert_eq!(
            fired(&u(0.6, false)),
            one("lead_with_value", "user.value_demonstrated", 0.6, 0.6)
        );
        assert!(fired(&u(0.59, false)).is_empty());
        assert!(fired(&u(0.9, true)).is_empty());
    }

    #[test]
    fn social_proof_not_converting_needs_enough_impressions_and_a_low_rate() {
        let u = |imp, conv| UserNudgeCounts {
            proof_impressions: imp,
            proof_conversions: conv,
            ..Default::default()
        };
        let figure = "user.social_proof_effectiveness";
        assert_eq!(
            fired(&u(5, 0)),
            one("social_proof_not_converting", figure, 0.0, 0.05)
        );
        assert!(fired(&u(4, 0)).is_empty());
        assert_eq!(
            fired(&u(21, 1)),
            one("social_proof_not_converting", figure, 1.0 / 21.0, 0.05)
        );
        assert!(fired(&u(20, 1)).is_empty()); // exactly 0.05
    }

    #[test]
    fn offer_resistance_fires_at_the_minimum_offers_with_none_redeemed() {
        let u = |created, viewed, redeemed| UserNudgeCounts {
            offers_created: created,
            offers_viewed: viewed,
            offers_redeemed: redeemed,
            ..Default::default()
        };
        assert_eq!(
            fired(&u(2, 2, 0)),
            one("offer_resistance", "user.offers_viewed", 2.0, 2.0)
        );
        assert_eq!(
            fired(&u(2, 0, 0)),
            one("offer_resistance", "user.offers_created", 2.0, 2.0)
        );
        assert!(fired(&u(1, 1, 0)).is_empty());
        assert!(fired(&u(3, 3, 1)).is_empty());
    }

    #[test]
    fn prompt_fatigue_needs_enough_prompts_and_a_low_click_through() {
        let u = |shown, clicked| UserNudgeCounts {
            prompts_shown: shown,
            prompts_clicked: clicked,
            ..Default::default()
        };
        assert_eq!(
            fired(&u(5, 0)),
            one("prompt_fatigue", "user.prompt_click_through", 0.0, 0.05)
        );
        assert!(fired(&u(4, 0)).is_empty());
        assert!(fired(&u(20, 1)).is_empty()); // exactly 0.05
        let r = recommendations(
            &u(21, 1),
            &metrics(&segment(), &[]),
            &RecommendationRules::default(),
        );
        assert_eq!(r[0].message, "Prompts were shown 21 times with 4.8% click-through: show fewer prompts or change their design.");
    }

    #[test]
    fn a_trialing_user_in_a_poorly_converting_segment_is_offered_a_limited_time_offer() {
        let user = UserNudgeCounts {
            trialing: true,
            ..Default::default()
        };
        let with = |converted| {
            let s = SegmentCounts {
                trials_converted: converted,
                ..segment()
            };
            recommendations(&user, &metrics(&s, &[]), &RecommendationRules::default())
                .into_iter()
                .map(|r| (r.code, r.figure, r.value, r.threshold))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            with(29),
            one(
                "try_limited_time_offer",
                "segment.trial_to_paid",
                0.145,
                0.15
            )
        );
        assert!(with(30).is_empty()); // exactly 0.15
        let offered = UserNudgeCounts {
            offers_created: 1,
            ..user
        };
        let s = SegmentCounts {
            trials_converted: 0,
            ..segment()
        };
        assert!(
            recommendations(&offered, &metrics(&s, &[]), &RecommendationRules::default())
                .is_empty()
        );
    }

    #[test]
    fn all_rules_firing_come_out_in_the_documented_order() {
        let u = UserNudgeCounts {
            engagement_score: Some(0.1),
            value_demonstrated: Some(0.8),
            proof_impressions: 10,
            offers_created: 2,
            offers_viewed: 2,
            prompts_shown: 10,
            trialing: true,
            ..Default::default()
        };
        let s = SegmentCounts {
            trials_converted: 10,
            ..segment()
        };
        let a = analytics("u1", &u, &s, &[], &RecommendationRules::default());
        let codes: Vec<&str> = a.recommendations.iter().map(|r| r.code.as_str()).collect();
        assert_eq!(
            codes,
            [
                "low_engagement",
                "lead_with_value",
                "social_proof_not_converting",
                "offer_resistance",
                "prompt_fatigue"
            ]
        );
        assert_eq!(
            (a.user_id.as_str(), a.segment.as_str(), a.window_days),
            ("u1", "smb", 60)
        );
        assert_eq!(
            a.user_rates.prompt_click_through,
            Rate {
                numerator: 0,
                denominator: 10,
                value: Some(0.0)
            }
        );
        assert_eq!(a.user_rates.offer_acceptance.value, Some(0.0));
    }

    #[test]
    fn rules_validate_every_field_and_reject_unknown_ones() {
        assert!(RecommendationRules::default().validate("r").is_empty());
        let bad = RecommendationRules {
            low_engagement_below: 1.5,
            prompt_ctr_below: f64::NAN,
            proof_min_impressions: 0,
            ..Default::default()
        };
        let fields: Vec<String> = bad.validate("r").into_iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            [
                "r.low_engagement_below",
                "r.prompt_ctr_below",
                "r.proof_min_impressions"
            ]
        );
        assert!(
            serde_json::from_value::<RecommendationRules>(json!({"low_engagement": 0.2})).is_err()
        );
        let r: RecommendationRules =
            serde_json::from_value(json!({"prompt_ctr_below": 0.1})).unwrap();
        assert_eq!((r.prompt_ctr_below, r.proof_min_impressions), (0.1, 5));
    }
}
