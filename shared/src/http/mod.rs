//! HTTP plumbing shared by the API functions: problem+json errors, the authenticated caller
//! extractor, correlation ids and the Lambda runner for an axum router.

mod auth;
mod correlation;
mod problem;

pub use auth::{Authenticated, HasVerifier};
pub use correlation::{correlation_layer, CorrelationId, CORRELATION_HEADER};
pub use problem::{error_chain, problem_for, problem_response, Problem, PROBLEM_CONTENT_TYPE};

/// Runs an axum router as a Lambda function behind API Gateway (HTTP API, payload v2) or a
/// function URL, with correlation ids on every request.
pub async fn run(router: axum::Router) -> Result<(), lambda_http::Error> {
    lambda_http::run(router.layer(axum::middleware::from_fn(correlation_layer))).await
}
