//! [`Peers`]: which api instances share the local carts, and which of them owns a cart.
//!
//! # Membership
//! Each instance reads the api pool from the gateway's admin API (`GET /admin/pools` on
//! `carts.peers_url`, with `carts.peers_token` as its bearer token) every
//! `carts.peers_poll_ms`, and sooner when a peer shows that it sees another membership. The
//! members are the pool's instances that are neither draining nor being removed, whatever
//! their health: a member that is down still owns its carts (requests for them get 503
//! `cart_unavailable` until it is back, never an empty cart elsewhere). An instance that is
//! leaving (shutting down, or drained at the gateway) leaves itself out.
//!
//! # Owners
//! The owner of a cart is the first member on the walk of [`strata_core::ring::Ring`] for the
//! stable hash of the cart's key (`u<user id>`, or the anonymous token): the instance the
//! gateway's `consistent_hash` picks for that key (hashed from the `strata_cart_owner`
//! cookie), since the gateway skips draining instances on the same ring. The ring is the
//! gateway's only while the pool's total weight is at most 1024 (beyond, the gateway thins
//! its points per unit of weight by the whole pool, draining instances included).
//!
//! # Views
//! A [`View`] is one membership with its ring and a hash that names it. When it changes, the
//! previous view is kept: a cart that an instance now owns but does not hold may still be on
//! its owner in the previous view, which is asked for it (see `handover`) until that instance
//! says it has handed over every cart it no longer owns.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use serde::Deserialize;
use strata_core::config::Secret;
use strata_core::ring::{Ring, hash_bytes, instance_id};
use tokio::sync::watch;

use super::journal::OwnerKey;

/// Shortest time between two reads of the pool asked for by peers (not the periodic one): a
/// burst of requests that all see another view reads it once.
const MIN_REFRESH_GAP: Duration = Duration::from_millis(100);
/// How long one call to the gateway or a peer may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Where local-cart instances learn their peers (`carts.peers_*`).
#[derive(Clone, Debug)]
pub struct PeerSettings {
    /// The gateway's admin listener, `http://host:port`.
    pub url: String,
    /// The gateway's admin token (`gateway.admin_token`), when it has one; also required of
    /// the calls on the instances' `/internal/carts/` endpoints.
    pub token: Option<Secret>,
    /// The gateway pool of the api instances. Default `api`.
    pub pool: String,
    /// This instance's address as the pool lists it (`host:port`); `None`: the address the
    /// instance listens on.
    pub advertise: Option<String>,
    /// How often the pool is read.
    pub poll: Duration,
}

/// One membership of the pool, with its ring.
#[derive(Debug, Default)]
pub(crate) struct View {
    /// Addresses of the members, sorted.
    members: Vec<String>,
    ring: Ring,
    /// This instance's index in `members`, when it is one.
    me: Option<usize>,
    /// Names the membership (0: none read yet).
    pub hash: u64,
    /// Every address in the pool, draining ones too.
    pool: HashSet<String>,
}

impl View {
    fn new(mut members: Vec<(String, u32)>, me: &str, pool: HashSet<String>) -> Self {
        members.sort();
        members.dedup_by(|a, b| a.0 == b.0);
        let ring = Ring::new(
            &members
                .iter()
                .map(|(a, w)| (instance_id(a), *w))
                .collect::<Vec<_>>(),
        );
        let mut text = String::new();
        for (address, weight) in &members {
            text.push_str(address);
            text.push('=');
            text.push_str(&weight.to_string());
            text.push(',');
        }
        let hash = hash_bytes(text.as_bytes()).max(1);
        let me_at = members.iter().position(|(a, _)| a == me);
        Self {
            members: members.into_iter().map(|(a, _)| a).collect(),
            ring,
            me: me_at,
            hash,
            pool,
        }
    }

    /// The address of the owner of `owner`'s cart; `None` when there is no member.
    pub(crate) fn owner(&self, owner: OwnerKey) -> Option<&str> {
        self.ring
            .owner(hash_bytes(routing_key(owner).as_bytes()))
            .and_then(|i| self.members.get(i))
            .map(String::as_str)
    }

    /// Whether this instance owns `owner`'s cart.
    pub(crate) fn is_mine(&self, owner: OwnerKey) -> bool {
        self.me.is_some()
            && self
                .ring
                .owner(hash_bytes(routing_key(owner).as_bytes()))
                .is_some_and(|i| Some(i) == self.me)
    }

    /// The members other than this instance.
    pub(crate) fn others(&self) -> impl Iterator<Item = &str> {
        self.members
            .iter()
            .enumerate()
            .filter(move |(i, _)| Some(*i) != self.me)
            .map(|(_, a)| a.as_str())
    }

    /// Whether the view has no member.
    pub(crate) fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Whether `address` is in the pool at all (draining counts).
    pub(crate) fn in_pool(&self, address: &str) -> bool {
        self.pool.contains(address)
    }
}

/// A cart's routing key: `u<user id>` or the anonymous token's 32 hex digits, the value of
/// the `strata_cart_owner` cookie the gateway hashes on.
pub(crate) fn routing_key(owner: OwnerKey) -> String {
    match owner {
        OwnerKey::User(id) => format!("u{id}"),
        OwnerKey::Anonymous(token) => format!("{token:032x}"),
    }
}

/// The owner a routing key names (the inverse of [`routing_key`]).
pub(crate) fn parse_routing_key(text: &str) -> Option<OwnerKey> {
    if let Some(id) = text.strip_prefix('u') {
        return id.parse().ok().map(OwnerKey::User);
    }
    (text.len() == 32 && text.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| u128::from_str_radix(text, 16).ok().map(OwnerKey::Anonymous))
        .flatten()
}

/// The membership of the local-cart instances, read from the gateway.
pub(crate) struct Peers {
    settings: PeerSettings,
    client: reqwest::Client,
    /// This instance's address (set once it is bound).
    me: OnceLock<String>,
    view: ArcSwap<View>,
    /// The view before the current one (for the first one: the current one without this
    /// instance).
    previous: ArcSwap<View>,
    /// Owners in the previous view that said they handed over every cart they no longer own.
    settled: Mutex<HashSet<String>>,
    /// Shutting down: leave this instance out of every view.
    leaving: AtomicBool,
    /// Serializes reads of the pool; holds when the last one ended.
    refreshing: tokio::sync::Mutex<Option<Instant>>,
    /// The current view's hash, for the hand-over task to wait on.
    changed: watch::Sender<u64>,
    /// The view in which this instance handed over every cart it does not own.
    pushed: AtomicU64,
}

/// `GET /admin/pools`, the parts read here.
#[derive(Deserialize)]
struct PoolsBody {
    pools: Vec<PoolBody>,
}

#[derive(Deserialize)]
struct PoolBody {
    name: String,
    instances: Vec<InstanceBody>,
}

#[derive(Deserialize)]
struct InstanceBody {
    address: String,
    weight: u32,
    draining: bool,
    removing: bool,
}

/// A call to a peer or the gateway failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PeerError {
    /// Not reachable, timed out, or answered something unreadable.
    #[error("{0}")]
    Call(#[from] reqwest::Error),
    /// Answered with an unexpected status.
    #[error("{what} answered {status}")]
    Status {
        /// What was called.
        what: String,
        /// Its status.
        status: u16,
    },
    /// The gateway has no such pool.
    #[error("the gateway has no pool `{0}`")]
    NoPool(String),
}

impl Peers {
    /// Peers read as `settings` say; nothing is read until [`Peers::start`].
    pub(crate) fn new(settings: PeerSettings) -> Arc<Self> {
        let client = reqwest::Client::builder()
            .timeout(CALL_TIMEOUT)
            .build()
            .unwrap_or_default();
        Arc::new(Self {
            settings,
            client,
            me: OnceLock::new(),
            view: ArcSwap::from_pointee(View::default()),
            previous: ArcSwap::from_pointee(View::default()),
            settled: Mutex::new(HashSet::new()),
            leaving: AtomicBool::new(false),
            refreshing: tokio::sync::Mutex::new(None),
            changed: watch::channel(0).0,
            pushed: AtomicU64::new(0),
        })
    }

    /// Sets this instance's address (the advertised one, or `bound`) and starts reading the
    /// pool every `poll` while the peers live.
    pub(crate) fn start(self: &Arc<Self>, bound: std::net::SocketAddr) {
        let me = self
            .settings
            .advertise
            .clone()
            .unwrap_or_else(|| bound.to_string());
        let _ = self.me.set(me);
        let peers = Arc::downgrade(self);
        let poll = self.settings.poll;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(poll);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(peers) = peers.upgrade() else { return };
                if let Err(e) = peers.read_pool().await {
                    tracing::warn!(error = %e, "cannot read the api pool from the gateway");
                }
            }
        });
    }

    /// This instance's address in the pool.
    pub(crate) fn me(&self) -> &str {
        self.me.get().map_or("", String::as_str)
    }

    /// The current view.
    pub(crate) fn view(&self) -> Arc<View> {
        self.view.load_full()
    }

    /// The owner of `owner`'s cart in the previous view, when another instance not yet
    /// settled: the instance to ask for a cart this one owns but does not hold.
    pub(crate) fn unsettled_previous_owner(&self, owner: OwnerKey) -> Option<String> {
        let previous = self.previous.load();
        let address = previous.owner(owner)?;
        if address == self.me() {
            return None;
        }
        let settled = self.settled.lock().unwrap_or_else(PoisonError::into_inner);
        (!settled.contains(address)).then(|| address.to_owned())
    }

    /// Notes that `address` handed over every cart it does not own in view `hash`.
    pub(crate) fn settle(&self, address: &str, hash: u64) {
        if self.view.load().hash == hash {
            self.settled
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(address.to_owned());
        }
    }

    /// A receiver told of every change of view.
    pub(crate) fn changes(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// The view in which this instance handed over every cart it does not own (0: none).
    pub(crate) fn pushed_view(&self) -> u64 {
        self.pushed.load(Ordering::Relaxed)
    }

    /// Notes that every cart not owned in view `hash` was handed over.
    pub(crate) fn set_pushed_view(&self, hash: u64) {
        self.pushed.store(hash, Ordering::Relaxed);
    }

    /// Whether this instance is leaving.
    pub(crate) fn is_leaving(&self) -> bool {
        self.leaving.load(Ordering::Relaxed)
    }

    /// Reads the pool now unless it was read less than [`MIN_REFRESH_GAP`] ago (a peer
    /// showed another view). Errors are logged: the caller goes on with the view it has.
    pub(crate) async fn refresh(&self) {
        let last = *self.refreshing.lock().await;
        if last.is_some_and(|at| at.elapsed() < MIN_REFRESH_GAP) {
            return;
        }
        if let Err(e) = self.read_pool().await {
            tracing::warn!(error = %e, "cannot read the api pool from the gateway");
        }
    }

    /// Makes sure the view is `hash` if the pool says so: reads it when it differs.
    /// Returns whether the views now agree.
    pub(crate) async fn agree(&self, hash: u64) -> bool {
        if self.view.load().hash == hash {
            return true;
        }
        self.refresh().await;
        self.view.load().hash == hash
    }

    /// Reads the pool and installs its view when it changed.
    async fn read_pool(&self) -> Result<(), PeerError> {
        let mut last = self.refreshing.lock().await;
        let url = format!("{}/admin/pools", self.settings.url.trim_end_matches('/'));
        let response = self.authorized(self.client.get(&url)).send().await?;
        if !response.status().is_success() {
            return Err(PeerError::Status {
                what: url,
                status: response.status().as_u16(),
            });
        }
        let body: PoolsBody = response.json().await?;
        *last = Some(Instant::now());
        let pool = body
            .pools
            .into_iter()
            .find(|p| p.name == self.settings.pool)
            .ok_or_else(|| PeerError::NoPool(self.settings.pool.clone()))?;
        self.install(pool);
        Ok(())
    }

    fn install(&self, pool: PoolBody) {
        let me = self.me().to_owned();
        let leaving = self.is_leaving();
        let all: HashSet<String> = pool.instances.iter().map(|i| i.address.clone()).collect();
        let members: Vec<(String, u32)> = pool
            .instances
            .into_iter()
            .filter(|i| !(i.draining || i.removing || (leaving && i.address == me)))
            .map(|i| (i.address, i.weight))
            .collect();
        let view = View::new(members.clone(), &me, all.clone());
        let current = self.view.load_full();
        if view.hash == current.hash {
            if view.pool != current.pool {
                // The same members; an instance that had left the members (draining) is now
                // gone from the pool too.
                self.view.store(Arc::new(view));
            }
            return;
        }
        let previous = if current.hash == 0 {
            // The first view: what was here before this instance joined.
            Arc::new(View::new(
                members.into_iter().filter(|(a, _)| *a != me).collect(),
                &me,
                all,
            ))
        } else {
            current
        };
        tracing::info!(
            members = ?view.members,
            member = view.me.is_some(),
            "api pool membership changed"
        );
        let hash = view.hash;
        self.settled
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.previous.store(previous);
        self.view.store(Arc::new(view));
        self.changed.send_replace(hash);
    }

    /// Leaves the pool: marks this instance draining at the gateway (so no new request is
    /// sent here) and leaves it out of its own view, so the hand-over task sends every cart
    /// to its new owner. Returns whether the pool could be read (when the gateway is gone,
    /// the whole deployment is stopping and nobody could take the carts).
    pub(crate) async fn leave(&self) -> bool {
        self.leaving.store(true, Ordering::Relaxed);
        let url = format!(
            "{}/admin/pools/{}/instances/{}/drain",
            self.settings.url.trim_end_matches('/'),
            self.settings.pool,
            self.me()
        );
        match self.authorized(self.client.post(&url)).send().await {
            Ok(r) if r.status().is_success() || r.status().as_u16() == 404 => {}
            Ok(r) => tracing::warn!(
                status = r.status().as_u16(),
                "the gateway refused the drain"
            ),
            Err(e) => tracing::warn!(error = %e, "cannot drain this instance at the gateway"),
        }
        *self.refreshing.lock().await = None;
        match self.read_pool().await {
            Ok(()) => true,
            Err(e) => {
                tracing::info!(error = %e, "cannot read the api pool from the gateway");
                false
            }
        }
    }

    /// A request with the token, when there is one.
    pub(crate) fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.settings.token {
            Some(token) if !token.is_empty() => request.bearer_auth(token.expose()),
            _ => request,
        }
    }

    /// Whether a request's `Authorization` header carries the token (any request does when
    /// there is none).
    pub(crate) fn admits(&self, authorization: Option<&str>) -> bool {
        match &self.settings.token {
            Some(token) if !token.is_empty() => authorization
                .and_then(|v| v.strip_prefix("Bearer "))
                .is_some_and(|p| {
                    strata_core::http::constant_time_eq(
                        p.trim().as_bytes(),
                        token.expose().as_bytes(),
                    )
                }),
            _ => true,
        }
    }

    /// The HTTP client of the calls to peers.
    pub(crate) fn client(&self) -> &reqwest::Client {
        &self.client
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(members: &[&str], me: &str) -> View {
        View::new(
            members.iter().map(|a| ((*a).to_owned(), 1)).collect(),
            me,
            members.iter().map(|a| (*a).to_owned()).collect(),
        )
    }

    #[test]
    fn routing_keys_round_trip() {
        for owner in [OwnerKey::User(42), OwnerKey::Anonymous(0xabc)] {
            assert_eq!(parse_routing_key(&routing_key(owner)), Some(owner));
        }
        assert_eq!(routing_key(OwnerKey::User(7)), "u7");
        assert_eq!(parse_routing_key("x7"), None);
        assert_eq!(parse_routing_key("uabc"), None);
    }

    #[test]
    fn every_instance_agrees_on_the_owner_and_exactly_one_owns_each_cart() {
        let members = ["127.0.0.1:8101", "127.0.0.1:8102", "127.0.0.1:8103"];
        let views: Vec<View> = members.iter().map(|m| view(&members, m)).collect();
        assert!(views.windows(2).all(|w| w[0].hash == w[1].hash));
        for id in 0..3000 {
            let owner = OwnerKey::User(id);
            let owners: Vec<bool> = views.iter().map(|v| v.is_mine(owner)).collect();
            assert_eq!(owners.iter().filter(|m| **m).count(), 1, "user {id}");
            let named = views[0].owner(owner).unwrap();
            assert!(views[members.iter().position(|m| *m == named).unwrap()].is_mine(owner));
        }
    }

    #[test]
    fn an_instance_outside_the_view_owns_nothing_and_views_name_their_membership() {
        let two = view(&["a:1", "b:1"], "c:1");
        assert!((0..500).all(|id| !two.is_mine(OwnerKey::User(id))));
        assert_ne!(two.hash, view(&["a:1", "b:1", "c:1"], "c:1").hash);
        assert_eq!(two.hash, view(&["b:1", "a:1"], "a:1").hash);
        assert_eq!(two.others().count(), 2);
    }
}
