//! A shop for event-pipeline tests: products with plenty of stock, concurrent checkouts straight
//! through the store, and the check of every invariant the order pipeline promises (each order
//! ends `shipped` or `payment_failed` with exactly its status changes in order, one
//! notification per change, stock consistent with the orders, the outbox drained).

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

use crate::{
    CartOwner, CheckoutRequest, Coupon, NewProduct, NewUser, OrderStatus, PricedLine, PricedOrder,
    ReservedLine, Store, UserRole,
};

/// Stock every pipeline product starts with.
pub const STOCK: i64 = 1_000_000;

/// A pricing function without discounts or tax: total = Σ price × quantity.
///
/// # Errors
/// Never; the signature is the one checkout takes.
pub fn flat_price(lines: &[ReservedLine], _coupon: Option<&Coupon>) -> Result<PricedOrder, String> {
    let lines: Vec<PricedLine> = lines
        .iter()
        .map(|l| PricedLine {
            product_id: l.product_id,
            unit_price_cents: l.unit_price_cents,
            quantity: l.quantity,
            discount_cents: 0,
            total_cents: l.unit_price_cents * l.quantity,
        })
        .collect();
    let subtotal = lines.iter().map(|l| l.total_cents).sum();
    Ok(PricedOrder {
        region: "EU-DE".into(),
        tax_rate_bps: 0,
        coupon_code: None,
        subtotal_cents: subtotal,
        discount_cents: 0,
        tax_cents: 0,
        total_cents: subtotal,
        lines,
    })
}

/// Creates `count` products with [`STOCK`] units each; returns their ids.
///
/// # Panics
/// When the store fails.
pub async fn products(store: &Store, count: usize) -> Vec<i64> {
    let mut ids = Vec::new();
    for i in 0..count {
        let product = store
            .products()
            .insert(&NewProduct {
                sku: format!("PIPE-{i}"),
                name: format!("Pipeline product {i}"),
                description: String::new(),
                category: "test".into(),
                price_cents: 500 + i64::try_from(i).unwrap_or(0) * 100,
                stock: STOCK,
            })
            .await
            .expect("insert a product");
        ids.push(product.id);
    }
    ids
}

/// `orders` checkouts by `buyers` new users, concurrently (one task per buyer); order `n`
/// takes 1 to 3 units of one product. Order ids come out gap-free from 1 on a fresh store.
///
/// # Panics
/// When a checkout fails.
pub async fn place_orders(store: &Store, products: &[i64], buyers: usize, orders: usize) {
    let mut tasks = Vec::new();
    for b in 0..buyers {
        let store = store.clone();
        let products = products.to_vec();
        tasks.push(tokio::spawn(async move {
            let user = store
                .users()
                .insert(&NewUser {
                    email: format!("buyer{b}-{}@example.test", uuid::Uuid::new_v4().simple()),
                    display_name: format!("Buyer {b}"),
                    password_hash: "not-a-real-hash".into(),
                    role: UserRole::Customer,
                })
                .await
                .expect("insert a user")
                .id;
            for n in (b..orders).step_by(buyers) {
                let product = products[n % products.len()];
                let quantity = u32::try_from(1 + n % 3).unwrap_or(1);
                store
                    .carts()
                    .add(CartOwner::User(user), product, quantity)
                    .await
                    .expect("add to cart");
                let key = format!("order-{n}");
                store
                    .orders()
                    .checkout(
                        CheckoutRequest {
                            user_id: user,
                            idempotency_key: &key,
                            fingerprint: "{}",
                            coupon_code: None,
                            traceparent: None,
                        },
                        flat_price,
                    )
                    .await
                    .expect("checkout");
            }
        }));
    }
    for task in tasks {
        task.await.expect("a checkout task panicked");
    }
}

/// How many orders are in a final status, and how many are not.
///
/// # Panics
/// When the store fails.
pub async fn progress(store: &Store) -> (i64, i64) {
    let counts = store
        .orders()
        .count_by_status()
        .await
        .expect("count orders");
    counts.iter().fold((0, 0), |(done, open), (status, n)| {
        if status.is_final() {
            (done + n, open)
        } else {
            (done, open + n)
        }
    })
}

/// Waits until at least `done` orders are final; panics after `limit`.
///
/// # Panics
/// When `limit` passes first, or the store fails.
pub async fn wait_final(store: &Store, done: i64, limit: Duration) {
    let deadline = Instant::now() + limit;
    while progress(store).await.0 < done {
        assert!(
            Instant::now() < deadline,
            "fewer than {done} orders final after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until every order is final and `quiet` (the caller's view of the bus: nothing
/// unrelayed, unconsumed or unacknowledged) holds; panics after `limit`.
///
/// # Panics
/// When `limit` passes first, or the store fails.
pub async fn settle<F, Fut>(store: &Store, limit: Duration, mut quiet: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        let open = progress(store).await.1;
        if open == 0 && quiet().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not settled after {limit:?}: {open} orders open"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Checks every invariant of the order pipeline over a store holding exactly `expected`
/// orders (ids 1..=expected) bought from `products` (each started with [`STOCK`]).
///
/// # Panics
/// On the first invariant that does not hold, saying which.
pub async fn check_invariants(store: &Store, products: &[i64], expected: usize) {
    let mut sold: HashMap<i64, i64> = HashMap::new();
    let mut changes = 0;
    let (done, open) = progress(store).await;
    assert_eq!(
        (done, open),
        (i64::try_from(expected).unwrap_or(0), 0),
        "orders final"
    );
    for id in 1..=i64::try_from(expected).unwrap_or(0) {
        let order = store
            .orders()
            .get(id)
            .await
            .expect("read an order")
            .unwrap_or_else(|| panic!("order {id} missing"));
        let history: Vec<OrderStatus> = order.history.iter().map(|h| h.status).collect();
        let expected_history = match order.status {
            OrderStatus::Shipped => {
                vec![OrderStatus::Placed, OrderStatus::Paid, OrderStatus::Shipped]
            }
            OrderStatus::PaymentFailed => vec![OrderStatus::Placed, OrderStatus::PaymentFailed],
            other => panic!("order {id} ended {other:?}"),
        };
        assert_eq!(history, expected_history, "order {id}");
        changes += history.len();
        let kinds: Vec<OrderStatus> = store
            .notifications()
            .for_order(id)
            .await
            .expect("read notifications")
            .iter()
            .map(|n| n.kind)
            .collect();
        assert_eq!(kinds.len(), history.len(), "order {id}: {kinds:?}");
        for kind in &history {
            assert!(kinds.contains(kind), "order {id}: {kinds:?}");
        }
        if order.status == OrderStatus::Shipped {
            for line in &order.lines {
                *sold.entry(line.product_id).or_default() += line.quantity;
            }
        }
    }
    let (notifications, distinct) = store
        .notifications()
        .count()
        .await
        .expect("count notifications");
    assert_eq!(notifications, distinct, "a status change notified twice");
    assert_eq!(notifications, i64::try_from(changes).unwrap_or(0));
    for &product in products {
        let stock = store
            .products()
            .get(product)
            .await
            .expect("read a product")
            .map(|p| p.stock);
        let sold = sold.get(&product).copied().unwrap_or(0);
        assert_eq!(stock, Some(STOCK - sold), "product {product}: sold {sold}");
    }
    let pending = store.outbox().pending().await.expect("read the outbox").0;
    assert_eq!(pending, 0, "outbox drained");
}
