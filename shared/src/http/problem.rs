//! RFC 9457 problem details: the one place errors become status codes and bodies.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::auth::AuthError;
use crate::error::ApiError;
use crate::events::{FieldError, Rejected};

pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// An RFC 9457 problem document, with tierup's extension members.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Problem {
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Field-level problems of a validation error.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// Refused events of a batch none of whose events was accepted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rejected: Vec<Rejected>,
}

impl Problem {
    fn new(status: StatusCode, slug: &str, title: &str, detail: impl Into<String>) -> Problem {
        Problem {
            type_uri: format!("https://tierup.dev/problems/{slug}"),
            title: title.to_string(),
            status: status.as_u16(),
            detail: detail.into(),
            errors: Vec::new(),
            rejected: Vec::new(),
        }
    }
}

/// Maps an error to its problem document. Internal failures are logged with their source
/// chain and shown to the client only as a safe message.
pub fn problem_for(error: &ApiError) -> Problem {
    match error {
        ApiError::Validation(errors) => {
            let detail = errors
                .iter()
                .map(|e| format!("{}: {}", e.field, e.message))
                .collect::<Vec<_>>()
                .join("; ");
            let mut p = Problem::new(
                StatusCode::BAD_REQUEST,
                "validation",
                "Invalid input",
                detail,
            );
            p.errors = errors.clone();
            p
        }
        ApiError::BadRequest(detail) => Problem::new(
            StatusCode::BAD_REQUEST,
            "malformed-request",
            "Malformed request",
            detail.clone(),
        ),
        ApiError::PayloadTooLarge(detail) => Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload-too-large",
            "Payload too large",
            detail.clone(),
        ),
        ApiError::Auth(AuthError::MissingToken) => Problem::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Unauthorized",
            "a bearer token is required",
        ),
        ApiError::Auth(AuthError::InvalidToken(reason)) => Problem::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Unauthorized",
            format!("the bearer token is not valid: {reason}"),
        ),
        ApiError::Auth(AuthError::Forbidden(reason)) => Problem::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "Forbidden",
            reason.clone(),
        ),
        ApiError::Auth(AuthError::Jwks { .. }) => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Service unavailable",
            "token verification keys are unavailable",
        ),
        ApiError::MethodNotAllowed => Problem::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            "Method not allowed",
            "this route does not accept that method",
        ),
        ApiError::NotFound(what) => Problem::new(
            StatusCode::NOT_FOUND,
            "not-found",
            "Not found",
            what.clone(),
        ),
        ApiError::Conflict(what) => {
            Problem::new(StatusCode::CONFLICT, "conflict", "Conflict", what.clone())
        }
        ApiError::Gone(what) => Problem::new(StatusCode::GONE, "gone", "Gone", what.clone()),
        ApiError::AllRejected(rejected) => {
            let mut p = Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation",
                "Invalid input",
                format!("none of the {} events was accepted", rejected.len()),
            );
            p.rejected = rejected.clone();
            p
        }
        ApiError::Unavailable(_) | ApiError::Store(_) | ApiError::Queue(_) => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Service unavailable",
            "a dependency is unavailable; retry the request (it is safe to retry)",
        ),
    }
}

/// Renders a problem as a response with the problem+json content type.
pub fn problem_response(problem: &Problem) -> Response {
    let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::to_vec(problem).unwrap_or_default();
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(PROBLEM_CONTENT_TYPE),
    );
    response
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = problem_for(&self);
        if problem.status >= 500 {
            tracing::error!(error = ?self, error_chain = %error_chain(&self), "request failed");
        } else {
            tracing::info!(status = problem.status, detail = %problem.detail, "request refused");
        }
        problem_response(&problem)
    }
}

/// `error: cause: cause...` for the logs.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_errors_name_the_field() {
        let p = problem_for(&ApiError::field("events[0].timestamp", "is required"));
        assert_eq!(p.status, 400);
        assert_eq!(p.errors[0].field, "events[0].timestamp");
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["type"], "https://tierup.dev/problems/validation");
        assert!(json.get("rejected").is_none());
    }

    #[test]
    fn statuses_follow_the_error_kind() {
        let status = |e: ApiError| problem_for(&e).status;
        assert_eq!(status(ApiError::BadRequest("x".into())), 400);
        assert_eq!(status(ApiError::Auth(AuthError::MissingToken)), 401);
        assert_eq!(
            status(ApiError::Auth(AuthError::Forbidden("x".into()))),
            403
        );
        assert_eq!(status(ApiError::NotFound("x".into())), 404);
        assert_eq!(status(ApiError::Conflict("x".into())), 409);
        assert_eq!(status(ApiError::PayloadTooLarge("x".into())), 413);
    }

    #[test]
    fn internal_detail_is_not_shown_to_clients() {
        let e = ApiError::Queue(crate::error::QueueError::TooLarge { bytes: 7 });
        let p = problem_for(&e);
        assert_eq!(p.status, 503);
        assert!(!p.detail.contains('7'));
    }
}
