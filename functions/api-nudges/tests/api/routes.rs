//! The routes the code serves, the routes openapi.yaml documents for this function and the
//! routes template.yaml wires to it are one set.

use crate::support::app;

#[path = "../../../../shared/tests/common/route_parity.rs"]
mod route_parity;

const DIR: &str = env!("CARGO_MANIFEST_DIR");

fn code_routes() -> route_parity::Routes {
    route_parity::code_routes(api_nudges::ROUTES)
}

#[test]
fn openapi_documents_exactly_the_routes_the_code_serves() {
    assert_eq!(
        route_parity::openapi_routes(DIR, "api-nudges"),
        code_routes()
    );
}

#[test]
fn the_template_wires_exactly_the_routes_the_code_serves() {
    assert_eq!(
        route_parity::template_routes(DIR, "api-nudges"),
        code_routes()
    );
}

#[tokio::test]
async fn every_declared_route_is_really_served() {
    let app = app().await;
    for (method, path) in code_routes() {
        let concrete = path
            .replace("{key}", "nope")
            .replace("{user_id}", "u-1")
            .replace("{proof_id}", "p-1")
            .replace("{code}", "TU-1");
        let (status, _, body) = app.call(&method, &concrete, None, None).await;
        assert!(
            !(status == 404 && body["detail"] == "no such route"),
            "{method} {path} fell through to the fallback"
        );
        assert_eq!(status, 401, "{method} {path} without a token");
    }
}
