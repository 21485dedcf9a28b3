//! The social proof catalog (admin CRUD) and the proofs a user is shown: relevant, approved,
//! not shown to them within the rotation window, ranked by Thompson sampling on the
//! impressions and conversions that nudge events report.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{NudgeError, Nudges, ATTEMPTS};
use crate::ingest::CommitOutcome;
use crate::nudges::social_proof::{self, Audience, Proof, Ranked};
use crate::store::{keys, nkeys, DocWrite, Expect, Versioned};

/// Counter attributes of a catalog item.
pub(super) const IMPRESSIONS: &str = "impressions";
pub(super) const CONVERSIONS: &str = "conversions";

/// One admin change of the catalog: who, when, and the proof before and after.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProofAudit {
    pub proof_id: String,
    pub version: u64,
    pub at: DateTime<Utc>,
    pub actor: String,
    /// `created`, `updated` or `deleted`.
    pub action: String,
    pub before: Option<Proof>,
    pub after: Option<Proof>,
}

fn audit_write(
    proof_id: &str,
    version: u64,
    actor: &str,
    action: &str,
    before: Option<&Proof>,
    after: Option<&Proof>,
    at: DateTime<Utc>,
) -> Result<DocWrite, NudgeError> {
    let record = ProofAudit {
        proof_id: proof_id.to_string(),
        version,
        at,
        actor: actor.to_string(),
        action: action.to_string(),
        before: before.cloned(),
        after: after.cloned(),
    };
    Ok(DocWrite::put(
        nkeys::proof_audit(proof_id),
        format!("{version:010}"),
        &record,
        1,
        Expect::New,
    )?)
}

/// A proof served to a user, with why it ranked where it did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServedProof {
    #[serde(flatten)]
    pub proof: Proof,
    pub ranking: Ranked,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Shown {
    proof_id: String,
    shown_at: DateTime<Utc>,
}

fn with_counters(v: Versioned<Proof>) -> Proof {
    let mut p = v.value;
    p.impressions = v.counters.get(IMPRESSIONS).copied().unwrap_or(0).max(0) as u64;
    p.conversions = v.counters.get(CONVERSIONS).copied().unwrap_or(0).max(0) as u64;
    p.version = v.version;
    p
}

impl Nudges<'_> {
    pub async fn list_proofs(&self) -> Result<Vec<Proof>, NudgeError> {
        Ok(self
            .store
            .query_docs::<Proof>(nkeys::PROOFS, "", true, None)
            .await?
            .into_iter()
            .map(with_counters)
            .collect())
    }

    pub async fn get_proof(&self, proof_id: &str) -> Result<Proof, NudgeError> {
        self.store
            .get_doc::<Proof>(nkeys::PROOFS, proof_id)
            .await?
            .map(with_counters)
            .ok_or_else(|| NudgeError::NotFound(format!("no social proof '{proof_id}'")))
    }

    pub async fn create_proof(
        &self,
        body: &serde_json::Value,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Proof, NudgeError> {
        let input = social_proof::parse_input(body).map_err(NudgeError::Invalid)?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let mut proof = social_proof::create(id.clone(), input, now);
        proof.version = 1;
        let writes = vec![
            DocWrite::put(
                nkeys::PROOFS.to_string(),
                id.clone(),
                &proof,
                1,
                Expect::New,
            )?,
            audit_write(&id, 1, actor, "created", None, Some(&proof), now)?,
        ];
        match self.store.write_docs(writes).await? {
            CommitOutcome::Committed => Ok(proof),
            CommitOutcome::Conflict => {
                Err(NudgeError::Conflict("proof id collision; retry".into()))
            }
        }
    }

    pub async fn update_proof(
        &self,
        proof_id: &str,
        body: &serde_json::Value,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Proof, NudgeError> {
        let patch = social_proof::parse_patch(body).map_err(NudgeError::Invalid)?;
        for _ in 0..ATTEMPTS {
            let Some(v) = self.store.get_doc::<Proof>(nkeys::PROOFS, proof_id).await? else {
                return Err(NudgeError::NotFound(format!(
                    "no social proof '{proof_id}'"
                )));
            };
            let current = with_counters(v.clone());
            let mut next = social_proof::apply_patch(&current, &patch, now);
            next.version = v.version + 1;
            let mut w = DocWrite::put(
                nkeys::PROOFS.to_string(),
                proof_id.to_string(),
                &next,
                v.version + 1,
                Expect::Version(v.version),
            )?;
            // Counters live beside the document; a put must carry them over.
            w = w
                .with_number(IMPRESSIONS, current.impressions as i64)
                .with_number(CONVERSIONS, current.conversions as i64);
            let audit = audit_write(
                proof_id,
                v.version + 1,
                actor,
                "updated",
                Some(&current),
                Some(&next),
                now,
            )?;
            if self.store.write_docs(vec![w, audit]).await? == CommitOutcome::Committed {
                return Ok(next);
            }
        }
        Err(NudgeError::Contended(format!("social proof {proof_id}")))
    }

    pub async fn delete_proof(
        &self,
        proof_id: &str,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<(), NudgeError> {
        for _ in 0..ATTEMPTS {
            let Some(v) = self.store.get_doc::<Proof>(nkeys::PROOFS, proof_id).await? else {
                return Err(NudgeError::NotFound(format!(
                    "no social proof '{proof_id}'"
                )));
            };
            let current = with_counters(v.clone());
            let writes = vec![
                DocWrite::delete(
                    nkeys::PROOFS.to_string(),
                    proof_id.to_string(),
                    Expect::Version(v.version),
                ),
                audit_write(
                    proof_id,
                    v.version + 1,
                    actor,
                    "deleted",
                    Some(&current),
                    None,
                    now,
                )?,
            ];
            if self.store.write_docs(writes).await? == CommitOutcome::Committed {
                return Ok(());
            }
        }
        Err(NudgeError::Contended(format!("social proof {proof_id}")))
    }

    /// Every change of a proof, oldest first (kept after the proof is deleted).
    pub async fn proof_audit(&self, proof_id: &str) -> Result<Vec<ProofAudit>, NudgeError> {
        Ok(self
            .store
            .query_docs::<ProofAudit>(&nkeys::proof_audit(proof_id), "", true, None)
            .await?
            .into_iter()
            .map(|v| v.value)
            .collect())
    }

    /// At most `max_proofs` approved proofs relevant to the user, none shown to them within
    /// the rotation window, ranked by Thompson sampling; each served proof is remembered for
    /// the rotation unless `record` is off (an admin's preview).
    pub async fn proofs_for_user(
        &self,
        user_id: &str,
        feature: Option<String>,
        goals: Option<Vec<String>>,
        record: bool,
        now: DateTime<Utc>,
    ) -> Result<Vec<ServedProof>, NudgeError> {
        let profile = self.profile(user_id).await?;
        let audience = Audience {
            segment: profile.segment.as_ref().map(|s| s.value.clone()),
            tier: Some(profile.current_tier().to_string()),
            feature,
            goals: goals
                .or_else(|| profile.goals.as_ref().map(|g| g.value.clone()))
                .unwrap_or_default(),
        };
        let cutoff = social_proof::shown_cutoff(now, &self.settings.social_proof);
        let recently: BTreeSet<String> = self
            .store
            .query_docs::<Shown>(&keys::user(user_id), nkeys::SHOWN_PREFIX, true, None)
            .await?
            .into_iter()
            // A record stamped ahead of `now` (another instance's clock) still counts.
            .filter(|s| s.value.shown_at > cutoff)
            .map(|s| s.value.proof_id)
            .collect();
        let catalog = self.list_proofs().await?;
        let ranked = {
            let mut rng = rand::thread_rng();
            social_proof::rank(
                &catalog,
                &audience,
                &recently,
                &self.settings.social_proof,
                &mut rng,
            )
        };
        let mut served = Vec::new();
        for r in ranked {
            let Some(p) = catalog.iter().find(|p| p.proof_id == r.proof_id) else {
                continue;
            };
            if record {
                self.store
                    .put_plain(
                        &keys::user(user_id),
                        &nkeys::shown(&p.proof_id),
                        &Shown {
                            proof_id: p.proof_id.clone(),
                            shown_at: now,
                        },
                    )
                    .await?;
            }
            served.push(ServedProof {
                proof: p.clone(),
                ranking: r,
            });
        }
        Ok(served)
    }

    /// Proofs served to the user (the latest time each was served).
    pub(super) async fn proofs_served(
        &self,
        user_id: &str,
    ) -> Result<Vec<(String, DateTime<Utc>)>, NudgeError> {
        Ok(self
            .store
            .query_docs::<Shown>(&keys::user(user_id), nkeys::SHOWN_PREFIX, true, None)
            .await?
            .into_iter()
            .map(|s| (s.value.proof_id, s.value.shown_at))
            .collect())
    }
}
