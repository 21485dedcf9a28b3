//! `tierup`: the ops CLI and the local stack.

mod cli;
mod local;
mod settings;
mod template;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("TIERUP_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(mut cli: cli::Cli) -> anyhow::Result<()> {
    // The offline engine needs no workspace, stack or runtime.
    if let cli::Command::Offline(command) = cli.command {
        return cli::offline::run(command);
    }
    let paths = settings::Paths::discover()?;
    if cli.command.reads_stack_env() {
        // Before any thread starts, as this writes the environment. Parsing again lets
        // arguments that default from the environment see the stack's values.
        settings::adopt_stack_env(&paths)?;
        cli = cli::Cli::parse();
    }
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(cli::run(&paths, cli.command))
}
