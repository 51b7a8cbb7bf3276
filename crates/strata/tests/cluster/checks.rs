//! The invariants every cluster test ends with, whatever fault it injected:
//!
//! - every acknowledged order reaches `shipped` or `payment_failed`, each status once, with one
//!   notification per status, and no order exists that was not acknowledged (a key sent again
//!   made no second order);
//! - stock in the database = initial − the units of shipped orders;
//! - every acknowledged chat message is stored once under its id, rooms' ids are gap-free, and
//!   every member received every message of every room exactly once, in id order.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::docker::Cluster;
use crate::load::{Acknowledged, Fixture, Shop, history};

/// What the checks found, for the test's report.
#[derive(Debug, Default)]
pub struct Verdict {
    pub orders: usize,
    pub shipped: usize,
    pub payment_failed: usize,
    pub messages: usize,
    pub deliveries: usize,
    /// From the end of the load until every order was final.
    pub settle_ms: u64,
}

/// Checks every invariant; panics with what broke.
pub async fn check(
    cluster: &Cluster,
    shop: &Shop,
    fixture: &Fixture,
    acknowledged: &Acknowledged,
) -> Verdict {
    let mut verdict = Verdict::default();
    check_orders(shop, fixture, acknowledged, &mut verdict).await;
    check_stock(cluster, fixture, acknowledged, shop).await;
    check_chat(shop, fixture, acknowledged, &mut verdict).await;
    verdict
}

async fn check_orders(
    shop: &Shop,
    fixture: &Fixture,
    acknowledged: &Acknowledged,
    verdict: &mut Verdict,
) {
    let started = Instant::now();
    for customer in &fixture.customers {
        let token = Some(customer.token.as_str());
        let acked: BTreeSet<i64> = acknowledged.orders[&customer.id].iter().copied().collect();
        assert_eq!(
            acked.len(),
            acknowledged.orders[&customer.id].len(),
            "customer {}: one order acknowledged twice",
            customer.id
        );
        let listed: BTreeSet<i64> = pages(shop, "/api/v1/orders", token)
            .await
            .iter()
            .map(|o| o["id"].as_i64().unwrap())
            .collect();
        assert_eq!(
            listed, acked,
            "customer {}: the orders in the store are not the acknowledged ones",
            customer.id
        );
        for id in &acked {
            let order = final_order(shop, token, *id).await;
            let statuses: Vec<&str> = order["history"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["status"].as_str().unwrap())
                .collect();
            let unique: BTreeSet<&str> = statuses.iter().copied().collect();
            assert_eq!(unique.len(), statuses.len(), "order {id}: {statuses:?}");
            match order["status"].as_str().unwrap() {
                "shipped" => verdict.shipped += 1,
                _ => verdict.payment_failed += 1,
            }
        }
        verdict.orders += acked.len();
        // One notification per status change of each order, none twice. The notifications
        // handler consumes the same events as the others, at its own pace (after a store
        // outage, at its retry backoff): looked at until they match, two minutes at most.
        let mut expected: BTreeMap<i64, Vec<String>> = BTreeMap::new();
        for id in &acked {
            let order = final_order(shop, token, *id).await;
            let mut statuses: Vec<String> = order["history"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["status"].as_str().unwrap().to_owned())
                .collect();
            statuses.sort();
            expected.insert(*id, statuses);
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let mut notified: BTreeMap<i64, Vec<String>> = BTreeMap::new();
            for n in pages(shop, "/api/v1/notifications", token).await {
                notified
                    .entry(n["order_id"].as_i64().unwrap())
                    .or_default()
                    .push(n["kind"].as_str().unwrap().to_owned());
            }
            notified.values_mut().for_each(|kinds| kinds.sort());
            if notified == expected {
                break;
            }
            // More than expected is final (a notification never goes away): fail at once.
            let extra = notified.iter().any(|(id, kinds)| {
                expected
                    .get(id)
                    .is_none_or(|statuses| kinds.iter().any(|k| !statuses.contains(k)))
                    || kinds.windows(2).any(|pair| pair[0] == pair[1])
            });
            assert!(
                !extra && Instant::now() < deadline,
                "customer {}: notifications {notified:?} against statuses {expected:?}",
                customer.id
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    verdict.settle_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
}

/// Every item of a paged list (`items`, `page`, `per_page`, `total`).
async fn pages(shop: &Shop, path: &str, token: Option<&str>) -> Vec<Value> {
    let mut items = Vec::new();
    for page in 1.. {
        let answer = shop
            .expect(
                reqwest::Method::GET,
                &format!("{path}?page={page}&per_page=100"),
                token,
                None,
            )
            .await;
        let batch = answer["items"].as_array().unwrap();
        items.extend(batch.iter().cloned());
        if batch.is_empty() || items.len() as i64 >= answer["total"].as_i64().unwrap() {
            return items;
        }
    }
    unreachable!()
}

/// The order once it is `shipped` or `payment_failed` (waits up to two minutes).
async fn final_order(shop: &Shop, token: Option<&str>, id: i64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let order = shop
            .expect(
                reqwest::Method::GET,
                &format!("/api/v1/orders/{id}"),
                token,
                None,
            )
            .await;
        if matches!(order["status"].as_str(), Some("shipped" | "payment_failed")) {
            return order;
        }
        assert!(
            Instant::now() < deadline,
            "order {id} never became final: {order}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Stock in the database of record = initial − units of shipped orders (declined orders gave
/// theirs back).
async fn check_stock(
    cluster: &Cluster,
    fixture: &Fixture,
    acknowledged: &Acknowledged,
    shop: &Shop,
) {
    let mut shipped_units = 0;
    for customer in &fixture.customers {
        for id in &acknowledged.orders[&customer.id] {
            let order = final_order(shop, Some(&customer.token), *id).await;
            if order["status"] == "shipped" {
                shipped_units += order["lines"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|l| l["product_id"] == fixture.product)
                    .map(|l| l["quantity"].as_i64().unwrap())
                    .sum::<i64>();
            }
        }
    }
    let stock: i64 = cluster
        .sql(&format!(
            "SELECT stock FROM products WHERE id = {}",
            fixture.product
        ))
        .parse()
        .unwrap();
    assert_eq!(
        stock,
        fixture.initial_stock - shipped_units,
        "stock against {} shipped units",
        shipped_units
    );
}

async fn check_chat(
    shop: &Shop,
    fixture: &Fixture,
    acknowledged: &Acknowledged,
    verdict: &mut Verdict,
) {
    let mut stored = BTreeMap::new();
    for room in &fixture.rooms {
        let messages = history(shop, &fixture.admin_token, room).await;
        for (i, (id, _)) in messages.iter().enumerate() {
            assert_eq!(*id, i as i64 + 1, "{room}: ids not gap-free from 1");
        }
        let client_ids: BTreeSet<&String> = messages.iter().map(|m| &m.1).collect();
        assert_eq!(
            client_ids.len(),
            messages.len(),
            "{room}: a message stored twice"
        );
        stored.insert(room.clone(), messages);
    }
    for (room, client_id, id) in &acknowledged.messages {
        let found = stored[room].iter().find(|m| &m.1 == client_id);
        assert_eq!(
            found.map(|m| m.0),
            Some(*id),
            "{room}: acknowledged message {client_id} (id {id}) not stored under its id"
        );
    }
    for (member, received) in acknowledged.received.iter().enumerate() {
        for (room, messages) in received {
            assert_eq!(
                messages, &stored[room],
                "member {member} in {room}: received against stored (each once, in order)"
            );
            verdict.deliveries += messages.len();
        }
    }
    verdict.messages = acknowledged.messages.len();
}
