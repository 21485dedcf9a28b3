//! Handler flows over real profiles: every profile is folded from fixture events with
//! `shared::ingest::fold_events` (as worker-events stores it), then the routes are driven with
//! tokens of each role. Sections: roles; validation; trial planning; usage-based prompts;
//! social proof; offers (terms, single use, the 100-way race, 403, 410, the daily cap);
//! optimization analytics.
//!
//! Times are built from today's UTC date so that due times, engagement scores and windows are
//! exact; floats that are not exact sums are compared within 1e-12.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, NaiveTime, Timelike, Utc};
use serde_json::{json, Value};
use shared::events::Event;
use shared::ingest::CommitOutcome;
use shared::nudges::offers::{fnv1a64, parse_code, Offer};
use shared::store::{nkeys, DocWrite, Expect};

use crate::support::{app, call_router, TestApp};

const PROBLEM: &str = "application/problem+json";
const NO_CODE: &str = "TU-0000-0000-0000-0000";

/// `has!(actual, {..})`: every field of the JSON object has that value in `actual`.
macro_rules! has {
    ($actual:expr, $($expected:tt)+) => {
        assert_fields(&$actual, json!($($expected)+))
    };
}

// ---------------------------------------------------------------------------------------------
// Fixtures and helpers
// ---------------------------------------------------------------------------------------------

/// `days` days before today (UTC) at `hour:minute` (negative: after today).
fn days_ago(days: i64, hour: u32, minute: u32) -> DateTime<Utc> {
    let time = NaiveTime::from_hms_opt(hour, minute, 0).unwrap();
    let day = Utc::now().date_naive() - Duration::days(days);
    day.and_time(time).and_utc()
}

/// The current second (a trial's id is its start in whole seconds).
fn this_second() -> DateTime<Utc> {
    Utc::now().with_nanosecond(0).unwrap()
}

/// An event in its queue form (`type` and `properties`), as clients send it.
fn event(user: &str, n: usize, at: DateTime<Utc>, kind: &str, properties: Value) -> Event {
    let e = json!({
        "event_id": format!("{user}-e{n}"), "user_id": user, "timestamp": at, "type": kind,
        "properties": properties,
    });
    serde_json::from_value(e).unwrap()
}

fn used(feature: &str, duration_ms: u64) -> (&'static str, Value) {
    let properties = json!({"feature": feature, "duration_ms": duration_ms});
    ("feature_used", properties)
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
    let features = uses.iter().flat_map(|&(f, n)| std::iter::repeat_n(f, n));
    let at = |i: usize| days_ago(1 + (i % 14) as i64, 10, (i / 14) as u32);
    let uses = features
        .enumerate()
        .map(|(i, f)| (i, at(i), used(f, 600_000)));
    uses.map(|(i, at, (kind, p))| event(user, i, at, kind, p))
        .collect()
}

/// The reference usage on `free` (no tier named): a prompt free → mid is due, and offers
/// (free → budget).
async fn reference_user(app: &TestApp, user: &str) {
    app.fold(reference_usage(user)).await;
}

/// The reference usage on `budget` (named by identify before any use): eligible for offers
/// (engagement 13/14 ≥ 0.5, 3 features ≥ 2, never paid) on the budget → mid path.
async fn budget_user(app: &TestApp, user: &str) {
    let mut events = reference_usage(user);
    let identify = json!({"tier": "budget", "custom": {}});
    events.push(event(user, 100, days_ago(14, 9, 0), "identify", identify));
    app.fold(events).await;
}

/// Active on one day (yesterday) with one feature; converted from a trial and paid that day:
/// engagement 1/14, not trial eligible any more. `extra`
/// events follow on the same day.
async fn lapsed_payer(app: &TestApp, user: &str, extra: Vec<(&str, Value)>) {
    let payment = json!({"amount_minor": 999, "currency": "USD"});
    let started = json!({"plan": "mid_monthly", "tier": "mid"});
    let converted = json!({"plan": "mid_monthly", "tier": "mid", "amount": 9.99,
                           "currency": "USD", "interval": "month"});
    let mut bodies = vec![
        used("budget_tracker", 60_000),
        ("subscription_trial_started", started),
        ("subscription_trial_converted", converted),
        ("payment_succeeded", payment),
    ];
    bodies.extend(extra);
    let events = bodies.into_iter().enumerate();
    let events = events.map(|(i, (kind, p))| event(user, i, days_ago(1, 10, i as u32), kind, p));
    app.fold(events.collect()).await;
}

/// One use yesterday: early in a trial the usage ratio is far above `high`, the value shown
/// (0.04) is below 0.6 and there is no earlier week to drop from, so only the expiry
/// reminders are planned, none of the behavioural ones.
async fn light_user(app: &TestApp, user: &str) {
    let (kind, properties) = used("budget_tracker", 60_000);
    let e = event(user, 0, days_ago(1, 10, 0), kind, properties);
    app.fold(vec![e]).await;
}

/// A trial end at 15:00 UTC three days from today.
fn trial_end() -> DateTime<Utc> {
    days_ago(-3, 15, 0)
}

fn at(v: &Value) -> DateTime<Utc> {
    let text = v.as_str().unwrap_or_else(|| panic!("not a time: {v}"));
    text.parse().unwrap()
}

fn close(v: &Value, expected: f64) {
    let actual = v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"));
    assert!((actual - expected).abs() < 1e-12, "{actual} != {expected}");
}

fn assert_fields(actual: &Value, expected: Value) {
    for (key, value) in expected.as_object().unwrap() {
        assert_eq!(&actual[key], value, "{key} in {actual}");
    }
}

/// The `code`s of a list of reasons or recommendations, joined by spaces.
fn codes(list: &Value) -> String {
    let items = list.as_array().map(Vec::as_slice).unwrap_or_default();
    let codes: Vec<&str> = items.iter().filter_map(|r| r["code"].as_str()).collect();
    codes.join(" ")
}

fn ids(list: &Value, key: &str) -> BTreeSet<String> {
    let items = list.as_array().unwrap();
    items
        .iter()
        .map(|x| x[key].as_str().unwrap().into())
        .collect()
}

/// A refused request: asserts problem+json and returns the status and the field paths
/// joined by spaces.
async fn refused(
    app: &TestApp,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, String) {
    let (status, ct, problem) = app.call(method, path, token, body).await;
    assert_eq!(ct, PROBLEM, "{method} {path}: {status} {problem}");
    let errors = problem["errors"].as_array().cloned().unwrap_or_default();
    let fields: Vec<&str> = errors
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    (status, fields.join(" "))
}

fn proof_body(title: &str, tags: &[&str], approval: &str) -> Value {
    json!({
        "proof_type": "testimonial", "title": title, "content": "It paid for itself in a month.",
        "author": "Ana", "tags": tags, "approval": approval,
    })
}

async fn create_proof(app: &TestApp, body: Value) -> String {
    let (status, p) = app.post("/v1/social-proof", &app.admin(), Some(body)).await;
    assert_eq!(status, 201, "{p}");
    p["proof_id"].as_str().unwrap().to_string()
}

async fn create_offer(app: &TestApp, user: &str) -> (u16, Value) {
    let path = format!("/v1/users/{user}/offers");
    app.post(&path, &app.service(), None).await
}

/// A new offer's code (the user must be eligible).
async fn new_offer(app: &TestApp, user: &str) -> String {
    let (status, body) = create_offer(app, user).await;
    assert_eq!(status, 201, "{body}");
    body["offer"]["code"].as_str().unwrap().to_string()
}

async fn redeem(app: &TestApp, code: &str, token: &str) -> (u16, Value) {
    let path = format!("/v1/offers/{code}/redeem");
    app.post(&path, token, None).await
}

async fn evaluate(app: &TestApp, user: &str, token: &str) -> (u16, Value) {
    let path = format!("/v1/users/{user}/prompts/evaluate");
    app.post(&path, token, None).await
}

// ---------------------------------------------------------------------------------------------
// Roles
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn given_a_user_token_when_reading_nudges_then_only_their_own_are_served() {
    let app = app().await;
    let alice = app.user("alice");
    for what in "reminders prompts offers social-proof optimization".split(' ') {
        let theirs = format!("/v1/users/bob/{what}");
        let (status, _) = refused(&app, "GET", &theirs, Some(&alice), None).await;
        assert_eq!(status, 403, "{what}");
        for token in [app.admin(), app.service()] {
            assert_eq!(app.get(&theirs, &token).await.0, 200, "{what}");
        }
        let (status, body) = app.get(&format!("/v1/users/alice/{what}"), &alice).await;
        assert_eq!(status, 200, "{what}: {body}");
        has!(body, {"user_id": "alice"});
    }
    let (_, body) = app.get("/v1/users/alice/reminders", &alice).await;
    assert_eq!(body, json!({"user_id": "alice", "trials": []}));

    assert_eq!(evaluate(&app, "bob", &alice).await.0, 403);
    let (status, body) = evaluate(&app, "alice", &alice).await;
    assert_eq!(status, 200, "{body}");
    has!(body, {"created": false});
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
            let (status, _) = refused(&app, method, path, Some(&token), body).await;
            assert_eq!(status, 403, "{method} {path}");
        }
    }
    let admin = app.admin();
    let one = format!("/v1/social-proof/{}", create_proof(&app, body).await);
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
    let plan = json!({"started_at": Utc::now(), "trial_ends_at": trial_end()});
    for path in ["/v1/trials/alice/reminders", "/v1/users/alice/offers"] {
        let (status, _) = refused(&app, "POST", path, Some(&alice), Some(plan.clone())).await;
        assert_eq!(status, 403, "{path}");
    }
    for (token, user) in [(app.service(), "alice"), (app.admin(), "carol")] {
        let path = format!("/v1/trials/{user}/reminders");
        let (status, body) = app.post(&path, &token, Some(plan.clone())).await;
        assert_eq!(status, 201, "{body}");
        let path = format!("/v1/users/{user}/offers");
        let (status, body) = app.post(&path, &token, None).await;
        assert_eq!(status, 200, "{body}");
        has!(body, {"eligible": false});
    }
    // A user token redeems only for itself.
    let (path, body) = (
        format!("/v1/offers/{NO_CODE}/redeem"),
        json!({"user_id": "bob"}),
    );
    assert_eq!(app.post(&path, &alice, Some(body)).await.0, 403);
}

#[tokio::test]
async fn given_no_token_or_a_forged_one_when_calling_then_401() {
    let app = app().await;
    let redeem = format!("/v1/offers/{NO_CODE}/redeem");
    for (method, path) in [
        ("GET", "/v1/users/alice/reminders"),
        ("POST", "/v1/trials/alice/reminders"),
        ("POST", "/v1/users/alice/offers"),
        ("GET", "/v1/social-proof"),
        ("POST", redeem.as_str()),
    ] {
        for token in [None, Some("not-a-jwt")] {
            let (status, _) = refused(&app, method, path, token, None).await;
            assert_eq!(status, 401, "{method} {path} {token:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn given_no_trial_on_the_profile_when_planning_without_its_times_then_400_names_each() {
    let app = app().await;
    let svc = app.service();
    let path = "/v1/trials/nova/reminders";
    let (_, _, problem) = app.call("POST", path, Some(&svc), None).await;
    let message = "is required: the user's profile has no trial";
    let expected = json!([
        {"field": "started_at", "message": message}, {"field": "trial_ends_at", "message": message},
    ]);
    assert_eq!(problem["errors"], expected);
    let (now, h) = (Utc::now(), Duration::hours);
    for (body, field) in [
        (json!({"started_at": now}), "trial_ends_at"),
        (json!({"trial_ends_at": now + h(72)}), "started_at"),
        // Already over; ending before it starts.
        (
            json!({"started_at": now, "trial_ends_at": now - h(1)}),
            "trial_ends_at",
        ),
        (
            json!({"started_at": now + h(20), "trial_ends_at": now + h(10)}),
            "trial_ends_at",
        ),
        // Far-off times are typos: a start next week, a trial of two years.
        (
            json!({"started_at": now + h(24 * 7), "trial_ends_at": now + h(24 * 21)}),
            "started_at",
        ),
        (
            json!({"started_at": now, "trial_ends_at": now + h(24 * 730)}),
            "trial_ends_at",
        ),
    ] {
        let refusal = refused(&app, "POST", path, Some(&svc), Some(body)).await;
        assert_eq!(refusal, (400, field.to_string()));
    }
    // The refused requests planned nothing.
    let (_, body) = app.get("/v1/users/nova/reminders", &svc).await;
    has!(body, {"trials": []});
}

#[tokio::test]
async fn given_an_unknown_or_bad_body_field_when_posted_then_400_names_it() {
    let app = app().await;
    let svc = app.service();
    let (trial, offers) = ("/v1/trials/nova/reminders", "/v1/users/nova/offers");
    let redeem = format!("/v1/offers/{NO_CODE}/redeem");
    let plan = json!({"started_at": Utc::now(), "trial_ends_at": trial_end(), "colour": 1});
    for (path, body, field) in [
        (trial, plan, "colour"),
        (offers, json!({"target_tier": "mid", "colour": 1}), "colour"),
        (offers, json!({"offer_type": "half_price"}), "offer_type"),
        (
            redeem.as_str(),
            json!({"user_id": "nova", "colour": 1}),
            "colour",
        ),
        (redeem.as_str(), json!({}), "user_id"), // a service names the user it redeems for
    ] {
        let refusal = refused(&app, "POST", path, Some(&svc), Some(body)).await;
        assert_eq!(refusal, (400, field.to_string()), "{path}");
    }
}

#[tokio::test]
async fn given_a_social_proof_with_several_bad_fields_when_created_then_each_is_listed() {
    let app = app().await;
    let admin = app.admin();
    let body = json!({
        "proof_type": "video", "title": "   ", "tags": ["Bad Tag", "ok"], "approval": "maybe",
        "colour": "red",
    });
    let refusal = refused(&app, "POST", "/v1/social-proof", Some(&admin), Some(body)).await;
    let expected = "colour proof_type tags[0] title approval content author";
    assert_eq!(refusal, (400, expected.to_string()));
    let (_, list) = app.get("/v1/social-proof", &admin).await;
    has!(list, {"proofs": []}); // nothing was stored

    let id = create_proof(&app, proof_body("Saved $300", &[], "pending")).await;
    let path = format!("/v1/social-proof/{id}");
    for (patch, field) in [
        (json!({}), "body"),
        (json!({"title": null}), "title"),
        (json!({"tier": "a#b"}), "tier"),
    ] {
        let refusal = refused(&app, "PATCH", &path, Some(&admin), Some(patch)).await;
        assert_eq!(refusal, (400, field.to_string()));
    }
}

#[tokio::test]
async fn given_an_unknown_query_parameter_when_reading_social_proof_then_400_names_it() {
    let app = app().await;
    let token = app.user("sam");
    let path = "/v1/users/sam/social-proof?colour=red&feature=";
    let refusal = refused(&app, "GET", path, Some(&token), None).await;
    assert_eq!(refusal, (400, "colour feature".to_string()));
}

#[tokio::test]
async fn given_a_malformed_or_unknown_offer_code_when_redeemed_then_400_or_404() {
    let app = app().await;
    let token = app.user("sam");
    let path = "/v1/offers/not-a-code/redeem";
    let refusal = refused(&app, "POST", path, Some(&token), None).await;
    assert_eq!(refusal, (400, "code".to_string()));
    let (status, problem) = redeem(&app, NO_CODE, &token).await;
    assert_eq!(status, 404);
    has!(problem, {"detail": format!("no offer '{NO_CODE}'")});
}

// ---------------------------------------------------------------------------------------------
// Trial planning
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn given_a_trial_ending_in_three_days_when_planned_then_five_expiry_reminders_outside_quiet_hours(
) {
    let app = app().await;
    light_user(&app, "tina").await;
    let (svc, start, end) = (app.service(), this_second(), trial_end());
    let body =
        json!({"started_at": start, "trial_ends_at": end, "plan": "pro_monthly", "tier": "mid"});
    let path = "/v1/trials/tina/reminders";
    let (status, first) = app.post(path, &svc, Some(body.clone())).await;
    assert_eq!(status, 201, "{first}");
    let trial_id = start.format("%Y%m%dT%H%M%SZ").to_string();
    has!(first["trial"], {"trial_id": trial_id, "state": "active", "sent": 0, "started_at": start, "ends_at": end});

    // No timezone on the profile: UTC, quiet 22:00-08:00; end − 12 h is 03:00, moved to 08:00.
    let h = Duration::hours;
    let expected = BTreeMap::from([
        (24, (end - h(24), end - h(24))),
        (12, (end - h(12), end - h(7))),
        (6, (end - h(6), end - h(6))),
        (2, (end - h(2), end - h(2))),
        (1, (end - h(1), end - h(1))),
    ]);
    let variables = json!({"feature": "budget_tracker", "plan": "pro_monthly", "tier": "mid", "value_used": "4%"});
    let mut planned = BTreeMap::new();
    for r in first["reminders"].as_array().unwrap() {
        let offset = r["offset_hours"].as_u64().unwrap();
        has!(r, {
            "reminder_id": format!("{trial_id}:trial_expiry:{offset}h"), "reminder_type": "trial_expiry",
            "status": "planned", "priority": 10, "reason": null, "variables": variables,
        });
        planned.insert(offset, (at(&r["planned_for"]), at(&r["due_at"])));
    }
    assert_eq!(planned, expected, "{first}");

    // The same request again: the same trial and reminders, nothing added.
    assert_eq!(app.post(path, &svc, Some(body)).await, (201, first.clone()));
    let (status, listed) = app.get("/v1/users/tina/reminders", &app.user("tina")).await;
    assert_eq!(status, 200);
    let trials = listed["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 1, "{listed}");
    assert_eq!(trials[0]["trial"], first["trial"]);
    let reminders = trials[0]["reminders"].as_array().unwrap();
    let offsets: Vec<u64> = reminders
        .iter()
        .map(|r| r["offset_hours"].as_u64().unwrap())
        .collect();
    assert_eq!(offsets, [24, 12, 6, 2, 1], "in due order");
    assert!(
        reminders.iter().all(|r| r["status"] == "planned"),
        "{listed}"
    );
}

#[tokio::test]
async fn given_a_trial_on_the_profile_when_planned_without_a_body_then_its_times_plan_and_tier_are_used(
) {
    let app = app().await;
    let (start, end) = (this_second() - Duration::hours(1), trial_end());
    let started = json!({"plan": "pro_monthly", "tier": "mid", "trial_ends_at": end});
    let e = event("tom", 0, start, "subscription_trial_started", started);
    app.fold(vec![e]).await;
    let (status, view) = app
        .post("/v1/trials/tom/reminders", &app.service(), None)
        .await;
    assert_eq!(status, 201, "{view}");
    let trial_id = start.format("%Y%m%dT%H%M%SZ").to_string();
    has!(view["trial"], {"trial_id": trial_id, "plan": "pro_monthly", "tier": "mid", "started_at": start, "ends_at": end});
    // An hour in without any use: usage ratio 0 < 0.3, so a low-usage reminder joins the five.
    let reminders = view["reminders"].as_array().unwrap();
    let kind = |r: &Value| format!("{}:{}", r["reminder_type"], r["usage_level"]);
    let mut kinds: Vec<String> = reminders.iter().map(kind).collect();
    kinds.sort();
    let expiry = r#""trial_expiry":null"#;
    let expected = [
        r#""feature_usage":"low""#,
        expiry,
        expiry,
        expiry,
        expiry,
        expiry,
    ];
    assert_eq!(kinds, expected);
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
    let (status, body) = evaluate(&app, "pat", &token).await;
    assert_eq!(status, 201, "{body}");
    has!(body, {"created": true, "reasons": []});
    let a = &body["analysis"];
    has!(a, {
        "total_usage": 19, "active_days": 14, "features_used": 3, "tracked_features": 5,
        "value_demonstrated": 0.6, // (1 + 1 + 1 + 0 + 0) / 5, exactly
        "thresholds_met": ["budget_tracker", "expense_categorizer", "savings_goals"],
    });
    close(&a["confidence"], 0.88); // 0.4 · 1 + 0.3 · 1 + 0.3 · 0.6
    let p = &body["prompt"];
    // Ratios 8/5, 6/3, 5/2: savings_goals triggers; mid unlocks it and is above free.
    has!(p, {
        "trigger_feature": "savings_goals", "usage": 5, "usage_threshold": 2,
        "current_tier": "free", "target_tier": "mid", "value_demonstrated": 0.6,
        "reason": "savings_goals was used 5 times (threshold 2); value demonstrated 60%, confidence 88%: recommend mid",
        "delivered_via": "api", "outbox_pending": false,
    });
    close(&p["confidence"], 0.88);
    has!(p["design"], {"title": "Unlock the full Savings Goals with Mid", "source": "default"});

    // Within the cooldown (7 days): not created, with the reason.
    let (status, second) = evaluate(&app, "pat", &token).await;
    assert_eq!(status, 200, "{second}");
    has!(second, {"created": false});
    assert_eq!(codes(&second["reasons"]), "recently_prompted");
    assert!(second.get("prompt").is_none(), "{second}");

    let (status, listed) = app.get("/v1/users/pat/prompts", &token).await;
    assert_eq!(status, 200);
    has!(listed, {"prompts": [p]});
}

#[tokio::test]
async fn given_no_usage_when_evaluated_then_no_prompt_and_the_usage_reasons() {
    let app = app().await;
    let svc = app.service();
    let (status, body) = evaluate(&app, "idle", &svc).await;
    assert_eq!(status, 200, "{body}");
    has!(body, {"created": false});
    let reasons = &body["reasons"];
    let expected = "no_threshold_met value_below_threshold confidence_below_threshold";
    assert_eq!(codes(reasons), expected);
    has!(reasons[1], {"value": 0.0, "threshold": 0.6});
    has!(reasons[2], {"value": 0.0, "threshold": 0.7});
    let (_, listed) = app.get("/v1/users/idle/prompts", &svc).await;
    has!(listed, {"prompts": []});
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
    let (status, created) = app.post("/v1/social-proof", &admin, Some(body)).await;
    assert_eq!(status, 201, "{created}");
    let id = created["proof_id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 32, "{id}");
    has!(created, {
        "approval": "pending", "title": "Saved $300 in a month", "tier": "free", "segment": null,
        "tags": ["budget_tracker", "save_money"], "version": 1, "impressions": 0, "conversions": 0,
    });
    let path = format!("/v1/social-proof/{id}");
    assert_eq!(app.get(&path, &admin).await, (200, created.clone()));

    let patch = json!({"approval": "approved", "tier": null});
    let (status, _, patched) = app.call("PATCH", &path, Some(&admin), Some(patch)).await;
    assert_eq!(status, 200, "{patched}");
    has!(patched, {
        "approval": "approved", "tier": null, "version": 2, "title": created["title"],
        "created_at": created["created_at"],
    });
    assert!(at(&patched["updated_at"]) >= at(&created["updated_at"]));
    assert_eq!(
        app.get("/v1/social-proof", &admin).await,
        (200, json!({"proofs": [patched]}))
    );

    assert_eq!(app.call("DELETE", &path, Some(&admin), None).await.0, 204);
    for method in ["GET", "DELETE"] {
        let (status, _) = refused(&app, method, &path, Some(&admin), None).await;
        assert_eq!(status, 404, "{method} after the delete");
    }
    assert_eq!(
        app.get("/v1/social-proof", &admin).await.1,
        json!({"proofs": []})
    );
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
        let (app, token) = (&app, token.clone());
        async move {
            let path = format!("/v1/users/sam/social-proof{query}");
            let (status, body) = app.get(&path, &token).await;
            assert_eq!(status, 200, "{body}");
            body["social_proof"].clone()
        }
    };
    // No stated interest: a proof for everyone scores 0.6 < 0.7; none is shown (or remembered).
    assert_eq!(ask("").await, json!([]));

    // With the interest: (0.5 · 0.6 + 0.25 · 1) / 0.75 = 0.7333.
    let first = ask("?feature=budget_tracker").await;
    assert_eq!(first.as_array().map(Vec::len), Some(3), "{first}");
    for p in first.as_array().unwrap() {
        assert_eq!(p["approval"], "approved");
        close(&p["ranking"]["relevance"], 0.55 / 0.75);
    }
    let first = ids(&first, "proof_id");
    assert!(first.is_subset(&relevant), "{first:?}");

    // Right after: only the two not shown within 24 h (the feature is normalised).
    let second = ids(&ask("?feature=Budget-Tracker").await, "proof_id");
    assert!(second.is_disjoint(&first), "{second:?} repeats {first:?}");
    assert_eq!(&first | &second, relevant);
    assert_eq!(ask("?feature=budget_tracker").await, json!([]));
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
    assert_eq!(status, 201, "{body}");
    has!(body, {"eligible": true, "reasons": null});
    let o = &body["offer"];
    let code = o["code"].as_str().unwrap();
    assert_eq!(parse_code(code).as_deref(), Some(code));
    assert!(code.starts_with("TU-") && code.len() == 22, "{code}");
    has!(o, {
        "user_id": "bea", "current_tier": "budget", "target_tier": "mid", "usage_limit": 1,
        "redemptions": 0, "created_at": o["starts_at"],
    });
    assert_eq!(at(&o["ends_at"]) - at(&o["starts_at"]), Duration::hours(48));

    // budget_to_mid: 20..=40, at 20 + fnv1a64("bea:offer") mod 21.
    let hash = fnv1a64(b"bea:offer");
    let value = 20 + hash % 21;
    has!(o["terms"], {
        "offer_type": "percentage_discount", "discount_type": "percentage", "path": "budget_to_mid",
        "discount_value": value, "title": format!("{value}% off Mid"),
        "chosen_by": {"source": "deterministic", "salt": "offer", "hash": format!("{hash:016x}")},
    });

    let (status, again) = create_offer(&app, "bea").await;
    assert_eq!(status, 201, "{again}");
    assert_ne!(again["offer"]["code"], o["code"]);
    assert_eq!(again["offer"]["terms"], o["terms"]);
    let (_, listed) = app.get("/v1/users/bea/offers", &app.user("bea")).await;
    let made = ids(&json!([o, again["offer"]]), "code");
    assert_eq!(ids(&listed["offers"], "code"), made);
}

#[tokio::test]
async fn given_ineligible_users_when_an_offer_is_asked_then_every_failing_rule_is_reported() {
    let app = app().await;
    lapsed_payer(&app, "lou", vec![]).await;
    let (status, body) = create_offer(&app, "lou").await;
    assert_eq!(status, 200, "{body}");
    has!(body, {"eligible": false, "offer": null});
    let reasons = &body["reasons"];
    let expected = "low_engagement low_feature_usage not_trial_eligible";
    assert_eq!(codes(reasons), expected);
    has!(reasons[0], {"value": 1.0 / 14.0, "required": 0.5});
    has!(reasons[1], {"value": 1, "required": 2});
    has!(reasons[2], {"value": false, "required": true});
    // Never seen: engagement 0 and no features, but never paid either.
    let (status, body) = create_offer(&app, "ghost").await;
    assert_eq!(status, 200);
    assert_eq!(codes(&body["reasons"]), "low_engagement low_feature_usage");
    let (_, listed) = app.get("/v1/users/lou/offers", &app.service()).await;
    has!(listed, {"offers": []});
}

#[tokio::test]
async fn given_an_offer_when_redeemed_by_its_owner_then_once_only_and_never_by_another_user() {
    let app = app().await;
    budget_user(&app, "owen").await;
    let code = new_offer(&app, "owen").await;
    let (owner, mallory) = (app.user("owen"), app.user("mallory"));
    let path = format!("/v1/offers/{code}/redeem");
    let (status, _) = refused(&app, "POST", &path, Some(&mallory), None).await;
    assert_eq!(status, 403);
    // Typed in lower case without hyphens: the same code.
    let (status, body) = redeem(&app, &code.replace('-', "").to_lowercase(), &owner).await;
    assert_eq!(status, 200, "{body}");
    has!(body, {"redeemed": true});
    has!(body["offer"], {"code": code, "redemptions": 1});
    let (status, _) = refused(&app, "POST", &path, Some(&owner), None).await;
    assert_eq!(status, 409);
    let (_, listed) = app.get("/v1/users/owen/offers", &owner).await;
    has!(listed["offers"][0], {"redemptions": 1});
    assert!(listed["offers"][0]["redeemed_at"].is_string(), "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn given_a_fresh_code_when_redeemed_100_times_concurrently_then_exactly_one_succeeds() {
    let app = app().await;
    budget_user(&app, "rita").await;
    let code = new_offer(&app, "rita").await;
    let (token, path) = (app.user("rita"), format!("/v1/offers/{code}/redeem"));
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let (router, token, path) = (app.router.clone(), token.clone(), path.clone());
            tokio::spawn(
                async move { call_router(router, "POST", &path, Some(&token), None).await },
            )
        })
        .collect();
    let mut statuses: BTreeMap<u16, u32> = BTreeMap::new();
    for t in tasks {
        *statuses.entry(t.await.unwrap().0).or_default() += 1;
    }
    assert_eq!(statuses, BTreeMap::from([(200, 1), (409, 99)]));
    let key = nkeys::offer(&code);
    let stored = app
        .store
        .get_doc::<Offer>(&key, nkeys::DEF)
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
    let (pk, sk) = (nkeys::offer(&code), nkeys::DEF.to_string());
    let v = app.store.get_doc::<Offer>(&pk, &sk).await.unwrap().unwrap();
    let mut expired = v.value.clone();
    expired.ends_at = this_second() - Duration::minutes(1);
    let write = DocWrite::put(pk, sk, &expired, v.version + 1, Expect::Version(v.version))
        .unwrap()
        .with_number("usage_limit", 1)
        .with_number("redemptions", 0)
        .with("user_id", "eve");
    let outcome = app.store.write_docs(vec![write]).await.unwrap();
    assert_eq!(outcome, CommitOutcome::Committed);

    let (status, problem) = redeem(&app, &code, &app.user("eve")).await;
    assert_eq!(status, 410, "{problem}");
    let detail = format!("this offer expired at {}", expired.ends_at.to_rfc3339());
    has!(problem, {"detail": detail});
    // Another user's token is still refused first.
    assert_eq!(redeem(&app, &code, &app.user("mallory")).await.0, 403);
}

#[tokio::test]
async fn given_the_daily_cap_reached_when_another_offer_or_prompt_is_due_then_refused_with_daily_cap(
) {
    let app = app().await;
    budget_user(&app, "cap").await;
    // The default cap: 3 nudges per local day (UTC here).
    for _ in 0..3 {
        new_offer(&app, "cap").await;
    }
    let (status, body) = create_offer(&app, "cap").await;
    assert_eq!(status, 200, "{body}");
    has!(body, {"eligible": false, "offer": null});
    assert_eq!(codes(&body["reasons"]), "daily_cap");
    has!(body["reasons"][0], {"value": 3, "required": "< 3"});

    let svc = app.service();
    let (status, prompt) = evaluate(&app, "cap", &svc).await;
    assert_eq!(status, 200, "{prompt}");
    has!(prompt, {"created": false});
    assert_eq!(codes(&prompt["reasons"]), "daily_cap");
    let (_, listed) = app.get("/v1/users/cap/offers", &svc).await;
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
    let (status, prompt) = evaluate(&app, "opal", &app.service()).await;
    assert_eq!(status, 201, "{prompt}");
    let made = BTreeSet::from([new_offer(&app, "opal").await, new_offer(&app, "opal").await]);

    let (status, r) = app
        .get("/v1/users/opal/optimization", &app.user("opal"))
        .await;
    assert_eq!(status, 200, "{r}");
    has!(r, {
        "user_id": "opal", "segment": "unknown", "window_days": 90, "usage_prompts": [prompt["prompt"]],
        "trial_reminders": [], "social_proof_shown": [], "experiments": [],
    });
    assert_eq!(ids(&r["offers"], "code"), made);
    has!(r["user_metrics"], {
        "prompts_created": 1, "offers_created": 2, "offers_redeemed": 0, "offers_expired": 0,
        "engagement_score": 13.0 / 14.0, "value_demonstrated": 0.6, "trialing": false,
        "converted": false,
    });
    // 14 active user-days in the segment over 90 days: one user on average.
    has!(r["segment_counts"], {"active_user_days": 14, "active_users_estimate": 1});

    // Every denominator is 0: the rates are null (never NaN), with their counts.
    let unknown = json!({"numerator": 0, "denominator": 0, "value": null});
    has!(r["conversion_metrics"], {
        "trial_to_paid": unknown, "prompt_click_through": unknown, "prompt_conversion": unknown,
        "offer_acceptance": unknown, "social_proof_effectiveness": unknown, "churn_rate": unknown,
        "experiment_lift": null, "monthly_churn": null, "arpu_minor_by_currency": {},
        "ltv_minor_by_currency": {},
    });

    // Value 0.6 ≥ 0.6 and not converted; 2 offers made, none redeemed.
    let recs = &r["recommendations"];
    assert_eq!(codes(recs), "lead_with_value offer_resistance");
    has!(recs[0], {"figure": "user.value_demonstrated", "value": 0.6, "threshold": 0.6});
    has!(recs[1], {
        "figure": "user.offers_created", "value": 2.0, "threshold": 2.0,
        "message": "2 offers made, none redeemed: test different offer types and messaging.",
    });
}

#[tokio::test]
async fn given_a_lapsed_user_shown_social_proof_when_optimization_is_read_then_low_engagement_and_proof_rules_cite_their_figures(
) {
    let app = app().await;
    // 6 social proof impressions without a conversion, and 5 prompt impressions.
    let shown = |kind: &str| {
        (
            "nudge_shown",
            json!({"nudge_kind": kind, "nudge_id": "n-1"}),
        )
    };
    let mut extra: Vec<_> = (0..6).map(|_| shown("social_proof")).collect();
    extra.extend((0..5).map(|_| shown("prompt")));
    lapsed_payer(&app, "lou", extra).await;
    let (status, r) = app.get("/v1/users/lou/optimization", &app.admin()).await;
    assert_eq!(status, 200, "{r}");
    has!(r["user_metrics"], {"proof_impressions": 6, "proof_conversions": 0, "converted": true});

    let recs = &r["recommendations"];
    assert_eq!(codes(recs), "low_engagement social_proof_not_converting");
    has!(recs[0], {
        "figure": "user.engagement_score", "value": 1.0 / 14.0, "threshold": 0.3,
        "message": "Engagement is low (0.07 < 0.30): increase engagement through personalized content before asking for an upgrade.",
    });
    has!(recs[1], {
        "figure": "user.social_proof_effectiveness", "value": 0.0, "threshold": 0.05,
        "message": "Social proof converted 0 of 6 impressions (0.0%): optimize its relevance and timing.",
    });
    // 999 minor units over 90 days from a segment with 0 subscribers at the start and 1 now
    // (this user converted in the window): 999 · 30 / 90 / 0.5 = 666 per subscriber per 30
    // days; nobody cancelled, so churn is 0 and LTV unknown.
    has!(r["conversion_metrics"], {
        "arpu_minor_by_currency": {"USD": 666.0}, "ltv_minor_by_currency": {"USD": null},
    });
    has!(r["conversion_metrics"]["churn_rate"], {"numerator": 0, "denominator": 1, "value": 0.0});
}
