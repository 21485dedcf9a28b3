//! Experiments against the emulator: lifecycle storage with audit, sticky assignment with one
//! exposure per user, exactly-once metric folding under redelivery and races, and the
//! scheduled check concluding onto a real (emulated) SQS outbox.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Map, Value};

use shared::events::Event;
use shared::experiments::assign::{decide, Decision};
use shared::experiments::checks::Verdict;
use shared::experiments::fold::{
    fold_events, fold_observations, MetricFoldSettings, MetricStore, Observation,
};
use shared::experiments::lifecycle;
use shared::experiments::model::{parse_json, CreateRequest, Experiment, Status, UpdateRequest};
use shared::experiments::runner::{run_check, CheckRun};
use shared::ingest::CommitOutcome;
use shared::store::{Created, DynamoStore};

use crate::support::{fresh_store, outbox};

const SETTINGS: MetricFoldSettings = MetricFoldSettings {
    dedupe_ttl_days: 35,
    shards: 4,
};

fn t0() -> DateTime<Utc> {
    "2026-11-24T08:00:00Z".parse().unwrap()
}

fn definition(key: &str, extra: Value) -> shared::experiments::model::Definition {
    let mut body = json!({
        "key": key, "name": "Upgrade button", "test_type": "cta_design",
        "variants": [{"key": "control"}, {"key": "treatment"}],
        "primary_metric": {"name": "upgraded", "kind": "proportion", "event": "subscription_started"},
        "secondary_metrics": [{"name": "revenue", "kind": "mean", "event": "payment_succeeded"}],
        "min_sample_per_variant": 50
    });
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        body[k] = v;
    }
    let req: CreateRequest = parse_json(body.to_string().as_bytes()).unwrap();
    req.into_definition().unwrap()
}

/// Creates and starts an experiment.
async fn running(store: &DynamoStore, key: &str, extra: Value) -> Experiment {
    let (draft, audit) = lifecycle::create(definition(key, extra), "admin-1", t0());
    assert_eq!(
        store.create_experiment(&draft, &audit).await.unwrap(),
        Created::Created
    );
    let (started, audit) =
        lifecycle::transition(&draft, Status::Running, None, "admin-1", t0()).unwrap();
    assert_eq!(
        store
            .save_experiment(&started, draft.version, Some(&audit))
            .await
            .unwrap(),
        CommitOutcome::Committed
    );
    started
}

/// Assigns a user the way the API does; returns the variant index.
async fn assign(store: &DynamoStore, e: &Experiment, user: &str) -> usize {
    let existing = store.assignment(e.key(), user).await.unwrap();
    match decide(
        e,
        user,
        &Map::new(),
        existing.as_ref(),
        t0() + Duration::minutes(1),
    ) {
        Decision::Sticky(a) | Decision::Forced(a) => a.variant,
        Decision::New(a) => match store.create_assignment(&a, SETTINGS.shards).await.unwrap() {
            Created::Created => a.variant,
            Created::Exists => {
                store
                    .assignment(e.key(), user)
                    .await
                    .unwrap()
                    .unwrap()
                    .variant
            }
        },
        Decision::NotInExperiment(r) => panic!("{user} not in experiment: {r:?}"),
    }
}

#[tokio::test]
async fn a_key_is_created_once_and_every_change_is_audited() {
    let store = fresh_store().await;
    let e = running(&store, "audited", json!({})).await;
    let (dup, audit) = lifecycle::create(definition("audited", json!({})), "admin-2", t0());
    assert_eq!(
        store.create_experiment(&dup, &audit).await.unwrap(),
        Created::Exists
    );
    // A stale writer loses.
    let req: UpdateRequest = parse_json(br#"{"weights": [0.3, 0.7]}"#).unwrap();
    let (next, audit) = lifecycle::update(&e, &req, "admin-2", t0()).unwrap();
    assert_eq!(
        store
            .save_experiment(&next, e.version, Some(&audit))
            .await
            .unwrap(),
        CommitOutcome::Committed
    );
    assert_eq!(
        store
            .save_experiment(&next, e.version, Some(&audit))
            .await
            .unwrap(),
        CommitOutcome::Conflict
    );
    let records = store.experiment_audit("audited").await.unwrap();
    let actions: Vec<&str> = records.iter().map(|r| r.action.as_str()).collect();
    assert_eq!(actions, ["created", "status_changed", "updated"]);
    assert_eq!(records[2].actor, "admin-2");
    let w = records[2]
        .changes
        .iter()
        .find(|c| c.field == "weights")
        .unwrap();
    assert_eq!(w.before, json!([0.5, 0.5]));
    assert_eq!(w.after, json!([0.3, 0.7]));
    let listed = store.list_experiments(&[Status::Running]).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(store
        .list_experiments(&[Status::Draft])
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn assignments_are_sticky_across_a_weight_change_until_the_bucket_version_is_bumped() {
    let store = fresh_store().await;
    let e = running(&store, "sticky", json!({})).await;
    let users: Vec<String> = (0..200).map(|i| format!("user-{i}")).collect();
    let mut first = BTreeMap::new();
    for u in &users {
        first.insert(u.clone(), assign(&store, &e, u).await);
    }
    // Everyone to treatment, no bump: existing users keep their variant.
    let req: UpdateRequest = parse_json(br#"{"weights": [0.0, 1.0]}"#).unwrap();
    let (shifted, audit) = lifecycle::update(&e, &req, "a", t0()).unwrap();
    store
        .save_experiment(&shifted, e.version, Some(&audit))
        .await
        .unwrap();
    for u in &users {
        assert_eq!(assign(&store, &shifted, u).await, first[u], "{u} moved");
    }
    // A new user follows the new weights.
    assert_eq!(assign(&store, &shifted, "newcomer").await, 1);
    let stats = store.phase_stats("sticky", 1).await.unwrap();
    assert_eq!(
        stats.n_all(0) + stats.n_all(1),
        201,
        "each user exposed exactly once"
    );
    // Bump: everyone is re-bucketed with the current weights into a new phase.
    let bump: UpdateRequest = parse_json(br#"{"bump_bucket_version": true}"#).unwrap();
    let (bumped, audit) = lifecycle::update(&shifted, &bump, "a", t0()).unwrap();
    store
        .save_experiment(&bumped, shifted.version, Some(&audit))
        .await
        .unwrap();
    for u in users.iter().take(20) {
        assert_eq!(assign(&store, &bumped, u).await, 1);
    }
    let phase2 = store.phase_stats("sticky", 2).await.unwrap();
    assert_eq!((phase2.n_all(0), phase2.n_all(1)), (0, 20));
}

#[tokio::test]
async fn concurrent_first_assignments_expose_a_user_once() {
    let store = fresh_store().await;
    let e = running(&store, "race", json!({})).await;
    let calls = (0..12).map(|_| assign(&store, &e, "racer"));
    let variants = futures::future::join_all(calls).await;
    assert!(variants.windows(2).all(|w| w[0] == w[1]));
    let stats = store.phase_stats("race", 1).await.unwrap();
    assert_eq!(stats.n_all(0) + stats.n_all(1), 1);
}

fn conversion(id: &str, user: &str, minute: i64, kind: &str, amount: Option<i64>) -> Event {
    let properties = match kind {
        "subscription_started" => json!({"plan": "pro", "tier": "pro", "amount_minor": amount,
            "currency": "USD", "interval": "month", "trial_ends_at": null}),
        _ => json!({"amount_minor": amount.unwrap_or(0), "currency": "USD", "reason": null}),
    };
    serde_json::from_value(json!({
        "event_id": id, "user_id": user, "type": kind,
        "timestamp": (t0() + Duration::minutes(minute)).to_rfc3339(),
        "properties": properties,
    }))
    .unwrap()
}

#[tokio::test]
async fn metric_events_fold_exactly_once_under_redelivery_and_races() {
    let store = fresh_store().await;
    let e = running(&store, "folded", json!({})).await;
    let mut variant = BTreeMap::new();
    for i in 0..60 {
        let u = format!("u{i}");
        variant.insert(u.clone(), assign(&store, &e, &u).await);
    }
    // Users 0..30 subscribe (some twice) and pay 1 to 3 times.
    let mut events = Vec::new();
    let mut truth_paid: BTreeMap<String, f64> = BTreeMap::new();
    for i in 0..30 {
        let u = format!("u{i}");
        events.push(conversion(
            &format!("s{i}"),
            &u,
            10,
            "subscription_started",
            Some(999),
        ));
        if i % 3 == 0 {
            events.push(conversion(
                &format!("s{i}b"),
                &u,
                11,
                "subscription_started",
                Some(999),
            ));
        }
        for k in 0..(1 + i % 3) {
            let amount = 500 + 100 * k as i64;
            events.push(conversion(
                &format!("p{i}-{k}"),
                &u,
                12 + k as i64,
                "payment_succeeded",
                Some(amount),
            ));
            *truth_paid.entry(u.clone()).or_default() += amount as f64;
        }
    }
    // An event before assignment does not count.
    events.push(conversion(
        "early",
        "u40",
        -30,
        "subscription_started",
        Some(999),
    ));
    let now = t0() + Duration::hours(1);
    // Two workers race on the same batch, then the batch is redelivered twice.
    let (a, b) = futures::join!(
        fold_events(&store, &events, SETTINGS, now),
        fold_events(&store, &events, SETTINGS, now)
    );
    a.unwrap();
    b.unwrap();
    for _ in 0..2 {
        let again = fold_events(&store, &events, SETTINGS, now).await.unwrap();
        assert_eq!(again.applied, 0);
    }
    let stats = store.phase_stats("folded", 1).await.unwrap();
    for v in 0..2 {
        let users: Vec<&String> = variant
            .iter()
            .filter(|(_, x)| **x == v)
            .map(|(u, _)| u)
            .collect();
        let converted = users
            .iter()
            .filter(|u| u[1..].parse::<usize>().unwrap() < 30)
            .count() as f64;
        assert_eq!(stats.n(0, v), users.len() as u64);
        assert_eq!(
            stats.sum(0, 0, v),
            converted,
            "proportion counts each user once"
        );
        assert_eq!(stats.sum_squares(0, 0, v), converted);
        let paid: Vec<f64> = users
            .iter()
            .filter_map(|u| truth_paid.get(*u).copied())
            .collect();
        assert_eq!(stats.sum(0, 1, v), paid.iter().sum::<f64>());
        assert_eq!(
            stats.sum_squares(0, 1, v),
            paid.iter().map(|x| x * x).sum::<f64>()
        );
    }
}

#[tokio::test]
async fn recorded_results_of_unassigned_users_are_not_counted() {
    let store = fresh_store().await;
    let e = running(&store, "direct", json!({})).await;
    assign(&store, &e, "member").await;
    let obs = |id: &str, user: &str| Observation {
        event_id: id.into(),
        user_id: user.into(),
        timestamp: t0() + Duration::minutes(5),
        metric: "revenue".into(),
        value: 12.5,
    };
    let now = t0() + Duration::minutes(10);
    let r = fold_observations(
        &store,
        &e,
        "stranger",
        &[obs("x1", "stranger")],
        SETTINGS,
        now,
    )
    .await
    .unwrap();
    assert_eq!((r.applied, r.not_assigned), (0, 1));
    let batch = [
        obs("m1", "member"),
        obs("m1", "member"),
        obs("m2", "member"),
    ];
    let r = fold_observations(&store, &e, "member", &batch, SETTINGS, now)
        .await
        .unwrap();
    assert_eq!((r.applied, r.duplicates), (2, 1));
    let stats = store.phase_stats("direct", 1).await.unwrap();
    let v = store
        .assignment("direct", "member")
        .await
        .unwrap()
        .unwrap()
        .variant;
    assert_eq!(stats.sum(0, 1, v), 25.0);
    assert_eq!(stats.sum_squares(0, 1, v), 625.0);
}

async fn received(client: &aws_sdk_sqs::Client, url: &str) -> Vec<Value> {
    let out = client
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .send()
        .await
        .unwrap();
    out.messages
        .unwrap_or_default()
        .iter()
        .map(|m| serde_json::from_str(m.body().unwrap()).unwrap())
        .collect()
}

#[tokio::test]
async fn a_scheduled_check_waits_for_the_sample_then_concludes_once() {
    let store = fresh_store().await;
    let (producer, sqs, url) = outbox().await;
    let e = running(
        &store,
        "checked",
        json!({"auto_stop": true, "min_sample_per_variant": 150}),
    )
    .await;
    let slot1 = t0() + Duration::hours(1);
    // No data yet: it keeps running and says why.
    let run = run_check(&store, &producer, &url, "checked", slot1, "j1", slot1)
        .await
        .unwrap();
    match run {
        CheckRun::Checked {
            verdict: Verdict::Continue { reasons },
            completed: false,
            ..
        } => {
            assert!(
                reasons
                    .iter()
                    .any(|r| r.contains("of the 150 users required")),
                "{reasons:?}"
            )
        }
        other => panic!("{other:?}"),
    }
    // The same slot again is a no-op.
    assert!(matches!(
        run_check(&store, &producer, &url, "checked", slot1, "j1", slot1)
            .await
            .unwrap(),
        CheckRun::Skipped(_)
    ));
    // 400 users; treatment converts at 60 %, control at 20 %.
    let mut events = Vec::new();
    for i in 0..400 {
        let u = format!("c{i}");
        let v = assign(&store, &e, &u).await;
        let converts = if v == 1 { i % 5 < 3 } else { i % 5 == 0 };
        if converts {
            events.push(conversion(
                &format!("sub-{i}"),
                &u,
                20,
                "subscription_started",
                Some(999),
            ));
        }
    }
    fold_events(&store, &events, SETTINGS, slot1).await.unwrap();
    let slot2 = slot1 + Duration::hours(1);
    let run = run_check(&store, &producer, &url, "checked", slot2, "j2", slot2)
        .await
        .unwrap();
    match &run {
        CheckRun::Checked {
            verdict: Verdict::Conclude { winner, .. },
            completed,
            notice_sent,
        } => {
            assert_eq!(winner.as_deref(), Some("treatment"));
            assert!(*completed && *notice_sent);
        }
        other => panic!("{other:?}"),
    }
    let stored = store.get_experiment("checked").await.unwrap().unwrap();
    assert_eq!(stored.status, Status::Completed);
    assert!(!stored.notice_pending);
    assert_eq!(stored.outcome.unwrap().winner.as_deref(), Some("treatment"));
    let messages = received(&sqs, &url).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["type"], "experiment_concluded");
    assert_eq!(messages[0]["winner"], "treatment");
    // A redelivered job finds it completed and sends nothing more.
    let again = run_check(&store, &producer, &url, "checked", slot2, "j2", slot2)
        .await
        .unwrap();
    assert!(matches!(again, CheckRun::Skipped(_)));
    assert!(received(&sqs, &url).await.is_empty());
    let history = store.experiment_history("checked", 10).await.unwrap();
    assert_eq!(history.len(), 2);
    assert!(history[0].slot < history[1].slot, "oldest first");
    let latest = store.experiment_history("checked", 1).await.unwrap();
    assert_eq!(latest[0].slot, history[1].slot);
    let audit = store.experiment_audit("checked").await.unwrap();
    assert_eq!(audit.last().unwrap().action, "concluded");
}

#[tokio::test]
async fn results_after_a_weight_change_compare_the_users_of_the_current_epoch() {
    let store = fresh_store().await;
    let e = running(&store, "epochs", json!({})).await;
    for i in 0..40 {
        assign(&store, &e, &format!("early-{i}")).await;
    }
    let req: UpdateRequest = parse_json(br#"{"weights": [0.25, 0.75]}"#).unwrap();
    let (shifted, audit) = lifecycle::update(&e, &req, "a", t0()).unwrap();
    store
        .save_experiment(&shifted, e.version, Some(&audit))
        .await
        .unwrap();
    let mut later = [0u64; 2];
    let mut events = Vec::new();
    for i in 0..60 {
        let u = format!("late-{i}");
        let v = assign(&store, &shifted, &u).await;
        later[v] += 1;
        events.push(conversion(
            &format!("late-sub-{i}"),
            &u,
            30,
            "subscription_started",
            None,
        ));
    }
    // Early users convert too; they stay in their variants but outside the comparison.
    for i in 0..40 {
        let u = format!("early-{i}");
        events.push(conversion(
            &format!("early-sub-{i}"),
            &u,
            30,
            "subscription_started",
            None,
        ));
    }
    fold_events(&store, &events, SETTINGS, t0() + Duration::hours(1))
        .await
        .unwrap();
    let stats = store.phase_stats("epochs", 1).await.unwrap();
    let r = shared::experiments::analysis::compute(&shifted, &stats, t0() + Duration::hours(1))
        .unwrap();
    assert_eq!(r.epoch, 1);
    assert_eq!(r.srm.observed, later.to_vec());
    assert_eq!(r.srm.expected, vec![15.0, 45.0]);
    let upgraded = &r.metrics[0];
    assert_eq!(upgraded.variants[0].sum + upgraded.variants[1].sum, 60.0);
    assert_eq!(r.epochs[0].n.iter().sum::<u64>(), 40);
}

#[tokio::test]
async fn one_event_may_feed_several_metrics_across_both_paths_once_each() {
    let store = fresh_store().await;
    let e = running(&store, "paths", json!({})).await;
    assign(&store, &e, "buyer").await;
    let now = t0() + Duration::hours(1);
    let sub = conversion("order-7", "buyer", 10, "subscription_started", Some(1200));
    fold_events(&store, std::slice::from_ref(&sub), SETTINGS, now)
        .await
        .unwrap();
    // The same order id recorded directly as revenue is another metric: it counts.
    let revenue = Observation {
        event_id: "order-7".into(),
        user_id: "buyer".into(),
        timestamp: t0() + Duration::minutes(10),
        metric: "revenue".into(),
        value: 1200.0,
    };
    let r = fold_observations(
        &store,
        &e,
        "buyer",
        std::slice::from_ref(&revenue),
        SETTINGS,
        now,
    )
    .await
    .unwrap();
    assert_eq!(r.applied, 1);
    // Either path again counts nothing.
    let r = fold_observations(&store, &e, "buyer", &[revenue], SETTINGS, now)
        .await
        .unwrap();
    assert_eq!((r.applied, r.duplicates), (0, 1));
    assert_eq!(
        fold_events(&store, &[sub], SETTINGS, now)
            .await
            .unwrap()
            .applied,
        0
    );
    let v = store
        .assignment("paths", "buyer")
        .await
        .unwrap()
        .unwrap()
        .variant;
    let stats = store.phase_stats("paths", 1).await.unwrap();
    assert_eq!((stats.sum(0, 0, v), stats.sum(0, 1, v)), (1.0, 1200.0));
}

#[tokio::test]
async fn a_stale_fold_cannot_overwrite_a_re_bucketed_assignment() {
    let store = fresh_store().await;
    let e = running(&store, "stale", json!({})).await;
    assign(&store, &e, "u").await;
    let old = store.assignment("stale", "u").await.unwrap().unwrap();
    let bump: UpdateRequest = parse_json(br#"{"bump_bucket_version": true}"#).unwrap();
    let (bumped, audit) = lifecycle::update(&e, &bump, "a", t0()).unwrap();
    store
        .save_experiment(&bumped, e.version, Some(&audit))
        .await
        .unwrap();
    assign(&store, &bumped, "u").await;
    // A worker that read the old assignment (version 1, like the new one) commits late.
    let mut stale = old.clone();
    stale.version = 2;
    let commit = shared::experiments::fold::MetricCommit {
        experiment: "stale".into(),
        assignment: stale,
        expected_version: 1,
        observed: vec![("late".into(), "upgraded".into())],
        dedupe_expires_at: (t0() + Duration::days(35)).timestamp(),
        shard: 0,
        increments: BTreeMap::from([("s_0_0_0".to_string(), 1.0)]),
    };
    assert_eq!(
        store.commit_metrics(&commit, t0()).await.unwrap(),
        CommitOutcome::Conflict
    );
    let current = store.assignment("stale", "u").await.unwrap().unwrap();
    assert_eq!(current.bucket_version, 2);
}

#[tokio::test]
async fn a_decision_by_hand_is_announced_by_the_next_check_job_once() {
    let store = fresh_store().await;
    let (producer, sqs, url) = outbox().await;
    let e = running(&store, "by-hand", json!({})).await;
    let (done, audit) =
        lifecycle::transition(&e, Status::Completed, Some("treatment"), "admin-9", t0()).unwrap();
    assert!(done.notice_pending);
    store
        .save_experiment(&done, e.version, Some(&audit))
        .await
        .unwrap();
    assert_eq!(
        store.pending_notices().await.unwrap(),
        vec!["by-hand".to_string()]
    );
    let slot = t0() + Duration::minutes(5);
    let run = run_check(&store, &producer, &url, "by-hand", slot, "j", slot)
        .await
        .unwrap();
    assert!(matches!(run, CheckRun::Skipped(_)), "{run:?}");
    let messages = received(&sqs, &url).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["winner"], "treatment");
    assert_eq!(messages[0]["completed"], true);
    assert!(store.pending_notices().await.unwrap().is_empty());
    // Another job finds nothing owed.
    run_check(&store, &producer, &url, "by-hand", slot, "j", slot)
        .await
        .unwrap();
    assert!(received(&sqs, &url).await.is_empty());
}
