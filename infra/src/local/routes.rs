//! HTTP API route matching: `{param}` segments, a trailing greedy `{proxy+}`, `ANY` methods,
//! and API Gateway's preference for the most specific route.

use std::collections::BTreeMap;

use crate::template::HttpRoute;

#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Literal(String),
    Param(String),
    Greedy(String),
}

/// A route and the function behind it.
#[derive(Debug, Clone)]
pub struct Route {
    /// `"POST /v1/events"`.
    pub route_key: String,
    pub binary: String,
    pub timeout_seconds: u64,
    pub requires_token: bool,
    method: String,
    segments: Vec<Segment>,
}

/// A matched route with its decoded path parameters.
#[derive(Debug, Clone)]
pub struct Match<'a> {
    pub route: &'a Route,
    pub path_parameters: BTreeMap<String, String>,
}

#[derive(Debug, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
}

impl RouteTable {
    pub fn add(&mut self, route: &HttpRoute, binary: &str, timeout_seconds: u64) {
        self.routes.push(Route {
            route_key: format!("{} {}", route.method, route.path),
            binary: binary.to_string(),
            timeout_seconds,
            requires_token: route.requires_token,
            method: route.method.clone(),
            segments: parse_segments(&route.path),
        });
    }

    /// The most specific route for `method` and the raw (percent-encoded) `path`.
    pub fn find(&self, method: &str, path: &str) -> Option<Match<'_>> {
        let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        self.routes
            .iter()
            .filter(|r| r.method == "ANY" || r.method.eq_ignore_ascii_case(method))
            .filter_map(|r| {
                match_segments(&r.segments, &parts).map(|params| Match {
                    route: r,
                    path_parameters: params,
                })
            })
            .max_by_key(|m| specificity(m.route))
    }
}

fn parse_segments(path: &str) -> Vec<Segment> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(
            |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) => match name.strip_suffix('+') {
                    Some(greedy) => Segment::Greedy(greedy.to_string()),
                    None => Segment::Param(name.to_string()),
                },
                None => Segment::Literal(s.to_string()),
            },
        )
        .collect()
}

fn match_segments(segments: &[Segment], parts: &[&str]) -> Option<BTreeMap<String, String>> {
    let mut params = BTreeMap::new();
    for (i, segment) in segments.iter().enumerate() {
        match segment {
            Segment::Greedy(name) => {
                let rest = parts.get(i..).filter(|rest| !rest.is_empty())?;
                params.insert(name.clone(), percent_decode(&rest.join("/")));
                return Some(params);
            }
            Segment::Literal(literal) => {
                if percent_decode(parts.get(i)?) != *literal {
                    return None;
                }
            }
            Segment::Param(name) => {
                params.insert(name.clone(), percent_decode(parts.get(i)?));
            }
        }
    }
    (segments.len() == parts.len()).then_some(params)
}

/// Literal segments beat parameters, parameters beat greedy paths, a named method beats ANY.
fn specificity(route: &Route) -> (usize, usize, bool, bool) {
    let literals = route
        .segments
        .iter()
        .filter(|s| matches!(s, Segment::Literal(_)))
        .count();
    let greedy = route
        .segments
        .iter()
        .any(|s| matches!(s, Segment::Greedy(_)));
    (
        literals,
        route.segments.len(),
        !greedy,
        route.method != "ANY",
    )
}

/// Decodes `%XX` escapes; invalid escapes and non-UTF-8 results are kept as they are.
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| text.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RouteTable {
        let mut t = RouteTable::default();
        for (method, path, binary) in [
            ("POST", "/v1/events", "events"),
            ("GET", "/v1/users/{user_id}/profile", "profile"),
            ("GET", "/v1/users/me/profile", "me"),
            ("ANY", "/v1/files/{proxy+}", "files"),
            ("GET", "/v1/files/index", "index"),
        ] {
            let route = HttpRoute {
                event_id: binary.into(),
                method: method.into(),
                path: path.into(),
                requires_token: true,
            };
            t.add(&route, binary, 3);
        }
        t
    }

    fn found(method: &str, path: &str) -> Option<(String, BTreeMap<String, String>)> {
        table()
            .find(method, path)
            .map(|m| (m.route.binary.clone(), m.path_parameters))
    }

    #[test]
    fn literal_paths_and_methods_must_match() {
        assert_eq!(found("POST", "/v1/events").unwrap().0, "events");
        assert_eq!(found("post", "/v1/events/").unwrap().0, "events");
        assert!(found("GET", "/v1/events").is_none());
        assert!(found("POST", "/v1/events/extra").is_none());
        assert!(found("GET", "/").is_none());
    }

    #[test]
    fn parameters_are_captured_and_decoded() {
        let (binary, params) = found("GET", "/v1/users/u%2F1%20x/profile").unwrap();
        assert_eq!(binary, "profile");
        assert_eq!(params["user_id"], "u/1 x");
    }

    #[test]
    fn the_most_specific_route_wins() {
        assert_eq!(found("GET", "/v1/users/me/profile").unwrap().0, "me");
        assert_eq!(found("GET", "/v1/files/index").unwrap().0, "index");
        let (binary, params) = found("DELETE", "/v1/files/a/b/c.txt").unwrap();
        assert_eq!(binary, "files");
        assert_eq!(params["proxy"], "a/b/c.txt");
        assert!(found("GET", "/v1/files").is_none());
    }

    #[test]
    fn broken_escapes_are_kept() {
        assert_eq!(percent_decode("a%zz%4"), "a%zz%4");
        assert_eq!(percent_decode("%41%42"), "AB");
    }
}
