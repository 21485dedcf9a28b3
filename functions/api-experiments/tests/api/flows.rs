//! Lifecycle, roles, validation, assignment and results through the router.

use serde_json::{json, Value};
use shared::auth::Role;

use crate::support::{app, TestApp};

fn experiment(key: &str) -> Value {
    json!({
        "key": key,
        "name": "Paywall headline",
        "hypothesis": "Naming the saved amount converts better",
        "owner": "growth@tierup.dev",
        "test_type": "messaging",
        "variants": [
            {"key": "control", "name": "Current"},
            {"key": "savings", "name": "You saved", "config": {"headline": "You saved $42"}}
        ],
        "primary_metric": {"name": "upgraded", "kind": "proportion", "event": "subscription_started"},
        "guardrail_metrics": [{"name": "refunds", "kind": "proportion", "event": "metric", "direction": "bad"}],
        "min_sample_per_variant": 200
    })
}

async fn created(app: &TestApp, body: Value) -> Value {
    let (status, _, e) = app
        .call("POST", "/v1/experiments", Some(&app.admin()), Some(body))
        .await;
    assert_eq!(status, 201, "{e}");
    e
}

async fn set_status(app: &TestApp, key: &str, to: &str) -> (u16, Value) {
    let (status, _, body) = app
        .call(
            "POST",
            &format!("/v1/experiments/{key}/status"),
            Some(&app.admin()),
            Some(json!({ "status": to })),
        )
        .await;
    (status, body)
}

#[tokio::test]
async fn invalid_definitions_name_every_field_at_fault() {
    let app = app().await;
    let mut body = experiment("bad");
    body["variants"][1]["key"] = json!("Has Spaces");
    body["weights"] = json!([0.9, 0.9]);
    body["condition"] = json!({"country": {"$bogus": 1}});
    let (status, content_type, problem) = app
        .call("POST", "/v1/experiments", Some(&app.admin()), Some(body))
        .await;
    assert_eq!(
        (status, content_type.as_str()),
        (400, "application/problem+json")
    );
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert!(fields.contains(&"variants[1].key"), "{problem}");
    assert!(fields.contains(&"weights"), "{problem}");
    assert!(
        fields.iter().any(|f| f.starts_with("condition")),
        "{problem}"
    );
    let (status, _, problem) = app
        .call(
            "POST",
            "/v1/experiments",
            Some(&app.admin()),
            Some(json!({"key": "x", "name": "x", "test_type": "nope"})),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(problem["errors"][0]["field"], "test_type", "{problem}");
}

#[tokio::test]
async fn only_admins_manage_and_read_experiments() {
    let app = app().await;
    created(&app, experiment("guarded")).await;
    let user = app.token(Role::User, "u1");
    let service = app.token(Role::Service, "svc");
    for (method, path, body) in [
        ("POST", "/v1/experiments", Some(experiment("other"))),
        ("GET", "/v1/experiments", None),
        ("GET", "/v1/experiments/guarded", None),
        (
            "PATCH",
            "/v1/experiments/guarded",
            Some(json!({"name": "x"})),
        ),
        (
            "POST",
            "/v1/experiments/guarded/status",
            Some(json!({"status": "running"})),
        ),
        ("GET", "/v1/experiments/guarded/audit", None),
        ("GET", "/v1/experiments/guarded/history", None),
        ("GET", "/v1/experiments/guarded/results", None),
    ] {
        for token in [&user, &service] {
            let (status, _, p) = app.call(method, path, Some(token), body.clone()).await;
            assert_eq!(status, 403, "{method} {path}: {p}");
        }
    }
    let (status, _, _) = app
        .call(
            "POST",
            "/v1/experiments/guarded/results",
            Some(&user),
            Some(json!({"results": [{"event_id": "e", "user_id": "u1", "metric": "upgraded"}]})),
        )
        .await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn the_lifecycle_refuses_illegal_moves_and_audits_the_rest() {
    let app = app().await;
    let e = created(&app, experiment("lifecycle")).await;
    assert_eq!(e["status"], "draft");
    let (status, _, p) = app
        .call(
            "POST",
            "/v1/experiments",
            Some(&app.admin()),
            Some(experiment("lifecycle")),
        )
        .await;
    assert_eq!(status, 409, "{p}");
    let (status, p) = set_status(&app, "lifecycle", "paused").await;
    assert_eq!(status, 409);
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("allowed from draft: running, cancelled"),
        "{p}"
    );
    assert_eq!(set_status(&app, "lifecycle", "running").await.0, 200);
    let (status, _, p) = app
        .call(
            "PATCH",
            "/v1/experiments/lifecycle",
            Some(&app.admin()),
            Some(json!({"variants": [{"key": "control"}, {"key": "other"}]})),
        )
        .await;
    assert_eq!(status, 409, "{p}");
    let (status, _, patched) = app
        .call(
            "PATCH",
            "/v1/experiments/lifecycle",
            Some(&app.admin()),
            Some(json!({"coverage": 0.5})),
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["coverage"], 0.5);
    assert_eq!(set_status(&app, "lifecycle", "paused").await.0, 200);
    assert_eq!(set_status(&app, "lifecycle", "running").await.0, 200);
    let (status, _, done) = app
        .call(
            "POST",
            "/v1/experiments/lifecycle/status",
            Some(&app.admin()),
            Some(json!({"status": "completed", "winner": "savings"})),
        )
        .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["outcome"]["winner"], "savings");
    let (status, p) = set_status(&app, "lifecycle", "running").await;
    assert_eq!(status, 409);
    assert!(
        p["detail"].as_str().unwrap().contains("none (it is final)"),
        "{p}"
    );
    let (_, _, audit) = app
        .call(
            "GET",
            "/v1/experiments/lifecycle/audit",
            Some(&app.admin()),
            None,
        )
        .await;
    let actions: Vec<&str> = audit["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "created",
            "status_changed",
            "updated",
            "status_changed",
            "status_changed",
            "status_changed"
        ]
    );
    assert!(audit["audit"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["actor"] == "admin-1"));
    // The past experiments with their outcomes.
    let (_, _, past) = app
        .call(
            "GET",
            "/v1/experiments?status=completed,cancelled",
            Some(&app.admin()),
            None,
        )
        .await;
    assert_eq!(past["experiments"][0]["key"], "lifecycle");
    assert_eq!(past["experiments"][0]["outcome"]["result"], "winner");
    let (status, _, p) = app
        .call(
            "GET",
            "/v1/experiments?status=finished",
            Some(&app.admin()),
            None,
        )
        .await;
    assert_eq!(
        (status, p["errors"][0]["field"].as_str()),
        (400, Some("status"))
    );
}

#[tokio::test]
async fn assignment_is_sticky_and_explains_who_is_not_in() {
    let app = app().await;
    let service = app.token(Role::Service, "svc");
    let mut body = experiment("assigned");
    body["condition"] = json!({"country": {"$in": ["US", "CA"]}});
    body["forced_variants"] = json!({"qa-1": "savings"});
    created(&app, body).await;
    let assign = |user: &str, attributes: Value| {
        let token = service.clone();
        let body = json!({"user_id": user, "attributes": attributes});
        let app = &app;
        async move {
            app.call(
                "POST",
                "/v1/experiments/assigned/assign",
                Some(&token),
                Some(body),
            )
            .await
        }
    };
    let (status, _, a) = assign("u1", json!({"country": "US"})).await;
    assert_eq!(status, 200);
    assert_eq!(
        (a["in_experiment"].as_bool(), a["reason"].as_str()),
        (Some(false), Some("experiment_not_running"))
    );
    set_status(&app, "assigned", "running").await;
    let (_, _, first) = assign("u1", json!({"country": "US"})).await;
    assert_eq!(first["in_experiment"], true, "{first}");
    assert_eq!(first["sticky"], false);
    let (_, _, again) = assign("u1", json!({"country": "US"})).await;
    assert_eq!(again["sticky"], true);
    assert_eq!(again["variant"], first["variant"]);
    let (_, _, out) = assign("u2", json!({"country": "FR"})).await;
    assert_eq!(
        (out["in_experiment"].as_bool(), out["reason"].as_str()),
        (Some(false), Some("condition"))
    );
    let (_, _, qa) = assign("qa-1", json!({"country": "US"})).await;
    assert_eq!(
        (qa["variant"]["key"].as_str(), qa["forced"].as_bool()),
        (Some("savings"), Some(true))
    );
    // A user may ask for themself only.
    let user = app.token(Role::User, "u3");
    let (status, _, _) = app
        .call(
            "POST",
            "/v1/experiments/assigned/assign",
            Some(&user),
            Some(json!({"user_id": "u3", "attributes": {"country": "CA"}})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _, _) = app
        .call(
            "POST",
            "/v1/experiments/assigned/assign",
            Some(&user),
            Some(json!({"user_id": "u1"})),
        )
        .await;
    assert_eq!(status, 403);
    // Every running experiment at once.
    let (status, _, all) = app
        .call(
            "POST",
            "/v1/assignments",
            Some(&service),
            Some(json!({"user_id": "u1", "attributes": {"country": "US"}})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(all["assignments"].as_array().unwrap().len(), 1);
    assert_eq!(all["assignments"][0]["variant"], first["variant"]);
    // Results: an unknown metric is named; a known one is folded once.
    let (status, _, p) = app
        .call(
            "POST",
            "/v1/experiments/assigned/results",
            Some(&service),
            Some(json!({"results": [{"event_id": "r1", "user_id": "u1", "metric": "clicks"}]})),
        )
        .await;
    assert_eq!(
        (status, p["errors"][0]["field"].as_str()),
        (400, Some("results[0].metric"))
    );
    let record = json!({"results": [
        {"event_id": "r1", "user_id": "u1", "metric": "upgraded"},
        {"event_id": "r2", "user_id": "nobody", "metric": "upgraded"}
    ]});
    let (_, _, r) = app
        .call(
            "POST",
            "/v1/experiments/assigned/results",
            Some(&service),
            Some(record.clone()),
        )
        .await;
    assert_eq!(
        (r["applied"].as_u64(), r["not_assigned"].as_u64()),
        (Some(1), Some(1)),
        "{r}"
    );
    let (_, _, r) = app
        .call(
            "POST",
            "/v1/experiments/assigned/results",
            Some(&service),
            Some(record),
        )
        .await;
    assert_eq!(
        (r["applied"].as_u64(), r["duplicates"].as_u64()),
        (Some(0), Some(1)),
        "{r}"
    );
    let (status, _, results) = app
        .call(
            "GET",
            "/v1/experiments/assigned/results",
            Some(&app.admin()),
            None,
        )
        .await;
    assert_eq!(status, 200, "{results}");
    let total: u64 = results["srm"]["observed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .sum();
    // u1 and u3; the forced QA user is not part of the analysis.
    assert_eq!(total, 2);
    let upgraded = &results["metrics"][0];
    assert_eq!(upgraded["name"], "upgraded");
    let sums: f64 = upgraded["variants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["sum"].as_f64().unwrap())
        .sum();
    assert_eq!(sums, 1.0);
}

#[tokio::test]
async fn the_sample_size_follows_evan_millers_formula() {
    let app = app().await;
    let service = app.token(Role::Service, "svc");
    let (status, _, r) = app
        .call(
            "POST",
            "/v1/experiments/sample-size",
            Some(&service),
            Some(json!({"metric": "proportion", "baseline": 0.1, "mde_absolute": 0.02})),
        )
        .await;
    assert_eq!(status, 200, "{r}");
    // evanmiller.org/ab-testing/sample-size.html: 10 %, +2 points, 5 %, 80 % -> 3,623.
    assert_eq!(r["n_per_variant"], 3623);
    let (_, _, rel) = app
        .call(
            "POST",
            "/v1/experiments/sample-size",
            Some(&service),
            Some(json!({"metric": "proportion", "baseline": 0.1, "mde_relative": 0.2})),
        )
        .await;
    assert_eq!(rel["n_per_variant"], 3623);
    let (status, _, p) = app
        .call(
            "POST",
            "/v1/experiments/sample-size",
            Some(&service),
            Some(json!({"metric": "proportion", "baseline": 1.5, "mde_absolute": 0.02})),
        )
        .await;
    assert_eq!(
        (status, p["errors"][0]["field"].as_str()),
        (400, Some("baseline")),
        "{p}"
    );
    let (status, _, p) = app
        .call(
            "POST",
            "/v1/experiments/sample-size",
            Some(&service),
            Some(json!({"metric": "mean", "mde_absolute": 2.0})),
        )
        .await;
    assert_eq!(
        (status, p["errors"][0]["field"].as_str()),
        (400, Some("sigma")),
        "{p}"
    );
    let user = app.token(Role::User, "u1");
    let (status, _, _) = app
        .call(
            "POST",
            "/v1/experiments/sample-size",
            Some(&user),
            Some(json!({"metric": "proportion", "baseline": 0.1, "mde_absolute": 0.02})),
        )
        .await;
    assert_eq!(status, 403);
}
