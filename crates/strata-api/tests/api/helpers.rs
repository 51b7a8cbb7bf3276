//! The test harness: [`spawn_app`] starts a real api instance on port 0 over a fresh, migrated
//! and seeded store (a SQLite file or a PostgreSQL schema) and an in-memory cache the test can
//! inspect, and stops it when the [`TestApp`] is dropped. [`Backend::LocalCarts`] runs the
//! instance in local cart mode (carts in its memory and its own log in a fresh directory), so
//! the cart and checkout suites run in both cart modes; [`Backend::LocalCluster`] runs them
//! against one of three local-cart instances that share the carts out (most carts then live on
//! another instance, and every request for them is forwarded).

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};
use strata_api::auth::PasswordParams;
use strata_api::{
    AdminBootstrap, ApiError, ApiServer, ApiSettings, AuthSettings, CartMode, CartSettings,
    PeerSettings,
};
use strata_cache::AnyCache;
use strata_core::Shutdown;
use strata_core::config::Secret;
use strata_core::testkit::{POSTGRES, require_service};
use strata_objects::{AnyObjects, LocalObjects};
use strata_store::Store;
use strata_store::testing;
use tokio::task::JoinHandle;

/// The body limit of test instances: small, so the 413 test sends little.
pub const MAX_BODY_BYTES: usize = 1024;
/// The JWT secret of test instances (tests sign their own expired or forged tokens with it).
pub const JWT_SECRET: &str = "a test secret that is 32 bytes+!";
/// The key id of test instances.
pub const KEY_ID: &str = "k1";
/// The admin every test app bootstraps.
pub const ADMIN_EMAIL: &str = "admin@strata.test";
pub const ADMIN_PASSWORD: &str = "admin password 1";

/// Which store a test app runs on.
#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Sqlite,
    Postgres,
    /// SQLite, with carts in the instance (`carts.mode = "local"`).
    LocalCarts,
    /// SQLite, with carts shared out among three local-cart instances; the test talks to one.
    LocalCluster,
}

/// Runs each listed `async fn name(app: TestApp)` once per backend, as `sqlite::name` and
/// `postgres::name`. The PostgreSQL run is skipped (loudly) when no server is reachable,
/// and fails under `CI=true`.
macro_rules! backend_tests {
    (carts: $($name:ident),* $(,)?) => {
        backend_tests!($($name),*);
        mod local_carts {
            $(
                #[tokio::test]
                async fn $name() {
                    let app = crate::helpers::spawn_app(crate::helpers::Backend::LocalCarts).await;
                    super::$name(app.expect("SQLite is always available")).await;
                }
            )*
        }
        mod local_cluster {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let app = crate::helpers::spawn_app(crate::helpers::Backend::LocalCluster).await;
                    super::$name(app.expect("SQLite is always available")).await;
                }
            )*
        }
    };
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
    /// The app's object store (a directory of the app's own), for checking what it stored.
    pub objects: AnyObjects,
    /// Removes that directory when the app is dropped.
    _images: ImagesDir,
    shutdown: Shutdown,
    server: Option<JoinHandle<Result<(), ApiError>>>,
    /// Removes the test's database (file or schema) when the last app on it is dropped;
    /// declared last, so it goes after the server has been told to stop.
    guard: Arc<dyn Any + Send + Sync>,
}

/// A directory of its own for an app's images, removed on drop.
pub struct ImagesDir(std::path::PathBuf);

impl ImagesDir {
    fn new() -> Self {
        Self(std::env::temp_dir().join(format!("strata-api-images-{}", uuid::Uuid::new_v4())))
    }
}

impl Drop for ImagesDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The auth settings of test instances: the test secret, the cheapest argon2 parameters (a
/// suite of hundreds of log-ins stays fast), and the test admin.
pub fn test_auth() -> AuthSettings {
    AuthSettings {
        password: PasswordParams::FAST_INSECURE,
        admin: Some(AdminBootstrap {
            email: ADMIN_EMAIL.to_owned(),
            password: Secret::new(ADMIN_PASSWORD),
        }),
        ..AuthSettings::new(Secret::new(JWT_SECRET))
    }
}

/// Starts an api instance on a fresh, migrated and seeded store. `None`: PostgreSQL was asked
/// for and is not available (the skip message is already printed).
pub async fn spawn_app(backend: Backend) -> Option<TestApp> {
    spawn_app_with(backend, true).await
}

/// As [`spawn_app`]; with `migrate == false` the store is left empty and unmigrated.
pub async fn spawn_app_with(backend: Backend, migrate: bool) -> Option<TestApp> {
    let (store, guard) = match backend {
        Backend::Sqlite | Backend::LocalCarts | Backend::LocalCluster => {
            let (store, guard) = testing::fresh_sqlite().await;
            (store, Arc::new(guard) as Arc<dyn Any + Send + Sync>)
        }
        Backend::Postgres => {
            let url = require_service(POSTGRES)?;
            let (store, guard) = testing::fresh_postgres(&url)
                .await
                .expect("fresh PostgreSQL schema");
            (store, Arc::new(guard) as Arc<dyn Any + Send + Sync>)
        }
    };
    let mut auth = test_auth();
    if migrate {
        store.migrate().await.expect("migrate");
        store
            .seed_demo_catalog()
            .await
            .expect("seed the demo catalog");
    } else {
        // No users table to bootstrap an admin into.
        auth.admin = None;
    }
    let cache = AnyCache::from_url("memory", "test")
        .await
        .expect("memory cache");
    let carts = match backend {
        Backend::LocalCarts => {
            let dir = CartDir::new();
            let settings = CartSettings {
                mode: CartMode::Local,
                dir: dir.0.clone(),
                ..CartSettings::default()
            };
            return Some(
                launch(store, cache, Arc::new((guard, dir)), auth, settings)
                    .await
                    .expect("build the api"),
            );
        }
        Backend::LocalCluster => return Some(spawn_cluster(store, cache, guard, auth).await),
        Backend::Sqlite | Backend::Postgres => CartSettings::default(),
    };
    Some(
        launch(store, cache, guard, auth, carts)
            .await
            .expect("build the api"),
    )
}

/// Three local-cart instances on one store, sharing the carts out; the membership they read
/// is served as the gateway's admin API serves it (`GET /admin/pools`). Returns the first.
async fn spawn_cluster(
    store: Store,
    cache: AnyCache,
    guard: Arc<dyn Any + Send + Sync>,
    auth: AuthSettings,
) -> TestApp {
    let dir = CartDir::new();
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the pool listener");
    let url = format!("http://{}", admin.local_addr().expect("address"));
    let settings = CartSettings {
        mode: CartMode::Local,
        dir: dir.0.clone(),
        peers: Some(PeerSettings {
            url,
            token: None,
            pool: "api".into(),
            advertise: None,
            poll: Duration::from_millis(100),
        }),
        ..CartSettings::default()
    };
    let mut others = Vec::new();
    for _ in 0..2 {
        let other = launch(
            store.clone(),
            cache.clone(),
            guard.clone(),
            auth.clone(),
            settings.clone(),
        )
        .await
        .expect("build a peer");
        others.push(other);
    }
    let addresses: Vec<String> = others
        .iter()
        .map(|o| o.base.trim_start_matches("http://").to_owned())
        .collect();
    let pool = Arc::new(std::sync::Mutex::new(addresses));
    let served = pool.clone();
    let router = axum::Router::new().route(
        "/admin/pools",
        axum::routing::get(move || {
            let served = served.clone();
            async move {
                let instances: Vec<Value> = served
                    .lock()
                    .expect("pool")
                    .iter()
                    .map(|a| json!({"address": a, "weight": 1, "draining": false, "removing": false}))
                    .collect();
                axum::Json(json!({"pools": [{"name": "api", "instances": instances}]}))
            }
        }),
    );
    let pool_server = tokio::spawn(async move {
        let _ = axum::serve(admin, router).await;
    });
    let holder = ClusterGuard {
        _others: others,
        pool_server,
        _dir: dir,
        _guard: guard,
    };
    let app = launch(store, cache, Arc::new(holder), auth, settings)
        .await
        .expect("build the api");
    pool.lock()
        .expect("pool")
        .push(app.base.trim_start_matches("http://").to_owned());
    // Served once every instance sees all three (a cart with no member answers 503).
    let probe = format!("{}/api/v1/cart", app.base);
    for _ in 0..100 {
        let response = app
            .client
            .get(&probe)
            .header("cookie", "strata_cart=0123456789abcdef0123456789abcdef")
            .send()
            .await
            .expect("probe");
        if response.status() == StatusCode::OK {
            tokio::time::sleep(Duration::from_millis(300)).await;
            return app;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the cluster never served a cart");
}

/// What a cluster app keeps alive: the other instances, the pool listener, the carts'
/// directory and the store's guard.
struct ClusterGuard {
    _others: Vec<TestApp>,
    pool_server: JoinHandle<()>,
    _dir: CartDir,
    _guard: Arc<dyn Any + Send + Sync>,
}

impl Drop for ClusterGuard {
    fn drop(&mut self) {
        self.pool_server.abort();
    }
}

/// A fresh directory for local carts' logs, removed with the app.
struct CartDir(std::path::PathBuf);

impl CartDir {
    fn new() -> Self {
        Self(std::env::temp_dir().join(format!("strata-carts-{}", uuid::Uuid::new_v4().simple())))
    }
}

impl Drop for CartDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Starts an api instance on `store` and `cache` with `auth`.
pub async fn start(
    store: Store,
    cache: AnyCache,
    guard: Arc<dyn Any + Send + Sync>,
    auth: AuthSettings,
) -> TestApp {
    try_start(store, cache, guard, auth)
        .await
        .expect("build the api")
}

/// As [`start`], returning the build error.
pub async fn try_start(
    store: Store,
    cache: AnyCache,
    guard: Arc<dyn Any + Send + Sync>,
    auth: AuthSettings,
) -> Result<TestApp, ApiError> {
    launch(store, cache, guard, auth, CartSettings::default()).await
}

/// As [`try_start`], with these cart settings.
async fn launch(
    store: Store,
    cache: AnyCache,
    guard: Arc<dyn Any + Send + Sync>,
    auth: AuthSettings,
    carts: CartSettings,
) -> Result<TestApp, ApiError> {
    let instance = format!("api-test-{}", uuid::Uuid::new_v4().simple());
    let settings = ApiSettings {
        instance: instance.clone(),
        listen: "127.0.0.1:0".parse().expect("address"),
        cache_ttl: Duration::from_secs(60),
        max_body_bytes: MAX_BODY_BYTES,
        request_timeout: strata_core::http::DEFAULT_REQUEST_TIMEOUT,
        auth,
        drain_delay: Duration::ZERO,
        documents: Vec::new(),
        currencies: strata_api::Currencies::default(),
        carts,
    };
    // Images in a directory of the test's own, removed with the app.
    let images_dir = ImagesDir::new();
    let objects = AnyObjects::from(
        LocalObjects::open(&images_dir.0)
            .await
            .expect("open the images directory"),
    );
    let server = ApiServer::build(settings, store.clone(), cache.clone(), objects.clone()).await?;
    let base = format!("http://{}", server.local_addr());
    let shutdown = Shutdown::new();
    let task = tokio::spawn(server.run(shutdown.clone()));
    // No proxy: the environment's HTTP_PROXY must not capture requests to 127.0.0.1.
    let client = Client::builder().no_proxy().build().expect("HTTP client");
    Ok(TestApp {
        base,
        instance,
        client,
        store,
        cache,
        objects,
        _images: images_dir,
        shutdown,
        server: Some(task),
        guard,
    })
}

impl TestApp {
    /// Another instance on the same store, with `cache` (pass `self.cache.clone()` to share
    /// this app's memory cache, as the instances of `strata up` do).
    pub async fn sibling(&self, cache: AnyCache) -> TestApp {
        start(self.store.clone(), cache, self.guard.clone(), test_auth()).await
    }

    /// Another instance on the same store and cache, with these auth settings.
    pub async fn sibling_with(&self, auth: AuthSettings) -> Result<TestApp, ApiError> {
        try_start(
            self.store.clone(),
            self.cache.clone(),
            self.guard.clone(),
            auth,
        )
        .await
    }

    /// `METHOD {base}{path}` with an optional bearer token and an optional JSON body.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Response {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        request.send().await.expect("send")
    }

    /// `POST {base}{path}` with a JSON body and an optional token.
    pub async fn post_json(&self, path: &str, body: &Value, token: Option<&str>) -> Response {
        self.send(reqwest::Method::POST, path, token, Some(body))
            .await
    }

    /// `PATCH {base}{path}` with a JSON body and an optional token.
    pub async fn patch_json(&self, path: &str, body: &Value, token: Option<&str>) -> Response {
        self.send(reqwest::Method::PATCH, path, token, Some(body))
            .await
    }

    /// `GET {base}{path}` with a token.
    pub async fn get_as(&self, path: &str, token: &str) -> Response {
        self.send(reqwest::Method::GET, path, Some(token), None)
            .await
    }

    /// `POST /api/v1/users`.
    pub async fn register(&self, email: &str, password: &str, display_name: &str) -> Response {
        let body = json!({"email": email, "password": password, "display_name": display_name});
        self.post_json("/api/v1/users", &body, None).await
    }

    /// `POST /api/v1/sessions`.
    pub async fn log_in(&self, email: &str, password: &str) -> Response {
        let body = json!({"email": email, "password": password});
        self.post_json("/api/v1/sessions", &body, None).await
    }

    /// Logs in, expecting success; returns the token.
    pub async fn token(&self, email: &str, password: &str) -> String {
        let response = self.log_in(email, password).await;
        assert_eq!(response.status(), StatusCode::OK, "log in as {email}");
        let body: Value = response.json().await.expect("JSON");
        body["token"].as_str().expect("token").to_owned()
    }

    /// A token of the bootstrapped admin.
    pub async fn admin_token(&self) -> String {
        self.token(ADMIN_EMAIL, ADMIN_PASSWORD).await
    }

    /// Registers a new customer with a unique email; returns (email, token).
    pub async fn customer(&self) -> (String, String) {
        let email = format!("c-{}@example.com", uuid::Uuid::new_v4().simple());
        let response = self.register(&email, "customer password", "Customer").await;
        assert_eq!(response.status(), StatusCode::CREATED, "register {email}");
        let token = self.token(&email, "customer password").await;
        (email, token)
    }

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
        let status = response.status();
        let text = response.text().await.expect("body");
        assert_eq!(status, StatusCode::OK, "GET {path}: {text}");
        serde_json::from_str(&text).expect("JSON body")
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
