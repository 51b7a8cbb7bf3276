//! Local carts (`carts.mode = "local"`) through the binary: every cart change `strata serve
//! api` acknowledged is there after a SIGKILL and a restart, including those acknowledged
//! while writes were still running when the process died.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::{COOKIE, SET_COOKIE};
use serde_json::{Value, json};

use crate::harness::{Process, START_TIMEOUT, TempDir, free_port, strata, wait_ready};

/// The signing secret of the test's api process.
const JWT_SECRET: &str = "carts-test-secret-0123456789abcdef";
/// Carts written before the kill, each by its own client.
const CARTS: usize = 16;

/// Each writer's cart (by its cookie) as last acknowledged: `(product id, quantity)` lines.
type Acknowledged = Arc<Mutex<HashMap<String, Vec<(i64, i64)>>>>;

fn spawn_api(data: &TempDir, listen: &str) -> Process {
    let mut command = strata(&[
        "serve",
        "api",
        "--listen",
        listen,
        "--instance",
        "api-carts",
    ]);
    command
        .env("STRATA_AUTH_JWT_SECRET", JWT_SECRET)
        .env("STRATA_STORE_DATA_DIR", data.path())
        .env("STRATA_CARTS_MODE", "local")
        // Local carts are refused beside other api instances (nothing routes a cart to its
        // holder yet): this process is the only one.
        .env("STRATA_API_INSTANCES", "1");
    Process::spawn(command)
}

/// The (product, quantity) lines of a cart body.
fn lines(cart: &Value) -> Vec<(i64, i64)> {
    cart["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|l| {
            (
                l["product_id"].as_i64().expect("id"),
                l["quantity"].as_i64().expect("quantity"),
            )
        })
        .collect()
}

/// Adds one unit of `product` to the cart of `cookie` (none: a new cart); returns the cookie
/// and the cart as acknowledged, or `None` when the request failed.
async fn add(
    client: &reqwest::Client,
    base: &str,
    cookie: Option<&str>,
    product: i64,
) -> Option<(String, Vec<(i64, i64)>)> {
    let mut request = client
        .post(format!("{base}/api/v1/cart/items"))
        .json(&json!({"product_id": product, "quantity": 1}));
    if let Some(cookie) = cookie {
        request = request.header(COOKIE, cookie);
    }
    let response = request.send().await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    let cookie = match response.headers().get(SET_COOKIE) {
        Some(set) => set.to_str().ok()?.split(';').next()?.to_owned(),
        None => cookie?.to_owned(),
    };
    let cart: Value = response.json().await.ok()?;
    Some((cookie, lines(&cart)))
}

async fn read(client: &reqwest::Client, base: &str, cookie: &str) -> Vec<(i64, i64)> {
    let response = client
        .get(format!("{base}/api/v1/cart"))
        .header(COOKIE, cookie)
        .send()
        .await
        .expect("GET /api/v1/cart");
    assert!(response.status().is_success(), "{}", response.status());
    lines(&response.json().await.expect("cart JSON"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_cart_changes_survive_kill_9() {
    let data = TempDir::new("carts");
    let listen = format!("127.0.0.1:{}", free_port());
    let base = format!("http://{listen}");
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");

    let mut api = spawn_api(&data, &listen);
    wait_ready(&client, &format!("{base}/readyz"), START_TIMEOUT).await;

    // Carts written and settled before the kill: three products, a changed and a removed line.
    let mut settled = HashMap::new();
    let writers = (0..CARTS).map(|_| {
        let (client, base) = (client.clone(), base.clone());
        tokio::spawn(async move {
            let (cookie, _) = add(&client, &base, None, 1).await.expect("first add");
            add(&client, &base, Some(&cookie), 2).await.expect("add");
            add(&client, &base, Some(&cookie), 2).await.expect("add");
            let (_, cart) = add(&client, &base, Some(&cookie), 3).await.expect("add");
            (cookie, cart)
        })
    });
    for writer in writers.collect::<Vec<_>>() {
        let (cookie, cart) = writer.await.expect("writer");
        assert_eq!(cart, [(1, 1), (2, 2), (3, 1)]);
        settled.insert(cookie, cart);
    }
    let (cookie, _) = settled.iter().next().expect("a cart");
    let cookie = cookie.clone();
    let response = client
        .patch(format!("{base}/api/v1/cart/items/2"))
        .header(COOKIE, &cookie)
        .json(&json!({"quantity": 7}))
        .send()
        .await
        .expect("PATCH");
    assert!(response.status().is_success());
    let response = client
        .delete(format!("{base}/api/v1/cart/items/3"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .expect("DELETE");
    assert!(response.status().is_success());
    settled.insert(cookie, vec![(1, 1), (2, 7)]);

    // Writers still running when the process dies: each remembers its last acknowledged cart.
    let acknowledged: Acknowledged = Arc::default();
    let mut running = Vec::new();
    for _ in 0..4 {
        let (client, base, acknowledged) = (client.clone(), base.clone(), acknowledged.clone());
        running.push(tokio::spawn(async move {
            let Some((cookie, cart)) = add(&client, &base, None, 4).await else {
                return;
            };
            acknowledged
                .lock()
                .expect("lock")
                .insert(cookie.clone(), cart);
            // Up to 99 units of one product; the kill comes long before.
            while let Some((_, cart)) = add(&client, &base, Some(&cookie), 4).await {
                acknowledged
                    .lock()
                    .expect("lock")
                    .insert(cookie.clone(), cart);
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    api.kill();
    api.wait_exit(Duration::from_secs(10))
        .await
        .expect("killed");
    for writer in running {
        writer.await.expect("writer");
    }
    let acknowledged = acknowledged.lock().expect("lock").clone();
    assert!(
        acknowledged.values().any(|cart| cart[0].1 > 1),
        "the writers made changes before the kill: {acknowledged:?}"
    );

    let api = spawn_api(&data, &listen);
    wait_ready(&client, &format!("{base}/readyz"), START_TIMEOUT).await;
    for (cookie, cart) in &settled {
        assert_eq!(&read(&client, &base, cookie).await, cart, "{cookie}");
    }
    for (cookie, cart) in &acknowledged {
        let after = read(&client, &base, cookie).await;
        // The acknowledged units, plus at most the one add in flight at the kill.
        let (acked, now) = (cart[0].1, after[0].1);
        assert!(
            after.len() == 1 && (now == acked || now == acked + 1),
            "{cookie}: acknowledged {cart:?}, after restart {after:?}"
        );
    }
    assert!(
        api.stderr().contains("local carts loaded") || api.stdout().contains("local carts loaded"),
        "the start-up logs the carts it loaded:\n{}",
        api.stderr()
    );
}
