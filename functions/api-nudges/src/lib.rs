//! The api-nudges routes: trial reminders, usage-based prompts, social proof, limited-time
//! offers and per-user optimization analytics. `main.rs` wires clients; tests build the
//! router against the local emulator.
//!
//! Roles: `admin` manages the social proof catalog and may read every user's nudges;
//! `service` plans trials, evaluates prompts and creates offers for any user; a `user` reads
//! only their own nudges and analytics and redeems only their own offers.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use shared::auth::{Principal, Role, Verifier};
use shared::config::Config;
use shared::error::ApiError;
use shared::events::FieldError;
use shared::http::{Authenticated, HasVerifier};
use shared::nudges::service::{CreateOffer, Nudges, TrialSpec};
use shared::queue::SqsProducer;
use shared::store::DynamoStore;

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

impl AppState {
    fn nudges(&self) -> Nudges<'_> {
        Nudges::from_config(&self.store, &self.producer, &self.config)
    }
}

/// The routes this function serves (kept equal to openapi.yaml and template.yaml by a test).
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/v1/trials/{user_id}/reminders"),
    ("GET", "/v1/users/{user_id}/reminders"),
    ("POST", "/v1/users/{user_id}/prompts/evaluate"),
    ("GET", "/v1/users/{user_id}/prompts"),
    ("POST", "/v1/social-proof"),
    ("GET", "/v1/social-proof"),
    ("GET", "/v1/social-proof/{proof_id}"),
    ("PATCH", "/v1/social-proof/{proof_id}"),
    ("DELETE", "/v1/social-proof/{proof_id}"),
    ("GET", "/v1/social-proof/{proof_id}/audit"),
    ("GET", "/v1/users/{user_id}/social-proof"),
    ("POST", "/v1/users/{user_id}/offers"),
    ("GET", "/v1/users/{user_id}/offers"),
    ("POST", "/v1/offers/{code}/redeem"),
    ("GET", "/v1/users/{user_id}/optimization"),
];

/// Largest request body.
const MAX_BODY: usize = 64 * 1024;
/// Longest trial, and how far back a trial may have started.
const MAX_TRIAL_DAYS: i64 = 366;
/// Longest user id, proof id or offer code in a path.
const MAX_ID: usize = 128;

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/trials/{user_id}/reminders", post(plan_trial))
        .route("/v1/users/{user_id}/reminders", get(list_reminders))
        .route(
            "/v1/users/{user_id}/prompts/evaluate",
            post(evaluate_prompt),
        )
        .route("/v1/users/{user_id}/prompts", get(list_prompts))
        .route("/v1/social-proof", post(create_proof).get(list_proofs))
        .route(
            "/v1/social-proof/{proof_id}",
            get(get_proof).patch(update_proof).delete(delete_proof),
        )
        .route("/v1/social-proof/{proof_id}/audit", get(proof_audit))
        .route("/v1/users/{user_id}/social-proof", get(user_social_proof))
        .route(
            "/v1/users/{user_id}/offers",
            post(create_offer).get(list_offers),
        )
        .route("/v1/offers/{code}/redeem", post(redeem_offer))
        .route("/v1/users/{user_id}/optimization", get(optimization))
        .fallback(shared::http::not_found)
        .method_not_allowed_fallback(shared::http::method_not_allowed)
        .with_state(state)
}

fn body_json<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    shared::http::json_body(body, MAX_BODY)
}

/// An empty body reads as `{}`.
fn body_or_empty<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return body_json(&Bytes::from_static(b"{}"));
    }
    body_json(body)
}

fn check_id(field: &str, value: &str) -> Result<(), ApiError> {
    if value.is_empty() || value.len() > MAX_ID || value.chars().any(char::is_control) {
        return Err(ApiError::field(
            field,
            format!("must be 1..={MAX_ID} characters without control characters"),
        ));
    }
    Ok(())
}

fn user_access(caller: &Principal, user_id: &str) -> Result<(), ApiError> {
    check_id("user_id", user_id)?;
    caller.require_user_access(user_id)?;
    Ok(())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanRequest {
    #[serde(default)]
    started_at: Option<DateTime<Utc>>,
    #[serde(default)]
    trial_ends_at: Option<DateTime<Utc>>,
    #[serde(default)]
    plan: Option<String>,
    #[serde(default)]
    tier: Option<String>,
}

/// Plans a trial's reminders; the trial comes from the body or, field by field, from the
/// trial on the user's profile.
async fn plan_trial(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
    Path(user_id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Admin, Role::Service])?;
    check_id("user_id", &user_id)?;
    let req: PlanRequest = body_or_empty(&body)?;
    let profile = state.store.get_profile(&user_id).await?;
    let known = profile
        .as_ref()
        .and_then(|p| p.trial.as_ref())
        .map(|t| &t.value);
    let now = Utc::now();
    let mut errors = Vec::new();
    // The start names the trial, so a retried request plans the same one.
    let started_at = req.started_at.or(known.map(|t| t.started_at));
    if started_at.is_none() {
        errors.push(FieldError::new(
            "started_at",
            "is required: the user's profile has no trial",
        ));
    }
    let ends_at = req.trial_ends_at.or(known.map(|t| t.ends_at));
    if ends_at.is_none() {
        errors.push(FieldError::new(
            "trial_ends_at",
            "is required: the user's profile has no trial",
        ));
    }
    let plan = req
        .plan
        .or(known.map(|t| t.plan.clone()))
        .unwrap_or_default();
    let tier = req
        .tier
        .or(known.map(|t| t.tier.clone()))
        .unwrap_or_default();
    for (field, v) in [("plan", &plan), ("tier", &tier)] {
        if v.len() > 64 {
            errors.push(FieldError::new(field, "must be at most 64 characters"));
        }
    }
    let (Some(started_at), Some(ends_at)) = (started_at, ends_at.filter(|_| errors.is_empty()))
    else {
        return Err(ApiError::Validation(errors));
    };
    if ends_at <= now {
        return Err(ApiError::field("trial_ends_at", "must be in the future"));
    }
    // Trials are days or weeks long; far-off times are typos (and would not sort in the
    // due-time index, which keys on the text of the time).
    if (now - started_at).num_days() > MAX_TRIAL_DAYS
        || started_at > now + chrono::Duration::days(1)
    {
        return Err(ApiError::field(
            "started_at",
            format!("must lie between {MAX_TRIAL_DAYS} days ago and tomorrow"),
        ));
    }
    if (ends_at - started_at).num_days() > MAX_TRIAL_DAYS {
        return Err(ApiError::field(
            "trial_ends_at",
            format!("must be at most {MAX_TRIAL_DAYS} days after started_at"),
        ));
    }
    let view = state
        .nudges()
        .plan_trial(
            &user_id,
            TrialSpec {
                started_at,
                ends_at,
                plan,
                tier,
            },
            now,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

async fn list_reminders(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
    Path(user_id): Path<String>,
) -> Result<Response, ApiError> {
    user_access(&caller, &user_id)?;
    let trials = state.nudges().user_trials(&user_id).await?;
    Ok(Json(json!({ "user_id": user_id, "trials": trials })).into_response())
}

async fn evaluate_prompt(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
    Path(user_id): Path<String>,
) -> Result<Response, ApiError> {
    user_access(&caller, &user_id)?;
    let answer = state
        .nudges()
        .evaluate_prompt(&user_id, Utc::now(), false)
        .await?;
    let status = if answer.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(answer)).into_response())
}

async fn list_prompts(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
    Path(user_id): Path<String>,
) -> Result<Response, ApiError> {
    user_access(&caller, &user_id)?;
    let prompts = state.nudges().user_prompts(&user_id).await?;
    Ok(Json(json!({ "user_id": user_id, "prompts": prompts })).into_response())
}

async fn create_proof(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
    body: Bytes,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Admin])?;
    let value: Value = body_json(&body)?;
    let proof = state
        .nudges()
        .create_proof(&value, &caller.sub, Utc::now())
        .await?;
    Ok((StatusCode::CREATED, Json(proof)).into_response())
}

async fn list_proofs(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Admin])?;
    let proofs = state.nudges().list_proofs().await?;
    Ok(Json(json!({ "proofs": proofs })).into_response())
}

async fn get_proof(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
    Path(proof_id): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Admin])?;
    check_id("proof_id", &proof_id)?;
    Ok(Json(state.nudges().get_proof(&proof_id).await?).into_response())
}

async fn update_proof(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
    Path(proof_id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Admin])?;
    check_id("proof_id", &proof_id)?;
    let value: Value = body_json(&body)?;
    let proof = state
        .nudges()
        .update_proof(&proof_id, &value, &caller.sub, Utc::now())
        .await?;
    Ok(Json(proof).into_response())
}

async fn delete_proof(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
    Path(proof_id): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Admin])?;
    check_id("proof_id", &proof_id)?;
    state
        .nudges()
        .delete_proof(&proof_id, &caller.sub, Utc::now())
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Who changed a catalog proof, when, and how (kept after a delete).
async fn proof_audit(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
    Path(proof_id): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Admin])?;
    check_id("proof_id", &proof_id)?;
    let audit = state.nudges().proof_audit(&proof_id).await?;
    if audit.is_empty() {
        return Err(ApiError::NotFound(format!("no social proof '{proof_id}'")));
    }
    Ok(Json(json!({ "proof_id": proof_id, "audit": audit })).into_response())
}

async fn user_social_proof(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
    Path(user_id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    user_access(&caller, &user_id)?;
    let mut errors = Vec::new();
    for key in query.keys() {
        if key != "feature" && key != "goals" {
            errors.push(FieldError::new(
                key.as_str(),
                "is not a parameter of this route (feature, goals)",
            ));
        }
    }
    let feature = query.get("feature").map(|f| f.trim().to_string());
    if feature
        .as_ref()
        .is_some_and(|f| f.is_empty() || f.len() > 64)
    {
        errors.push(FieldError::new("feature", "must be 1..=64 characters"));
    }
    let goals: Option<Vec<String>> = query.get("goals").map(|g| {
        g.split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    });
    if goals
        .as_ref()
        .is_some_and(|g| g.len() > 20 || g.iter().any(|s| s.len() > 64))
    {
        errors.push(FieldError::new(
            "goals",
            "at most 20 comma-separated goals of at most 64 characters",
        ));
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let proofs = state
        .nudges()
        // An admin previews: what they see is not recorded against the user's rotation.
        .proofs_for_user(
            &user_id,
            feature,
            goals,
            caller.role != Role::Admin,
            Utc::now(),
        )
        .await?;
    Ok(Json(json!({ "user_id": user_id, "social_proof": proofs })).into_response())
}

async fn create_offer(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
    Path(user_id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Admin, Role::Service])?;
    check_id("user_id", &user_id)?;
    let req: CreateOffer = body_or_empty(&body)?;
    let answer = state
        .nudges()
        .create_offer(&user_id, req, Utc::now())
        .await?;
    let status = if answer.eligible {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(answer)).into_response())
}

async fn list_offers(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
    Path(user_id): Path<String>,
) -> Result<Response, ApiError> {
    user_access(&caller, &user_id)?;
    let offers = state.nudges().user_offers(&user_id).await?;
    Ok(Json(json!({ "user_id": user_id, "offers": offers })).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RedeemRequest {
    /// Who redeems: a user token redeems for itself; a service or admin names the user.
    #[serde(default)]
    user_id: Option<String>,
}

async fn redeem_offer(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
    Path(code): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    check_id("code", &code)?;
    let req: RedeemRequest = body_or_empty(&body)?;
    let user_id = match caller.role {
        Role::User => match req.user_id {
            Some(u) if u != caller.sub => {
                return Err(ApiError::Auth(shared::auth::AuthError::Forbidden(
                    "a user token may only redeem for its own user id".into(),
                )))
            }
            _ => caller.sub.clone(),
        },
        Role::Admin | Role::Service => match req.user_id {
            Some(u) => u,
            None => {
                return Err(ApiError::field(
                    "user_id",
                    "is required for a service or admin token",
                ))
            }
        },
    };
    check_id("user_id", &user_id)?;
    let answer = state.nudges().redeem(&code, &user_id, Utc::now()).await?;
    Ok(Json(answer).into_response())
}

async fn optimization(
    State(state): State<Arc<AppState>>,
    Authenticated(caller): Authenticated,
    Path(user_id): Path<String>,
) -> Result<Response, ApiError> {
    user_access(&caller, &user_id)?;
    let report = state.nudges().optimization(&user_id, Utc::now()).await?;
    Ok(Json(report).into_response())
}
