//! Correlation ids: taken from the `x-correlation-id` request header when the caller sends a
//! sane one, else the Lambda request id, else a new UUID; recorded on the request's span and
//! echoed in the response.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

pub const CORRELATION_HEADER: &str = "x-correlation-id";

/// The request's correlation id, available to handlers as an extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorrelationId(pub String);

fn sane(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 128
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
}

pub async fn correlation_layer(mut request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(CORRELATION_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| sane(v))
        .map(str::to_string)
        .or_else(|| {
            request
                .extensions()
                .get::<lambda_runtime::Context>()
                .map(|c| c.request_id.clone())
                .filter(|v| !v.is_empty())
        })
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    request.extensions_mut().insert(CorrelationId(id.clone()));
    let span = tracing::info_span!(
        "request",
        correlation_id = %id,
        method = %request.method(),
        path = %request.uri().path(),
        caller = tracing::field::Empty,
    );
    let mut response = next.run(request).instrument(span).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(CORRELATION_HEADER, value);
    }
    response
}
