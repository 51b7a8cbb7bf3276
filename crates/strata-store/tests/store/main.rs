//! Integration tests of strata-store. One binary (faster to link than one per file); every
//! repository test runs against SQLite and against PostgreSQL through `both_dialects!`.

// The shared suite functions are not `#[test]`s themselves, so clippy's allow-unwrap-in-tests
// does not reach them; a failed unwrap is exactly how a test should fail.
#![allow(clippy::unwrap_used)]

mod backup;
mod carts;
mod chat;
mod events;
mod harness;
mod lifecycle;
mod orders;
mod products;
mod schema;
mod search;
mod seed;
mod users;
