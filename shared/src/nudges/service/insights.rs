//! `GET /v1/users/{user_id}/optimization`: the user's nudges and experiment participation,
//! conversion metrics of their segment computed from the daily aggregates, and the
//! recommendations the explicit rules draw from those numbers.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use futures::stream::{self, StreamExt, TryStreamExt};
use serde_json::{json, Value};

use super::{NudgeError, Nudges};
use crate::experiments::analysis;
use crate::experiments::fold::MetricStore;
use crate::experiments::model::MetricRole;
use crate::nudges::analytics::{self, ExperimentLift, NudgeTally, SegmentCounts, UserNudgeCounts};
use crate::nudges::reminders::ReminderStatus;
use crate::nudges::signals;
use crate::profiles::SubscriptionStatus;

/// Sums a segment's counters (`sg#<segment>#...`) over the window's daily aggregates.
pub fn segment_counts(
    segment: &str,
    days: u32,
    daily: &[BTreeMap<String, i64>],
    all_time: &BTreeMap<String, i64>,
) -> SegmentCounts {
    let prefix = format!("sg#{segment}#");
    let mut c = SegmentCounts {
        segment: segment.to_string(),
        days,
        ..SegmentCounts::default()
    };
    let subs_now = all_time.get(&format!("{prefix}subs")).copied().unwrap_or(0);
    let mut subs_moved = 0i64;
    for counters in daily {
        for (name, &value) in counters {
            let Some(rest) = name.strip_prefix(&prefix) else {
                continue;
            };
            let v = value.max(0) as u64;
            match rest {
                "au" => c.active_user_days += v,
                "trial_started" => c.trials_started += v,
                "trial_converted" => c.trials_converted += v,
                "sub_started" => c.subscriptions_started += v,
                "canceled" => c.cancellations += v,
                "subs" => subs_moved += value,
                _ => {
                    if let Some(cur) = rest.strip_prefix("rev#") {
                        *c.revenue_minor_by_currency
                            .entry(cur.to_string())
                            .or_default() += value;
                    } else if let Some(n) = rest.strip_prefix("nudge#") {
                        if let Some((kind, what)) = n.split_once('#') {
                            let t: &mut NudgeTally = c.nudges.entry(kind.to_string()).or_default();
                            match what {
                                "shown" => t.shown += v,
                                "clicked" => t.clicked += v,
                                "converted" => t.converted += v,
                                _ => {}
                            }
                        }
                    }
                }
            }
        }
    }
    c.subscribers_now = subs_now.max(0) as u64;
    c.subscribers_at_start = (subs_now - subs_moved).max(0) as u64;
    // Distinct users are not countable from daily sums; the average daily active users is
    // the estimate (documented in docs/NUDGES.md).
    c.active_users_estimate = if days == 0 {
        0
    } else {
        c.active_user_days.div_ceil(u64::from(days))
    };
    c
}

impl Nudges<'_> {
    pub async fn optimization(
        &self,
        user_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Value, NudgeError> {
        let profile = self.profile(user_id).await?;
        let trials = self.user_trials(user_id).await?;
        let prompts = self.user_prompts(user_id).await?;
        let served = self.proofs_served(user_id).await?;
        let offers = self.user_offers(user_id).await?;
        let catalog = self.list_proofs().await?;

        // Experiment participation and the lift of the user's variant on each primary metric.
        let mut lifts = Vec::new();
        let mut participation = Vec::new();
        for a in self.store.user_assignments(user_id).await? {
            let Some(e) = self.store.get_experiment(&a.experiment).await? else {
                continue;
            };
            let mut lift = ExperimentLift {
                experiment: a.experiment.clone(),
                variant: a.variant_key.clone(),
                metric: e.definition.primary_metric.name.clone(),
                relative_lift: None,
                ci_low: None,
                ci_high: None,
                significant: None,
            };
            if a.bucket_version == e.bucket_version && a.variant > 0 {
                let stats = self.store.phase_stats(e.key(), e.bucket_version).await?;
                if let Ok(results) = analysis::compute(&e, &stats, now) {
                    let primary = results
                        .metrics
                        .iter()
                        .find(|m| m.role == MetricRole::Primary);
                    if let Some(c) = primary
                        .and_then(|m| m.comparisons.iter().find(|c| c.variant == a.variant_key))
                    {
                        lift.relative_lift = c.relative.estimate;
                        lift.ci_low = c.relative.ci[0];
                        lift.ci_high = c.relative.ci[1];
                        lift.significant = Some(c.significant);
                    }
                }
                lifts.push(lift.clone());
            }
            participation.push(json!({
                "experiment": a.experiment,
                "test_type": e.definition.test_type,
                "status": e.status,
                "variant": a.variant_key,
                "assigned_at": a.assigned_at,
                "control": a.variant == 0,
                "lift": lift,
            }));
        }

        let segment = profile.current_segment().to_string();
        let days = self.settings.analytics_window_days;
        let today = now.date_naive();
        let window: Vec<_> = (0..days)
            .map(|i| today - Duration::days(i64::from(i)))
            .collect();
        let daily: Vec<BTreeMap<String, i64>> = stream::iter(window)
            .map(|day| self.store.daily_counters(day))
            .buffer_unordered(16)
            .try_collect()
            .await?;
        let all_time = self
            .store
            .daily_counters(crate::profiles::ALL_TIME_DAY)
            .await?;
        let counts = segment_counts(&segment, days, &daily, &all_time);
        let metrics = analytics::metrics(&counts, &lifts);

        let reminders: Vec<_> = trials.iter().flat_map(|t| t.reminders.iter()).collect();
        let status_count =
            |s: ReminderStatus| reminders.iter().filter(|r| r.status == s).count() as u64;
        let shown_proofs: Vec<&crate::nudges::social_proof::Proof> = catalog
            .iter()
            .filter(|p| served.iter().any(|(id, _)| *id == p.proof_id))
            .collect();
        let outcome = |key: &str| profile.nudge_outcomes.get(key).copied().unwrap_or(0);
        let counts_user = UserNudgeCounts {
            reminders_sent: status_count(ReminderStatus::Sent),
            reminders_skipped: status_count(ReminderStatus::Skipped),
            reminders_cancelled: status_count(ReminderStatus::Cancelled),
            prompts_created: prompts.len() as u64,
            prompts_shown: prompts.iter().filter(|p| p.shown_at.is_some()).count() as u64,
            prompts_clicked: prompts.iter().filter(|p| p.clicked_at.is_some()).count() as u64,
            prompts_converted: prompts.iter().filter(|p| p.converted_at.is_some()).count() as u64,
            proofs_served: served.len() as u64,
            proof_impressions: outcome("social_proof#shown"),
            proof_conversions: outcome("social_proof#converted"),
            offers_created: offers.len() as u64,
            offers_viewed: offers.iter().filter(|o| o.viewed_at.is_some()).count() as u64,
            offers_redeemed: offers.iter().filter(|o| o.redemptions > 0).count() as u64,
            offers_expired: offers
                .iter()
                .filter(|o| o.redemptions == 0 && o.ends_at <= now)
                .count() as u64,
            engagement_score: Some(signals::engagement_score(
                &profile,
                now,
                self.settings.engagement_days,
            )),
            value_demonstrated: Some(
                crate::nudges::usage::analyse(
                    &signals::usage_input(&profile),
                    &self.settings.prompts,
                )
                .value_demonstrated,
            ),
            trialing: matches!(
                profile.subscription.as_ref().map(|s| s.value.status),
                Some(SubscriptionStatus::Trialing)
            ),
            converted: signals::has_paid(&profile),
        };
        let recommendations =
            analytics::recommendations(&counts_user, &metrics, &self.settings.recommendations);
        Ok(json!({
            "user_id": user_id,
            "segment": segment,
            "window_days": days,
            "trial_reminders": trials,
            "usage_prompts": prompts,
            "social_proof_shown": served.iter().map(|(id, at)| json!({
                "proof_id": id,
                "last_shown_at": at,
                "title": shown_proofs.iter().find(|p| &p.proof_id == id).map(|p| p.title.clone()),
            })).collect::<Vec<_>>(),
            "offers": offers,
            "experiments": participation,
            "user_metrics": counts_user,
            "segment_counts": counts,
            "conversion_metrics": metrics,
            "recommendations": recommendations,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_segments_counters_sum_over_the_window_and_subscribers_come_from_the_all_time_count() {
        let day = |pairs: &[(&str, i64)]| -> BTreeMap<String, i64> {
            pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
        };
        let daily = [
            day(&[
                ("sg#smb#au", 40),
                ("sg#smb#trial_started", 5),
                ("sg#smb#subs", 3),
                ("sg#smb#rev#USD", 2_997),
                ("sg#smb#nudge#prompt#shown", 10),
                ("sg#other#au", 99),
            ]),
            day(&[
                ("sg#smb#au", 20),
                ("sg#smb#trial_converted", 2),
                ("sg#smb#canceled", 1),
                ("sg#smb#subs", -1),
                ("sg#smb#nudge#prompt#clicked", 2),
            ]),
        ];
        let all_time = day(&[("sg#smb#subs", 12), ("sg#other#subs", 7)]);
        let c = segment_counts("smb", 2, &daily, &all_time);
        assert_eq!(c.active_user_days, 60);
        assert_eq!(c.active_users_estimate, 30);
        assert_eq!(
            (c.trials_started, c.trials_converted, c.cancellations),
            (5, 2, 1)
        );
        assert_eq!(c.subscribers_now, 12);
        assert_eq!(c.subscribers_at_start, 10, "12 now, net +2 in the window");
        assert_eq!(c.revenue_minor_by_currency["USD"], 2_997);
        assert_eq!(c.nudges["prompt"].shown, 10);
        assert_eq!(c.nudges["prompt"].clicked, 2);
    }
}
