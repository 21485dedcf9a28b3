//! Authentication, authorization and input validation answer before any I/O.

use serde_json::json;
use shared::auth::Role;

use crate::support::app;

#[tokio::test]
async fn no_token_is_401_problem_json() {
    let app = app().await;
    let (status, content_type, body) = app.call("POST", "/v1/events", None, b"{}".to_vec()).await;
    assert_eq!(status, 401);
    assert_eq!(content_type, "application/problem+json");
    assert_eq!(body["status"], 401);
    let (status, _, _) = app
        .call("POST", "/v1/events", Some("not-a-jwt"), b"{}".to_vec())
        .await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn a_user_token_may_not_post_events_or_read_others() {
    let app = app().await;
    let token = app.token(Role::User, "u1");
    let (status, _, _) = app
        .call(
            "POST",
            "/v1/events",
            Some(&token),
            b"{\"events\":[]}".to_vec(),
        )
        .await;
    assert_eq!(status, 403);
    let (status, _, body) = app
        .call("GET", "/v1/users/u2/profile", Some(&token), Vec::new())
        .await;
    assert_eq!(status, 403);
    assert_eq!(body["type"], "https://tierup.dev/problems/forbidden");
    let (status, _, _) = app
        .call(
            "GET",
            "/v1/stats/daily/2026-11-01",
            Some(&token),
            Vec::new(),
        )
        .await;
    assert_eq!(status, 403, "daily stats are for admins");
}

#[tokio::test]
async fn malformed_oversized_and_wholly_invalid_batches() {
    let app = app().await;
    let token = app.token(Role::Service, "svc");
    let (status, ct, body) = app
        .call("POST", "/v1/events", Some(&token), b"{not json".to_vec())
        .await;
    assert_eq!((status, ct.as_str()), (400, "application/problem+json"));
    assert!(body["detail"].as_str().unwrap().contains("not valid JSON"));

    let (status, _, body) = app
        .call(
            "POST",
            "/v1/events",
            Some(&token),
            b"{\"evts\": []}".to_vec(),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["errors"][0]["field"], "events");

    let big = vec![b' '; 1024 * 1024 + 1];
    let (status, _, _) = app.call("POST", "/v1/events", Some(&token), big).await;
    assert_eq!(status, 413);

    let batch = json!({"events": [{"event_id": "e1", "type": "nope", "user_id": "u",
                                   "timestamp": chrono::Utc::now().to_rfc3339()}]});
    let (status, _, body) = app
        .call(
            "POST",
            "/v1/events",
            Some(&token),
            batch.to_string().into_bytes(),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(body["rejected"][0]["index"], 0);
    assert_eq!(body["rejected"][0]["errors"][0]["field"], "type");

    let (status, _, body) = app
        .call(
            "GET",
            "/v1/stats/daily/yesterday",
            Some(&app.token(Role::Admin, "a")),
            Vec::new(),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["errors"][0]["field"], "date");
}
