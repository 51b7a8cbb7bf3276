//! Product images: an admin's upload served back with its validators and cache headers, `304`
//! on a current copy, and every wrong upload refused with a JSON problem (403, 415, 400, 413,
//! 404); the demo catalog's generated pictures stored once and served as inert SVG.

use reqwest::{Method, StatusCode};
use serde_json::Value;
use strata_objects::{ObjectKey, ObjectStore};

use crate::helpers::{MAX_BODY_BYTES, TestApp, assert_json_error};

backend_tests!(
    an_uploaded_image_is_served_with_validators_and_cache_headers,
    wrong_uploads_are_refused_with_problems,
    missing_images_are_404_problems,
    demo_images_are_generated_once_and_served_as_inert_svg,
);

/// The smallest PNG there is, near enough: the signature and a truncated `IHDR` are what
/// the upload checks.
const PNG: &[u8] =
    b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89";
const JPEG: &[u8] = b"\xff\xd8\xff\xe0\0\x10JFIF\0\x01\x01\0\0\x01\0\x01\0\0\xff\xd9";

async fn upload(
    app: &TestApp,
    id: i64,
    token: Option<&str>,
    content_type: &str,
    body: &[u8],
) -> reqwest::Response {
    let mut request = app
        .client
        .put(format!("{}/api/v1/products/{id}/image", app.base))
        .header("content-type", content_type)
        .body(body.to_vec());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("upload")
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .expect("ASCII header")
}

async fn an_uploaded_image_is_served_with_validators_and_cache_headers(app: TestApp) {
    let admin = app.admin_token().await;
    let response = upload(&app, 3, Some(&admin), "image/png", PNG).await;
    assert_eq!(response.status(), StatusCode::OK);
    let stored: Value = response.json().await.expect("JSON");
    assert_eq!(stored["url"], "/images/products/3");
    assert_eq!(stored["content_type"], "image/png");
    assert_eq!(stored["size"], PNG.len());
    let etag = stored["etag"].as_str().expect("etag").to_owned();
    assert!(
        etag.starts_with('"') && etag.ends_with('"') && etag.len() == 34,
        "{etag}"
    );

    let response = app.get("/images/products/3").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "content-type"), "image/png");
    assert_eq!(header(&response, "etag"), etag);
    assert_eq!(header(&response, "cache-control"), "public, max-age=300");
    assert_eq!(header(&response, "x-content-type-options"), "nosniff");
    assert!(header(&response, "content-security-policy").contains("sandbox"));
    assert_eq!(&response.bytes().await.expect("body")[..], PNG);

    // HEAD: the same headers, no body.
    let response = app
        .client
        .head(format!("{}/images/products/3", app.base))
        .send()
        .await
        .expect("HEAD");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "etag"), etag);
    assert_eq!(header(&response, "content-length"), PNG.len().to_string());
    assert!(response.bytes().await.expect("body").is_empty());

    // A current copy: 304 without a body, with the validators again.
    let response = app
        .client
        .get(format!("{}/images/products/3", app.base))
        .header("if-none-match", &etag)
        .send()
        .await
        .expect("conditional GET");
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(header(&response, "etag"), etag);
    assert_eq!(header(&response, "cache-control"), "public, max-age=300");
    assert!(response.bytes().await.expect("body").is_empty());

    // A replacement: a new tag, so the old copy is no longer current.
    let response = upload(&app, 3, Some(&admin), "image/jpeg", JPEG).await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = app
        .client
        .get(format!("{}/images/products/3", app.base))
        .header("if-none-match", &etag)
        .send()
        .await
        .expect("conditional GET");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "content-type"), "image/jpeg");
    assert_ne!(header(&response, "etag"), etag);
    assert_eq!(&response.bytes().await.expect("body")[..], JPEG);
}

async fn wrong_uploads_are_refused_with_problems(app: TestApp) {
    let admin = app.admin_token().await;
    let (_, customer) = app.customer().await;

    let response = upload(&app, 1, None, "image/png", PNG).await;
    assert_json_error(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let response = upload(&app, 1, Some(&customer), "image/png", PNG).await;
    assert_json_error(response, StatusCode::FORBIDDEN, "forbidden").await;

    // Never SVG (it could carry script), nor anything but the three raster types.
    for content_type in ["image/svg+xml", "text/html", "application/octet-stream"] {
        let response = upload(&app, 1, Some(&admin), content_type, PNG).await;
        assert_json_error(
            response,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        )
        .await;
    }
    // The bytes must agree with the declared type.
    for (content_type, body) in [
        ("image/png", JPEG),
        ("image/jpeg", PNG),
        ("image/webp", PNG),
        ("image/png", &b""[..]),
    ] {
        let response = upload(&app, 1, Some(&admin), content_type, body).await;
        let message = assert_json_error(response, StatusCode::BAD_REQUEST, "invalid_image").await;
        assert!(message.contains("image"), "{message}");
    }
    let mut big = PNG.to_vec();
    big.resize(MAX_BODY_BYTES + 1, 0);
    let response = upload(&app, 1, Some(&admin), "image/png", &big).await;
    assert_json_error(response, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    let response = upload(&app, 999_999, Some(&admin), "image/png", PNG).await;
    assert_json_error(response, StatusCode::NOT_FOUND, "not_found").await;
    let response = upload(&app, 0, Some(&admin), "image/png", PNG).await;
    assert_json_error(response, StatusCode::BAD_REQUEST, "invalid_id").await;

    // Nothing was stored by any of them.
    let key = ObjectKey::new("products/1").expect("key");
    assert_eq!(app.objects.head(&key).await.expect("head"), None);
}

async fn missing_images_are_404_problems(app: TestApp) {
    for path in ["/images/products/1", "/images/products/999999"] {
        let response = app.get(path).await;
        assert_json_error(response, StatusCode::NOT_FOUND, "not_found").await;
    }
    let response = app.get("/images/products/x").await;
    assert_json_error(response, StatusCode::BAD_REQUEST, "invalid_id").await;
    let response = app
        .send(Method::DELETE, "/images/products/1", None, None)
        .await;
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
}

async fn demo_images_are_generated_once_and_served_as_inert_svg(app: TestApp) {
    let products = strata_store::demo_catalog().len() as u64;
    let stored = strata_api::seed_demo_images(&app.store, &app.objects)
        .await
        .expect("seed images");
    assert_eq!(stored, products);
    // Once: a second start finds them there.
    let again = strata_api::seed_demo_images(&app.store, &app.objects)
        .await
        .expect("seed images again");
    assert_eq!(again, 0);

    let response = app.get("/images/products/1").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "content-type"), "image/svg+xml");
    assert_eq!(
        header(&response, "content-security-policy"),
        "default-src 'none'; style-src 'unsafe-inline'; sandbox"
    );
    assert_eq!(header(&response, "x-content-type-options"), "nosniff");
    let first = response.text().await.expect("SVG");
    assert!(
        first.starts_with("<svg") && first.ends_with("</svg>"),
        "{first}"
    );
    assert!(!first.contains("<script"));
    let second = app
        .get("/images/products/2")
        .await
        .text()
        .await
        .expect("SVG");
    assert_ne!(first, second, "two products drew the same picture");

    // An uploaded image is never replaced by a generated one.
    let admin = app.admin_token().await;
    assert_eq!(
        upload(&app, 2, Some(&admin), "image/png", PNG)
            .await
            .status(),
        StatusCode::OK
    );
    let key = ObjectKey::new("products/2").expect("key");
    app.objects
        .delete(&ObjectKey::new("products/1").expect("key"))
        .await
        .expect("delete");
    assert_eq!(
        strata_api::seed_demo_images(&app.store, &app.objects)
            .await
            .expect("seed"),
        1
    );
    let kept = app.objects.get(&key).await.expect("get").expect("image");
    assert_eq!(kept.meta.content_type, "image/png");
}
