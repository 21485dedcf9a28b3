use chrono::{DateTime, Duration, Utc};
use shared::events::{Event, EventBody, FeatureUsed};
use shared::ingest::{fold_events, IngestSettings, IngestStore};
use shared::profiles::FoldSettings;

use crate::support::fresh_store;

fn settings() -> IngestSettings {
    IngestSettings {
        fold: FoldSettings::default(),
        dedupe_ttl_days: 2,
        aggregate_shards: 4,
    }
}

fn used(id: &str, user: &str, ts: &str) -> Event {
    Event {
        event_id: id.into(),
        user_id: user.into(),
        timestamp: ts.parse().unwrap(),
        body: EventBody::FeatureUsed(FeatureUsed {
            feature: "budget_tracker".into(),
            duration_ms: 1500,
        }),
    }
}

#[tokio::test]
async fn a_fold_is_readable_as_profile_and_daily_stats() {
    let store = fresh_store().await;
    let now: DateTime<Utc> = "2026-11-03T00:00:00Z".parse().unwrap();
    let events = vec![
        used("a", "u1", "2026-11-01T10:00:00Z"),
        used("b", "u1", "2026-11-01T11:00:00Z"),
        used("c", "u2", "2026-11-01T12:00:00Z"),
    ];
    let report = fold_events(&store, events, &settings(), now).await.unwrap();
    assert_eq!(report.applied, 3);

    let p = store.get_profile("u1").await.unwrap().unwrap();
    assert_eq!(p.features["budget_tracker"].count, 2);
    assert_eq!(p.version, 1);

    let day = store
        .daily_stats("2026-11-01".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(day.events_by_type["feature_used"], 3);
    assert_eq!(day.active_users_by_tier["unknown"], 2);
    let f = &day.feature_usage_by_tier["unknown"]["budget_tracker"];
    assert_eq!((f.count, f.total_seconds), (3, 4.5));
    assert!(store.get_profile("nobody").await.unwrap().is_none());
}

#[tokio::test]
async fn an_expired_dedupe_record_counts_as_absent() {
    let store = fresh_store().await;
    let now: DateTime<Utc> = "2026-11-03T00:00:00Z".parse().unwrap();
    let e = used("a", "u1", "2026-11-01T10:00:00Z");
    fold_events(&store, vec![e.clone()], &settings(), now)
        .await
        .unwrap();
    let ids = vec!["a".to_string()];
    assert_eq!(store.applied_events(&ids, now).await.unwrap().len(), 1);
    let later = now + Duration::days(3);
    assert!(
        store.applied_events(&ids, later).await.unwrap().is_empty(),
        "past its TTL the record no longer dedupes, even where the emulator keeps it"
    );
    let report = fold_events(&store, vec![e], &settings(), later)
        .await
        .unwrap();
    assert_eq!(
        report.applied, 1,
        "the conditional write accepts an expired record"
    );
}

#[tokio::test]
async fn the_store_counts_requests_and_units() {
    let store = fresh_store().await;
    let now: DateTime<Utc> = "2026-11-03T00:00:00Z".parse().unwrap();
    fold_events(
        &store,
        vec![used("a", "u1", "2026-11-01T10:00:00Z")],
        &settings(),
        now,
    )
    .await
    .unwrap();
    let stats = store.stats();
    assert_eq!(stats.write_requests, 1, "one transaction");
    assert_eq!(stats.items_written, 3, "dedupe + profile + aggregate");
    assert!(
        stats.write_units >= 6.0,
        "transactional items cost 2 units per KB: {stats:?}"
    );
}

#[tokio::test]
async fn a_user_with_more_events_than_one_transaction_holds_commits_in_chunks() {
    let store = fresh_store().await;
    let now: DateTime<Utc> = "2026-11-03T00:00:00Z".parse().unwrap();
    let events: Vec<Event> = (0..120)
        .map(|i| {
            used(
                &format!("e{i}"),
                "heavy",
                &format!("2026-11-01T10:{:02}:{:02}Z", i / 60, i % 60),
            )
        })
        .collect();
    let report = fold_events(&store, events.clone(), &settings(), now)
        .await
        .unwrap();
    assert_eq!((report.applied, report.commits), (120, 3), "48 + 48 + 24");
    let p = store.get_profile("heavy").await.unwrap().unwrap();
    assert_eq!((p.event_count, p.version), (120, 3));
    let again = fold_events(&store, events, &settings(), now).await.unwrap();
    assert_eq!(
        (again.applied, again.duplicates, again.commits),
        (0, 120, 0)
    );
    let day = store
        .daily_stats("2026-11-01".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(day.events_by_type["feature_used"], 120);
    assert_eq!(day.active_users_by_tier["unknown"], 1);
}
