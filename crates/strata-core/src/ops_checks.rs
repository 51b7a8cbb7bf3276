//! [`OpsCheck`]: the checks every role's integration tests run against its operational
//! endpoints (`/healthz`, `/readyz`, `/metrics`) and its JSON fallbacks, over real HTTP on a
//! running instance, so each role states once that it serves them and the checks live here.
//!
//! Test support only: compiled with the `testing` feature, which the roles enable from their
//! `[dev-dependencies]`.

use reqwest::{Client, Method, StatusCode};
use serde_json::Value;

use crate::http::{INSTANCE, REQUEST_ID};

/// A running role instance to check: where it listens and what it calls itself.
#[derive(Clone, Debug)]
pub struct OpsCheck {
    base: String,
    role: String,
    instance: String,
    client: Client,
}

impl OpsCheck {
    /// Checks the instance at `base` (`http://127.0.0.1:port`) of `role`, named `instance`.
    ///
    /// # Panics
    /// When no HTTP client can be built.
    pub fn new(base: &str, role: &str, instance: &str) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            role: role.to_owned(),
            instance: instance.to_owned(),
            client: Client::builder()
                .no_proxy()
                .build()
                .expect("an HTTP client"),
        }
    }

    async fn send(&self, method: Method, path: &str) -> reqwest::Response {
        self.client
            .request(method, format!("{}{path}", self.base))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn assert_names_the_instance(&self, path: &str, response: &reqwest::Response) {
        assert_eq!(
            response
                .headers()
                .get(INSTANCE.as_str())
                .map(|v| v.as_bytes()),
            Some(self.instance.as_bytes()),
            "{path}: `{INSTANCE}` names the instance"
        );
    }

    /// `/healthz` and `/readyz` answer 200 with `status` (`ok`, `ready`), the role and the
    /// instance, and with the instance and request id headers.
    ///
    /// # Panics
    /// When they do not.
    pub async fn probes_answer_with_the_instance_header(&self) {
        for (path, status) in [("/healthz", "ok"), ("/readyz", "ready")] {
            let response = self.send(Method::GET, path).await;
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            self.assert_names_the_instance(path, &response);
            assert!(
                response.headers().contains_key(REQUEST_ID.as_str()),
                "{path}: a request id"
            );
            let body: Value = response.json().await.expect("a JSON body");
            assert_eq!(body["status"], status, "{path}: {body}");
            assert_eq!(body["role"], self.role.as_str(), "{path}: {body}");
            assert_eq!(body["instance"], self.instance.as_str(), "{path}: {body}");
        }
    }

    /// `/metrics` is Prometheus text with the role's request counter and histogram, which
    /// count a request made just before.
    ///
    /// # Panics
    /// When it is not.
    pub async fn metrics_name_the_role(&self) {
        self.send(Method::GET, "/healthz").await;
        let response = self.send(Method::GET, "/metrics").await;
        assert_eq!(response.status(), StatusCode::OK);
        self.assert_names_the_instance("/metrics", &response);
        let text = response.text().await.expect("a body");
        let role = &self.role;
        for metric in [
            format!("strata_{role}_http_requests_total"),
            format!("strata_{role}_http_request_duration_seconds"),
        ] {
            assert!(text.contains(&metric), "{metric} in {text}");
        }
    }

    /// Unknown routes (`/nowhere` and each of `also_unknown`) are a JSON 404 `not_found`, a
    /// known route with the wrong method a JSON 405 `method_not_allowed`, both naming the
    /// instance.
    ///
    /// # Panics
    /// When they are not.
    pub async fn unknown_routes_and_methods_are_json_errors(&self, also_unknown: &[&str]) {
        let not_found = std::iter::once("/nowhere")
            .chain(also_unknown.iter().copied())
            .map(|path| (Method::GET, path, StatusCode::NOT_FOUND, "not_found"));
        let wrong_method = (
            Method::POST,
            "/healthz",
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        );
        for (method, path, status, code) in not_found.chain([wrong_method]) {
            let response = self.send(method, path).await;
            assert_eq!(response.status(), status, "{path}");
            self.assert_names_the_instance(path, &response);
            assert_eq!(
                response.headers()["content-type"],
                "application/json",
                "{path}"
            );
            let body: Value = response.json().await.expect("a JSON body");
            assert_eq!(body["error"]["code"], code, "{path}: {body}");
        }
    }

    /// `/readyz` answers a JSON 503 `not_ready`.
    ///
    /// # Panics
    /// When it does not.
    pub async fn not_ready(&self) {
        let response = self.send(Method::GET, "/readyz").await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body: Value = response.json().await.expect("a JSON body");
        assert_eq!(body["error"]["code"], "not_ready", "{body}");
    }
}
