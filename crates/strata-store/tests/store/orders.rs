//! Checkout and orders on both dialects: what one transaction writes, idempotency, stock that
//! never goes below zero, and rollback on every refusal.

use strata_store::{
    CartOwner, CheckoutError, CheckoutOutcome, CheckoutRequest, Coupon, ORDER_PLACED, OrderPlaced,
    OrderStatus, Page, PricedLine, PricedOrder, ReservedLine, Store,
};

use crate::carts::{futures_join_all, product, user};
use crate::harness::{both_dialects, migrated};

both_dialects!(
    checkout_writes_order_lines_history_and_outbox,
    replays_return_the_same_order_and_other_bodies_are_refused,
    concurrent_replays_make_one_order,
    out_of_stock_rolls_everything_back,
    empty_carts_and_pricing_errors_write_nothing,
    concurrent_checkouts_never_oversell,
    orders_list_newest_first_per_user,
    coupons_are_read_inside_the_transaction,
    outbox_messages_are_stamped_once,
);

/// A pricing function without discounts or tax: total = Σ price × quantity.
fn flat(lines: &[ReservedLine], coupon: Option<&Coupon>) -> Result<PricedOrder, String> {
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
        coupon_code: coupon.map(|c| c.code.clone()),
        subtotal_cents: subtotal,
        discount_cents: 0,
        tax_cents: 0,
        total_cents: subtotal,
        lines,
    })
}

fn request<'a>(user_id: i64, key: &'a str, fingerprint: &'a str) -> CheckoutRequest<'a> {
    CheckoutRequest {
        user_id,
        idempotency_key: key,
        fingerprint,
        coupon_code: None,
        traceparent: None,
    }
}

async fn checkout(
    store: &Store,
    req: CheckoutRequest<'_>,
) -> Result<CheckoutOutcome, CheckoutError<String>> {
    store.orders().checkout(req, flat).await
}

async fn stock(store: &Store, id: i64) -> i64 {
    store.products().get(id).await.unwrap().unwrap().stock
}

async fn checkout_writes_order_lines_history_and_outbox(store: &Store) {
    migrated(store).await;
    let alice = user(store, "alice").await;
    let lamp = product(store, "LAMP", 1999, 5).await;
    let desk = product(store, "DESK", 9999, 2).await;
    let owner = CartOwner::User(alice);
    store.carts().add(owner, desk, 2).await.unwrap();
    store.carts().add(owner, lamp, 3).await.unwrap();

    let outcome = checkout(store, request(alice, "k1", "{}")).await.unwrap();
    assert!(!outcome.replayed);
    let order = outcome.order;
    assert_eq!(order.user_id, alice);
    assert_eq!(order.status, OrderStatus::Placed);
    assert_eq!(order.total_cents, 3 * 1999 + 2 * 9999);
    let lines: Vec<_> = order
        .lines
        .iter()
        .map(|l| (l.product_id, l.sku.as_str(), l.quantity, l.unit_price_cents))
        .collect();
    // Reserved (and written) in product id order.
    assert_eq!(lines, [(lamp, "LAMP", 3, 1999), (desk, "DESK", 2, 9999)]);
    assert_eq!(order.history.len(), 1);
    assert_eq!(order.history[0].status, OrderStatus::Placed);
    assert_eq!(order.history[0].at, order.created_at);

    assert_eq!((stock(store, lamp).await, stock(store, desk).await), (2, 0));
    assert!(store.carts().lines(owner).await.unwrap().is_empty());
    assert_eq!(
        store.orders().get(order.id).await.unwrap(),
        Some(order.clone())
    );

    let events = store.outbox().by_topic(ORDER_PLACED).await.unwrap();
    assert_eq!(events.len(), 1);
    assert!(events[0].sent_at.is_none());
    let event: OrderPlaced = serde_json::from_str(&events[0].payload).unwrap();
    assert_eq!(event.order_id, order.id);
    assert_eq!(event.user_id, alice);
    assert_eq!(event.total_cents, order.total_cents);
    assert_eq!(event.lines.len(), 2);
    assert_eq!(event.placed_at, order.created_at);
}

async fn replays_return_the_same_order_and_other_bodies_are_refused(store: &Store) {
    migrated(store).await;
    let bob = user(store, "bob").await;
    let lamp = product(store, "LAMP", 1000, 10).await;
    store
        .carts()
        .add(CartOwner::User(bob), lamp, 2)
        .await
        .unwrap();
    let first = checkout(store, request(bob, "key", "A")).await.unwrap();
    // The cart is empty now, yet the replay returns the order the key made.
    let again = checkout(store, request(bob, "key", "A")).await.unwrap();
    assert!(again.replayed);
    assert_eq!(again.order, first.order);
    assert_eq!(stock(store, lamp).await, 8, "reserved once");

    assert!(matches!(
        checkout(store, request(bob, "key", "B")).await,
        Err(CheckoutError::IdempotencyKeyReused)
    ));
    // Keys are per user: another user's identical key is a different checkout.
    let carol = user(store, "carol").await;
    store
        .carts()
        .add(CartOwner::User(carol), lamp, 1)
        .await
        .unwrap();
    let other = checkout(store, request(carol, "key", "A")).await.unwrap();
    assert!(!other.replayed);
    assert_ne!(other.order.id, first.order.id);
    assert_eq!(store.orders().count().await.unwrap(), 2);
}

async fn concurrent_replays_make_one_order(store: &Store) {
    migrated(store).await;
    let dan = user(store, "dan").await;
    let lamp = product(store, "LAMP", 1000, 10).await;
    store
        .carts()
        .add(CartOwner::User(dan), lamp, 1)
        .await
        .unwrap();
    let attempts = (0..10).map(|_| {
        let store = store.clone();
        async move { checkout(&store, request(dan, "same", "{}")).await }
    });
    let results = futures_join_all(attempts).await;
    let ids: Vec<i64> = results
        .iter()
        .map(|r| r.as_ref().expect("every replay succeeds").order.id)
        .collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    let fresh = results
        .iter()
        .filter(|r| !r.as_ref().unwrap().replayed)
        .count();
    assert_eq!(fresh, 1);
    assert_eq!(store.orders().count().await.unwrap(), 1);
    assert_eq!(stock(store, lamp).await, 9);
}

async fn out_of_stock_rolls_everything_back(store: &Store) {
    migrated(store).await;
    let eve = user(store, "eve").await;
    let owner = CartOwner::User(eve);
    let plenty = product(store, "PLENTY", 100, 50).await;
    let scarce = product(store, "SCARCE", 100, 1).await;
    store.carts().add(owner, plenty, 5).await.unwrap();
    store.carts().add(owner, scarce, 2).await.unwrap();

    match checkout(store, request(eve, "k", "{}")).await {
        Err(CheckoutError::OutOfStock {
            product_id,
            name,
            requested,
            available,
        }) => {
            assert_eq!((product_id, requested, available), (scarce, 2, 1));
            assert_eq!(name, "Product SCARCE");
        }
        other => panic!("expected out of stock, got {other:?}"),
    }
    // The first line's reservation was rolled back, the cart kept, the key released.
    assert_eq!(
        (stock(store, plenty).await, stock(store, scarce).await),
        (50, 1)
    );
    assert_eq!(store.carts().lines(owner).await.unwrap().len(), 2);
    assert_eq!(store.orders().count().await.unwrap(), 0);
    assert!(store.outbox().unsent(10).await.unwrap().is_empty());

    store.carts().set(owner, scarce, 1).await.unwrap();
    let order = checkout(store, request(eve, "k", "{}")).await.unwrap();
    assert!(!order.replayed, "a failed checkout does not burn its key");
    assert_eq!(stock(store, scarce).await, 0);
}

async fn empty_carts_and_pricing_errors_write_nothing(store: &Store) {
    migrated(store).await;
    let fay = user(store, "fay").await;
    assert!(matches!(
        checkout(store, request(fay, "k", "{}")).await,
        Err(CheckoutError::EmptyCart)
    ));
    let lamp = product(store, "LAMP", 100, 3).await;
    store
        .carts()
        .add(CartOwner::User(fay), lamp, 1)
        .await
        .unwrap();
    store
        .carts()
        .remove(CartOwner::User(fay), lamp)
        .await
        .unwrap();
    assert!(matches!(
        checkout(store, request(fay, "k", "{}")).await,
        Err(CheckoutError::EmptyCart)
    ));

    store
        .carts()
        .add(CartOwner::User(fay), lamp, 2)
        .await
        .unwrap();
    let refused = store
        .orders()
        .checkout(request(fay, "k", "{}"), |_, _| Err::<PricedOrder, _>("no"))
        .await;
    assert!(matches!(refused, Err(CheckoutError::Pricing("no"))));
    assert_eq!(stock(store, lamp).await, 3);
    assert_eq!(
        store
            .carts()
            .lines(CartOwner::User(fay))
            .await
            .unwrap()
            .len(),
        1
    );

    // A pricing function that prices the wrong quantity is caught, not written.
    let wrong = store
        .orders()
        .checkout(request(fay, "k", "{}"), |lines, coupon| {
            let mut priced = flat(lines, coupon)?;
            priced.lines[0].quantity += 1;
            Ok::<_, String>(priced)
        })
        .await;
    assert!(
        matches!(wrong, Err(CheckoutError::PricingMismatch(_))),
        "{wrong:?}"
    );
    assert_eq!(store.orders().count().await.unwrap(), 0);
    assert_eq!(stock(store, lamp).await, 3);
}

async fn concurrent_checkouts_never_oversell(store: &Store) {
    migrated(store).await;
    let stock_level = 10;
    let buyers = 30;
    let lamp = product(store, "LAMP", 1000, stock_level).await;
    let mut users = Vec::new();
    for n in 0..buyers {
        let id = user(store, &format!("buyer{n}")).await;
        store
            .carts()
            .add(CartOwner::User(id), lamp, 1)
            .await
            .unwrap();
        users.push(id);
    }
    let attempts = users.into_iter().map(|id| {
        let store = store.clone();
        async move { checkout(&store, request(id, "once", "{}")).await }
    });
    let results = futures_join_all(attempts).await;
    let placed = results.iter().filter(|r| r.is_ok()).count();
    let sold_out = results
        .iter()
        .filter(|r| matches!(r, Err(CheckoutError::OutOfStock { .. })))
        .count();
    assert_eq!((placed, sold_out), (10, 20), "{results:?}");
    assert_eq!(stock(store, lamp).await, 0);
    assert_eq!(store.orders().count().await.unwrap(), 10);
    assert_eq!(store.outbox().unsent(100).await.unwrap().len(), 10);
}

async fn orders_list_newest_first_per_user(store: &Store) {
    migrated(store).await;
    let gus = user(store, "gus").await;
    let hal = user(store, "hal").await;
    let lamp = product(store, "LAMP", 500, 100).await;
    let mut ids = Vec::new();
    for n in 0..5 {
        store
            .carts()
            .add(CartOwner::User(gus), lamp, n + 1)
            .await
            .unwrap();
        let key = format!("k{n}");
        ids.push(
            checkout(store, request(gus, &key, "{}"))
                .await
                .unwrap()
                .order
                .id,
        );
    }
    store
        .carts()
        .add(CartOwner::User(hal), lamp, 1)
        .await
        .unwrap();
    let hals = checkout(store, request(hal, "k0", "{}"))
        .await
        .unwrap()
        .order
        .id;

    let first = store
        .orders()
        .list_for_user(gus, Page::new(1, 2).unwrap())
        .await
        .unwrap();
    assert_eq!(first.total, 5);
    let got: Vec<i64> = first.items.iter().map(|o| o.id).collect();
    assert_eq!(got, [ids[4], ids[3]]);
    assert_eq!(first.items[0].lines[0].quantity, 5);
    assert_eq!(first.items[0].history.len(), 1);
    let last = store
        .orders()
        .list_for_user(gus, Page::new(3, 2).unwrap())
        .await
        .unwrap();
    assert_eq!(
        last.items.iter().map(|o| o.id).collect::<Vec<_>>(),
        [ids[0]]
    );
    let hal_page = store
        .orders()
        .list_for_user(hal, Page::default())
        .await
        .unwrap();
    assert_eq!(
        hal_page.items.iter().map(|o| o.id).collect::<Vec<_>>(),
        [hals]
    );
    assert_eq!(store.orders().get(999_999).await.unwrap(), None);
}

async fn coupons_are_read_inside_the_transaction(store: &Store) {
    migrated(store).await;
    let ivy = user(store, "ivy").await;
    let lamp = product(store, "LAMP", 500, 100).await;
    store
        .carts()
        .add(CartOwner::User(ivy), lamp, 1)
        .await
        .unwrap();
    let seen = std::sync::Mutex::new(Vec::new());
    let req = CheckoutRequest {
        coupon_code: Some("WELCOME10"),
        ..request(ivy, "k", "{}")
    };
    let outcome = store
        .orders()
        .checkout(req, |lines, coupon| {
            seen.lock().unwrap().push(coupon.cloned());
            flat(lines, coupon)
        })
        .await
        .unwrap();
    assert_eq!(outcome.order.coupon_code.as_deref(), Some("WELCOME10"));
    let seen = seen.into_inner().unwrap();
    assert_eq!(seen.len(), 1);
    let coupon = seen[0].clone().expect("the demo coupon exists");
    assert_eq!(
        coupon.kind,
        strata_store::CouponKind::Percent { basis_points: 1000 }
    );
    assert_eq!(
        store.coupons().get("WELCOME10").await.unwrap(),
        Some(coupon)
    );
    let expired = store.coupons().get("SUMMER15").await.unwrap().unwrap();
    assert!(expired.expires_at.unwrap() < time::OffsetDateTime::now_utc());
    assert_eq!(store.coupons().get("NOPE").await.unwrap(), None);
}

async fn outbox_messages_are_stamped_once(store: &Store) {
    migrated(store).await;
    let jo = user(store, "jo").await;
    let lamp = product(store, "LAMP", 500, 100).await;
    store
        .carts()
        .add(CartOwner::User(jo), lamp, 1)
        .await
        .unwrap();
    checkout(store, request(jo, "k", "{}")).await.unwrap();
    let pending = store.outbox().unsent(10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].topic, ORDER_PLACED);
    assert!(store.outbox().mark_sent(pending[0].id).await.unwrap());
    assert!(!store.outbox().mark_sent(pending[0].id).await.unwrap());
    assert!(store.outbox().unsent(10).await.unwrap().is_empty());
    let all = store.outbox().by_topic(ORDER_PLACED).await.unwrap();
    assert!(all[0].sent_at.is_some());
}

/// The errors a retry may cure are classified as [`StoreError::Conflict`] (and so retried by
/// the repositories, and answered 503 when retries run out): SQLite busy, PostgreSQL lock
/// timeouts (deadlocks and serialization failures share the branch).
mod conflicts {
    use std::str::FromStr;
    use std::time::Duration;

    use sqlx::Connection;
    use sqlx::postgres::{PgConnectOptions, PgConnection};
    use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
    use strata_core::testkit::{POSTGRES, require_service};
    use strata_store::StoreError;
    use strata_store::testing;

    #[tokio::test]
    async fn sqlite_busy_is_a_conflict() {
        let (_store, file) = testing::fresh_sqlite().await;
        let options = SqliteConnectOptions::new()
            .filename(file.path())
            .busy_timeout(Duration::ZERO);
        let mut first = SqliteConnection::connect_with(&options).await.unwrap();
        let mut second = SqliteConnection::connect_with(&options).await.unwrap();
        sqlx::raw_sql("BEGIN IMMEDIATE")
            .execute(&mut first)
            .await
            .unwrap();
        let err = sqlx::raw_sql("BEGIN IMMEDIATE")
            .execute(&mut second)
            .await
            .unwrap_err();
        let err = StoreError::from(err);
        assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
        assert!(err.is_transient());
    }

    #[tokio::test]
    async fn postgres_lock_timeout_is_a_conflict() {
        let Some(url) = require_service(POSTGRES) else {
            return;
        };
        let options = PgConnectOptions::from_str(&url).unwrap();
        let mut first = PgConnection::connect_with(&options).await.unwrap();
        let mut second = PgConnection::connect_with(&options).await.unwrap();
        let key = i64::from(std::process::id()) << 20 | 0x5eed;
        sqlx::raw_sql("BEGIN").execute(&mut first).await.unwrap();
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(key)
            .execute(&mut first)
            .await
            .unwrap();
        sqlx::raw_sql("SET lock_timeout = '20ms'")
            .execute(&mut second)
            .await
            .unwrap();
        let err = sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(key)
            .execute(&mut second)
            .await
            .unwrap_err();
        let err = StoreError::from(err);
        assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
        sqlx::raw_sql("ROLLBACK").execute(&mut first).await.unwrap();
    }
}
