//! `tierup jobs`: list the local stack's schedules and fire one now.

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use serde_json::Value;

use crate::settings::required_var;

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// Fire a schedule now (its event id, e.g. SignificanceSweep, or its Name)
    Run {
        name: String,
        /// JSON object merged into the input's params, e.g. '{"now":"2026-11-25T00:00:00Z"}'
        #[arg(long)]
        params: Option<String>,
    },
    /// List the schedules with their next fire time
    List,
}

pub async fn run(command: JobsCommand) -> Result<()> {
    let api = required_var("TIERUP_API_URL")?;
    let http = reqwest::Client::new();
    match command {
        JobsCommand::Run { name, params } => {
            let url = format!("{api}/_local/schedules/{name}/run");
            let mut request = http.post(&url);
            if let Some(p) = params {
                let p: Value = serde_json::from_str(&p).context("--params must be JSON")?;
                request = request.json(&serde_json::json!({ "params": p }));
            }
            let result = call(request).await?;
            println!("{}", serde_json::to_string_pretty(&result)?);
        }
        JobsCommand::List => {
            let list = call(http.get(format!("{api}/_local/schedules"))).await?;
            print_list(&list);
        }
    }
    Ok(())
}

async fn call(request: reqwest::RequestBuilder) -> Result<Value> {
    let response = request
        .send()
        .await
        .context("calling the local stack (is `tierup local up` running?)")?;
    let status = response.status();
    let text = response.text().await.context("reading the response")?;
    if !status.is_success() {
        bail!("status {status}: {text}");
    }
    serde_json::from_str(&text).with_context(|| format!("the response is not JSON: {text}"))
}

fn print_list(list: &Value) {
    let field = |s: &Value, k: &str| s.get(k).and_then(Value::as_str).unwrap_or("-").to_string();
    println!(
        "{:<20} {:<28} {:<14} {:<24} {:<8} NEXT FIRE (UTC)",
        "ID", "NAME", "FUNCTION", "EXPRESSION", "ENABLED"
    );
    for s in list.as_array().map(Vec::as_slice).unwrap_or_default() {
        let enabled = s.get("enabled").and_then(Value::as_bool).unwrap_or(false);
        println!(
            "{:<20} {:<28} {:<14} {:<24} {:<8} {}",
            field(s, "id"),
            field(s, "name"),
            field(s, "function"),
            field(s, "expression"),
            enabled,
            field(s, "next_fire"),
        );
    }
}
