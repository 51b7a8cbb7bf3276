//! [`Cluster`]: local carts across several api instances. Every operation on a cart runs on
//! the cart's owner (see `peers`): here when this instance owns it, otherwise forwarded to the
//! owner over `POST /internal/carts/op`. The gateway pins most requests to the owner already
//! (it hashes the `strata_cart_owner` cookie on the same ring), so forwarding is the rare
//! path: a first request without the cookie, a signed-in user's cart reached through an
//! anonymous one, or the seconds after a membership change.
//!
//! # Never another cart
//! An owner that cannot be reached answers 503 `cart_unavailable` (retryable), never an
//! empty cart from another instance. A cart this instance owns but does not hold is first
//! asked of its owner in the previous view (see `handover`), until that instance has said it
//! handed over everything it no longer owns.
//!
//! # Without peers
//! A single local instance (no `carts.peers_url`) owns every cart: nothing is forwarded.

use std::sync::Arc;

use strata_store::{CartLine, CartOwner, MergeOutcome};

use super::handover::{Answer, Op, OpCall, Refusal, pull, wire_lines};
use super::journal::{Line, OwnerKey};
use super::local::{LocalCarts, key};
use super::peers::{Peers, routing_key};
use crate::ApiError;

/// Attempts to route one operation: a membership change under it costs one more.
const ATTEMPTS: usize = 3;

/// The local carts of this instance and the peers they are shared with.
pub(crate) struct Cluster {
    pub(crate) local: Arc<LocalCarts>,
    pub(crate) peers: Option<Arc<Peers>>,
}

/// Where an operation runs.
enum Route {
    Here,
    There(String),
    /// No member in the view (none read yet).
    Nowhere,
}

impl Cluster {
    fn route(&self, owner: OwnerKey) -> Route {
        let Some(peers) = &self.peers else {
            return Route::Here;
        };
        let view = peers.view();
        if view.is_mine(owner) {
            return Route::Here;
        }
        match view.owner(owner) {
            Some(address) => Route::There(address.to_owned()),
            None => Route::Nowhere,
        }
    }

    /// Runs `op` on the cart of `owner` where it lives.
    ///
    /// # Errors
    /// The operation's refusals; [`ApiError::CartUnavailable`] when the owner cannot be
    /// reached or the membership does not settle.
    pub(crate) async fn run(&self, owner: OwnerKey, op: Op) -> Result<Answer, ApiError> {
        for _ in 0..ATTEMPTS {
            match self.route(owner) {
                Route::Here => match self.here(owner, &op).await {
                    Err(ApiError::CartMoved) => self.refresh().await,
                    done => return done,
                },
                Route::There(address) => {
                    let Some(peers) = &self.peers else {
                        return Err(ApiError::Unexpected("a remote owner without peers".into()));
                    };
                    let call = OpCall {
                        view: peers.view().hash,
                        owner: routing_key(owner),
                        op: op.clone(),
                    };
                    match call_op(peers, &address, &call).await {
                        Ok(Answer::NotOwner) => peers.refresh().await,
                        Ok(Answer::Refused { refusal }) => return Err(refusal.into()),
                        Ok(answer) => return Ok(answer),
                        Err(e) => {
                            return Err(ApiError::CartUnavailable(format!(
                                "the cart's instance {address}: {e}"
                            )));
                        }
                    }
                }
                Route::Nowhere => self.refresh().await,
            }
        }
        Err(ApiError::CartUnavailable(
            "the api pool's membership is changing".into(),
        ))
    }

    async fn refresh(&self) {
        if let Some(peers) = &self.peers {
            peers.refresh().await;
        }
    }

    /// Runs `op` here, on a cart this instance owns (fetched from its previous owner first
    /// when needed).
    ///
    /// # Errors
    /// As [`Cluster::run`]; [`ApiError::CartMoved`] when the view changed meanwhile.
    pub(crate) async fn here(&self, owner: OwnerKey, op: &Op) -> Result<Answer, ApiError> {
        self.fetch_if_elsewhere(owner).await?;
        let local = &self.local;
        Ok(match op {
            Op::Lines => Answer::Lines {
                lines: local.raw(owner).map(|l| wire_lines(&l)),
            },
            Op::Add {
                product_id,
                quantity,
            } => {
                local.add(owner, *product_id, *quantity).await?;
                Answer::Lines {
                    lines: local.raw(owner).map(|l| wire_lines(&l)),
                }
            }
            Op::Set {
                product_id,
                quantity,
            } => {
                local.set(owner, *product_id, *quantity).await?;
                Answer::Lines {
                    lines: local.raw(owner).map(|l| wire_lines(&l)),
                }
            }
            Op::MergeInto { lines } => {
                let lines: Vec<Line> = lines.iter().map(|l| (*l).into()).collect();
                let outcome = local.merge_lines_into(owner, lines).await?;
                Answer::Merged {
                    merged: outcome.merged,
                    capped: outcome.capped,
                    dropped: outcome.dropped,
                }
            }
            Op::Remove => Answer::Removed {
                found: local.remove(owner).await?,
            },
            Op::CheckedOut { sold } => {
                let OwnerKey::User(user_id) = owner else {
                    return Err(ApiError::Unexpected(
                        "a checkout of an anonymous cart".into(),
                    ));
                };
                local.checked_out(user_id, sold).await?;
                Answer::Done
            }
        })
    }

    /// Makes sure a cart this instance owns is here: when it is not held and its owner in the
    /// previous view has not settled, asks that instance to hand it over.
    async fn fetch_if_elsewhere(&self, owner: OwnerKey) -> Result<(), ApiError> {
        let Some(peers) = &self.peers else {
            return Ok(());
        };
        if self.local.holds(owner) {
            return Ok(());
        }
        let Some(previous) = peers.unsettled_previous_owner(owner) else {
            return Ok(());
        };
        pull(peers, &previous, owner).await
    }

    /// The owner's raw lines (`None`: no cart).
    async fn raw(&self, owner: OwnerKey) -> Result<Option<Vec<Line>>, ApiError> {
        match self.run(owner, Op::Lines).await? {
            Answer::Lines { lines } => Ok(lines.map(|l| l.into_iter().map(Line::from).collect())),
            other => Err(unexpected(&other)),
        }
    }

    /// The owner's lines with current catalog data.
    ///
    /// # Errors
    /// As [`Cluster::run`]; store errors.
    pub(crate) async fn lines(&self, owner: CartOwner<'_>) -> Result<Vec<CartLine>, ApiError> {
        let lines = self.raw(key(owner)?).await?.unwrap_or_default();
        self.local.join(lines).await
    }

    /// Whether an anonymous cart with this token exists (on its owner).
    ///
    /// # Errors
    /// As [`Cluster::run`].
    pub(crate) async fn anonymous_exists(&self, token: &str) -> Result<bool, ApiError> {
        Ok(self.raw(key(CartOwner::Anonymous(token))?).await?.is_some())
    }

    /// Adds units of a product; the cart's lines after the change.
    ///
    /// # Errors
    /// As [`LocalCarts::add`] and [`Cluster::run`].
    pub(crate) async fn add(
        &self,
        owner: CartOwner<'_>,
        product_id: i64,
        quantity: u32,
    ) -> Result<Vec<CartLine>, ApiError> {
        let op = Op::Add {
            product_id,
            quantity,
        };
        self.changed(key(owner)?, op).await
    }

    /// Sets a line's quantity (0 removes it); the cart's lines after the change.
    ///
    /// # Errors
    /// As [`LocalCarts::set`] and [`Cluster::run`].
    pub(crate) async fn set(
        &self,
        owner: CartOwner<'_>,
        product_id: i64,
        quantity: u32,
    ) -> Result<Vec<CartLine>, ApiError> {
        let op = Op::Set {
            product_id,
            quantity,
        };
        self.changed(key(owner)?, op).await
    }

    /// Runs a change that answers with the cart's lines, and joins them with the catalog.
    async fn changed(&self, owner: OwnerKey, op: Op) -> Result<Vec<CartLine>, ApiError> {
        match self.run(owner, op).await? {
            Answer::Lines { lines } => {
                let lines = lines.unwrap_or_default().into_iter().map(Line::from);
                self.local.join(lines.collect()).await
            }
            other => Err(unexpected(&other)),
        }
    }

    /// Merges the anonymous cart `token` into user `user_id`'s. When this instance owns
    /// both, in one record ([`LocalCarts::merge_anonymous`]); otherwise the anonymous lines
    /// are read, merged into the user's cart on its owner, then the anonymous cart is
    /// deleted on its own: a crash between the last two steps leaves the anonymous cart, to
    /// be merged again (its units counted twice) rather than lost.
    ///
    /// # Errors
    /// As [`Cluster::run`].
    pub(crate) async fn merge_anonymous(
        &self,
        token: &str,
        user_id: i64,
    ) -> Result<MergeOutcome, ApiError> {
        let anonymous = key(CartOwner::Anonymous(token))?;
        let user = OwnerKey::User(user_id);
        if matches!(
            (self.route(anonymous), self.route(user)),
            (Route::Here, Route::Here)
        ) {
            self.fetch_if_elsewhere(anonymous).await?;
            self.fetch_if_elsewhere(user).await?;
            match self.local.merge_anonymous(token, user_id).await {
                Err(ApiError::CartMoved) => {}
                done => return done,
            }
        }
        let Some(moving) = self.raw(anonymous).await? else {
            return Ok(MergeOutcome::default());
        };
        let op = Op::MergeInto {
            lines: wire_lines(&moving),
        };
        let outcome = match self.run(user, op).await? {
            Answer::Merged {
                merged,
                capped,
                dropped,
            } => MergeOutcome {
                found: true,
                merged,
                capped,
                dropped,
            },
            other => return Err(unexpected(&other)),
        };
        self.run(anonymous, Op::Remove).await?;
        Ok(outcome)
    }

    /// The user's lines as (product id, quantity), for the store's checkout.
    ///
    /// # Errors
    /// As [`Cluster::run`].
    pub(crate) async fn checkout_lines(&self, user_id: i64) -> Result<Vec<(i64, i64)>, ApiError> {
        Ok(self
            .raw(OwnerKey::User(user_id))
            .await?
            .unwrap_or_default()
            .iter()
            .map(|l| (l.product_id, i64::from(l.quantity)))
            .collect())
    }

    /// Takes the checked-out units off the user's cart.
    ///
    /// # Errors
    /// As [`Cluster::run`].
    pub(crate) async fn checked_out(
        &self,
        user_id: i64,
        sold: &[(i64, i64)],
    ) -> Result<(), ApiError> {
        let op = Op::CheckedOut {
            sold: sold.to_vec(),
        };
        self.run(OwnerKey::User(user_id), op).await.map(drop)
    }
}

/// Forwards `call` to the instance at `address`.
async fn call_op(peers: &Peers, address: &str, call: &OpCall) -> Result<Answer, String> {
    let url = format!("http://{address}/internal/carts/op");
    let response = peers
        .authorized(peers.client().post(&url))
        .json(call)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("answered {}", response.status()));
    }
    response.json().await.map_err(|e| e.to_string())
}

fn unexpected(answer: &Answer) -> ApiError {
    ApiError::Unexpected(format!("an unexpected cart answer: {answer:?}"))
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::UnknownProduct { product_id } => Self::UnknownProduct(product_id),
            Refusal::NotInCart { product_id } => Self::NotInCart(product_id),
            Refusal::CartLimit { message } => Self::CartLimit(message),
        }
    }
}
