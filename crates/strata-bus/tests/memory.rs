//! The bus contract, run against the in-memory backend.

use strata_bus::contract::Harness;

async fn setup() -> Option<Harness> {
    Some(Harness::memory())
}

strata_bus::contract_tests!(setup);
