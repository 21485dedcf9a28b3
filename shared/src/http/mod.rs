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

/// The router fallback: a path no route serves.
pub async fn not_found() -> crate::error::ApiError {
    crate::error::ApiError::NotFound("no such route".to_string())
}

/// The router's method fallback: a route that does not take this method.
pub async fn method_not_allowed() -> crate::error::ApiError {
    crate::error::ApiError::MethodNotAllowed
}

/// A JSON request body of at most `max` bytes, parsed into `T` with the field at fault named.
pub fn json_body<T: serde::de::DeserializeOwned>(
    body: &[u8],
    max: usize,
) -> Result<T, crate::error::ApiError> {
    if body.len() > max {
        return Err(crate::error::ApiError::PayloadTooLarge(format!(
            "the body has {} bytes; the limit is {max}",
            body.len()
        )));
    }
    crate::experiments::model::parse_json(body).map_err(crate::error::ApiError::Validation)
}
