//! The api-events routes. `main.rs` wires clients; tests build the router against the local
//! emulator.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use chrono::{NaiveDate, Utc};
use serde::Serialize;

use shared::auth::{Role, Verifier};
use shared::config::Config;
use shared::error::ApiError;
use shared::events::{parse_batch, BatchError, Rejected};
use shared::http::{Authenticated, CorrelationId, HasVerifier};
use shared::queue::{pack_events, MessageSink, SqsProducer};
use shared::store::DynamoStore;
use shared::telemetry::{Metrics, Unit};

/// Everything the handlers share, built once per cold start.
pub struct AppState {
    pub config: Config,
    pub verifier: Verifier,
    pub store: DynamoStore,
    pub producer: SqsProducer,
}

impl HasVerifier for AppState {
    fn verifier(&self) -> &Verifier {
        &self.verifier
    }
}

/// The routes this function serves (kept equal to openapi.yaml by `make check-routes`).
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/v1/events"),
    ("GET", "/v1/users/{user_id}/profile"),
    ("GET", "/v1/stats/daily/{date}"),
    ("GET", "/v1/health"),
];

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/events", post(ingest))
        .route("/v1/users/{user_id}/profile", get(profile))
        .route("/v1/stats/daily/{date}", get(daily_stats))
        .route("/v1/health", get(health))
        .fallback(shared::http::not_found)
        // The handler enforces the 1 MB limit itself, answering problem+json.
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

#[derive(Debug, Serialize)]
pub struct IngestResponse {
    pub accepted: Vec<String>,
    pub rejected: Vec<Rejected>,
}

async fn ingest(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
    correlation: Option<Extension<CorrelationId>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Service, Role::Admin])?;
    let batch = parse_batch(&body, Utc::now()).map_err(|e| match e {
        BatchError::TooLarge { .. } | BatchError::TooManyEvents { .. } => {
            ApiError::PayloadTooLarge(e.to_string())
        }
        BatchError::Malformed(_) => ApiError::BadRequest(e.to_string()),
        BatchError::Invalid(field) => ApiError::Validation(vec![field]),
    })?;
    if batch.accepted.is_empty() {
        return Err(ApiError::AllRejected(batch.rejected));
    }
    let bodies = pack_events(&batch.accepted)?;
    let messages = bodies.len();
    state
        .producer
        .send_all(
            &state.config.events_queue_url,
            bodies,
            correlation.as_ref().map(|c| c.0 .0.as_str()),
        )
        .await?;
    Metrics::new("api-events")
        .value("EventsAccepted", batch.accepted.len() as f64, Unit::Count)
        .value("EventsRejected", batch.rejected.len() as f64, Unit::Count)
        .value("EventMessagesSent", messages as f64, Unit::Count)
        .emit();
    let response = IngestResponse {
        accepted: batch.accepted.into_iter().map(|e| e.event_id).collect(),
        rejected: batch.rejected,
    };
    Ok((StatusCode::ACCEPTED, Json(response)).into_response())
}

async fn profile(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
    Path(user_id): Path<String>,
) -> Result<Response, ApiError> {
    // The user themself, or an admin.
    caller.require(&[Role::Admin, Role::User])?;
    caller.require_user_access(&user_id)?;
    let profile = state
        .store
        .get_profile(&user_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no profile for user '{user_id}'")))?;
    let view = profile.view(Utc::now(), state.config.engagement_window_days);
    Ok(Json(view).into_response())
}

async fn daily_stats(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
    Path(date): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Admin])?;
    let day = NaiveDate::parse_from_str(&date, "%Y-%m-%d")
        .map_err(|_| ApiError::field("date", "must be a date as YYYY-MM-DD"))?;
    let stats = state.store.daily_stats(day).await?;
    Ok(Json(stats).into_response())
}

#[derive(Debug, Serialize)]
struct Reachability {
    name: String,
    reachable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

fn reach<E: std::error::Error>(
    name: &str,
    r: Result<Result<(), E>, tokio::time::error::Elapsed>,
) -> Reachability {
    let error = match r {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(shared::http::error_chain(&e)),
        Err(_) => Some("timed out".to_string()),
    };
    Reachability {
        name: name.to_string(),
        reachable: error.is_none(),
        error,
    }
}

async fn health(State(state): State<Arc<AppState>>) -> Response {
    const LIMIT: Duration = Duration::from_secs(3);
    let c = &state.config;
    let (table, events, jobs, outbox, dlq) = tokio::join!(
        tokio::time::timeout(LIMIT, state.store.ping()),
        tokio::time::timeout(LIMIT, state.producer.ping(&c.events_queue_url)),
        tokio::time::timeout(LIMIT, state.producer.ping(&c.jobs_queue_url)),
        tokio::time::timeout(LIMIT, state.producer.ping(&c.outbox_queue_url)),
        tokio::time::timeout(LIMIT, state.store.get_ops_document(shared::jobs::DLQ_WATCH)),
    );
    let table = reach(&c.table_name, table);
    let queues = vec![
        reach("events", events),
        reach("jobs", jobs),
        reach("outbox", outbox),
    ];
    let ok = table.reachable && queues.iter().all(|q| q.reachable);
    let body = serde_json::json!({
        "status": if ok { "ok" } else { "degraded" },
        "version": shared::VERSION,
        "table": table,
        "queues": queues,
        "dead_letters": dlq.ok().and_then(Result::ok).flatten(),
    });
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}
