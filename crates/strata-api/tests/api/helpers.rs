//! The test harness: [`spawn_app`] starts a real api instance on port 0 over a fresh, migrated
//! and seeded store (a SQLite file or a PostgreSQL schema) and an in-memory cache the test can
//! inspect, and stops it when the [`TestApp`] is dropped.

use std::any::Any;
use std::time::Duration;

use reqwest::{Client, Response, StatusCode};
use serde_json::Value;
use strata_api::{ApiError, ApiServer, ApiSettings};
use strata_cache::AnyCache;
use strata_core::Shutdown;
use strata_core::testkit::{POSTGRES, require_service};
use strata_store::Store;
use strata_store::testing;
use tokio::task::JoinHandle;

/// The body limit of test instances: small, so the 413 test sends little.
pub const MAX_BODY_BYTES: usize = 1024;

/// Which store a test app runs on.
#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs each listed `async fn name(app: TestApp)` once per backend, as `sqlite::name` and
/// `postgres::name`. The PostgreSQL run is skipped (loudly) when no server is reachable,
/// and fails under `CI=true`.
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let app = crate::helpers::spawn_app(crate::helpers::Backend::Sqlite).await;
                    super::$name(app.expect("SQLite is always available")).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    if let Some(app) = crate::helpers::spawn_app(crate::helpers::Backend::Postgres).await {
                        super::$name(app).await;
                    }
                }
            )*
        }
    };
}

/// A running api instance and handles on its backends.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The instance name the app was given (unique per test).
    pub instance: String,
    pub client: Client,
    /// The app's store, for fixtures and for checking what the app wrote.
    pub store: Store,
    /// The app's cache: a clone of a memory cache shares its entries.
    pub cache: AnyCache,
    shutdown: Shutdown,
    server: Option<JoinHandle<Result<(), ApiError>>>,
    /// Removes the test's database (file or schema) when dropped; declared last, so it goes
    /// after the server has been told to stop.
    _guard: Box<dyn Any + Send>,
}

/// Starts an api instance on a fresh, migrated and seeded store. `None`: PostgreSQL was asked
/// for and is not available (the skip message is already printed).
pub async fn spawn_app(backend: Backend) -> Option<TestApp> {
    spawn_app_with(backend, true).await
}

/// As [`spawn_app`]; with `migrate == false` the store is left empty and unmigrated.
pub async fn spawn_app_with(backend: Backend, migrate: bool) -> Option<TestApp> {
    let (store, guard) = match backend {
        Backend::Sqlite => {
            let (store, guard) = testing::fresh_sqlite().await;
            (store, Box::new(guard) as Box<dyn Any + Send>)
        }
        Backend::Postgres => {
            let url = require_service(POSTGRES)?;
            let (store, guard) = testing::fresh_postgres(&url)
                .await
                .expect("fresh PostgreSQL schema");
            (store, Box::new(guard) as Box<dyn Any + Send>)
        }
    };
    if migrate {
        store.migrate().await.expect("migrate");
        store
            .seed_demo_catalog()
            .await
            .expect("seed the demo catalog");
    }
    let cache = AnyCache::from_url("memory", "test")
        .await
        .expect("memory cache");
    let instance = format!("api-test-{}", uuid::Uuid::new_v4().simple());
    let settings = ApiSettings {
        instance: instance.clone(),
        listen: "127.0.0.1:0".parse().expect("address"),
        cache_ttl: Duration::from_secs(60),
        max_body_bytes: MAX_BODY_BYTES,
    };
    let server = ApiServer::build(settings, store.clone(), cache.clone())
        .await
        .expect("build the api");
    let base = format!("http://{}", server.local_addr());
    let shutdown = Shutdown::new();
    let task = tokio::spawn(server.run(shutdown.clone()));
    // No proxy: the environment's HTTP_PROXY must not capture requests to 127.0.0.1.
    let client = Client::builder().no_proxy().build().expect("HTTP client");
    Some(TestApp {
        base,
        instance,
        client,
        store,
        cache,
        shutdown,
        server: Some(task),
        _guard: guard,
    })
}

impl TestApp {
    /// `GET {base}{path}`.
    pub async fn get(&self, path: &str) -> Response {
        self.client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("GET")
    }

    /// `GET {base}{path}`, expecting a 200 with a JSON body.
    pub async fn get_ok_json(&self, path: &str) -> Value {
        let response = self.get(path).await;
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        response.json().await.expect("JSON body")
    }

    /// Stops the server gracefully and returns what `run` returned.
    pub async fn stop(mut self) -> Result<(), ApiError> {
        self.shutdown.cancel();
        let task = self.server.take().expect("server task");
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("server stops within 10 s")
            .expect("server task did not panic")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Asserts a JSON error response: this status, `error.code` == `code`, a non-empty message,
/// and the instance header. Returns the message.
pub async fn assert_json_error(response: Response, status: StatusCode, code: &str) -> String {
    let context = format!("{} {}", response.url(), response.status());
    assert_eq!(response.status(), status, "{context}");
    assert!(
        response.headers().contains_key("x-strata-instance"),
        "{context}: no instance header"
    );
    assert!(
        response.headers().contains_key("x-request-id"),
        "{context}: no request id"
    );
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap_or("").to_owned());
    assert_eq!(
        content_type.as_deref(),
        Some("application/json"),
        "{context}"
    );
    let body: Value = response.json().await.expect("JSON error body");
    assert_eq!(body["error"]["code"], code, "{context}: {body}");
    let message = body["error"]["message"]
        .as_str()
        .expect("error.message")
        .to_owned();
    assert!(!message.is_empty(), "{context}: empty message");
    message
}
