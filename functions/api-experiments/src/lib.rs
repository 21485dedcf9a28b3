//! The api-experiments routes. `main.rs` wires clients; tests build the router against the
//! local emulator.
//!
//! Roles: `admin` manages experiments and reads their results, audit and history; `service`
//! assigns users and records results (and may compute sample sizes); a `user` may ask for
//! their own assignments only.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use shared::auth::{Principal, Role, Verifier};
use shared::config::Config;
use shared::error::ApiError;
use shared::events::FieldError;
use shared::experiments::analysis;
use shared::experiments::assign::{decide, AssignmentView, Decision};
use shared::experiments::fold::{
    fold_observations, Assignment, MetricFoldReport, MetricFoldSettings, MetricStore, Observation,
};
use shared::experiments::lifecycle::{self, AuditRecord, LifecycleError};
use shared::experiments::model::{CreateRequest, Experiment, MetricKind, Status, UpdateRequest};
use shared::http::{Authenticated, HasVerifier};
use shared::ingest::CommitOutcome;
use shared::statistics;
use shared::store::{Created, DynamoStore};

/// Everything the handlers share, built once per cold start.
pub struct AppState {
    pub config: Config,
    pub verifier: Verifier,
    pub store: DynamoStore,
}

impl HasVerifier for AppState {
    fn verifier(&self) -> &Verifier {
        &self.verifier
    }
}

/// The routes this function serves (kept equal to openapi.yaml and template.yaml by a test).
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/v1/experiments"),
    ("GET", "/v1/experiments"),
    ("POST", "/v1/experiments/sample-size"),
    ("GET", "/v1/experiments/{key}"),
    ("PATCH", "/v1/experiments/{key}"),
    ("POST", "/v1/experiments/{key}/status"),
    ("GET", "/v1/experiments/{key}/audit"),
    ("GET", "/v1/experiments/{key}/history"),
    ("GET", "/v1/experiments/{key}/results"),
    ("POST", "/v1/experiments/{key}/results"),
    ("POST", "/v1/experiments/{key}/assign"),
    ("POST", "/v1/assignments"),
];

/// Results entries per `POST /v1/experiments/{key}/results`.
pub const MAX_RESULTS: usize = 500;
/// Largest request body.
const MAX_BODY: usize = 256 * 1024;

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/experiments", post(create).get(list))
        .route("/v1/experiments/sample-size", post(sample_size))
        .route("/v1/experiments/{key}", get(read).patch(update))
        .route("/v1/experiments/{key}/status", post(change_status))
        .route("/v1/experiments/{key}/audit", get(audit))
        .route("/v1/experiments/{key}/history", get(history))
        .route(
            "/v1/experiments/{key}/results",
            get(results).post(record_results),
        )
        .route("/v1/experiments/{key}/assign", post(assign))
        .route("/v1/assignments", post(assign_all))
        .fallback(shared::http::not_found)
        .method_not_allowed_fallback(shared::http::method_not_allowed)
        .with_state(state)
}

fn body_json<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    shared::http::json_body(body, MAX_BODY)
}

fn lifecycle_error(e: LifecycleError) -> ApiError {
    match e {
        LifecycleError::Invalid(errors) => ApiError::Validation(errors),
        other => ApiError::Conflict(other.to_string()),
    }
}

async fn load(state: &AppState, key: &str) -> Result<Experiment, ApiError> {
    state
        .store
        .get_experiment(key)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no experiment '{key}'")))
}

/// Saves a change made to `current` with its audit record, if nobody changed it meanwhile.
async fn save(
    state: &AppState,
    current: &Experiment,
    next: Experiment,
    audit: &AuditRecord,
) -> Result<Response, ApiError> {
    match state
        .store
        .save_experiment(&next, current.version, Some(audit))
        .await?
    {
        CommitOutcome::Committed => Ok(Json(next).into_response()),
        CommitOutcome::Conflict => Err(ApiError::Conflict(
            "the experiment changed while this request was applied; read it again and retry"
                .to_string(),
        )),
    }
}

async fn create(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
    body: Bytes,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Admin])?;
    let req: CreateRequest = body_json(&body)?;
    let definition = req.into_definition().map_err(ApiError::Validation)?;
    let (experiment, audit) = lifecycle::create(definition, &caller.sub, Utc::now());
    match state.store.create_experiment(&experiment, &audit).await? {
        Created::Created => Ok((StatusCode::CREATED, Json(experiment)).into_response()),
        Created::Exists => Err(ApiError::Conflict(format!(
            "an experiment with key '{}' already exists",
            experiment.key()
        ))),
    }
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    status: Option<String>,
}

async fn list(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Admin])?;
    let statuses = match q.status.as_deref() {
        None | Some("") => Status::ALL.to_vec(),
        Some(list) => list
            .split(',')
            .map(|s| {
                Status::parse(s.trim()).ok_or_else(|| {
                    ApiError::field(
                        "status",
                        "must be a comma-separated list of draft, running, paused, completed, cancelled",
                    )
                })
            })
            .collect::<Result<std::collections::BTreeSet<_>, _>>()?
            .into_iter()
            .collect(),
    };
    let experiments = state.store.list_experiments(&statuses).await?;
    Ok(Json(json!({ "experiments": experiments })).into_response())
}

async fn read(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Admin])?;
    Ok(Json(load(&state, &key).await?).into_response())
}

async fn update(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
    Path(key): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Admin])?;
    let req: UpdateRequest = body_json(&body)?;
    let current = load(&state, &key).await?;
    let (next, audit) = match lifecycle::update(&current, &req, &caller.sub, Utc::now()) {
        Ok(change) => change,
        // Nothing to write: answer with the experiment as it is.
        Err(LifecycleError::Unchanged) => return Ok(Json(current).into_response()),
        Err(e) => return Err(lifecycle_error(e)),
    };
    save(&state, &current, next, &audit).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusRequest {
    status: String,
    #[serde(default)]
    winner: Option<String>,
}

async fn change_status(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
    Path(key): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Admin])?;
    let req: StatusRequest = body_json(&body)?;
    let to = Status::parse(&req.status).ok_or_else(|| {
        ApiError::field(
            "status",
            "must be one of draft, running, paused, completed, cancelled",
        )
    })?;
    let current = load(&state, &key).await?;
    let (next, audit) =
        lifecycle::transition(&current, to, req.winner.as_deref(), &caller.sub, Utc::now())
            .map_err(lifecycle_error)?;
    save(&state, &current, next, &audit).await
}

async fn audit(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Admin])?;
    load(&state, &key).await?;
    let records = state.store.experiment_audit(&key).await?;
    Ok(Json(json!({ "experiment": key, "audit": records })).into_response())
}

#[derive(Debug, Deserialize)]
struct HistoryQuery {
    limit: Option<String>,
}

/// Check points returned by default, and at most, per history request.
const HISTORY_DEFAULT: usize = 500;
const HISTORY_MAX: usize = 5000;

async fn history(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
    Path(key): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Admin])?;
    let limit = match q.limit.as_deref() {
        None => HISTORY_DEFAULT,
        Some(text) => text.parse::<usize>().unwrap_or(0),
    };
    if limit == 0 || limit > HISTORY_MAX {
        return Err(ApiError::field(
            "limit",
            format!("must be between 1 and {HISTORY_MAX}"),
        ));
    }
    let experiment = load(&state, &key).await?;
    let checks = state.store.experiment_history(&key, limit).await?;
    Ok(Json(json!({
        "experiment": key,
        "status": experiment.status,
        "outcome": experiment.outcome,
        "checks": checks,
    }))
    .into_response())
}

async fn results(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Admin])?;
    let experiment = load(&state, &key).await?;
    let stats = state
        .store
        .phase_stats(&key, experiment.bucket_version)
        .await?;
    let results = analysis::compute(&experiment, &stats, Utc::now())
        .map_err(|e| ApiError::Unavailable(Box::new(e)))?;
    Ok(Json(results).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResultEntry {
    event_id: String,
    user_id: String,
    metric: String,
    #[serde(default)]
    value: Option<f64>,
    #[serde(default)]
    timestamp: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResultsRequest {
    results: Vec<ResultEntry>,
}

#[derive(Debug, Serialize)]
struct ResultsResponse {
    applied: usize,
    duplicates: usize,
    not_assigned: usize,
}

fn fold_settings(c: &Config) -> MetricFoldSettings {
    MetricFoldSettings {
        dedupe_ttl_days: c.dedupe_ttl_days,
        shards: c.aggregate_shards,
    }
}

async fn record_results(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
    Path(key): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Service, Role::Admin])?;
    let req: ResultsRequest = body_json(&body)?;
    if req.results.is_empty() || req.results.len() > MAX_RESULTS {
        return Err(ApiError::field(
            "results",
            format!("must hold 1 to {MAX_RESULTS} entries"),
        ));
    }
    let experiment = load(&state, &key).await?;
    let now = Utc::now();
    let metrics = experiment.definition.metrics();
    let mut problems = Vec::new();
    let mut by_user: BTreeMap<String, Vec<Observation>> = BTreeMap::new();
    for (i, r) in req.results.into_iter().enumerate() {
        let Some((_, m)) = metrics.iter().find(|(_, m)| m.name == r.metric) else {
            problems.push(FieldError::new(
                format!("results[{i}].metric"),
                format!("'{}' is not a metric of this experiment", r.metric),
            ));
            continue;
        };
        if r.event_id.is_empty() || r.event_id.len() > 128 {
            problems.push(FieldError::new(
                format!("results[{i}].event_id"),
                "must be 1-128 characters",
            ));
        }
        if r.user_id.is_empty() || r.user_id.len() > 256 {
            problems.push(FieldError::new(
                format!("results[{i}].user_id"),
                "must be 1-256 characters",
            ));
        }
        let value = match (m.kind, r.value) {
            (MetricKind::Proportion, None | Some(1.0)) => 1.0,
            (MetricKind::Proportion, Some(_)) => {
                problems.push(FieldError::new(
                    format!("results[{i}].value"),
                    "a proportion result records a conversion: leave value out or send 1",
                ));
                continue;
            }
            (_, Some(v)) if v.is_finite() && v.abs() < 1e12 => v,
            (MetricKind::Mean, None) => {
                problems.push(FieldError::new(
                    format!("results[{i}].value"),
                    "is required for a mean metric",
                ));
                continue;
            }
            _ => {
                problems.push(FieldError::new(
                    format!("results[{i}].value"),
                    "must be a finite number below 1e12 in magnitude",
                ));
                continue;
            }
        };
        if let Some(t) = r.timestamp {
            if t > now + chrono::Duration::minutes(5) {
                problems.push(FieldError::new(
                    format!("results[{i}].timestamp"),
                    "must not be in the future",
                ));
            }
        }
        by_user
            .entry(r.user_id.clone())
            .or_default()
            .push(Observation {
                event_id: r.event_id,
                user_id: r.user_id,
                timestamp: r.timestamp.unwrap_or(now),
                metric: r.metric,
                value,
            });
    }
    if !problems.is_empty() {
        return Err(ApiError::Validation(problems));
    }
    if !experiment.status.collects_metrics() {
        return Err(ApiError::Conflict(format!(
            "experiment '{key}' is {}; results are recorded while it is running or paused",
            experiment.status.as_str()
        )));
    }
    let mut report = MetricFoldReport::default();
    for (user, obs) in by_user {
        let r = fold_observations(
            &state.store,
            &experiment,
            &user,
            &obs,
            fold_settings(&state.config),
            now,
        )
        .await
        .map_err(|e| ApiError::Unavailable(Box::new(e)))?;
        report.applied += r.applied;
        report.duplicates += r.duplicates;
        report.not_assigned += r.not_assigned;
    }
    Ok(Json(ResultsResponse {
        applied: report.applied,
        duplicates: report.duplicates,
        not_assigned: report.not_assigned,
    })
    .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AssignRequest {
    user_id: String,
    #[serde(default)]
    attributes: Map<String, Value>,
}

fn check_assign_caller(caller: &Principal, req: &AssignRequest) -> Result<(), ApiError> {
    caller.require(&[Role::Service, Role::Admin, Role::User])?;
    caller.require_user_access(&req.user_id)?;
    if req.user_id.is_empty() || req.user_id.len() > 256 {
        return Err(ApiError::field("user_id", "must be 1-256 characters"));
    }
    if Value::Object(req.attributes.clone()).to_string().len() > 16 * 1024 {
        return Err(ApiError::field(
            "attributes",
            "must be at most 16 KB of JSON",
        ));
    }
    Ok(())
}

/// Assigns one user to one experiment: the stored assignment if there is one for the current
/// bucket version, otherwise a new one stored with a conditional write (which also counts the
/// exposure, once).
async fn assign_user(
    state: &AppState,
    experiment: &Experiment,
    user_id: &str,
    attributes: &Map<String, Value>,
    existing: Option<Assignment>,
) -> Result<AssignmentView, ApiError> {
    let now = Utc::now();
    match decide(experiment, user_id, attributes, existing.as_ref(), now) {
        Decision::Sticky(a) => Ok(AssignmentView::assigned(experiment, &a, true)),
        Decision::Forced(a) => Ok(AssignmentView::assigned(experiment, &a, false)),
        Decision::NotInExperiment(reason) => {
            Ok(AssignmentView::not_in(experiment.key(), user_id, reason))
        }
        Decision::New(a) => {
            match state
                .store
                .create_assignment(&a, state.config.aggregate_shards)
                .await?
            {
                Created::Created => Ok(AssignmentView::assigned(experiment, &a, false)),
                Created::Exists => {
                    // A concurrent call stored it first: answer with that one.
                    let stored = state.store.assignment(experiment.key(), user_id).await?;
                    match stored {
                        Some(s) if s.bucket_version == experiment.bucket_version => {
                            Ok(AssignmentView::assigned(experiment, &s, true))
                        }
                        _ => Err(ApiError::Conflict(
                            "the assignment changed concurrently; retry".to_string(),
                        )),
                    }
                }
            }
        }
    }
}

async fn assign(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
    Path(key): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: AssignRequest = body_json(&body)?;
    check_assign_caller(&caller, &req)?;
    let experiment = load(&state, &key).await?;
    let existing = state.store.assignment(&key, &req.user_id).await?;
    let view = assign_user(&state, &experiment, &req.user_id, &req.attributes, existing).await?;
    Ok(Json(view).into_response())
}

async fn assign_all(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: AssignRequest = body_json(&body)?;
    check_assign_caller(&caller, &req)?;
    let running = state.store.list_experiments(&[Status::Running]).await?;
    let mut existing: BTreeMap<String, Assignment> = state
        .store
        .user_assignments(&req.user_id)
        .await?
        .into_iter()
        .map(|a| (a.experiment.clone(), a))
        .collect();
    let mut assignments = Vec::new();
    for e in &running {
        let prior = existing.remove(e.key());
        assignments.push(assign_user(&state, e, &req.user_id, &req.attributes, prior).await?);
    }
    Ok(Json(json!({ "user_id": req.user_id, "assignments": assignments })).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SampleSizeRequest {
    metric: MetricKind,
    #[serde(default)]
    baseline: Option<f64>,
    #[serde(default)]
    sigma: Option<f64>,
    #[serde(default)]
    mde_absolute: Option<f64>,
    #[serde(default)]
    mde_relative: Option<f64>,
    #[serde(default = "default_alpha")]
    alpha: f64,
    #[serde(default = "default_power")]
    power: f64,
}

fn default_alpha() -> f64 {
    0.05
}

fn default_power() -> f64 {
    0.8
}

async fn sample_size(
    Authenticated(caller): Authenticated,
    body: Bytes,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Admin, Role::Service])?;
    let req: SampleSizeRequest = body_json(&body)?;
    let mde = match (req.mde_absolute, req.mde_relative, req.metric) {
        (Some(a), None, _) => a,
        (None, Some(r), MetricKind::Proportion) => match req.baseline {
            Some(b) => b * r,
            None => return Err(ApiError::field("baseline", "is required")),
        },
        (None, Some(_), MetricKind::Mean) => {
            return Err(ApiError::field(
                "mde_relative",
                "applies to proportion metrics; give mde_absolute for a mean metric",
            ))
        }
        _ => {
            return Err(ApiError::field(
                "mde_absolute",
                "give exactly one of mde_absolute and mde_relative",
            ))
        }
    };
    let n = match req.metric {
        MetricKind::Proportion => {
            let baseline = req
                .baseline
                .ok_or_else(|| ApiError::field("baseline", "is required"))?;
            statistics::sample_size_proportion(baseline, mde, req.alpha, req.power)
        }
        MetricKind::Mean => {
            let sigma = req
                .sigma
                .ok_or_else(|| ApiError::field("sigma", "is required for a mean metric"))?;
            statistics::sample_size_mean(sigma, mde, req.alpha, req.power)
        }
    }
    .map_err(|e| {
        // The engine calls the standard deviation std_dev; this API calls it sigma.
        let field = match e.field() {
            "std_dev" => "sigma",
            f => f,
        };
        ApiError::field(field, e.to_string().replacen("std_dev", "sigma", 1))
    })?;
    Ok(Json(json!({
        "metric": req.metric,
        "mde_absolute": mde,
        "alpha": req.alpha,
        "power": req.power,
        "n_per_variant": n,
    }))
    .into_response())
}
