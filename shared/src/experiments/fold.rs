//! Exactly-once folding of metric observations into per-variant sufficient statistics.
//!
//! A user's value of a metric is the sum of their observations after assignment (a
//! `proportion` metric caps it at 1). The statistics of a variant are n (users assigned, i.e.
//! exposed), Σx and Σx² over those users, where a user without observations counts as 0.
//! When a user's running total of a metric goes from `a` to `a + v`, Σx grows by `v` and Σx²
//! by `2av + v²`; the running totals live on the user's assignment item.
//!
//! For each (user, experiment) the fold reads the assignment (strongly consistent) and the
//! dedupe records of the observations, then commits in one transaction: a dedupe record per
//! (event, metric) (`EVENT#<id>` / `XP#<experiment>#<metric>`; condition absent or expired),
//! the assignment with its new totals (condition: the version and bucket version read) and an
//! `ADD` of the increments on the user's write shard of the phase's statistics, kept per
//! weights epoch. A redelivery changes
//! nothing; a racing writer makes the loser re-read and retry.

use std::collections::{BTreeMap, HashMap, HashSet};

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::model::{Experiment, MetricDef, MetricKind};
use crate::error::StoreError;
use crate::events::{Event, EventBody};
use crate::ingest::{shard_of, CommitOutcome};

/// Events this much older than the assignment still count: client clocks and the server's
/// differ, and an app often reports a conversion in the same second it was assigned.
pub const CLOCK_SKEW_SECONDS: i64 = 60;

/// The earliest observation time that counts for an assignment.
pub fn counts_from(a: &Assignment) -> DateTime<Utc> {
    a.assigned_at - Duration::seconds(CLOCK_SKEW_SECONDS)
}

/// Observations per transaction (one dedupe item each, keyed by event and metric) (one dedupe item each, plus the assignment and one shard).
pub const OBSERVATIONS_PER_COMMIT: usize = 96;
const MAX_ATTEMPTS: u32 = 8;

/// A user's sticky assignment to an experiment, with their running metric totals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assignment {
    pub experiment: String,
    pub user_id: String,
    pub variant: usize,
    pub variant_key: String,
    pub bucket_version: u32,
    /// The weights epoch the user was assigned in.
    pub epoch: u32,
    pub assigned_at: DateTime<Utc>,
    #[serde(default)]
    pub forced: bool,
    #[serde(default)]
    pub hash_value: Option<f64>,
    /// Running total per metric name.
    #[serde(default)]
    pub totals: BTreeMap<String, f64>,
    pub version: u64,
}

/// One value of one metric for one user, identified by the event that carried it.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub event_id: String,
    pub user_id: String,
    pub timestamp: DateTime<Utc>,
    pub metric: String,
    pub value: f64,
}

/// The largest metric value folded (in magnitude), as `POST /v1/experiments/{key}/results`
/// accepts: Σx² of such values stays far inside DynamoDB's number range.
pub const MAX_VALUE: f64 = 1e12;

/// The value an event contributes to a metric it feeds, if it feeds it (values beyond
/// [`MAX_VALUE`] are left out rather than poisoning the statistics).
pub fn event_value(metric: &MetricDef, event: &Event) -> Option<f64> {
    event_value_raw(metric, event).filter(|v| v.is_finite() && v.abs() <= MAX_VALUE)
}

fn event_value_raw(metric: &MetricDef, event: &Event) -> Option<f64> {
    if metric.event != event.type_name() {
        return None;
    }
    let minor = |m: Option<i64>| m.map(|v| v as f64).unwrap_or(0.0);
    Some(match &event.body {
        EventBody::Metric(m) => {
            let wanted = metric.metric_name.as_deref().unwrap_or(&metric.name);
            if m.name != wanted {
                return None;
            }
            m.value
        }
        EventBody::PaymentSucceeded(p) | EventBody::PaymentFailed(p) => p.amount_minor as f64,
        EventBody::SubscriptionTrialStarted(s)
        | EventBody::SubscriptionTrialConverted(s)
        | EventBody::SubscriptionTrialExpired(s)
        | EventBody::SubscriptionStarted(s)
        | EventBody::SubscriptionRenewed(s)
        | EventBody::SubscriptionUpgraded(s)
        | EventBody::SubscriptionDowngraded(s)
        | EventBody::SubscriptionCanceled(s)
        | EventBody::SubscriptionReactivated(s) => minor(s.amount_minor),
        EventBody::CheckoutStarted(c)
        | EventBody::CheckoutStep(c)
        | EventBody::CheckoutCompleted(c)
        | EventBody::CheckoutAbandoned(c) => minor(c.amount_minor),
        _ => 1.0,
    })
}

/// The observations a batch of events yields for an experiment's metrics.
pub fn observations(experiment: &Experiment, events: &[Event]) -> Vec<Observation> {
    let mut out = Vec::new();
    for e in events {
        for (_, m) in experiment.definition.metrics() {
            if let Some(value) = event_value(m, e) {
                out.push(Observation {
                    event_id: e.event_id.clone(),
                    user_id: e.user_id.clone(),
                    timestamp: e.timestamp,
                    metric: m.name.clone(),
                    value,
                });
            }
        }
    }
    out
}

/// Attribute names of a phase's statistics item. Everything is kept per weights epoch: users
/// assigned under different splits have been exposed for different lengths of time, so pooling
/// them would bias the comparison (results use the current epoch).
pub mod attrs {
    /// Users assigned to variant `v` in weights epoch `e`.
    pub fn exposures(epoch: u32, variant: usize) -> String {
        format!("n_{epoch}_{variant}")
    }
    /// Σx of metric `m` (its index in the definition) over epoch `e`'s users of variant `v`.
    pub fn sum(epoch: u32, metric: usize, variant: usize) -> String {
        format!("s_{epoch}_{metric}_{variant}")
    }
    /// Σx² of metric `m` over epoch `e`'s users of variant `v`.
    pub fn sum_squares(epoch: u32, metric: usize, variant: usize) -> String {
        format!("q_{epoch}_{metric}_{variant}")
    }
}

/// The result of folding a user's new observations into their assignment.
#[derive(Debug, Clone, PartialEq)]
pub struct UserFold {
    pub assignment: Assignment,
    pub increments: BTreeMap<String, f64>,
}

/// Folds observations (already deduplicated, in any order) into an assignment. Observations
/// before the assignment or of metrics the experiment does not define are ignored.
pub fn fold_user(experiment: &Experiment, current: &Assignment, obs: &[&Observation]) -> UserFold {
    let mut next = current.clone();
    let mut increments: BTreeMap<String, f64> = BTreeMap::new();
    let metrics = experiment.definition.metrics();
    let mut sorted: Vec<&&Observation> = obs.iter().collect();
    sorted.sort_by(|a, b| (a.timestamp, &a.event_id).cmp(&(b.timestamp, &b.event_id)));
    for o in sorted {
        if o.timestamp < counts_from(current) {
            continue;
        }
        let Some(index) = metrics.iter().position(|(_, m)| m.name == o.metric) else {
            continue;
        };
        let kind = metrics[index].1.kind;
        let before = next.totals.get(&o.metric).copied().unwrap_or(0.0);
        let after = match kind {
            MetricKind::Proportion => 1.0,
            MetricKind::Mean => before + o.value,
        };
        if after == before {
            continue;
        }
        next.totals.insert(o.metric.clone(), after);
        *increments
            .entry(attrs::sum(current.epoch, index, current.variant))
            .or_default() += after - before;
        *increments
            .entry(attrs::sum_squares(current.epoch, index, current.variant))
            .or_default() += after * after - before * before;
    }
    next.version = current.version + 1;
    UserFold {
        assignment: next,
        increments,
    }
}

/// Summed statistics of one phase (bucket version) of an experiment, per weights epoch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PhaseStats {
    /// (epoch, variant) -> users assigned.
    pub exposures: BTreeMap<(u32, usize), u64>,
    /// (epoch, metric index, variant) -> Σx.
    pub sums: BTreeMap<(u32, usize, usize), f64>,
    /// (epoch, metric index, variant) -> Σx².
    pub sum_squares: BTreeMap<(u32, usize, usize), f64>,
}

impl PhaseStats {
    /// Adds one stored attribute (`n_e_v`, `s_e_m_v`, `q_e_m_v`); others are ignored.
    pub fn add_attribute(&mut self, name: &str, value: f64) {
        let parts: Vec<&str> = name.split('_').collect();
        let nums: Option<Vec<usize>> = parts.iter().skip(1).map(|p| p.parse().ok()).collect();
        let Some(nums) = nums else {
            return;
        };
        match (parts.first().copied(), nums.as_slice()) {
            (Some("n"), [e, v]) => {
                *self.exposures.entry((*e as u32, *v)).or_default() += value.max(0.0) as u64
            }
            (Some("s"), [e, m, v]) => *self.sums.entry((*e as u32, *m, *v)).or_default() += value,
            (Some("q"), [e, m, v]) => {
                *self.sum_squares.entry((*e as u32, *m, *v)).or_default() += value
            }
            _ => {}
        }
    }

    /// Users assigned to a variant in one epoch.
    pub fn n(&self, epoch: u32, variant: usize) -> u64 {
        self.exposures.get(&(epoch, variant)).copied().unwrap_or(0)
    }

    /// Users assigned to a variant over all epochs of the phase.
    pub fn n_all(&self, variant: usize) -> u64 {
        self.exposures
            .iter()
            .filter(|((_, v), _)| *v == variant)
            .map(|(_, n)| *n)
            .sum()
    }

    pub fn sum(&self, epoch: u32, metric: usize, variant: usize) -> f64 {
        self.sums
            .get(&(epoch, metric, variant))
            .copied()
            .unwrap_or(0.0)
    }

    pub fn sum_squares(&self, epoch: u32, metric: usize, variant: usize) -> f64 {
        self.sum_squares
            .get(&(epoch, metric, variant))
            .copied()
            .unwrap_or(0.0)
    }
}

/// One atomic commit of a user's metric fold.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricCommit {
    pub experiment: String,
    pub assignment: Assignment,
    pub expected_version: u64,
    /// (event id, metric) of each observation folded: one dedupe record each.
    pub observed: Vec<(String, String)>,
    pub dedupe_expires_at: i64,
    pub shard: u32,
    pub increments: BTreeMap<String, f64>,
}

/// The storage port of the metric fold.
#[async_trait]
pub trait MetricStore: Send + Sync {
    async fn experiment(&self, key: &str) -> Result<Option<Experiment>, StoreError>;
    async fn user_assignments(&self, user_id: &str) -> Result<Vec<Assignment>, StoreError>;
    async fn assignment(
        &self,
        experiment: &str,
        user_id: &str,
    ) -> Result<Option<Assignment>, StoreError>;
    /// The subset of `(event id, metric)` pairs already folded into `experiment`.
    async fn applied_observations(
        &self,
        experiment: &str,
        observed: &[(String, String)],
        now: DateTime<Utc>,
    ) -> Result<HashSet<(String, String)>, StoreError>;
    async fn commit_metrics(
        &self,
        commit: &MetricCommit,
        now: DateTime<Utc>,
    ) -> Result<CommitOutcome, StoreError>;
}

#[derive(Debug, thiserror::Error)]
pub enum MetricFoldError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("user {user_id} in {experiment}: still conflicting after {MAX_ATTEMPTS} attempts")]
    Contended { experiment: String, user_id: String },
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MetricFoldReport {
    /// Observations that changed (or could have changed) statistics.
    pub applied: usize,
    pub duplicates: usize,
    /// Observations of users not assigned to the experiment (or from before assignment).
    pub not_assigned: usize,
    pub commits: usize,
    pub conflicts: usize,
}

impl MetricFoldReport {
    fn add(&mut self, o: MetricFoldReport) {
        self.applied += o.applied;
        self.duplicates += o.duplicates;
        self.not_assigned += o.not_assigned;
        self.commits += o.commits;
        self.conflicts += o.conflicts;
    }
}

/// Settings of the metric fold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricFoldSettings {
    pub dedupe_ttl_days: u32,
    pub shards: u32,
}

/// Folds one user's observations of one experiment, exactly once.
pub async fn fold_observations(
    store: &dyn MetricStore,
    experiment: &Experiment,
    user_id: &str,
    obs: &[Observation],
    settings: MetricFoldSettings,
    now: DateTime<Utc>,
) -> Result<MetricFoldReport, MetricFoldError> {
    let mut report = MetricFoldReport::default();
    if obs.is_empty() {
        return Ok(report);
    }
    let key = experiment.key();
    for attempt in 0..MAX_ATTEMPTS {
        let Some(current) = store.assignment(key, user_id).await? else {
            report.not_assigned = obs.len();
            return Ok(report);
        };
        // Forced (QA) users see their variant but are not part of the analysis, as in
        // GrowthBook; a stale bucket version belongs to an earlier phase.
        if current.forced || current.bucket_version != experiment.bucket_version {
            report.not_assigned = obs.len();
            return Ok(report);
        }
        let pairs: Vec<(String, String)> = obs
            .iter()
            .map(|o| (o.event_id.clone(), o.metric.clone()))
            .collect();
        let applied = store.applied_observations(key, &pairs, now).await?;
        let mut seen: HashSet<(&str, &str)> = HashSet::new();
        let mut fresh: Vec<&Observation> = Vec::new();
        let mut duplicates = 0;
        let mut early = 0;
        for o in obs {
            let pair = (o.event_id.clone(), o.metric.clone());
            if applied.contains(&pair) || !seen.insert((&o.event_id, &o.metric)) {
                duplicates += 1;
            } else if o.timestamp < counts_from(&current) {
                early += 1;
            } else {
                fresh.push(o);
            }
        }
        let mut pass = MetricFoldReport {
            duplicates,
            not_assigned: early,
            ..Default::default()
        };
        let mut assignment = current;
        let mut conflicted = false;
        for chunk in fresh.chunks(OBSERVATIONS_PER_COMMIT) {
            let fold = fold_user(experiment, &assignment, chunk);
            let observed: Vec<(String, String)> = chunk
                .iter()
                .map(|o| (o.event_id.clone(), o.metric.clone()))
                .collect();
            let commit = MetricCommit {
                experiment: key.to_string(),
                expected_version: assignment.version,
                assignment: fold.assignment.clone(),
                observed,
                dedupe_expires_at: (now + Duration::days(i64::from(settings.dedupe_ttl_days)))
                    .timestamp(),
                shard: shard_of(user_id, settings.shards),
                increments: fold.increments,
            };
            match store.commit_metrics(&commit, now).await? {
                CommitOutcome::Committed => {
                    pass.applied += chunk.len();
                    pass.commits += 1;
                    assignment = fold.assignment;
                }
                CommitOutcome::Conflict => {
                    conflicted = true;
                    break;
                }
            }
        }
        if !conflicted {
            report.add(pass);
            return Ok(report);
        }
        report.conflicts += 1;
        report.commits += pass.commits;
        tokio::time::sleep(std::time::Duration::from_millis(
            10 * u64::from(attempt + 1),
        ))
        .await;
    }
    Err(MetricFoldError::Contended {
        experiment: key.to_string(),
        user_id: user_id.to_string(),
    })
}

/// Folds a batch of ingested events into every experiment their users are assigned to.
pub async fn fold_events(
    store: &dyn MetricStore,
    events: &[Event],
    settings: MetricFoldSettings,
    now: DateTime<Utc>,
) -> Result<MetricFoldReport, MetricFoldError> {
    let mut by_user: BTreeMap<&str, Vec<Event>> = BTreeMap::new();
    for e in events {
        if matches!(e.body, EventBody::Identify(_)) {
            continue;
        }
        by_user
            .entry(e.user_id.as_str())
            .or_default()
            .push(e.clone());
    }
    let mut experiments: HashMap<String, Option<Experiment>> = HashMap::new();
    let mut report = MetricFoldReport::default();
    for (user_id, user_events) in by_user {
        let assignments = store.user_assignments(user_id).await?;
        for a in assignments {
            if !experiments.contains_key(&a.experiment) {
                let e = store.experiment(&a.experiment).await?;
                experiments.insert(a.experiment.clone(), e);
            }
            let Some(Some(experiment)) = experiments.get(&a.experiment) else {
                continue;
            };
            if !experiment.status.collects_metrics()
                || a.forced
                || experiment.bucket_version != a.bucket_version
            {
                continue;
            }
            let obs = observations(experiment, &user_events);
            let r = fold_observations(store, experiment, user_id, &obs, settings, now).await?;
            report.add(r);
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiments::lifecycle;
    use crate::experiments::model::{parse_json, CreateRequest};
    use serde_json::json;

    fn experiment() -> Experiment {
        let body = json!({
            "key": "price", "name": "Price", "test_type": "pricing",
            "variants": [{"key": "a"}, {"key": "b"}],
            "primary_metric": {"name": "paid", "kind": "proportion", "event": "subscription_started"},
            "secondary_metrics": [{"name": "revenue", "kind": "mean", "event": "payment_succeeded"}]
        });
        let req: CreateRequest = parse_json(body.to_string().as_bytes()).unwrap();
        lifecycle::create(req.into_definition().unwrap(), "a", t(0)).0
    }

    fn t(minute: i64) -> DateTime<Utc> {
        "2026-11-24T10:00:00Z".parse::<DateTime<Utc>>().unwrap() + Duration::minutes(minute)
    }

    fn assignment(variant: usize) -> Assignment {
        Assignment {
            experiment: "price".into(),
            user_id: "u1".into(),
            variant,
            variant_key: ["a", "b"][variant].into(),
            bucket_version: 1,
            epoch: 0,
            assigned_at: t(5),
            forced: false,
            hash_value: None,
            totals: BTreeMap::new(),
            version: 1,
        }
    }

    fn obs(id: &str, metric: &str, value: f64, minute: i64) -> Observation {
        Observation {
            event_id: id.into(),
            user_id: "u1".into(),
            timestamp: t(minute),
            metric: metric.into(),
            value,
        }
    }

    #[test]
    fn given_repeat_conversions_when_folded_then_a_proportion_counts_the_user_once() {
        let (o1, o2) = (obs("e1", "paid", 1.0, 6), obs("e2", "paid", 1.0, 7));
        let f = fold_user(&experiment(), &assignment(1), &[&o1, &o2]);
        assert_eq!(f.increments.get("s_0_0_1"), Some(&1.0));
        assert_eq!(f.increments.get("q_0_0_1"), Some(&1.0));
        assert_eq!(f.assignment.totals.get("paid"), Some(&1.0));
        assert_eq!(f.assignment.version, 2);
        // A later fold with another conversion adds nothing.
        let o3 = obs("e3", "paid", 1.0, 8);
        let again = fold_user(&experiment(), &f.assignment, &[&o3]);
        assert!(again.increments.is_empty());
    }

    #[test]
    fn given_two_payments_when_folded_in_two_steps_then_sum_squares_is_of_the_user_total() {
        let (a, b) = (
            obs("e1", "revenue", 300.0, 6),
            obs("e2", "revenue", 200.0, 7),
        );
        let first = fold_user(&experiment(), &assignment(0), &[&a]);
        let second = fold_user(&experiment(), &first.assignment, &[&b]);
        let s = first.increments["s_0_1_0"] + second.increments["s_0_1_0"];
        let q = first.increments["q_0_1_0"] + second.increments["q_0_1_0"];
        assert_eq!(s, 500.0);
        assert_eq!(q, 500.0 * 500.0);
    }

    #[test]
    fn given_an_observation_before_assignment_when_folded_then_it_is_ignored() {
        let early = obs("e0", "paid", 1.0, 1);
        assert!(fold_user(&experiment(), &assignment(0), &[&early])
            .increments
            .is_empty());
    }

    #[test]
    fn given_events_when_mapped_then_each_metric_takes_its_value() {
        let e: Event = serde_json::from_value(json!({
            "event_id": "p1", "user_id": "u1", "timestamp": "2026-11-24T10:10:00Z",
            "type": "payment_succeeded",
            "properties": {"amount_minor": 999, "currency": "USD", "reason": null}
        }))
        .unwrap();
        let o = observations(&experiment(), &[e]);
        assert_eq!(o.len(), 1);
        assert_eq!(o[0].metric, "revenue");
        assert_eq!(o[0].value, 999.0);
    }

    #[test]
    fn stored_attribute_names_parse_back() {
        let mut p = PhaseStats::default();
        p.add_attribute(&attrs::exposures(0, 1), 10.0);
        p.add_attribute(&attrs::exposures(1, 1), 5.0);
        p.add_attribute(&attrs::sum(1, 2, 1), 3.5);
        p.add_attribute(&attrs::sum_squares(1, 2, 1), 7.0);
        p.add_attribute("pk", 1.0);
        p.add_attribute("n_x_1", 1.0);
        assert_eq!(p.n_all(1), 15);
        assert_eq!(p.n(1, 1), 5);
        assert_eq!(p.sum(1, 2, 1), 3.5);
        assert_eq!(p.sum_squares(1, 2, 1), 7.0);
        assert_eq!(p.sum(0, 2, 1), 0.0);
    }
}
