use serde_json::json;
use shared::auth::Role;
use tierup_e2e::Stack;

#[tokio::test]
async fn no_token_is_401() {
    let stack = Stack::from_env();
    let (status, _) = stack
        .call(reqwest::Method::GET, "/v1/users/u1/profile", None, None)
        .await;
    assert_eq!(status, 401);
    let (status, _) = stack
        .call(
            reqwest::Method::POST,
            "/v1/events",
            None,
            Some(b"{}".to_vec()),
        )
        .await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn a_user_token_reading_another_profile_is_403() {
    let stack = Stack::from_env();
    let token = stack.token(Role::User, "alice");
    let (status, body) = stack.get("/v1/users/bob/profile", &token).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["status"], 403);
}

#[tokio::test]
async fn a_user_token_posting_events_is_403() {
    let stack = Stack::from_env();
    let token = stack.token(Role::User, "alice");
    let batch = json!({"events": [{"event_id": "x", "type": "feature_used", "user_id": "alice",
        "timestamp": chrono::Utc::now().to_rfc3339(), "properties": {"feature": "f"}}]});
    let (status, _) = stack.post_json("/v1/events", &token, &batch).await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn health_needs_no_token_and_reports_reachability() {
    let stack = Stack::from_env();
    let (status, body) = stack
        .call(reqwest::Method::GET, "/v1/health", None, None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ok");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(body["table"]["reachable"], true);
    assert_eq!(body["queues"].as_array().unwrap().len(), 3);
}
