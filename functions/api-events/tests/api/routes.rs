//! The routes the code serves, the routes openapi.yaml documents and the routes template.yaml
//! wires to this function are one set.

use std::collections::BTreeSet;

use crate::support::app;

fn repo_file(name: &str) -> String {
    let path = format!("{}/../../{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn code_routes() -> BTreeSet<(String, String)> {
    api_events::ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect()
}

fn openapi_routes() -> BTreeSet<(String, String)> {
    let doc: serde_yaml::Value = serde_yaml::from_str(&repo_file("openapi.yaml")).unwrap();
    let mut routes = BTreeSet::new();
    for (path, item) in doc["paths"].as_mapping().expect("paths") {
        for (method, _) in item.as_mapping().expect("path item") {
            let method = method.as_str().unwrap().to_ascii_uppercase();
            if ["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&method.as_str()) {
                routes.insert((method, path.as_str().unwrap().to_string()));
            }
        }
    }
    routes
}

fn template_routes(function: &str) -> BTreeSet<(String, String)> {
    let doc: serde_yaml::Value = serde_yaml::from_str(&repo_file("template.yaml")).unwrap();
    let mut routes = BTreeSet::new();
    for (_, resource) in doc["Resources"].as_mapping().unwrap() {
        if resource["Metadata"]["BuildProperties"]["Binary"].as_str() != Some(function) {
            continue;
        }
        for (_, event) in resource["Properties"]["Events"].as_mapping().unwrap() {
            if event["Type"].as_str() == Some("HttpApi") {
                let p = &event["Properties"];
                routes.insert((
                    p["Method"].as_str().unwrap().to_ascii_uppercase(),
                    p["Path"].as_str().unwrap().to_string(),
                ));
            }
        }
    }
    routes
}

#[test]
fn openapi_documents_exactly_the_routes_the_code_serves() {
    assert_eq!(openapi_routes(), code_routes());
}

#[test]
fn the_template_wires_exactly_the_routes_the_code_serves() {
    assert_eq!(template_routes("api-events"), code_routes());
}

#[tokio::test]
async fn every_declared_route_is_really_served() {
    let app = app().await;
    for (method, path) in code_routes() {
        let concrete = path
            .replace("{user_id}", "u1")
            .replace("{date}", "2026-11-01");
        let (status, _, body) = app.call(&method, &concrete, None, Vec::new()).await;
        assert!(
            !(status == 404 && body["detail"] == "no such route"),
            "{method} {path} fell through to the fallback"
        );
    }
    let (status, content_type, _) = app.call("GET", "/v1/nothing", None, Vec::new()).await;
    assert_eq!(
        (status, content_type.as_str()),
        (404, "application/problem+json")
    );
}
