//! Hostile and careless input on every endpoint that takes a body: malformed JSON, wrong
//! types, unknown and missing fields, huge strings, negative numbers, wrong content types and
//! oversized bodies all get a 4xx JSON error, never a 5xx.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{MAX_BODY_BYTES, TestApp, assert_json_error};

backend_tests!(bad_bodies_are_json_4xx_on_every_endpoint);

/// One endpoint with a body: method, path, whether it needs the admin's token, and a body it
/// accepts (the starting point of every mutation).
struct Endpoint {
    method: Method,
    path: String,
    admin: bool,
    good: Value,
}

/// Sends raw bytes with a content type and returns the response.
async fn send_raw(
    app: &TestApp,
    endpoint: &Endpoint,
    token: Option<&str>,
    content_type: &str,
    body: Vec<u8>,
) -> reqwest::Response {
    let mut request = app
        .client
        .request(
            endpoint.method.clone(),
            format!("{}{}", app.base, endpoint.path),
        )
        .header("content-type", content_type)
        .body(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("send")
}

async fn expect_4xx(response: reqwest::Response, what: &str) -> StatusCode {
    let status = response.status();
    assert!(status.is_client_error(), "{what}: {status}");
    let content_type = response.headers()["content-type"]
        .to_str()
        .expect("ASCII")
        .to_owned();
    assert_eq!(content_type, "application/json", "{what}");
    let body: Value = response.json().await.expect("JSON error");
    assert!(body["error"]["code"].is_string(), "{what}: {body}");
    status
}

async fn bad_bodies_are_json_4xx_on_every_endpoint(app: TestApp) {
    let admin = app.admin_token().await;
    let (_, customer) = app.customer().await;
    let me: Value = app
        .get_as("/api/v1/users/me", &customer)
        .await
        .json()
        .await
        .expect("JSON");
    let customer_id = me["id"].as_i64().expect("id");
    let endpoints = [
        Endpoint {
            method: Method::POST,
            path: "/api/v1/users".into(),
            admin: false,
            good: json!({"email": "x@example.com", "password": "long enough", "display_name": "X"}),
        },
        Endpoint {
            method: Method::POST,
            path: "/api/v1/sessions".into(),
            admin: false,
            good: json!({"email": "x@example.com", "password": "long enough"}),
        },
        Endpoint {
            method: Method::PATCH,
            path: format!("/api/v1/users/{customer_id}/role"),
            admin: true,
            good: json!({"role": "support"}),
        },
        Endpoint {
            method: Method::POST,
            path: "/api/v1/products".into(),
            admin: true,
            good: json!({"sku": "IN-1", "name": "N", "description": "D", "category": "c",
                         "price_cents": 1, "stock": 1}),
        },
        Endpoint {
            method: Method::PATCH,
            path: "/api/v1/products/1".into(),
            admin: true,
            good: json!({"name": "N", "description": "D", "category": "c",
                         "price_cents": 1, "stock": 1}),
        },
    ];
    for endpoint in &endpoints {
        let token = endpoint.admin.then_some(admin.as_str());
        let what = |case: &str| format!("{} {} {case}", endpoint.method, endpoint.path);

        // Not JSON at all.
        for raw in [
            &b"{"[..],
            b"",
            b"nope",
            b"{\"a\":}",
            b"[1,",
            b"\xff\xfe",
            b"{} {}",
        ] {
            let response = send_raw(&app, endpoint, token, "application/json", raw.to_vec()).await;
            let status = expect_4xx(response, &what(&format!("{raw:?}"))).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{}", what("malformed"));
        }
        // Not declared as JSON.
        for content_type in ["text/plain", "application/x-www-form-urlencoded", ""] {
            let body = serde_json::to_vec(&endpoint.good).expect("JSON");
            let response = send_raw(&app, endpoint, token, content_type, body).await;
            let status = expect_4xx(response, &what(content_type)).await;
            assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        }
        // Over the limit, declared or not.
        let huge = format!(r#"{{"name": "{}"}}"#, "x".repeat(MAX_BODY_BYTES));
        let response = send_raw(
            &app,
            endpoint,
            token,
            "application/json",
            huge.clone().into_bytes(),
        )
        .await;
        assert_json_error(response, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
        let (status, body) = send_chunked(&app, endpoint, token, huge.as_bytes()).await;
        assert_eq!(status, 413, "{}: {body}", what("chunked"));
        assert!(body.contains("payload_too_large"), "{body}");

        // Well-formed JSON of the wrong shape: every field mutated in turn.
        let object = endpoint.good.as_object().expect("object");
        let mut mutations: Vec<(String, Value)> = vec![
            ("array".into(), json!([endpoint.good])),
            ("string".into(), json!("text")),
            ("null".into(), Value::Null),
            ("unknown field".into(), {
                let mut v = endpoint.good.clone();
                v["unexpected"] = json!(1);
                v
            }),
        ];
        for (field, value) in object {
            let mut set = |label: &str, new: Value| {
                let mut v = endpoint.good.clone();
                v[field.as_str()] = new;
                mutations.push((format!("{field} {label}"), v));
            };
            set(
                "wrong type",
                if value.is_string() {
                    json!(12)
                } else {
                    json!("12")
                },
            );
            set("object", json!({"nested": true}));
            set("huge", json!("h".repeat(MAX_BODY_BYTES - 200)));
            set("negative", json!(-1));
            set("very negative", json!(i64::MIN));
            set("fraction", json!(1.5));
            set("overflow", json!(1e30));
            set("empty", json!(""));
            set("control", json!("a\u{0}b"));
            let mut v = endpoint.good.clone();
            v.as_object_mut().expect("object").remove(field);
            mutations.push((format!("{field} missing"), v));
        }
        for (label, body) in mutations {
            let response = app
                .send(endpoint.method.clone(), &endpoint.path, token, Some(&body))
                .await;
            let status = response.status();
            assert!(!status.is_server_error(), "{}: {status}", what(&label));
            if status.is_success() {
                // A mutation may still be acceptable (a missing optional field, a patch of
                // fewer fields, a log-in that fails); a success must be a JSON body too.
                let _: Value = response.json().await.expect("JSON");
            } else {
                expect_4xx(response, &what(&label)).await;
            }
        }
    }
}

/// Sends `body` chunked (no `Content-Length`), so the server must count as it reads; returns
/// the status code and the response body.
async fn send_chunked(
    app: &TestApp,
    endpoint: &Endpoint,
    token: Option<&str>,
    body: &[u8],
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let addr = app.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let auth = token
        .map(|t| format!("authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let mut request = format!(
        "{} {} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n{auth}\
         transfer-encoding: chunked\r\nconnection: close\r\n\r\n",
        endpoint.method, endpoint.path
    )
    .into_bytes();
    for chunk in body.chunks(256) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    // The server may answer and close before reading everything: ignore a failed write.
    let _ = stream.write_all(&request).await;
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}
