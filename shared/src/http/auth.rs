//! The authenticated caller, as an axum extractor.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::auth::{Principal, Verifier};
use crate::error::ApiError;

/// State that can verify tokens.
pub trait HasVerifier {
    fn verifier(&self) -> &Verifier;
}

/// A verified caller. Extracting it answers 401 without a valid token.
#[derive(Debug, Clone)]
pub struct Authenticated(pub Principal);

impl<S> FromRequestParts<Arc<S>> for Authenticated
where
    S: HasVerifier + Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<S>) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let principal = state.verifier().verify_header(header)?;
        tracing::Span::current().record("caller", principal.sub.as_str());
        Ok(Authenticated(principal))
    }
}
