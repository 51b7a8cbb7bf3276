//! The chat role's operational endpoints, on a real instance over port 0.

use strata_bus::AnyBus;
use strata_cache::AnyCache;
use strata_cache::private_redis::PrivateRedis;
use strata_chat::{ChatLimits, ChatServer, ChatSettings, ROLE};
use strata_core::Shutdown;
use strata_core::ops_checks::OpsCheck;
use strata_store::testing::{self, TempFileGuard};

/// A running chat instance; stopped when dropped.
struct TestApp {
    base: String,
    instance: String,
    shutdown: Shutdown,
    _file: TempFileGuard,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn settings(instance: &str) -> ChatSettings {
    ChatSettings {
        instance: instance.to_owned(),
        listen: "127.0.0.1:0".parse().expect("address"),
        jwt_secret: vec![7; 32],
        key_id: "k1".into(),
        limits: ChatLimits::default(),
    }
}

async fn spawn_app() -> TestApp {
    let (store, file) = testing::fresh_sqlite().await;
    store.migrate().await.expect("migrate");
    let cache = AnyCache::from_url("memory", "test").await.expect("cache");
    let bus = AnyBus::connect("memory", "test").await.expect("bus");
    let instance = format!("chat-test-{}", uuid::Uuid::new_v4().simple());
    let settings = settings(&instance);
    let server = ChatServer::build(settings, store, cache, bus)
        .await
        .expect("build chat");
    let base = format!("http://{}", server.local_addr());
    let shutdown = Shutdown::new();
    tokio::spawn(server.run(shutdown.clone()));
    TestApp {
        base,
        instance,
        shutdown,
        _file: file,
    }
}

impl TestApp {
    fn ops(&self) -> OpsCheck {
        OpsCheck::new(&self.base, ROLE, &self.instance)
    }
}

#[tokio::test]
async fn probes_answer_with_the_instance_header() {
    let app = spawn_app().await;
    app.ops().probes_answer_with_the_instance_header().await;
}

#[tokio::test]
async fn metrics_name_the_role() {
    let app = spawn_app().await;
    app.ops().metrics_name_the_role().await;
}

#[tokio::test]
async fn unknown_routes_and_methods_are_json_errors() {
    let app = spawn_app().await;
    app.ops()
        .unknown_routes_and_methods_are_json_errors(&["/api/v1/chat/nowhere"])
        .await;
}

/// The instance name of the unmigrated-store test.
const UNMIGRATED: &str = "chat-unmigrated";

#[tokio::test]
async fn unmigrated_store_is_not_ready() {
    let (store, _file) = testing::fresh_sqlite().await;
    let settings = settings(UNMIGRATED);
    let cache = AnyCache::from_url("memory", "test").await.expect("cache");
    let bus = AnyBus::connect("memory", "test").await.expect("bus");
    let server = ChatServer::build(settings, store, cache, bus)
        .await
        .expect("build chat");
    let base = format!("http://{}", server.local_addr());
    let shutdown = Shutdown::new();
    let task = tokio::spawn(server.run(shutdown.clone()));
    OpsCheck::new(&base, ROLE, UNMIGRATED).not_ready().await;
    shutdown.cancel();
    task.await.expect("no panic").expect("graceful stop");
}

/// Chat only mirrors presence in the cache: with the cache's Redis gone, the instance still
/// serves (history, sending, fan-out), so it stays ready instead of leaving the gateway's pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_outage_does_not_make_chat_unready() {
    let Some(mut redis) = PrivateRedis::start() else {
        return;
    };
    let (store, _file) = testing::fresh_sqlite().await;
    store.migrate().await.expect("migrate");
    let cache = AnyCache::from_url(&redis.url(), "chat-test")
        .await
        .expect("cache");
    let bus = AnyBus::connect("memory", "test").await.expect("bus");
    let instance = "chat-cache-down";
    let server = ChatServer::build(settings(instance), store, cache, bus)
        .await
        .expect("build chat");
    let base = format!("http://{}", server.local_addr());
    let shutdown = Shutdown::new();
    let task = tokio::spawn(server.run(shutdown.clone()));
    let ops = OpsCheck::new(&base, ROLE, instance);
    ops.probes_answer_with_the_instance_header().await;
    redis.kill();
    // Twice: the first check after the outage, and one once the cache's breaker has opened.
    for _ in 0..2 {
        ops.probes_answer_with_the_instance_header().await;
    }
    shutdown.cancel();
    task.await.expect("no panic").expect("graceful stop");
}
