//! Catalog search on both dialects: the full-text index follows inserts, updates and deletes,
//! and filters, sorts and pages combine.

use strata_store::{
    NewProduct, Page, ProductQuery, ProductSort, ProductUpdate, SearchText, Store, testing,
};

use crate::harness::{both_dialects, migrated};

both_dialects!(
    the_index_follows_every_write,
    filters_sorts_and_pages_combine,
);

fn search(text: &str) -> ProductQuery {
    ProductQuery {
        text: SearchText::parse(text),
        sort: ProductSort::Relevance,
        ..ProductQuery::default()
    }
}

async fn ids(store: &Store, query: &ProductQuery) -> Vec<i64> {
    store
        .products()
        .search(query)
        .await
        .unwrap()
        .items
        .iter()
        .map(|p| p.id)
        .collect()
}

fn product(sku: &str, name: &str, description: &str, price_cents: i64) -> NewProduct {
    NewProduct {
        sku: sku.into(),
        name: name.into(),
        description: description.into(),
        category: "test".into(),
        price_cents,
        stock: 1,
    }
}

async fn the_index_follows_every_write(store: &Store) {
    migrated(store).await;
    let repo = store.products();
    let lamp = repo
        .insert(&product("L", "Brass Lamp", "A warm-white desk light.", 100))
        .await
        .unwrap();
    let shade = repo
        .insert(&product("S", "Paper Shade", "Fits any brass lamp.", 50))
        .await
        .unwrap();
    assert_eq!(ids(store, &search("brass lamp")).await, [lamp.id, shade.id]);
    // Relevance: the name match first, even with a higher id.
    assert_eq!(ids(store, &search("shade")).await, [shade.id]);
    assert_eq!(
        ids(store, &search("lam")).await,
        [lamp.id, shade.id],
        "prefix"
    );
    assert_eq!(ids(store, &search("warm white")).await, [lamp.id]);
    assert!(
        ids(store, &search("lam brass")).await.is_empty(),
        "prefix on the last term only"
    );

    repo.update(
        shade.id,
        &ProductUpdate {
            name: Some("Linen Shade".into()),
            description: Some("Fits most lamps.".into()),
            ..ProductUpdate::default()
        },
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(ids(store, &search("brass")).await, [lamp.id]);
    assert_eq!(ids(store, &search("linen")).await, [shade.id]);
    // A price change leaves the index alone but the row changes.
    let cheaper = repo
        .update(
            lamp.id,
            &ProductUpdate {
                price_cents: Some(80),
                ..ProductUpdate::default()
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cheaper.price_cents, 80);
    assert_eq!(cheaper.name, "Brass Lamp");
    assert!(cheaper.updated_at >= lamp.updated_at);
    assert_eq!(
        repo.update(999_999, &ProductUpdate::default())
            .await
            .unwrap(),
        None
    );
    testing::execute(store, "DELETE FROM products WHERE sku = 'L'")
        .await
        .unwrap();
    assert!(ids(store, &search("brass")).await.is_empty());
    assert_eq!(ids(store, &search("lamps")).await, [shade.id]);
}

async fn filters_sorts_and_pages_combine(store: &Store) {
    migrated(store).await;
    store.seed_demo_catalog().await.unwrap();
    let query = ProductQuery {
        category: Some("books".into()),
        min_price: Some(1500),
        max_price: Some(4000),
        sort: ProductSort::PriceDesc,
        page: Page::new(1, 100).unwrap(),
        ..ProductQuery::default()
    };
    let page = store.products().search(&query).await.unwrap();
    assert_eq!(page.total, page.items.len() as i64);
    assert!(page.total > 0);
    assert!(
        page.items
            .iter()
            .all(|p| p.category == "books" && (1500..=4000).contains(&p.price_cents))
    );
    assert!(
        page.items
            .windows(2)
            .all(|w| w[0].price_cents >= w[1].price_cents)
    );

    // Two pages of three partition the first six.
    let first = ProductQuery {
        page: Page::new(1, 3).unwrap(),
        ..query.clone()
    };
    let second = ProductQuery {
        page: Page::new(2, 3).unwrap(),
        ..query.clone()
    };
    let mut both = ids(store, &first).await;
    both.extend(ids(store, &second).await);
    let expected: Vec<i64> = page.items.iter().take(6).map(|p| p.id).collect();
    assert_eq!(both, expected);
}
