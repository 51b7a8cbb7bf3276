//! The bus contract, run against NATS JetStream (`TEST_NATS_URL`, default
//! `nats://127.0.0.1:4222`). Each test works in a namespace of its own and deletes its streams
//! afterwards, so tests run in parallel and can share the server with anything else.

use strata_bus::contract::Harness;
use strata_core::testkit::{NATS, require_service};

async fn setup() -> Option<Harness> {
    let url = require_service(NATS)?;
    let namespace = format!("t{}", uuid::Uuid::new_v4().simple());
    Some(Harness::nats(&url, &namespace).await)
}

strata_bus::contract_tests!(setup);
