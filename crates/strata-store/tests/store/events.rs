//! The event pipeline's store side on both dialects: order transitions applied once per event,
//! stock released on a declined payment, notifications once per event, and the outbox relay
//! stamping only what the bus confirmed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use strata_store::{
    Applied, CartOwner, CheckoutRequest, NewNotification, ORDER_PAID, ORDER_PAYMENT_FAILED,
    ORDER_PLACED, ORDER_SHIPPED, OrderStatus, OrderStatusChanged, Page, Store, Transition,
};

use crate::carts::{futures_join_all, product, user};

/// A relay's claim in these tests: longer than any of them runs.
const LEASE: Duration = Duration::from_secs(60);
use crate::harness::{both_dialects, migrated};

both_dialects!(
    payment_then_shipping_moves_the_order_once_per_event,
    declined_payment_releases_stock_once,
    transitions_from_the_wrong_status_are_skipped_but_recorded,
    concurrent_deliveries_of_one_event_apply_once,
    notifications_are_recorded_once_per_event_and_only_for_the_owner,
    relay_stamps_only_what_the_bus_confirmed,
    sent_events_are_pruned_by_age,
    events_keep_the_trace_context_of_their_writer,
);

/// A user with an order of `quantity` units of a new product with `stock`; returns
/// (user, product, order).
async fn placed_order(store: &Store, name: &str, stock: i64, quantity: u32) -> (i64, i64, i64) {
    let buyer = user(store, name).await;
    let item = product(store, &format!("SKU-{name}"), 1000, stock).await;
    store
        .carts()
        .add(CartOwner::User(buyer), item, quantity)
        .await
        .unwrap();
    let order = store
        .orders()
        .checkout(
            CheckoutRequest {
                user_id: buyer,
                idempotency_key: "k",
                fingerprint: "{}",
                coupon_code: None,
                traceparent: None,
            },
            strata_store::testing::pipeline::flat_price,
        )
        .await
        .unwrap()
        .order;
    (buyer, item, order.id)
}

fn step(
    handler: &str,
    event_id: i64,
    order_id: i64,
    from: OrderStatus,
    to: OrderStatus,
) -> Transition<'_> {
    Transition {
        handler,
        event_id,
        order_id,
        from,
        to,
        traceparent: None,
    }
}

async fn stock(store: &Store, id: i64) -> i64 {
    store.products().get(id).await.unwrap().unwrap().stock
}

async fn payment_then_shipping_moves_the_order_once_per_event(store: &Store) {
    migrated(store).await;
    let (buyer, _, order) = placed_order(store, "ann", 5, 2).await;
    let orders = store.orders();
    let pay = step("payment", 1, order, OrderStatus::Placed, OrderStatus::Paid);
    assert_eq!(orders.advance(pay).await.unwrap(), Applied::Done);
    assert_eq!(orders.advance(pay).await.unwrap(), Applied::Duplicate);
    let ship = step(
        "fulfilment",
        2,
        order,
        OrderStatus::Paid,
        OrderStatus::Shipped,
    );
    assert_eq!(orders.advance(ship).await.unwrap(), Applied::Done);
    assert_eq!(orders.advance(ship).await.unwrap(), Applied::Duplicate);

    let got = orders.get(order).await.unwrap().unwrap();
    assert_eq!(got.status, OrderStatus::Shipped);
    let history: Vec<OrderStatus> = got.history.iter().map(|h| h.status).collect();
    assert_eq!(
        history,
        [OrderStatus::Placed, OrderStatus::Paid, OrderStatus::Shipped]
    );
    assert!(got.history.windows(2).all(|w| w[0].at <= w[1].at));

    // Each transition wrote the event announcing it, once.
    for topic in [ORDER_PLACED, ORDER_PAID, ORDER_SHIPPED] {
        assert_eq!(
            store.outbox().by_topic(topic).await.unwrap().len(),
            1,
            "{topic}"
        );
    }
    let paid = &store.outbox().by_topic(ORDER_PAID).await.unwrap()[0];
    let event: OrderStatusChanged = serde_json::from_str(&paid.payload).unwrap();
    assert_eq!((event.order_id, event.user_id), (order, buyer));
    assert_eq!(event.status, OrderStatus::Paid);
    assert_eq!(event.total_cents, 2000);
    assert!(store.events().processed("payment", 1).await.unwrap());
    assert!(!store.events().processed("payment", 2).await.unwrap());
    assert_eq!(store.events().count("fulfilment").await.unwrap(), 1);
}

/// The `traceparent` of a checkout and of a handler's run is kept with the event each writes,
/// and comes back with it when a relay claims it; an event written without one has none.
async fn events_keep_the_trace_context_of_their_writer(store: &Store) {
    const CHECKOUT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const PAYMENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-b7ad6b7169203331-01";
    migrated(store).await;
    let buyer = user(store, "tia").await;
    let item = product(store, "SKU-tia", 1000, 5).await;
    store
        .carts()
        .add(CartOwner::User(buyer), item, 1)
        .await
        .unwrap();
    let order = store
        .orders()
        .checkout(
            CheckoutRequest {
                user_id: buyer,
                idempotency_key: "traced",
                fingerprint: "{}",
                coupon_code: None,
                traceparent: Some(CHECKOUT),
            },
            strata_store::testing::pipeline::flat_price,
        )
        .await
        .unwrap()
        .order;
    let placed = &store.outbox().by_topic(ORDER_PLACED).await.unwrap()[0];
    assert_eq!(placed.traceparent.as_deref(), Some(CHECKOUT));
    let pay = Transition {
        traceparent: Some(PAYMENT),
        ..step(
            "payment",
            placed.id,
            order.id,
            OrderStatus::Placed,
            OrderStatus::Paid,
        )
    };
    assert_eq!(store.orders().advance(pay).await.unwrap(), Applied::Done);
    let ship = step(
        "fulfilment",
        99,
        order.id,
        OrderStatus::Paid,
        OrderStatus::Shipped,
    );
    assert_eq!(store.orders().advance(ship).await.unwrap(), Applied::Done);

    let mut relayed = Vec::new();
    store
        .outbox()
        .relay(10, LEASE, |batch| {
            relayed = batch
                .iter()
                .map(|m| (m.topic.clone(), m.traceparent.clone()))
                .collect();
            let ids = batch.iter().map(|m| m.id).collect();
            async move { (ids, None::<std::io::Error>) }
        })
        .await
        .unwrap();
    assert_eq!(
        relayed,
        [
            (ORDER_PLACED.to_owned(), Some(CHECKOUT.to_owned())),
            (ORDER_PAID.to_owned(), Some(PAYMENT.to_owned())),
            (ORDER_SHIPPED.to_owned(), None),
        ]
    );
}

async fn declined_payment_releases_stock_once(store: &Store) {
    migrated(store).await;
    let (_, item, order) = placed_order(store, "bob", 5, 3).await;
    assert_eq!(stock(store, item).await, 2);
    let decline = step(
        "payment",
        7,
        order,
        OrderStatus::Placed,
        OrderStatus::PaymentFailed,
    );
    assert_eq!(
        store.orders().advance(decline).await.unwrap(),
        Applied::Done
    );
    assert_eq!(stock(store, item).await, 5, "stock back");
    assert_eq!(
        store.orders().advance(decline).await.unwrap(),
        Applied::Duplicate
    );
    // The same decline under another event id finds the order already failed.
    let again = step(
        "payment",
        8,
        order,
        OrderStatus::Placed,
        OrderStatus::PaymentFailed,
    );
    assert_eq!(
        store.orders().advance(again).await.unwrap(),
        Applied::Skipped
    );
    assert_eq!(stock(store, item).await, 5, "released once only");
    let got = store.orders().get(order).await.unwrap().unwrap();
    assert_eq!(got.status, OrderStatus::PaymentFailed);
    assert!(got.status.is_final());
    assert_eq!(
        store
            .outbox()
            .by_topic(ORDER_PAYMENT_FAILED)
            .await
            .unwrap()
            .len(),
        1
    );
    let counts = store.orders().count_by_status().await.unwrap();
    assert_eq!(counts.get(&OrderStatus::PaymentFailed), Some(&1));
    assert_eq!(counts.get(&OrderStatus::Placed), None);
}

async fn transitions_from_the_wrong_status_are_skipped_but_recorded(store: &Store) {
    migrated(store).await;
    let (_, _, order) = placed_order(store, "cyd", 5, 1).await;
    // Shipping an order that was never paid does nothing to it.
    let ship = step(
        "fulfilment",
        3,
        order,
        OrderStatus::Paid,
        OrderStatus::Shipped,
    );
    assert_eq!(
        store.orders().advance(ship).await.unwrap(),
        Applied::Skipped
    );
    assert_eq!(
        store.orders().get(order).await.unwrap().unwrap().status,
        OrderStatus::Placed
    );
    assert!(store.events().processed("fulfilment", 3).await.unwrap());
    assert_eq!(
        store.outbox().by_topic(ORDER_SHIPPED).await.unwrap().len(),
        0
    );
    // An unknown order is skipped too.
    let ghost = step(
        "fulfilment",
        4,
        999_999,
        OrderStatus::Paid,
        OrderStatus::Shipped,
    );
    assert_eq!(
        store.orders().advance(ghost).await.unwrap(),
        Applied::Skipped
    );
}

async fn concurrent_deliveries_of_one_event_apply_once(store: &Store) {
    migrated(store).await;
    let (_, item, order) = placed_order(store, "dee", 10, 4).await;
    let outcomes = futures_join_all((0..8).map(|_| {
        let store = store.clone();
        async move {
            let decline = step(
                "payment",
                11,
                order,
                OrderStatus::Placed,
                OrderStatus::PaymentFailed,
            );
            store.orders().advance(decline).await.unwrap()
        }
    }))
    .await;
    let done = outcomes.iter().filter(|o| **o == Applied::Done).count();
    assert_eq!(done, 1, "{outcomes:?}");
    assert!(
        outcomes.iter().all(|o| *o != Applied::Skipped),
        "{outcomes:?}"
    );
    assert_eq!(stock(store, item).await, 10);
    let history = store.orders().get(order).await.unwrap().unwrap().history;
    assert_eq!(history.len(), 2);
}

async fn notifications_are_recorded_once_per_event_and_only_for_the_owner(store: &Store) {
    migrated(store).await;
    let (ann, _, order) = placed_order(store, "eve", 5, 1).await;
    let other = user(store, "mallory").await;
    let notifications = store.notifications();
    let placed_at = time::OffsetDateTime::now_utc() - time::Duration::seconds(10);
    let new = |event_id: i64, user_id, kind| NewNotification {
        handler: "notifications",
        event_id,
        user_id,
        order_id: order,
        kind,
        message: "Your order moved",
        at: placed_at + time::Duration::seconds(event_id),
    };
    // The handler sees the later change first: the listing still follows the changes' times.
    assert_eq!(
        notifications
            .record(new(2, ann, OrderStatus::Paid))
            .await
            .unwrap(),
        Applied::Done
    );
    assert_eq!(
        notifications
            .record(new(1, ann, OrderStatus::Placed))
            .await
            .unwrap(),
        Applied::Done
    );
    assert_eq!(
        notifications
            .record(new(1, ann, OrderStatus::Placed))
            .await
            .unwrap(),
        Applied::Duplicate
    );
    // An event naming an order of someone else notifies no one.
    assert_eq!(
        notifications
            .record(new(3, other, OrderStatus::Shipped))
            .await
            .unwrap(),
        Applied::Skipped
    );

    let page = notifications
        .list_for_user(ann, Page::new(1, 10).unwrap())
        .await
        .unwrap();
    assert_eq!(page.total, 2);
    let kinds: Vec<OrderStatus> = page.items.iter().map(|n| n.kind).collect();
    assert_eq!(
        kinds,
        [OrderStatus::Paid, OrderStatus::Placed],
        "newest first"
    );
    assert_eq!(
        notifications
            .list_for_user(other, Page::new(1, 10).unwrap())
            .await
            .unwrap()
            .total,
        0
    );
    let oldest_first: Vec<OrderStatus> = notifications
        .for_order(order)
        .await
        .unwrap()
        .iter()
        .map(|n| n.kind)
        .collect();
    assert_eq!(oldest_first, [OrderStatus::Placed, OrderStatus::Paid]);
    assert_eq!(notifications.count().await.unwrap(), (2, 2));
}

async fn relay_stamps_only_what_the_bus_confirmed(store: &Store) {
    migrated(store).await;
    for name in ["f1", "f2", "f3"] {
        placed_order(store, name, 5, 1).await;
    }
    assert_eq!(store.outbox().pending().await.unwrap().0, 3);

    // The bus confirms the first event, then fails.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (stamped, error) = {
        let seen = Arc::clone(&seen);
        store
            .outbox()
            .relay(10, LEASE, |batch| async move {
                let ids: Vec<i64> = batch.iter().map(|m| m.id).collect();
                seen.lock().unwrap().extend(ids.iter().copied());
                (ids[..1].to_vec(), Some("bus down"))
            })
            .await
            .unwrap()
    };
    assert_eq!((stamped, error), (1, Some("bus down")));
    let first_batch = seen.lock().unwrap().clone();
    assert_eq!(first_batch.len(), 3);
    assert!(first_batch.windows(2).all(|w| w[0] < w[1]), "id order");
    assert_eq!(store.outbox().pending().await.unwrap().0, 2);

    // The next pass starts after the stamped one and takes the rest.
    let (stamped, error) = store
        .outbox()
        .relay(10, LEASE, |batch| async move {
            let ids: Vec<i64> = batch.iter().map(|m| m.id).collect();
            (ids, None::<&str>)
        })
        .await
        .unwrap();
    assert_eq!((stamped, error), (2, None));
    let (pending, oldest) = store.outbox().pending().await.unwrap();
    assert_eq!((pending, oldest), (0, None));
    let (stamped, _) = store
        .outbox()
        .relay(10, LEASE, |_| async { (Vec::new(), None::<&str>) })
        .await
        .unwrap();
    assert_eq!(stamped, 0, "nothing left");
}

async fn sent_events_are_pruned_by_age(store: &Store) {
    migrated(store).await;
    placed_order(store, "g1", 5, 1).await;
    placed_order(store, "g2", 5, 1).await;
    let first = store.outbox().unsent(1).await.unwrap()[0].id;
    assert!(store.outbox().mark_sent(first).await.unwrap());
    let past = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    assert_eq!(store.outbox().prune(past).await.unwrap(), 0, "too young");
    let future = time::OffsetDateTime::now_utc() + time::Duration::seconds(5);
    assert_eq!(
        store.outbox().prune(future).await.unwrap(),
        1,
        "only the sent one"
    );
    assert_eq!(store.outbox().pending().await.unwrap().0, 1);
}

/// Two relays on PostgreSQL at once take disjoint batches: the first has claimed its rows
/// while it publishes, the second skips them.
#[tokio::test]
async fn concurrent_relays_share_the_outbox_on_postgres() {
    let Some(t) = crate::harness::postgres().await else {
        return;
    };
    let store = &t.store;
    migrated(store).await;
    for name in ["h1", "h2", "h3", "h4"] {
        placed_order(store, name, 5, 1).await;
    }
    let (got_batch, batch_taken) = tokio::sync::oneshot::channel::<Vec<i64>>();
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let first = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .outbox()
                .relay(2, LEASE, |batch| async move {
                    let ids: Vec<i64> = batch.iter().map(|m| m.id).collect();
                    got_batch.send(ids.clone()).unwrap();
                    // Publishing takes a while: the rows stay claimed meanwhile.
                    released.await.unwrap();
                    (ids, None::<&str>)
                })
                .await
                .unwrap()
        })
    };
    let first_ids = batch_taken.await.unwrap();
    let second_ids = Arc::new(Mutex::new(Vec::new()));
    let (stamped, _) = {
        let second_ids = Arc::clone(&second_ids);
        store
            .outbox()
            .relay(10, LEASE, |batch| async move {
                let ids: Vec<i64> = batch.iter().map(|m| m.id).collect();
                second_ids.lock().unwrap().extend(ids.iter().copied());
                (ids, None::<&str>)
            })
            .await
            .unwrap()
    };
    release.send(()).unwrap();
    assert_eq!(first.await.unwrap().0, 2);
    let second_ids = second_ids.lock().unwrap().clone();
    assert_eq!(stamped, 2);
    assert_eq!(first_ids.len(), 2);
    assert!(
        first_ids.iter().all(|id| !second_ids.contains(id)),
        "{first_ids:?} vs {second_ids:?}"
    );
    assert_eq!(store.outbox().pending().await.unwrap().0, 0);
}

/// While a relay waits for the bus, it holds no transaction and no row lock: checkouts and
/// handlers writing the outbox, and anyone updating the very rows being published, never
/// wait for a publish. Once published, the batch is stamped.
#[tokio::test]
async fn a_relay_holds_no_lock_while_it_publishes() {
    let Some(t) = crate::harness::postgres().await else {
        return;
    };
    let store = &t.store;
    migrated(store).await;
    for name in ["l1", "l2"] {
        placed_order(store, name, 5, 1).await;
    }
    let (got_batch, batch_taken) = tokio::sync::oneshot::channel::<Vec<i64>>();
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let relay = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .outbox()
                .relay(10, LEASE, |batch| async move {
                    let ids: Vec<i64> = batch.iter().map(|m| m.id).collect();
                    got_batch.send(ids.clone()).unwrap();
                    released.await.unwrap();
                    (ids, None::<&str>)
                })
                .await
                .unwrap()
        })
    };
    assert_eq!(batch_taken.await.unwrap().len(), 2);
    // Every row of the outbox, the batch's included, can be locked and written at once.
    strata_store::testing::execute(
        store,
        "SET lock_timeout = '300ms'; \
         UPDATE outbox SET payload = payload; \
         SET lock_timeout = 0",
    )
    .await
    .expect("the batch's rows are not locked during the publish");
    // A new event is written while the publish waits; it is not part of the claimed batch.
    placed_order(store, "l3", 5, 1).await;
    release.send(()).unwrap();
    assert_eq!(relay.await.unwrap().0, 2);
    assert_eq!(store.outbox().pending().await.unwrap().0, 1);
}

both_dialects!(upgrading_from_0004_keeps_orders_lines_and_ids);

/// A store migrated by the build before the event pipeline, holding an order, takes migration
/// 0005 (on SQLite a rebuild of `orders` and `order_status_history`) without losing a row, a
/// line (no cascade from the rebuilt table) or its id counters, and then takes the new status.
async fn upgrading_from_0004_keeps_orders_lines_and_ids(store: &Store) {
    strata_store::testing::migrate_to(store, 4).await.unwrap();
    // Today's checkout also writes the outbox's `traceparent` (0007): the old schema lends it
    // the column for this one order, and loses it again before the upgrade adds it back.
    let column = |sql| strata_store::testing::execute(store, sql);
    column("ALTER TABLE outbox ADD COLUMN traceparent TEXT")
        .await
        .unwrap();
    let (_, item, order) = placed_order(store, "up", 5, 2).await;
    column("ALTER TABLE outbox DROP COLUMN traceparent")
        .await
        .unwrap();
    let before = store.orders().get(order).await.unwrap().unwrap();
    assert!(!store.migrations_applied().await.unwrap());

    migrated(store).await;
    assert!(store.migrations_applied().await.unwrap());
    let after = store.orders().get(order).await.unwrap().unwrap();
    assert_eq!(after, before, "order, lines and history kept");
    assert_eq!(after.lines.len(), 1);
    assert_eq!(stock(store, item).await, 3);

    // The rebuilt tables keep their foreign keys and never reuse an id.
    let decline = step(
        "payment",
        1,
        order,
        OrderStatus::Placed,
        OrderStatus::PaymentFailed,
    );
    assert_eq!(
        store.orders().advance(decline).await.unwrap(),
        Applied::Done
    );
    assert_eq!(stock(store, item).await, 5);
    let (_, _, next) = placed_order(store, "up2", 5, 1).await;
    assert!(next > order, "{next} after {order}");
    let history = store.orders().get(order).await.unwrap().unwrap().history;
    assert_eq!(history.len(), 2);
    assert!(
        strata_store::testing::execute(store, "DELETE FROM users")
            .await
            .is_err(),
        "orders still reference their users"
    );
}
