//! An experiment end to end through the local stack: create, start, assign 5,000 users
//! (sticky across a weight change), send conversions with a true lift through the events
//! pipeline, let the scheduled sequential check conclude and complete it, then read the
//! results, the history and the outbox message.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::stream::{self, StreamExt};
use serde_json::{json, Value};
use shared::auth::Role;
use tierup_e2e::{eventually, queue_url, Stack};

const USERS: usize = 5_000;

/// A deterministic fraction in [0, 1) per user, independent of the experiment's hashing.
fn draw(user: &str) -> f64 {
    let h = shared::hash::fnv1a32(format!("conversion-draw:{user}").as_bytes());
    f64::from(h % 10_000) / 10_000.0
}

async fn assign_many(
    stack: &Stack,
    key: &str,
    token: &str,
    users: &[String],
) -> BTreeMap<String, String> {
    let path = format!("/v1/experiments/{key}/assign");
    stream::iter(users.iter().cloned())
        .map(|user| {
            let path = path.clone();
            async move {
                let (status, body) = stack
                    .post_json(
                        &path,
                        token,
                        &json!({"user_id": user, "attributes": {"plan": "free"}}),
                    )
                    .await;
                assert_eq!(status, 200, "{user}: {body}");
                assert_eq!(body["in_experiment"], true, "{user}: {body}");
                (user, body["variant"]["key"].as_str().unwrap().to_string())
            }
        })
        .buffer_unordered(16)
        .collect()
        .await
}

#[tokio::test]
async fn an_experiment_runs_from_draft_to_a_scheduled_conclusion() {
    let stack = Stack::from_env();
    let admin = stack.token(Role::Admin, "e2e-admin");
    let service = stack.token(Role::Service, "e2e-service");
    let user = stack.token(Role::User, "e2e-user");
    let key = format!("e2e-{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let definition = json!({
        "key": key,
        "name": "Upgrade prompt design",
        "test_type": "custom",
        "variants": [{"key": "control"}, {"key": "bold", "config": {"style": "bold"}}],
        "primary_metric": {"name": "upgraded", "kind": "proportion", "event": "subscription_started"},
        "min_sample_per_variant": 500,
        "auto_stop": true
    });

    // Roles: neither a user nor a service creates experiments or reads their admin data.
    for token in [&user, &service] {
        let (status, _) = stack.post_json("/v1/experiments", token, &definition).await;
        assert_eq!(status, 403);
    }
    let (status, created) = stack
        .post_json("/v1/experiments", &admin, &definition)
        .await;
    assert_eq!(status, 201, "{created}");
    for path in ["", "/results", "/audit", "/history"] {
        let (status, _) = stack
            .get(&format!("/v1/experiments/{key}{path}"), &user)
            .await;
        assert_eq!(status, 403, "user reading {path}");
    }

    // Illegal transition, then start.
    let status_path = format!("/v1/experiments/{key}/status");
    let (status, problem) = stack
        .post_json(&status_path, &admin, &json!({"status": "paused"}))
        .await;
    assert_eq!(status, 409, "{problem}");
    assert!(problem["detail"]
        .as_str()
        .unwrap()
        .contains("running, cancelled"));
    let (status, started) = stack
        .post_json(&status_path, &admin, &json!({"status": "running"}))
        .await;
    assert_eq!(
        (status, started["status"].as_str()),
        (200, Some("running")),
        "{started}"
    );

    // 2,500 users at 50/50, then a weight change without a bucket-version bump.
    let users: Vec<String> = (0..USERS).map(|i| format!("{key}-user-{i}")).collect();
    let (first_half, second_half) = users.split_at(USERS / 2);
    let mut variants = assign_many(&stack, &key, &service, first_half).await;
    let (status, patched) = stack
        .call(
            reqwest::Method::PATCH,
            &format!("/v1/experiments/{key}"),
            Some(&admin),
            Some(json!({"weights": [0.3, 0.7]}).to_string().into_bytes()),
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    let again = assign_many(&stack, &key, &service, &first_half[..500]).await;
    for (u, v) in &again {
        assert_eq!(&variants[u], v, "{u} moved after the weight change");
    }
    variants.extend(assign_many(&stack, &key, &service, second_half).await);
    let treated = variants.values().filter(|v| *v == "bold").count();
    assert!(
        treated > USERS / 2 + 300,
        "new users follow the new weights: {treated}"
    );

    // Conversions with a true lift: control 10 %, bold 20 %, sent as product events. (The
    // comparison uses the ~2,500 users of the current epoch; the lift is large enough that the
    // sequential test concludes for any plausible draw: p = 0.003 even at 8.7 % vs 18.2 %.)
    let converting: Vec<&String> = users
        .iter()
        .filter(|u| draw(u) < if variants[*u] == "bold" { 0.20 } else { 0.10 })
        .collect();
    let now = chrono::Utc::now();
    for chunk in converting.chunks(400) {
        let events: Vec<Value> = chunk
            .iter()
            .map(|u| json!({
                "event_id": format!("{u}-sub"),
                "type": "subscription_started",
                "user_id": u,
                "timestamp": now.to_rfc3339(),
                "properties": {"plan": "pro-monthly", "tier": "pro", "amount": 12.0, "currency": "USD", "interval": "month"}
            }))
            .collect();
        let (status, body) = stack
            .post_json("/v1/events", &service, &json!({"events": events}))
            .await;
        assert_eq!(status, 202, "{body}");
    }
    let converting_later = converting
        .iter()
        .filter(|u| second_half.contains(u))
        .count();
    let results_path = format!("/v1/experiments/{key}/results");
    let results = eventually(
        "the conversions to be folded",
        Duration::from_secs(180),
        || async {
            let (_, r) = stack.get(&results_path, &admin).await;
            let sum: f64 = r["metrics"][0]["variants"]
                .as_array()?
                .iter()
                .filter_map(|v| v["sum"].as_f64())
                .sum();
            (sum as usize == converting_later).then_some(r)
        },
    )
    .await;
    let observed: Vec<u64> = results["srm"]["observed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    // Results compare the users assigned since the weight change (the current weights epoch).
    let later_treated = second_half
        .iter()
        .filter(|u| variants[*u] == "bold")
        .count();
    let later = second_half.len();
    assert_eq!(
        observed,
        [(later - later_treated) as u64, later_treated as u64],
        "one exposure per user"
    );
    assert_eq!(results["epoch"], 1);
    let epoch0: u64 = results["epochs"][0]["n"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(epoch0 as usize, first_half.len(), "{}", results["epochs"]);
    assert_eq!(results["srm"]["flagged"], false, "{}", results["srm"]);

    // The scheduled sweep (fired now, as of two hours later so an earlier timer firing does
    // not make it "not due"), the check job, the conclusion.
    let later = (chrono::Utc::now() + chrono::Duration::hours(2)).to_rfc3339();
    let (status, fired) = stack
        .call(
            reqwest::Method::POST,
            "/_local/schedules/SignificanceSweep/run",
            None,
            Some(json!({"params": {"now": later}}).to_string().into_bytes()),
        )
        .await;
    assert_eq!(status, 200, "{fired}");
    let done = eventually(
        "the check to complete the experiment",
        Duration::from_secs(120),
        || async {
            let (_, e) = stack.get(&format!("/v1/experiments/{key}"), &admin).await;
            (e["status"] == "completed").then_some(e)
        },
    )
    .await;
    assert_eq!(done["outcome"]["result"], "winner", "{done}");
    assert_eq!(done["outcome"]["winner"], "bold", "{done}");
    assert_eq!(done["outcome"]["decided_by"], "scheduled_check");
    let (_, history) = stack
        .get(&format!("/v1/experiments/{key}/history"), &admin)
        .await;
    let last = history["checks"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["verdict"]["decision"], "conclude", "{history}");
    assert_eq!(last["verdict"]["winner"], "bold");

    // The outbox holds the experiment_concluded message.
    let sqs = stack.sqs().await;
    let outbox = queue_url("OutboxQueue");
    let message = eventually(
        "experiment_concluded on the outbox",
        Duration::from_secs(30),
        || async {
            let out = sqs
                .receive_message()
                .queue_url(&outbox)
                .max_number_of_messages(10)
                .send()
                .await
                .ok()?;
            out.messages
                .unwrap_or_default()
                .iter()
                .filter_map(|m| serde_json::from_str::<Value>(m.body()?).ok())
                .find(|m| m["experiment"] == key.as_str())
        },
    )
    .await;
    assert_eq!(message["type"], "experiment_concluded");
    assert_eq!(message["winner"], "bold");
    assert_eq!(message["completed"], true);

    // Final results are readable; the lift is positive and significant.
    let (_, results) = stack.get(&results_path, &admin).await;
    let c = &results["metrics"][0]["comparisons"][0];
    assert!(c["relative"]["estimate"].as_f64().unwrap() > 0.2, "{c}");
    assert!(c["sequential"]["p_value"].as_f64().unwrap() < 0.05, "{c}");
    let (_, audit) = stack
        .get(&format!("/v1/experiments/{key}/audit"), &admin)
        .await;
    let actions: Vec<&str> = audit["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["created", "status_changed", "updated", "concluded"]
    );
}
