//! API Gateway HTTP API payload format 2.0: building the event a function receives and
//! reading the response it returns.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use chrono::{DateTime, Utc};
use http::{HeaderMap, StatusCode};
use serde_json::{json, Value};

use super::routes::{percent_decode, Match};
use crate::template::ACCOUNT_ID;

/// What the gateway saw of an HTTP request.
#[derive(Debug, Clone)]
pub struct IncomingRequest<'a> {
    pub method: &'a str,
    pub raw_path: &'a str,
    pub raw_query: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
    pub source_ip: String,
    pub host: String,
    pub request_id: String,
    pub time: DateTime<Utc>,
}

/// The v2.0 event for `request` on the matched route.
pub fn request_event(request: &IncomingRequest<'_>, matched: &Match<'_>) -> Value {
    let (headers, cookies) = headers_and_cookies(request.headers);
    let user_agent = headers.get("user-agent").cloned().unwrap_or_default();
    let mut event = json!({
        "version": "2.0",
        "routeKey": matched.route.route_key,
        "rawPath": request.raw_path,
        "rawQueryString": request.raw_query,
        "headers": headers,
        "requestContext": {
            "accountId": ACCOUNT_ID,
            "apiId": "local",
            "domainName": request.host,
            "domainPrefix": request.host.split(['.', ':']).next().unwrap_or_default(),
            "http": {
                "method": request.method,
                "path": request.raw_path,
                "protocol": "HTTP/1.1",
                "sourceIp": request.source_ip,
                "userAgent": user_agent,
            },
            "requestId": request.request_id,
            "routeKey": matched.route.route_key,
            "stage": "$default",
            "time": request.time.format("%d/%b/%Y:%H:%M:%S %z").to_string(),
            "timeEpoch": request.time.timestamp_millis(),
        },
        "isBase64Encoded": false,
    });
    if let Some(fields) = event.as_object_mut() {
        if !cookies.is_empty() {
            fields.insert("cookies".into(), json!(cookies));
        }
        let query = query_parameters(request.raw_query);
        if !query.is_empty() {
            fields.insert("queryStringParameters".into(), json!(query));
        }
        if !matched.path_parameters.is_empty() {
            fields.insert("pathParameters".into(), json!(matched.path_parameters));
        }
        if !request.body.is_empty() {
            let (body, base64) = body_field(request.body);
            fields.insert("body".into(), Value::from(body));
            fields.insert("isBase64Encoded".into(), Value::from(base64));
        }
    }
    event
}

/// Lower-cased headers with repeated values comma-joined; `cookie` goes to its own list.
fn headers_and_cookies(headers: &HeaderMap) -> (BTreeMap<String, String>, Vec<String>) {
    let mut joined: BTreeMap<String, String> = BTreeMap::new();
    let mut cookies = Vec::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        if name == http::header::COOKIE {
            cookies.extend(
                value
                    .split(';')
                    .map(|c| c.trim().to_string())
                    .filter(|c| !c.is_empty()),
            );
            continue;
        }
        joined
            .entry(name.as_str().to_string())
            .and_modify(|v| {
                v.push(',');
                v.push_str(&value);
            })
            .or_insert(value);
    }
    (joined, cookies)
}

/// Decoded query parameters with repeated names comma-joined, as API Gateway does.
fn query_parameters(raw: &str) -> BTreeMap<String, String> {
    let mut params: BTreeMap<String, String> = BTreeMap::new();
    for pair in raw.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |s: &str| percent_decode(&s.replace('+', " "));
        let value = decode(value);
        params
            .entry(decode(name))
            .and_modify(|v| {
                v.push(',');
                v.push_str(&value);
            })
            .or_insert(value);
    }
    params
}

/// UTF-8 bodies pass as text, anything else base64-encoded.
fn body_field(body: &[u8]) -> (String, bool) {
    match std::str::from_utf8(body) {
        Ok(text) => (text.to_string(), false),
        Err(_) => (BASE64.encode(body), true),
    }
}

/// An HTTP response read from a function's result.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionResponse {
    pub status: StatusCode,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum ResponseError {
    #[error("statusCode {0} is not an HTTP status")]
    Status(i64),
    #[error("body is marked isBase64Encoded but is not base64: {0}")]
    Base64(#[from] base64::DecodeError),
}

/// Reads a function result the way an HTTP API does for payload 2.0: an object with
/// `statusCode` is a response (headers, multiValueHeaders, cookies, body, isBase64Encoded);
/// anything else is a 200 JSON body.
pub fn function_response(result: &Value) -> Result<FunctionResponse, ResponseError> {
    let Some(status) = result.get("statusCode") else {
        return Ok(FunctionResponse {
            status: StatusCode::OK,
            headers: vec![("content-type".into(), "application/json".into())],
            body: match result {
                Value::String(s) => s.clone().into_bytes(),
                other => other.to_string().into_bytes(),
            },
        });
    };
    let code = status.as_i64().unwrap_or(-1);
    let status = u16::try_from(code)
        .ok()
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or(ResponseError::Status(code))?;
    let mut headers = Vec::new();
    if let Some(map) = result.get("headers").and_then(Value::as_object) {
        headers.extend(map.iter().map(|(k, v)| (k.clone(), scalar(v))));
    }
    if let Some(map) = result.get("multiValueHeaders").and_then(Value::as_object) {
        for (name, values) in map {
            let values = values.as_array().map(Vec::as_slice).unwrap_or_default();
            headers.extend(values.iter().map(|v| (name.clone(), scalar(v))));
        }
    }
    if let Some(cookies) = result.get("cookies").and_then(Value::as_array) {
        headers.extend(
            cookies
                .iter()
                .map(|c| ("set-cookie".to_string(), scalar(c))),
        );
    }
    let text = result.get("body").map(scalar).unwrap_or_default();
    let body = if result.get("isBase64Encoded").and_then(Value::as_bool) == Some(true) {
        BASE64.decode(text.as_bytes())?
    } else {
        text.into_bytes()
    };
    Ok(FunctionResponse {
        status,
        headers,
        body,
    })
}

fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::routes::RouteTable;
    use crate::template::HttpRoute;
    use aws_lambda_events::apigw::ApiGatewayV2httpRequest;

    fn table() -> RouteTable {
        let mut t = RouteTable::default();
        let route = HttpRoute {
            event_id: "GetProfile".into(),
            method: "GET".into(),
            path: "/v1/users/{user_id}/profile".into(),
            requires_token: true,
        };
        t.add(&route, "api-events", 30);
        t
    }

    fn event(body: &[u8]) -> Value {
        let mut headers = HeaderMap::new();
        headers.append("X-Tag", "a".parse().unwrap());
        headers.append("x-tag", "b".parse().unwrap());
        headers.append("Cookie", "s=1; t=2".parse().unwrap());
        headers.append("User-Agent", "curl/8".parse().unwrap());
        let request = IncomingRequest {
            method: "GET",
            raw_path: "/v1/users/u%201/profile",
            raw_query: "a=1&a=2&q=x+y%21",
            headers: &headers,
            body,
            source_ip: "127.0.0.1".into(),
            host: "127.0.0.1:3000".into(),
            request_id: "req-1".into(),
            time: DateTime::parse_from_rfc3339("2026-11-24T10:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
        };
        let routes = table();
        let matched = routes.find("GET", request.raw_path).unwrap();
        request_event(&request, &matched)
    }

    #[test]
    fn the_event_is_what_lambda_http_parses() {
        let value = event(b"{\"x\":1}");
        let parsed: ApiGatewayV2httpRequest = serde_json::from_value(value.clone()).unwrap();
        assert_eq!(
            parsed.route_key.as_deref(),
            Some("GET /v1/users/{user_id}/profile")
        );
        assert_eq!(parsed.raw_path.as_deref(), Some("/v1/users/u%201/profile"));
        assert_eq!(parsed.path_parameters["user_id"], "u 1");
        // Comma-joined like API Gateway; lambda_http splits them again.
        assert_eq!(value["queryStringParameters"]["a"], "1,2");
        assert_eq!(
            parsed.query_string_parameters.all("a"),
            Some(vec!["1", "2"])
        );
        assert_eq!(parsed.query_string_parameters.first("q"), Some("x y!"));
        assert_eq!(parsed.headers["x-tag"], "a,b");
        assert!(parsed.headers.get("cookie").is_none());
        assert_eq!(
            parsed.cookies,
            Some(vec!["s=1".to_string(), "t=2".to_string()])
        );
        assert_eq!(parsed.body.as_deref(), Some("{\"x\":1}"));
        assert!(!parsed.is_base64_encoded);
        assert_eq!(parsed.request_context.http.method, http::Method::GET);
        assert_eq!(parsed.request_context.stage.as_deref(), Some("$default"));
        assert_eq!(value["requestContext"]["timeEpoch"], 1_795_514_400_000_i64);
        assert_eq!(value["requestContext"]["http"]["userAgent"], "curl/8");
    }

    #[test]
    fn binary_bodies_are_base64_and_empty_bodies_absent() {
        let value = event(&[0xff, 0x00]);
        assert_eq!(value["body"], "/wA=");
        assert_eq!(value["isBase64Encoded"], true);
        assert!(event(b"").get("body").is_none());
    }

    #[test]
    fn responses_carry_status_headers_cookies_and_body() {
        let r = function_response(&json!({
            "statusCode": 201,
            "headers": {"content-type": "application/json"},
            "multiValueHeaders": {"x-m": ["1", "2"]},
            "cookies": ["a=1"],
            "body": "{}",
        }))
        .unwrap();
        assert_eq!(r.status, StatusCode::CREATED);
        assert!(r.headers.contains(&("x-m".into(), "2".into())));
        assert!(r.headers.contains(&("set-cookie".into(), "a=1".into())));
        assert_eq!(r.body, b"{}");

        let r =
            function_response(&json!({"statusCode": 200, "body": "aGk=", "isBase64Encoded": true}))
                .unwrap();
        assert_eq!(r.body, b"hi");

        let r = function_response(&json!({"ok": true})).unwrap();
        assert_eq!(
            (r.status, r.body),
            (StatusCode::OK, br#"{"ok":true}"#.to_vec())
        );
        assert!(function_response(&json!({"statusCode": 1000})).is_err());
    }
}
