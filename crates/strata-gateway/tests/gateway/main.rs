//! Integration tests of the gateway: real listeners on port 0, in-test backends.

// clippy's `allow-unwrap-in-tests` covers `#[test]` functions only, not the harness helpers;
// a failed unwrap in a test helper is a test failure, which is what we want.
#![allow(clippy::unwrap_used)]

mod admin;
mod balancing;
mod compression;
mod failures;
mod h2c;
mod h2front;
mod health;
mod helpers;
mod limits;
mod malformed;
mod membership;
mod nodes;
mod ops;
mod pipelining;
mod rate_limits;
mod reload;
mod routing;
mod rules;
mod shutdown;
mod tls;
mod traces;
mod websocket;
mod workers;
