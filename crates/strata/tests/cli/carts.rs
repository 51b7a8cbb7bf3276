//! Local carts (`carts.mode = "local"`) through the binary: every cart change `strata serve
//! api` acknowledged is there after a SIGKILL and a restart, including those acknowledged
//! while writes were still running when the process died; and with several api processes
//! behind `strata serve gateway`, every acknowledged cart follows its owner as instances
//! leave (SIGTERM) and join (added through the admin API).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::{COOKIE, SET_COOKIE};
use serde_json::{Value, json};

use strata_core::testkit::{POSTGRES, require_service};

use crate::harness::{
    Process, START_TIMEOUT, TempDir, free_port, spawn_up_with_env, strata, wait_ready,
    with_search_path,
};

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
        // Without `carts.peers_url` this process holds every cart: it is the only one.
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

/// The gateway's admin token in the cluster test (also the api instances' peers token).
const ADMIN_TOKEN: &str = "carts-cluster-admin-token";
/// Anonymous and signed-in shoppers of the cluster test.
const ANONYMOUS: usize = 24;
const SIGNED_IN: usize = 6;
/// Tries of one request that meets 503 `cart_unavailable` (retryable) before the test fails.
const TRIES: usize = 40;

/// One shopper: the cookies the api set, and a session token when signed in.
#[derive(Clone, Debug, Default)]
struct Shopper {
    cookies: HashMap<String, String>,
    token: Option<String>,
    /// The cart as last acknowledged.
    cart: Vec<(i64, i64)>,
}

impl Shopper {
    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep_cookies(&mut self, response: &reqwest::Response) {
        for set in response.headers().get_all(SET_COOKIE) {
            let Some((name, value)) = set
                .to_str()
                .ok()
                .and_then(|s| s.split(';').next())
                .and_then(|p| p.split_once('='))
            else {
                continue;
            };
            if value.is_empty() {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
    }
}

/// The cluster's processes and addresses.
struct Cluster {
    client: reqwest::Client,
    public: String,
    admin: String,
    database_url: String,
    data: TempDir,
    /// Requests answered 503 `cart_unavailable` and tried again.
    retried: Arc<std::sync::atomic::AtomicUsize>,
}

impl Cluster {
    /// The ids of the catalog's first `n` products, read through the gateway.
    async fn product_ids(&self, n: usize) -> Vec<i64> {
        let catalog: Value = self
            .client
            .get(format!(
                "http://{}/api/v1/products?per_page={n}",
                self.public
            ))
            .send()
            .await
            .expect("products")
            .json()
            .await
            .expect("products JSON");
        catalog["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|p| p["id"].as_i64().expect("id"))
            .collect()
    }

    fn spawn_api(&self, name: &str, port: u16) -> Process {
        let listen = format!("127.0.0.1:{port}");
        let mut command = strata(&[
            "serve",
            "api",
            "--listen",
            &listen,
            "--instance",
            name,
            "--database-url",
            &self.database_url,
        ]);
        command
            .env("STRATA_AUTH_JWT_SECRET", JWT_SECRET)
            .env("STRATA_STORE_DATA_DIR", self.data.path())
            .env("STRATA_CARTS_MODE", "local")
            .env("STRATA_CARTS_PEERS_URL", format!("http://{}", self.admin))
            .env("STRATA_CARTS_PEERS_TOKEN", ADMIN_TOKEN)
            .env("STRATA_CARTS_PEERS_POLL_MS", "200");
        Process::spawn(command)
    }

    async fn admin(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> u16 {
        let mut request = self
            .client
            .request(method, format!("http://{}{path}", self.admin))
            .bearer_auth(ADMIN_TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.expect("admin call").status().as_u16()
    }

    /// The api pool's instances that are up and not draining.
    async fn serving(&self) -> Option<usize> {
        let pools: Value = self
            .client
            .get(format!("http://{}/admin/pools", self.admin))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let api = pools["pools"]
            .as_array()?
            .iter()
            .find(|p| p["name"] == "api")?;
        Some(
            api["instances"]
                .as_array()?
                .iter()
                .filter(|i| i["health"] == "up" && i["draining"] == false)
                .count(),
        )
    }

    async fn wait_serving(&self, n: usize) {
        strata_core::wait::eventually(START_TIMEOUT, "api instances serving", || async move {
            (self.serving().await == Some(n)).then_some(())
        })
        .await;
    }

    /// Sends a cart request as `shopper` through the gateway, trying again while it is
    /// answered 503 `cart_unavailable`; any other failure fails the test.
    async fn cart_call(
        &self,
        shopper: &mut Shopper,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Vec<(i64, i64)> {
        for _ in 0..TRIES {
            let mut request = self
                .client
                .request(method.clone(), format!("http://{}{path}", self.public))
                .header(COOKIE, shopper.cookie_header());
            if let Some(token) = &shopper.token {
                request = request.bearer_auth(token);
            }
            if let Some(body) = &body {
                request = request.json(body);
            }
            let response = request.send().await.expect("a cart request");
            let status = response.status().as_u16();
            if status == 503 {
                let body: Value = response.json().await.unwrap_or_default();
                assert_eq!(body["error"]["code"], "cart_unavailable", "{body}");
                self.retried
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            assert_eq!(
                status,
                200,
                "{method} {path}: {}",
                response.text().await.unwrap_or_default()
            );
            shopper.keep_cookies(&response);
            return lines(&response.json().await.expect("cart JSON"));
        }
        panic!("{method} {path} still unavailable after {TRIES} tries");
    }

    /// Adds one unit of `product` to every shopper's cart, all at once, and checks each
    /// acknowledged cart.
    async fn add_everywhere(&self, shoppers: &mut [Shopper], product: i64) {
        let calls = shoppers.iter_mut().map(|shopper| async move {
            let cart = self
                .cart_call(
                    shopper,
                    reqwest::Method::POST,
                    "/api/v1/cart/items",
                    Some(json!({"product_id": product, "quantity": 1})),
                )
                .await;
            let mut expected = shopper.cart.clone();
            match expected.iter_mut().find(|(p, _)| *p == product) {
                Some(line) => line.1 += 1,
                None => expected.push((product, 1)),
            }
            assert_eq!(cart, expected, "{shopper:?}");
            shopper.cart = cart;
        });
        futures_util::future::join_all(calls).await;
    }

    /// Reads a shopper's cart once: its lines, or the status of a failed answer (with its
    /// error code).
    async fn try_read(&self, shopper: &Shopper) -> Result<Vec<(i64, i64)>, (u16, String)> {
        let mut request = self
            .client
            .get(format!("http://{}/api/v1/cart", self.public))
            .header(COOKIE, shopper.cookie_header());
        if let Some(token) = &shopper.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("a cart request");
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or_default();
        if status == 200 {
            Ok(lines(&body))
        } else {
            Err((
                status,
                body["error"]["code"].as_str().unwrap_or("").to_owned(),
            ))
        }
    }

    /// Reads every shopper's cart: each must be exactly as last acknowledged.
    async fn check_everyone(&self, shoppers: &mut [Shopper], step: &str) {
        for shopper in shoppers.iter_mut() {
            let expected = shopper.cart.clone();
            let cart = self
                .cart_call(shopper, reqwest::Method::GET, "/api/v1/cart", None)
                .await;
            assert_eq!(cart, expected, "{step}: {shopper:?}");
        }
    }

    /// `strata_api_carts_handed_over_total{direction}` of the instance at `port`.
    async fn handed_over(&self, port: u16, direction: &str) -> u64 {
        let text = self
            .client
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text");
        let wanted = format!("strata_api_carts_handed_over_total{{direction=\"{direction}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&wanted))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map_or(0, |v| v as u64)
    }
}

/// Three api processes in local cart mode behind `strata serve gateway` (consistent hash on
/// `strata_cart_owner`, bounded load off): shoppers' carts, anonymous and signed in, stay
/// whole as one instance leaves on SIGTERM (3 → 2) and a fresh one joins (2 → 3). Requests
/// may meet 503 `cart_unavailable` while a cart is on its way and are tried again; no other
/// failure is accepted. Then an owner is killed: its carts answer 503 `cart_unavailable`
/// (never empty) until it is back, with every cart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn carts_follow_their_owner_as_instances_leave_and_join() {
    let Some(base) = require_service(POSTGRES) else {
        return;
    };
    let (store, schema) = strata_store::testing::fresh_postgres(&base).await.unwrap();
    store.close().await.unwrap();
    let cluster = Cluster {
        client: reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client"),
        public: format!("127.0.0.1:{}", free_port()),
        admin: format!("127.0.0.1:{}", free_port()),
        database_url: with_search_path(&base, schema.schema()),
        data: TempDir::new("carts-cluster"),
        retried: Arc::default(),
    };
    let ports = [free_port(), free_port(), free_port()];
    let mut apis: Vec<Process> = ports
        .iter()
        .enumerate()
        .map(|(i, port)| cluster.spawn_api(&format!("api-{}", i + 1), *port))
        .collect();
    let upstream = format!(
        "api={}",
        ports
            .iter()
            .map(|p| format!("http://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let mut gateway = strata(&[
        "serve",
        "gateway",
        "--listen",
        &cluster.public,
        "--admin-listen",
        &cluster.admin,
        "--upstream",
        &upstream,
    ]);
    gateway
        .env("STRATA_GATEWAY_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("STRATA_GATEWAY_API_ALGORITHM", "consistent_hash")
        .env("STRATA_GATEWAY_API_HASH_KEY", "cookie:strata_cart_owner")
        .env("STRATA_GATEWAY_API_BALANCE_FACTOR", "0");
    let _gateway = Process::spawn(gateway);
    for port in ports {
        wait_ready(
            &cluster.client,
            &format!("http://127.0.0.1:{port}/readyz"),
            START_TIMEOUT,
        )
        .await;
    }
    cluster.wait_serving(3).await;

    let mut shoppers = vec![Shopper::default(); ANONYMOUS + SIGNED_IN];
    for (i, shopper) in shoppers.iter_mut().skip(ANONYMOUS).enumerate() {
        let email = format!("cluster-{i}@example.com");
        let registered = cluster
            .client
            .post(format!("http://{}/api/v1/users", cluster.public))
            .json(
                &json!({"email": email, "password": "correct horse battery", "display_name": "c"}),
            )
            .send()
            .await
            .expect("register");
        assert_eq!(registered.status(), 201);
        let session: Value = cluster
            .client
            .post(format!("http://{}/api/v1/sessions", cluster.public))
            .json(&json!({"email": email, "password": "correct horse battery"}))
            .send()
            .await
            .expect("log in")
            .json()
            .await
            .expect("a session");
        shopper.token = Some(session["token"].as_str().expect("token").to_owned());
    }

    // Products of the catalog (the processes seeded it together: ids may have gaps).
    let products = cluster.product_ids(10).await;
    assert!(products.len() >= 7, "{products:?}");
    for &product in &products[..3] {
        cluster.add_everywhere(&mut shoppers, product).await;
    }
    cluster.check_everyone(&mut shoppers, "3 instances").await;

    // 3 → 2: the third instance leaves on SIGTERM, handing its carts over, while shoppers
    // go on writing.
    let leaving = apis.pop().expect("a third instance");
    leaving.terminate();
    cluster.add_everywhere(&mut shoppers, products[3]).await;
    let mut leaving = leaving;
    let status = leaving
        .wait_exit(Duration::from_secs(40))
        .await
        .expect("the leaving instance exits");
    assert!(status.success(), "{status}\n{}", leaving.stderr());
    let mut taken_over = 0;
    for port in &ports[..2] {
        taken_over += cluster.handed_over(*port, "received").await;
    }
    assert!(
        taken_over > 0,
        "the leaving instance's carts were handed over"
    );
    assert_eq!(
        cluster
            .admin(
                reqwest::Method::DELETE,
                &format!("/admin/pools/api/instances/127.0.0.1:{}", ports[2]),
                None,
            )
            .await,
        202
    );
    cluster.check_everyone(&mut shoppers, "after 3 → 2").await;
    cluster.add_everywhere(&mut shoppers, products[4]).await;
    cluster.check_everyone(&mut shoppers, "writing on 2").await;

    // 2 → 3: a fresh process joins through the admin API and takes over its share.
    let joining = free_port();
    apis.push(cluster.spawn_api("api-4", joining));
    wait_ready(
        &cluster.client,
        &format!("http://127.0.0.1:{joining}/readyz"),
        START_TIMEOUT,
    )
    .await;
    assert_eq!(
        cluster
            .admin(
                reqwest::Method::POST,
                "/admin/pools/api/instances",
                Some(json!({"url": format!("http://127.0.0.1:{joining}")})),
            )
            .await,
        201
    );
    cluster.add_everywhere(&mut shoppers, products[5]).await;
    cluster.wait_serving(3).await;
    cluster.check_everyone(&mut shoppers, "after 2 → 3").await;
    cluster.add_everywhere(&mut shoppers, products[6]).await;
    cluster.check_everyone(&mut shoppers, "writing on 3").await;

    // An owner killed (-9): its carts answer 503 `cart_unavailable`, never an empty cart
    // from another instance; back on its address, it serves them from its log.
    let mut killed = apis.pop().expect("the joined instance");
    let received_before_kill = cluster.handed_over(joining, "received").await;
    killed.kill();
    killed
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("killed");
    let mut unavailable = 0;
    for shopper in &shoppers {
        match cluster.try_read(shopper).await {
            Ok(cart) => assert_eq!(cart, shopper.cart, "with an owner down: {shopper:?}"),
            Err((503, code)) if code == "cart_unavailable" => unavailable += 1,
            Err(other) => panic!("with an owner down: {other:?} for {shopper:?}"),
        }
    }
    assert!(unavailable > 0, "the killed instance owned some carts");
    apis.push(cluster.spawn_api("api-4", joining));
    wait_ready(
        &cluster.client,
        &format!("http://127.0.0.1:{joining}/readyz"),
        START_TIMEOUT,
    )
    .await;
    cluster.wait_serving(3).await;
    cluster
        .check_everyone(&mut shoppers, "after the owner's restart")
        .await;
    eprintln!("carts unavailable while their owner was down: {unavailable}");

    let received = received_before_kill;
    assert!(
        received > 0,
        "the new instance took over carts from the others"
    );
    let sent: u64 = {
        let mut total = 0;
        for port in &ports[..2] {
            total += cluster.handed_over(*port, "sent").await;
        }
        total
    };
    assert!(sent >= received, "sent {sent}, received {received}");
    eprintln!(
        "cart requests tried again after 503 cart_unavailable: {}",
        cluster.retried.load(std::sync::atomic::Ordering::Relaxed)
    );
    for api in &apis {
        api.terminate();
    }
    for api in &mut apis {
        api.wait_exit(Duration::from_secs(40)).await;
    }
    drop(apis);
    drop(schema);
}

/// `strata up` with local carts runs its three api instances as one cluster: it points them
/// at its own gateway and pins the api pool to the cart owner cookie. Every cart lives on
/// exactly one instance, and an instance stopped through the admin API hands its carts over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strata_up_shares_local_carts_among_its_api_instances() {
    let up = spawn_up_with_env(&[], &[("STRATA_CARTS_MODE", "local")]).await;
    let cluster = Cluster {
        client: reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client"),
        public: up.public.to_string(),
        admin: up.admin.to_string(),
        database_url: String::new(),
        data: TempDir::new("carts-up"),
        retried: Arc::default(),
    };
    let pools: Value = cluster
        .client
        .get(format!("http://{}/admin/pools", cluster.admin))
        .send()
        .await
        .expect("pools")
        .json()
        .await
        .expect("pools JSON");
    let api = pools["pools"]
        .as_array()
        .expect("pools")
        .iter()
        .find(|p| p["name"] == "api")
        .expect("api pool");
    assert_eq!(api["algorithm"], "consistent_hash", "{api}");
    let apis = up.instances("api");
    assert_eq!(apis.len(), 3);

    let products = cluster.product_ids(3).await;
    let mut shoppers = vec![Shopper::default(); 18];
    for &product in &products {
        cluster.add_everywhere(&mut shoppers, product).await;
    }
    let held = |port: u16| {
        let client = cluster.client.clone();
        async move {
            let text = client
                .get(format!("http://127.0.0.1:{port}/metrics"))
                .send()
                .await
                .expect("metrics")
                .text()
                .await
                .expect("metrics text");
            text.lines()
                .find_map(|l| l.strip_prefix("strata_api_carts_held "))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .map_or(0, |v| v as u64)
        }
    };
    let mut total = 0;
    for row in &apis {
        total += held(row.addr.port()).await;
    }
    assert_eq!(total, 18, "each cart on exactly one instance");

    let stopped = &apis[0];
    assert_eq!(
        cluster
            .admin(
                reqwest::Method::POST,
                &format!("/admin/pools/api/instances/{}/stop", stopped.addr),
                None,
            )
            .await,
        202
    );
    cluster
        .check_everyone(&mut shoppers, "after stopping an instance")
        .await;
    cluster.add_everywhere(&mut shoppers, products[0]).await;
    let mut total = 0;
    for row in &apis[1..] {
        total += held(row.addr.port()).await;
    }
    assert_eq!(total, 18, "the stopped instance's carts were handed over");
}
