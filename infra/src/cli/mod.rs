//! The `tierup` command line.

pub mod dlq;
pub mod jobs;
pub mod keys;
pub mod offline;
pub mod send;
pub mod token;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::local::{self, UpArgs};
use crate::settings::Paths;

/// tierup operations: local stack, tokens, jobs, dead-letter queues, event ingestion.
///
/// Commands read `.local/stack.env` (written by `tierup local up`) for their defaults;
/// exported variables win.
#[derive(Debug, Parser)]
#[command(name = "tierup", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Signing keys for local tokens
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Print a token the local stack accepts
    Token(token::TokenArgs),
    /// The local stack
    #[command(subcommand)]
    Local(LocalCommand),
    /// Scheduled jobs of the running local stack
    #[command(subcommand)]
    Jobs(jobs::JobsCommand),
    /// Dead-letter queues
    #[command(subcommand)]
    Dlq(dlq::DlqCommand),
    /// POST events from a JSON Lines file to /v1/events in batches
    Send(send::SendArgs),
    /// Offline experiment engine (JSON Lines on stdin, one result line per input line)
    #[command(flatten)]
    Offline(offline::OfflineCommand),
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create the ES256 signing key and its JWKS unless they exist
    Init {
        /// Directory for signing-key.pem and jwks.json [default: <workspace>/.local]
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum LocalCommand {
    /// Start moto, create the template's tables and queues, run every function under
    /// `cargo lambda watch`, emulate the HTTP API, SQS triggers and schedules
    Up(UpArgs),
}

impl Command {
    /// Whether the command should see a running stack's `.local/stack.env`.
    pub fn reads_stack_env(&self) -> bool {
        !matches!(
            self,
            Command::Local(_) | Command::Keys(_) | Command::Offline(_)
        )
    }
}

pub async fn run(paths: &Paths, command: Command) -> Result<()> {
    match command {
        Command::Keys(KeysCommand::Init { dir }) => {
            let dir = dir.unwrap_or_else(|| paths.state.clone());
            let key = keys::init(&dir)?;
            println!("signing key {} ({})", key.pem_path.display(), key.kid);
            println!("JWKS        {}", key.jwks_path.display());
            Ok(())
        }
        Command::Token(args) => token::run(paths, &args),
        Command::Local(LocalCommand::Up(args)) => local::up(paths, &args).await,
        Command::Jobs(command) => jobs::run(command).await,
        Command::Dlq(command) => dlq::run(paths, command).await,
        Command::Send(args) => send::run(paths, &args).await,
        Command::Offline(command) => offline::run(command),
    }
}
