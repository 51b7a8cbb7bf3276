//! The backend sections: `[store]`, `[cache]`, `[bus]` and `[objects]`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Secret;
use super::section::{Checks, parse};

crate::config_section! {
    /// The relational store (`[store]`, `STRATA_STORE_<KEY>`).
    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    pub struct StoreConfig {
        /// `sqlite://PATH` or `postgres://user@host:port/db`. Empty (default):
        /// `sqlite://<data_dir>/strata.db`, the embedded store that needs no server.
        restart database_url: String = String::new() => parse::verbatim;
            check |db| db.is_empty()
                || ["sqlite:", "postgres://", "postgresql://"]
                    .iter()
                    .any(|s| db.starts_with(s)),
            "expected sqlite://PATH or postgres://…",
        /// Where the embedded store and generated secrets live. Default `./strata-data`.
        restart data_dir: PathBuf = PathBuf::from("./strata-data") => parse::verbatim,
        /// Connections per process. Default 16: enough for the api's concurrency on a small
        /// machine without exhausting PostgreSQL's default 100 connections across a few
        /// processes.
        restart max_connections: u32 = 16;
            check |n| (1..=1000).contains(n), "expected 1..=1000",
        /// A streaming replica of a PostgreSQL `database_url`, `postgres://user@host:port/db`,
        /// that serves the api's catalog reads. Empty (default): no replica. When set, the api
        /// reads product pages, lists and searches from it, through a pool of its own (up to
        /// `max_connections` more connections); everything else, writes, carts, checkout,
        /// orders and accounts included, stays on `database_url`. Catalog reads then lag the
        /// primary by the replication delay: a product just changed may show its old values
        /// for that long (and, read within it, stay cached so for up to `cache.ttl_secs`).
        /// Stock shown in catalog reads is advisory; checkout reserves it on the primary, so
        /// it never oversells. While the replica does not answer, catalog reads go to the
        /// primary.
        restart read_url: String = String::new() => parse::verbatim;
            check |url| url.is_empty()
                || ["postgres://", "postgresql://"].iter().any(|s| url.starts_with(s)),
            "expected postgres://… (a streaming replica of database_url)",
        /// Milliseconds one SQL statement may run. PostgreSQL cancels a statement that runs
        /// longer (`statement_timeout`, set on every connection; migrations are exempt) and
        /// the request gets 503. SQLite cannot cancel a running statement: there it is the
        /// busy timeout, how long a statement waits for another connection's write lock
        /// before it fails as a conflict (503). Default 10000: far above any statement strata
        /// runs (milliseconds), under the instances' 25 s request timeout.
        restart statement_timeout_ms: u64 = 10_000;
            check |ms| (1..=3_600_000).contains(ms), "expected 1..=3600000",
    }
    validate = StoreConfig::check;
}

impl StoreConfig {
    /// Rules across the section's keys.
    fn check(&self, checks: &mut Checks<'_>) {
        let primary_is_postgres = ["postgres://", "postgresql://"]
            .iter()
            .any(|s| self.database_url.starts_with(s));
        if !self.read_url.is_empty() && !primary_is_postgres {
            checks.problem(
                "read_url",
                "a read replica needs a PostgreSQL database_url (the embedded SQLite store \
                 has no replicas)",
            );
        }
    }

    /// The database URL to connect to: the configured one, or the SQLite file in the data dir.
    pub fn effective_url(&self) -> String {
        if self.database_url.is_empty() {
            format!("sqlite://{}", self.data_dir.join("strata.db").display())
        } else {
            self.database_url.clone()
        }
    }
}

crate::config_section! {
    /// The cache (`[cache]`, `STRATA_CACHE_<KEY>`).
    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    pub struct CacheConfig {
        /// `memory` (default, in process) or `redis://host:port`.
        restart url: String = "memory".into() => parse::verbatim;
            check |url| url == "memory" || url.starts_with("redis://") || url.starts_with("rediss://"),
            "expected `memory` or redis://host:port",
        /// Namespace of every key, so deployments sharing one Redis never collide. Default
        /// `strata`.
        restart prefix: String = "strata".into() => parse::verbatim;
            check |prefix| valid_name(prefix), "expected letters, digits, `-` or `_`",
        /// Time to live of cached reads in seconds. Default 60: writes invalidate entries, so
        /// the TTL only bounds how long a missed invalidation can linger.
        restart ttl_secs: u64 = 60; check |ttl| *ttl > 0, "must be at least 1",
        /// Milliseconds Redis has to answer one call (reconnecting included) before the
        /// caller reads around the cache. Default 200: Redis on the same network answers in
        /// well under a millisecond, and the store answers a read in about as long.
        restart timeout_ms: u64 = 200; check |ms| (1..=60_000).contains(ms), "expected 1..=60000",
        /// Consecutive failed Redis calls (timeouts, refused or dropped connections) that open
        /// the circuit breaker: calls then fail at once, without a network round trip, and
        /// reads go to the store; writes' invalidations are skipped too, so an entry they
        /// should have removed lives until `ttl_secs` ends. 0 never opens it. Default 5.
        restart breaker_failures: u32 = 5,
        /// Milliseconds an open breaker waits before one call probes Redis again; the probe's
        /// success closes it. Default 1000.
        restart breaker_cooldown_ms: u64 = 1000; check |ms| *ms >= 1, "must be at least 1",
    }
}

crate::config_section! {
    /// The message bus (`[bus]`, `STRATA_BUS_<KEY>`).
    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    pub struct BusConfig {
        /// `memory` (default, in process) or `nats://host:port` (JetStream); a cluster's
        /// servers may be listed, separated by commas.
        restart url: String = "memory".into() => parse::verbatim;
            check |url| url == "memory" || url.starts_with("nats://"),
            "expected `memory` or nats://host:port",
        /// Namespace of streams and subjects. Default `strata`.
        restart namespace: String = "strata".into() => parse::verbatim;
            check |namespace| valid_name(namespace), "expected letters, digits, `-` or `_`",
        /// Copies NATS JetStream keeps of each stream strata creates, 1 to 5. Default 1: one
        /// server; a three-node cluster wants 3, so losing a node loses no event. Streams that
        /// exist keep their own setting.
        restart replicas: usize = 1; check |n| (1..=5).contains(n), "expected 1..=5",
    }
}

crate::config_section! {
    /// The object store, where product images live (`[objects]`, `STRATA_OBJECTS_<KEY>`).
    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    pub struct ObjectsConfig {
        /// `file:PATH` (a directory) or `s3://BUCKET` (a bucket at `endpoint`). Empty
        /// (default): `file:<store.data_dir>/objects`, which needs no server. A directory
        /// belongs to one machine: several machines (compose, Kubernetes) need `s3://`.
        restart url: String = String::new() => parse::verbatim;
            check |url| url.is_empty() || url.starts_with("file:") || url.starts_with("s3://"),
            "expected file:PATH or s3://BUCKET",
        /// The S3-compatible server of an `s3://` url, `http://host:port` (path-style
        /// requests; https is not supported). Empty (default): none, as the default url needs
        /// none.
        restart endpoint: String = String::new() => parse::verbatim;
            check |endpoint| endpoint.is_empty() || endpoint.starts_with("http://"),
            "expected http://host:port",
        /// The region S3 requests are signed for. Default `us-east-1`: what MinIO, Ceph and
        /// most S3-compatible servers expect when they were not told otherwise.
        restart region: String = "us-east-1".into() => parse::trimmed;
            check |region| !region.is_empty(), "must not be empty",
        /// The access key id of an `s3://` url. Empty (default): none, as the default url
        /// needs none.
        restart access_key_id: String = String::new() => parse::trimmed,
        /// The secret access key of an `s3://` url; never printed. Empty (default): none.
        restart secret_access_key: Secret = Secret::default() => parse::verbatim,
    }
    validate = ObjectsConfig::check;
}

impl ObjectsConfig {
    /// Rules across the section's keys.
    fn check(&self, checks: &mut Checks<'_>) {
        if self.url.starts_with("s3://") {
            checks.check(
                !self.endpoint.is_empty(),
                "endpoint",
                "an s3:// url needs the server's endpoint",
            );
            checks.check(
                !self.access_key_id.is_empty(),
                "access_key_id",
                "an s3:// url needs an access key id",
            );
        }
    }
}

/// A namespace or key id: 1 to 64 ASCII letters, digits, `-` or `_`.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}
