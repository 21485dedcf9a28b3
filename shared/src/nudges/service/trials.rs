//! Trials and their reminders: planning, cancellation on conversion, the per-user dispatch
//! that the reminder sweep fans out, and the per-user nudge ledger (cooldown, daily cap).
//!
//! Exactly once onto the outbox: a dispatch claims the reminders it sends in the same
//! transaction that updates the ledger (each item under its version), then sends, then
//! clears the claim. A redelivered job or an overlapping sweep finds them sent. A claim left
//! by a crash is re-sent with the same `message_id` by a later dispatch, once the claim is a
//! minute old on the wall clock.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{NudgeError, Nudges, ATTEMPTS};
use crate::experiments::model::TestType;
use crate::ingest::CommitOutcome;
use crate::nudges::reminders::{
    self, Decision, ExperimentTag, Ledger, Reminder, ReminderStatus, ReminderType, TrialContext,
};
use crate::nudges::signals;
use crate::profiles::Profile;
use crate::store::{keys, nkeys, DocWrite, Expect, Versioned};

/// How long a claimed send may stay unconfirmed before another dispatch sends it again.
const CLAIM_SECONDS: i64 = 60;
/// Days of per-day counts the ledger keeps.
const LEDGER_DAYS: i64 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrialState {
    Active,
    Converted,
    Canceled,
    Expired,
}

/// A trial whose reminders tierup plans.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialRecord {
    pub trial_id: String,
    pub user_id: String,
    pub started_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub plan: String,
    pub tier: String,
    pub state: TrialState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<DateTime<Utc>>,
    /// Reminders sent for this trial (the per-trial cap counts them).
    pub sent: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timing: Option<ExperimentTag>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messaging: Option<ExperimentTag>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offsets_override: Option<Vec<u32>>,
    #[serde(default)]
    pub templates_override: BTreeMap<ReminderType, String>,
    pub created_at: DateTime<Utc>,
}

/// What a trial's reminders are planned from.
#[derive(Debug, Clone, PartialEq)]
pub struct TrialSpec {
    pub started_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub plan: String,
    pub tier: String,
}

/// A trial with all of its reminders.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrialView {
    pub trial: TrialRecord,
    pub reminders: Vec<Reminder>,
}

/// A reminder as stored: the claim of a dispatch that is sending it, if any.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct StoredReminder {
    #[serde(flatten)]
    pub reminder: Reminder,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<Claim>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Claim {
    pub job_id: String,
    /// Wall-clock time of the claim (not the injectable `now`).
    pub claimed_at: DateTime<Utc>,
}

/// Per-user nudge ledger: last reminder sent and nudges delivered per local day.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct LedgerRecord {
    pub last_reminder_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub sent_by_day: BTreeMap<NaiveDate, u32>,
}

impl LedgerRecord {
    pub fn count(&mut self, day: NaiveDate) {
        *self.sent_by_day.entry(day).or_default() += 1;
        let keep_from = day - Duration::days(LEDGER_DAYS);
        self.sent_by_day.retain(|d, _| *d >= keep_from);
    }

    pub fn sent_on(&self, day: NaiveDate) -> u32 {
        self.sent_by_day.get(&day).copied().unwrap_or(0)
    }
}

/// What one dispatch run did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DispatchReport {
    pub sent: Vec<String>,
    pub resent: Vec<String>,
    pub deferred: Vec<String>,
    pub skipped: Vec<String>,
}

/// Starts (and ends) this close are the same trial told twice.
const SAME_TRIAL_SECONDS: i64 = 300;

/// Whether the profile shows the trial that started at `started_at` already over: a
/// subscription change stamped after the start that is not the trial itself (a conversion,
/// a paid start, a cancellation, an expiry). Returns the state and when.
pub fn ended_by_profile(
    profile: &Profile,
    started_at: DateTime<Utc>,
) -> Option<(TrialState, DateTime<Utc>)> {
    use crate::profiles::SubscriptionStatus as S;
    let sub = profile.subscription.as_ref()?;
    if sub.at <= started_at {
        return None;
    }
    let state = match sub.value.status {
        S::Trialing => return None,
        S::Active | S::PastDue => TrialState::Converted,
        S::Canceled => TrialState::Canceled,
        S::Expired => TrialState::Expired,
    };
    Some((state, sub.at))
}

/// A trial's id: its start time, so a replayed start plans the same trial.
pub fn trial_id(started_at: DateTime<Utc>) -> String {
    started_at.format("%Y%m%dT%H%M%SZ").to_string()
}

fn reminder_write(
    user_id: &str,
    r: &StoredReminder,
    version: u64,
    expect: Expect,
) -> Result<DocWrite, NudgeError> {
    let w = DocWrite::put(
        keys::user(user_id),
        nkeys::reminder(&r.reminder.reminder_id),
        r,
        version,
        expect,
    )?;
    // Planned reminders and unconfirmed sends stay in the due-time index.
    Ok(
        if r.reminder.status == ReminderStatus::Planned || r.claim.is_some() {
            w.due_at(r.reminder.due_at, user_id)
        } else {
            w
        },
    )
}

pub(super) fn ledger_write(
    user_id: &str,
    ledger: &LedgerRecord,
    stored_version: Option<u64>,
) -> Result<DocWrite, NudgeError> {
    let (version, expect) = match stored_version {
        None => (1, Expect::New),
        Some(v) => (v + 1, Expect::Version(v)),
    };
    Ok(DocWrite::put(
        keys::user(user_id),
        nkeys::LEDGER.to_string(),
        ledger,
        version,
        expect,
    )?)
}

impl Nudges<'_> {
    pub(super) async fn ledger(
        &self,
        user_id: &str,
    ) -> Result<(LedgerRecord, Option<u64>), NudgeError> {
        Ok(
            match self
                .store
                .get_doc::<LedgerRecord>(&keys::user(user_id), nkeys::LEDGER)
                .await?
            {
                Some(v) => (v.value, Some(v.version)),
                None => (LedgerRecord::default(), None),
            },
        )
    }

    async fn trials(&self, user_id: &str) -> Result<Vec<Versioned<TrialRecord>>, NudgeError> {
        Ok(self
            .store
            .query_docs(&keys::user(user_id), nkeys::TRIAL_PREFIX, true, None)
            .await?)
    }

    async fn stored_reminders(
        &self,
        user_id: &str,
        trial_id: Option<&str>,
    ) -> Result<Vec<Versioned<StoredReminder>>, NudgeError> {
        let prefix = match trial_id {
            Some(t) => nkeys::reminder(&format!("{t}:")),
            None => nkeys::REMINDER_PREFIX.to_string(),
        };
        Ok(self
            .store
            .query_docs(&keys::user(user_id), &prefix, true, None)
            .await?)
    }

    /// Every trial of the user with its reminders (planned, sent, skipped and cancelled).
    pub async fn user_trials(&self, user_id: &str) -> Result<Vec<TrialView>, NudgeError> {
        let trials = self.trials(user_id).await?;
        let all = self.stored_reminders(user_id, None).await?;
        Ok(trials
            .into_iter()
            .map(|t| {
                let mut reminders: Vec<Reminder> = all
                    .iter()
                    .filter(|r| r.value.reminder.trial_id == t.value.trial_id)
                    .map(|r| r.value.reminder.clone())
                    .collect();
                reminders.sort_by(|a, b| {
                    a.due_at
                        .cmp(&b.due_at)
                        .then(b.priority.cmp(&a.priority))
                        .then(a.reminder_id.cmp(&b.reminder_id))
                });
                TrialView {
                    trial: t.value,
                    reminders,
                }
            })
            .collect())
    }

    /// Plans a trial's reminders (idempotent: the same start plans the same trial, and a
    /// reminder already planned is kept as it is).
    pub async fn plan_trial(
        &self,
        user_id: &str,
        spec: TrialSpec,
        now: DateTime<Utc>,
    ) -> Result<TrialView, NudgeError> {
        if spec.ends_at <= spec.started_at {
            return Err(NudgeError::Invalid(vec![crate::events::FieldError::new(
                "trial_ends_at",
                "must be after the trial's start",
            )]));
        }
        let id = trial_id(spec.started_at);
        let pk = keys::user(user_id);
        let profile = self.profile(user_id).await?;
        let existing = self
            .store
            .get_doc::<TrialRecord>(&pk, &nkeys::trial(&id))
            .await?
            .map(|v| v.value);
        // The same trial told twice with slightly different starts (a POST with the app's
        // clock and the start event): one trial, the first one planned.
        let same = match &existing {
            Some(_) => None,
            None => self.trials(user_id).await?.into_iter().find(|t| {
                t.value.state == TrialState::Active
                    && (t.value.ends_at - spec.ends_at).num_seconds().abs() <= SAME_TRIAL_SECONDS
                    && (t.value.started_at - spec.started_at).num_seconds().abs()
                        <= SAME_TRIAL_SECONDS
            }),
        };
        let trial = match existing.or(same.map(|v| v.value)) {
            Some(t) => t,
            None => {
                // A conversion or cancellation folded before this start (events arrive in any
                // order): the trial is planned already ended, with no reminders.
                let ended = ended_by_profile(&profile, spec.started_at);
                let mut t = TrialRecord {
                    trial_id: id.clone(),
                    user_id: user_id.to_string(),
                    started_at: spec.started_at,
                    ends_at: spec.ends_at,
                    plan: spec.plan,
                    tier: spec.tier,
                    state: ended.map_or(TrialState::Active, |(s, _)| s),
                    ended_at: ended.map(|(_, at)| at),
                    sent: 0,
                    timing: None,
                    messaging: None,
                    offsets_override: None,
                    templates_override: BTreeMap::new(),
                    created_at: now,
                };
                if ended.is_none() {
                    self.apply_experiments(&mut t, &profile, now).await?;
                }
                let w = DocWrite::put(pk.clone(), nkeys::trial(&id), &t, 1, Expect::New)?;
                match self.store.write_docs(vec![w]).await? {
                    CommitOutcome::Committed => t,
                    // Planned concurrently (a retried request or the event path): use theirs.
                    CommitOutcome::Conflict => self
                        .store
                        .get_doc::<TrialRecord>(&pk, &nkeys::trial(&id))
                        .await?
                        .map(|v| v.value)
                        .ok_or_else(|| NudgeError::Contended(format!("trial {id}")))?,
                }
            }
        };
        if trial.state == TrialState::Active {
            self.plan_more(&trial, &profile, now).await?;
        }
        let reminders = self
            .stored_reminders(user_id, Some(&trial.trial_id))
            .await?
            .into_iter()
            .map(|r| r.value.reminder)
            .collect();
        Ok(TrialView { trial, reminders })
    }

    /// A running `timing` experiment may set the expiry offsets and a `messaging` one the
    /// templates; the user's variant decides (the control, which sets nothing, is tagged too:
    /// its users are in the test). A variant whose config does not parse takes nobody in
    /// (creation refuses such configs, so this guards only older data).
    async fn apply_experiments(
        &self,
        t: &mut TrialRecord,
        profile: &Profile,
        now: DateTime<Utc>,
    ) -> Result<(), NudgeError> {
        use crate::nudges::variants::{messaging_override, timing_override};
        let timing_ok = |c: &serde_json::Value| timing_override(c).is_ok();
        if let Some(v) = self
            .variant_if(TestType::Timing, profile, now, &timing_ok)
            .await?
        {
            t.offsets_override = timing_override(&v.config).unwrap_or_default();
            t.timing = Some(ExperimentTag {
                key: v.experiment,
                variant: v.variant,
            });
        }
        let messaging_ok = |c: &serde_json::Value| messaging_override(c).is_ok();
        if let Some(v) = self
            .variant_if(TestType::Messaging, profile, now, &messaging_ok)
            .await?
        {
            t.templates_override = messaging_override(&v.config).unwrap_or_default();
            t.messaging = Some(ExperimentTag {
                key: v.experiment,
                variant: v.variant,
            });
        }
        Ok(())
    }

    /// Plans what is new for an active trial (expiry reminders at first, behavioural ones
    /// when their signal holds); each new reminder is a conditional put, so concurrent
    /// planners add it once.
    async fn plan_more(
        &self,
        trial: &TrialRecord,
        profile: &Profile,
        now: DateTime<Utc>,
    ) -> Result<usize, NudgeError> {
        let stored = self
            .stored_reminders(&trial.user_id, Some(&trial.trial_id))
            .await?;
        let existing: Vec<Reminder> = stored.iter().map(|r| r.value.reminder.clone()).collect();
        let ctx = TrialContext {
            user_id: trial.user_id.clone(),
            trial_id: trial.trial_id.clone(),
            started_at: trial.started_at,
            ends_at: trial.ends_at,
            plan: trial.plan.clone(),
            tier: trial.tier.clone(),
            timezone: signals::timezone(profile).map(str::to_string),
            signals: signals::trial_signals(
                profile,
                trial.started_at,
                trial.ends_at,
                now,
                self.settings,
            ),
            offsets_override: trial.offsets_override.clone(),
            templates_override: trial.templates_override.clone(),
            // A reminder carries one tag: the messaging test when it set templates, else the
            // timing test (the trial record keeps both).
            experiment: if trial.templates_override.is_empty() {
                trial.timing.clone().or_else(|| trial.messaging.clone())
            } else {
                trial.messaging.clone()
            },
        };
        // Planned reminders take up what is known about the user now (e.g. the feature they
        // came to use most); a concurrent change wins and is refreshed next time.
        for r in reminders::refresh_variables(&ctx, &self.settings.reminders, &existing) {
            if let Some(v) = stored
                .iter()
                .find(|s| s.value.reminder.reminder_id == r.reminder_id)
            {
                let next = StoredReminder {
                    reminder: r,
                    claim: v.value.claim.clone(),
                };
                let w = reminder_write(
                    &trial.user_id,
                    &next,
                    v.version + 1,
                    Expect::Version(v.version),
                )?;
                self.store.write_docs(vec![w]).await?;
            }
        }
        let new = reminders::plan(&ctx, &self.settings.reminders, &existing, now);
        let mut added = 0;
        for r in new {
            let stored = StoredReminder {
                reminder: r,
                claim: None,
            };
            let w = reminder_write(&trial.user_id, &stored, 1, Expect::New)?;
            if self.store.write_docs(vec![w]).await? == CommitOutcome::Committed {
                added += 1;
            }
        }
        Ok(added)
    }

    /// Re-plans the behavioural reminders of the user's active trials after a profile update.
    pub async fn replan(&self, user_id: &str, now: DateTime<Utc>) -> Result<usize, NudgeError> {
        let profile = self.profile(user_id).await?;
        self.replan_with(&profile, now).await
    }

    /// [`Self::replan`] with the profile already read.
    pub(super) async fn replan_with(
        &self,
        profile: &Profile,
        now: DateTime<Utc>,
    ) -> Result<usize, NudgeError> {
        let user_id = profile.user_id.as_str();
        let mut added = 0;
        for t in self.trials(user_id).await? {
            if t.value.state == TrialState::Active && t.value.ends_at > now {
                added += self.plan_more(&t.value, profile, now).await?;
            }
        }
        Ok(added)
    }

    /// Ends the user's active trials that started by `at` (conversion, subscription,
    /// cancellation or expiry) and cancels every reminder still planned for them.
    pub async fn end_trials(
        &self,
        user_id: &str,
        state: TrialState,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<usize, NudgeError> {
        let mut cancelled = 0;
        for _ in 0..ATTEMPTS {
            let mut writes = Vec::new();
            let mut count = 0;
            for t in self.trials(user_id).await? {
                if t.value.state != TrialState::Active || t.value.started_at > at {
                    continue;
                }
                let mut trial = t.value.clone();
                trial.state = state;
                trial.ended_at = Some(at);
                writes.push(DocWrite::put(
                    keys::user(user_id),
                    nkeys::trial(&trial.trial_id),
                    &trial,
                    t.version + 1,
                    Expect::Version(t.version),
                )?);
                for r in self
                    .stored_reminders(user_id, Some(&trial.trial_id))
                    .await?
                {
                    if r.value.reminder.status != ReminderStatus::Planned {
                        continue;
                    }
                    let mut next = r.value.clone();
                    next.reminder.status = ReminderStatus::Cancelled;
                    next.reminder.reason = Some(reason.to_string());
                    writes.push(reminder_write(
                        user_id,
                        &next,
                        r.version + 1,
                        Expect::Version(r.version),
                    )?);
                    count += 1;
                }
            }
            if writes.is_empty() {
                return Ok(cancelled);
            }
            if self.store.write_docs(writes).await? == CommitOutcome::Committed {
                cancelled += count;
                return Ok(cancelled);
            }
        }
        Err(NudgeError::Contended(format!("trials of {user_id}")))
    }

    /// Sends the user's due reminders (one dispatch per user per sweep minute).
    pub async fn dispatch_user(
        &self,
        user_id: &str,
        now: DateTime<Utc>,
        job_id: &str,
    ) -> Result<DispatchReport, NudgeError> {
        let mut report = DispatchReport::default();
        for _ in 0..ATTEMPTS {
            let profile = self.profile(user_id).await?;
            let tz = signals::timezone(&profile).map(str::to_string);
            let (mut ledger, ledger_version) = self.ledger(user_id).await?;
            let trials = self.trials(user_id).await?;
            let mut stored = self.stored_reminders(user_id, None).await?;
            let wall = Utc::now();
            // Prompts whose outbox send was not confirmed ride on the same sweep.
            report
                .resent
                .extend(self.flush_stale_prompts(user_id, wall).await?);
            // Unconfirmed sends whose claim is stale: send again (same message id).
            let stale: Vec<Versioned<StoredReminder>> = stored
                .iter()
                .filter(|r| {
                    r.value
                        .claim
                        .as_ref()
                        .is_some_and(|c| (wall - c.claimed_at).num_seconds() >= CLAIM_SECONDS)
                })
                .cloned()
                .collect();
            for r in &stale {
                let trial = trials
                    .iter()
                    .find(|t| t.value.trial_id == r.value.reminder.trial_id);
                self.send_reminder(&r.value.reminder, trial.map(|t| &t.value))
                    .await?;
                self.confirm(user_id, r).await?;
                report.resent.push(r.value.reminder.reminder_id.clone());
            }
            if !stale.is_empty() {
                stored = self.stored_reminders(user_id, None).await?;
            }
            let mut writes = Vec::new();
            let mut claimed: Vec<(StoredReminder, u64, TrialRecord)> = Vec::new();
            let mut ledger_changed = false;
            let mut this_run = DispatchReport::default();
            for t in &trials {
                let planned: Vec<Reminder> = stored
                    .iter()
                    .filter(|r| {
                        r.value.reminder.trial_id == t.value.trial_id
                            && r.value.reminder.status == ReminderStatus::Planned
                    })
                    .map(|r| r.value.reminder.clone())
                    .collect();
                if planned.iter().all(|r| r.due_at > now) {
                    continue;
                }
                let mut trial = t.value.clone();
                // The profile may know of the end before the end event reached the trial.
                if trial.state == TrialState::Active {
                    if let Some((state, at)) = ended_by_profile(&profile, trial.started_at) {
                        trial.state = state;
                        trial.ended_at = Some(at);
                    }
                }
                if trial.state != TrialState::Active {
                    // Ended while the cancellation was in flight: cancel what is due.
                    for r in planned.iter().filter(|r| r.due_at <= now) {
                        let Some(v) = stored
                            .iter()
                            .find(|s| s.value.reminder.reminder_id == r.reminder_id)
                        else {
                            continue;
                        };
                        let mut next = v.value.clone();
                        next.reminder.status = ReminderStatus::Cancelled;
                        next.reminder.reason = Some(state_reason(trial.state).to_string());
                        writes.push(reminder_write(
                            user_id,
                            &next,
                            v.version + 1,
                            Expect::Version(v.version),
                        )?);
                        this_run.skipped.push(r.reminder_id.clone());
                    }
                    continue;
                }
                let view = Ledger {
                    last_reminder_at: ledger.last_reminder_at,
                    sent_by_day: ledger.sent_by_day.clone(),
                    sent_this_trial: trial.sent,
                };
                let decisions = reminders::dispatch(
                    &planned,
                    trial.ends_at,
                    tz.as_deref(),
                    &view,
                    now,
                    &self.settings.reminders,
                );
                let mut trial_changed = false;
                for d in decisions {
                    let id = match &d {
                        Decision::Send { reminder_id }
                        | Decision::Defer { reminder_id, .. }
                        | Decision::Skip { reminder_id, .. } => reminder_id.clone(),
                    };
                    let Some(v) = stored.iter().find(|s| s.value.reminder.reminder_id == id) else {
                        continue;
                    };
                    let mut next = v.value.clone();
                    match d {
                        Decision::Send { .. } => {
                            let vars =
                                reminders::message_variables(&next.reminder, trial.ends_at, now);
                            match reminders::render(&next.reminder.template, &vars) {
                                Ok(message) => {
                                    next.reminder.status = ReminderStatus::Sent;
                                    next.reminder.sent_at = Some(now);
                                    next.reminder.message = Some(message);
                                    next.reminder.variables = vars;
                                    next.claim = Some(Claim {
                                        job_id: job_id.to_string(),
                                        claimed_at: wall,
                                    });
                                    ledger.last_reminder_at = Some(now);
                                    ledger.count(reminders::local_date(
                                        now,
                                        tz.as_deref(),
                                        &self.settings.reminders.default_timezone,
                                    ));
                                    ledger_changed = true;
                                    trial.sent += 1;
                                    trial_changed = true;
                                    this_run.sent.push(id.clone());
                                    claimed.push((next.clone(), v.version + 1, trial.clone()));
                                }
                                Err(e) => {
                                    next.reminder.status = ReminderStatus::Skipped;
                                    tracing::warn!(reminder = %id, error = %e, "reminder template does not render");
                                    next.reminder.reason = Some("template_error".to_string());
                                    this_run.skipped.push(id.clone());
                                }
                            }
                        }
                        Decision::Defer { until, reason, .. } => {
                            next.reminder.due_at = until;
                            next.reminder.reason = Some(reason);
                            this_run.deferred.push(id.clone());
                        }
                        Decision::Skip { reason, .. } => {
                            next.reminder.status = ReminderStatus::Skipped;
                            next.reminder.reason = Some(reason);
                            this_run.skipped.push(id.clone());
                        }
                    }
                    writes.push(reminder_write(
                        user_id,
                        &next,
                        v.version + 1,
                        Expect::Version(v.version),
                    )?);
                }
                if trial_changed {
                    writes.push(DocWrite::put(
                        keys::user(user_id),
                        nkeys::trial(&trial.trial_id),
                        &trial,
                        t.version + 1,
                        Expect::Version(t.version),
                    )?);
                }
            }
            if writes.is_empty() {
                report.merge(this_run);
                return Ok(report);
            }
            if ledger_changed {
                writes.push(ledger_write(user_id, &ledger, ledger_version)?);
            }
            if self.store.write_docs(writes).await? == CommitOutcome::Conflict {
                continue;
            }
            for (r, version, trial) in &claimed {
                self.send_reminder(&r.reminder, Some(trial)).await?;
                let v = Versioned {
                    value: r.clone(),
                    version: *version,
                    counters: Default::default(),
                };
                self.confirm(user_id, &v).await?;
            }
            report.merge(this_run);
            return Ok(report);
        }
        Err(NudgeError::Contended(format!("reminders of {user_id}")))
    }

    async fn send_reminder(
        &self,
        r: &Reminder,
        trial: Option<&TrialRecord>,
    ) -> Result<(), NudgeError> {
        let body = json!({
            "message_id": format!("reminder:{}:{}", r.user_id, r.reminder_id),
            "type": "trial_reminder",
            "user_id": r.user_id,
            "trial_id": r.trial_id,
            "trial_ends_at": trial.map(|t| t.ends_at),
            "plan": trial.map(|t| t.plan.clone()),
            "reminder_id": r.reminder_id,
            "reminder_type": r.reminder_type,
            "priority": r.priority,
            "message": r.message,
            "variables": r.variables,
            "due_at": r.due_at,
            "planned_for": r.planned_for,
            "sent_at": r.sent_at,
            "experiment": r.experiment,
        });
        self.sink
            .send_all(
                self.outbox_url,
                vec![body.to_string()],
                Some(&r.reminder_id),
            )
            .await?;
        Ok(())
    }

    /// Clears a send's claim (it left the due-time index with it).
    async fn confirm(
        &self,
        user_id: &str,
        r: &Versioned<StoredReminder>,
    ) -> Result<(), NudgeError> {
        let mut next = r.value.clone();
        next.claim = None;
        let w = reminder_write(user_id, &next, r.version + 1, Expect::Version(r.version))?;
        // A conflict means another dispatch confirmed it first.
        self.store.write_docs(vec![w]).await?;
        Ok(())
    }

    /// Users with reminders due at `now` (planned or awaiting confirmation of a send).
    pub async fn due_users(&self, now: DateTime<Utc>) -> Result<Vec<String>, NudgeError> {
        let mut users: Vec<String> = self
            .store
            .due_reminders(now)
            .await?
            .into_iter()
            .filter_map(|(pk, _)| pk.strip_prefix("USER#").map(str::to_string))
            .collect();
        users.sort();
        users.dedup();
        Ok(users)
    }
}

impl DispatchReport {
    fn merge(&mut self, other: DispatchReport) {
        self.sent.extend(other.sent);
        self.resent.extend(other.resent);
        self.deferred.extend(other.deferred);
        self.skipped.extend(other.skipped);
    }
}

fn state_reason(state: TrialState) -> &'static str {
    match state {
        TrialState::Active => "active",
        TrialState::Converted => "converted",
        TrialState::Canceled => "canceled",
        TrialState::Expired => "trial_ended",
    }
}
