//! The SQLite and PostgreSQL migrations must describe the same schema: this reads both back
//! from the database catalogs and compares them (see `strata_store::testing::Schema` for what
//! is compared and the type mapping).

use strata_store::Store;
use strata_store::testing::{self, Schema};

use crate::harness;

/// Both dialects, migrated; `None` when PostgreSQL is not available (skipped loudly).
async fn migrated_pair() -> Option<(harness::TestStore, harness::TestStore)> {
    let pg = harness::postgres().await?;
    let lite = harness::sqlite().await;
    lite.store.migrate().await.unwrap();
    pg.store.migrate().await.unwrap();
    Some((lite, pg))
}

async fn introspect(store: &Store) -> Schema {
    Schema::introspect(store).await.unwrap()
}

#[tokio::test]
async fn sqlite_and_postgres_schemas_are_equivalent() {
    let Some((lite, pg)) = migrated_pair().await else {
        return;
    };
    let sqlite = introspect(&lite.store).await;
    let postgres = introspect(&pg.store).await;

    let diff = sqlite.diff(&postgres, "sqlite", "postgres");
    assert!(
        diff.is_empty(),
        "schemas differ:\n  {}\nsqlite: {sqlite:#?}\npostgres: {postgres:#?}",
        diff.join("\n  ")
    );

    // The comparison saw real tables, not two empty catalogs.
    let products = &sqlite.tables["products"];
    assert_eq!(products.columns.len(), 9);
    assert_eq!(products.primary_key, ["id"]);
    assert!(products.columns["id"].generated);
    assert_eq!(products.columns["created_at"].ty, "timestamptz");
    assert!(products.unique.contains(&vec!["sku".to_owned()]));
    assert_eq!(products.checks["products_price_nonneg"], "price_cents>=0");
    assert_eq!(products.checks["products_stock_nonneg"], "stock>=0");
    assert_eq!(
        products.indexes["products_category_idx"].columns,
        ["category"]
    );
    assert_eq!(products.constraints.len(), 4, "{:?}", products.constraints);
    // Full-text search exists on both sides, and its internals are left out of the comparison.
    assert!(products.full_text && postgres.tables["products"].full_text);
    assert!(
        !sqlite.tables.keys().any(|t| t.contains("fts")),
        "{:?}",
        sqlite.tables.keys()
    );
    assert!(!postgres.tables["products"].columns.contains_key("search"));

    let users = &sqlite.tables["users"];
    assert_eq!(users.primary_key, ["id"]);
    assert!(users.columns["id"].generated);
    assert!(users.unique.contains(&vec!["email".to_owned()]));
    assert_eq!(
        users.checks["users_role_check"],
        "rolein'customer','support','admin'"
    );
    assert!(!users.full_text);
}

#[tokio::test]
async fn schema_drift_is_reported() {
    let Some((lite, pg)) = migrated_pair().await else {
        return;
    };
    testing::execute(&lite.store, "ALTER TABLE products ADD COLUMN note TEXT")
        .await
        .unwrap();
    testing::execute(
        &pg.store,
        "ALTER TABLE products DROP CONSTRAINT products_stock_nonneg",
    )
    .await
    .unwrap();
    testing::execute(
        &pg.store,
        "ALTER TABLE products ALTER COLUMN name DROP NOT NULL",
    )
    .await
    .unwrap();

    let diff =
        introspect(&lite.store)
            .await
            .diff(&introspect(&pg.store).await, "sqlite", "postgres");
    let has = |needle: &str| diff.iter().any(|d| d.contains(needle));
    assert!(has("products.note: column only in sqlite"), "{diff:#?}");
    assert!(has("products_stock_nonneg"), "{diff:#?}");
    assert!(has("products.name:"), "{diff:#?}");
}
