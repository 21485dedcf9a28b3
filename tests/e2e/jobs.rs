use std::time::Duration;

use shared::auth::Role;
use tierup_e2e::{eventually, Stack};

#[tokio::test]
async fn a_schedule_fired_on_demand_runs_its_job() {
    let stack = Stack::from_env();
    let before = chrono::Utc::now();
    let (status, body) = stack
        .call(
            reqwest::Method::POST,
            "/_local/schedules/DlqWatch/run",
            Some(&stack.token(Role::Admin, "ops")),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // scheduler -> jobs queue -> worker-jobs -> the report health shows.
    let report = eventually("the dlq-watch report", Duration::from_secs(90), || async {
        let (_, health) = stack
            .call(reqwest::Method::GET, "/v1/health", None, None)
            .await;
        let report = health["dead_letters"].clone();
        let checked: Option<chrono::DateTime<chrono::Utc>> =
            report["checked_at"].as_str().and_then(|s| s.parse().ok());
        checked
            .filter(|c| *c >= before - chrono::Duration::seconds(1))
            .map(|_| report)
    })
    .await;
    assert!(report["job_id"].as_str().unwrap().starts_with("dlq-watch@"));
    let queues: Vec<&str> = report["depths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["queue"].as_str().unwrap())
        .collect();
    assert_eq!(queues, vec!["events", "jobs", "outbox"]);
}
