//! The nudge rules run against the store, the outbox and the experiments. api-nudges,
//! worker-events and worker-jobs share this layer; handlers stay thin.

mod events;
mod insights;
mod offers;
mod prompts;
mod proofs;
mod trials;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use events::NudgeEventsReport;
pub use offers::{CreateOffer, OfferAnswer, RedeemAnswer};
pub(crate) use prompts::design_keys;
pub use prompts::{Prompt, PromptEvaluation};
pub use proofs::{ProofAudit, ServedProof};
pub use trials::{DispatchReport, TrialRecord, TrialSpec, TrialState, TrialView};

use super::NudgeSettings;
use crate::error::{ApiError, QueueError, StoreError};
use crate::events::FieldError;
use crate::experiments::assign::{decide, Decision};
use crate::experiments::fold::{Assignment, MetricStore};
use crate::experiments::model::{Status, TestType};
use crate::profiles::Profile;
use crate::queue::MessageSink;
use crate::store::{Created, DynamoStore};

/// How many times a read-modify-write is retried when another writer got there first.
const ATTEMPTS: u32 = 6;

#[derive(Debug, thiserror::Error)]
pub enum NudgeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("invalid input")]
    Invalid(Vec<FieldError>),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Gone(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0} kept changing under concurrent writes")]
    Contended(String),
}

impl From<NudgeError> for ApiError {
    fn from(e: NudgeError) -> ApiError {
        match e {
            NudgeError::Store(e) => ApiError::Store(e),
            NudgeError::Queue(e) => ApiError::Queue(e),
            NudgeError::Invalid(errors) => ApiError::Validation(errors),
            NudgeError::NotFound(m) => ApiError::NotFound(m),
            NudgeError::Conflict(m) => ApiError::Conflict(m),
            e @ NudgeError::Contended(_) => ApiError::Conflict(format!("{e}; retry")),
            NudgeError::Gone(m) => ApiError::Gone(m),
            NudgeError::Forbidden(m) => ApiError::Auth(crate::auth::AuthError::Forbidden(m)),
        }
    }
}

/// The experiment variant that shaped a nudge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VariantChoice {
    pub experiment: String,
    pub variant: String,
    pub config: Value,
}

/// The nudge service: borrowed clients and settings, built per request or job.
pub struct Nudges<'a> {
    pub store: &'a DynamoStore,
    pub sink: &'a dyn MessageSink,
    pub outbox_url: &'a str,
    pub settings: &'a NudgeSettings,
    /// Write shards of experiment statistics (for exposures counted on assignment).
    pub shards: u32,
    pub dedupe_ttl_days: u32,
}

impl<'a> Nudges<'a> {
    /// The service over a function's clients and configuration.
    pub fn from_config(
        store: &'a DynamoStore,
        sink: &'a dyn MessageSink,
        config: &'a crate::config::Config,
    ) -> Nudges<'a> {
        Nudges {
            store,
            sink,
            outbox_url: &config.outbox_queue_url,
            settings: &config.nudges,
            shards: config.aggregate_shards,
            dedupe_ttl_days: config.dedupe_ttl_days,
        }
    }
}

impl Nudges<'_> {
    async fn profile(&self, user_id: &str) -> Result<Profile, NudgeError> {
        Ok(self
            .store
            .get_profile(user_id)
            .await?
            .unwrap_or_else(|| Profile::new(user_id)))
    }

    /// The user's variant of the first running experiment of `test_type` (by key) that they
    /// are in, assigned and exposed exactly as `POST /v1/experiments/{key}/assign` would.
    pub async fn variant_for(
        &self,
        test_type: TestType,
        profile: &Profile,
        now: DateTime<Utc>,
    ) -> Result<Option<VariantChoice>, NudgeError> {
        self.variant_if(test_type, profile, now, &|_| true).await
    }

    /// [`Self::variant_for`], but a first assignment whose variant config `usable` refuses
    /// for this user is not made (the user is neither assigned nor exposed), so a variant
    /// never counts users it did not treat.
    pub async fn variant_if(
        &self,
        test_type: TestType,
        profile: &Profile,
        now: DateTime<Utc>,
        usable: &(dyn Fn(&Value) -> bool + Sync),
    ) -> Result<Option<VariantChoice>, NudgeError> {
        let mut running: Vec<_> = self
            .store
            .list_experiments(&[Status::Running])
            .await?
            .into_iter()
            .filter(|e| e.definition.test_type == test_type)
            .collect();
        running.sort_by(|a, b| a.key().cmp(b.key()));
        let attributes = super::signals::attributes(profile);
        let user_id = profile.user_id.as_str();
        for e in &running {
            let existing = self.store.assignment(e.key(), user_id).await?;
            let assignment: Option<Assignment> =
                match decide(e, user_id, &attributes, existing.as_ref(), now) {
                    Decision::Sticky(a) | Decision::Forced(a) => Some(a),
                    Decision::NotInExperiment(_) => None,
                    Decision::New(a) => {
                        let config = e.definition.variants.get(a.variant).map(|v| &v.config);
                        if !config.is_some_and(usable) {
                            continue;
                        }
                        match self.store.create_assignment(&a, self.shards).await? {
                            Created::Created => Some(a),
                            Created::Exists => self.store.assignment(e.key(), user_id).await?,
                        }
                    }
                };
            if let Some(a) = assignment {
                let config = e
                    .definition
                    .variants
                    .get(a.variant)
                    .map(|v| v.config.clone())
                    .unwrap_or(Value::Null);
                return Ok(Some(VariantChoice {
                    experiment: e.key().to_string(),
                    variant: a.variant_key.clone(),
                    config,
                }));
            }
        }
        Ok(None)
    }

    fn dedupe_expires_at(&self, now: DateTime<Utc>) -> i64 {
        now.timestamp() + i64::from(self.dedupe_ttl_days) * 86_400
    }
}
