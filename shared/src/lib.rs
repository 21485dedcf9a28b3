//! tierup's common crate: pure domain logic (events, profiles, ingestion rules), and the
//! cross-cutting pieces every function shares (config, telemetry, errors, auth, HTTP plumbing,
//! the DynamoDB store and the SQS producer).

pub mod auth;
pub mod config;
pub mod error;
pub mod events;
pub mod experiments;
pub mod growthbook;
pub mod hash;
pub mod http;
pub mod ingest;
pub mod jobs;
pub mod nudges;
pub mod profiles;
pub mod queue;
pub mod statistics;
pub mod stats;
pub mod store;
pub mod telemetry;

/// The version every function reports.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
