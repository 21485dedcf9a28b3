//! api-events handler tests: the router built as `main.rs` builds it, driven with
//! `tower::ServiceExt::oneshot`. Storage and queues point at a closed port, so these tests
//! cover what happens before any I/O (routing, authentication, authorization, validation) and
//! the route parity with openapi.yaml and template.yaml.

mod routes;
mod support;
mod validation;
