//! Backups of the embedded store: an online copy taken under concurrent checkouts is a
//! consistent snapshot, a restore puts it back, and a restore refuses a store in use and files
//! that are not strata stores of this build, leaving the database as it was.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use strata_store::testing::{self, TempFileGuard, pipeline};
use strata_store::{BackupError, EmbeddedDatabase, NewUser, Store, StoreOptions, UserRole};

/// A file name in the system's temporary directory, and every file SQLite and the store make
/// next to it, removed on drop.
struct TempPath(PathBuf);

impl TempPath {
    fn new(label: &str) -> Self {
        Self(std::env::temp_dir().join(format!("strata-{label}-{}.db", uuid::Uuid::new_v4())))
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm", "-journal", ".lock"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.0.display()));
        }
    }
}

/// A migrated, seeded store on a fresh file.
async fn seeded() -> (Store, TempFileGuard) {
    let (store, guard) = testing::fresh_sqlite().await;
    store.migrate().await.unwrap();
    store.seed_demo_catalog().await.unwrap();
    (store, guard)
}

async fn open(path: &Path) -> Store {
    Store::connect(
        &format!("sqlite://{}", path.display()),
        StoreOptions::default(),
    )
    .await
    .unwrap()
}

async fn add_user(store: &Store, email: &str) {
    store
        .users()
        .insert(&NewUser {
            email: email.into(),
            display_name: "Backed Up".into(),
            password_hash: "not-a-real-hash".into(),
            role: UserRole::Customer,
        })
        .await
        .unwrap();
}

/// Every order of a snapshot (ids 1..=n, gap-free: SQLite commits them in id order) with its
/// lines, and stock that matches them: each product's stock plus what its order lines sold is
/// what it started with. Returns n.
async fn check_snapshot(store: &Store, products: &[i64]) -> i64 {
    let orders = store.orders().count().await.unwrap();
    let mut sold: HashMap<i64, i64> = HashMap::new();
    for id in 1..=orders {
        let order = store
            .orders()
            .get(id)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("order {id} of {orders} is missing"));
        assert!(!order.lines.is_empty(), "order {id} has no lines");
        for line in &order.lines {
            *sold.entry(line.product_id).or_default() += line.quantity;
        }
    }
    for id in products {
        let stock = store.products().get(*id).await.unwrap().unwrap().stock;
        assert_eq!(
            stock + sold.get(id).copied().unwrap_or(0),
            pipeline::STOCK,
            "product {id}: stock {stock} does not match its {orders} orders"
        );
    }
    orders
}

#[tokio::test]
async fn a_backup_under_concurrent_checkouts_is_a_consistent_snapshot() {
    const ORDERS: usize = 400;
    let (store, guard) = testing::fresh_sqlite().await;
    store.migrate().await.unwrap();
    let products = pipeline::products(&store, 3).await;
    let database = EmbeddedDatabase::new(guard.path());

    let writer = {
        let (store, products) = (store.clone(), products.clone());
        tokio::spawn(async move { pipeline::place_orders(&store, &products, 8, ORDERS).await })
    };
    let mut seen = Vec::new();
    loop {
        let finished = writer.is_finished();
        let file = TempPath::new("backup");
        let summary = database.backup(&file.0, false).await.unwrap();
        assert_eq!(summary.path, file.0);
        assert_eq!(summary.bytes, std::fs::metadata(&file.0).unwrap().len());
        let copy = open(&file.0).await;
        let orders = check_snapshot(&copy, &products).await;
        copy.close().await.unwrap();
        assert!(
            summary.rows.contains(&("orders", orders)),
            "{summary} vs {orders} orders"
        );
        seen.push(orders);
        if finished {
            break;
        }
    }
    writer.await.unwrap();

    let all = i64::try_from(ORDERS).unwrap();
    assert_eq!(seen.last(), Some(&all), "the last backup has every order");
    assert!(
        seen.iter().any(|n| (1..all).contains(n)),
        "no backup was taken while orders were being placed: {seen:?}"
    );
    store.close().await.unwrap();
}

#[tokio::test]
async fn a_backup_file_is_replaced_only_when_asked() {
    let (store, guard) = seeded().await;
    let database = EmbeddedDatabase::new(guard.path());
    let file = TempPath::new("backup");
    std::fs::write(&file.0, b"precious").unwrap();

    let err = database.backup(&file.0, false).await.unwrap_err();
    assert!(
        matches!(&err, BackupError::Exists { path } if *path == file.0),
        "{err:?}"
    );
    assert!(err.is_usage());
    assert_eq!(std::fs::read(&file.0).unwrap(), b"precious");

    let summary = database.backup(&file.0, true).await.unwrap();
    let copy = open(&file.0).await;
    assert_eq!(
        copy.products().count().await.unwrap(),
        store.products().count().await.unwrap()
    );
    assert!(copy.migrations_applied().await.unwrap());
    copy.close().await.unwrap();
    assert_eq!(summary.schema_version, summary.latest_version);
    // Nothing but the backup (and the lock file of the store opened on it) is left behind,
    // once SQLite's closing connection has checkpointed and removed its `-wal` and `-shm`
    // (its worker thread may finish that just after `close` returns).
    let dir = file.0.parent().unwrap();
    let stem = file.0.file_name().unwrap().to_string_lossy().into_owned();
    let leftovers = || -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|name| name.contains(&stem) && *name != stem && *name != format!("{stem}.lock"))
            .collect()
    };
    strata_core::wait::eventually(
        std::time::Duration::from_secs(5),
        "the backup's -wal and -shm files to be removed",
        || {
            let left = leftovers();
            async move { left.is_empty().then_some(()) }
        },
    )
    .await;
    store.close().await.unwrap();
}

#[tokio::test]
async fn a_missing_database_is_not_backed_up() {
    let missing = TempPath::new("missing");
    let file = TempPath::new("backup");
    let err = EmbeddedDatabase::new(&missing.0)
        .backup(&file.0, false)
        .await
        .unwrap_err();
    assert!(matches!(err, BackupError::Missing { .. }), "{err:?}");
    assert!(!file.0.exists());
    assert!(!missing.0.exists(), "the backup created the database");
    let lock = format!("{}.lock", missing.0.display());
    assert!(!Path::new(&lock).exists(), "the backup created {lock}");

    // Nor in a directory that does not exist.
    let nowhere = std::env::temp_dir()
        .join(format!("strata-nowhere-{}", uuid::Uuid::new_v4()))
        .join("strata.db");
    let err = EmbeddedDatabase::new(&nowhere)
        .backup(&file.0, false)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, BackupError::Missing { path } if *path == nowhere),
        "{err:?}"
    );
}

#[tokio::test]
async fn restore_puts_the_backup_in_place_once_no_store_has_it_open() {
    let (store, guard) = seeded().await;
    add_user(&store, "before@example.test").await;
    let database = EmbeddedDatabase::new(guard.path());
    let file = TempPath::new("backup");
    database.backup(&file.0, false).await.unwrap();
    add_user(&store, "after@example.test").await;
    store
        .products()
        .insert(&new_product("AFTER-1"))
        .await
        .unwrap();

    // The store has the file open: the restore is refused and changes nothing.
    let err = database.restore(&file.0).await.unwrap_err();
    assert!(matches!(err, BackupError::InUse { .. }), "{err:?}");
    assert!(err.to_string().contains("stop it"), "{err}");
    assert!(
        store
            .users()
            .find_by_email("after@example.test")
            .await
            .unwrap()
            .is_some()
    );

    // A write-ahead log left next to the database must not be replayed into the restored one.
    let products_before_backup = store.products().count().await.unwrap() - 1;
    store.close().await.unwrap();
    std::fs::write(guard.wal_path(), b"stale log").unwrap();
    let summary = database.restore(&file.0).await.unwrap();
    assert_eq!(summary.path, guard.path());
    assert!(
        !guard.wal_path().exists(),
        "the stale WAL was left in place"
    );
    assert!(summary.rows.contains(&("users", 1)), "{summary}");

    let restored = open(guard.path()).await;
    assert!(restored.migrations_applied().await.unwrap());
    let users = restored.users();
    assert!(
        users
            .find_by_email("before@example.test")
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        users
            .find_by_email("after@example.test")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        restored.products().count().await.unwrap(),
        products_before_backup
    );
    restored.close().await.unwrap();
    assert!(file.0.exists(), "the restore consumed its source");
}

#[tokio::test]
async fn restore_into_an_empty_data_directory_creates_it() {
    let (store, guard) = seeded().await;
    let file = TempPath::new("backup");
    EmbeddedDatabase::new(guard.path())
        .backup(&file.0, false)
        .await
        .unwrap();
    let count = store.products().count().await.unwrap();
    store.close().await.unwrap();

    let dir = std::env::temp_dir().join(format!("strata-restore-{}", uuid::Uuid::new_v4()));
    let target = dir.join("data").join("strata.db");
    EmbeddedDatabase::new(&target)
        .restore(&file.0)
        .await
        .unwrap();
    let restored = open(&target).await;
    assert_eq!(restored.products().count().await.unwrap(), count);
    restored.close().await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Restores `source` over a seeded store and checks that it fails and that the store is as it
/// was; returns the error.
async fn refused(source: &Path) -> BackupError {
    let (store, guard) = seeded().await;
    let count = store.products().count().await.unwrap();
    store.close().await.unwrap();
    let before = std::fs::read(guard.path()).unwrap();

    let err = EmbeddedDatabase::new(guard.path())
        .restore(source)
        .await
        .unwrap_err();

    assert_eq!(
        std::fs::read(guard.path()).unwrap(),
        before,
        "the database changed after {err}"
    );
    let dir = guard.path().parent().unwrap();
    let name = guard
        .path()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let partial: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(&format!(".{name}.")))
        .collect();
    assert!(partial.is_empty(), "temporary files left: {partial:?}");
    let reopened = open(guard.path()).await;
    assert_eq!(reopened.products().count().await.unwrap(), count);
    reopened.close().await.unwrap();
    err
}

/// A backup of a fresh seeded store.
async fn good_backup() -> TempPath {
    let (store, guard) = seeded().await;
    let file = TempPath::new("backup");
    EmbeddedDatabase::new(guard.path())
        .backup(&file.0, false)
        .await
        .unwrap();
    store.close().await.unwrap();
    file
}

#[tokio::test]
async fn restore_refuses_a_file_that_is_not_a_database() {
    let file = TempPath::new("junk");
    std::fs::write(
        &file.0,
        "these are not the pages you are looking for\n".repeat(200),
    )
    .unwrap();
    let err = refused(&file.0).await;
    assert!(matches!(err, BackupError::NotADatabase { .. }), "{err:?}");

    let err = refused(Path::new("/nonexistent/strata-backup.db")).await;
    assert!(matches!(err, BackupError::Missing { .. }), "{err:?}");
    // A missing backup leaves no data directory behind either.
    let dir = std::env::temp_dir().join(format!("strata-restore-{}", uuid::Uuid::new_v4()));
    let err = EmbeddedDatabase::new(dir.join("strata.db"))
        .restore(Path::new("/nonexistent/strata-backup.db"))
        .await
        .unwrap_err();
    assert!(matches!(err, BackupError::Missing { .. }), "{err:?}");
    assert!(!dir.exists(), "{} was created", dir.display());
}

#[tokio::test]
async fn restore_refuses_a_damaged_database() {
    let file = good_backup().await;
    // Overwrite the content of every page after the first (which holds the header) with a
    // pattern: the file still says it is SQLite, its b-trees are garbage.
    let mut bytes = std::fs::read(&file.0).unwrap();
    let page = usize::from(u16::from_be_bytes([bytes[16], bytes[17]]));
    assert!(bytes.len() > 4 * page, "a seeded store spans several pages");
    for start in (page..bytes.len()).step_by(page) {
        for b in &mut bytes[start + 8..start + page - 8] {
            *b = 0xa5;
        }
    }
    std::fs::write(&file.0, bytes).unwrap();
    let err = refused(&file.0).await;
    assert!(matches!(err, BackupError::Corrupt { .. }), "{err:?}");
}

#[tokio::test]
async fn restore_refuses_a_database_that_is_not_a_strata_store() {
    let file = TempPath::new("other");
    let other = open(&file.0).await;
    testing::execute(&other, "CREATE TABLE notes (body TEXT)")
        .await
        .unwrap();
    other.close().await.unwrap();
    let err = refused(&file.0).await;
    assert!(matches!(err, BackupError::NotAStore { .. }), "{err:?}");
}

#[tokio::test]
async fn restore_refuses_a_store_made_by_a_newer_strata() {
    let file = good_backup().await;
    let newer = open(&file.0).await;
    testing::execute(
        &newer,
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (999999, 'from the future', TRUE, X'00', 0)",
    )
    .await
    .unwrap();
    newer.close().await.unwrap();
    let err = refused(&file.0).await;
    assert!(
        matches!(
            err,
            BackupError::UnknownMigration {
                version: 999_999,
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn restore_accepts_an_older_store_and_the_next_start_migrates_it() {
    let (old, guard) = testing::fresh_sqlite().await;
    testing::migrate_to(&old, 2).await.unwrap();
    old.close().await.unwrap();
    let target = TempPath::new("restored");
    let summary = EmbeddedDatabase::new(&target.0)
        .restore(guard.path())
        .await
        .unwrap();
    assert_eq!(summary.schema_version, 2);
    assert!(summary.latest_version > 2, "{summary}");
    assert!(summary.to_string().contains("migrates it to"), "{summary}");
    let restored = open(&target.0).await;
    assert!(!restored.migrations_applied().await.unwrap());
    restored.migrate().await.unwrap();
    assert!(restored.migrations_applied().await.unwrap());
    restored.close().await.unwrap();
}

fn new_product(sku: &str) -> strata_store::NewProduct {
    strata_store::NewProduct {
        sku: sku.into(),
        name: "Written after the backup".into(),
        description: String::new(),
        category: "test".into(),
        price_cents: 100,
        stock: 1,
    }
}
