//! The demo catalog seed on both dialects.

use std::collections::BTreeSet;

use strata_store::{Page, Store, demo_catalog};

use crate::harness::{both_dialects, migrated};

both_dialects!(
    seed_runs_once,
    racing_seeds_insert_each_product_once,
    seed_skips_a_non_empty_catalog
);

async fn all_products(store: &Store) -> Vec<strata_store::Product> {
    let mut all = Vec::new();
    for number in 1.. {
        let page = store
            .products()
            .list(Page::new(number, Page::MAX_PER_PAGE).unwrap())
            .await
            .unwrap();
        if page.items.is_empty() {
            break;
        }
        all.extend(page.items);
    }
    all
}

async fn seed_runs_once(store: &Store) {
    migrated(store).await;
    let inserted = store.seed_demo_catalog().await.unwrap();
    assert!(inserted >= 60, "{inserted}");
    assert_eq!(inserted as usize, demo_catalog().len());

    let all = all_products(store).await;
    assert_eq!(all.len() as u64, inserted);
    let categories: BTreeSet<_> = all.iter().map(|p| p.category.as_str()).collect();
    assert!(categories.len() >= 6, "{categories:?}");
    assert!(all.iter().all(|p| p.stock > 0 && p.price_cents > 0));

    assert_eq!(store.seed_demo_catalog().await.unwrap(), 0);
    assert_eq!(store.products().count().await.unwrap(), inserted as i64);
}

async fn racing_seeds_insert_each_product_once(store: &Store) {
    migrated(store).await;
    let (a, b, c) = tokio::join!(
        store.seed_demo_catalog(),
        store.seed_demo_catalog(),
        store.seed_demo_catalog()
    );
    let total = a.unwrap() + b.unwrap() + c.unwrap();
    assert_eq!(total as usize, demo_catalog().len());
    assert_eq!(store.products().count().await.unwrap(), total as i64);
}

async fn seed_skips_a_non_empty_catalog(store: &Store) {
    migrated(store).await;
    let mut own = demo_catalog().remove(0);
    own.sku = "OWN-1".into();
    store.products().insert(&own).await.unwrap();
    assert_eq!(store.seed_demo_catalog().await.unwrap(), 0);
    assert_eq!(store.products().count().await.unwrap(), 1);
}
