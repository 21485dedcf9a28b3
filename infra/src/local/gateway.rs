//! The HTTP API, emulated: routes from the functions' HttpApi events, payload format 2.0,
//! API Gateway's 401 for a missing bearer token and 404 for unknown routes; plus the local
//! control endpoints under `/_local/`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde_json::{json, Value};
use tracing::{info, warn};

use super::apigw::{function_response, request_event, FunctionResponse, IncomingRequest};
use super::invoke::Invoker;
use super::routes::RouteTable;
use super::schedules::Schedules;

/// Requests up to API Gateway's 10 MB pass through; functions enforce their own limits.
pub const MAX_BODY_BYTES: usize = 10 * 1024 * 1024;

pub struct Gateway {
    pub routes: RouteTable,
    pub invoker: Invoker,
    pub schedules: Arc<Schedules>,
}

pub fn router(gateway: Arc<Gateway>) -> Router {
    Router::new()
        .route("/_local/schedules", get(list_schedules))
        .route("/_local/schedules/{name}/run", post(run_schedule))
        .route("/_local/invocations", get(invocations))
        .fallback(proxy)
        .with_state(gateway)
}

fn message(status: StatusCode, text: &str) -> Response {
    (status, Json(json!({ "message": text }))).into_response()
}

/// Function invocations since the stack started (benchmarks read it).
async fn invocations(State(gateway): State<Arc<Gateway>>) -> Response {
    Json(gateway.invoker.counts()).into_response()
}

async fn list_schedules(State(gateway): State<Arc<Gateway>>) -> Response {
    Json(gateway.schedules.summaries()).into_response()
}

/// Fires a schedule now. An optional JSON body `{"params": {...}}` is merged into the
/// schedule input's `params` (e.g. `{"params": {"now": "2026-11-25T00:00:00Z"}}`).
async fn run_schedule(
    State(gateway): State<Arc<Gateway>>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let Some(schedule) = gateway.schedules.find(&name) else {
        return message(StatusCode::NOT_FOUND, &format!("no schedule named {name}"));
    };
    let params = if body.is_empty() {
        None
    } else {
        match serde_json::from_slice::<Value>(&body) {
            Ok(v) if v.get("params").is_some_and(Value::is_object) => v.get("params").cloned(),
            _ => {
                return message(
                    StatusCode::BAD_REQUEST,
                    "the body must be {\"params\": {...}}",
                )
            }
        }
    };
    match gateway.schedules.fire_with(schedule, params.as_ref()).await {
        Ok(result) => {
            info!(schedule = %schedule.id, "schedule fired on demand");
            Json(result).into_response()
        }
        Err(e) => {
            warn!(schedule = %schedule.id, error = %e, "schedule run failed");
            (
                StatusCode::BAD_GATEWAY,
                Json(json!({ "message": "the function failed", "error": e.to_string() })),
            )
                .into_response()
        }
    }
}

fn has_bearer_token(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.get(..7))
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("bearer "))
}

async fn proxy(
    State(gateway): State<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY_BYTES).await else {
        return message(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large");
    };
    let path = parts.uri.path();
    let Some(matched) = gateway.routes.find(parts.method.as_str(), path) else {
        return message(StatusCode::NOT_FOUND, "Not Found");
    };
    if matched.route.requires_token && !has_bearer_token(&parts.headers) {
        return message(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    let host = parts
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost")
        .to_string();
    let incoming = IncomingRequest {
        method: parts.method.as_str(),
        raw_path: path,
        raw_query: parts.uri.query().unwrap_or_default(),
        headers: &parts.headers,
        body: &body,
        source_ip: peer.ip().to_string(),
        host,
        request_id: uuid::Uuid::new_v4().to_string(),
        time: Utc::now(),
    };
    let event = request_event(&incoming, &matched);
    let timeout = Duration::from_secs(matched.route.timeout_seconds);
    let route_key = &matched.route.route_key;
    let result = match gateway
        .invoker
        .invoke(&matched.route.binary, &event, timeout)
        .await
    {
        Ok(result) => result,
        Err(e) => {
            warn!(route = %route_key, error = %e, "invocation failed");
            return message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
        }
    };
    match function_response(&result) {
        Ok(response) => {
            info!(route = %route_key, status = response.status.as_u16(), "request");
            http_response(response)
        }
        Err(e) => {
            warn!(route = %route_key, error = %e, "malformed function response");
            message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
        }
    }
}

fn http_response(response: FunctionResponse) -> Response {
    let mut out = Response::new(Body::from(response.body));
    *out.status_mut() = response.status;
    for (name, value) in response.headers {
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            (Ok(name), Ok(value)) => {
                out.headers_mut().append(name, value);
            }
            _ => warn!(header = %name, "dropping a response header that is not valid HTTP"),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_recognised_case_insensitively() {
        let mut h = HeaderMap::new();
        assert!(!has_bearer_token(&h));
        h.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_static("Basic abc"),
        );
        assert!(!has_bearer_token(&h));
        h.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_static("bearer abc"),
        );
        assert!(has_bearer_token(&h));
    }
}
