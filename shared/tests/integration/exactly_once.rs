//! 10,000 generated events, folded with a crash half-way through one message, two workers
//! racing on the same messages, and every message delivered again: every aggregate must equal
//! the ground truth computed here independently (0 lost, 0 double-counted).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use async_trait::async_trait;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use shared::error::StoreError;
use shared::events::{
    Event, EventBody, FeatureUsed, Identify, JourneyStage, MetricValue, NudgeKind, NudgeOutcome,
    Payment,
};
use shared::ingest::{
    fold_events, CommitOutcome, FoldCommit, FoldReport, IngestSettings, IngestStore,
};
use shared::profiles::{FoldSettings, Profile};
use shared::store::DynamoStore;

use crate::support::fresh_store;

const USERS: usize = 300;
const EVENTS: usize = 10_000;
const TIERS: [&str; 4] = ["free", "budget", "mid", "professional"];
const FEATURES: [&str; 5] = [
    "budget_tracker",
    "expense_categorizer",
    "savings_goals",
    "investment_analysis",
    "retirement_planner",
];

/// A small deterministic generator (64-bit LCG), so the data set is the same on every run.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn tier_of(user: usize) -> &'static str {
    TIERS[user % TIERS.len()]
}

fn generate(start: DateTime<Utc>) -> Vec<Event> {
    let mut rng = Lcg(42);
    let mut events = Vec::with_capacity(EVENTS);
    // Each user is identified first, so the tier every later event is attributed to is fixed.
    for u in 0..USERS {
        events.push(Event {
            event_id: format!("id-{u}"),
            user_id: format!("user-{u}"),
            timestamp: start,
            body: EventBody::Identify(Identify {
                tier: Some(tier_of(u).to_string()),
                ..Identify::default()
            }),
        });
    }
    for i in events.len()..EVENTS {
        let user = rng.below(USERS);
        let ts = start + Duration::seconds(1 + rng.below(5 * 86_400) as i64);
        let body = match rng.below(10) {
            0..=5 => EventBody::FeatureUsed(FeatureUsed {
                feature: FEATURES[rng.below(FEATURES.len())].to_string(),
                duration_ms: rng.below(600_000) as u64,
            }),
            6 => EventBody::JourneyStage(JourneyStage {
                journey: "onboarding".into(),
                stage: format!("s{}", rng.below(4)),
            }),
            7 => EventBody::Metric(MetricValue {
                name: "revenue".into(),
                value: rng.below(100) as f64,
            }),
            8 => EventBody::NudgeShown(NudgeOutcome {
                nudge_kind: NudgeKind::Prompt,
                nudge_id: format!("n{}", rng.below(5)),
            }),
            _ => EventBody::PaymentSucceeded(Payment {
                amount_minor: 999,
                currency: "USD".into(),
                reason: None,
            }),
        };
        events.push(Event {
            event_id: format!("ev-{i}"),
            user_id: format!("user-{user}"),
            timestamp: ts,
            body,
        });
    }
    // Clients send what one device collected: after the identifies, each user's events
    // arrive together, in time order.
    events[USERS..].sort_by(|a, b| (&a.user_id, a.timestamp).cmp(&(&b.user_id, b.timestamp)));
    events
}

#[derive(Default, Debug, PartialEq)]
struct Truth {
    events_by_type: BTreeMap<(NaiveDate, String), i64>,
    active_users: BTreeMap<(NaiveDate, String), BTreeSet<String>>,
    feature_count: BTreeMap<(NaiveDate, String, String), i64>,
    feature_ms: BTreeMap<(NaiveDate, String, String), i64>,
    per_user_events: HashMap<String, u64>,
}

fn ground_truth(events: &[Event]) -> Truth {
    let mut t = Truth::default();
    for e in events {
        let day = e.timestamp.date_naive();
        let user_no: usize = e.user_id.trim_start_matches("user-").parse().unwrap();
        let tier = tier_of(user_no).to_string();
        *t.events_by_type
            .entry((day, e.type_name().to_string()))
            .or_default() += 1;
        t.active_users
            .entry((day, tier.clone()))
            .or_default()
            .insert(e.user_id.clone());
        if let EventBody::FeatureUsed(f) = &e.body {
            *t.feature_count
                .entry((day, tier.clone(), f.feature.clone()))
                .or_default() += 1;
            *t.feature_ms
                .entry((day, tier, f.feature.clone()))
                .or_default() += f.duration_ms as i64;
        }
        *t.per_user_events.entry(e.user_id.clone()).or_default() += 1;
    }
    t
}

/// The real store, except that its commits stop working after a set number: a worker that
/// crashes half-way through a message.
struct CrashingStore<'a> {
    inner: &'a DynamoStore,
    /// Commits that may still succeed; held across a commit so they happen one at a time.
    commits_left: tokio::sync::Mutex<i64>,
}

#[async_trait]
impl IngestStore for CrashingStore<'_> {
    async fn load_profile(&self, user_id: &str) -> Result<Option<Profile>, StoreError> {
        self.inner.load_profile(user_id).await
    }
    async fn applied_events(
        &self,
        ids: &[String],
        now: DateTime<Utc>,
    ) -> Result<std::collections::HashSet<String>, StoreError> {
        self.inner.applied_events(ids, now).await
    }
    async fn commit_fold(
        &self,
        commit: &FoldCommit,
        now: DateTime<Utc>,
    ) -> Result<CommitOutcome, StoreError> {
        let mut left = self.commits_left.lock().await;
        if *left <= 0 {
            return Err(StoreError::sdk(
                "TransactWriteItems",
                std::io::Error::other("injected crash"),
            ));
        }
        *left -= 1;
        self.inner.commit_fold(commit, now).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_events_fold_exactly_once_through_crashes_races_and_retries() {
    let store = fresh_store().await;
    let settings = IngestSettings {
        fold: FoldSettings::default(),
        dedupe_ttl_days: 35,
        aggregate_shards: 16,
    };
    let start: DateTime<Utc> = "2026-11-10T00:00:00Z".parse().unwrap();
    let now = start + Duration::days(6);
    let events = generate(start);
    assert_eq!(events.len(), EVENTS);
    let truth = ground_truth(&events);
    // Messages as api-events packs them: 100 events each, identifies first.
    let messages: Vec<Vec<Event>> = events.chunks(100).map(<[Event]>::to_vec).collect();

    let mut total = FoldReport::default();
    let mut add = |r: FoldReport| {
        total.applied += r.applied;
        total.duplicates += r.duplicates;
    };
    for (i, message) in messages.iter().enumerate() {
        match i {
            37 => {
                // The worker crashes after the first of the message's commits ...
                let crashing = CrashingStore {
                    inner: &store,
                    commits_left: tokio::sync::Mutex::new(1),
                };
                let err = fold_events(&crashing, message.clone(), &settings, now).await;
                assert!(err.is_err(), "the injected crash fails the message");
                let ids: Vec<String> = message.iter().map(|e| e.event_id.clone()).collect();
                let half = store.applied_events(&ids, now).await.unwrap().len();
                assert!(
                    0 < half && half < ids.len(),
                    "the crash left the message half-applied ({half})"
                );
                add(FoldReport {
                    applied: half,
                    ..FoldReport::default()
                });
                // ... and SQS redelivers it to a healthy worker.
                add(fold_events(&store, message.clone(), &settings, now)
                    .await
                    .unwrap());
            }
            50 | 51 => {
                // Two workers receive the same message at once.
                let (a, b) = tokio::join!(
                    fold_events(&store, message.clone(), &settings, now),
                    fold_events(&store, message.clone(), &settings, now),
                );
                let (a, b) = (a.unwrap(), b.unwrap());
                add(FoldReport {
                    applied: a.applied + b.applied,
                    ..FoldReport::default()
                });
            }
            _ => add(fold_events(&store, message.clone(), &settings, now)
                .await
                .unwrap()),
        }
    }
    // The client retries every request, and SQS redelivers every message once more.
    for message in &messages {
        let r = fold_events(&store, message.clone(), &settings, now)
            .await
            .unwrap();
        assert_eq!(r.applied, 0, "a retried message applies nothing");
        add(r);
    }
    assert_eq!(
        total.applied, EVENTS,
        "each event applied exactly once in all"
    );

    // Every daily aggregate equals the ground truth.
    let days: BTreeSet<NaiveDate> = truth.events_by_type.keys().map(|(d, _)| *d).collect();
    for day in days {
        let stats = store.daily_stats(day).await.unwrap();
        for ((d, t), n) in &truth.events_by_type {
            if *d == day {
                assert_eq!(
                    stats.events_by_type.get(t),
                    Some(n),
                    "{day} events of type {t}"
                );
            }
        }
        assert_eq!(
            stats.events_by_type.values().sum::<i64>(),
            truth
                .events_by_type
                .iter()
                .filter(|((d, _), _)| *d == day)
                .map(|(_, n)| n)
                .sum::<i64>()
        );
        for ((d, tier), users) in &truth.active_users {
            if *d == day {
                assert_eq!(
                    stats.active_users_by_tier.get(tier).copied(),
                    Some(users.len() as i64),
                    "{day} active users of tier {tier}"
                );
            }
        }
        for ((d, tier, feature), n) in &truth.feature_count {
            if *d == day {
                let got = &stats.feature_usage_by_tier[tier][feature];
                assert_eq!(got.count, *n, "{day} {tier} {feature} count");
                let ms = truth.feature_ms[&(*d, tier.clone(), feature.clone())];
                assert_eq!(
                    got.total_seconds,
                    ms as f64 / 1000.0,
                    "{day} {tier} {feature} time"
                );
            }
        }
    }
    // Every profile counted each of its events once.
    for (user, n) in &truth.per_user_events {
        let p = store
            .get_profile(user)
            .await
            .unwrap_or_else(|e| panic!("{user}: {e:?}"))
            .unwrap_or_else(|| panic!("{user}: no profile"));
        assert_eq!(p.event_count, *n, "{user} event count");
        assert_eq!(
            p.events_by_type.values().sum::<u64>(),
            *n,
            "{user} events by type"
        );
    }
}
