//! Rate limits per client and the cap on connections per address, through the gateway.

use std::time::{Duration, Instant};

use strata_gateway::config::RateLimitRule;

use crate::helpers::{Backend, config, spawn_gateway};

fn rule(prefix: &str, per_second: f64, burst: u32) -> RateLimitRule {
    RateLimitRule {
        pool: String::new(),
        prefix: prefix.to_owned(),
        key: "header:x-client".parse().unwrap(),
        per_second,
        burst: Some(burst),
    }
}

/// A client sending three times its rate receives its rate (plus its burst) within 5 %;
/// another client, sending at its rate meanwhile, loses nothing; refused requests never reach
/// the instance and say when to come back.
#[tokio::test]
async fn a_client_over_its_limit_gets_its_limit_and_others_are_unaffected() {
    let backend = Backend::start("api-1").await;
    let mut config = config(&[("api", vec![backend.url()])]);
    config.rate_limits = vec![rule("/limited/", 40.0, 10)];
    let gateway = spawn_gateway(config).await;
    let send = |client: &'static str, every: Duration, run: Duration| {
        let (http, url) = (gateway.client.clone(), gateway.url("/limited/x"));
        tokio::spawn(async move {
            let (mut ok, mut refused) = (0u32, 0u32);
            let start = tokio::time::Instant::now();
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            while start.elapsed() < run {
                tick.tick().await;
                let response = http
                    .get(&url)
                    .header("x-client", client)
                    .send()
                    .await
                    .unwrap();
                match response.status().as_u16() {
                    200 => ok += 1,
                    429 => refused += 1,
                    other => panic!("{client}: status {other}"),
                }
            }
            (ok, refused, start.elapsed())
        })
    };
    let run = Duration::from_secs(3);
    // 120 requests/s against a limit of 40; the other client sends 20/s.
    let greedy = send("greedy", Duration::from_micros(8_333), run);
    let polite = send("polite", Duration::from_millis(50), run);
    let (ok, refused, took) = greedy.await.unwrap();
    let (polite_ok, polite_refused, _) = polite.await.unwrap();
    let expected = 10.0 + 40.0 * took.as_secs_f64();
    let ratio = f64::from(ok) / expected;
    eprintln!(
        "rate limit accuracy: {ok} of {} allowed in {took:?}, expected {expected:.0}: {ratio:.3}",
        ok + refused
    );
    assert!(refused > 0, "the greedy client was never refused");
    assert!(
        (0.95..=1.05).contains(&ratio),
        "allowed {ok}, expected {expected:.1}"
    );
    assert_eq!(polite_refused, 0, "the polite client was refused");
    assert!(polite_ok > 0);
    assert_eq!(
        backend.count(),
        (ok + polite_ok) as usize,
        "refusals reached the instance"
    );

    let response = gateway
        .client
        .get(gateway.url("/limited/x"))
        .header("x-client", "greedy")
        .send()
        .await
        .unwrap();
    let refused_now = response.status() == 429;
    if refused_now {
        assert!(response.headers().contains_key("retry-after"));
        assert_eq!(response.headers()["ratelimit-remaining"], "0");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "rate_limited");
    }
    // Paths no rule covers carry no limit headers and are never refused.
    let free = gateway.get("/free").await;
    assert_eq!(free.status(), 200);
    assert!(!free.headers().contains_key("ratelimit-limit"));
}

#[tokio::test]
async fn allowed_responses_say_what_is_left() {
    let backend = Backend::start("api-1").await;
    let mut config = config(&[("api", vec![backend.url()])]);
    config.rate_limits = vec![rule("/", 1.0, 3)];
    let gateway = spawn_gateway(config).await;
    let start = Instant::now();
    let mut remaining = Vec::new();
    for _ in 0..4 {
        let response = gateway.get("/x").await;
        remaining.push((
            response.status().as_u16(),
            response.headers()["ratelimit-limit"]
                .to_str()
                .unwrap()
                .to_owned(),
            response.headers()["ratelimit-remaining"]
                .to_str()
                .unwrap()
                .to_owned(),
        ));
    }
    // Unless the machine stalled for a second, the fourth request found the bucket empty.
    if start.elapsed() < Duration::from_millis(900) {
        let expected: Vec<(u16, String, String)> = [(200, "2"), (200, "1"), (200, "0"), (429, "0")]
            .into_iter()
            .map(|(status, left)| (status, "3".to_owned(), left.to_owned()))
            .collect();
        assert_eq!(remaining, expected);
    }
    // A reload with no rule lifts the limit at once.
    let mut relaxed = crate::helpers::config(&[("api", vec![backend.url()])]);
    relaxed.rate_limits.clear();
    gateway.handle.reload(&relaxed).unwrap();
    for _ in 0..5 {
        assert_eq!(gateway.get("/x").await.status(), 200);
    }
}

#[tokio::test]
async fn one_address_cannot_hold_more_than_its_connections() {
    let backend = Backend::start("api-1").await;
    let mut config = config(&[("api", vec![backend.url()])]);
    config.max_connections_per_ip = 2;
    let gateway = spawn_gateway(config).await;
    // Two clients with one keep-alive connection each hold the address's two slots.
    let one = || {
        reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(1)
            .build()
            .unwrap()
    };
    let (a, b) = (one(), one());
    assert_eq!(a.get(gateway.url("/a")).send().await.unwrap().status(), 200);
    assert_eq!(b.get(gateway.url("/b")).send().await.unwrap().status(), 200);
    let c = one();
    let refused = c.get(gateway.url("/c")).send().await.unwrap();
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["connection"], "close");
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_connections");
    // The held connections keep working; once one closes, a new client gets in.
    assert_eq!(
        a.get(gateway.url("/a2")).send().await.unwrap().status(),
        200
    );
    drop(b);
    crate::helpers::eventually("a slot comes back", || {
        let c = one();
        let url = gateway.url("/c2");
        async move { c.get(url).send().await.unwrap().status() == 200 }
    })
    .await;
}

/// Keyed on `jwt_subject`, each user behind one address has an allowance of its own; a token
/// that does not check (forged, or signed with another secret) and a request without one are
/// counted on the client IP, so making up subjects buys nothing.
#[tokio::test]
async fn users_behind_one_address_each_get_their_own_allowance() {
    use strata_core::auth::{TokenKey, TokenUser, UserRole};

    let backend = Backend::start("api-1").await;
    let mut config = config(&[("api", vec![backend.url()])]);
    let mut by_user = rule("/", 0.1, 2);
    by_user.key = "jwt_subject".parse().unwrap();
    config.rate_limits = vec![by_user];
    let gateway = spawn_gateway(config).await;
    let key = TokenKey::new(&[7; 32], "k1").unwrap();
    gateway.handle.verify_tokens_with(key.clone());
    let token = |key: &TokenKey, id: i64| {
        let user = TokenUser {
            id,
            email: format!("user{id}@example.com"),
            role: UserRole::Customer,
        };
        key.issue(&user, Duration::from_secs(600)).unwrap()
    };
    let (alice, bob) = (token(&key, 1), token(&key, 2));
    let foreign = token(&TokenKey::new(&[8; 32], "k1").unwrap(), 1);
    let status = |bearer: Option<String>, query: Option<String>| {
        let mut url = gateway.url("/x");
        if let Some(token) = query {
            url.push_str(&format!("?token={token}"));
        }
        let mut request = gateway.client.get(url);
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        async move { request.send().await.unwrap().status().as_u16() }
    };
    let mut alice_statuses = Vec::new();
    for _ in 0..3 {
        alice_statuses.push(status(Some(alice.clone()), None).await);
    }
    assert_eq!(alice_statuses, [200, 200, 429], "alice's own allowance");
    // The same user through the WebSocket's query parameter shares the bucket.
    assert_eq!(status(None, Some(alice.clone())).await, 429);
    // Bob, from the same address, is unaffected.
    assert_eq!(status(Some(bob.clone()), None).await, 200);
    assert_eq!(status(None, Some(bob)).await, 200);
    // Alice's subject under another secret is not alice: it counts on the address, as do
    // anonymous requests, and that bucket is the address's own.
    let mut ip_statuses = Vec::new();
    ip_statuses.push(status(Some(foreign), None).await);
    ip_statuses.push(status(None, None).await);
    ip_statuses.push(status(Some(format!("{alice}x")), None).await);
    assert_eq!(ip_statuses, [200, 200, 429], "the address's allowance");
}
