//! Nudges against the emulators: racing dispatches send each due reminder once onto a real
//! (emulated) SQS outbox, a send left unconfirmed by a crash goes out again with the same
//! message id, a conversion cancels what is planned, and a redelivered nudge event counts
//! once.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};

use shared::events::{Event, EventBody, NudgeKind, NudgeOutcome};
use shared::ingest::CommitOutcome;
use shared::nudges::service::{Nudges, TrialSpec, TrialState};
use shared::nudges::NudgeSettings;
use shared::queue::SqsProducer;
use shared::store::{keys, nkeys, DocWrite, DynamoStore, Expect};

use crate::support::{fresh_store, outbox};

/// Every message on the queue (read until empty), as (SQS message id, body).
async fn drain(client: &aws_sdk_sqs::Client, url: &str) -> Vec<(String, Value)> {
    let mut all = Vec::new();
    loop {
        let out = client
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .send()
            .await
            .unwrap();
        let messages = out.messages.unwrap_or_default();
        if messages.is_empty() {
            return all;
        }
        for m in messages {
            all.push((
                m.message_id().unwrap().to_string(),
                serde_json::from_str(m.body().unwrap()).unwrap(),
            ));
            client
                .delete_message()
                .queue_url(url)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
}

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

/// The trial most tests plan: 2026-11-10 12:00 to 2026-11-24 15:00 UTC, mid_monthly.
fn trial_spec() -> TrialSpec {
    TrialSpec {
        started_at: t("2026-11-10T12:00:00Z"),
        ends_at: t("2026-11-24T15:00:00Z"),
        plan: "mid_monthly".into(),
        tier: "mid".into(),
    }
}

struct Fixture {
    store: DynamoStore,
    producer: SqsProducer,
    sqs: aws_sdk_sqs::Client,
    url: String,
    settings: NudgeSettings,
}

impl Fixture {
    async fn new() -> Fixture {
        let (producer, sqs, url) = outbox().await;
        Fixture {
            store: fresh_store().await,
            producer,
            sqs,
            url,
            settings: NudgeSettings::default(),
        }
    }

    fn nudges(&self) -> Nudges<'_> {
        Nudges {
            store: &self.store,
            sink: &self.producer,
            outbox_url: &self.url,
            settings: &self.settings,
            shards: 4,
            dedupe_ttl_days: 35,
        }
    }

    /// A trial from 2026-11-10 12:00 to 2026-11-24 15:00 UTC (no timezone: UTC, quiet
    /// hours 22:00-08:00), planned at its start.
    async fn trial(&self, user: &str) {
        let view = self
            .nudges()
            .plan_trial(user, trial_spec(), t("2026-11-10T12:00:00Z"))
            .await
            .unwrap();
        assert_eq!(view.reminders.len(), 5, "{:?}", view.reminders);
    }
}

#[tokio::test]
async fn racing_dispatches_send_each_due_reminder_exactly_once() {
    let f = Fixture::new().await;
    f.trial("racer").await;
    // The 24 h reminder (2026-11-23 15:00) is due; eight dispatches race for it.
    let now = t("2026-11-23T15:00:30Z");
    let nudges = f.nudges();
    let jobs: Vec<String> = (0..8).map(|i| format!("job-{i}")).collect();
    let runs =
        futures::future::join_all(jobs.iter().map(|j| nudges.dispatch_user("racer", now, j))).await;
    let sent: usize = runs.iter().map(|r| r.as_ref().unwrap().sent.len()).sum();
    assert_eq!(sent, 1, "{runs:?}");
    let messages = drain(&f.sqs, &f.url).await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    let m = &messages[0].1;
    assert_eq!(m["type"], "trial_reminder");
    assert_eq!(
        m["message_id"],
        "reminder:racer:20261110T120000Z:trial_expiry:24h"
    );
    assert_eq!(m["sent_at"], "2026-11-23T15:00:30Z");

    // The due-time index no longer lists it. At 09:00 the 12 h reminder (03:00, moved out
    // of quiet hours to 08:00) goes; the 6 h one (09:00) would wait for the cooldown until
    // 15:00, the trial's end, so it is skipped.
    assert!(f.nudges().due_users(now).await.unwrap().is_empty());
    let later = f
        .nudges()
        .dispatch_user("racer", t("2026-11-24T09:00:00Z"), "job-x")
        .await
        .unwrap();
    assert_eq!(
        later.sent,
        vec!["20261110T120000Z:trial_expiry:12h".to_string()]
    );
    assert_eq!(
        later.skipped,
        vec!["20261110T120000Z:trial_expiry:6h".to_string()]
    );
    let messages = drain(&f.sqs, &f.url).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].1["due_at"], "2026-11-24T08:00:00Z");
}

#[tokio::test]
async fn a_send_left_unconfirmed_by_a_crash_goes_out_again_with_the_same_message_id() {
    let f = Fixture::new().await;
    f.trial("crashy").await;
    // A dispatch claimed the 24 h reminder two minutes ago and died before sending it.
    let pk = keys::user("crashy");
    let sk = nkeys::reminder("20261110T120000Z:trial_expiry:24h");
    let stored = f.store.get_doc::<Value>(&pk, &sk).await.unwrap().unwrap();
    let mut doc = stored.value.clone();
    doc["status"] = json!("sent");
    doc["sent_at"] = json!("2026-11-23T15:00:00Z");
    doc["message"] = json!("Your mid_monthly trial ends in 24 hours.");
    doc["claim"] = json!({"job_id": "job-dead", "claimed_at": (Utc::now() - Duration::minutes(2)).to_rfc3339()});
    let write = DocWrite::put(
        pk.clone(),
        sk.clone(),
        &doc,
        stored.version + 1,
        Expect::Version(stored.version),
    )
    .unwrap()
    .due_at(t("2026-11-23T15:00:00Z"), "crashy");
    assert_eq!(
        f.store.write_docs(vec![write]).await.unwrap(),
        CommitOutcome::Committed
    );

    let now = t("2026-11-23T15:01:00Z");
    assert_eq!(
        f.nudges().due_users(now).await.unwrap(),
        vec!["crashy".to_string()]
    );
    let report = f
        .nudges()
        .dispatch_user("crashy", now, "job-next")
        .await
        .unwrap();
    assert_eq!(
        report.resent,
        vec!["20261110T120000Z:trial_expiry:24h".to_string()]
    );
    let messages = drain(&f.sqs, &f.url).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(
        messages[0].1["message_id"],
        "reminder:crashy:20261110T120000Z:trial_expiry:24h"
    );
    // Confirmed now: a second dispatch sends nothing more.
    let again = f
        .nudges()
        .dispatch_user("crashy", now, "job-again")
        .await
        .unwrap();
    assert!(
        again.resent.is_empty() && again.sent.is_empty(),
        "{again:?}"
    );
    assert!(drain(&f.sqs, &f.url).await.is_empty());
}

#[tokio::test]
async fn a_conversion_cancels_every_planned_reminder_and_nothing_is_sent_after() {
    let f = Fixture::new().await;
    f.trial("convert").await;
    let cancelled = f
        .nudges()
        .end_trials(
            "convert",
            TrialState::Converted,
            "converted",
            t("2026-11-20T10:00:00Z"),
        )
        .await
        .unwrap();
    assert_eq!(cancelled, 5);
    // Idempotent: a redelivered conversion finds nothing left to cancel.
    let again = f
        .nudges()
        .end_trials(
            "convert",
            TrialState::Converted,
            "converted",
            t("2026-11-20T10:00:00Z"),
        )
        .await
        .unwrap();
    assert_eq!(again, 0);
    let trials = f.nudges().user_trials("convert").await.unwrap();
    assert_eq!(trials[0].trial.state, TrialState::Converted);
    let reasons: BTreeMap<String, (String, Option<String>)> = trials[0]
        .reminders
        .iter()
        .map(|r| {
            (
                r.reminder_id.clone(),
                (r.status.as_str().to_string(), r.reason.clone()),
            )
        })
        .collect();
    assert!(reasons
        .values()
        .all(|(s, r)| s == "cancelled" && r.as_deref() == Some("converted")));
    let now = t("2026-11-24T14:30:00Z");
    assert!(f.nudges().due_users(now).await.unwrap().is_empty());
    let report = f.nudges().dispatch_user("convert", now, "j").await.unwrap();
    assert!(report.sent.is_empty());
    assert!(drain(&f.sqs, &f.url).await.is_empty());
}

#[tokio::test]
async fn a_redelivered_social_proof_impression_counts_once() {
    let f = Fixture::new().await;
    let proof = f
        .nudges()
        .create_proof(
            &json!({"proof_type": "testimonial", "title": "Saved $2,000", "content": "It works.",
                    "author": "Sarah M.", "approval": "approved", "tags": ["savings_success"]}),
            "admin-1",
            t("2026-11-20T10:00:00Z"),
        )
        .await
        .unwrap();
    let shown = Event {
        event_id: "ev-shown-1".into(),
        user_id: "viewer".into(),
        timestamp: t("2026-11-20T11:00:00Z"),
        body: EventBody::NudgeShown(NudgeOutcome {
            nudge_kind: NudgeKind::SocialProof,
            nudge_id: proof.proof_id.clone(),
        }),
    };
    let converted = Event {
        event_id: "ev-conv-1".into(),
        body: EventBody::NudgeConverted(NudgeOutcome {
            nudge_kind: NudgeKind::SocialProof,
            nudge_id: proof.proof_id.clone(),
        }),
        ..shown.clone()
    };
    let now = t("2026-11-20T11:00:05Z");
    let batch = vec![shown.clone(), converted];
    let first = f.nudges().apply_events(&batch, 14, now).await.unwrap();
    assert_eq!(first.outcomes_applied, 2);
    let redelivered = f.nudges().apply_events(&batch, 14, now).await.unwrap();
    assert_eq!(redelivered.outcomes_applied, 0);
    let p = f.nudges().get_proof(&proof.proof_id).await.unwrap();
    assert_eq!((p.impressions, p.conversions), (1, 1));
    // An admin edit keeps the counters.
    let edited = f
        .nudges()
        .update_proof(
            &proof.proof_id,
            &json!({"title": "Saved $2,500"}),
            "admin-1",
            now,
        )
        .await
        .unwrap();
    assert_eq!((edited.impressions, edited.conversions), (1, 1));
    let p = f.nudges().get_proof(&proof.proof_id).await.unwrap();
    assert_eq!(p.title, "Saved $2,500");
    assert_eq!((p.impressions, p.conversions), (1, 1));
    // Each admin change is audited with who did it and the proof before and after.
    let audit = f.nudges().proof_audit(&proof.proof_id).await.unwrap();
    let actions: Vec<(&str, u64, &str)> = audit
        .iter()
        .map(|a| (a.action.as_str(), a.version, a.actor.as_str()))
        .collect();
    assert_eq!(
        actions,
        // The two counted outcomes moved the version too (2, 3): the edit made 4.
        [("created", 1, "admin-1"), ("updated", 4, "admin-1")]
    );
    assert_eq!(audit[1].before.as_ref().unwrap().title, "Saved $2,000");
    assert_eq!(audit[1].after.as_ref().unwrap().title, "Saved $2,500");
    f.nudges()
        .delete_proof(&proof.proof_id, "admin-2", now)
        .await
        .unwrap();
    let audit = f.nudges().proof_audit(&proof.proof_id).await.unwrap();
    assert_eq!(audit.last().unwrap().action, "deleted");
    assert_eq!(audit.last().unwrap().actor, "admin-2");
}

/// Starts an experiment of `test_type` whose treatment variant carries `config`; `user` is
/// bucketed into the treatment by a weight of 1 on it.
async fn running_experiment(store: &DynamoStore, key: &str, test_type: &str, config: Value) {
    use shared::experiments::lifecycle;
    use shared::experiments::model::{parse_json, CreateRequest, Status};
    let body = json!({
        "key": key, "name": key, "test_type": test_type,
        "variants": [{"key": "control"}, {"key": "treatment", "config": config}],
        "weights": [0.0, 1.0],
        "primary_metric": {"name": "upgraded", "kind": "proportion", "event": "subscription_started"}
    });
    let req: CreateRequest = parse_json(body.to_string().as_bytes()).unwrap();
    let at = t("2026-11-01T00:00:00Z");
    let (draft, audit) = lifecycle::create(req.into_definition().unwrap(), "admin-1", at);
    store.create_experiment(&draft, &audit).await.unwrap();
    let (started, audit) =
        lifecycle::transition(&draft, Status::Running, None, "admin-1", at).unwrap();
    store
        .save_experiment(&started, draft.version, Some(&audit))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_timing_and_a_messaging_variant_shape_the_users_reminders() {
    let f = Fixture::new().await;
    running_experiment(
        &f.store,
        "reminder-timing",
        "timing",
        json!({"offsets_hours": [48, 6]}),
    )
    .await;
    running_experiment(
        &f.store,
        "reminder-copy",
        "messaging",
        json!({"templates": {"trial_expiry": "Only {hours_left}h left on {plan}!"}}),
    )
    .await;
    let view = f
        .nudges()
        .plan_trial("shaped", trial_spec(), t("2026-11-10T12:00:00Z"))
        .await
        .unwrap();
    let ids: Vec<&str> = view
        .reminders
        .iter()
        .map(|r| r.reminder_id.as_str())
        .collect();
    assert_eq!(
        ids,
        [
            "20261110T120000Z:trial_expiry:48h",
            "20261110T120000Z:trial_expiry:6h"
        ]
    );
    let tag = view.trial.timing.as_ref().unwrap();
    assert_eq!(
        (tag.key.as_str(), tag.variant.as_str()),
        ("reminder-timing", "treatment")
    );
    assert_eq!(view.trial.messaging.as_ref().unwrap().key, "reminder-copy");
    // The user was assigned (and exposed) like any other.
    use shared::experiments::fold::MetricStore;
    let a = f
        .store
        .assignment("reminder-timing", "shaped")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a.variant_key, "treatment");

    // The 48 h reminder renders the messaging variant's template.
    let report = f
        .nudges()
        .dispatch_user("shaped", t("2026-11-22T15:00:00Z"), "j")
        .await
        .unwrap();
    assert_eq!(report.sent.len(), 1);
    let messages = drain(&f.sqs, &f.url).await;
    assert_eq!(messages[0].1["message"], "Only 48h left on mid_monthly!");
}

#[tokio::test]
async fn a_trial_start_processed_after_its_conversion_plans_no_reminders() {
    use shared::events::{Interval, SubscriptionChange};
    use shared::ingest::{fold_events, IngestSettings};
    use shared::profiles::FoldSettings;
    let f = Fixture::new().await;
    let change = |amount: Option<i64>| SubscriptionChange {
        plan: "mid_monthly".into(),
        tier: "mid".into(),
        amount_minor: amount,
        currency: amount.map(|_| "USD".to_string()),
        interval: amount.map(|_| Interval::Month),
        trial_ends_at: None,
    };
    let start = Event {
        event_id: "start".into(),
        user_id: "quick".into(),
        timestamp: t("2026-11-20T10:00:00Z"),
        body: EventBody::SubscriptionTrialStarted(change(None)),
    };
    let converted = Event {
        event_id: "paid".into(),
        timestamp: t("2026-11-20T10:05:00Z"),
        body: EventBody::SubscriptionTrialConverted(change(Some(999))),
        ..start.clone()
    };
    let settings = IngestSettings {
        fold: FoldSettings::default(),
        dedupe_ttl_days: 35,
        aggregate_shards: 4,
    };
    let now = t("2026-11-20T10:06:00Z");
    fold_events(
        &f.store,
        vec![start.clone(), converted.clone()],
        &settings,
        now,
    )
    .await
    .unwrap();
    // The conversion's message was handled first (there was no trial to end) ...
    f.nudges()
        .apply_events(&[converted], 14, now)
        .await
        .unwrap();
    // ... then the start's: the trial is recorded as converted, with nothing planned.
    f.nudges().apply_events(&[start], 14, now).await.unwrap();
    let trials = f.nudges().user_trials("quick").await.unwrap();
    assert_eq!(trials.len(), 1);
    assert_eq!(trials[0].trial.state, TrialState::Converted);
    assert!(trials[0].reminders.is_empty(), "{:?}", trials[0].reminders);
    assert!(f
        .nudges()
        .due_users(t("2026-12-04T09:00:00Z"))
        .await
        .unwrap()
        .is_empty());
}
