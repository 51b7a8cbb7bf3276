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
