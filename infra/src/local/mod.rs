//! `tierup local up`: the whole system on this machine, built from template.yaml.
//!
//! 1. the signing key (`keys init`);
//! 2. moto (DynamoDB + SQS), unless something already answers on its port;
//! 3. every table and queue of the template;
//! 4. `.local/functions.env`: the template's function environment, resolved;
//! 5. `cargo lambda watch`, serving every function binary of the workspace;
//! 6. the HTTP API gateway, the SQS pollers and the schedule timers;
//! 7. `.local/stack.env` for the tests and the other `tierup` commands.
//!
//! Ctrl-C or SIGTERM stops what it started and removes `.local/stack.env`.

pub mod apigw;
pub mod emulator;
pub mod expression;
pub mod gateway;
pub mod invoke;
pub mod process;
pub mod pump;
pub mod routes;
pub mod schedules;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use aws_config::BehaviorVersion;
use clap::Args;
use tokio::signal::unix::{signal, SignalKind};
use tokio::task::JoinSet;
use tracing::{error, info, warn};

use crate::cli::keys::{self, SigningKey};
use crate::cli::token::{local_token, LOCAL_AUDIENCE, LOCAL_ISSUER, LOCAL_ROLE_CLAIM};
use crate::settings::{render_env_file, write_file, Paths};
use crate::template::{Physical, Resolver, Template, REGION};
use emulator::Emulator;
use invoke::Invoker;
use process::{port_answers, run_logged, wait_for_port, which, Supervisor};

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Port of the DynamoDB + SQS emulator (moto)
    #[arg(long, default_value_t = 5000)]
    pub moto_port: u16,
    /// Port of the emulated HTTP API
    #[arg(long, default_value_t = 3000)]
    pub api_port: u16,
    /// Port of `cargo lambda watch`'s invoke API
    #[arg(long, default_value_t = 9000)]
    pub lambda_port: u16,
    /// Cap every queue's visibility timeout (seconds) so failed messages are redelivered
    /// quickly in tests; by default the template's values apply
    #[arg(long)]
    pub max_visibility_timeout: Option<u32>,
    /// Do not rebuild and reload functions when the code changes (`--ignore-changes`)
    #[arg(long)]
    pub no_watch: bool,
    /// Load the demo data set (infra/demo: the social proof testimonials) into an empty catalog
    #[arg(long)]
    pub demo: bool,
}

/// moto's server with tierup's fixes (thread safety, transaction cost), run with the python3
/// on PATH (the venv's); plain `moto_server` when it is absent.
const PATCHED_MOTO: &str = "infra/emulator/tierup_moto.py";

/// How long moto and the watch server may take to listen.
const START_LIMIT: Duration = Duration::from_secs(60);

pub async fn up(paths: &Paths, args: &UpArgs) -> Result<()> {
    let template = Template::load(&paths.template())?;
    std::fs::create_dir_all(paths.logs())
        .with_context(|| format!("creating {}", paths.logs().display()))?;
    remove_stack_env(paths);
    let key = keys::init(&paths.state)?;
    let mut supervisor = Supervisor::default();
    let result = tokio::select! {
        result = run(paths, args, &template, &key, &mut supervisor) => result,
        stop = stop_signal() => stop.map(|why| info!("{why}; stopping")),
    };
    if let Err(e) = &result {
        error!(error = format!("{e:#}"), "the local stack stops");
    }
    supervisor.shutdown().await;
    remove_stack_env(paths);
    result
}

fn remove_stack_env(paths: &Paths) {
    let path = paths.stack_env();
    if let Err(e) = std::fs::remove_file(&path) {
        if e.kind() != std::io::ErrorKind::NotFound {
            warn!(path = %path.display(), error = %e, "could not remove");
        }
    }
}

/// Starts the stack and keeps it running; returns only when part of it fails (dropping it
/// aborts the gateway, pollers and timers).
async fn run(
    paths: &Paths,
    args: &UpArgs,
    template: &Template,
    key: &SigningKey,
    supervisor: &mut Supervisor,
) -> Result<()> {
    start_moto(paths, args.moto_port, supervisor).await?;
    let endpoint = format!("http://127.0.0.1:{}", args.moto_port);
    let emulator = emulator_clients(&endpoint).await;
    let physical = emulator
        .ensure(template, args.max_visibility_timeout)
        .await
        .context("creating the template's tables and queues")?;
    info!(
        tables = physical.tables.len(),
        queues = physical.queues.len(),
        "resources ready"
    );
    if args.demo {
        seed_demo(paths, &emulator, &physical).await?;
    }
    let function_env = function_environment(template, &physical, key, &endpoint)?;
    write_file(&paths.functions_env(), &render_env_file(&function_env)?)?;
    start_watch(paths, args, supervisor).await?;

    let invoker = Invoker::new(&format!("http://127.0.0.1:{}", args.lambda_port));
    let mut tasks = JoinSet::new();
    start_gateway(template, &invoker, args.api_port, &mut tasks).await?;
    start_pollers(template, &physical, &emulator.sqs, &invoker, &mut tasks)?;

    let stack = stack_environment(args, &function_env, key, &physical);
    write_file(&paths.stack_env(), &render_env_file(&stack)?)?;
    print_banner(paths, args, key)?;
    Err(stack_failure(supervisor, &mut tasks).await)
}

async fn start_moto(paths: &Paths, port: u16, supervisor: &mut Supervisor) -> Result<()> {
    if port_answers(port).await {
        info!(port, "reusing the emulator already listening");
        return Ok(());
    }
    let mut args = ["-H", "127.0.0.1", "-p", &port.to_string()]
        .map(String::from)
        .to_vec();
    let patched = paths.root.join(PATCHED_MOTO);
    let program = if patched.is_file() {
        args.insert(0, patched.display().to_string());
        which("python3")?
    } else {
        which("moto_server")?
    };
    let log = paths.logs().join("moto.log");
    supervisor.spawn("moto", &program, &args, &paths.root, &log)?;
    until_listening(supervisor, port, "moto").await
}

/// Loads the demo social proof catalog (`infra/demo/social_proof.json`) through the same
/// validation the admin API applies, unless the catalog already holds proofs. Demo data,
/// nothing more: `make test` does not load it.
async fn seed_demo(paths: &Paths, emulator: &Emulator, physical: &Physical) -> Result<()> {
    let file = paths.root.join("infra/demo/social_proof.json");
    let text =
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    let proofs: Vec<serde_json::Value> =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", file.display()))?;
    let table = physical
        .tables
        .values()
        .next()
        .ok_or_else(|| anyhow!("the template declares no table"))?;
    let store = shared::store::DynamoStore::new(emulator.dynamodb.clone(), table);
    let producer = shared::queue::SqsProducer::new(emulator.sqs.clone());
    let settings = shared::nudges::NudgeSettings::default();
    let nudges = shared::nudges::service::Nudges {
        store: &store,
        sink: &producer,
        outbox_url: "",
        settings: &settings,
        shards: 1,
        dedupe_ttl_days: 1,
    };
    if !nudges.list_proofs().await?.is_empty() {
        info!("the social proof catalog is not empty; demo data not loaded");
        return Ok(());
    }
    for p in &proofs {
        nudges
            .create_proof(p, "demo", chrono::Utc::now())
            .await
            .map_err(|e| anyhow!("demo proof {p}: {e:?}"))?;
    }
    info!(proofs = proofs.len(), "demo social proof loaded");
    Ok(())
}

async fn emulator_clients(endpoint: &str) -> Emulator {
    let credentials =
        aws_sdk_sqs::config::Credentials::new("test", "test", None, None, "tierup-local");
    let config = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new(REGION))
        .credentials_provider(credentials)
        .load()
        .await;
    Emulator {
        dynamodb: aws_sdk_dynamodb::Client::new(&config),
        sqs: aws_sdk_sqs::Client::new(&config),
    }
}

/// The template's function environment with every intrinsic resolved, plus the SDK settings
/// that point the functions at the emulator. `cargo lambda watch` gives all functions one
/// environment, so a variable with different values in different functions is an error.
fn function_environment(
    template: &Template,
    physical: &Physical,
    key: &SigningKey,
    endpoint: &str,
) -> Result<BTreeMap<String, String>> {
    let jwks = std::fs::canonicalize(&key.jwks_path)
        .with_context(|| format!("resolving {}", key.jwks_path.display()))?;
    let resolver = Resolver {
        template,
        physical,
        parameter_overrides: BTreeMap::from([
            ("JwtIssuer".to_string(), LOCAL_ISSUER.to_string()),
            ("JwtAudience".to_string(), LOCAL_AUDIENCE.to_string()),
            ("JwksUrl".to_string(), format!("file://{}", jwks.display())),
            ("RoleClaim".to_string(), LOCAL_ROLE_CLAIM.to_string()),
        ]),
    };
    let mut env = BTreeMap::new();
    for (name, value) in &template.global_environment {
        let value = resolver
            .resolve(value)
            .with_context(|| format!("Globals.Function.Environment.Variables.{name}"))?;
        env.insert(name.clone(), value);
    }
    for function in &template.functions {
        for (name, value) in &function.environment {
            let value = resolver
                .resolve(value)
                .with_context(|| format!("{}.Environment.Variables.{name}", function.logical_id))?;
            match env.get(name) {
                Some(existing) if *existing != value => bail!(
                    "{name} is {existing:?} in one place and {value:?} in {}; \
                     cargo lambda watch gives every function the same environment",
                    function.logical_id
                ),
                _ => env.insert(name.clone(), value),
            };
        }
    }
    for (name, value) in [
        ("AWS_ENDPOINT_URL", endpoint),
        ("AWS_REGION", REGION),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
    ] {
        env.insert(name.to_string(), value.to_string());
    }
    Ok(env)
}

async fn start_watch(paths: &Paths, args: &UpArgs, supervisor: &mut Supervisor) -> Result<()> {
    if port_answers(args.lambda_port).await {
        warn!(
            port = args.lambda_port,
            "reusing the function server already listening; it must read .local/functions.env"
        );
        return Ok(());
    }
    which("cargo-lambda")?;
    let cargo = which("cargo")?;
    // Build every function first, so no invocation waits for (or times out on) a compile;
    // `cargo lambda watch` runs the same dev-profile binaries.
    info!("building the functions (log: .local/logs/build.log)");
    let build = ["build", "--workspace", "--bins"].map(String::from);
    run_logged(&cargo, &build, &paths.root, &paths.logs().join("build.log")).await?;
    let env_file = std::fs::canonicalize(paths.functions_env())?;
    let mut watch_args = vec![
        "lambda".to_string(),
        "watch".to_string(),
        "--env-file".to_string(),
        env_file.display().to_string(),
        "-A".to_string(),
        "127.0.0.1".to_string(),
        "-P".to_string(),
        args.lambda_port.to_string(),
    ];
    if args.no_watch {
        watch_args.push("--ignore-changes".to_string());
    }
    let log = paths.logs().join("functions.log");
    supervisor.spawn("cargo lambda watch", &cargo, &watch_args, &paths.root, &log)?;
    until_listening(supervisor, args.lambda_port, "cargo lambda watch").await
}

/// Waits for a freshly started child to listen, failing early when it exits.
async fn until_listening(supervisor: &mut Supervisor, port: u16, what: &str) -> Result<()> {
    tokio::select! {
        listening = wait_for_port(port, START_LIMIT, what) => listening,
        exited = supervisor.any_exited() => Err(anyhow!("{exited} before listening; see .local/logs")),
    }
}

async fn start_gateway(
    template: &Template,
    invoker: &Invoker,
    port: u16,
    tasks: &mut JoinSet<()>,
) -> Result<()> {
    let mut routes = routes::RouteTable::default();
    for function in &template.functions {
        for route in &function.routes {
            routes.add(route, &function.binary, function.timeout_seconds);
        }
    }
    let schedules = Arc::new(schedules::Schedules::from_template(
        template,
        invoker.clone(),
        chrono::Utc::now(),
    )?);
    schedules.spawn_timers(tasks);
    let gateway = Arc::new(gateway::Gateway {
        routes,
        invoker: invoker.clone(),
        schedules,
    });
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("listening on 127.0.0.1:{port}"))?;
    let app = gateway::router(gateway).into_make_service_with_connect_info::<SocketAddr>();
    tasks.spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            error!(error = %e, "the API gateway stopped");
        }
    });
    info!(port, "API gateway listening");
    Ok(())
}

fn start_pollers(
    template: &Template,
    physical: &Physical,
    sqs: &aws_sdk_sqs::Client,
    invoker: &Invoker,
    tasks: &mut JoinSet<()>,
) -> Result<()> {
    for function in &template.functions {
        for source in function.sqs_sources.iter().filter(|s| s.enabled) {
            let queue = physical
                .queues
                .get(&source.queue)
                .ok_or_else(|| anyhow!("queue {} was not created", source.queue))?;
            let poller = pump::Poller {
                sqs: sqs.clone(),
                invoker: invoker.clone(),
                queue: queue.clone(),
                source: source.clone(),
                binary: function.binary.clone(),
                timeout: Duration::from_secs(function.timeout_seconds),
            };
            tasks.spawn(poller.run());
        }
    }
    Ok(())
}

fn stack_environment(
    args: &UpArgs,
    function_env: &BTreeMap<String, String>,
    key: &SigningKey,
    physical: &Physical,
) -> BTreeMap<String, String> {
    let mut stack = function_env.clone();
    stack.insert(
        "TIERUP_API_URL".into(),
        format!("http://127.0.0.1:{}", args.api_port),
    );
    stack.insert(
        "TIERUP_LAMBDA_URL".into(),
        format!("http://127.0.0.1:{}", args.lambda_port),
    );
    let pem = std::fs::canonicalize(&key.pem_path).unwrap_or_else(|_| key.pem_path.clone());
    stack.insert("TIERUP_SIGNING_KEY".into(), pem.display().to_string());
    stack.insert("TIERUP_KEY_ID".into(), key.kid.clone());
    stack.extend(emulator::queue_variables(physical));
    for (id, name) in &physical.tables {
        stack.insert(format!("TIERUP_TABLE_{id}"), name.clone());
    }
    stack
}

fn print_banner(paths: &Paths, args: &UpArgs, key: &SigningKey) -> Result<()> {
    let token = local_token(key, shared::auth::Role::Admin, 24 * 3600)?;
    let api = format!("http://127.0.0.1:{}", args.api_port);
    println!();
    println!("tierup local stack is up");
    println!("  API          {api}");
    println!("  functions    http://127.0.0.1:{}", args.lambda_port);
    println!("  emulator     http://127.0.0.1:{}", args.moto_port);
    println!("  settings     {}", paths.stack_env().display());
    println!("  logs         {}", paths.logs().display());
    println!();
    println!("admin token (24 h):");
    println!("{token}");
    println!();
    println!("try:");
    println!("  curl -s {api}/v1/health");
    println!("  curl -s -H \"Authorization: Bearer $(target/debug/tierup token --role admin)\" {api}/v1/stats/daily/$(date -u +%F)");
    println!();
    println!("Ctrl-C stops everything.");
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
async fn stop_signal() -> Result<&'static str> {
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => {
            result.context("waiting for Ctrl-C")?;
            Ok("interrupted")
        }
        _ = terminate.recv() => Ok("terminated"),
    }
}

/// Resolves (with the reason) when a child process or a task of the stack stops.
async fn stack_failure(supervisor: &mut Supervisor, tasks: &mut JoinSet<()>) -> anyhow::Error {
    tokio::select! {
        exited = supervisor.any_exited() => anyhow!("{exited}; see .local/logs"),
        _ = tasks.join_next() => anyhow!("a local stack task stopped unexpectedly"),
    }
}
