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

mod backup;
mod carts;
mod chat;
mod checkout;
mod coupons;
mod error;
mod events;
mod lock;
mod migrate;
mod notifications;
mod orders;
mod outbox;
mod page;
mod products;
mod search;
mod seed;
mod store;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
mod users;

pub use backup::{BackupError, BackupSummary, EmbeddedDatabase, SavedFiles};
pub use carts::{
    CartError, CartLine, CartOwner, CartRepo, MAX_CART_LINES, MAX_LINE_QUANTITY, MergeOutcome,
};
pub use chat::{ChatMessage, ChatRepo, ChatRoomKind, Posted, SupportRoom};
pub use checkout::{
    CheckoutError, CheckoutOutcome, CheckoutRequest, PricedLine, PricedOrder, ReservedLine,
};
pub use coupons::{Coupon, CouponKind, CouponRepo, MAX_COUPON_CODE_LEN, normalize_coupon_code};
pub use error::{ConstraintKind, StoreError};
pub use events::EventRepo;
pub use notifications::{NewNotification, Notification, NotificationPage, NotificationRepo};
pub use orders::{
    Applied, ORDER_PAID, ORDER_PAYMENT_FAILED, ORDER_PLACED, ORDER_SHIPPED, Order, OrderFilter,
    OrderLine, OrderPage, OrderPlaced, OrderRepo, OrderStatus, OrderStatusChanged, PlacedLine,
    StatusChange, Transition, status_topic,
};
pub use outbox::{OutboxMessage, OutboxRepo};
pub use page::{Page, PageError};
pub use products::{
    CatalogReads, CategoryCount, NewProduct, Product, ProductPage, ProductRepo, ProductUpdate,
};
pub use search::{ProductQuery, ProductSort, SearchText};
pub use seed::demo_catalog;
pub use store::{Dialect, Store, StoreOptions};
// Roles live in `strata-core`, with the tokens that carry them; the rows here store them.
pub use strata_core::auth::{UnknownRole, UserRole};
pub use users::{NewUser, User, UserFilter, UserPage, UserRepo};
