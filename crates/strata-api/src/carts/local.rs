//! [`LocalCarts`]: every cart in the memory of this instance, made durable by the instance's
//! own journal (see `journal`). The lab's *stateful* cart: no store round trip to read or
//! change a cart (the catalog data of its lines still comes from the store).
//!
//! # Memory
//! [`SHARDS`] maps behind their own `std` mutexes, a cart's shard chosen by the hash of its
//! owner: writers of different carts rarely meet, and no lock is held across an `.await`.
//!
//! # A change
//! Under its shard's lock a change is checked and applied, and the cart's new state is queued
//! to the journal (so the log's order is the order of the changes); the lock is released and
//! the request waits for the group commit's `fsync` before it answers. A read may therefore see
//! a change whose `fsync` is still running; it is never acknowledged before it is durable.
//!
//! # Snapshots
//! Every `snapshot_interval`, when something changed: the journal rotates to a new log, then
//! every shard is copied (one lock at a time) into a snapshot of the new log's generation.
//! Records state whole carts, so a snapshot that already holds a change of the new log is
//! still right after that log is replayed over it.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use strata_store::{
    CartError, CartLine, CartOwner, MAX_CART_LINES, MAX_LINE_QUANTITY, MergeOutcome, Store,
};
use time::OffsetDateTime;
use tokio::sync::oneshot;

use super::journal::{
    Journal, JournalError, Line, OwnerKey, SnapshotWriter, encode_record, recover,
};
use super::peers::Peers;
use super::{CartSettings, cart_error};
use crate::ApiError;

/// Shards of the map: enough that two cores' writers rarely share one.
const SHARDS: usize = 64;
/// Stripes of the checkout locks (checkouts of one user are serialized; of two users, rarely).
const CHECKOUT_STRIPES: usize = 64;
/// Products the preloaded carts draw from (the demo catalog has more).
const PRELOAD_PRODUCTS: i64 = 10;

type Shard = HashMap<OwnerKey, Vec<Line>>;

/// The carts of one instance. Shared as an `Arc` by the handlers and the snapshot task.
pub(crate) struct LocalCarts {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    journal: Journal,
    dir: PathBuf,
    store: Store,
    checkouts: Box<[tokio::sync::Mutex<()>]>,
    /// Changes since the last snapshot began.
    changes: AtomicU64,
    metrics: LocalMetrics,
    /// The other instances holding carts, when there are any: a cart is changed here only
    /// while this instance owns it.
    peers: Option<Arc<Peers>>,
}

/// `strata_api_carts_*`: what the lab reads of a local instance.
#[derive(Clone, Default)]
struct LocalMetrics {
    /// Carts held in memory.
    held: Gauge,
    /// Milliseconds from the start of recovery to serving (snapshot + replay [+ preload]).
    start_ms: Gauge,
    /// Snapshots written.
    snapshots: Counter,
    /// Carts handed to (`sent`) or taken from (`received`) other instances.
    handed_over: Family<DirectionLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabels {
    direction: &'static str,
}

impl LocalMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "strata_api_carts_held",
            "Carts held in this instance's memory (local cart mode)",
            self.held.clone(),
        );
        registry.register(
            "strata_api_carts_start_ms",
            "Milliseconds this instance took to load its carts before serving (local cart mode)",
            self.start_ms.clone(),
        );
        registry.register(
            "strata_api_carts_snapshots",
            "Cart snapshots written (local cart mode)",
            self.snapshots.clone(),
        );
        registry.register(
            "strata_api_carts_handed_over",
            "Carts handed over to (sent) or from (received) other api instances when the \
             membership changed (local cart mode)",
            self.handed_over.clone(),
        );
        for direction in ["sent", "received"] {
            drop(
                self.handed_over
                    .get_or_create(&DirectionLabels { direction }),
            );
        }
    }
}

fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    // A panic under the lock cannot leave a cart half-changed (changes are built aside and
    // inserted whole), so a poisoned shard is still consistent.
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

fn journal_error(e: JournalError) -> ApiError {
    ApiError::CartLog(e.to_string())
}

fn io_error(what: &'static str) -> impl Fn(std::io::Error) -> ApiError {
    move |e| ApiError::CartLog(format!("{what}: {e}"))
}

/// The key of a store-side owner; anonymous tokens are 32 hex digits (checked by the cookie
/// parser, and made by `new_token`).
pub(crate) fn key(owner: CartOwner<'_>) -> Result<OwnerKey, ApiError> {
    match owner {
        CartOwner::User(id) => Ok(OwnerKey::User(id)),
        CartOwner::Anonymous(token) => u128::from_str_radix(token, 16)
            .map(OwnerKey::Anonymous)
            .map_err(|_| ApiError::Unexpected("a malformed cart token".into())),
    }
}

fn now_nanos() -> i64 {
    i64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos()).unwrap_or(i64::MAX)
}

impl LocalCarts {
    /// Loads the carts of `instance` from `settings.dir/<instance>` (snapshot, then logs),
    /// preloads `settings.preload` carts into an empty instance, starts the journal and the
    /// snapshot task, and registers the metrics. Logs the time it took.
    ///
    /// # Errors
    /// [`ApiError::CartLog`] when the directory, the snapshot or the log cannot be used.
    pub(crate) async fn open(
        settings: &CartSettings,
        instance: &str,
        store: Store,
        registry: &mut Registry,
        peers: Option<Arc<Peers>>,
    ) -> Result<Arc<Self>, ApiError> {
        let started = Instant::now();
        let dir = settings.dir.join(instance);
        let hasher = RandomState::new();
        let preload = settings.preload;
        let (maps, generation, torn, preloaded) = {
            let dir = dir.clone();
            let hasher = hasher.clone();
            tokio::task::spawn_blocking(move || load(&dir, &hasher, preload))
                .await
                .map_err(|e| ApiError::Unexpected(format!("cart loading panicked: {e}")))??
        };
        let held: usize = maps.iter().map(HashMap::len).sum();
        let journal = Journal::start(&dir, generation, settings.fsync_batch)
            .map_err(io_error("cannot open the cart log"))?;
        let metrics = LocalMetrics::default();
        metrics.register(registry);
        metrics.held.set(held as i64);
        let elapsed = started.elapsed();
        metrics
            .start_ms
            .set(i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX));
        tracing::info!(
            carts = held,
            preloaded,
            torn_tail_ignored = torn,
            load_ms = elapsed.as_millis() as u64,
            dir = %dir.display(),
            "local carts loaded"
        );
        let carts = Arc::new(Self {
            shards: maps.into_iter().map(Mutex::new).collect(),
            hasher,
            journal,
            dir,
            store,
            checkouts: (0..CHECKOUT_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            changes: AtomicU64::new(0),
            metrics,
            peers,
        });
        spawn_snapshots(Arc::downgrade(&carts), settings.snapshot_interval);
        Ok(carts)
    }

    fn index(&self, owner: OwnerKey) -> usize {
        (self.hasher.hash_one(owner) as usize) % SHARDS
    }

    fn shard(&self, owner: OwnerKey) -> MutexGuard<'_, Shard> {
        lock(&self.shards[self.index(owner)])
    }

    /// Whether this instance owns `owner`'s cart now (always, without peers).
    pub(crate) fn owns(&self, owner: OwnerKey) -> bool {
        self.peers.as_ref().is_none_or(|p| p.view().is_mine(owner))
    }

    /// Whether the cart of `owner` is held here.
    pub(crate) fn holds(&self, owner: OwnerKey) -> bool {
        self.shard(owner).contains_key(&owner)
    }

    /// The cart of `owner` as kept (`None`: no cart).
    pub(crate) fn raw(&self, owner: OwnerKey) -> Option<Vec<Line>> {
        self.shard(owner).get(&owner).cloned()
    }

    /// Kept lines with the catalog's current data, oldest first.
    ///
    /// # Errors
    /// When the store cannot be read.
    pub(crate) async fn join(&self, mut lines: Vec<Line>) -> Result<Vec<CartLine>, ApiError> {
        lines.sort_by_key(|l| (l.added_at, l.product_id));
        let mut out = Vec::with_capacity(lines.len());
        for line in lines {
            // A product gone from the catalog drops out of the view, as the store's join does.
            if let Some(product) = self.store.products().get(line.product_id).await? {
                out.push(CartLine {
                    product_id: line.product_id,
                    sku: product.sku,
                    name: product.name,
                    unit_price_cents: product.price_cents,
                    stock: product.stock,
                    quantity: i64::from(line.quantity),
                    added_at: OffsetDateTime::from_unix_timestamp_nanos(i128::from(line.added_at))
                        .unwrap_or(OffsetDateTime::UNIX_EPOCH),
                });
            }
        }
        Ok(out)
    }

    /// Adds units of a product (see `CartRepo::add` for the rules, which are the same).
    ///
    /// # Errors
    /// As `CartRepo::add`, and [`ApiError::CartLog`] when the change cannot be made durable.
    pub(crate) async fn add(
        &self,
        owner: OwnerKey,
        product_id: i64,
        quantity: u32,
    ) -> Result<(), ApiError> {
        let has_line = self
            .shard(owner)
            .get(&owner)
            .is_some_and(|lines| lines.iter().any(|l| l.product_id == product_id));
        // Looked up outside the lock; a product is never deleted, so the answer holds.
        if !has_line && self.store.products().get(product_id).await?.is_none() {
            return Err(cart_error(CartError::UnknownProduct(product_id)));
        }
        let ack = self.change(owner, |lines| {
            match lines.iter().position(|l| l.product_id == product_id) {
                Some(at) => {
                    let wanted = i64::from(lines[at].quantity) + i64::from(quantity);
                    lines[at].quantity = line_quantity(product_id, wanted)?;
                }
                None if lines.len() >= MAX_CART_LINES => return Err(CartError::TooManyLines),
                None => lines.push(Line {
                    product_id,
                    quantity: line_quantity(product_id, i64::from(quantity))?,
                    added_at: now_nanos(),
                }),
            }
            Ok(())
        })?;
        durable(ack).await
    }

    /// Sets a line's quantity; 0 removes it.
    ///
    /// # Errors
    /// As `CartRepo::set`, and [`ApiError::CartLog`].
    pub(crate) async fn set(
        &self,
        owner: OwnerKey,
        product_id: i64,
        quantity: u32,
    ) -> Result<(), ApiError> {
        let ack = self.change(owner, |lines| {
            let at = lines
                .iter()
                .position(|l| l.product_id == product_id)
                .ok_or(CartError::NotInCart(product_id))?;
            if quantity == 0 {
                lines.remove(at);
            } else {
                lines[at].quantity = line_quantity(product_id, i64::from(quantity))?;
            }
            Ok(())
        })?;
        durable(ack).await
    }

    /// Applies `change` to the owner's cart (created empty when missing) under its shard's
    /// lock and queues the new state to the journal; nothing changes when `change` refuses.
    fn change(
        &self,
        owner: OwnerKey,
        change: impl FnOnce(&mut Vec<Line>) -> Result<(), CartError>,
    ) -> Result<oneshot::Receiver<Result<(), JournalError>>, ApiError> {
        let mut shard = self.shard(owner);
        // Checked under the shard's lock: the hand-over copies a cart under the same lock
        // after the view changed, so a change is either in its copy or refused here.
        if !self.owns(owner) {
            return Err(ApiError::CartMoved);
        }
        let existing = shard.get(&owner);
        let is_new = existing.is_none();
        let mut lines = existing.cloned().unwrap_or_default();
        change(&mut lines).map_err(cart_error)?;
        let mut frame = Vec::with_capacity(64);
        encode_record([(owner, Some(lines.as_slice()))], &mut frame);
        shard.insert(owner, lines);
        let ack = self.journal.append(frame);
        drop(shard);
        if is_new {
            self.metrics.held.inc();
        }
        self.changes.fetch_add(1, Ordering::Relaxed);
        Ok(ack)
    }

    /// Moves the anonymous cart `token` into user `user_id`'s (same rules as
    /// `CartRepo::merge_anonymous`), as one record: a crash keeps both carts or the merge.
    ///
    /// # Errors
    /// [`ApiError::CartLog`].
    pub(crate) async fn merge_anonymous(
        &self,
        token: &str,
        user_id: i64,
    ) -> Result<MergeOutcome, ApiError> {
        let anonymous = key(CartOwner::Anonymous(token))?;
        let Some((ack, outcome)) = self.merge_now(anonymous, OwnerKey::User(user_id))? else {
            return Ok(MergeOutcome::default());
        };
        durable(ack).await?;
        Ok(outcome)
    }

    /// The merge under the locks of both carts' shards (taken in index order, so two merges
    /// cannot deadlock); `None` when there is no anonymous cart.
    #[allow(clippy::type_complexity)]
    fn merge_now(
        &self,
        anonymous: OwnerKey,
        user: OwnerKey,
    ) -> Result<Option<(oneshot::Receiver<Result<(), JournalError>>, MergeOutcome)>, ApiError> {
        let (a, u) = (self.index(anonymous), self.index(user));
        let mut first = lock(&self.shards[a.min(u)]);
        let mut second = (a != u).then(|| lock(&self.shards[a.max(u)]));
        if !self.owns(anonymous) || !self.owns(user) {
            return Err(ApiError::CartMoved);
        }
        let (anonymous_shard, user_shard): (&mut Shard, &mut Shard) = match second.as_mut() {
            None => {
                let Some(moving) = first.remove(&anonymous) else {
                    return Ok(None);
                };
                let merged = merge_lines(first.get(&user).cloned(), moving);
                return Ok(Some(self.commit_merge(&mut first, anonymous, user, merged)));
            }
            Some(second) if a < u => (&mut *first, &mut **second),
            Some(second) => (&mut **second, &mut *first),
        };
        let Some(moving) = anonymous_shard.remove(&anonymous) else {
            return Ok(None);
        };
        let merged = merge_lines(user_shard.get(&user).cloned(), moving);
        Ok(Some(self.commit_merge(user_shard, anonymous, user, merged)))
    }

    /// Merges `moving` (an anonymous cart held by another instance) into the user's cart,
    /// under the rules of [`LocalCarts::merge_anonymous`].
    ///
    /// # Errors
    /// [`ApiError::CartMoved`], [`ApiError::CartLog`].
    pub(crate) async fn merge_lines_into(
        &self,
        user: OwnerKey,
        moving: Vec<Line>,
    ) -> Result<MergeOutcome, ApiError> {
        let mut outcome = MergeOutcome::default();
        let ack = self.change(user, |lines| {
            let (merged, o, _) = merge_lines(Some(std::mem::take(lines)), moving);
            *lines = merged;
            outcome = o;
            Ok(())
        })?;
        durable(ack).await?;
        Ok(outcome)
    }

    /// Deletes the cart of `owner` (owned here); whether there was one.
    ///
    /// # Errors
    /// [`ApiError::CartMoved`], [`ApiError::CartLog`].
    pub(crate) async fn remove(&self, owner: OwnerKey) -> Result<bool, ApiError> {
        let ack = {
            let mut shard = self.shard(owner);
            if !self.owns(owner) {
                return Err(ApiError::CartMoved);
            }
            if shard.remove(&owner).is_none() {
                return Ok(false);
            }
            let mut frame = Vec::with_capacity(32);
            encode_record([(owner, None)], &mut frame);
            self.journal.append(frame)
        };
        self.metrics.held.dec();
        self.changes.fetch_add(1, Ordering::Relaxed);
        durable(ack).await?;
        Ok(true)
    }

    /// Copies of the carts held here that this instance does not own (in the current view),
    /// at most `limit`: what the hand-over sends. They no longer change here (a change
    /// checks ownership under the same lock).
    pub(crate) fn not_owned(&self, limit: usize) -> Vec<(OwnerKey, Vec<Line>)> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let shard = lock(shard);
            for (owner, lines) in shard.iter() {
                if !self.owns(*owner) {
                    out.push((*owner, lines.clone()));
                    if out.len() >= limit {
                        return out;
                    }
                }
            }
        }
        out
    }

    /// Number of carts held here.
    pub(crate) fn held(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }

    /// Takes in carts handed over by another instance: each one this instance does not
    /// hold yet is inserted and logged (one held already is newer: it was handed over
    /// before, or made here after the previous owner said it had none). Returns how many
    /// were taken in, once they are durable.
    ///
    /// # Errors
    /// [`ApiError::CartLog`]: nothing is acknowledged, the sender keeps its copies.
    pub(crate) async fn accept(&self, carts: Vec<(OwnerKey, Vec<Line>)>) -> Result<u64, ApiError> {
        let mut acks = Vec::new();
        let mut taken = 0u64;
        for (owner, lines) in carts {
            let mut shard = self.shard(owner);
            if shard.contains_key(&owner) {
                continue;
            }
            let mut frame = Vec::with_capacity(64);
            encode_record([(owner, Some(lines.as_slice()))], &mut frame);
            shard.insert(owner, lines);
            acks.push(self.journal.append(frame));
            drop(shard);
            self.metrics.held.inc();
            taken += 1;
        }
        self.changes.fetch_add(taken, Ordering::Relaxed);
        for ack in acks {
            durable(ack).await?;
        }
        self.metrics
            .handed_over
            .get_or_create(&DirectionLabels {
                direction: "received",
            })
            .inc_by(taken);
        Ok(taken)
    }

    /// Forgets carts another instance acknowledged taking over (each still held here and
    /// still not owned), and logs that they are gone.
    ///
    /// # Errors
    /// [`ApiError::CartLog`].
    pub(crate) async fn forget(&self, owners: &[OwnerKey]) -> Result<(), ApiError> {
        let mut acks = Vec::new();
        let mut gone = 0u64;
        for &owner in owners {
            let mut shard = self.shard(owner);
            if self.owns(owner) || shard.remove(&owner).is_none() {
                continue;
            }
            let mut frame = Vec::with_capacity(32);
            encode_record([(owner, None)], &mut frame);
            acks.push(self.journal.append(frame));
            drop(shard);
            self.metrics.held.dec();
            gone += 1;
        }
        self.changes.fetch_add(gone, Ordering::Relaxed);
        self.metrics
            .handed_over
            .get_or_create(&DirectionLabels { direction: "sent" })
            .inc_by(gone);
        for ack in acks {
            durable(ack).await?;
        }
        Ok(())
    }

    /// Inserts a merged user cart (the anonymous one is already out of its shard) and queues
    /// the merge's one record.
    fn commit_merge(
        &self,
        user_shard: &mut Shard,
        anonymous: OwnerKey,
        user: OwnerKey,
        (lines, outcome, user_is_new): (Vec<Line>, MergeOutcome, bool),
    ) -> (oneshot::Receiver<Result<(), JournalError>>, MergeOutcome) {
        let mut frame = Vec::with_capacity(64);
        encode_record(
            [(user, Some(lines.as_slice())), (anonymous, None)],
            &mut frame,
        );
        user_shard.insert(user, lines);
        let ack = self.journal.append(frame);
        if !user_is_new {
            self.metrics.held.dec();
        }
        self.changes.fetch_add(1, Ordering::Relaxed);
        (ack, outcome)
    }

    /// The store (the catalog, and checkout's orders).
    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// Serializes checkouts of `user_id` (a second one waits, then finds the cart emptied).
    pub(crate) async fn checkout_lock(&self, user_id: i64) -> tokio::sync::MutexGuard<'_, ()> {
        let stripe = (self.hasher.hash_one(user_id) as usize) % CHECKOUT_STRIPES;
        self.checkouts[stripe].lock().await
    }

    /// Takes the checked-out units off the user's cart once the order is committed (units
    /// added meanwhile stay).
    ///
    /// # Errors
    /// [`ApiError::CartLog`].
    pub(crate) async fn checked_out(
        &self,
        user_id: i64,
        sold: &[(i64, i64)],
    ) -> Result<(), ApiError> {
        let ack = self.change(OwnerKey::User(user_id), |lines| {
            lines.retain_mut(|line| {
                let taken = sold
                    .iter()
                    .find(|(p, _)| *p == line.product_id)
                    .map_or(0, |(_, q)| *q);
                let left = i64::from(line.quantity) - taken;
                line.quantity = u8::try_from(left.max(0)).unwrap_or(0);
                left > 0
            });
            Ok(())
        })?;
        durable(ack).await
    }

    /// Rotates the journal and writes a snapshot of the new generation, unless nothing
    /// changed since the last one. Returns the carts written.
    ///
    /// # Errors
    /// [`ApiError::CartLog`]; the old snapshot and logs then stay, and the next round retries.
    pub(crate) async fn snapshot(self: &Arc<Self>) -> Result<Option<u64>, ApiError> {
        let changes = self.changes.swap(0, Ordering::Relaxed);
        if changes == 0 {
            return Ok(None);
        }
        let generation = self.journal.rotate().await.map_err(journal_error)?;
        let carts = self.clone();
        let written = tokio::task::spawn_blocking(move || carts.write_snapshot(generation))
            .await
            .map_err(|e| ApiError::Unexpected(format!("cart snapshot panicked: {e}")))?;
        match written {
            Ok(n) => {
                self.metrics.snapshots.inc();
                Ok(Some(n))
            }
            Err(e) => {
                // Not written: the changes still need one.
                self.changes.fetch_add(changes, Ordering::Relaxed);
                Err(io_error("cannot write the cart snapshot")(e))
            }
        }
    }

    fn write_snapshot(&self, generation: u64) -> std::io::Result<u64> {
        let mut writer = SnapshotWriter::create(&self.dir, generation)?;
        for shard in self.shards.iter() {
            // Copied out so the shard's writers wait for a copy, never for the disk.
            let carts: Vec<(OwnerKey, Vec<Line>)> =
                lock(shard).iter().map(|(o, l)| (*o, l.clone())).collect();
            for (owner, lines) in carts {
                writer.push(owner, lines)?;
            }
        }
        writer.finish()
    }
}

/// The quantity of a line, checked against `1..=99`.
fn line_quantity(product_id: i64, quantity: i64) -> Result<u8, CartError> {
    if (1..=i64::from(MAX_LINE_QUANTITY)).contains(&quantity) {
        u8::try_from(quantity).map_err(|_| CartError::QuantityOutOfRange {
            product_id,
            quantity,
        })
    } else {
        Err(CartError::QuantityOutOfRange {
            product_id,
            quantity,
        })
    }
}

/// The user's cart after taking in `moving`: quantities add up (capped at 99), new lines
/// beyond the line limit are left out. Also returns whether the user had no cart.
fn merge_lines(
    current: Option<Vec<Line>>,
    mut moving: Vec<Line>,
) -> (Vec<Line>, MergeOutcome, bool) {
    let user_is_new = current.is_none();
    let mut lines = current.unwrap_or_default();
    let mut outcome = MergeOutcome {
        found: true,
        ..MergeOutcome::default()
    };
    moving.sort_by_key(|l| (l.added_at, l.product_id));
    let max = u8::try_from(MAX_LINE_QUANTITY).unwrap_or(u8::MAX);
    let now = now_nanos();
    for line in moving {
        match lines.iter().position(|l| l.product_id == line.product_id) {
            Some(at) => {
                let existing = &mut lines[at];
                let sum = u16::from(existing.quantity) + u16::from(line.quantity);
                if sum > u16::from(max) {
                    outcome.capped += 1;
                }
                existing.quantity = u8::try_from(sum.min(u16::from(max))).unwrap_or(max);
                outcome.merged += 1;
            }
            None if lines.len() >= MAX_CART_LINES => outcome.dropped += 1,
            None => {
                lines.push(Line {
                    product_id: line.product_id,
                    quantity: line.quantity.min(max),
                    added_at: now,
                });
                outcome.merged += 1;
            }
        }
    }
    (lines, outcome, user_is_new)
}

/// Waits for the `fsync` that covers a change.
async fn durable(ack: oneshot::Receiver<Result<(), JournalError>>) -> Result<(), ApiError> {
    ack.await
        .map_err(|_| journal_error(JournalError::Closed))?
        .map_err(journal_error)
}

/// Loads the carts of `dir` into [`SHARDS`] maps; preloads `preload` anonymous carts (and
/// snapshots them) when it holds none. Returns the maps, the next log generation, whether a
/// torn tail was ignored, and how many carts were preloaded.
fn load(
    dir: &Path,
    hasher: &RandomState,
    preload: u64,
) -> Result<(Vec<Shard>, u64, bool, u64), ApiError> {
    let mut maps: Vec<Shard> = (0..SHARDS).map(|_| HashMap::new()).collect();
    let recovered = recover(dir, |owner, lines| {
        let map = &mut maps[(hasher.hash_one(owner) as usize) % SHARDS];
        match lines {
            Some(lines) => {
                map.insert(owner, lines);
            }
            None => {
                map.remove(&owner);
            }
        }
    })
    .map_err(io_error("cannot recover the carts"))?;
    let empty = maps.iter().all(HashMap::is_empty);
    if !empty || preload == 0 {
        return Ok((maps, recovered.next_generation, recovered.torn, 0));
    }
    let now = now_nanos();
    let mut writer = SnapshotWriter::create(dir, recovered.next_generation)
        .map_err(io_error("cannot write the cart snapshot"))?;
    for i in 0..preload {
        let owner = OwnerKey::Anonymous(rand::random::<u128>());
        let lines: Vec<Line> = (0..(i % 3) as i64 + 1)
            .map(|n| Line {
                product_id: (i as i64 + n) % PRELOAD_PRODUCTS + 1,
                quantity: 1,
                added_at: now + n,
            })
            .collect();
        writer
            .push(owner, lines.clone())
            .map_err(io_error("cannot write the cart snapshot"))?;
        maps[(hasher.hash_one(owner) as usize) % SHARDS].insert(owner, lines);
    }
    writer
        .finish()
        .map_err(io_error("cannot write the cart snapshot"))?;
    Ok((maps, recovered.next_generation, recovered.torn, preload))
}

/// Snapshots every `interval` while the carts live.
fn spawn_snapshots(carts: Weak<LocalCarts>, interval: Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(carts) = carts.upgrade() else { return };
            match carts.snapshot().await {
                Ok(Some(n)) => tracing::debug!(carts = n, "cart snapshot written"),
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "cart snapshot failed"),
            }
        }
    });
}
