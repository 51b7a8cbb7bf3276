//! strata-api: the shop service. Stateless by default: any instance serves any request,
//! everything it knows lives in the store (the truth) and the cache (a hint). The lab's
//! local cart mode (see `carts`) keeps carts in the instance instead.
//!
//! The binary builds an [`ApiServer`] from [`ApiSettings`] and its backends, then calls
//! [`ApiServer::run`] with the process's shutdown signal. Tests do the same on port 0.

#![forbid(unsafe_code)]

pub mod auth;
mod cache_aside;
mod cart;
mod carts;
mod catalog;
mod error;
pub mod extract;
#[doc(hidden)]
pub mod fuzzing;
mod images;
mod notifications;
pub mod openapi;
mod orders;
mod page;
pub mod prices;
mod quote;
mod recommendations;
mod server;
mod state;
mod users;
mod web;

pub use crate::carts::{CartMode, CartSettings, PeerSettings};
pub use crate::error::ApiError;
pub use crate::images::{IMAGE_CACHE_CONTROL, MAX_IMAGE_BYTES, seed_demo_images};
pub use crate::server::{AdminBootstrap, ApiServer, ApiSettings, AuthSettings, LEAVE_LIMIT};
pub use crate::web::currency::{Currencies, DEFAULT_CURRENCIES};

/// The role name: the `role` of `/healthz` and the `strata_api_…` prefix of every metric.
pub const ROLE: &str = "api";
