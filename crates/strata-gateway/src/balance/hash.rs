//! The gateway's stable 64-bit hash: the one of [`strata_core::ring`] (FNV-1a followed by
//! MurmurHash3's finaliser), which the api's local carts use too, so that both name the same
//! instance for a key. Re-exported here for the balancers, the affinity keys and the rate
//! limits.

pub use strata_core::ring::{fnv1a, hash_bytes, instance_id, mix};
