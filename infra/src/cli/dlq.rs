//! `tierup dlq`: look into dead-letter queues and move their messages back.

use std::collections::HashSet;

use anyhow::{anyhow, bail, Context, Result};
use aws_config::BehaviorVersion;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, Message, MessageSystemAttributeName,
};
use clap::Subcommand;

use crate::settings::Paths;
use crate::template::Template;

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Show the messages of a queue without consuming them
    List {
        /// Logical id (e.g. EventsDLQ) or queue URL
        queue: String,
        /// At most this many messages
        #[arg(long, default_value_t = 100)]
        max: usize,
    },
    /// Move every message of a dead-letter queue back to its source queue
    Redrive {
        /// Logical id (e.g. EventsDLQ) or queue URL of the dead-letter queue
        dlq: String,
        /// Target queue (logical id or URL) [default: the queue whose RedrivePolicy names the DLQ]
        #[arg(long)]
        to: Option<String>,
    },
}

/// How long listed messages stay hidden while listing, so each receive returns new ones.
const PEEK_VISIBILITY_SECONDS: i32 = 5;
/// How long a message being redriven stays hidden before it is deleted.
const MOVE_VISIBILITY_SECONDS: i32 = 60;

pub async fn run(paths: &Paths, command: DlqCommand) -> Result<()> {
    let config = aws_config::load_defaults(BehaviorVersion::latest()).await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    match command {
        DlqCommand::List { queue, max } => list(&sqs, &queue_url(&queue)?, max).await,
        DlqCommand::Redrive { dlq, to } => {
            let target = match to {
                Some(to) => queue_url(&to)?,
                None => queue_url(&source_of(paths, &dlq)?)?,
            };
            redrive(&sqs, &queue_url(&dlq)?, &target).await
        }
    }
}

/// A URL as is; a logical id through `TIERUP_QUEUE_<id>` (from `.local/stack.env`).
fn queue_url(queue: &str) -> Result<String> {
    if queue.contains("://") {
        return Ok(queue.to_string());
    }
    std::env::var(format!("TIERUP_QUEUE_{queue}")).map_err(|_| {
        let known: Vec<String> = std::env::vars()
            .filter_map(|(k, _)| k.strip_prefix("TIERUP_QUEUE_").map(str::to_string))
            .collect();
        anyhow!(
            "unknown queue {queue}; known: {} (is the local stack running?)",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        )
    })
}

/// The queue whose RedrivePolicy names `dlq` (a logical id, or a URL of a known queue).
fn source_of(paths: &Paths, dlq: &str) -> Result<String> {
    let template = Template::load(&paths.template())?;
    let logical_id = if dlq.contains("://") {
        std::env::vars()
            .find(|(k, v)| k.starts_with("TIERUP_QUEUE_") && v == dlq)
            .and_then(|(k, _)| k.strip_prefix("TIERUP_QUEUE_").map(str::to_string))
            .ok_or_else(|| anyhow!("{dlq} is no queue of the local stack; pass --to"))?
    } else {
        dlq.to_string()
    };
    match template.sources_of_dlq(&logical_id).as_slice() {
        [source] => Ok(source.logical_id.clone()),
        [] => {
            bail!("no queue in template.yaml uses {logical_id} as its dead-letter queue; pass --to")
        }
        several => bail!(
            "several queues use {logical_id} as their dead-letter queue ({}); pass --to",
            several
                .iter()
                .map(|q| q.logical_id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

async fn receive(sqs: &aws_sdk_sqs::Client, url: &str, visibility: i32) -> Result<Vec<Message>> {
    let output = sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .visibility_timeout(visibility)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .message_attribute_names("All")
        .send()
        .await
        .with_context(|| format!("receiving from {url}"))?;
    Ok(output.messages.unwrap_or_default())
}

async fn list(sqs: &aws_sdk_sqs::Client, url: &str, max: usize) -> Result<()> {
    let mut seen = HashSet::new();
    let mut shown: Vec<Message> = Vec::new();
    while shown.len() < max {
        let batch = receive(sqs, url, PEEK_VISIBILITY_SECONDS).await?;
        let fresh: Vec<Message> = batch
            .into_iter()
            .filter(|m| seen.insert(m.message_id().unwrap_or_default().to_string()))
            .collect();
        if fresh.is_empty() {
            break;
        }
        shown.extend(fresh);
    }
    shown.truncate(max);
    for m in &shown {
        let count = m
            .attributes()
            .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
            .map_or("?", String::as_str);
        println!(
            "{}  receives={count}  {}",
            m.message_id().unwrap_or_default(),
            m.body().unwrap_or_default()
        );
    }
    println!("{} message(s)", shown.len());
    make_visible(sqs, url, &shown).await
}

/// Ends the peek: the listed messages become visible again at once.
async fn make_visible(sqs: &aws_sdk_sqs::Client, url: &str, messages: &[Message]) -> Result<()> {
    for chunk in messages.chunks(10) {
        let entries = chunk
            .iter()
            .enumerate()
            .map(|(i, m)| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .visibility_timeout(0)
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()?;
        sqs.change_message_visibility_batch()
            .queue_url(url)
            .set_entries(Some(entries))
            .send()
            .await
            .context("making the listed messages visible again")?;
    }
    Ok(())
}

async fn redrive(sqs: &aws_sdk_sqs::Client, dlq: &str, target: &str) -> Result<()> {
    let mut moved = 0usize;
    loop {
        let batch = receive(sqs, dlq, MOVE_VISIBILITY_SECONDS).await?;
        if batch.is_empty() {
            break;
        }
        for message in &batch {
            sqs.send_message()
                .queue_url(target)
                .message_body(message.body().unwrap_or_default())
                .set_message_attributes(message.message_attributes().cloned())
                .send()
                .await
                .with_context(|| format!("sending to {target}"))?;
            sqs.delete_message()
                .queue_url(dlq)
                .receipt_handle(message.receipt_handle().unwrap_or_default())
                .send()
                .await
                .with_context(|| format!("deleting from {dlq}"))?;
            moved += 1;
        }
    }
    println!("moved {moved} message(s) from {dlq} to {target}");
    Ok(())
}
