//! The shop mix: customers who register, log in and keep carts, and the requests of a shop's
//! day in fixed proportions.
//!
//! Before the clock starts, [`Shop::prepare`] learns the catalog's product ids and registers
//! and logs in `users` customers with unique emails (their requests are reported as the run's
//! setup). Then request `n` is operation `MIX[n % 32]` (a smooth weighted round robin of the
//! weights below, so every stretch of 32 requests holds the whole mix) by a customer and on a
//! product chosen by a hash of `n`. A checkout needs a cart: a customer whose cart this run
//! has not filled adds to it instead (counted as an add to cart).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio::task::JoinSet;

use crate::conn::{Answer, Conn, Wire, serialize};
use crate::workload::{Call, Workload, mix64, run_id};
use crate::{Failure, LabError};

/// The operations and their weights (out of 32).
const WEIGHTS: [(Op, u32); 8] = [
    (Op::Browse, 10),
    (Op::Product, 10),
    (Op::Search, 3),
    (Op::ViewCart, 3),
    (Op::AddToCart, 2),
    (Op::Quote, 2),
    (Op::Home, 1),
    (Op::Checkout, 1),
];
/// Sum of the weights: the length of one round of the mix.
const ROUND: usize = 32;
/// Words searched for (any result, none included, is a valid answer).
const SEARCHES: [&str; 6] = ["lamp", "tea", "cook", "mug", "desk", "book"];
/// Customers registered at once during the setup (each costs the server an argon2 hash).
const SETUP_PARALLELISM: usize = 8;

/// One operation of the mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Browse,
    Product,
    Search,
    ViewCart,
    AddToCart,
    Quote,
    Home,
    Checkout,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Browse => "browse",
            Op::Product => "product",
            Op::Search => "search",
            Op::ViewCart => "view_cart",
            Op::AddToCart => "add_to_cart",
            Op::Quote => "quote",
            Op::Home => "home",
            Op::Checkout => "checkout",
        }
    }

    fn index(self) -> usize {
        WEIGHTS.iter().position(|(op, _)| *op == self).unwrap_or(0)
    }
}

/// The weights spread over one round by smooth weighted round robin (as nginx balances):
/// the heavy operations interleave with the light ones instead of coming in runs.
fn mix() -> [Op; ROUND] {
    let mut current = [0i64; WEIGHTS.len()];
    let total: i64 = WEIGHTS.iter().map(|(_, w)| i64::from(*w)).sum();
    let mut out = [Op::Browse; ROUND];
    for slot in &mut out {
        for (c, (_, w)) in current.iter_mut().zip(WEIGHTS) {
            *c += i64::from(w);
        }
        let (best, _) = current
            .iter()
            .enumerate()
            .max_by_key(|(i, c)| (**c, std::cmp::Reverse(*i)))
            .unwrap_or((0, &0));
        current[best] -= total;
        *slot = WEIGHTS[best].0;
    }
    out
}

/// A registered, logged-in customer.
struct User {
    /// `Bearer …`, the value of the `Authorization` header.
    authorization: String,
    /// Adds to cart acknowledged since the last checkout that certainly are in the cart
    /// when the next checkout is sent (see [`Shop::answered`]).
    cart: AtomicU32,
    /// Checkouts sent so far.
    checkouts: AtomicU64,
    /// Whether a checkout is sent and not answered yet.
    checking_out: AtomicBool,
}

impl User {
    fn new(authorization: String) -> Self {
        Self {
            authorization,
            cart: AtomicU32::new(0),
            checkouts: AtomicU64::new(0),
            checking_out: AtomicBool::new(false),
        }
    }
}

/// The tag of an add to cart that must not be counted (a checkout was in flight when it was
/// sent, so that checkout may take it).
const UNCOUNTED: u64 = u64::MAX;

/// What the setup did: per request kind (`catalog`, `register`, `login`), the statuses and
/// latencies, for the report.
pub(crate) type SetupLog = Vec<(&'static str, Result<u16, Failure>, Duration)>;

/// The shop mix, ready to run.
pub(crate) struct Shop {
    host: String,
    operations: Vec<String>,
    mix: [Op; ROUND],
    products: Vec<i64>,
    users: Vec<User>,
    /// Makes this run's idempotency keys unique across runs.
    run_id: String,
}

impl Shop {
    /// Learns the product ids and registers and logs in `users` customers.
    ///
    /// # Errors
    /// [`LabError::Setup`] when the catalog cannot be read or a customer cannot register or
    /// log in (the run would measure nothing meaningful).
    pub(crate) async fn prepare(
        addr: SocketAddr,
        host: &str,
        users: usize,
        connect_timeout: Duration,
        request_timeout: Duration,
    ) -> Result<(Shop, SetupLog), LabError> {
        let run_id = run_id();
        let log = Arc::new(Mutex::new(Vec::new()));
        let client = Arc::new(SetupClient {
            addr,
            host: host.to_owned(),
            connect_timeout,
            request_timeout,
            log: Arc::clone(&log),
        });
        let catalog = client
            .request("catalog", "GET", "/api/v1/products?per_page=100", &[], None)
            .await?;
        let products: Vec<i64> = catalog["items"]
            .as_array()
            .map(|items| items.iter().filter_map(|p| p["id"].as_i64()).collect())
            .unwrap_or_default();
        if products.is_empty() {
            return Err(LabError::setup("catalog", "the catalog has no product"));
        }

        let mut tokens = vec![String::new(); users];
        let mut tasks = JoinSet::new();
        let mut next = 0;
        while next < users || !tasks.is_empty() {
            while next < users && tasks.len() < SETUP_PARALLELISM {
                let client = Arc::clone(&client);
                let email = format!("bench-{run_id}-{next}@example.com");
                let n = next;
                tasks.spawn(async move { (n, client.customer(&email, n).await) });
                next += 1;
            }
            if let Some(joined) = tasks.join_next().await {
                let (n, token) = joined?;
                tokens[n] = token?;
            }
        }
        let users = tokens
            .into_iter()
            .map(|token| User::new(format!("Bearer {token}")))
            .collect();
        let log = std::mem::take(&mut *log.lock().await);
        let shop = Shop {
            host: host.to_owned(),
            operations: WEIGHTS.iter().map(|(op, _)| op.name().to_owned()).collect(),
            mix: mix(),
            products,
            users,
            run_id,
        };
        Ok((shop, log))
    }

    fn product(&self, hash: u64) -> i64 {
        let i = usize::try_from(hash % self.products.len() as u64).unwrap_or(0);
        self.products[i]
    }

    /// A product other than `product`, when the catalog has one.
    fn other_product(&self, product: i64, hash: u64) -> Option<i64> {
        let n = self.products.len() as u64;
        (n > 1).then(|| {
            let at = self
                .products
                .iter()
                .position(|p| *p == product)
                .unwrap_or(0) as u64;
            let i = usize::try_from((at + 1 + hash % (n - 1)) % n).unwrap_or(0);
            self.products[i]
        })
    }

    fn get(&self, path: &str, user: Option<&User>) -> Wire {
        match user {
            Some(user) => serialize(
                "GET",
                path,
                &self.host,
                &[("authorization", &user.authorization)],
                None,
            ),
            None => serialize("GET", path, &self.host, &[], None),
        }
    }

    fn post_json(&self, path: &str, user: Option<&User>, body: &Value) -> Wire {
        let body = body.to_string();
        let mut headers = vec![("content-type", "application/json")];
        if let Some(user) = user {
            headers.push(("authorization", &user.authorization));
        }
        serialize("POST", path, &self.host, &headers, Some(body.as_bytes()))
    }
}

impl Workload for Shop {
    fn operations(&self) -> &[String] {
        &self.operations
    }

    fn call(&self, ticket: u64) -> Call {
        let hash = mix64(ticket);
        let u = usize::try_from((hash >> 32) % self.users.len() as u64).unwrap_or(0);
        let user = &self.users[u];
        let mut op = self.mix[usize::try_from(ticket % ROUND as u64).unwrap_or(0)];
        // A customer checks out only with a cart this run knows is filled, one checkout at a
        // time; a checkout takes the cart when it is sent. Otherwise a checkout could find
        // the cart emptied by another one: a 422 that is the load's fault, not the server's.
        if op == Op::Checkout {
            if user.checking_out.swap(true, Ordering::AcqRel) {
                op = Op::AddToCart;
            } else if user.cart.swap(0, Ordering::AcqRel) == 0 {
                user.checking_out.store(false, Ordering::Release);
                op = Op::AddToCart;
            } else {
                user.checkouts.fetch_add(1, Ordering::AcqRel);
            }
        }
        // An add sent while a checkout is in flight may be taken by it (the server may see
        // it first): it does not count towards the next checkout.
        let tag = if op == Op::AddToCart && !user.checking_out.load(Ordering::Acquire) {
            user.checkouts.load(Ordering::Acquire)
        } else {
            UNCOUNTED
        };
        let product = self.product(hash);
        let wire = match op {
            Op::Browse => self.get(
                &format!("/api/v1/products?page={}&per_page=20", 1 + hash % 5),
                None,
            ),
            Op::Product => self.get(&format!("/api/v1/products/{product}"), None),
            Op::Search => {
                let word = SEARCHES[usize::try_from(hash % SEARCHES.len() as u64).unwrap_or(0)];
                self.get(&format!("/api/v1/products?q={word}"), None)
            }
            Op::ViewCart => self.get("/api/v1/cart", Some(user)),
            Op::AddToCart => self.post_json(
                "/api/v1/cart/items",
                Some(user),
                &json!({"product_id": product, "quantity": 1}),
            ),
            Op::Quote => {
                // Two lines of two different products (a product on two lines is refused).
                let other = self.other_product(product, hash >> 17);
                let mut items = vec![json!({"product_id": product, "quantity": 1})];
                if let Some(other) = other {
                    items.push(json!({"product_id": other, "quantity": 2}));
                }
                self.post_json("/api/v1/prices/quote", None, &json!({ "items": items }))
            }
            Op::Home => self.get("/", None),
            Op::Checkout => {
                let key = format!("{}-{ticket}", self.run_id);
                serialize(
                    "POST",
                    "/api/v1/orders",
                    &self.host,
                    &[
                        ("authorization", &user.authorization),
                        ("idempotency-key", &key),
                    ],
                    None,
                )
            }
        };
        Call {
            op: op.index(),
            wire,
            user: u,
            tag,
        }
    }

    fn answered(&self, call: &Call, status: Option<u16>) {
        let Some(user) = self.users.get(call.user) else {
            return;
        };
        let ok = status.is_some_and(|s| (200..300).contains(&s));
        // Counted only when no checkout was sent since the add was (one sent meanwhile may
        // or may not have taken it): a counted add is in the cart the next checkout takes.
        if call.op == Op::AddToCart.index()
            && ok
            && call.tag != UNCOUNTED
            && call.tag == user.checkouts.load(Ordering::Acquire)
        {
            user.cart.fetch_add(1, Ordering::AcqRel);
        }
        if call.op == Op::Checkout.index() {
            user.checking_out.store(false, Ordering::Release);
        }
    }
}

/// The setup's requests, one connection each (the setup is a few requests per customer).
pub(crate) struct SetupClient {
    pub(crate) addr: SocketAddr,
    pub(crate) host: String,
    pub(crate) connect_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) log: Arc<Mutex<SetupLog>>,
}

impl SetupClient {
    /// Registers and logs in one customer; returns the token.
    async fn customer(&self, email: &str, n: usize) -> Result<String, LabError> {
        let password = format!("bench password {n}");
        self.request(
            "register",
            "POST",
            "/api/v1/users",
            &[("content-type", "application/json")],
            Some(
                json!({"email": email, "password": password, "display_name": format!("Bench {n}")}),
            ),
        )
        .await?;
        let session = self
            .request(
                "login",
                "POST",
                "/api/v1/sessions",
                &[("content-type", "application/json")],
                Some(json!({"email": email, "password": password})),
            )
            .await?;
        session["token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| LabError::setup("login", format!("no token in {session}")))
    }

    /// One request; a 2xx JSON body is returned, anything else is a setup error.
    pub(crate) async fn request(
        &self,
        step: &'static str,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Result<Value, LabError> {
        let answer = self.exchange(step, method, path, headers, body).await?;
        let text = answer
            .body
            .as_deref()
            .map(String::from_utf8_lossy)
            .unwrap_or_default();
        serde_json::from_str(&text)
            .map_err(|e| LabError::setup(step, format!("{method} {path}: not JSON: {e}")))
    }

    /// One request on a connection of its own, logged under `step`; a 2xx answer (with its
    /// body and cookies) is returned, anything else is a setup error.
    pub(crate) async fn exchange(
        &self,
        step: &'static str,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Result<Answer, LabError> {
        let body = body.map(|b| b.to_string());
        let wire = serialize(
            method,
            path,
            &self.host,
            headers,
            body.as_deref().map(str::as_bytes),
        );
        let started = Instant::now();
        let outcome = tokio::time::timeout(self.request_timeout, async {
            let mut conn = Conn::open(self.addr, self.connect_timeout).await?;
            conn.exchange(&wire, "x-strata-instance", true).await
        })
        .await
        .unwrap_or(Err(Failure::Timeout));
        self.log.lock().await.push((
            step,
            outcome.as_ref().map(|a| a.status).map_err(|f| *f),
            started.elapsed(),
        ));
        let answer = outcome.map_err(|f| {
            LabError::setup(
                step,
                format!("{method} {path}: no response ({})", f.as_str()),
            )
        })?;
        if !(200..300).contains(&answer.status) {
            let text = answer
                .body
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            let text: String = text.chars().take(300).collect();
            return Err(LabError::setup(
                step,
                format!("{method} {path}: status {}: {text}", answer.status),
            ));
        }
        Ok(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_round_of_the_mix_holds_every_weight() {
        let round = mix();
        for (op, weight) in WEIGHTS {
            let n = round.iter().filter(|o| **o == op).count();
            assert_eq!(n, weight as usize, "{op:?}");
        }
        assert_eq!(
            WEIGHTS.iter().map(|(_, w)| *w as usize).sum::<usize>(),
            ROUND
        );
        // Spread out: the two heaviest never run three in a row.
        assert!(round.windows(3).all(|w| !(w[0] == w[1] && w[1] == w[2])));
    }

    fn shop(users: usize) -> Shop {
        Shop {
            host: "127.0.0.1:8080".into(),
            operations: WEIGHTS.iter().map(|(op, _)| op.name().to_owned()).collect(),
            mix: mix(),
            products: vec![3, 5, 7],
            users: (0..users)
                .map(|n| User::new(format!("Bearer t{n}")))
                .collect(),
            run_id: "r".into(),
        }
    }

    #[test]
    fn a_checkout_needs_a_filled_cart_and_takes_it_when_sent() {
        let shop = shop(1);
        let checkout = (0..ROUND as u64)
            .find(|n| shop.mix[*n as usize] == Op::Checkout)
            .unwrap();
        let call = shop.call(checkout);
        assert_eq!(call.op, Op::AddToCart.index(), "empty cart: adds instead");
        shop.answered(&call, Some(201));
        let call = shop.call(checkout);
        assert_eq!(call.op, Op::Checkout.index());
        let text = String::from_utf8_lossy(&call.wire.bytes).into_owned();
        assert!(text.starts_with("POST /api/v1/orders HTTP/1.1"), "{text}");
        assert!(
            text.contains(&format!("idempotency-key: r-{checkout}")),
            "{text}"
        );
        assert!(text.contains("authorization: Bearer t0"), "{text}");
        assert_eq!(shop.users[0].cart.load(Ordering::Relaxed), 0);
        let second = shop.call(checkout);
        assert_eq!(
            second.op,
            Op::AddToCart.index(),
            "with a checkout in flight, the customer adds instead of checking out twice"
        );
        shop.answered(&call, Some(201));
        assert_eq!(shop.users[0].cart.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn adds_a_checkout_may_take_do_not_count_towards_the_next() {
        let shop = shop(1);
        let ticket = |op| {
            (0..ROUND as u64)
                .find(|n| shop.mix[*n as usize] == op)
                .unwrap()
        };
        let (checkout, add) = (ticket(Op::Checkout), ticket(Op::AddToCart));
        // An add acknowledged before any checkout counts.
        let counted = shop.call(add);
        shop.answered(&counted, Some(200));
        // Sent before the checkout, acknowledged after it was sent: the checkout may take it.
        let early = shop.call(add);
        let first = shop.call(checkout);
        assert_eq!(first.op, Op::Checkout.index());
        shop.answered(&early, Some(200));
        // Sent while the checkout is in flight: it may take that one too.
        let during = shop.call(add);
        shop.answered(&during, Some(200));
        shop.answered(&first, Some(201));
        assert_eq!(shop.users[0].cart.load(Ordering::Relaxed), 0);
        assert_eq!(
            shop.call(checkout).op,
            Op::AddToCart.index(),
            "no add is known to be in the cart: no checkout"
        );
    }

    #[test]
    fn a_failed_checkout_lets_the_customer_check_out_again() {
        let shop = shop(1);
        let checkout = (0..ROUND as u64)
            .find(|n| shop.mix[*n as usize] == Op::Checkout)
            .unwrap();
        let add = shop.call(checkout);
        shop.answered(&add, Some(200));
        let failed = shop.call(checkout);
        assert_eq!(failed.op, Op::Checkout.index());
        shop.answered(&failed, None);
        let add = shop.call(checkout);
        assert_eq!(
            add.op,
            Op::AddToCart.index(),
            "the failed checkout took the cart"
        );
        shop.answered(&add, Some(200));
        assert_eq!(shop.call(checkout).op, Op::Checkout.index());
    }

    #[test]
    fn a_quote_never_names_a_product_twice() {
        let many = shop(1);
        for n in 0..2_000u64 {
            let product = many.product(mix64(n));
            assert_ne!(
                many.other_product(product, mix64(n) >> 17),
                Some(product),
                "{n}"
            );
        }
        let one = Shop {
            products: vec![9],
            ..shop(1)
        };
        assert_eq!(one.other_product(9, 5), None);
    }

    #[test]
    fn customers_and_products_are_spread() {
        let shop = shop(7);
        let mut seen = [0u32; 7];
        for n in 0..7_000 {
            seen[shop.call(n).user] += 1;
        }
        assert!(seen.iter().all(|n| (800..1200).contains(n)), "{seen:?}");
    }
}
