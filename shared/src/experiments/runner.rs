//! Running one scheduled significance check (worker-jobs' `significance-check` job).
//!
//! 1. Load the experiment; skip unless it is running and its check is due at the job's slot
//!    (a redelivered or duplicate job finds `last_check_at` past the slot and does nothing).
//! 2. Compute the results from the stored statistics and apply the stopping rule.
//! 3. Record the history point under the slot (a conditional put: once per slot).
//! 4. Save the experiment: `last_check_at`, and on a conclusion the outcome with its evidence,
//!    `notice_pending`, and — when auto-stop is on — status `completed`, with an audit record,
//!    all in one conditional write.
//! 5. Send the owed `experiment_concluded` message to the outbox and clear `notice_pending`.
//!    A crash before the clear sends it again on the next run; its `message_id` is stable, so
//!    consumers drop the copy. Nothing is lost.

use chrono::{DateTime, Utc};
use serde_json::json;

use super::analysis::{self, AnalysisError};
use super::checks::{check_point, stopping_rule, Verdict};
use super::lifecycle::AuditRecord;
use super::model::{Experiment, Outcome, Status};
use super::ExperimentConcluded;
use crate::error::{QueueError, StoreError};
use crate::ingest::CommitOutcome;
use crate::queue::MessageSink;
use crate::store::DynamoStore;

const MAX_ATTEMPTS: u32 = 5;

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Analysis(#[from] AnalysisError),
    #[error("experiment {0} kept changing during its check")]
    Contended(String),
}

/// What a check run did.
#[derive(Debug, Clone, PartialEq)]
pub enum CheckRun {
    /// Not running, unknown, or already checked for this slot.
    Skipped(&'static str),
    Checked {
        verdict: Verdict,
        completed: bool,
        notice_sent: bool,
    },
}

/// Runs the check of `key` for the slot `slot` at time `now`.
pub async fn run_check(
    store: &DynamoStore,
    sink: &dyn MessageSink,
    outbox_url: &str,
    key: &str,
    slot: DateTime<Utc>,
    job_id: &str,
    now: DateTime<Utc>,
) -> Result<CheckRun, CheckError> {
    for _ in 0..MAX_ATTEMPTS {
        let Some(experiment) = store.get_experiment(key).await? else {
            return Ok(CheckRun::Skipped("no such experiment"));
        };
        if experiment.notice_pending {
            send_notice(store, sink, outbox_url, &experiment).await?;
            continue;
        }
        if experiment.status != Status::Running {
            return Ok(CheckRun::Skipped("not running"));
        }
        if !experiment.check_due(slot) {
            return Ok(CheckRun::Skipped("already checked for this slot"));
        }
        let stats = store.phase_stats(key, experiment.bucket_version).await?;
        let results = analysis::compute(&experiment, &stats, now)?;
        let verdict = stopping_rule(&experiment, &results);
        let slot_text = slot.format("%Y-%m-%dT%H:%MZ").to_string();
        store
            .put_check(
                key,
                &check_point(&slot_text, job_id, &results, verdict.clone()),
            )
            .await?;
        let mut next = experiment.clone();
        // The slot, not the wall clock: the next sweep minute `interval` later is due.
        next.last_check_at = Some(slot);
        next.version += 1;
        let mut audit = None;
        if let Verdict::Conclude {
            result,
            winner,
            evidence,
        } = &verdict
        {
            if experiment.outcome.is_none() {
                next.outcome = Some(Outcome {
                    result: *result,
                    winner: winner.clone(),
                    decided_at: now,
                    decided_by: "scheduled_check".to_string(),
                    evidence: evidence.clone(),
                });
                next.notice_pending = true;
                if experiment.definition.auto_stop {
                    next.status = Status::Completed;
                    next.ended_at = Some(now);
                }
                next.updated_at = now;
                audit = Some(AuditRecord {
                    experiment: key.to_string(),
                    version: next.version,
                    at: now,
                    actor: "scheduled_check".to_string(),
                    action: "concluded".to_string(),
                    changes: vec![super::lifecycle::Change {
                        field: "outcome".to_string(),
                        before: serde_json::Value::Null,
                        after: json!({
                            "result": result,
                            "winner": winner,
                            "status": next.status,
                        }),
                    }],
                });
            }
        }
        match store
            .save_experiment(&next, experiment.version, audit.as_ref())
            .await?
        {
            CommitOutcome::Conflict => continue,
            CommitOutcome::Committed => {
                let notice_sent = if next.notice_pending {
                    send_notice(store, sink, outbox_url, &next).await?
                } else {
                    false
                };
                return Ok(CheckRun::Checked {
                    completed: next.status == Status::Completed,
                    verdict,
                    notice_sent,
                });
            }
        }
    }
    Err(CheckError::Contended(key.to_string()))
}

/// Sends the owed `experiment_concluded` message, then clears `notice_pending`.
async fn send_notice(
    store: &DynamoStore,
    sink: &dyn MessageSink,
    outbox_url: &str,
    experiment: &Experiment,
) -> Result<bool, CheckError> {
    let Some(message) = ExperimentConcluded::new(experiment) else {
        return Ok(false);
    };
    let body = serde_json::to_string(&message).map_err(QueueError::from)?;
    sink.send_all(outbox_url, vec![body], Some(&message.message_id))
        .await?;
    tracing::info!(experiment = %experiment.key(), winner = ?message.winner, "experiment_concluded sent");
    let mut cleared = experiment.clone();
    cleared.notice_pending = false;
    cleared.version += 1;
    // A conflict means someone else saved meanwhile; the next run sends again (same id).
    store
        .save_experiment(&cleared, experiment.version, None)
        .await?;
    Ok(true)
}
