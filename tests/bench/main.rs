//! tierup-bench: the measurements recorded in docs/BENCHMARKS.md. Run with `make bench`
//! (it starts a local stack and passes its settings in the environment).
//!
//! 1. Ingestion cost: 10,000 generated events packed as api-events packs them, folded
//!    through the store, which counts DynamoDB requests and write units; then the same
//!    events again (a full client retry), which must write nothing.
//! 2. Lambda invocations per 1,000 events at the configured batch sizes.
//! 3. Cold start: process start to first answered request, api-events next to a minimal
//!    Python handler that imports boto3 and reads one DynamoDB item, both against the
//!    emulator, served by a Lambda Runtime API emulated here.
//! 4. Assignment latency: p50 / p99 of `POST /v1/experiments/{key}/assign` through the local
//!    stack (gateway emulation, api-experiments, moto), first assignments and sticky repeats.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::Router;
use chrono::{Duration as Days, Utc};
use serde_json::{json, Value};
use shared::auth::Role;
use shared::events::{Event, EventBody, FeatureUsed, Identify};
use shared::ingest::{fold_events, IngestSettings};
use shared::profiles::FoldSettings;
use shared::queue::{pack_events, EventsMessage};
use shared::store::DynamoStore;
use tokio::sync::{mpsc, Mutex};

const EVENTS: usize = 10_000;
const USERS: usize = 250;
/// As template.yaml configures the events queue's event source.
const WORKER_BATCH_SIZE: usize = 10;
const API_MAX_EVENTS: usize = 500;
const COLD_RUNS: usize = 10;

fn env(name: &str) -> Result<String> {
    std::env::var(name).with_context(|| format!("{name} is not set: run through `make bench`"))
}

fn generate(run: &str) -> Vec<Event> {
    let day0 = Utc::now() - Days::days(3);
    let mut state: u64 = 11;
    let mut next = |n: u64| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) % n
    };
    let mut events: Vec<Event> = (0..USERS)
        .map(|u| Event {
            event_id: format!("{run}-id-{u}"),
            user_id: format!("{run}-u{u}"),
            timestamp: day0,
            body: EventBody::Identify(Identify {
                tier: Some(["free", "budget", "professional"][u % 3].into()),
                ..Identify::default()
            }),
        })
        .collect();
    let mut rest: Vec<Event> = (USERS..EVENTS)
        .map(|i| Event {
            event_id: format!("{run}-ev-{i}"),
            user_id: format!("{run}-u{}", next(USERS as u64)),
            timestamp: day0 + Days::seconds(1 + next(2 * 86_400) as i64),
            body: EventBody::FeatureUsed(FeatureUsed {
                feature: format!("f{}", next(5)),
                duration_ms: next(600_000),
            }),
        })
        .collect();
    rest.sort_by(|a, b| (&a.user_id, a.timestamp).cmp(&(&b.user_id, b.timestamp)));
    events.extend(rest);
    events
}

async fn ingestion_cost() -> Result<Value> {
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&aws), env("TABLE_NAME")?);
    let settings = IngestSettings {
        fold: FoldSettings::default(),
        dedupe_ttl_days: 35,
        aggregate_shards: 16,
    };
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let events = generate(&run);
    let mut messages = Vec::new();
    for request in events.chunks(API_MAX_EVENTS) {
        messages.extend(pack_events(request)?);
    }
    let started = Instant::now();
    for body in &messages {
        let m: EventsMessage = serde_json::from_str(body)?;
        fold_events(&store, m.events, &settings, Utc::now()).await?;
    }
    let first = store.stats();
    let first_secs = started.elapsed().as_secs_f64();
    for body in &messages {
        let m: EventsMessage = serde_json::from_str(body)?;
        let report = fold_events(&store, m.events, &settings, Utc::now()).await?;
        if report.applied != 0 {
            bail!("a retried message applied {} events", report.applied);
        }
    }
    let second = store.stats();
    let per = |v: f64| (v / EVENTS as f64 * 1000.0).round() / 1000.0;
    let messages_per_1000 = messages.len() as f64 * 1000.0 / EVENTS as f64;
    Ok(json!({
        "events": EVENTS,
        "users": USERS,
        "messages": messages.len(),
        "first_pass": {
            "write_requests_per_event": per(first.write_requests as f64),
            "write_units_per_event": per(first.write_units),
            "items_written_per_event": per(first.items_written as f64),
            "read_requests_per_event": per(first.read_requests as f64),
            "read_units_per_event": per(first.read_units),
            "seconds_against_emulator": (first_secs * 10.0).round() / 10.0,
        },
        "retry_pass": {
            "write_requests": second.write_requests - first.write_requests,
            "read_requests_per_event": per((second.read_requests - first.read_requests) as f64),
        },
        "invocations_per_1000_events": {
            "api_events_at_500_per_request": 1000 / API_MAX_EVENTS,
            "events_queue_messages": messages_per_1000,
            "worker_events_fewest": (messages_per_1000 / WORKER_BATCH_SIZE as f64).ceil(),
            "worker_events_most": messages_per_1000.ceil(),
        },
    }))
}

/// Sends 1,000 events through the API of the local stack and counts the function invocations
/// its gateway and SQS pump made until every event was folded.
async fn invocations_through_the_stack(token: &str) -> Result<Value> {
    let api = env("TIERUP_API_URL")?;
    let http = reqwest::Client::new();
    let counts = || async {
        let v: Value = http
            .get(format!("{api}/_local/invocations"))
            .send()
            .await?
            .json()
            .await?;
        anyhow::Ok(v)
    };
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    // A day of its own, 200 days back, so the daily total counts only these events.
    let day = (Utc::now() - Days::days(200)).date_naive();
    let day0 = day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
    let events: Vec<Value> = (0..1000)
        .map(|i| {
            json!({"event_id": format!("{run}-{i}"), "type": "feature_used",
                   "user_id": format!("{run}-u{}", i % 50),
                   "timestamp": (day0 + Days::seconds(i)).to_rfc3339(),
                   "properties": {"feature": "budget_tracker", "duration_seconds": 1}})
        })
        .collect();
    let before = counts().await?;
    for chunk in events.chunks(API_MAX_EVENTS) {
        let status = http
            .post(format!("{api}/v1/events"))
            .bearer_auth(token)
            .json(&json!({ "events": chunk }))
            .send()
            .await?
            .status();
        if status.as_u16() != 202 {
            bail!("POST /v1/events answered {status}");
        }
    }
    // Read before polling the stats, which are api-events invocations of their own.
    let posted = counts().await?;
    let started = Instant::now();
    loop {
        let stats: Value = http
            .get(format!("{api}/v1/stats/daily/{day}"))
            .bearer_auth(token)
            .send()
            .await?
            .json()
            .await?;
        if stats["total_events"].as_i64() == Some(1000) {
            break;
        }
        if started.elapsed() > Duration::from_secs(300) {
            bail!("the 1,000 events were not folded within 300 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let after = counts().await?;
    let delta = |to: &Value, f: &str| to[f].as_u64().unwrap_or(0) - before[f].as_u64().unwrap_or(0);
    Ok(json!({
        "events": 1000,
        "api_events_invocations": delta(&posted, "api-events"),
        "worker_events_invocations": delta(&after, "worker-events"),
        "note": "the local pump collects up to BatchSize messages within MaximumBatchingWindowInSeconds, as the SQS event source does",
    }))
}

fn percentile(sorted_ms: &[f64], p: f64) -> f64 {
    if sorted_ms.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted_ms.len() as f64).ceil() as usize;
    sorted_ms[rank.clamp(1, sorted_ms.len()) - 1]
}

/// Latency of `assign` through the local stack, one request at a time: 2,000 first
/// assignments (GetItem of the experiment and the assignment, one TransactWriteItems), then
/// 2,000 sticky repeats (the two reads only).
async fn assign_latency(admin: &str) -> Result<Value> {
    const N: usize = 2_000;
    let stack = tierup_e2e::Stack::from_env();
    let service = stack.token(Role::Service, "bench");
    let key = format!("bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let definition = json!({
        "key": key, "name": "bench", "test_type": "custom",
        "variants": [{"key": "a"}, {"key": "b"}, {"key": "c"}],
        "primary_metric": {"name": "converted", "kind": "proportion", "event": "subscription_started"}
    });
    let (status, body) = stack.post_json("/v1/experiments", admin, &definition).await;
    if status != 201 {
        bail!("creating the bench experiment: {status} {body}");
    }
    let (status, body) = stack
        .post_json(
            &format!("/v1/experiments/{key}/status"),
            admin,
            &json!({"status": "running"}),
        )
        .await;
    if status != 200 {
        bail!("starting the bench experiment: {status} {body}");
    }
    let path = format!("/v1/experiments/{key}/assign");
    let run = |round: &'static str| {
        let (stack, service, path) = (&stack, &service, &path);
        async move {
            let mut ms = Vec::with_capacity(N);
            for i in 0..N {
                let body = json!({"user_id": format!("bench-user-{i}")});
                let started = Instant::now();
                let (status, answer) = stack.post_json(path, service, &body).await;
                ms.push(started.elapsed().as_secs_f64() * 1000.0);
                if status != 200 || answer["in_experiment"] != true {
                    bail!("{round} assign {i}: {status} {answer}");
                }
            }
            ms.sort_by(f64::total_cmp);
            anyhow::Ok(json!({
                "requests": N,
                "p50_ms": percentile(&ms, 50.0),
                "p99_ms": percentile(&ms, 99.0),
                "max_ms": ms.last().copied().unwrap_or(f64::NAN),
            }))
        }
    };
    // Warm the function (its first request compiles nothing but starts the process).
    let _ = stack
        .post_json(&path, &service, &json!({"user_id": "warmup"}))
        .await;
    let first = run("first").await?;
    let sticky = run("sticky").await?;
    Ok(json!({ "first_assignment": first, "sticky_repeat": sticky,
        "note": "one request at a time through the stack's API Gateway emulation; the function runs under cargo lambda watch" }))
}

/// A Lambda Runtime API that hands out one event and reports when its response arrives.
#[derive(Clone)]
struct RuntimeApi {
    event: Arc<Mutex<Option<Value>>>,
    done: mpsc::Sender<(Instant, Value)>,
}

async fn next(State(api): State<RuntimeApi>) -> (HeaderMap, String) {
    loop {
        if let Some(event) = api.event.lock().await.take() {
            let mut headers = HeaderMap::new();
            headers.insert("lambda-runtime-aws-request-id", "bench-1".parse().unwrap());
            let deadline = (Utc::now().timestamp_millis() + 30_000).to_string();
            headers.insert("lambda-runtime-deadline-ms", deadline.parse().unwrap());
            headers.insert(
                "lambda-runtime-invoked-function-arn",
                "arn:aws:lambda:us-east-1:000000000000:function:bench"
                    .parse()
                    .unwrap(),
            );
            return (headers, event.to_string());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn respond(
    State(api): State<RuntimeApi>,
    Path(_id): Path<String>,
    body: String,
) -> &'static str {
    let value = serde_json::from_str(&body).unwrap_or(Value::String(body));
    let _ = api.done.send((Instant::now(), value)).await;
    "{}"
}

async fn failed(State(api): State<RuntimeApi>, body: String) -> &'static str {
    let _ = api
        .done
        .send((Instant::now(), json!({"runtime_error": body})))
        .await;
    "{}"
}

/// Where the started processes' stderr goes: the stack's state directory.
fn cold_start_log() -> Result<std::path::PathBuf> {
    let state = std::env::var("TIERUP_STATE_DIR").unwrap_or_else(|_| ".local".to_string());
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(state)
        .join("logs");
    std::fs::create_dir_all(&dir)?;
    Ok(dir.join("bench-cold-start.log"))
}

struct Sample {
    millis: f64,
    peak_rss_kb: u64,
    response: Value,
}

fn peak_rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

async fn cold_start(program: &str, args: &[&str], event: Value) -> Result<Sample> {
    let (done_tx, mut done_rx) = mpsc::channel(1);
    let api = RuntimeApi {
        event: Arc::new(Mutex::new(Some(event))),
        done: done_tx,
    };
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(respond),
        )
        .route("/2018-06-01/runtime/invocation/{id}/error", post(failed))
        .route("/2018-06-01/runtime/init/error", post(failed))
        .with_state(api);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let start = Instant::now();
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "bench")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        // Lambda sets both; boto3 reads only the second.
        .env("AWS_DEFAULT_REGION", env("AWS_REGION")?)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(cold_start_log()?)?)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("start {program}"))?;
    let (at, response) = tokio::time::timeout(Duration::from_secs(60), done_rx.recv())
        .await
        .context("no response within 60 s")?
        .context("runtime API closed")?;
    let rss = child.id().map(peak_rss_kb).unwrap_or(0);
    let _ = child.kill().await;
    server.abort();
    Ok(Sample {
        millis: (at - start).as_secs_f64() * 1000.0,
        peak_rss_kb: rss,
        response,
    })
}

fn summary(name: &str, samples: &[Sample]) -> Value {
    let mut ms: Vec<f64> = samples.iter().map(|s| s.millis).collect();
    ms.sort_by(f64::total_cmp);
    let median = ms[ms.len() / 2];
    let rss = samples.iter().map(|s| s.peak_rss_kb).max().unwrap_or(0);
    json!({
        "handler": name,
        "runs": ms.len(),
        "median_ms": (median * 10.0).round() / 10.0,
        "min_ms": (ms[0] * 10.0).round() / 10.0,
        "max_ms": (ms[ms.len() - 1] * 10.0).round() / 10.0,
        "peak_rss_mb": (rss as f64 / 1024.0 * 10.0).round() / 10.0,
        "first_response": samples.first().map(|s| s.response.clone()),
    })
}

fn profile_request(token: &str) -> Value {
    json!({
        "version": "2.0",
        "routeKey": "GET /v1/users/{user_id}/profile",
        "rawPath": "/v1/users/bench-user/profile",
        "rawQueryString": "",
        "headers": {"authorization": format!("Bearer {token}"), "host": "localhost"},
        "pathParameters": {"user_id": "bench-user"},
        "requestContext": {
            "accountId": "000000000000", "apiId": "local", "domainName": "localhost",
            "domainPrefix": "localhost", "requestId": "bench-1", "routeKey": "GET /v1/users/{user_id}/profile",
            "stage": "$default", "time": "24/Nov/2026:00:00:00 +0000", "timeEpoch": 0,
            "http": {"method": "GET", "path": "/v1/users/bench-user/profile", "protocol": "HTTP/1.1",
                     "sourceIp": "127.0.0.1", "userAgent": "tierup-bench"}
        },
        "isBase64Encoded": false
    })
}

async fn cold_starts(token: &str) -> Result<Value> {
    let root = format!("{}/..", env!("CARGO_MANIFEST_DIR"));
    let release = format!("{root}/target/release/api-events");
    let debug = format!("{root}/target/debug/api-events");
    let (binary, profile) = if std::path::Path::new(&release).exists() {
        (release, "release")
    } else {
        (debug, "debug")
    };
    let python = format!("{root}/.venv/bin/python");
    let handler = format!("{root}/scripts/bench/python_handler.py");
    let mut rust = Vec::new();
    let mut py = Vec::new();
    // Interleaved, so both see the same machine state.
    for _ in 0..COLD_RUNS {
        rust.push(cold_start(&binary, &[], profile_request(token)).await?);
        py.push(cold_start(&python, &[&handler], json!({"user_id": "bench-user"})).await?);
    }
    Ok(json!({
        "api_events": summary(&format!("api-events ({profile} build)"), &rust),
        "python_boto3": summary("python3 + boto3, one GetItem", &py),
    }))
}

#[tokio::main]
async fn main() -> Result<()> {
    // Phases to run: any of `ingestion`, `invocations`, `cold-start`, `assign-latency`
    // (default: all).
    let phases: Vec<String> = std::env::args().skip(1).collect();
    let wanted = |p: &str| phases.is_empty() || phases.iter().any(|a| a == p);
    let admin = tierup_e2e::Stack::from_env().token(Role::Admin, "bench");
    if wanted("ingestion") {
        let ingestion = ingestion_cost().await?;
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "ingestion": ingestion }))?
        );
    }
    if wanted("invocations") {
        let invocations = invocations_through_the_stack(&admin).await?;
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "invocations_per_1000_events": invocations }))?
        );
    }
    if wanted("cold-start") {
        let cold = cold_starts(&admin).await?;
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "cold_start": cold }))?
        );
    }
    if wanted("assign-latency") {
        let latency = assign_latency(&admin).await?;
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "assign_latency": latency }))?
        );
    }
    Ok(())
}
