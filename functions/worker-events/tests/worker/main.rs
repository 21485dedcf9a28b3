//! worker-events handler tests: SQS events as Lambda delivers them, folded into the table of
//! the running local stack (`make test` starts it and exports `TABLE_NAME` and
//! `AWS_ENDPOINT_URL`).

use aws_lambda_events::event::sqs::SqsEvent;
use serde_json::json;
use shared::ingest::IngestSettings;
use shared::profiles::FoldSettings;
use shared::store::DynamoStore;

async fn store() -> DynamoStore {
    let table = std::env::var("TABLE_NAME")
        .expect("TABLE_NAME is not set: run through `make test`, which starts the local stack");
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    DynamoStore::new(aws_sdk_dynamodb::Client::new(&aws), table)
}

fn settings() -> IngestSettings {
    IngestSettings {
        fold: FoldSettings::default(),
        dedupe_ttl_days: 35,
        aggregate_shards: 16,
    }
}

/// An SQS event shaped like the aws_lambda_events fixture `example-sqs-event.json`.
fn sqs_event(bodies: &[String]) -> SqsEvent {
    let records: Vec<serde_json::Value> = bodies
        .iter()
        .enumerate()
        .map(|(i, body)| {
            json!({
                "messageId": format!("msg-{i}"),
                "receiptHandle": "handle",
                "body": body,
                "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1700000000000"},
                "messageAttributes": {"correlation_id": {"stringValue": "corr-1", "dataType": "String"}},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:tierup-EventsQueue",
                "awsRegion": "us-east-1"
            })
        })
        .collect();
    serde_json::from_value(json!({ "Records": records })).unwrap()
}

#[tokio::test]
async fn a_poison_record_fails_alone_and_the_rest_is_folded_once() {
    let store = store().await;
    let user = format!("u-{}", uuid::Uuid::new_v4().simple());
    let now = chrono::Utc::now().to_rfc3339();
    let good = json!({"events": [
        {"event_id": format!("{user}-1"), "user_id": user, "timestamp": now, "type": "feature_used",
         "properties": {"feature": "budget_tracker", "duration_ms": 2000}},
        {"event_id": format!("{user}-2"), "user_id": user, "timestamp": now, "type": "identify",
         "properties": {"tier": "pro", "segment": null, "country": null, "timezone": null,
                        "signup_date": null, "goals": null, "custom": {}}}
    ]})
    .to_string();
    let event = sqs_event(&[good.clone(), "{not an events message".to_string(), good]);
    let response = worker_events::handle(&store, &settings(), None, event).await;
    let failed: Vec<_> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(
        failed,
        vec!["msg-1"],
        "only the poison record is redelivered"
    );

    let profile = store.get_profile(&user).await.unwrap().unwrap();
    assert_eq!(
        profile.event_count, 2,
        "the repeated record changed nothing"
    );
    assert_eq!(profile.features["budget_tracker"].duration_ms, 2000);
    assert_eq!(profile.current_tier(), "pro");
}
