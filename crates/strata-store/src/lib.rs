//! strata-store: the durable state of strata behind one [`Store`] handle.
//!
//! A `Store` wraps a connection pool for SQLite (the embedded `strata up` mode, one file under
//! `./strata-data/`) or PostgreSQL (the scaled-out mode), chosen from the database URL at
//! start-up. Migrations for both dialects are embedded in the binary and kept equivalent by a
//! test; repositories (`store.products()`, …) hide every dialect difference, so the roles above
//! this crate never branch on the backend.
//!
//! ```no_run
//! # async fn demo() -> Result<(), strata_store::StoreError> {
//! use strata_store::{Page, Store, StoreOptions};
//!
//! let store = Store::connect("sqlite://strata-data/strata.db", StoreOptions::default()).await?;
//! store.migrate().await?;
//! store.seed_demo_catalog().await?;
//! let first = store.products().list(Page::default()).await?;
//! println!("{} of {} products", first.items.len(), first.total);
//! store.close().await?;
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]

mod error;
mod migrate;
mod page;
mod products;
mod seed;
mod store;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use error::{ConstraintKind, StoreError};
pub use page::{Page, PageError};
pub use products::{NewProduct, Product, ProductPage, ProductRepo};
pub use seed::demo_catalog;
pub use store::{Dialect, Store, StoreOptions};
