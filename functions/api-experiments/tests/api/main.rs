//! api-experiments handler tests: the router built as `main.rs` builds it, driven with
//! `tower::ServiceExt::oneshot`, over a fresh table in the local DynamoDB emulator per test.
//! They cover routing and route parity, roles, validation with field paths, the lifecycle's
//! 409s, audit, assignment answers and the sample-size calculator.

mod flows;
mod routes;
mod support;
