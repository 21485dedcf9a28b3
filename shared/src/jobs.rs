//! Jobs: what the scheduler fans out and worker-jobs runs.

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::queue::JobMessage;

/// The jobs a schedule may fire.
pub const JOBS: &[&str] = &[DLQ_WATCH, SIGNIFICANCE_SWEEP, REMINDER_SWEEP];
/// Checks the depth of every dead-letter queue, records it and emits a metric.
pub const DLQ_WATCH: &str = "dlq-watch";
/// Fanned out by the scheduler itself: one [`SIGNIFICANCE_CHECK`] job per running experiment
/// whose check is due.
pub const SIGNIFICANCE_SWEEP: &str = "significance-sweep";
/// Runs the sequential significance check of one experiment (`params.experiment`).
pub const SIGNIFICANCE_CHECK: &str = "significance-check";
/// Fanned out by the scheduler itself each minute: one [`REMINDER_DISPATCH`] job per user
/// with a trial reminder due.
pub const REMINDER_SWEEP: &str = "reminder-sweep";
/// Sends one user's due reminders (`params.user_id`) within their caps.
pub const REMINDER_DISPATCH: &str = "reminder-dispatch";

/// What an EventBridge schedule delivers (its `Input`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleInput {
    pub job: String,
    #[serde(default)]
    pub params: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JobError {
    #[error("unknown job '{0}'; known jobs: {known}", known = JOBS.join(", "))]
    Unknown(String),
    #[error("{0}")]
    BadParams(String),
}

/// The job message for a schedule firing at `now`. Its id is the job name and the minute it
/// fired, so an EventBridge retry of the same firing yields the same id.
pub fn job_message(input: &ScheduleInput, now: DateTime<Utc>) -> Result<JobMessage, JobError> {
    if !JOBS.contains(&input.job.as_str()) {
        return Err(JobError::Unknown(input.job.clone()));
    }
    let minute = now.duration_trunc(TimeDelta::minutes(1)).unwrap_or(now);
    Ok(JobMessage {
        job_id: format!("{}@{}", input.job, minute.format("%Y-%m-%dT%H:%MZ")),
        job: input.job.clone(),
        scheduled_at: minute,
        params: input.params.clone(),
    })
}

/// The time a sweep runs as: `params.now` (RFC 3339) when the firing names one (an operator
/// replaying or testing a schedule), otherwise the firing time.
pub fn effective_now(
    input: &ScheduleInput,
    fired: DateTime<Utc>,
) -> Result<DateTime<Utc>, JobError> {
    if !input.params.is_null() && !input.params.is_object() {
        return Err(JobError::BadParams(
            "params must be an object such as {\"now\": \"<RFC 3339>\"}".into(),
        ));
    }
    if let Some(map) = input.params.as_object() {
        if let Some(other) = map.keys().find(|k| k.as_str() != "now") {
            return Err(JobError::BadParams(format!(
                "params.{other} is not a parameter of {}; it takes only params.now",
                input.job
            )));
        }
    }
    match input.params.get("now") {
        None | Some(serde_json::Value::Null) => Ok(fired),
        Some(v) => v
            .as_str()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
            .ok_or_else(|| JobError::BadParams("params.now must be an RFC 3339 time".into())),
    }
}

/// The check job of one experiment for the sweep at `now`. Its id names the experiment and
/// the minute, so a retried sweep yields the same id, and its `scheduled_at` is the slot the
/// check records in the experiment's history.
pub fn significance_check_message(experiment: &str, now: DateTime<Utc>) -> JobMessage {
    let minute = now.duration_trunc(TimeDelta::minutes(1)).unwrap_or(now);
    JobMessage {
        job_id: format!(
            "{SIGNIFICANCE_CHECK}:{experiment}@{}",
            minute.format("%Y-%m-%dT%H:%MZ")
        ),
        job: SIGNIFICANCE_CHECK.to_string(),
        scheduled_at: minute,
        params: serde_json::json!({ "experiment": experiment, "now": now.to_rfc3339() }),
    }
}

/// The dispatch job of one user's due reminders for the sweep at `now`; a retried sweep
/// yields the same id.
pub fn reminder_dispatch_message(user_id: &str, now: DateTime<Utc>) -> JobMessage {
    let minute = now.duration_trunc(TimeDelta::minutes(1)).unwrap_or(now);
    JobMessage {
        job_id: format!(
            "{REMINDER_DISPATCH}:{user_id}@{}",
            minute.format("%Y-%m-%dT%H:%MZ")
        ),
        job: REMINDER_DISPATCH.to_string(),
        scheduled_at: minute,
        params: serde_json::json!({ "user_id": user_id, "now": now.to_rfc3339() }),
    }
}

/// Depth of one dead-letter queue at a check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DlqDepth {
    pub queue: String,
    pub messages: u64,
}

/// The record a `dlq-watch` run leaves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DlqReport {
    pub job_id: String,
    pub checked_at: DateTime<Utc>,
    pub depths: Vec<DlqDepth>,
    pub total: u64,
}

impl DlqReport {
    pub fn new(job_id: &str, checked_at: DateTime<Utc>, depths: Vec<DlqDepth>) -> DlqReport {
        let total = depths.iter().map(|d| d.messages).sum();
        DlqReport {
            job_id: job_id.to_string(),
            checked_at,
            depths,
            total,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schedule_firing_becomes_a_job_with_a_stable_id() {
        let input = ScheduleInput {
            job: DLQ_WATCH.into(),
            params: serde_json::Value::Null,
        };
        let a = job_message(&input, "2026-11-24T10:05:17Z".parse().unwrap()).unwrap();
        let b = job_message(&input, "2026-11-24T10:05:59Z".parse().unwrap()).unwrap();
        assert_eq!(a.job_id, "dlq-watch@2026-11-24T10:05Z");
        assert_eq!(a.job_id, b.job_id);
    }

    #[test]
    fn an_unknown_job_is_refused() {
        let input = ScheduleInput {
            job: "nope".into(),
            params: serde_json::Value::Null,
        };
        assert!(matches!(
            job_message(&input, Utc::now()),
            Err(JobError::Unknown(_))
        ));
    }

    #[test]
    fn a_sweep_may_name_its_now_and_checks_carry_their_slot() {
        let fired: DateTime<Utc> = "2026-11-24T10:05:17Z".parse().unwrap();
        let input = ScheduleInput {
            job: SIGNIFICANCE_SWEEP.into(),
            params: serde_json::json!({"now": "2026-11-25T00:00:30Z"}),
        };
        let now = effective_now(&input, fired).unwrap();
        assert_eq!(now.to_rfc3339(), "2026-11-25T00:00:30+00:00");
        let m = significance_check_message("price", now);
        assert_eq!(m.job_id, "significance-check:price@2026-11-25T00:00Z");
        assert_eq!(m.params["experiment"], "price");
        let bad = ScheduleInput {
            job: SIGNIFICANCE_SWEEP.into(),
            params: serde_json::json!({"now": "yesterday"}),
        };
        assert!(matches!(
            effective_now(&bad, fired),
            Err(JobError::BadParams(_))
        ));
        let typo = ScheduleInput {
            job: REMINDER_SWEEP.into(),
            params: serde_json::json!({"nwo": "2026-11-25T00:00:30Z"}),
        };
        match effective_now(&typo, fired) {
            Err(JobError::BadParams(m)) => assert!(m.contains("params.nwo"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_report_totals_its_queues() {
        let r = DlqReport::new(
            "j",
            Utc::now(),
            vec![
                DlqDepth {
                    queue: "EventsDLQ".into(),
                    messages: 2,
                },
                DlqDepth {
                    queue: "JobsDLQ".into(),
                    messages: 1,
                },
            ],
        );
        assert_eq!(r.total, 3);
    }
}
