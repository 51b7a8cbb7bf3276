//! strata-chat: the stateful live-chat service. A chat instance holds its clients' connections
//! and presence, so the gateway pins each room to one instance; history lives in the store.
//!
//! This first cut serves only the operational endpoints (`/healthz`, `/readyz`, `/metrics`);
//! the WebSocket, rooms and presence come later on the same [`ChatServer`].

#![forbid(unsafe_code)]

mod error;
mod server;

pub use crate::error::ChatError;
pub use crate::server::{ChatServer, ChatSettings};

/// The role name: the `role` of `/healthz` and the `strata_chat_…` prefix of every metric.
pub const ROLE: &str = "chat";
