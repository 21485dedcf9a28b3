//! Handler flows over real profiles: every profile is folded from fixture events with
//! `shared::ingest::fold_events` (as worker-events stores it), then the routes are driven with
//! tokens of each role. Sections: roles; validation; trial planning; usage-based prompts;
//! social proof; offers (terms, single use, the 100-way race, 403, 410, the daily cap);
//! optimization analytics.
//!
//! Times are built from today's UTC date so that exact due times, engagement scores and
//! windows can be asserted; floats that are not exact sums are compared within 1e-12.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, NaiveTime, Timelike, Utc};
use serde_json::{json, Value};
use shared::events::{Event, EventBody, FeatureUsed, Identify, Payment};
use shared::ingest::CommitOutcome;
use shared::nudges::offers::{fnv1a64, parse_code, Offer};
use shared::store::{nkeys, DocWrite, Expect};

use crate::support::{app, call_router, TestApp};

const PROBLEM: &str = "application/problem+json";

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

/// `days` days before today (UTC) at `hour:minute`.
fn days_ago(days: i64, hour: u32, minute: u32) -> DateTime<Utc> {
    let day = Utc::now().date_naive() - Duration::days(days);
    day.and_time(NaiveTime::from_hms_opt(hour, minute, 0).unwrap())
        .and_utc()
}

fn event(user: &str, n: usize, timestamp: DateTime<Utc>, body: EventBody) -> Event {
    Event {
        event_id: format!("{user}-e{n}"),
        user_id: user.to_string(),
        timestamp,
        body,
    }
}

fn used(feature: &str, duration_ms: u64) -> EventBody {
    EventBody::FeatureUsed(FeatureUsed {
        feature: feature.to_string(),
        duration_ms,
    })
}

/// The reference design's usage: budget_tracker 8 uses (4800 s), expense_categorizer 6
/// (3600 s), savings_goals 5 (3000 s), 10 minutes each, on 14 distinct UTC days (1 to 14
/// days ago; 13 of them fall in the 14-day engagement window, so engagement is 13/14).
fn reference_usage(user: &str) -> Vec<Event> {
    let uses = [
        ("budget_tracker", 8),
        ("expense_categorizer", 6),
        ("savings_goals", 5),
    ];
    uses.iter()
        .flat_map(|&(f, n)| std::iter::repeat_n(f, n))
        .enumerate()
        .map(|(i, f)| {
            let at = days_ago(1 + (i % 14) as i64, 10, (i / 14) as u32);
            event(user, i, at, used(f, 600_000))
        })
        .collect()
}

/// A user on `free` with the reference usage: a prompt (free → mid) and offers are due.
async fn reference_user(app: &TestApp, user: &str) {
    app.fold(reference_usage(user)).await;
}

/// The reference usage on the `budget` tier (named by identify before any use): eligible
/// for offers (engagement 13/14 ≥ 0.5, 3 features ≥ 2, never paid) on the budget → mid path.
async fn budget_user(app: &TestApp, user: &str) {
    let mut events = reference_usage(user);
    let identify = EventBody::Identify(Identify {
        tier: Some("budget".into()),
        ..Identify::default()
    });
    events.push(event(user, 100, days_ago(14, 9, 0), identify));
    app.fold(events).await;
}

/// Active on one day (yesterday) with one feature, and has paid: engagement 1/14.
async fn lapsed_payer(app: &TestApp, user: &str) {
    let payment = EventBody::PaymentSucceeded(Payment {
        amount_minor: 999,
        currency: "USD".into(),
        reason: None,
    });
    app.fold(vec![
        event(user, 0, days_ago(1, 10, 0), used("budget_tracker", 60_000)),
        event(user, 1, days_ago(1, 10, 5), payment),
    ])
    .await;
}

fn at(v: &Value) -> DateTime<Utc> {
    v.as_str()
        .unwrap_or_else(|| panic!("not a time: {v}"))
        .parse()
        .unwrap()
}

fn close(v: &Value, expected: f64) {
    let actual = v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"));
    assert!((actual - expected).abs() < 1e-12, "{actual} != {expected}");
}

/// The field paths of a problem+json body, in order.
fn fields(problem: &Value) -> Vec<&str> {
    problem["errors"]
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["field"].as_str()).collect())
        .unwrap_or_default()
}

fn codes(list: &Value) -> Vec<&str> {
    list.as_array()
        .map(|a| a.iter().filter_map(|r| r["code"].as_str()).collect())
        .unwrap_or_default()
}

fn proof_body(title: &str, tags: &[&str], approval: &str) -> Value {
    json!({
        "proof_type": "testimonial", "title": title, "content": "It paid for itself in a month.",
        "author": "Ana", "tags": tags, "approval": approval,
    })
}

async fn create_proof(app: &TestApp, body: Value) -> String {
    let (status, _, p) = app
        .call("POST", "/v1/social-proof", Some(&app.admin()), Some(body))
        .await;
    assert_eq!(status, 201, "{p}");
    p["proof_id"].as_str().unwrap().to_string()
}

async fn create_offer(app: &TestApp, user: &str) -> (u16, Value) {
    let path = format!("/v1/users/{user}/offers");
    let (status, _, body) = app.call("POST", &path, Some(&app.service()), None).await;
    (status, body)
}

/// A new offer's code (the user must be eligible).
async fn new_offer(app: &TestApp, user: &str) -> String {
    let (status, body) = create_offer(app, user).await;
    assert_eq!(status, 201, "{body}");
    body["offer"]["code"].as_str().unwrap().to_string()
}

async fn redeem(app: &TestApp, code: &str, token: &str) -> (u16, String, Value) {
    let path = format!("/v1/offers/{code}/redeem");
    app.call("POST", &path, Some(token), None).await
}

// ---------------------------------------------------------------------------------------------
// Roles
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn given_a_user_token_when_reading_nudges_then_only_their_own_are_served() {
    let app = app().await;
    let alice = app.user("alice");
    for what in [
        "reminders",
        "prompts",
        "offers",
        "social-proof",
        "optimization",
    ] {
        let theirs = format!("/v1/users/bob/{what}");
        let (status, ct, body) = app.call("GET", &theirs, Some(&alice), None).await;
        assert_eq!((status, ct.as_str()), (403, PROBLEM), "{what}: {body}");
        for token in [app.admin(), app.service()] {
            let (status, _, body) = app.call("GET", &theirs, Some(&token), None).await;
            assert_eq!(status, 200, "{what}: {body}");
        }
        let own = format!("/v1/users/alice/{what}");
        let (status, _, body) = app.call("GET", &own, Some(&alice), None).await;
        assert_eq!(
            (status, body["user_id"].as_str()),
            (200, Some("alice")),
            "{what}"
        );
    }
    let (_, _, body) = app
        .call("GET", "/v1/users/alice/reminders", Some(&alice), None)
        .await;
    assert_eq!(body, json!({"user_id": "alice", "trials": []}));

    let evaluate = "/v1/users/bob/prompts/evaluate";
    let (status, _, _) = app.call("POST", evaluate, Some(&alice), None).await;
    assert_eq!(status, 403);
    let (status, _, body) = app
        .call(
            "POST",
            "/v1/users/alice/prompts/evaluate",
            Some(&alice),
            None,
        )
        .await;
    assert_eq!((status, &body["created"]), (200, &json!(false)), "{body}");
}

#[tokio::test]
async fn given_user_or_service_tokens_when_managing_the_catalog_then_403_and_an_admin_may() {
    let app = app().await;
    let body = proof_body("Saved $300", &["budget_tracker"], "pending");
    let patch = json!({"approval": "approved"});
    for token in [app.user("alice"), app.service()] {
        for (method, path, body) in [
            ("POST", "/v1/social-proof", Some(body.clone())),
            ("GET", "/v1/social-proof", None),
            ("GET", "/v1/social-proof/p1", None),
            ("PATCH", "/v1/social-proof/p1", Some(patch.clone())),
            ("DELETE", "/v1/social-proof/p1", None),
        ] {
            let (status, ct, _) = app.call(method, path, Some(&token), body).await;
            assert_eq!((status, ct.as_str()), (403, PROBLEM), "{method} {path}");
        }
    }
    let admin = app.admin();
    let id = create_proof(&app, body).await;
    let one = format!("/v1/social-proof/{id}");
    for (method, path, body, expected) in [
        ("GET", "/v1/social-proof", None, 200),
        ("GET", one.as_str(), None, 200),
        ("PATCH", one.as_str(), Some(patch), 200),
        ("DELETE", one.as_str(), None, 204),
    ] {
        let (status, _, _) = app.call(method, path, Some(&admin), body).await;
        assert_eq!(status, expected, "{method} {path}");
    }
}

#[tokio::test]
async fn given_a_user_token_when_planning_a_trial_or_creating_an_offer_then_403() {
    let app = app().await;
    let alice = app.user("alice");
    let plan = json!({"trial_ends_at": Utc::now() + Duration::days(3)});
    for path in ["/v1/trials/alice/reminders", "/v1/users/alice/offers"] {
        let (status, ct, _) = app
            .call("POST", path, Some(&alice), Some(plan.clone()))
            .await;
        assert_eq!((status, ct.as_str()), (403, PROBLEM), "{path}");
    }
    for (token, user) in [(app.service(), "alice"), (app.admin(), "carol")] {
        let path = format!("/v1/trials/{user}/reminders");
        let (status, _, body) = app
            .call("POST", &path, Some(&token), Some(plan.clone()))
            .await;
        assert_eq!(status, 201, "{body}");
        let path = format!("/v1/users/{user}/offers");
        let (status, _, body) = app.call("POST", &path, Some(&token), None).await;
        assert_eq!((status, &body["eligible"]), (200, &json!(false)), "{body}");
    }
    // A user token redeems only for itself.
    let (status, _, _) = app
        .call(
            "POST",
            "/v1/offers/TU-0000-0000-0000-0000/redeem",
            Some(&alice),
            Some(json!({"user_id": "bob"})),
        )
        .await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn given_no_token_or_a_forged_one_when_calling_then_401() {
    let app = app().await;
    for (method, path) in [
        ("GET", "/v1/users/alice/reminders"),
        ("POST", "/v1/trials/alice/reminders"),
        ("POST", "/v1/users/alice/offers"),
        ("GET", "/v1/social-proof"),
        ("POST", "/v1/offers/TU-0000-0000-0000-0000/redeem"),
    ] {
        for token in [None, Some("not-a-jwt")] {
            let (status, ct, _) = app.call(method, path, token, None).await;
            assert_eq!(
                (status, ct.as_str()),
                (401, PROBLEM),
                "{method} {path} {token:?}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn given_no_trial_on_the_profile_when_planning_without_an_end_then_400_names_trial_ends_at() {
    let app = app().await;
    let svc = app.service();
    let path = "/v1/trials/nova/reminders";
    let (status, ct, body) = app.call("POST", path, Some(&svc), None).await;
    assert_eq!((status, ct.as_str()), (400, PROBLEM), "{body}");
    assert_eq!(fields(&body), ["trial_ends_at"]);
    assert_eq!(
        body["errors"][0]["message"],
        "is required: the user's profile has no trial"
    );
    let past = json!({"trial_ends_at": Utc::now() - Duration::hours(1)});
    let (status, _, body) = app.call("POST", path, Some(&svc), Some(past)).await;
    assert_eq!((status, fields(&body)), (400, vec!["trial_ends_at"]));
    let backwards = json!({
        "started_at": Utc::now() + Duration::days(4),
        "trial_ends_at": Utc::now() + Duration::days(3),
    });
    let (status, _, body) = app.call("POST", path, Some(&svc), Some(backwards)).await;
    assert_eq!((status, fields(&body)), (400, vec!["trial_ends_at"]));
    // Nothing was planned by the refused requests.
    let (_, _, body) = app
        .call("GET", "/v1/users/nova/reminders", Some(&svc), None)
        .await;
    assert_eq!(body["trials"], json!([]));
}

#[tokio::test]
async fn given_an_unknown_or_bad_body_field_when_posted_then_400_names_it() {
    let app = app().await;
    let svc = app.service();
    let end = Utc::now() + Duration::days(3);
    for (path, body, field) in [
        (
            "/v1/trials/nova/reminders",
            json!({"trial_ends_at": end, "colour": "red"}),
            "colour",
        ),
        (
            "/v1/users/nova/offers",
            json!({"offer_type": "percentage_discount", "colour": "red"}),
            "colour",
        ),
        (
            "/v1/users/nova/offers",
            json!({"offer_type": "half_price"}),
            "offer_type",
        ),
        (
            "/v1/offers/TU-0000-0000-0000-0000/redeem",
            json!({"user_id": "nova", "colour": "red"}),
            "colour",
        ),
        (
            "/v1/offers/TU-0000-0000-0000-0000/redeem",
            json!({}),
            "user_id",
        ),
    ] {
        let (status, ct, problem) = app.call("POST", path, Some(&svc), Some(body)).await;
        assert_eq!((status, ct.as_str()), (400, PROBLEM), "{path}: {problem}");
        assert_eq!(fields(&problem), [field], "{path}: {problem}");
    }
}

#[tokio::test]
async fn given_a_social_proof_with_several_bad_fields_when_created_then_each_is_listed() {
    let app = app().await;
    let admin = app.admin();
    let body = json!({
        "proof_type": "video", "title": "   ", "tags": ["Bad Tag", "ok"],
        "approval": "maybe", "colour": "red",
    });
    let (status, ct, problem) = app
        .call("POST", "/v1/social-proof", Some(&admin), Some(body))
        .await;
    assert_eq!((status, ct.as_str()), (400, PROBLEM), "{problem}");
    assert_eq!(
        fields(&problem),
        [
            "colour",
            "proof_type",
            "tags[0]",
            "title",
            "approval",
            "content",
            "author"
        ]
    );
    let (_, _, list) = app
        .call("GET", "/v1/social-proof", Some(&admin), None)
        .await;
    assert_eq!(list["proofs"], json!([]), "nothing was stored");

    let id = create_proof(&app, proof_body("Saved $300", &[], "pending")).await;
    let path = format!("/v1/social-proof/{id}");
    for (patch, field) in [
        (json!({}), "body"),
        (json!({"title": null}), "title"),
        (json!({"tier": "a#b"}), "tier"),
    ] {
        let (status, _, problem) = app.call("PATCH", &path, Some(&admin), Some(patch)).await;
        assert_eq!((status, fields(&problem)), (400, vec![field]), "{problem}");
    }
}

#[tokio::test]
async fn given_an_unknown_query_parameter_when_reading_social_proof_then_400_names_it() {
    let app = app().await;
    let token = app.user("sam");
    let path = "/v1/users/sam/social-proof?colour=red&feature=";
    let (status, ct, problem) = app.call("GET", path, Some(&token), None).await;
    assert_eq!((status, ct.as_str()), (400, PROBLEM), "{problem}");
    assert_eq!(fields(&problem), ["colour", "feature"]);
}

#[tokio::test]
async fn given_a_malformed_or_unknown_offer_code_when_redeemed_then_400_or_404() {
    let app = app().await;
    let token = app.user("sam");
    let (status, ct, problem) = redeem(&app, "not-a-code", &token).await;
    assert_eq!((status, ct.as_str()), (400, PROBLEM));
    assert_eq!(fields(&problem), ["code"]);
    let (status, ct, problem) = redeem(&app, "TU-0000-0000-0000-0000", &token).await;
    assert_eq!((status, ct.as_str()), (404, PROBLEM));
    assert_eq!(problem["detail"], "no offer 'TU-0000-0000-0000-0000'");
}

// ---------------------------------------------------------------------------------------------
// Trial planning
// ---------------------------------------------------------------------------------------------

/// One use yesterday: early in a trial the usage ratio is far above `high` and the value shown
/// (0.04) below 0.6, and there is no earlier week to drop from, so no behavioural reminder is
/// planned; only the expiry ones.
async fn light_user(app: &TestApp, user: &str) {
    let e = event(user, 0, days_ago(1, 10, 0), used("budget_tracker", 60_000));
    app.fold(vec![e]).await;
}

/// A trial end at 15:00 UTC three days from today.
fn trial_end() -> DateTime<Utc> {
    days_ago(-3, 15, 0)
}

#[tokio::test]
async fn given_a_trial_ending_in_three_days_when_planned_then_five_expiry_reminders_outside_quiet_hours(
) {
    let app = app().await;
    light_user(&app, "tina").await;
    let end = trial_end();
    let start = Utc::now().with_nanosecond(0).unwrap();
    let body =
        json!({"started_at": start, "trial_ends_at": end, "plan": "pro_monthly", "tier": "mid"});
    let path = "/v1/trials/tina/reminders";
    let (status, _, first) = app
        .call("POST", path, Some(&app.service()), Some(body.clone()))
        .await;
    assert_eq!(status, 201, "{first}");
    let trial_id = start.format("%Y%m%dT%H%M%SZ").to_string();
    let trial = &first["trial"];
    assert_eq!(
        (&trial["trial_id"], &trial["state"], &trial["sent"]),
        (&json!(trial_id), &json!("active"), &json!(0))
    );
    assert_eq!(
        (at(&trial["started_at"]), at(&trial["ends_at"])),
        (start, end)
    );

    // No timezone on the profile: UTC, quiet 22:00-08:00. End − 12 h is 03:00, moved to 08:00.
    let h = Duration::hours;
    let expected: BTreeMap<u64, (DateTime<Utc>, DateTime<Utc>)> = BTreeMap::from([
        (24, (end - h(24), end - h(24))),
        (12, (end - h(12), end - h(7))),
        (6, (end - h(6), end - h(6))),
        (2, (end - h(2), end - h(2))),
        (1, (end - h(1), end - h(1))),
    ]);
    let reminders = first["reminders"].as_array().unwrap();
    assert_eq!(reminders.len(), 5, "{first}");
    let mut planned = BTreeMap::new();
    for r in reminders {
        let offset = r["offset_hours"].as_u64().unwrap();
        assert_eq!(
            r["reminder_id"],
            format!("{trial_id}:trial_expiry:{offset}h")
        );
        assert_eq!(
            (
                &r["reminder_type"],
                &r["status"],
                &r["priority"],
                &r["reason"]
            ),
            (
                &json!("trial_expiry"),
                &json!("planned"),
                &json!(10),
                &Value::Null
            )
        );
        let vars = json!({"feature": "budget_tracker", "plan": "pro_monthly", "tier": "mid", "value_used": "4%"});
        assert_eq!(r["variables"], vars);
        planned.insert(offset, (at(&r["planned_for"]), at(&r["due_at"])));
    }
    assert_eq!(planned, expected);

    // The same request again: the same trial and reminders, nothing added.
    let (status, _, again) = app
        .call("POST", path, Some(&app.service()), Some(body))
        .await;
    assert_eq!((status, &again), (201, &first));

    let (status, _, listed) = app
        .call(
            "GET",
            "/v1/users/tina/reminders",
            Some(&app.user("tina")),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let trials = listed["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 1, "{listed}");
    assert_eq!(trials[0]["trial"], first["trial"]);
    let by_due: Vec<(u64, &str)> = trials[0]["reminders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["offset_hours"].as_u64().unwrap(),
                r["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        by_due,
        [
            (24, "planned"),
            (12, "planned"),
            (6, "planned"),
            (2, "planned"),
            (1, "planned")
        ]
    );
}

#[tokio::test]
async fn given_a_trial_planned_from_its_end_only_when_the_request_is_retried_a_second_later_then_no_second_trial(
) {
    let app = app().await;
    light_user(&app, "ria").await;
    let body = json!({"trial_ends_at": trial_end()});
    let path = "/v1/trials/ria/reminders";
    let (status, _, first) = app
        .call("POST", path, Some(&app.service()), Some(body.clone()))
        .await;
    assert_eq!(status, 201, "{first}");
    // A client retry (timeout, redelivery) lands in a later second.
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let (status, _, again) = app
        .call("POST", path, Some(&app.service()), Some(body))
        .await;
    assert_eq!(status, 201, "{again}");
    assert_eq!(again["trial"]["trial_id"], first["trial"]["trial_id"]);
    let (_, _, listed) = app
        .call("GET", "/v1/users/ria/reminders", Some(&app.service()), None)
        .await;
    assert_eq!(
        listed["trials"].as_array().map(Vec::len),
        Some(1),
        "{listed}"
    );
}

// ---------------------------------------------------------------------------------------------
// Usage-based prompts
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn given_the_reference_usage_when_evaluated_then_a_mid_prompt_for_savings_goals_then_the_cooldown(
) {
    let app = app().await;
    reference_user(&app, "pat").await;
    let token = app.user("pat");
    let path = "/v1/users/pat/prompts/evaluate";
    let (status, _, body) = app.call("POST", path, Some(&token), None).await;
    assert_eq!((status, &body["created"]), (201, &json!(true)), "{body}");
    let a = &body["analysis"];
    assert_eq!(
        [
            &a["total_usage"],
            &a["active_days"],
            &a["features_used"],
            &a["tracked_features"]
        ],
        [&json!(19), &json!(14), &json!(3), &json!(5)]
    );
    assert_eq!(a["value_demonstrated"], json!(0.6)); // (1 + 1 + 1 + 0 + 0) / 5, exactly
    close(&a["confidence"], 0.88); // 0.4 · 1 + 0.3 · 1 + 0.3 · 0.6
    assert_eq!(
        a["thresholds_met"],
        json!(["budget_tracker", "expense_categorizer", "savings_goals"])
    );
    let p = &body["prompt"];
    assert_eq!(
        [
            &p["trigger_feature"],
            &p["usage"],
            &p["usage_threshold"],
            &p["current_tier"],
            &p["target_tier"]
        ],
        [
            &json!("savings_goals"),
            &json!(5),
            &json!(2),
            &json!("free"),
            &json!("mid")
        ]
    );
    assert_eq!(p["value_demonstrated"], json!(0.6));
    close(&p["confidence"], 0.88);
    assert_eq!(
        p["reason"],
        "savings_goals was used 5 times (threshold 2); value demonstrated 60%, confidence 88%: recommend mid"
    );
    assert_eq!(
        (
            &p["delivered_via"],
            &p["outbox_pending"],
            &p["design"]["title"]
        ),
        (
            &json!("api"),
            &json!(false),
            &json!("Unlock the full Savings Goals with Mid")
        )
    );
    assert_eq!(body["reasons"], json!([]));

    // Within the cooldown (7 days): not created, with the reason.
    let (status, _, second) = app.call("POST", path, Some(&token), None).await;
    assert_eq!(
        (status, &second["created"]),
        (200, &json!(false)),
        "{second}"
    );
    assert_eq!(codes(&second["reasons"]), ["recently_prompted"]);
    assert!(second.get("prompt").is_none(), "{second}");

    let (status, _, listed) = app
        .call("GET", "/v1/users/pat/prompts", Some(&token), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(listed["prompts"], json!([p]));
}

#[tokio::test]
async fn given_no_usage_when_evaluated_then_no_prompt_and_the_usage_reasons() {
    let app = app().await;
    let (status, _, body) = app
        .call(
            "POST",
            "/v1/users/idle/prompts/evaluate",
            Some(&app.service()),
            None,
        )
        .await;
    assert_eq!((status, &body["created"]), (200, &json!(false)), "{body}");
    let reasons = &body["reasons"];
    assert_eq!(
        codes(reasons),
        [
            "no_threshold_met",
            "value_below_threshold",
            "confidence_below_threshold"
        ]
    );
    assert_eq!(
        (&reasons[1]["value"], &reasons[1]["threshold"]),
        (&json!(0.0), &json!(0.6))
    );
    assert_eq!(
        (&reasons[2]["value"], &reasons[2]["threshold"]),
        (&json!(0.0), &json!(0.7))
    );
    assert_eq!(
        reasons[0]["message"],
        "no tracked feature has reached its usage threshold"
    );
    let (_, _, listed) = app
        .call("GET", "/v1/users/idle/prompts", Some(&app.service()), None)
        .await;
    assert_eq!(listed["prompts"], json!([]));
}

// ---------------------------------------------------------------------------------------------
// Social proof
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn given_an_admin_when_a_proof_is_created_read_approved_listed_and_deleted_then_each_step_shows(
) {
    let app = app().await;
    let admin = app.admin();
    let body = json!({
        "proof_type": "case_study", "title": "  Saved $300 in a month ", "content": "Budgets work.",
        "author": "Ana", "tier": "free", "tags": ["budget_tracker", "budget_tracker", "save_money"],
    });
    let (status, _, created) = app
        .call("POST", "/v1/social-proof", Some(&admin), Some(body))
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["proof_id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 32, "{id}");
    assert_eq!(
        [
            &created["approval"],
            &created["title"],
            &created["tags"],
            &created["tier"],
            &created["segment"]
        ],
        [
            &json!("pending"),
            &json!("Saved $300 in a month"),
            &json!(["budget_tracker", "save_money"]),
            &json!("free"),
            &Value::Null
        ]
    );
    assert_eq!(
        [
            &created["version"],
            &created["impressions"],
            &created["conversions"]
        ],
        [&json!(1), &json!(0), &json!(0)]
    );
    let path = format!("/v1/social-proof/{id}");
    let (status, _, read) = app.call("GET", &path, Some(&admin), None).await;
    assert_eq!((status, &read), (200, &created));

    let patch = json!({"approval": "approved", "tier": null});
    let (status, _, patched) = app.call("PATCH", &path, Some(&admin), Some(patch)).await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(
        [
            &patched["approval"],
            &patched["tier"],
            &patched["version"],
            &patched["title"],
            &patched["created_at"]
        ],
        [
            &json!("approved"),
            &Value::Null,
            &json!(2),
            &created["title"],
            &created["created_at"]
        ]
    );
    assert!(at(&patched["updated_at"]) >= at(&created["updated_at"]));
    let (status, _, list) = app
        .call("GET", "/v1/social-proof", Some(&admin), None)
        .await;
    assert_eq!((status, &list["proofs"]), (200, &json!([patched])));

    let (status, _, none) = app.call("DELETE", &path, Some(&admin), None).await;
    assert_eq!((status, none), (204, Value::Null));
    for method in ["GET", "DELETE"] {
        let (status, ct, _) = app.call(method, &path, Some(&admin), None).await;
        assert_eq!(
            (status, ct.as_str()),
            (404, PROBLEM),
            "{method} after delete"
        );
    }
    let (_, _, list) = app
        .call("GET", "/v1/social-proof", Some(&admin), None)
        .await;
    assert_eq!(list["proofs"], json!([]));
}

#[tokio::test]
async fn given_a_catalog_when_a_user_asks_twice_then_at_most_three_relevant_approved_proofs_and_no_repeat(
) {
    let app = app().await;
    let mut relevant = BTreeSet::new();
    for i in 0..5 {
        let body = proof_body(&format!("Story {i}"), &["budget_tracker"], "approved");
        relevant.insert(create_proof(&app, body).await);
    }
    // Pending; about another feature (relevance 0.4); for another tier (relevance 0).
    create_proof(&app, proof_body("Pending", &["budget_tracker"], "pending")).await;
    create_proof(&app, proof_body("Other", &["savings_goals"], "approved")).await;
    let mut other_tier = proof_body("Pro", &["budget_tracker"], "approved");
    other_tier["tier"] = json!("professional");
    create_proof(&app, other_tier).await;

    let token = app.user("sam");
    let ask = |query: &'static str| {
        let token = token.clone();
        let app = &app;
        async move {
            let path = format!("/v1/users/sam/social-proof{query}");
            let (status, _, body) = app.call("GET", &path, Some(&token), None).await;
            assert_eq!(status, 200, "{body}");
            body["social_proof"].as_array().unwrap().clone()
        }
    };
    // No stated interest: a proof for everyone scores 0.6 < 0.7, so none is shown (or recorded).
    assert_eq!(ask("").await, Vec::<Value>::new());

    // With the interest: (0.5 · 0.6 + 0.25 · 1) / 0.75 = 0.7333.
    let first = ask("?feature=budget_tracker").await;
    assert_eq!(first.len(), 3, "{first:?}");
    for p in &first {
        assert_eq!(p["approval"], "approved");
        close(&p["ranking"]["relevance"], 0.55 / 0.75);
    }
    let first: BTreeSet<String> = first
        .iter()
        .map(|p| p["proof_id"].as_str().unwrap().into())
        .collect();
    assert!(first.is_subset(&relevant), "{first:?}");

    // Right after: only the two not shown within 24 h (the feature is normalised).
    let second: BTreeSet<String> = ask("?feature=Budget-Tracker")
        .await
        .iter()
        .map(|p| p["proof_id"].as_str().unwrap().into())
        .collect();
    assert!(second.is_disjoint(&first), "{second:?} repeats {first:?}");
    assert_eq!(&first | &second, relevant);
    assert_eq!(ask("?feature=budget_tracker").await, Vec::<Value>::new());
}

// ---------------------------------------------------------------------------------------------
// Offers
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn given_an_eligible_budget_user_when_offers_are_made_then_a_48h_code_with_their_deterministic_discount(
) {
    let app = app().await;
    budget_user(&app, "bea").await;
    let (status, body) = create_offer(&app, "bea").await;
    assert_eq!((status, &body["eligible"]), (201, &json!(true)), "{body}");
    assert!(body.get("reasons").is_none(), "{body}");
    let o = &body["offer"];
    let code = o["code"].as_str().unwrap();
    assert_eq!(parse_code(code).as_deref(), Some(code));
    assert!(code.starts_with("TU-") && code.len() == 22, "{code}");
    assert_eq!(
        [
            &o["user_id"],
            &o["current_tier"],
            &o["target_tier"],
            &o["usage_limit"],
            &o["redemptions"]
        ],
        [
            &json!("bea"),
            &json!("budget"),
            &json!("mid"),
            &json!(1),
            &json!(0)
        ]
    );
    assert_eq!(at(&o["ends_at"]) - at(&o["starts_at"]), Duration::hours(48));
    assert_eq!(o["starts_at"], o["created_at"]);

    // budget_to_mid: 20..=40, at 20 + fnv1a64("bea:offer") mod 21.
    let hash = fnv1a64(b"bea:offer");
    let value = 20 + hash % 21;
    let t = &o["terms"];
    assert_eq!(
        [
            &t["offer_type"],
            &t["discount_type"],
            &t["path"],
            &t["discount_value"]
        ],
        [
            &json!("percentage_discount"),
            &json!("percentage"),
            &json!("budget_to_mid"),
            &json!(value)
        ]
    );
    assert_eq!(t["title"], format!("{value}% off Mid"));
    assert_eq!(
        t["chosen_by"],
        json!({"source": "deterministic", "salt": "offer", "hash": format!("{hash:016x}")})
    );

    let (status, again) = create_offer(&app, "bea").await;
    assert_eq!(status, 201, "{again}");
    assert_ne!(again["offer"]["code"], o["code"]);
    assert_eq!(again["offer"]["terms"], o["terms"]);
    let (_, _, listed) = app
        .call("GET", "/v1/users/bea/offers", Some(&app.user("bea")), None)
        .await;
    let listed: BTreeSet<&str> = listed["offers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o["code"].as_str())
        .collect();
    let made = BTreeSet::from([code, again["offer"]["code"].as_str().unwrap()]);
    assert_eq!(listed, made);
}

#[tokio::test]
async fn given_ineligible_users_when_an_offer_is_asked_then_every_failing_rule_is_reported() {
    let app = app().await;
    lapsed_payer(&app, "lou").await;
    let (status, body) = create_offer(&app, "lou").await;
    assert_eq!((status, &body["eligible"]), (200, &json!(false)), "{body}");
    assert!(body.get("offer").is_none(), "{body}");
    let reasons = &body["reasons"];
    assert_eq!(
        codes(reasons),
        ["low_engagement", "low_feature_usage", "not_trial_eligible"]
    );
    let figures: Vec<(&Value, &Value)> = reasons
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (&r["value"], &r["required"]))
        .collect();
    assert_eq!(
        figures,
        [
            (&json!(1.0 / 14.0), &json!(0.5)),
            (&json!(1), &json!(2)),
            (&json!(false), &json!(true)),
        ]
    );
    // Never seen: engagement 0 and no features, but never paid either.
    let (status, body) = create_offer(&app, "ghost").await;
    assert_eq!(status, 200);
    assert_eq!(
        codes(&body["reasons"]),
        ["low_engagement", "low_feature_usage"]
    );
    let (_, _, listed) = app
        .call("GET", "/v1/users/lou/offers", Some(&app.service()), None)
        .await;
    assert_eq!(listed["offers"], json!([]));
}

#[tokio::test]
async fn given_an_offer_when_redeemed_by_its_owner_then_once_only_and_never_by_another_user() {
    let app = app().await;
    budget_user(&app, "owen").await;
    let code = new_offer(&app, "owen").await;
    let (status, ct, _) = redeem(&app, &code, &app.user("mallory")).await;
    assert_eq!((status, ct.as_str()), (403, PROBLEM));
    // Typed in lower case without hyphens: the same code.
    let typed = code.replace('-', "").to_lowercase();
    let (status, _, body) = redeem(&app, &typed, &app.user("owen")).await;
    assert_eq!((status, &body["redeemed"]), (200, &json!(true)), "{body}");
    assert_eq!(
        (&body["offer"]["code"], &body["offer"]["redemptions"]),
        (&json!(code), &json!(1))
    );
    let (status, ct, _) = redeem(&app, &code, &app.user("owen")).await;
    assert_eq!((status, ct.as_str()), (409, PROBLEM));
    let (_, _, listed) = app
        .call(
            "GET",
            "/v1/users/owen/offers",
            Some(&app.user("owen")),
            None,
        )
        .await;
    let stored = &listed["offers"][0];
    assert_eq!(stored["redemptions"], 1, "{listed}");
    assert!(stored["redeemed_at"].is_string(), "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn given_a_fresh_code_when_redeemed_100_times_concurrently_then_exactly_one_succeeds() {
    let app = app().await;
    budget_user(&app, "rita").await;
    let code = new_offer(&app, "rita").await;
    let token = app.user("rita");
    let path = format!("/v1/offers/{code}/redeem");
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let (router, token, path) = (app.router.clone(), token.clone(), path.clone());
            tokio::spawn(async move {
                call_router(router, "POST", &path, Some(&token), None)
                    .await
                    .0
            })
        })
        .collect();
    let mut statuses: BTreeMap<u16, u32> = BTreeMap::new();
    for t in tasks {
        *statuses.entry(t.await.unwrap()).or_default() += 1;
    }
    assert_eq!(statuses, BTreeMap::from([(200, 1), (409, 99)]));
    let stored = app
        .store
        .get_doc::<Offer>(&nkeys::offer(&code), nkeys::DEF)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.counters.get("redemptions"), Some(&1));
}

#[tokio::test]
async fn given_an_offer_past_its_end_when_redeemed_then_410() {
    let app = app().await;
    budget_user(&app, "eve").await;
    let code = new_offer(&app, "eve").await;
    // Move its end into the past, writing the attributes the service writes.
    let v = app
        .store
        .get_doc::<Offer>(&nkeys::offer(&code), nkeys::DEF)
        .await
        .unwrap()
        .unwrap();
    let mut expired = v.value.clone();
    let ended = (Utc::now() - Duration::minutes(1))
        .with_nanosecond(0)
        .unwrap();
    expired.ends_at = ended;
    let write = DocWrite::put(
        nkeys::offer(&code),
        nkeys::DEF.to_string(),
        &expired,
        v.version + 1,
        Expect::Version(v.version),
    )
    .unwrap()
    .with_number("usage_limit", 1)
    .with_number("redemptions", 0)
    .with("user_id", "eve");
    assert_eq!(
        app.store.write_docs(vec![write]).await.unwrap(),
        CommitOutcome::Committed
    );

    let (status, ct, problem) = redeem(&app, &code, &app.user("eve")).await;
    assert_eq!((status, ct.as_str()), (410, PROBLEM), "{problem}");
    assert_eq!(
        problem["detail"],
        format!("this offer expired at {}", ended.to_rfc3339())
    );
    // Another user still gets 403 first.
    let (status, _, _) = redeem(&app, &code, &app.user("mallory")).await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn given_the_daily_cap_reached_when_another_offer_or_prompt_is_due_then_refused_with_daily_cap(
) {
    let app = app().await;
    budget_user(&app, "cap").await;
    // Default cap: 3 nudges per local day (UTC here).
    for _ in 0..3 {
        new_offer(&app, "cap").await;
    }
    let (status, body) = create_offer(&app, "cap").await;
    assert_eq!((status, &body["eligible"]), (200, &json!(false)), "{body}");
    let reasons = &body["reasons"];
    assert_eq!(codes(reasons), ["daily_cap"]);
    assert_eq!(
        (&reasons[0]["value"], &reasons[0]["required"]),
        (&json!(3), &json!("< 3"))
    );

    let (status, _, prompt) = app
        .call(
            "POST",
            "/v1/users/cap/prompts/evaluate",
            Some(&app.service()),
            None,
        )
        .await;
    assert_eq!(
        (status, &prompt["created"]),
        (200, &json!(false)),
        "{prompt}"
    );
    assert_eq!(codes(&prompt["reasons"]), ["daily_cap"]);
    let (_, _, listed) = app
        .call("GET", "/v1/users/cap/offers", Some(&app.service()), None)
        .await;
    assert_eq!(listed["offers"].as_array().map(Vec::len), Some(3));
}

// ---------------------------------------------------------------------------------------------
// Optimization analytics
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn given_a_user_with_a_prompt_and_two_offers_when_optimization_is_read_then_the_figures_and_rules_match(
) {
    let app = app().await;
    reference_user(&app, "opal").await;
    let svc = app.service();
    let (status, _, prompt) = app
        .call("POST", "/v1/users/opal/prompts/evaluate", Some(&svc), None)
        .await;
    assert_eq!(status, 201, "{prompt}");
    let codes_made = BTreeSet::from([new_offer(&app, "opal").await, new_offer(&app, "opal").await]);

    let (status, _, r) = app
        .call(
            "GET",
            "/v1/users/opal/optimization",
            Some(&app.user("opal")),
            None,
        )
        .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(
        [&r["user_id"], &r["segment"], &r["window_days"]],
        [&json!("opal"), &json!("unknown"), &json!(90)]
    );
    assert_eq!(r["usage_prompts"], json!([prompt["prompt"]]));
    let offered: BTreeSet<String> = r["offers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["code"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(offered, codes_made);
    let empty = json!([]);
    assert_eq!(
        [
            &r["trial_reminders"],
            &r["social_proof_shown"],
            &r["experiments"]
        ],
        [&empty, &empty, &empty]
    );

    let u = &r["user_metrics"];
    assert_eq!(
        [
            &u["prompts_created"],
            &u["offers_created"],
            &u["offers_redeemed"],
            &u["offers_expired"]
        ],
        [&json!(1), &json!(2), &json!(0), &json!(0)]
    );
    assert_eq!(u["engagement_score"], json!(13.0 / 14.0));
    assert_eq!(u["value_demonstrated"], json!(0.6));
    assert_eq!(
        (&u["trialing"], &u["converted"]),
        (&json!(false), &json!(false))
    );

    // 14 active user-days in the segment over 90 days: one user on average.
    let s = &r["segment_counts"];
    assert_eq!(
        (&s["active_user_days"], &s["active_users_estimate"]),
        (&json!(14), &json!(1))
    );

    // Every denominator is 0: the rates are null (never NaN), with their counts.
    let m = &r["conversion_metrics"];
    let unknown = json!({"numerator": 0, "denominator": 0, "value": null});
    for rate in [
        "trial_to_paid",
        "prompt_click_through",
        "prompt_conversion",
        "offer_acceptance",
        "social_proof_effectiveness",
        "churn_rate",
    ] {
        assert_eq!(m[rate], unknown, "{rate}");
    }
    assert_eq!(
        (&m["experiment_lift"], &m["monthly_churn"]),
        (&Value::Null, &Value::Null)
    );
    assert_eq!(
        (&m["arpu_minor_by_currency"], &m["ltv_minor_by_currency"]),
        (&json!({}), &json!({}))
    );

    // value 0.6 ≥ 0.6 and not converted; 2 offers made, none redeemed.
    let recs = &r["recommendations"];
    assert_eq!(codes(recs), ["lead_with_value", "offer_resistance"]);
    let cited: Vec<(&Value, f64, f64)> = recs
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                &x["figure"],
                x["value"].as_f64().unwrap(),
                x["threshold"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        cited,
        [
            (&json!("user.value_demonstrated"), 0.6, 0.6),
            (&json!("user.offers_created"), 2.0, 2.0),
        ]
    );
    assert_eq!(
        recs[1]["message"],
        "2 offers made, none redeemed: test different offer types and messaging."
    );
}

#[tokio::test]
async fn given_a_user_active_one_day_in_fourteen_when_optimization_is_read_then_low_engagement_is_recommended(
) {
    let app = app().await;
    lapsed_payer(&app, "lou").await;
    let (status, _, r) = app
        .call(
            "GET",
            "/v1/users/lou/optimization",
            Some(&app.admin()),
            None,
        )
        .await;
    assert_eq!(status, 200, "{r}");
    let recs = &r["recommendations"];
    assert_eq!(codes(recs), ["low_engagement"]);
    assert_eq!(
        [&recs[0]["figure"], &recs[0]["value"], &recs[0]["threshold"]],
        [
            &json!("user.engagement_score"),
            &json!(1.0 / 14.0),
            &json!(0.3)
        ]
    );
    assert_eq!(
        recs[0]["message"],
        "Engagement is low (0.07 < 0.30): increase engagement through personalized content before asking for an upgrade."
    );
    assert_eq!(r["user_metrics"]["converted"], true);
    // 999 minor units from one active user over 90 days: 999 · 30 / 90 / 1 = 333 per 30 days;
    // no payer base, so churn and LTV are unknown.
    let m = &r["conversion_metrics"];
    assert_eq!(m["arpu_minor_by_currency"], json!({"USD": 333.0}));
    assert_eq!(m["ltv_minor_by_currency"], json!({"USD": null}));
    assert_eq!(m["churn_rate"]["value"], Value::Null);
}
