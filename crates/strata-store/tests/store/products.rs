//! The product repository on both dialects.

use std::collections::HashSet;

use strata_store::{ConstraintKind, NewProduct, Page, Store, StoreError};
use time::OffsetDateTime;

use crate::harness::{both_dialects, migrated};

both_dialects!(
    pages_partition_the_catalog,
    unknown_id_is_none,
    known_id_is_found,
    checks_reject_negative_price_and_stock,
    duplicate_sku_is_a_unique_violation,
    inserted_product_serializes_with_rfc3339_times,
);

async fn pages_partition_the_catalog(store: &Store) {
    migrated(store).await;
    store.seed_demo_catalog().await.unwrap();
    let total = store.products().count().await.unwrap();
    let per_page = 7_u32;
    let pages = u32::try_from((total + 6) / 7).unwrap();
    assert!(
        total % 7 != 0,
        "pick a page size that leaves a short last page"
    );

    let mut seen = HashSet::new();
    let mut last_id = 0;
    for number in 1..=pages {
        let page = store
            .products()
            .list(Page::new(number, per_page).unwrap())
            .await
            .unwrap();
        assert_eq!(page.total, total);
        assert_eq!((page.page, page.per_page), (number, per_page));
        let expected = if number == pages {
            (total % 7) as usize
        } else {
            7
        };
        assert_eq!(page.items.len(), expected, "page {number}");
        for product in page.items {
            assert!(product.id > last_id, "ids ascend across pages");
            last_id = product.id;
            assert!(seen.insert(product.id), "id {} on two pages", product.id);
        }
    }
    assert_eq!(seen.len() as i64, total);

    let beyond = store
        .products()
        .list(Page::new(pages + 1, per_page).unwrap())
        .await
        .unwrap();
    assert!(beyond.items.is_empty());
    assert_eq!(beyond.total, total);
}

async fn unknown_id_is_none(store: &Store) {
    migrated(store).await;
    store.seed_demo_catalog().await.unwrap();
    assert_eq!(store.products().get(999_999).await.unwrap(), None);
    assert_eq!(store.products().get(-1).await.unwrap(), None);
}

async fn known_id_is_found(store: &Store) {
    migrated(store).await;
    store.seed_demo_catalog().await.unwrap();
    let first = store
        .products()
        .list(Page::new(1, 3).unwrap())
        .await
        .unwrap();
    for listed in first.items {
        let got = store.products().get(listed.id).await.unwrap();
        assert_eq!(got.as_ref(), Some(&listed));
    }
}

fn product(sku: &str, price_cents: i64, stock: i64) -> NewProduct {
    NewProduct {
        sku: sku.into(),
        name: "Test Lamp".into(),
        description: String::new(),
        category: "test".into(),
        price_cents,
        stock,
    }
}

fn assert_check_violation(result: Result<strata_store::Product, StoreError>, name: &str) {
    match result {
        Err(StoreError::Constraint {
            kind: ConstraintKind::Check,
            constraint,
            ..
        }) => assert_eq!(constraint, name),
        other => panic!("expected check {name} to fail, got {other:?}"),
    }
}

async fn checks_reject_negative_price_and_stock(store: &Store) {
    migrated(store).await;
    let repo = store.products();
    assert_check_violation(
        repo.insert(&product("NEG-1", -1, 5)).await,
        "products_price_nonneg",
    );
    assert_check_violation(
        repo.insert(&product("NEG-2", 100, -1)).await,
        "products_stock_nonneg",
    );
    assert_eq!(
        repo.count().await.unwrap(),
        0,
        "rejected rows are not stored"
    );
    // Zero is allowed on both.
    repo.insert(&product("ZERO", 0, 0)).await.unwrap();
    assert_eq!(repo.count().await.unwrap(), 1);
}

async fn duplicate_sku_is_a_unique_violation(store: &Store) {
    migrated(store).await;
    let repo = store.products();
    repo.insert(&product("DUP", 100, 1)).await.unwrap();
    let err = repo.insert(&product("DUP", 200, 2)).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Constraint {
                kind: ConstraintKind::Unique,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!err.is_transient());
}

async fn inserted_product_serializes_with_rfc3339_times(store: &Store) {
    migrated(store).await;
    let before = OffsetDateTime::now_utc() - time::Duration::seconds(60);
    let inserted = store
        .products()
        .insert(&product("JSON-1", 1234, 5))
        .await
        .unwrap();
    assert!(inserted.id > 0);
    assert_eq!(inserted.description, "", "description defaults to empty");
    assert!(inserted.created_at > before, "{}", inserted.created_at);
    assert_eq!(inserted.created_at, inserted.updated_at);
    assert_eq!(inserted.created_at.offset(), time::UtcOffset::UTC);

    let json = serde_json::to_value(&inserted).unwrap();
    let created = json["created_at"].as_str().expect("a string");
    let parsed =
        OffsetDateTime::parse(created, &time::format_description::well_known::Rfc3339).unwrap();
    assert_eq!(parsed, inserted.created_at);
    assert_eq!(json["price_cents"], 1234);
}
