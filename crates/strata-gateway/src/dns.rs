//! Instances named by a host name: every address the name resolves to is an instance, so a
//! Kubernetes headless Service (one A record per ready pod) becomes a pool that follows the
//! pods.
//!
//! Names are resolved when the gateway starts and then every `gateway.dns_refresh_ms`: a new
//! address joins the pool, an address no longer in the answer is drained and removed like an
//! instance removed through the admin API. A failed or empty answer changes nothing (a DNS
//! outage must not empty a pool). A name that has never resolved stays an instance of its
//! own, connected by name (each new connection resolves it).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::config::parse_instance_url;
use strata_core::Shutdown;

use crate::membership::Membership;

/// Time one lookup may take: a slow resolver must not hold the refresh of other names.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// The `(pool, URL)` pairs whose host is a name, in the current table.
fn sources(membership: &Membership) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for pool in membership.snapshot().pools() {
        for instance in pool.instances() {
            if instance.is_removing() {
                continue;
            }
            let url = match instance.source() {
                Some(source) => source.to_owned(),
                None if !is_ip(&instance.host) => instance.url(),
                None => continue,
            };
            out.insert((pool.name().to_owned(), url));
        }
    }
    out
}

fn is_ip(host: &str) -> bool {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<std::net::IpAddr>()
        .is_ok()
}

/// Resolves every name once and applies the answers.
pub async fn refresh(membership: &Arc<Membership>) {
    for (pool, url) in sources(membership) {
        let Ok(parsed) = parse_instance_url(&url) else {
            continue;
        };
        let lookup = tokio::net::lookup_host((parsed.host.as_str(), parsed.port));
        let addresses: Vec<SocketAddr> = match tokio::time::timeout(LOOKUP_TIMEOUT, lookup).await {
            Ok(Ok(found)) => {
                let mut found: Vec<SocketAddr> = found.collect();
                found.sort();
                found.dedup();
                found
            }
            Ok(Err(error)) => {
                tracing::warn!(pool, url, %error, "cannot resolve instance host; keeping the instances it had");
                continue;
            }
            Err(_) => {
                tracing::warn!(pool, url, timeout = ?LOOKUP_TIMEOUT, "instance host lookup timed out; keeping the instances it had");
                continue;
            }
        };
        if addresses.is_empty() {
            continue;
        }
        let (added, removed) = membership.resolved(&pool, &url, &addresses);
        if added + removed > 0 {
            tracing::info!(
                pool,
                url,
                added,
                removed,
                ?addresses,
                "instance host resolved"
            );
        }
    }
}

/// Re-resolves every `every` until `stop`.
pub fn spawn(membership: Arc<Membership>, every: Duration, stop: Shutdown) {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(every) => refresh(&membership).await,
            }
        }
    });
}
