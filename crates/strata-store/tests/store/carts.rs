//! The cart repository on both dialects: lines, limits, owners and the anonymous merge.

use strata_store::{
    CartError, CartOwner, MAX_CART_LINES, MAX_LINE_QUANTITY, NewProduct, NewUser, Store, UserRole,
};

use strata_store::testing::execute;

use crate::harness::{both_dialects, migrated};

both_dialects!(
    lines_are_added_set_and_removed,
    quantities_and_lines_are_limited,
    unknown_products_are_refused,
    carts_belong_to_their_owner,
    anonymous_carts_merge_into_the_users_cart,
    merging_caps_quantities_and_line_count,
    concurrent_adds_respect_the_line_limit,
    preloading_fills_only_an_empty_store,
    preloading_skips_a_store_with_carts,
);

/// Inserts a user with a made-up email and returns its id.
pub async fn user(store: &Store, name: &str) -> i64 {
    store
        .users()
        .insert(&NewUser {
            email: format!("{name}@example.test"),
            display_name: name.into(),
            password_hash: "not-a-real-hash".into(),
            role: UserRole::Customer,
        })
        .await
        .unwrap()
        .id
}

/// Inserts a product and returns its id.
pub async fn product(store: &Store, sku: &str, price_cents: i64, stock: i64) -> i64 {
    store
        .products()
        .insert(&NewProduct {
            sku: sku.into(),
            name: format!("Product {sku}"),
            description: String::new(),
            category: "test".into(),
            price_cents,
            stock,
        })
        .await
        .unwrap()
        .id
}

async fn quantities(store: &Store, owner: CartOwner<'_>) -> Vec<(i64, i64)> {
    store
        .carts()
        .lines(owner)
        .await
        .unwrap()
        .into_iter()
        .map(|l| (l.product_id, l.quantity))
        .collect()
}

async fn lines_are_added_set_and_removed(store: &Store) {
    migrated(store).await;
    let alice = CartOwner::User(user(store, "alice").await);
    let lamp = product(store, "LAMP", 1999, 5).await;
    let desk = product(store, "DESK", 9999, 2).await;
    let carts = store.carts();

    assert!(quantities(store, alice).await.is_empty(), "no cart yet");
    carts.add(alice, lamp, 2).await.unwrap();
    carts.add(alice, desk, 1).await.unwrap();
    carts.add(alice, lamp, 3).await.unwrap();
    assert_eq!(quantities(store, alice).await, [(lamp, 5), (desk, 1)]);

    let lines = carts.lines(alice).await.unwrap();
    assert_eq!(lines[0].sku, "LAMP");
    assert_eq!(lines[0].unit_price_cents, 1999);
    assert_eq!(lines[0].stock, 5);

    carts.set(alice, lamp, 7).await.unwrap();
    assert_eq!(quantities(store, alice).await, [(lamp, 7), (desk, 1)]);
    carts.set(alice, lamp, 0).await.unwrap();
    assert_eq!(quantities(store, alice).await, [(desk, 1)]);
    carts.remove(alice, desk).await.unwrap();
    assert!(quantities(store, alice).await.is_empty());

    assert!(matches!(
        carts.remove(alice, desk).await,
        Err(CartError::NotInCart(id)) if id == desk
    ));
    assert!(matches!(
        carts.set(alice, lamp, 3).await,
        Err(CartError::NotInCart(_))
    ));
}

async fn quantities_and_lines_are_limited(store: &Store) {
    migrated(store).await;
    let bob = CartOwner::User(user(store, "bob").await);
    let carts = store.carts();
    let first = product(store, "P-0", 100, 1000).await;
    carts.add(bob, first, MAX_LINE_QUANTITY).await.unwrap();
    assert!(matches!(
        carts.add(bob, first, 1).await,
        Err(CartError::QuantityOutOfRange { quantity: 100, .. })
    ));
    assert!(matches!(
        carts.set(bob, first, MAX_LINE_QUANTITY + 1).await,
        Err(CartError::QuantityOutOfRange { .. })
    ));
    assert_eq!(
        quantities(store, bob).await,
        [(first, i64::from(MAX_LINE_QUANTITY))]
    );

    for n in 1..MAX_CART_LINES {
        let id = product(store, &format!("P-{n}"), 100, 10).await;
        carts.add(bob, id, 1).await.unwrap();
    }
    let extra = product(store, "P-EXTRA", 100, 10).await;
    assert!(matches!(
        carts.add(bob, extra, 1).await,
        Err(CartError::TooManyLines)
    ));
    // Existing lines can still change.
    carts.set(bob, first, 1).await.unwrap();
    assert_eq!(carts.lines(bob).await.unwrap().len(), MAX_CART_LINES);
}

async fn unknown_products_are_refused(store: &Store) {
    migrated(store).await;
    let carol = CartOwner::User(user(store, "carol").await);
    assert!(matches!(
        store.carts().add(carol, 999_999, 1).await,
        Err(CartError::UnknownProduct(999_999))
    ));
    assert!(quantities(store, carol).await.is_empty());
}

async fn carts_belong_to_their_owner(store: &Store) {
    migrated(store).await;
    let a = CartOwner::User(user(store, "a").await);
    let b = CartOwner::User(user(store, "b").await);
    let anon = CartOwner::Anonymous("0123456789abcdef0123456789abcdef");
    let lamp = product(store, "LAMP", 1999, 5).await;
    let desk = product(store, "DESK", 9999, 2).await;
    let carts = store.carts();
    carts.add(a, lamp, 1).await.unwrap();
    carts.add(b, desk, 2).await.unwrap();
    carts.add(anon, lamp, 3).await.unwrap();
    assert_eq!(quantities(store, a).await, [(lamp, 1)]);
    assert_eq!(quantities(store, b).await, [(desk, 2)]);
    assert_eq!(quantities(store, anon).await, [(lamp, 3)]);
    assert!(
        carts
            .anonymous_exists("0123456789abcdef0123456789abcdef")
            .await
            .unwrap()
    );
    assert!(!carts.anonymous_exists("nope").await.unwrap());
}

async fn anonymous_carts_merge_into_the_users_cart(store: &Store) {
    migrated(store).await;
    let dana = user(store, "dana").await;
    let token = "feedfacefeedfacefeedfacefeedface";
    let anon = CartOwner::Anonymous(token);
    let lamp = product(store, "LAMP", 1999, 5).await;
    let desk = product(store, "DESK", 9999, 2).await;
    let carts = store.carts();
    carts.add(CartOwner::User(dana), lamp, 1).await.unwrap();
    carts.add(anon, lamp, 2).await.unwrap();
    carts.add(anon, desk, 1).await.unwrap();

    let outcome = carts.merge_anonymous(token, dana).await.unwrap();
    assert!(outcome.found);
    assert_eq!((outcome.merged, outcome.capped, outcome.dropped), (2, 0, 0));
    assert_eq!(
        quantities(store, CartOwner::User(dana)).await,
        [(lamp, 3), (desk, 1)]
    );
    assert!(!carts.anonymous_exists(token).await.unwrap());
    assert!(quantities(store, anon).await.is_empty());

    let again = carts.merge_anonymous(token, dana).await.unwrap();
    assert!(!again.found);

    // A user without a cart gets one from the merge.
    let erin = user(store, "erin").await;
    carts.add(anon, desk, 2).await.unwrap();
    carts.merge_anonymous(token, erin).await.unwrap();
    assert_eq!(quantities(store, CartOwner::User(erin)).await, [(desk, 2)]);
}

async fn merging_caps_quantities_and_line_count(store: &Store) {
    migrated(store).await;
    let fay = user(store, "fay").await;
    let me = CartOwner::User(fay);
    let token = "00000000000000000000000000000001";
    let anon = CartOwner::Anonymous(token);
    let carts = store.carts();
    let mut ids = Vec::new();
    for n in 0..MAX_CART_LINES {
        ids.push(product(store, &format!("M-{n}"), 100, 10).await);
    }
    let other = product(store, "M-OTHER", 100, 10).await;
    for id in &ids[..MAX_CART_LINES - 1] {
        carts.add(me, *id, 1).await.unwrap();
    }
    carts.add(me, ids[0], 90).await.unwrap();
    carts.add(anon, ids[0], 20).await.unwrap();
    carts.add(anon, ids[MAX_CART_LINES - 1], 1).await.unwrap();
    carts.add(anon, other, 1).await.unwrap();

    let outcome = carts.merge_anonymous(token, fay).await.unwrap();
    assert_eq!((outcome.merged, outcome.capped, outcome.dropped), (2, 1, 1));
    let lines = quantities(store, me).await;
    assert_eq!(lines.len(), MAX_CART_LINES);
    assert_eq!(lines[0], (ids[0], i64::from(MAX_LINE_QUANTITY)));
    assert!(!lines.iter().any(|(id, _)| *id == other));
}

async fn concurrent_adds_respect_the_line_limit(store: &Store) {
    migrated(store).await;
    let gus = CartOwner::User(user(store, "gus").await);
    let mut ids = Vec::new();
    for n in 0..MAX_CART_LINES + 10 {
        ids.push(product(store, &format!("C-{n}"), 100, 10).await);
    }
    let adds = ids.iter().map(|id| {
        let store = store.clone();
        let id = *id;
        async move { store.carts().add(gus, id, 1).await }
    });
    let results = futures_join_all(adds).await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let full = results
        .iter()
        .filter(|r| matches!(r, Err(CartError::TooManyLines)))
        .count();
    assert_eq!((ok, full), (MAX_CART_LINES, 10), "{results:?}");
    assert_eq!(
        store.carts().lines(gus).await.unwrap().len(),
        MAX_CART_LINES
    );
}

/// Runs futures concurrently on the runtime and collects their outputs in order.
pub async fn futures_join_all<F>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        out.push(handle.await.unwrap());
    }
    out
}

/// `carts.preload` in shared mode: N carts of 1 to 3 lines, only into a store without carts.
async fn preloading_fills_only_an_empty_store(store: &Store) {
    migrated(store).await;
    for i in 0..12 {
        product(store, &format!("PRE-{i}"), 100, 10).await;
    }
    let carts = store.carts();
    assert_eq!(carts.preload_anonymous(0).await.unwrap(), 0);
    assert_eq!(carts.preload_anonymous(250).await.unwrap(), 250);
    // Rows touched by a no-op update: the carts and their lines (cart i has i % 3 + 1).
    let held = execute(
        store,
        "UPDATE carts SET anon_token = anon_token WHERE anon_token IS NOT NULL",
    )
    .await
    .unwrap();
    assert_eq!(held, 250);
    let lines = execute(store, "UPDATE cart_items SET quantity = quantity")
        .await
        .unwrap();
    assert_eq!(lines, (1..=250u64).map(|id| id % 3 + 1).sum::<u64>());
    // Carts are there now: a second start adds none.
    assert_eq!(carts.preload_anonymous(250).await.unwrap(), 0);
}

/// A store that already holds a cart gets no preloaded carts.
async fn preloading_skips_a_store_with_carts(store: &Store) {
    migrated(store).await;
    let owner = CartOwner::Anonymous("0123456789abcdef0123456789abcdef");
    let id = product(store, "ONE", 100, 10).await;
    store.carts().add(owner, id, 1).await.unwrap();
    assert_eq!(store.carts().preload_anonymous(100).await.unwrap(), 0);
    assert_eq!(quantities(store, owner).await, vec![(id, 1)]);
}
