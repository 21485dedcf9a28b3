//! Nudge work driven by ingested events (worker-events runs it after the profile fold):
//! a trial start plans the trial's reminders; a conversion, subscription, cancellation or
//! expiry ends the trial and cancels its pending reminders; a usage or trait change re-plans
//! behavioural reminders and evaluates a prompt; nudge outcome events update the prompt,
//! offer or social proof they name. Every step is idempotent, so a redelivered message
//! changes nothing twice.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use super::prompts::Outcome;
use super::proofs::{CONVERSIONS, IMPRESSIONS};
use super::trials::{TrialSpec, TrialState};
use super::{NudgeError, Nudges};
use crate::events::{Event, EventBody, NudgeKind, NudgeOutcome};
use crate::ingest::CommitOutcome;
use crate::store::nkeys;

/// What one batch of events did to nudges.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct NudgeEventsReport {
    pub trials_planned: usize,
    pub reminders_cancelled: usize,
    pub reminders_added: usize,
    pub prompts_created: usize,
    pub outcomes_applied: usize,
}

impl Nudges<'_> {
    /// Applies a batch of (already folded) events to nudges. `default_trial_days` gives the
    /// end of a trial whose start event does not say.
    pub async fn apply_events(
        &self,
        events: &[Event],
        default_trial_days: u32,
        now: DateTime<Utc>,
    ) -> Result<NudgeEventsReport, NudgeError> {
        let mut by_user: BTreeMap<&str, Vec<&Event>> = BTreeMap::new();
        for e in events {
            by_user.entry(e.user_id.as_str()).or_default().push(e);
        }
        let mut report = NudgeEventsReport::default();
        for (user, mut list) in by_user {
            list.sort_by(|a, b| (a.timestamp, &a.event_id).cmp(&(b.timestamp, &b.event_id)));
            // One read per user: the folded profile says whether a trial may want new
            // behavioural reminders, and feeds the prompt evaluation.
            let profile = self.profile(user).await?;
            let mut usage_changed = false;
            for e in list {
                match &e.body {
                    EventBody::SubscriptionTrialStarted(s) => {
                        let ends_at = s
                            .trial_ends_at
                            .unwrap_or(e.timestamp + Duration::days(i64::from(default_trial_days)));
                        // A start whose end is not after it cannot be planned; retrying the
                        // message would not change that, so it is logged and passed over.
                        if ends_at > now && ends_at > e.timestamp {
                            self.plan_trial(
                                user,
                                TrialSpec {
                                    started_at: e.timestamp,
                                    ends_at,
                                    plan: s.plan.clone(),
                                    tier: s.tier.clone(),
                                },
                                now,
                            )
                            .await?;
                            report.trials_planned += 1;
                        } else if ends_at <= e.timestamp {
                            tracing::warn!(
                                event_id = %e.event_id,
                                "trial_ends_at is not after the trial start; no reminders planned"
                            );
                        }
                    }
                    EventBody::SubscriptionTrialConverted(_)
                    | EventBody::SubscriptionStarted(_) => {
                        report.reminders_cancelled += self
                            .end_trials(user, TrialState::Converted, "converted", e.timestamp)
                            .await?;
                    }
                    EventBody::SubscriptionCanceled(_) => {
                        report.reminders_cancelled += self
                            .end_trials(user, TrialState::Canceled, "canceled", e.timestamp)
                            .await?;
                    }
                    EventBody::SubscriptionTrialExpired(_) => {
                        report.reminders_cancelled += self
                            .end_trials(user, TrialState::Expired, "trial_ended", e.timestamp)
                            .await?;
                    }
                    EventBody::FeatureUsed(_) | EventBody::Identify(_) => usage_changed = true,
                    EventBody::NudgeShown(o) => {
                        report.outcomes_applied +=
                            usize::from(self.outcome(e, o, Outcome::Shown, now).await?);
                    }
                    EventBody::NudgeClicked(o) => {
                        report.outcomes_applied +=
                            usize::from(self.outcome(e, o, Outcome::Clicked, now).await?);
                    }
                    EventBody::NudgeConverted(o) => {
                        report.outcomes_applied +=
                            usize::from(self.outcome(e, o, Outcome::Converted, now).await?);
                    }
                    _ => {}
                }
            }
            if usage_changed {
                if profile
                    .trial
                    .as_ref()
                    .is_some_and(|t| t.value.ends_at > now)
                {
                    report.reminders_added += self.replan_with(&profile, now).await?;
                }
                if self
                    .evaluate_prompt_with(user, Some(profile), now, true)
                    .await?
                    .created
                {
                    report.prompts_created += 1;
                }
            }
        }
        Ok(report)
    }

    async fn outcome(
        &self,
        e: &Event,
        o: &NudgeOutcome,
        outcome: Outcome,
        now: DateTime<Utc>,
    ) -> Result<bool, NudgeError> {
        match o.nudge_kind {
            NudgeKind::Prompt => {
                self.prompt_outcome(&e.user_id, &o.nudge_id, outcome, e.timestamp)
                    .await
            }
            NudgeKind::Offer => match outcome {
                Outcome::Shown => {
                    self.offer_viewed(&o.nudge_id, &e.user_id, e.timestamp)
                        .await
                }
                // Acceptance is the redemption itself.
                Outcome::Clicked | Outcome::Converted => Ok(false),
            },
            NudgeKind::SocialProof => {
                let counter = match outcome {
                    Outcome::Shown => IMPRESSIONS,
                    Outcome::Converted => CONVERSIONS,
                    Outcome::Clicked => return Ok(false),
                };
                if self
                    .store
                    .get_doc::<serde_json::Value>(nkeys::PROOFS, &o.nudge_id)
                    .await?
                    .is_none()
                {
                    return Ok(false);
                }
                Ok(self
                    .store
                    .add_counters(
                        nkeys::PROOFS,
                        &o.nudge_id,
                        // The version moves too, so an admin edit re-reads the counters.
                        &[(counter, 1), ("version", 1)],
                        Some((&e.event_id, self.dedupe_expires_at(now))),
                        now,
                    )
                    .await?
                    == CommitOutcome::Committed)
            }
            // Reminder outcomes are counted per segment by the profile fold.
            NudgeKind::Reminder => Ok(false),
        }
    }
}
