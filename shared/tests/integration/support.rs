//! A fresh table per test, like Zero To Production's `spawn_app`.

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType,
};
use shared::store::DynamoStore;

pub async fn aws() -> aws_config::SdkConfig {
    if std::env::var("AWS_ENDPOINT_URL").is_err() {
        std::env::set_var("AWS_ENDPOINT_URL", "http://127.0.0.1:5000");
    }
    for (k, v) in [
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
    ] {
        if std::env::var(k).is_err() {
            std::env::set_var(k, v);
        }
    }
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}

fn key(name: &str, kind: KeyType) -> KeySchemaElement {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(kind)
        .build()
        .expect("key schema")
}

fn attr(name: &str) -> AttributeDefinition {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ScalarAttributeType::S)
        .build()
        .expect("attribute definition")
}

/// Creates a table with tierup's key schema (as template.yaml declares it) and returns a store.
pub async fn fresh_store() -> DynamoStore {
    let config = aws().await;
    let client = aws_sdk_dynamodb::Client::new(&config);
    let table = format!("test-{}", uuid::Uuid::new_v4());
    client
        .create_table()
        .table_name(&table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attr("pk"))
        .attribute_definitions(attr("sk"))
        .attribute_definitions(attr("gsi1pk"))
        .attribute_definitions(attr("gsi1sk"))
        .key_schema(key("pk", KeyType::Hash))
        .key_schema(key("sk", KeyType::Range))
        .global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name("gsi1")
                .key_schema(key("gsi1pk", KeyType::Hash))
                .key_schema(key("gsi1sk", KeyType::Range))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::All)
                        .build(),
                )
                .build()
                .expect("gsi"),
        )
        .send()
        .await
        .expect("the local DynamoDB emulator must be running (make test starts it)");
    DynamoStore::new(client, table)
}

/// A fresh SQS queue standing in for the outbox: the producer, a client and its URL.
pub async fn outbox() -> (shared::queue::SqsProducer, aws_sdk_sqs::Client, String) {
    let config = aws().await;
    let client = aws_sdk_sqs::Client::new(&config);
    let url = client
        .create_queue()
        .queue_name(format!("outbox-{}", uuid::Uuid::new_v4()))
        .send()
        .await
        .expect("the local SQS emulator must be running (make test starts it)")
        .queue_url
        .unwrap_or_default();
    (shared::queue::SqsProducer::new(client.clone()), client, url)
}
