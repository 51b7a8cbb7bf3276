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
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use crate::config::{InstanceUrl, parse_instance_url};
use strata_core::Shutdown;

use super::Membership;
use super::instance::{Instance, REMOVING};
use crate::health::HealthPolicy;

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

impl Membership {
    /// The instances a host name in `pool` currently resolves to are `addresses`: adds the
    /// new ones (as `source` with the name replaced by the address), removes (drains) those
    /// gone. Returns how many were added and removed.
    pub(crate) fn resolved(
        self: &Arc<Self>,
        pool: &str,
        source: &str,
        addresses: &[std::net::SocketAddr],
    ) -> (usize, usize) {
        let Ok(parsed) = parse_instance_url(source) else {
            return (0, 0);
        };
        let mut gone = Vec::new();
        let mut added = 0;
        {
            let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
            let before = self.table.load_full();
            let Some(current) = before.pool(pool) else {
                return (0, 0);
            };
            let mut instances = current.instances.clone();
            let policy = Arc::new(HealthPolicy::from_config(&current.settings.health));
            // The name itself, kept while it had not resolved: replaced by its addresses now.
            let name = parsed.address();
            for instance in &current.instances {
                if instance.source_address().as_deref() != Some(name.as_str())
                    || instance.is_removing()
                {
                    continue;
                }
                let still = addresses
                    .iter()
                    .any(|a| *instance.address == *address_of(*a));
                if !still {
                    instance.state.store(REMOVING, Ordering::Relaxed);
                    gone.push(Arc::clone(instance));
                }
            }
            for addr in addresses {
                let address = address_of(*addr);
                if instances
                    .iter()
                    .any(|i| *i.address == *address && !i.is_removing())
                {
                    continue;
                }
                let resolved = InstanceUrl {
                    host: match addr.ip() {
                        IpAddr::V4(ip) => ip.to_string(),
                        IpAddr::V6(ip) => format!("[{ip}]"),
                    },
                    port: addr.port(),
                    ..parsed.clone()
                };
                let url = format!("http://{address}");
                match Instance::new(
                    pool,
                    &url,
                    &resolved,
                    &self.limits,
                    &self.metrics,
                    &policy,
                    Some(source.to_owned()),
                ) {
                    Ok(instance) => {
                        instances.push(Arc::new(instance));
                        added += 1;
                    }
                    Err(message) => {
                        tracing::warn!(pool, source, %message, "resolved address unusable")
                    }
                }
            }
            if added > 0 || !gone.is_empty() {
                self.replace_pool(&before, pool, instances, &current.settings.clone());
            }
        }
        let removed = gone.len();
        for instance in gone {
            self.finish_removal(pool.into(), instance);
        }
        (added, removed)
    }
}

/// `ip:port` as instance addresses are written (IPv6 in brackets).
fn address_of(addr: std::net::SocketAddr) -> String {
    addr.to_string()
}
