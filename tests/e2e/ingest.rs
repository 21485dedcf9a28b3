use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Duration as Days, NaiveDate, Utc};
use serde_json::{json, Value};
use shared::auth::Role;
use tierup_e2e::{eventually, Stack};

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

#[tokio::test]
async fn a_batch_becomes_a_profile() {
    let stack = Stack::from_env();
    let service = stack.token(Role::Service, "app-backend");
    let user = unique("user");
    let now = Utc::now();
    // The trial starts after the identify, so its tier is the latest.
    let earlier = now - Days::seconds(10);
    let batch = json!({"events": [
        {"event_id": unique("e"), "type": "identify", "user_id": user, "timestamp": earlier.to_rfc3339(),
         "properties": {"tier": "budget", "segment": "young_professional", "timezone": "Europe/Berlin", "country": "de"}},
        {"event_id": unique("e"), "type": "subscription_trial_started", "user_id": user,
         "timestamp": now.to_rfc3339(), "properties": {"plan": "mid_monthly", "tier": "mid"}},
        {"event_id": unique("e"), "type": "feature_used", "user_id": user, "timestamp": now.to_rfc3339(),
         "properties": {"feature": "budget_tracker", "duration_seconds": 90}},
        {"event_id": unique("e"), "type": "feature_used", "user_id": user, "timestamp": now.to_rfc3339(),
         "properties": {"feature": "budget_tracker", "duration_seconds": 30.5}},
    ]});
    let (status, body) = stack.post_json("/v1/events", &service, &batch).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["accepted"].as_array().unwrap().len(), 4);

    let own = stack.token(Role::User, &user);
    let profile = eventually(
        "the profile to show 4 events",
        Duration::from_secs(90),
        || async {
            let (status, p) = stack.get(&format!("/v1/users/{user}/profile"), &own).await;
            (status == 200 && p["event_count"] == 4).then_some(p)
        },
    )
    .await;
    assert_eq!(profile["tier"], "mid", "the trial's tier is the latest");
    assert_eq!(profile["segment"], "young_professional");
    assert_eq!(profile["country"], "DE");
    assert_eq!(profile["subscription"]["status"], "trialing");
    assert_eq!(profile["features"]["budget_tracker"]["count"], 2);
    assert_eq!(
        profile["features"]["budget_tracker"]["total_seconds"],
        120.5
    );
    assert_eq!(profile["active_days"], 1);
    assert!(profile["engagement"]["score"].as_f64().unwrap() > 0.0);
}

#[tokio::test]
async fn a_malformed_event_is_refused_while_the_rest_is_stored() {
    let stack = Stack::from_env();
    let service = stack.token(Role::Service, "app-backend");
    let user = unique("user");
    let now = Utc::now().to_rfc3339();
    let bad_id = unique("bad");
    let batch = json!({"events": [
        {"event_id": unique("e"), "type": "feature_used", "user_id": user, "timestamp": now,
         "properties": {"feature": "savings_goals"}},
        {"event_id": bad_id, "type": "payment_failed", "user_id": user, "timestamp": now,
         "properties": {"amount": "lots", "currency": "USD"}},
        {"event_id": unique("e"), "type": "teleported", "user_id": user, "timestamp": now},
    ]});
    let (status, body) = stack.post_json("/v1/events", &service, &batch).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["accepted"].as_array().unwrap().len(), 1);
    let rejected = body["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 2);
    assert_eq!(rejected[0]["index"], 1);
    assert_eq!(rejected[0]["event_id"], bad_id.as_str());
    assert_eq!(rejected[0]["errors"][0]["field"], "properties.amount");
    assert_eq!(rejected[1]["errors"][0]["field"], "type");

    let admin = stack.token(Role::Admin, "ops");
    let profile = eventually(
        "the valid event to be stored",
        Duration::from_secs(90),
        || async {
            let (status, p) = stack
                .get(&format!("/v1/users/{user}/profile"), &admin)
                .await;
            (status == 200).then_some(p)
        },
    )
    .await;
    assert_eq!(profile["event_count"], 1);
    assert_eq!(profile["features"]["savings_goals"]["count"], 1);
}

const EVENTS: usize = 10_000;
const USERS: usize = 250;
const TIERS: [&str; 3] = ["free", "budget", "professional"];

/// Events on days nobody else writes to (a random day 30..330 days back), each user
/// identified first so every event is attributed to a fixed tier.
fn generate(run: &str, day0: DateTime<Utc>) -> Vec<Value> {
    let mut state: u64 = 7;
    let mut next = |n: u64| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) % n
    };
    let mut events = Vec::with_capacity(EVENTS);
    for u in 0..USERS {
        events.push(
            json!({"event_id": format!("{run}-id-{u}"), "type": "identify",
            "user_id": format!("{run}-u{u}"), "timestamp": day0.to_rfc3339(),
            "properties": {"tier": TIERS[u % TIERS.len()]}}),
        );
    }
    let mut rest = Vec::new();
    for i in USERS..EVENTS {
        let u = next(USERS as u64) as usize;
        let ts = day0 + Days::seconds(1 + next(3 * 86_400 - 2) as i64);
        let e = match next(4) {
            0..=2 => json!({"type": "feature_used", "properties":
                {"feature": format!("f{}", next(4)), "duration_seconds": next(3600) as f64 / 4.0}}),
            _ => json!({"type": "metric", "properties": {"name": "m", "value": 1}}),
        };
        let mut e = e;
        e["event_id"] = json!(format!("{run}-ev-{i}"));
        e["user_id"] = json!(format!("{run}-u{u}"));
        e["timestamp"] = json!(ts.to_rfc3339());
        rest.push(e);
    }
    rest.sort_by(|a, b| a["user_id"].as_str().cmp(&b["user_id"].as_str()));
    events.extend(rest);
    events
}

#[derive(Default)]
struct Truth {
    by_day_type: BTreeMap<(NaiveDate, String), i64>,
    active: BTreeMap<(NaiveDate, String), BTreeSet<String>>,
    feature_count: BTreeMap<(NaiveDate, String, String), i64>,
}

fn truth(events: &[Value]) -> Truth {
    let mut t = Truth::default();
    for e in events {
        let ts: DateTime<Utc> = e["timestamp"].as_str().unwrap().parse().unwrap();
        let day = ts.date_naive();
        let user = e["user_id"].as_str().unwrap();
        let u: usize = user.rsplit('u').next().unwrap().parse().unwrap();
        let tier = TIERS[u % TIERS.len()].to_string();
        let kind = e["type"].as_str().unwrap().to_string();
        *t.by_day_type.entry((day, kind.clone())).or_default() += 1;
        t.active
            .entry((day, tier.clone()))
            .or_default()
            .insert(user.to_string());
        if kind == "feature_used" {
            let f = e["properties"]["feature"].as_str().unwrap().to_string();
            *t.feature_count.entry((day, tier, f)).or_default() += 1;
        }
    }
    t
}

async fn send_all(stack: &Stack, token: &str, events: &[Value]) {
    for chunk in events.chunks(500) {
        let (status, body) = stack
            .post_json("/v1/events", token, &json!({"events": chunk}))
            .await;
        assert_eq!(status, 202, "{body}");
        assert_eq!(body["accepted"].as_array().unwrap().len(), chunk.len());
    }
}

#[tokio::test]
async fn ten_thousand_events_sent_twice_are_counted_once() {
    let stack = Stack::from_env();
    let service = stack.token(Role::Service, "loader");
    let admin = stack.token(Role::Admin, "ops");
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let offset = 30 + (u64::from_str_radix(&run[..4], 16).unwrap() % 300) as i64;
    let day0 = (Utc::now() - Days::days(offset))
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc();
    let events = generate(&run, day0);
    let truth = truth(&events);

    send_all(&stack, &service, &events).await;
    // The client retries everything, as after a timeout it could not interpret.
    send_all(&stack, &service, &events).await;

    let days: BTreeSet<NaiveDate> = truth.by_day_type.keys().map(|(d, _)| *d).collect();
    let expected_total: i64 = truth.by_day_type.values().sum();
    assert_eq!(expected_total, EVENTS as i64);
    // Wait until every event has been folded, then compare every figure.
    eventually(
        "all 10,000 events to be folded",
        Duration::from_secs(600),
        || async {
            let mut total = 0;
            for day in &days {
                let (_, s) = stack.get(&format!("/v1/stats/daily/{day}"), &admin).await;
                total += s["total_events"].as_i64().unwrap_or(0);
            }
            (total >= expected_total).then_some(())
        },
    )
    .await;
    // Let any straggling duplicate deliveries land before checking nothing was doubled.
    tokio::time::sleep(Duration::from_secs(5)).await;
    for day in &days {
        let (status, s) = stack.get(&format!("/v1/stats/daily/{day}"), &admin).await;
        assert_eq!(status, 200);
        for ((d, kind), n) in &truth.by_day_type {
            if d == day {
                assert_eq!(s["events_by_type"][kind].as_i64(), Some(*n), "{day} {kind}");
            }
        }
        for ((d, tier), users) in &truth.active {
            if d == day {
                assert_eq!(
                    s["active_users_by_tier"][tier].as_i64(),
                    Some(users.len() as i64),
                    "{day} active {tier}"
                );
            }
        }
        for ((d, tier, f), n) in &truth.feature_count {
            if d == day {
                assert_eq!(
                    s["feature_usage_by_tier"][tier][f]["count"].as_i64(),
                    Some(*n),
                    "{day} {tier} {f}"
                );
            }
        }
    }
}
