//! Limited-time offers: eligibility from the stored profile, terms from the user's
//! `offer_type` variant or a per-user hash, a unique code, and single-use redemption.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::trials::ledger_write;
use super::{NudgeError, Nudges, ATTEMPTS};
use crate::events::FieldError;
use crate::experiments::model::TestType;
use crate::ingest::CommitOutcome;
use crate::nudges::offers::{
    self, check_redeem, Choice, EligibilityInput, IneligibleReason, Offer, OfferType, RedeemError,
};
use crate::nudges::reminders::local_date;
use crate::nudges::signals;
use crate::store::{keys, nkeys, DocWrite, Expect};

/// `POST /v1/users/{user_id}/offers`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateOffer {
    #[serde(default)]
    pub offer_type: Option<OfferType>,
    /// Default: the tier above the user's paid tier.
    #[serde(default)]
    pub target_tier: Option<String>,
}

/// The answer to an offer request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OfferAnswer {
    pub user_id: String,
    pub eligible: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<IneligibleReason>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offer: Option<Offer>,
}

/// The answer to a redemption.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RedeemAnswer {
    pub redeemed: bool,
    pub offer: Offer,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct OfferPointer {
    code: String,
    created_at: DateTime<Utc>,
}

const REDEMPTIONS: &str = "redemptions";
const REDEEMED_TS: &str = "redeemed_ts";

fn with_counters(v: crate::store::Versioned<Offer>) -> Offer {
    let mut o = v.value;
    o.redemptions = v
        .counters
        .get(REDEMPTIONS)
        .copied()
        .unwrap_or(0)
        .clamp(0, i64::from(u32::MAX)) as u32;
    if let Some(ts) = v.counters.get(REDEEMED_TS) {
        o.redeemed_at = DateTime::from_timestamp(*ts, 0);
    }
    o
}

impl Nudges<'_> {
    pub async fn create_offer(
        &self,
        user_id: &str,
        req: CreateOffer,
        now: DateTime<Utc>,
    ) -> Result<OfferAnswer, NudgeError> {
        let profile = self.profile(user_id).await?;
        let current = signals::paid_tier(&profile);
        let s = &self.settings.offers;
        let target = match req.target_tier {
            Some(t) => t,
            // A trialing user is offered the tier they are trying; others the next one up.
            None => signals::trial_tier(&profile)
                .filter(|t| rank(t, &s.tiers) > rank(&current, &s.tiers))
                .or_else(|| next_tier(&current, &s.tiers))
                .unwrap_or_else(|| current.clone()),
        };
        let input = EligibilityInput {
            engagement_score: signals::engagement_score(
                &profile,
                now,
                self.settings.engagement_days,
            ),
            feature_usage: signals::features_used(&profile),
            trial_eligible: signals::trial_eligible(&profile),
            current_tier: current.clone(),
            target_tier: target.clone(),
        };
        if let Err(reasons) = offers::check_eligibility(&input, s) {
            return Ok(OfferAnswer {
                user_id: user_id.to_string(),
                eligible: false,
                reasons,
                offer: None,
            });
        }
        let tz = signals::timezone(&profile).map(str::to_string);
        let day = local_date(
            now,
            tz.as_deref(),
            &self.settings.reminders.default_timezone,
        );
        // The cap first, so a user who gets no offer is not exposed to an offer_type test.
        if let Some(refused) = self.daily_cap_reached(user_id, day).await? {
            return Ok(refused);
        }
        // A variant whose terms do not fit this user's tier path does not take them in.
        let fits = |config: &serde_json::Value| {
            offers::terms(
                req.offer_type,
                &current,
                &target,
                Choice::Variant {
                    experiment: "",
                    variant: "",
                    config,
                },
                s,
            )
            .is_ok()
        };
        let variant = self
            .variant_if(TestType::OfferType, &profile, now, &fits)
            .await?;
        let deterministic = Choice::Deterministic {
            user_id,
            salt: "offer",
        };
        let terms = match &variant {
            Some(v) => offers::terms(
                req.offer_type,
                &current,
                &target,
                Choice::Variant {
                    experiment: &v.experiment,
                    variant: &v.variant,
                    config: &v.config,
                },
                s,
            )
            .or_else(|errors| {
                // A variant value that does not fit this user's tier path: the per-user terms.
                tracing::warn!(experiment = %v.experiment, ?errors, "offer variant config ignored");
                offers::terms(req.offer_type, &current, &target, deterministic, s)
            }),
            None => offers::terms(req.offer_type, &current, &target, deterministic, s),
        }
        .map_err(NudgeError::Invalid)?;
        for _ in 0..ATTEMPTS {
            if let Some(refused) = self.daily_cap_reached(user_id, day).await? {
                return Ok(refused);
            }
            let (mut ledger, ledger_version) = self.ledger(user_id).await?;
            let entropy: [u8; 10] = rand::random();
            let code = offers::offer_code(&s.code_prefix, entropy);
            let offer = Offer {
                code: code.clone(),
                user_id: user_id.to_string(),
                terms: terms.clone(),
                current_tier: current.clone(),
                target_tier: target.clone(),
                starts_at: now,
                ends_at: now + Duration::hours(i64::from(s.duration_hours)),
                usage_limit: 1,
                redemptions: 0,
                viewed_at: None,
                redeemed_at: None,
                created_at: now,
            };
            ledger.count(day);
            let writes = vec![
                DocWrite::put(
                    nkeys::offer(&code),
                    nkeys::DEF.to_string(),
                    &offer,
                    1,
                    Expect::New,
                )?
                .with_number("usage_limit", i64::from(offer.usage_limit))
                .with_number(REDEMPTIONS, 0)
                .with("user_id", user_id),
                DocWrite::put(
                    keys::user(user_id),
                    nkeys::user_offer(&now.format("%Y%m%dT%H%M%SZ").to_string(), &code),
                    &OfferPointer {
                        code: code.clone(),
                        created_at: now,
                    },
                    1,
                    Expect::New,
                )?,
                ledger_write(user_id, &ledger, ledger_version)?,
            ];
            if self.store.write_docs(writes).await? == CommitOutcome::Committed {
                return Ok(OfferAnswer {
                    user_id: user_id.to_string(),
                    eligible: true,
                    reasons: Vec::new(),
                    offer: Some(offer),
                });
            }
        }
        Err(NudgeError::Contended(format!("offers of {user_id}")))
    }

    /// The "not now" answer when the user's daily nudge cap is reached on `day`.
    async fn daily_cap_reached(
        &self,
        user_id: &str,
        day: chrono::NaiveDate,
    ) -> Result<Option<OfferAnswer>, NudgeError> {
        let (ledger, _) = self.ledger(user_id).await?;
        let cap = self.settings.reminders.daily_cap;
        if ledger.sent_on(day) < cap {
            return Ok(None);
        }
        Ok(Some(OfferAnswer {
            user_id: user_id.to_string(),
            eligible: false,
            reasons: vec![IneligibleReason {
                code: "daily_cap".into(),
                message: format!(
                    "{} nudges already reached the user on {day} (their timezone); the cap is {cap}",
                    ledger.sent_on(day)
                ),
                value: ledger.sent_on(day).into(),
                required: format!("< {cap}").into(),
            }],
            offer: None,
        }))
    }

    pub async fn get_offer(&self, code: &str) -> Result<Option<Offer>, NudgeError> {
        Ok(self
            .store
            .get_doc::<Offer>(&nkeys::offer(code), nkeys::DEF)
            .await?
            .map(with_counters))
    }

    pub async fn user_offers(&self, user_id: &str) -> Result<Vec<Offer>, NudgeError> {
        let pointers = self
            .store
            .query_docs::<OfferPointer>(&keys::user(user_id), nkeys::OFFER_PREFIX, false, Some(100))
            .await?;
        let mut all = Vec::new();
        for p in pointers {
            if let Some(o) = self.get_offer(&p.value.code).await? {
                all.push(o);
            }
        }
        Ok(all)
    }

    /// Redeems a code for `user_id` exactly once: 403 for another user's code, 410 once it
    /// expired, 409 when it was already used.
    pub async fn redeem(
        &self,
        code: &str,
        user_id: &str,
        now: DateTime<Utc>,
    ) -> Result<RedeemAnswer, NudgeError> {
        let normalised = offers::parse_code(code).ok_or_else(|| {
            NudgeError::Invalid(vec![FieldError::new("code", "is not an offer code")])
        })?;
        let offer = self
            .get_offer(&normalised)
            .await?
            .ok_or_else(|| NudgeError::NotFound(format!("no offer '{normalised}'")))?;
        check_redeem(&offer, user_id, false, now).map_err(redeem_error)?;
        match self.store.redeem_offer(&normalised, user_id, now).await? {
            CommitOutcome::Committed => {
                // The redemption is the offer's acceptance in the segment's figures: counted
                // once per code on today's aggregate (a retry finds the dedupe record).
                let profile = self.profile(user_id).await?;
                let counter = crate::profiles::counters::segment(
                    profile.current_segment(),
                    "nudge#offer#converted",
                );
                self.store
                    .add_counters(
                        &crate::store::keys::aggregate(now.date_naive()),
                        &crate::store::keys::shard(crate::ingest::shard_of(user_id, self.shards)),
                        &[(counter.as_str(), 1)],
                        Some((&format!("redeem:{normalised}"), self.dedupe_expires_at(now))),
                        now,
                    )
                    .await?;
                let mut o = offer;
                o.redemptions += 1;
                o.redeemed_at = Some(now);
                Ok(RedeemAnswer {
                    redeemed: true,
                    offer: o,
                })
            }
            CommitOutcome::Conflict => Err(NudgeError::Conflict(format!(
                "offer {normalised} was already redeemed"
            ))),
        }
    }

    /// Marks an offer viewed (first view wins).
    pub(super) async fn offer_viewed(
        &self,
        code: &str,
        user_id: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, NudgeError> {
        let Some(code) = offers::parse_code(code) else {
            return Ok(false);
        };
        for _ in 0..ATTEMPTS {
            let Some(v) = self
                .store
                .get_doc::<Offer>(&nkeys::offer(&code), nkeys::DEF)
                .await?
            else {
                return Ok(false);
            };
            if v.value.user_id != user_id || v.value.viewed_at.is_some() {
                return Ok(false);
            }
            let mut next = v.value.clone();
            next.viewed_at = Some(at);
            let redemptions = v.counters.get(REDEMPTIONS).copied().unwrap_or(0);
            let w = DocWrite::put(
                nkeys::offer(&code),
                nkeys::DEF.to_string(),
                &next,
                v.version + 1,
                Expect::Version(v.version),
            )?
            .with_number("usage_limit", i64::from(next.usage_limit))
            .with_number(REDEMPTIONS, redemptions)
            .with("user_id", user_id);
            let w = match v.counters.get(REDEEMED_TS) {
                Some(ts) => w.with_number(REDEEMED_TS, *ts),
                None => w,
            };
            if self.store.write_docs(vec![w]).await? == CommitOutcome::Committed {
                return Ok(true);
            }
        }
        Err(NudgeError::Contended(format!("offer {code}")))
    }
}

fn redeem_error(e: RedeemError) -> NudgeError {
    match e {
        RedeemError::NotYours => NudgeError::Forbidden("this offer belongs to another user".into()),
        RedeemError::NotStarted { starts_at } => {
            NudgeError::Conflict(format!("this offer starts at {}", starts_at.to_rfc3339()))
        }
        RedeemError::Expired { ended_at } => {
            NudgeError::Gone(format!("this offer expired at {}", ended_at.to_rfc3339()))
        }
        RedeemError::AlreadyRedeemed { redeemed_at } => NudgeError::Conflict(match redeemed_at {
            Some(at) => format!("this offer was already redeemed at {}", at.to_rfc3339()),
            None => "this offer was already redeemed".to_string(),
        }),
    }
}

/// The tier above `current` on the ladder; a tier off the ladder counts as its bottom.
fn next_tier(current: &str, tiers: &[String]) -> Option<String> {
    match tiers.iter().position(|t| t == current) {
        Some(i) => tiers.get(i + 1).cloned(),
        None => tiers.get(1).cloned(),
    }
}

/// Position on the ladder; a tier off the ladder counts as its bottom.
fn rank(tier: &str, tiers: &[String]) -> usize {
    tiers.iter().position(|t| t == tier).unwrap_or(0)
}
