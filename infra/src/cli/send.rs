//! `tierup send`: ingest a JSON Lines file through `POST /v1/events`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;
use serde_json::Value;
use shared::auth::Role;

use super::token::{env_token, parse_role};
use crate::settings::{required_var, Paths};

#[derive(Debug, Args)]
pub struct SendArgs {
    /// One event (JSON object) per line; blank lines are skipped
    pub file: PathBuf,
    /// Events per request
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch: u32,
    /// Bearer token [default: a fresh local token for --role]
    #[arg(long, env = "TIERUP_TOKEN", conflicts_with = "role")]
    pub token: Option<String>,
    /// Role of the minted token
    #[arg(long, value_parser = parse_role)]
    pub role: Option<Role>,
}

/// The ingestion response; only the counts matter here.
#[derive(Debug, Deserialize)]
struct IngestResponse {
    #[serde(default)]
    accepted: Vec<Value>,
    #[serde(default)]
    rejected: Vec<Rejection>,
}

#[derive(Debug, Deserialize)]
struct Rejection {
    index: Option<usize>,
    event_id: Option<String>,
    #[serde(default)]
    errors: Vec<Value>,
}

/// Rejections printed in full; the rest are only counted.
const SHOWN_REJECTIONS: usize = 10;

pub async fn run(paths: &Paths, args: &SendArgs) -> Result<()> {
    let events = read_events(&args.file)?;
    let token = match &args.token {
        Some(token) => token.clone(),
        None => {
            let key = super::keys::load(&paths.state)?;
            env_token(&key, args.role.unwrap_or(Role::Service), 3600)?
        }
    };
    let url = format!("{}/v1/events", required_var("TIERUP_API_URL")?);
    let http = reqwest::Client::new();
    let progress = ProgressBar::new(events.len() as u64);
    progress.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} events {elapsed} {msg}")
            .context("progress bar template")?,
    );
    let (mut accepted, mut rejected) = (0usize, 0usize);
    for (number, chunk) in events.chunks(args.batch as usize).enumerate() {
        let offset = number * args.batch as usize;
        let response = post(&http, &url, &token, chunk).await?;
        accepted += response.accepted.len();
        rejected += response.rejected.len();
        for r in &response.rejected {
            if rejected <= SHOWN_REJECTIONS {
                let line = r
                    .index
                    .map(|i| (offset + i + 1).to_string())
                    .unwrap_or_default();
                let text = format!(
                    "rejected line {line} ({}): {}",
                    r.event_id.as_deref().unwrap_or("no event_id"),
                    Value::from(r.errors.clone())
                );
                progress.suspend(|| eprintln!("{text}"));
            }
        }
        progress.inc(chunk.len() as u64);
    }
    progress.finish_and_clear();
    println!(
        "sent {} events: {accepted} accepted, {rejected} rejected",
        events.len()
    );
    Ok(())
}

fn read_events(path: &PathBuf) -> Result<Vec<Value>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line)
                .with_context(|| format!("{} line {}: not JSON", path.display(), i + 1))
        })
        .collect()
}

async fn post(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    events: &[Value],
) -> Result<IngestResponse> {
    let response = http
        .post(url)
        .bearer_auth(token)
        .json(&serde_json::json!({ "events": events }))
        .send()
        .await
        .with_context(|| format!("POST {url}"))?;
    let status = response.status();
    let text = response.text().await.context("reading the response")?;
    if !status.is_success() {
        bail!("POST {url}: status {status}: {text}");
    }
    serde_json::from_str(&text).with_context(|| format!("unexpected response: {text}"))
}
