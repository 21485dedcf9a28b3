use std::time::Duration;

use tierup_e2e::{eventually, queue_url, Stack};

async fn dlq_bodies(sqs: &aws_sdk_sqs::Client, url: &str) -> Vec<String> {
    // Peek: receive with a zero visibility timeout so the messages stay available.
    let out = sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .visibility_timeout(0)
        .send()
        .await
        .expect("receive from the DLQ");
    out.messages
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.body)
        .collect()
}

fn tierup() -> std::process::Command {
    std::process::Command::new(format!(
        "{}/../target/debug/tierup",
        env!("CARGO_MANIFEST_DIR")
    ))
}

#[tokio::test]
async fn a_poison_message_reaches_the_dlq_and_redrive_replays_it() {
    let stack = Stack::from_env();
    let sqs = stack.sqs().await;
    let poison = format!("poison-{}", uuid::Uuid::new_v4());
    sqs.send_message()
        .queue_url(queue_url("EventsQueue"))
        .message_body(&poison)
        .send()
        .await
        .expect("send the poison message");
    let dlq = queue_url("EventsDLQ");
    // maxReceiveCount is 5; the local stack caps the visibility timeout at 3 s.
    eventually(
        "the poison message in the events DLQ",
        Duration::from_secs(120),
        || async { dlq_bodies(&sqs, &dlq).await.contains(&poison).then_some(()) },
    )
    .await;

    let out = tierup()
        .args(["dlq", "redrive", "EventsDLQ"])
        .output()
        .expect("run tierup dlq redrive");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !dlq_bodies(&sqs, &dlq).await.contains(&poison),
        "redrive moved it out of the DLQ"
    );
    // Replayed into the events queue, it fails again and returns after maxReceiveCount.
    eventually(
        "the replayed message back in the DLQ",
        Duration::from_secs(120),
        || async { dlq_bodies(&sqs, &dlq).await.contains(&poison).then_some(()) },
    )
    .await;
}
