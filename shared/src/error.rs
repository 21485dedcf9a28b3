//! Error types per layer. HTTP handlers return [`ApiError`]; [`crate::http::problem`] maps it
//! to RFC 9457 `application/problem+json` in one place. Store and queue errors keep their
//! source chain for the logs; clients see a safe message.

use crate::auth::AuthError;
use crate::events::FieldError;

/// Errors of the DynamoDB store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("DynamoDB {operation} failed")]
    Sdk {
        operation: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("stored item {key} is not readable")]
    Corrupt {
        key: String,
        #[source]
        source: serde_dynamo::Error,
    },
    #[error("could not encode item {key}")]
    Encode {
        key: String,
        #[source]
        source: serde_dynamo::Error,
    },
}

impl StoreError {
    pub fn sdk<E>(operation: &'static str, source: E) -> StoreError
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        StoreError::Sdk {
            operation,
            source: Box::new(source),
        }
    }
}

/// Errors of the SQS producer.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("SQS {operation} failed")]
    Sdk {
        operation: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("SQS refused {failed} of {total} messages: {reason}")]
    Partial {
        failed: usize,
        total: usize,
        reason: String,
    },
    #[error("a message of {bytes} bytes exceeds the queue's limit")]
    TooLarge { bytes: usize },
    #[error("could not encode a message")]
    Encode(#[from] serde_json::Error),
}

impl QueueError {
    pub fn sdk<E>(operation: &'static str, source: E) -> QueueError
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        QueueError::Sdk {
            operation,
            source: Box::new(source),
        }
    }
}

/// What an HTTP handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Input that fails validation: one or more field-level problems.
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    #[error("malformed request: {0}")]
    BadRequest(String),
    #[error("payload too large: {0}")]
    PayloadTooLarge(String),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("conflict: {0}")]
    Conflict(String),
    /// The resource existed but is no longer usable (an expired offer).
    #[error("gone: {0}")]
    Gone(String),
    /// Every event of a batch was refused; the body lists each one.
    #[error("no event of the batch was accepted")]
    AllRejected(Vec<crate::events::Rejected>),
    #[error("a dependency is unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
}

impl ApiError {
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError::Validation(vec![FieldError::new(field, message)])
    }
}
