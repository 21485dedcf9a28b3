//! Exactly-once folding of ingested events into profiles and daily aggregates.
//!
//! The events of one queue message are grouped by user. For each user:
//! 1. read the profile (strongly consistent) and the dedupe records of the group's event ids;
//! 2. fold the events not yet applied, in `(timestamp, event_id)` order, into the profile,
//!    collecting the daily counter increments they add (pre-aggregated per day and shard);
//! 3. commit in one DynamoDB transaction: a dedupe record per event (condition: absent or
//!    expired), the profile (condition: the version read in step 1), and `ADD` updates of the
//!    sharded daily aggregate items.
//!
//! Either all of a commit happens or none of it, so a crash between writes leaves nothing
//! half-done; a redelivered message finds its dedupe records and changes nothing; two workers
//! racing on the same user conflict on the profile version or a dedupe record, and the loser
//! starts again from step 1, where it sees the winner's work. A group of more events than one
//! transaction holds is committed in chunks, each exactly-once on its own.

use std::collections::{BTreeMap, HashSet};

use async_trait::async_trait;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use futures::stream::{self, StreamExt, TryStreamExt};

use crate::error::StoreError;
use crate::events::Event;
use crate::hash::fnv1a32;
use crate::profiles::{FoldSettings, Profile};

/// Events per transaction: each takes one dedupe item, plus one profile item and at most one
/// aggregate item per day, which keeps a commit under DynamoDB's 100-item limit.
pub const EVENTS_PER_COMMIT: usize = 48;
/// How often a user's fold is retried after losing a race before the message fails.
const MAX_ATTEMPTS: u32 = 8;
/// Users of one message folded concurrently.
const USER_CONCURRENCY: usize = 8;

/// Settings of ingestion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngestSettings {
    pub fold: FoldSettings,
    pub dedupe_ttl_days: u32,
    pub aggregate_shards: u32,
}

impl IngestSettings {
    pub fn from_config(c: &crate::config::Config) -> IngestSettings {
        IngestSettings {
            fold: FoldSettings {
                engagement_window_days: c.engagement_window_days,
                default_trial_days: c.default_trial_days,
            },
            dedupe_ttl_days: c.dedupe_ttl_days,
            aggregate_shards: c.aggregate_shards,
        }
    }
}

/// The write shard of a user's contributions to the daily aggregates.
pub fn shard_of(user_id: &str, shards: u32) -> u32 {
    fnv1a32(user_id.as_bytes()) % shards.max(1)
}

/// Increments of one sharded daily aggregate item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AggregateDelta {
    pub day: NaiveDate,
    pub shard: u32,
    pub counters: BTreeMap<String, i64>,
}

/// One atomic commit of a fold.
#[derive(Debug, Clone, PartialEq)]
pub struct FoldCommit {
    /// The new profile; its `version` is one more than `expected_version` (or 1).
    pub profile: Profile,
    /// The version read before the fold; `None` when the profile did not exist.
    pub expected_version: Option<u64>,
    pub event_ids: Vec<String>,
    /// Epoch seconds after which the dedupe records may be forgotten.
    pub dedupe_expires_at: i64,
    pub aggregates: Vec<AggregateDelta>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitOutcome {
    Committed,
    /// Another writer got there first (version or dedupe condition failed, or a transaction
    /// conflict): read again and retry.
    Conflict,
}

/// The storage port ingestion needs.
#[async_trait]
pub trait IngestStore: Send + Sync {
    async fn load_profile(&self, user_id: &str) -> Result<Option<Profile>, StoreError>;
    /// The subset of `event_ids` already applied (dedupe record present and not expired).
    async fn applied_events(
        &self,
        event_ids: &[String],
        now: DateTime<Utc>,
    ) -> Result<HashSet<String>, StoreError>;
    async fn commit_fold(
        &self,
        commit: &FoldCommit,
        now: DateTime<Utc>,
    ) -> Result<CommitOutcome, StoreError>;
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("user {user_id}: still conflicting after {MAX_ATTEMPTS} attempts")]
    Contended { user_id: String },
}

/// What a fold did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FoldReport {
    pub applied: usize,
    pub duplicates: usize,
    pub commits: usize,
    pub conflicts: usize,
}

impl FoldReport {
    fn add(&mut self, other: FoldReport) {
        self.applied += other.applied;
        self.duplicates += other.duplicates;
        self.commits += other.commits;
        self.conflicts += other.conflicts;
    }
}

/// Folds a set of events exactly once.
pub async fn fold_events(
    store: &dyn IngestStore,
    events: Vec<Event>,
    settings: &IngestSettings,
    now: DateTime<Utc>,
) -> Result<FoldReport, IngestError> {
    let mut by_user: BTreeMap<String, Vec<Event>> = BTreeMap::new();
    let mut seen = HashSet::new();
    let mut report = FoldReport::default();
    for e in events {
        if seen.insert(e.event_id.clone()) {
            by_user.entry(e.user_id.clone()).or_default().push(e);
        } else {
            report.duplicates += 1;
        }
    }
    let reports: Vec<FoldReport> = stream::iter(by_user)
        .map(|(user_id, events)| fold_user(store, user_id, events, settings, now))
        .buffer_unordered(USER_CONCURRENCY)
        .try_collect()
        .await?;
    for r in reports {
        report.add(r);
    }
    Ok(report)
}

async fn fold_user(
    store: &dyn IngestStore,
    user_id: String,
    mut events: Vec<Event>,
    settings: &IngestSettings,
    now: DateTime<Utc>,
) -> Result<FoldReport, IngestError> {
    events.sort_by(|a, b| (a.timestamp, &a.event_id).cmp(&(b.timestamp, &b.event_id)));
    let mut report = FoldReport::default();
    for chunk in events.chunks(EVENTS_PER_COMMIT) {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let ids: Vec<String> = chunk.iter().map(|e| e.event_id.clone()).collect();
            let applied = store.applied_events(&ids, now).await?;
            let fresh: Vec<&Event> = chunk
                .iter()
                .filter(|e| !applied.contains(&e.event_id))
                .collect();
            if fresh.is_empty() {
                report.duplicates += chunk.len();
                break;
            }
            let current = store.load_profile(&user_id).await?;
            let commit = plan_commit(&user_id, current, &fresh, settings, now);
            match store.commit_fold(&commit, now).await? {
                CommitOutcome::Committed => {
                    report.applied += fresh.len();
                    report.duplicates += chunk.len() - fresh.len();
                    report.commits += 1;
                    break;
                }
                CommitOutcome::Conflict if attempt < MAX_ATTEMPTS => {
                    report.conflicts += 1;
                    let backoff =
                        10u64 * (1 << attempt.min(6)) + u64::from(fnv1a32(ids[0].as_bytes()) % 10);
                    tokio::time::sleep(std::time::Duration::from_millis(backoff)).await;
                }
                CommitOutcome::Conflict => return Err(IngestError::Contended { user_id }),
            }
        }
    }
    Ok(report)
}

/// The pure part of a fold: the new profile and the writes that commit it.
pub fn plan_commit(
    user_id: &str,
    current: Option<Profile>,
    fresh: &[&Event],
    settings: &IngestSettings,
    now: DateTime<Utc>,
) -> FoldCommit {
    let expected_version = current.as_ref().map(|p| p.version);
    let mut profile = current.unwrap_or_else(|| Profile::new(user_id));
    let shard = shard_of(user_id, settings.aggregate_shards);
    let mut per_day: BTreeMap<NaiveDate, BTreeMap<String, i64>> = BTreeMap::new();
    for event in fresh {
        for delta in profile.apply(event, &settings.fold) {
            *per_day
                .entry(delta.day)
                .or_default()
                .entry(delta.counter)
                .or_default() += delta.amount;
        }
    }
    profile.version = expected_version.unwrap_or(0) + 1;
    FoldCommit {
        profile,
        expected_version,
        event_ids: fresh.iter().map(|e| e.event_id.clone()).collect(),
        dedupe_expires_at: (now + Duration::days(i64::from(settings.dedupe_ttl_days))).timestamp(),
        aggregates: per_day
            .into_iter()
            .map(|(day, counters)| AggregateDelta {
                day,
                shard,
                counters,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{EventBody, FeatureUsed};

    fn used(id: &str, ts: &str) -> Event {
        Event {
            event_id: id.into(),
            user_id: "u1".into(),
            timestamp: ts.parse().unwrap(),
            body: EventBody::FeatureUsed(FeatureUsed {
                feature: "f".into(),
                duration_ms: 10,
            }),
        }
    }

    #[test]
    fn a_commit_pre_aggregates_counters_per_day_and_bumps_the_version() {
        let a = used("a", "2026-11-01T10:00:00Z");
        let b = used("b", "2026-11-01T11:00:00Z");
        let c = used("c", "2026-11-02T11:00:00Z");
        let settings = IngestSettings {
            fold: FoldSettings::default(),
            dedupe_ttl_days: 2,
            aggregate_shards: 4,
        };
        let now: DateTime<Utc> = "2026-11-03T00:00:00Z".parse().unwrap();
        let commit = plan_commit("u1", None, &[&a, &b, &c], &settings, now);
        assert_eq!(commit.expected_version, None);
        assert_eq!(commit.profile.version, 1);
        assert_eq!(commit.event_ids, vec!["a", "b", "c"]);
        assert_eq!(commit.dedupe_expires_at, now.timestamp() + 2 * 86_400);
        assert_eq!(commit.aggregates.len(), 2);
        let day1 = &commit.aggregates[0].counters;
        assert_eq!(day1["ev#feature_used"], 2);
        assert_eq!(day1["au#unknown"], 1);
        assert_eq!(day1["fu#unknown#f#ms"], 20);
        assert!(commit
            .aggregates
            .iter()
            .all(|a| a.shard == shard_of("u1", 4)));

        let next = plan_commit(
            "u1",
            Some(commit.profile),
            &[&used("d", "2026-11-02T12:00:00Z")],
            &settings,
            now,
        );
        assert_eq!(next.expected_version, Some(1));
        assert_eq!(next.profile.version, 2);
        assert!(
            !next.aggregates[0].counters.contains_key("au#unknown"),
            "already active that day"
        );
    }

    #[test]
    fn shards_spread_users_and_stay_in_range() {
        let mut counts = [0u32; 16];
        for i in 0..1600 {
            counts[shard_of(&format!("user-{i}"), 16) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (50..=150).contains(&c)),
            "{counts:?}"
        );
        assert_eq!(shard_of("anyone", 1), 0);
    }
}
