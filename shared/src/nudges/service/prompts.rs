//! Usage-based upgrade prompts: evaluation against the stored profile, one prompt per
//! trigger feature per cooldown, counted in the daily nudge cap, outcomes from nudge events.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::trials::{ledger_write, LedgerRecord};
use super::{NudgeError, Nudges, VariantChoice, ATTEMPTS};
use crate::experiments::model::TestType;
use crate::ingest::CommitOutcome;
use crate::nudges::reminders::local_date;
use crate::nudges::signals;
use crate::nudges::usage::{
    self, NotCreatedReason, PromptDecision, PromptDesign, PromptDraft, UsageAnalysis,
};
use crate::store::{keys, nkeys, DocWrite, Expect, Versioned};

/// A stored prompt with its outcomes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prompt {
    pub prompt_id: String,
    pub user_id: String,
    pub created_at: DateTime<Utc>,
    #[serde(flatten)]
    pub draft: PromptDraft,
    pub design: PromptDesign,
    pub analysis: UsageAnalysis,
    /// `api` (returned to the caller) or `outbox` (sent after a profile update).
    pub delivered_via: String,
    /// An outbox send not yet confirmed (re-sent by a redelivery).
    #[serde(default)]
    pub outbox_pending: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shown_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clicked_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub converted_at: Option<DateTime<Utc>>,
}

/// The answer of an evaluation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PromptEvaluation {
    pub user_id: String,
    pub analysis: UsageAnalysis,
    pub created: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt: Option<Prompt>,
    /// Why no prompt was created: the usage rules' reasons, or `recently_prompted` /
    /// `daily_cap` codes.
    pub reasons: Vec<serde_json::Value>,
}

fn reason(code: &str, message: String) -> serde_json::Value {
    json!({ "code": code, "message": message })
}

impl Nudges<'_> {
    pub async fn user_prompts(&self, user_id: &str) -> Result<Vec<Prompt>, NudgeError> {
        Ok(self
            .store
            .query_docs::<Prompt>(&keys::user(user_id), nkeys::PROMPT_PREFIX, false, Some(200))
            .await?
            .into_iter()
            .map(|v| v.value)
            .collect())
    }

    /// Evaluates the user's usage now. A prompt is created when the usage rules allow it, no
    /// prompt for the same feature was created within the cooldown, and the daily nudge cap
    /// of the user's local day is not reached. `via_outbox` also sends it to the outbox.
    pub async fn evaluate_prompt(
        &self,
        user_id: &str,
        now: DateTime<Utc>,
        via_outbox: bool,
    ) -> Result<PromptEvaluation, NudgeError> {
        self.evaluate_prompt_with(user_id, None, now, via_outbox)
            .await
    }

    /// [`Self::evaluate_prompt`], starting from a profile already read (a retry re-reads).
    pub(super) async fn evaluate_prompt_with(
        &self,
        user_id: &str,
        mut read: Option<crate::profiles::Profile>,
        now: DateTime<Utc>,
        via_outbox: bool,
    ) -> Result<PromptEvaluation, NudgeError> {
        for _ in 0..ATTEMPTS {
            let profile = match read.take() {
                Some(p) => p,
                None => self.profile(user_id).await?,
            };
            let input = signals::usage_input(&profile);
            let tier = signals::paid_tier(&profile);
            let (analysis, decision) = usage::evaluate(&input, &tier, &self.settings.prompts);
            let mut answer = PromptEvaluation {
                user_id: user_id.to_string(),
                analysis,
                created: false,
                prompt: None,
                reasons: Vec::new(),
            };
            let draft = match decision {
                PromptDecision::NotCreated(reasons) => {
                    answer.reasons = reasons.iter().map(not_created_json).collect();
                    return Ok(answer);
                }
                PromptDecision::Create(d) => d,
            };
            let earlier = self.user_prompts(user_id).await?;
            let cutoff = now - Duration::days(i64::from(self.settings.prompt_cooldown_days));
            if let Some(p) = earlier
                .iter()
                .find(|p| p.draft.trigger_feature == draft.trigger_feature && p.created_at > cutoff)
            {
                // A redelivered profile update may find its own prompt still owed to the outbox.
                if p.outbox_pending {
                    self.send_prompt(p).await?;
                    self.confirm_prompt(p).await?;
                }
                answer.reasons.push(reason(
                    "recently_prompted",
                    format!(
                        "prompt {} for {} was created at {}; the cooldown is {} days",
                        p.prompt_id,
                        p.draft.trigger_feature,
                        p.created_at.to_rfc3339(),
                        self.settings.prompt_cooldown_days
                    ),
                ));
                return Ok(answer);
            }
            let tz = signals::timezone(&profile).map(str::to_string);
            let day = local_date(
                now,
                tz.as_deref(),
                &self.settings.reminders.default_timezone,
            );
            let (mut ledger, ledger_version): (LedgerRecord, Option<u64>) =
                self.ledger(user_id).await?;
            if ledger.sent_on(day) >= self.settings.reminders.daily_cap {
                answer.reasons.push(reason(
                    "daily_cap",
                    format!(
                        "{} nudges already reached the user on {day} (their timezone); the cap is {}",
                        ledger.sent_on(day),
                        self.settings.reminders.daily_cap
                    ),
                ));
                return Ok(answer);
            }
            let variant = self.prompt_variant(&profile, now).await?;
            // Only the design keys count; the rest of a variant config is the client's own.
            let design_config = variant.as_ref().map(|v| design_keys(&v.config));
            let design = usage::design(
                &draft,
                variant
                    .as_ref()
                    .zip(design_config.as_ref())
                    .map(|(v, c)| (v.experiment.as_str(), v.variant.as_str(), c)),
            )
            .or_else(|errors| {
                tracing::warn!(?errors, "prompt variant config ignored");
                usage::design(&draft, None)
            })
            .map_err(NudgeError::Invalid)?;
            let prompt_id = format!("{}-{}", now.format("%Y%m%dT%H%M%SZ"), draft.trigger_feature);
            let prompt = Prompt {
                prompt_id: prompt_id.clone(),
                user_id: user_id.to_string(),
                created_at: now,
                draft,
                design,
                analysis: answer.analysis.clone(),
                delivered_via: if via_outbox { "outbox" } else { "api" }.to_string(),
                outbox_pending: via_outbox,
                shown_at: None,
                clicked_at: None,
                converted_at: None,
            };
            ledger.count(day);
            let writes = vec![
                {
                    let w = DocWrite::put(
                        keys::user(user_id),
                        nkeys::prompt(&prompt_id),
                        &prompt,
                        1,
                        Expect::New,
                    )?;
                    // An outbox send owed stays in the due-time index until confirmed, so the
                    // reminder sweep finds it if this send fails.
                    if via_outbox {
                        w.due_at(now, user_id)
                    } else {
                        w
                    }
                },
                ledger_write(user_id, &ledger, ledger_version)?,
            ];
            if self.store.write_docs(writes).await? == CommitOutcome::Conflict {
                continue;
            }
            if via_outbox {
                self.send_prompt(&prompt).await?;
                self.confirm_prompt(&prompt).await?;
            }
            answer.created = true;
            answer.prompt = Some(prompt);
            return Ok(answer);
        }
        Err(NudgeError::Contended(format!("prompts of {user_id}")))
    }

    /// Sends the prompts whose outbox send was not confirmed within a minute (wall clock):
    /// the reminder dispatch runs this for every user the sweep finds.
    pub(super) async fn flush_stale_prompts(
        &self,
        user_id: &str,
        wall: DateTime<Utc>,
    ) -> Result<Vec<String>, NudgeError> {
        let mut sent = Vec::new();
        for p in self.user_prompts(user_id).await? {
            if p.outbox_pending && (wall - p.created_at).num_seconds() >= 60 {
                self.send_prompt(&p).await?;
                self.confirm_prompt(&p).await?;
                sent.push(p.prompt_id);
            }
        }
        Ok(sent)
    }

    /// The user's variant of a running `prompt_design` experiment, else of a `cta_design` one.
    async fn prompt_variant(
        &self,
        profile: &crate::profiles::Profile,
        now: DateTime<Utc>,
    ) -> Result<Option<VariantChoice>, NudgeError> {
        if let Some(v) = self
            .variant_for(TestType::PromptDesign, profile, now)
            .await?
        {
            return Ok(Some(v));
        }
        self.variant_for(TestType::CtaDesign, profile, now).await
    }

    async fn send_prompt(&self, p: &Prompt) -> Result<(), NudgeError> {
        let body = json!({
            "message_id": format!("prompt:{}:{}", p.user_id, p.prompt_id),
            "type": "upgrade_prompt",
            "user_id": p.user_id,
            "prompt_id": p.prompt_id,
            "trigger_feature": p.draft.trigger_feature,
            "target_tier": p.draft.target_tier,
            "reason": p.draft.reason,
            "design": p.design,
            "created_at": p.created_at,
        });
        self.sink
            .send_all(self.outbox_url, vec![body.to_string()], Some(&p.prompt_id))
            .await?;
        Ok(())
    }

    async fn confirm_prompt(&self, p: &Prompt) -> Result<(), NudgeError> {
        let pk = keys::user(&p.user_id);
        let sk = nkeys::prompt(&p.prompt_id);
        for _ in 0..ATTEMPTS {
            let Some(v) = self.store.get_doc::<Prompt>(&pk, &sk).await? else {
                return Ok(());
            };
            if !v.value.outbox_pending {
                return Ok(());
            }
            let mut next = v.value.clone();
            next.outbox_pending = false;
            let w = DocWrite::put(
                pk.clone(),
                sk.clone(),
                &next,
                v.version + 1,
                Expect::Version(v.version),
            )?;
            if self.store.write_docs(vec![w]).await? == CommitOutcome::Committed {
                return Ok(());
            }
        }
        Err(NudgeError::Contended(format!("prompt {}", p.prompt_id)))
    }

    /// Records a prompt outcome (first time wins; a repeat changes nothing).
    pub(super) async fn prompt_outcome(
        &self,
        user_id: &str,
        prompt_id: &str,
        outcome: Outcome,
        at: DateTime<Utc>,
    ) -> Result<bool, NudgeError> {
        let pk = keys::user(user_id);
        let sk = nkeys::prompt(prompt_id);
        for _ in 0..ATTEMPTS {
            let Some(v): Option<Versioned<Prompt>> = self.store.get_doc(&pk, &sk).await? else {
                return Ok(false);
            };
            let mut next = v.value.clone();
            let slot = match outcome {
                Outcome::Shown => &mut next.shown_at,
                Outcome::Clicked => &mut next.clicked_at,
                Outcome::Converted => &mut next.converted_at,
            };
            if slot.is_some() {
                return Ok(false);
            }
            *slot = Some(at);
            let w = DocWrite::put(
                pk.clone(),
                sk.clone(),
                &next,
                v.version + 1,
                Expect::Version(v.version),
            )?;
            if self.store.write_docs(vec![w]).await? == CommitOutcome::Committed {
                return Ok(true);
            }
        }
        Err(NudgeError::Contended(format!("prompt {prompt_id}")))
    }
}

/// A nudge outcome event's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    Shown,
    Clicked,
    Converted,
}

fn not_created_json(r: &NotCreatedReason) -> serde_json::Value {
    let mut v = serde_json::to_value(r).unwrap_or_else(|_| json!({}));
    if let Some(m) = v.as_object_mut() {
        m.insert("message".into(), r.message().into());
    }
    v
}

/// The design fields of a variant config (see [`usage::DESIGN_FIELDS`]).
pub(crate) fn design_keys(config: &serde_json::Value) -> serde_json::Value {
    serde_json::Value::Object(
        config
            .as_object()
            .map(|m| {
                m.iter()
                    .filter(|(k, _)| usage::DESIGN_FIELDS.iter().any(|(f, _)| f == k))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default(),
    )
}
