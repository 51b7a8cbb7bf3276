//! Routing rules (`gateway.routes`): host, path prefix, method and header matches, prefix
//! rewrites, request and response header rules, unmatched requests, bad rules, reload.

use strata_gateway::GatewayError;
use strata_gateway::config::{RouteRule, default_routes};

use crate::helpers::{Backend, TestGateway, config, raw_exchange, spawn_gateway};

/// A rule sending what `f` describes to `pool`.
fn rule(pool: &str, f: impl FnOnce(&mut RouteRule)) -> RouteRule {
    let mut rule = RouteRule::new("/", pool);
    f(&mut rule);
    rule
}

/// Sends `head` (request line and headers, without the blank line) on a fresh connection
/// and returns the status and the `x-strata-instance` that answered ("-" for none).
async fn exchange(gateway: &TestGateway, head: &str) -> (u16, String) {
    let request = format!("{head}\r\nconnection: close\r\n\r\n");
    let response = raw_exchange(gateway.addr, request.as_bytes()).await;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let instance = response
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("x-strata-instance")
                .then(|| value.trim().to_owned())
        })
        .unwrap_or_else(|| "-".to_owned());
    (status, instance)
}

async fn two_pools(routes: Vec<RouteRule>) -> (TestGateway, Backend, Backend) {
    let (api, chat) = (
        Backend::start("api-1").await,
        Backend::start("chat-1").await,
    );
    let mut config = config(&[("api", vec![api.url()]), ("chat", vec![chat.url()])]);
    config.routes = routes;
    (spawn_gateway(config).await, api, chat)
}

#[tokio::test]
async fn hosts_methods_and_headers_choose_the_pool_first_match_wins() {
    let (gateway, api, chat) = two_pools(vec![
        rule("chat", |r| r.host = "*.chat.example".into()),
        rule("chat", |r| {
            r.host = "shop.example".into();
            r.path_prefix = "/support/".into();
        }),
        rule("chat", |r| {
            r.methods = vec!["DELETE".into(), "PATCH".into()]
        }),
        rule("chat", |r| {
            r.headers.insert("x-canary".into(), "1".into());
        }),
        rule("chat", |r| {
            r.headers.insert("x-team".into(), "*".into());
        }),
        RouteRule::new("/", "api"),
    ])
    .await;
    for (head, expected) in [
        ("GET / HTTP/1.1\r\nhost: eu.chat.example:8080", "chat-1"),
        ("GET / HTTP/1.1\r\nhost: EU.Chat.Example", "chat-1"),
        ("GET / HTTP/1.1\r\nhost: chat.example", "api-1"),
        (
            "GET http://eu.chat.example/x HTTP/1.1\r\nhost: other",
            "chat-1",
        ),
        ("GET /support/1 HTTP/1.1\r\nhost: shop.example", "chat-1"),
        ("GET /support/1 HTTP/1.1\r\nhost: www.shop.example", "api-1"),
        ("GET /other HTTP/1.1\r\nhost: shop.example", "api-1"),
        ("DELETE /x HTTP/1.1\r\nhost: a", "chat-1"),
        (
            "PATCH /x HTTP/1.1\r\nhost: a\r\ncontent-length: 0",
            "chat-1",
        ),
        ("PUT /x HTTP/1.1\r\nhost: a\r\ncontent-length: 0", "api-1"),
        ("GET / HTTP/1.1\r\nhost: a\r\nx-canary: 1", "chat-1"),
        ("GET / HTTP/1.1\r\nhost: a\r\nx-canary: 2", "api-1"),
        ("GET / HTTP/1.1\r\nhost: a\r\nx-team: anything", "chat-1"),
        ("GET / HTTP/1.1\r\nhost: a", "api-1"),
    ] {
        assert_eq!(
            exchange(&gateway, head).await,
            (200, expected.into()),
            "{head}"
        );
    }
    assert_eq!(chat.count(), 8);
    assert_eq!(api.count(), 6);
}

#[tokio::test]
async fn prefixes_are_stripped_or_rewritten_and_internal_paths_judged_after() {
    let (gateway, api, _chat) = two_pools(vec![
        rule("api", |r| {
            r.path_prefix = "/shop/".into();
            r.strip_prefix = true;
        }),
        rule("api", |r| {
            r.path_prefix = "/v1/".into();
            r.rewrite_prefix = "/api/v2/".into();
        }),
        RouteRule::new("/", "api"),
    ])
    .await;
    for (path, seen) in [
        ("/shop/products?q=tea", "/products"),
        ("/shop/", "/"),
        ("/v1/orders/7", "/api/v2/orders/7"),
        ("/v1x", "/v1x"),
    ] {
        let response = gateway.get(path).await;
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(api.seen().last().unwrap().path, seen, "{path}");
    }
    let count = api.count();
    // `/shop/metrics` reaches the instance as `/metrics`: not public.
    let response = gateway.get("/shop/metrics").await;
    assert_eq!(response.status(), 404);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
    assert_eq!(api.count(), count, "nothing forwarded");
}

#[tokio::test]
async fn request_and_response_headers_are_set_and_removed() {
    let (gateway, api, chat) = two_pools(vec![
        rule("api", |r| {
            r.path_prefix = "/edited/".into();
            r.request_headers.set.insert("x-env".into(), "prod".into());
            r.request_headers
                .set
                .insert("host".into(), "internal.example".into());
            r.request_headers.remove.push("x-debug".into());
            r.response_headers
                .set
                .insert("cache-control".into(), "no-store".into());
            r.response_headers.remove.push("x-strata-instance".into());
        }),
        default_routes()[0].clone(),
        RouteRule::new("/", "api"),
    ])
    .await;
    let response = gateway
        .client
        .get(gateway.url("/edited/a"))
        .header("x-env", "dev")
        .header("x-debug", "1")
        .header("x-kept", "2")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert!(!response.headers().contains_key("x-strata-instance"));
    assert!(response.headers().contains_key("x-request-id"));
    let seen = &api.seen()[0];
    assert_eq!(seen.path, "/edited/a");
    assert_eq!(seen.headers["x-env"], "prod");
    assert_eq!(seen.headers.get_all("x-env").iter().count(), 1);
    assert_eq!(seen.headers["host"], "internal.example");
    assert_eq!(seen.headers["x-kept"], "2");
    assert!(!seen.headers.contains_key("x-debug"));

    // Other rules change nothing.
    let response = gateway
        .client
        .get(gateway.url("/api/v1/chat/presence"))
        .header("x-debug", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-strata-instance"], "chat-1");
    assert!(!response.headers().contains_key("cache-control"));
    assert_eq!(chat.seen()[0].headers["x-debug"], "1");
}

#[tokio::test]
async fn a_request_no_rule_matches_gets_404_json_and_reaches_nobody() {
    let (gateway, api, chat) = two_pools(vec![rule("api", |r| {
        r.host = "shop.example".into();
    })])
    .await;
    assert_eq!(
        exchange(&gateway, "GET / HTTP/1.1\r\nhost: shop.example").await,
        (200, "api-1".into())
    );
    let response = gateway.get("/anything").await;
    assert_eq!(response.status(), 404);
    assert!(response.headers().contains_key("x-request-id"));
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "no_route");
    assert_eq!((api.count(), chat.count()), (1, 0));
    // A malformed head is still answered 400 before routing matters.
    let (status, _) = exchange(&gateway, "GET / HTTP/1.1\r\nhost: a b").await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn bad_rules_are_refused_together_at_build_and_reload_keeps_the_old_ones() {
    let api = Backend::start("api-1").await;
    let mut bad = config(&[("api", vec![api.url()])]);
    bad.routes = vec![
        RouteRule::new("/", "api"),
        rule("db", |r| {
            r.path_prefix = "/x/".into();
            r.request_headers.set.insert("bad name".into(), "1".into());
        }),
    ];
    let problems = match strata_gateway::Gateway::build(&bad).await {
        Err(GatewayError::Config { problems }) => problems,
        other => panic!("built: {:?}", other.map(|_| ())),
    };
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(
        problems
            .iter()
            .all(|p| p.starts_with("gateway.routes[1]: "))
    );
    assert!(problems.iter().any(|p| p.contains("can never match")));
    bad.routes.clear();
    assert!(strata_gateway::Gateway::build(&bad).await.is_err());

    let mut good = config(&[("api", vec![api.url()])]);
    let gateway = spawn_gateway(good.clone()).await;
    assert_eq!(gateway.get("/api/v1/chat/presence").await.status(), 503);
    // A reload with bad rules changes nothing…
    let mut broken = good.clone();
    broken.routes = vec![RouteRule::new("/", "nowhere")];
    assert!(gateway.handle.reload(&broken).is_err());
    assert_eq!(gateway.get("/api/v1/chat/presence").await.status(), 503);
    // …and one with good rules applies at once.
    good.routes = vec![rule("api", |r| r.strip_prefix = false)];
    gateway.handle.reload(&good).unwrap();
    let response = gateway.get("/api/v1/chat/presence").await;
    assert_eq!(response.status(), 200);
    assert_eq!(api.seen().last().unwrap().path, "/api/v1/chat/presence");
}
