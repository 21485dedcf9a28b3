//! End-to-end tests against the running local stack: API gateway emulation -> api-events ->
//! events queue -> (SQS pump) -> worker-events -> DynamoDB, and the schedules and DLQs around
//! them. `make test` starts the stack; see `tierup_e2e::Stack`.

mod auth;
mod dlq;
mod experiments;
mod ingest;
mod jobs;
mod nudges;
