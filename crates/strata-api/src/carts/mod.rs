//! The cart contract: [`Carts`], the operations the cart endpoints and checkout need, with two
//! implementations chosen by `carts.mode` at start-up. The handlers never ask which one runs.
//!
//! - **shared** (default, [`SharedCarts`]): carts in the store (`strata_store::CartRepo`),
//!   their priced view cached per owner (see `cache_aside`); any instance serves any cart.
//!   The stateless design.
//! - **local** ([`LocalCarts`], a lab setting): each cart lives in the memory of one
//!   instance, made durable by that instance's append-only log (group-committed `fsync`,
//!   periodic snapshots; see `journal`). Start-up loads the snapshot and replays the log
//!   before the instance listens, so `/readyz` answers only after the replay. The stateful
//!   design, run beside the shared one to measure the trade-offs (start-up, latency, memory,
//!   recovery).
//!
//! # Several instances
//! With `carts.peers_url` set, local carts are shared out among the api pool's instances:
//! each cart lives on its *owner*, the instance the gateway's consistent hash picks for the
//! cart's key (`peers`); an operation reaching another instance is forwarded to the owner
//! (`routing`); when instances join or leave, the carts whose owner changed are handed over
//! (`handover`). The gateway pins a cart to its owner when its api pool runs
//! `consistent_hash` on `cookie:strata_cart_owner` with `balance_factor = 0`; the api sets
//! that cookie (`u<user id>` or the anonymous token) on its answers. Without
//! `carts.peers_url`, one instance holds every cart (run one only).
//!
//! # Checkout
//! The order is always written by the store's checkout transaction. Shared: the transaction
//! takes the cart's lines itself. Local: checkouts of one user are serialized here, the lines
//! are read from memory and passed in (`OrderRepo::checkout_lines`), and the units sold are
//! taken off the cart after the commit (not on a replay). A crash between the commit and that
//! change leaves the lines in the cart; the order is not lost or doubled (the idempotency key
//! replays it).

mod handover;
mod journal;
mod local;
mod peers;
mod routing;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use prometheus_client::registry::Registry;
use serde::Serialize;
use strata_store::{
    CartError, CartLine, CartOwner, CheckoutError, CheckoutOutcome, CheckoutRequest, Coupon,
    MAX_CART_LINES, MergeOutcome, PricedOrder, ReservedLine, Store,
};

use crate::ApiError;
use crate::cache_aside::CacheAside;
pub(crate) use handover::routes as internal_routes;
pub(crate) use local::LocalCarts;
pub use peers::PeerSettings;
use peers::Peers;
use routing::Cluster;

/// Where carts live (`carts.mode`): `shared` or `local`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CartMode {
    /// In the store, cached; any instance serves any cart.
    #[default]
    Shared,
    /// In the memory of one instance, with its own log (a lab setting).
    Local,
}

impl std::str::FromStr for CartMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "shared" => Ok(Self::Shared),
            "local" => Ok(Self::Local),
            other => Err(format!("expected `shared` or `local`, got `{other}`")),
        }
    }
}

/// How carts are kept (`[carts]`).
#[derive(Clone, Debug)]
pub struct CartSettings {
    /// Shared (default) or local.
    pub mode: CartMode,
    /// Local mode: the directory under which each instance keeps `<instance>/snapshot` and
    /// `<instance>/log.<n>`.
    pub dir: PathBuf,
    /// Local mode: how often a snapshot replaces the log (when something changed). Shorter:
    /// less log to replay at start-up, more snapshot writing.
    pub snapshot_interval: Duration,
    /// Local mode: most changes made durable by one `fsync`.
    pub fsync_batch: usize,
    /// Anonymous carts (1 to 3 lines each) created at start-up when there are none (local
    /// mode: in the instance; shared mode: in the store), for the lab to measure start-up
    /// and memory with many carts. 0: none.
    pub preload: u64,
    /// Local mode: where the instance learns the other instances it shares carts with;
    /// `None`: it holds every cart itself (one instance only).
    pub peers: Option<PeerSettings>,
}

impl Default for CartSettings {
    fn default() -> Self {
        Self {
            mode: CartMode::Shared,
            dir: PathBuf::from("./strata-data/carts"),
            snapshot_interval: Duration::from_secs(60),
            fsync_batch: 1024,
            preload: 0,
            peers: None,
        }
    }
}

/// The carts of one api instance, in either mode. Cheap to clone.
#[derive(Clone)]
pub(crate) enum Carts {
    /// In the store.
    Shared(SharedCarts),
    /// In this instance's memory (and its peers').
    Local(Arc<Cluster>),
}

/// The store-backed carts with their cache.
#[derive(Clone)]
pub(crate) struct SharedCarts {
    store: Store,
    cache: CacheAside,
}

impl Carts {
    /// The carts `settings` ask for; local mode loads them (see [`LocalCarts::open`]).
    ///
    /// # Errors
    /// [`ApiError::CartLog`] when local carts cannot be loaded.
    pub(crate) async fn open(
        settings: &CartSettings,
        instance: &str,
        store: Store,
        cache: CacheAside,
        registry: &mut Registry,
    ) -> Result<Self, ApiError> {
        Ok(match settings.mode {
            CartMode::Shared => {
                // Only when asked: a store still to be migrated has no `carts` table, and an
                // instance on it must start to say so on `/readyz`.
                if settings.preload > 0 {
                    let added = store.carts().preload_anonymous(settings.preload).await?;
                    if added > 0 {
                        tracing::info!(carts = added, "anonymous carts preloaded into the store");
                    }
                }
                Self::Shared(SharedCarts { store, cache })
            }
            CartMode::Local => {
                let peers = settings.peers.clone().map(Peers::new);
                let local =
                    LocalCarts::open(settings, instance, store, registry, peers.clone()).await?;
                Self::Local(Arc::new(Cluster { local, peers }))
            }
        })
    }

    /// Starts sharing carts with the peers, once this instance listens on `bound`: reads
    /// the pool and hands over carts as it changes. Nothing without peers.
    pub(crate) fn start(&self, bound: std::net::SocketAddr) {
        if let Self::Local(cluster) = self
            && let Some(peers) = &cluster.peers
        {
            peers.start(bound);
            handover::spawn(&cluster.local, peers);
        }
    }

    /// Leaves the peers before shutting down: drains this instance at the gateway and waits
    /// (at most `limit`) until every cart it holds was handed over. Nothing without peers.
    pub(crate) async fn leave(&self, limit: Duration) {
        if let Self::Local(cluster) = self
            && let Some(peers) = &cluster.peers
        {
            handover::leave(&cluster.local, peers, limit).await;
        }
    }

    /// Whether carts are shared among instances by owner (local mode with peers): answers
    /// then name the cart's routing key in a cookie.
    pub(crate) fn routes_by_owner(&self) -> bool {
        matches!(self, Self::Local(cluster) if cluster.peers.is_some())
    }

    /// A fresh anonymous cart token. With peers it is not drawn to be this instance's: the
    /// gateway sends a request without a cart key by its client address, so every new cart
    /// of the clients behind one address (a NAT, a proxy, the lab's load generator) would
    /// land on one instance. A random token's owner is uniform over the ring; the request
    /// that makes the cart is forwarded to it once, and its cookie sends the rest there.
    pub(crate) fn new_token(&self) -> String {
        crate::cart::new_token()
    }

    /// The owner's lines with current catalog data, oldest first.
    ///
    /// # Errors
    /// When the store cannot be read.
    pub(crate) async fn lines(&self, owner: CartOwner<'_>) -> Result<Vec<CartLine>, ApiError> {
        match self {
            Self::Shared(s) => Ok(s.store.carts().lines(owner).await?),
            Self::Local(l) => l.lines(owner).await,
        }
    }

    /// The owner's priced cart as a JSON body: shared mode reads it through the cache (per
    /// owner and `pricing`), local mode builds it with `load` every time (its lines are in
    /// memory already).
    ///
    /// # Errors
    /// The loader's errors, or a JSON encoding error.
    pub(crate) async fn read_json<T, F>(
        &self,
        owner: CartOwner<'_>,
        pricing: &str,
        load: F,
    ) -> Result<Bytes, ApiError>
    where
        T: Serialize,
        F: Future<Output = Result<Option<T>, ApiError>>,
    {
        let body = match self {
            Self::Shared(s) => {
                s.cache
                    .read_cart_json(&owner_key(owner), pricing, load)
                    .await?
            }
            Self::Local(_) => match load.await? {
                Some(view) => Some(Bytes::from(serde_json::to_vec(&view)?)),
                None => None,
            },
        };
        body.ok_or_else(|| ApiError::Unexpected("a cart loader returned nothing".into()))
    }

    /// Whether an anonymous cart with this token exists.
    ///
    /// # Errors
    /// When the store cannot be read.
    pub(crate) async fn anonymous_exists(&self, token: &str) -> Result<bool, ApiError> {
        match self {
            Self::Shared(s) => Ok(s.store.carts().anonymous_exists(token).await?),
            Self::Local(l) => l.anonymous_exists(token).await,
        }
    }

    /// Adds units of a product to the owner's cart; the cart's lines after the change (read
    /// with the change itself in local mode, so an answer that fails never hides a change
    /// that was made: a client may retry a 503).
    ///
    /// # Errors
    /// `unknown_product`, `cart_limit`, or the backend's failure.
    pub(crate) async fn add(
        &self,
        owner: CartOwner<'_>,
        product_id: i64,
        quantity: u32,
    ) -> Result<Vec<CartLine>, ApiError> {
        match self {
            Self::Shared(s) => {
                s.store
                    .carts()
                    .add(owner, product_id, quantity)
                    .await
                    .map_err(cart_error)?;
                s.cache.invalidate_cart(&owner_key(owner)).await;
                Ok(s.store.carts().lines(owner).await?)
            }
            Self::Local(l) => l.add(owner, product_id, quantity).await,
        }
    }

    /// Sets a line's quantity (0 removes the line); the cart's lines after the change, as
    /// [`Carts::add`].
    ///
    /// # Errors
    /// `not_in_cart`, `cart_limit`, or the backend's failure.
    pub(crate) async fn set(
        &self,
        owner: CartOwner<'_>,
        product_id: i64,
        quantity: u32,
    ) -> Result<Vec<CartLine>, ApiError> {
        match self {
            Self::Shared(s) => {
                s.store
                    .carts()
                    .set(owner, product_id, quantity)
                    .await
                    .map_err(cart_error)?;
                s.cache.invalidate_cart(&owner_key(owner)).await;
                Ok(s.store.carts().lines(owner).await?)
            }
            Self::Local(l) => l.set(owner, product_id, quantity).await,
        }
    }

    /// Merges the anonymous cart `token` into user `user_id`'s (nothing when there is none).
    ///
    /// # Errors
    /// The backend's failure.
    pub(crate) async fn merge_anonymous(
        &self,
        token: &str,
        user_id: i64,
    ) -> Result<MergeOutcome, ApiError> {
        match self {
            Self::Shared(s) => {
                let merged = s.store.carts().merge_anonymous(token, user_id).await?;
                if merged.found {
                    s.cache
                        .invalidate_cart(&owner_key(CartOwner::User(user_id)))
                        .await;
                    s.cache
                        .invalidate_cart(&owner_key(CartOwner::Anonymous(token)))
                        .await;
                }
                Ok(merged)
            }
            Self::Local(l) => l.merge_anonymous(token, user_id).await,
        }
    }

    /// Turns the user's cart into an order (see the module docs, "Checkout").
    ///
    /// # Errors
    /// As `OrderRepo::checkout`.
    pub(crate) async fn checkout<E: From<ApiError>>(
        &self,
        request: CheckoutRequest<'_>,
        price: impl Fn(&[ReservedLine], Option<&Coupon>) -> Result<PricedOrder, E>,
    ) -> Result<CheckoutOutcome, CheckoutError<E>> {
        match self {
            Self::Shared(s) => {
                let outcome = s.store.orders().checkout(request, price).await?;
                // The checkout emptied the cart (a replay changed nothing, but dropping the
                // key is cheap).
                s.cache
                    .invalidate_cart(&owner_key(CartOwner::User(request.user_id)))
                    .await;
                Ok(outcome)
            }
            Self::Local(l) => {
                // A cart that cannot be reached fails the checkout with its own answer.
                let unavailable = |e: ApiError| CheckoutError::Pricing(E::from(e));
                let _one_at_a_time = l.local.checkout_lock(request.user_id).await;
                let lines = l
                    .checkout_lines(request.user_id)
                    .await
                    .map_err(unavailable)?;
                let store = l.local.store();
                let outcome = store
                    .orders()
                    .checkout_lines(request, &lines, price)
                    .await?;
                if !outcome.replayed
                    && let Err(e) = l.checked_out(request.user_id, &lines).await
                {
                    // The order stands; the lines stay in the cart (see the module docs).
                    tracing::error!(error = %e, user_id = request.user_id,
                        "order placed but its lines could not be taken off the cart");
                }
                Ok(outcome)
            }
        }
    }
}

/// An owner's name in cache keys: `user:<id>` or `anon:<token>`.
fn owner_key(owner: CartOwner<'_>) -> String {
    match owner {
        CartOwner::User(id) => format!("user:{id}"),
        CartOwner::Anonymous(token) => format!("anon:{token}"),
    }
}

/// Maps the cart rules' refusals to their HTTP answers (both implementations apply the same
/// rules and refuse with [`CartError`]).
pub(crate) fn cart_error(e: CartError) -> ApiError {
    match e {
        CartError::UnknownProduct(id) => ApiError::UnknownProduct(id),
        CartError::NotInCart(id) => ApiError::NotInCart(id),
        CartError::TooManyLines => ApiError::CartLimit(format!(
            "a cart holds at most {MAX_CART_LINES} different products"
        )),
        CartError::QuantityOutOfRange {
            product_id,
            quantity,
        } => crate::cart::line_limit(product_id, quantity),
        CartError::Store(e) => e.into(),
    }
}
