//! Balancing algorithms through the proxy: weights, room affinity, sticky cookies.

use std::collections::HashMap;

use strata_gateway::config::Algorithm;

use crate::helpers::{config, spawn_gateway};
use crate::nodes::{Node, instance_view, served_by};

#[tokio::test]
async fn weighted_round_robin_with_weights_5_1_1_serves_5_1_1() {
    let nodes = [
        Node::start("a").await,
        Node::start("b").await,
        Node::start("c").await,
    ];
    let mut config = config(&[(
        "api",
        vec![
            nodes[0].url_with("weight=5"),
            nodes[1].url(),
            nodes[2].url(),
        ],
    )]);
    config.api.algorithm = Algorithm::WeightedRoundRobin;
    let gateway = spawn_gateway(config).await;

    let mut order = String::new();
    for _ in 0..70 {
        let response = gateway.get("/api/v1/products").await;
        assert_eq!(response.status(), 200);
        order.push_str(&served_by(&response));
    }
    // nginx's smooth sequence, ten times over.
    assert_eq!(order, "aabacaa".repeat(10));
    assert_eq!(
        nodes.iter().map(Node::traffic).collect::<Vec<_>>(),
        [50, 10, 10]
    );

    let (_, pools) = gateway.admin_json("/admin/pools").await;
    assert_eq!(pools["pools"][0]["algorithm"], "weighted_round_robin");
    let a = instance_view(&gateway, nodes[0].addr).await;
    assert_eq!(
        (a["weight"].as_u64(), a["effective_weight"].as_u64()),
        (Some(5), Some(5))
    );
    assert_eq!(a["health"], "up");
    assert_eq!(a["requests_served"], 50);
}

#[tokio::test]
async fn consistent_hash_on_the_room_sends_each_room_to_one_instance_on_every_gateway() {
    let nodes = [
        Node::start("chat-1").await,
        Node::start("chat-2").await,
        Node::start("chat-3").await,
    ];
    let urls: Vec<String> = nodes.iter().map(Node::url).collect();
    // The chat pool's default: consistent hash on `query:room`.
    let first = spawn_gateway(config(&[("chat", urls.clone())])).await;
    let second = spawn_gateway(config(&[("chat", urls)])).await;

    let mut owner: HashMap<u32, String> = HashMap::new();
    for round in 0..4 {
        for room in 0..30u32 {
            let gateway = if round % 2 == 0 { &first } else { &second };
            let path = format!("/api/v1/chat/ws?user={round}&room={room}");
            let response = gateway.get(&path).await;
            assert_eq!(response.status(), 200);
            let instance = served_by(&response);
            let known = owner.entry(room).or_insert_with(|| instance.clone());
            assert_eq!(*known, instance, "room {room} moved on round {round}");
        }
    }
    // All requests come from one client IP: rooms spread only because the room is the key.
    let used: std::collections::HashSet<&String> = owner.values().collect();
    assert_eq!(used.len(), 3, "{owner:?}");
    let (_, pools) = first.admin_json("/admin/pools").await;
    assert_eq!(pools["pools"][0]["algorithm"], "consistent_hash");
}

#[tokio::test]
async fn sticky_cookie_is_set_then_honoured_then_rewritten_when_its_instance_dies() {
    let mut nodes = [
        Node::start("a").await,
        Node::start("b").await,
        Node::start("c").await,
    ];
    let mut config = config(&[("api", nodes.iter().map(Node::url).collect())]);
    config.api.algorithm = Algorithm::Sticky;
    let gateway = spawn_gateway(config).await;

    // Without a cookie, least connections spreads an idle pool over every instance, and each
    // response pins its client.
    let mut first_seen = Vec::new();
    for _ in 0..3 {
        let response = gateway.get("/").await;
        assert!(
            response.headers()["set-cookie"]
                .to_str()
                .unwrap()
                .starts_with("strata_affinity=")
        );
        first_seen.push(served_by(&response));
    }
    first_seen.sort();
    assert_eq!(first_seen, ["a", "b", "c"]);

    let response = gateway.get("/").await;
    let pinned = served_by(&response);
    let cookie = cookie_pair(&response);
    let pinned_view = instance_view(&gateway, nodes[index_of(&pinned)].addr).await;
    assert_eq!(
        cookie,
        format!("strata_affinity={}", pinned_view["id"].as_str().unwrap())
    );
    for _ in 0..12 {
        let response = with_cookie(&gateway, &cookie).await;
        assert_eq!(served_by(&response), pinned);
        assert!(
            response.headers().get("set-cookie").is_none(),
            "a valid cookie is not rewritten"
        );
    }

    nodes[index_of(&pinned)].kill().await;
    let response = with_cookie(&gateway, &cookie).await;
    assert_eq!(response.status(), 200);
    let moved = served_by(&response);
    assert_ne!(moved, pinned);
    let rewritten = cookie_pair(&response);
    assert_ne!(rewritten, cookie);
    for _ in 0..5 {
        assert_eq!(served_by(&with_cookie(&gateway, &rewritten).await), moved);
    }
}

fn index_of(name: &str) -> usize {
    usize::from(name.as_bytes()[0] - b'a')
}

/// `name=value` of the response's `Set-Cookie`.
fn cookie_pair(response: &reqwest::Response) -> String {
    let set = response.headers()["set-cookie"].to_str().unwrap();
    set.split(';').next().unwrap().to_owned()
}

async fn with_cookie(gateway: &crate::helpers::TestGateway, cookie: &str) -> reqwest::Response {
    gateway
        .client
        .get(gateway.url("/"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
}
