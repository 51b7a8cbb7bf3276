//! Gives each test its own database: a temporary SQLite file, or a PostgreSQL schema named by a
//! UUID. Both are removed when the test ends, pass or fail.

use strata_core::testkit::{POSTGRES, require_service};
use strata_store::Store;
use strata_store::testing::{self, TempFileGuard, TestSchemaGuard};

/// A store and whatever removes its database afterwards.
pub struct TestStore {
    pub store: Store,
    _file: Option<TempFileGuard>,
    _schema: Option<TestSchemaGuard>,
}

/// A store on a fresh, unmigrated SQLite file.
pub async fn sqlite() -> TestStore {
    let (store, guard) = testing::fresh_sqlite().await;
    TestStore {
        store,
        _file: Some(guard),
        _schema: None,
    }
}

/// A store on a fresh, unmigrated PostgreSQL schema; `None` (after a loud message) when no
/// server runs here and CI is not set.
pub async fn postgres() -> Option<TestStore> {
    let url = require_service(POSTGRES)?;
    let (store, guard) = testing::fresh_postgres(&url)
        .await
        .expect("create a test schema");
    Some(TestStore {
        store,
        _file: None,
        _schema: Some(guard),
    })
}

/// A migrated store of either dialect.
pub async fn migrated(store: &Store) {
    store.migrate().await.expect("migrate");
}

/// For each `async fn name(store: &Store)` in the invoking module, generates `name::sqlite` and
/// `name::postgres` tests that run it on a fresh database of that dialect.
macro_rules! both_dialects {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test]
                async fn sqlite() {
                    let t = $crate::harness::sqlite().await;
                    super::$name(&t.store).await;
                }

                #[tokio::test]
                async fn postgres() {
                    let Some(t) = $crate::harness::postgres().await else {
                        return;
                    };
                    super::$name(&t.store).await;
                }
            }
        )*
    };
}
pub(crate) use both_dialects;
