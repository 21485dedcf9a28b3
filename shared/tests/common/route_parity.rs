//! Route parity for the HTTP functions' test suites (included with `#[path]`): the routes a
//! function's code serves, the operations openapi.yaml attributes to it (`x-tierup-function`)
//! and the HttpApi events template.yaml wires to its binary must be one set.

use std::collections::BTreeSet;

pub type Routes = BTreeSet<(String, String)>;

fn repo_file(manifest_dir: &str, name: &str) -> String {
    let path = format!("{manifest_dir}/../../{name}");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

pub fn code_routes(routes: &[(&str, &str)]) -> Routes {
    routes
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect()
}

/// Operations of openapi.yaml whose `x-tierup-function` is `function`.
pub fn openapi_routes(manifest_dir: &str, function: &str) -> Routes {
    let doc: serde_yaml::Value =
        serde_yaml::from_str(&repo_file(manifest_dir, "openapi.yaml")).expect("openapi.yaml");
    let mut routes = BTreeSet::new();
    for (path, item) in doc["paths"].as_mapping().expect("paths") {
        for (method, op) in item.as_mapping().expect("path item") {
            let method = method.as_str().unwrap_or_default().to_ascii_uppercase();
            if !["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&method.as_str()) {
                continue;
            }
            let owner = op["x-tierup-function"].as_str();
            assert!(
                owner.is_some(),
                "{method} {path:?} has no x-tierup-function"
            );
            if owner == Some(function) {
                routes.insert((method, path.as_str().unwrap_or_default().to_string()));
            }
        }
    }
    routes
}

/// HttpApi events template.yaml wires to the function whose binary is `function`.
pub fn template_routes(manifest_dir: &str, function: &str) -> Routes {
    let doc: serde_yaml::Value =
        serde_yaml::from_str(&repo_file(manifest_dir, "template.yaml")).expect("template.yaml");
    let mut routes = BTreeSet::new();
    for (_, resource) in doc["Resources"].as_mapping().expect("Resources") {
        if resource["Metadata"]["BuildProperties"]["Binary"].as_str() != Some(function) {
            continue;
        }
        for (_, event) in resource["Properties"]["Events"]
            .as_mapping()
            .expect("Events")
        {
            if event["Type"].as_str() == Some("HttpApi") {
                let p = &event["Properties"];
                routes.insert((
                    p["Method"]
                        .as_str()
                        .unwrap_or_default()
                        .to_ascii_uppercase(),
                    p["Path"].as_str().unwrap_or_default().to_string(),
                ));
            }
        }
    }
    routes
}
