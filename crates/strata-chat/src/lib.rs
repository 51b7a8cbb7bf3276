//! strata-chat: the stateful live-chat service. A chat instance holds its clients' WebSocket
//! connections and knows who is online; the gateway pins each room to one instance by
//! consistent hashing, but correctness does not depend on it: every message is stored first
//! (gap-free ids per room), then published on the bus, and every instance delivers it to its
//! own members of the room, filling gaps from the store.
//!
//! The protocol is documented in `docs/chat-protocol.md`; [`protocol`] is its source.

#![forbid(unsafe_code)]

mod auth;
mod background;
pub mod client;
mod committer;
mod connection;
mod error;
mod http;
mod hub;
mod metrics;
pub mod protocol;
mod room;
mod server;

pub use crate::error::ChatError;

/// The chat endpoints' OpenAPI document (paths, schemas, the `chat` tag), for the api to serve
/// with its own: one home for the description of chat's HTTP interface, next to its handlers.
pub fn openapi() -> utoipa::openapi::OpenApi {
    <http::ChatDoc as utoipa::OpenApi>::openapi()
}
pub use crate::room::{RoomId, UnknownRoom};
pub use crate::server::{ChatLimits, ChatServer, ChatSettings};
pub use strata_core::auth::UserRole;

/// The role name: the `role` of `/healthz` and the `strata_chat_…` prefix of every metric.
pub const ROLE: &str = "chat";
