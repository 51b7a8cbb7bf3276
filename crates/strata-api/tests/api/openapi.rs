//! `/openapi.json` documents every route the api serves, with its responses, error bodies and
//! security; `/docs` renders it.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::helpers::TestApp;

backend_tests!(openapi_lists_every_route, docs_page_renders_the_document);

/// Every operation of the api router (the ops endpoints and pages aside). A new route goes
/// here and into `openapi.rs`: the test fails until both agree.
const OPERATIONS: &[(&str, &str)] = &[
    ("post", "/api/v1/users"),
    ("get", "/api/v1/users/me"),
    ("patch", "/api/v1/users/{id}/role"),
    ("post", "/api/v1/sessions"),
    ("get", "/api/v1/products"),
    ("post", "/api/v1/products"),
    ("get", "/api/v1/products/{id}"),
    ("patch", "/api/v1/products/{id}"),
    ("get", "/api/v1/products/{id}/recommendations"),
    ("post", "/api/v1/prices/quote"),
    ("get", "/api/v1/cart"),
    ("post", "/api/v1/cart/items"),
    ("patch", "/api/v1/cart/items/{product_id}"),
    ("delete", "/api/v1/cart/items/{product_id}"),
    ("get", "/api/v1/orders"),
    ("post", "/api/v1/orders"),
    ("get", "/api/v1/orders/{id}"),
    ("get", "/images/products/{id}"),
    ("head", "/images/products/{id}"),
    ("put", "/api/v1/products/{id}/image"),
];

async fn openapi_lists_every_route(app: TestApp) {
    let doc = app.get_ok_json("/openapi.json").await;
    assert!(doc["openapi"].as_str().expect("version").starts_with("3."));
    let paths = doc["paths"].as_object().expect("paths");
    let mut documented = Vec::new();
    for (path, item) in paths {
        for (method, _) in item.as_object().expect("path item") {
            documented.push((method.clone(), path.clone()));
        }
    }
    for (method, path) in OPERATIONS {
        assert!(
            documented.contains(&((*method).to_owned(), (*path).to_owned())),
            "{method} {path} is not documented"
        );
    }
    let schemes = &doc["components"]["securitySchemes"]["bearer"];
    assert_eq!(schemes["type"], "http");
    assert_eq!(schemes["scheme"], "bearer");
    let error_ref = "#/components/schemas/ErrorBody";
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());

    for (method, path) in &documented {
        let op = &paths[path][method];
        let responses = op["responses"].as_object().expect("responses");
        assert!(
            responses.keys().any(|s| s.starts_with('2')),
            "{method} {path}: no success response"
        );
        // Every error response carries the error body schema (a `304` is no error, and the
        // answer to `HEAD` has no body).
        let errors: Vec<(&String, &Value)> = responses
            .iter()
            .filter(|(s, _)| s.starts_with('4') || s.starts_with('5'))
            .collect();
        assert!(!errors.is_empty(), "{method} {path}: no error documented");
        for (status, response) in errors.into_iter().filter(|_| method != "head") {
            assert_eq!(
                response["content"]["application/json"]["schema"]["$ref"], error_ref,
                "{method} {path} {status}"
            );
        }
        // A body-taking operation documents 415 and 413 (and 422 for a JSON body, which can
        // have the wrong shape); an authenticated one 401 and bearer.
        if let Some(body) = op.get("requestBody") {
            let json = body["content"].get("application/json").is_some();
            for status in ["400", "413", "415", "422"] {
                if status == "422" && !json {
                    continue;
                }
                assert!(
                    responses.contains_key(status),
                    "{method} {path}: no {status}"
                );
            }
        }
        if let Some(security) = op.get("security") {
            // `[{"bearer": []}]`, or with `{}` too where a token is optional.
            let requirements = security.as_array().expect("security requirements");
            assert!(
                requirements
                    .iter()
                    .any(|r| r["bearer"] == serde_json::json!([])),
                "{method} {path}: {security}"
            );
            // A token that is given but invalid is always a 401.
            assert!(responses.contains_key("401"), "{method} {path}: no 401");
        }

        // And the documented operation exists: the router does not answer 404 `no such
        // route` or 405 for it.
        let concrete = path.replace("{id}", "1").replace("{product_id}", "1");
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
        let response = app.send(method.clone(), &concrete, None, None).await;
        assert_ne!(
            response.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        // (A `HEAD` answer has no body to tell the two 404s apart; its `GET` was checked.)
        if response.status() == StatusCode::NOT_FOUND && method != Method::HEAD {
            let body: Value = response.json().await.expect("JSON");
            assert_ne!(body["error"]["message"], "no such route", "{method} {path}");
        }
    }
    // The request and response bodies are described, not left as free-form objects.
    for schema in [
        "RegisterRequest",
        "LogInRequest",
        "TokenResponse",
        "UserView",
        "Product",
        "ProductPage",
        "NewProductRequest",
        "ProductPatch",
        "SetRoleRequest",
    ] {
        assert!(
            doc["components"]["schemas"][schema]["properties"].is_object(),
            "{schema}"
        );
    }
}

async fn docs_page_renders_the_document(app: TestApp) {
    let response = app.get("/docs").await;
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"]
        .to_str()
        .expect("ASCII")
        .to_owned();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let page = response.text().await.expect("body");
    assert!(page.contains("/openapi.json"));
    assert!(
        !page.contains("://cdn"),
        "self-contained: no external assets"
    );
    // Descriptions hold `code` spans: the page renders them as code, never as raw backticks
    // (each description goes through `prose`, none is set as plain text).
    assert!(
        page.contains("const prose = "),
        "no renderer of descriptions"
    );
    for raw in [
        "textContent = doc.info.description",
        "el(\"p\", {}, op.description)",
        "el(\"td\", {}, p.description || \"\")",
        "el(\"td\", {}, response.description || \"\")",
    ] {
        assert!(
            !page.contains(raw),
            "a description set as plain text: {raw}"
        );
    }
}
