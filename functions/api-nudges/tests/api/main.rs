//! api-nudges handler tests: the router built as `main.rs` builds it, driven with
//! `tower::ServiceExt::oneshot`, over a fresh table in the local DynamoDB emulator per test.
//! They cover route parity, roles, validation with field paths, the social proof catalog,
//! prompts, and offers (eligibility, the 100-way redemption race, 403, 410).

mod flows;
mod routes;
mod support;
