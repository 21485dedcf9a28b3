//! Jobs: what the scheduler fans out and worker-jobs runs.

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::queue::JobMessage;

/// The jobs tierup knows.
pub const JOBS: &[&str] = &[DLQ_WATCH];
/// Checks the depth of every dead-letter queue, records it and emits a metric.
pub const DLQ_WATCH: &str = "dlq-watch";

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
