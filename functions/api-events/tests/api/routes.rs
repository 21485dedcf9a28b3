//! The routes the code serves, the routes openapi.yaml documents and the routes template.yaml
//! wires to this function are one set.

use crate::support::app;

#[path = "../../../../shared/tests/common/route_parity.rs"]
mod route_parity;

use route_parity::Routes;

const DIR: &str = env!("CARGO_MANIFEST_DIR");

fn code_routes() -> Routes {
    route_parity::code_routes(api_events::ROUTES)
}

#[test]
fn openapi_documents_exactly_the_routes_the_code_serves() {
    assert_eq!(
        route_parity::openapi_routes(DIR, "api-events"),
        code_routes()
    );
}

#[test]
fn the_template_wires_exactly_the_routes_the_code_serves() {
    assert_eq!(
        route_parity::template_routes(DIR, "api-events"),
        code_routes()
    );
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
